//! The consistency observer: whether the cache tells the truth, measured
//! while it serves. Tests, the chaos gates and the protocol model say the
//! protocol holds; this says whether it holds in production, as a number
//! (`linkhub_cache_verify_total{result}`), the way Meta's Polaris watches TAO:
//! a client of its own that looks at what a read was served, later, and
//! confirms it against the database.
//!
//! # What is sampled
//! A share of the `HIT`s (`CACHE_VERIFY_SAMPLE`, default 0.01): those from
//! Redis and those from the near cache alike, since a client cannot tell
//! them apart and a near copy has hazards of its own (a Redis that was
//! replaced). Not a `MISS` (its body was just loaded from PostgreSQL: the
//! check would compare a load with itself) nor a `BYPASS` (no cache). The
//! decision costs a `HIT` one random number and a comparison: no lock, no
//! allocation unless it is sampled. A sampled read hands over what its check
//! needs: its loader (unused by a `HIT`), the namespace's counter key (the
//! cache epoch is part of it) and the version it was served under, the
//! breaker's trust period, a digest of the body served, its request id, and
//! when. The check never touches the answer, which has gone out already.
//!
//! # A check, after `CACHE_VERIFY_SETTLE_MS`
//! 1. Redis must still be trusted as it was (breaker closed, same trust
//!    period, no bump of the namespace owed here, same epoch), else
//!    `skipped` (`untrusted`; `raced` for an epoch move).
//! 2. The counter must still hold the version: otherwise a write moved it,
//!    the served entry may rightly differ, and the check is `skipped`
//!    (`raced`). Most reads that raced a write end here, without a load:
//!    what the settle delay is for.
//! 3. The read is loaded from PostgreSQL by its own loader (the same
//!    serializer, so equal rows give equal bytes), unless the pool has no
//!    connection to spare (`busy`: requests come first), then the version is
//!    read again (`raced` if it moved meanwhile).
//! 4. Equal status and body digest: `fresh`.
//! 5. Different: not yet `stale`. A write may have committed before the load
//!    with its bump still on its way (rule 2: bumps come after the commit).
//!    The check waits the longest a linkhub writer's bump takes
//!    (`2 × REDIS_TIMEOUT_MS` + 1 s; after that it is owed), then asks
//!    PostgreSQL whether the namespace still has an outbox row, then Redis
//!    whether the version moved — in this order, because a row is deleted
//!    only after its bump reached Redis. Either one: `raced`. Neither: every
//!    write the load saw had been bumped, and none past the served version,
//!    so the entry served under it differs from what it must hold: `stale`.
//!
//! A write racing a check is therefore never counted stale: it either moved
//! the version, or holds an outbox row, at every moment from its commit on.
//!
//! # What a stale finding records
//! One `warn` line (the namespace, the version, the read within it, the
//! request id of the read that served it, the entry's age; never a body or
//! anything a user wrote) and the age in
//! `linkhub_cache_verify_stale_age_seconds`. The age is that of the
//! *version*: a version is the Redis clock in microseconds when it was set
//! (`store/clock.rs`, `BUMP`), and the entry was stored under it afterwards,
//! so this is how long the wrong entry can have been served at most. When it
//! was stored is recorded nowhere (its TTL was jittered), and when it went
//! wrong cannot be known from outside; an upper bound is the honest figure.
//!
//! # Its budget
//! Checks wait in a queue of `CACHE_VERIFY_QUEUE`; a read sampled while it
//! is full is not checked (`dropped`). At most `CACHE_VERIFY_DB_CONNECTIONS`
//! checks are in progress, each holding at most one pooled PostgreSQL
//! connection at a time, and only when the pool has one to spare. Under
//! load the observer drops checks, never requests.

mod sample;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use sha2::digest::Output;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::breaker::Breaker;
use super::entry::failed_load;
use super::keys::{self, QueryKey};
use super::owed::OwedBumps;
use super::store::Store;
use super::{Entry, Loaded, ReadError};
use crate::current_request;
use crate::db::{DbPool, outbox};
use crate::metrics::{Metrics, VerifySkip};
use crate::namespace::Namespace;
use crate::tasks::BackgroundTasks;

use self::sample::{RateBudget, Sampler};

/// The observer's settings (`CACHE_VERIFY_*`).
#[derive(Debug, Clone, Copy)]
pub struct ObserverConfig {
    /// Share of `HIT`s checked, 0 to 1.
    pub sample: f64,
    /// Checks begun a second at most, of the sampled `HIT`s (0: no limit).
    pub per_second: u32,
    /// How long after a `HIT` its check begins.
    pub settle: Duration,
    /// Checks waiting at most.
    pub queue: usize,
    /// Checks in progress at most (each holds one PostgreSQL connection at most).
    pub db_connections: usize,
}

/// What the observer needs of the cache it watches.
pub(super) struct Watched {
    pub store: Arc<Store>,
    pub breaker: Arc<Breaker>,
    pub owed: Arc<OwedBumps>,
    pub db: DbPool,
    pub metrics: Arc<Metrics>,
    /// How long a linkhub writer's bump takes at most before it is owed.
    pub bump_within: Duration,
}

