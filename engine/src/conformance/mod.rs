//! The conformance kit for [`Target`] implementations: one public async function per promise of
//! the contract (the "Contract" section of the [`Target`] documentation), each returning `Ok(())` or a
//! [`KitFailure`] whose message starts with the promise's name and says what was expected and
//! what was seen. Run them all with [`Kit::run`] (or [`run_conformance`]), or call one alone.
//!
//! ```no_run
//! # async fn example(my_target: &dyn esbackup_engine::Target) {
//! use esbackup_engine::conformance::Kit;
//! let report = Kit::new().requires_put_if_absent().run(my_target).await.unwrap();
//! println!("{report}");
//! # }
//! ```
//!
//! # Promises
//!
//! | function | what it checks |
//! | --- | --- |
//! | [`describe_names_the_store`] | `describe()` is not empty |
//! | [`put_then_get_round_trips`] | empty, small and large (file-backed) objects read back exactly through `get`, `head` and `list`; `put` read every byte through [`Upload::stream`](crate::Upload::stream) (the upload recorded their MD5) and returned as `stored_size` what `head` and `list` then report |
//! | [`put_replaces_whole_object`] | a shorter or longer `put` over a key leaves exactly the new bytes (no stale tail, no stale size) |
//! | [`replacement_is_atomic_for_readers`] | readers during replacements see the old or the new object whole |
//! | [`failed_body_is_never_stored`] | a body that fails part-way (a damaged trailing MD5) or is shorter than its `len()`: `put` fails, a new key stays absent, an old object stays unchanged (large bodies: the multipart/resumable/block paths) |
//! | [`ranged_reads_at_the_edges`] | first byte, last byte, whole object, an empty range (no bytes), a range across a 5 MiB part boundary, a range ending past the end (the bytes up to the end) |
//! | [`missing_keys`] | `head`/`get`/ranged `get` of a missing key → `NotFound` (from the call or its stream); `delete` of it → `Ok`, twice; `list` of a missing prefix → empty |
//! | [`delete_removes_the_object`] | after `delete`: `head` → `NotFound`, `list` does not show it, deleting again → `Ok` |
//! | [`list_prefix_is_plain_string_prefix`] | `list(prefix)` is every key starting with `prefix` as a string, recursive (`list/ch` finds `list/chunk-…`, `list` finds `lister/x`) |
//! | [`listing_longer_than_one_page`] | 1,001 keys under one prefix all listed, with their sizes (stores page at 1,000) |
//! | [`keys_with_special_characters`] | keys with spaces, `%`, `+`, `#`, unicode and deep paths round trip through `put`/`list`/`head`/`get`/`copy`/`delete`, listed as written |
//! | [`read_after_write_listing`] | once `put`/`delete` returned, `list` shows it (new key, new size, key gone) |
//! | [`put_if_absent_is_exclusive`] | `AlreadyExists` on an existing key (object unchanged), works again after `delete`; of N concurrent calls on one key exactly one wins and the object is its bytes; or every call says `Unsupported` and nothing is written |
//! | [`copy_replaces_destination`] | `copy` makes the destination equal to the source, replacing an existing one; a missing source → `NotFound`, destination unchanged |
//! | [`sync_succeeds`] | `sync` returns `Ok` after writes, copies and deletes, and again with nothing new |
//! | [`local_root_is_a_real_folder_or_none`] | `local_root()` is `None`, or an absolute, existing folder (`Some` required with [`Kit::local`]) |
//! | [`local_file_returns_the_keys_bytes`] | where `local_file(key)` is `Some`, that file holds exactly the key's bytes, also after a replacement, and lies in `local_root` (`Some` required with [`Kit::local`]) |
//! | [`durable_after_sync`] | with [`Kit::reopen`]: what was written, copied and deleted before `sync` is seen the same through a freshly opened target |
//!
//! Sizes are the store's own: for a target that [encodes](Target::encodes) what it stores (the
//! codec), `head` and `list` report stored sizes, and the kit checks them against the
//! `stored_size` each `put` returned rather than the plain length.
//!
//! Every function writes below its own fresh `conformance-<uuid>/` prefix and deletes what it
//! wrote (also after a failure), so a shared bucket can be used. What does not apply to a store
//! is chosen on the [`Kit`]: [`Kit::requires_put_if_absent`], [`Kit::local`],
//! [`Kit::without_large_listing`], [`Kit::reopen`], [`Kit::skip`].

