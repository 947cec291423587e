//! What is fuzzed: everything the exchange parses from outside. Each target
//! returns quietly on input it rightly refuses and panics on a bug: a panic
//! inside the parser, or a broken property (a filter's canonical text must
//! parse back to the same filter; an accepted query command must survive
//! a round trip through JSON; a segment's frames must chain as verified).

use std::path::Path;

use exchange_audit::format::{
    encode_frame, frame_hash, read_frame, Checkpoint, SegmentHeader, KIND_CHECKPOINT, KIND_ENTRY,
};
use exchange_audit::{Event, QueryServed, Record};
use exchange_pki::{CertificateAuthority, Identity, MemberSigner, Role, TicketSigner};
use exchange_policy::ticket::{Ticket, TicketField};
use exchange_policy::FieldType;
use exchange_query::{FieldInfo, QueryCommand};

/// One fuzz target.
pub trait Target: Sync {
    fn name(&self) -> &'static str;
    fn seeds(&self) -> Vec<Vec<u8>>;
    fn run(&self, input: &[u8]);
}

/// Every target, by name.
pub fn all() -> anyhow::Result<Vec<Box<dyn Target>>> {
    Ok(vec![
        Box::new(FilterTarget),
        Box::new(ManifestTarget),
        Box::new(QueryCommandTarget),
        Box::new(TicketTarget::new()?),
        Box::new(AuditTarget::new()?),
    ])
}

fn lookup(name: &str) -> Option<FieldInfo> {
    let (field_type, masked) = match name {
        "owner_id" => (FieldType::String, true),
        "brand" | "plate_no" => (FieldType::String, false),
        "year" => (FieldType::Integer, false),
        "kwh" => (FieldType::Float, false),
        "registered_on" => (FieldType::Date, false),
        "crossed_at" => (FieldType::Timestamp, false),
        "active" => (FieldType::Boolean, false),
        _ => return None,
    };
    Some(FieldInfo { field_type, masked })
}

/// `--where` filters: parse, print, parse; check, canonical, parse, check.
pub struct FilterTarget;

impl Target for FilterTarget {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            "owner_id IN ('440604198506121234', '11010519491231002X')",
            "(brand = '比亚迪' OR brand = 'O''Neil') AND year BETWEEN 2020 AND 2025",
            "plate_no LIKE '粤E%' AND kwh < 1000.5 OR active = true",
            "registered_on >= '2020-01-01' AND crossed_at < '2024-05-01 08:00:00'",
            "kwh < 10000000000000000 AND kwh > 0.00001 AND year != -3",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn run(&self, input: &[u8]) {
        let Ok(text) = std::str::from_utf8(input) else {
            return;
        };
        let Ok(filter) = exchange_query::parse(text) else {
            return;
        };
        let printed = filter.to_string();
        if printed.len() <= exchange_query::MAX_FILTER_BYTES {
            let back = exchange_query::parse(&printed)
                .unwrap_or_else(|e| panic!("canonical text {printed:?} does not parse: {e}"));
            assert_eq!(back, filter, "{printed:?} parses to another filter");
        }
        let Ok(checked) = filter.check(&lookup) else {
            return;
        };
        if let Ok(canonical) = checked.canonical() {
            let again = exchange_query::parse(&canonical)
                .and_then(|f| f.check(&lookup))
                .unwrap_or_else(|e| panic!("the node would refuse {canonical:?}: {e}"));
            assert_eq!(
                again, checked,
                "{canonical:?} means something else at the node"
            );
        }
    }
}

/// Catalog manifests, parsed and validated (no database is opened).
pub struct ManifestTarget;

impl Target for ManifestTarget {
    fn name(&self) -> &'static str {
        "manifest"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![
            include_bytes!("../../../deploy/examples/catalog.toml").to_vec(),
            include_bytes!("../../demo-data/manifests/vehicle-admin.toml").to_vec(),
        ]
    }

    fn run(&self, input: &[u8]) {
        let Ok(text) = std::str::from_utf8(input) else {
            return;
        };
        let env = |_: &str| Some("sqlite:///nonexistent/fuzz.db".to_string());
        let _ = exchange_catalog::Manifest::parse(text, Path::new("/fuzz/catalog.toml"), &env);
    }
}

/// The JSON query command any Flight client sends.
pub struct QueryCommandTarget;

impl Target for QueryCommandTarget {
    fn name(&self) -> &'static str {
        "query-command"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            r#"{"dataset": "vehicle-admin/vehicles", "fields": ["plate_no", "owner_id"], "where": "owner_id = '440604198506121234'", "purpose": "低保家庭财产核查", "user": "王小明", "limit": 100}"#,
            r#"{"dataset": "tax/taxpayers", "purpose": "企业信息核验"}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn run(&self, input: &[u8]) {
        let Ok(cmd) = serde_json::from_slice::<QueryCommand>(input) else {
            return;
        };
        let json = serde_json::to_vec(&cmd).expect("a command serializes");
        let back: QueryCommand = serde_json::from_slice(&json).expect("and parses back");
        assert_eq!(back, cmd);
    }
}

