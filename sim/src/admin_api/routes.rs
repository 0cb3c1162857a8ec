//! The endpoints, with the server's methods, bodies and status codes (docs/FORMAT.md, "Node
//! admin API (modelled)", cites the server's source for each).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::controlled_scavenge::{AutoScavenge, Refused, ScavengeStatus};
use crate::ScavengeControl;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub control: ScavengeControl,
    /// `/info`'s `state` (the node's role, lower case: `leader`, `follower`, `readonlyreplica`).
    pub role: Arc<Mutex<String>>,
    pub version: String,
    /// Whether the auto-scavenge plugin is enabled (else its endpoints answer 503).
    pub auto_enabled: bool,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/admin/scavenge", post(start_scavenge))
        .route(
            "/admin/scavenge/current",
            get(current_scavenge).delete(stop_current),
        )
        .route("/admin/scavenge/last", get(last_scavenge))
        .route("/admin/scavenge/{id}", delete(stop_scavenge))
        .route("/auto-scavenge/enabled", get(auto_enabled))
        .route("/auto-scavenge/status", get(auto_status))
        .route("/auto-scavenge/pause", post(auto_pause))
        .route("/auto-scavenge/resume", post(auto_resume))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .with_state(api)
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        body.to_string(),
    )
        .into_response()
}

fn link(id: &str) -> String {
    format!("/admin/scavenge/{id}")
}

async fn start_scavenge(State(api): State<Api>) -> Response {
    match api.control.start() {
        Ok(id) => Json(json!({ "scavengeId": id })).into_response(),
        Err(_) => text(StatusCode::BAD_REQUEST, "Scavenge is already running"),
    }
}

/// `DELETE /admin/scavenge/current` (its own route beside `GET`'s).
async fn stop_current(state: State<Api>) -> Response {
    stop_scavenge(state, Path("current".to_string())).await
}

/// Answers once the scavenge stopped (between chunks), as the server does.
async fn stop_scavenge(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let id = match api.control.request_stop(&id) {
        Ok(id) => id,
        Err(Refused::NotFound | Refused::AlreadyRunning(_)) => {
            return text(StatusCode::NOT_FOUND, "Scavenge Id does not exist")
        }
    };
    for _ in 0..30_000 {
        if api.control.state().status != ScavengeStatus::Stopping {
            return Json(Value::String(id)).into_response();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the simulated node did not step (is it running live?)",
    )
}

async fn current_scavenge(State(api): State<Api>) -> Response {
    let s = api.control.state();
    let running = matches!(s.status, ScavengeStatus::Running | ScavengeStatus::Stopping);
    let id = s.id.filter(|_| running).unwrap_or_default();
    let link = if id.is_empty() {
        String::new()
    } else {
        link(&id)
    };
    Json(json!({ "scavengeId": id, "scavengeLink": link })).into_response()
}

async fn last_scavenge(State(api): State<Api>) -> Response {
    let s = api.control.state();
    let result = match s.status {
        ScavengeStatus::Idle => "Unknown",
        ScavengeStatus::Running | ScavengeStatus::Stopping => "InProgress",
        ScavengeStatus::Stopped => "Stopped",
        ScavengeStatus::Completed => "Success",
    };
    let id =
        s.id.unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
    let link = if s.status == ScavengeStatus::Idle {
        String::new()
    } else {
        link(&id)
    };
    Json(json!({ "scavengeId": id, "scavengeLink": link, "scavengeResult": result }))
        .into_response()
}

fn not_enabled() -> Response {
    let body = json!({ "title": "AutoScavenge is not enabled", "status": 503 });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn auto_enabled(State(api): State<Api>) -> Response {
    Json(json!({ "enabled": api.auto_enabled })).into_response()
}

async fn auto_status(State(api): State<Api>) -> Response {
    if !api.auto_enabled {
        return not_enabled();
    }
    let state = api.control.auto_scavenge();
    let configured = state != AutoScavenge::NotConfigured;
    let next = match state {
        AutoScavenge::NotConfigured => Value::Null,
        AutoScavenge::InProgress | AutoScavenge::Pausing => json!("00:00:00"),
        _ => json!("1.00:00:00"),
    };
    Json(json!({
        "state": state.name(),
        "schedule": if configured { json!("0 0 * * *") } else { Value::Null },
        "timeUntilNextCycle": next,
    }))
    .into_response()
}

async fn auto_pause(State(api): State<Api>) -> Response {
    if !api.auto_enabled {
        return not_enabled();
    }
    if api.control.pause_auto_scavenge() {
        Json(json!({})).into_response()
    } else {
        StatusCode::ACCEPTED.into_response()
    }
}

async fn auto_resume(State(api): State<Api>) -> Response {
    if !api.auto_enabled {
        return not_enabled();
    }
    match api.control.resume_auto_scavenge() {
        Ok(()) => Json(json!({})).into_response(),
        Err(reason) => {
            (StatusCode::BAD_REQUEST, Json(Value::String(reason.into()))).into_response()
        }
    }
}

async fn info(State(api): State<Api>) -> Response {
    let role = api.role.lock().unwrap().clone();
    Json(json!({
        "dbVersion": api.version,
        "esVersion": api.version,
        "state": role,
        "features": { "projections": false, "userManagement": true, "atomPub": true },
        "authentication": { "type": "internal", "properties": {} },
    }))
    .into_response()
}

/// The checkpoints the server's default metrics configuration exports, in Prometheus text.
async fn metrics(State(api): State<Api>) -> Response {
    let cps = api.control.checkpoints();
    let mut out = String::from("# TYPE kurrentdb_checkpoints gauge\n");
    for (name, value) in [
        ("writer", cps.writer),
        ("index", cps.chaser),
        ("replication", cps.writer),
    ] {
        out.push_str(&format!(
            "kurrentdb_checkpoints{{name=\"{name}\",read=\"non-flushed\"}} {value}\n"
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