/// A `HIT` as its read served it, borrowed: made only when it is sampled.
pub(super) struct Hit<'a> {
    ns: &'a Namespace,
    query: &'a QueryKey,
    counter: &'a str,
    trust_period: u64,
    entry: &'a Entry,
    version: u64,
}

impl<'a> Hit<'a> {
    /// `entry`, served for `query` of `ns` under `version` of the counter
    /// `counter`, in the breaker's `trust_period` read before the lookup.
    pub(super) fn new(
        ns: &'a Namespace,
        query: &'a QueryKey,
        counter: &'a str,
        trust_period: u64,
        entry: &'a Entry,
        version: u64,
    ) -> Self {
        Self {
            ns,
            query,
            counter,
            trust_period,
            entry,
            version,
        }
    }
}

/// The read's loader, type-erased to wait in the queue.
type Reload = Box<dyn FnOnce() -> BoxFuture<'static, Result<Loaded, ReadError>> + Send>;

/// One sampled `HIT`, owned, waiting for its check: what was served, and
/// the read's loader.
struct Check {
    served: Sampled,
    reload: Reload,
}

/// What a sampled `HIT` served, and under which version.
struct Sampled {
    ns: Namespace,
    query: String,
    counter: String,
    version: u64,
    trust_period: u64,
    status: u16,
    digest: Output<Sha256>,
    request_id: Option<String>,
    served_at: Instant,
}

/// A verdict on a sampled read (a check without one is a [`VerifySkip`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Fresh,
    /// Different from PostgreSQL; its version was `age` old.
    Stale {
        age: Duration,
    },
}

/// Decides which `HIT`s are checked, and queues them.
pub(super) struct Observer {
    sampler: Sampler,
    budget: RateBudget,
    /// `None` when nothing is sampled: no queue, no task.
    queue: Option<mpsc::Sender<Check>>,
    metrics: Arc<Metrics>,
}

impl Observer {
    /// Starts the task that runs the checks, unless the share is 0 or the
    /// cache is off (it serves no `HIT`).
    pub(super) fn start(
        config: ObserverConfig,
        cache_enabled: bool,
        watched: Watched,
        tasks: &BackgroundTasks,
    ) -> Self {
        let sampler = Sampler::new(if cache_enabled { config.sample } else { 0.0 });
        let budget = RateBudget::new(config.per_second);
        let metrics = Arc::clone(&watched.metrics);
        if !sampler.is_on() {
            return Self {
                sampler,
                budget,
                queue: None,
                metrics,
            };
        }
        let (queue, checks) = mpsc::channel(config.queue.max(1));
        let checker = Arc::new(Checker {
            watched,
            settle: config.settle,
            in_progress: Arc::new(Semaphore::new(config.db_connections.max(1))),
        });
        tasks.spawn("cache verify", checker.run(checks));
        Self {
            sampler,
            budget,
            queue: Some(queue),
            metrics,
        }
    }

    /// Queues a check of the `HIT` that `hit` describes when it is sampled;
    /// `reload` is its read's loader, which a `HIT` did not use. Costs an
    /// unsampled `HIT` a random number, a sampled one beyond the rate budget
    /// a lock and a count, and never waits.
    pub(super) fn offer<'h, F, Fut, E>(&self, reload: F, hit: impl FnOnce() -> Hit<'h>)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(queue) = &self.queue else {
            return;
        };
        if !self.sampler.sampled() {
            return;
        }
        if !self.budget.take() {
            self.metrics.cache_verify_skipped(VerifySkip::Rate);
            return;
        }
        let hit = hit();
        let served = Sampled {
            ns: hit.ns.clone(),
            query: hit.query.as_str().to_owned(),
            counter: hit.counter.to_owned(),
            version: hit.version,
            trust_period: hit.trust_period,
            status: hit.entry.status,
            digest: Sha256::digest(&hit.entry.body),
            request_id: current_request::request_id(),
            served_at: Instant::now(),
        };
        let reload: Reload =
            Box::new(move || Box::pin(async move { reload().await.map_err(failed_load) }));
        if queue.try_send(Check { served, reload }).is_err() {
            self.metrics.cache_verify_skipped(VerifySkip::Dropped);
        }
    }
}

/// Runs the checks: one at a time out of the queue, each when its settle
/// delay is over, at most `in_progress` at once.
struct Checker {
    watched: Watched,
    settle: Duration,
    in_progress: Arc<Semaphore>,
}

