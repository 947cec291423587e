//! Mutual-TLS transport for every Exchange gRPC service.
//!
//! tonic's built-in TLS cannot pin a CA by fingerprint or check revocation, so
//! this crate terminates TLS itself with rustls and hands tonic ready streams:
//!
//! - [`server`]: accepts TCP (with `TCP_NODELAY`), completes the TLS handshake
//!   off the accept loop with a deadline, parses the peer's identity from its
//!   certificate and attaches it to every request as [`ConnInfo`]. The
//!   [`server::authenticate`] layer refuses every request from a revoked,
//!   expired or anonymous peer before any handler runs.
//! - [`channel`]: the client side's gRPC channel, one HTTP/2 connection
//!   that takes requests directly (no buffer task in between) and redials
//!   after the connection closes.
//! - [`client`]: dials with a client certificate and verifies that the server
//!   holds the expected federation identity, or, for enrolment only, pins the
//!   CA by its SHA-256 fingerprint.
//! - [`TlsIdentity`]: the CA certificate, our certificate and key, loaded from
//!   PEM files.
//! - [`caller`]: how handlers learn who is calling. Identity comes only from
//!   the certificate.
//! - [`prefetch`]: streaming answers that leave with their first items, so
//!   a short answer costs one write instead of three.

pub mod attribution;
pub mod channel;
pub mod client;
pub mod coalesce;
pub mod completion;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod prefetch;
pub mod refusal;
pub mod serve;
pub mod server;

use std::path::Path;
use std::sync::{Arc, RwLock};

use exchange_pki::{files, CertificateInfo, Identity, PkiError, RevocationList, Role};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tonic::Status;

pub use channel::Channel;
pub use local::{AnyChannel, LocalChannel, LocalRoutes};
pub use server::{ConnInfo, PeerInfo};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error("could not connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// The crypto provider used everywhere, chosen explicitly so that no other
/// crate's feature flags can change it.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Our certificate and key, and the federation CA we trust.
#[derive(Clone)]
pub struct TlsIdentity {
    pub ca_der: Vec<u8>,
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
    /// Parsed from `cert_der`.
    pub info: CertificateInfo,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("identity", &self.info.identity.uri())
            .field("serial", &self.info.serial)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    pub fn new(ca_der: Vec<u8>, cert_der: Vec<u8>, key_der: Vec<u8>) -> Result<TlsIdentity> {
        let info = CertificateInfo::parse(&cert_der)?;
        CertificateInfo::verify_issued_by(&cert_der, &ca_der)?;
        Ok(TlsIdentity {
            ca_der,
            cert_der,
            key_der,
            info,
        })
    }

    /// Builds an identity without checking that the certificate chains to
    /// the CA. Only for tests that play a hostile client: real callers use
    /// [`TlsIdentity::new`] or [`TlsIdentity::load`].
    #[doc(hidden)]
    pub fn new_unverified(
        ca_der: Vec<u8>,
        cert_der: Vec<u8>,
        key_der: Vec<u8>,
    ) -> Result<TlsIdentity> {
        let info = CertificateInfo::parse(&cert_der)?;
        Ok(TlsIdentity {
            ca_der,
            cert_der,
            key_der,
            info,
        })
    }

    /// Loads `ca.crt`, `<name>.crt` and `<name>.key` (PEM) from `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<TlsIdentity> {
        let ca = files::read_pem_der(&dir.join("ca.crt"), "CERTIFICATE")?;
        let cert = files::read_pem_der(&dir.join(format!("{name}.crt")), "CERTIFICATE")?;
        let key = files::read_pem_der(&dir.join(format!("{name}.key")), "PRIVATE KEY")?;
        TlsIdentity::new(ca, cert, key)
    }

    pub fn identity(&self) -> &Identity {
        &self.info.identity
    }

    /// A signer with this certificate's key, for audit checkpoints.
    pub fn member_signer(&self) -> Result<exchange_pki::MemberSigner> {
        Ok(exchange_pki::MemberSigner::new(
            &self.key_der,
            &self.cert_der,
        )?)
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![
            CertificateDer::from(self.cert_der.clone()),
            CertificateDer::from(self.ca_der.clone()),
        ]
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    pub(crate) fn roots(&self) -> Result<Arc<rustls::RootCertStore>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca_der.clone()))?;
        Ok(Arc::new(roots))
    }
}

/// The revocation list a server enforces, shared between the accept loop,
/// the authentication layer and whoever refreshes it.
#[derive(Clone, Default, Debug)]
pub struct Revocations {
    inner: Arc<RwLock<RevocationList>>,
}

impl Revocations {
    /// Installs `list` if it is newer than the one held. Returns whether it was.
    pub fn update(&self, list: RevocationList) -> bool {
        let mut current = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if list.number > current.number || (current.number == 0 && current.serials.is_empty()) {
            *current = list;
            true
        } else {
            false
        }
    }

    pub fn is_revoked(&self, serial: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_revoked(serial)
    }

    pub fn number(&self) -> u64 {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).number
    }
}

/// The authenticated caller of a request. Identity comes only from the peer
/// certificate, checked by [`server::authenticate`] before handlers run.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<PeerInfo, Status> {
    request
        .extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.peer.clone())
        .ok_or_else(|| {
            Status::unauthenticated(
                "no client certificate: enrol first, then connect with mutual TLS",
            )
        })
}

/// The caller, if it holds one of `roles`.
pub fn require_role<T>(request: &tonic::Request<T>, roles: &[Role]) -> Result<PeerInfo, Status> {
    let peer = caller(request)?;
    if roles.contains(&peer.identity.role) {
        Ok(peer)
    } else {
        let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(Status::permission_denied(format!(
            "{} may not call this: it needs a {} certificate",
            peer.identity,
            wanted.join(" or ")
        )))
    }
}
