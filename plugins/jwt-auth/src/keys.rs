//! Verification keys: from config (secret, PEM) or from a JWKS document, each
//! bound to the algorithms it may verify, so a token can never pick how its
//! key is used (the RSA-public-key-as-HMAC-secret confusion).

use crate::config::KeyConfig;
use base64::Engine;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use std::str::FromStr;

/// Smallest RSA modulus accepted (RFC 7518 §3.3).
const MIN_RSA_BITS: usize = 2048;

/// Every algorithm the plugin verifies, for messages and validation.
pub const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A key the plugin verifies signatures with.
pub struct VerifyKey {
    /// Matched against the token's `kid`; `None` matches any token.
    pub kid: Option<String>,
    /// The only algorithms this key may verify.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token with `kid` and `alg`.
    pub fn fits(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let kid_fits = match (&self.kid, kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        kid_fits && self.algorithms.contains(&alg)
    }
}

/// Parses an algorithm name as written in config or a JWK.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name).map_err(|_| {
        let known: Vec<String> = ALGORITHMS.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "`{name}` is not a supported algorithm (one of {})",
            known.join(", ")
        )
    })
}

/// Builds a key from a `keys[i]` entry; the error names the field.
pub fn from_config(i: usize, entry: &KeyConfig) -> Result<VerifyKey, String> {
    let field = |name: &str| format!("keys[{i}].{name}");
    let alg = algorithm(&entry.alg).map_err(|e| format!("{}: {e}", field("alg")))?;
    if entry.kid.as_deref() == Some("") {
        return Err(format!("{}: must not be empty", field("kid")));
    }
    let key = match (&entry.secret, &entry.secret_base64, &entry.pem) {
        (Some(secret), None, None) => hmac_key(alg, secret.as_bytes().to_vec(), &field("secret"))?,
        (None, Some(b64), None) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("{}: not valid base64: {e}", field("secret_base64")))?;
            hmac_key(alg, bytes, &field("secret_base64"))?
        }
        (None, None, Some(pem)) => {
            pem_key(alg, pem).map_err(|e| format!("{}: {e}", field("pem")))?
        }
        _ => {
            return Err(format!(
                "keys[{i}]: give exactly one of `secret`, `secret_base64`, `pem`"
            ))
        }
    };
    Ok(VerifyKey {
        kid: entry.kid.clone(),
        algorithms: vec![alg],
        key,
    })
}

/// An HMAC key, at least as long as the hash (RFC 7518 §3.2).
fn hmac_key(alg: Algorithm, secret: Vec<u8>, field: &str) -> Result<DecodingKey, String> {
    let min = match alg {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        other => {
            return Err(format!(
                "{field}: a secret is for HS256/384/512, not {other:?}"
            ))
        }
    };
    if secret.len() < min {
        return Err(format!(
            "{field}: a {alg:?} secret must be at least {min} bytes"
        ));
    }
    Ok(DecodingKey::from_secret(&secret))
}

