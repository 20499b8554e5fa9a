//! `loadtest bench`: the benchmark suite behind docs/BENCHMARKS.md.
//!
//! One run starts everything it measures on this machine — a private
//! redis-server on a free port, a fresh PostgreSQL database, linkhub release
//! instances (cache on, cache off, a second cache-on instance) and the floor
//! binary — seeds the data set through the API, runs every comparison with
//! `--reps` repetitions interleaved where the setup allows, and writes the
//! report and its charts. Every process it started is killed when it ends,
//! and the database is dropped.

mod charts;
mod procs;
mod report;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::future::join_all;
use serde_json::json;

use self::procs::{Proc, free_port, scrape, series, sibling_binary, wait_until};
use self::wrk::{Load, WrkResult};
use crate::api::Api;
use crate::data;
use crate::seed::{self, SeedArgs};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadtest bench",
    about = "Run the benchmark suite and write docs/BENCHMARKS.md"
)]
pub struct BenchArgs {
    /// Seeded users.
    #[arg(long, default_value_t = data::DEFAULT_USERS)]
    pub users: usize,
    /// Repetitions of each measurement (the report gives medians).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Seconds of each wrk measurement.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Seconds of each goose run (profiles, mixed).
    #[arg(long, default_value_t = 30)]
    pub load_secs: u64,
    /// wrk connections for the read comparison.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Where BENCHMARKS.md and the charts go.
    #[arg(long, default_value = "docs")]
    pub out: PathBuf,
    /// PostgreSQL server (a fresh database is created on it and dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// Scratch directory for logs and wrk scripts.
    #[arg(long, default_value = "/var/tmp/linkhub-bench")]
    pub work_dir: PathBuf,
    /// The command line that ran this benchmark, as the report should show it.
    #[arg(long, default_value = "scripts/bench.sh")]
    pub command: String,
}

