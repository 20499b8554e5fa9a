//! TLS towards Redis. `rediss://` URLs already mean TLS to the redis crate
//! (rustls, verified against the system roots); this adds `REDIS_CA_FILE`, a
//! private CA to verify against instead, through the crate's
//! `TlsCertificates`. The CA is read and checked at start-up, so a missing or
//! empty file stops the start instead of failing every later connect.

use std::path::Path;

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
    if !url.starts_with("rediss://") {
        return Err(format!(
            "REDIS_CA_FILE is set but {shown} is not a rediss:// URL; use rediss:// or unset REDIS_CA_FILE"
        ));
    }
    let root_cert = tls::read_ca_pem(ca_file).map_err(|e| format!("REDIS_CA_FILE: {e}"))?;
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    let client = redis::Client::build_with_tls(url, certificates)
        .map_err(|e| format!("{shown} with REDIS_CA_FILE: {e}"))?;
    Ok(client.get_connection_info().clone())
}

/// A cluster's seed nodes have no CA of their own to carry: the cluster
/// client verifies every node it discovers with one set of certificates,
/// which deadpool-redis's cluster manager cannot be given.
pub fn check_cluster_ca(ca_file: Option<&Path>) -> Result<(), String> {
    match ca_file {
        None => Ok(()),
        Some(_) => Err(
            "REDIS_CA_FILE is not supported with REDIS_CLUSTER_URLS yet: a rediss:// cluster is verified against the system roots; unset REDIS_CA_FILE"
                .to_owned(),
        ),
    }
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
