//! Keys and where they are stored: a key is stored under exactly its own name, the object
//! `<prefix>/<key>` in a bucket, the file `<root>/<key>` in a folder.

use esbackup_engine::TargetError;
use object_store::path::{Path, PathPart};

/// Keys are non-empty `/`-separated names with no empty, `.` or `..` segment and no control
/// character.
pub(crate) fn check_key(key: &str) -> Result<(), TargetError> {
    let bad_segment = key.is_empty()
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad_segment || key.chars().any(char::is_control) {
        return Err(TargetError::permanent(
            "invalid key: keys are /-separated names with no empty, . or .. segment and no \
             control character",
        )
        .with_key(key));
    }
    Ok(())
}

/// The object_store paths of keys below a prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: Path,
}

impl Keys {
    /// Keys below `prefix` (`""` for the store's root; outer slashes ignored).
    pub fn new(prefix: &str) -> Result<Keys, object_store::path::Error> {
        Ok(Keys {
            prefix: Path::parse(prefix)?,
        })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The store path of `key`: the prefix, then the key's names, unencoded (`object_store`
    /// would percent-encode `%`, `#` and non-ASCII names with `Path::from`).
    pub fn path(&self, key: &str) -> Result<Path, TargetError> {
        check_key(key)?;
        let names = key
            .split('/')
            .map(PathPart::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                TargetError::permanent("invalid key")
                    .with_key(key)
                    .with_source(e)
            })?;
        Ok(Path::from_iter(self.prefix.parts().chain(names)))
    }

    /// The path to list for a key prefix: object_store lists whole path segments, so the
    /// folder of `prefix` (the listing is then filtered by the whole prefix).
    pub fn listing_base(&self, prefix: &str) -> Result<Path, TargetError> {
        match prefix.rfind('/') {
            Some(at) if at > 0 => self.path(&prefix[..at]),
            _ => Ok(self.prefix.clone()),
        }
    }

    /// The key of a listed `path`, or `None` if it lies outside the prefix. (Keys are never
    /// encoded, so the path's parts are the key's names.)
    pub fn key_of(&self, path: &Path) -> Option<String> {
        let parts: Vec<PathPart<'_>> = path.prefix_match(&self.prefix)?.collect();
        let names: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
        Some(names.join("/"))
    }
}
