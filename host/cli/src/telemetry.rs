//! What the process reports about itself: log lines on stderr, and — when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set —
//! every job as an OpenTelemetry trace, exported over OTLP/HTTP.
//!
//! The server notes each job's stages and hands over the whole trace when the job
//! ends ([`jobhost_server::jobs::trace`]); [`OtlpJobs`] makes its spans with the
//! OpenTelemetry SDK, with the times noted, and `opentelemetry-otlp` exports them.
//! Nothing of `tracing` is involved, so a job's path carries no span. The exporter
//! reads the rest of the standard variables itself (`OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `…_HEADERS`, `…_COMPRESSION`; the SDK `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`). Unset,
//! nothing of this is built and the server notes no job trace: no cost.
//!
//! The exporter sends through [`TokioHttp`], a hyper client whose requests run on the
//! server's Tokio runtime: the SDK's batch processor exports from a thread of its own,
//! where a client needing a runtime would find none, and the crate's blocking client
//! would bring a second HTTP stack.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jobhost_server::jobs::trace::{JobTrace, TraceSink};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The longest an export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`init`] set up; [`Telemetry::shutdown`] sends what is still buffered.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Where the server sends each job's trace; `None` when traces are not exported.
    pub fn traces(&self) -> Option<Arc<dyn TraceSink>> {
        let provider = self.traces.as_ref()?;
        Some(Arc::new(OtlpJobs { tracer: provider.tracer("jobhost") }))
    }

    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.traces {
            // The SDK's shutdown blocks until its export is done.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "flushing the trace exporter");
            }
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
    let builder = opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(TokioHttp::new());
    let builder = match traces {
        Traces::To(endpoint) => builder.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/'))),
        Traces::FromEnv if otlp_endpoint_set(|k| std::env::var(k).ok()) => builder,
        Traces::FromEnv | Traces::Off => return Ok(Telemetry { traces: None }),
    };
    let exporter = builder.with_timeout(EXPORT_TIMEOUT).build().context("setting up the OTLP trace exporter")?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("jobhost").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    Ok(Telemetry { traces: Some(provider) })
}

/// Makes a job's spans from its trace: `job`, with `submit`, `claim`, `run` and
/// `finish` as its children, each carrying `job_id`, at the times the server noted.
#[derive(Debug)]
struct OtlpJobs {
    tracer: SdkTracer,
}

impl TraceSink for OtlpJobs {
    fn export(&self, trace: JobTrace) {
        let job_id = KeyValue::new("job_id", trace.job_id);
        let mut attributes =
            vec![job_id.clone(), KeyValue::new("plugin", trace.plugin), KeyValue::new("kind", trace.kind)];
        if let Some(status) = trace.status {
            attributes.push(KeyValue::new("status", status.as_str()));
        }
        let root = self
            .tracer
            .span_builder("job")
            .with_start_time(trace.start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &opentelemetry::Context::new());
        let parent = opentelemetry::Context::new().with_span(root);
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
            self.tracer
                .span_builder(stage.name)
                .with_start_time(stage.start)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &parent)
                .end_with_timestamp(stage.end);
        }
        parent.span().end_with_timestamp(trace.end);
    }
}

/// The exporter's HTTP client: see the module docs.
#[derive(Debug, Clone)]
pub struct TokioHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl TokioHttp {
    /// A client running its requests on the current runtime.
    fn new() -> TokioHttp {
        TokioHttp {
            client: Client::builder(TokioExecutor::new()).build_http(),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for TokioHttp {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let send = async move {
            let (parts, body) = request.into_parts();
            let response = client.request(http::Request::from_parts(parts, Full::new(body))).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        // Timed on the runtime too (the timer is made there): the caller's thread has
        // no Tokio timer.
        let sent = self.runtime.spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, send).await });
        sent.await
            .map_err(|e| format!("exporting spans: {e}"))?
            .map_err(|_| "the OTLP endpoint did not answer in time")?
    }
}
