//! The one retry layer for requests: the backend's HTTP client. Against a server that answers
//! every request with 503, one failing request is tried exactly `max_retries + 1` times, within
//! the retry deadline, and then reported as a transient error.
//!
//! No assert here depends on how fast the machine is: requests are counted, and the only time
//! bound used is that a sleep never ends early.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use esbackup_backends::{open_target, HumanDuration, TargetOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on 127.0.0.1 that answers every request with `503 Slow Down`; returns its port and
/// the count of requests it answered.
async fn always_busy() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        c.fetch_add(1, Ordering::SeqCst);
                        let reply = b"HTTP/1.1 503 Slow Down\r\ncontent-length: 0\r\n\r\n";
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, count)
}

/// One `head` through an S3 target on an always-busy server, with these retry settings: how
/// many requests the server answered, and the error.
async fn head_on_busy_server(
    max_retries: usize,
    retry_timeout: Duration,
) -> (usize, esbackup_engine::TargetError) {
    let (port, count) = always_busy().await;
    let opts = TargetOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some("secret".into()),
        max_retries: Some(max_retries),
        retry_timeout: Some(HumanDuration(retry_timeout)),
        ..TargetOptions::default()
    };
    let target = open_target("s3://bucket/prefix", &opts).unwrap();
    let err = target.head("chunk-000000.000000").await.unwrap_err();
    (count.load(Ordering::SeqCst), err)
}

#[tokio::test]
async fn one_failing_request_is_tried_max_retries_plus_one_times() {
    let (tries, err) = head_on_busy_server(3, Duration::from_secs(30)).await;
    assert_eq!(tries, 4, "{err}");
    assert!(err.is_transient(), "{err:?}");
}

/// Past the retry deadline no retry starts, however many are allowed: with waits of at least
/// 200 ms each (a sleep never ends early), a 1 s deadline leaves room for at most 6 retries.
#[tokio::test]
async fn retries_stop_at_the_retry_deadline() {
    let (tries, err) = head_on_busy_server(1000, Duration::from_secs(1)).await;
    assert!((1..=7).contains(&tries), "{tries} tries: {err}");
    assert!(err.is_transient(), "{err:?}");
}