impl Checker {
    /// The observer's task. A check that waits for a slot keeps the ones
    /// behind it in the queue, which then fills and drops new ones: under
    /// load the observer sheds checks. A stop drops the checks in progress
    /// (the `JoinSet` aborts them): they only read.
    async fn run(self: Arc<Self>, mut checks: mpsc::Receiver<Check>) {
        let mut running = JoinSet::new();
        while let Some(check) = checks.recv().await {
            // The queue is in the order of the reads, and every read waits
            // the same delay: the first in line is the first due.
            tokio::time::sleep_until((check.served.served_at + self.settle).into()).await;
            let Ok(slot) = Arc::clone(&self.in_progress).acquire_owned().await else {
                return;
            };
            while running.try_join_next().is_some() {}
            let checker = Arc::clone(&self);
            running.spawn(
                async move {
                    checker.conclude(check).await;
                    drop(slot);
                }
                .in_current_span(),
            );
        }
    }

    /// Checks one read and records the outcome.
    async fn conclude(&self, check: Check) {
        let metrics = &self.watched.metrics;
        let Check { served, reload } = check;
        match self.verdict(&served, reload).await {
            Ok(Verdict::Fresh) => metrics.cache_verified_fresh(),
            Ok(Verdict::Stale { age }) => {
                metrics.cache_verified_stale(age);
                tracing::warn!(
                    namespace = %served.ns,
                    version = served.version,
                    query = %served.query,
                    request_id = served.request_id.as_deref().unwrap_or("-"),
                    age_secs = age.as_secs_f64(),
                    "cache: a stale entry was served: it differs from PostgreSQL under a version no write has moved"
                );
            }
            Err(reason) => metrics.cache_verify_skipped(reason),
        }
    }

    /// The steps of the module header, in order; `Err` is a check without
    /// a verdict.
    async fn verdict(&self, served: &Sampled, reload: Reload) -> Result<Verdict, VerifySkip> {
        self.still_trusted(served)?;
        self.version_unmoved(served).await?;
        if !self.pool_has_room() {
            return Err(VerifySkip::Busy);
        }
        let truth = Entry::render(reload().await.map_err(|_| VerifySkip::Failed)?);
        self.version_unmoved(served).await?;
        if truth.status == served.status && Sha256::digest(&truth.body) == served.digest {
            return Ok(Verdict::Fresh);
        }
        tokio::time::sleep(self.watched.bump_within).await;
        self.still_trusted(served)?;
        if self.owes_a_bump(&served.ns).await? {
            return Err(VerifySkip::Raced);
        }
        self.version_unmoved(served).await?;
        Ok(Verdict::Stale {
            age: version_age(served.version, SystemTime::now()),
        })
    }

    /// Redis is trusted as it was when the read was served.
    fn still_trusted(&self, check: &Sampled) -> Result<(), VerifySkip> {
        let Watched {
            store,
            breaker,
            owed,
            ..
        } = &self.watched;
        if keys::version_key(&store.cache_prefix(), &check.ns) != check.counter {
            // The epoch moved: every entry of the older one is unreachable.
            return Err(VerifySkip::Raced);
        }
        if !breaker.lets_through()
            || breaker.trust_period() != check.trust_period
            || owed.is_owed(&check.ns)
        {
            return Err(VerifySkip::Untrusted);
        }
        Ok(())
    }

    /// The counter still holds the version the read was served under. A
    /// missing counter moved too: the lookup re-creates it above.
    async fn version_unmoved(&self, check: &Sampled) -> Result<(), VerifySkip> {
        match self.watched.store.version(&check.counter).await {
            Ok(Some(version)) if version == check.version => Ok(()),
            Ok(_) => Err(VerifySkip::Raced),
            Err(_) => Err(VerifySkip::Failed),
        }
    }

    /// Whether the pool could lend a connection now without making a request
    /// wait: nobody waits, and one is idle or may still be opened.
    fn pool_has_room(&self) -> bool {
        let status = self.watched.db.status();
        status.waiting == 0 && (status.available > 0 || status.size < status.max_size)
    }

    /// Whether `ns` has a committed change whose bump has not reached Redis.
    async fn owes_a_bump(&self, ns: &Namespace) -> Result<bool, VerifySkip> {
        if !self.pool_has_room() {
            return Err(VerifySkip::Busy);
        }
        let mut conn = self
            .watched
            .db
            .get()
            .await
            .map_err(|_| VerifySkip::Failed)?;
        outbox::owes(&mut conn, ns)
            .await
            .map_err(|_| VerifySkip::Failed)
    }
}

/// How old `version` is at `now`: a version is the Redis clock in
/// microseconds when it was set. A version ahead of this host's clock (the
/// clocks disagree, or many bumps within a microsecond) is 0 old.
fn version_age(version: u64, now: SystemTime) -> Duration {
    let now_us = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    });
    Duration::from_micros(now_us.saturating_sub(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_versions_age_is_measured_on_the_clock_it_was_set_by() {
        let set_at = Duration::from_secs(1_765_000_000);
        let version = u64::try_from(set_at.as_micros()).expect("fits");
        let now = UNIX_EPOCH + set_at + Duration::from_millis(2500);
        assert_eq!(version_age(version, now), Duration::from_millis(2500));
        assert_eq!(
            version_age(version + 10_000_000, now),
            Duration::ZERO,
            "a version ahead of this clock"
        );
    }
}
