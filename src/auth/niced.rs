//! OS threads at a lower scheduling priority, for CPU-bound work that
//! anyone can ask for: the password hashes of registrations.
//!
//! # Why
//! A registration's argon2id hash takes a core for tens of milliseconds.
//! The hashing slots bound how many run at once (`password.rs`), but a
//! hash that runs takes its core from whatever else wants it: on a 2-core
//! machine a burst of registrations from a few addresses (each within its
//! per-address budget) takes a core for a second, and every read's worker
//! and PostgreSQL backend shares the other one. Run at a higher `nice`
//! value (`HASH_REGISTRATION_NICE`, 10 by default), the hash still gets
//! every cycle nobody else wants, and yields the core to a request's worker
//! the moment one is runnable: reads and logins stay as fast as without the
//! burst, and registrations take longer only when the machine is busy.
//!
//! Logins and password checks keep the normal priority (`spawn_blocking`):
//! they are throttled per account and address, and their client waits.
//!
//! # How
//! `threads` named threads, each lowering its own priority once
//! (`setpriority` on its thread id: Linux schedules threads apart), then
//! running jobs from one queue until the pool is dropped. Raising `nice` needs
//! no privilege; a failure is logged and the thread runs at the normal
//! priority. On other systems the threads run at the normal priority.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run jobs at `nice` above the process's priority.
pub struct NicedPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// The pool's threads are gone (it could not start them).
#[derive(Debug, thiserror::Error)]
#[error("the low-priority threads are not running")]
pub struct Stopped;

impl NicedPool {
    /// Starts `threads` threads (at least one) named `name-<n>`; `nice` 0
    /// keeps the normal priority.
    pub fn start(name: &str, threads: usize, nice: i32) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = std::sync::Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        let job = {
                            let queue = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            queue.recv()
                        };
                        match job {
                            // A panicking job drops its answer (its caller
                            // sees `Stopped`), not the thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(sender),
        })
    }

    /// Runs `f` on one of the threads and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| Stopped)?;
        result.await.map_err(|_| Stopped)
    }
}

/// Raises the calling thread's `nice` value by `nice` (Linux: per thread).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: `gettid` and `setpriority` take and return plain integers and
    // touch no memory of ours.
    let outcome = unsafe {
        let tid = libc::gettid();
        let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid as libc::id_t,
            current.saturating_add(nice).min(19),
        )
    };
    if outcome != 0 {
        tracing::warn!(
            "could not lower a hashing thread's priority by {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's `nice` value.
    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        // SAFETY: as in `lower_priority`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[tokio::test]
    async fn jobs_run_on_threads_of_lower_priority() {
        let pool = NicedPool::start("test-niced", 2, 5).expect("threads");
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("test-niced-")));
        #[cfg(target_os = "linux")]
        {
            let ours = own_nice();
            let theirs = pool.run(own_nice).await.expect("ran");
            assert_eq!(
                theirs,
                (ours + 5).min(19),
                "the worker's own priority is untouched"
            );
            assert_eq!(own_nice(), ours);
        }
        let sums = futures_util::future::join_all((0..8).map(|n| pool.run(move || n * 2))).await;
        let sums: Vec<i32> = sums.into_iter().map(|r| r.expect("ran")).collect();
        assert_eq!(sums, (0..8).map(|n| n * 2).collect::<Vec<_>>());
    }
}
