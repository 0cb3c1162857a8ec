//! How a restore point is stored since format 4: a small **record** (the point's identity, its
//! checkpoints, its summary and the checkpoint files) and its file table in **pages**, each
//! page an immutable object named by the MD5 of its bytes under `.esbackup/pages/`.
//!
//! Files go to pages by the MD5 of their key, into a power-of-two number of pages chosen so
//! that a page holds about [`FILES_PER_PAGE`] files. A run that changed a few files writes the
//! few pages those files are in, and its record; a page the previous point already named is
//! not written again (same bytes, same name). An idle run writes only its record, whatever
//! the size of the database. `list`, `status` and `restore --at` read records only.
//!
//! Why this design (against the alternatives the issue names): a parent-relative point (a
//! delta on the previous one, with periodic full ones, as pgBackRest's incremental manifests or
//! Litestream's compaction levels) makes a point readable only through its chain, so `forget`
//! could no longer delete a point another one is relative to, and a damaged link breaks every
//! later point. Content-addressed pieces of the file table (restic's trees) keep every point
//! self-contained and immutable: a point needs its record and its pages, nothing else; pages
//! are shared between points like data objects, kept while a retained point names them and
//! pruned like them; a damaged page is found by its MD5 and names the points that need it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::point::{FileRef, NeededObject, Point};
use crate::target::{get_bytes, Target, TargetError, Upload};

/// About how many files one page holds.
pub const FILES_PER_PAGE: usize = 64;
/// The most pages one point has (a database of more than 262,144 files has fuller pages).
const MAX_PAGES: usize = 4096;

/// The stored record of a format-4 point: the point itself holding only the checkpoint
/// files at the database's root (they change with every run that saw writes, so they are
/// kept here rather than in a page), and the pages of its other files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(flatten)]
    pub point: Point,
    /// Database files the point restores, and their bytes (for listings).
    pub file_count: u64,
    pub size: u64,
    /// The other files' pages, in page order.
    pub pages: Vec<PageRef>,
}

/// One page of a record: the MD5 (hex) of its bytes, which names it, and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PageRef {
    pub md5: String,
    pub size: u64,
    /// What the store holds for it, where that is not `size` (an encoding location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
}

impl PageRef {
    pub fn key(&self) -> String {
        layout::page_key(&self.md5)
    }

    fn needed(&self) -> NeededObject {
        NeededObject {
            key: self.key(),
            size: self.size,
            md5: self.md5.clone(),
            stored_size: crate::point::stored_size(self.size, self.stored_size),
        }
    }
}

/// A page's content.
#[derive(Serialize, Deserialize)]
struct Page {
    files: BTreeMap<String, FileRef>,
}

/// Whether `key` is kept in the record: a checkpoint file at the database's root.
fn in_record(key: &str) -> bool {
    !key.contains('/') && key.ends_with(".chk")
}

/// How many pages a table of `files` files takes: a power of two.
fn page_count(files: usize) -> usize {
    files
        .div_ceil(FILES_PER_PAGE)
        .next_power_of_two()
        .clamp(1, MAX_PAGES)
}

/// The page `key` goes to, of `pages`.
fn page_of(key: &str, pages: usize) -> usize {
    let digest = crate::hashing::md5(key.as_bytes());
    u32::from_le_bytes(digest[..4].try_into().expect("4 bytes")) as usize % pages
}

/// A point as stored: its record, and each page's object and bytes (the record's pages have
/// no stored sizes yet: storing them tells).
pub(crate) struct Stored {
    pub record: Record,
    pub pages: Vec<(NeededObject, Bytes)>,
}

