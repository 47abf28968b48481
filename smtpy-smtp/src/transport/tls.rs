//! TLS client configurations: a verifying one (platform trust store or
//! given roots) and the non-verifying one opportunistic TLS uses.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::config::{TlsMode, TlsTrust, TransportBuildError};

/// The connectors a transport needs for its [`TlsMode`].
#[derive(Clone)]
pub(crate) struct TlsConnectors {
    /// Verifies the certificate; present for `Required` and `Implicit`.
    pub(crate) verified: Option<TlsConnector>,
    /// Encrypts without verifying; used by `Opportunistic`.
    pub(crate) unverified: TlsConnector,
}

impl std::fmt::Debug for TlsConnectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnectors")
            .field("verified", &self.verified.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsConnectors {
    pub(crate) fn new(mode: TlsMode, trust: &TlsTrust) -> Result<Self, TransportBuildError> {
        let verified = match mode {
            TlsMode::Required | TlsMode::Implicit => Some(verifying_connector(trust)?),
            TlsMode::Opportunistic | TlsMode::Never => None,
        };
        Ok(Self {
            verified,
            unverified: unverified_connector()?,
        })
    }

    /// The connector for `mode`, when it uses TLS at all.
    pub(crate) fn for_mode(&self, mode: TlsMode) -> Option<&TlsConnector> {
        match mode {
            TlsMode::Required | TlsMode::Implicit => self.verified.as_ref(),
            TlsMode::Opportunistic => Some(&self.unverified),
            TlsMode::Never => None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> TransportBuildError {
    TransportBuildError::Tls(e.to_string())
}

fn verifying_connector(trust: &TlsTrust) -> Result<TlsConnector, TransportBuildError> {
    match trust {
        TlsTrust::Platform => {
            // mail-send builds the platform verifier on the process-wide
            // rustls provider; install ring (the workspace's provider) when
            // the process has not chosen one, so that never panics.
            if CryptoProvider::get_default().is_none() {
                // Losing a race with another installer is fine: a provider
                // is then installed, which is all that is needed.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            mail_send::smtp::tls::build_tls_connector(false).map_err(tls_error)
        }
        TlsTrust::Roots(roots) => {
            let mut store = RootCertStore::empty();
            for root in roots {
                store.add(root.clone()).map_err(tls_error)?;
            }
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(tls_error)?
                .with_root_certificates(store)
                .with_no_client_auth();
            Ok(TlsConnector::from(Arc::new(config)))
        }
    }
}

fn unverified_connector() -> Result<TlsConnector, TransportBuildError> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts any certificate chain for any name (opportunistic TLS), but
/// still checks the handshake signatures, so the session is at least bound
/// to the key the server presented.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
