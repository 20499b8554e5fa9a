//! Login throttle: after `max_failures` failed attempts for one login within
//! a window, every attempt for that login — right password or not, existing
//! login or not — is refused until the window that started with the first
//! failure has passed.
//!
//! A fixed window per login, in this process's memory (keyed by the
//! lowercased login, never stored in Redis: a login may be an email). A token
//! bucket (`governor`) refills continuously and would let an attempt through
//! before the window ends, which API.md forbids, so the window is counted here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Entries kept before expired windows are swept.
const SWEEP_AT: usize = 10_000;

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            windows: Mutex::default(),
        }
    }

    /// `Err(seconds to wait)` while `login` is locked out.
    pub fn check(&self, login: &str) -> Result<(), u64> {
        let now = Instant::now();
        let windows = self.lock();
        match windows.get(&login.to_lowercase()) {
            Some(w) if w.failures >= self.max_failures && now < w.started + self.window => {
                let left = (w.started + self.window) - now;
                Err(left.as_secs() + u64::from(left.subsec_nanos() > 0))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, login: &str) {
        let now = Instant::now();
        let mut windows = self.lock();
        if windows.len() >= SWEEP_AT {
            let window = self.window;
            windows.retain(|_, w| now < w.started + window);
        }
        let entry = windows.entry(login.to_lowercase()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= entry.started + self.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_max_failures_until_the_window_passes() {
        let throttle = LoginThrottle::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(throttle.check("Alice").is_ok());
            throttle.record_failure("Alice");
        }
        let wait = throttle.check("alice").expect_err("locked out");
        assert!((1..=1).contains(&wait));
        assert!(throttle.check("bob").is_ok(), "other logins are unaffected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(throttle.check("alice").is_ok());
    }
}
