//! What the process reports about itself: log lines on stderr, and — when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set —
//! every job as an OpenTelemetry trace, exported over OTLP/HTTP by `opentelemetry-otlp`.
//!
//! The server notes each job's stages and hands over the whole trace when the job
//! ends ([`jobhost_server::jobs::trace`]). Its spans are already over, with every time
//! known, so they need none of the SDK's live-span machinery (a span object, a context
//! and a send to the batch processor's thread for every span): [`OtlpJobs`] queues the
//! trace (a lock and a push on the job's path), and one task of ours makes the spans
//! as the SDK's [`SpanData`] — ids from the SDK's generator, kept or not by the SDK's
//! sampler for `OTEL_TRACES_SAMPLER` — and hands them in batches to
//! `opentelemetry-otlp`'s exporter, which encodes and sends them. The batching follows the SDK's batch
//! processor and its variables: a batch goes when `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
//! spans (512) are queued or `OTEL_BSP_SCHEDULE_DELAY` ms (5,000) have passed; past
//! `OTEL_BSP_MAX_QUEUE_SIZE` spans (2,048) queued, new traces are dropped and counted.
//! The exporter reads the rest of the standard variables itself
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`, `…_HEADERS`, `…_COMPRESSION`). Unset, nothing of
//! this is built and the server notes no job trace: no cost.
//!
//! Nothing of `tracing` is involved, so a job's path carries no span. The exporter
//! sends through [`TokioHttp`], a hyper client on the server's Tokio runtime: the
//! crate's own clients would bring a second HTTP stack.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jobhost_server::jobs::trace::{JobTrace, TraceSink};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{IdGenerator, SamplingDecision, ShouldSample, SpanData, SpanExporter as _};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The longest an export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`init`] set up; [`Telemetry::shutdown`] sends what is still queued.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<Exporting>,
}

/// The trace queue and the task exporting it.
struct Exporting {
    jobs: Arc<OtlpJobs>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Telemetry {
    /// Where the server sends each job's trace; `None` when traces are not exported.
    pub fn traces(&self) -> Option<Arc<dyn TraceSink>> {
        Some(self.traces.as_ref()?.jobs.clone())
    }

    /// Exports the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        let Some(exporting) = self.traces else { return };
        exporting.stop.cancel();
        if tokio::time::timeout(EXPORT_TIMEOUT, exporting.task).await.is_err() {
            tracing::warn!("the trace exporter did not send its last spans in time");
        }
    }
}

/// Whether the environment names an OTLP endpoint for traces.
pub fn otlp_endpoint_set(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Where job spans go.
#[derive(Debug, Clone)]
pub enum Traces {
    /// Nowhere.
    Off,
    /// To the OTLP endpoint the environment names, if it names one.
    FromEnv,
    /// To this OTLP/HTTP endpoint (`http://host:port`, `/v1/traces` added).
    To(String),
}

/// Log lines on stderr filtered by `JOBHOST_LOG` (else `default`), and job spans
/// exported as `traces` says. Call inside the Tokio runtime.
pub fn init(default: &str, traces: Traces) -> anyhow::Result<Telemetry> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JOBHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    tracing_subscriber::registry().with(logs.with_filter(filter)).init();
    let builder = opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(TokioHttp::default());
    let builder = match traces {
        Traces::To(endpoint) => builder.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/'))),
        Traces::FromEnv if otlp_endpoint_set(|k| std::env::var(k).ok()) => builder,
        Traces::FromEnv | Traces::Off => return Ok(Telemetry { traces: None }),
    };
    let mut exporter = builder.with_timeout(EXPORT_TIMEOUT).build().context("setting up the OTLP trace exporter")?;
    exporter.set_resource(&opentelemetry_sdk::Resource::builder().with_service_name("jobhost").build());
    let batching = Batching::from_env(|k| std::env::var(k).ok());
    // The SDK's own reading of `OTEL_TRACES_SAMPLER` (and `…_ARG`), and its ids.
    let config = opentelemetry_sdk::trace::Config::default();
    let spans = Spans {
        sampler: config.sampler,
        ids: config.id_generator,
        scope: InstrumentationScope::builder("jobhost").build(),
    };
    let jobs = Arc::new(OtlpJobs::new(batching));
    let stop = CancellationToken::new();
    let task = tokio::spawn(export(jobs.clone(), spans, exporter, batching, stop.clone()));
    Ok(Telemetry { traces: Some(Exporting { jobs, stop, task }) })
}

