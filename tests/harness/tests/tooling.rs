//! The harness itself, exercised the way the cache tests use it: a private
//! Redis behind the proxy, cut, restored, delayed, killed and restarted empty.

use std::time::{Duration, Instant};

use linkhub_harness::{RedisOptions, RedisServer, TcpProxy, answers_ping};
use redis::AsyncConnectionConfig;

/// The tooling the cache tests rely on: a private Redis behind the proxy,
/// cut (live connections dropped, new ones black-holed), restored, delayed,
/// killed and restarted empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_tooling_proxy_and_private_redis() {
    let mut server = RedisServer::start().await;
    let proxy = TcpProxy::start(server.addr()).await;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(300)))
        .set_response_timeout(Some(Duration::from_millis(300)));
    let client = redis::Client::open(format!("redis://{}", proxy.addr())).expect("url");
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect through the proxy");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .expect("SET");

    // Cut: the live connection fails, a new one connects but never answers.
    proxy.cut();
    let started = Instant::now();
    let result: redis::RedisResult<String> = redis::cmd("GET").arg("k").query_async(&mut con).await;
    assert!(result.is_err(), "a command on a cut connection must fail");
    assert!(started.elapsed() < Duration::from_secs(2));
    let fresh = client
        .get_multiplexed_async_connection_with_config(&config)
        .await;
    if let Ok(mut fresh) = fresh {
        let result: redis::RedisResult<String> =
            redis::cmd("GET").arg("k").query_async(&mut fresh).await;
        assert!(
            result.is_err(),
            "a new connection must be black-holed while cut"
        );
    }

    // Restore: new connections work again; with a delay, answers come late.
    proxy.restore();
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect after restore");
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(value, "v");
    proxy.set_delay(Duration::from_millis(100));
    let started = Instant::now();
    let slow = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(2)));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&slow)
        .await
        .expect("connect with a delay");
    let started_get = Instant::now();
    let _: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert!(started_get.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(2));
    proxy.set_delay(Duration::ZERO);

    // Kill and restart on the same port: empty.
    server.kill();
    assert!(!answers_ping(server.addr()).await);
    assert!(!server.is_running());
    server.restart().await;
    let direct = redis::Client::open(server.url()).expect("url");
    let mut con = direct
        .get_multiplexed_async_connection_with_config(&slow)
        .await
        .expect("connect to the restarted server");
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(value, None, "a restarted server is empty");
}

/// Extra arguments reach the server (the bench and the rule-5 test need
/// `DEBUG`), and the server answers as soon as `start` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_tooling_redis_with_extra_args() {
    let server = RedisOptions::new()
        .args(["--enable-debug-command", "local"])
        .start()
        .await
        .expect("start redis-server with DEBUG enabled");
    assert!(answers_ping(server.addr()).await);
    let client = redis::Client::open(server.url()).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1000)
        .arg("filler")
        .query_async(&mut con)
        .await
        .expect("DEBUG POPULATE is enabled");
    let size: u64 = redis::cmd("DBSIZE")
        .query_async(&mut con)
        .await
        .expect("DBSIZE");
    assert_eq!(size, 1000);

    // Without the argument, DEBUG is refused: the default is not a silent no-op.
    let plain = RedisServer::start().await;
    let client = redis::Client::open(plain.url()).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let refused: redis::RedisResult<()> = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(10)
        .query_async(&mut con)
        .await;
    assert!(refused.is_err(), "DEBUG must be refused by default");
}
