//! The records of a database folder as the simulator's own walker reads them back: the chunk
//! versions the server would use, in log order, up to `writer.chk` — what tests compare a
//! reader of backed-up chunks (`esbackup log`) with.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use esbackup_engine::format::checkpoint;
use esbackup_engine::format::chunk::HEADER_LEN;

use crate::layout::{self, Slot};
use crate::records;

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRecord {
    /// Its log position (the record's own `LogPosition`).
    pub position: i64,
    /// Where the next record starts.
    pub next_position: i64,
    /// 0 prepare, 1 commit, 2 system.
    pub kind: u8,
    /// The payload between the two lengths.
    pub payload: Vec<u8>,
}

/// Every record of `db` below its writer checkpoint, in log order (the whole log in memory:
/// for the simulator's small databases).
pub fn read_log(db: &Path) -> io::Result<Vec<LoggedRecord>> {
    let writer = checkpoint::read(&db.join(checkpoint::WRITER))?;
    let files = layout::scan(db)?;
    let mut out = Vec::new();
    for slot in layout::enumerate(&files, 0) {
        let Slot::Latest { file, .. } = slot else {
            continue;
        };
        let f = &files[file];
        let info = f.info.clone().map_err(io::Error::other)?;
        if info.header.start_position() >= writer {
            continue;
        }
        let data = if f.is_completed() {
            crate::scavenge::read_records(&f.path)?
        } else {
            let len = (writer - info.header.start_position()) as u64;
            let mut buf = vec![0u8; (HEADER_LEN + len) as usize];
            File::open(&f.path)?.read_exact(&mut buf)?;
            buf.split_off(HEADER_LEN as usize)
        };
        let walked = records::walk(&data).map_err(io::Error::other)?;
        out.extend(
            walked
                .iter()
                .filter(|r| r.log_position < writer)
                .map(|r| LoggedRecord {
                    position: r.log_position,
                    next_position: r.log_position + r.framed_len as i64,
                    kind: r.kind,
                    payload: r.payload(&data).to_vec(),
                }),
        );
    }
    Ok(out)
}
