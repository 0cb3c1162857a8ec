//! The scenario suite and the Target conformance suite against a real Azure Blob (Azurite) server,
//! started by the test itself.

use esbackup_tests::cloud::{azure_options, whole_suite, ServerLocations};
use esbackup_tests::servers::AzuriteServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_suite_runs_against_azure() {
    let server = AzuriteServer::start().await;
    let options = azure_options(&server);
    let locations = ServerLocations::new(Box::new(server), options);
    whole_suite(&locations).await;
}
