//! Example of a custom esbackup storage backend: every object of a backup location in one
//! SQLite file, written against the public [`Target`] trait only.
//!
//! ```text
//! objects(key TEXT PRIMARY KEY, body, size, modified)   the current body of each key
//! bodies(id, started)                                   one per write, published or not
//! pieces(body, offset, data BLOB)                       a body's bytes, 1 MiB per row
//! ```
//!
//! - **Streamed bodies**: `put` reads its [`Upload`] through [`Upload::stream`] and inserts each
//!   1 MiB piece as a row of a new, unpublished body: a large file is never in memory whole.
//! - **Atomic replacement**: one transaction points the key at the new body and deletes the old
//!   one. A body whose stream fails (or ends short) is deleted and never published.
//! - **Snapshot reads**: `get` reads on a connection of its own inside one read transaction
//!   (WAL mode), so a reader streams the body it started with while writers replace it.
//! - **Durability**: every commit is fsynced (`synchronous=FULL`), so `sync` has nothing left.
//! - **Exclusive create**: `put_if_absent` checks and inserts in one write transaction.
//! - Leftovers of killed writes are unpublished bodies: [`Target::incomplete_uploads`] counts
//!   them, [`Target::abort_stale_uploads`] deletes them.
//!
//! All SQLite calls run on the blocking thread pool (`spawn_blocking`), never on the runtime.
//! See `tests/kit.rs` for how it is tested and the README for how to use it.

mod read;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use esbackup_engine::{ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};
use futures::StreamExt;
use rusqlite::{params, Connection, OptionalExtension, ToSql};

/// Bytes per `pieces` row.
const PIECE: usize = 1 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY AUTOINCREMENT, started INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pieces (
    body INTEGER NOT NULL, offset INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (body, offset));
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, body INTEGER NOT NULL, size INTEGER NOT NULL, modified INTEGER NOT NULL);
";

/// A backup location kept in one SQLite file.
#[derive(Debug)]
pub struct SqliteTarget {
    path: PathBuf,
    /// The connection every write and listing goes through (reads open their own).
    conn: Arc<Mutex<Connection>>,
}

impl SqliteTarget {
    /// Opens (creating it if missing) the SQLite file at `path`.
    pub fn open(path: impl Into<PathBuf>) -> rusqlite::Result<SqliteTarget> {
        let path = path.into();
        let conn = connect(&path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteTarget {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the shared connection, on the blocking thread pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, TargetError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap()))
            .await
            .map_err(|e| TargetError::permanent(format!("{}: {e}", path.display())))?
            .map_err(|e| sqlite_error(&path, e))
    }

    /// Runs `write` in one write transaction on the shared connection, then commits it.
    async fn transaction<T, F>(&self, write: F) -> Result<T, TargetError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.blocking(move |c| {
            let tx = c.transaction()?;
            let done = write(&tx)?;
            tx.commit()?;
            Ok(done)
        })
        .await
    }

    /// Inserts every piece of `body` as rows of the unpublished body `id`; returns what it
    /// stored (the upload's readers hashed every byte on the way: [`Upload::stored`]).
    async fn write_pieces(&self, key: &str, id: i64, body: &Upload) -> Result<Stored, TargetError> {
        let mut pieces = body.stream(PIECE);
        let mut size = 0u64;
        while let Some(piece) = pieces.next().await {
            let piece = piece.map_err(|e| TargetError::body(key, e))?;
            let at = size as i64;
            size += piece.len() as u64;
            self.blocking(move |c| {
                c.execute(
                    "INSERT INTO pieces (body, offset, data) VALUES (?1, ?2, ?3)",
                    params![id, at, &piece[..]],
                )
            })
            .await?;
        }
        let stored = body.stored(key)?;
        if size != stored.size {
            return Err(TargetError::permanent(format!(
                "the upload gave {size} bytes, not {}",
                stored.size
            ))
            .with_key(key));
        }
        Ok(stored)
    }
}

