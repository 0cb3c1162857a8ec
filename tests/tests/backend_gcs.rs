//! The scenario suite and the Target conformance suite against a real Google Cloud Storage (fake-gcs-server) server,
//! started by the test itself.

use esbackup_tests::cloud::{gcs_options, whole_suite, ServerLocations};
use esbackup_tests::servers::GcsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_suite_runs_against_gcs() {
    let server = GcsServer::start().await;
    let options = gcs_options(&server);
    let locations = ServerLocations::new(Box::new(server), options);
    whole_suite(&locations).await;
}
