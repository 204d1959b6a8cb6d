//! Why a request is refused, and the response that says so: RFC 6750
//! challenges on 401 and 403, the gateway's JSON error body on all.

use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::LogLevel;

/// Why a request does not go on.
#[derive(Debug)]
pub enum Rejection {
    /// No token at all: a bare challenge (RFC 6750 §3.1: no error code).
    Missing,
    /// A token that is malformed, badly signed, expired, from the wrong issuer...
    Invalid(String),
    /// A valid token without what the route requires.
    Forbidden {
        message: String,
        /// The scopes the route needs, for the challenge's `scope` attribute.
        scope: Option<String>,
    },
    /// Keys come only from a JWKS upstream, and none could be fetched yet.
    KeysUnavailable,
}

impl Rejection {
    /// The response the client gets.
    pub fn response(&self, realm: &str) -> Response {
        let challenge = |attrs: &str| format!("Bearer realm=\"{realm}\"{attrs}");
        match self {
            Rejection::Missing => Response::error(401, "unauthorized", "missing bearer token")
                .with_header("www-authenticate", &challenge("")),
            Rejection::Invalid(message) => Response::error(401, "unauthorized", message)
                .with_header(
                    "www-authenticate",
                    &challenge(&format!(
                        ", error=\"invalid_token\", error_description=\"{}\"",
                        quotable(message)
                    )),
                ),
            Rejection::Forbidden { message, scope } => {
                let scope = scope
                    .as_deref()
                    .map(|s| format!(", scope=\"{}\"", quotable(s)))
                    .unwrap_or_default();
                Response::error(403, "forbidden", message).with_header(
                    "www-authenticate",
                    &challenge(&format!(
                        ", error=\"insufficient_scope\", error_description=\"{}\"{scope}",
                        quotable(message)
                    )),
                )
            }
            Rejection::KeysUnavailable => Response::error(
                503,
                "jwks_unavailable",
                "token signing keys are not available yet",
            ),
        }
    }

    /// Logs refusals worth an operator's eye (a missing token is routine).
    pub fn log(&self, route: &str) {
        let (level, message, reason) = match self {
            Rejection::Missing => return,
            Rejection::Invalid(reason) => (LogLevel::Info, "rejected token", reason.as_str()),
            Rejection::Forbidden { message, .. } => {
                (LogLevel::Info, "token lacks permission", message.as_str())
            }
            Rejection::KeysUnavailable => {
                (LogLevel::Warn, "no signing keys to verify with", "jwks")
            }
        };
        log::log(level, message, &[("route", route), ("reason", reason)]);
    }
}

/// Text safe inside an RFC 7230 quoted-string: no quotes, backslashes or controls.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}
