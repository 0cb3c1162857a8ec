//! The [`Target`](esbackup_engine::Target) methods of a store that keeps nothing on the local
//! disk, written once for the cloud targets and [`crate::ObjectStoreTarget`]: every write is
//! durable when it returns (`sync` has nothing to do), there is no local folder for the
//! wrong-folder guard and no local file for kernel copies (objects are read with `get`); and
//! the requests such a target passes to its `Objects` or `CheckedObjects` unchanged
//! ([`through!`]).
//!
//! The async methods are written in the form `async_trait` gives the trait's, as these macros
//! expand after it.

/// Expands, inside an `#[async_trait] impl Target`, to `sync` (→ `Ok(())`), `local_root`
/// (→ `None`) and `local_file` (→ `None`); `stored_remotely!(no_stale_uploads)` also to
/// `abort_stale_uploads` and `incomplete_uploads` (→ 0), for a store that leaves no billed
/// leftovers behind a failed upload.
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
        fn encodes(&self) -> bool {
            false
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

/// Expands, inside an `#[async_trait] impl Target`, to the named requests (any of `list`,
/// `head`, `put_if_absent`, `get`, `copy`, `delete`) passed to `self.<field>`'s method of the
/// same name and arguments: `through!(objects: list, head, get)`.
macro_rules! through {
    ($field:ident: $($method:ident),+ $(,)?) => {
        $($crate::remote::through!(@ $field $method);)+
    };
    (@ $field:ident list) => {
        $crate::remote::through!(@ $field list(prefix: &str) -> Vec<::esbackup_engine::ObjectInfo>);
    };
    (@ $field:ident head) => {
        $crate::remote::through!(@ $field head(key: &str) -> ::esbackup_engine::ObjectInfo);
    };
    (@ $field:ident put_if_absent) => {
        $crate::remote::through!(@ $field put_if_absent(key: &str, data: ::bytes::Bytes) -> ());
    };
    (@ $field:ident get) => {
        $crate::remote::through!(
            @ $field get(key: &str, range: Option<::std::ops::Range<u64>>) -> ::esbackup_engine::ByteStream
        );
    };
    (@ $field:ident copy) => {
        fn copy<'a, 'k, 'l, 'f>(
            &'a self,
            from: &'k str,
            to: &'l str,
        ) -> $crate::remote::Answer<'f, ()>
        where
            'a: 'f,
            'k: 'f,
            'l: 'f,
            Self: 'f,
        {
            Box::pin(self.$field.copy(from, to))
        }
    };
    (@ $field:ident delete) => {
        $crate::remote::through!(@ $field delete(key: &str) -> ());
    };
    // A request with one borrowed argument, and maybe one owned one.
    (@ $field:ident $method:ident($key:ident: &str $(, $arg:ident: $ty:ty)?) -> $t:ty) => {
        fn $method<'a, 'k, 'f>(
            &'a self,
            $key: &'k str,
            $($arg: $ty)?
        ) -> $crate::remote::Answer<'f, $t>
        where
            'a: 'f,
            'k: 'f,
            Self: 'f,
        {
            Box::pin(self.$field.$method($key $(, $arg)?))
        }
    };
}

/// What an async `Target` method returns, in `async_trait`'s form.
pub(crate) type Answer<'f, T> = ::std::pin::Pin<
    Box<dyn ::std::future::Future<Output = Result<T, esbackup_engine::TargetError>> + Send + 'f>,
>;

pub(crate) use answer_at_once;
pub(crate) use stored_remotely;
pub(crate) use through;
