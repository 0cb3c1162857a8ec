//! Carries out a [`BackupPlan`]: stores the files (concurrently), confirms the new objects,
//! writes the root mirror, and returns the references the new restore point records, and the
//! files left out because they changed while they were copied.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};

use super::plan::{Action, BackupPlan, FilePlan, LocalFile, Mirror, UploadCheck};
use crate::error::{EngineError, Result};
use crate::hashing::{md5_of_range, Md5Lanes};
use crate::point::{record_stored_size, Content, FileRef, Segment, Window};
use crate::progress::Progress;
use crate::source::other_files::{self, Skipped};
use crate::source::{vanished, FileStamp};
use crate::target::{Stored, Target, TargetError, Upload};

/// The content of a root object a run adopts: the local file's MD5 (the object holds the same
/// bytes, as the probe found).
async fn adopted(object: &str, source: &LocalFile) -> Result<Content> {
    let md5 = md5_of_range(&source.path, source.handle.clone(), 0, source.len)
        .await
        .map_err(|e| read_error(&source.path, e))?;
    Ok(Content::Object {
        key: object.to_string(),
        md5: hex::encode(md5),
        stored_size: None,
    })
}

/// Bytes of a growing chunk's tail whose MD5 the point keeps (see `Content::Segments`).
pub(crate) const TAIL_WINDOW: u64 = 64 * 1024;

/// The references of the stored files, and the new objects written for them.
pub(crate) struct StoredFiles {
    pub files: BTreeMap<String, FileRef>,
    /// (object key, stored bytes) of every object this run uploaded, sorted.
    pub new_objects: Vec<(String, u64)>,
    /// Files left out of the point ([`UploadCheck::HeldStill`]), by key.
    pub skipped: Vec<Skipped>,
}

/// Stores every file of the plan, `concurrency` at a time.
pub(crate) async fn store_files(
    target: &Arc<dyn Target>,
    plan: &BackupPlan,
    concurrency: usize,
    progress: &Arc<dyn Progress>,
) -> Result<StoredFiles> {
    progress.phase("upload", plan.upload_bytes());
    // This run's MD5 lanes (for stores that copy files in the kernel): its thread stops when
    // the files are stored.
    let lanes = Md5Lanes::new();
    let stores: Vec<_> = plan
        .files
        .iter()
        .map(|f| store_one((target, &lanes), f, progress))
        .collect();
    let done: Vec<Outcome> = stream::iter(stores)
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut files = BTreeMap::new();
    let mut new_objects = Vec::new();
    let mut skipped = Vec::new();
    for outcome in done {
        match outcome {
            Outcome::Stored((key, file, new)) => {
                files.insert(key, file);
                new_objects.extend(new);
            }
            Outcome::LeftOut(s) => skipped.push(s),
        }
    }
    new_objects.sort();
    skipped.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(StoredFiles {
        files,
        new_objects,
        skipped,
    })
}

/// A stored file: its key, its reference, and the new object written for it, if any.
type StoredFile = (String, FileRef, Option<(String, u64)>);

/// What became of one file of the plan.
enum Outcome {
    Stored(StoredFile),
    LeftOut(Skipped),
}

async fn store_one(
    (target, lanes): (&Arc<dyn Target>, &Md5Lanes),
    plan: &FilePlan,
    progress: &Arc<dyn Progress>,
) -> Result<Outcome> {
    if let Action::Upload {
        object,
        source,
        check: UploadCheck::HeldStill,
    } = &plan.action
    {
        return copy_held_still((target, lanes), &plan.key, object, source, progress).await;
    }
    let file = |content| FileRef {
        size: plan.size,
        content,
        chunk: plan.chunk.clone(),
        stamp: plan.stamp,
    };
    let (content, new) = match &plan.action {
        Action::Keep(f) => return Ok(Outcome::Stored((plan.key.clone(), f.clone(), None))),
        Action::Inline { data, .. } => (Content::Inline { data: data.clone() }, None),
        Action::Adopt { object, source } => (adopted(object, source).await?, None),
        Action::Upload {
            object,
            source,
            check,
        } => {
            let (md5, stored) = upload(
                (target, lanes),
                object,
                source,
                0,
                source.len,
                *check,
                plan.stamp,
                progress,
            )
            .await?;
            (
                Content::Object {
                    key: object.clone(),
                    md5,
                    stored_size: record_stored_size(source.len, stored),
                },
                Some((object.clone(), stored)),
            )
        }
        Action::Append {
            base,
            from,
            to,
            object,
            source,
        } => {
            let appended = Appended {
                base,
                from: *from,
                to: *to,
                object,
                source,
            };
            let (content, stored) = append((target, lanes), appended, progress).await?;
            (content, Some((object.clone(), stored)))
        }
    };
    progress.file_done(&plan.key, plan.upload_bytes());
    Ok(Outcome::Stored((plan.key.clone(), file(content), new)))
}

