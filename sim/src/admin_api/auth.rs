//! HTTP basic authentication: one user; `/info` also answers anonymous requests (the server's
//! policy lets clients read it before logging in), but wrong credentials get 401 everywhere.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The user and password the API accepts.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"ESDB\"")],
        "Unauthorized",
    )
        .into_response()
}

/// The `user:password` of a basic `Authorization` header.
fn basic(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Middleware: 401 unless the request carries the right credentials (or none, for `/info`).
pub async fn require(State(creds): State<Credentials>, req: Request, next: Next) -> Response {
    match basic(&req) {
        Some((u, p)) if u == creds.user && p == creds.password => next.run(req).await,
        None if req.uri().path() == "/info"
            && !req.headers().contains_key(header::AUTHORIZATION) =>
        {
            next.run(req).await
        }
        _ => unauthorized(),
    }
}
