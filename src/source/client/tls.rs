//! TLS for the binlog client, with the meanings of the mysql client's `--ssl-mode`:
//! PREFERRED and REQUIRED encrypt without verifying, VERIFY_CA checks the chain
//! against tls.ca but not the host name, VERIFY_IDENTITY checks both.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

use crate::admin::tls::{TlsError, load_certs};
use crate::config::{SslMode, Tls};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Files(#[from] TlsError),
    #[error("no usable CA certificate in {path}: {source}")]
    Ca {
        path: std::path::PathBuf,
        source: rustls::Error,
    },
    #[error("{0}")]
    Config(#[from] rustls::Error),
    #[error("'{0}' is not a valid TLS server name")]
    ServerName(String),
}

/// The connector for `tls`, `None` under DISABLED.
pub fn connector(tls: &Tls) -> Result<Option<TlsConnector>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match tls.ssl_mode {
        SslMode::Disabled => return Ok(None),
        SslMode::Preferred | SslMode::Required => Arc::new(Lenient {
            chain: None,
            algorithms: provider.signature_verification_algorithms,
        }),
        SslMode::VerifyCa => Arc::new(Lenient {
            chain: Some(webpki(tls, &provider)?),
            algorithms: provider.signature_verification_algorithms,
        }),
        SslMode::VerifyIdentity => webpki(tls, &provider)?,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
                path: key.clone(),
                source,
            })?;
            builder.with_client_auth_cert(load_certs(cert)?, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

/// The name the server's certificate is checked against (VERIFY_IDENTITY) and sent as SNI.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsSetupError::ServerName(host.into()))
}

/// The standard verifier over the roots in tls.ca (configuration requires it for
/// the VERIFY modes).
fn webpki(
    tls: &Tls,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &tls.ca {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|source| TlsSetupError::Ca {
                path: path.clone(),
                source,
            })?;
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Config(rustls::Error::General(e.to_string())))
}

/// PREFERRED / REQUIRED (`chain: None`): any certificate, as the mysql client
/// accepts. VERIFY_CA: everything webpki checks except that the certificate
/// names the host; webpki checks the chain first and the name last, so a name
/// mismatch means the chain (validity, issuer, usage) already passed. Either
/// way the handshake signatures are checked, so the session key belongs to
/// whoever holds the certificate's key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
