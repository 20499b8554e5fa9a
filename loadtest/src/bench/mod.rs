//! `loadtest bench`: the benchmark suite behind docs/BENCHMARKS.md.
//!
//! One run starts everything it measures on this machine — a private
//! redis-server on a free port, a fresh PostgreSQL database, linkhub release
//! instances (cache on, cache off, a second cache-on instance) and the floor
//! binary in its three connection layouts — seeds the data set through the
//! API, then runs the comparisons [`run`] lists, each with `--reps`
//! repetitions interleaved where the setup allows, and writes the report and
//! its charts. Redis's own cost (CPU, commands, bytes) is read from the
//! private Redis around each measurement ([`redis_stats`]). Every process it
//! started is killed when it ends, and the database is dropped.

mod charts;
mod procs;
mod redis_stats;
mod report;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::future::join_all;
use serde_json::json;

use linkhub_harness::{RedisOptions, RedisServer};

use self::procs::{Proc, free_port, scrape, series, sibling_binary, wait_until};
use self::redis_stats::{RedisCost, RedisSample};
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
    /// Unrelated keys in Redis (`DEBUG POPULATE`) at which writes are measured,
    /// in increasing order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,100000,1000000,10000000"
    )]
    pub keyspaces: Vec<u64>,
    /// Profile writes, each followed by a read that re-caches, per keyspace
    /// level of the invalidation-cost measurement.
    #[arg(long, default_value_t = 200)]
    pub invalidation_writes: usize,
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
    /// The comparisons to run (the others are left out of the report, and
    /// the charts are drawn only when every one ran).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "reads,memory,mixed,stampede,writes"
    )]
    pub parts: Vec<Part>,
}

/// One comparison of the suite, as `--parts` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// 1: profile reads against the floors.
    Reads,
    /// 2: resident memory under `profiles`.
    Memory,
    /// 3: hit ratio under `mixed`.
    Mixed,
    /// 4: PostgreSQL loads of a stampede.
    Stampede,
    /// 5: writes as the keyspace grows, and the invalidation cost.
    Writes,
}

impl Part {
    const ALL: [Self; 5] = [
        Self::Reads,
        Self::Memory,
        Self::Mixed,
        Self::Stampede,
        Self::Writes,
    ];
}

/// What a read comparison measures, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTarget {
    Cached,
    /// The reference for a cached read: no pool checkout per request.
    FloorPerWorker,
    FloorPool,
    FloorPrewarmed,
    CacheOff,
    Healthz,
    /// The reference for linkhub's `/healthz`: the floor's, with no middleware.
    BareHealthz,
}

impl ReadTarget {
    pub const ALL: [Self; 7] = [
        Self::Cached,
        Self::FloorPerWorker,
        Self::FloorPool,
        Self::FloorPrewarmed,
        Self::CacheOff,
        Self::Healthz,
        Self::BareHealthz,
    ];

    /// The report's name for it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cached => "linkhub, cached profile (`HIT`)",
            Self::FloorPerWorker => {
                "floor (reference): actix-web + 1 Redis GET on one multiplexed connection per worker (FLOOR_CONNECTION=per-worker)"
            }
            Self::FloorPool => "floor: the same through a deadpool-redis checkout per request",
            Self::FloorPrewarmed => {
                "floor, pool connections opened on the main thread (FLOOR_PREWARM=8)"
            }
            Self::CacheOff => "linkhub, cache off (CACHE_ENABLED=false)",
            Self::Healthz => "linkhub /healthz (middleware only, no I/O)",
            Self::BareHealthz => "bare actix-web /healthz (the floor's)",
        }
    }

    /// Its name under a chart's bars, on two lines.
    pub fn chart_label(self) -> &'static str {
        match self {
            Self::Cached => "linkhub\ncached (HIT)",
            Self::FloorPerWorker => "floor, 1 conn per\nworker (reference)",
            Self::FloorPool => "floor, pool\ncheckout",
            Self::FloorPrewarmed => "floor, pool conns\non the main thread",
            Self::CacheOff => "linkhub\ncache off",
            Self::Healthz => "linkhub\n/healthz",
            Self::BareHealthz => "bare actix-web\n/healthz",
        }
    }
}

/// One read target's runs and what Redis spent on each.
#[derive(Debug, Clone)]
pub struct ReadRuns {
    pub target: ReadTarget,
    pub runs: Vec<WrkResult>,
    pub redis: Vec<RedisCost>,
}

