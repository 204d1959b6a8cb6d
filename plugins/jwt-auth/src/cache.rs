//! Tokens whose signature this instance already verified.
//!
//! An RS256 or ES256 signature costs about 2 ms inside Wasm (see the README),
//! while a client sends the same token for its whole lifetime. So a token
//! that passed is remembered, by its exact text, with its claims: the next
//! request carrying it skips the signature, but `exp` and `nbf` are checked
//! again every time, and an entry never outlives the key set that verified
//! it (a JWKS fetch starts a new generation). Bounded; one per instance.

use crate::claims::Claims;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Verified tokens → claims, at most `capacity` of them.
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    claims: Arc<Claims>,
    exp: Option<u64>,
    nbf: Option<u64>,
    /// The key set generation that verified the token.
    generation: u64,
}

impl TokenCache {
    /// A cache of `capacity` tokens; 0 turns caching off.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The claims of `token` if it was verified with the current key set and
    /// is inside its time window at `now` (give or take `leeway`).
    pub fn get(&self, token: &str, generation: u64, now: u64, leeway: u64) -> Option<Arc<Claims>> {
        let entries = self.lock();
        let entry = entries.get(token)?;
        let current = entry.generation == generation;
        let not_expired = entry
            .exp
            .is_none_or(|exp| now <= exp.saturating_add(leeway));
        let started = entry
            .nbf
            .is_none_or(|nbf| nbf <= now.saturating_add(leeway));
        (current && not_expired && started).then(|| entry.claims.clone())
    }

    /// Remembers a token that just passed verification.
    pub fn insert(&self, token: &str, claims: Arc<Claims>, generation: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let (Some(exp), Some(nbf)) = (time_claim(&claims, "exp"), time_claim(&claims, "nbf"))
        else {
            return; // a time claim we cannot re-check: never skip its check
        };
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(token) {
            evict(&mut entries, generation, now);
        }
        let entry = Entry {
            exp,
            nbf,
            claims,
            generation,
        };
        entries.insert(token.to_string(), entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A NumericDate claim as `jsonwebtoken` reads it (fractions rounded):
/// `Some(None)` when absent, `None` when present but not a number.
fn time_claim(claims: &Claims, name: &str) -> Option<Option<u64>> {
    match claims.get(name) {
        None => Some(None),
        Some(value) => value
            .as_u64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| *f >= 0.0)
                    .map(|f| f.round() as u64)
            })
            .map(Some),
    }
}

/// Makes room: drops expired and stale entries, else one arbitrary entry.
fn evict(entries: &mut HashMap<String, Entry>, generation: u64, now: u64) {
    let before = entries.len();
    entries.retain(|_, e| e.generation == generation && e.exp.is_none_or(|exp| exp >= now));
    if entries.len() == before {
        if let Some(victim) = entries.keys().next().cloned() {
            entries.remove(&victim);
        }
    }
}