/// The bytes a growing chunk gained since the previous point, stored as one more segment.
struct Appended<'a> {
    base: &'a [Segment],
    from: u64,
    to: u64,
    object: &'a str,
    source: &'a LocalFile,
}

/// Uploads the appended bytes; the content is the previous segments plus the new one, with the
/// MD5 of the data's last [`TAIL_WINDOW`] bytes (and the size the store holds for the new one).
async fn append(
    store: (&Arc<dyn Target>, &Md5Lanes),
    a: Appended<'_>,
    progress: &Arc<dyn Progress>,
) -> Result<(Content, u64)> {
    let len = a.to - a.from;
    let (md5, stored) = upload(
        store,
        a.object,
        a.source,
        a.from,
        len,
        UploadCheck::None,
        None,
        progress,
    )
    .await?;
    let mut segments = a.base.to_vec();
    segments.push(Segment {
        key: a.object.to_string(),
        at: a.from,
        len,
        md5,
        stored_size: record_stored_size(len, stored),
    });
    let window = TAIL_WINDOW.min(a.to);
    let tail = md5_of_range(&a.source.path, None, a.to - window, window)
        .await
        .map_err(|e| read_error(&a.source.path, e))?;
    let content = Content::Segments {
        segments,
        data_end: a.to,
        tail: Window {
            at: a.to - window,
            len: window,
            md5: hex::encode(tail),
        },
    };
    Ok((content, stored))
}

/// Copies a file the engine does not know ([`UploadCheck::HeldStill`]): opened now (never
/// through a symlink), stored whole, and kept only if its stamp is the same before and after the
/// copy; the point records that stamp. One that changed or could not be read is left out, its
/// object removed again (best effort: prune removes it otherwise). Only a failure of the store
/// fails the run.
async fn copy_held_still(
    (target, lanes): (&Arc<dyn Target>, &Md5Lanes),
    key: &str,
    object: &str,
    source: &LocalFile,
    progress: &Arc<dyn Progress>,
) -> Result<Outcome> {
    let left_out = |why: String| Ok(Outcome::LeftOut(Skipped::new(key, why)));
    const CHANGED: &str =
        "it changed while it was read; the next run stores it if it holds still then";
    let path = &source.path;
    let opened = other_files::open(path).and_then(|f| f.metadata().map(|m| (f, m)));
    let (file, meta) = match opened {
        Ok(opened) => opened,
        Err(e) => return left_out(other_files::unreadable(&e)),
    };
    if !meta.is_file() {
        return left_out("it is no longer a regular file".into());
    }
    let before = FileStamp::of(&meta);
    let file = Arc::new(file);
    let p = progress.clone();
    let body = Upload::handle(path, file.clone(), before.len)
        .with_lanes(lanes)
        .with_progress(Arc::new(move |n| p.advance(n)));
    let put = target.put(object, body).await;
    match put.as_ref().err().and_then(TargetError::body_failure) {
        Some(io::ErrorKind::UnexpectedEof) => return left_out(CHANGED.into()),
        Some(kind) => return left_out(other_files::unreadable(&io::Error::from(kind))),
        None => {}
    }
    let stored = checked(put, before.len, path, object)?;
    if file.metadata().map(|m| FileStamp::of(&m)).ok() != Some(before) {
        let _ = target.delete(object).await;
        return left_out(CHANGED.into());
    }
    progress.file_done(key, before.len);
    let file = FileRef {
        size: before.len,
        content: Content::Object {
            key: object.to_string(),
            md5: hex::encode(stored.md5),
            stored_size: record_stored_size(before.len, stored.stored_size),
        },
        chunk: None,
        stamp: Some(before),
    };
    Ok(Outcome::Stored((
        key.to_string(),
        file,
        Some((object.to_string(), stored.stored_size)),
    )))
}

