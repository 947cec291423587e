//! Several coordinators on one PostgreSQL store (`state = "postgres://..."`):
//! what one replica decides, the others see at once. The store announces
//! each change to the trees below (LISTEN/NOTIFY); this applies it to the
//! in-memory views the request paths read: grants to the access book's
//! index (so an approval or a revocation holds on every replica, on open
//! connections too, since each query checks the index), catalogs to the
//! federation's search, members and the CRL to the revocation list that
//! every connection is checked against, and heartbeats to node liveness.
//! After a lost notification connection, everything is read again.
//!
//! Everything else the request paths read (requests, disputes, tokens,
//! counters, quotas) is read from the store on each request, so needs no
//! following. On sled there is one process and nothing to follow.

use std::sync::Arc;

use exchange_storage::postgres::Change;
use exchange_storage::{Db, StorageError};

use crate::federation::LIVENESS_TREE;
use crate::registry::MemberStatus;
use crate::service::State;

/// The trees whose changes reach every replica's memory.
const FOLLOWED: &[&str] = &["grants", "catalogs", "members", "pki", LIVENESS_TREE];

/// Starts applying other replicas' changes to `state`, for as long as it
/// lives.
pub fn follow(db: &Db, state: &Arc<State>) -> Result<(), StorageError> {
    let weak = Arc::downgrade(state);
    db.watch(FOLLOWED, move |change| {
        let Some(state) = weak.upgrade() else {
            return;
        };
        if let Err(e) = apply(&state, &change) {
            tracing::warn!(?change, error = %e, "could not apply a change from the shared state");
        }
    })
}

fn apply(state: &State, change: &Change) -> anyhow::Result<()> {
    match change {
        Change::Resync => {
            state.access.reload_grants()?;
            reload_revocations(state)?;
            state.federation.reload_all(&|m| is_active(state, m))?;
        }
        Change::Key { tree, key } => match tree.as_str() {
            "grants" => state.access.reload_grant(key)?,
            "catalogs" => state
                .federation
                .reload_catalog(key, is_active(state, key))?,
            "members" | "pki" => reload_revocations(state)?,
            LIVENESS_TREE => state.federation.reload_node(key)?,
            _ => {}
        },
    }
    Ok(())
}

/// The revocation list again, and revoked members out of search.
fn reload_revocations(state: &State) -> anyhow::Result<()> {
    state.revocations.update(state.registry.revocation_list()?);
    for member in state.registry.members()? {
        if member.status == MemberStatus::Revoked {
            state.federation.withdraw(&member.id);
        }
    }
    Ok(())
}

fn is_active(state: &State, member: &str) -> bool {
    state
        .registry
        .member(member)
        .is_ok_and(|m| m.status != MemberStatus::Revoked)
}

/// What every replica must hold alike, as fingerprints (never the keys).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedKeys {
    /// The federation CA certificate's SHA-256.
    pub ca: String,
    /// The ticket-signing public key, hex.
    pub ticket_key: String,
    /// SHA-256 of the mask-hash key.
    pub mask_hash_key: String,
}

impl SharedKeys {
    pub fn of(ca_fingerprint: &str, ticket_public_key: &[u8], mask_hash_key: &[u8]) -> SharedKeys {
        SharedKeys {
            ca: ca_fingerprint.to_string(),
            ticket_key: hex::encode(ticket_public_key),
            mask_hash_key: hex::encode(ring::digest::digest(&ring::digest::SHA256, mask_hash_key)),
        }
    }
}

/// Records this replica's key material in the shared state, or, when
/// another replica recorded it first, checks that it is the same: a
/// replica with another CA would issue certificates the others reject,
/// another ticket key would sign tickets nodes refuse, and another mask
/// key would mask the same value differently on each replica.
pub fn check_shared_keys(db: &Db, mine: &SharedKeys) -> anyhow::Result<()> {
    let recorded = db
        .tree("federation")?
        .update::<SharedKeys, _>("keys", |old| old.or_else(|| Some(mine.clone())))?
        .unwrap_or_else(|| mine.clone());
    let mut differ = Vec::new();
    if recorded.ca != mine.ca {
        differ.push(format!(
            "the CA certificate (ca.crt: this replica {}, the federation {})",
            mine.ca, recorded.ca
        ));
    }
    if recorded.ticket_key != mine.ticket_key {
        differ.push("the ticket-signing key (ticket.key)".to_string());
    }
    if recorded.mask_hash_key != mine.mask_hash_key {
        differ.push("the mask-hash key (mask-hash.key)".to_string());
    }
    anyhow::ensure!(
        differ.is_empty(),
        "this coordinator's key material differs from the other replicas' recorded in the shared state: {}. Copy the pki directory from a running replica (mode 0600) and start again",
        differ.join("; ")
    );
    Ok(())
}
