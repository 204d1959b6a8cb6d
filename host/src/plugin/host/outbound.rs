//! Plugins' outbound HTTP capability in the gateway: requests to upstreams
//! named in the config, sent concurrently through the shared client.

use crate::http::body::{empty, full};
use crate::plugin::component::bindings::{OutboundRequest, OutboundResponse};
use crate::plugin::Outbound;
use crate::upstream::{send, HttpClient, UpstreamDirectory};
use futures::future::{join_all, BoxFuture};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::Duration;

/// Largest outbound response body handed back to a plugin.
const MAX_OUTBOUND_BODY: usize = 8 * 1024 * 1024;

/// The gateway's [`Outbound`]: only upstreams in the current config are reachable.
pub struct GatewayOutbound {
    pub client: HttpClient,
    pub upstreams: Arc<UpstreamDirectory>,
}

impl GatewayOutbound {
    async fn send_one(&self, request: OutboundRequest) -> Result<OutboundResponse, String> {
        let upstream = self
            .upstreams
            .get(&request.upstream)
            .ok_or_else(|| format!("unknown upstream `{}`", request.upstream))?;
        let mut builder = http::Request::builder()
            .method(request.method.as_str())
            .uri(request.path_and_query.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = request.body.map(full).unwrap_or_else(empty);
        let http_request = builder
            .body(body)
            .map_err(|e| format!("invalid outbound request: {e}"))?;
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()));
        let response = send(&self.client, &upstream, http_request, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_OUTBOUND_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading response from `{}`: {e}", request.upstream))?
            .to_bytes();
        Ok(OutboundResponse {
            status: parts.status.as_u16(),
            headers: crate::http::convert::header_list(&parts.headers),
            body: body.to_vec(),
        })
    }
}

impl Outbound for GatewayOutbound {
    fn send_all(
        &self,
        requests: Vec<OutboundRequest>,
    ) -> BoxFuture<'_, Vec<Result<OutboundResponse, String>>> {
        Box::pin(join_all(requests.into_iter().map(|r| self.send_one(r))))
    }
}
