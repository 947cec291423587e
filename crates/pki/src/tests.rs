//! Unit tests of the CA, CSR signing, CRLs and key files.

use time::{Duration, OffsetDateTime};

use crate::*;

fn ca() -> CertificateAuthority {
    CertificateAuthority::generate("test federation CA").unwrap()
}

#[test]
fn signs_a_request_with_the_identity_the_ca_chooses() {
    let ca = ca();
    let key = LocalKey::generate().unwrap();
    let csr = key.certificate_request().unwrap();
    let who = Identity::new("tax", Role::Node).unwrap();
    let cert = ca
        .sign_request(
            &csr,
            &who,
            &["127.0.0.1".into(), "tax.example".into()],
            Duration::days(30),
        )
        .unwrap();
    let info = CertificateInfo::parse(&cert.der).unwrap();
    assert_eq!(info.identity, who);
    assert_eq!(info.serial, cert.serial);
    assert_eq!(info.serial.len(), 32);
    assert!(info.not_after_unix > OffsetDateTime::now_utc().unix_timestamp() + 29 * 86_400);
    CertificateInfo::verify_issued_by(&cert.der, ca.cert_der()).unwrap();
    let other = CertificateAuthority::generate("another CA").unwrap();
    assert!(CertificateInfo::verify_issued_by(&cert.der, other.cert_der()).is_err());
}

#[test]
fn names_requested_in_a_csr_are_ignored() {
    // A CSR that asks for the bureau's admin identity still yields only the
    // identity the CA decided on.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("exchange://bureau/admin").unwrap(),
    ));
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    let ca = ca();
    let who = Identity::new("education", Role::Client).unwrap();
    let cert = ca.sign_request(&csr, &who, &[], Duration::days(1)).unwrap();
    assert_eq!(CertificateInfo::parse(&cert.der).unwrap().identity, who);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names.len(), 1, "only our URI SAN");
}

#[test]
fn only_p256_keys_are_certified() {
    let ca = ca();
    let who = Identity::new("tax", Role::Client).unwrap();
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec();
        let err = ca
            .sign_request(&csr, &who, &[], Duration::days(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("P-256 keys only"), "{err}");
    }
}

#[test]
fn rejects_garbage_requests_and_names() {
    let ca = ca();
    let who = Identity::new("tax", Role::Node).unwrap();
    let err = ca
        .sign_request(b"not a csr", &who, &[], Duration::days(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::BadRequest(_)), "{err}");
    let csr = LocalKey::generate().unwrap().certificate_request().unwrap();
    for bad in [
        "",
        "bad name",
        "a..b",
        "-x.example",
        "x;rm -rf",
        "名字.example",
    ] {
        assert!(
            ca.sign_request(&csr, &who, &[bad.to_string()], Duration::days(1))
                .is_err(),
            "{bad:?} accepted"
        );
    }
    let client = Identity::new("tax", Role::Client).unwrap();
    assert!(ca
        .sign_request(&csr, &client, &["localhost".into()], Duration::days(1))
        .is_err());
}

#[test]
fn crl_lists_revoked_serials_and_is_verified_against_the_ca() {
    let ca = ca();
    let (cert, _key) = ca
        .issue_with_new_key(
            &Identity::new("tax", Role::Client).unwrap(),
            &[],
            Duration::days(1),
        )
        .unwrap();
    let crl = ca
        .revocation_list(
            7,
            &[RevokedEntry {
                serial: cert.serial.clone(),
                revoked_at: OffsetDateTime::now_utc(),
            }],
            Duration::days(1),
        )
        .unwrap();
    let list = RevocationList::parse_verified(&crl, ca.cert_der()).unwrap();
    assert_eq!(list.number, 7);
    assert!(list.is_revoked(&cert.serial));
    assert!(!list.is_revoked("40"));
    let other = CertificateAuthority::generate("another CA").unwrap();
    assert!(matches!(
        RevocationList::parse_verified(&crl, other.cert_der()),
        Err(PkiError::CrlSignature)
    ));
    let mut tampered = crl.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 0xff;
    assert!(RevocationList::parse_verified(&tampered, ca.cert_der()).is_err());
}

#[test]
fn ca_reloads_from_pem_and_refuses_a_foreign_key() {
    let ca = ca();
    let again = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    assert_eq!(again.fingerprint(), ca.fingerprint());
    // The reloaded CA issues certificates that chain to the original.
    let (cert, _) = again
        .issue_with_new_key(&Identity::admin(), &[], Duration::days(1))
        .unwrap();
    CertificateInfo::verify_issued_by(&cert.der, ca.cert_der()).unwrap();
    let other = CertificateAuthority::generate("another CA").unwrap();
    assert!(CertificateAuthority::from_pem(ca.cert_pem(), &other.key_pem()).is_err());
}

#[test]
fn fingerprints_are_normalized() {
    let ca = ca();
    let fp = ca.fingerprint();
    assert_eq!(fp.len(), 64);
    let colons: Vec<String> = fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert_eq!(normalize_fingerprint(&colons.join(":")).unwrap(), fp);
    assert_eq!(normalize_fingerprint(&format!("sha256:{fp}")).unwrap(), fp);
    assert!(normalize_fingerprint("abc").is_err());
    assert!(normalize_fingerprint(&"g".repeat(64)).is_err());
}

#[cfg(unix)]
#[test]
fn private_keys_are_written_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pki/ca.key");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    files::write_secret(&path, &ca().key_pem()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = files::read_text(&path).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
}

#[test]
fn pem_round_trip() {
    let ca = ca();
    let pem = files::to_pem("CERTIFICATE", ca.cert_der());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.crt");
    files::write_public(&path, &pem).unwrap();
    assert_eq!(
        files::read_pem_der(&path, "CERTIFICATE").unwrap(),
        ca.cert_der()
    );
}
