//! Checks a restored database the way the server would open it (docs/FORMAT.md "Restore semantics to
//! verify backups", §1.1 startup housekeeping, `TFChunkDbTruncator`, `TFChunkDb.Open`,
//! `TableIndex` startup). Nothing on disk is modified: truncation is modelled in memory.

use std::fs;
use std::io::Read;
use std::path::Path;

use esbackup_engine::format::chunk::{self, HEADER_LEN};
use esbackup_engine::format::indexmap::{self, IndexMap};
use esbackup_engine::format::{checkpoint, guid, ptable, trailing_md5_matches};

use crate::layout::{self, ChunkFile, Slot};
use crate::records;
use crate::truncation::{self, LogCheckpoints};

/// What the checker should assume about the database.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Archive mode: chunks missing at the start of the log are in the archive.
    pub archive: bool,
    /// A restore sets `truncate.chk` to `chaser.chk`: flag any other value.
    pub expect_truncate_equals_chaser: bool,
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Everything that would make the server refuse the database or lose data; one line each.
    pub violations: Vec<String>,
    /// Oddities the server tolerates (e.g. a stream-existence checkpoint ahead of the log).
    pub warnings: Vec<String>,
    /// Writer and chaser checkpoints after the truncation model.
    pub writer: i64,
    pub chaser: i64,
    /// Latest-version chunk files kept after the truncation model.
    pub chunks: usize,
    /// PTables the indexmap references.
    pub ptables: usize,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the restored database at `db` with its index at `index`.
pub fn check(db: &Path, index: &Path, opts: &CheckOptions) -> CheckReport {
    let mut r = CheckReport::default();
    let mut read_chk = |name: &str, required: bool| -> Option<i64> {
        let path = db.join(name);
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == checkpoint::CHECKPOINT_LEN => {
                Some(checkpoint::decode(&bytes).unwrap())
            }
            Ok(bytes) => {
                r.violations.push(format!(
                    "{name}: {} bytes, a checkpoint is exactly 8",
                    bytes.len()
                ));
                None
            }
            Err(e) => {
                if required {
                    r.violations.push(format!("{name}: cannot read: {e}"));
                }
                None
            }
        }
    };
    let writer = read_chk(checkpoint::WRITER, true);
    let chaser = read_chk(checkpoint::CHASER, true);
    let epoch = read_chk(checkpoint::EPOCH, true);
    let truncate = read_chk(checkpoint::TRUNCATE, true);
    read_chk(checkpoint::PROPOSAL, true);
    let (Some(writer), Some(chaser)) = (writer, chaser) else {
        return r;
    };
    let (epoch, truncate) = (epoch.unwrap_or(-1), truncate.unwrap_or(-1));
    r.writer = writer;
    r.chaser = chaser;
    if opts.expect_truncate_equals_chaser && truncate != chaser {
        r.violations.push(format!(
            "truncate.chk is {truncate} but chaser.chk is {chaser} (a restore sets truncate = chaser)"
        ));
    }

    let mut files = match layout::scan(db) {
        Ok(f) => f,
        Err(e) => {
            r.violations.push(format!(
                "cannot list the db directory {}: {e}",
                db.display()
            ));
            return r;
        }
    };
    let chunk_size = check_headers(&files, &mut r);
    let mut cps = LogCheckpoints {
        writer,
        chaser,
        epoch,
        truncate,
    };
    if let Some(cs) = chunk_size {
        if truncate != -1 {
            let plan = truncation::plan(&files, cs, writer, truncate, opts.archive);
            r.violations.extend(plan.errors.iter().cloned());
            truncation::apply_in_memory(&mut files, &plan);
            cps = truncation::lower(cps, plan.truncate_to);
        }
        r.writer = cps.writer;
        r.chaser = cps.chaser;
        check_log(&files, cs, cps, opts, &mut r);
    } else if writer > 0 && !opts.archive {
        r.violations.push(format!(
            "no readable chunk file, but writer.chk is {writer}"
        ));
    }
    if cps.chaser > cps.writer {
        r.violations.push(format!(
            "chaser.chk {} is beyond writer.chk {}",
            cps.chaser, cps.writer
        ));
    }
    if cps.epoch > cps.writer {
        r.violations.push(format!(
            "epoch.chk {} is beyond writer.chk {}",
            cps.epoch, cps.writer
        ));
    }
    check_index(index, cps, &mut r);
    r
}

/// Header/name consistency; returns the chunk size all chunks should share.
fn check_headers(files: &[ChunkFile], r: &mut CheckReport) -> Option<u32> {
    let mut chunk_size = None;
    for f in files {
        let name = f.file_name();
        let info = match &f.info {
            Ok(i) => i,
            Err(e) => {
                r.violations.push(format!("{name}: unreadable chunk: {e}"));
                continue;
            }
        };
        let h = &info.header;
        let cs = *chunk_size.get_or_insert(h.chunk_size);
        if h.chunk_size != cs {
            r.violations.push(format!(
                "{name}: header chunk size {} differs from {cs} of the other chunks",
                h.chunk_size
            ));
        }
        if h.start != f.name.start {
            r.violations
                .push(format!("{name}: header start number is {}", h.start));
        }
        if f.name.version == 0 && h.end != h.start {
            r.violations.push(format!(
                "{name}: a version-0 file must cover one chunk, header says {}..{}",
                h.start, h.end
            ));
        }
    }
    chunk_size
}

