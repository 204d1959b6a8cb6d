//! The Proxy-Wasm ABI v0.2.1 as numbers and bytes: statuses, enums, and the
//! header-map serialisation (see `docs/proxy-wasm-abi.md`).

/// `proxy_status_t` values the host returns.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    /// Only for imports no SDK we know of uses: the Rust SDK panics on it.
    pub const UNIMPLEMENTED: i32 = 12;
}

/// WASI errno values the minimal preview1 answers with.
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
}

/// The marker export of each ABI version the host runs, newest first.
pub const VERSION_EXPORTS: [(&str, &str); 2] = [
    ("proxy_abi_version_0_2_1", "0.2.1"),
    ("proxy_abi_version_0_2_0", "0.2.0"),
];

/// `Action` a stream callback returns.
pub const ACTION_PAUSE: i32 = 1;

/// `BufferType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    RequestBody,
    ResponseBody,
    CallResponseBody,
    VmConfiguration,
    PluginConfiguration,
    /// TCP, gRPC and foreign-function buffers: never available here.
    Other,
}

impl Buffer {
    /// The buffer a guest names, `None` for an unknown value.
    pub fn from_abi(value: i32) -> Option<Buffer> {
        Some(match value {
            0 => Buffer::RequestBody,
            1 => Buffer::ResponseBody,
            4 => Buffer::CallResponseBody,
            6 => Buffer::VmConfiguration,
            7 => Buffer::PluginConfiguration,
            2 | 3 | 5 | 8 => Buffer::Other,
            _ => return None,
        })
    }
}

/// `MapType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    CallResponseHeaders,
    CallResponseTrailers,
    /// gRPC metadata: never available here.
    Other,
}

impl Map {
    /// The map a guest names, `None` for an unknown value.
    pub fn from_abi(value: i32) -> Option<Map> {
        Some(match value {
            0 => Map::RequestHeaders,
            1 => Map::RequestTrailers,
            2 => Map::ResponseHeaders,
            3 => Map::ResponseTrailers,
            6 => Map::CallResponseHeaders,
            7 => Map::CallResponseTrailers,
            4 | 5 => Map::Other,
            _ => return None,
        })
    }
}

/// `MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    /// The kind a guest names, `None` for an unknown value.
    pub fn from_abi(value: i32) -> Option<MetricKind> {
        Some(match value {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// A header map as the host keeps it: lower-case names, in order, repeats allowed.
pub type Pairs = Vec<(String, String)>;

/// Serialises `pairs`: a `u32` count, the `u32` lengths of each name and
/// value, then each name and value followed by a NUL, little-endian. An
/// empty map is the 4-byte `0` (the SDK cannot read the 1-byte form).
pub fn encode_map(pairs: &[(String, String)]) -> Vec<u8> {
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Why a serialised map could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    #[error("header map truncated")]
    Truncated,
    #[error("header map entry is not UTF-8")]
    NotUtf8,
}

/// Reads a serialised map; empty input (size 0) is an empty map. Names are
/// lower-cased, as HTTP/2 and the gateway keep them.
pub fn decode_map(bytes: &[u8]) -> Result<Pairs, MapError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, MapError> {
        let b = bytes.get(at..at + 4).ok_or(MapError::Truncated)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let count = word(0)?;
    if count > bytes.len() / 8 {
        return Err(MapError::Truncated);
    }
    let mut data = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let (name_len, value_len) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let mut take = |len: usize| -> Result<String, MapError> {
            let end = data.checked_add(len).ok_or(MapError::Truncated)?;
            let s = bytes.get(data..end).ok_or(MapError::Truncated)?;
            data = end + 1;
            String::from_utf8(s.to_vec()).map_err(|_| MapError::NotUtf8)
        };
        let name = take(name_len)?.to_ascii_lowercase();
        let value = take(value_len)?;
        pairs.push((name, value));
    }
    if data > bytes.len() {
        return Err(MapError::Truncated);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_encode_as_the_spec_example_and_round_trip() {
        let pairs = vec![
            ("a".to_string(), "1".to_string()),
            ("b".into(), "22".into()),
        ];
        let bytes = encode_map(&pairs);
        let expected: Vec<u8> = [
            &[2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0][..],
            b"a\x001\x00b\x0022\x00",
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(decode_map(&bytes).unwrap(), pairs);
    }

    #[test]
    fn an_empty_map_is_four_zero_bytes_and_both_empty_forms_read_back() {
        assert_eq!(encode_map(&[]), vec![0, 0, 0, 0]);
        assert!(decode_map(&[0, 0, 0, 0]).unwrap().is_empty());
        assert!(decode_map(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_truncated_or_lying_map_is_refused() {
        let bytes = encode_map(&[("name".into(), "value".into())]);
        assert_eq!(
            decode_map(&bytes[..bytes.len() - 3]),
            Err(MapError::Truncated)
        );
        assert_eq!(
            decode_map(&[0xff, 0xff, 0xff, 0x7f]),
            Err(MapError::Truncated)
        );
    }
}
