//! `jwt-auth`: the gateway checks every JWT once, so the services behind it
//! don't have to. A request goes on only with a valid token (signature, `exp`,
//! `nbf`, `iss`, `aud`, required claims) that meets the route's scope and role
//! rules; chosen claims reach the upstream as headers and later plugins as
//! context.
//!
//! ```yaml
//! - name: jwt-auth
//!   config:
//!     keys: [{ kid: main, alg: RS256, pem: "-----BEGIN PUBLIC KEY-----..." }]
//!     jwks_upstream: idp                  # and/or fetched keys, by `kid`
//!     jwks_path: /.well-known/jwks.json
//!     issuer: https://idp.example.com
//!     audience: api
//!     require: { scopes: [read:users], roles: [admin] }
//!     claims_to_headers: { sub: x-user-id }   # a client-sent x-user-id is removed
//!     claims_to_context: { sub: consumer }
//!     cookie: session                         # second place to look for the token
//! ```
//!
//! No or bad token: `401` `{"error": "...", "code": "unauthorized"}` with a
//! `WWW-Authenticate: Bearer ...` challenge; a valid token lacking a scope or
//! role: `403` with `"code": "forbidden"`. See the README for every response.

mod cache;
mod claims;
mod config;
mod jwks;
mod keys;
mod reject;
mod settings;

use claims::Claims;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Header;
use keys::VerifyKey;
use reject::Rejection;
use settings::Settings;
use std::sync::Arc;
use wasmgate_plugin_sdk::prelude::*;

pub use config::Config;

/// The plugin: settings checked at load, plus the fetched-keys cache.
pub struct JwtAuth(Settings);

/// Where the token came from: the upstream gets it as a bearer header either way.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    Header,
    Cookie,
}

/// Why no key verified a token.
enum KeyFailure {
    /// No key carries the token's `kid`.
    UnknownKid,
    /// A key was tried (or none may take this algorithm): the client's fault.
    Refused(Rejection),
}

impl Plugin for JwtAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Settings::new(config).map(JwtAuth)
    }

    /// Only the token's carriers: claim headers are removed, never read.
    fn header_interest(&self) -> Option<Vec<String>> {
        let mut names = vec!["authorization".to_string()];
        if self.0.cookie.is_some() {
            names.push("cookie".into());
        }
        Some(names)
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        match self.authenticate(request) {
            Ok(changes) => RequestAction::Continue(changes),
            Err(rejection) => {
                rejection.log(&request.route);
                RequestAction::Respond(rejection.response(&self.0.realm))
            }
        }
    }
}

impl JwtAuth {
    /// Token → verified claims → route rules → what the upstream and later plugins see.
    fn authenticate(&self, request: &Request) -> Result<RequestChanges, Rejection> {
        let (token, source) = self.token(request).ok_or(Rejection::Missing)?;
        let claims = self.verify(token)?;
        self.authorize(&claims)?;
        Ok(self.forward(&claims, token, source))
    }

