//! Redis topology as production runs it, each on private redis-server
//! processes: a replica that stops acknowledging, two replicas per master and
//! a takeover by the one that lags, a slot migrated under load, nodes
//! announced by host name, recovery through a slow link.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// `REDIS_TIMEOUT_MS` of these tests' instances: short, as in production,
/// long enough for a loaded test machine.
const TIMEOUT: Duration = Duration::from_millis(500);

async fn instance_on(cluster: &ReplicatedCluster, database_url: &str, prefix: &str) -> TestApp {
    let urls = cluster.urls();
    let app = spawn_app_on(database_url, prefix, |s| {
        s.redis_cluster_urls = urls;
        s.redis_timeout = TIMEOUT;
    })
    .await;
    wait_cache_ok(&app).await;
    app
}

/// Owners whose `user:<id>` namespace lives on master `master` and on the
/// others, at least `on` and `off` of each (registering more as needed).
async fn owners_by_shard(
    app: &TestApp,
    cluster: &ReplicatedCluster,
    master: usize,
    on: usize,
    off: usize,
) -> (Vec<Owner>, Vec<Owner>) {
    let (mut here, mut elsewhere) = (Vec::new(), Vec::new());
    while here.len() < on || elsewhere.len() < off {
        let owner = Owner::create(app, 0, 0).await;
        if cluster.master_of_tag(&format!("user:{}", owner.id())) == master {
            here.push(owner);
        } else {
            elsewhere.push(owner);
        }
    }
    (here, elsewhere)
}

/// `X-Cache` counts of reads.
#[derive(Debug, Default)]
struct Served(HashMap<String, usize>);

