//! What an attacker's encodings really say: repeated percent-decoding
//! (`..%252f` is `../`), IIS `%uXXXX` escapes, overlong UTF-8 dots and
//! slashes, backslashes, `//`, and `.`/`..` segments.

/// Decoding stops after this many rounds; deeper nesting is left as is.
const MAX_ROUNDS: usize = 8;

fn hex(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(bytes).ok()?, 16).ok()
}

/// One round of `%XX` / `%uXXXX` decoding (and `+` as a space when
/// `plus_is_space`, as in a query).
fn decode_once(text: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let wide = (b == b'%' && matches!(bytes.get(i + 1), Some(b'u' | b'U')))
            .then(|| {
                bytes
                    .get(i + 2..i + 6)
                    .and_then(hex)
                    .and_then(char::from_u32)
            })
            .flatten();
        let narrow = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3).and_then(hex))
            .flatten();
        if let Some(c) = wide {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            i += 6;
        } else if let Some(v) = narrow {
            out.push(v as u8);
            i += 3;
        } else {
            out.push(if b == b'+' && plus_is_space { b' ' } else { b });
            i += 1;
        }
    }
    out
}

/// Overlong UTF-8 forms of `.`, `/` and `\` (`%c0%ae`...) that some servers
/// decode as the ASCII character, then the rest as (lossy) UTF-8.
fn fold_overlong(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let folded = match bytes.get(i..i + 2) {
            Some([0xC0, 0xAE]) => Some(b'.'),
            Some([0xC0, 0xAF]) => Some(b'/'),
            Some([0xC1, 0x9C]) => Some(b'\\'),
            _ => None,
        };
        match folded {
            Some(c) => {
                out.push(c);
                i += 2;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes until nothing changes (at most [`MAX_ROUNDS`] rounds).
pub fn decode(text: &str, plus_is_space: bool) -> String {
    let mut current = text.to_string();
    for _ in 0..MAX_ROUNDS {
        let next = fold_overlong(&decode_once(&current, plus_is_space));
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// A decoded path's segments, with `\` read as `/` and empty segments (`//`)
/// dropped.
fn segments(decoded: &str) -> impl Iterator<Item = &str> {
    decoded.split(['/', '\\']).filter(|s| !s.is_empty())
}

/// A `..` segment, also with a `;` parameter (`..;`, which Tomcat reads as `..`)
/// or trailing spaces and dots that Windows drops.
fn is_parent(segment: &str) -> bool {
    let bare = segment.split(';').next().unwrap_or_default();
    bare.trim_end_matches([' ', '.']).is_empty() && bare.starts_with("..")
}

/// True when a decoded path climbs with a `..` segment.
pub fn has_parent_segment(decoded: &str) -> bool {
    segments(decoded).any(is_parent)
}

/// True when decoded text (a query) holds `../` or `..\`.
pub fn has_parent_reference(decoded: &str) -> bool {
    decoded.contains("../") || decoded.contains("..\\")
}

/// The decoded path with `//` collapsed and `.`/`..` resolved (never above `/`).
pub fn resolve(decoded: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for segment in segments(decoded) {
        match segment {
            "." => {}
            s if is_parent(s) => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let trailing = decoded.ends_with('/') && !stack.is_empty();
    let mut out = format!("/{}", stack.join("/"));
    if trailing {
        out.push('/');
    }
    out
}