/// Writes at one keyspace size: the latency runs, then the invalidation cost.
#[derive(Debug, Clone, Default)]
pub struct WriteLevel {
    pub unrelated_keys: u64,
    pub keys_in_redis: u64,
    /// wrk's PATCH runs (writes only).
    pub runs: Vec<WrkResult>,
    /// Redis's cost per PATCH over those runs, the purges they queued included.
    pub redis_per_write: RedisCost,
    /// Sequential profile writes, each followed by the read that re-caches it.
    pub invalidation: Invalidation,
}

/// Redis's cost of a profile write followed by a re-caching read, with the
/// background purge it queued; Redis's idle CPU over the same time subtracted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Invalidation {
    pub writes: u64,
    /// Re-reads answered `MISS` (each should: the write invalidated it).
    pub misses: u64,
    pub per_write: RedisCost,
    pub seconds: f64,
    /// What Redis spent a second in the idle window before (subtracted from
    /// `per_write`'s CPU): a janitor still walking after earlier writes.
    pub idle_per_sec: RedisCost,
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
    /// Report section 1.
    pub reads: Vec<ReadRuns>,
    /// Server-side X-Cache of the cached-read runs: (hits, misses).
    pub reads_cache: (f64, f64),
    /// Report section 2, one per keyspace level.
    pub writes: Vec<WriteLevel>,
    /// Report section 3: PostgreSQL loads per burst: one instance; two instances (a, b).
    pub stampede_one: Vec<f64>,
    pub stampede_two: Vec<(f64, f64)>,
    /// Report section 4: per rep (server hit ratio, client hit ratio, writes, stale reads, requests).
    pub mixed: Vec<MixedRun>,
    /// Other users' profiles still HIT after a user's writes: (hits, reads) per rep.
    pub kept: Vec<(u64, u64)>,
    /// Report section 5: per rep (idle KiB, peak KiB, requests/s); and one RSS series (s, KiB).
    pub rss: Vec<RssRun>,
    pub rss_series: Vec<(f64, f64)>,
    pub machine: Vec<(String, String)>,
    /// RSS of the instance that served the seeding, after it.
    pub seed_rss_kib: u64,
    /// `/proc/loadavg` at the start of each part (other work on the machine).
    pub load: Vec<(String, String)>,
}

impl Results {
    pub fn read(&self, target: ReadTarget) -> Option<&ReadRuns> {
        self.reads.iter().find(|r| r.target == target)
    }
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

    /// Starts the floor binary in one of its connection layouts.
    async fn start_floor(
        &self,
        client: &reqwest::Client,
        name: &str,
        prewarm: &str,
        connection: &str,
    ) -> Result<(Proc, String), String> {
        let port = free_port()?;
        let mut cmd = Command::new(sibling_binary("floor")?);
        cmd.env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", &self.redis_url)
            .env("FLOOR_PREWARM", prewarm)
            .env("FLOOR_CONNECTION", connection);
        let proc = Proc::spawn(name, cmd, &self.work.join(format!("{name}.log")))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_until(
            client,
            &format!("{url}/healthz"),
            Duration::from_secs(20),
            |_| true,
        )
        .await?;
        Ok((proc, url))
    }
}

/// The running system a benchmark measures, started by [`Bench::start`] and
/// stopped (every process killed, the database dropped) when dropped.
struct Bench {
    args: BenchArgs,
    work: PathBuf,
    env: Env,
    client: reqwest::Client,
    redis: redis::aio::MultiplexedConnection,
    api: Api,
    cached: Proc,
    cached_url: String,
    uncached_url: String,
    floor_pool_url: String,
    floor_prewarmed_url: String,
    floor_per_worker_url: String,
    hot: String,
    hot_path: String,
    /// Instances started by a comparison for the rest of the run.
    more: Vec<Proc>,
    /// Held so they are killed when the run ends. Fields drop in this order:
    /// the processes first, the database last.
    _others: Vec<Proc>,
    _redis_server: RedisServer,
    _database: DropDatabase,
}