mod exclusive;
mod listing;
mod local;
mod objects;
mod support;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::target::Target;

/// Sizes the kit uses.
#[derive(Clone, Debug)]
pub struct ConformanceOptions {
    /// Size of the large objects (written from a local file, and the failing bodies). Pick it
    /// above your target's multipart threshold so that path is exercised (default 18 MiB +
    /// 12 345 bytes).
    pub large_size: usize,
    /// Size of the objects replaced while readers read them (default 1 MiB).
    pub overwrite_size: usize,
    /// Rounds of the concurrent replacement check (default 4).
    pub overwrite_rounds: usize,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions {
            large_size: (18 << 20) + 12_345,
            overwrite_size: 1 << 20,
            overwrite_rounds: 4,
        }
    }
}

/// Opens a second handle on the same location (for [`durable_after_sync`]).
pub type Reopen = Arc<dyn Fn() -> Arc<dyn Target> + Send + Sync>;

/// Which promises apply to a store, and the sizes to check them with.
#[derive(Clone)]
pub struct Kit {
    pub sizes: ConformanceOptions,
    /// `put_if_absent` must work (not `Unsupported`). Default: `Unsupported` is accepted.
    pub put_if_absent_required: bool,
    /// The store is a local folder of plain files: `local_root` and `local_file` must be `Some`.
    pub local: bool,
    /// Run [`listing_longer_than_one_page`] in [`Kit::run`] (default true; 1,001 writes).
    pub large_listing: bool,
    /// Concurrent callers in [`put_if_absent_is_exclusive`] (default 8).
    pub concurrent_writers: usize,
    /// See [`Kit::reopen`].
    pub reopen: Option<Reopen>,
    /// Promises [`Kit::run`] leaves out, by function name.
    pub skipped: Vec<&'static str>,
}

impl fmt::Debug for Kit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kit")
            .field("sizes", &self.sizes)
            .field("put_if_absent_required", &self.put_if_absent_required)
            .field("local", &self.local)
            .field("large_listing", &self.large_listing)
            .field("concurrent_writers", &self.concurrent_writers)
            .field("reopen", &self.reopen.is_some())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Default for Kit {
    fn default() -> Self {
        Kit {
            sizes: ConformanceOptions::default(),
            put_if_absent_required: false,
            local: false,
            large_listing: true,
            concurrent_writers: 8,
            reopen: None,
            skipped: Vec::new(),
        }
    }
}

impl Kit {
    pub fn new() -> Kit {
        Kit::default()
    }

    pub fn with_sizes(mut self, sizes: ConformanceOptions) -> Kit {
        self.sizes = sizes;
        self
    }

    /// `put_if_absent` must be supported by this store.
    pub fn requires_put_if_absent(mut self) -> Kit {
        self.put_if_absent_required = true;
        self
    }

    /// The store is a local folder of plain files (`local_root`, `local_file` must be `Some`).
    pub fn local(mut self) -> Kit {
        self.local = true;
        self
    }

    /// Leaves out the 1,001-key listing (for slow stores).
    pub fn without_large_listing(mut self) -> Kit {
        self.large_listing = false;
        self
    }

    /// Enables [`durable_after_sync`]: `reopen` opens a new handle on the same location.
    pub fn reopen(mut self, reopen: impl Fn() -> Arc<dyn Target> + Send + Sync + 'static) -> Kit {
        self.reopen = Some(Arc::new(reopen));
        self
    }

    /// Leaves the promise `name` out of [`Kit::run`] (say why next to the call).
    pub fn skip(mut self, name: &'static str) -> Kit {
        self.skipped.push(name);
        self
    }

