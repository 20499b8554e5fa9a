//! How every PostgreSQL connection of linkhub is opened: the pool's, the
//! migrations', and the owed-bump listener's. It reads libpq's own URL
//! parameters so a managed database's connection string works as given:
//!
//! - `sslmode=require`, `verify-ca` or `verify-full`: TLS with rustls through
//!   tokio-postgres-rustls. The server's chain *and* host name are verified in
//!   all three (stricter than libpq's `require`, which trusts any certificate:
//!   an unverified TLS connection is open to anyone on the path).
//! - `sslrootcert=<file>` (which `DATABASE_CA_FILE` sets): the CA to verify
//!   against instead of the system's roots.
//! - any other `sslmode` (or none): a plain connection, as before.
//!
//! tokio-postgres knows neither `verify-*` nor `sslrootcert`, so both are
//! taken out of the URL before it is handed on.

use std::path::PathBuf;

use diesel::ConnectionError;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::tls;

/// What a connection URL asks for, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTlsTarget {
    /// The URL tokio-postgres understands (`sslmode=require` or none).
    pub url: String,
    /// `Some` when TLS is required; then the CA file, if one is named.
    pub tls: Option<Option<PathBuf>>,
}

/// Splits `database_url` into what tokio-postgres reads and linkhub's TLS choice.
pub fn parse_target(database_url: &str) -> Result<PgTlsTarget, ConnectionError> {
    let mut url = url::Url::parse(database_url).map_err(|e| {
        ConnectionError::InvalidConnectionUrl(format!("DATABASE_URL does not parse: {e}"))
    })?;
    let mut mode = None;
    let mut root_cert = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(key, value)| match key.as_ref() {
            "sslmode" => {
                mode = Some(value.into_owned());
                None
            }
            "sslrootcert" => {
                root_cert = Some(PathBuf::from(value.as_ref()));
                None
            }
            _ => Some((key.into_owned(), value.into_owned())),
        })
        .collect();
    let tls_required = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(ConnectionError::InvalidConnectionUrl(format!(
                "DATABASE_URL has sslmode={other}; use disable, prefer, require, verify-ca or verify-full"
            )));
        }
    };
    if kept.is_empty() && !tls_required {
        url.set_query(None);
    } else {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for (key, value) in &kept {
            pairs.append_pair(key, value);
        }
        if tls_required {
            pairs.append_pair("sslmode", "require");
        }
    }
    // `query_pairs_mut` writes a space as `+`, which tokio-postgres reads as a
    // `+` (it only percent-decodes); a real `+` was written as `%2B`, so every
    // `+` here is a space (libpq's `options=-c a=b -c c=d` has them).
    let query = url.query().map(|q| q.replace('+', "%20"));
    url.set_query(query.as_deref());
    Ok(PgTlsTarget {
        url: url.to_string(),
        tls: tls_required.then_some(root_cert),
    })
}

/// Opens one connection the way `database_url` asks (see the module header).
pub async fn establish(database_url: &str) -> Result<AsyncPgConnection, ConnectionError> {
    let target = parse_target(database_url)?;
    let Some(ca_file) = target.tls else {
        return AsyncPgConnection::establish(&target.url).await;
    };
    let config = tls::client_config(ca_file.as_deref())
        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*config).clone());
    let (client, connection) = tokio_postgres::connect(&target.url, connector)
        .await
        .map_err(|e| ConnectionError::BadConnection(describe(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// tokio-postgres's top-level message for a TLS failure is only "error
/// performing TLS handshake"; the cause (say, an unknown issuer) is what an
/// operator needs.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_modes_connect_without_tls() {
        for url in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=disable",
            "postgres://u@h/db?sslmode=prefer&application_name=x",
        ] {
            let target = parse_target(url).expect("parses");
            assert_eq!(target.tls, None, "{url}");
            assert!(!target.url.contains("sslmode"), "{}", target.url);
        }
    }

    #[test]
    fn verifying_modes_become_require_with_their_ca() {
        let target =
            parse_target("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
                .expect("parses");
        assert_eq!(target.tls, Some(Some(PathBuf::from("/etc/ca.pem"))));
        assert_eq!(target.url, "postgres://u:p@h/db?sslmode=require");
        let target = parse_target("postgres://u@h/db?sslmode=require").expect("parses");
        assert_eq!(target.tls, Some(None));
    }

    #[test]
    fn an_unknown_mode_is_refused_not_downgraded() {
        let err = parse_target("postgres://u@h/db?sslmode=verify-everything").unwrap_err();
        assert!(
            err.to_string().contains("sslmode=verify-everything"),
            "{err}"
        );
    }

    #[test]
    fn other_parameters_are_kept() {
        let target =
            parse_target("postgres://u@h/db?connect_timeout=3&sslmode=verify-ca").expect("parses");
        assert_eq!(
            target.url,
            "postgres://u@h/db?connect_timeout=3&sslmode=require"
        );
    }
}
