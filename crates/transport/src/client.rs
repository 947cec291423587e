//! Dialing federation servers.

use std::sync::Arc;
use std::time::Duration;

use exchange_pki::{fingerprint, CertificateInfo, Identity, Role};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use crate::channel::Channel;
use crate::channel::Endpoint;
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

/// Checks `host:port` and splits it; the host names the TLS server.
fn host_port(addr: &str) -> Result<(String, u16)> {
    let bad = |reason: String| TransportError::Address {
        addr: addr.to_string(),
        reason,
    };
    if addr.contains("://") {
        return Err(bad("give host:port without a scheme".into()));
    }
    let uri: http::Uri = format!("http://{addr}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if addr.contains(['/', '?', '#']) {
        return Err(bad("expected host:port".into()));
    }
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) if !host.is_empty() => Ok((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        )),
        _ => Err(bad("expected host:port".into())),
    }
}

/// A channel to `addr`: one `host:port`, or several separated by commas
/// (a coordinator's replicas), dialled in turn when one does not answer.
fn channel(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    options: ClientOptions,
) -> Result<Channel> {
    let mut endpoints = Vec::new();
    for one in addr.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (host, port) = host_port(one)?;
        let endpoint =
            Endpoint::new(one, host, port).map_err(|reason| TransportError::Address {
                addr: one.to_string(),
                reason,
            })?;
        endpoints.push(endpoint);
    }
    Channel::lazy(endpoints, config, options).map_err(|reason| TransportError::Address {
        addr: addr.to_string(),
        reason,
    })
}

async fn connected(channel: Channel) -> Result<Channel> {
    match channel.connect_now().await {
        Ok(()) => Ok(channel),
        Err(reason) => Err(TransportError::Connect {
            addr: channel.addr().to_string(),
            reason,
        }),
    }
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

/// Client TLS settings with our certificate, checking the server's
/// federation identity, for HTTP/1.1 (the web console; its benchmark).
pub fn https_client_config(
    tls: &TlsIdentity,
    expected: ExpectedServer,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut config = (*mutual_config(tls, expected)?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client TLS settings for HTTP/2 with our certificate, checking the
/// server's federation identity (what every channel uses; raw HTTP/2 tests
/// use it directly).
pub fn mutual_config(
    tls: &TlsIdentity,
    expected: ExpectedServer,
) -> Result<Arc<rustls::ClientConfig>> {
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
    connected(channel(addr, mutual_config(tls, expected)?, options)?).await
}

/// A channel that connects on first use and reconnects after failures.
pub fn connect_lazy(
    addr: &str,
    tls: &TlsIdentity,
    expected: ExpectedServer,
    options: ClientOptions,
) -> Result<Channel> {
    channel(addr, mutual_config(tls, expected)?, options)
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
    connected(channel(addr, config, options)?).await
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
