//! Promises about listings and keys: plain string prefixes, more than one page, unusual
//! characters, and listings that show every write that returned.
//!
//! Each `pub(super) async fn` named for a promise is its check, run in a scratch prefix by the
//! public function of that name, which `promises!` in the parent module declares with its doc.

use futures::{StreamExt, TryStreamExt};

use super::support::{
    copy, delete, describe, ensure, expect_absent, expect_object, pattern, put_bytes, read_all,
    sorted, Scratch,
};
use super::Kit;
use crate::target::ObjectInfo;

/// Keys listings often get wrong (relative to the scratch prefix).
const SPECIAL_KEYS: &[&str] = &[
    "space/a file name.txt",
    "percent/100% %41%2F%zz",
    "plus/a+b+c",
    "hash/#1 and a#b#",
    "unicode/ünïcödé/日本語/ファイル",
    "mixed/odd name, ünïcode %41 (#1) + more",
    "deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/leaf",
];

/// Keys under one prefix in [`listing_longer_than_one_page`] (stores page at 1,000).
const PAGE_PLUS_ONE: usize = 1_001;

pub(super) async fn list_prefix_is_plain_string_prefix(
    s: &Scratch<'_>,
    _kit: &Kit,
) -> Result<(), String> {
    let names = [
        "list/a",
        "list/b.txt",
        "list/nested/deep/c",
        "list/chunk-000001.000000",
        "list/chunk-000001.000000.old",
        "list/.hidden",
        "lister/x",
    ];
    let mut sizes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        sizes.push(put_bytes(s.target, &s.key(name), &pattern(i + 1, i as u8)).await?);
    }
    let prefixes = [
        "list/",
        "list",
        "list/chunk-000001.000000",
        "list/nested/",
        "list/ch",
        "list/nothing-here/",
        "no-such-folder/",
    ];
    for prefix in prefixes {
        let expected: Vec<ObjectInfo> = (names.iter().enumerate())
            .filter(|(_, n)| n.starts_with(prefix))
            .map(|(i, n)| ObjectInfo::new(s.key(n), sizes[i]))
            .collect();
        expect_listing(s, &s.key(prefix), &expected).await?;
    }
    Ok(())
}

pub(super) async fn listing_longer_than_one_page(
    s: &Scratch<'_>,
    _kit: &Kit,
) -> Result<(), String> {
    let keys: Vec<String> = (0..PAGE_PLUS_ONE)
        .map(|i| s.key(&format!("page/{i:05}")))
        .collect();
    let puts: Vec<_> = (keys.iter().enumerate())
        .map(|(i, key)| async move {
            let size = put_bytes(s.target, key, &pattern(i % 7, 12)).await?;
            Ok::<_, String>(ObjectInfo::new(key.clone(), size))
        })
        .collect();
    let expected: Vec<ObjectInfo> = futures::stream::iter(puts)
        .buffer_unordered(16)
        .try_collect()
        .await?;
    put_bytes(s.target, &s.key("pages"), b"not under page/").await?;
    expect_listing(s, &s.key("page/"), &expected).await
}

pub(super) async fn keys_with_special_characters(
    s: &Scratch<'_>,
    _kit: &Kit,
) -> Result<(), String> {
    let mut expected = Vec::new();
    for name in SPECIAL_KEYS {
        let (key, data) = (s.key(name), name.as_bytes());
        let size = put_bytes(s.target, &key, data).await?;
        expect_object(s.target, &key, data).await?;
        expected.push(ObjectInfo::new(key, size));
    }
    expect_listing(s, &s.key(""), &expected).await?;
    for name in SPECIAL_KEYS {
        let (key, copied) = (s.key(name), s.key(&format!("copies/{name}")));
        copy(s.target, &key, &copied).await?;
        ensure!(
            read_all(s.target, &copied, None).await? == name.as_bytes(),
            "copy {key:?} -> {copied:?}: expected the copy to hold {name:?}"
        );
        for key in [&key, &copied] {
            delete(s.target, key).await?;
            expect_absent(s.target, key).await?;
        }
    }
    Ok(())
}

pub(super) async fn read_after_write_listing(s: &Scratch<'_>, _kit: &Kit) -> Result<(), String> {
    let mut expected = Vec::new();
    for i in 0..6u64 {
        let key = s.key(&format!("raw/{i}"));
        let size = put_bytes(s.target, &key, &pattern(i as usize + 1, 13)).await?;
        expected.push(ObjectInfo::new(key, size));
        expect_listing(s, &s.key("raw/"), &expected)
            .await
            .map_err(|e| format!("right after a put: {e}"))?;
    }
    expected[0].size = put_bytes(s.target, &expected[0].key, &pattern(50, 14)).await?;
    expect_listing(s, &s.key("raw/"), &expected)
        .await
        .map_err(|e| format!("right after replacing an object: {e}"))?;
    while let Some(gone) = expected.pop() {
        delete(s.target, &gone.key).await?;
        expect_listing(s, &s.key("raw/"), &expected)
            .await
            .map_err(|e| format!("right after a delete: {e}"))?;
    }
    Ok(())
}

/// `list(prefix)` must be exactly `expected` (keys and sizes, in any order).
async fn expect_listing(
    s: &Scratch<'_>,
    prefix: &str,
    expected: &[ObjectInfo],
) -> Result<(), String> {
    let got = s
        .target
        .list(prefix)
        .await
        .map_err(|e| format!("list {prefix:?}: {e}"))?;
    if sorted(&got) == sorted(expected) {
        return Ok(());
    }
    let (want, seen) = (sorted(expected), sorted(&got));
    let missing: Vec<_> = want.iter().filter(|o| !seen.contains(o)).take(5).collect();
    let extra: Vec<_> = seen.iter().filter(|o| !want.contains(o)).take(5).collect();
    Err(format!(
        "list {prefix:?}: expected {} objects, got {} (first missing: {missing:?}; first \
         unexpected: {extra:?}; listed {})",
        want.len(),
        seen.len(),
        describe(&got)
    ))
}
