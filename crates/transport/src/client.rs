//! Dialing federation servers.

use std::sync::Arc;
use std::time::Duration;

use exchange_pki::{fingerprint, CertificateInfo, Identity, Role};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::coalesce::Coalescing;
use crate::{provider, Result, TlsIdentity, TransportError};

/// Which federation identity the server must prove.
#[derive(Debug, Clone)]
pub enum ExpectedServer {
    /// Exactly this member and role, e.g. the node of `tax`.
    Identity(Identity),
    /// Any holder of this role, e.g. the coordinator.
    Role(Role),
}

impl ExpectedServer {
    fn check(&self, found: &Identity) -> std::result::Result<(), String> {
        let ok = match self {
            ExpectedServer::Identity(want) => want == found,
            ExpectedServer::Role(role) => found.role == *role,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "the server is {found}, not the expected {}",
                match self {
                    ExpectedServer::Identity(i) => i.uri(),
                    ExpectedServer::Role(r) => format!("{r}"),
                }
            ))
        }
    }
}

/// Deadlines for a client channel.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Deadline for every call on the channel.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

fn endpoint(addr: &str, options: ClientOptions) -> Result<Endpoint> {
    let bad = |reason: String| TransportError::Address {
        addr: addr.to_string(),
        reason,
    };
    if addr.contains("://") {
        return Err(bad("give host:port without a scheme".into()));
    }
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let uri = endpoint.uri();
    if uri.host().is_none() || uri.port_u16().is_none() {
        return Err(bad("expected host:port".into()));
    }
    Ok(endpoint)
}

type Connector = tower::util::BoxCloneSyncService<
    http::Uri,
    TokioIo<Coalescing<tokio_rustls::client::TlsStream<TcpStream>>>,
    std::io::Error,
>;

fn connector(config: Arc<rustls::ClientConfig>) -> Connector {
    let tls = TlsConnector::from(config);
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("address has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| std::io::Error::other("address has no port"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::other(format!("bad server name: {e}")))?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(Coalescing::new(stream)))
        }
    }))
}

fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    tls: Option<&TlsIdentity>,
) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match tls {
        Some(tls) => builder.with_client_auth_cert(tls.chain(), tls.key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn mutual_config(tls: &TlsIdentity, expected: ExpectedServer) -> Result<Arc<rustls::ClientConfig>> {
    let inner = WebPkiServerVerifier::builder_with_provider(tls.roots()?, provider())
        .build()
        .map_err(|e| TransportError::Tls(rustls::Error::General(e.to_string())))?;
    client_config(Arc::new(FederationVerifier { inner, expected }), Some(tls))
}

/// Connects now, with our client certificate; fails with a readable error.
pub async fn connect(
    addr: &str,
    tls: &TlsIdentity,
    expected: ExpectedServer,
    options: ClientOptions,
) -> Result<Channel> {
    let config = mutual_config(tls, expected)?;
    endpoint(addr, options)?
        .connect_with_connector(connector(config))
        .await
        .map_err(|e| TransportError::Connect {
            addr: addr.to_string(),
            reason: error_chain(&e),
        })
}

/// A channel that connects on first use and reconnects after failures.
pub fn connect_lazy(
    addr: &str,
    tls: &TlsIdentity,
    expected: ExpectedServer,
    options: ClientOptions,
) -> Result<Channel> {
    let config = mutual_config(tls, expected)?;
    Ok(endpoint(addr, options)?.connect_with_connector_lazy(connector(config)))
}

/// Connects to the coordinator's enrolment listener before we hold any
/// certificate. The server must present a chain that contains the CA whose
/// SHA-256 fingerprint is `ca_fingerprint`, and a coordinator certificate
/// issued by it.
pub async fn connect_pinned(
    addr: &str,
    ca_fingerprint: &str,
    options: ClientOptions,
) -> Result<Channel> {
    let pinned = exchange_pki::normalize_fingerprint(ca_fingerprint)?;
    let config = client_config(Arc::new(PinnedCaVerifier { pinned }), None)?;
    endpoint(addr, options)?
        .connect_with_connector(connector(config))
        .await
        .map_err(|e| TransportError::Connect {
            addr: addr.to_string(),
            reason: error_chain(&e),
        })
}

/// Renders an error with its sources, since tonic's top-level transport
/// error alone says only "transport error".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// WebPKI verification against the federation CA, plus a check that the
/// server's certificate names the identity we meant to reach.
#[derive(Debug)]
struct FederationVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: ExpectedServer,
}

impl ServerCertVerifier for FederationVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let info = CertificateInfo::parse(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.expected
            .check(&info.identity)
            .map_err(rustls::Error::General)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Trust on a pinned CA fingerprint, for enrolment only.
#[derive(Debug)]
struct PinnedCaVerifier {
    pinned: String,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.pinned)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the coordinator's CA does not match the pinned fingerprint: check --ca-fingerprint, or you may be talking to an impostor"
                        .into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        let info = CertificateInfo::parse(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        ExpectedServer::Role(Role::Coordinator)
            .check(&info.identity)
            .map_err(rustls::Error::General)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_algorithms().supported_schemes()
    }
}
