//! The seeded data set. Every seeded user is a pure function of its index, so
//! the seeding command, the scenarios and the benchmark agree on names,
//! passwords, links and socials without sharing any state but a count.

use rand::RngExt;

/// Every seeded user's password (test data only).
pub const PASSWORD: &str = "loadtest-password";

/// The links each seeded user gets, in this order.
pub const LINK_TITLES: [&str; 5] = ["Website", "Blog", "Portfolio", "Shop", "Newsletter"];

/// How many socials each seeded user gets.
pub const SOCIALS_PER_USER: usize = 3;

/// Default number of seeded users (`loadtest seed --users`, `LOADTEST_USERS`).
pub const DEFAULT_USERS: usize = 10_000;

const PLATFORMS: [&str; 6] = [
    "github",
    "mastodon",
    "instagram",
    "youtube",
    "linkedin",
    "bluesky",
];

const FIRST_NAMES: [&str; 24] = [
    "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Kira",
    "Leo", "Maria", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera",
    "Will", "Yara",
];

const LAST_NAMES: [&str; 20] = [
    "Smith", "Garcia", "Muller", "Rossi", "Dubois", "Kowalski", "Nguyen", "Silva", "Jensen",
    "Novak", "Tanaka", "Okafor", "Larsen", "Costa", "Fischer", "Moreau", "Ivanova", "Haddad",
    "Berg", "Santos",
];

/// What people type into the users search: first and last names, prefixes of
/// them, usernames and their prefixes, and a few terms that match nobody.
/// Each holds 3 letters or digits in a row, as the contract asks of a search.
pub const SEARCH_TERMS: [&str; 32] = [
    "anna",
    "ben",
    "emma",
    "noah",
    "maria",
    "leo",
    "smith",
    "garcia",
    "muller",
    "nguyen",
    "silva",
    "tanaka",
    "ann",
    "mar",
    "ros",
    "san",
    "ber",
    "cos",
    "ivan",
    "user_0",
    "user_00",
    "user_001",
    "user_0042",
    "user_1",
    "user_05",
    "Anna Smith",
    "Leo Rossi",
    "Grace",
    "HUGO",
    "zzz",
    "nobody",
    "x_ray",
];

/// The username of seeded user `i`.
pub fn username(i: usize) -> String {
    format!("user_{i:05}")
}

pub fn email(i: usize) -> String {
    format!("user_{i:05}@loadtest.example")
}

/// A display name; names repeat, so searches for them match many users.
pub fn display_name(i: usize) -> String {
    format!(
        "{} {}",
        FIRST_NAMES[i % FIRST_NAMES.len()],
        LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()]
    )
}

pub fn bio(i: usize) -> String {
    format!(
        "Seeded user {i}. Links to my work, my writing and where to find me online. \
         Building things in public since 20{:02}.",
        10 + i % 15
    )
}

pub fn link_url(i: usize, title: &str) -> String {
    format!(
        "https://{}.example.com/{}",
        username(i).replace('_', "-"),
        title.to_ascii_lowercase()
    )
}

/// The three platforms of seeded user `i` (distinct, rotating through the list).
pub fn platforms(i: usize) -> [&'static str; SOCIALS_PER_USER] {
    let first = i % PLATFORMS.len();
    [0, 1, 2].map(|k| PLATFORMS[(first + 2 * k) % PLATFORMS.len()])
}

pub fn social_url(platform: &str, i: usize) -> String {
    format!("https://{platform}.example.com/{}", username(i))
}

/// The number of seeded users the scenarios draw from: `LOADTEST_USERS`, or
/// 10,000 (what `loadtest seed` creates by default).
pub fn seeded_users() -> usize {
    std::env::var("LOADTEST_USERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(DEFAULT_USERS)
}

/// A Zipf-like popularity over `n` ranks: rank `k` (0-based) is drawn with a
/// probability proportional to `1 / (k + 1)^s`. With `s = 1` and 10,000 users
/// the first profile takes about 10 % of the reads, the first 100 about half,
/// and the rest is a long tail.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf = Vec::with_capacity(n.max(1));
        for k in 0..n.max(1) {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Self { cdf }
    }

    /// A rank in `0..n`.
    pub fn sample(&self) -> usize {
        let u: f64 = rand::rng().random();
        self.cdf.partition_point(|&p| p < u).min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_values_satisfy_the_field_rules() {
        for i in [0, 7, 9_999, 123_456] {
            let name = username(i);
            assert!((3..=32).contains(&name.len()));
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            let p = platforms(i);
            assert!(p[0] != p[1] && p[1] != p[2] && p[0] != p[2], "{p:?}");
        }
    }

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1000, 1.0);
        let draws: Vec<usize> = (0..20_000).map(|_| zipf.sample()).collect();
        assert!(draws.iter().all(|&k| k < 1000));
        let top = draws.iter().filter(|&&k| k == 0).count();
        let tail = draws.iter().filter(|&&k| k == 999).count();
        assert!(top > 10 * tail.max(1), "top {top}, tail {tail}");
    }
}
