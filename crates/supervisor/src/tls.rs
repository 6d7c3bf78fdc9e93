//! rustls client configuration with one crypto provider (ring), verifying
//! against the row's CA or the system roots; verification is never skipped.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, OnceLock};

/// Why a CA bundle or a TLS configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// Not PEM.
    #[error("not a PEM certificate bundle ({0})")]
    NotPem(String),
    /// PEM without a certificate.
    #[error("no certificate in the PEM text")]
    Empty,
    /// A certificate rustls cannot use as a trust anchor.
    #[error("unusable CA certificate ({0})")]
    Unusable(String),
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Parses the certificates of a PEM bundle; at least one is required.
pub fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CaError::NotPem(crate::untrusted::clean(&e.to_string())))?;
    if certs.is_empty() {
        return Err(CaError::Empty);
    }
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store
            .add(cert.clone())
            .map_err(|e| CaError::Unusable(crate::untrusted::clean(&e.to_string())))?;
    }
    Ok(certs)
}

/// The system's trust anchors, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(error = %err, "Could not read part of the system CA store.");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "Loaded system CA certificates.");
            Arc::new(store)
        })
        .clone()
}

/// A client configuration for one connection.
pub fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, CaError> {
    let roots = match ca_pem {
        Some(pem) => {
            let mut store = RootCertStore::empty();
            for cert in parse_ca(pem)? {
                store
                    .add(cert)
                    .map_err(|e| CaError::Unusable(e.to_string()))?;
            }
            Arc::new(store)
        }
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
