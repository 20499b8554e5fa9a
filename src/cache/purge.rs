//! Invalidation after a bump, off the request path. Bumped namespaces queue
//! here; one task drains the queue and, per batch, purges each namespace
//! through its index (`index.rs`): one script on the namespace's slot
//! removes the entries of versions older than the current one. The cost is
//! what the namespaces hold, not what Redis holds: no SCAN. Failures are
//! logged and left to the entries' TTL and to the janitor, which every batch
//! wakes (`janitor.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{Instrument, Span};

use super::index::IndexScripts;
use super::janitor::Janitor;
use super::store::Store;
use crate::metrics::Metrics;
use crate::namespace::Namespace;
use crate::tasks::BackgroundTasks;

/// Namespaces purged at once: each is one script round trip (on a cluster,
/// to its own slot's master), sent together over the multiplexed connection.
const CONCURRENT_PURGES: usize = 32;

/// Batches of bumped namespaces that may wait: one per write or replay. A
/// client cannot grow the queue past it by writing fast; a batch that finds
/// it full is dropped, and its stale entries are left to the janitor (woken
/// for them) and to their TTL: removal never makes a read fresh, the
/// versions do.
const QUEUE_BATCHES: usize = 10_000;

/// Bumped namespaces, with the span of whoever bumped them (a request, or
/// recovery), so the purge logs under that request's id.
type Queued = (Vec<Namespace>, Span);

#[derive(Clone)]
pub struct Purger {
    queue: mpsc::Sender<Queued>,
    janitor: Janitor,
}

impl Purger {
    pub fn start(
        tasks: &BackgroundTasks,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        janitor: Janitor,
    ) -> Self {
        let (queue, mut rx) = mpsc::channel::<Queued>(QUEUE_BATCHES);
        let scripts = IndexScripts::default();
        let waker = janitor.clone();
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
                // There were bumps: the janitor's next pass is due (it also
                // catches whatever this purge fails to remove).
                janitor.wake();
                purge(&store, &scripts, &metrics, batch)
                    .instrument(span)
                    .await;
            }
        });
        Self {
            queue,
            janitor: waker,
        }
    }

    /// Queues `namespaces` for a purge started by the current span.
    pub fn enqueue(&self, namespaces: Vec<Namespace>) {
        // Closed only when the process stops; full under a flood of writes.
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.queue.try_send((namespaces, Span::current()))
        {
            tracing::debug!(
                "cache: the purge queue is full; stale entries are left to the janitor"
            );
            self.janitor.wake();
        }
    }
}

/// Purges every namespace of the batch through its index, a few at a time.
/// A namespace whose purge failed is logged and left to the TTL and the
/// janitor; the others go on.
async fn purge(
    store: &Store,
    scripts: &IndexScripts,
    metrics: &Metrics,
    batch: HashSet<Namespace>,
) {
    let mut purges = futures_util::stream::iter(batch)
        .map(|ns| async move {
            let purged = store.purge_index(scripts, &ns).await;
            (ns, purged)
        })
        .buffer_unordered(CONCURRENT_PURGES);
    while let Some((ns, purged)) = purges.next().await {
        match purged {
            Ok(purged) => metrics.cache_index_deleted(ns.kind(), purged.unlinked),
            // A slot migrating answers TRYAGAIN until its keys all moved.
            Err(e) if e.is_slot_moving() => tracing::debug!(
                "cache: the stale entries of {ns} are left to their TTL and the janitor: {e}"
            ),
            Err(e) => tracing::warn!(
                "cache: purging the stale entries of {ns} failed, left to their TTL and the janitor: {e}"
            ),
        }
    }
}
