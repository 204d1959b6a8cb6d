//! Where a config value is written: the line of a field found by its path
//! in the YAML document (`routes[1].upstream`), so an error about one route
//! points at that route and never at another whose text merely contains
//! the same words (`name: a` inside `name: admin`).
//!
//! The document is walked with the YAML deserializer itself: the walk
//! follows the path and stops with a marker error on the node it names, and
//! the deserializer stamps that error with the node's position.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A path from the document's root to a field, e.g. `routes[1].upstream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Step>);

impl FieldPath {
    /// The path of a top-level field.
    pub fn root(key: &str) -> FieldPath {
        FieldPath(vec![Step::Key(key.to_string())])
    }

    /// This path, then the mapping key `key`.
    pub fn key(mut self, key: &str) -> FieldPath {
        self.0.push(Step::Key(key.to_string()));
        self
    }

    /// This path, then the sequence index `index`.
    pub fn index(mut self, index: usize) -> FieldPath {
        self.0.push(Step::Index(index));
        self
    }

    /// This path, then all of `rest`.
    pub fn join(mut self, rest: FieldPath) -> FieldPath {
        self.0.extend(rest.0);
        self
    }
}

impl From<&str> for FieldPath {
    /// A path of keys separated by dots (`health_check.path`).
    fn from(keys: &str) -> FieldPath {
        FieldPath(keys.split('.').map(|k| Step::Key(k.to_string())).collect())
    }
}

/// Marks the error the walk stops with on the node it was looking for.
const FOUND: &str = "\u{0}wasmgate: the field looked for\u{0}";

/// The 1-based line of the field at `path` in `text`; when the document
/// does not spell that field out (a default), the line of its nearest
/// written ancestor; line 1 when there is none.
pub fn line_of(text: &str, path: &FieldPath) -> usize {
    (1..=path.0.len())
        .rev()
        .find_map(|len| find(text, &path.0[..len]))
        .unwrap_or(1)
}

/// The line of the node at exactly `path`, if the document has it.
fn find(text: &str, path: &[Step]) -> Option<usize> {
    let error = Walk { path }
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    let location = error.location()?;
    error.to_string().contains(FOUND).then(|| location.line())
}

/// Walks to the node `path` names below the node being deserialized.
struct Walk<'p> {
    path: &'p [Step],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.is_empty() {
            // Whatever the node is, stop on it so the error carries its position.
            true => deserializer.deserialize_any(Stop),
            false => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping or sequence on the path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (Some(Step::Key(wanted)), rest) = (self.path.first(), &self.path[1..]) else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let key = KeyIs {
            wanted,
            last: rest.is_empty(),
        };
        while let Some(matched) = map.next_key_seed(key)? {
            match matched {
                true => map.next_value_seed(Walk { path: rest })?,
                false => map.next_value::<IgnoredAny>().map(drop)?,
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (Some(&Step::Index(wanted)), rest) = (self.path.first(), &self.path[1..]) else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut index = 0;
        loop {
            let more = match index == wanted {
                true => seq.next_element_seed(Walk { path: rest })?,
                false => seq.next_element::<IgnoredAny>()?.map(drop),
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// Reads a mapping key: whether it is `wanted`. When the path ends at that
/// key, stops on it instead (the key's line is the field's).
#[derive(Clone, Copy)]
struct KeyIs<'p> {
    wanted: &'p str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match (key == self.wanted, self.last) {
            (true, true) => Err(E::custom(FOUND)),
            (matched, _) => Ok(matched),
        }
    }
}

/// Fails on any node with the [`FOUND`] marker.
struct Stop;

impl<'de> Visitor<'de> for Stop {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
listeners:
  - address: 127.0.0.1:0
upstreams:
  admin: { targets: ['127.0.0.1:1'] }
  a:
    targets: ['127.0.0.1:2']
routes:
  - name: admin
    upstream: admin
  - name: a
    match: { methods: [GET, PUT] }
    upstream: a
";

    #[test]
    fn finds_keys_indices_and_flow_values_by_path() {
        let at = |path: FieldPath| line_of(DOC, &path);
        assert_eq!(at(FieldPath::root("routes").index(1).key("upstream")), 12);
        assert_eq!(at(FieldPath::root("routes").index(0).key("upstream")), 9);
        assert_eq!(at(FieldPath::root("routes").index(1)), 10);
        assert_eq!(at("upstreams.a".into()), 5);
        assert_eq!(at("upstreams.admin".into()), 4);
        let methods = FieldPath::root("routes")
            .index(1)
            .key("match")
            .key("methods");
        assert_eq!(at(methods.index(1)), 11);
    }

    #[test]
    fn a_field_left_to_its_default_points_at_its_nearest_ancestor() {
        let timeout = FieldPath::from("upstreams.a").key("timeout_ms");
        assert_eq!(line_of(DOC, &timeout), 5);
        assert_eq!(line_of(DOC, &FieldPath::root("limits")), 1);
    }
}
