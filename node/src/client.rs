//! [`NodeClient`]: typed calls of the node's admin API over HTTPS with basic auth.

use std::error::Error as _;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{
    AutoScavengeState, NodeInfo, PauseOutcome, ResumeOutcome, StartOutcome, StopOutcome,
};
use crate::{NodeError, NodeSettings};

/// A client of one node's admin API.
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    settings: NodeSettings,
    base: String,
}

/// An answer: its status and body, and the URL asked.
struct Answer {
    status: StatusCode,
    body: String,
    url: String,
    method: Method,
}

impl Answer {
    fn unexpected(self) -> NodeError {
        NodeError::Status {
            method: self.method.to_string(),
            url: self.url,
            status: self.status.as_u16(),
            body: first_line(&self.body),
        }
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, NodeError> {
        serde_json::from_str(&self.body).map_err(|e| NodeError::BadBody {
            url: self.url.clone(),
            reason: format!("{e} in {:?}", first_line(&self.body)),
        })
    }
}

fn first_line(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    let mut line: String = line.chars().take(200).collect();
    if line.is_empty() {
        line = "(no body)".into();
    }
    line
}

impl NodeClient {
    /// A client for `settings` (reads the CA file, if any).
    pub fn new(settings: NodeSettings) -> Result<NodeClient, NodeError> {
        let parsed = reqwest::Url::parse(&settings.url).map_err(|e| NodeError::BadUrl {
            url: settings.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(NodeError::BadUrl {
                url: settings.url.clone(),
                reason: "not an http:// or https:// address of a host".into(),
            });
        }
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        if let Some(path) = &settings.ca_file {
            let ca_error = |reason: String| NodeError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_error(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| NodeError::BadUrl {
            url: settings.url.clone(),
            reason: format!("cannot set up HTTP: {e}"),
        })?;
        let base = settings.url.trim_end_matches('/').to_string();
        Ok(NodeClient {
            http,
            settings,
            base,
        })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// Sends one request; transport failures and 401 become their errors.
    async fn send(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<Answer, NodeError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.settings.user, Some(&self.settings.password.0));
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let waited = timeout.unwrap_or(self.settings.timeout);
        let fail = |e: reqwest::Error| self.transport_error(&url, waited, e);
        let response = request.send().await.map_err(fail)?;
        let status = response.status();
        let body = response.text().await.map_err(fail)?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(NodeError::Unauthorized {
                url,
                user: self.settings.user.clone(),
            });
        }
        Ok(Answer {
            status,
            body,
            url,
            method,
        })
    }

    async fn get(&self, path: &str) -> Result<Answer, NodeError> {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str) -> Result<Answer, NodeError> {
        self.send(Method::POST, path, None).await
    }

    fn transport_error(&self, url: &str, waited: Duration, e: reqwest::Error) -> NodeError {
        let url = url.to_string();
        if e.is_timeout() {
            return NodeError::Timeout {
                url,
                timeout: waited,
            };
        }
        let mut reason = e.to_string();
        let mut tls = None;
        let mut source = e.source();
        while let Some(s) = source {
            reason = s.to_string();
            if let Some(r) = s.downcast_ref::<rustls::Error>() {
                tls = Some(r.to_string());
            }
            source = cause(s);
        }
        match tls {
            Some(reason) => NodeError::Tls {
                url,
                ca: self.settings.ca_file.clone(),
                reason,
            },
            None => NodeError::Unreachable { url, reason },
        }
    }

    /// `GET /admin/scavenge/current`: the running scavenge's id, if one runs.
    pub async fn current_scavenge(&self) -> Result<Option<String>, NodeError> {
        let answer = self.get("/admin/scavenge/current").await?;
        if answer.status != StatusCode::OK {
            return Err(answer.unexpected());
        }
        let current: crate::api::CurrentDto = answer.json()?;
        Ok(Some(current.scavenge_id).filter(|id| !id.is_empty()))
    }

    /// `DELETE /admin/scavenge/{id}`: the node answers once the scavenge stopped, so this
    /// waits up to `wait` rather than the request timeout.
    pub async fn stop_scavenge(&self, id: &str, wait: Duration) -> Result<StopOutcome, NodeError> {
        let path = format!("/admin/scavenge/{id}");
        let answer = self.send(Method::DELETE, &path, Some(wait)).await?;
        match answer.status {
            StatusCode::OK => Ok(StopOutcome::Stopped(
                answer.json::<String>().unwrap_or_else(|_| id.to_string()),
            )),
            StatusCode::NOT_FOUND => Ok(StopOutcome::NotRunning),
            _ => Err(answer.unexpected()),
        }
    }

    /// `POST /admin/scavenge`: starts a scavenge (which resumes a stopped one).
    pub async fn start_scavenge(&self) -> Result<StartOutcome, NodeError> {
        let answer = self.post("/admin/scavenge").await?;
        match answer.status {
            StatusCode::OK => {
                let started: crate::api::StartedDto = answer.json()?;
                Ok(StartOutcome::Started(started.scavenge_id))
            }
            StatusCode::BAD_REQUEST if answer.body.contains("already running") => {
                Ok(StartOutcome::AlreadyRunning)
            }
            _ => Err(answer.unexpected()),
        }
    }

    /// `GET /auto-scavenge/status`; `None` when the node has no auto-scavenge (503 not
    /// enabled, 404 no plugin).
    pub async fn auto_scavenge_status(&self) -> Result<Option<AutoScavengeState>, NodeError> {
        let answer = self.get("/auto-scavenge/status").await?;
        match answer.status {
            StatusCode::OK => {
                let status: crate::api::AutoStatusDto = answer.json()?;
                Ok(Some(AutoScavengeState::from_name(&status.state)))
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::NOT_FOUND => Ok(None),
            _ => Err(answer.unexpected()),
        }
    }

    /// `POST /auto-scavenge/pause`: 200 paused, 202 still stopping its scavenge.
    pub async fn pause_auto_scavenge(&self) -> Result<PauseOutcome, NodeError> {
        let answer = self.post("/auto-scavenge/pause").await?;
        match answer.status {
            StatusCode::OK => Ok(PauseOutcome::Paused),
            StatusCode::ACCEPTED => Ok(PauseOutcome::StillStopping),
            _ => Err(answer.unexpected()),
        }
    }

    /// `POST /auto-scavenge/resume`: 400 "currently pausing" is [`ResumeOutcome::StillPausing`].
    pub async fn resume_auto_scavenge(&self) -> Result<ResumeOutcome, NodeError> {
        let answer = self.post("/auto-scavenge/resume").await?;
        match answer.status {
            StatusCode::OK => Ok(ResumeOutcome::Resumed),
            StatusCode::BAD_REQUEST if answer.body.contains("pausing") => {
                Ok(ResumeOutcome::StillPausing)
            }
            _ => Err(answer.unexpected()),
        }
    }

    /// `GET /info`: the node's version and state (its role).
    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        let answer = self.get("/info").await?;
        if answer.status != StatusCode::OK {
            return Err(answer.unexpected());
        }
        let info: crate::api::InfoDto = answer.json()?;
        Ok(NodeInfo {
            version: info.es_version,
            state: info.state,
        })
    }

    /// The writer checkpoint from `/metrics` (`kurrentdb_checkpoints{name="writer"}`, or the
    /// older `eventstore_checkpoints`).
    pub async fn writer_checkpoint(&self) -> Result<i64, NodeError> {
        let answer = self.get("/metrics").await?;
        if answer.status != StatusCode::OK {
            return Err(answer.unexpected());
        }
        crate::api::writer_from_metrics(&answer.body).ok_or_else(|| NodeError::BadBody {
            url: answer.url,
            reason: "no kurrentdb_checkpoints{name=\"writer\"} sample (enable Checkpoints.Writer \
                     in the node's metricsconfig.json)"
                .into(),
        })
    }
}

/// The next cause of `e`, looking inside `io::Error`s (whose `source` skips the error they
/// wrap), where TLS failures are.
fn cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner),
        None => e.source(),
    }
}
