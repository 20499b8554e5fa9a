//! The process's background tasks — cache recovery, the owed-bump listener,
//! the purge queue, the janitor, the token sweep — with one handle to stop them all.
//!
//! A stop drops each task at its next `.await`. Every task here is written so
//! that this is safe at any await point: a replay cut between its bump and
//! the deletion of its outbox rows only bumps those namespaces once more on
//! the next replay, a purge or a janitor pass cut midway leaves its keys to
//! their TTL, and a dropped listener closes its PostgreSQL connection.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

#[derive(Clone, Default)]
pub struct BackgroundTasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl BackgroundTasks {
    /// Runs `task` on the current runtime until it ends or [`Self::stop`] is called.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        let span = tracing::info_span!("task", name);
        self.tracker.spawn(
            async move {
                tokio::select! {
                    () = stop.cancelled() => tracing::debug!("stopped"),
                    () = task => {}
                }
            }
            .instrument(span),
        );
    }

    /// Stops every task and waits up to `within` for them to finish.
    /// Returns how many were still running when that time ran out.
    pub async fn stop(&self, within: Duration) -> usize {
        self.stop.cancel();
        self.tracker.close();
        match tokio::time::timeout(within, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }

    /// How many tasks are running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_ends_endless_tasks_and_counts_none_left() {
        let tasks = BackgroundTasks::default();
        for _ in 0..3 {
            tasks.spawn("endless", async {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
        assert_eq!(tasks.running(), 3);
        assert_eq!(tasks.stop(Duration::from_secs(5)).await, 0);
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_never_yields_is_counted_as_left() {
        let tasks = BackgroundTasks::default();
        // Blocks its thread without an await: cancellation cannot reach it.
        tasks.spawn("blocks its thread", async {
            std::thread::sleep(Duration::from_millis(500));
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(tasks.stop(Duration::from_millis(50)).await, 1);
    }
}
