//! Promises about single objects: writing, replacing, failing bodies, reading, deleting, copying.
//!
//! Each `pub(super) async fn` named for a promise is its check, run in a scratch prefix by the
//! public function of that name, which `promises!` in the parent module declares with its doc.

use std::ops::Range;

use bytes::Bytes;
use futures::TryStreamExt;

use super::support::{
    copy, ensure, expect_absent, expect_not_found, expect_object, pattern, put_bytes, put_file,
    put_streamed, read_all, Scratch, TempFile,
};
use super::Kit;
use crate::hashing::md5;
use crate::target::{Target, TargetErrorKind, Upload};

pub(super) async fn describe_names_the_store(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let name = s.target.describe();
    ensure!(
        !name.trim().is_empty(),
        "expected a description of the store, got {name:?}"
    );
    Ok(())
}

pub(super) async fn put_then_get_round_trips(s: &Scratch<'_>, kit: &Kit) -> Result<(), String> {
    let t = s.target;
    put_file(t, &s.key("empty"), &[]).await?;
    expect_object(t, &s.key("empty"), &[]).await?;
    let small = b"hello, conformance";
    put_file(t, &s.key("small.txt"), small).await?;
    expect_object(t, &s.key("small.txt"), small).await?;
    let memory = s.key("small-from-memory");
    put_streamed(t, &memory, Upload::bytes(&small[..]), small).await?;
    expect_object(t, &memory, small).await?;
    let large = pattern(kit.sizes.large_size, 1);
    put_file(t, &s.key("chunk-000000.000000"), &large).await?;
    expect_object(t, &s.key("chunk-000000.000000"), &large).await
}

pub(super) async fn put_replaces_whole_object(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let key = s.key("index/indexmap");
    let (long, short) = (pattern(3000, 2), pattern(1234, 3));
    for data in [&long, &short, &long] {
        put_file(s.target, &key, data).await?;
        expect_object(s.target, &key, data).await?;
    }
    Ok(())
}

pub(super) async fn replacement_is_atomic_for_readers(
    s: &Scratch<'_>,
    kit: &Kit,
) -> Result<(), String> {
    let (target, key) = (s.target, s.key("atomic"));
    let size = kit.sizes.overwrite_size;
    let a = Bytes::from(pattern(size, 4));
    let b = Bytes::from(pattern(size + size / 3 + 1, 5));
    put_bytes(target, &key, &a).await?;
    let rounds = kit.sizes.overwrite_rounds;
    let writer = async {
        for round in 0..rounds {
            let body = if round % 2 == 0 { &b } else { &a };
            put_bytes(target, &key, body).await?;
        }
        Ok::<_, String>(())
    };
    // A read may fail while the object is replaced (Garage ends a body whose version was
    // just replaced): that returns nothing wrong. What must never happen is a read that
    // succeeds with bytes of neither version, or finds no object at all.
    let reader = async {
        let mut whole = 0;
        for _ in 0..rounds * 2 {
            let got = match target.get(&key, None).await {
                Ok(stream) => stream.try_collect::<Vec<Bytes>>().await.map(|p| p.concat()),
                Err(e) if e.is_not_found() => {
                    return Err(format!(
                        "expected a reader to see the old or the new object while it was replaced, got NotFound: {e}"
                    ))
                }
                Err(e) => Err(e),
            };
            if let Ok(got) = got {
                ensure!(
                    got == a || got == b,
                    "expected a reader to see the old ({} bytes) or the new ({} bytes) object \
                     while it was replaced, got {} bytes that are neither",
                    a.len(),
                    b.len(),
                    got.len()
                );
                whole += 1;
            }
            tokio::task::yield_now().await;
        }
        ensure!(
            whole > 0,
            "expected some reads during the replacements to succeed, got none"
        );
        Ok(())
    };
    let (w, r) = futures::join!(writer, reader);
    w.and(r)?;
    expect_object(target, &key, if rounds % 2 == 1 { &b } else { &a }).await
}

pub(super) async fn failed_body_is_never_stored(s: &Scratch<'_>, kit: &Kit) -> Result<(), String> {
    let (old, key) = (pattern(5000, 6), s.key("replaced/chunk-000002.000000"));
    put_bytes(s.target, &key, &old).await?;
    for size in [kit.sizes.large_size, 100_000] {
        let (damaged, damaged_len) = damaged_trailing_md5(size)?;
        let short = TempFile::with(&pattern(size, 7))?;
        let bodies = [
            ("a body failing its trailing MD5 part-way", damaged_len, {
                Upload::file(damaged.path(), damaged_len).check_trailing_md5()
            }),
            ("a body shorter than its len()", size as u64, {
                Upload::file(short.path(), size as u64 + 4096)
            }),
        ];
        for (what, len, body) in bodies {
            let new = s.key(&format!("new/{size}-{}", len));
            refused(s.target, &new, body.clone(), what).await?;
            expect_absent(s.target, &new)
                .await
                .map_err(|e| format!("after {what} ({len} bytes) to a new key: {e}"))?;
            refused(s.target, &key, body, what).await?;
            expect_object(s.target, &key, &old)
                .await
                .map_err(|e| format!("after {what} ({len} bytes) over an object: {e}"))?;
        }
    }
    Ok(())
}