/// Runs the suite: each comparison in turn, then the report and its charts.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    let started = Instant::now();
    let mut results = Results {
        args_reps: args.reps,
        secs: args.secs,
        load_secs: args.load_secs,
        connections: args.connections,
        users: args.users,
        machine: machine(),
        ..Results::default()
    };
    let parts = args.parts.clone();
    let mut bench = Bench::start(args, &mut results).await?;
    for (n, part) in Part::ALL.into_iter().enumerate() {
        if !parts.contains(&part) {
            continue;
        }
        results.load.push((format!("before {}", n + 1), loadavg()));
        match part {
            Part::Reads => compare_profile_reads(&mut bench, &mut results).await?,
            Part::Memory => measure_memory_under_profiles(&mut bench, &mut results).await?,
            Part::Mixed => measure_hit_ratio_under_mixed(&mut bench, &mut results).await?,
            Part::Stampede => count_stampede_loads(&mut bench, &mut results).await?,
            Part::Writes => compare_writes_as_the_keyspace_grows(&mut bench, &mut results).await?,
        }
    }
    results.load.push(("end".into(), loadavg()));

    let args = &bench.args;
    report::write(args, &results, started.elapsed())?;
    // The charts need every comparison's figures.
    let charts = Part::ALL.iter().all(|part| parts.contains(part));
    if charts {
        charts::draw(&args.out, &results)?;
    }
    println!(
        "bench: wrote {}{} in {:.0} s",
        args.out.join("BENCHMARKS.md").display(),
        if charts { " and its charts" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

impl Bench {
    /// Starts a private Redis, a fresh database, seeds it through a linkhub
    /// of its own, then starts the measured instances and the floors, and
    /// checks that the floor answers the hot profile's body byte for byte.
    async fn start(args: BenchArgs, results: &mut Results) -> Result<Self, String> {
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

        // A private Redis: the keyspace comparison fills it with millions of keys.
        let redis_server = RedisOptions::new()
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&work)
            .log_to(work.join("redis.log"))
            .start()
            .await
            .map_err(|e| format!("private redis-server: {e}"))?;
        let redis_url = redis_server.url();
        let redis_client = redis::Client::open(redis_url.as_str()).map_err(|e| e.to_string())?;
        let mut redis = connect_redis(&redis_client).await?;

        let db_name = format!("linkhub_bench_{}", std::process::id());
        let env = Env {
            linkhub: sibling_binary("linkhub")?,
            database_url: format!("{}/{db_name}", args.postgres.trim_end_matches('/')),
            redis_url,
            work: work.clone(),
        };
        let database = DropDatabase {
            server: args.postgres.clone(),
            name: db_name.clone(),
        };
        database.drop_now();

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
        let (cached, cached_url) = env
            .start(
                &client,
                "linkhub-cached",
                &[("MIGRATE_ON_START", "false")],
                true,
            )
            .await?;
        let (uncached, uncached_url) = env
            .start(
                &client,
                "linkhub-cache-off",
                &[("CACHE_ENABLED", "false"), ("MIGRATE_ON_START", "false")],
                false,
            )
            .await?;
        // The floor through its pool; the same with the pool's connections
        // opened on the main thread (as linkhub's start-up opens some of its
        // own); and without a pool checkout per request.
        let (floor_pool, floor_pool_url) = env.start_floor(&client, "floor", "0", "pool").await?;
        let (floor_prewarmed, floor_prewarmed_url) = env
            .start_floor(&client, "floor-prewarmed", "8", "pool")
            .await?;
        let (floor_per_worker, floor_per_worker_url) = env
            .start_floor(&client, "floor-per-worker", "0", "per-worker")
            .await?;

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
            .query_async(&mut redis)
            .await
            .map_err(|e| e.to_string())?;
        for floor in [&floor_pool_url, &floor_prewarmed_url, &floor_per_worker_url] {
            let floor_body = client
                .get(format!("{floor}{hot_path}"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            if floor_body.as_ref() != body.as_slice() {
                return Err(format!(
                    "the floor at {floor} does not answer the profile body linkhub answers"
                ));
            }
        }
        Ok(Self {
            args,
            work,
            env,
            client,
            redis,
            api,
            cached,
            cached_url,
            uncached_url,
            floor_pool_url,
            floor_prewarmed_url,
            floor_per_worker_url,
            hot,
            hot_path,
            more: Vec::new(),
            _others: vec![uncached, floor_pool, floor_prewarmed, floor_per_worker],
            _redis_server: redis_server,
            _database: database,
        })
    }

    fn url(&self, target: ReadTarget) -> String {
        let hot = &self.hot_path;
        match target {
            ReadTarget::Cached => format!("{}{hot}", self.cached_url),
            ReadTarget::FloorPerWorker => format!("{}{hot}", self.floor_per_worker_url),
            ReadTarget::FloorPool => format!("{}{hot}", self.floor_pool_url),
            ReadTarget::FloorPrewarmed => format!("{}{hot}", self.floor_prewarmed_url),
            ReadTarget::CacheOff => format!("{}{hot}", self.uncached_url),
            ReadTarget::Healthz => format!("{}/healthz", self.cached_url),
            ReadTarget::BareHealthz => format!("{}/healthz", self.floor_pool_url),
        }
    }

    /// Redis's counters now.
    async fn redis_sample(&mut self) -> Result<RedisSample, String> {
        RedisSample::take(&mut self.redis).await
    }
}

/// Cached reads against their floors, cache off, and `/healthz` against
/// bare actix-web's; Redis's cost per request of each.
async fn compare_profile_reads(bench: &mut Bench, results: &mut Results) -> Result<(), String> {
    let args = bench.args.clone();
    println!(
        "bench: 1/5 profile reads, {} connections, {} x {} s",
        args.connections, args.reps, args.secs
    );
    for target in ReadTarget::ALL {
        wrk::run(
            &bench.work,
            &bench.url(target),
            Load::Get,
            2,
            args.connections,
            3,
        )?;
    }
    let mut reads: Vec<ReadRuns> = ReadTarget::ALL
        .iter()
        .map(|&target| ReadRuns {
            target,
            runs: Vec::new(),
            redis: Vec::new(),
        })
        .collect();
    let before = scrape(&bench.client, &bench.cached_url).await?;
    for rep in 0..args.reps {
        for read in &mut reads {
            let url = bench.url(read.target);
            let redis_before = bench.redis_sample().await?;
            let r = wrk::run(&bench.work, &url, Load::Get, 2, args.connections, args.secs)?;
            let cost = (bench.redis_sample().await? - redis_before).per_request(r.requests);
            println!(
                "bench:   rep {} {}: {:.0} req/s, p50 {} us, p99 {} us, errors {}; Redis {:.2} us CPU, {:.2} commands, {:.0} bytes out per request",
                rep + 1,
                read.target.label(),
                r.rps(),
                r.p50_us,
                r.p99_us,
                r.errors(),
                cost.cpu_us,
                cost.commands,
                cost.output_bytes
            );
            read.runs.push(r);
            read.redis.push(cost);
        }
    }
    let after = scrape(&bench.client, &bench.cached_url).await?;
    results.reads_cache = (
        delta(&before, &after, "hit"),
        delta(&before, &after, "miss") + delta(&before, &after, "bypass"),
    );
    results.reads = reads;
    bench.cached.check_running()
}

/// Resident memory under the profiles load (also warms the cache for the
/// hit-ratio runs).
async fn measure_memory_under_profiles(
    bench: &mut Bench,
    results: &mut Results,
) -> Result<(), String> {
    let args = bench.args.clone();
    println!(
        "bench: 2/5 resident memory under the profiles scenario, {} x {} s",
        args.reps, args.load_secs
    );
    for rep in 0..args.reps {
        let idle = procs::rss_kib(bench.cached.pid()).unwrap_or(0);
        let before = scrape(&bench.client, &bench.cached_url).await?;
        let mut goose = goose_run(
            &bench.cached_url,
            "profiles",
            64,
            args.load_secs,
            args.users,
            &bench.work,
            rep,
        )?;
        let t0 = Instant::now();
        let mut peak = idle;
        let mut samples = Vec::new();
        while goose.check_running().is_ok() {
            if let Some(kib) = procs::rss_kib(bench.cached.pid()) {
                peak = peak.max(kib);
                samples.push((t0.elapsed().as_secs_f64(), kib as f64));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            if t0.elapsed() > Duration::from_secs(args.load_secs + 120) {
                return Err("the profiles run did not end".to_owned());
            }
        }
        drop(goose);
        let after = scrape(&bench.client, &bench.cached_url).await?;
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
    Ok(())
}

/// Hit ratio under mixed, and other users' hits kept after writes.
async fn measure_hit_ratio_under_mixed(
    bench: &mut Bench,
    results: &mut Results,
) -> Result<(), String> {
    let args = bench.args.clone();
    println!(
        "bench: 3/5 hit ratio under the mixed scenario, {} x {} s",
        args.reps, args.load_secs
    );
    for rep in 0..args.reps {
        let before = scrape(&bench.client, &bench.cached_url).await?;
        let goose = goose_run(
            &bench.cached_url,
            "mixed",
            32,
            args.load_secs,
            args.users,
            &bench.work,
            100 + rep,
        )?;
        let summary = wait_goose(goose, &bench.work, 100 + rep, args.load_secs).await?;
        let after = scrape(&bench.client, &bench.cached_url).await?;
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
        let kept = hits_kept_after_writes(&bench.api, args.users, rep).await?;
        println!(
            "bench:   rep {}: {} of {} other profiles still HIT after the writes",
            rep + 1,
            kept.0,
            kept.1
        );
        results.kept.push(kept);
    }
    Ok(())
}

/// Stampede: 100 concurrent GETs of a just-invalidated hot profile, on
/// one instance and split over two.
async fn count_stampede_loads(bench: &mut Bench, results: &mut Results) -> Result<(), String> {
    println!("bench: 4/5 stampede");
    let (second, second_url) = bench
        .env
        .start(
            &bench.client,
            "linkhub-cached-2",
            &[("MIGRATE_ON_START", "false")],
            true,
        )
        .await?;
    bench.more.push(second);
    let api = &bench.api;
    let owner_token = api.login(&bench.hot, data::PASSWORD).await?;
    let owner_id = api
        .profile(&bench.hot)
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
    let cached_url = bench.cached_url.as_str();
    for base in [cached_url, second_url.as_str()] {
        join_all((0..100).map(|_| burst_client.get(format!("{base}/healthz")).send())).await;
    }
    for rep in 0..bench.args.reps.max(5) {
        let one = stampede(
            api,
            &burst_client,
            &owner_token,
            owner_id,
            &[cached_url],
            &bench.hot_path,
            rep,
        )
        .await?;
        let two = stampede(
            api,
            &burst_client,
            &owner_token,
            owner_id,
            &[cached_url, second_url.as_str()],
            &bench.hot_path,
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
    Ok(())
}

/// Writes as the Redis keyspace grows: at each level of unrelated keys,
/// the write latency under wrk and Redis's cost per write, then the
/// invalidation cost of a write followed by the read that re-caches.
async fn compare_writes_as_the_keyspace_grows(
    bench: &mut Bench,
    results: &mut Results,
) -> Result<(), String> {
    let args = bench.args.clone();
    println!(
        "bench: 5/5 writes with {:?} unrelated keys in Redis",
        args.keyspaces
    );
    let mut writers = Vec::new();
    for k in 0..8 {
        let i = args.users - 1 - k;
        let token = bench.api.login(&data::username(i), data::PASSWORD).await?;
        let id = bench
            .api
            .profile(&data::username(i))
            .await?
            .ok_or("a writer's profile is missing")?
            .user
            .id;
        writers.push((id, token));
    }
    let script = wrk::patch_bio_script(&writers);
    let write_url = format!("{}/", bench.cached_url);
    for &level in &args.keyspaces {
        if level > 0 {
            let t0 = Instant::now();
            let () = redis::cmd("DEBUG")
                .arg("POPULATE")
                .arg(level)
                .arg("unrelated")
                .arg(64)
                .query_async(&mut bench.redis)
                .await
                .map_err(|e| format!("DEBUG POPULATE: {e}"))?;
            println!(
                "bench:   DEBUG POPULATE {level} took {:.1} s",
                t0.elapsed().as_secs_f64()
            );
        }
        let keys: u64 = redis::cmd("DBSIZE")
            .query_async(&mut bench.redis)
            .await
            .map_err(|e| e.to_string())?;
        wrk::run(&bench.work, &write_url, Load::Script(&script), 1, 4, 2)?;
        wait_for_purges(bench).await?;
        let redis_before = bench.redis_sample().await?;
        let mut runs = Vec::new();
        for rep in 0..args.reps {
            let r = wrk::run(
                &bench.work,
                &write_url,
                Load::Script(&script),
                1,
                4,
                args.secs,
            )?;
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
        wait_for_purges(bench).await?;
        let writes: u64 = runs.iter().map(|r| r.requests).sum();
        let redis_per_write = (bench.redis_sample().await? - redis_before).per_request(writes);
        let invalidation =
            invalidation_cost(bench, &writers[0], &data::username(args.users - 1), level).await?;
        println!(
            "bench:   {level} unrelated keys: Redis per PATCH {:.1} us CPU, {:.2} SCAN; per write + re-read {:.1} us CPU ({:.1} us in SCAN), {:.2} SCAN, {:.1} commands ({} of {} re-reads missed); idle before: {:.1} SCAN/s, {:.1} us SCAN CPU/s",
            redis_per_write.cpu_us,
            redis_per_write.scans,
            invalidation.per_write.cpu_us,
            invalidation.per_write.scan_cpu_us,
            invalidation.per_write.scans,
            invalidation.per_write.commands,
            invalidation.misses,
            invalidation.writes,
            invalidation.idle_per_sec.scans,
            invalidation.idle_per_sec.scan_cpu_us
        );
        results.writes.push(WriteLevel {
            unrelated_keys: level,
            keys_in_redis: keys,
            runs,
            redis_per_write,
            invalidation,
        });
    }
    bench.cached.check_running()
}

/// Redis's cost of `--invalidation-writes` profile writes by `writer` (id,
/// token), one at a time, each followed by a read of its profile (which
/// re-caches it), until the purges they queued are done; Redis's idle CPU
/// rate, measured just before, is subtracted for the same time.
async fn invalidation_cost(
    bench: &mut Bench,
    writer: &(i64, String),
    username: &str,
    level: u64,
) -> Result<Invalidation, String> {
    let path = format!("/api/v1/profiles/{username}");
    let idle_for = Duration::from_secs(2);
    let idle_before = bench.redis_sample().await?;
    tokio::time::sleep(idle_for).await;
    let idle = bench.redis_sample().await? - idle_before;
    let idle_cpu_per_second = idle.cpu_seconds / idle_for.as_secs_f64();

    let t0 = Instant::now();
    let before = bench.redis_sample().await?;
    let mut misses = 0;
    let writes = bench.args.invalidation_writes as u64;
    for n in 0..writes {
        bench
            .api
            .patch_user(
                &writer.1,
                writer.0,
                &json!({ "bio": format!("invalidation {level} {n}") }),
            )
            .await?;
        let (status, cache, _) = bench.api.get(&path).await?;
        if status != 200 {
            return Err(format!("GET {path} after a write answered {status}"));
        }
        misses += u64::from(cache == "MISS");
    }
    wait_for_purges(bench).await?;
    let mut spent = bench.redis_sample().await? - before;
    let seconds = t0.elapsed().as_secs_f64();
    spent.cpu_seconds = (spent.cpu_seconds - idle_cpu_per_second * seconds).max(0.0);
    Ok(Invalidation {
        writes,
        misses,
        per_write: spent.per_request(writes),
        seconds,
        idle_per_sec: idle.per_request(idle_for.as_secs().max(1)),
    })
}

/// Waits until the purges that earlier writes queued are done (at most a
/// minute): Redis has served no SCAN for a second (a purge that SCANs the
/// keyspace), or, in a second, only SCAN steps at a janitor's pace (at most
/// [`JANITOR_SCANS_PER_SEC`]) and no other command but the benchmark's own
/// `INFO` (a purge through the index is a few scripts, done in
/// milliseconds; a budgeted janitor walks on at a fixed rate, whatever the
/// writes, for as long as the keyspace takes).
async fn wait_for_purges(bench: &mut Bench) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = bench.redis_sample().await?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = bench.redis_sample().await?;
        let step = now - last;
        let others = step
            .commands
            .saturating_sub(step.scans)
            .saturating_sub(step.infos);
        let quiet = step.scans == 0 || (others == 0 && step.scans <= JANITOR_SCANS_PER_SEC);
        if quiet || Instant::now() > deadline {
            return Ok(());
        }
        last = now;
    }
}

/// SCAN steps a second that [`wait_for_purges`] takes for a budgeted janitor
/// rather than a purge: linkhub's default budget (2000 keys a second) takes
/// 10; a purge that SCANs the keyspace takes hundreds or thousands.
const JANITOR_SCANS_PER_SEC: u64 = 50;

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