/// The chunk rules of `TFChunkDb.Open` on the (possibly truncated) file set.
fn check_log(
    files: &[ChunkFile],
    cs: u32,
    cps: LogCheckpoints,
    opts: &CheckOptions,
    r: &mut CheckReport,
) {
    let csl = cs as i64;
    let writer = cps.writer.max(0);
    let mut last = (writer / csl) as u32;
    let last_versions = layout::versions_of(files, last);
    let mut seen_local = false;
    for slot in layout::enumerate(files, last) {
        match slot {
            Slot::Missing { number } if number < last && (seen_local || !opts.archive) => {
                r.violations.push(format!(
                    "missing chunk #{number} below the writer chunk #{last}"
                ));
            }
            Slot::Latest { file, start, .. } if start < last => {
                seen_local = true;
                let f = &files[file];
                let special = last_versions.is_empty() && (start as i64 + 1) * csl == writer;
                if !f.is_completed() && !special {
                    r.violations.push(format!(
                        "{} is below the writer chunk but not completed",
                        f.file_name()
                    ));
                }
            }
            Slot::Latest { .. } => seen_local = true,
            _ => {}
        }
    }

    // The writer's chunk.
    if let Some(&i) = last_versions.first() {
        let f = &files[i];
        let local = (writer - last as i64 * csl) as u64;
        if f.is_scavenged() {
            if local != 0 {
                r.violations.push(format!(
                    "writer.chk {writer} points inside scavenged chunk {}",
                    f.file_name()
                ));
            }
            last = f.end() + 1;
        } else {
            if f.is_completed() {
                r.warnings.push(format!(
                    "{} is completed but writer.chk {writer} points inside it",
                    f.file_name()
                ));
            }
            if let Err(e) = walk_prefix(f, local) {
                r.violations
                    .push(format!("{}: records up to writer.chk: {e}", f.file_name()));
            }
        }
    } else if writer != last as i64 * csl {
        r.violations.push(format!(
            "chunk #{last} holding writer.chk {writer} is missing (writer is not on a chunk boundary)"
        ));
    }

    // Files beyond the writer chunk: one version-0 chunk is removed, anything else is fatal.
    let mut unexpected = Vec::new();
    let mut kept = 0;
    for slot in layout::enumerate(files, last) {
        match slot {
            Slot::Latest { file, start, end } => {
                let f = &files[file];
                if start > last {
                    if !(start == last + 1 && start == end && f.name.version == 0) {
                        unexpected.push(f.file_name());
                    }
                    continue;
                }
                kept += 1;
                if f.is_completed() {
                    check_completed(f, r);
                }
            }
            Slot::Old { file, start } if start > last => unexpected.push(files[file].file_name()),
            _ => {}
        }
    }
    if !unexpected.is_empty() {
        r.violations.push(format!(
            "Unexpected files beyond the writer chunk #{last}: {}",
            unexpected.join(", ")
        ));
    }
    r.chunks = kept;
    if cps.epoch >= 0 {
        check_epoch(files, cs, cps, opts, r);
    }
}

/// MD5 over `[0, len-16)` and 4 KiB alignment of a completed chunk.
fn check_completed(f: &ChunkFile, r: &mut CheckReport) {
    let name = f.file_name();
    let Ok(info) = &f.info else { return };
    if info.header.min_compatible_version >= 3 && info.file_len % chunk::ALIGNMENT != 0 {
        r.violations.push(format!(
            "{name}: completed chunk of {} bytes is not 4 KiB aligned",
            info.file_len
        ));
    }
    match trailing_md5_matches(&f.path) {
        Ok(true) => {}
        Ok(false) => r
            .violations
            .push(format!("{name}: MD5 does not match the completed chunk")),
        Err(e) => r.violations.push(format!("{name}: cannot verify MD5: {e}")),
    }
}

/// Reads the data area of a chunk: up to `limit` bytes, or the footer's physical size.
fn read_data(f: &ChunkFile, limit: Option<u64>) -> Result<Vec<u8>, String> {
    let len = match (limit, &f.info) {
        (Some(l), _) => l,
        (None, Ok(info)) => match &info.footer {
            Some(footer) if f.zero_from.is_none() => footer.physical_data_size.max(0) as u64,
            _ => f.zero_from.unwrap_or(0),
        },
        (None, Err(e)) => return Err(e.clone()),
    };
    let mut file = fs::File::open(&f.path).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; (HEADER_LEN + len) as usize];
    file.read_exact(&mut buf)
        .map_err(|_| format!("file is shorter than {} bytes of data", len))?;
    buf.drain(..HEADER_LEN as usize);
    Ok(buf)
}

