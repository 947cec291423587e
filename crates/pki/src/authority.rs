//! The certificate authority, and keys generated where they are used.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use crate::{fingerprint, Identity, PkiError, Result};

/// A certificate the CA has signed.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    /// Lowercase hex of the serial number's DER content bytes.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// One revoked certificate, as listed in a CRL.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    pub serial: String,
    pub revoked_at: OffsetDateTime,
}

/// The federation CA: its key and self-signed certificate.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a new CA with a fresh P-256 key, valid for ten years.
    pub fn generate(common_name: &str) -> Result<CertificateAuthority> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and PKCS#8 PEM key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertificateAuthority> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        let der = pem_to_der(cert_pem, "CERTIFICATE")?;
        if key.public_key_raw() != public_key_of(&der)? {
            return Err(PkiError::BadKey(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem: cert_pem.to_string(),
            cert_der: der,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key as PKCS#8 PEM. Write it only with [`crate::files::write_secret`].
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// SHA-256 fingerprint of the CA certificate, as enrolling parties pin it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Signs a certificate for `identity` over the public key in `csr_der`.
    ///
    /// Only the public key is taken from the request (after its signature is
    /// checked, proving possession of the private key). Names, key usages and
    /// validity come from the CA's decision, never from the CSR.
    pub fn sign_request(
        &self,
        csr_der: &[u8],
        identity: &Identity,
        server_names: &[String],
        validity: Duration,
    ) -> Result<IssuedCertificate> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| PkiError::BadRequest(e.to_string()))?;
        // The security model admits ECDSA P-256 keys only (what `LocalKey`
        // generates and every verifier here expects).
        if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::BadRequest(
                "the key is not an ECDSA P-256 key; this federation issues certificates for P-256 keys only (exchange enroll generates one)".into(),
            ));
        }
        let params = leaf_params(identity, server_names, validity)?;
        let serial = hex::encode(
            params
                .serial_number
                .as_ref()
                .map(|s| s.to_bytes())
                .unwrap_or_default(),
        );
        let cert = params.signed_by(&csr.public_key, self.issuer())?;
        Ok(IssuedCertificate {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            serial,
            not_after: params.not_after,
        })
    }

    /// Issues a certificate together with a freshly generated key. For the
    /// bureau's own certificates and the offline development PKI only: members
    /// enrol with [`LocalKey`] and [`CertificateAuthority::sign_request`].
    pub fn issue_with_new_key(
        &self,
        identity: &Identity,
        server_names: &[String],
        validity: Duration,
    ) -> Result<(IssuedCertificate, LocalKey)> {
        let key = LocalKey::generate()?;
        let csr = key.certificate_request()?;
        let issued = self.sign_request(&csr, identity, server_names, validity)?;
        Ok((issued, key))
    }

    /// A CRL signed by the CA listing `revoked`, valid for `validity`.
    pub fn revocation_list(
        &self,
        number: u64,
        revoked: &[RevokedEntry],
        validity: Duration,
    ) -> Result<Vec<u8>> {
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for entry in revoked {
            let bytes = hex::decode(&entry.serial)
                .map_err(|_| PkiError::BadCertificate(format!("bad serial {:?}", entry.serial)))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: entry.revoked_at,
                reason_code: Some(RevocationReason::PrivilegeWithdrawn),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + validity,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(self.issuer())?.der().to_vec())
    }
}

/// A private key generated on the machine that will use it, and its CSR.
pub struct LocalKey {
    key: KeyPair,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(..)")
    }
}

impl LocalKey {
    pub fn generate() -> Result<LocalKey> {
        Ok(LocalKey {
            key: KeyPair::generate()?,
        })
    }

    pub fn from_pem(pem: &str) -> Result<LocalKey> {
        Ok(LocalKey {
            key: KeyPair::from_pem(pem).map_err(|e| PkiError::BadKey(e.to_string()))?,
        })
    }

    /// A PKCS#10 request (DER) carrying only the public key. The CA decides
    /// every name and usage itself.
    pub fn certificate_request(&self) -> Result<Vec<u8>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("exchange enrolment request");
        Ok(params.serialize_request(&self.key)?.der().to_vec())
    }

    /// PKCS#8 PEM. Write it only with [`crate::files::write_secret`].
    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn private_key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }
}

fn leaf_params(
    identity: &Identity,
    server_names: &[String],
    validity: Duration,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&identity.uri());
    let uri = rcgen::string::Ia5String::try_from(identity.uri())
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    params.subject_alt_names.push(SanType::URI(uri));
    if !server_names.is_empty() && !identity.role.serves() {
        return Err(PkiError::ServerNamesOnClient(identity.role));
    }
    for name in server_names {
        params.subject_alt_names.push(server_name(name)?);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if identity.role.serves() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

fn server_name(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err(PkiError::BadServerName(name.chars().take(80).collect()));
    }
    let dns = rcgen::string::Ia5String::try_from(name.to_ascii_lowercase())
        .map_err(|_| PkiError::BadServerName(name.into()))?;
    Ok(SanType::DnsName(dns))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Exchange federation");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 16 random bytes, positive and without a leading zero, so the DER encoding
/// is exactly these bytes and the hex form is stable.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| PkiError::BadCertificate(format!("no {label} PEM block")))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| PkiError::BadCertificate(format!("unterminated {label} PEM block")))?
        + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| PkiError::BadCertificate(format!("bad base64 in {label} PEM: {e}")))
}

fn public_key_of(cert_der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}
