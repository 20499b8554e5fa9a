//! The group commit of click counts: every click waits in one bounded
//! queue; a committer gathers a batch from it, adds the batch to
//! `link_clicks` in one statement with the record that it was applied
//! (`db::clicks::apply_batch`), and only then releases the redirects waiting
//! on it.
//!
//! # Gathering
//! With the commit before the `302`, a batch holds at most the clicks
//! waiting at once, so the statements per click depend on how well a batch
//! gathers. A batch is sent when it is full (`CLICKS_BATCH_MAX`), or else
//! when both:
//! - **no other commit is in flight**: while one batch commits, the next
//!   one gathers every click that arrives (pipelining), instead of a second
//!   committer sending the first few at once, which split the queue into
//!   small batches (about 5 clicks a batch at 16 in flight);
//! - **its first click has waited `CLICKS_LINGER_MS`** (from its arrival,
//!   so a click that already waited behind a commit lingers no more): the
//!   clicks whose redirects are still on their way join it.
//!
//! More than one commit is in flight (up to `CLICKS_COMMITTERS`) only when
//! full batches arrive faster than one commit takes.
//!
//! A committer keeps its PostgreSQL connection from one batch to the next
//! while batches keep coming (`KEEP_IDLE`): the pool checks a connection it
//! hands out with a statement of its own, which would be a second
//! transaction per batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::clicks::DayCount;
use crate::db::{self, DbConn, DbPool};
use crate::metrics::Metrics;

/// A click waiting for its batch to commit.
pub(super) struct Waiting {
    pub link_id: i64,
    pub day: NaiveDate,
    /// When it was queued: the batch it opens lingers from then.
    pub queued: Instant,
    /// Told once the batch's outcome is known: `Err` holds why it failed.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What the committers of a process share: the queue they gather from, one
/// at a time, and the number of commits in flight.
pub(super) struct Shared {
    queue: Mutex<mpsc::Receiver<Waiting>>,
    in_flight: watch::Sender<usize>,
}

impl Shared {
    pub fn new(queue: mpsc::Receiver<Waiting>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(queue),
            in_flight: watch::Sender::new(0),
        })
    }
}

/// Counts a commit in flight while it lives, however its future ends.
struct InFlight<'a>(&'a watch::Sender<usize>);

