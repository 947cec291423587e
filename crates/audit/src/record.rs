//! What an audit entry says. Entries are JSON objects tagged by `event`.

use serde::{Deserialize, Serialize};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    pub fn now(event: Event) -> Record {
        Record {
            time_ms: now_ms(),
            event,
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Coordinator: a query was authorized or denied.
    QueryDecision(QueryDecision),
    /// Coordinator: how an authorized query ended, counted on the relayed stream.
    QueryCompletion(QueryCompletion),
    /// Node: a ticket was accepted; written before the first batch leaves.
    QueryServed(QueryServed),
    /// Node: a ticket was refused.
    QueryRefused(QueryRefused),
    /// Node: the subject keys (person IDs, company codes) of rows about to leave.
    QueryKeys(QueryKeys),
    /// Node: how a served query ended.
    QueryFinished(QueryCompletion),
    /// Coordinator: an access request, decision, grant or revocation.
    Access(AccessEvent),
    /// Coordinator and nodes: a data-subject report was asked for.
    SubjectRequest(SubjectRequest),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryDecision {
    pub query_id: String,
    pub ticket_id: String,
    pub consumer: String,
    pub user: String,
    pub purpose: String,
    pub dataset: String,
    pub owner: String,
    pub fields: Vec<String>,
    /// SHA-256 of the canonical filter text; empty for no filter.
    pub filter_digest: String,
    pub allowed: bool,
    /// The rule that decided, e.g. `grant required`.
    pub rule: String,
    /// The denial message, or empty.
    pub reason: String,
    pub grant_id: String,
    /// Date until which subject reports hide this access; empty for none.
    #[serde(default)]
    pub embargo_until: String,
    /// Values the filter tests against fields the consumer sees masked.
    #[serde(default)]
    pub masked_values: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryCompletion {
    pub query_id: String,
    pub ticket_id: String,
    pub dataset: String,
    pub consumer: String,
    pub rows: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// `ok`, `cancelled`, or the error that ended the stream.
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldMask {
    pub name: String,
    pub mask: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryServed {
    pub query_id: String,
    pub ticket_id: String,
    pub consumer: String,
    pub user: String,
    pub purpose: String,
    pub dataset: String,
    pub grant_id: String,
    pub fields: Vec<FieldMask>,
    pub filter_digest: String,
    #[serde(default)]
    pub embargo_until: String,
    /// Values the filter tests against fields the consumer sees masked,
    /// as the node counted them.
    #[serde(default)]
    pub masked_values: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryRefused {
    pub query_id: String,
    pub ticket_id: String,
    pub consumer: String,
    pub dataset: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryKeys {
    pub query_id: String,
    /// `person_id` or `org_code`.
    pub key_type: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessEvent {
    /// `request`, `approve`, `refuse`, `revoke`.
    pub action: String,
    pub request_id: String,
    pub grant_id: String,
    pub dataset: String,
    pub owner: String,
    pub consumer: String,
    /// Who acted: the department (and user) taken from the certificate.
    pub actor: String,
    pub purpose: String,
    pub fields: Vec<String>,
    /// Outcome of the step: `pending`, `granted`, `refused`, `revoked`.
    pub status: String,
    pub reason: String,
    /// Seconds from request to decision, for decisions.
    #[serde(default)]
    pub turnaround_secs: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubjectRequest {
    pub requester: String,
    pub key_type: String,
    /// The key, masked: subject reports do not copy raw IDs into more logs.
    pub subject: String,
    pub include_embargoed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_tagged_json() {
        let r = Record {
            time_ms: 1,
            event: Event::QueryKeys(QueryKeys {
                query_id: "Q-1".into(),
                key_type: "person_id".into(),
                keys: vec!["110101199003074578".into()],
            }),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"event\":\"query_keys\""), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
    }
}
