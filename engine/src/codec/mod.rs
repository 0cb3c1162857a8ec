//! Compressed and encrypted locations: [`CodecTarget`] wraps any [`Target`] and stores every
//! object that carries database content or its shape (chunks, segments, index files, points
//! and their pages) in the encoded format of [`frame`]; `get` returns the plain bytes again.
//! The location's settings ([`config`]), its key slots ([`keys`]) and the locks stay plain,
//! so a run can learn how to open a location and lock it before it has a key.
//!
//! How a location encodes is fixed by `init` ([`init`]); [`open`] reads it and wraps the
//! store accordingly (a plain location comes back unwrapped). Only esbackup reads an encoded
//! location: it keeps no plain copy of the newest point at its root ([`Target::encodes`]).
//!
//! A `put` encodes the upload into an unnamed spool file in the system's temporary folder
//! (one 1 MiB frame in memory at a time, the CPU work on a blocking thread), then stores that
//! file; what it returns is the size and MD5 of the plain bytes, and the stored size. A
//! server-side `copy` copies the encoded object as it is: objects are not bound to their key,
//! and the engine's MD5 of each file catches an object swapped for another.

pub mod config;
pub mod frame;
pub mod keys;
mod read;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use config::LocationConfig;
pub use frame::Scheme;
pub use keys::{DataKey, KdfParams, Password, SlotInfo};

use crate::error::{EngineError, ErrorKind, Result};
use crate::layout;
use crate::target::{ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};

/// Keys that stay plain in every location: how to open it, and its locks.
fn is_plain(key: &str) -> bool {
    key == config::CONFIG_KEY
        || key.starts_with(keys::KEYS_DIR)
        || key.starts_with(layout::LOCKS_DIR)
}

/// A target that encodes what it stores (see the module documentation).
#[derive(Debug)]
pub struct CodecTarget {
    inner: Arc<dyn Target>,
    scheme: Arc<Scheme>,
}

impl CodecTarget {
    pub fn new(inner: Arc<dyn Target>, scheme: Scheme) -> CodecTarget {
        CodecTarget {
            inner,
            scheme: Arc::new(scheme),
        }
    }

    /// Encodes `body` into a spool file: the file, its length, and what was read.
    async fn encode(
        &self,
        key: &str,
        body: Upload,
    ) -> Result<(std::fs::File, u64, Stored), TargetError> {
        let scheme = self.scheme.clone();
        let owned = key.to_string();
        tokio::task::spawn_blocking(move || {
            let spool = tempfile::tempfile().map_err(|e| spool_error(&owned, e))?;
            let mut encoder =
                frame::Encoder::new(std::io::BufWriter::with_capacity(1 << 20, spool), &scheme)
                    .map_err(|e| spool_error(&owned, e))?;
            body.copy_to(&mut encoder)
                .map_err(|e| body.failure(&owned, e))?;
            let plain = body.stored(&owned)?;
            let (out, len) = encoder.finish().map_err(|e| spool_error(&owned, e))?;
            let file = out
                .into_inner()
                .map_err(|e| spool_error(&owned, e.into_error()))?;
            Ok((file, len, plain))
        })
        .await
        .map_err(|e| TargetError::permanent(format!("encoding stopped: {e}")).with_key(key))?
    }
}

fn spool_error(key: &str, e: std::io::Error) -> TargetError {
    TargetError::permanent("writing the encoded object to a temporary file")
        .with_key(key)
        .with_source(e)
}

#[async_trait]
impl Target for CodecTarget {
    fn describe(&self) -> String {
        format!("{} ({})", self.inner.describe(), self.scheme.describe())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.inner.list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        if is_plain(key) {
            return self.inner.put(key, body).await;
        }
        let (file, len, plain) = self.encode(key, body).await?;
        let spool = std::env::temp_dir();
        let stored = self
            .inner
            .put(key, Upload::handle(&spool, Arc::new(file), len))
            .await?;
        Ok(Stored {
            stored_size: stored.size,
            ..plain
        })
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        if is_plain(key) {
            return self.inner.put_if_absent(key, data).await;
        }
        let scheme = self.scheme.clone();
        let encoded = tokio::task::spawn_blocking(move || frame::encode(&data, &scheme))
            .await
            .map_err(|e| TargetError::permanent(format!("encoding stopped: {e}")))?
            .map_err(|e| spool_error(key, e))?;
        self.inner.put_if_absent(key, encoded.into()).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        match (is_plain(key), range) {
            (true, range) => self.inner.get(key, range).await,
            (false, None) => read::whole(self.inner.as_ref(), self.scheme.clone(), key).await,
            (false, Some(r)) => read::range(self.inner.as_ref(), self.scheme.clone(), key, r).await,
        }
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        if is_plain(from) != is_plain(to) {
            return Err(TargetError::unsupported(
                "copying between a plain and an encoded key",
            ));
        }
        self.inner.copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.inner.delete(key).await
    }
    async fn sync(&self) -> Result<(), TargetError> {
        self.inner.sync().await
    }
    fn local_root(&self) -> Option<PathBuf> {
        self.inner.local_root()
    }
    fn local_file(&self, _key: &str) -> Option<PathBuf> {
        // The file holds the encoded bytes.
        None
    }
    fn encodes(&self) -> bool {
        true
    }
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        self.inner.abort_stale_uploads(older_than).await
    }
    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.inner.incomplete_uploads().await
    }
}

