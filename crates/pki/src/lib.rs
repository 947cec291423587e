//! The federation's public-key infrastructure.
//!
//! The coordinator is the federation's certificate authority. This crate holds
//! everything that touches keys and certificates, and nothing that touches the
//! network:
//!
//! - [`Identity`]: who a certificate speaks for, carried as a SAN URI
//!   `exchange://<member-id>/<role>`. It is the *only* source of identity in
//!   the federation; request fields are never trusted for it.
//! - [`CertificateAuthority`]: creates the CA, signs certificate signing
//!   requests (keeping only the public key from them) and issues CRLs.
//! - [`LocalKey`]: a key generated where it will be used, with its CSR. The
//!   private key never travels.
//! - [`CertificateInfo`] and [`RevocationList`]: parsed views used by the
//!   transport layer to check peers.
//! - [`TicketSigner`] and [`TicketVerifier`]: the coordinator's Ed25519
//!   signatures over query tickets, checked by nodes.
//! - [`files`]: writing key material with owner-only permissions.

mod authority;
pub mod files;
mod identity;
mod inspect;
pub mod pkcs12;
pub mod signing;
pub mod ticket_key;

pub use authority::{CertificateAuthority, IssuedCertificate, LocalKey, RevokedEntry};
pub use identity::{validate_member_id, Identity, Role, RESERVED_MEMBER_ID};
pub use inspect::{fingerprint, normalize_fingerprint, CertificateInfo, RevocationList};
pub use signing::{certificate_identity, verify_member_signature, MemberSigner};
pub use ticket_key::{EnvelopeError, TicketSigner, TicketVerifier};

/// Seconds since the Unix epoch: the one clock certificates, tickets,
/// grants and heartbeats are compared against (0 if the system clock is
/// before 1970).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Everything that can go wrong with certificates, keys and identities.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid member id {id:?}: {reason}")]
    InvalidMemberId { id: String, reason: &'static str },
    #[error("invalid identity {uri:?}: {reason}")]
    InvalidIdentity { uri: String, reason: String },
    #[error("unknown role {0:?}: expected one of coordinator, admin, node, client")]
    UnknownRole(String),
    #[error("certificate carries no exchange identity (a SAN URI exchange://<member>/<role>); it was not issued by this federation")]
    MissingIdentity,
    #[error("certificate carries {0} exchange identities; exactly one is allowed")]
    AmbiguousIdentity(usize),
    #[error("could not parse the certificate: {0}")]
    BadCertificate(String),
    #[error("could not parse the certificate signing request: {0}")]
    BadRequest(String),
    #[error("invalid CA fingerprint: {0}")]
    BadFingerprint(String),
    #[error("could not parse the revocation list: {0}")]
    BadCrl(String),
    #[error("the revocation list is not signed by this federation's CA")]
    CrlSignature,
    #[error("invalid server name {0:?}: use a DNS name or an IP address")]
    BadServerName(String),
    #[error("{0} certificates do not serve, so they carry no server names; drop --server-name")]
    ServerNamesOnClient(Role),
    #[error("could not read key material: {0}")]
    BadKey(String),
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = PkiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