/// Query tickets at the node: raw envelopes (most fail their signature),
/// and payloads signed by the real key (which reach every check after it).
pub struct TicketTarget {
    signer: TicketSigner,
    verifier: exchange_pki::TicketVerifier,
}

impl TicketTarget {
    fn new() -> anyhow::Result<TicketTarget> {
        let signer = TicketSigner::generate()?;
        Ok(TicketTarget {
            verifier: signer.verifier(),
            signer,
        })
    }

    fn ticket() -> Ticket {
        Ticket {
            version: 1,
            id: "t-1".into(),
            query_id: "Q-000000000001".into(),
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
            row_filter: "plate_no LIKE '粤E%'".into(),
            limit: Some(100),
            issued_unix: 1_800_000_000,
            expires_unix: 1_800_000_060,
            embargo_until: String::new(),
        }
    }
}

impl Target for TicketTarget {
    fn name(&self) -> &'static str {
        "ticket"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let payload = serde_json::to_vec(&Self::ticket()).expect("serializes");
        vec![Self::ticket().seal(&self.signer).into_bytes(), payload]
    }

    fn run(&self, input: &[u8]) {
        let now = 1_800_000_010;
        let envelope = if input.first() == Some(&b'{') {
            self.signer.seal(input)
        } else {
            match std::str::from_utf8(input) {
                Ok(text) => text.to_string(),
                Err(_) => return,
            }
        };
        if let Ok(ticket) = Ticket::open(&envelope, &self.verifier, "vehicle-admin", now) {
            assert_eq!(
                ticket.owner, "vehicle-admin",
                "a ticket for another node opened"
            );
            assert!(!ticket.fields.is_empty());
        }
    }
}

/// Audit segments as `audit verify` reads a copied log: the header, every
/// frame, its place in the chain, entries as records, checkpoints with
/// their signature and embedded certificate.
pub struct AuditTarget {
    segment: Vec<u8>,
}

impl AuditTarget {
    fn new() -> anyhow::Result<AuditTarget> {
        let ca = CertificateAuthority::generate("fuzz CA")?;
        let writer = Identity::new("tax", Role::Node)?;
        let (cert, key) = ca.issue_with_new_key(&writer, &[], time::Duration::days(1))?;
        let signer = MemberSigner::new(&key.private_key_der(), &cert.der)?;
        let header = SegmentHeader {
            version: 1,
            writer: writer.uri(),
            segment: 1,
            first_seq: 1,
            prev_hash: hex_zeros(),
            created_ms: 1_800_000_000_000,
        };
        let mut segment = header.encode();
        let mut prev = [0u8; 32];
        for seq in 1..=3u64 {
            let record = Record {
                time_ms: 1_800_000_000_000 + seq as i64,
                event: Event::QueryServed(QueryServed {
                    query_id: format!("Q-{seq:012}"),
                    consumer: "civil-affairs".into(),
                    purpose: "低保核查".into(),
                    ..Default::default()
                }),
            };
            let payload = serde_json::to_vec(&record)?;
            prev = encode_frame(&mut segment, &prev, KIND_ENTRY, seq, &payload);
        }
        let checkpoint = Checkpoint::sign(&signer, &writer.uri(), 3, &prev, 1_800_000_000_100)
            .map_err(anyhow::Error::msg)?;
        let payload = serde_json::to_vec(&checkpoint)?;
        encode_frame(&mut segment, &prev, KIND_CHECKPOINT, 4, &payload);
        Ok(AuditTarget { segment })
    }
}

fn hex_zeros() -> String {
    "0".repeat(64)
}

impl Target for AuditTarget {
    fn name(&self) -> &'static str {
        "audit-segment"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![self.segment.clone()]
    }

    fn run(&self, input: &[u8]) {
        let Ok((header, mut offset)) = SegmentHeader::decode(input) else {
            return;
        };
        let Ok(mut prev) = header.prev_hash() else {
            return;
        };
        while offset < input.len() {
            let Ok(frame) = read_frame(input, offset) else {
                return;
            };
            // A hostile log can carry a valid chain (SHA-256 has no key), so
            // payloads are decoded whether the hash matches or not.
            let hash = frame_hash(&prev, frame.kind, frame.seq, frame.payload);
            let _chained = hash.as_slice() == frame.hash;
            if frame.kind == KIND_ENTRY {
                let _ = serde_json::from_slice::<Record>(frame.payload);
            } else if let Ok(checkpoint) = serde_json::from_slice::<Checkpoint>(frame.payload) {
                let _ = checkpoint.verify_signature();
            }
            prev = hash;
            offset += frame.len;
        }
    }
}
