//! [`LazyLocalStore`]: object_store's `LocalFileSystem` over the target folder, built once the
//! folder exists, so that opening a target and reading a missing folder create nothing (a
//! missing folder lists as empty and reads as "not found"); the first write creates it. (The
//! methods it leaves to object_store's defaults, such as `rename_opts`, go through these.)

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A `LocalFileSystem` over `root`, built once the folder exists: the first write creates it.
pub(crate) struct LazyLocalStore {
    root: PathBuf,
    fs: OnceLock<LocalFileSystem>,
}

impl fmt::Debug for LazyLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyLocalStore")
            .field("root", &self.root)
            .finish()
    }
}

impl fmt::Display for LazyLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFileSystem({})", self.root.display())
    }
}

/// The folder could not be read or created (the I/O error is the source).
#[derive(Debug, thiserror::Error)]
#[error("{what} {}", folder.display())]
struct FolderError {
    what: &'static str,
    folder: PathBuf,
    #[source]
    source: io::Error,
}

fn generic(what: &'static str, folder: &std::path::Path, source: io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(FolderError {
            what,
            folder: folder.to_path_buf(),
            source,
        }),
    }
}

fn missing(location: &Path) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_string(),
        source: "the target folder does not exist yet".into(),
    }
}

impl LazyLocalStore {
    pub fn new(root: PathBuf) -> LazyLocalStore {
        LazyLocalStore {
            root,
            fs: OnceLock::new(),
        }
    }

    /// The store if the folder exists, `None` if it does not (yet).
    fn existing(&self) -> object_store::Result<Option<&LocalFileSystem>> {
        if let Some(fs) = self.fs.get() {
            return Ok(Some(fs));
        }
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => self.build().map(Some),
            Ok(_) => Err(generic(
                "a file, not a folder:",
                &self.root,
                io::ErrorKind::NotADirectory.into(),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(generic("cannot read the folder", &self.root, e)),
        }
    }

    /// The store, creating the folder first if it is missing.
    fn for_write(&self) -> object_store::Result<&LocalFileSystem> {
        if let Some(fs) = self.fs.get() {
            return Ok(fs);
        }
        if !self.root.is_dir() {
            std::fs::create_dir_all(&self.root)
                .map_err(|e| generic("cannot create the folder", &self.root, e))?;
            // Make the new folder's own entry durable, as LocalFileSystem does for files.
            if let Some(parent) = self.root.parent() {
                if let Err(e) = std::fs::File::open(parent).and_then(|d| d.sync_all()) {
                    tracing::debug!(folder = %parent.display(), error = %e, "fsync failed");
                }
            }
        }
        self.build()
    }

    fn build(&self) -> object_store::Result<&LocalFileSystem> {
        if let Some(fs) = self.fs.get() {
            return Ok(fs);
        }
        let fs = LocalFileSystem::new_with_prefix(&self.root)?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(self.fs.get_or_init(|| fs))
    }
}

#[async_trait]
impl ObjectStore for LazyLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.for_write()?.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.for_write()?.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        match self.existing()? {
            Some(fs) => fs.get_opts(location, options).await,
            None => Err(missing(location)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.existing() {
            Ok(Some(fs)) => fs.delete_stream(locations),
            Ok(None) => locations.map(|l| l.and_then(|l| Err(missing(&l)))).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.existing() {
            Ok(Some(fs)) => fs.list(prefix),
            Ok(None) => stream::empty().boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        match self.existing()? {
            Some(fs) => fs.list_with_delimiter(prefix).await,
            None => Ok(ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
                extensions: Default::default(),
            }),
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        match self.existing()? {
            Some(fs) => fs.copy_opts(from, to, options).await,
            None => Err(missing(from)),
        }
    }
}
