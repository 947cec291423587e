//! The member registry and the federation CA's bookkeeping.
//!
//! Members, one-time enrolment tokens (stored only as SHA-256 hashes),
//! issued certificates and the current CRL live in the state store. Every
//! issued certificate is recorded against its member, so revoking a member
//! revokes all of its certificates.

use std::sync::{Arc, Mutex};

use base64::Engine;
use exchange_pki::{
    validate_member_id, CertificateAuthority, Identity, PkiError, RevocationList, RevokedEntry,
    Role, RESERVED_MEMBER_ID,
};
use exchange_policy::text::{request_text, TextRule};
use exchange_storage::{Db, StorageError, Tree};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Everything the registry can refuse, with a message for the caller.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("member {0:?} already exists")]
    MemberExists(String),
    #[error("no member {0:?}; list members with `coordinator member list`")]
    UnknownMember(String),
    #[error("member {0:?} has been revoked; add it again under a new id to re-admit it")]
    MemberRevoked(String),
    #[error(transparent)]
    BadText(exchange_policy::text::TextError),
    #[error("enrolment token not recognised: check that it was copied whole")]
    UnknownToken,
    #[error("enrolment token was already used at {0}; ask the bureau for a new one")]
    TokenUsed(String),
    #[error("enrolment token expired at {0}; ask the bureau for a new one")]
    TokenExpired(String),
    #[error("this token is for enrolling a {expected}, not a {got}")]
    TokenRole { expected: Role, got: Role },
    #[error("enrolment issues node and client certificates only")]
    TokenRoleNotAllowed,
    #[error("a token lifetime must be between 60 seconds and 30 days")]
    BadTtl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    Pending,
    Active,
    Revoked,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Active => "active",
            MemberStatus::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRecord {
    pub serial: String,
    pub role: Role,
    pub issued_unix: i64,
    pub not_after_unix: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRecord {
    pub id: String,
    pub display_name: String,
    pub status: MemberStatus,
    pub created_unix: i64,
    pub revoked_unix: Option<i64>,
    pub revocation_reason: String,
    pub certificates: Vec<CertRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    member_id: String,
    role: Role,
    expires_unix: i64,
    used_unix: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CrlRecord {
    number: u64,
    der_b64: String,
}

/// A freshly issued one-time token. The plain token exists only here and in
/// the operator's hands; the store keeps its hash.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub role: Role,
    pub expires_unix: i64,
}

/// Result of a successful enrolment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub identity: Identity,
    pub certificate_der: Vec<u8>,
    pub not_after_unix: i64,
}

/// Lifetimes the registry applies.
#[derive(Debug, Clone, Copy)]
pub struct RegistryPolicy {
    pub default_token_ttl: Duration,
    pub certificate_validity: Duration,
    pub crl_validity: Duration,
}

impl Default for RegistryPolicy {
    fn default() -> Self {
        RegistryPolicy {
            default_token_ttl: Duration::hours(24),
            certificate_validity: Duration::days(365),
            crl_validity: Duration::days(7),
        }
    }
}

pub struct Registry {
    ca: Arc<CertificateAuthority>,
    members: Tree,
    tokens: Tree,
    pki: Tree,
    policy: RegistryPolicy,
    /// Serialises token consumption and CRL number allocation.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

pub use exchange_pki::now_unix;

pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn token_key(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.trim().as_bytes(),
    ))
}

