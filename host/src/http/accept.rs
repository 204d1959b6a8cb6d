//! Accepting connections without spinning: a failed accept (typically
//! `EMFILE`, out of file descriptors, which fails again at once until a
//! connection closes) is logged and followed by a pause before the next
//! try. Shared by the proxy listeners and the admin listener.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The pause after a failed accept: long enough not to burn a core while
/// descriptors are exhausted, short enough that clients barely notice.
pub const BACKOFF: Duration = Duration::from_millis(50);

/// A source of connections (a TCP listener; a fake one in tests).
pub trait Accept {
    /// What one accept yields.
    type Connection;
    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send;
}

impl Accept for TcpListener {
    type Connection = (TcpStream, SocketAddr);
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send {
        TcpListener::accept(self)
    }
}

/// The next connection of `listener`; every failed accept is logged (as
/// `what`) and followed by [`BACKOFF`] before the next try.
pub async fn next<L: Accept>(listener: &L, what: &str) -> L::Connection {
    loop {
        match listener.accept().await {
            Ok(connection) => return connection,
            Err(e) => {
                tracing::warn!("{what}: accept failed: {e}");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    /// Fails its first `failures` accepts with `EMFILE`, then yields the
    /// number of the attempt; remembers when each attempt came.
    struct Exhausted {
        failures: usize,
        attempts: Mutex<Vec<Instant>>,
    }

    impl Accept for Exhausted {
        type Connection = usize;
        fn accept(&self) -> impl Future<Output = io::Result<usize>> + Send {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push(Instant::now());
            let (n, failures) = (attempts.len(), self.failures);
            async move {
                match n <= failures {
                    true => Err(io::Error::from_raw_os_error(24)),
                    false => Ok(n),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_failed_accept_is_retried_after_a_pause_not_at_once() {
        let listener = Exhausted {
            failures: 3,
            attempts: Mutex::default(),
        };
        assert_eq!(next(&listener, "test").await, 4, "the fourth try succeeds");
        let attempts = listener.attempts.lock().unwrap();
        assert_eq!(attempts.len(), 4, "one try per failure, no spinning");
        for pair in attempts.windows(2) {
            assert!(pair[1] - pair[0] >= BACKOFF, "{:?}", pair[1] - pair[0]);
        }
    }
}
