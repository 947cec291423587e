//! Signing keys for query tickets.
//!
//! The coordinator signs every authorization it hands out with an Ed25519
//! key kept beside the CA (`ticket.key`, mode 0600). Nodes learn the public
//! key over their mutual-TLS connection to the coordinator and verify every
//! ticket before applying their own policy. A signed envelope is
//! `base64url(payload) "." base64url(signature)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::{PkiError, Result};

/// The coordinator's ticket-signing key.
pub struct TicketSigner {
    pair: Ed25519KeyPair,
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

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<TicketSigner> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| PkiError::BadKey(format!("ticket key: {e}")))?;
        Ok(TicketSigner {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// PKCS#8 PEM. Write it only with [`crate::files::write_secret`].
    pub fn private_key_pem(&self) -> String {
        crate::files::to_pem("PRIVATE KEY", &self.pkcs8)
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Signs `payload` into an envelope.
    pub fn seal(&self, payload: &[u8]) -> String {
        let signature = self.pair.sign(payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.as_ref())
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
}

/// Checks an envelope against the coordinator's public key and returns its payload.
pub fn open_envelope(envelope: &str, public_key: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
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
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&payload, &signature)
        .map_err(|_| EnvelopeError::BadSignature)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let signer = TicketSigner::generate().unwrap();
        let env = signer.seal(b"{\"fields\":[\"plate_no\"]}");
        assert_eq!(
            open_envelope(&env, &signer.public_key()).unwrap(),
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
            open_envelope(&widened, &signer.public_key()),
            Err(EnvelopeError::BadSignature)
        );
        let forger = TicketSigner::generate().unwrap();
        assert_eq!(
            open_envelope(&forger.seal(b"x"), &signer.public_key()),
            Err(EnvelopeError::BadSignature)
        );
        for bad in [
            "",
            ".",
            "abc",
            "!!.!!",
            &format!("{payload}."),
            &format!("{payload}.{sig}.x"),
        ] {
            assert!(open_envelope(bad, &signer.public_key()).is_err(), "{bad:?}");
        }
    }
}
