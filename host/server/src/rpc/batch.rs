//! Batches run their calls concurrently.
//!
//! jsonrpsee runs the calls of a batch one after the other. A `jobs.submit` answers
//! only after its commit, so a batch of 500 submits would wait for 500 commits in a
//! row; run together, they share the store's group commit and the batch costs about
//! one. The answers keep the order of the calls, as JSON-RPC clients expect (the spec
//! allows any order; matching by id still works).
//!
//! It also answers a subscription called over plain HTTP, which jsonrpsee would fail
//! as an internal error: it needs a WebSocket, and the answer says so.

use futures::future::{Either, join_all, ready};
use jsonrpsee::server::middleware::rpc::{Batch, BatchEntry, Notification, Request, RpcServiceT};
use jsonrpsee::server::{BatchResponseBuilder, MethodResponse};

/// The middleware; wraps the service that runs single calls.
#[derive(Debug, Clone)]
pub struct ConcurrentBatch<S> {
    inner: S,
    /// Largest batch answer, bytes.
    max_response_bytes: usize,
}

impl<S> ConcurrentBatch<S> {
    /// Wraps `inner`; a batch's answer may be at most `max_response_bytes`.
    pub fn new(inner: S, max_response_bytes: usize) -> Self {
        ConcurrentBatch { inner, max_response_bytes }
    }
}

impl<S> RpcServiceT for ConcurrentBatch<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            NotificationResponse = MethodResponse,
            BatchResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        match needs_websocket(&request) {
            Some(refusal) => Either::Left(ready(refusal)),
            None => Either::Right(self.inner.call(request)),
        }
    }

    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let inner = self.inner.clone();
        let limit = self.max_response_bytes;
        async move {
            let answers = join_all(batch.into_iter().map(|entry| {
                let inner = inner.clone();
                async move {
                    match entry {
                        Ok(BatchEntry::Call(req)) => match needs_websocket(&req) {
                            Some(refusal) => Some(refusal),
                            None => Some(inner.call(req).await),
                        },
                        Ok(BatchEntry::Notification(n)) => {
                            inner.notification(n).await;
                            None
                        }
                        Err(err) => {
                            let (err, id) = err.into_parts();
                            Some(MethodResponse::error(id, err))
                        }
                    }
                }
            }))
            .await;
            let got_notification = answers.iter().any(Option::is_none);
            let mut response = BatchResponseBuilder::new_with_limit(limit);
            for answer in answers.into_iter().flatten() {
                if let Err(too_big) = response.append(answer) {
                    return too_big;
                }
            }
            // Only notifications: nothing to answer. An empty batch is an invalid
            // request, which `finish` reports.
            if response.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(response.finish())
            }
        }
    }
}

/// The methods that only a WebSocket can serve.
const SUBSCRIPTIONS: &[&str] = &["jobs.subscribe", "jobs.unsubscribe"];

/// The answer to `request` when it calls a subscription over plain HTTP.
fn needs_websocket(request: &Request<'_>) -> Option<MethodResponse> {
    let plain = request.extensions().get::<super::http::PlainHttp>().is_some();
    (plain && SUBSCRIPTIONS.contains(&request.method_name())).then(|| {
        let e = crate::jobs::Error::Unavailable(format!(
            "{} needs a WebSocket: open ws:// on this server and call it there (over HTTP, poll jobs.get or \
             long-poll jobs.wait)",
            request.method_name()
        ));
        MethodResponse::error(request.id(), super::to_rpc_error(e))
    })
}
