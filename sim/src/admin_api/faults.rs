//! Faults a test switches on: a request answers 500, hangs past any client timeout, or 401.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// What a matching request gets instead of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 500 Internal Server Error.
    ServerError,
    /// No answer for an hour (a client times out first).
    Hang,
    /// 401 Unauthorized, whatever the credentials.
    Unauthorized,
}

/// A fault for the requests it matches, `times` times (or always).
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub fault: Fault,
    /// `GET`, `POST`… (`None`: any).
    pub method: Option<String>,
    /// The path exactly (`None`: any).
    pub path: Option<String>,
    /// How many matching requests get it (`None`: all).
    pub times: Option<u32>,
}

impl Fault {
    /// This fault for every request.
    pub fn always(self) -> FaultRule {
        FaultRule {
            fault: self,
            method: None,
            path: None,
            times: None,
        }
    }

    /// This fault for the requests with this method and path.
    pub fn on(self, method: &str, path: &str) -> FaultRule {
        FaultRule {
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            ..self.always()
        }
    }
}

impl FaultRule {
    /// Only for the first `n` matching requests.
    pub fn times(mut self, n: u32) -> FaultRule {
        self.times = Some(n);
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| p == path)
            && self.times != Some(0)
    }
}

/// The switched-on faults, shared with the server; counts the requests they hit.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Mutex<(Vec<FaultRule>, u32)>>);

impl Faults {
    pub fn inject(&self, rule: FaultRule) {
        self.0.lock().unwrap().0.push(rule);
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().0.clear();
    }

    /// Requests that got a fault so far.
    pub fn hits(&self) -> u32 {
        self.0.lock().unwrap().1
    }

    fn take(&self, method: &str, path: &str) -> Option<Fault> {
        let mut guard = self.0.lock().unwrap();
        let (rules, hits) = &mut *guard;
        let rule = rules.iter_mut().find(|r| r.matches(method, path))?;
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
        }
        *hits += 1;
        Some(rule.fault)
    }
}

/// Middleware: answers with the first matching fault, else passes the request on.
pub async fn inject(State(faults): State<Faults>, req: Request, next: Next) -> Response {
    match faults.take(req.method().as_str(), req.uri().path()) {
        None => next.run(req).await,
        Some(Fault::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "injected fault").into_response()
        }
        Some(Fault::Unauthorized) => super::auth::unauthorized(),
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::GATEWAY_TIMEOUT, "hung").into_response()
        }
    }
}
