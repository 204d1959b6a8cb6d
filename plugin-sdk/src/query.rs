//! Reading a request's raw query string as a form (`a=1&b=x+y`), the way
//! servers decode it: names and values percent-decoded, `+` as a space. One
//! helper so every plugin agrees on what `?api%5Fkey=…` names.

use crate::template::decode_form;

/// The decoded `(name, value)` pairs of `query`, in order; a pair without
/// `=` has an empty value, and empty pairs are skipped.
pub fn params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_form(name), decode_form(value))
    })
}

/// The decoded value of the first parameter named `name`.
pub fn param(query: &str, name: &str) -> Option<String> {
    params(query).find(|(n, _)| n == name).map(|(_, v)| v)
}

/// `query` without every parameter whose decoded name is `name`; the other
/// pairs keep their original encoding and order.
pub fn without(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|pair| decode_form(pair.split('=').next().unwrap_or_default()) != name)
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_decoded() {
        let query = "a=1&api%5Fkey=abc%21def&x=y+z&flag&&a=2";
        assert_eq!(param(query, "api_key").as_deref(), Some("abc!def"));
        assert_eq!(param(query, "x").as_deref(), Some("y z"));
        assert_eq!(param(query, "flag").as_deref(), Some(""));
        assert_eq!(param(query, "a").as_deref(), Some("1"));
        assert_eq!(param(query, "missing"), None);
    }

    #[test]
    fn without_removes_every_spelling_of_the_name() {
        assert_eq!(
            without("a=1&api_key=k&api%5Fkey=k2&b=%2F", "api_key"),
            "a=1&b=%2F"
        );
        assert_eq!(without("api_key=k", "api_key"), "");
    }
}
