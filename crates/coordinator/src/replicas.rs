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