impl Served {
    fn add(&mut self, x_cache: &str) {
        *self.0.entry(x_cache.to_owned()).or_default() += 1;
    }
    fn of(&self, x_cache: &str) -> usize {
        self.0.get(x_cache).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// Rereads `path` on `app` until it is a HIT that the truth agrees with;
/// answers how long that took, or panics after `within`.
async fn until_hit(app: &TestApp, truth: &TestApp, path: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = assert_fresh(app, truth, path, "until cached again").await;
        if got.x_cache == "HIT" {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "GET {path} was not cached again within {within:?} (last: {})",
            got.x_cache
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One replica (of master 0) stops acknowledging while 16 clients write to
/// users on every shard: the users nobody wrote, on the healthy shards, stay
/// HITs, the breaker never opens, writes do not wait on the sick replica
/// more than once per second, only the sick shard's namespaces are owed; once
/// the replica is back, everything is cached again within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_replica_costs_only_the_namespaces_whose_bumps_it_holds() {
    let cluster = ReplicatedCluster::start().await;
    let database_url = create_test_database().await;
    let app = instance_on(&cluster, &database_url, &unique_name("sick")).await;
    let truth = spawn_truth(&app).await;
    let (sick_writers, mut healthy) = owners_by_shard(&app, &cluster, 0, 8, 16).await;
    let untouched = healthy.split_off(8);
    let healthy_writers = healthy;
    let untouched_paths: Vec<String> = untouched.iter().map(Owner::user_path).collect();
    warm_all(&app, &untouched_paths).await;
    let failures = || app.metric_sum("linkhub_cache_version_bump_failures_total", &[]);
    let failures_before = failures().await;

    // `replicas[0]` replicates `masters[0]`.
    cluster.break_replication_links_of(&[0]).await;

    const WRITING: Duration = Duration::from_secs(6);
    let started = Instant::now();
    let writers = sick_writers
        .iter()
        .chain(&healthy_writers)
        .enumerate()
        .map(|(n, owner)| {
            let app = &app;
            async move {
                let mut took = Vec::new();
                let mut round = 0;
                while started.elapsed() < WRITING {
                    let at = Instant::now();
                    owner
                        .patch_user(app, json!({ "bio": format!("writer {n} round {round}") }))
                        .await;
                    took.push(at.elapsed());
                    round += 1;
                }
                took
            }
        });
    let reader = async {
        let mut served = Served::default();
        let mut breaker_opened = 0;
        while started.elapsed() < WRITING {
            for path in &untouched_paths {
                served.add(&fetch(&app, path).await.x_cache);
            }
            if app.metric_sum("linkhub_cache_breaker_open", &[]).await != 0.0 {
                breaker_opened += 1;
            }
        }
        (served, breaker_opened)
    };
    let (took, (served, breaker_opened)) =
        tokio::join!(futures_util::future::join_all(writers), reader);
    let mut took: Vec<Duration> = took.into_iter().flatten().collect();
    took.sort();
    let owed_bumps = failures().await - failures_before;

    // What the writes left behind is fresh; the sick shard's users are
    // read with BYPASS (owed), the healthy ones are not.
    let mut sick_served = Served::default();
    for owner in &sick_writers {
        let got = assert_fresh(&app, &truth, &owner.user_path(), "replica sick").await;
        sick_served.add(&got.x_cache);
    }
    for owner in &healthy_writers {
        let got = assert_fresh(&app, &truth, &owner.user_path(), "replica sick").await;
        assert_ne!(
            got.x_cache, "BYPASS",
            "a user on a healthy shard is read with BYPASS"
        );
    }
    // What this instance owes is bounded by what was written on the sick
    // shard: its users, their profiles, the users list's two namespaces.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let owed: Vec<String> = query_strings(
        &database_url,
        "SELECT coalesce(max(owed), -1)::text AS value FROM cache_instances WHERE cache = 'ok'",
    )
    .await;

    cluster.heal_replication_links_of(&[0]).await;
    let mut healed_in = Duration::ZERO;
    for owner in &sick_writers {
        healed_in = healed_in
            .max(until_hit(&app, &truth, &owner.user_path(), Duration::from_secs(15)).await);
    }
    println!(
        "topology: sick replica: {} writes, p50 {:?} p99 {:?} max {:?}; {owed_bumps} owed bumps; \
         untouched healthy users {served:?}; sick-shard users after {sick_served:?}; \
         owed namespaces {owed:?}; all cached again {healed_in:?} after the heal",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or_default(),
    );
    assert!(owed_bumps > 0.0, "the sick shard's bumps must be owed");
    assert_eq!(breaker_opened, 0, "the breaker opened for one sick replica");
    assert_eq!(
        served.of("BYPASS"),
        0,
        "users nobody wrote, on healthy shards, were read with BYPASS: {served:?}"
    );
    assert_eq!(served.of("HIT"), served.total(), "{served:?}");
    assert_eq!(
        sick_served.of("BYPASS"),
        sick_writers.len(),
        "the sick shard's written users are owed: {sick_served:?}"
    );
    let owed: usize = owed
        .first()
        .and_then(|n| n.parse().ok())
        .expect("cache_instances reports what the instance owes");
    let mut written_on_sick = ["users", "users_added"]
        .into_iter()
        .filter(|tag| cluster.master_of_tag(tag) == 0)
        .count();
    for owner in sick_writers.iter().chain(&healthy_writers) {
        for tag in [
            format!("user:{}", owner.id()),
            format!("profile:{}", owner.username),
        ] {
            written_on_sick += usize::from(cluster.master_of_tag(&tag) == 0);
        }
    }
    assert!(
        owed <= written_on_sick,
        "{owed} namespaces owed; {written_on_sick} were written on the sick shard"
    );
    assert!(
        percentile(&took, 0.5) < TIMEOUT,
        "writes wait on the sick replica: p50 {:?}",
        percentile(&took, 0.5)
    );
}

/// Two replicas per master, one of master 0's stops acknowledging: a write
/// on that shard is owed (BYPASS), not counted on the word of the healthy
/// replica (`WAIT 1` would), so when the master dies and the lagging replica
/// takes over, every read still shows the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_by_the_replica_that_lags_serves_only_fresh_data() {
    let mut cluster = ReplicatedCluster::start_with(Layout {
        replicas: 2,
        hostname: None,
    })
    .await;
    let database_url = create_test_database().await;
    let app = instance_on(&cluster, &database_url, &unique_name("lag")).await;
    let truth = spawn_truth(&app).await;
    let (mut on_sick, _) = owners_by_shard(&app, &cluster, 0, 1, 0).await;
    let owner = on_sick.remove(0);
    let path = owner.user_path();
    warm(&app, &path).await;
    let lagging = cluster
        .replica_of
        .iter()
        .position(|&m| m == 0)
        .expect("master 0 has replicas");
    cluster.break_replication_links_of(&[lagging]).await;

    let bio = "written while one replica lagged";
    owner.patch_user(&app, json!({ "bio": bio })).await;
    let before = assert_fresh(&app, &truth, &path, "one replica lags").await;
    assert_eq!(
        before.x_cache, "BYPASS",
        "a bump one replica lacks is owed, whatever the other acknowledged"
    );

    cluster.masters[0].server.kill();
    cli(
        cluster.replicas[lagging].server.port(),
        &["cluster", "failover", "takeover"],
    );
    let took_over = Instant::now();
    let mut served = Served::default();
    while took_over.elapsed() < Duration::from_secs(6) || served.of("HIT") == 0 {
        assert!(
            took_over.elapsed() < Duration::from_secs(40),
            "not cached again within 40 s of the takeover: {served:?}"
        );
        let got = assert_fresh(&app, &truth, &path, "after the takeover").await;
        assert_eq!(got.body["data"]["bio"], bio);
        served.add(&got.x_cache);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("topology: takeover by the lagging replica: reads after it {served:?}");
    // The killed master is gone for good; the cluster drops it with the rest.
    let _ = &mut cluster;
}

/// A slot (one user's namespace) moves from one master to another key by
/// key (`CLUSTER SETSLOT … MIGRATING/IMPORTING`, `MIGRATE`) for seconds
/// while that user is written and read: the breaker never opens, every read
/// is fresh, the other users stay HITs, and the moved user is cached again
/// on its new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrating_under_load_does_not_open_the_breaker() {
    let cluster = ReplicatedCluster::start_with(Layout {
        replicas: 0,
        hostname: None,
    })
    .await;
    let database_url = create_test_database().await;
    let app = instance_on(&cluster, &database_url, &unique_name("mig")).await;
    let truth = spawn_truth(&app).await;
    let (mut moving, others) = owners_by_shard(&app, &cluster, 0, 1, 4).await;
    let owner = moving.remove(0);
    let other_paths: Vec<String> = others.iter().map(Owner::user_path).collect();
    warm_all(&app, &other_paths).await;
    warm(&app, &owner.user_path()).await;

    let tag = format!("user:{}", owner.id());
    let (from, to) = (&cluster.masters[0], &cluster.masters[1]);
    let slot = cli(from.server.port(), &["cluster", "keyslot", &tag])
        .trim()
        .to_owned();
    let (from_port, to_port) = (from.server.port(), to.server.port());
    let to_port_arg = to_port.to_string();
    cli(
        to_port,
        &["cluster", "setslot", &slot, "importing", &from.id],
    );
    cli(
        from_port,
        &["cluster", "setslot", &slot, "migrating", &to.id],
    );

    const MIGRATING: Duration = Duration::from_secs(4);
    let started = Instant::now();
    let migrate = async {
        let mut moved = 0;
        loop {
            let keys = cli(from_port, &["cluster", "getkeysinslot", &slot, "1"]);
            let Some(key) = keys.lines().next().filter(|k| !k.is_empty()) else {
                if started.elapsed() >= MIGRATING {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let args = [
                "migrate",
                "127.0.0.1",
                &to_port_arg,
                "",
                "0",
                "5000",
                "keys",
                key,
            ];
            cli(from_port, &args);
            moved += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for master in &cluster.masters {
            cli(
                master.server.port(),
                &["cluster", "setslot", &slot, "node", &to.id],
            );
        }
        moved
    };
    let load = async {
        let (mut served, mut others_served, mut breaker_opened, mut round) =
            (Served::default(), Served::default(), 0, 0);
        while started.elapsed() < MIGRATING + Duration::from_secs(1) {
            owner
                .patch_user(&app, json!({ "bio": format!("moving, round {round}") }))
                .await;
            round += 1;
            for _ in 0..3 {
                let got = assert_fresh(&app, &truth, &owner.user_path(), "slot moving").await;
                served.add(&got.x_cache);
            }
            for path in &other_paths {
                others_served.add(&fetch(&app, path).await.x_cache);
            }
            if app.metric_sum("linkhub_cache_breaker_open", &[]).await != 0.0 {
                breaker_opened += 1;
            }
        }
        (served, others_served, breaker_opened, round)
    };
    let (moved, (served, others_served, breaker_opened, writes)) = tokio::join!(migrate, load);
    // A few topology refreshes later: slots moved between masters that
    // stayed are no failover.
    let after = Instant::now();
    let mut opened_after = 0;
    while after.elapsed() < Duration::from_secs(3) {
        if app.metric_sum("linkhub_cache_breaker_open", &[]).await != 0.0 {
            opened_after += 1;
        }
        assert_fresh(&app, &truth, &owner.user_path(), "slot moved").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cached_in = until_hit(&app, &truth, &owner.user_path(), Duration::from_secs(10)).await;
    println!(
        "topology: slot {slot} migrated key by key ({moved} keys) under {writes} writes: \
         the moving user {served:?}, the others {others_served:?}; cached again {cached_in:?} later"
    );
    assert!(moved > 0, "the slot held the user's keys");
    assert_eq!(breaker_opened, 0, "the breaker opened during the migration");
    assert_eq!(opened_after, 0, "the breaker opened after the migration");
    assert_eq!(
        others_served.of("BYPASS"),
        0,
        "users on other slots bypassed: {others_served:?}"
    );
}

/// Cluster nodes announced by host name (`cluster-announce-hostname`,
/// `cluster-preferred-endpoint-type hostname`): the cache is trusted, and
/// writes and reads go through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_announced_by_host_name_are_trusted() {
    let cluster = ReplicatedCluster::start_with(Layout {
        replicas: 1,
        hostname: Some("localhost"),
    })
    .await;
    let nodes = cli(cluster.masters[0].server.port(), &["cluster", "nodes"]);
    assert!(
        nodes.lines().all(|l| l.contains(",localhost ")),
        "every node announces its host name: {nodes}"
    );
    let database_url = create_test_database().await;
    // `instance_on` waits for `/readyz` to say the cache is trusted.
    let app = instance_on(&cluster, &database_url, &unique_name("host")).await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 1, 0).await;
    let paths = owner.own_reads();
    warm_all(&app, &paths).await;
    owner
        .patch_user(&app, json!({ "bio": "by host name" }))
        .await;
    assert_eq!(
        assert_fresh(&app, &truth, &owner.user_path(), "host names")
            .await
            .x_cache,
        "MISS",
        "the bump was delivered (waited for by the replica) and the read cached"
    );
    assert_eq!(fetch(&app, &owner.user_path()).await.x_cache, "HIT");
    assert_eq!(
        app.metric_sum("linkhub_cache_version_bump_failures_total", &[])
            .await,
        0.0
    );
}

/// Recovery replays an outbox of 20 000 rows through a link that delays
/// every chunk Redis sends back: a step that does not finish within its
/// bound keeps what the steps before it delivered and is tried again
/// smaller, so the outbox drains and the cache is trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_gets_through_a_slow_link() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let database_url = create_test_database().await;
    execute_sql(
        &database_url,
        "INSERT INTO cache_outbox (namespace) \
         SELECT 'user:' || g FROM generate_series(1000000, 1019999) g",
    )
    .await;
    proxy.set_delay(Duration::from_millis(40));
    let started = Instant::now();
    let app = spawn_app_on(&database_url, &unique_name("slow"), |s| {
        s.redis_url = format!("redis://{}", proxy.addr());
        s.redis_timeout = Duration::from_millis(250);
    })
    .await;
    let outbox = || {
        query_strings(
            &database_url,
            "SELECT count(*)::text AS value FROM cache_outbox",
        )
    };
    loop {
        let left: Vec<String> = outbox().await;
        let ready = app.get("/readyz").await.json::<serde_json::Value>().await;
        if left.first().map(String::as_str) == Some("0")
            && ready.is_ok_and(|body| body["cache"] == "ok")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the outbox did not drain through the slow link within 60 s ({left:?} rows left)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "topology: 20 000 outbox rows replayed through a 40 ms-per-chunk link in {:?}",
        started.elapsed()
    );
    let owner = Owner::create(&app, 0, 0).await;
    let truth = spawn_truth(&app).await;
    warm(&app, &owner.user_path()).await;
    owner.patch_user(&app, json!({ "bio": "slow link" })).await;
    assert_fresh(&app, &truth, &owner.user_path(), "slow link").await;
}
