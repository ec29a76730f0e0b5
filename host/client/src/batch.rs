//! Batched calls over a WebSocket: many calls in one JSON-RPC batch, and several
//! batches in flight on one connection (the WebSocket client pipelines them). This is
//! how a client with a queue of work submits it without a round trip per job.

use super::{Error, Events, Result};
use jobhost_model::{SubmitRequest, Submitted};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::BatchRequestBuilder;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

impl Events {
    /// `jobs.submit` of every request in one batch (at most the server's batch limit,
    /// 1,000): one result per request, in order.
    pub async fn submit_batch(&self, reqs: &[SubmitRequest]) -> Result<Vec<Result<Submitted>>> {
        let params = reqs.iter().map(submit_params).collect::<Result<Vec<_>>>()?;
        self.batch("jobs.submit", params).await
    }

    /// `method` called once per params object, all in one batch: one result per call,
    /// in order. An error of one call does not fail the others.
    pub async fn batch<T: DeserializeOwned + std::fmt::Debug>(
        &self,
        method: &str,
        params: Vec<Map<String, Value>>,
    ) -> Result<Vec<Result<T>>> {
        let mut batch = BatchRequestBuilder::new();
        for p in params {
            batch.insert(method, p).map_err(|e| Error::Transport(e.to_string()))?;
        }
        let answers = self.ws.batch_request::<T>(batch).await?;
        Ok(answers
            .into_iter()
            .map(|a| a.map_err(|e| Error::from(jsonrpsee::core::ClientError::Call(e.into_owned()))))
            .collect())
    }
}

/// The params of `jobs.submit` for `req`, leaving out what was not set so the server's
/// defaults apply.
pub fn submit_params(req: &SubmitRequest) -> Result<Map<String, Value>> {
    match serde_json::to_value(req).map_err(|e| Error::Transport(e.to_string()))? {
        Value::Object(m) => Ok(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => Err(Error::Transport(format!("a submit request serialized to {other}, not an object"))),
    }
}
