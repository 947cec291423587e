//! Accepting mutual-TLS (and, for enrolment, server-only TLS) connections.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use exchange_pki::{CertificateInfo, Identity};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::InterceptorLayer;
use tonic::transport::server::Connected;
use tonic::{Request, Status};

use crate::attribution::hit;
use crate::coalesce::Coalescing;
use crate::limits::{BoundedListener, IdleTimeout, ListenerLimits, PeerBudget, PeerSlot};
use crate::{provider, Result, Revocations, TlsIdentity, TransportError};

/// How long a peer may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub identity: Identity,
    pub serial: String,
    pub not_after_unix: i64,
    pub remote_addr: SocketAddr,
}

/// Attached by tonic to every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: SocketAddr,
    /// `None` on the enrolment listener, which does not ask for certificates.
    pub peer: Option<PeerInfo>,
}

/// A TLS connection ready for tonic. Its TCP stream holds its place in the
/// listener's budget until it closes, and closes when its peer falls
/// silent ([`IdleTimeout`]).
pub struct TlsConn {
    stream: Coalescing<tokio_rustls::server::TlsStream<IdleTimeout<TcpStream>>>,
    info: ConnInfo,
    /// Its place in the listener's per-certificate budget.
    _peer_slot: PeerSlot,
}

impl TlsConn {
    /// Who is on the other end.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Binds a TCP listener with a clear error naming the address.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| TransportError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// TLS 1.3 settings that verify client certificates against the
/// federation CA (required, or only asked for) and offer one ALPN protocol.
fn client_verifying_config(
    tls: &TlsIdentity,
    certificate_required: bool,
    alpn: &[u8],
) -> Result<Arc<rustls::ServerConfig>> {
    let mut verifier = WebPkiClientVerifier::builder_with_provider(tls.roots()?, provider());
    if !certificate_required {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TransportError::Tls(rustls::Error::General(e.to_string())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain(), tls.key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// TLS settings for a listener that requires a client certificate issued by
/// the federation CA.
pub fn mutual_tls_config(tls: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>> {
    client_verifying_config(tls, true, b"h2")
}

/// TLS settings for the web console: HTTP/1.1, and a client certificate
/// from the federation CA is asked for but not required at the handshake,
/// so that a browser without one gets a page that says how to import it
/// rather than a bare TLS error. A certificate from another CA still fails
/// the handshake; every request without a certificate is refused by the
/// console before any handler runs.
pub fn console_tls_config(tls: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>> {
    client_verifying_config(tls, false, b"http/1.1")
}

/// TLS settings for the enrolment listener: the server authenticates itself
/// and sends the CA in its chain; callers have no certificate yet.
pub fn server_only_tls_config(tls: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(tls.chain(), tls.key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Turns a listener into a stream of handshaken TLS connections for
/// `serve_with_incoming_shutdown`, within `limits` (see [`crate::limits`]).
/// When `config` requires client certificates, connections whose
/// certificate carries no valid federation identity are dropped here, and
/// so are connections over their certificate's budget ([`PeerBudget`]).
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: ListenerLimits,
) -> ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(128);
    let acceptor = TlsAcceptor::from(config);
    let peers = PeerBudget::new(limits.within_descriptor_limit());
    let mut listener = BoundedListener::new(listener, limits);
    tokio::spawn(async move {
        loop {
            let (tcp, remote_addr) = tokio::select! {
                _ = tx.closed() => break,
                admitted = listener.admit() => admitted,
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let peers = peers.clone();
            tokio::spawn(async move {
                if let Some(conn) = handshake(&acceptor, &peers, tcp, remote_addr).await {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The TLS handshake of one accepted connection, within
/// [`HANDSHAKE_TIMEOUT`], and the identity its certificate carries.
async fn handshake(
    acceptor: &TlsAcceptor,
    peers: &std::sync::Arc<PeerBudget>,
    tcp: IdleTimeout<TcpStream>,
    remote_addr: SocketAddr,
) -> Option<TlsConn> {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            // Closed before a word: a load balancer's or monitor's TCP
            // check, every second or so; not worth an info line each.
            tracing::debug!(%remote_addr, "connection closed before the TLS handshake");
            return None;
        }
        Ok(Err(e)) => {
            tracing::info!(%remote_addr, error = %e, "TLS handshake refused");
            return None;
        }
        Err(_) => {
            tracing::info!(%remote_addr, "TLS handshake timed out");
            return None;
        }
    };
    let peer = match stream.get_ref().1.peer_certificates() {
        Some([leaf, ..]) => match CertificateInfo::parse(leaf) {
            Ok(info) => Some(PeerInfo {
                identity: info.identity,
                serial: info.serial,
                not_after_unix: info.not_after_unix,
                remote_addr,
            }),
            Err(e) => {
                tracing::warn!(%remote_addr, error = %e, "peer certificate refused");
                return None;
            }
        },
        _ => None,
    };
    let slot = match peers.admit(peer.as_ref()) {
        Ok(slot) => slot,
        Err((limit, bound)) => {
            hit(limit, peer.as_ref(), remote_addr, bound);
            return None;
        }
    };
    Some(TlsConn {
        stream: Coalescing::new(stream),
        info: ConnInfo { remote_addr, peer },
        _peer_slot: slot,
    })
}

/// The check every request on a mutual-TLS listener passes before any
/// handler runs: a certificate is present, unexpired and not revoked.
#[derive(Clone)]
pub struct Authenticate {
    revocations: Revocations,
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let peer = crate::caller(&request)?;
        check_certificate(&self.revocations, &peer)?;
        Ok(request)
    }
}

/// The per-request certificate check: not revoked, not expired. The gRPC
/// listeners run it through [`authenticate`]; the web console runs the same
/// function on every HTTP request.
pub fn check_certificate(revocations: &Revocations, peer: &PeerInfo) -> Result<(), Status> {
    if revocations.is_revoked(&peer.serial) {
        tracing::warn!(peer = %peer.identity, serial = %peer.serial, "request from a revoked certificate refused");
        return Err(Status::unauthenticated(format!(
            "certificate {} for {} has been revoked by the bureau",
            peer.serial, peer.identity
        )));
    }
    if peer.not_after_unix < exchange_pki::now_unix() {
        return Err(Status::unauthenticated(format!(
            "certificate for {} has expired; enrol again",
            peer.identity
        )));
    }
    Ok(())
}

/// The layer to put on every mutual-TLS server, so no handler can forget it.
pub fn authenticate(revocations: Revocations) -> InterceptorLayer<Authenticate> {
    InterceptorLayer::new(Authenticate { revocations })
}

/// gRPC server reflection, versions `v1` and `v1alpha` (grpcurl asks for
/// the first, Python's grpcio-reflection for the second), over the given
/// encoded descriptor sets, the health service's and `google.rpc`'s error
/// details (so a refusal's `ErrorInfo` decodes by name): clients discover
/// the services without the proto files. Add both services to a router.
pub fn reflection(
    descriptor_sets: &[&'static [u8]],
) -> Result<
    (
        reflection_v1::ServerReflectionServer<impl reflection_v1::ServerReflection>,
        reflection_v1alpha::ServerReflectionServer<impl reflection_v1alpha::ServerReflection>,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        for set in descriptor_sets {
            b = b.register_encoded_file_descriptor_set(set);
        }
        b
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

use tonic_reflection::pb::v1::server_reflection_server as reflection_v1;
use tonic_reflection::pb::v1alpha::server_reflection_server as reflection_v1alpha;
