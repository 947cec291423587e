//! Signatures made with a member's own certificate key.
//!
//! Audit logs are sealed with checkpoints signed by the writer's TLS key
//! (ECDSA P-256, the key generated at enrolment), so a verifier holding only
//! the log and the federation CA certificate can tell which enrolled member
//! wrote it and that nobody else re-signed it.

use ring::rand::SystemRandom;
use ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
use ring::signature::{EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use crate::{CertificateInfo, PkiError, Result};

/// Signs with a member's private key; carries the matching certificate.
pub struct MemberSigner {
    pair: EcdsaKeyPair,
    certificate_der: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for MemberSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberSigner(..)")
    }
}

impl MemberSigner {
    /// `key_der` is the PKCS#8 private key, `certificate_der` its certificate.
    pub fn new(key_der: &[u8], certificate_der: &[u8]) -> Result<MemberSigner> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key_der, &rng)
            .map_err(|e| PkiError::BadKey(format!("signing key (expected ECDSA P-256): {e}")))?;
        let signer = MemberSigner {
            pair,
            certificate_der: certificate_der.to_vec(),
            rng,
        };
        // The key must be the certificate's: a mismatch would make every
        // signature fail verification later, far from the cause.
        let probe = signer.sign(b"exchange key check")?;
        verify_member_signature(certificate_der, b"exchange key check", &probe).map_err(|_| {
            PkiError::BadKey("the private key does not match the certificate".into())
        })?;
        Ok(signer)
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| PkiError::BadKey("signing failed".into()))
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
}

/// Checks `signature` over `message` against the public key of `certificate_der`.
pub fn verify_member_signature(
    certificate_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<()> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let key = cert.public_key().subject_public_key.data.to_vec();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
        .verify(message, signature)
        .map_err(|_| {
            PkiError::BadCertificate("the signature does not match the certificate's key".into())
        })
}

/// The identity a certificate names, for reports.
pub fn certificate_identity(certificate_der: &[u8]) -> Result<String> {
    Ok(CertificateInfo::parse(certificate_der)?.identity.uri())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, Identity, Role};

    #[test]
    fn signs_and_verifies_with_the_certificate_key() {
        let ca = CertificateAuthority::generate("test ca").unwrap();
        let identity = Identity::new("tax", Role::Node).unwrap();
        let (issued, key) = ca
            .issue_with_new_key(
                &identity,
                &["localhost".to_string()],
                time::Duration::hours(1),
            )
            .unwrap();
        let signer = MemberSigner::new(&key.private_key_der(), &issued.der).unwrap();
        let sig = signer.sign(b"checkpoint 7").unwrap();
        verify_member_signature(&issued.der, b"checkpoint 7", &sig).unwrap();
        assert!(verify_member_signature(&issued.der, b"checkpoint 8", &sig).is_err());
        assert_eq!(
            certificate_identity(&issued.der).unwrap(),
            "exchange://tax/node"
        );
        // Another member's key cannot pass for this certificate.
        let (_, other_key) = ca
            .issue_with_new_key(
                &identity,
                &["localhost".to_string()],
                time::Duration::hours(1),
            )
            .unwrap();
        assert!(MemberSigner::new(&other_key.private_key_der(), &issued.der).is_err());
    }
}