/// A public key from PEM text, checked against `alg` now rather than per request.
fn pem_key(alg: Algorithm, pem: &str) -> Result<DecodingKey, String> {
    let pem = pem.as_bytes();
    let bad = |e: jsonwebtoken::errors::Error| format!("not a valid {alg:?} public key: {e}");
    match alg.family() {
        AlgorithmFamily::Hmac => Err(format!("{alg:?} takes `secret`, not a PEM key")),
        AlgorithmFamily::Rsa => {
            let der = DecodingKey::from_rsa_pem(pem).map_err(bad)?;
            let (n, e) = (DEFAULT_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(der_bytes(&der)?)
            .map_err(bad)?;
            rsa_key(&n, &e)
        }
        AlgorithmFamily::Ec => checked(DecodingKey::from_ec_pem(pem).map_err(bad)?, alg),
        AlgorithmFamily::Ed => checked(DecodingKey::from_ed_pem(pem).map_err(bad)?, alg),
    }
}

fn der_bytes(key: &DecodingKey) -> Result<&[u8], String> {
    key.try_get_as_bytes()
        .map_err(|e| format!("not a valid public key: {e}"))
}

/// An RSA key from its modulus and exponent, refusing short moduli.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<DecodingKey, String> {
    let significant = n.iter().skip_while(|b| **b == 0).count();
    if significant * 8 < MIN_RSA_BITS {
        return Err(format!(
            "RSA modulus has {} bits, at least {MIN_RSA_BITS} are required",
            significant * 8
        ));
    }
    if e.is_empty() {
        return Err("RSA exponent is empty".into());
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

/// Checks an EC or Ed key parses for `alg` (the right curve and length), so a
/// bad key fails at load, not as a trap on the first request.
fn checked(key: DecodingKey, alg: Algorithm) -> Result<DecodingKey, String> {
    if alg == Algorithm::EdDSA && der_bytes(&key)?.len() != 32 {
        return Err("not an Ed25519 public key (32 bytes)".into());
    }
    // A throwaway signature: only a key that fails to parse makes this an Err.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, alg)
        .map_err(|_| format!("not a valid {alg:?} public key (wrong curve or encoding)"))?;
    Ok(key)
}

/// Builds a key from one JWK. `allow_symmetric` is false for fetched sets:
/// an HMAC secret has no place in a published document.
pub fn from_jwk(value: &serde_json::Value, allow_symmetric: bool) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key (`use: enc`)".into());
    }
    let (key, mut algorithms) = jwk_key(&jwk, allow_symmetric)?;
    if let Some(declared) = jwk.common.key_algorithm {
        let declared = Algorithm::try_from(declared)
            .map_err(|_| format!("`alg` {declared} is not a signature algorithm"))?;
        if !algorithms.contains(&declared) {
            return Err(format!("`alg` {declared:?} does not fit its key type"));
        }
        algorithms = vec![declared];
    }
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

/// The key and the algorithms its type allows.
fn jwk_key(jwk: &Jwk, allow_symmetric: bool) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| format!("bad base64url: {e}"))
    };
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => Ok((
            rsa_key(&b64(&p.n)?, &b64(&p.e)?)?,
            AlgorithmFamily::Rsa.algorithms().to_vec(),
        )),
        AlgorithmParameters::EllipticCurve(p) => {
            let alg = match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                ref other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let key = DecodingKey::from_ec_components(&p.x, &p.y).map_err(|e| e.to_string())?;
            Ok((checked(key, alg)?, vec![alg]))
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            let key = DecodingKey::from_ed_components(&p.x).map_err(|e| e.to_string())?;
            Ok((checked(key, Algorithm::EdDSA)?, vec![Algorithm::EdDSA]))
        }
        AlgorithmParameters::OctetKey(p) if allow_symmetric => {
            let secret = b64(&p.value)?;
            if secret.len() < 32 {
                return Err("an `oct` key must be at least 32 bytes".into());
            }
            Ok((
                DecodingKey::from_secret(&secret),
                hmac_algorithms_for(secret.len()),
            ))
        }
        AlgorithmParameters::OctetKey(_) => {
            Err("a symmetric (`oct`) key in a fetched JWKS is ignored".into())
        }
        _ => Err("unsupported key type".into()),
    }
}

/// HMAC algorithms whose hash is no longer than the secret.
fn hmac_algorithms_for(len: usize) -> Vec<Algorithm> {
    [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ]
    .into_iter()
    .filter(|(_, min)| len >= *min)
    .map(|(alg, _)| alg)
    .collect()
}

/// Parses a JWKS document: the keys it yields and, per refused key, why.
pub fn parse_jwks(
    document: &serde_json::Value,
    allow_symmetric: bool,
) -> Result<(Vec<VerifyKey>, Vec<String>), String> {
    let entries = document
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("expected a JWKS document: {\"keys\": [...]}")?;
    let mut keys = Vec::new();
    let mut refused = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match from_jwk(entry, allow_symmetric) {
            Ok(key) => keys.push(key),
            Err(e) => refused.push(format!("keys[{i}]: {e}")),
        }
    }
    Ok((keys, refused))
}
