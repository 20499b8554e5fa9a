//! TLS towards Redis. `rediss://` URLs already mean TLS to the redis crate
//! (rustls, verified against the system roots); this adds `REDIS_CA_FILE`, a
//! private CA to verify against instead, through the crate's
//! `TlsCertificates`, for one node and for a cluster alike. The CA is read and
//! checked at start-up, so a missing or empty file stops the start instead of
//! failing every later connect.

use std::path::Path;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{ConnectionInfo, IntoConnectionInfo, TlsCertificates};

use crate::redact::redact_url_password;
use crate::tls;

/// The connection details of one node: `url` as given, or — with a CA file —
/// the same address carrying that CA as its only root.
pub fn node_connection_info(url: &str, ca_file: Option<&Path>) -> Result<ConnectionInfo, String> {
    let shown = redact_url_password(url);
    tls::install_crypto_provider();
    let Some(ca_file) = ca_file else {
        return url
            .into_connection_info()
            .map_err(|e| format!("{shown}: {e}"));
    };
    let certificates = private_ca(std::slice::from_ref(&url.to_owned()), ca_file)?;
    let client = redis::Client::build_with_tls(url, certificates)
        .map_err(|e| format!("{shown} with REDIS_CA_FILE: {e}"))?;
    Ok(client.get_connection_info().clone())
}

/// The client of a Redis Cluster whose seed nodes are `urls`. Every node it
/// discovers is verified like the seeds: against the system roots for
/// `rediss://`, or against the CA of `REDIS_CA_FILE`. Connecting and every
/// command are bounded by `timeout`.
pub fn cluster_client(
    urls: &[String],
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<ClusterClient, String> {
    tls::install_crypto_provider();
    let shown = urls
        .iter()
        .map(|u| redact_url_password(u))
        .collect::<Vec<_>>()
        .join(",");
    let retry_wait = cluster_retry_wait(timeout);
    let mut builder = ClusterClientBuilder::new(urls.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(retry_wait.min)
        .max_retry_wait(retry_wait.max)
        .retry_wait_formula(retry_wait.min, 2);
    if let Some(ca_file) = ca_file {
        builder = builder.certs(private_ca(urls, ca_file)?);
    }
    builder
        .build()
        .map_err(|e| format!("REDIS_CLUSTER_URLS={shown}: {e}"))
}

/// How often the cluster client tries a command again after `MOVED`, `ASK`,
/// `TRYAGAIN` or a lost connection before it answers the error. A slot being
/// migrated answers `TRYAGAIN` to a multi-key script for as long as its keys
/// are split between the two nodes, and `ASK`/`MOVED` may send a command
/// back and forth while a node learns the move: a few tries follow a
/// redirection that settles, and what does not settle comes back as the
/// redirection itself, which the cache tells from Redis failing
/// (`store::StoreError::is_slot_moving`).
const CLUSTER_RETRIES: u32 = 4;

/// The cluster client's wait before trying again, in milliseconds: drawn
/// between `min` and `min · 2^try` capped at `max`.
struct RetryWait {
    min: u64,
    max: u64,
}

/// Waits that fit [`CLUSTER_RETRIES`] tries within `timeout`, each at most an
/// eighth of it. The crate's own default waits at least 1.28 s before trying
/// again after `TRYAGAIN`, past any `REDIS_TIMEOUT_MS`: a slot migration's
/// `TRYAGAIN` became a timeout, which is Redis failing, and opened the breaker.
fn cluster_retry_wait(timeout: Duration) -> RetryWait {
    let max = u64::try_from((timeout / 8).as_millis())
        .unwrap_or(u64::MAX)
        .max(2);
    RetryWait {
        min: (max / 8).max(1),
        max,
    }
}

/// `REDIS_CA_FILE` as the only root, for `urls` that must all be `rediss://`.
fn private_ca(urls: &[String], ca_file: &Path) -> Result<TlsCertificates, String> {
    if let Some(plain) = urls.iter().find(|u| !u.starts_with("rediss://")) {
        return Err(format!(
            "REDIS_CA_FILE is set but {} is not a rediss:// URL; use rediss:// or unset REDIS_CA_FILE",
            redact_url_password(plain)
        ));
    }
    let root_cert = tls::read_ca_pem(ca_file).map_err(|e| format!("REDIS_CA_FILE: {e}"))?;
    Ok(TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_needs_a_tls_url_and_hides_the_password() {
        let err = node_connection_info("redis://:hunter2@cache:6379", Some(Path::new("/ca.pem")))
            .unwrap_err();
        assert!(
            err.contains("REDIS_CA_FILE") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn a_cluster_with_a_ca_file_needs_tls_urls_and_a_readable_ca() {
        let secret = Duration::from_millis(100);
        let plain = vec![
            "rediss://:hunter2@a:6380".to_owned(),
            "redis://:hunter2@b:6379".to_owned(),
        ];
        let err = cluster_client(&plain, Some(Path::new("/ca.pem")), secret)
            .map(drop)
            .expect_err("a plain seed is refused");
        assert!(err.contains("b:6379") && !err.contains("hunter2"), "{err}");
        let tls_urls = vec!["rediss://:hunter2@a:6380".to_owned()];
        let err = cluster_client(&tls_urls, Some(Path::new("/nope.pem")), secret)
            .map(drop)
            .expect_err("a missing CA is refused");
        assert!(
            err.contains("/nope.pem") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(cluster_client(&tls_urls, None, secret).is_ok());
    }

    #[test]
    fn the_cluster_clients_retries_fit_within_the_timeout() {
        for ms in [1, 10, 250, 500, 5000] {
            let timeout = Duration::from_millis(ms);
            let wait = cluster_retry_wait(timeout);
            assert!(
                wait.min >= 1 && wait.min < wait.max,
                "{ms} ms: {}..{}",
                wait.min,
                wait.max
            );
            if ms >= 16 {
                assert!(
                    u128::from(wait.max) * u128::from(CLUSTER_RETRIES) <= timeout.as_millis() / 2,
                    "{ms} ms: {} retries of up to {} ms",
                    CLUSTER_RETRIES,
                    wait.max
                );
            }
        }
    }

    #[test]
    fn a_missing_ca_file_stops_the_start() {
        let err =
            node_connection_info("rediss://:hunter2@cache:6380", Some(Path::new("/nope.pem")))
                .unwrap_err();
        assert!(
            err.contains("/nope.pem") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
