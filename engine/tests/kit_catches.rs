//! The conformance kit against deliberately broken backends: for each promise a store that
//! breaks only that one (one delegating wrapper over the in-memory target, one flaw each), and
//! a test that the kit fails it with a message naming the promise.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use esbackup_engine::conformance::{ConformanceOptions, Kit};
use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::{get_bytes, ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};
use futures::StreamExt;

/// The one thing a [`Broken`] store does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    None,
    EmptyDescription,
    /// Returns a made-up account of what it stored instead of `Upload::stored`.
    MisreportsWhatItStored,
    /// Returns a stored size other than what it stored (and lists).
    MisreportsItsStoredSize,
    /// Writes a shorter object over a longer one without truncating it.
    KeepsTheOldTail,
    /// Stores the half of a new body first, then the whole.
    PublishesInTwoSteps,
    /// Stores whatever arrived before the body failed, and returns Ok.
    StoresPartialBodies,
    /// Reports a body that failed to read as a failure of the store.
    ReportsBodyFailuresAsStoreErrors,
    IgnoresRanges,
    /// `head` of a missing key is a permanent error.
    MissingHeadIsAnError,
    /// `head` answers from a cache of sizes that deletes do not clear.
    HeadRemembersDeletedKeys,
    /// `list("a/b")` finds `a/b` and `a/b/…` but not `a/bc`.
    ListsWholeSegmentsOnly,
    ListStopsAtOnePage,
    /// Lists spaces in keys as `%20`.
    ListsEncodedKeys,
    /// The last deleted key is still listed.
    ListingLagsBehindDeletes,
    /// Checks, then writes: concurrent callers all win.
    PutIfAbsentRaces,
    /// `put_if_absent` is unsupported.
    PutIfAbsentUnsupported,
    CopyKeepsAnExistingDestination,
    SyncFails,
    LocalRootIsRelative,
    /// `local_file` names a file holding other bytes.
    LocalFileHoldsOtherBytes,
}

/// The in-memory target with one [`Flaw`].
#[derive(Debug)]
struct Broken {
    inner: MemoryTarget,
    flaw: Flaw,
    sizes: Mutex<HashMap<String, u64>>,
    last_deleted: Mutex<Option<ObjectInfo>>,
    dir: tempfile::TempDir,
}

