//! The cases file of `wasmgate plugin test`: per case, the plugin config,
//! seeded kv entries and context, fake upstream answers, the request (and
//! upstream response), and what must come out. The format is documented in
//! `docs/plugin-guide.md`; every struct denies unknown fields, and a bad file
//! is reported with its line and what was expected.

use crate::config::yaml_file::{self, YamlFileError, YamlText};
use crate::config::{locate::line_of, FieldPath};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A cases file that could not be read or is not valid.
pub type CasesError = YamlFileError;

/// A whole cases file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// The plugin config of every case that gives none (default `{}`).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// For a Proxy-Wasm filter that expects a plain string: its
    /// configuration verbatim, instead of `config` as JSON text.
    #[serde(default)]
    pub config_text: Option<String>,
    pub cases: Vec<Case>,
}

/// One independent case: a fresh plugin instance, kv store and fakes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// This case's plugin config, replacing the file's.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// This case's `config_text` (Proxy-Wasm filters), replacing the file's.
    #[serde(default)]
    pub config_text: Option<String>,
    /// kv entries present before the first request, by the plugin's keys.
    #[serde(default)]
    pub kv: BTreeMap<String, Scalar>,
    /// Request context entries an earlier plugin of the chain would have set.
    #[serde(default)]
    pub context: BTreeMap<String, Scalar>,
    /// Answers to the plugin's outbound calls, by upstream name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, OneOrList<FakeResponse>>,
    /// A one-request case: the request...
    #[serde(default)]
    pub request: Option<RequestSpec>,
    /// ...the upstream's response, for the response hook...
    #[serde(default)]
    pub response: Option<ResponseSpec>,
    /// ...and what must come out.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// A several-request case (sharing kv): a list of request/response/expect.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Line of the case in the file (filled in after parsing).
    #[serde(skip)]
    pub line: usize,
}

/// One request of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub request: RequestSpec,
    #[serde(default)]
    pub response: Option<ResponseSpec>,
    pub expect: Expect,
}

/// The client request as the plugin receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "default_method")]
    pub method: String,
    /// Path with an optional `?query`.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: Headers,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
    #[serde(default = "default_client_addr")]
    pub client_addr: String,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: default_method(),
            path: default_path(),
            headers: Headers::default(),
            body: None,
            body_json: None,
            client_addr: default_client_addr(),
        }
    }
}

fn default_method() -> String {
    "GET".into()
}

fn default_path() -> String {
    "/".into()
}

fn default_client_addr() -> String {
    "127.0.0.1:40000".into()
}

fn default_status() -> u16 {
    200
}

/// The upstream's response, fed to the response hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: Headers,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
}

/// What a fake upstream answers (to calls whose path-and-query is `path`,
/// or to every call when no `path` is given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeResponse {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: Headers,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
    /// Fail the call with this error instead of answering.
    #[serde(default)]
    pub error: Option<String>,
}

/// A body as text (`body`) or as JSON written in YAML (`body_json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CaseBody<'a> {
    pub text: Option<&'a str>,
    pub json: Option<&'a serde_json::Value>,
}

impl CaseBody<'_> {
    /// The bytes this body stands for, if any.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match (self.text, self.json) {
            (Some(text), _) => Some(text.as_bytes().to_vec()),
            (None, Some(json)) => Some(json.to_string().into_bytes()),
            (None, None) => None,
        }
    }
}

/// Gives each struct with `body`/`body_json` fields a [`CaseBody`] view.
macro_rules! with_body {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The body given, as text or JSON.
            pub fn body(&self) -> CaseBody<'_> {
                CaseBody { text: self.body.as_deref(), json: self.body_json.as_ref() }
            }
        }
    )*};
}

with_body!(
    RequestSpec,
    ResponseSpec,
    FakeResponse,
    ExpectContinue,
    ExpectRespond,
    ExpectResponseChanges,
    ExpectOutbound
);

/// What must come out of one request. Each field given is checked; fields
/// left out are not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The config is refused at init with a message containing this text.
    #[serde(default)]
    pub refused: Option<String>,
    /// The request hook continues, with exactly these edits (those given).
    #[serde(default, rename = "continue")]
    pub continue_: Option<ExpectContinue>,
    /// The request hook answers at once with this response.
    #[serde(default)]
    pub respond: Option<ExpectRespond>,
    /// A hook faults (trap, deadline, memory) with a message containing this text.
    #[serde(default)]
    pub fault: Option<String>,
    /// The response hook's edits (needs `response` and `wants-response`).
    #[serde(default)]
    pub response: Option<ExpectResponseChanges>,
    /// Context entries after the hooks; `null`: absent.
    #[serde(default)]
    pub context: Option<BTreeMap<String, Option<Scalar>>>,
    /// kv entries after the hooks, by the plugin's keys; `null`: absent.
    #[serde(default)]
    pub kv: Option<BTreeMap<String, Option<Scalar>>>,
    /// Every log line of this request, in order.
    #[serde(default)]
    pub logs: Option<Vec<ExpectLog>>,
    /// Every outbound request of this request, in order.
    #[serde(default)]
    pub outbound: Option<Vec<ExpectOutbound>>,
    /// Every metric update of this request, in order.
    #[serde(default)]
    pub metrics: Option<Vec<ExpectMetric>>,
}

