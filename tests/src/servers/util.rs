//! Helpers shared by the server fixtures: free ports, child processes killed on drop,
//! waiting for readiness, the HTTP client, tiny XML extraction.

use std::collections::HashSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Label put on every container a fixture or the benchmark starts, so that
/// `scripts/test-env-stop.sh` can remove any a killed test process left behind.
pub const CONTAINER_LABEL: (&str, &str) = ("esbackup.test", "1");

/// A TCP port of 127.0.0.1 that was free a moment ago and that this process has not handed out
/// before (several fixtures may start at once in one test binary; the set keeps them from
/// being given the same port between the probe and the server's own bind).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("cannot bind a TCP port on 127.0.0.1")
            .port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no free TCP port found on 127.0.0.1");
}

/// The HTTP client of the fixtures: no proxy (every server is on 127.0.0.1), bounded time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("cannot build the HTTP client")
}

/// Environment variables from `(name, value)` pairs.
pub fn env_vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    (pairs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The body of `resp` as text; panics with `what`, the status and that body unless the request
/// succeeded.
pub async fn expect_success(resp: reqwest::Response, what: &str) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {text}");
    text
}

/// The body of `resp`, the answer to a read (`what` names it); `None` for 404 Not Found.
pub async fn body_unless_not_found(resp: reqwest::Response, what: &str) -> Option<Vec<u8>> {
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert!(resp.status().is_success(), "{what}: {}", resp.status());
    let body = resp.bytes().await;
    Some(body.unwrap_or_else(|e| panic!("{what} body: {e}")).to_vec())
}

/// Panics with `what` and the status unless `resp`, the answer to a delete, succeeded or found
/// nothing to delete (404).
pub fn assert_deleted(resp: &reqwest::Response, what: &str) {
    let status = resp.status();
    assert!(
        status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
        "{what}: {status}"
    );
}

/// Every name a paged listing holds, sorted: `page(token)` reads one page (the first for
/// `None`) and gives its names and the next page's token, `None` after the last page.
pub async fn all_pages<F, Fut>(mut page: F) -> Vec<String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = (Vec<String>, Option<String>)>,
{
    let (mut names, mut token) = page(None).await;
    while let Some(t) = token {
        let (more, next) = page(Some(t)).await;
        names.extend(more);
        token = next;
    }
    names.sort();
    names
}

/// `&<name>=<token>` (URI-encoded) for the token of a next page, `""` for the first page.
pub fn page_param(name: &str, token: Option<String>) -> String {
    token.map_or(String::new(), |t| {
        format!("&{name}={}", uri_encode(&t, false))
    })
}

/// Polls `probe` every 50 ms until it returns true; panics after `timeout` with `what` and
/// the tail of `log` (the server's output) in the message.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, log: Option<&Path>, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return;
        }
        if start.elapsed() > timeout {
            panic!("{what} was not ready within {timeout:?}{}", log_tail(log));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `"\n--- last lines of <log> ---\n…"` for panic messages, or `""` without a log.
pub fn log_tail(log: Option<&Path>) -> String {
    let Some(log) = log else { return String::new() };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("\n--- last lines of {} ---\n{tail}", log.display())
}

/// A server process owned by a fixture: killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Mutex<Child>,
    name: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `program args…` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> ServerProcess {
        let out =
            File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("cannot clone the log file handle");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        ServerProcess {
            child: Mutex::new(child),
            name: name.to_string(),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Panics (with the log's tail) if the process has already exited.
    pub fn assert_running(&self) {
        let status = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait();
        if let Ok(Some(status)) = status {
            panic!(
                "{} exited while starting ({status}){}",
                self.name,
                log_tail(Some(&self.log))
            );
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The texts of every `<tag>…</tag>` in `xml`, entities decoded. Enough for the flat listings
/// of S3 and Azure (keys, names, continuation markers); not a general XML parser.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(xml_unescape(&rest[..end]));
        rest = &rest[end + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Percent-encoding of everything but the RFC 3986 unreserved characters (and '/' if
/// `keep_slash`), as S3 signatures and object paths need.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Random lowercase hex of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Runs a short command and returns its stdout, or None if it could not run or failed.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The path a tool is found at: the environment variable if set, else the first of
/// `defaults` that exists. Panics with the hint to run scripts/test-env.sh otherwise.
pub fn tool_path(var: &str, what: &str, defaults: &[PathBuf]) -> PathBuf {
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if p.is_file() {
            return p;
        }
        panic!(
            "{var}={} names no file: run scripts/test-env.sh (it installs {what})",
            p.display()
        );
    }
    defaults
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{what} not found ({var} is not set and none of {defaults:?} exists): \
             run scripts/test-env.sh, then `source $ESBACKUP_STATE/env` (or use scripts/test.sh)"
            )
        })
}

/// The cache folder scripts/test-env.sh installs into (ESBACKUP_CACHE, ~/.cache/esbackup).
pub fn cache_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("ESBACKUP_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/esbackup")
}
