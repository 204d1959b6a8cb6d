//! Conversions between hyper's types and the contract's plain records, and
//! the edits plugins return applied to them.

use crate::plugin::component::bindings::HeaderChanges;
use http::{HeaderMap, HeaderName, HeaderValue};

/// A header map as the contract's ordered list of (lower-case name, value).
/// Values that are not UTF-8 are passed lossily.
pub fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(v) => v.to_string(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// [`header_list`] for a map the chain then keeps editing in step with the
/// list: a value that is not UTF-8 is replaced in the map too by the lossy
/// text the plugins see, so what goes on is exactly what they judged.
///
/// With `only` (the names the chain's plugins read), the list holds just
/// those headers, still in arrival order: no plugin is shown the others, so
/// converting them would be wasted work.
pub fn header_list_in_step(
    headers: &mut HeaderMap,
    only: Option<&[HeaderName]>,
) -> Vec<(String, String)> {
    let capacity = only.map_or(headers.len(), <[HeaderName]>::len);
    let mut list = Vec::with_capacity(capacity);
    for (name, value) in headers.iter_mut() {
        if only.is_some_and(|names| !names.contains(name)) {
            continue;
        }
        let text = match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => text.to_string(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(value.as_bytes()).into_owned();
                if let Ok(replaced) = HeaderValue::from_str(&lossy) {
                    *value = replaced;
                }
                lossy
            }
        };
        list.push((name.as_str().to_string(), text));
    }
    list
}

/// The contract's header list back into a header map; entries that are not
/// valid HTTP, and any beyond what a header map holds, are dropped (a plugin
/// cannot break the framing, nor panic the host). The chain refuses such
/// lists earlier (`plugin::bounds`); this is the last line.
pub fn header_map(list: &[(String, String)]) -> HeaderMap {
    // `with_capacity` and `append` panic past the map's maximum size.
    let mut map = HeaderMap::try_with_capacity(list.len().min(MAX_HEADER_MAP)).unwrap_or_default();
    let mut dropped = 0usize;
    for (name, value) in list {
        let appended = match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => map.try_append(name, value).is_ok(),
            _ => false,
        };
        dropped += usize::from(!appended);
    }
    if dropped > 0 {
        tracing::debug!(dropped, "dropping invalid headers set by a plugin");
    }
    map
}

/// The most entries a header map is given up front (it holds at most 32768).
const MAX_HEADER_MAP: usize = 1 << 12;

/// Applies a plugin's header edits to a header map the same way
/// [`apply_header_changes`] applies them to the list: remove, then set,
/// then append. The chain keeps the request's map in step with the list
/// the plugins see, so the upstream request needs no rebuild from strings.
/// Edits that are not valid HTTP are dropped (the chain has refused them
/// already, see `plugin::bounds`; this is the last line).
pub fn apply_header_changes_to_map(map: &mut HeaderMap, changes: &HeaderChanges) {
    for name in &changes.remove {
        if let Ok(name) = HeaderName::try_from(name.as_str()) {
            map.remove(name);
        }
    }
    // Each name is parsed once (a name outside the standard set allocates),
    // and every `set` name is removed before any value is added.
    let set: Vec<(HeaderName, &str)> = changes.set.iter().filter_map(with_name).collect();
    for (name, _) in &set {
        map.remove(name);
    }
    for (name, value) in set
        .into_iter()
        .chain(changes.append.iter().filter_map(with_name))
    {
        let Ok(value) = HeaderValue::try_from(value) else {
            continue;
        };
        if map.try_append(name, value).is_err() {
            tracing::debug!("dropping a header a plugin set: the map is full");
        }
    }
}

/// A header edit with its name parsed; `None` if the name is not valid HTTP.
fn with_name((name, value): &(String, String)) -> Option<(HeaderName, &str)> {
    HeaderName::try_from(name.as_str())
        .ok()
        .map(|name| (name, value.as_str()))
}

