//! The group commit of click counts: every click waits in one bounded
//! queue; each committer takes what has gathered (up to
//! `CLICKS_BATCH_MAX`), adds it to `link_clicks` in one statement with the
//! record that the batch was applied (`db::clicks::apply_batch`), and only
//! then releases the redirects waiting on it. While one batch commits, the
//! next gathers, so the statements per click fall as the rate rises.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::clicks::DayCount;
use crate::db::{self, DbPool};
use crate::metrics::Metrics;

/// A click waiting for its batch to commit.
pub(super) struct Waiting {
    pub link_id: i64,
    pub day: NaiveDate,
    /// Told once the batch's outcome is known: `Err` holds why it failed.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The queue every committer takes from, one at a time.
pub(super) type Queue = Arc<Mutex<mpsc::Receiver<Waiting>>>;

/// What a committer needs besides its queue.
#[derive(Clone)]
pub(super) struct Committer {
    pub db: DbPool,
    pub metrics: Arc<Metrics>,
    /// Unique per committer and process: the key of its batch records.
    pub writer: String,
    pub batch_max: usize,
    /// A batch's whole time, retries included, before its clicks fail.
    pub within: Duration,
}

/// Waits between retries of a batch, doubling up to this.
const RETRY_WAIT_MAX: Duration = Duration::from_millis(500);

impl Committer {
    /// Commits batches until `stop` is cancelled and the queue is empty:
    /// what was queued before a stop is still committed and answered.
    pub async fn run(self, queue: Queue, stop: CancellationToken) {
        let mut batch_number: i64 = 0;
        loop {
            let batch = {
                let mut queue = queue.lock().await;
                let first = tokio::select! {
                    biased;
                    first = queue.recv() => first,
                    () = stop.cancelled() => queue.try_recv().ok(),
                };
                let Some(first) = first else { return };
                let mut batch = vec![first];
                while batch.len() < self.batch_max {
                    match queue.try_recv() {
                        Ok(waiting) => batch.push(waiting),
                        Err(_) => break,
                    }
                }
                batch
            };
            batch_number += 1;
            let outcome = self.commit(batch_number, &day_counts(&batch)).await;
            let outcome_label = if outcome.is_ok() { "counted" } else { "failed" };
            self.metrics.clicks(outcome_label, batch.len() as u64);
            for waiting in batch {
                // A redirect that stopped waiting (its client left) still counts:
                // the commit cannot be taken back.
                let _ = waiting.done.send(outcome.clone());
            }
        }
    }

    /// Applies batch `number` until it is known applied, retrying with the
    /// same number, so a retry after an unknown outcome (a connection cut
    /// during the commit) cannot count it twice.
    async fn commit(&self, number: i64, counts: &[DayCount]) -> Result<(), String> {
        let deadline = Instant::now() + self.within;
        let mut wait = Duration::from_millis(20);
        loop {
            let attempt = async {
                let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
                db::clicks::apply_batch(&mut conn, &self.writer, number, counts)
                    .await
                    .map_err(|e| e.to_string())
            };
            let failure = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(true)) => {
                    self.metrics.click_batch("committed");
                    return Ok(());
                }
                Ok(Ok(false)) => {
                    self.metrics.click_batch("found_applied");
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(_) => format!("no commit within {} ms", self.within.as_millis()),
            };
            if Instant::now() + wait >= deadline {
                self.metrics.click_batch("failed");
                tracing::warn!(
                    writer = %self.writer,
                    batch = number,
                    "a batch of {} link-day count(s) failed: {failure}",
                    counts.len()
                );
                return Err(failure);
            }
            self.metrics.click_batch("retried");
            tracing::debug!(batch = number, "retrying a batch of clicks: {failure}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_WAIT_MAX);
        }
    }
}

/// A batch's clicks as counts per link and day.
fn day_counts(batch: &[Waiting]) -> Vec<DayCount> {
    let mut counts: BTreeMap<(i64, NaiveDate), i64> = BTreeMap::new();
    for waiting in batch {
        *counts.entry((waiting.link_id, waiting.day)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((link_id, day), clicks)| DayCount {
            link_id,
            day,
            clicks,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_each_link_and_day_once() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date");
        let next = day.succ_opt().expect("a date");
        let batch: Vec<Waiting> = [(1, day), (2, day), (1, day), (1, next)]
            .into_iter()
            .map(|(link_id, day)| Waiting {
                link_id,
                day,
                done: oneshot::channel().0,
            })
            .collect();
        assert_eq!(
            day_counts(&batch),
            vec![
                DayCount {
                    link_id: 1,
                    day,
                    clicks: 2
                },
                DayCount {
                    link_id: 1,
                    day: next,
                    clicks: 1
                },
                DayCount {
                    link_id: 2,
                    day,
                    clicks: 1
                },
            ]
        );
    }
}
