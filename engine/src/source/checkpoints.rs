//! The log checkpoints, read in the vendor's order (chaser, epoch, writer, proposal) before the
//! chunk files are listed: chunk data is flushed before `writer.chk` moves, so the chunks then
//! hold at least everything up to the captured writer.

use std::io;

use bytes::Bytes;

use super::SourceDirs;
use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::layout;
use crate::point::Checkpoints;

/// The checkpoints a backup captured: their values and their bytes by file name.
#[derive(Clone, Debug)]
pub(crate) struct CapturedCheckpoints {
    pub values: Checkpoints,
    /// (file name, bytes), in the order they were read.
    pub files: Vec<(String, Bytes)>,
}

/// Reads the checkpoints; a missing `writer.chk`/`chaser.chk`, a file that is not 8 bytes, or
/// values that contradict each other mean the folder is not a consistent database.
pub(crate) fn capture(dirs: &SourceDirs) -> Result<CapturedCheckpoints> {
    let mut values = [-1i64; 4];
    let mut files = Vec::new();
    for (i, name) in checkpoint::BACKED_UP.iter().enumerate() {
        let path = dirs.db.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                values[i] = checkpoint::decode(&bytes)
                    .map_err(|e| EngineError::not_a_database(format!("{}: {e}", path.display())))?;
                files.push((name.to_string(), Bytes::from(bytes)));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if matches!(*name, checkpoint::WRITER | checkpoint::CHASER) {
                    return Err(EngineError::not_a_database(format!(
                        "{} is missing: {} is not a complete database",
                        path.display(),
                        dirs.db.display()
                    )));
                }
            }
            Err(e) => return Err(EngineError::io(path.display(), e)),
        }
    }
    for name in layout::EXTRA_CHECKPOINTS {
        let path = dirs.db.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => files.push((name.to_string(), Bytes::from(bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(path.display(), e)),
        }
    }
    let [chaser, epoch, writer, proposal] = values;
    let values = Checkpoints {
        writer,
        chaser,
        epoch,
        proposal,
    };
    check(&values).map_err(|why| {
        EngineError::not_a_database(format!(
            "{why} in {}: the database is inconsistent",
            dirs.db.display()
        ))
    })?;
    Ok(CapturedCheckpoints { values, files })
}

/// The relations the server checks when it opens a database.
fn check(c: &Checkpoints) -> std::result::Result<(), String> {
    if c.writer < 0 {
        return Err(format!("writer.chk is negative ({})", c.writer));
    }
    if c.chaser > c.writer {
        return Err(format!(
            "chaser.chk ({}) is beyond writer.chk ({})",
            c.chaser, c.writer
        ));
    }
    if c.epoch > c.writer {
        return Err(format!(
            "epoch.chk ({}) is beyond writer.chk ({})",
            c.epoch, c.writer
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps(writer: i64, chaser: i64, epoch: i64) -> Checkpoints {
        Checkpoints {
            writer,
            chaser,
            epoch,
            proposal: -1,
        }
    }

    #[test]
    fn contradicting_checkpoints_are_refused() {
        assert!(check(&cps(100, 100, 0)).is_ok());
        assert!(check(&cps(100, 50, -1)).is_ok());
        assert!(check(&cps(100, 101, 0)).unwrap_err().contains("chaser"));
        assert!(check(&cps(100, 0, 101)).unwrap_err().contains("epoch"));
        assert!(check(&cps(-5, -5, -1)).unwrap_err().contains("negative"));
    }
}
