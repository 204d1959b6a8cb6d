//! The signature header and the bytes a signature covers.
//!
//! ```text
//! X-Signature: keyId=partner-a,ts=1767225600,sig=<64 hex digits>
//!
//! sig = hex(HMAC-SHA256(secret, METHOD "\n" PATH ["?" QUERY] "\n" TS "\n" BODY))
//! ```
//!
//! The method, path and query are exactly as sent (no re-encoding), `TS`
//! is the `ts` value exactly as in the header (decimal Unix seconds), `BODY`
//! the raw body bytes (empty when there is none).

/// The parts of a signature header.
#[derive(Debug, PartialEq)]
pub struct SignatureHeader<'a> {
    pub key_id: &'a str,
    pub timestamp: i64,
    /// `ts` as written: the signed text.
    pub ts_text: &'a str,
    /// The 32-byte MAC, decoded from hex.
    pub mac: Vec<u8>,
}

/// Parses `keyId=...,ts=...,sig=...` (any order, spaces after commas
/// allowed, each parameter exactly once); the error says what is wrong.
pub fn parse(value: &str) -> Result<SignatureHeader<'_>, &'static str> {
    let (mut key_id, mut ts, mut sig) = (None, None, None);
    for part in value.split(',') {
        let (name, val) = part
            .trim()
            .split_once('=')
            .ok_or("expected name=value pairs")?;
        let slot = match name.trim() {
            "keyId" => &mut key_id,
            "ts" => &mut ts,
            "sig" => &mut sig,
            _ => return Err("unknown parameter (expected keyId, ts, sig)"),
        };
        if slot.replace(val.trim()).is_some() {
            return Err("a parameter is given twice");
        }
    }
    let key_id = key_id.filter(|k| !k.is_empty()).ok_or("missing keyId")?;
    let ts_text = ts.ok_or("missing ts")?;
    let timestamp = ts_text
        .parse::<i64>()
        .map_err(|_| "ts is not a Unix time in seconds")?;
    let mac = decode_hex(sig.ok_or("missing sig")?).ok_or("sig is not 64 hex digits")?;
    Ok(SignatureHeader {
        key_id,
        timestamp,
        ts_text,
        mac,
    })
}

/// 64 hex digits (either case) → 32 bytes.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The bytes the signature covers, fed to `update` in order.
pub fn signed_parts<'a>(
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    timestamp: &'a str,
    body: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> {
    let query_parts: [&[u8]; 2] = match query {
        Some(q) => [b"?", q.as_bytes()],
        None => [b"", b""],
    };
    [method.as_bytes(), b"\n", path.as_bytes()]
        .into_iter()
        .chain(query_parts)
        .chain([b"\n" as &[u8], timestamp.as_bytes(), b"\n", body])
}
