//! Nothing acknowledged is lost when Redis masters fail over: a bump counts
//! once a replica acknowledges it (`WAIT`), and one no replica took is owed. A
//! private 3-master + 3-replica cluster whose replication links are broken
//! takes a write, loses its masters and lets the replicas take over; every
//! read afterwards, on the writer and on another instance, shows the write.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// How long reads are checked after the takeover, at the least: a bump lost
/// with the old masters would leave the data from before the write readable
/// as `HIT` until its TTL, so any window of this length would show it.
const CHECKED_FOR: Duration = Duration::from_secs(8);

/// An instance on `cluster`, whose Redis timeout is short enough that the dead
/// masters cost a read little, long enough for a loaded test machine.
async fn instance_on(cluster: &ReplicatedCluster, database_url: &str, prefix: &str) -> TestApp {
    let urls = cluster.urls();
    let app = spawn_app_on(database_url, prefix, |s| {
        s.redis_cluster_urls = urls;
        s.redis_timeout = Duration::from_millis(500);
    })
    .await;
    wait_cache_ok(&app).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_after_an_unreplicated_write_serves_only_fresh_data() {
    let mut cluster = ReplicatedCluster::start().await;
    let database_url = create_test_database().await;
    let prefix = unique_name("fo");
    let writer = instance_on(&cluster, &database_url, &prefix).await;
    let reader = instance_on(&cluster, &database_url, &prefix).await;
    let truth = spawn_truth(&writer).await;
    let owner = Owner::create(&writer, 1, 1).await;
    let paths = owner.own_reads();
    for app in [&writer, &reader] {
        warm_all(app, &paths).await;
    }

    // 1. The replicas stop receiving writes; the cluster still counts them alive.
    cluster.break_replication_links().await;
    // 2. A write answers 200. No replica can acknowledge its bumps, so they
    // should be owed: both instances then read the user with BYPASS (the
    // reader once it handled the writer's NOTIFY). Checked after the
    // failover, so that a build that counts a bump without a replica fails on
    // the stale read the failover then serves.
    let bio = "written before the failover";
    owner.patch_user(&writer, json!({ "bio": bio })).await;
    let owed = writer
        .metric_sum("linkhub_cache_version_bump_failures_total", &[])
        .await;
    let announced = owed_notification_handled(&reader).await;
    let mut served_before = Vec::new();
    for app in [&writer, &reader] {
        let got = assert_fresh(app, &truth, &owner.user_path(), "before the failover").await;
        served_before.push(got.x_cache);
    }
    // 3. The masters die; every replica takes over, without the write's bumps.
    cluster.kill_masters();
    cluster.take_over().await;
    let took_over = Instant::now();

    // Every read from now on shows the write, however it is served.
    let mut trusted_at: [Option<Duration>; 2] = [None, None];
    let mut reads = 0;
    while took_over.elapsed() < CHECKED_FOR || trusted_at.iter().any(Option::is_none) {
        assert!(
            took_over.elapsed() < Duration::from_secs(40),
            "the cache was not trusted again within 40 s of the takeover \
             (writer, reader: {trusted_at:?})"
        );
        for (i, app) in [&writer, &reader].into_iter().enumerate() {
            for path in &paths {
                let got = assert_fresh(app, &truth, path, "after the failover").await;
                reads += 1;
                if *path == owner.user_path() && got.x_cache == "HIT" && trusted_at[i].is_none() {
                    trusted_at[i] = Some(took_over.elapsed());
                }
            }
        }
    }
    assert!(owed > 0.0, "the unreplicated bumps must be owed");
    assert!(
        announced,
        "the owed bumps must be announced to the other instance"
    );
    assert_eq!(
        served_before,
        ["BYPASS", "BYPASS"],
        "owed namespaces are read with BYPASS"
    );
    let user = fetch(&reader, &owner.user_path()).await;
    assert_eq!(user.body["data"]["bio"], bio);
    println!(
        "failover: {reads} fresh reads; the user served as HIT again after \
         {:?} (writer) and {:?} (reader) from the takeover",
        trusted_at[0], trusted_at[1]
    );
}

/// Waits up to 5 s for `app` to handle an owed-bump `NOTIFY`; answers whether it did.
async fn owed_notification_handled(app: &TestApp) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while app
        .metric_sum("linkhub_cache_owed_notify_delay_seconds_count", &[])
        .await
        < 1.0
    {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// A listening connection that goes silent (a half-open TCP connection: no
/// FIN, no RST, no answer) is noticed by the listener's probe within seconds:
/// the cache stops being trusted, and once PostgreSQL answers again, the
/// listener reconnects and recovery replays the outbox before trusting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_listening_connection_is_noticed() {
    let database_url = create_test_database().await;
    let proxy = TcpProxy::start(database_server_addr()).await;
    let through_proxy = database_url_through(&database_url, proxy.addr());
    assert_ne!(
        through_proxy, database_url,
        "the database URL goes through the proxy"
    );
    let app = spawn_app_on(&through_proxy, &unique_name("deaf"), |s| {
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
    })
    .await;
    wait_cache_ok(&app).await;
    let breaker_open = || app.metric_sum("linkhub_cache_breaker_open", &[]);
    assert_eq!(breaker_open().await, 0.0);

    // Every connection through the proxy stays open but nothing comes back.
    proxy.set_delay(Duration::from_secs(3600));
    let silent = Instant::now();
    while breaker_open().await == 0.0 {
        assert!(
            silent.elapsed() < Duration::from_secs(10),
            "a silent listening connection went unnoticed for 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "failover: a silent LISTEN connection noticed after {:?}",
        silent.elapsed()
    );

    // The stuck connections are dropped; new ones answer.
    proxy.set_delay(Duration::ZERO);
    proxy.cut();
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while breaker_open().await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the cache was not trusted again within 20 s of PostgreSQL answering"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One node with a replica: a bump waits for it (`INFO replication` counts
/// it). A replica that does not answer in time (here: `DEBUG SLEEP`) makes
/// the write's bumps owed — BYPASS, fresh — and recovery delivers them once
/// the replica has them again, after which reads are HITs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_waits_for_its_replica() {
    // A replica writes the RDB of its first sync to its directory.
    let dir = ScratchDir::new("linkhub-replica");
    let master = RedisOptions::new()
        .arg("--dir")
        .arg(dir.0.as_os_str())
        .start()
        .await
        .expect("start a master");
    let replica = RedisOptions::new()
        .arg("--dir")
        .arg(dir.0.as_os_str())
        .args(["--enable-debug-command", "local"])
        .args(["--replicaof", "127.0.0.1", &master.port().to_string()])
        .start()
        .await
        .expect("start a replica");
    // Synced, not only connected: a replica still in its first full sync
    // (diskless, after a 5 s delay by default) acknowledges nothing yet.
    let mut replica_con = redis_connection(&replica.url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(&mut replica_con, "replication", "master_link_status")
        .await
        .as_deref()
        != Some("up")
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app = spawn_app_with(|s| {
        s.redis_url = master.url();
        s.redis_timeout = Duration::from_millis(500);
    })
    .await;
    wait_cache_ok(&app).await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 1, 1).await;
    let path = owner.user_path();
    warm(&app, &path).await;
    let owed = || app.metric_sum("linkhub_cache_version_bump_failures_total", &[]);

    // A healthy replica acknowledges at once: delivered, not owed.
    owner.patch_user(&app, json!({ "bio": "replicated" })).await;
    assert_eq!(owed().await, 0.0, "a replicated bump is delivered");
    assert_eq!(
        assert_fresh(&app, &truth, &path, "replicated")
            .await
            .x_cache,
        "MISS"
    );

    // The replica stops answering for 3 s: the next write's bump is owed.
    let replica_port = replica.port();
    let asleep = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &replica_port.to_string(), "debug", "sleep", "3"])
            .output()
    });
    // Asleep for sure, however slowly redis-cli started: a PING on the
    // replica goes unanswered.
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::time::timeout(
        Duration::from_millis(100),
        redis::cmd("PING").query_async::<String>(&mut replica_con),
    )
    .await
    .is_ok()
    {
        assert!(Instant::now() < deadline, "the replica did not go to sleep");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    owner
        .patch_user(&app, json!({ "bio": "while the replica slept" }))
        .await;
    assert!(owed().await > 0.0, "an unacknowledged bump is owed");
    assert_eq!(
        assert_fresh(&app, &truth, &path, "replica asleep")
            .await
            .x_cache,
        "BYPASS"
    );
    asleep
        .await
        .expect("the sleeping task")
        .expect("redis-cli debug sleep");

    // Recovery delivers it once the replica has it: the cache is used again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = assert_fresh(&app, &truth, &path, "replica awake").await;
        if got.x_cache == "HIT" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the owed bump was not delivered within 10 s of the replica waking"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Measures what waiting for a replica adds to a write (run by hand, on a
/// quiet machine): `cargo test --test api -- --ignored --nocapture
/// write_latency_on_a_cluster_with_replicas`. Sequential `PATCH`es of one
/// user (each bumps its namespaces) on a healthy 3+3 cluster; the same test on
/// a build without the `WAIT` gives the baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn write_latency_on_a_cluster_with_replicas() {
    let cluster = ReplicatedCluster::start().await;
    let database_url = create_test_database().await;
    let app = instance_on(&cluster, &database_url, &unique_name("lat")).await;
    let owner = Owner::create(&app, 1, 1).await;
    let mut took = Vec::new();
    for round in 0..300 {
        let started = Instant::now();
        owner
            .patch_user(&app, json!({ "bio": format!("round {round}") }))
            .await;
        if round >= 50 {
            took.push(started.elapsed());
        }
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    println!(
        "failover: PATCH on a 3+3 cluster, {} writes: mean {mean:?}, p50 {:?}, p90 {:?}, p99 {:?}",
        took.len(),
        at(0.5),
        at(0.9),
        at(0.99)
    );

    // The WAIT alone, on a master with a healthy replica: a write followed by
    // `WAIT 1 <ms>` in one pipeline against the write alone.
    let master = &cluster.masters[0];
    let mut con = cluster.node(master).await;
    let mut key = String::new();
    for n in 0.. {
        let candidate = format!("{{lat{n}}}");
        let moved: redis::RedisResult<i64> = redis::cmd("INCR")
            .arg(&candidate)
            .query_async(&mut con)
            .await;
        if moved.is_ok() {
            key = candidate;
            break;
        }
    }
    let mut alone = Vec::new();
    let mut waited = Vec::new();
    for _ in 0..2000 {
        let started = Instant::now();
        let _: i64 = redis::cmd("INCR")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("INCR");
        alone.push(started.elapsed());
        let started = Instant::now();
        let (_, acks): (i64, i64) = redis::pipe()
            .cmd("INCR")
            .arg(&key)
            .cmd("WAIT")
            .arg(1)
            .arg(250)
            .query_async(&mut con)
            .await
            .expect("INCR + WAIT");
        waited.push(started.elapsed());
        assert_eq!(acks, 1, "the healthy replica acknowledges");
    }
    for times in [&mut alone, &mut waited] {
        times.sort();
    }
    let p = |t: &[Duration], q: f64| t[((t.len() - 1) as f64 * q) as usize];
    println!(
        "failover: a write alone p50 {:?} p99 {:?}; with WAIT 1 p50 {:?} p99 {:?}",
        p(&alone, 0.5),
        p(&alone, 0.99),
        p(&waited, 0.5),
        p(&waited, 0.99)
    );
}