/// Splits `point` into its record and pages.
pub(crate) fn split(point: &Point) -> Stored {
    let mut head = point.clone();
    let (recorded, paged): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut head.files)
        .into_iter()
        .partition(|(k, _)| in_record(k));
    let count = page_count(paged.len());
    let mut tables = vec![BTreeMap::new(); count];
    for (key, file) in paged {
        tables[page_of(&key, count)].insert(key, file);
    }
    let pages: Vec<(PageRef, Bytes)> = tables
        .into_iter()
        .map(|files| {
            let bytes =
                Bytes::from(serde_json::to_vec(&Page { files }).expect("a page serialises"));
            let md5 = hex::encode(crate::hashing::md5(&bytes));
            let size = bytes.len() as u64;
            let page = PageRef {
                md5,
                size,
                stored_size: None,
            };
            (page, bytes)
        })
        .collect();
    head.format = 4;
    head.files = recorded;
    head.pages = Vec::new();
    let record = Record {
        point: head,
        file_count: point.files.len() as u64,
        size: point.size(),
        pages: pages.iter().map(|(r, _)| r.clone()).collect(),
    };
    Stored {
        record,
        pages: pages.into_iter().map(|(r, b)| (r.needed(), b)).collect(),
    }
}

/// What storing a point wrote: its bytes (as stored), and its pages with their stored sizes.
pub(crate) struct StoredPoint {
    pub written: u64,
    pub pages: Vec<NeededObject>,
}

/// Stores `point`: the pages that are not in `existing` (object key → stored size, of the
/// pages the location holds for another point), then the record, last.
pub(crate) async fn store(
    point: &Point,
    target: &dyn Target,
    existing: &BTreeMap<String, u64>,
) -> Result<StoredPoint, (String, TargetError)> {
    let Stored { mut record, pages } = split(point);
    let puts: Vec<_> = (pages.into_iter())
        .map(|(o, bytes)| async move {
            if let Some(&stored) = existing.get(&o.key) {
                return Ok((o.key, stored, 0));
            }
            match target.put(&o.key, Upload::bytes(bytes)).await {
                Ok(s) => Ok((o.key, s.stored_size, s.stored_size)),
                Err(e) => Err((o.key, e)),
            }
        })
        .collect();
    let stored: Vec<(String, u64, u64)> = stream::iter(puts).buffered(8).try_collect().await?;
    let mut written = 0;
    for (page, (_, stored_size, new)) in record.pages.iter_mut().zip(&stored) {
        page.stored_size = crate::point::record_stored_size(page.size, *stored_size);
        written += new;
    }
    let key = point.key();
    let bytes = serde_json::to_vec_pretty(&record).expect("a record serialises");
    let put = target.put(&key, Upload::bytes(bytes)).await;
    written += put.map_err(|e| (key, e))?.stored_size;
    let pages = record.pages.iter().map(PageRef::needed).collect();
    Ok(StoredPoint { written, pages })
}

/// The pages one command has read, by key (points share most of theirs), and those whose
/// objects [`objects_of`] returned.
#[derive(Default)]
pub(crate) struct PageCache {
    tables: Mutex<HashMap<String, Arc<BTreeMap<String, FileRef>>>>,
    listed: Mutex<BTreeSet<String>>,
}

/// The keys of the objects `record`'s point needs: its pages, and the objects of the files
/// in them (of each page once per `cache`: the caller collects a set). Each page is checked.
pub(crate) async fn objects_of(
    target: &dyn Target,
    record: &Record,
    cache: &PageCache,
) -> Result<Vec<String>, Unreadable> {
    let mut keys: Vec<String> = (record.point.files.values())
        .flat_map(FileRef::objects)
        .map(|o| o.key)
        .collect();
    for page in &record.pages {
        keys.push(page.key());
        if !cache.listed.lock().unwrap().insert(page.key()) {
            continue;
        }
        let table = read_page(target, page, cache).await?;
        keys.extend(table.values().flat_map(FileRef::objects).map(|o| o.key));
    }
    Ok(keys)
}

/// Why a point could not be assembled: its store failed, or what it holds is wrong.
pub(crate) enum Unreadable {
    Storage(String, TargetError),
    Damaged(String),
}