    /// Whether [`Kit::run`] checks `name` on this store.
    fn applies(&self, name: &str) -> bool {
        !self.skipped.contains(&name)
            && (name != "durable_after_sync" || self.reopen.is_some())
            && (name != "listing_longer_than_one_page" || self.large_listing)
    }

    /// Checks every promise that applies, each after the other; `Err` lists every broken one.
    pub async fn run(&self, target: &dyn Target) -> Result<ConformanceReport, KitFailures> {
        let mut report = ConformanceReport {
            target: target.describe(),
            ..Default::default()
        };
        let mut failures = Vec::new();
        for (name, check) in PROMISES {
            if !self.applies(name) {
                report.skipped.push(name.to_string());
                continue;
            }
            match check(target, self).await {
                Ok(()) => report.passed.push(name.to_string()),
                Err(failure) => failures.push(failure),
            }
        }
        if !failures.is_empty() {
            return Err(KitFailures(failures));
        }
        report.put_if_absent_supported = exclusive::put_if_absent_supported(target)
            .await
            .map_err(|f| KitFailures(vec![f]))?;
        Ok(report)
    }
}

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KitFailure {
    /// The function name of the promise (`failed_body_is_never_stored`).
    pub promise: &'static str,
    /// What was expected and what was seen.
    pub message: String,
}

impl fmt::Display for KitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.promise, self.message)
    }
}

impl std::error::Error for KitFailure {}

/// Every promise a [`Kit::run`] found broken.
#[derive(Clone, Debug)]
pub struct KitFailures(pub Vec<KitFailure>);

impl KitFailures {
    /// The names of the broken promises.
    pub fn promises(&self) -> Vec<&'static str> {
        self.0.iter().map(|f| f.promise).collect()
    }
}

impl fmt::Display for KitFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} broken promise(s)", self.0.len())?;
        for failure in &self.0 {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KitFailures {}

/// What a successful run found.
#[derive(Clone, Debug, Default)]
pub struct ConformanceReport {
    /// The target's own description.
    pub target: String,
    /// Names of the promises that passed, in order.
    pub passed: Vec<String>,
    /// Names of the promises left out (skipped, or not applicable to this store).
    pub skipped: Vec<String>,
    /// Whether `put_if_absent` is supported (false: it said `Unsupported`, which is allowed).
    pub put_if_absent_supported: bool,
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} promises kept ({}); left out: {}; put_if_absent {}",
            self.target,
            self.passed.len(),
            self.passed.join(", "),
            if self.skipped.is_empty() {
                "none".to_string()
            } else {
                self.skipped.join(", ")
            },
            if self.put_if_absent_supported {
                "supported"
            } else {
                "unsupported"
            }
        )
    }
}

/// Every promise with default sizes ([`Kit::run`] with [`Kit::new`]).
pub async fn run_conformance(target: &dyn Target) -> Result<ConformanceReport, String> {
    run_conformance_with(target, &ConformanceOptions::default()).await
}

/// Every promise with the given sizes.
pub async fn run_conformance_with(
    target: &dyn Target,
    sizes: &ConformanceOptions,
) -> Result<ConformanceReport, String> {
    Kit::new()
        .with_sizes(sizes.clone())
        .run(target)
        .await
        .map_err(|e| e.to_string())
}

/// One promise: checks `target` as `kit` says.
type Check = for<'a> fn(&'a dyn Target, &'a Kit) -> BoxFuture<'a, Result<(), KitFailure>>;

