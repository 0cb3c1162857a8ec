//! The [`Target`](esbackup_engine::Target) methods of a store that keeps nothing on the local
//! disk, written once for the cloud targets and [`crate::ObjectStoreTarget`]: every write is
//! durable when it returns (`sync` has nothing to do), there is no local folder for the
//! wrong-folder guard and no local file for kernel copies (objects are read with `get`).

/// Expands, inside an `#[async_trait] impl Target`, to `sync` (→ `Ok(())`), `local_root`
/// (→ `None`) and `local_file` (→ `None`); `stored_remotely!(no_stale_uploads)` also to
/// `abort_stale_uploads` and `incomplete_uploads` (→ 0), for a store that leaves no billed
/// leftovers behind a failed upload. The async methods are written in the form `async_trait`
/// gives the trait's, as the macro expands after it.
macro_rules! stored_remotely {
    (no_stale_uploads) => {
        $crate::remote::stored_remotely!();
        $crate::remote::answer_at_once!(abort_stale_uploads(_older_than: ::std::time::Duration) -> u64 = 0);
        $crate::remote::answer_at_once!(incomplete_uploads() -> u64 = 0);
    };
    () => {
        $crate::remote::answer_at_once!(sync() -> () = ());

        fn local_root(&self) -> Option<::std::path::PathBuf> {
            None
        }

        fn local_file(&self, _key: &str) -> Option<::std::path::PathBuf> {
            None
        }
    };
}

/// An async `Target` method `name(args) -> Result<T, TargetError>` that answers `Ok(value)` at
/// once, in the form `async_trait` gives the trait's methods.
macro_rules! answer_at_once {
    ($name:ident($($arg:ident: $ty:ty),*) -> $t:ty = $value:expr) => {
        fn $name<'a, 'f>(
            &'a self,
            $($arg: $ty),*
        ) -> ::std::pin::Pin<
            Box<dyn ::std::future::Future<Output = Result<$t, TargetError>> + Send + 'f>,
        >
        where
            'a: 'f,
            Self: 'f,
        {
            Box::pin(::std::future::ready(Ok($value)))
        }
    };
}

pub(crate) use answer_at_once;
pub(crate) use stored_remotely;