/// When a batch goes, after the SDK's batch processor and its variables.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Batching {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans queued at most.
    max_queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans in one request at most; a batch this
    /// size goes at once.
    max_batch: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`: the longest a queued span waits.
    delay: Duration,
}

impl Batching {
    /// The SDK's defaults, changed by whichever of its variables `var` finds.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> Batching {
        let number = |name: &str, default: u64| {
            var(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|n| *n > 0).unwrap_or(default)
        };
        let max_queue = usize::try_from(number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)).unwrap_or(usize::MAX);
        let max_batch = usize::try_from(number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)).unwrap_or(usize::MAX);
        Batching {
            max_queue,
            // As the SDK does: a batch no larger than the queue.
            max_batch: max_batch.min(max_queue),
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)),
        }
    }
}

/// The job traces waiting for the exporting task. [`TraceSink::export`] runs on a
/// job's path, so it only pushes under a lock, and wakes the task only when a full
/// batch is waiting.
#[derive(Debug)]
struct OtlpJobs {
    queue: Mutex<Queue>,
    /// Woken when the queue holds a full batch.
    full: tokio::sync::Notify,
    max_queue: usize,
    max_batch: usize,
    /// The spans dropped because the queue was full.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    traces: Vec<JobTrace>,
    /// The spans those traces make.
    spans: usize,
}

impl OtlpJobs {
    fn new(batching: Batching) -> OtlpJobs {
        OtlpJobs {
            queue: Mutex::new(Queue::default()),
            full: tokio::sync::Notify::new(),
            max_queue: batching.max_queue,
            max_batch: batching.max_batch,
            dropped: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// All that is queued.
    fn take(&self) -> Vec<JobTrace> {
        let mut queue = self.queue();
        queue.spans = 0;
        std::mem::take(&mut queue.traces)
    }
}

impl TraceSink for OtlpJobs {
    fn export(&self, trace: JobTrace) {
        let spans = 1 + trace.stages.len();
        let mut queue = self.queue();
        if queue.spans + spans > self.max_queue {
            drop(queue);
            if self.dropped.fetch_add(spans as u64, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    "job traces come faster than they are exported: spans are dropped (OTEL_BSP_MAX_QUEUE_SIZE)"
                );
            }
            return;
        }
        queue.traces.push(trace);
        // Once per batch: the push that makes the queue a full batch wakes the task.
        let wake = queue.spans < self.max_batch && queue.spans + spans >= self.max_batch;
        queue.spans += spans;
        drop(queue);
        if wake {
            self.full.notify_one();
        }
    }
}

/// The exporting task: a batch each time one is full or the delay has passed, until
/// `stop`; then what is left, and the exporter is shut down.
async fn export(
    jobs: Arc<OtlpJobs>,
    spans: Spans,
    exporter: opentelemetry_otlp::SpanExporter,
    batching: Batching,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = jobs.full.notified() => false,
            () = tokio::time::sleep(batching.delay) => false,
            () = stop.cancelled() => true,
        };
        let traces = jobs.take();
        for batch in spans.batches(traces, batching.max_batch) {
            match exporter.export(batch).await {
                Ok(()) if failing => {
                    tracing::info!("job traces are exported again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "exporting job traces (spans are dropped until it works again)");
                    failing = true;
                }
                Err(e) => tracing::debug!(error = %e, "exporting job traces"),
            }
        }
        if stopping {
            break;
        }
    }
    let _ = exporter.shutdown();
}

/// Makes a job's spans from its trace: `job`, with `submit`, `claim`, `run` and
/// `finish` as its children, each carrying `job_id`, at the times the server noted.
#[derive(Debug)]
struct Spans {
    sampler: Box<dyn ShouldSample>,
    ids: Box<dyn IdGenerator>,
    scope: InstrumentationScope,
}

impl Spans {
    /// The spans of `traces` the sampler keeps, in batches of at most `max` spans (a
    /// job's spans in one batch).
    fn batches(&self, traces: Vec<JobTrace>, max: usize) -> Vec<Vec<SpanData>> {
        // Sized once: a span is a few hundred bytes, moved again at each regrowth.
        let size = max.min(traces.iter().map(|t| 1 + t.stages.len()).sum());
        let mut batches = Vec::new();
        let mut batch: Vec<SpanData> = Vec::with_capacity(size);
        for trace in traces {
            if !batch.is_empty() && batch.len() + 1 + trace.stages.len() > max {
                batches.push(std::mem::replace(&mut batch, Vec::with_capacity(size)));
            }
            self.of(trace, &mut batch);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        batches
    }

    /// Adds the spans of `trace` to `spans`, if the sampler keeps it.
    fn of(&self, trace: JobTrace, spans: &mut Vec<SpanData>) {
        let trace_id = self.ids.new_trace_id();
        let job_id = KeyValue::new("job_id", Value::String(StringValue::from(Arc::<str>::from(trace.job_id))));
        let mut attributes =
            vec![job_id.clone(), KeyValue::new("plugin", trace.plugin), KeyValue::new("kind", trace.kind)];
        if let Some(status) = trace.status {
            attributes.push(KeyValue::new("status", status.as_str()));
        }
        let sampled = self.sampler.should_sample(None, trace_id, "job", &SpanKind::Internal, &attributes, &[]);
        if sampled.decision != SamplingDecision::RecordAndSample {
            return;
        }
        attributes.extend(sampled.attributes);
        let root = self.ids.new_span_id();
        let state = sampled.trace_state;
        let span = |id: SpanId,
                    parent: SpanId,
                    name: &'static str,
                    start: SystemTime,
                    end: SystemTime,
                    attributes: Vec<KeyValue>| SpanData {
            span_context: SpanContext::new(trace_id, id, TraceFlags::SAMPLED, false, state.clone()),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        };
        spans.push(span(root, SpanId::INVALID, "job", trace.start, trace.end, attributes));
        for stage in trace.stages {
            let mut attributes = vec![job_id.clone()];
            if let Some(attempt) = stage.attempt {
                attributes.push(KeyValue::new("attempt", i64::from(attempt)));
            }
            if let Some(worker) = stage.worker_id {
                attributes.push(KeyValue::new("worker_id", worker));
            }
            if let Some(status) = stage.status {
                attributes.push(KeyValue::new("status", status.as_str()));
            }
            spans.push(span(self.ids.new_span_id(), root, stage.name, stage.start, stage.end, attributes));
        }
    }
}

/// The exporter's HTTP client: see the module docs.
#[derive(Debug, Clone)]
pub struct TokioHttp {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TokioHttp {
    fn default() -> TokioHttp {
        TokioHttp { client: Client::builder(TokioExecutor::new()).build_http() }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for TokioHttp {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let send = async {
            let (parts, body) = request.into_parts();
            let response = self.client.request(http::Request::from_parts(parts, Full::new(body))).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(EXPORT_TIMEOUT, send).await.map_err(|_| "the OTLP endpoint did not answer in time")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_model::JobStatus;
    use jobhost_server::jobs::trace::StageTrace;
    use opentelemetry_sdk::trace::{RandomIdGenerator, Sampler};

    fn trace(id: &str) -> JobTrace {
        let at = |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let stage = |name, start, end| StageTrace {
            name,
            start: at(start),
            end: at(end),
            attempt: None,
            worker_id: None,
            status: None,
        };
        JobTrace {
            job_id: id.into(),
            plugin: "probe".into(),
            kind: "wasm",
            status: Some(JobStatus::Completed),
            start: at(0),
            end: at(40),
            stages: vec![stage("submit", 0, 10), stage("claim", 5, 20), stage("run", 20, 30), stage("finish", 30, 40)],
        }
    }

    fn spans(sampler: Sampler) -> Spans {
        Spans {
            sampler: Box::new(sampler),
            ids: Box::<RandomIdGenerator>::default(),
            scope: InstrumentationScope::builder("jobhost").build(),
        }
    }

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
    }

    #[test]
    fn a_trace_is_a_job_span_and_its_stages_as_children_all_carrying_the_job_id() {
        let mut made = Vec::new();
        spans(Sampler::AlwaysOn).of(trace("job_a"), &mut made);
        let names: Vec<&str> = made.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["job", "submit", "claim", "run", "finish"]);
        let root = &made[0];
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_eq!(attr(root, "status").as_deref(), Some("completed"));
        assert_eq!(attr(root, "plugin").as_deref(), Some("probe"));
        for span in &made {
            assert_eq!(attr(span, "job_id").as_deref(), Some("job_a"), "{}", span.name);
            assert_eq!(span.span_context.trace_id(), root.span_context.trace_id());
            assert!(span.span_context.is_sampled());
        }
        for stage in &made[1..] {
            assert_eq!(stage.parent_span_id, root.span_context.span_id(), "{}", stage.name);
            assert_ne!(stage.span_context.span_id(), root.span_context.span_id());
        }
        assert_eq!((made[3].start_time, made[3].end_time), (trace("x").stages[2].start, trace("x").stages[2].end));
        let mut other = Vec::new();
        spans(Sampler::AlwaysOn).of(trace("job_b"), &mut other);
        assert_ne!(other[0].span_context.trace_id(), root.span_context.trace_id(), "one trace per job");
    }

    #[test]
    fn the_sampler_the_environment_names_decides_per_job() {
        let mut made = Vec::new();
        spans(Sampler::AlwaysOff).of(trace("job_a"), &mut made);
        assert!(made.is_empty());
        let batches =
            spans(Sampler::TraceIdRatioBased(0.5)).batches((0..400).map(|i| trace(&format!("j{i}"))).collect(), 512);
        let kept: usize = batches.iter().map(Vec::len).sum();
        assert_eq!(kept % 5, 0, "a job's spans are kept or dropped together");
        assert!((400..1600).contains(&kept), "about half of 400 jobs' 2,000 spans: {kept}");
    }

    #[test]
    fn batches_hold_at_most_the_batch_size_and_never_split_a_job() {
        let batches = spans(Sampler::AlwaysOn).batches((0..7).map(|i| trace(&format!("j{i}"))).collect(), 12);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 10, 5]);
        assert!(batches.iter().all(|b| b[0].name == "job"));
    }

    #[test]
    fn the_batch_variables_are_the_sdks_with_its_defaults() {
        let none = Batching::from_env(|_| None);
        assert_eq!(none, Batching { max_queue: 2048, max_batch: 512, delay: Duration::from_secs(5) });
        let set = |k: &str| match k {
            "OTEL_BSP_MAX_QUEUE_SIZE" => Some("100".to_owned()),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("500".to_owned()),
            "OTEL_BSP_SCHEDULE_DELAY" => Some(" 100 ".to_owned()),
            _ => None,
        };
        assert_eq!(
            Batching::from_env(set),
            Batching { max_queue: 100, max_batch: 100, delay: Duration::from_millis(100) },
            "a batch is no larger than the queue"
        );
        let bad = |k: &str| (k == "OTEL_BSP_SCHEDULE_DELAY").then(|| "soon".to_owned());
        assert_eq!(Batching::from_env(bad), none);
    }

    #[tokio::test]
    async fn the_queue_wakes_the_exporter_at_a_full_batch_and_drops_past_its_size() {
        let jobs = OtlpJobs::new(Batching { max_queue: 12, max_batch: 10, delay: Duration::from_secs(60) });
        jobs.export(trace("j1"));
        let woken = |jobs: &OtlpJobs| {
            let notified = jobs.full.notified();
            futures::FutureExt::now_or_never(notified).is_some()
        };
        assert!(!woken(&jobs), "half a batch waits");
        jobs.export(trace("j2"));
        assert!(woken(&jobs), "a full batch wakes the task");
        jobs.export(trace("j3"));
        assert_eq!(jobs.dropped.load(Ordering::Relaxed), 5, "a third job's five spans pass the queue's twelve");
        let taken: Vec<String> = jobs.take().into_iter().map(|t| t.job_id).collect();
        assert_eq!(taken, ["j1", "j2"]);
        jobs.export(trace("j4"));
        assert_eq!(jobs.queue().spans, 5, "taken, the queue has room again");
    }

    /// The only test here to set up the process's telemetry (its log subscriber is
    /// global): a trace still queued when the exporter shuts down is sent then, well
    /// before the five seconds a batch may otherwise wait.
    #[tokio::test]
    async fn shutting_down_sends_what_is_queued() {
        let sink = crate::cli::bench_traces::Sink::start().await.unwrap();
        let telemetry = init("warn", Traces::To(format!("http://{}", sink.addr))).unwrap();
        telemetry.traces().unwrap().export(trace("job_a"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sink.requests.load(Ordering::Relaxed), 0, "one job is not a full batch");
        let begun = std::time::Instant::now();
        telemetry.shutdown().await;
        assert!(begun.elapsed() < Duration::from_secs(4));
        assert_eq!(sink.requests.load(Ordering::Relaxed), 1);
        assert!(sink.bytes.load(Ordering::Relaxed) > 5 * 16, "five spans, each with its ids");
    }
}
