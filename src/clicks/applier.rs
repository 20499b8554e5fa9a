//! The applier, one task per process: every `CLICKS_FLUSH_MS` it takes the
//! clicks journaled since the last batch (`Journal::take_batch`), makes the
//! segment durable against a power loss (`fdatasync`, once per flush), and
//! applies the batch in one transaction (`db::clicks::apply_segment`, the
//! same transaction-then-recount path as adoption).
//!
//! A batch that fails is retried as it is, with the same end, until it is
//! applied; the clicks answered meanwhile gather in a fresh aggregate for
//! the next batch. PostgreSQL away therefore costs journal bytes, up to
//! `CLICKS_JOURNAL_MAX_BYTES`, then `503`s, and never a click.
//!
//! The batch's counts are the aggregate of the clicks since the segment's
//! last applied offset as this process knows it. When the offset the
//! transaction finds is another (never in a normal run; say a record
//! forgotten by hand), the counts are read again from the file, beyond the
//! offset found: the file is the truth, the aggregate a shortcut.
//!
//! The applier keeps its PostgreSQL connection from one batch to the next
//! while batches keep coming (`KEEP_IDLE`): the pool checks a connection it
//! hands out with a statement of its own, which would be a second
//! transaction per flush.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::journal::{Batch, Journal};
use super::record::ReadSegment;
use crate::db::clicks::{DayCount, SegmentApply};
use crate::db::{self, DbConn, DbPool};
use crate::metrics::Metrics;

/// The applier gives its connection back to the pool after this long
/// without a batch.
const KEEP_IDLE: Duration = Duration::from_secs(1);

/// One attempt at a batch, at most; a transaction cut by it is rolled back
/// and the batch retried, which cannot count it twice.
const ATTEMPT_WITHIN: Duration = Duration::from_secs(10);

/// Waits between attempts during a stop.
const STOP_RETRY_WAIT: Duration = Duration::from_millis(100);

pub(super) struct Applier {
    pub journal: Arc<Journal>,
    pub db: DbPool,
    pub metrics: Arc<Metrics>,
    pub every: Duration,
}

impl Applier {
    /// Applies batches every `every` until `stop`; then applies what is
    /// left and removes the segment, trying for up to `stop_within`. What
    /// is not applied by then stays in the file, for an adopter.
    pub async fn run(self, stop: CancellationToken, stop_within: Duration) {
        let mut pending: Option<Batch> = None;
        let mut held: Option<DbConn> = None;
        let mut last_batch = Instant::now();
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let Some(batch) = pending.take().or_else(|| self.journal.take_batch(false)) else {
                if held.is_some() && last_batch.elapsed() >= KEEP_IDLE {
                    held = None;
                }
                continue;
            };
            last_batch = Instant::now();
            if let Err(batch) = self.apply(batch, &mut held).await {
                pending = Some(batch);
            }
        }
        let deadline = Instant::now() + stop_within;
        let mut closed = false;
        loop {
            let batch = match pending.take() {
                Some(batch) => batch,
                None if closed => return,
                None => {
                    closed = true;
                    match self.journal.take_batch(true) {
                        Some(batch) => batch,
                        None => return,
                    }
                }
            };
            if let Err(batch) = self.apply(batch, &mut held).await {
                if Instant::now() + STOP_RETRY_WAIT >= deadline {
                    tracing::warn!(
                        "stop: clicks up to offset {} of {} are not applied; the segment stays for an adopter",
                        batch.end,
                        batch.segment.path.display()
                    );
                    return;
                }
                pending = Some(batch);
                tokio::time::sleep(STOP_RETRY_WAIT).await;
            }
        }
    }

    /// Applies `batch`; gives it back when it must be tried again. The
    /// segment's last batch, once applied, removes the segment.
    async fn apply(&self, batch: Batch, held: &mut Option<DbConn>) -> Result<(), Batch> {
        if let Err(e) = batch.segment.sync() {
            tracing::warn!(
                "fdatasync of {} failed (a power loss could take its last clicks): {e}",
                batch.segment.path.display()
            );
        }
        // A segment that never had a click has no record in PostgreSQL.
        let untouched = batch.end == batch.segment.records_start;
        if !untouched {
            let outcome = tokio::time::timeout(ATTEMPT_WITHIN, self.attempt(&batch, held)).await;
            let failure = match outcome {
                Ok(Ok(SegmentApply::Applied)) => {
                    self.metrics.click_batch("committed");
                    None
                }
                Ok(Ok(SegmentApply::AlreadyApplied)) => {
                    self.metrics.click_batch("found_applied");
                    None
                }
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no commit within {ATTEMPT_WITHIN:?}")),
            };
            if let Some(failure) = failure {
                // Perhaps broken: the pool checks it before handing it out again.
                *held = None;
                self.metrics.click_batch("retried");
                tracing::warn!(
                    segment = %batch.segment.name,
                    "applying clicks up to offset {} failed, retrying: {failure}",
                    batch.end
                );
                return Err(batch);
            }
        }
        self.journal.applied(&batch);
        if batch.last {
            self.retire(batch, held).await;
        }
        Ok(())
    }

    async fn attempt(
        &self,
        batch: &Batch,
        held: &mut Option<DbConn>,
    ) -> Result<SegmentApply, String> {
        let conn = match held {
            Some(conn) => conn,
            None => held.insert(self.db.get().await.map_err(|e| e.to_string())?),
        };
        let end = i64::try_from(batch.end).map_err(|e| e.to_string())?;
        db::clicks::apply_segment(conn, &batch.segment.name, end, |last| {
            counts_beyond(batch, last)
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Removes a fully applied segment: its file, then its record.
    async fn retire(&self, batch: Batch, held: &mut Option<DbConn>) {
        let name = batch.segment.name.clone();
        let had_clicks = batch.end > batch.segment.records_start;
        let removed = match Arc::try_unwrap(batch.segment) {
            Ok(segment) => segment.remove().map_err(|e| e.to_string()),
            Err(_) => Err("it is still in use".to_owned()),
        };
        if let Err(e) = removed {
            tracing::warn!("cannot remove the applied click journal segment {name}: {e}");
            return;
        }
        if !had_clicks {
            return;
        }
        let forgotten = async {
            let conn = match held {
                Some(conn) => conn,
                None => held.insert(self.db.get().await.map_err(|e| e.to_string())?),
            };
            db::clicks::forget_segment(conn, &name)
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = forgotten.await {
            *held = None;
            tracing::warn!(
                "the record of removed segment {name} stays (removed within a week): {e}"
            );
        }
    }
}

/// The counts of `batch`'s segment beyond offset `last`, as the transaction
/// found it: the batch's own when `last` is where the batch starts, else
/// read again from the file.
fn counts_beyond(batch: &Batch, last: i64) -> Option<Vec<DayCount>> {
    let start = i64::try_from(batch.start).ok()?;
    let from_the_start = last < 0 && batch.start == batch.segment.records_start;
    if last == start || from_the_start {
        return Some(batch.counts.clone());
    }
    tracing::warn!(
        segment = %batch.segment.name,
        "the segment's applied offset is {last}, not {start}: recounting from the file"
    );
    let bytes = batch.segment.read_all().ok()?;
    Some(ReadSegment::parse(&bytes)?.counts_between(last, batch.end))
}
