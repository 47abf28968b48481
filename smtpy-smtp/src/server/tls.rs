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
    let (certs, key) = read_pem_files(cert_file, key_file)?;
    acceptor(certs, key)
}

/// An acceptor whose certificate can be replaced while the server runs
/// (say on `SIGHUP`, after a renewal): handshakes started after
/// [`CertReloader::reload`] use the new certificate; connections already
/// open keep theirs.
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
///
/// ```no_run
/// # fn main() -> Result<(), smtpy_smtp::server::tls::TlsError> {
/// use std::path::Path;
/// let (acceptor, reloader) = smtpy_smtp::server::tls::reloadable_from_pem_files(
///     Path::new("/etc/smtpy/fullchain.pem"),
///     Path::new("/etc/smtpy/privkey.pem"),
/// )?;
/// // … hand `acceptor` to the server; later, after a renewal:
/// reloader.reload(Path::new("/etc/smtpy/fullchain.pem"), Path::new("/etc/smtpy/privkey.pem"))?;
/// # drop(acceptor);
/// # Ok(()) }
/// ```
pub fn reloadable_from_pem_files(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(TlsAcceptor, CertReloader), TlsError> {
    let provider = provider();
    let key = certified_key(cert_file, key_file, &provider)?;
    let resolver = Arc::new(SwappableCert {
        current: std::sync::RwLock::new(Arc::new(key)),
    });
    let config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn rustls::server::ResolvesServerCert>);
    Ok((
        TlsAcceptor::from(Arc::new(config)),
        CertReloader { resolver, provider },
    ))
}

/// Replaces the certificate of an acceptor made by
/// [`reloadable_from_pem_files`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CertReloader {
    resolver: Arc<SwappableCert>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl CertReloader {
    /// Reads the files again and, if they hold a usable certificate and a
    /// matching key, serves them from the next handshake on.
    ///
    /// # Errors
    /// When a file cannot be read, holds no certificate or key, or the key
    /// does not match the certificate; the certificate in use stays.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> Result<(), TlsError> {
        let key = certified_key(cert_file, key_file, &self.provider)?;
        let mut current = self
            .resolver
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(key);
        Ok(())
    }

    /// The DER bytes of the certificate now served (end entity first).
    #[must_use]
    pub fn current_certificate(&self) -> Vec<u8> {
        let current = self
            .resolver
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current
            .cert
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct SwappableCert {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SwappableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let (certs, key) = read_pem_files(cert_file, key_file)?;
    Ok(rustls::sign::CertifiedKey::from_der(certs, key, provider)?)
}

fn read_pem_files(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
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
    Ok((certs, key))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, host: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![host.to_owned()]).expect("generate");
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, cert.cert.pem()).expect("write");
        std::fs::write(&k, cert.signing_key.serialize_pem()).expect("write");
        (c, k)
    }

    #[test]
    fn reload_swaps_the_certificate_and_keeps_it_on_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c1, k1) = write_pair(dir.path(), "one", "one.example");
        let (c2, k2) = write_pair(dir.path(), "two", "two.example");
        let (_acceptor, reloader) = reloadable_from_pem_files(&c1, &k1).expect("first");
        let first = reloader.current_certificate();
        let pem = std::fs::read(&c1).expect("read");
        let der: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .expect("pem");
        assert_eq!(first, der[0].as_ref(), "the file's certificate is served");

        reloader.reload(&c2, &k2).expect("second");
        let second = reloader.current_certificate();
        assert_ne!(first, second, "the new certificate is served");

        // A key that does not match its certificate is refused; the one in use stays.
        let mismatch = reloader.reload(&c1, &k2);
        assert!(matches!(mismatch, Err(TlsError::Rustls(_))), "{mismatch:?}");
        assert_eq!(reloader.current_certificate(), second);

        // A missing file is refused the same way.
        let missing = reloader.reload(&dir.path().join("nope.crt"), &k1);
        assert!(matches!(missing, Err(TlsError::Read { .. })), "{missing:?}");
        assert_eq!(reloader.current_certificate(), second);
    }
}
