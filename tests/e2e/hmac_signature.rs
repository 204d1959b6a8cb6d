//! The hmac-signature plugin through the running gateway: a client signs
//! each request (HMAC-SHA256 over method, path and query, timestamp and
//! body) and the upstream sees it only when the signature holds.
//!
//! This crate has no crypto library, so the client's HMAC-SHA256 is written
//! out below (FIPS 180-4, RFC 2104) and checked against RFC 4231 first.

use crate::support::{get_client, TestGateway};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "e2e-test-only-shared-secret-0123456789";

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha256(&[pad(0x36), message.to_vec()].concat());
    let outer = sha256(&[pad(0x5c), inner.to_vec()].concat());
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `X-Signature` value for a request, as a client computes it.
fn signature(method: &str, path_and_query: &str, ts: u64, body: &[u8]) -> String {
    let message = [
        format!("{method}\n{path_and_query}\n{ts}\n").into_bytes(),
        body.to_vec(),
    ]
    .concat();
    let sig = hmac_sha256_hex(SECRET.as_bytes(), &message);
    format!("keyId=partner-a,ts={ts},sig={sig}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_test_client_computes_rfc_4231_hmac_sha256() {
    // RFC 4231 test case 2.
    assert_eq!(
        hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_requests_reach_the_upstream_and_others_do_not() {
    let gw = TestGateway::start(&format!(
        "routes:
  - name: signed
    upstream: a
    plugins:
      - name: hmac-signature
        allow: [kv]
        config:
          keys: [{{ id: partner-a, secret: {SECRET}, consumer: acme }}]
          max_skew_secs: 60
          reject_replays: true
          consumer_header: x-consumer
"
    ))
    .await;
    let client = get_client();
    let url = gw.url("/orders?dry=1");
    let body = br#"{"amount": 42}"#;

    let header = signature("POST", "/orders?dry=1", now(), body);
    let ok = client
        .send("POST", &url, &[("x-signature", &header)], body)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["body"], r#"{"amount": 42}"#);
    assert_eq!(ok.upstream_header("x-consumer").as_deref(), Some("acme"));

    let replay = client
        .send("POST", &url, &[("x-signature", &header)], body)
        .await
        .unwrap();
    assert_eq!(replay.status, 401);
    assert_eq!(
        replay.json(),
        json!({"error": "signature was already used", "code": "replayed"})
    );

    let tampered = client
        .send(
            "POST",
            &url,
            &[(
                "x-signature",
                &signature("POST", "/orders?dry=1", now(), body),
            )],
            br#"{"amount": 4200}"#,
        )
        .await
        .unwrap();
    assert_eq!(tampered.status, 401);
    assert_eq!(tampered.json()["code"], "bad_signature");

    let old = signature("POST", "/orders?dry=1", now() - 600, body);
    let stale = client
        .send("POST", &url, &[("x-signature", &old)], body)
        .await
        .unwrap();
    assert_eq!(stale.status, 401);
    assert_eq!(stale.json()["code"], "stale_timestamp");

    let missing = client.send("POST", &url, &[], body).await.unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json(),
        json!({"error": "missing x-signature header", "code": "signature_missing"})
    );
    assert_eq!(
        missing.header("www-authenticate"),
        Some("HMAC-SHA256 header=\"x-signature\"")
    );
}
