//! The location's settings, fixed by `esbackup init`: plain JSON at `.esbackup/config`. A
//! location without one is plain (a first `backup` into an empty location makes one).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, ErrorKind, Result};
use crate::target::{get_bytes, Target, TargetErrorKind};

/// Where the settings live.
pub const CONFIG_KEY: &str = ".esbackup/config";
const FORMAT: u32 = 1;

/// How a location stores its objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConfig {
    pub format: u32,
    /// zstd compression, when set.
    pub compression: Option<Compression>,
    /// Encryption, when set.
    pub encryption: Option<Encryption>,
    pub created: chrono::DateTime<chrono::Utc>,
    /// A random id of the location.
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    pub cipher: String,
}

/// The zstd level `init` uses without one.
pub const DEFAULT_LEVEL: i32 = 3;
/// The one cipher.
pub const CIPHER: &str = "xchacha20-poly1305";

impl LocationConfig {
    /// Settings for a new location.
    pub fn new(compression: Option<i32>, encrypt: bool) -> LocationConfig {
        use rand::RngCore;
        LocationConfig {
            format: FORMAT,
            compression: compression.map(|level| Compression {
                algorithm: "zstd".into(),
                level,
            }),
            encryption: encrypt.then(|| Encryption {
                cipher: CIPHER.into(),
            }),
            created: chrono::Utc::now(),
            id: format!("{:016x}", rand::thread_rng().next_u64()),
        }
    }

    /// Whether it encodes at all.
    pub fn encodes(&self) -> bool {
        self.compression.is_some() || self.encryption.is_some()
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this esbackup knows {FORMAT}): upgrade esbackup",
                self.format
            ));
        }
        if let Some(c) = &self.compression {
            if c.algorithm != "zstd" || !(1..=22).contains(&c.level) {
                return Err(format!("compression {}:{}", c.algorithm, c.level));
            }
        }
        match &self.encryption {
            Some(e) if e.cipher != CIPHER => Err(format!("cipher {}", e.cipher)),
            _ => Ok(()),
        }
    }
}

/// The location's settings; `None` when it has none (a plain location).
pub async fn read(target: &dyn Target) -> Result<Option<LocationConfig>> {
    let raw = match get_bytes(target, CONFIG_KEY).await {
        Ok(raw) => raw,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(EngineError::storage(CONFIG_KEY, e)),
    };
    let bad = |why: String| {
        EngineError::damaged(format!(
            "{CONFIG_KEY} of {} is not usable: {why}",
            target.describe()
        ))
    };
    if raw.len() > 64 * 1024 {
        return Err(bad(format!("{} bytes", raw.len())));
    }
    let config: LocationConfig = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    config.check().map_err(bad)?;
    Ok(Some(config))
}

/// Writes the settings of a new location: refused where the location holds anything (init is
/// for empty locations) or where another `init` won the race.
pub async fn create(target: &dyn Target, config: &LocationConfig) -> Result<()> {
    let listed = target
        .list("")
        .await
        .map_err(|e| EngineError::storage("listing the location", e))?;
    // Locks aside (the caller holds one).
    let held: Vec<_> = listed
        .iter()
        .filter(|o| !o.key.starts_with(crate::layout::LOCKS_DIR))
        .collect();
    if let Some(o) = held.first() {
        return Err(EngineError::new(
            ErrorKind::DestinationNotEmpty,
            format!(
                "{} is not empty (it holds {}, and {} object(s) in all): init makes new locations only",
                target.describe(),
                o.key,
                held.len()
            ),
        ));
    }
    let json = serde_json::to_vec_pretty(config).expect("settings serialize");
    match target
        .put_if_absent(CONFIG_KEY, Bytes::from(json.clone()))
        .await
    {
        Ok(()) => Ok(()),
        // A store that cannot tell (Garage): the listing above is the check.
        Err(e) if e.kind() == TargetErrorKind::Unsupported => target
            .put(CONFIG_KEY, crate::Upload::bytes(json))
            .await
            .map(drop)
            .map_err(|e| EngineError::storage(CONFIG_KEY, e)),
        Err(e) if e.kind() == TargetErrorKind::AlreadyExists => Err(EngineError::new(
            ErrorKind::DestinationNotEmpty,
            format!(
                "{} was initialised meanwhile by another init",
                target.describe()
            ),
        )),
        Err(e) => Err(EngineError::storage(CONFIG_KEY, e)),
    }
}