/// Expected request edits; each field given must match exactly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectContinue {
    #[serde(default)]
    pub headers: Option<ExpectHeaderChanges>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
}

/// Expected header edits; each list given must match (in any order).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectHeaderChanges {
    #[serde(default)]
    pub set: Option<Headers>,
    #[serde(default)]
    pub append: Option<Headers>,
    #[serde(default)]
    pub remove: Option<Vec<String>>,
}

/// An expected immediate response; `headers` lists headers that must be
/// present (others may be too).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRespond {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: Option<Headers>,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
}

/// Expected response-hook edits; each field given must match exactly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectResponseChanges {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: Option<ExpectHeaderChanges>,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
}

/// An expected log line; `level` and `fields` are checked when given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectLog {
    #[serde(default)]
    pub level: Option<LogLevelName>,
    pub message: String,
    #[serde(default)]
    pub fields: Option<Headers>,
}

/// A log level as written in a cases file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevelName {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// An expected outbound request; each field given is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectOutbound {
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    /// Path and query.
    #[serde(default)]
    pub path: Option<String>,
    /// Headers that must be present.
    #[serde(default)]
    pub headers: Option<Headers>,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON, written in YAML.
    #[serde(default)]
    pub body_json: Option<serde_json::Value>,
}

/// An expected metric update: a `counter`, a `histogram` or a `gauge`
/// (Proxy-Wasm filters) by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectMetric {
    #[serde(default)]
    pub counter: Option<String>,
    #[serde(default)]
    pub histogram: Option<String>,
    #[serde(default)]
    pub gauge: Option<String>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub labels: Option<Headers>,
}

