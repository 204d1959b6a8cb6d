//! `security-headers`: puts the browser security headers on every response
//! of a route — `Strict-Transport-Security`, `Content-Security-Policy`,
//! `X-Frame-Options`, `X-Content-Type-Options`, `Referrer-Policy` — with
//! sensible defaults, each configurable or turned off with `false`, each
//! checked at load.
//!
//! ```yaml
//! - name: security-headers     # first in the chain: it then also covers
//!   config:                    # answers of later plugins (401s, 429s...)
//!     hsts: { max_age_secs: 31536000, include_subdomains: true, preload: false }
//!     content_security_policy: "default-src 'self'; img-src 'self' data:"
//!     frame_options: SAMEORIGIN
//!     content_type_options: nosniff
//!     referrer_policy: no-referrer
//!     override_upstream: true  # false: keep a value the upstream already set
//! ```

mod headers;

use headers::{setting, Setting};
use serde::Deserialize;
use serde_json::Value;
use wasmgate_plugin_sdk::prelude::*;

/// The route entry's config. Each header: `false` off, absent or `true` the
/// default, otherwise its value (checked).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub hsts: Option<Value>,
    #[serde(default)]
    pub content_security_policy: Option<Value>,
    /// Send the policy as `Content-Security-Policy-Report-Only` (to try it out).
    #[serde(default)]
    pub content_security_policy_report_only: bool,
    #[serde(default)]
    pub frame_options: Option<Value>,
    #[serde(default)]
    pub content_type_options: Option<Value>,
    #[serde(default)]
    pub referrer_policy: Option<Value>,
    /// Replace what the upstream set (default), or leave its value alone.
    #[serde(default = "default_true")]
    pub override_upstream: bool,
}

fn default_true() -> bool {
    true
}

/// The plugin: the headers to put on each response, computed once.
pub struct SecurityHeaders {
    headers: Vec<(String, String)>,
    override_upstream: bool,
}

impl Plugin for SecurityHeaders {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.content_security_policy_report_only
            && matches!(
                setting(config.content_security_policy.as_ref()),
                Setting::Off
            )
        {
            return Err(
                "content_security_policy_report_only: needs a content_security_policy".into(),
            );
        }
        let headers = headers_for(&config)?;
        Ok(SecurityHeaders {
            headers,
            override_upstream: config.override_upstream,
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: !self.headers.is_empty(),
            wants_response_body: false,
        }
    }

    /// Reads none when it overrides; otherwise only its own names, to see
    /// what the upstream set.
    fn header_interest(&self) -> Option<Vec<String>> {
        let names = match self.override_upstream {
            true => Vec::new(),
            false => self.headers.iter().map(|(n, _)| n.clone()).collect(),
        };
        Some(names)
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        let mut changes = ResponseChanges::new();
        for (name, value) in &self.headers {
            if self.override_upstream || response.header(name).is_none() {
                changes = changes.set_header(name, value);
            }
        }
        changes
    }
}

/// Every enabled header with its value, in a fixed order.
fn headers_for(config: &Config) -> Result<Vec<(String, String)>, String> {
    let frame_options = pick(
        config.frame_options.as_ref(),
        "DENY",
        headers::frame_options,
    )?;
    let csp_default = headers::default_csp(frame_options.as_deref());
    let csp = pick(
        config.content_security_policy.as_ref(),
        &csp_default,
        headers::content_security_policy,
    )?;
    let csp_name = match config.content_security_policy_report_only {
        true => "content-security-policy-report-only",
        false => "content-security-policy",
    };
    let default_hsts = headers::hsts_value(headers::DEFAULT_HSTS_MAX_AGE, true, false);
    let all = [
        (
            "strict-transport-security",
            pick(config.hsts.as_ref(), &default_hsts, headers::hsts)?,
        ),
        (csp_name, csp),
        ("x-frame-options", frame_options),
        (
            "x-content-type-options",
            pick(
                config.content_type_options.as_ref(),
                "nosniff",
                headers::content_type_options,
            )?,
        ),
        (
            "referrer-policy",
            pick(
                config.referrer_policy.as_ref(),
                "strict-origin-when-cross-origin",
                headers::referrer_policy,
            )?,
        ),
    ];
    Ok(all
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value?)))
        .collect())
}

/// A header's value: `None` when off, the default, or the checked value.
fn pick(
    value: Option<&Value>,
    default: &str,
    check: fn(&Value) -> Result<String, String>,
) -> Result<Option<String>, String> {
    match setting(value) {
        Setting::Off => Ok(None),
        Setting::Default => Ok(Some(default.to_string())),
        Setting::Given(value) => check(value).map(Some),
    }
}

export_plugin!(SecurityHeaders);
