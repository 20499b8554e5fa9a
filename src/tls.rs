//! TLS towards PostgreSQL and Redis: which certificates linkhub trusts. Managed
//! databases require TLS; linkhub always verifies the server's certificate and
//! host name (rustls has no "encrypt but trust anyone" mode, and we do not add
//! one), against either the system's roots or one CA file the operator names.
//!
//! This is a leaf: it knows files and certificates, not databases or caches.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a TLS client configuration could not be built; each message names the
/// file or store at fault so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the CA file {path}: {cause}")]
    ReadCaFile { path: String, cause: String },
    #[error("the CA file {path} holds no PEM certificate")]
    EmptyCaFile { path: String },
    #[error("the CA file {path} holds a certificate rustls refuses: {cause}")]
    BadCaCertificate { path: String, cause: String },
    #[error("no usable system root certificate (install ca-certificates or name a CA file)")]
    NoSystemRoots,
}

/// Makes aws-lc-rs the process's rustls provider. rustls needs exactly one;
/// the redis crate builds its configurations with the process default, and a
/// build that links a second provider (the load test's does) would otherwise
/// leave it ambiguous. Installing twice is harmless: the first one stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The PEM certificates of `path`, checked to hold at least one certificate.
/// The redis crate takes the CA as PEM bytes, PostgreSQL as a root store; both
/// go through this so a bad file is reported the same way.
pub fn read_ca_pem(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| TlsSetupError::ReadCaFile {
        path: shown.clone(),
        cause: e.to_string(),
    })?;
    let certs = parse_certificates(&pem, &shown)?;
    if certs.is_empty() {
        return Err(TlsSetupError::EmptyCaFile { path: shown });
    }
    Ok(pem)
}

fn parse_certificates(
    pem: &[u8],
    shown: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::ReadCaFile {
            path: shown.to_owned(),
            cause: e.to_string(),
        })
}

/// The roots to verify servers against: only the certificates of `ca_file`
/// when one is named (a private CA must not widen to every public one), else
/// the system's store.
pub fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = read_ca_pem(path)?;
            for cert in parse_certificates(&pem, &shown)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsSetupError::BadCaCertificate {
                        path: shown.clone(),
                        cause: e.to_string(),
                    })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsSetupError::NoSystemRoots);
            }
        }
    }
    Ok(roots)
}

/// A client configuration that verifies the server's chain and host name
/// against [`root_store`], with no client certificate.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    install_crypto_provider();
    let roots = root_store(ca_file)?;
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let err = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path =
            std::env::temp_dir().join(format!("linkhub-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("temp dir is writable");
        let err = client_config(Some(&path)).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(err, TlsSetupError::EmptyCaFile { .. }), "{err}");
    }

    #[test]
    fn the_system_roots_load() {
        // CI installs ca-certificates (chromium and apt need it too).
        client_config(None).expect("system roots");
    }
}
