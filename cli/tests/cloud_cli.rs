//! `esbackup backup --db D --target s3://bucket/p` (and az://, gs://) with the server reached
//! through the cloud's standard environment variables, as an operator runs it; the restore from
//! each is byte-identical to the database (except truncate.chk, which equals chaser.chk).

mod common;

use common::assert_succeeded;

use std::path::Path;
use std::process::Command;

use esbackup_tests::scenarios::settled_node;
use esbackup_tests::servers::{AzuriteServer, GcsServer, ObjectServer, S3Server};
use esbackup_tests::support::database_files;

fn esbackup(server: &dyn ObjectServer, args: &[&str], db: &Path) -> serde_json::Value {
    let mut cmd = common::esbackup_command(&server.env());
    cmd.args(args).arg("--db").arg(db).arg("--json");
    let out = cmd.output().expect("esbackup runs");
    assert_succeeded(&out, &format!("{} {args:?}", server.kind()));
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

async fn backup_and_restore_through_the_cli(server: &dyn ObjectServer) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 77, 150);
    let url = server.url("cli/node1");
    let first = esbackup(server, &["backup", "--target", &url], &db);
    assert_eq!(first["ok"], true);
    let source = database_files(&db);
    assert_eq!(
        first["stored"]["files"].as_u64().unwrap(),
        source.len() as u64
    );
    // What the server holds, seen through the fixture's own client, not esbackup's.
    let stored = server.list_keys("cli/node1/").await;
    assert!(
        stored.contains(&"cli/node1/writer.chk".to_string()),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with("cli/node1/.esbackup/points/")),
        "{stored:?}"
    );

    let again = esbackup(server, &["backup", "--target", &url], &db);
    assert_eq!(again["stored"]["files"], 0);

    let restored = dir.path().join("restored");
    let report = esbackup(server, &["restore", "--target", &url], &restored);
    assert_eq!(report["truncate"], report["chaser"]);
    let back = database_files(&restored);
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &source {
        assert!(
            back[name] == *bytes,
            "{}: {name} differs after restore",
            server.kind()
        );
    }
    assert_eq!(
        std::fs::read(restored.join("truncate.chk")).unwrap(),
        std::fs::read(restored.join("chaser.chk")).unwrap()
    );
}

/// Credentials and region from a named profile of the shared AWS files (no key in the
/// environment): aws-config's chain, bridged into object_store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_and_region_come_from_a_named_aws_profile() {
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 5, 20);
    let config = dir.path().join("aws-config");
    let credentials = dir.path().join("aws-credentials");
    std::fs::write(
        &config,
        format!("[profile backup]\nregion = {}\n", server.region),
    )
    .unwrap();
    std::fs::write(
        &credentials,
        format!(
            "[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key, server.secret_key
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esbackup"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ESBACKUP_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_PROFILE", "backup")
        .env("AWS_ENDPOINT_URL", &server.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["backup", "--json", "--target", &server.url("profile")])
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert_succeeded(&out, "out");
    let keys = server.list_keys("profile/").await;
    assert!(keys.contains(&"profile/writer.chk".to_string()), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backup_and_restore_from_the_command_line() {
    let server = S3Server::start().await;
    backup_and_restore_through_the_cli(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_backup_and_restore_from_the_command_line() {
    let server = AzuriteServer::start().await;
    backup_and_restore_through_the_cli(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_backup_and_restore_from_the_command_line() {
    let server = GcsServer::start().await;
    backup_and_restore_through_the_cli(&server).await;
}
