//! The token bucket as pure arithmetic on a stored state, so the plugin's kv
//! loop stays small and the numbers can be tested natively.
//!
//! Tokens are counted in micro-tokens: refills over a few milliseconds are
//! then exact integers, and no floating point ends up in the stored bytes
//! that `compare-and-swap` compares.

/// Micro-tokens per token.
const MICRO: u128 = 1_000_000;

/// One config's limits: `rate` tokens every `period_ms`, at most `burst` kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rate: u64,
    pub period_ms: u64,
    pub burst: u64,
}

/// The shared state of one bucket: micro-tokens left, and the time (ms since
/// the Unix epoch) they were counted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub micro_tokens: u64,
    pub at_ms: u64,
}

/// What one request gets from a bucket, with the numbers for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until a token is available (0 when allowed).
    pub retry_after_secs: u64,
    /// The state to store when the request is allowed.
    pub next: Bucket,
}

impl Bucket {
    /// The 16 stored bytes: micro-tokens then time, both big-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.micro_tokens.to_be_bytes());
        bytes[8..].copy_from_slice(&self.at_ms.to_be_bytes());
        bytes
    }

    /// Reads [`Bucket::encode`]'s bytes; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Bucket> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (tokens, at) = bytes.split_at(8);
        Some(Bucket {
            micro_tokens: u64::from_be_bytes(tokens.try_into().ok()?),
            at_ms: u64::from_be_bytes(at.try_into().ok()?),
        })
    }
}

impl Limits {
    fn capacity(&self) -> u128 {
        u128::from(self.burst) * MICRO
    }

    /// The bucket at `now_ms`: a missing one starts full; time running
    /// backwards (another instance's clock read) adds nothing.
    fn refilled(&self, bucket: Option<Bucket>, now_ms: u64) -> (u128, u64) {
        let Some(bucket) = bucket else {
            return (self.capacity(), now_ms);
        };
        let elapsed = u128::from(now_ms.saturating_sub(bucket.at_ms));
        let added =
            elapsed.saturating_mul(u128::from(self.rate) * MICRO) / u128::from(self.period_ms);
        let tokens = (u128::from(bucket.micro_tokens) + added).min(self.capacity());
        (tokens, now_ms.max(bucket.at_ms))
    }

    /// Milliseconds for `micro_tokens` to drip in, rounded up.
    fn ms_to_refill(&self, micro_tokens: u128) -> u64 {
        let per = u128::from(self.rate) * MICRO;
        let ms = (micro_tokens * u128::from(self.period_ms)).div_ceil(per);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// Takes one token from `bucket` at `now_ms`, if there is one.
    pub fn take(&self, bucket: Option<Bucket>, now_ms: u64) -> Decision {
        let (mut tokens, at_ms) = self.refilled(bucket, now_ms);
        let allowed = tokens >= MICRO;
        if allowed {
            tokens -= MICRO;
        }
        let retry_after_secs = if allowed {
            0
        } else {
            secs(self.ms_to_refill(MICRO - tokens)).max(1)
        };
        Decision {
            allowed,
            remaining: u64::try_from(tokens / MICRO).unwrap_or(u64::MAX),
            reset_secs: secs(self.ms_to_refill(self.capacity() - tokens)),
            retry_after_secs,
            next: Bucket {
                micro_tokens: u64::try_from(tokens).unwrap_or(u64::MAX),
                at_ms,
            },
        }
    }

    /// How long a stored bucket must live: past a full refill it is
    /// indistinguishable from a missing (full) one. One second of slack.
    pub fn ttl_ms(&self) -> u64 {
        self.ms_to_refill(self.capacity()).saturating_add(1000)
    }
}

fn secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}
