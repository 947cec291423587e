//! Parsed views of certificates and revocation lists.

use std::collections::HashSet;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::{Identity, PkiError, Result};

/// SHA-256 of a DER certificate, as 64 lowercase hex digits.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Accepts a fingerprint as people paste it (any case, with or without `:`
/// separators or a `sha256:` prefix) and returns the canonical form.
pub fn normalize_fingerprint(text: &str) -> Result<String> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let hex: String = trimmed
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(PkiError::BadFingerprint(
            "expected 64 hexadecimal digits (SHA-256), as printed by `coordinator member add`"
                .into(),
        ));
    }
    Ok(hex)
}

/// What the federation needs to know about a peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub identity: Identity,
    /// Lowercase hex of the serial number's content bytes.
    pub serial: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

impl CertificateInfo {
    /// Parses a DER certificate and extracts its single exchange identity.
    ///
    /// This does not verify the chain: the TLS layer has already done that
    /// against the federation CA before this is called.
    pub fn parse(der: &[u8]) -> Result<CertificateInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let mut identities = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with("exchange://") {
                        identities.push(Identity::from_uri(uri)?);
                    }
                }
            }
        }
        let identity = match identities.len() {
            0 => return Err(PkiError::MissingIdentity),
            1 => identities.pop().expect("one identity"),
            n => return Err(PkiError::AmbiguousIdentity(n)),
        };
        Ok(CertificateInfo {
            identity,
            serial: hex::encode(cert.raw_serial()),
            not_before_unix: cert.validity().not_before.timestamp(),
            not_after_unix: cert.validity().not_after.timestamp(),
        })
    }

    /// Checks that `der` was signed by the CA certificate `ca_der`.
    pub fn verify_issued_by(der: &[u8], ca_der: &[u8]) -> Result<()> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| PkiError::BadCertificate("not signed by this federation's CA".into()))
    }
}

/// A verified CRL: its number and the revoked serials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    pub number: u64,
    pub serials: HashSet<String>,
}

impl RevocationList {
    /// Parses `crl_der` and checks its signature against the CA certificate.
    pub fn parse_verified(crl_der: &[u8], ca_der: &[u8]) -> Result<RevocationList> {
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der)
            .map_err(|e| PkiError::BadCrl(e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        crl.verify_signature(ca.public_key())
            .map_err(|_| PkiError::CrlSignature)?;
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| PkiError::BadCrl("the CRL has no usable CRL number".into()))?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        Ok(RevocationList { number, serials })
    }

    pub fn is_revoked(&self, serial: &str) -> bool {
        self.serials.contains(serial)
    }
}
