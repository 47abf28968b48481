//! TLS for the listener: certificates from PEM files, or a generated
//! self-signed one for development.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no certificate or no private key.
    #[error("{0}")]
    Missing(String),
    /// rustls refused the certificate or key.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// Generating a self-signed certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn acceptor(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An acceptor from a PEM certificate chain and a PEM private key.
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub fn from_pem_files(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert_file.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing(format!(
            "no certificate in {}",
            cert_file.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: key_file.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::Missing(format!("no private key in {}", key_file.display())))?;
    acceptor(certs, key)
}

/// An acceptor with a freshly generated self-signed certificate for
/// `hostname` — for development only: clients cannot verify it.
///
/// # Errors
/// When generation fails.
pub fn self_signed(hostname: &str) -> Result<TlsAcceptor, TlsError> {
    let cert = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    acceptor(vec![cert.cert.der().clone()], key)
}
