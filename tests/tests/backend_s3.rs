//! The scenario suite and the Target conformance suite against a real S3 (Garage, or MinIO with ESBACKUP_MINIO_IMAGE) server,
//! started by the test itself.

use esbackup_tests::cloud::{s3_options, whole_suite, ServerLocations};
use esbackup_tests::servers::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_suite_runs_against_s3() {
    let server = S3Server::start().await;
    let options = s3_options(&server);
    let locations = ServerLocations::new(Box::new(server), options);
    whole_suite(&locations).await;
}