/// A file of `size` bytes ending in an MD5 that does not match them: an upload checking its
/// trailing MD5 streams every piece but the last, then fails.
fn damaged_trailing_md5(size: usize) -> Result<(TempFile, u64), String> {
    let mut data = pattern(size, 8);
    let sum = md5(&data);
    data[size / 2] ^= 1;
    data.extend_from_slice(&sum);
    let len = data.len() as u64;
    Ok((TempFile::with(&data)?, len))
}

/// `put` of a failing body must fail, with a [`TargetErrorKind::Body`] error (the engine tells
/// a changing source from a failing store by it).
async fn refused(target: &dyn Target, key: &str, body: Upload, what: &str) -> Result<(), String> {
    let len = body.len();
    match target.put(key, body).await {
        Err(e) if e.kind() == TargetErrorKind::Body => Ok(()),
        Err(e) => Err(format!(
            "put {key} of {what} ({len} bytes): expected a Body error (TargetError::body with the \
             read's io::Error), got {e}"
        )),
        Ok(_) => Err(format!(
            "put {key} of {what} ({len} bytes): expected an error, got Ok"
        )),
    }
}

pub(super) async fn ranged_reads_at_the_edges(s: &Scratch<'_>, kit: &Kit) -> Result<(), String> {
    for (name, size) in [("small", 100_000usize), ("large", kit.sizes.large_size)] {
        let (key, data) = (s.key(name), pattern(size, 9));
        put_bytes(s.target, &key, &data).await?;
        let len = size as u64;
        let five_mib = 5u64 << 20;
        let mut ranges = vec![
            0..1,
            len - 1..len,
            0..len,
            len / 2..len / 2,
            len - 10..len + 100,
        ];
        if len > five_mib + 3 {
            ranges.push(five_mib - 1..five_mib + 3);
        }
        for range in ranges {
            expect_range(s.target, &key, range, &data).await?;
        }
    }
    Ok(())
}

/// `range` of `key` must be those bytes of `data` (a range past the end: up to the end).
async fn expect_range(
    target: &dyn Target,
    key: &str,
    range: Range<u64>,
    data: &[u8],
) -> Result<(), String> {
    let got = read_all(target, key, Some(range.clone())).await?;
    let end = (range.end as usize).min(data.len());
    let want = &data[(range.start as usize).min(end)..end];
    ensure!(
        got[..] == want[..],
        "get {key} range {range:?} of a {}-byte object: expected {} bytes (md5 {}), got {} \
         bytes (md5 {})",
        data.len(),
        want.len(),
        hex::encode(md5(want)),
        got.len(),
        hex::encode(md5(&got))
    );
    Ok(())
}

pub(super) async fn missing_keys(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let key = s.key("never-written");
    expect_not_found(s.target, &key).await?;
    for attempt in ["first", "second"] {
        s.target.delete(&key).await.map_err(|e| {
            format!("delete {key} ({attempt} time): expected Ok for a missing key, got {e}")
        })?;
    }
    let prefix = s.key("no-such-folder/");
    let listed = s
        .target
        .list(&prefix)
        .await
        .map_err(|e| format!("list {prefix}: {e}"))?;
    ensure!(
        listed.is_empty(),
        "list {prefix:?}: expected nothing, got {listed:?}"
    );
    Ok(())
}

pub(super) async fn delete_removes_the_object(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let (key, kept) = (s.key("delete/me"), s.key("delete/me-not"));
    put_bytes(s.target, &key, b"bye").await?;
    put_bytes(s.target, &kept, b"stay").await?;
    for attempt in ["first", "second"] {
        s.target
            .delete(&key)
            .await
            .map_err(|e| format!("delete {key} ({attempt} time): expected Ok, got {e}"))?;
        expect_not_found(s.target, &key).await?;
        expect_absent(s.target, &key).await?;
    }
    expect_object(s.target, &kept, b"stay").await
}

pub(super) async fn copy_replaces_destination(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let (t, src, dst) = (s.target, s.key("copy/src"), s.key("copy/dir/dst.old"));
    let (first, second) = (pattern(70_000, 10), pattern(10, 11));
    for data in [&first, &second] {
        put_file(t, &src, data).await?;
        copy(t, &src, &dst).await?;
        expect_object(t, &dst, data).await?;
        expect_object(t, &src, data).await?;
    }
    match t.copy(&s.key("copy/missing"), &dst).await {
        Err(e) if e.is_not_found() => {}
        other => {
            return Err(format!(
                "copy of a missing source: expected NotFound, got {other:?}"
            ))
        }
    }
    expect_object(t, &dst, &second).await
}
