//! Config strings with `${...}` placeholders, split once at load time, and
//! the percent-encoding a rendered value needs before it goes into a URL.
//!
//! Each plugin decides which placeholder names it knows (`parse_var`); this
//! module only scans: `${name}` is a placeholder, `$${` a literal `${`, any
//! other `$` itself.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<V> {
    /// Text copied as it is.
    Literal(String),
    /// A placeholder, as the plugin's `parse_var` understood it.
    Var(V),
}

/// Splits `text` into literals and placeholders; an unterminated
/// placeholder, or a name `parse_var` refuses, is an error naming it.
pub fn parse<V>(
    text: &str,
    mut parse_var: impl FnMut(&str) -> Result<V, String>,
) -> Result<Vec<Segment<V>>, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        literal.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("$${") {
            literal.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in `{text}`"))?;
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Var(parse_var(&after[..end])?));
            rest = &after[end + 1..];
        } else {
            literal.push('$');
            rest = &tail[1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

/// Everything but RFC 3986 unreserved characters.
const NON_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes all but unreserved characters, so a value cannot add
/// path segments, a query or parameters.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, NON_UNRESERVED).to_string()
}

/// Decodes a form-encoded query name or value: `%XX` escapes and `+` as a
/// space; invalid UTF-8 becomes U+FFFD.
pub fn decode_form(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Result<Vec<Segment<String>>, String> {
        parse(text, |name| match name {
            "bad" => Err(format!("unknown placeholder `{name}`")),
            _ => Ok(name.to_string()),
        })
    }

    #[test]
    fn splits_literals_and_placeholders() {
        assert_eq!(
            names("/a/${x}-${y}?$5 $${z}").unwrap(),
            vec![
                Segment::Literal("/a/".into()),
                Segment::Var("x".into()),
                Segment::Literal("-".into()),
                Segment::Var("y".into()),
                Segment::Literal("?$5 ${z}".into()),
            ]
        );
    }

    #[test]
    fn unterminated_and_refused_names_are_errors() {
        assert_eq!(
            names("a ${x").unwrap_err(),
            "unterminated placeholder in `a ${x`"
        );
        assert_eq!(names("${bad}").unwrap_err(), "unknown placeholder `bad`");
    }

    #[test]
    fn encodes_and_decodes() {
        assert_eq!(encode_component("a b/c?d=é~"), "a%20b%2Fc%3Fd%3D%C3%A9~");
        assert_eq!(decode_form("a+b%2Fc%3d%C3%A9%zz"), "a b/c=é%zz");
    }
}
