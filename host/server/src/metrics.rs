//! What `GET /metrics` shows, in the Prometheus text format (`prometheus-client`):
//! jobs submitted, started and ended by kind (and status), the time from submit to
//! start, how long each claim took and how many jobs it got, the run time, the queue
//! depth and the running jobs (read from the store at each scrape), JSON-RPC calls by
//! method and outcome, file-route requests, log and artifact bytes, the bytes model
//! pulls downloaded, group commits, and this node's heartbeats. One [`Metrics`] per
//! server; the services record into it where the events happen.

use jobhost_model::{Job, JobStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindStatus {
    kind: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    status: String,
}

/// The server's metrics; cheap to clone (one reference count: services and runs clone
/// it per job).
#[derive(Clone)]
pub struct Metrics(Arc<Families>);

/// Every metric, and the registry that renders them.
struct Families {
    registry: Registry,
    submitted: Family<Kind, Counter>,
    started: Family<Kind, Counter>,
    ended: Family<KindStatus, Counter>,
    wait_seconds: Histogram,
    run_seconds: Family<Kind, Histogram>,
    queue_depth: Gauge,
    running: Gauge,
    calls: Family<Call, Counter>,
    routes: Family<Route, Counter>,
    log_bytes: Counter,
    artifact_bytes: Counter,
    pull_bytes: Counter,
    heartbeats: Counter,
    renewals: Counter,
    commit_ops: Histogram,
    commit_seconds: Histogram,
    claim_seconds: Histogram,
    claim_jobs: Histogram,
    connections: Gauge,
    subscriptions: Gauge,
    waits: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Seconds buckets from 1 ms to about 9 minutes.
fn seconds() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 20)
}

