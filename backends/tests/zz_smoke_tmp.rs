// TEMPORARY manual smoke test (deleted before hand-off).
use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::conformance::{run_conformance_with, ConformanceOptions};

#[tokio::test]
async fn smoke() {
    let Ok(url) = std::env::var("SMOKE_URL") else {
        return;
    };
    let yaml = std::env::var("SMOKE_OPTS").unwrap_or_else(|_| "{}".into());
    let opts: TargetOptions = serde_yaml::from_str(&yaml).unwrap();
    let target = open_target(&url, &opts).unwrap();
    let large: usize = std::env::var("SMOKE_LARGE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or((18 << 20) + 12345);
    let sizes = ConformanceOptions {
        large_size: large,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    match run_conformance_with(target.as_ref(), &sizes).await {
        Ok(r) => eprintln!("OK in {:?}: {r}", t.elapsed()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn smoke_err() {
    let Ok(url) = std::env::var("SMOKE_ERR_URL") else {
        return;
    };
    let yaml = std::env::var("SMOKE_OPTS").unwrap_or_else(|_| "{}".into());
    let opts: TargetOptions = serde_yaml::from_str(&yaml).unwrap();
    let target = open_target(&url, &opts).unwrap();
    let t = std::time::Instant::now();
    eprintln!("head: {:?} ({:?})", target.head("x").await, t.elapsed());
    eprintln!(
        "put: {:?}",
        target
            .put("x", esbackup_engine::Upload::bytes(vec![1u8; 10]))
            .await
    );
    eprintln!("list: {:?}", target.list("").await);
}
