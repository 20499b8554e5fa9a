//! Unique names: databases, key prefixes, users and scratch directories that
//! no other test, process or run uses. Every other support file may name
//! things, so this one sits below all of them and imports none.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A lowercase `[a-z0-9_]` name of at most 32 characters, unique per call, per
/// process and (with overwhelming probability) across runs.
pub fn unique_name(prefix: &str) -> String {
    static PROCESS_TAG: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tag = PROCESS_TAG.get_or_init(|| {
        let mut hasher = DefaultHasher::new();
        std::process::id().hash(&mut hasher);
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock before 1970")
            .as_nanos()
            .hash(&mut hasher);
        // 8 base-36 digits, about 41 bits.
        let mut value = hasher.finish() % 36u64.pow(8);
        let mut digits = Vec::new();
        for _ in 0..8 {
            digits.push(base36_digit(value % 36));
            value /= 36;
        }
        digits.into_iter().collect()
    });
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{tag}{}", base36(count));
    let clean_prefix: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    let room = 32 - 1 - suffix.len();
    let clean_prefix: String = clean_prefix.chars().take(room).collect();
    if clean_prefix.is_empty() {
        format!("u_{suffix}")
    } else {
        format!("{clean_prefix}_{suffix}")
    }
}

fn base36_digit(d: u64) -> char {
    char::from_digit(d as u32, 36).expect("digit below 36")
}

fn base36(mut value: u64) -> String {
    if value == 0 {
        return "0".to_string();
    }
    let mut digits = Vec::new();
    while value > 0 {
        digits.push(base36_digit(value % 36));
        value /= 36;
    }
    digits.into_iter().rev().collect()
}