    /// The bearer token from `Authorization`, else from the configured cookie.
    fn token<'r>(&self, request: &'r Request) -> Option<(&'r str, Source)> {
        let bearer = request
            .header("authorization")
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        if let Some(token) = bearer {
            return Some((token, Source::Header));
        }
        let cookie = request.cookie(self.0.cookie.as_deref()?)?.trim();
        (!cookie.is_empty()).then_some((cookie, Source::Cookie))
    }

    /// A verified token's claims: remembered from an earlier request with the
    /// same token and key set (time claims re-checked), else fully verified.
    fn verify(&self, token: &str) -> Result<Arc<Claims>, Rejection> {
        let remote = self.0.remote.as_ref();
        // Fetched first, so a due refresh happens even while tokens hit the cache.
        let fetched = remote.map(|r| r.keys());
        let generation = remote.map_or(0, |r| r.generation());
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self.0.cache.get(token, generation, now, self.0.leeway) {
            metrics::counter_add("jwt_auth_verifications", 1, &[("cache", "hit")]);
            return Ok(claims);
        }
        metrics::counter_add("jwt_auth_verifications", 1, &[("cache", "miss")]);
        let fetched_keys = fetched.as_deref().map(Vec::as_slice).unwrap_or_default();
        let claims = Arc::new(self.verify_signature(token, fetched_keys)?);
        let generation = remote.map_or(0, |r| r.generation());
        self.0.cache.insert(token, claims.clone(), generation, now);
        Ok(claims)
    }

    /// Checks the signature with a key bound to the token's algorithm, then
    /// the time, issuer and audience claims.
    fn verify_signature(
        &self,
        token: &str,
        fetched_keys: &[VerifyKey],
    ) -> Result<Claims, Rejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Rejection::Invalid(header_problem(token).into()))?;
        if let Some(allowed) = &self.0.allowed {
            if !allowed.contains(&header.alg) {
                return Err(invalid("token algorithm not allowed"));
            }
        }
        match self.try_keys(token, &header, fetched_keys) {
            Ok(claims) => Ok(claims),
            Err(KeyFailure::Refused(rejection)) => Err(rejection),
            Err(KeyFailure::UnknownKid) => self.verify_after_refetch(token, &header, fetched_keys),
        }
    }

    /// The token names a `kid` nobody has: the identity provider may have
    /// rotated its keys, so fetch them again (rate-limited) and retry once.
    fn verify_after_refetch(
        &self,
        token: &str,
        header: &Header,
        fetched_keys: &[VerifyKey],
    ) -> Result<Claims, Rejection> {
        let Some(remote) = &self.0.remote else {
            return Err(invalid("unknown signing key"));
        };
        let refetched = remote.refetch();
        let keys = refetched.as_deref().map_or(fetched_keys, Vec::as_slice);
        if keys.is_empty() && self.0.keys.is_empty() {
            return Err(Rejection::KeysUnavailable);
        }
        match self.try_keys(token, header, keys) {
            Ok(claims) => Ok(claims),
            Err(KeyFailure::Refused(rejection)) => Err(rejection),
            Err(KeyFailure::UnknownKid) => Err(invalid("unknown signing key")),
        }
    }

    /// Tries every key that fits the token's `kid` and algorithm; the first
    /// that verifies the signature decides the claims' fate.
    fn try_keys(
        &self,
        token: &str,
        header: &Header,
        fetched: &[VerifyKey],
    ) -> Result<Claims, KeyFailure> {
        let kid = header.kid.as_deref();
        let by_kid: Vec<&VerifyKey> = self
            .0
            .keys
            .iter()
            .chain(fetched)
            .filter(|key| key.kid.is_none() || kid.is_none() || key.kid.as_deref() == kid)
            .collect();
        if by_kid.is_empty() {
            return Err(KeyFailure::UnknownKid);
        }
        let fitting: Vec<&&VerifyKey> = by_kid.iter().filter(|k| k.fits(kid, header.alg)).collect();
        if fitting.is_empty() {
            return Err(KeyFailure::Refused(invalid(
                "token algorithm not allowed for its key",
            )));
        }
        let validation = &self.0.validations[&header.alg];
        let mut last = ErrorKind::InvalidSignature;
        for key in fitting {
            match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if is_key_mismatch(e.kind()) => last = e.into_kind(),
                Err(e) => return Err(KeyFailure::Refused(invalid(&describe(e.kind())))),
            }
        }
        Err(KeyFailure::Refused(invalid(&describe(&last))))
    }

    /// Required claims present, then the route's scopes (all) and roles (any).
    fn authorize(&self, claims: &Claims) -> Result<(), Rejection> {
        if let Some(missing) = self
            .0
            .required_claims
            .iter()
            .find(|name| claims::lookup(claims, name).is_none())
        {
            return Err(invalid(&format!("token lacks required claim `{missing}`")));
        }
        self.check_scopes(claims)?;
        self.check_roles(claims)
    }

    fn check_scopes(&self, claims: &Claims) -> Result<(), Rejection> {
        let require = &self.0.require;
        if require.scopes.is_empty() {
            return Ok(());
        }
        let granted = match &require.scopes_claim {
            Some(name) => claims::members(claims, &[name]),
            None => claims::members(claims, &["scope", "scp"]),
        };
        let missing: Vec<String> = require
            .scopes
            .iter()
            .filter(|s| !granted.contains(&s.as_str()))
            .map(|s| format!("`{s}`"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Rejection::Forbidden {
            message: format!("token lacks scope {}", missing.join(", ")),
            scope: Some(require.scopes.join(" ")),
        })
    }

    fn check_roles(&self, claims: &Claims) -> Result<(), Rejection> {
        let require = &self.0.require;
        if require.roles.is_empty() {
            return Ok(());
        }
        let held = claims::members(claims, &[&require.roles_claim]);
        if require.roles.iter().any(|r| held.contains(&r.as_str())) {
            return Ok(());
        }
        Err(Rejection::Forbidden {
            message: format!("token lacks role: one of {}", require.roles.join(", ")),
            scope: None,
        })
    }

    /// Claims into headers (client-sent ones removed first, so none can be
    /// forged) and context; a cookie token becomes a bearer header.
    fn forward(&self, claims: &Claims, token: &str, source: Source) -> RequestChanges {
        let mut changes = RequestChanges::new();
        for (claim, header) in &self.0.to_headers {
            changes = changes.remove_header(header);
            if let Some(value) = claims::lookup(claims, claim).and_then(claims::as_text) {
                changes = changes.set_header(header, &value);
            }
        }
        for (claim, key) in &self.0.to_context {
            if let Some(value) = claims::lookup(claims, claim).and_then(claims::as_text) {
                context::set(key, &value);
            }
        }
        if source == Source::Cookie {
            changes = changes.set_header("authorization", &format!("Bearer {token}"));
        }
        changes
    }
}

fn invalid(message: &str) -> Rejection {
    Rejection::Invalid(message.to_string())
}

/// Errors that mean "not this key": another key with the same `kid` may fit.
fn is_key_mismatch(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
    )
}

/// What the client is told about a token `jsonwebtoken` refused.
fn describe(kind: &ErrorKind) -> String {
    let text = match kind {
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "invalid token issuer",
        ErrorKind::InvalidAudience => "invalid token audience",
        ErrorKind::InvalidAlgorithm => "token algorithm not allowed",
        ErrorKind::MissingRequiredClaim(claim) => {
            return format!("token lacks required claim `{claim}`")
        }
        ErrorKind::InvalidClaimFormat(claim) => return format!("malformed claim `{claim}`"),
        _ => "malformed token",
    };
    text.to_string()
}

/// Why a token's header did not parse: an `alg` we refuse (`none`, unknown)
/// is told apart from plain garbage.
fn header_problem(token: &str) -> &'static str {
    use base64::Engine;
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h.get("alg")?.as_str().map(str::to_string));
    match alg {
        Some(alg) if !keys::ALGORITHMS.iter().any(|a| format!("{a:?}") == alg) => {
            "token algorithm not allowed"
        }
        _ => "malformed token",
    }
}

export_plugin!(JwtAuth);
