//! The node admin HTTP API of a simulated node: HTTPS on loopback with basic auth and a test CA
//! made at start-up, the scavenge endpoints driving the node's [`ScavengeControl`], the
//! auto-scavenge endpoints, `/info` and `/metrics` (docs/FORMAT.md, "Node admin API
//! (modelled)"), and [`Fault`]s a test switches on.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use esdb_sim::admin_api::{AdminApi, AdminOptions};
//! use esdb_sim::{run_live, Node, SimConfig};
//! let dir = std::path::Path::new("/tmp/sim");
//! let mut node = Node::create(&dir.join("db"), SimConfig::default())?;
//! let control = node.controlled_scavenge();
//! let live = run_live(node);
//! let api = AdminApi::start(control, AdminOptions::new(dir))?;
//! println!("{} (CA: {})", api.url(), api.ca_file().display());
//! # Ok(()) }
//! ```

mod auth;
mod faults;
mod routes;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::middleware;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use auth::Credentials;
pub use faults::{Fault, FaultRule, Faults};

use crate::ScavengeControl;

/// How the API serves.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    /// Where the test CA's certificate (`ca.pem`) is written.
    pub dir: PathBuf,
    /// `/info`'s `state`.
    pub role: String,
    pub version: String,
    /// Whether the auto-scavenge plugin is enabled (else its endpoints answer 503).
    pub auto_scavenge: bool,
}

impl AdminOptions {
    /// `127.0.0.1:0`, user `admin`, password `changeit` (the server's defaults), a leader,
    /// auto-scavenge enabled, the CA written into `dir`.
    pub fn new(dir: &Path) -> AdminOptions {
        AdminOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "admin".into(),
            password: "changeit".into(),
            dir: dir.to_path_buf(),
            role: "leader".into(),
            version: "25.1.0-sim".into(),
            auto_scavenge: true,
        }
    }
}

/// A running admin API; stops when dropped.
pub struct AdminApi {
    url: String,
    ca_file: PathBuf,
    faults: Faults,
    control: ScavengeControl,
    role: Arc<Mutex<String>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminApi {
    /// Makes the test CA, binds and serves on a thread of its own.
    pub fn start(control: ScavengeControl, opts: AdminOptions) -> io::Result<AdminApi> {
        let ca_file = opts.dir.join("ca.pem");
        std::fs::create_dir_all(&opts.dir)?;
        let acceptor = tls::make_acceptor(&ca_file)?;
        let faults = Faults::default();
        let role = Arc::new(Mutex::new(opts.role.clone()));
        let api = routes::Api {
            control: control.clone(),
            role: role.clone(),
            version: opts.version.clone(),
            auto_enabled: opts.auto_scavenge,
        };
        let creds = Credentials {
            user: opts.user.clone(),
            password: opts.password.clone(),
        };
        let app = routes::router(api)
            .layer(middleware::from_fn_with_state(creds, auth::require))
            .layer(middleware::from_fn_with_state(
                faults.clone(),
                faults::inject,
            ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Bound here (not in the runtime) so that `start` works inside another runtime too.
        let listener = std::net::TcpListener::bind(opts.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                if let Ok(listener) = TcpListener::from_std(listener) {
                    serve(listener, acceptor, app, rx).await;
                }
            });
            runtime.shutdown_background();
        });
        Ok(AdminApi {
            url: format!("https://{addr}"),
            ca_file,
            faults,
            control,
            role,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The test CA's certificate (PEM).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The node's scavenge, as the API drives it.
    pub fn control(&self) -> &ScavengeControl {
        &self.control
    }

    /// Switches a fault on (the first matching rule applies).
    pub fn inject(&self, rule: FaultRule) {
        self.faults.inject(rule);
    }

    /// Switches every fault off.
    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    /// Requests that got a fault so far.
    pub fn fault_hits(&self) -> u32 {
        self.faults.hits()
    }

    /// Changes `/info`'s `state` (e.g. `follower`).
    pub fn set_role(&self, role: &str) {
        *self.role.lock().unwrap() = role.to_string();
    }
}

impl Drop for AdminApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts TLS connections until `stop` fires; each connection is served on its own task.
async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that rejects the certificate closes the handshake: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = TowerToHyperService::new(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