/// The point `record` describes, with its pages read (from `cache` where read before), each
/// checked against its MD5 and size.
pub(crate) async fn assemble(
    target: &dyn Target,
    record: Record,
    cache: &PageCache,
) -> Result<Point, Unreadable> {
    let reads: Vec<_> = (record.pages.iter())
        .map(|page| read_page(target, page, cache))
        .collect();
    let tables: Vec<Arc<BTreeMap<String, FileRef>>> =
        stream::iter(reads).buffered(16).try_collect().await?;
    let count = record.pages.len();
    let mut point = record.point;
    for (at, table) in tables.iter().enumerate() {
        for (key, file) in table.iter() {
            if page_of(key, count) != at || in_record(key) {
                return Err(Unreadable::Damaged(format!(
                    "page {at} holds {key:?}, which is not its"
                )));
            }
            point.files.insert(key.clone(), file.clone());
        }
    }
    if point.files.len() as u64 != record.file_count {
        return Err(Unreadable::Damaged(format!(
            "it names {} files but its record and pages hold {}",
            record.file_count,
            point.files.len()
        )));
    }
    point.pages = record.pages.iter().map(PageRef::needed).collect();
    Ok(point)
}

async fn read_page(
    target: &dyn Target,
    page: &PageRef,
    cache: &PageCache,
) -> Result<Arc<BTreeMap<String, FileRef>>, Unreadable> {
    let key = page.key();
    if let Some(table) = cache.tables.lock().unwrap().get(&key) {
        return Ok(table.clone());
    }
    let bytes = match get_bytes(target, &key).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Err(Unreadable::Damaged(format!("its page {key} is missing")))
        }
        Err(e) => return Err(Unreadable::Storage(key, e)),
    };
    if bytes.len() as u64 != page.size || hex::encode(crate::hashing::md5(&bytes)) != page.md5 {
        return Err(Unreadable::Damaged(format!(
            "its page {key} is damaged (MD5 or size differs)"
        )));
    }
    let page: Page = serde_json::from_slice(&bytes)
        .map_err(|e| Unreadable::Damaged(format!("its page {key} is unreadable: {e}")))?;
    let table = Arc::new(page.files);
    cache.tables.lock().unwrap().insert(key, table.clone());
    Ok(table)
}

/// What a record must hold before anything it names is read: safe names of checkpoint files
/// in the record, pages named by MD5s (so their keys stay under the pages folder).
pub(crate) fn check_record(record: &Record) -> Result<(), String> {
    for key in record.point.files.keys() {
        if let Some(why) = layout::unsafe_file_key(key) {
            return Err(format!("it names a database file {key:?} ({why})"));
        }
        if !in_record(key) {
            return Err(format!("its record holds {key:?}, which belongs in a page"));
        }
    }
    match record.pages.iter().find(|p| !is_md5(&p.md5)) {
        Some(bad) => Err(format!("it names a page {:?} that is no MD5", bad.md5)),
        None => Ok(()),
    }
}