/// Declares the promises, in the order [`Kit::run`] checks them: for each `module::name`, the
/// public `async fn name(target, kit)` that runs the check `module::name` in a fresh scratch
/// prefix ([`support::checked`]) and fails under its own name, and its row in `PROMISES`.
macro_rules! promises {
    ($($(#[$doc:meta])* $module:ident::$name:ident;)*) => {
        $(
            $(#[$doc])*
            pub async fn $name(target: &dyn Target, kit: &Kit) -> Result<(), KitFailure> {
                support::checked(stringify!($name), target, |s| async move {
                    $module::$name(&s, kit).await
                })
                .await
            }
        )*

        /// Every promise, in the order [`Kit::run`] checks them.
        const PROMISES: &[(&str, Check)] =
            &[$((stringify!($name), |target, kit| Box::pin($name(target, kit)))),*];
    };
}

promises! {
    /// `describe()` is not empty.
    objects::describe_names_the_store;
    /// Empty, small and large objects round trip; `put` streams every byte of its body and
    /// returns as `stored_size` what `head` and `list` then report.
    objects::put_then_get_round_trips;
    /// A shorter or a longer `put` over a key leaves exactly the new bytes.
    objects::put_replaces_whole_object;
    /// Readers during replacements see the old or the new object whole (a read may fail, but never
    /// succeeds with a mix of both, and never finds no object).
    objects::replacement_is_atomic_for_readers;
    /// A body that fails part-way or is shorter than its `len()` is never stored: `put` fails, a
    /// new key stays absent, an old object stays as it was.
    objects::failed_body_is_never_stored;
    /// First byte, last byte, whole object, empty range, a part boundary, past the end.
    objects::ranged_reads_at_the_edges;
    /// `head`/`get` of a missing key → `NotFound`; `delete` of it → `Ok`; an empty listing.
    objects::missing_keys;
    /// After `delete`: `head` → `NotFound`, `list` does not show it, deleting again → `Ok`.
    objects::delete_removes_the_object;
    /// `list(prefix)` is every key starting with `prefix` as a string, recursive.
    listing::list_prefix_is_plain_string_prefix;
    /// 1,001 keys under one prefix are all listed, with their sizes.
    listing::listing_longer_than_one_page;
    /// Keys with spaces, `%`, `+`, `#`, unicode and deep paths round trip through every call.
    listing::keys_with_special_characters;
    /// Once `put`/`delete` returned, `list` shows it: new keys, new sizes, deleted keys gone.
    listing::read_after_write_listing;
    /// `AlreadyExists` on an existing key (object unchanged), works again after `delete`; of
    /// [`Kit::concurrent_writers`] concurrent calls on one key exactly one wins; or every call says
    /// `Unsupported` (refused with [`Kit::requires_put_if_absent`]) and nothing is written.
    exclusive::put_if_absent_is_exclusive;
    /// `copy` makes the destination equal to the source, replacing it; a missing source →
    /// `NotFound` and the destination unchanged.
    objects::copy_replaces_destination;
    /// `sync` returns `Ok` after writes, copies and deletes, and again with nothing new.
    local::sync_succeeds;
    /// `local_root()` is `None` or an absolute, existing folder (`Some` with [`Kit::local`]).
    local::local_root_is_a_real_folder_or_none;
    /// Where `local_file(key)` is `Some`, that file holds exactly the key's bytes, also after a
    /// replacement, and lies in `local_root` (`Some` required with [`Kit::local`]).
    local::local_file_returns_the_keys_bytes;
    /// With [`Kit::reopen`]: what was written, copied and deleted before `sync` is seen the same
    /// through a freshly opened target.
    local::durable_after_sync;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryTarget;
    use bytes::Bytes;

    #[tokio::test]
    async fn memory_target_keeps_every_promise_and_is_left_clean() {
        let target = MemoryTarget::new();
        target.insert("keep/me", Bytes::from_static(b"x"));
        let same = target.clone();
        let kit = Kit::new()
            .requires_put_if_absent()
            .reopen(move || Arc::new(same.clone()));
        let report = kit.run(&target).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(report.put_if_absent_supported);
        assert_eq!(report.passed.len(), PROMISES.len(), "{report}");
        let left: Vec<String> = target.snapshot().into_keys().collect();
        assert_eq!(left, vec!["keep/me".to_string()]);
    }

    #[test]
    fn every_promise_is_in_the_module_doc() {
        let doc = include_str!("mod.rs");
        for (name, _) in PROMISES {
            assert!(doc.contains(&format!("| [`{name}`] |")), "{name}");
        }
    }
}
