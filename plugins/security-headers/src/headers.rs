//! Each header's config: `false` turns it off, `true` or leaving it out
//! gives the default, anything else is checked and turned into the value.

use serde_json::Value;

/// `Strict-Transport-Security` default: one year, subdomains included.
pub const DEFAULT_HSTS_MAX_AGE: u64 = 31_536_000;
/// What hstspreload.org requires of a preloaded site.
const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;

/// Referrer-Policy values (W3C Referrer Policy §3).
const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// CSP Level 3 directives (plus the still-common deprecated ones), so a
/// typo such as `defualt-src` is refused instead of silently ignored.
const CSP_DIRECTIVES: [&str; 31] = [
    "base-uri",
    "block-all-mixed-content",
    "child-src",
    "connect-src",
    "default-src",
    "fenced-frame-src",
    "font-src",
    "form-action",
    "frame-ancestors",
    "frame-src",
    "img-src",
    "manifest-src",
    "media-src",
    "object-src",
    "prefetch-src",
    "report-to",
    "report-uri",
    "require-trusted-types-for",
    "sandbox",
    "script-src",
    "script-src-attr",
    "script-src-elem",
    "style-src",
    "style-src-attr",
    "style-src-elem",
    "trusted-types",
    "upgrade-insecure-requests",
    "webrtc",
    "worker-src",
    // Deprecated, still sent by older configs.
    "navigate-to",
    "plugin-types",
];

/// How a field was set: off, default, or a value to check.
pub enum Setting<'a> {
    Off,
    Default,
    Given(&'a Value),
}

/// Reads a field: `false` off; absent, `null` or `true` the default.
pub fn setting(value: Option<&Value>) -> Setting<'_> {
    match value {
        Some(Value::Bool(false)) => Setting::Off,
        None | Some(Value::Null) | Some(Value::Bool(true)) => Setting::Default,
        Some(other) => Setting::Given(other),
    }
}

/// `Strict-Transport-Security` from `{max_age_secs, include_subdomains, preload}`.
pub fn hsts(value: &Value) -> Result<String, String> {
    let fields = value
        .as_object()
        .ok_or("hsts: expected false, true or {max_age_secs, include_subdomains, preload}")?;
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["max_age_secs", "include_subdomains", "preload"].contains(&k.as_str()))
    {
        return Err(format!("hsts: unknown field `{unknown}`"));
    }
    let flag = |name: &str, default: bool| match fields.get(name) {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or(format!("hsts.{name}: expected true or false")),
    };
    let max_age = match fields.get("max_age_secs") {
        None => DEFAULT_HSTS_MAX_AGE,
        Some(v) => v
            .as_u64()
            .ok_or("hsts.max_age_secs: expected a whole number of seconds")?,
    };
    let subdomains = flag("include_subdomains", true)?;
    let preload = flag("preload", false)?;
    if preload && (max_age < PRELOAD_MIN_MAX_AGE || !subdomains) {
        return Err(format!(
            "hsts.preload: needs max_age_secs of at least {PRELOAD_MIN_MAX_AGE} and include_subdomains: true"
        ));
    }
    Ok(hsts_value(max_age, subdomains, preload))
}

/// The header value for these settings.
pub fn hsts_value(max_age: u64, subdomains: bool, preload: bool) -> String {
    let mut value = format!("max-age={max_age}");
    if subdomains {
        value.push_str("; includeSubDomains");
    }
    if preload {
        value.push_str("; preload");
    }
    value
}

/// `X-Frame-Options`: only `DENY` or `SAMEORIGIN` (any case).
pub fn frame_options(value: &Value) -> Result<String, String> {
    let text = value.as_str().unwrap_or_default().to_ascii_uppercase();
    match text.as_str() {
        "DENY" | "SAMEORIGIN" => Ok(text),
        t if t.starts_with("ALLOW-FROM") => Err(
            "frame_options: ALLOW-FROM is obsolete and ignored by browsers; use DENY or SAMEORIGIN, or CSP frame-ancestors".into(),
        ),
        _ => Err(format!("frame_options: expected DENY, SAMEORIGIN or false, got {value}")),
    }
}

/// `X-Content-Type-Options`: its only value is `nosniff`.
pub fn content_type_options(value: &Value) -> Result<String, String> {
    match value.as_str() {
        Some(v) if v.eq_ignore_ascii_case("nosniff") => Ok("nosniff".into()),
        _ => Err(format!(
            "content_type_options: expected nosniff, true or false, got {value}"
        )),
    }
}

/// `Referrer-Policy`: one of the eight policies.
pub fn referrer_policy(value: &Value) -> Result<String, String> {
    let text = value.as_str().unwrap_or_default().to_ascii_lowercase();
    if REFERRER_POLICIES.contains(&text.as_str()) {
        Ok(text)
    } else {
        Err(format!(
            "referrer_policy: expected one of {} or false, got {value}",
            REFERRER_POLICIES.join(", ")
        ))
    }
}

/// `Content-Security-Policy`: `;`-separated directives, each a known name,
/// each once, no control characters. Normalised to `a; b` spacing.
pub fn content_security_policy(value: &Value) -> Result<String, String> {
    let text = value
        .as_str()
        .ok_or("content_security_policy: expected a policy string or false")?;
    if text.chars().any(|c| c.is_control()) {
        return Err("content_security_policy: contains a control character".into());
    }
    let mut directives = Vec::new();
    for directive in text.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let name = directive
            .split_ascii_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !CSP_DIRECTIVES.contains(&name.as_str()) {
            return Err(format!(
                "content_security_policy: unknown directive `{name}`"
            ));
        }
        if directives.iter().any(|(n, _): &(String, &str)| *n == name) {
            return Err(format!(
                "content_security_policy: directive `{name}` is given twice (browsers ignore the second)"
            ));
        }
        directives.push((name, directive));
    }
    if directives.is_empty() {
        return Err("content_security_policy: must contain at least one directive".into());
    }
    Ok(directives
        .iter()
        .map(|(_, d)| *d)
        .collect::<Vec<_>>()
        .join("; "))
}

/// The default policy: only same-origin content, no plugins, and framing
/// as `X-Frame-Options` says (not restricted when that header is off).
pub fn default_csp(frame_options: Option<&str>) -> String {
    let base = "default-src 'self'; object-src 'none'; base-uri 'self'";
    match frame_options {
        Some("SAMEORIGIN") => format!("{base}; frame-ancestors 'self'"),
        Some(_) => format!("{base}; frame-ancestors 'none'"),
        None => base.to_string(),
    }
}
