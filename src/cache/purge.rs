//! SCAN invalidation, off the request path. Bumped namespaces queue here; one
//! task drains the queue, and each pass removes every entry of the queued
//! namespaces whose version is older than the namespace's current one. Many
//! namespaces queued together share one pass over the keyspace, so a burst of
//! writes costs Redis one SCAN, not one per write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use tracing::{Instrument, Span};

use super::keys;
use super::store::{Store, StoreResult};
use crate::metrics::Metrics;
use crate::namespace::Namespace;
use crate::tasks::BackgroundTasks;

/// Keys SCAN is asked to look at per step.
const SCAN_COUNT: usize = 1000;

/// Bumped namespaces, with the span of whoever bumped them (a request, or
/// recovery), so the purge logs under that request's id.
type Queued = (Vec<Namespace>, Span);

#[derive(Clone)]
pub struct Purger {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Purger {
    pub fn start(tasks: &BackgroundTasks, store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Queued>();
        tasks.spawn("purge", async move {
            while let Some((first, started_by)) = rx.recv().await {
                let mut batch: HashSet<Namespace> = first.into_iter().collect();
                // A batch of several writes logs under the first one's span;
                // the others are linked to it.
                let span = tracing::info_span!(parent: &started_by, "purge");
                while let Ok((more, also_by)) = rx.try_recv() {
                    span.follows_from(&also_by);
                    batch.extend(more);
                }
                let purged = purge(&store, &metrics, batch)
                    .instrument(span.clone())
                    .await;
                if let Err(e) = purged {
                    span.in_scope(|| {
                        tracing::warn!(
                            "cache: SCAN invalidation failed, stale entries left to their TTL: {e}"
                        );
                    });
                }
            }
        });
        Self { queue }
    }

    /// Queues `namespaces` for a purge started by the current span.
    pub fn enqueue(&self, namespaces: Vec<Namespace>) {
        // The receiver lives until the process stops; a send can only fail then.
        let _ = self.queue.send((namespaces, Span::current()));
    }
}

async fn purge(store: &Store, metrics: &Metrics, batch: HashSet<Namespace>) -> StoreResult<()> {
    let namespaces: Vec<Namespace> = batch.into_iter().collect();
    let current: HashMap<Namespace, u64> = namespaces
        .iter()
        .cloned()
        .zip(store.versions(&namespaces).await?)
        .filter_map(|(ns, v)| v.map(|v| (ns, v)))
        .collect();
    let pattern = match namespaces.as_slice() {
        [only] => keys::entry_pattern(store.prefix(), only),
        _ => format!("{}:{{*", store.prefix()),
    };
    let mut deleted: HashMap<&'static str, u64> = HashMap::new();
    let mut scan = store.scan(&pattern, SCAN_COUNT).await?;
    while let Some(found) = store.scan_next(&mut scan).await? {
        let stale: Vec<String> = found
            .into_iter()
            .filter(|key| is_stale(store.prefix(), key, &current))
            .collect();
        if store.unlink(&stale).await? > 0 {
            for key in &stale {
                if let Some((ns, _)) = keys::parse_entry_key(store.prefix(), key) {
                    *deleted.entry(ns.kind()).or_default() += 1;
                }
            }
        }
    }
    for (kind, n) in deleted {
        metrics.cache_scan_deleted(kind, n);
    }
    Ok(())
}

/// An entry is stale when its namespace is in the batch and its version is
/// older than the current one. Newer entries (readers that came after the
/// bump) are kept; a namespace whose counter is gone is left to the TTL (its
/// entries are unreachable already: the counter comes back above them).
fn is_stale(prefix: &str, key: &str, current: &HashMap<Namespace, u64>) -> bool {
    let Some((ns, version)) = keys::parse_entry_key(prefix, key) else {
        return false;
    };
    match (current.get(&ns), version.parse::<u64>()) {
        (Some(now), Ok(v)) => v < *now,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_older_versions_of_batched_namespaces_are_stale() {
        let current = HashMap::from([(Namespace::User(1), 10)]);
        assert!(is_stale("lh", "lh:{user:1}:9:user", &current));
        assert!(!is_stale("lh", "lh:{user:1}:10:user", &current));
        assert!(!is_stale("lh", "lh:{user:1}:11:user", &current));
        assert!(!is_stale("lh", "lh:{user:2}:1:user", &current));
        assert!(!is_stale("lh", "lh:ver:{user:1}", &current));
    }
}
