//! Pattern rules over the normalised path and query: the built-in SQLi and
//! XSS sets, and the operator's own.

use regex_lite::Regex;
use serde::Deserialize;

/// Which part of the request a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The path, decoded and resolved (`/a/./b/../c` is `/a/c`).
    Path,
    /// The query, decoded (`+` as a space).
    Query,
}

impl Part {
    /// The name used in logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Part::Path => "path",
            Part::Query => "query",
        }
    }
}

/// An operator-defined rule as configured.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Names the rule in the 400 answer and the log.
    pub name: String,
    /// A regex (the `regex-lite` syntax); `(?i)` for case-insensitive.
    pub pattern: String,
    /// Where it looks (default: both).
    #[serde(default = "both", rename = "in")]
    pub parts: Vec<Part>,
}

fn both() -> Vec<Part> {
    vec![Part::Path, Part::Query]
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// `sqli.union_select`, or a custom rule's name.
    pub name: String,
    /// The `code` of the 400: `sqli`, `xss` or `blocked` (custom rules).
    pub code: &'static str,
    pattern: Regex,
    parts: Vec<Part>,
}

impl Rule {
    /// True when the rule fires on `text`, which is the request's `part`.
    pub fn matches(&self, part: Part, text: &str) -> bool {
        self.parts.contains(&part) && self.pattern.is_match(text)
    }
}

/// The built-in SQL-injection patterns, by name (without the `sqli.` prefix).
const SQLI: &[(&str, &str)] = &[
    (
        "union_select",
        r"(?i)\bunion(\s|/\*.*?\*/)+((all|distinct)(\s|/\*.*?\*/)+)?select\b",
    ),
    (
        "tautology",
        r#"(?i)['"]\s*(or|and)\s+['"]?\w+['"]?\s*(=|<>|!=|\blike\b)\s*['"]?\w+|\bor\s+1\s*=\s*1\b"#,
    ),
    ("comment", r#"['"]\s*(--|#|/\*)"#),
    (
        "stacked_query",
        r"(?i);\s*(drop|delete|insert|update|alter|create|truncate|exec|execute|shutdown)\s+\w",
    ),
    (
        "time_delay",
        r"(?i)\b(sleep|benchmark|pg_sleep)\s*\(|\bwaitfor\s+delay\b",
    ),
    (
        "schema_probe",
        r"(?i)\binformation_schema\b|\bpg_catalog\b|\bsqlite_master\b|\bsys\.(tables|objects|columns)\b",
    ),
];

/// The built-in cross-site-scripting patterns, by name (without `xss.`).
const XSS: &[(&str, &str)] = &[
    ("script_tag", r"(?i)<\s*/?\s*script\b"),
    ("event_handler", r"(?i)<[^>]*\bon[a-z]+\s*="),
    (
        "javascript_uri",
        r"(?i)\b(javascript|vbscript)\s*:|\bdata\s*:\s*text/html",
    ),
    (
        "embed_tag",
        r"(?i)<\s*(iframe|object|embed|svg|base|meta|link)\b",
    ),
];

/// The names of every built-in pattern rule, for `disable_rules`.
pub fn builtin_names() -> impl Iterator<Item = String> {
    let sqli = SQLI.iter().map(|(n, _)| format!("sqli.{n}"));
    sqli.chain(XSS.iter().map(|(n, _)| format!("xss.{n}")))
}

/// The enabled built-in rules: `code` is the family (`sqli`, `xss`).
pub fn builtin(code: &'static str, disabled: &[String]) -> Vec<Rule> {
    let set = if code == "sqli" { SQLI } else { XSS };
    set.iter()
        .map(|(name, pattern)| (format!("{code}.{name}"), pattern))
        .filter(|(name, _)| !disabled.contains(name))
        .map(|(name, pattern)| Rule {
            name,
            code,
            pattern: Regex::new(pattern).expect("built-in patterns compile"),
            parts: both(),
        })
        .collect()
}

/// Validates and compiles the operator's rules.
pub fn custom(configs: Vec<RuleConfig>) -> Result<Vec<Rule>, String> {
    let mut rules: Vec<Rule> = Vec::with_capacity(configs.len());
    for (i, config) in configs.into_iter().enumerate() {
        let field = format!("rules[{i}]");
        if config.name.is_empty() {
            return Err(format!("{field}.name must not be empty"));
        }
        if rules.iter().any(|r| r.name == config.name) {
            return Err(format!("{field}.name `{}` is used twice", config.name));
        }
        if config.parts.is_empty() {
            return Err(format!("{field}.in must name `path`, `query` or both"));
        }
        let pattern = Regex::new(&config.pattern).map_err(|e| format!("{field}.pattern: {e}"))?;
        rules.push(Rule {
            name: config.name,
            code: "blocked",
            pattern,
            parts: config.parts,
        });
    }
    Ok(rules)
}
