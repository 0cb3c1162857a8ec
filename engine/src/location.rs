//! What a backup location holds, as each command reads it: its restore points in run order
//! (oldest first), or the manifest of an esbackup 0.1 location.
//!
//! A command that writes or deletes reads the location only once it holds the lock (see
//! `lock.rs`): what it decides on must not change under it.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{stream, StreamExt};
use serde::Serialize;

use crate::error::{EngineError, ErrorKind, Result};
use crate::layout;
use crate::legacy;
use crate::paged::PageCache;
use crate::point::{id_seq, run_order, Content, Point};
use crate::status::PointSummary;
use crate::target::Target;

/// The restore points of a location.
pub(crate) struct Location {
    pub target: Arc<dyn Target>,
    /// Point ids in the order their runs completed, oldest first ([`run_order`]).
    pub ids: Vec<String>,
    /// An esbackup 0.1 manifest, read when the location has no points.
    pub legacy: Option<legacy::Manifest>,
    /// The pages of format-4 points read so far (points share most of theirs).
    pages: PageCache,
}

/// A point object that is there but cannot be read as a point.
#[derive(Clone, Debug, Serialize)]
pub struct DamagedPoint {
    pub id: String,
    pub problem: String,
}

/// Every point of a location, as read (whole, or as summaries): the readable ones in run
/// order, and the damaged ones.
pub(crate) struct Points<T = Point> {
    pub readable: Vec<T>,
    pub damaged: Vec<DamagedPoint>,
}

impl Location {
    /// Lists the points (one listing of `.esbackup/points/`).
    /// Reads the location at the start of a command: refused when it is compressed or
    /// encrypted and `target` does not decode it ([`crate::codec::open`]). Re-reads later in
    /// the command use [`Location::read`].
    pub async fn open(target: Arc<dyn Target>) -> Result<Location> {
        crate::codec::check_opened(target.as_ref()).await?;
        Location::read(target).await
    }

    pub async fn read(target: Arc<dyn Target>) -> Result<Location> {
        let listed = target
            .list(layout::POINTS_DIR)
            .await
            .map_err(|e| EngineError::storage(layout::POINTS_DIR, e))?;
        let mut ids: Vec<String> = listed
            .iter()
            .filter_map(|o| layout::point_id(&o.key))
            .filter(|id| !id.contains('/'))
            .map(str::to_string)
            .collect();
        ids.sort_by(|a, b| run_order(a).cmp(&run_order(b)));
        let legacy = if ids.is_empty() {
            legacy::Manifest::load(target.as_ref()).await?
        } else {
            None
        };
        Ok(Location {
            target,
            ids,
            legacy,
            pages: PageCache::default(),
        })
    }

    /// True when the location holds a backup (points, or an esbackup 0.1 manifest).
    pub fn has_backup(&self) -> bool {
        !self.ids.is_empty() || self.legacy.is_some()
    }

    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// The sequence number the next point takes: one more than the newest point's.
    pub fn next_seq(&self) -> u64 {
        self.ids
            .iter()
            .filter_map(|id| id_seq(id))
            .max()
            .unwrap_or(0)
            + 1
    }

