//! The promise the lock relies on: `put_if_absent` never overwrites, also under concurrency.
//!
//! Each `pub(super) async fn` named for a promise is its check, run in a scratch prefix by the
//! public function of that name, which `promises!` in the parent module declares with its doc.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::support::{checked, delete, ensure, expect_absent, expect_object, Scratch};
use super::{Kit, KitFailure};
use crate::target::{Target, TargetError, TargetErrorKind};

pub(super) async fn put_if_absent_is_exclusive(s: &Scratch<'_>, kit: &Kit) -> Result<(), String> {
    if !one_after_another(s).await? {
        ensure!(
            !kit.put_if_absent_required,
            "expected put_if_absent to be supported by this store, it said Unsupported"
        );
    }
    concurrent(s, kit).await
}

/// Whether `put_if_absent` works at all, with no check of its promise (for reports).
pub async fn put_if_absent_supported(target: &dyn Target) -> Result<bool, KitFailure> {
    let supported = AtomicBool::new(false);
    let flag = &supported;
    checked("put_if_absent_is_exclusive", target, |s| async move {
        match s.target.put_if_absent(&s.key("probe"), Bytes::new()).await {
            Ok(()) => flag.store(true, Ordering::Relaxed),
            Err(e) if e.kind() == TargetErrorKind::Unsupported => {}
            Err(e) => return Err(format!("put_if_absent of a new key: {e}")),
        }
        Ok(())
    })
    .await?;
    Ok(supported.into_inner())
}

/// The sequential promise; `Ok(false)`: the store said `Unsupported` (and wrote nothing).
async fn one_after_another(s: &Scratch<'_>) -> Result<bool, String> {
    let (t, key) = (s.target, s.key(".esbackup/lock"));
    match t
        .put_if_absent(&key, Bytes::from_static(b"first owner"))
        .await
    {
        Ok(()) => {}
        Err(e) if e.kind() == TargetErrorKind::Unsupported => {
            expect_absent(t, &key)
                .await
                .map_err(|e| format!("put_if_absent said Unsupported but wrote: {e}"))?;
            return Ok(false);
        }
        Err(e) => {
            return Err(format!(
                "put_if_absent of a new key: expected Ok, got {e:?}"
            ))
        }
    }
    match t
        .put_if_absent(&key, Bytes::from_static(b"second owner"))
        .await
    {
        Err(e) if e.kind() == TargetErrorKind::AlreadyExists => {}
        other => {
            return Err(format!(
                "put_if_absent of an existing key: expected AlreadyExists, got {other:?}"
            ))
        }
    }
    expect_object(t, &key, b"first owner").await?;
    delete(t, &key).await?;
    t.put_if_absent(&key, Bytes::from_static(b"again"))
        .await
        .map_err(|e| format!("put_if_absent after delete: expected Ok, got {e:?}"))?;
    expect_object(t, &key, b"again").await?;
    Ok(true)
}

/// N concurrent calls on one fresh key: one `Ok` and `AlreadyExists` for the others, the
/// object the winner's; or all `Unsupported` and no object.
async fn concurrent(s: &Scratch<'_>, kit: &Kit) -> Result<(), String> {
    let (t, key) = (s.target, s.key("contended"));
    let bodies: Vec<Bytes> = (0..kit.concurrent_writers.max(2))
        .map(|i| Bytes::from(format!("writer {i}")))
        .collect();
    let results =
        futures::future::join_all(bodies.iter().map(|b| t.put_if_absent(&key, b.clone()))).await;
    let won: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    let failed_with = |kind| {
        let failed = |r: &&Result<(), TargetError>| r.as_ref().is_err_and(|e| e.kind() == kind);
        results.iter().filter(failed).count()
    };
    if failed_with(TargetErrorKind::Unsupported) == results.len() {
        return expect_absent(t, &key).await;
    }
    let lost = failed_with(TargetErrorKind::AlreadyExists);
    ensure!(
        won.len() == 1 && lost == results.len() - 1,
        "{} concurrent put_if_absent on one key: expected exactly one Ok and AlreadyExists for \
         the others, got {} Ok: {results:?}",
        results.len(),
        won.len()
    );
    expect_object(t, &key, &bodies[won[0]]).await
}
