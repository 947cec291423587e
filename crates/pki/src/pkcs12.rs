//! Certificates for browsers: a key, its certificate and the CA as one
//! password-protected PKCS#12 file (PBES2 with PBKDF2-HMAC-SHA-256 and
//! AES-256-CBC, HMAC-SHA-256 integrity), which Chromium, Chrome, Firefox
//! and the operating systems' key stores import. The web console signs in
//! with it (`exchange cert export --p12`).

use crate::{PkiError, Result};

/// The PKCS#12 bytes for one key (PKCS#8 DER) with its certificate and the
/// CA certificate (DER), under `alias`, encrypted with `password`.
pub fn to_pkcs12(
    alias: &str,
    key: &[u8],
    cert: &[u8],
    ca: &[u8],
    password: &str,
) -> Result<Vec<u8>> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let bad = |what: &str, e: p12_keystore::error::Error| PkiError::BadKey(format!("{what}: {e}"));
    let chain = PrivateKeyChain::new(
        ring::digest::digest(&ring::digest::SHA256, cert)
            .as_ref()
            .to_vec(),
        PrivateKey::from_der(key).map_err(|e| bad("the private key", e))?,
        [
            Certificate::from_der(cert).map_err(|e| bad("the certificate", e))?,
            Certificate::from_der(ca).map_err(|e| bad("the CA certificate", e))?,
        ],
    );
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .write()
        .map_err(|e| bad("writing the PKCS#12 file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_store_opens_with_its_password_only() {
        let ca = crate::CertificateAuthority::generate("test CA").unwrap();
        let identity = crate::Identity::new("tax", crate::Role::Client).unwrap();
        let (issued, key) = ca
            .issue_with_new_key(&identity, &[], time::Duration::days(1))
            .unwrap();
        let key_der = key.private_key_der();
        let bytes =
            to_pkcs12("tax", &key_der, &issued.der, ca.cert_der(), "correct horse").unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &bytes,
            "correct horse",
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        assert_eq!(chain.key().as_der(), key_der.as_slice());
        assert_eq!(chain.certs()[0].as_der(), issued.der.as_slice());
        assert!(p12_keystore::KeyStore::from_pkcs12(
            &bytes,
            "wrong",
            p12_keystore::Pkcs12ImportPolicy::Strict
        )
        .is_err());
    }
}