/// Uploads `len` bytes of `source` from `offset` as `object`; returns their MD5 (hex) and the
/// size the store holds for them.
/// `captured`: for [`UploadCheck::Unchanged`], the file's metadata when it was captured.
#[allow(clippy::too_many_arguments)]
async fn upload(
    (target, lanes): (&Arc<dyn Target>, &Md5Lanes),
    object: &str,
    source: &LocalFile,
    offset: u64,
    len: u64,
    check: UploadCheck,
    captured: Option<FileStamp>,
    progress: &Arc<dyn Progress>,
) -> Result<(String, u64)> {
    let mut body = match &source.handle {
        Some(h) if offset == 0 => Upload::handle(&source.path, h.clone(), len),
        _ => Upload::file_range(&source.path, offset, len),
    };
    if check == UploadCheck::TrailingMd5 {
        body = body.check_trailing_md5();
    }
    let p = progress.clone();
    let body = body
        .with_lanes(lanes)
        .with_progress(Arc::new(move |n| p.advance(n)));
    let stored = checked(target.put(object, body).await, len, &source.path, object)?;
    if let (UploadCheck::Unchanged, Some(before), Some(handle)) = (check, captured, &source.handle)
    {
        if stamp_of(handle, source)? != before {
            return Err(EngineError::source_changing(format!(
                "{} changed while it was copied: is a scavenge running, or the node not stopped (--include-secondary-index)? Run again when it is quiet; the backup is left as it was",
                source.path.display()
            )));
        }
    }
    Ok((hex::encode(stored.md5), stored.stored_size))
}

fn stamp_of(handle: &std::fs::File, source: &LocalFile) -> Result<FileStamp> {
    handle
        .metadata()
        .map(|m| FileStamp::of(&m))
        .map_err(|e| EngineError::io(source.path.display(), e))
}

/// What `put` stored from the `len` bytes of `path`, or why it stored nothing usable: the
/// file could not be read, the store failed, or it stored another size.
fn checked(
    put: std::result::Result<Stored, TargetError>,
    len: u64,
    path: &std::path::Path,
    object: &str,
) -> Result<Stored> {
    match put {
        Ok(stored) if stored.size == len => Ok(stored),
        Ok(stored) => Err(EngineError::storage(
            object,
            TargetError::permanent(format!(
                "the target stored {} bytes of a {len}-byte upload",
                stored.size
            )),
        )),
        Err(e) => Err(match e.body_failure() {
            Some(kind) => source_read_failure(path, kind),
            None => EngineError::storage(object, e),
        }),
    }
}

fn source_read_failure(path: &std::path::Path, kind: io::ErrorKind) -> EngineError {
    match kind {
        io::ErrorKind::NotFound => vanished(&path.display().to_string()),
        io::ErrorKind::UnexpectedEof => EngineError::source_changing(format!(
            "{} shrank while it was copied (replaced or truncated): is a scavenge running? Stop it and run again; the backup is left as it was",
            path.display()
        )),
        io::ErrorKind::InvalidData => EngineError::not_a_database(format!(
            "{} fails its own MD5 check: the database itself is damaged (restore that file from a backup or let the node rebuild it); nothing was recorded, the backup keeps its last good copy",
            path.display()
        )),
        other => EngineError::io(path.display(), io::Error::from(other)),
    }
}

fn read_error(path: &std::path::Path, e: io::Error) -> EngineError {
    source_read_failure(path, e.kind())
}

/// Checks that every new object is stored with its stored size: a store that lost a write
/// fails the run instead of leaving a point that does not restore.
pub(crate) async fn confirm(target: &dyn Target, new_objects: &[(String, u64)]) -> Result<()> {
    const HEAD_AT_MOST: usize = 16;
    let mismatch = |key: &str, size: u64, found: Option<u64>| {
        EngineError::storage(
            key,
            TargetError::permanent(format!(
                "stored {size} bytes but the store now reports {}: it lost or changed the object; run the backup again",
                found.map_or("nothing".into(), |s| format!("{s} bytes"))
            )),
        )
    };
    if new_objects.len() <= HEAD_AT_MOST {
        for (key, size) in new_objects {
            match target.head(key).await {
                Ok(info) if info.size == *size => {}
                Ok(info) => return Err(mismatch(key, *size, Some(info.size))),
                Err(e) if e.is_not_found() => return Err(mismatch(key, *size, None)),
                Err(e) => return Err(EngineError::storage(key, e)),
            }
        }
        return Ok(());
    }
    let listed: BTreeMap<String, u64> = target
        .list("")
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    for (key, size) in new_objects {
        match listed.get(key) {
            Some(s) if s == size => {}
            found => return Err(mismatch(key, *size, found.copied())),
        }
    }
    Ok(())
}

/// Writes the root mirror of the new point, in order.
pub(crate) async fn mirror(target: &dyn Target, mirrors: &[Mirror]) -> Result<()> {
    for m in mirrors {
        match m {
            Mirror::Bytes { key, data } => target
                .put(key, Upload::bytes(data.clone()))
                .await
                .map(|_| ()),
            Mirror::Copy { from, to } => target.copy(from, to).await,
            Mirror::Delete { key } => target.delete(key).await,
        }
        .map_err(|e| {
            let key = match m {
                Mirror::Bytes { key, .. } | Mirror::Delete { key } => key,
                Mirror::Copy { to, .. } => to,
            };
            EngineError::storage(key, e)
        })?;
    }
    Ok(())
}