#[async_trait]
impl Target for SqliteTarget {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let prefix = prefix.to_string();
        self.blocking(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, size, modified FROM objects WHERE key >= ?1 ORDER BY key",
            )?;
            let rows = stmt.query_map([&prefix], |row| {
                Ok(info(row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            let mut found = Vec::new();
            for row in rows {
                let row = row?;
                if !row.key.starts_with(&prefix) {
                    break; // keys sort bytewise: past the prefix's range
                }
                found.push(row);
            }
            Ok(found)
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        let name = key.to_string();
        let found = self
            .blocking(move |c| {
                c.query_row(
                    "SELECT size, modified FROM objects WHERE key = ?1",
                    [&name],
                    |row| Ok(info(name.clone(), row.get(0)?, row.get(1)?)),
                )
                .optional()
            })
            .await?;
        found.ok_or_else(|| TargetError::not_found(key))
    }

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let id = self.blocking(|c| new_body(c)).await?;
        match self.write_pieces(key, id, &body).await {
            Ok(stored) => {
                let key = key.to_string();
                let size = stored.size;
                self.blocking(move |c| publish(c, &key, id, size)).await?;
                Ok(stored)
            }
            Err(e) => {
                // Never published: nothing of it is visible; remove its rows.
                let _ = self.blocking(move |c| drop_body(c, id)).await;
                Err(e)
            }
        }
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let name = key.to_string();
        let created = self
            .transaction(move |tx| {
                if exists(tx, &name)? {
                    return Ok(false);
                }
                let one_piece = "INSERT INTO pieces (body, offset, data) VALUES (?1, 0, ?2)";
                publish_new(tx, &name, data.len() as u64, one_piece, &data[..])?;
                Ok(true)
            })
            .await?;
        match created {
            true => Ok(()),
            false => Err(TargetError::already_exists(key)),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        read::open(self.path.clone(), key.to_string(), range).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let (src, dst) = (from.to_string(), to.to_string());
        let copied = self
            .transaction(move |tx| {
                let Some((body, size)) = current_body(tx, &src)? else {
                    return Ok(false);
                };
                let its_pieces = "INSERT INTO pieces (body, offset, data)
                                  SELECT ?1, offset, data FROM pieces WHERE body = ?2";
                publish_new(tx, &dst, size, its_pieces, body)?;
                Ok(true)
            })
            .await?;
        match copied {
            true => Ok(()),
            false => Err(TargetError::not_found(from)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        let name = key.to_string();
        self.transaction(move |tx| {
            if let Some((body, _)) = current_body(tx, &name)? {
                tx.execute("DELETE FROM objects WHERE key = ?1", [&name])?;
                drop_body(tx, body)?;
            }
            Ok(())
        })
        .await
    }

    /// Every commit was already fsynced (`synchronous=FULL`): nothing is deferred.
    async fn sync(&self) -> Result<(), TargetError> {
        Ok(())
    }

    /// Objects are rows, not files: never a folder the engine could compare or copy from.
    fn local_root(&self) -> Option<PathBuf> {
        None
    }

    fn local_file(&self, _key: &str) -> Option<PathBuf> {
        None
    }
    fn encodes(&self) -> bool {
        false
    }

    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        let before = now_ms() - older_than.as_millis().min(i64::MAX as u128) as i64;
        self.transaction(move |tx| {
            let stale = unpublished(tx, before)?;
            for id in &stale {
                drop_body(tx, *id)?;
            }
            Ok(stale.len() as u64)
        })
        .await
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.blocking(|c| Ok(unpublished(c, i64::MAX)?.len() as u64))
            .await
    }
}

/// A connection in WAL mode (readers keep a snapshot while writers commit), every commit
/// fsynced.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

/// A new, unpublished body.
fn new_body(c: &Connection) -> rusqlite::Result<i64> {
    c.execute("INSERT INTO bodies (started) VALUES (?1)", [now_ms()])?;
    Ok(c.last_insert_rowid())
}

/// Points `key` at the body `id` and deletes the body it pointed at before. Callers that need
/// more than this in one transaction run it inside theirs.
fn publish(c: &Connection, key: &str, id: i64, size: u64) -> rusqlite::Result<()> {
    let old = current_body(c, key)?;
    c.execute(
        "INSERT INTO objects (key, body, size, modified) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET body = ?2, size = ?3, modified = ?4",
        params![key, id, size as i64, now_ms()],
    )?;
    match old {
        Some((body, _)) if body != id => drop_body(c, body),
        _ => Ok(()),
    }
}

/// Publishes as `key` a new body of `size` bytes whose pieces the statement `insert_pieces`
/// inserts (`?1`: the new body, `?2`: `source`).
fn publish_new(
    c: &Connection,
    key: &str,
    size: u64,
    insert_pieces: &str,
    source: impl ToSql,
) -> rusqlite::Result<()> {
    let id = new_body(c)?;
    c.execute(insert_pieces, params![id, source])?;
    publish(c, key, id, size)
}

fn drop_body(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.execute("DELETE FROM pieces WHERE body = ?1", [id])?;
    c.execute("DELETE FROM bodies WHERE id = ?1", [id])?;
    Ok(())
}

/// The body and size `key` points at.
fn current_body(c: &Connection, key: &str) -> rusqlite::Result<Option<(i64, u64)>> {
    c.query_row(
        "SELECT body, size FROM objects WHERE key = ?1",
        [key],
        |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)),
    )
    .optional()
}

fn exists(c: &Connection, key: &str) -> rusqlite::Result<bool> {
    Ok(current_body(c, key)?.is_some())
}

/// Bodies no key points at, started before `before` (ms since the epoch).
fn unpublished(c: &Connection, before: i64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT id FROM bodies WHERE started < ?1 AND id NOT IN (SELECT body FROM objects)",
    )?;
    let ids = stmt.query_map([before], |row| row.get(0))?;
    ids.collect()
}

fn info(key: String, size: i64, modified: i64) -> ObjectInfo {
    ObjectInfo {
        key,
        size: size as u64,
        modified: chrono::DateTime::from_timestamp_millis(modified),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A busy or locked database is worth retrying; every other SQLite error is not.
fn sqlite_error(path: &Path, e: rusqlite::Error) -> TargetError {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let message = path.display().to_string();
    match busy {
        true => TargetError::transient(message),
        false => TargetError::permanent(message),
    }
    .with_source(e)
}