impl Broken {
    fn new(flaw: Flaw) -> Broken {
        Broken {
            inner: MemoryTarget::new(),
            flaw,
            sizes: Mutex::default(),
            last_deleted: Mutex::default(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The body as this store reads it; `Err` with what arrived when it fails.
    async fn read(&self, body: &Upload) -> Result<Vec<u8>, Vec<u8>> {
        let mut data = Vec::new();
        let mut pieces = body.stream(64 * 1024);
        while let Some(piece) = pieces.next().await {
            match piece {
                Ok(piece) => data.extend_from_slice(&piece),
                Err(_) => return Err(data),
            }
        }
        Ok(data)
    }

    async fn store(&self, key: &str, data: Vec<u8>) {
        self.sizes
            .lock()
            .unwrap()
            .insert(key.into(), data.len() as u64);
        if self.flaw == Flaw::PublishesInTwoSteps {
            self.inner.insert(key, data[..data.len() / 2].to_vec());
            tokio::task::yield_now().await;
        }
        self.inner.insert(key, data);
    }
}

#[async_trait]
impl Target for Broken {
    fn describe(&self) -> String {
        match self.flaw {
            Flaw::EmptyDescription => " ".into(),
            _ => format!("broken: {:?}", self.flaw),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let mut listed = self.inner.list(prefix).await?;
        match self.flaw {
            Flaw::ListsWholeSegmentsOnly if !prefix.ends_with('/') => listed
                .retain(|o| o.key.len() == prefix.len() || o.key[prefix.len()..].starts_with('/')),
            Flaw::ListStopsAtOnePage => listed.truncate(1000),
            Flaw::ListsEncodedKeys => listed
                .iter_mut()
                .for_each(|o| o.key = o.key.replace(' ', "%20")),
            Flaw::ListingLagsBehindDeletes => listed.extend(
                (self.last_deleted.lock().unwrap().clone()).filter(|o| o.key.starts_with(prefix)),
            ),
            _ => {}
        }
        Ok(listed)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        match (self.flaw, self.inner.head(key).await) {
            (Flaw::MissingHeadIsAnError, Err(_)) => Err(TargetError::permanent("no")),
            (Flaw::HeadRemembersDeletedKeys, Err(e)) => match self.sizes.lock().unwrap().get(key) {
                Some(size) => Ok(ObjectInfo::new(key, *size)),
                None => Err(e),
            },
            (_, found) => found,
        }
    }

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let data = match (self.flaw, self.read(&body).await) {
            (_, Ok(data)) => data,
            (Flaw::StoresPartialBodies, Err(partial)) => partial,
            (Flaw::ReportsBodyFailuresAsStoreErrors, Err(_)) => {
                return Err(TargetError::permanent("the body failed"))
            }
            (_, Err(_)) => return Err(body.stored(key).unwrap_err()),
        };
        // What it stored, by its own account (`Upload::stored` for a whole body).
        let stored = Stored {
            size: data.len() as u64,
            stored_size: match self.flaw {
                Flaw::MisreportsItsStoredSize => data.len() as u64 + 1,
                _ => data.len() as u64,
            },
            md5: match self.flaw {
                Flaw::MisreportsWhatItStored => [0; 16],
                _ => esbackup_engine::md5(&data),
            },
        };
        let old = self.inner.snapshot().remove(key).unwrap_or_default();
        let data = match self.flaw {
            Flaw::KeepsTheOldTail if old.len() > data.len() => {
                [&data[..], &old[data.len()..]].concat()
            }
            _ => data,
        };
        self.store(key, data).await;
        Ok(stored)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        match self.flaw {
            Flaw::PutIfAbsentUnsupported => return Err(TargetError::unsupported(key)),
            Flaw::PutIfAbsentRaces => {}
            _ => return self.inner.put_if_absent(key, data).await,
        }
        if self.inner.head(key).await.is_ok() {
            return Err(TargetError::already_exists(key));
        }
        tokio::task::yield_now().await;
        self.store(key, data.to_vec()).await;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        let range = range.filter(|_| self.flaw != Flaw::IgnoresRanges);
        self.inner.get(key, range).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        if self.flaw == Flaw::CopyKeepsAnExistingDestination && self.inner.head(to).await.is_ok() {
            return self.inner.head(from).await.map(|_| ());
        }
        self.inner.copy(from, to).await
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        if let Ok(info) = self.inner.head(key).await {
            *self.last_deleted.lock().unwrap() = Some(info);
        }
        self.inner.delete(key).await
    }

    async fn sync(&self) -> Result<(), TargetError> {
        match self.flaw {
            Flaw::SyncFails => Err(TargetError::permanent("fsync failed")),
            _ => Ok(()),
        }
    }

    fn local_root(&self) -> Option<PathBuf> {
        match self.flaw {
            Flaw::LocalRootIsRelative => Some(PathBuf::from("backups/node1")),
            Flaw::LocalFileHoldsOtherBytes => Some(self.dir.path().to_path_buf()),
            _ => None,
        }
    }

    fn local_file(&self, _key: &str) -> Option<PathBuf> {
        let file = self.dir.path().join("other");
        std::fs::write(&file, b"other bytes").unwrap();
        (self.flaw == Flaw::LocalFileHoldsOtherBytes).then_some(file)
    }
    fn encodes(&self) -> bool {
        false
    }

    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        self.inner.abort_stale_uploads(older_than).await
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.inner.incomplete_uploads().await
    }
}

/// Small sizes: the flaws do not depend on them.
fn kit() -> Kit {
    Kit::new()
        .requires_put_if_absent()
        .with_sizes(ConformanceOptions {
            large_size: 300_001,
            overwrite_size: 100_000,
            overwrite_rounds: 4,
        })
}

/// Runs the kit on a store with `flaw`: it must fail `promise`, with a message naming it.
async fn kit_names(flaw: Flaw, promise: &str) {
    kit_on(&Broken::new(flaw), &kit(), promise).await
}

async fn kit_on(target: &dyn Target, kit: &Kit, promise: &str) {
    let failures = match kit.run(target).await {
        Ok(report) => panic!("the kit passed a store with a broken {promise}: {report}"),
        Err(failures) => failures,
    };
    let failure = (failures.0.iter())
        .find(|f| f.promise == promise)
        .unwrap_or_else(|| panic!("{promise} was not reported broken: {failures}"));
    let message = failure.to_string();
    assert!(message.starts_with(&format!("{promise}: ")), "{message}");
    println!("{message}");
}

#[tokio::test]
async fn the_wrapper_without_a_flaw_keeps_every_promise() {
    let report = kit().run(&Broken::new(Flaw::None)).await;
    assert!(report.is_ok(), "{}", report.unwrap_err());
}

/// One test per flaw: the kit must fail a store with `flaw` on `promise`, naming it.
macro_rules! kit_catches {
    ($($test:ident: $flaw:ident => $promise:literal,)+) => {$(
        #[tokio::test]
        async fn $test() {
            kit_names(Flaw::$flaw, $promise).await;
        }
    )+};
}

kit_catches! {
    an_empty_description_is_caught:
        EmptyDescription => "describe_names_the_store",
    a_put_that_misreports_what_it_stored_is_caught:
        MisreportsWhatItStored => "put_then_get_round_trips",
    a_put_that_misreports_its_stored_size_is_caught:
        MisreportsItsStoredSize => "put_then_get_round_trips",
    a_body_failure_reported_as_a_store_failure_is_caught:
        ReportsBodyFailuresAsStoreErrors => "failed_body_is_never_stored",
    a_shorter_put_that_keeps_the_old_tail_is_caught:
        KeepsTheOldTail => "put_replaces_whole_object",
    a_replacement_readers_can_see_half_done_is_caught:
        PublishesInTwoSteps => "replacement_is_atomic_for_readers",
    storing_what_arrived_before_the_body_failed_is_caught:
        StoresPartialBodies => "failed_body_is_never_stored",
    ignoring_ranges_is_caught:
        IgnoresRanges => "ranged_reads_at_the_edges",
    an_error_for_a_missing_key_is_caught:
        MissingHeadIsAnError => "missing_keys",
    a_head_that_still_finds_deleted_keys_is_caught:
        HeadRemembersDeletedKeys => "delete_removes_the_object",
    a_listing_by_whole_folders_is_caught:
        ListsWholeSegmentsOnly => "list_prefix_is_plain_string_prefix",
    a_listing_that_stops_after_one_page_is_caught:
        ListStopsAtOnePage => "listing_longer_than_one_page",
    a_listing_of_encoded_keys_is_caught:
        ListsEncodedKeys => "keys_with_special_characters",
    a_listing_that_lags_behind_deletes_is_caught:
        ListingLagsBehindDeletes => "read_after_write_listing",
    a_put_if_absent_that_checks_then_writes_is_caught:
        PutIfAbsentRaces => "put_if_absent_is_exclusive",
    a_copy_that_keeps_the_destination_is_caught:
        CopyKeepsAnExistingDestination => "copy_replaces_destination",
    a_failing_sync_is_caught:
        SyncFails => "sync_succeeds",
    a_relative_local_root_is_caught:
        LocalRootIsRelative => "local_root_is_a_real_folder_or_none",
    a_local_file_with_other_bytes_is_caught:
        LocalFileHoldsOtherBytes => "local_file_returns_the_keys_bytes",
}

#[tokio::test]
async fn a_local_target_without_local_files_is_caught() {
    let kit = kit().local();
    kit_on(
        &Broken::new(Flaw::None),
        &kit,
        "local_file_returns_the_keys_bytes",
    )
    .await;
}

#[tokio::test]
async fn writes_a_new_handle_does_not_see_are_caught() {
    let kit = kit().reopen(|| Arc::new(MemoryTarget::new()));
    kit_on(&Broken::new(Flaw::None), &kit, "durable_after_sync").await;
}

#[tokio::test]
async fn a_required_put_if_absent_that_is_unsupported_is_caught() {
    let target = Broken::new(Flaw::PutIfAbsentUnsupported);
    // Allowed by default: the lock falls back.
    let report = Kit::new().run(&target).await.unwrap();
    assert!(!report.put_if_absent_supported);
    assert!(get_bytes(&target, "x").await.is_err());
    kit_on(&target, &kit(), "put_if_absent_is_exclusive").await;
}
