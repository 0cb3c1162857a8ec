//! What a backup location holds, as each command reads it: its restore points (oldest first),
//! or the manifest of an esbackup 0.1 location.

use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};

use crate::error::{EngineError, Result};
use crate::layout;
use crate::legacy;
use crate::point::Point;
use crate::target::Target;

/// The restore points of a location.
pub(crate) struct Location {
    pub target: Arc<dyn Target>,
    /// Point ids, oldest first.
    pub ids: Vec<String>,
    /// An esbackup 0.1 manifest, read when the location has no points.
    pub legacy: Option<legacy::Manifest>,
}

impl Location {
    /// Lists the points (one listing of `.esbackup/points/`).
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
        ids.sort();
        let legacy = if ids.is_empty() {
            legacy::Manifest::load(target.as_ref()).await?
        } else {
            None
        };
        Ok(Location {
            target,
            ids,
            legacy,
        })
    }

    /// True when the location holds a backup (points, or an esbackup 0.1 manifest).
    pub fn has_backup(&self) -> bool {
        !self.ids.is_empty() || self.legacy.is_some()
    }

    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// The latest point: the newest point object, or the state of a 0.1 location.
    pub async fn latest(&self) -> Result<Option<Point>> {
        match (self.ids.last(), &self.legacy) {
            (Some(id), _) => Point::load(self.target.as_ref(), id).await.map(Some),
            (None, Some(m)) => m.as_point(&self.describe()).map(Some),
            (None, None) => Ok(None),
        }
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
        Point::load(self.target.as_ref(), id).await
    }

    /// Every point, oldest first (read concurrently).
    pub async fn all(&self) -> Result<Vec<Point>> {
        if self.ids.is_empty() {
            return Ok(self.latest().await?.into_iter().collect());
        }
        let loads: Vec<_> = self
            .ids
            .iter()
            .map(|id| Point::load(self.target.as_ref(), id))
            .collect();
        stream::iter(loads).buffered(16).try_collect().await
    }

    pub fn no_backup(&self) -> EngineError {
        EngineError::no_backup(format!(
            "no esbackup backup at {} (no restore point in {}): check the target, or run a backup first",
            self.describe(),
            layout::POINTS_DIR
        ))
    }
}