/// How `init` makes a location.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// zstd level, to compress.
    pub compression: Option<i32>,
    /// Encrypt, with this first password.
    pub encrypt: bool,
    pub kdf: KdfParams,
    /// How long to wait for a run that holds the location's lock.
    pub lock: crate::lock::LockOptions,
}

/// Makes an empty location compressed and/or encrypted (or plain, with neither): writes its
/// settings and, to encrypt, a first key slot for `password`, holding the location's lock (a
/// backup or copy that starts meanwhile waits, then finds the settings). Returns them.
pub async fn init(
    target: Arc<dyn Target>,
    opts: &InitOptions,
    password: Option<&Password>,
) -> Result<LocationConfig> {
    let settings = LocationConfig::new(opts.compression, opts.encrypt);
    let password = match (opts.encrypt, password) {
        (true, None) => return Err(password_needed(target.as_ref())),
        (true, Some(p)) => Some(p),
        (false, _) => None,
    };
    let run_id = crate::point::new_run_id();
    let lock = crate::lock::Lock::acquire(target.clone(), &run_id, "init", &opts.lock).await?;
    let made = async {
        config::create(target.as_ref(), &settings).await?;
        if let Some(password) = password {
            keys::add_slot(target.as_ref(), &DataKey::random(), password, opts.kdf).await?;
        }
        Ok::<_, EngineError>(())
    }
    .await;
    let released = lock.release().await;
    made.and(released).map(|()| settings)
}

fn password_needed(target: &dyn Target) -> EngineError {
    EngineError::invalid_input(format!(
        "{} is encrypted: give its password with ESBACKUP_PASSWORD, --password-file FILE or --password-command CMD",
        target.describe()
    ))
}

/// Opens a location as its settings say: the store itself when it is plain, else wrapped in a
/// [`CodecTarget`] (an encrypted one needs `password`, which must open one of its key slots).
pub async fn open(inner: Arc<dyn Target>, password: Option<&Password>) -> Result<Arc<dyn Target>> {
    Ok(match scheme_of(inner.as_ref(), password).await? {
        None => inner,
        Some(scheme) => Arc::new(CodecTarget::new(inner, scheme)),
    })
}

/// The scheme of the location (`None`: plain).
async fn scheme_of(inner: &dyn Target, password: Option<&Password>) -> Result<Option<Scheme>> {
    let Some(settings) = config::read(inner).await? else {
        return Ok(None);
    };
    if !settings.encodes() {
        return Ok(None);
    }
    let key = match (&settings.encryption, password) {
        (None, _) => None,
        (Some(_), None) => return Err(password_needed(inner)),
        (Some(_), Some(p)) => Some(keys::unlock(inner, p).await?.0),
    };
    Ok(Some(Scheme {
        level: settings.compression.map(|c| c.level),
        key,
    }))
}

/// Fails when `target` is not opened the way the location's settings say (a library user who
/// skipped [`open`] would otherwise write plain objects into an encrypted location).
pub(crate) async fn check_opened(target: &dyn Target) -> Result<()> {
    if target.encodes() {
        return Ok(());
    }
    match config::read(target).await? {
        Some(s) if s.encodes() => Err(EngineError::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is a compressed or encrypted location (.esbackup/config) opened as a plain one: a library opens it with esbackup_engine::codec::open; a command that started while `esbackup init` made it can run again",
                target.describe()
            ),
        )),
        _ => Ok(()),
    }
}

/// Adds a key slot for `new`, proven by `current` opening an existing one; returns its id.
pub async fn add_key(
    inner: &dyn Target,
    current: &Password,
    new: &Password,
    kdf: KdfParams,
) -> Result<String> {
    let (key, _) = keys::unlock(inner, current).await?;
    keys::add_slot(inner, &key, new, kdf).await
}

/// Removes key slot `id`, proven by `current` opening one (never the last slot).
pub async fn remove_key(inner: &dyn Target, current: &Password, id: &str) -> Result<()> {
    keys::unlock(inner, current).await?;
    keys::remove_slot(inner, id).await
}

#[cfg(test)]
mod tests;
