//! Cross-instance owed bumps. A writer whose bump failed (its Redis was
//! unreachable) sends the namespaces over PostgreSQL `NOTIFY` before it
//! answers; every instance listens, marks them owed — so it reads them with
//! BYPASS — and its recovery task replays the outbox into its own Redis
//! connection, which may well be working. Reads pay no database query for
//! this: the notification arrives on a connection of its own.
//!
//! The window that remains: a read on another instance that starts after the
//! write answered but before that instance has handled the notification
//! (delivery within the same machine measured in `linkhub_cache_owed_notify_delay_seconds`).
//! While the listening connection itself is down, notifications are lost, so
//! the cache is not trusted: recovery closes the breaker only while this task
//! is subscribed, and a lost connection trips it; after every reconnect the
//! whole outbox is replayed before reads use Redis again.
//!
//! A connection can also die without a word (a half-open TCP connection: a
//! peer or a firewall gone, no FIN, no RST), and a listener on it would wait
//! for notifications forever while the cache is trusted. So every
//! [`PROBE_EVERY`] the listener makes a round trip on it (`SELECT 1`, within
//! [`PROBE_WITHIN`]); a probe that fails or does not answer counts as a lost
//! connection: the breaker opens, the listener reconnects, and the outbox is
//! replayed, so no owed bump announced meanwhile is missed.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{PoolableConnection, RecyclingMethod};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::epoch::CacheEpoch;
use super::owed::OwedBumps;
use crate::db::outbox::{self, Announcement};
use crate::metrics::Metrics;
use crate::tasks::BackgroundTasks;

/// How often the listening connection is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe may take before the connection counts as lost.
const PROBE_WITHIN: Duration = Duration::from_secs(2);
/// How long connecting and subscribing may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

pub fn start(
    tasks: &BackgroundTasks,
    database_url: String,
    breaker: Arc<Breaker>,
    owed: Arc<OwedBumps>,
    epoch: Arc<CacheEpoch>,
    metrics: Arc<Metrics>,
) {
    tasks.spawn("owed_bump_listener", async move {
        let mut connected_before = false;
        loop {
            let connected = tokio::time::timeout(CONNECT_WITHIN, outbox::listen(&database_url))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {CONNECT_WITHIN:?}")));
            match connected {
                Ok(mut conn) => {
                    // Anything owed while we were not listening is in the
                    // outbox. The breaker is open (it starts open, and a lost
                    // connection trips it), so recovery replays the outbox
                    // before it trusts Redis; a replay is still asked for in
                    // case it closed in between.
                    owed.set_listening(true);
                    if connected_before {
                        owed.request_replay();
                    }
                    connected_before = true;
                    let lost = listen_on(&mut conn, &owed, &epoch, &metrics).await;
                    owed.set_listening(false);
                    breaker.trip();
                    tracing::warn!(
                        "cache: the owed-bump listener lost its connection ({lost}); reads bypass Redis until it is back"
                    );
                }
                Err(e) => tracing::debug!("cache: cannot listen for owed bumps yet: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Handles notifications on `conn`, probing it every [`PROBE_EVERY`], until
/// the connection ends, fails or stops answering; answers why.
async fn listen_on(
    conn: &mut AsyncPgConnection,
    owed: &OwedBumps,
    epoch: &CacheEpoch,
    metrics: &Metrics,
) -> String {
    let mut next_probe = Instant::now() + PROBE_EVERY;
    loop {
        // The notifications wait in the connection's channel: a stream made
        // anew each turn misses none (dropping `recv` is cancel-safe).
        let next = tokio::time::timeout_at(next_probe, async {
            std::pin::pin!(conn.notifications_stream()).next().await
        })
        .await;
        match next {
            Ok(Some(Ok(notification))) => {
                match outbox::parse_announcement(&notification.payload) {
                    // A linkhub writer bumps its own rows before it answers;
                    // the recovery's sweep delivers them if it died first.
                    Some(Announcement::Owed {
                        by_linkhub: true, ..
                    }) => {}
                    Some(Announcement::Owed {
                        by_linkhub: false,
                        sent_at,
                        namespaces,
                    }) => {
                        // Nobody else delivers these (an outside change, or a
                        // writer whose bump failed): stop trusting them, and
                        // have recovery deliver them now.
                        if let Some(namespaces) = namespaces {
                            owed.owe(&namespaces);
                        }
                        owed.request_replay();
                        let delay = chrono::Utc::now().timestamp_micros() - sent_at;
                        metrics.owed_notification(delay.max(0) as f64 / 1e6);
                    }
                    Some(Announcement::Epoch(moved)) => {
                        epoch.adopt(moved);
                    }
                    None => tracing::warn!(
                        "cache: an announcement of unknown form on {}: {:?}",
                        outbox::OWED_CHANNEL,
                        notification.payload
                    ),
                }
            }
            Ok(Some(Err(e))) => return e.to_string(),
            Ok(None) => return "closed".to_owned(),
            Err(_probe_due) => {
                let probe = tokio::time::timeout(
                    PROBE_WITHIN,
                    PoolableConnection::ping(conn, &RecyclingMethod::Verified),
                )
                .await;
                match probe {
                    Ok(Ok(())) => next_probe = Instant::now() + PROBE_EVERY,
                    Ok(Err(e)) => return format!("probe failed: {e}"),
                    Err(_) => return format!("probe unanswered within {PROBE_WITHIN:?}"),
                }
            }
        }
    }
}
