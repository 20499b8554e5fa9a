//! Telling the other instances which bumps a writer could not deliver
//! (`NOTIFY` on the owed channel, `db::outbox::notify_owed`), before the
//! write answers, within a bound.
//!
//! It has a PostgreSQL connection of its own. Through the pool, the
//! announcement queued behind every request waiting for a connection: with a
//! replica of one shard sick, each write to that shard owes its bumps and
//! announces them, and on a test instance (a pool of 4, 16 writers) the
//! announcement's wait for a pooled connection took p99 0.85 s of a write's
//! 1.09 s. On its own connection it is one round trip, and writers take
//! turns on it. The connection is opened in the background the first time
//! (and again after one failed); meanwhile an announcement takes a pooled
//! connection, as before.
//!
//! The bound: an announcement not sent within `REDIS_TIMEOUT_MS` is given up
//! and logged, like one PostgreSQL refused. The rows stay in the outbox
//! either way, and every instance's sweep delivers a linkhub writer's rows
//! once they are older than the writer's grace (`recovery.rs`): that is the
//! window in which another instance may still serve the older entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel_async::AsyncPgConnection;

use crate::db::{DbPool, outbox};
use crate::namespace::Namespace;

pub struct Announcer {
    database_url: String,
    pool: DbPool,
    /// The connection of its own, when open. An announcement takes it out
    /// while it uses it, so one cut by the bound (mid-query) is dropped with
    /// it instead of being used again.
    own: Arc<tokio::sync::Mutex<Option<AsyncPgConnection>>>,
    /// Whether a task is opening it now (one at a time).
    opening: Arc<AtomicBool>,
    within: Duration,
}

impl Announcer {
    /// Announces over a connection to `database_url` (opened when first
    /// needed), or one of `pool` until it is open; each announcement within
    /// `within`.
    pub fn new(database_url: String, pool: DbPool, within: Duration) -> Self {
        Self {
            database_url,
            pool,
            own: Arc::default(),
            opening: Arc::default(),
            within,
        }
    }

    /// Tells every listening instance that `namespaces` are owed, within the
    /// bound; answers why not when it could not.
    pub async fn announce(&self, namespaces: &[Namespace]) -> Result<(), String> {
        tokio::time::timeout(self.within, self.send(namespaces))
            .await
            .unwrap_or_else(|_| Err(format!("not sent within {:?}", self.within)))
    }

    async fn send(&self, namespaces: &[Namespace]) -> Result<(), String> {
        let mut own = self.own.lock().await;
        let Some(mut conn) = own.take() else {
            drop(own);
            self.open_in_background();
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            return outbox::notify_owed(&mut conn, namespaces)
                .await
                .map_err(|e| e.to_string());
        };
        match outbox::notify_owed(&mut conn, namespaces).await {
            Ok(()) => {
                *own = Some(conn);
                Ok(())
            }
            // Dropped; the next announcement opens another.
            Err(e) => Err(e.to_string()),
        }
    }

    /// Opens the connection of its own in a task of its own, unless one is
    /// at it already: an announcement never waits for a connect.
    fn open_in_background(&self) {
        if self.opening.swap(true, Ordering::AcqRel) {
            return;
        }
        let (url, own, opening) = (
            self.database_url.clone(),
            Arc::clone(&self.own),
            Arc::clone(&self.opening),
        );
        tokio::spawn(async move {
            match crate::db::tls::establish(&url).await {
                Ok(conn) => {
                    own.lock().await.get_or_insert(conn);
                }
                Err(e) => {
                    tracing::debug!("cache: opening the announcements' connection failed: {e}")
                }
            }
            opening.store(false, Ordering::Release);
        });
    }
}