    /// The latest point: the newest point object, or the state of a 0.1 location. A damaged
    /// newest point is an error (it says which point, and that others may be restored).
    pub async fn latest(&self) -> Result<Option<Point>> {
        match (self.ids.last(), &self.legacy) {
            (Some(id), _) => self
                .load(id)
                .await
                .map(Some)
                .map_err(|e| match e.kind() {
                    ErrorKind::Damaged => EngineError::damaged(format!(
                        "the newest restore point is damaged: {}. Choose another with --point or --at (`esbackup list` shows the readable ones)",
                        e.message()
                    )),
                    _ => e,
                }),
            (None, Some(m)) => m.as_point(&self.describe()).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The newest point that can be read, skipping damaged newer ones with a warning.
    pub async fn newest_readable(&self) -> Result<Option<Point>> {
        if self.ids.is_empty() {
            return self.latest().await;
        }
        for id in self.ids.iter().rev() {
            match self.load(id).await {
                Ok(p) => return Ok(Some(p)),
                Err(e) if matches!(e.kind(), ErrorKind::Damaged | ErrorKind::NoBackup) => {
                    tracing::warn!("skipping restore point {id}: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The latest point, or an error saying the location holds none.
    pub async fn require_latest(&self) -> Result<Point> {
        self.latest().await?.ok_or_else(|| self.no_backup())
    }

    /// Point `id` (a 0.1 location's single state answers to its run id).
    pub async fn point(&self, id: &str) -> Result<Point> {
        if let Some(m) = self.legacy.as_ref().filter(|m| m.run_id == id) {
            return m.as_point(&self.describe());
        }
        if !self.ids.iter().any(|i| i == id) {
            return Err(EngineError::invalid_input(format!(
                "{} has no restore point {id}: `esbackup list --target {}` shows them",
                self.describe(),
                self.describe()
            )));
        }
        self.load(id).await
    }

    /// Reads point `id` (its pages through this location's cache).
    async fn load(&self, id: &str) -> Result<Point> {
        Point::load_with(self.target.as_ref(), id, &self.pages).await
    }

    /// Every point, in run order (read concurrently): the readable ones, and the damaged ones
    /// by id. A point deleted since the listing (forgotten meanwhile) is left out; a storage
    /// failure is an error.
    pub async fn points(&self) -> Result<Points> {
        if self.ids.is_empty() {
            return Ok(Points {
                readable: self.latest().await?.into_iter().collect(),
                damaged: vec![],
            });
        }
        self.read_each(16, |id| self.load(id)).await
    }

    /// What [`Location::points`] reads, as summaries: from the points' records alone where
    /// they have one (format 4), so that listing many points reads little.
    pub async fn summaries(&self) -> Result<Points<PointSummary>> {
        if self.ids.is_empty() {
            let latest = self.latest().await?;
            return Ok(Points {
                readable: latest.iter().map(PointSummary::from).collect(),
                damaged: vec![],
            });
        }
        let target = self.target.as_ref();
        // Records are small: many at once (a listing's time is the store's latency).
        self.read_each(64, |id| Point::summary(target, id)).await
    }

    /// Every object the points `ids` (in run order) need, their pages included, and the root
    /// mirror of the last of them. Pages shared by several points are read once; a point that
    /// cannot be read whole is an error (`Damaged`), never skipped.
    pub async fn needed_by(&self, ids: &[&str]) -> Result<BTreeSet<String>> {
        let Some(newest) = ids.last() else {
            return Ok(BTreeSet::new());
        };
        let newest = self.load(newest).await?;
        let mut needed = needed_by_points(&[&newest]);
        let target = self.target.as_ref();
        let reads: Vec<_> = (ids.iter())
            .map(|id| Point::objects_of(target, id, &self.pages))
            .collect();
        let mut each = stream::iter(reads).buffered(16);
        while let Some(objects) = each.next().await {
            needed.extend(objects?);
        }
        Ok(needed)
    }

    /// `read(id)` of every point, `at_once` at a time, sorted into readable and damaged.
    async fn read_each<'a, T, F, Fut>(&'a self, at_once: usize, read: F) -> Result<Points<T>>
    where
        F: Fn(&'a str) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let loads: Vec<_> = self
            .ids
            .iter()
            .map(|id| {
                let loaded = read(id);
                async move { (id, loaded.await) }
            })
            .collect();
        let loaded: Vec<_> = stream::iter(loads).buffered(at_once).collect().await;
        let mut points = Points {
            readable: Vec::new(),
            damaged: Vec::new(),
        };
        for (id, result) in loaded {
            match result {
                Ok(p) => points.readable.push(p),
                Err(e) if e.kind() == ErrorKind::Damaged => points.damaged.push(DamagedPoint {
                    id: id.clone(),
                    problem: e.message().to_string(),
                }),
                Err(e) if e.kind() == ErrorKind::NoBackup => {}
                Err(e) => return Err(e),
            }
        }
        Ok(points)
    }

    pub fn no_backup(&self) -> EngineError {
        EngineError::no_backup(format!(
            "no esbackup backup at {} (no restore point in {}): check the target, or run a backup first",
            self.describe(),
            layout::POINTS_DIR
        ))
    }
}

/// The objects `points` need, and the root mirror of the last of them (its files stored
/// elsewhere or inline, whose plain copies the root holds).
pub(crate) fn needed_by_points(points: &[&Point]) -> BTreeSet<String> {
    let mut needed: BTreeSet<String> = points
        .iter()
        .flat_map(|p| p.objects().into_iter().map(|o| o.key))
        .collect();
    if let Some(newest) = points.last() {
        for (key, f) in &newest.files {
            if !matches!(&f.content, Content::Object { key: k, .. } if k == key) {
                needed.insert(key.clone());
            }
        }
    }
    needed
}

impl<T> Points<T> {
    /// The damaged points as one line: "2 restore points are damaged: a (why); b (why)".
    pub fn damaged_summary(&self) -> Option<String> {
        if self.damaged.is_empty() {
            return None;
        }
        let each: Vec<String> = self.damaged.iter().map(|d| d.problem.clone()).collect();
        Some(format!(
            "{} restore point(s) damaged: {}",
            self.damaged.len(),
            each.join("; ")
        ))
    }
}