/// 32 lower-case hex digits.
fn is_md5(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::tests::{inline, sample};
    use crate::point::Content;
    use crate::testing::MemoryTarget;

    /// A point of `n` database files (chunks stored as objects) and the checkpoints.
    fn point_of(n: usize) -> Point {
        let mut p = sample();
        p.format = 4;
        for i in 0..n {
            let key = format!("chunk-{i:06}.000000");
            let object = Content::Object {
                stored_size: None,
                key: format!("{}{key}", layout::DATA_DIR),
                md5: format!("{:032x}", i),
            };
            let file = FileRef {
                size: 256 << 20,
                content: object,
                chunk: None,
                stamp: None,
            };
            p.files.insert(key, file);
        }
        p
    }

    /// Keys and sizes of what `target` holds.
    async fn stored(target: &MemoryTarget) -> BTreeMap<String, u64> {
        let listed = target.list("").await.unwrap();
        listed.into_iter().map(|o| (o.key, o.size)).collect()
    }

    #[tokio::test]
    async fn a_point_round_trips_through_its_record_and_pages() {
        let target = MemoryTarget::new();
        let mut point = point_of(300);
        point.store(&target, &BTreeMap::new()).await.unwrap();
        let read = Point::load(&target, &point.id).await.unwrap();
        assert_eq!(read.files, point.files);
        assert_eq!(
            read.pages.len(),
            page_count(point.files.len() - 2),
            "two in the record"
        );
        let objects = read.objects();
        assert!(
            read.pages.iter().all(|p| objects.contains(p)),
            "a point needs its pages"
        );
        let summary = Point::summary(&target, &point.id).await.unwrap();
        assert_eq!(
            (summary.files, summary.bytes),
            (point.files.len() as u64, point.size())
        );
    }

    #[tokio::test]
    async fn an_unchanged_table_writes_only_a_small_record_whatever_the_database_size() {
        let target = MemoryTarget::new();
        let mut first = point_of(4000);
        first.store(&target, &BTreeMap::new()).await.unwrap();
        let first = Point::load(&target, &first.id).await.unwrap();
        let before = stored(&target).await;
        let existing: BTreeMap<String, u64> = first
            .pages
            .iter()
            .map(|p| (p.key.clone(), p.stored_size))
            .collect();
        let mut idle = first.clone();
        idle.id = "p00000002-20261130T000000000Z-00000000".into();
        idle.files.insert("writer.chk".into(), inline(400));
        let written = idle.store(&target, &existing).await.unwrap();
        let after = stored(&target).await;
        let new: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        assert_eq!(new, [&idle.key()], "only the record is new");
        assert!(written <= 16 * 1024, "an idle point writes {written} bytes");
        // One changed file: its page and the record.
        let mut one = first.clone();
        one.id = "p00000003-20261130T000000000Z-00000000".into();
        one.files.get_mut("chunk-000042.000000").unwrap().size += 1;
        let written = one.store(&target, &existing).await.unwrap();
        let newer = stored(&target).await;
        assert_eq!(newer.len(), after.len() + 2, "one page and the record");
        assert!(written < 64 * 1024, "{written}");
        let read = Point::load(&target, &one.id).await.unwrap();
        assert_eq!(read.files, one.files);
    }

    #[tokio::test]
    async fn a_damaged_or_missing_page_makes_its_points_damaged_and_names_the_page() {
        let target = MemoryTarget::new();
        let mut point = point_of(200);
        point.store(&target, &BTreeMap::new()).await.unwrap();
        let page = Point::load(&target, &point.id).await.unwrap().pages[1]
            .key
            .clone();
        let bytes = get_bytes(&target, &page).await.unwrap();
        let mut flipped = bytes.to_vec();
        flipped[10] ^= 1;
        target
            .put(&page, Upload::bytes(Bytes::from(flipped)))
            .await
            .unwrap();
        let err = Point::load(&target, &point.id).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Damaged);
        assert!(err.to_string().contains(&page), "{err}");
        target.delete(&page).await.unwrap();
        let err = Point::load(&target, &point.id).await.unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        // The record alone still answers for listings.
        assert!(Point::summary(&target, &point.id).await.is_ok());
    }

    #[tokio::test]
    async fn a_record_naming_a_page_outside_the_pages_folder_is_damaged() {
        let target = MemoryTarget::new();
        let point = point_of(10);
        let stored = split(&point);
        let mut record: serde_json::Value = serde_json::to_value(&stored.record).unwrap();
        record["pages"][0]["md5"] = "../../escape".into();
        let bytes = Bytes::from(serde_json::to_vec(&record).unwrap());
        target
            .put(&point.key(), Upload::bytes(bytes))
            .await
            .unwrap();
        let err = Point::load(&target, &point.id).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Damaged);
        assert!(err.to_string().contains("no MD5"), "{err}");
    }

    #[test]
    fn files_spread_over_pages_of_about_the_same_size() {
        assert_eq!(page_count(0), 1);
        assert_eq!(page_count(64), 1);
        assert_eq!(page_count(65), 2);
        assert_eq!(page_count(4000), 64);
        let stored = split(&point_of(4000));
        let sizes: Vec<u64> = stored.pages.iter().map(|(o, _)| o.size).collect();
        let (least, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(*most < 3 * least, "{least}..{most}");
    }
}
