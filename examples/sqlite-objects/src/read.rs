//! `get`: a body streamed piece by piece from a read transaction of its own, so the reader
//! keeps the version it started with while writers replace or delete the object.

use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;
use esbackup_engine::{ByteStream, TargetError};
use futures::stream::{self, StreamExt};
use rusqlite::{params, Connection, OptionalExtension};

use super::{connect, sqlite_error};

/// Where a reader is: its connection (holding the snapshot), the body, the bytes left.
struct Reader {
    conn: Connection,
    body: i64,
    at: u64,
    end: u64,
}

/// Opens a snapshot of `key` and streams `range` of it (a range past the end: up to the end).
pub(crate) async fn open(
    path: PathBuf,
    key: String,
    range: Option<Range<u64>>,
) -> Result<ByteStream, TargetError> {
    let reader = blocking(path.clone(), move || {
        let conn = connect(&path)?;
        conn.execute_batch("BEGIN")?; // the first read below fixes the snapshot
        let found: Option<(i64, i64)> = conn
            .query_row(
                "SELECT body, size FROM objects WHERE key = ?1",
                [&key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        Ok(found
            .map(|(body, size)| {
                let size = size as u64;
                let range = range.unwrap_or(0..size);
                let end = range.end.min(size);
                Reader {
                    conn,
                    body,
                    at: range.start.min(end),
                    end,
                }
            })
            .ok_or(key))
    })
    .await?
    .map_err(TargetError::not_found)?;
    Ok(stream::try_unfold(reader, next_piece).boxed())
}

/// The next piece of the range, or the end.
async fn next_piece(reader: Reader) -> Result<Option<(Bytes, Reader)>, TargetError> {
    if reader.at >= reader.end {
        return Ok(None);
    }
    let path = PathBuf::from(reader.conn.path().unwrap_or("sqlite"));
    blocking(path, move || {
        let (offset, data): (i64, Vec<u8>) = reader.conn.query_row(
            "SELECT offset, data FROM pieces WHERE body = ?1 AND offset <= ?2
             ORDER BY offset DESC LIMIT 1",
            params![reader.body, reader.at as i64],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let from = (reader.at - offset as u64) as usize;
        let to = ((reader.end - offset as u64) as usize).min(data.len());
        if from >= to {
            // The piece holding `at` is missing: the body is damaged.
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        let piece = Bytes::from(data).slice(from..to);
        let at = reader.at + piece.len() as u64;
        Ok(Some((piece, Reader { at, ..reader })))
    })
    .await
}

/// Runs `f` on the blocking thread pool; SQLite errors name the file.
async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, TargetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TargetError::permanent(format!("{}: {e}", path.display())))?
        .map_err(|e| sqlite_error(&path, e))
}