/// Walks the framed records in `[0, local)` of an unscavenged chunk; positions must match.
fn walk_prefix(f: &ChunkFile, local: u64) -> Result<(), String> {
    let data = read_data(f, Some(local))?;
    let start =
        f.name.start as i64 * f.info.as_ref().map_err(|e| e.clone())?.header.chunk_size as i64;
    for rec in records::walk(&data)? {
        if rec.log_position != start + rec.offset as i64 {
            return Err(format!(
                "record at data offset {} says log position {}, expected {}",
                rec.offset,
                rec.log_position,
                start + rec.offset as i64
            ));
        }
    }
    Ok(())
}

/// `epoch.chk` must point at an epoch System record (skipped when its chunk is archived).
fn check_epoch(
    files: &[ChunkFile],
    cs: u32,
    cps: LogCheckpoints,
    opts: &CheckOptions,
    r: &mut CheckReport,
) {
    let number = (cps.epoch / cs as i64) as u32;
    let holder = layout::enumerate(files, number)
        .into_iter()
        .find_map(|s| match s {
            Slot::Latest { file, start, end } if start <= number && number <= end => Some(file),
            _ => None,
        });
    let Some(i) = holder else {
        if !opts.archive {
            r.violations.push(format!(
                "epoch.chk {} points into chunk #{number}, which is missing",
                cps.epoch
            ));
        }
        return;
    };
    let f = &files[i];
    let limit =
        (!f.is_completed()).then(|| (cps.writer - f.name.start as i64 * cs as i64).max(0) as u64);
    let found = read_data(f, limit).and_then(|data| {
        Ok(records::walk(&data)?
            .iter()
            .any(|rec| rec.log_position == cps.epoch && records::is_epoch(rec.payload(&data))))
    });
    match found {
        Ok(true) => {}
        Ok(false) => r.violations.push(format!(
            "epoch.chk {} does not point at an epoch record in {}",
            cps.epoch,
            f.file_name()
        )),
        Err(e) => r.violations.push(format!(
            "epoch.chk {}: cannot read records of {}: {e}",
            cps.epoch,
            f.file_name()
        )),
    }
}

/// The indexmap, its PTables and the stream-existence checkpoint.
fn check_index(index: &Path, cps: LogCheckpoints, r: &mut CheckReport) {
    let map_path = index.join(indexmap::FILE_NAME);
    match fs::read(&map_path) {
        Ok(bytes) => match IndexMap::parse(&bytes) {
            Ok(map) => check_tables(index, &map, cps, r),
            Err(e) => r.violations.push(format!("indexmap: {e}")),
        },
        Err(_) => {
            let has_tables = fs::read_dir(index)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_str().is_some_and(guid::is_guid_name));
            if has_tables {
                r.warnings.push(
                    "index has PTables but no indexmap: the server rebuilds the index".into(),
                );
            }
        }
    }
    let chk = index
        .join("stream-existence")
        .join("streamExistenceFilter.chk");
    match fs::read(&chk) {
        Ok(b) if b.len() != checkpoint::CHECKPOINT_LEN => r.violations.push(format!(
            "streamExistenceFilter.chk: {} bytes, a checkpoint is exactly 8",
            b.len()
        )),
        Ok(b) => {
            let v = checkpoint::decode(&b).unwrap();
            if v > cps.writer {
                r.warnings.push(format!(
                    "streamExistenceFilter.chk {v} is beyond writer.chk {} (the server truncates it back)",
                    cps.writer
                ));
            }
        }
        Err(_) => {}
    }
}

fn check_tables(index: &Path, map: &IndexMap, cps: LogCheckpoints, r: &mut CheckReport) {
    r.ptables = map.tables.len();
    if map.commit_checkpoint >= cps.chaser {
        r.violations.push(format!(
            "indexmap commit checkpoint {} is not below chaser.chk {} (the server would rebuild the index)",
            map.commit_checkpoint, cps.chaser
        ));
    }
    let mut expected = (0u32, 0u32);
    for t in &map.tables {
        if t.level == expected.0 && t.position == expected.1 {
            expected.1 += 1;
        } else if t.level > expected.0 && t.position == 0 {
            expected = (t.level, 1);
        } else {
            r.violations.push(format!(
                "indexmap lists table {} at level {} position {} out of order",
                t.file, t.level, t.position
            ));
        }
        let path = index.join(&t.file);
        match ptable::verify(&path) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => r.violations.push(format!("PTable {}: {why}", t.file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => r
                .violations
                .push(format!("indexmap names PTable {} which is missing", t.file)),
            Err(e) => r.violations.push(format!("PTable {}: {e}", t.file)),
        }
    }
}
