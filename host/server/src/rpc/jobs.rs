//! `jobs.*`: submitting, reading, waiting for, cancelling and cleaning up jobs, and
//! `jobs.subscribe`, their live events over a WebSocket. Submitting, cancelling and
//! cleaning up need `submit`, the rest `read`; what a caller may see of whose jobs is
//! the jobs service's to decide, so these handlers only parse and translate.

use super::api::{Access, Api};
use super::{Context, IdRequest, to_rpc_error};
use crate::auth::Scope;
use crate::jobs::{self, Caller, JobPage, LogPage, SubmitRequest, Submitted};
use jobhost_model::{Job, JobEvent, JobStatus};
use jsonrpsee::server::{PendingSubscriptionSink, SubscriptionCloseResponse, SubscriptionMessage};
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Registers `jobs.submit`, `jobs.get`, `jobs.list`, `jobs.wait`, `jobs.cancel`,
/// `jobs.logs`, `jobs.attempts`, `jobs.cleanup` and the `jobs.subscribe` subscription.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::Scope as Needs;
    use Scope::{Read, Submit};
    api.method::<SubmitRequest, Submitted, _, _>(
        "jobs.submit",
        "Records and queues a job (or returns the live one with the same client_job_id).",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.jobs.submit(&caller, req).await.map_err(to_rpc_error) },
    )?;
    api.method::<IdRequest, Job, _, _>("jobs.get", "One job.", Needs(Read), |req, caller, ctx| async move {
        ctx.jobs.get(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    api.method::<ListRequest, JobPage, _, _>(
        "jobs.list",
        "Jobs, newest first, a page at a time.",
        Needs(Read),
        |req, caller, ctx| async move {
            let filter = jobs::ListFilter { status: req.status, plugin: req.plugin, label: req.label };
            ctx.jobs.list(&caller, filter, req.cursor, req.limit).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<super::Empty, jobhost_model::JobStats, _, _>(
        "jobs.stats",
        "The caller's jobs over the last hour, a minute at a time: submitted, started, ended, queue depth.",
        Needs(Read),
        |_, caller, ctx| async move { ctx.jobs.stats(&caller).await.map_err(to_rpc_error) },
    )?;
    api.method::<WaitRequest, Job, _, _>(
        "jobs.wait",
        "The job once it has ended, or as it is when timeout_s runs out.",
        Needs(Read),
        |req, caller, ctx| async move {
            let timeout = match req.timeout_s {
                None => jobs::DEFAULT_WAIT,
                Some(t) if t.is_finite() && (0.0..=jobs::MAX_WAIT.as_secs_f64()).contains(&t) => {
                    Duration::from_secs_f64(t)
                }
                Some(_) => {
                    return Err(to_rpc_error(jobs::Error::invalid(
                        "timeout_s",
                        format!("must be between 0 and {}", jobs::MAX_WAIT.as_secs()),
                    )));
                }
            };
            ctx.jobs.wait(&caller, &req.id, timeout).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<IdRequest, Job, _, _>(
        "jobs.cancel",
        "Cancels a pending or running job.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.jobs.cancel(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<LogsRequest, LogPage, _, _>(
        "jobs.logs",
        "A page of a job's output chunks.",
        Needs(Read),
        |req, caller, ctx| async move {
            ctx.jobs.logs(&caller, &req.id, req.since_seq.unwrap_or(0), req.limit).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<IdRequest, jobhost_model::AttemptList, _, _>(
        "jobs.attempts",
        "How each ended attempt of a job went (a retried or recovered job has several).",
        Needs(Read),
        |req, caller, ctx| async move {
            let attempts = ctx.jobs.attempts(&caller, &req.id).await.map_err(to_rpc_error)?;
            Ok(jobhost_model::AttemptList { attempts })
        },
    )?;
    api.method::<IdRequest, Job, _, _>(
        "jobs.cleanup",
        "Removes an ended job's files and frees its client_job_id.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.jobs.cleanup(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.subscription::<SubscribeRequest, JobEvent, _, _>(
        "jobs.subscribe",
        "jobs.event",
        "jobs.unsubscribe",
        "Live events (status, progress, log, lagged) of one job, or of all the caller's jobs.",
        Needs(Read),
        |req, caller, pending, ctx| async move { subscribe(req, caller, pending, ctx).await },
    )?;
    Ok(())
}

/// How often an open subscription checks its token again (a revocation through this
/// node is seen at once, one through another node or an expiry within this).
const RECHECK_SUBSCRIPTION: Duration = Duration::from_secs(2);

async fn subscribe(
    req: SubscribeRequest,
    caller: Caller,
    pending: PendingSubscriptionSink,
    ctx: Arc<Context>,
) -> SubscriptionCloseResponse {
    let mut sub = match Box::pin(ctx.jobs.subscribe(&caller, req.id.as_deref())).await {
        Ok(s) => s,
        Err(e) => {
            pending.reject(to_rpc_error(e)).await;
            return SubscriptionCloseResponse::None;
        }
    };
    let Ok(sink) = pending.accept().await else { return SubscriptionCloseResponse::None };
    let mut revoked = ctx.auth.revocations();
    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_SUBSCRIPTION, RECHECK_SUBSCRIPTION);
    loop {
        // A subscription lives no longer than its token: checked again at once after a
        // revocation here, and every few seconds for one elsewhere or an expiry.
        let ev = tokio::select! {
            ev = sub.next() => ev,
            _ = sink.closed() => return SubscriptionCloseResponse::None,
            Ok(()) = revoked.changed() => match Box::pin(token_gone(&ctx, &caller)).await {
                Some(end) => return end,
                None => continue,
            },
            _ = recheck.tick() => match Box::pin(token_gone(&ctx, &caller)).await {
                Some(end) => return end,
                None => continue,
            },
        };
        let Some(ev) = ev else { return SubscriptionCloseResponse::None };
        let Ok(raw) = serde_json::value::to_raw_value(&ev) else { return SubscriptionCloseResponse::None };
        if sink.send(SubscriptionMessage::from(raw)).await.is_err() || sub.ends_with(&ev) {
            return SubscriptionCloseResponse::None;
        }
    }
}

/// How a subscription ends when its token is no longer good: a last notification
/// carrying the `unauthorized` error; `None` while the token is good (or cannot be
/// checked now: the next check will).
async fn token_gone(ctx: &Context, caller: &Caller) -> Option<SubscriptionCloseResponse> {
    let refusal = ctx.auth.recheck(caller).await.ok()?.err()?;
    let error = to_rpc_error(jobs::Error::Unauthorized(format!("{}; the subscription ended", refusal.message())));
    let raw = serde_json::value::to_raw_value(&error).ok()?;
    Some(SubscriptionCloseResponse::NotifErr(jsonrpsee::core::SubscriptionError::from_json(raw)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    /// Only jobs with this status.
    #[serde(default)]
    status: Option<JobStatus>,
    /// Only jobs of this component (or image).
    #[serde(default)]
    plugin: Option<String>,
    /// Only jobs with this label, `key=value`.
    #[serde(default)]
    label: Option<String>,
    /// The last id of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitRequest {
    /// The job's id.
    id: String,
    /// Longest wait, 0–3600 s (default 60).
    #[serde(default)]
    timeout_s: Option<f64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LogsRequest {
    /// The job's id.
    id: String,
    /// First chunk to return, inclusive (default 0).
    #[serde(default)]
    since_seq: Option<u64>,
    /// Page size, 1–1000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    /// One job's events; without it, all of the caller's jobs.
    #[serde(default)]
    id: Option<String>,
}
