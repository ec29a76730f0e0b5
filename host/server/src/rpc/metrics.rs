//! `--metrics-listen`: `GET /metrics` on a port of its own, without a token, for a
//! Prometheus on the same machine (the main port serves it to admins only). Anything
//! else there is a 404.

use crate::jobs::Jobs;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve_metrics(listener: TcpListener, jobs: Jobs, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let jobs = jobs.clone();
                async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        match jobs.render_metrics().await {
                            Ok(text) => (StatusCode::OK, text),
                            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                        }
                    } else {
                        (StatusCode::NOT_FOUND, "only /metrics is served here\n".to_owned())
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "a metrics connection");
            }
        });
    }
}
