//! Adoption, the crash path: at start and every few seconds, the journal
//! directory is scanned for segments of other processes whose lock is free,
//! that is whose owner is dead (`kill -9`, a crash, a stop that could not
//! apply everything). A sibling instance sharing the directory and a
//! restarted process adopt alike. For each one:
//! 1. its header must name this process's database, else it is skipped
//!    (and logged once);
//! 2. its records are read up to the end of the file or the first torn or
//!    corrupt one (`record.rs`);
//! 3. in one transaction, the segment's record in `click_batches` is
//!    locked, and only then are the clicks beyond the offset it holds
//!    counted and applied, and the offset moved to the valid end
//!    (`db::clicks::apply_segment`, the applier's path too). The lock waits
//!    for a batch of the dead process still open in PostgreSQL: if it
//!    commits, its clicks are past the offset found, and if it is rolled
//!    back, they are counted here; never both;
//! 4. the file is removed, then its record.
//!
//! The visitors of every record in the segment are merged too: a sketch's
//! merge is a maximum, so the observations the dead process had merged
//! already change nothing, and those it had not are not lost.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::journal::Journal;
use super::record::ReadSegment;
use super::segment::{CREATING_SUFFIX, LockedSegment, SEGMENT_SUFFIX};
use super::visitors::Visitors;
use crate::db::clicks::SegmentApply;
use crate::db::{self, DbPool};
use crate::metrics::Metrics;

/// How old a `.clicks.tmp` must be before it is taken for a dead
/// process's.
const UNFINISHED_AFTER: Duration = Duration::from_secs(10);

pub(super) struct Adopter {
    pub journal: Arc<Journal>,
    pub db: DbPool,
    pub metrics: Arc<Metrics>,
    pub visitors: Arc<Visitors>,
}

/// A file of the journal directory that is not this process's.
struct Found {
    name: String,
    path: PathBuf,
    /// A `.clicks.tmp` whose creator died before renaming it: no click was
    /// ever appended to it.
    unfinished: bool,
}

impl Adopter {
    /// Scans now, then every `every`, until `stop`.
    pub async fn run(self, every: Duration, stop: CancellationToken) {
        let mut skipped = HashSet::new();
        loop {
            self.adopt_all(&mut skipped).await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Adopts every segment whose owner is gone. `skipped`: those already
    /// logged as not adoptable, logged once.
    pub async fn adopt_all(&self, skipped: &mut HashSet<String>) {
        let dir = self.journal.dir.clone();
        let found = match tokio::task::spawn_blocking(move || list(&dir)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(
                    "cannot list the click journal directory {}: {e}",
                    self.journal.dir.display()
                );
                return;
            }
            Err(e) => {
                tracing::warn!("listing the click journal directory failed: {e}");
                return;
            }
        };
        for found in found {
            if self.journal.is_own(&found.name) || skipped.contains(&found.name) {
                continue;
            }
            let (path, name) = (found.path.clone(), found.name.clone());
            let locked = tokio::task::spawn_blocking(move || {
                let Some(segment) = LockedSegment::try_lock(&path, &name)? else {
                    return Ok(None);
                };
                let bytes = segment.read_all()?;
                Ok::<_, std::io::Error>(Some((segment, bytes)))
            })
            .await;
            let (segment, bytes) = match locked {
                Ok(Ok(Some(locked))) => locked,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!("cannot read click journal segment {}: {e}", found.name);
                    continue;
                }
                Err(e) => {
                    tracing::warn!("reading click journal segment {} failed: {e}", found.name);
                    continue;
                }
            };
            if found.unfinished {
                if let Err(e) = segment.remove() {
                    tracing::warn!("cannot remove unfinished segment {}: {e}", found.name);
                }
                continue;
            }
            let Some(read) = ReadSegment::parse(&bytes) else {
                tracing::warn!(
                    "{} is no click journal segment (no whole header): left for an operator",
                    found.path.display()
                );
                skipped.insert(found.name);
                continue;
            };
            if read.identity != self.journal.identity {
                tracing::warn!(
                    "click journal segment {} is of database {:?}, not {:?}: skipped",
                    found.path.display(),
                    read.identity,
                    self.journal.identity
                );
                skipped.insert(found.name);
                continue;
            }
            self.adopt(segment, &read).await;
        }
    }

    /// Applies a dead process's segment, then removes it; on failure it is
    /// let go, for the next scan.
    async fn adopt(&self, segment: LockedSegment, read: &ReadSegment) {
        let name = segment.name.clone();
        let Ok(end) = i64::try_from(read.valid_end) else {
            return;
        };
        let applied = async {
            let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
            let outcome = db::clicks::apply_segment(&mut conn, &name, end, |last| {
                Some(read.counts_between(last, read.valid_end))
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok::<_, String>((conn, outcome))
        };
        let (mut conn, outcome) = match applied.await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::warn!("adopting click journal segment {name} failed, retried later: {e}");
                return;
            }
        };
        self.metrics.click_batch(match outcome {
            SegmentApply::Applied => "adopted",
            SegmentApply::AlreadyApplied => "found_applied",
        });
        for (_, record) in &read.records {
            if let Some(seen) = record.seen {
                self.visitors.add(record.link_id, record.day, seen);
            }
        }
        tracing::info!(
            "adopted click journal segment {name}: {} click(s) up to offset {}, {} byte(s) of torn tail left out",
            read.records.len(),
            read.valid_end,
            read.ignored
        );
        if let Err(e) = segment.remove() {
            tracing::warn!("cannot remove adopted segment {name}: {e}");
            return;
        }
        if let Err(e) = db::clicks::forget_segment(&mut conn, &name).await {
            tracing::warn!(
                "the record of adopted segment {name} stays (removed within a week): {e}"
            );
        }
    }
}

/// The segments, and unfinished ones, in `dir`.
fn list(dir: &std::path::Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let (name, unfinished) = if let Some(name) = file_name.strip_suffix(CREATING_SUFFIX) {
            // Its creator locks it a moment after creating it: one just made
            // may be a live process's.
            let settled = entry
                .metadata()?
                .modified()?
                .elapsed()
                .is_ok_and(|age| age >= UNFINISHED_AFTER);
            if !settled {
                continue;
            }
            (name, true)
        } else if let Some(name) = file_name.strip_suffix(SEGMENT_SUFFIX) {
            (name, false)
        } else {
            continue;
        };
        found.push(Found {
            name: name.to_owned(),
            path: entry.path(),
            unfinished,
        });
    }
    Ok(found)
}
