//! Batches run their calls concurrently.
//!
//! jsonrpsee runs the calls of a batch one after the other. A `jobs.submit` answers
//! only after its commit, so a batch of 500 submits would wait for 500 commits in a
//! row; run together, they share the store's group commit and the batch costs about
//! one. The answers keep the order of the calls, as JSON-RPC clients expect (the spec
//! allows any order; matching by id still works).

use futures::future::join_all;
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
        self.inner.call(request)
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
                        Ok(BatchEntry::Call(req)) => Some(inner.call(req).await),
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