impl Metrics {
    /// Every metric, registered, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("jobhost");
        let submitted = Family::<Kind, Counter>::default();
        let started = Family::<Kind, Counter>::default();
        let ended = Family::<KindStatus, Counter>::default();
        let wait_seconds = Histogram::new(seconds());
        let run_seconds = Family::<Kind, Histogram>::new_with_constructor(|| Histogram::new(seconds()));
        let (queue_depth, running) = (Gauge::default(), Gauge::default());
        let calls = Family::<Call, Counter>::default();
        let routes = Family::<Route, Counter>::default();
        let (log_bytes, artifact_bytes, heartbeats) = (Counter::default(), Counter::default(), Counter::default());
        let pull_bytes = Counter::default();
        let renewals = Counter::default();
        let commit_ops = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let claim_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let claim_jobs = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        let (connections, subscriptions, waits) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("connections_open", "Client connections open now (WebSockets included)", connections.clone());
        registry.register("subscriptions_open", "Subscriptions open now", subscriptions.clone());
        registry.register("waits_open", "`jobs.wait` calls over plain HTTP waiting now", waits.clone());
        registry.register("jobs_submitted", "Jobs submitted through this node, by kind", submitted.clone());
        registry.register("jobs_started", "Jobs this node claimed, by kind", started.clone());
        registry.register("jobs_ended", "Jobs that ended on this node, by kind and status", ended.clone());
        registry.register("job_wait_seconds", "Time from submit to claim", wait_seconds.clone());
        registry.register("job_run_seconds", "Time from start to end, by kind", run_seconds.clone());
        registry.register("queue_depth", "Jobs pending and claimable now", queue_depth.clone());
        registry.register("jobs_running", "Jobs starting or running on this node", running.clone());
        registry.register("rpc_requests", "JSON-RPC calls, by method and outcome", calls.clone());
        registry.register("http_requests", "File-route requests, by route and status", routes.clone());
        registry.register("log_bytes", "Bytes of job output recorded", log_bytes.clone());
        registry.register("artifact_bytes", "Bytes of artifacts recorded", artifact_bytes.clone());
        registry.register(
            "pull_bytes",
            "Bytes model pulls downloaded (not those found in the cache)",
            pull_bytes.clone(),
        );
        registry.register("worker_heartbeats", "Heartbeats this node wrote", heartbeats.clone());
        registry.register(
            "rpc_methods_renewed",
            "Times the RPC methods were built afresh for new connections, after many subscriptions ended",
            renewals.clone(),
        );
        registry.register("commit_ops", "Writes carried by each group commit", commit_ops.clone());
        registry.register(
            "commit_seconds",
            "Time of each group commit, first statement to commit on disk",
            commit_seconds.clone(),
        );
        registry.register(
            "claim_seconds",
            "Time from asking the store for jobs to its answer (the claim's statement run, before its commit)",
            claim_seconds.clone(),
        );
        registry.register(
            "claim_jobs",
            "Jobs each claim took (0 when the queue had none that fit)",
            claim_jobs.clone(),
        );
        Metrics(Arc::new(Families {
            registry,
            submitted,
            started,
            ended,
            wait_seconds,
            run_seconds,
            queue_depth,
            running,
            calls,
            routes,
            log_bytes,
            artifact_bytes,
            pull_bytes,
            heartbeats,
            renewals,
            commit_ops,
            commit_seconds,
            claim_seconds,
            claim_jobs,
            connections,
            subscriptions,
            waits,
        }))
    }

    /// Counts what a job's new status says: a submit, a claim or an end.
    pub fn job_moved(&self, job: &Job) {
        // Static labels: this runs on the store's writer for every transition, and
        // allocates nothing.
        let kind = Kind { kind: job.kind.as_str() };
        match job.status {
            JobStatus::Pending if job.attempt == 0 => {
                self.0.submitted.get_or_create(&kind).inc();
            }
            JobStatus::Starting => {
                self.0.started.get_or_create(&kind).inc();
                // Observed as the claim commits: now is when it was claimed.
                if let Some(waited) = between(Some(&job.created_at), Some(&jobhost_model::ids::now())) {
                    self.0.wait_seconds.observe(waited);
                }
            }
            JobStatus::Completed | JobStatus::Failed | JobStatus::TimedOut | JobStatus::Cancelled => {
                self.0.ended.get_or_create(&KindStatus { kind: kind.kind, status: job.status.as_str() }).inc();
                if let Some(ran) = between(job.started_at.as_deref(), job.completed_at.as_deref()) {
                    self.0.run_seconds.get_or_create(&kind).observe(ran);
                }
            }
            _ => {}
        }
    }

    /// Counts a JSON-RPC call of `method` answered with `code` (`ok` or an error kind).
    pub fn call(&self, method: &str, code: &str) {
        self.0.calls.get_or_create(&Call { method: method.to_owned(), code: code.to_owned() }).inc();
    }

    /// Counts a file-route request.
    pub fn route(&self, route: &str, status: u16) {
        self.0.routes.get_or_create(&Route { route: route.to_owned(), status: status.to_string() }).inc();
    }

    /// Counts recorded output bytes.
    pub fn log_bytes(&self, bytes: u64) {
        self.0.log_bytes.inc_by(bytes);
    }

    /// Counts recorded artifact bytes.
    pub fn artifact_bytes(&self, bytes: u64) {
        self.0.artifact_bytes.inc_by(bytes);
    }

    /// Records a group commit of `ops` writes that took `took`.
    pub fn commit(&self, ops: usize, took: std::time::Duration) {
        self.0.commit_ops.observe(ops as f64);
        self.0.commit_seconds.observe(took.as_secs_f64());
    }

    /// Counts a renewal of the RPC methods.
    pub fn renewed(&self) {
        self.0.renewals.inc();
    }

    /// Counts bytes a model pull downloaded.
    pub fn pull_bytes(&self, bytes: u64) {
        self.0.pull_bytes.inc_by(bytes);
    }

    /// Times a claim from now: [`ClaimTimer::claimed`] records it.
    pub fn claim_timer(&self) -> ClaimTimer {
        ClaimTimer {
            seconds: self.0.claim_seconds.clone(),
            jobs: self.0.claim_jobs.clone(),
            asked: std::time::Instant::now(),
        }
    }

    /// Counts a heartbeat.
    pub fn heartbeat(&self) {
        self.0.heartbeats.inc();
    }

    /// One more open connection, for as long as the answer is kept.
    pub fn connection(&self) -> Counted {
        Counted::new(&self.0.connections)
    }

    /// One more `jobs.wait` waiting, for as long as the answer is kept.
    pub fn wait(&self) -> Counted {
        Counted::new(&self.0.waits)
    }

    /// One more open subscription, for as long as the answer is kept.
    pub fn subscription(&self) -> Counted {
        Counted::new(&self.0.subscriptions)
    }

    /// The text exposition, with the gauges set to `queue_depth` and `running`.
    pub fn render(&self, queue_depth: u64, running: u64) -> String {
        self.0.queue_depth.set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.0.running.set(i64::try_from(running).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.0.registry) {
            tracing::error!(error = %e, "encoding the metrics");
        }
        text
    }
}

/// One unit of a gauge of things open now, given back when dropped.
#[derive(Debug)]
pub struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A claim being timed.
#[derive(Debug)]
pub struct ClaimTimer {
    seconds: Histogram,
    jobs: Histogram,
    asked: std::time::Instant,
}

impl ClaimTimer {
    /// The claim was answered with `jobs` jobs.
    pub fn claimed(self, jobs: usize) {
        self.seconds.observe(self.asked.elapsed().as_secs_f64());
        self.jobs.observe(jobs as f64);
    }
}

/// Seconds from `from` to `to` (RFC 3339), when both are known and in order.
fn between(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let (from, to) = (at(from?)?, at(to?)?);
    let ms = (to - from).num_milliseconds();
    (ms >= 0).then(|| ms as f64 / 1000.0)
}