impl<'a> InFlight<'a> {
    fn enter(count: &'a watch::Sender<usize>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// What a committer needs besides its queue.
#[derive(Clone)]
pub(super) struct Committer {
    pub db: DbPool,
    pub metrics: Arc<Metrics>,
    /// Unique per committer and process: the key of its batch records.
    pub writer: String,
    pub batch_max: usize,
    /// How long a batch's first click waits for others to join it.
    pub linger: Duration,
    /// A batch's whole time, retries included, before its clicks fail.
    pub within: Duration,
}

/// A committer gives its connection back to the pool after this long
/// without a click.
const KEEP_IDLE: Duration = Duration::from_secs(1);

/// Waits between retries of a batch, doubling up to this.
const RETRY_WAIT_MAX: Duration = Duration::from_millis(500);

impl Committer {
    /// Commits batches until `stop` is cancelled and the queue is empty:
    /// what was queued before a stop is still committed and answered.
    pub async fn run(self, shared: Arc<Shared>, stop: CancellationToken) {
        let mut batch_number: i64 = 0;
        let mut held: Option<DbConn> = None;
        loop {
            let (batch, in_flight) = {
                let mut queue = shared.queue.lock().await;
                let Some(first) = next_click(&mut queue, &stop, &mut held).await else {
                    return;
                };
                let batch = gather(
                    first,
                    &mut queue,
                    &shared.in_flight,
                    &stop,
                    self.batch_max,
                    self.linger,
                )
                .await;
                // Counted before the queue is let go: the next gatherer sees it.
                (batch, InFlight::enter(&shared.in_flight))
            };
            batch_number += 1;
            let outcome = self
                .commit(batch_number, &day_counts(&batch), &mut held)
                .await;
            drop(in_flight);
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
    /// `held` is the committer's connection, taken from the pool when
    /// there is none and given back when an attempt fails.
    async fn commit(
        &self,
        number: i64,
        counts: &[DayCount],
        held: &mut Option<DbConn>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.within;
        let mut wait = Duration::from_millis(20);
        loop {
            let attempt = async {
                let conn = match held {
                    Some(conn) => conn,
                    None => held.insert(self.db.get().await.map_err(|e| e.to_string())?),
                };
                db::clicks::apply_batch(conn, &self.writer, number, counts)
                    .await
                    .map_err(|e| e.to_string())
            };
            let outcome = tokio::time::timeout_at(deadline, attempt).await;
            if !matches!(outcome, Ok(Ok(_))) {
                // Perhaps broken: the pool checks it before handing it out again.
                *held = None;
            }
            let failure = match outcome {
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

/// The click that opens the next batch; `None` once `stop` is cancelled
/// and nothing is queued. A `held` connection goes back to the pool after
/// `KEEP_IDLE` without a click.
async fn next_click(
    queue: &mut mpsc::Receiver<Waiting>,
    stop: &CancellationToken,
    held: &mut Option<DbConn>,
) -> Option<Waiting> {
    let next = async {
        tokio::select! {
            biased;
            first = queue.recv() => first,
            () = stop.cancelled() => queue.try_recv().ok(),
        }
    };
    if held.is_none() {
        return next.await;
    }
    tokio::pin!(next);
    if let Ok(first) = tokio::time::timeout(KEEP_IDLE, &mut next).await {
        return first;
    }
    *held = None;
    next.await
}

/// The batch that `first` opens (see the module's header for when it is
/// sent).
async fn gather(
    first: Waiting,
    queue: &mut mpsc::Receiver<Waiting>,
    in_flight: &watch::Sender<usize>,
    stop: &CancellationToken,
    batch_max: usize,
    linger: Duration,
) -> Vec<Waiting> {
    let lingered = first.queued + linger;
    let mut batch = vec![first];
    let mut idle = in_flight.subscribe();
    loop {
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(waiting) => batch.push(waiting),
                Err(_) => break,
            }
        }
        if batch.len() >= batch_max
            || stop.is_cancelled()
            || (*idle.borrow_and_update() == 0 && Instant::now() >= lingered)
        {
            return batch;
        }
        let ready = async {
            // Never `Err`: `in_flight` outlives this wait.
            let _ = idle.wait_for(|n| *n == 0).await;
            tokio::time::sleep_until(lingered).await;
        };
        tokio::select! {
            biased;
            more = queue.recv() => match more {
                Some(waiting) => batch.push(waiting),
                None => return batch,
            },
            () = ready => return batch,
            () = stop.cancelled() => return batch,
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

    fn click(queued: Instant) -> Waiting {
        Waiting {
            link_id: 1,
            day: NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date"),
            queued,
            done: oneshot::channel().0,
        }
    }

    /// The next batch's size, as a committer gathers it.
    async fn next_batch(
        queue: &mut mpsc::Receiver<Waiting>,
        in_flight: &watch::Sender<usize>,
        stop: &CancellationToken,
        batch_max: usize,
        linger: Duration,
    ) -> Option<usize> {
        let first = next_click(queue, stop, &mut None).await?;
        Some(
            gather(first, queue, in_flight, stop, batch_max, linger)
                .await
                .len(),
        )
    }

    /// A queue with `n` clicks queued at `queued`, and its sender.
    fn queue_of(n: usize, queued: Instant) -> (mpsc::Sender<Waiting>, mpsc::Receiver<Waiting>) {
        let (sender, receiver) = mpsc::channel(100);
        for _ in 0..n {
            sender.try_send(click(queued)).expect("room");
        }
        (sender, receiver)
    }

    #[tokio::test]
    async fn a_batch_gathers_until_the_commit_in_flight_ends() {
        let (sender, mut queue) = queue_of(1, Instant::now());
        let in_flight = Arc::new(watch::Sender::new(0));
        let committing = InFlight::enter(&in_flight);
        let stop = CancellationToken::new();
        let gathering = {
            let (in_flight, stop) = (Arc::clone(&in_flight), stop.clone());
            tokio::spawn(async move {
                next_batch(&mut queue, &in_flight, &stop, 100, Duration::ZERO).await
            })
        };
        for _ in 0..5 {
            sender.send(click(Instant::now())).await.expect("open");
            tokio::task::yield_now().await;
        }
        assert!(
            !gathering.is_finished(),
            "sent while a commit was in flight"
        );
        drop(committing);
        assert_eq!(gathering.await.expect("joined"), Some(6));
    }

    #[tokio::test]
    async fn a_full_batch_goes_while_another_commits() {
        let (_sender, mut queue) = queue_of(5, Instant::now());
        let in_flight = watch::Sender::new(0);
        let _committing = InFlight::enter(&in_flight);
        let stop = CancellationToken::new();
        let batch = next_batch(&mut queue, &in_flight, &stop, 3, Duration::ZERO).await;
        assert_eq!(batch, Some(3));
        assert_eq!(queue.len(), 2, "the rest waits for the next batch");
    }

    #[tokio::test]
    async fn a_lingering_batch_takes_the_clicks_that_come_meanwhile() {
        let (sender, mut queue) = queue_of(1, Instant::now());
        let in_flight = watch::Sender::new(0);
        let stop = CancellationToken::new();
        let more = tokio::spawn(async move {
            for _ in 0..3 {
                sender.send(click(Instant::now())).await.expect("open");
                tokio::task::yield_now().await;
            }
        });
        // An hour's linger: only a full batch sends it.
        let batch = next_batch(&mut queue, &in_flight, &stop, 4, Duration::from_secs(3600)).await;
        more.await.expect("joined");
        assert_eq!(batch, Some(4));
    }

    #[tokio::test]
    async fn a_click_that_waited_its_linger_already_is_not_held_again() {
        let linger = Duration::from_millis(50);
        let long_ago = Instant::now()
            .checked_sub(linger)
            .expect("the clock has run that long");
        let (_sender, mut queue) = queue_of(2, long_ago);
        let in_flight = watch::Sender::new(0);
        let stop = CancellationToken::new();
        let batch = next_batch(&mut queue, &in_flight, &stop, 100, linger).await;
        assert_eq!(batch, Some(2));
    }

    #[tokio::test]
    async fn a_stop_sends_what_gathered_and_then_ends_the_committer() {
        let (_sender, mut queue) = queue_of(2, Instant::now());
        let in_flight = watch::Sender::new(0);
        let _committing = InFlight::enter(&in_flight);
        let stop = CancellationToken::new();
        stop.cancel();
        let batch = next_batch(
            &mut queue,
            &in_flight,
            &stop,
            100,
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(batch, Some(2));
        assert!(
            next_batch(&mut queue, &in_flight, &stop, 100, Duration::ZERO)
                .await
                .is_none()
        );
    }

    #[test]
    fn a_batch_counts_each_link_and_day_once() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date");
        let next = day.succ_opt().expect("a date");
        let batch: Vec<Waiting> = [(1, day), (2, day), (1, day), (1, next)]
            .into_iter()
            .map(|(link_id, day)| Waiting {
                link_id,
                day,
                queued: Instant::now(),
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
