//! The floor of a cached read on this machine: a minimal actix-web server that
//! answers `GET /api/v1/profiles/{username}` with the body stored at
//! `<FLOOR_KEY_PREFIX>:<username>`, read with one Redis `GET` through a
//! deadpool-redis pool, and `GET /healthz`. Nothing else: no versions, no
//! metrics, no logging. The benchmark compares linkhub's cached profile reads
//! with it.
//!
//! Environment: `BIND_ADDR` (127.0.0.1:8090), `REDIS_URL`
//! (redis://127.0.0.1:6379), `FLOOR_KEY_PREFIX` (floor:profile), `WORKERS`
//! (cores), `REDIS_POOL_SIZE` (8), `REDIS_TIMEOUT_MS` (250), the same pool
//! settings linkhub uses.
//!
//! `FLOOR_PREWARM=N` opens N pool connections on the main thread before
//! serving. A multiplexed Redis connection's driver task stays on the runtime
//! that opened it, so with N = `REDIS_POOL_SIZE` every Redis reply goes
//! through the main thread, as it does in a linkhub whose start-up (ping,
//! recovery) opened the pool's connections; the benchmark measures both.
//!
//! `FLOOR_CONNECTION=per-worker` skips the pool: each actix worker opens one
//! multiplexed connection on its own runtime, on its first request, and every
//! request sends its `GET` on a clone of it. A deadpool-redis checkout costs
//! a round trip of its own (its `recycle` sends `UNWATCH` + `PING`), so this
//! is the floor of a cached read without that round trip.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, HttpResponse, HttpServer, web};
use deadpool_redis::{Manager, Pool, Runtime};
use redis::AsyncConnectionConfig;

struct Floor {
    pool: Pool,
    prefix: String,
}

async fn profile(floor: web::Data<Floor>, username: web::Path<String>) -> HttpResponse {
    let key = format!("{}:{}", floor.prefix, username.as_str());
    let mut conn = match floor.pool.get().await {
        Ok(conn) => conn,
        Err(e) => return unavailable(&e.to_string()),
    };
    answer(
        redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<Vec<u8>>>(&mut *conn)
            .await,
    )
}

fn answer(found: redis::RedisResult<Option<Vec<u8>>>) -> HttpResponse {
    match found {
        Ok(Some(body)) => HttpResponse::Ok()
            .insert_header(("X-Cache", "HIT"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .content_type("application/json")
            .body(body),
        Ok(None) => HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"error":{"code":"not_found","message":"profile not found"}}"#),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// One worker's own Redis connection, opened on that worker's runtime.
struct WorkerConnection {
    client: redis::Client,
    config: AsyncConnectionConfig,
    conn: tokio::sync::OnceCell<redis::aio::MultiplexedConnection>,
    prefix: String,
}

async fn profile_per_worker(
    worker: web::Data<WorkerConnection>,
    username: web::Path<String>,
) -> HttpResponse {
    let opened = worker
        .conn
        .get_or_try_init(|| {
            worker
                .client
                .get_multiplexed_async_connection_with_config(&worker.config)
        })
        .await;
    let mut conn = match opened {
        Ok(conn) => conn.clone(),
        Err(e) => return unavailable(&e.to_string()),
    };
    let key = format!("{}:{}", worker.prefix, username.as_str());
    answer(
        redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<Vec<u8>>>(&mut conn)
            .await,
    )
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

fn unavailable(cause: &str) -> HttpResponse {
    eprintln!("floor: redis: {cause}");
    HttpResponse::ServiceUnavailable()
        .content_type("application/json")
        .body(r#"{"error":{"code":"service_unavailable","message":"redis unavailable"}}"#)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a whole number")),
        _ => Ok(default),
    }
}

fn main() -> std::io::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let settings = (|| -> Result<_, String> {
        Ok((
            number("WORKERS", cores)?,
            number("REDIS_POOL_SIZE", 8)?,
            Duration::from_millis(number("REDIS_TIMEOUT_MS", 250)? as u64),
        ))
    })();
    let (workers, pool_size, timeout) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::exit(2);
        }
    };
    let bind = env_or("BIND_ADDR", "127.0.0.1:8090");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let prefix = env_or("FLOOR_KEY_PREFIX", "floor:profile");
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let pool = Manager::new_with_config(redis_url.as_str(), config.clone())
        .map_err(|e| e.to_string())
        .and_then(|manager| {
            Pool::builder(manager)
                .max_size(pool_size)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| e.to_string())
        });
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("floor: cannot build the Redis pool for REDIS_URL={redis_url}: {e}");
            std::process::exit(2);
        }
    };
    let prewarm = match number("FLOOR_PREWARM", 0) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::exit(2);
        }
    };
    let per_worker = match env_or("FLOOR_CONNECTION", "pool").as_str() {
        "pool" => false,
        "per-worker" => true,
        other => {
            eprintln!("floor: FLOOR_CONNECTION={other:?}: expected pool or per-worker");
            std::process::exit(2);
        }
    };
    let client = match redis::Client::open(redis_url.as_str()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("floor: REDIS_URL={redis_url}: {e}");
            std::process::exit(2);
        }
    };
    let floor = web::Data::new(Floor {
        pool,
        prefix: prefix.clone(),
    });
    actix_web::rt::System::new().block_on(async move {
        let mut held = Vec::new();
        for _ in 0..prewarm {
            match floor.pool.get().await {
                Ok(conn) => held.push(conn),
                Err(e) => eprintln!("floor: FLOOR_PREWARM: {e}"),
            }
        }
        drop(held);
        let server = HttpServer::new(move || {
            let app = App::new()
                .app_data(floor.clone())
                .route("/healthz", web::get().to(healthz));
            if per_worker {
                // This factory runs once per worker: each gets its own.
                app.app_data(web::Data::new(WorkerConnection {
                    client: client.clone(),
                    config: config.clone(),
                    conn: tokio::sync::OnceCell::new(),
                    prefix: prefix.clone(),
                }))
                .route(
                    "/api/v1/profiles/{username}",
                    web::get().to(profile_per_worker),
                )
            } else {
                app.route("/api/v1/profiles/{username}", web::get().to(profile))
            }
        })
        .workers(workers)
        .bind(&bind)?;
        eprintln!("floor: listening on {bind}");
        server.run().await
    })
}
