//! Identities carried in certificates.

use std::fmt;

use crate::{PkiError, Result};

/// The member id the bureau itself uses for the coordinator and its operators.
pub const RESERVED_MEMBER_ID: &str = "bureau";

const SCHEME: &str = "exchange://";

/// What a certificate holder may do in the federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The bureau's coordinator (server and client).
    Coordinator,
    /// A bureau operator: manages members.
    Admin,
    /// A department's exchange node (server and client).
    Node,
    /// An analyst or caseworker in a department.
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Admin => "admin",
            Role::Node => "node",
            Role::Client => "client",
        }
    }

    pub fn parse(text: &str) -> Result<Role> {
        match text {
            "coordinator" => Ok(Role::Coordinator),
            "admin" => Ok(Role::Admin),
            "node" => Ok(Role::Node),
            "client" => Ok(Role::Client),
            other => Err(PkiError::UnknownRole(other.to_string())),
        }
    }

    /// Roles whose certificates also authenticate a server.
    pub fn serves(self) -> bool {
        matches!(self, Role::Coordinator | Role::Node)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A department (member) and a role, as named by a certificate's SAN URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub member_id: String,
    pub role: Role,
}

impl Identity {
    pub fn new(member_id: &str, role: Role) -> Result<Identity> {
        validate_member_id(member_id)?;
        let bureau = member_id == RESERVED_MEMBER_ID;
        let bureau_role = matches!(role, Role::Coordinator | Role::Admin);
        if bureau != bureau_role {
            return Err(PkiError::InvalidIdentity {
                uri: format!("{SCHEME}{member_id}/{role}"),
                reason:
                    "only the bureau holds the coordinator and admin roles, and it holds no other"
                        .into(),
            });
        }
        Ok(Identity {
            member_id: member_id.to_string(),
            role,
        })
    }

    pub fn coordinator() -> Identity {
        Identity {
            member_id: RESERVED_MEMBER_ID.into(),
            role: Role::Coordinator,
        }
    }

    pub fn admin() -> Identity {
        Identity {
            member_id: RESERVED_MEMBER_ID.into(),
            role: Role::Admin,
        }
    }

    /// The SAN URI form, `exchange://<member-id>/<role>`.
    pub fn uri(&self) -> String {
        format!("{SCHEME}{}/{}", self.member_id, self.role)
    }

    pub fn from_uri(uri: &str) -> Result<Identity> {
        let bad = |reason: &str| PkiError::InvalidIdentity {
            uri: uri.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("expected the exchange:// scheme"))?;
        let (member, role) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected exchange://<member>/<role>"))?;
        let role = Role::parse(role).map_err(|_| bad("unknown role"))?;
        Identity::new(member, role)
    }

    pub fn is_bureau(&self) -> bool {
        self.member_id == RESERVED_MEMBER_ID
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Member ids are short, lowercase and safe everywhere they appear: in URIs,
/// file names, dataset ids and log lines. `a-z`, `0-9` and `-`, 2 to 40
/// characters, starting with a letter.
pub fn validate_member_id(id: &str) -> Result<()> {
    let err = |reason| PkiError::InvalidMemberId {
        id: id.chars().take(60).collect(),
        reason,
    };
    if id.len() < 2 || id.len() > 40 {
        return Err(err("use 2 to 40 characters"));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(err("start with a lowercase letter a-z"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(err("use only lowercase letters a-z, digits and '-'"));
    }
    if id.ends_with('-') || id.contains("--") {
        return Err(err("do not end with '-' or repeat '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let id = Identity::new("vehicle-admin", Role::Node).unwrap();
        assert_eq!(id.uri(), "exchange://vehicle-admin/node");
        assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        assert_eq!(
            Identity::from_uri("exchange://bureau/admin").unwrap(),
            Identity::admin()
        );
    }

    #[test]
    fn rejects_malformed_or_confused_identities() {
        for bad in [
            "https://tax/node",
            "exchange://tax",
            "exchange://tax/root",
            "exchange://Tax/node",
            "exchange://tax/node/extra",
            "exchange://税务/node",
            "exchange://bureau/node",
            "exchange://tax/admin",
            "exchange://tax/coordinator",
            "exchange://../node",
        ] {
            assert!(Identity::from_uri(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn member_id_rules() {
        assert!(validate_member_id("civil-affairs").is_ok());
        assert!(validate_member_id("hrss2").is_ok());
        for bad in [
            "",
            "a",
            "-tax",
            "tax-",
            "t--x",
            "TAX",
            "tax bureau",
            "tax;drop",
            "税务局",
        ] {
            assert!(validate_member_id(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(validate_member_id(&"a".repeat(41)).is_err());
    }
}
