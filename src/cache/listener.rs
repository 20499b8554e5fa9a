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

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::breaker::Breaker;
use super::owed::OwedBumps;
use crate::db::outbox;
use crate::metrics::Metrics;
use crate::tasks::BackgroundTasks;

pub fn start(
    tasks: &BackgroundTasks,
    database_url: String,
    breaker: Arc<Breaker>,
    owed: Arc<OwedBumps>,
    metrics: Arc<Metrics>,
) {
    tasks.spawn("owed_bump_listener", async move {
        let mut connected_before = false;
        loop {
            match outbox::listen(&database_url).await {
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
                    let mut notifications = std::pin::pin!(conn.notifications_stream());
                    while let Some(notification) = notifications.next().await {
                        let Ok(notification) = notification else {
                            break;
                        };
                        if let Some((sent_at, namespaces)) =
                            outbox::parse_owed(&notification.payload)
                        {
                            owed.owe(&namespaces);
                            let delay = chrono::Utc::now().timestamp_micros() - sent_at;
                            metrics.owed_notification(delay.max(0) as f64 / 1e6);
                        }
                    }
                    owed.set_listening(false);
                    breaker.trip();
                    tracing::warn!(
                        "cache: the owed-bump listener lost its connection; reads bypass Redis until it is back"
                    );
                }
                Err(e) => tracing::debug!("cache: cannot listen for owed bumps yet: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
