//! The janitor: a slow `SCAN` over the cache's keys that removes stale
//! entries the index purge missed (a purge that failed, Redis errors, an
//! index trimmed or lost). It is the backstop, so it runs on a fixed budget
//! rather than per write: at most `CACHE_JANITOR_KEYS_PER_SEC` keys a second,
//! in small `SCAN` steps with pauses between them, whatever the write rate —
//! a small fixed share of Redis, where the old per-write SCAN cost grew with
//! the keyspace. It walks only when there is something it could find: a pass
//! starts only after a bump since the previous pass began (the purger wakes
//! it), so an idle service costs Redis nothing.
//!
//! An entry is stale when its namespace's counter is above its version, or
//! missing (a lost counter comes back from the clock above every version it
//! held, rule 3): either way nobody can ask for it again. Counters and
//! indexes are outside the walk's pattern; keys of the prefix that are not
//! entries, and keys of other prefixes, are never touched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use super::index::IndexScripts;
use super::keys;
use super::store::{Store, StoreResult};
use crate::metrics::Metrics;
use crate::namespace::Namespace;
use crate::tasks::BackgroundTasks;

/// Steps a second the budget is spread over: small steps keep each `SCAN`
/// short (Redis answers nothing else while it runs one).
const STEPS_PER_SEC: u64 = 10;

/// Keys one `SCAN` step is asked to look at, at most.
const MAX_STEP: u64 = 1000;

/// A handle that asks for the janitor's next pass.
#[derive(Clone, Default)]
pub struct Janitor {
    due: Arc<Notify>,
}

impl Janitor {
    /// Starts the janitor at `keys_per_sec` (0: never; the handle then does
    /// nothing).
    pub fn start(
        tasks: &BackgroundTasks,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        keys_per_sec: u64,
    ) -> Self {
        let janitor = Self::default();
        if keys_per_sec == 0 {
            return janitor;
        }
        let due = Arc::clone(&janitor.due);
        let budget = Budget::of(keys_per_sec);
        tasks.spawn("janitor", async move {
            let scripts = IndexScripts::default();
            loop {
                // A wake-up while a pass runs is kept (one permit), so a bump
                // during a pass is followed by one more pass.
                due.notified().await;
                let span = tracing::info_span!("janitor");
                let swept = sweep(&store, &scripts, &metrics, budget)
                    .instrument(span.clone())
                    .await;
                // Not retried on its own: the next bump starts a pass (after
                // an outage, recovery's replay does), and until then what it
                // missed is unreachable and expires.
                if let Err(e) = swept {
                    span.in_scope(|| {
                        tracing::warn!("cache: the janitor's SCAN pass stopped: {e}");
                    });
                }
            }
        });
        janitor
    }

    /// There were bumps: a pass is due (one more after the current one, if
    /// one runs).
    pub fn wake(&self) {
        self.due.notify_one();
    }
}

/// How the keys-per-second budget is spent: `step` keys per `SCAN`, one
/// step every `pause`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Budget {
    step: u64,
    pause: Duration,
}

impl Budget {
    fn of(keys_per_sec: u64) -> Self {
        let keys_per_sec = keys_per_sec.max(1);
        let step = (keys_per_sec / STEPS_PER_SEC).clamp(1, MAX_STEP);
        Self {
            step,
            pause: Duration::from_secs_f64(step as f64 / keys_per_sec as f64),
        }
    }
}

/// One pass over every entry key of the prefix (every master of a cluster),
/// a budgeted step at a time.
async fn sweep(
    store: &Store,
    scripts: &IndexScripts,
    metrics: &Metrics,
    budget: Budget,
) -> StoreResult<()> {
    let pattern = keys::all_entries_pattern(&store.cache_prefix());
    let mut scan = store.scan(&pattern, budget.step as usize).await?;
    let mut next_step = Instant::now();
    loop {
        tokio::time::sleep_until(next_step).await;
        next_step = Instant::now() + budget.pause;
        let Some(found) = store.scan_next(&mut scan).await? else {
            return Ok(());
        };
        remove_stale(store, scripts, metrics, &found).await?;
    }
}

/// Removes the stale entries among `found` (one SCAN step's keys): reads the
/// counters of their namespaces, then unlinks the stale ones and drops them
/// from their indexes, one script per namespace.
async fn remove_stale(
    store: &Store,
    scripts: &IndexScripts,
    metrics: &Metrics,
    found: &[String],
) -> StoreResult<()> {
    // Keys of an older epoch (it moved during the walk) do not parse under
    // this prefix: they are left to their TTL.
    let prefix = store.cache_prefix();
    let mut by_ns: HashMap<Namespace, Vec<(u64, &str)>> = HashMap::new();
    for key in found {
        if let Some((ns, version)) = keys::parse_entry_key(&prefix, key)
            && let Ok(version) = version.parse::<u64>()
        {
            by_ns.entry(ns).or_default().push((version, key));
        }
    }
    if by_ns.is_empty() {
        return Ok(());
    }
    let namespaces: Vec<Namespace> = by_ns.keys().cloned().collect();
    let current = store.versions(&namespaces).await?;
    let removals = namespaces
        .into_iter()
        .zip(current)
        .filter_map(|(ns, now)| {
            let entries = by_ns.remove(&ns)?;
            let stale = stale_members(&prefix, &ns, now, &entries);
            (!stale.is_empty()).then_some((ns, stale))
        })
        .collect::<Vec<_>>();
    let calls = removals.iter().map(|(ns, members)| async move {
        let unlinked = store.forget(scripts, ns, members).await?;
        metrics.cache_scan_deleted(ns.kind(), unlinked);
        Ok::<_, super::store::StoreError>(())
    });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// The index members (`<version>:<query>`) of the entries of `ns` that are
/// stale under the counter's value `now` (`None`: the counter is missing).
fn stale_members<'k>(
    prefix: &str,
    ns: &Namespace,
    now: Option<u64>,
    entries: &[(u64, &'k str)],
) -> Vec<&'k str> {
    let entry_prefix = keys::entry_prefix(prefix, ns);
    entries
        .iter()
        .filter(|(version, _)| now.is_none_or(|now| *version < now))
        .filter_map(|(_, key)| key.strip_prefix(entry_prefix.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_older_versions_and_lost_counters_are_stale() {
        let ns = Namespace::User(1);
        let entries = [
            (9, "lh:{user:1}:9:user"),
            (9, "lh:{user:1}:9:stored"),
            (10, "lh:{user:1}:10:user"),
            (11, "lh:{user:1}:11:user"),
        ];
        assert_eq!(
            stale_members("lh", &ns, Some(10), &entries),
            vec!["9:user", "9:stored"]
        );
        assert_eq!(stale_members("lh", &ns, None, &entries).len(), 4);
        assert!(stale_members("lh", &ns, Some(9), &entries).is_empty());
    }

    #[test]
    fn the_budget_is_spread_over_small_steps() {
        assert_eq!(
            Budget::of(2000),
            Budget {
                step: 200,
                pause: Duration::from_millis(100)
            }
        );
        // Large budgets take bigger steps, never more than MAX_STEP.
        assert_eq!(Budget::of(100_000).step, MAX_STEP);
        assert_eq!(Budget::of(100_000).pause, Duration::from_millis(10));
        // Tiny budgets take one key a step.
        assert_eq!(Budget::of(5).step, 1);
        assert_eq!(Budget::of(5).pause, Duration::from_millis(200));
    }
}
