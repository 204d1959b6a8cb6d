//! A per-request TCP connect timeout on the shared pooled client.
//!
//! The pool's connector is shared by every route, but each route may want
//! its own connect timeout. The caller sets it for the duration of one
//! request with [`with_connect_timeout`]; the connector reads it when it
//! opens a connection (which it does inside that request's task).

use crate::http::body::BoxError;
use futures::FutureExt;
use http::Uri;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

tokio::task_local! {
    static CONNECT_TIMEOUT: Duration;
}

/// Runs `request` with `timeout` as the connect timeout of any connection it opens.
pub async fn with_connect_timeout<F: Future>(timeout: Duration, request: F) -> F::Output {
    CONNECT_TIMEOUT.scope(timeout, request).await
}

/// Opening the connection took longer than allowed.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub struct ConnectTimeout(pub Duration);

/// Wraps a connector so each connect attempt is bounded by the timeout of
/// the request that caused it, or `default` outside one.
#[derive(Clone, Debug)]
pub struct TimedConnector<C> {
    inner: C,
    default: Duration,
}

impl<C> TimedConnector<C> {
    /// `inner` bounded by `default` unless the request sets its own timeout.
    pub fn new(inner: C, default: Duration) -> Self {
        TimedConnector { inner, default }
    }
}

impl<C> tower_service::Service<Uri> for TimedConnector<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(self.default);
        let connecting = self.inner.call(uri);
        Box::pin(
            tokio::time::timeout(limit, connecting).map(move |result| match result {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(BoxError::from(ConnectTimeout(limit))),
            }),
        )
    }
}

/// Whether `error` (or one of its sources) is a [`ConnectTimeout`].
pub fn is_connect_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<ConnectTimeout>() {
            return true;
        }
        current = e.source();
    }
    false
}
