//! The server's restore-time truncation (`TFChunkDbTruncator`, docs/FORMAT.md §1.6 and "Restore
//! semantics"), as a plan over the scanned chunk files. The checker applies it in memory; a node
//! opened with `truncate.chk` ≠ -1 applies it to disk.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use esbackup_engine::format::chunk::{self, HEADER_LEN};

use crate::layout::{self, ChunkFile, Slot};

/// The checkpoints truncation reads and lowers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCheckpoints {
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    pub truncate: i64,
}

/// What truncating to `truncate` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to delete (indexes into the scanned list), highest first.
    pub delete: Vec<usize>,
    /// A file to extend to full size and zero-fill from this local data position.
    pub zero_fill: Option<(usize, u64)>,
    /// The position the checkpoints are lowered to.
    pub truncate_to: i64,
    /// Why the server would refuse to truncate (it throws).
    pub errors: Vec<String>,
}

/// The server's default `MaxTruncation`: it refuses to truncate more than this (docs/FORMAT.md
/// §T.2 #1).
pub const MAX_TRUNCATION: i64 = 256 << 20;

/// Files named for chunk `writer/chunk_size + 1`: the truncator refuses to run if any exist.
pub fn excessive_files(files: &[ChunkFile], chunk_size: u32, writer: i64) -> Vec<String> {
    let next = (writer / chunk_size as i64 + 1) as u32;
    layout::versions_of(files, next)
        .into_iter()
        .map(|i| files[i].file_name())
        .collect()
}

/// Plans the truncation of the log to `truncate` (which must not be -1).
pub fn plan(
    files: &[ChunkFile],
    chunk_size: u32,
    writer: i64,
    truncate: i64,
    archive: bool,
) -> Plan {
    let cs = chunk_size as i64;
    let mut plan = Plan {
        truncate_to: truncate,
        ..Plan::default()
    };
    if writer - truncate > MAX_TRUNCATION {
        plan.errors.push(format!(
            "MaxTruncation is set and truncate checkpoint is out of bounds: writer {writer} - truncate {truncate} > {MAX_TRUNCATION}"
        ));
    }
    let excessive = excessive_files(files, chunk_size, writer);
    if !excessive.is_empty() {
        plan.errors.push(format!(
            "truncate.chk is set but excessive chunk files exist beyond the writer chunk: {}",
            excessive.join(", ")
        ));
    }
    let old_last = (writer.max(0) / cs) as u32;
    let new_last = (truncate / cs) as u32;
    let to_boundary = truncate % cs == 0;
    let slots = layout::enumerate(files, old_last);
    let mut target = None;
    for slot in &slots {
        match *slot {
            Slot::Latest { file, end, .. } if target.is_none() && end >= new_last => {
                target = Some(file)
            }
            Slot::Missing { number } if number < new_last && !archive => plan.errors.push(format!(
                "truncation: no file for chunk #{number} below the truncation chunk"
            )),
            _ => {}
        }
    }
    let Some(target) = target else {
        return plan;
    };
    let (header, scavenged) = match &files[target].info {
        Ok(info) => (info.header.clone(), info.header.is_scavenged),
        Err(e) => {
            plan.errors.push(format!(
                "truncation: cannot read {}: {e}",
                files[target].file_name()
            ));
            return plan;
        }
    };
    let delete_from = if scavenged {
        header.start
    } else if to_boundary {
        new_last
    } else {
        new_last + 1
    };
    plan.delete = (0..files.len())
        .filter(|&i| files[i].name.start >= delete_from)
        .rev()
        .collect();
    if !scavenged && !to_boundary {
        if header.start != header.end
            || truncate < header.start_position()
            || truncate >= header.end_position()
        {
            plan.errors.push(format!(
                "truncation: {} is not a correct unscavenged chunk for position {truncate}",
                files[target].file_name()
            ));
        }
        plan.zero_fill = Some((target, (truncate - header.start_position()) as u64));
    } else {
        plan.truncate_to = header.start_position();
    }
    plan
}

/// Lowers the checkpoints as the truncator does: epoch ≥ position → -1, chaser and writer down
/// to the position, truncate → -1.
pub fn lower(cps: LogCheckpoints, truncate_to: i64) -> LogCheckpoints {
    LogCheckpoints {
        writer: cps.writer.min(truncate_to),
        chaser: cps.chaser.min(truncate_to),
        epoch: if cps.epoch >= truncate_to {
            -1
        } else {
            cps.epoch
        },
        truncate: -1,
    }
}

/// Applies a plan in memory: deleted files leave the list, the zero-filled one becomes ongoing.
pub fn apply_in_memory(files: &mut Vec<ChunkFile>, plan: &Plan) {
    if let Some((i, pos)) = plan.zero_fill {
        files[i].zero_from = Some(pos);
    }
    let mut keep = vec![true; files.len()];
    for &i in &plan.delete {
        keep[i] = false;
    }
    let mut i = 0;
    files.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

/// Applies a plan to disk: deletes files (highest first), extends and zero-fills the chunk.
pub fn apply_to_disk(files: &[ChunkFile], plan: &Plan, chunk_size: u32) -> io::Result<()> {
    for &i in &plan.delete {
        crate::chunk_writer::make_writable(&files[i].path).ok();
        fs::remove_file(&files[i].path)?;
    }
    if let Some((i, pos)) = plan.zero_fill {
        let path = &files[i].path;
        crate::chunk_writer::make_writable(path)?;
        let file = OpenOptions::new().write(true).open(path)?;
        let len = chunk::active_file_len(chunk_size);
        file.set_len(len)?;
        let from = HEADER_LEN + pos;
        let zeros = vec![0u8; 1 << 16];
        let mut at = from;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
    }
    Ok(())
}
