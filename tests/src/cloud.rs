//! Backup locations on the real servers of [`crate::servers`], for the scenario suite: each
//! location is a fresh prefix in the server's bucket, opened through `open_target` with options
//! built from the fixture (no process-wide environment variables, so tests can run in parallel).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::conformance::Kit;
use esbackup_engine::Target;

use crate::copying;
use crate::positions;
use crate::scenarios::{self, Locations};
use crate::servers::{AzuriteServer, GcsServer, ObjectServer, S3Server};

/// Fresh prefixes on one running server.
pub struct ServerLocations {
    pub server: Box<dyn ObjectServer>,
    pub options: TargetOptions,
    next: AtomicU64,
}

impl ServerLocations {
    pub fn new(server: Box<dyn ObjectServer>, options: TargetOptions) -> Self {
        ServerLocations {
            server,
            options,
            next: AtomicU64::new(0),
        }
    }

    /// The URL of a new, unused prefix.
    pub fn fresh_url(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        self.server.url(&format!("loc-{n}"))
    }

    /// A fresh prefix for the conformance kit `kit`.
    pub fn kit_run(&self, kit: Kit) -> KitRun {
        KitRun::open(self.fresh_url(), self.options.clone(), kit)
    }

    /// A fresh prefix for the conformance kit `kit`, through the codec.
    pub fn encoded_kit_run(&self, kit: Kit) -> KitRun {
        KitRun::open_encoded(self.fresh_url(), self.options.clone(), kit)
    }
}

impl Locations for ServerLocations {
    fn name(&self) -> String {
        self.server.kind().to_string()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        let url = self.fresh_url();
        open_target(&url, &self.options).unwrap_or_else(|e| panic!("open {url}: {e}"))
    }
}

pub fn s3_options(s: &S3Server) -> TargetOptions {
    TargetOptions {
        endpoint: Some(s.endpoint.clone()),
        region: Some(s.region.clone()),
        path_style: Some(true),
        allow_http: Some(true),
        access_key_id: Some(s.access_key.clone()),
        secret_access_key: Some(s.secret_key.clone()),
        ..TargetOptions::default()
    }
}

pub fn azure_options(s: &AzuriteServer) -> TargetOptions {
    TargetOptions {
        endpoint: Some(s.endpoint.clone()),
        use_emulator: Some(true),
        account: Some(s.account.clone()),
        access_key: Some(s.key.clone()),
        allow_http: Some(true),
        ..TargetOptions::default()
    }
}

pub fn gcs_options(s: &GcsServer) -> TargetOptions {
    TargetOptions {
        endpoint: Some(s.endpoint.clone()),
        service_account: Some(s.service_account_file.display().to_string()),
        allow_http: Some(true),
        ..TargetOptions::default()
    }
}

/// Live rounds per real server (`ESBACKUP_LIVE_ROUNDS_BACKENDS`, default 20).
pub fn backend_rounds() -> u64 {
    std::env::var("ESBACKUP_LIVE_ROUNDS_BACKENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A location for the conformance kit, and the kit for that store, able to reopen it.
pub struct KitRun {
    pub target: Arc<dyn Target>,
    pub kit: Kit,
}

impl KitRun {
    /// Opens `url` (and again for the kit's durability check).
    pub fn open(url: String, options: TargetOptions, kit: Kit) -> KitRun {
        let open =
            move || open_target(&url, &options).unwrap_or_else(|e| panic!("open {url}: {e}"));
        KitRun {
            target: open(),
            kit: kit.reopen(open),
        }
    }

    /// [`KitRun::open`] through the codec ([`scenarios::encoded_scheme`], one key for both
    /// openings): the kit checks that an encoded location keeps the store's promises.
    pub fn open_encoded(url: String, options: TargetOptions, kit: Kit) -> KitRun {
        let scheme = scenarios::encoded_scheme();
        let open = move || {
            let store = open_target(&url, &options).unwrap_or_else(|e| panic!("open {url}: {e}"));
            scenarios::encoded(store, scheme.clone())
        };
        KitRun {
            target: open(),
            kit: kit.reopen(open),
        }
    }

    /// Runs every promise that applies; panics naming every broken one.
    pub async fn run(&self, name: &str) {
        match self.kit.run(self.target.as_ref()).await {
            Ok(report) => println!("{name}: conformance kit: {report}"),
            Err(failures) => panic!("{name}: conformance kit: {failures}"),
        }
    }
}

/// The conformance kit on a fresh location of `loc`, then the whole scenario suite.
pub async fn whole_suite(loc: &dyn Locations, kit: KitRun, live_rounds: u64) {
    kit.run(&loc.name()).await;
    scenario_suite(loc, live_rounds).await;
}

/// The scenario suite on fresh locations of `loc`: points, crashes, retention, copies,
/// positions and live rounds.
pub async fn scenario_suite(loc: &dyn Locations, live_rounds: u64) {
    let name = loc.name();
    scenarios::static_round_trip(loc).await;
    println!("{name}: static database round trip byte-identical");
    scenarios::other_files_round_trip(loc).await;
    println!(
        "{name}: files the engine does not know round trip, changed, deleted, left out by name"
    );
    scenarios::differential_stores_only_changes(loc).await;
    println!("{name}: differentials store exactly what changed");
    scenarios::history_restores_every_point(loc, 20).await;
    println!("{name}: 20 restore points each restore equal to the source at that run");
    scenarios::verify_finds_damage(loc).await;
    println!("{name}: verify and restore find missing and damaged objects");
    let points = scenarios::crash_points(loc).await;
    println!("{name}: crash at each of {points} operations left every point restorable");
    let (before, after) = scenarios::forget_keeps_last_three(loc, 20).await;
    println!("{name}: forget --keep-last 3 --prune after 20 points: 3 restorable points left, {before} -> {after} bytes stored");
    let points = scenarios::forget_crash_points(loc).await;
    println!(
        "{name}: forget --prune crashed at each of {points} operations, kept points restorable"
    );
    copying::copy_keeps_history(loc).await;
    println!("{name}: 6 points copied to a second location (incrementally), each restores; retention there is its own");
    let (restored, refused) = positions::random_positions_restore_the_log_prefix(loc, 8).await;
    println!("{name}: restore --position at 8 random positions over 12 points: {restored} restored exactly, {refused} refused (scavenged chunk)");
    let rounds = live_rounds;
    let s = scenarios::live_rounds(loc, rounds, 9000, 0).await;
    println!(
        "{name}: live rounds: {} rounds passed, {} backups completed, {} aborted by a scavenge, {} points restored",
        s.rounds, s.backups, s.aborted_by_scavenge, s.points_restored
    );
    assert_eq!(s.rounds, rounds);
}