/// Applies a plugin's header edits: remove, then set, then append.
pub fn apply_header_changes(headers: &mut Vec<(String, String)>, changes: HeaderChanges) {
    if !changes.remove.is_empty() || !changes.set.is_empty() {
        headers.retain(|(name, _)| {
            !changes.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
                && !changes
                    .set
                    .iter()
                    .any(|(s, _)| s.eq_ignore_ascii_case(name))
        });
    }
    for (name, value) in changes.set.into_iter().chain(changes.append) {
        headers.push((name.to_ascii_lowercase(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn header_changes_apply_remove_set_append() {
        let mut headers = h(&[("a", "1"), ("b", "2"), ("b", "3"), ("c", "4")]);
        apply_header_changes(
            &mut headers,
            HeaderChanges {
                remove: vec!["A".into()],
                set: h(&[("b", "9")]),
                append: h(&[("C", "5")]),
            },
        );
        assert_eq!(headers, h(&[("c", "4"), ("b", "9"), ("c", "5")]));
    }

    #[test]
    fn the_map_and_the_list_take_the_same_edits() {
        let start = h(&[("a", "1"), ("b", "2"), ("b", "3"), ("c", "4")]);
        let changes = HeaderChanges {
            remove: vec!["A".into()],
            set: h(&[("B", "9")]),
            append: h(&[("c", "5"), ("bad name", "x")]),
        };
        let mut map = header_map(&start);
        apply_header_changes_to_map(&mut map, &changes);
        let mut list = start;
        apply_header_changes(&mut list, changes);
        assert_eq!(map, header_map(&list));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_name_set_twice_keeps_both_values_and_a_bad_value_still_removes_the_old() {
        let start = h(&[("x-two", "old"), ("x-bad", "old"), ("keep", "1")]);
        let changes = HeaderChanges {
            remove: vec![],
            set: h(&[("x-two", "1"), ("X-Two", "2"), ("x-bad", "line\nbreak")]),
            append: vec![],
        };
        let mut map = header_map(&start);
        apply_header_changes_to_map(&mut map, &changes);
        let values: Vec<_> = map.get_all("x-two").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert!(map.get("x-bad").is_none(), "{map:?}");
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_value_that_is_not_utf8_reads_the_same_in_the_map_and_the_list() {
        let mut map = HeaderMap::new();
        map.insert("x-raw", HeaderValue::from_bytes(b"key\xff").unwrap());
        map.insert("x-text", HeaderValue::from_static("plain"));
        let list = header_list_in_step(&mut map, None);
        assert_eq!(list, header_list(&map));
        assert_eq!(map["x-raw"].as_bytes(), "key\u{fffd}".as_bytes());
        assert_eq!(map["x-text"], "plain");
    }

    #[test]
    fn a_narrowed_list_keeps_arrival_order_and_converts_only_the_names_asked_for() {
        let mut map = HeaderMap::new();
        map.append("x-b", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.append("x-b", HeaderValue::from_static("3"));
        map.append("x-other", HeaderValue::from_bytes(b"raw\xff").unwrap());
        let only = [
            HeaderName::from_static("x-a"),
            HeaderName::from_static("x-b"),
        ];
        let list = header_list_in_step(&mut map, Some(&only));
        assert_eq!(list, h(&[("x-b", "1"), ("x-b", "3"), ("x-a", "2")]));
        assert_eq!(
            map["x-other"].as_bytes(),
            b"raw\xff",
            "a header no plugin reads goes on untouched"
        );
    }

    #[test]
    fn invalid_plugin_headers_are_dropped() {
        let map = header_map(&h(&[("ok", "1"), ("bad name", "2"), ("x", "bad\nvalue")]));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn more_headers_than_a_map_holds_are_dropped_not_a_panic() {
        let list: Vec<(String, String)> = (0..100_000)
            .map(|i| (format!("x-h-{i}"), "v".to_string()))
            .collect();
        let map = header_map(&list);
        assert!(map.len() < list.len());
        assert!(map.contains_key("x-h-0"));
    }
}
