//! Outbound HTTP (`wasi:http/outgoing-handler`) with a per-job allowlist of hosts.
//!
//! Every component is linked with `wasi:http`, so a guest that imports it installs and
//! runs; what it may reach is decided per request here. A job's allowlist is empty
//! unless the host grants one (only the built-in model puller gets one: the hub and its
//! file hosts), so an ordinary job's request fails inside the guest with the WASI error
//! `HTTP-request-denied` and the host logs the attempt. Redirects are not followed by
//! the host: the guest sees the 3xx and follows it itself, so every hop comes back here
//! and is checked on its own.
//!
//! A credential for one host (the hub's token) is added by the host to requests to that
//! host only; the guest never sees it and cannot send it anywhere else.

use http_body_util::BodyExt;
use jobhost_model::HttpGrant;
use std::future::Future;
use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// The hooks of one job's `wasi:http`: the allowlist check and the credential.
pub(super) struct JobHttpHooks {
    pub(super) job_id: String,
    pub(super) grant: Arc<HttpGrant>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for JobHttpHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let Some(authority) = uri.authority().cloned() else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.grant.allows(&host, port) {
            tracing::warn!(
                job_id = self.job_id,
                host,
                port,
                "outbound HTTP denied: the host is not on the job's allowlist"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if let Some((for_authority, value)) = &self.grant.authorization
            && authority.as_str().eq_ignore_ascii_case(for_authority)
            && let Ok(value) = http::HeaderValue::from_str(value)
        {
            request.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        tracing::debug!(job_id = self.job_id, %uri, "outbound HTTP");
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let response = response.map(BodyExt::boxed_unsync);
            Ok((response, Box::new(io) as Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_hosts_and_ports() {
        let grant = HttpGrant {
            allow_hosts: vec!["huggingface.co".into(), "127.0.0.2:8080".into(), "CDN.Example".into()],
            authorization: None,
        };
        assert!(grant.allows("huggingface.co", 443));
        assert!(grant.allows("huggingface.co", 80));
        assert!(grant.allows("127.0.0.2", 8080));
        assert!(!grant.allows("127.0.0.2", 8081));
        assert!(grant.allows("cdn.example", 443));
        assert!(!grant.allows("evil.huggingface.co.example", 443));
        assert!(!HttpGrant::default().allows("127.0.0.1", 80));
    }
}
