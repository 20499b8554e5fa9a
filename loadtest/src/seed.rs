//! `loadtest seed`: fills a linkhub through its API with users `0..N`, each
//! with 5 links and 3 socials (see [`crate::data`]).
//!
//! Registration hashes a password with argon2 (tens of milliseconds of CPU),
//! and so does every login, so those dominate: users are seeded a few at a
//! time (about twice the cores), and a user is logged in only when links or
//! socials are missing. With `--admin-login`, one admin token writes every
//! user's links and socials and no user is logged in at all (half the argon2
//! work). A re-run skips complete users after one cached profile read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;

use crate::api::{Api, Registered};
use crate::data;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadtest seed",
    about = "Seed a linkhub with test users through its API"
)]
pub struct SeedArgs {
    /// The linkhub to fill.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub host: String,
    /// Number of users (user_00000 .. user_<N-1>).
    #[arg(long, default_value_t = data::DEFAULT_USERS)]
    pub users: usize,
    /// Users seeded at a time (default: twice the cores).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// An admin's username: its token writes every user's links and socials.
    #[arg(long, requires = "admin_password")]
    pub admin_login: Option<String>,
    /// The admin's password.
    #[arg(long, env = "LOADTEST_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
}

/// What a seed run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeedReport {
    pub created: usize,
    pub completed: usize,
    pub already_complete: usize,
    pub elapsed: Duration,
}

impl SeedReport {
    pub fn users_per_second(&self) -> f64 {
        let done = self.created + self.completed + self.already_complete;
        done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

enum Outcome {
    Created,
    Completed,
    AlreadyComplete,
}

#[derive(Default)]
struct Progress {
    created: AtomicUsize,
    completed: AtomicUsize,
    already_complete: AtomicUsize,
}

impl Progress {
    fn done(&self) -> usize {
        self.created.load(Ordering::Relaxed)
            + self.completed.load(Ordering::Relaxed)
            + self.already_complete.load(Ordering::Relaxed)
    }
}

pub async fn run(args: &SeedArgs) -> Result<SeedReport, String> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let concurrency = args.concurrency.unwrap_or(2 * cores).max(1);
    let api = Api::new(&args.host, concurrency * 2)?;
    let admin_token = match (&args.admin_login, &args.admin_password) {
        (Some(login), Some(password)) => Some(api.login(login, password).await?),
        _ => None,
    };
    println!(
        "seed: {} users into {} ({} at a time{})",
        args.users,
        args.host,
        concurrency,
        if admin_token.is_some() {
            ", links and socials written with the admin's token"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let reporter = {
        let progress = Arc::clone(&progress);
        let total = args.users;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let done = progress.done();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let left = (total - done.min(total)) as f64 / rate.max(1e-9);
                println!("seed: {done}/{total} users ({rate:.0} users/s, about {left:.0} s left)");
            }
        })
    };
    let mut results = futures_util::stream::iter(0..args.users)
        .map(|i| {
            let api = api.clone();
            let admin_token = admin_token.clone();
            async move { (i, seed_user(&api, i, admin_token.as_deref()).await) }
        })
        .buffer_unordered(concurrency);
    let mut failure = None;
    while let Some((i, result)) = results.next().await {
        match result {
            Ok(Outcome::Created) => progress.created.fetch_add(1, Ordering::Relaxed),
            Ok(Outcome::Completed) => progress.completed.fetch_add(1, Ordering::Relaxed),
            Ok(Outcome::AlreadyComplete) => {
                progress.already_complete.fetch_add(1, Ordering::Relaxed)
            }
            Err(e) => {
                failure = Some(format!("seeding {}: {e}", data::username(i)));
                break;
            }
        };
    }
    reporter.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    let report = SeedReport {
        created: progress.created.load(Ordering::Relaxed),
        completed: progress.completed.load(Ordering::Relaxed),
        already_complete: progress.already_complete.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    };
    println!(
        "seed: done in {:.1} s ({:.1} users/s): {} created, {} completed, {} already complete",
        report.elapsed.as_secs_f64(),
        report.users_per_second(),
        report.created,
        report.completed,
        report.already_complete
    );
    Ok(report)
}

/// Makes seeded user `i` exist with all its links and socials.
async fn seed_user(api: &Api, i: usize, admin_token: Option<&str>) -> Result<Outcome, String> {
    let username = data::username(i);
    // A cached profile read first: a re-run then costs no argon2 hash for the
    // users that exist (registering hashes the password before it can find
    // the username taken).
    let profile = match api.profile(&username).await? {
        Some(profile) => profile,
        None => match api.register(i).await? {
            Registered::Created(id) => {
                let (links, platforms) = (Vec::new(), Vec::new());
                return complete_user(api, i, id, links, platforms, admin_token, true).await;
            }
            Registered::Exists => api.profile(&username).await?.ok_or_else(|| {
                format!("{username} is not registered but its username or email is taken")
            })?,
        },
    };
    let links: Vec<String> = profile.links.into_iter().map(|l| l.title).collect();
    let platforms: Vec<String> = profile.socials.into_iter().map(|s| s.platform).collect();
    complete_user(
        api,
        i,
        profile.user.id,
        links,
        platforms,
        admin_token,
        false,
    )
    .await
}

/// Adds the links and socials user `i` lacks.
async fn complete_user(
    api: &Api,
    i: usize,
    user_id: i64,
    have_links: Vec<String>,
    have_platforms: Vec<String>,
    admin_token: Option<&str>,
    created: bool,
) -> Result<Outcome, String> {
    let username = data::username(i);
    let missing_links: Vec<&str> = data::LINK_TITLES
        .into_iter()
        .filter(|t| !have_links.iter().any(|h| h == t))
        .collect();
    let missing_socials: Vec<&str> = data::platforms(i)
        .into_iter()
        .filter(|p| !have_platforms.iter().any(|h| h == p))
        .collect();
    if missing_links.is_empty() && missing_socials.is_empty() {
        return Ok(Outcome::AlreadyComplete);
    }
    let token = match admin_token {
        Some(token) => token.to_owned(),
        None => api.login(&username, data::PASSWORD).await?,
    };
    for title in missing_links {
        api.add_link(&token, user_id, title, &data::link_url(i, title))
            .await?;
    }
    for platform in missing_socials {
        api.add_social(&token, user_id, platform, &data::social_url(platform, i))
            .await?;
    }
    Ok(if created {
        Outcome::Created
    } else {
        Outcome::Completed
    })
}
