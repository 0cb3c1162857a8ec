//! `--metrics-addr`: `/metrics` (the Prometheus text format of [`Metrics`]) and `/healthz`
//! (200 while a point was stored within `--healthy-within`, else 503, with the reason as text).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::exit::Failure;
use crate::metrics::Metrics;

/// What the endpoints answer from.
pub struct Watched {
    pub metrics: Arc<Metrics>,
    /// `--healthy-within` (changed by a reload).
    pub within: Mutex<Duration>,
    /// When this process started (the reference before any point is stored).
    pub started: SystemTime,
    /// The last failed run's error, until a run succeeds.
    pub last_failure: Mutex<Option<String>>,
}

/// The OpenMetrics content type prometheus-client's text encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's content type.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` and serves the endpoints on a task of their own.
pub async fn serve(addr: SocketAddr, watched: Arc<Watched>) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::usage(format!("--metrics-addr {addr}: cannot listen there: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(watched);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}

/// OpenMetrics to a client that accepts it (Prometheus), else the Prometheus text format.
async fn metrics(State(w): State<Arc<Watched>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        true => ([(header::CONTENT_TYPE, OPENMETRICS)], w.metrics.encode()),
        false => (
            [(header::CONTENT_TYPE, CLASSIC)],
            w.metrics.encode_classic(),
        ),
    }
}

async fn healthz(State(w): State<Arc<Watched>>) -> impl IntoResponse {
    let within = *w.within.lock().unwrap();
    let (healthy, mut why) = w.metrics.health(within, w.started);
    if let Some(failure) = w.last_failure.lock().unwrap().as_deref() {
        why.push_str(&format!("; the last run failed: {failure}"));
    }
    let status = match healthy {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("{why}\n"))
}
