//! Promises of the provided methods a wrapper must forward: `sync`, `local_root`,
//! `local_file`; and durability through a second handle on the same location.
//!
//! Each `pub(super) async fn` named for a promise is its check, run in a scratch prefix by the
//! public function of that name, which `promises!` in the parent module declares with its doc.

use std::path::Path;

use super::support::{
    copy, delete, ensure, expect_absent, expect_object, pattern, put_bytes, put_file, Scratch,
};
use super::Kit;

pub(super) async fn sync_succeeds(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let (a, b) = (s.key("sync/a"), s.key("sync/b"));
    put_bytes(s.target, &a, b"synced").await?;
    copy(s.target, &a, &b).await?;
    delete(s.target, &a).await?;
    for when in ["after a put, a copy and a delete", "with nothing new"] {
        s.target
            .sync()
            .await
            .map_err(|e| format!("sync {when}: expected Ok, got {e}"))?;
    }
    expect_object(s.target, &b, b"synced").await
}

pub(super) async fn local_root_is_a_real_folder_or_none(
    s: &Scratch<'_>,
    kit: &Kit,
) -> Result<(), String> {
    put_bytes(s.target, &s.key("rooted"), b"x").await?;
    match s.target.local_root() {
        None => {
            ensure!(
                !kit.local,
                "expected Some(folder) from a local target (Kit::local), got None"
            );
            Ok(())
        }
        Some(root) => {
            ensure!(
                root.is_absolute() && root.is_dir(),
                "expected None or an absolute, existing folder, got {}",
                root.display()
            );
            Ok(())
        }
    }
}

pub(super) async fn local_file_returns_the_keys_bytes(
    s: &Scratch<'_>,
    kit: &Kit,
) -> Result<(), String> {
    let key = s.key("files/chunk-000003.000000");
    for data in [pattern(200_000, 15), Vec::new(), pattern(1000, 16)] {
        put_file(s.target, &key, &data).await?;
        let Some(file) = s.target.local_file(&key) else {
            ensure!(
                !kit.local,
                "local_file({key:?}): expected the file of a local target (Kit::local), \
                 got None"
            );
            continue;
        };
        let got = std::fs::read(&file)
            .map_err(|e| format!("local_file({key:?}) = {}: {e}", file.display()))?;
        ensure!(
            got == data,
            "local_file({key:?}) = {}: expected the key's {} bytes, the file holds {} \
             (or other bytes)",
            file.display(),
            data.len(),
            got.len()
        );
        in_root(s.target.local_root().as_deref(), &file)?;
    }
    Ok(())
}

/// A local file must lie in the target's `local_root`, when it has one.
fn in_root(root: Option<&Path>, file: &Path) -> Result<(), String> {
    match root {
        Some(root) if !file.starts_with(root) => Err(format!(
            "expected local files inside local_root {}, got {}",
            root.display(),
            file.display()
        )),
        _ => Ok(()),
    }
}

pub(super) async fn durable_after_sync(s: &Scratch<'_>, kit: &Kit) -> Result<(), String> {
    let reopen = kit
        .reopen
        .as_ref()
        .ok_or("this check needs Kit::reopen (a second handle on the location)")?;
    let (kept, copied, gone) = (s.key("d/kept"), s.key("d/copied"), s.key("d/gone"));
    let data = pattern(300_000, 17);
    put_file(s.target, &kept, &data).await?;
    put_bytes(s.target, &gone, b"deleted").await?;
    copy(s.target, &kept, &copied).await?;
    delete(s.target, &gone).await?;
    s.target.sync().await.map_err(|e| format!("sync: {e}"))?;
    let other = reopen();
    let seen = async {
        expect_object(other.as_ref(), &kept, &data).await?;
        expect_object(other.as_ref(), &copied, &data).await?;
        expect_absent(other.as_ref(), &gone).await
    };
    seen.await
        .map_err(|e| format!("through a reopened target after sync: {e}"))
}