/// Everything a run measured; the report and the charts are made from it.
#[derive(Debug, Default)]
pub struct Results {
    pub args_reps: usize,
    pub secs: u64,
    pub load_secs: u64,
    pub connections: usize,
    pub users: usize,
    pub seed: Option<seed::SeedReport>,
    pub profile_bytes: usize,
    /// Comparison 1: (target name, runs).
    pub reads: Vec<(String, Vec<WrkResult>)>,
    /// Server-side X-Cache of the cached-read runs: (hits, misses).
    pub reads_cache: (f64, f64),
    /// Comparison 2: (unrelated keys, runs, SCAN calls per write).
    pub writes: Vec<(u64, Vec<WrkResult>, f64)>,
    /// Comparison 3: PostgreSQL loads per burst: one instance; two instances (a, b).
    pub stampede_one: Vec<f64>,
    pub stampede_two: Vec<(f64, f64)>,
    /// Comparison 4: per rep (server hit ratio, client hit ratio, writes, stale reads, requests).
    pub mixed: Vec<MixedRun>,
    /// Other users' profiles still HIT after a user's writes: (hits, reads) per rep.
    pub kept: Vec<(u64, u64)>,
    /// Comparison 5: per rep (idle KiB, peak KiB, requests/s); and one RSS series (s, KiB).
    pub rss: Vec<RssRun>,
    pub rss_series: Vec<(f64, f64)>,
    pub machine: Vec<(String, String)>,
    /// RSS of the instance that served the seeding, after it.
    pub seed_rss_kib: u64,
    /// `/proc/loadavg` at the start of each part (other work on the machine).
    pub load: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct MixedRun {
    pub server_hit_ratio: f64,
    pub client_hit_ratio: f64,
    pub writes: u64,
    pub stale_reads: u64,
    pub requests: f64,
}

#[derive(Debug, Default, Clone)]
pub struct RssRun {
    pub idle_kib: u64,
    pub peak_kib: u64,
    pub profile_reads: u64,
}

/// What every linkhub instance of a run shares.
struct Env {
    linkhub: PathBuf,
    database_url: String,
    redis_url: String,
    work: PathBuf,
}

impl Env {
    fn linkhub(&self, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(&self.linkhub);
        cmd.env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("CACHE_PREFIX", "bench")
            // The access log writes a line per request; the benchmark measures
            // the service, not its log volume (see BENCHMARKS.md).
            .env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts an instance on a free port and waits until it serves (and, with
    /// the cache on, until it trusts Redis).
    async fn start(
        &self,
        client: &reqwest::Client,
        name: &str,
        extra: &[(&str, &str)],
        cache_on: bool,
    ) -> Result<(Proc, String), String> {
        let port = free_port()?;
        let bind = format!("127.0.0.1:{port}");
        let mut env: Vec<(&str, &str)> = vec![("BIND_ADDR", &bind)];
        env.extend_from_slice(extra);
        let proc = Proc::spawn(
            name,
            self.linkhub(&env),
            &self.work.join(format!("{name}.log")),
        )?;
        let base = format!("http://{bind}");
        let wanted = if cache_on {
            "\"cache\":\"ok\""
        } else {
            "\"database\":\"ok\""
        };
        wait_until(
            client,
            &format!("{base}/readyz"),
            Duration::from_secs(60),
            |b| b.replace(' ', "").contains(wanted),
        )
        .await
        .map_err(|e| {
            format!(
                "{name}: {e} (log: {})",
                self.work.join(format!("{name}.log")).display()
            )
        })?;
        Ok((proc, base))
    }
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let started = Instant::now();
    if let Err(e) = Command::new("wrk").arg("--version").output() {
        return Err(format!(
            "wrk is missing ({e}): apt-get install -y wrk (scripts/bench.sh does)"
        ));
    }
    let work = args.work_dir.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;

    // A private Redis: the keyspace comparison fills it with a million keys.
    let redis_port = free_port()?;
    let mut redis_cmd = Command::new("redis-server");
    redis_cmd
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--enable-debug-command", "local"])
        .arg("--dir")
        .arg(&work);
    let _redis = Proc::spawn("redis-server", redis_cmd, &work.join("redis.log"))?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let redis = redis::Client::open(redis_url.as_str()).map_err(|e| e.to_string())?;
    let mut redis_conn = connect_redis(&redis).await?;

    let db_name = format!("linkhub_bench_{}", std::process::id());
    let env = Env {
        linkhub: sibling_binary("linkhub")?,
        database_url: format!("{}/{db_name}", args.postgres.trim_end_matches('/')),
        redis_url: redis_url.clone(),
        work: work.clone(),
    };
    let guard = DropDatabase {
        server: args.postgres.clone(),
        name: db_name.clone(),
    };
    guard.drop_now();

    let mut results = Results {
        args_reps: args.reps,
        secs: args.secs,
        load_secs: args.load_secs,
        connections: args.connections,
        users: args.users,
        machine: machine(),
        ..Results::default()
    };

    println!("bench: seeding through a linkhub (cache on) on a fresh database {db_name}");
    results.load.push(("start".into(), loadavg()));
    {
        // Seeded through an instance of its own: argon2's working memory,
        // which glibc keeps after the hashes, must not count against the
        // read path's memory (it is reported apart).
        let (seeder, seeder_url) = env.start(&client, "linkhub-seed", &[], true).await?;
        let report = seed_through_api(&env, &client, &seeder_url, args.users).await?;
        results.seed = Some(report);
        results.seed_rss_kib = procs::rss_kib(seeder.pid()).unwrap_or(0);
        println!(
            "bench:   the seeding instance's RSS: {} KiB",
            results.seed_rss_kib
        );
    }
    let (mut cached, cached_url) = env
        .start(
            &client,
            "linkhub-cached",
            &[("MIGRATE_ON_START", "false")],
            true,
        )
        .await?;

    let (_uncached, uncached_url) = env
        .start(
            &client,
            "linkhub-cache-off",
            &[("CACHE_ENABLED", "false"), ("MIGRATE_ON_START", "false")],
            false,
        )
        .await?;
    // The floor; the floor with its Redis connections opened on the main
    // thread (as linkhub's start-up opens some of its own); and the floor
    // without a pool checkout per request.
    let mut floors = Vec::new();
    for (name, prewarm, connection) in [
        ("floor", "0", "pool"),
        ("floor-prewarmed", "8", "pool"),
        ("floor-per-worker", "0", "per-worker"),
    ] {
        let port = free_port()?;
        let mut cmd = Command::new(sibling_binary("floor")?);
        cmd.env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", &redis_url)
            .env("FLOOR_PREWARM", prewarm)
            .env("FLOOR_CONNECTION", connection);
        let proc = Proc::spawn(name, cmd, &work.join(format!("{name}.log")))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_until(
            &client,
            &format!("{url}/healthz"),
            Duration::from_secs(20),
            |_| true,
        )
        .await?;
        floors.push((proc, url));
    }
    let floor_url = floors[0].1.clone();
    let prewarmed_url = floors[1].1.clone();
    let per_worker_url = floors[2].1.clone();

    let api = Api::new(&cached_url, 8)?;
    let hot = data::username(0);
    let hot_path = format!("/api/v1/profiles/{hot}");
    api.get(&hot_path).await?;
    let (status, _, body) = api.get(&hot_path).await?;
    if status != 200 {
        return Err(format!("GET {hot_path} answered {status}"));
    }
    results.profile_bytes = body.len();
    let () = redis::cmd("SET")
        .arg(format!("floor:profile:{hot}"))
        .arg(&body)
        .query_async(&mut redis_conn)
        .await
        .map_err(|e| e.to_string())?;
    let floor_body = client
        .get(format!("{floor_url}{hot_path}"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    if floor_body.as_ref() != body.as_slice() {
        return Err("the floor does not answer the profile body linkhub answers".to_owned());
    }

    results.load.push(("before 1".into(), loadavg()));
    // 1. Cached reads vs cache off vs /healthz vs the floor.
    println!(
        "bench: 1/5 profile reads, {} connections, {} x {} s",
        args.connections, args.reps, args.secs
    );
    let targets = [
        ("linkhub, cached profile", format!("{cached_url}{hot_path}")),
        (
            "linkhub, cache off (CACHE_ENABLED=false)",
            format!("{uncached_url}{hot_path}"),
        ),
        ("linkhub /healthz", format!("{cached_url}/healthz")),
        (
            "floor: actix-web + 1 Redis GET",
            format!("{floor_url}{hot_path}"),
        ),
        (
            "floor, Redis connections opened on the main thread (FLOOR_PREWARM=8)",
            format!("{prewarmed_url}{hot_path}"),
        ),
        (
            "floor, one multiplexed connection per worker, no pool (FLOOR_CONNECTION=per-worker)",
            format!("{per_worker_url}{hot_path}"),
        ),
    ];
    for (_, url) in &targets {
        wrk::run(&work, url, Load::Get, 2, args.connections, 3)?;
    }
    let mut runs: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
    let before = scrape(&client, &cached_url).await?;
    for rep in 0..args.reps {
        for (i, (name, url)) in targets.iter().enumerate() {
            let r = wrk::run(&work, url, Load::Get, 2, args.connections, args.secs)?;
            println!(
                "bench:   rep {} {name}: {:.0} req/s, p50 {} us, p99 {} us, errors {}",
                rep + 1,
                r.rps(),
                r.p50_us,
                r.p99_us,
                r.errors()
            );
            runs[i].push(r);
        }
    }
    let after = scrape(&client, &cached_url).await?;
    results.reads_cache = (
        delta(&before, &after, "hit"),
        delta(&before, &after, "miss") + delta(&before, &after, "bypass"),
    );
    results.reads = targets
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .zip(runs)
        .collect();
    cached.check_running()?;

    results.load.push(("before 5".into(), loadavg()));
    // 5. Resident memory under the profiles load (also warms the cache for 4).
    println!(
        "bench: 2/5 resident memory under the profiles scenario, {} x {} s",
        args.reps, args.load_secs
    );
    for rep in 0..args.reps {
        let idle = procs::rss_kib(cached.pid()).unwrap_or(0);
        let before = scrape(&client, &cached_url).await?;
        let mut goose = goose_run(
            &cached_url,
            "profiles",
            64,
            args.load_secs,
            args.users,
            &work,
            rep,
        )?;
        let t0 = Instant::now();
        let mut peak = idle;
        let mut samples = Vec::new();
        while goose.check_running().is_ok() {
            if let Some(kib) = procs::rss_kib(cached.pid()) {
                peak = peak.max(kib);
                samples.push((t0.elapsed().as_secs_f64(), kib as f64));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            if t0.elapsed() > Duration::from_secs(args.load_secs + 120) {
                return Err("the profiles run did not end".to_owned());
            }
        }
        drop(goose);
        let after = scrape(&client, &cached_url).await?;
        let reads = delta(&before, &after, "hit") + delta(&before, &after, "miss");
        println!(
            "bench:   rep {}: RSS idle {idle} KiB, peak {peak} KiB, {reads} profile reads",
            rep + 1
        );
        if rep == 0 {
            results.rss_series = samples;
        }
        results.rss.push(RssRun {
            idle_kib: idle,
            peak_kib: peak,
            profile_reads: reads as u64,
        });
    }

    results.load.push(("before 4".into(), loadavg()));
    // 4. Hit ratio under mixed, and other users' hits kept after writes.
    println!(
        "bench: 3/5 hit ratio under the mixed scenario, {} x {} s",
        args.reps, args.load_secs
    );
    for rep in 0..args.reps {
        let before = scrape(&client, &cached_url).await?;
        let goose = goose_run(
            &cached_url,
            "mixed",
            32,
            args.load_secs,
            args.users,
            &work,
            100 + rep,
        )?;
        let summary = wait_goose(goose, &work, 100 + rep, args.load_secs).await?;
        let after = scrape(&client, &cached_url).await?;
        let (hit, miss) = (
            delta(&before, &after, "hit"),
            delta(&before, &after, "miss") + delta(&before, &after, "bypass"),
        );
        let client_reads = summary.hit + summary.miss + summary.bypass;
        let run = MixedRun {
            server_hit_ratio: hit / (hit + miss).max(1.0),
            client_hit_ratio: summary.hit as f64 / (client_reads as f64).max(1.0),
            writes: summary.writes,
            stale_reads: summary.stale_reads,
            requests: hit + miss,
        };
        println!(
            "bench:   rep {}: server hit ratio {:.4}, client (read-backs excluded) {:.4}, {} writes, {} stale",
            rep + 1,
            run.server_hit_ratio,
            run.client_hit_ratio,
            run.writes,
            run.stale_reads
        );
        results.mixed.push(run);
    }
    for rep in 0..args.reps {
        let kept = hits_kept_after_writes(&api, args.users, rep).await?;
        println!(
            "bench:   rep {}: {} of {} other profiles still HIT after the writes",
            rep + 1,
            kept.0,
            kept.1
        );
        results.kept.push(kept);
    }

    results.load.push(("before 3".into(), loadavg()));
    // 3. Stampede: 100 concurrent GETs of a just-invalidated hot profile.
    println!("bench: 4/5 stampede");
    let (_second, second_url) = env
        .start(
            &client,
            "linkhub-cached-2",
            &[("MIGRATE_ON_START", "false")],
            true,
        )
        .await?;
    let owner_token = api.login(&hot, data::PASSWORD).await?;
    let owner_id = api
        .profile(&hot)
        .await?
        .ok_or("the hot profile is missing")?
        .user
        .id;
    // Open 100 connections to each instance first, so the burst is not
    // spread out by TCP handshakes.
    let burst_client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .map_err(|e| e.to_string())?;
    for base in [&cached_url, &second_url] {
        join_all((0..100).map(|_| burst_client.get(format!("{base}/healthz")).send())).await;
    }
    for rep in 0..args.reps.max(5) {
        let one = stampede(
            &api,
            &burst_client,
            &owner_token,
            owner_id,
            &[&cached_url],
            &hot_path,
            rep,
        )
        .await?;
        let two = stampede(
            &api,
            &burst_client,
            &owner_token,
            owner_id,
            &[&cached_url, &second_url],
            &hot_path,
            rep,
        )
        .await?;
        println!(
            "bench:   rep {}: one instance {} load(s); two instances {} + {} load(s)",
            rep + 1,
            one[0],
            two[0],
            two[1]
        );
        results.stampede_one.push(one[0]);
        results.stampede_two.push((two[0], two[1]));
    }

    results.load.push(("before 2".into(), loadavg()));
    // 2. Write latency as the Redis keyspace grows.
    println!("bench: 5/5 write latency with 0, 100k and 1M unrelated keys");
    let mut writers = Vec::new();
    for k in 0..8 {
        let i = args.users - 1 - k;
        let token = api.login(&data::username(i), data::PASSWORD).await?;
        let id = api
            .profile(&data::username(i))
            .await?
            .ok_or("a writer's profile is missing")?
            .user
            .id;
        writers.push((id, token));
    }
    let script = wrk::patch_bio_script(&writers);
    let write_url = format!("{cached_url}/");
    for level in [0u64, 100_000, 1_000_000] {
        if level > 0 {
            let () = redis::cmd("DEBUG")
                .arg("POPULATE")
                .arg(level)
                .arg("unrelated")
                .arg(64)
                .query_async(&mut redis_conn)
                .await
                .map_err(|e| format!("DEBUG POPULATE: {e}"))?;
        }
        let keys: u64 = redis::cmd("DBSIZE")
            .query_async(&mut redis_conn)
            .await
            .map_err(|e| e.to_string())?;
        wrk::run(&work, &write_url, Load::Script(&script), 1, 4, 2)?;
        // Let the purger finish what the warm-up queued.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let scans_before = scan_calls(&mut redis_conn).await?;
        let mut runs = Vec::new();
        for rep in 0..args.reps {
            let r = wrk::run(&work, &write_url, Load::Script(&script), 1, 4, args.secs)?;
            println!(
                "bench:   {level} unrelated keys ({keys} in Redis), rep {}: {:.0} writes/s, p50 {} us, p99 {} us, errors {}",
                rep + 1,
                r.rps(),
                r.p50_us,
                r.p99_us,
                r.errors()
            );
            runs.push(r);
        }
        let scans = scan_calls(&mut redis_conn).await? - scans_before;
        let writes: u64 = runs.iter().map(|r| r.requests).sum();
        results
            .writes
            .push((level, runs, scans as f64 / writes.max(1) as f64));
    }
    cached.check_running()?;
    results.load.push(("end".into(), loadavg()));

    report::write(&args, &results, started.elapsed())?;
    charts::draw(&args.out, &results)?;
    println!(
        "bench: wrote {} and its charts in {:.0} s",
        args.out.join("BENCHMARKS.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Registers an admin, promotes it with the linkhub binary, and seeds every
/// user with the admin's token writing their links and socials.
async fn seed_through_api(
    env: &Env,
    client: &reqwest::Client,
    base: &str,
    users: usize,
) -> Result<seed::SeedReport, String> {
    let admin = "lt_admin";
    let res = client
        .post(format!("{base}/api/v1/users"))
        .json(&json!({
            "username": admin,
            "email": "lt_admin@loadtest.example",
            "password": data::PASSWORD,
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !matches!(res.status().as_u16(), 201 | 409) {
        return Err(format!("registering the admin: HTTP {}", res.status()));
    }
    let mut promote = env.linkhub(&[("MIGRATE_ON_START", "false")]);
    promote.args(["promote", admin]);
    procs::output(promote)?;
    seed::run(&SeedArgs {
        host: base.to_owned(),
        users,
        concurrency: None,
        admin_login: Some(admin.to_owned()),
        admin_password: Some(data::PASSWORD.to_owned()),
    })
    .await
}

/// One burst: bump the hot profile with a write, then 100 concurrent GETs of
/// it split over `instances`; answers each instance's PostgreSQL loads.
async fn stampede(
    api: &Api,
    client: &reqwest::Client,
    owner_token: &str,
    owner_id: i64,
    instances: &[&str],
    hot_path: &str,
    rep: usize,
) -> Result<Vec<f64>, String> {
    let loads = |m: &std::collections::HashMap<String, f64>| {
        series(m, "linkhub_cache_loads_total", &[("namespace", "profile")])
    };
    let mut before = Vec::new();
    for base in instances {
        before.push(loads(&scrape(client, base).await?));
    }
    api.patch_user(
        owner_token,
        owner_id,
        &json!({ "bio": format!("stampede {rep} {}", instances.len()) }),
    )
    .await?;
    let per = 100 / instances.len();
    let burst = instances
        .iter()
        .flat_map(|base| (0..per).map(move |_| client.get(format!("{base}{hot_path}")).send()));
    let answers = join_all(burst).await;
    if let Some(bad) = answers
        .iter()
        .find(|r| !r.as_ref().is_ok_and(|r| r.status().is_success()))
    {
        return Err(format!("a stampede GET failed: {bad:?}"));
    }
    let mut out = Vec::new();
    for (base, b) in instances.iter().zip(before) {
        out.push(loads(&scrape(client, base).await?) - b);
    }
    Ok(out)
}

/// Warms 200 other profiles, makes one user write each kind of change, and
/// counts how many of the 200 are still served as HIT.
async fn hits_kept_after_writes(api: &Api, users: usize, rep: usize) -> Result<(u64, u64), String> {
    let writer = users - 9 - rep;
    let others: Vec<usize> = (1..=200).filter(|&i| i != writer).take(200).collect();
    for &i in &others {
        api.get(&format!("/api/v1/profiles/{}", data::username(i)))
            .await?;
    }
    let token = api.login(&data::username(writer), data::PASSWORD).await?;
    let profile = api
        .profile(&data::username(writer))
        .await?
        .ok_or("the writer's profile is missing")?;
    let id = profile.user.id;
    api.patch_user(&token, id, &json!({ "bio": format!("kept {rep}") }))
        .await?;
    let link = api
        .add_link(&token, id, "Kept", "https://example.com/kept")
        .await?;
    api.delete_link(&token, link).await?;
    if let Some(social) = profile.socials.first() {
        api.patch_social(
            &token,
            social.id,
            &format!("https://example.com/kept/{rep}"),
        )
        .await?;
    }
    let mut hits = 0;
    for &i in &others {
        let (_, cache, _) = api
            .get(&format!("/api/v1/profiles/{}", data::username(i)))
            .await?;
        hits += u64::from(cache == "HIT");
    }
    Ok((hits, others.len() as u64))
}

/// Starts this binary as a goose run against `base`.
fn goose_run(
    base: &str,
    scenario: &str,
    users: usize,
    secs: u64,
    seeded: usize,
    work: &Path,
    tag: usize,
) -> Result<Proc, String> {
    let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    cmd.env("LOADTEST_USERS", seeded.to_string())
        .args(["--host", base, "--scenarios", scenario])
        .args([
            "--users",
            &users.to_string(),
            "--increase-rate",
            &users.to_string(),
        ])
        .args(["--run-time", &format!("{secs}s")])
        .args(["--quiet", "--no-reset-metrics"]);
    Proc::spawn(
        &format!("goose {scenario}"),
        cmd,
        &work.join(format!("goose-{scenario}-{tag}.log")),
    )
}

/// Waits for a goose run and reads its `loadtest summary:` line.
async fn wait_goose(
    mut goose: Proc,
    work: &Path,
    tag: usize,
    secs: u64,
) -> Result<crate::scenarios::Counters, String> {
    let t0 = Instant::now();
    while goose.check_running().is_ok() {
        if t0.elapsed() > Duration::from_secs(secs + 120) {
            return Err(format!("{} did not end", goose.name));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let name = goose.name.clone();
    drop(goose);
    let log_path = work.join(format!(
        "goose-{}-{tag}.log",
        name.trim_start_matches("goose ")
    ));
    let log =
        std::fs::read_to_string(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("loadtest summary: "))
        .ok_or_else(|| format!("{name} printed no summary (see {})", log_path.display()))?;
    serde_json::from_str(line).map_err(|e| format!("{name} summary: {e}"))
}

fn delta(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    result: &str,
) -> f64 {
    let labels = [("namespace", "profile"), ("result", result)];
    series(after, "linkhub_cache_requests_total", &labels)
        - series(before, "linkhub_cache_requests_total", &labels)
}

async fn connect_redis(
    client: &redis::Client,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // DEBUG POPULATE of a million keys takes seconds.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(300)));
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("private redis-server: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `SCAN` calls Redis has served so far (INFO commandstats).
async fn scan_calls(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64, String> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_scan:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The machine and the versions the figures were measured with.
fn machine() -> Vec<(String, String)> {
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    vec![
        (
            "CPU".into(),
            sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"),
        ),
        ("cores".into(), sh("nproc")),
        (
            "memory".into(),
            sh("free -g | awk '/Mem:/ {print $2 \" GiB\"}'"),
        ),
        ("kernel".into(), sh("uname -sr")),
        (
            "PostgreSQL".into(),
            sh("psql -h 127.0.0.1 -U postgres -tAc 'show server_version'"),
        ),
        ("Redis".into(), sh("redis-server --version | cut -d' ' -f3")),
        (
            "wrk".into(),
            sh("wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2"),
        ),
        ("rustc".into(), sh("rustc --version")),
        (
            "linkhub commit".into(),
            sh("git describe --always --dirty --abbrev=7"),
        ),
    ]
}

/// Drops the benchmark's database when the run ends, however it ends.
struct DropDatabase {
    server: String,
    name: String,
}

impl DropDatabase {
    fn drop_now(&self) {
        let url = format!("{}/postgres", self.server.trim_end_matches('/'));
        let _ = Command::new("psql")
            .arg(&url)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            ])
            .output();
    }
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        self.drop_now();
    }
}