/// A YAML scalar (string, number or boolean) taken as text, so `count: 3`
/// needs no quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// Headers as a YAML map of name to value (or list of values), kept in
/// file order; names are lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to a value or a list of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut headers = Vec::new();
                while let Some((name, values)) = map.next_entry::<String, OneOrList<Scalar>>()? {
                    for value in values.0 {
                        headers.push((name.to_ascii_lowercase(), value.0));
                    }
                }
                Ok(Headers(headers))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// One item or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrList<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrListVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrListVisitor<T> {
            type Value = OneOrList<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(OneOrList)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| OneOrList(vec![t]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(|t| OneOrList(vec![t]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                T::deserialize(de::value::BoolDeserializer::new(v)).map(|t| OneOrList(vec![t]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::new(v)).map(|t| OneOrList(vec![t]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::new(v)).map(|t| OneOrList(vec![t]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(de::value::F64Deserializer::new(v)).map(|t| OneOrList(vec![t]))
            }
        }
        deserializer.deserialize_any(OneOrListVisitor(std::marker::PhantomData))
    }
}

impl Case {
    /// The case's requests: its `steps`, or its single `request`/`expect`.
    pub fn steps(&self) -> Vec<Step> {
        if !self.steps.is_empty() {
            return self.steps.clone();
        }
        vec![Step {
            request: self.request.clone().unwrap_or_default(),
            response: self.response.clone(),
            expect: self.expect.clone().unwrap_or_default(),
        }]
    }

    /// What is wrong with the case beyond its YAML shape, if anything.
    fn problem(&self) -> Option<String> {
        if self.config.is_some() && self.config_text.is_some() {
            return Some(format!(
                "case `{}`: give `config` or `config_text`, not both",
                self.name
            ));
        }
        let single = self.request.is_some() || self.response.is_some() || self.expect.is_some();
        if !self.steps.is_empty() && single {
            return Some(format!(
                "case `{}`: give either `steps` or `request`/`response`/`expect`, not both",
                self.name
            ));
        }
        if self.steps.is_empty() && self.expect.is_none() {
            return Some(format!(
                "case `{}`: missing `expect` (or `steps`): what must come out",
                self.name
            ));
        }
        let steps = self.steps();
        for (i, step) in steps.iter().enumerate() {
            let at = if steps.len() > 1 {
                format!("case `{}`, step {}", self.name, i + 1)
            } else {
                format!("case `{}`", self.name)
            };
            if let Some(problem) = step.problem() {
                return Some(format!("{at}: {problem}"));
            }
            if step.expect.refused.is_some() && i > 0 {
                return Some(format!(
                    "{at}: `refused` can only be expected of a case's first step"
                ));
            }
        }
        None
    }
}

impl Step {
    fn problem(&self) -> Option<String> {
        let e = &self.expect;
        let outcomes = [
            e.refused.is_some(),
            e.continue_.is_some(),
            e.respond.is_some(),
            e.fault.is_some(),
        ];
        if outcomes.iter().filter(|o| **o).count() > 1 {
            return Some(
                "`expect` may give only one of `refused`, `continue`, `respond`, `fault`".into(),
            );
        }
        if e.response.is_some() && self.response.is_none() {
            return Some(
                "`expect.response` needs a `response` (the upstream's) to feed the response hook"
                    .into(),
            );
        }
        let bodies = [
            ("request", self.request.body()),
            (
                "response",
                self.response.as_ref().map(|r| r.body()).unwrap_or_default(),
            ),
            (
                "expect.continue",
                e.continue_.as_ref().map(|c| c.body()).unwrap_or_default(),
            ),
            (
                "expect.respond",
                e.respond.as_ref().map(|r| r.body()).unwrap_or_default(),
            ),
            (
                "expect.response",
                e.response.as_ref().map(|r| r.body()).unwrap_or_default(),
            ),
        ];
        for (place, body) in bodies {
            if body.text.is_some() && body.json.is_some() {
                return Some(format!("`{place}`: give `body` or `body_json`, not both"));
            }
        }
        for metric in e.metrics.iter().flatten() {
            let named = [&metric.counter, &metric.histogram, &metric.gauge];
            if named.iter().filter(|n| n.is_some()).count() != 1 {
                return Some(
                    "each `expect.metrics` entry names exactly one `counter`, `histogram` or `gauge`"
                        .into(),
                );
            }
        }
        None
    }
}

impl CasesFile {
    /// Reads and checks a cases file.
    pub fn load(path: &Path) -> Result<CasesFile, CasesError> {
        let text = yaml_file::read(path)?;
        CasesFile::parse(&text, path)
    }

    /// Parses and checks cases text; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<CasesFile, CasesError> {
        let yaml = YamlText { text, file };
        let mut parsed: CasesFile = yaml.parse()?;
        let cases = FieldPath::root("cases");
        if parsed.config.is_some() && parsed.config_text.is_some() {
            return Err(yaml.invalid(
                &FieldPath::root("config_text"),
                "give `config` or `config_text`, not both".into(),
            ));
        }
        if parsed.cases.is_empty() {
            return Err(yaml.invalid(&cases, "`cases` is empty: give at least one case".into()));
        }
        for (i, case) in parsed.cases.iter_mut().enumerate() {
            case.line = line_of(text, &cases.clone().index(i));
            if let Some(message) = case.problem() {
                return Err(yaml.invalid(&cases.clone().index(i), message));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, case) in parsed.cases.iter().enumerate() {
            if !names.insert(&case.name) {
                return Err(yaml.invalid(
                    &cases.clone().index(i).key("name"),
                    format!("case name `{}` is used twice", case.name),
                ));
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CasesFile, CasesError> {
        CasesFile::parse(text, Path::new("cases.yaml"))
    }

    #[test]
    fn a_full_case_parses_with_defaults() {
        let file = parse(
            "config: { a: 1 }\ncases:\n  - name: one\n    request:\n      headers: { X-A: 1, x-b: [p, q] }\n    expect:\n      respond: { status: 401, body_json: { error: no } }\n  - name: two\n    steps:\n      - expect: { continue: {} }\n",
        )
        .unwrap();
        assert_eq!(file.cases[0].line, 3);
        assert_eq!(file.cases[1].line, 8);
        let step = &file.cases[0].steps()[0];
        assert_eq!(step.request.method, "GET");
        assert_eq!(
            step.request.headers.0,
            [
                ("x-a".into(), "1".into()),
                ("x-b".into(), "p".into()),
                ("x-b".into(), "q".into())
            ]
        );
        assert_eq!(step.expect.respond.as_ref().unwrap().status, Some(401));
    }

    #[test]
    fn unknown_fields_name_the_line_and_what_is_expected() {
        let err = parse("cases:\n  - name: one\n    expect:\n      respnd: { status: 401 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cases.yaml:4:"), "{err}");
        assert!(
            err.contains("unknown field `respnd`, expected one of"),
            "{err}"
        );
    }

    #[test]
    fn contradictions_name_the_case_line() {
        let err = parse("cases:\n  - name: a\n    expect: { continue: {} }\n  - name: b\n    expect: { continue: {}, respond: {} }\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cases.yaml:4: case `b`: `expect` may give only one of `refused`, `continue`, `respond`, `fault`"
        );
        let err = parse("cases:\n  - name: a\n    request: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cases.yaml:2: case `a`: missing `expect`"),
            "{err}"
        );
    }
}
