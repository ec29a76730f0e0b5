//! Files across nodes. Records live in the shared database, files on the node that
//! made them: an artifact on the node that ran the job's last attempt (its
//! `worker_id`), an upload's files on the node it was created through. Any node
//! answers for any job: when the files are on another node, it asks that node at its
//! advertised address (`--advertise`) and passes the answer on. A job that consumes
//! an upload another node holds fetches its files (a tar archive, checked as any
//! archive a client sends) before it starts.
//!
//! Nodes trust each other through a cluster secret (`--cluster-secret-file`), sent in
//! the [`CLUSTER_HEADER`] header, never a user's token: the asking node has checked
//! the user's access already, and the owner serves the file to any node that knows
//! the secret, on the artifact route only. A node that is offline, has no address, or
//! does not answer in time is a clear `unavailable` error naming it, never a hang.

use crate::jobs::{Caller, Error};
use crate::nodes::Nodes;
use crate::uploads::Uploads;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use jobhost_model::{Scope, WorkerStatus};
use std::sync::Arc;
use std::time::Duration;

/// The header a node's request to another node carries the cluster secret in.
pub const CLUSTER_HEADER: &str = "x-jobhost-cluster";

/// How long a node waits for another to connect and start answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The shortest cluster secret accepted.
pub const MIN_SECRET: usize = 32;

/// This node's side of the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    nodes: Nodes,
    secret: Option<Arc<str>>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("secret", &self.secret.as_ref().map(|_| "***")).finish_non_exhaustive()
    }
}

/// An answer of another node, its body streamed.
pub type Answer = http::Response<hyper::body::Incoming>;

impl Cluster {
    /// The cluster of `nodes`, nodes proving themselves with `secret` (none: this node
    /// neither asks others nor answers them).
    pub fn new(nodes: Nodes, secret: Option<String>) -> Cluster {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(ANSWER_WITHIN));
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Cluster { nodes, secret: secret.map(Into::into), client }
    }

    /// The caller a request of another node acts as, when it presents the secret: an
    /// admin that may only read.
    pub fn peer(&self, presented: &str) -> Option<Caller> {
        let secret = self.secret.as_deref()?;
        let same = secret.len() == presented.len()
            && secret.bytes().zip(presented.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then(|| Caller { user_id: "cluster".into(), is_admin: true, scopes: vec![Scope::Read], token_id: None })
    }

    /// Whether `caller` is another node (see [`Cluster::peer`]).
    pub fn is_peer(caller: &Caller) -> bool {
        caller.token_id.is_none() && caller.user_id == "cluster"
    }

    /// Asks node `worker_id` for an artifact of job `job_id`: `GET` (or `HEAD`) of its
    /// artifact route, with `range` (`Range: bytes=first-last`) and `if_none_match`
    /// passed on.
    pub async fn artifact(
        &self,
        worker_id: &str,
        job_id: &str,
        name: &str,
        head: bool,
        range: Option<(u64, u64)>,
        if_none_match: Option<&http::HeaderValue>,
    ) -> Result<Answer, Error> {
        let name = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let path = format!("/jobs/{job_id}/artifacts/{name}");
        let what = format!("the files of job {job_id}");
        let (answer, _) = self
            .ask(worker_id, &what, &path, |mut req| {
                req = req.method(if head { http::Method::HEAD } else { http::Method::GET });
                if let Some((first, last)) = range {
                    req = req.header(http::header::RANGE, format!("bytes={first}-{last}"));
                }
                if let Some(v) = if_none_match {
                    req = req.header(http::header::IF_NONE_MATCH, v);
                }
                req
            })
            .await?;
        Ok(answer)
    }

    /// Brings the files of upload `id` to this node when another node holds them, for
    /// the job here that consumes it; nothing when they are here (or were never
    /// anywhere else).
    pub async fn fetch_upload(&self, uploads: &Uploads, id: &str) -> Result<(), Error> {
        if uploads.files_dir(id).exists() {
            return Ok(());
        }
        let Some(upload) = uploads.record(id).await? else { return Ok(()) };
        let Some(holder) = upload.worker_id.as_deref().filter(|_| !uploads.held_here(&upload)) else { return Ok(()) };
        let what = format!("the files of upload {id}");
        let (answer, peer) = self.ask(holder, &what, &format!("/uploads/{id}/archive"), |req| req).await?;
        if answer.status() != http::StatusCode::OK {
            return Err(Error::Unavailable(format!("{peer} answered {} for {what}", answer.status())));
        }
        // Received into a staged file, then checked and unpacked whole.
        let staged = uploads.stage()?;
        let (file, path) = staged.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut body = answer.into_body();
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.map_err(|e| Error::Unavailable(format!("{peer} broke off sending {what}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                tokio::io::AsyncWriteExt::write_all(&mut file, &data).await.map_err(|e| {
                    tracing::error!(upload_id = id, error = %e, "receiving an upload");
                    Error::Internal("receiving an upload's files failed".into())
                })?;
            }
        }
        drop(file);
        uploads.unpack_copy(id, path).await
    }

    /// Sends node `worker_id` a request for `what` (named in the errors) at `path`,
    /// with the cluster secret and what `build` adds (a `GET` unless it says
    /// otherwise); answers the response and the node as errors name it (`worker <name>
    /// at <address>`).
    async fn ask(
        &self,
        worker_id: &str,
        what: &str,
        path: &str,
        build: impl FnOnce(http::request::Builder) -> http::request::Builder,
    ) -> Result<(Answer, String), Error> {
        let (base, node) = self.address(worker_id, what).await?;
        let Some(secret) = &self.secret else {
            return Err(Error::Unavailable(format!(
                "{what} are on worker {node}, and this node has no --cluster-secret-file to ask it"
            )));
        };
        let uri = format!("{}{path}", base.trim_end_matches('/'));
        let req = build(http::Request::get(&uri).header(CLUSTER_HEADER, &**secret))
            .body(Empty::new())
            .map_err(|e| Error::Internal(format!("a request to {uri}: {e}")))?;
        let peer = format!("worker {node} at {base}");
        match tokio::time::timeout(ANSWER_WITHIN, self.client.request(req)).await {
            Ok(Ok(answer)) => Ok((answer, peer)),
            Ok(Err(e)) => Err(Error::Unavailable(format!("{peer} could not be reached: {e}"))),
            Err(_) => Err(Error::Unavailable(format!("{peer} did not answer within {} s", ANSWER_WITHIN.as_secs()))),
        }
    }

    /// The advertised address and the name of node `worker_id`, if it can be asked for
    /// `what` (named in the errors).
    async fn address(&self, worker_id: &str, what: &str) -> Result<(String, String), Error> {
        let worker =
            self.nodes.list().await?.into_iter().find(|w| w.id == worker_id).ok_or_else(|| {
                Error::Unavailable(format!("{what} are on worker {worker_id}, which is not registered"))
            })?;
        if worker.status == WorkerStatus::Offline {
            return Err(Error::Unavailable(format!(
                "{what} are on worker {} ({worker_id}), which is offline",
                worker.name
            )));
        }
        let base = worker.advertise.ok_or_else(|| {
            Error::Unavailable(format!(
                "{what} are on worker {} ({worker_id}), which has no --advertise address",
                worker.name
            ))
        })?;
        Ok((base, worker.name))
    }
}