impl Registry {
    pub fn open(
        db: &Db,
        ca: Arc<CertificateAuthority>,
        policy: RegistryPolicy,
    ) -> Result<Registry, RegistryError> {
        let registry = Registry {
            ca,
            members: db.tree("members")?,
            tokens: db.tree("tokens")?,
            pki: db.tree("pki")?,
            policy,
            write_lock: Mutex::new(()),
        };
        if registry.pki.get::<CrlRecord>("crl")?.is_none() {
            registry.publish_crl()?;
        }
        Ok(registry)
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    pub fn add_member(&self, id: &str, display_name: &str) -> Result<MemberRecord, RegistryError> {
        validate_member_id(id)?;
        if id == RESERVED_MEMBER_ID {
            return Err(RegistryError::MemberExists(id.into()));
        }
        let name = request_text(
            "display name",
            display_name,
            TextRule::required_line(
                100,
                "give the department's name in display_name, e.g. \"车辆管理所\" (`--name` on the command line)",
            ),
        )
        .map_err(RegistryError::BadText)?;
        let name = name.as_str();
        let record = MemberRecord {
            id: id.to_string(),
            display_name: name.to_string(),
            status: MemberStatus::Pending,
            created_unix: now_unix(),
            revoked_unix: None,
            revocation_reason: String::new(),
            certificates: Vec::new(),
        };
        let mut existed = false;
        self.members.update::<MemberRecord, _>(id, |old| {
            existed = old.is_some();
            Some(old.unwrap_or_else(|| record.clone()))
        })?;
        if existed {
            return Err(RegistryError::MemberExists(id.into()));
        }
        Ok(record)
    }

    pub fn member(&self, id: &str) -> Result<MemberRecord, RegistryError> {
        self.members
            .get(id)?
            .ok_or_else(|| RegistryError::UnknownMember(id.into()))
    }

    pub fn members(&self) -> Result<Vec<MemberRecord>, RegistryError> {
        Ok(self.members.values()?)
    }

    pub fn issue_token(
        &self,
        member_id: &str,
        role: Role,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, RegistryError> {
        if !matches!(role, Role::Node | Role::Client) {
            return Err(RegistryError::TokenRoleNotAllowed);
        }
        let ttl = ttl.unwrap_or(self.policy.default_token_ttl);
        if ttl < Duration::seconds(60) || ttl > Duration::days(30) {
            return Err(RegistryError::BadTtl);
        }
        let member = self.member(member_id)?;
        if member.status == MemberStatus::Revoked {
            return Err(RegistryError::MemberRevoked(member_id.into()));
        }
        let mut bytes = [0u8; 24];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's random source failed");
        let token = format!(
            "xt_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let expires_unix = now_unix() + ttl.whole_seconds();
        self.tokens.insert(
            &token_key(&token),
            &TokenRecord {
                member_id: member_id.into(),
                role,
                expires_unix,
                used_unix: None,
            },
        )?;
        Ok(IssuedToken {
            token,
            role,
            expires_unix,
        })
    }

    /// Consumes a one-time token and signs the CSR for its member and role.
    pub fn enroll(
        &self,
        token: &str,
        role: Role,
        csr_der: &[u8],
        server_names: &[String],
    ) -> Result<Enrolled, RegistryError> {
        if !matches!(role, Role::Node | Role::Client) {
            return Err(RegistryError::TokenRoleNotAllowed);
        }
        // Check the request before spending the token on it.
        let probe = Identity::new("probe", role).map_err(RegistryError::Pki)?;
        self.ca
            .sign_request(csr_der, &probe, server_names, Duration::minutes(1))?;

        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let key = token_key(token);
        let record: TokenRecord = self.tokens.get(&key)?.ok_or(RegistryError::UnknownToken)?;
        let now = now_unix();
        if let Some(used) = record.used_unix {
            return Err(RegistryError::TokenUsed(rfc3339(used)));
        }
        if record.expires_unix < now {
            return Err(RegistryError::TokenExpired(rfc3339(record.expires_unix)));
        }
        if record.role != role {
            return Err(RegistryError::TokenRole {
                expected: record.role,
                got: role,
            });
        }
        let member = self.member(&record.member_id)?;
        if member.status == MemberStatus::Revoked {
            return Err(RegistryError::MemberRevoked(member.id));
        }
        // Spent by compare-and-swap: of two enrolments with one token at the
        // same moment, here or on another coordinator sharing the store,
        // exactly one spends it.
        let spent = std::cell::Cell::new(false);
        self.tokens.update::<TokenRecord, _>(&key, |old| {
            spent.set(false);
            old.map(|t| match t.used_unix {
                None => {
                    spent.set(true);
                    TokenRecord {
                        used_unix: Some(now),
                        ..t
                    }
                }
                Some(_) => t,
            })
        })?;
        if !spent.get() {
            return Err(RegistryError::TokenUsed(rfc3339(now)));
        }
        let identity = Identity::new(&member.id, role)?;
        let issued = self.ca.sign_request(
            csr_der,
            &identity,
            server_names,
            self.policy.certificate_validity,
        )?;
        let cert = CertRecord {
            serial: issued.serial.clone(),
            role,
            issued_unix: now,
            not_after_unix: issued.not_after.unix_timestamp(),
        };
        self.members.update::<MemberRecord, _>(&member.id, |old| {
            old.map(|mut m| {
                if m.status == MemberStatus::Pending {
                    m.status = MemberStatus::Active;
                }
                m.certificates.push(cert.clone());
                m
            })
        })?;
        Ok(Enrolled {
            identity,
            certificate_der: issued.der,
            not_after_unix: cert.not_after_unix,
        })
    }

    /// Records a certificate issued outside enrolment (the offline dev PKI).
    pub fn record_certificate(
        &self,
        member_id: &str,
        cert: CertRecord,
    ) -> Result<(), RegistryError> {
        let updated = self.members.update::<MemberRecord, _>(member_id, |old| {
            old.map(|mut m| {
                m.status = MemberStatus::Active;
                m.certificates.push(cert.clone());
                m
            })
        })?;
        updated
            .map(|_| ())
            .ok_or_else(|| RegistryError::UnknownMember(member_id.into()))
    }

    /// Revokes a member and every certificate it holds; returns the member,
    /// the number of certificates revoked and the new CRL number.
    pub fn revoke(
        &self,
        member_id: &str,
        reason: &str,
    ) -> Result<(MemberRecord, usize, u64), RegistryError> {
        let now = now_unix();
        let reason = request_text("reason", reason, TextRule::paragraph(500))
            .map_err(RegistryError::BadText)?;
        let updated = self
            .members
            .update::<MemberRecord, _>(member_id, |old| {
                old.map(|mut m| {
                    if m.status != MemberStatus::Revoked {
                        m.status = MemberStatus::Revoked;
                        m.revoked_unix = Some(now);
                        m.revocation_reason = reason.clone();
                    }
                    m
                })
            })?
            .ok_or_else(|| RegistryError::UnknownMember(member_id.into()))?;
        let number = self.publish_crl()?;
        let count = updated.certificates.len();
        Ok((updated, count, number))
    }

    /// Signs a new CRL listing every certificate of every revoked member.
    fn publish_crl(&self) -> Result<u64, RegistryError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let number = self
            .pki
            .get::<CrlRecord>("crl")?
            .map(|c| c.number)
            .unwrap_or(0)
            + 1;
        let mut revoked = Vec::new();
        for m in self.members()? {
            if m.status == MemberStatus::Revoked {
                let at = OffsetDateTime::from_unix_timestamp(m.revoked_unix.unwrap_or(0))
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                for c in &m.certificates {
                    revoked.push(RevokedEntry {
                        serial: c.serial.clone(),
                        revoked_at: at,
                    });
                }
            }
        }
        let der = self
            .ca
            .revocation_list(number, &revoked, self.policy.crl_validity)?;
        self.pki.insert(
            "crl",
            &CrlRecord {
                number,
                der_b64: base64::engine::general_purpose::STANDARD.encode(&der),
            },
        )?;
        Ok(number)
    }

    /// The current CRL, DER encoded, with its number.
    pub fn crl(&self) -> Result<(u64, Vec<u8>), RegistryError> {
        let record: CrlRecord = self.pki.get("crl")?.ok_or(RegistryError::UnknownToken)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(&record.der_b64)
            .map_err(|e| RegistryError::Pki(PkiError::BadCrl(e.to_string())))?;
        Ok((record.number, der))
    }

    pub fn revocation_list(&self) -> Result<RevocationList, RegistryError> {
        let (_, der) = self.crl()?;
        Ok(RevocationList::parse_verified(&der, self.ca.cert_der())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let ca = Arc::new(CertificateAuthority::generate("test CA").unwrap());
        Registry::open(&Db::temporary().unwrap(), ca, RegistryPolicy::default()).unwrap()
    }

    fn csr() -> Vec<u8> {
        exchange_pki::LocalKey::generate()
            .unwrap()
            .certificate_request()
            .unwrap()
    }

    #[test]
    fn tokens_are_single_use_role_bound_and_expire() {
        let r = registry();
        r.add_member("tax", "税务局").unwrap();
        assert!(matches!(
            r.add_member("tax", "again"),
            Err(RegistryError::MemberExists(_))
        ));
        let t = r.issue_token("tax", Role::Node, None).unwrap();
        assert!(matches!(
            r.enroll(&t.token, Role::Client, &csr(), &[]),
            Err(RegistryError::TokenRole { .. })
        ));
        let enrolled = r
            .enroll(&t.token, Role::Node, &csr(), &["127.0.0.1".into()])
            .unwrap();
        assert_eq!(enrolled.identity.uri(), "exchange://tax/node");
        assert!(matches!(
            r.enroll(&t.token, Role::Node, &csr(), &[]),
            Err(RegistryError::TokenUsed(_))
        ));
        assert!(matches!(
            r.enroll("xt_wrong", Role::Node, &csr(), &[]),
            Err(RegistryError::UnknownToken)
        ));
        // An expired token.
        let t2 = r.issue_token("tax", Role::Client, None).unwrap();
        r.tokens
            .update::<TokenRecord, _>(&token_key(&t2.token), |old| {
                old.map(|mut t| {
                    t.expires_unix = now_unix() - 1;
                    t
                })
            })
            .unwrap();
        assert!(matches!(
            r.enroll(&t2.token, Role::Client, &csr(), &[]),
            Err(RegistryError::TokenExpired(_))
        ));
        // A garbage CSR does not burn the token.
        let t3 = r.issue_token("tax", Role::Client, None).unwrap();
        assert!(r.enroll(&t3.token, Role::Client, b"garbage", &[]).is_err());
        assert!(r.enroll(&t3.token, Role::Client, &csr(), &[]).is_ok());
        assert_eq!(r.member("tax").unwrap().status, MemberStatus::Active);
        assert_eq!(r.member("tax").unwrap().certificates.len(), 2);
        assert!(matches!(
            r.issue_token("tax", Role::Admin, None),
            Err(RegistryError::TokenRoleNotAllowed)
        ));
        assert!(matches!(
            r.issue_token("nobody", Role::Node, None),
            Err(RegistryError::UnknownMember(_))
        ));
    }

    #[test]
    fn revocation_lists_every_certificate_of_the_member() {
        let r = registry();
        r.add_member("tax", "税务局").unwrap();
        r.add_member("education", "教育局").unwrap();
        let a = r
            .enroll(
                &r.issue_token("tax", Role::Node, None).unwrap().token,
                Role::Node,
                &csr(),
                &[],
            )
            .unwrap();
        let b = r
            .enroll(
                &r.issue_token("tax", Role::Client, None).unwrap().token,
                Role::Client,
                &csr(),
                &[],
            )
            .unwrap();
        let c = r
            .enroll(
                &r.issue_token("education", Role::Client, None)
                    .unwrap()
                    .token,
                Role::Client,
                &csr(),
                &[],
            )
            .unwrap();
        let before = r.revocation_list().unwrap();
        let (member, count, number) = r.revoke("tax", "left the federation").unwrap();
        assert_eq!(member.status, MemberStatus::Revoked);
        assert_eq!(count, 2);
        assert!(number > before.number);
        let list = r.revocation_list().unwrap();
        let serial = |der: &[u8]| exchange_pki::CertificateInfo::parse(der).unwrap().serial;
        assert!(list.is_revoked(&serial(&a.certificate_der)));
        assert!(list.is_revoked(&serial(&b.certificate_der)));
        assert!(!list.is_revoked(&serial(&c.certificate_der)));
        assert!(matches!(
            r.issue_token("tax", Role::Client, None),
            Err(RegistryError::MemberRevoked(_))
        ));
    }

    #[test]
    fn member_ids_and_names_are_checked() {
        let r = registry();
        assert!(r.add_member("bureau", "x").is_err());
        assert!(r.add_member("Tax Bureau", "x").is_err());
        assert!(matches!(
            r.add_member("tax", "  "),
            Err(RegistryError::BadText(_))
        ));
        assert!(matches!(
            r.add_member("tax", "a\u{7}b"),
            Err(RegistryError::BadText(_))
        ));
    }
}
