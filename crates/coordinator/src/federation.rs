//! The federation-wide catalog: every department's published datasets,
//! versioned and persisted, indexed for search, and each node's liveness.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use exchange_catalog::search::{Hit, SearchIndex, SearchQuery};
use exchange_proto::v1 as pb;
use exchange_storage::{Db, StorageError, Tree};
use serde::{Deserialize, Serialize};

use crate::registry::now_unix;

/// Limits on what a node may publish.
pub const MAX_DATASETS: usize = 5_000;
pub const MAX_FIELDS: usize = 500;
const MAX_TEXT: usize = 4_000;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("catalog rejected: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCatalog {
    version: u64,
    digest: String,
    published_unix: i64,
    /// Datasets as protobuf bytes, base64: they are already validated.
    datasets: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeState {
    pub last_seen_unix: i64,
    pub address: String,
    pub digest: String,
}

/// Node liveness as the coordinator sees it.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub online: bool,
    pub last_seen_unix: i64,
    pub catalog_version: u64,
    pub datasets: u32,
    pub address: String,
}

/// The tree of node heartbeats.
pub const LIVENESS_TREE: &str = "node_liveness";

pub struct Federation {
    catalogs: Tree,
    /// Each node's last heartbeat, written through so that every
    /// coordinator sharing the store sees the same liveness.
    liveness: Tree,
    index: RwLock<SearchIndex>,
    nodes: RwLock<HashMap<String, NodeState>>,
    versions: RwLock<HashMap<String, (u64, String, u32)>>,
    offline_after: Duration,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").finish_non_exhaustive()
    }
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), PublishError> {
    if text.chars().count() > max {
        return Err(PublishError::Invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(PublishError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

fn local_id_ok(id: &str) -> bool {
    (2..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Checks a published catalog and stamps it with the publisher's identity.
/// Whatever department the request claims is overwritten.
fn sanitize(
    member: &str,
    member_name: &str,
    version: u64,
    datasets: Vec<pb::Dataset>,
) -> Result<Vec<pb::Dataset>, PublishError> {
    if datasets.len() > MAX_DATASETS {
        return Err(PublishError::Invalid(format!(
            "{} datasets; at most {MAX_DATASETS} per department",
            datasets.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(datasets.len());
    for mut d in datasets {
        let local = d.id.rsplit('/').next().unwrap_or_default().to_string();
        if !local_id_ok(&local) {
            return Err(PublishError::Invalid(format!(
                "dataset id {:?} is not valid",
                d.id.chars().take(80).collect::<String>()
            )));
        }
        if !seen.insert(local.clone()) {
            return Err(PublishError::Invalid(format!(
                "dataset {local:?} appears twice"
            )));
        }
        if !["unconditional", "conditional", "none"].contains(&d.sharing.as_str()) {
            return Err(PublishError::Invalid(format!(
                "dataset {local:?}: unknown sharing class"
            )));
        }
        if d.sharing == "none" && d.basis.trim().is_empty() {
            return Err(PublishError::Invalid(format!(
                "dataset {local:?}: sharing none requires a basis"
            )));
        }
        if d.fields.is_empty() || d.fields.len() > MAX_FIELDS {
            return Err(PublishError::Invalid(format!(
                "dataset {local:?}: 1 to {MAX_FIELDS} fields required"
            )));
        }
        for (what, text, max) in [
            ("title", &d.title, 200),
            ("title_en", &d.title_en, 200),
            ("description", &d.description, MAX_TEXT),
            ("basis", &d.basis, MAX_TEXT),
        ] {
            check_text(&format!("dataset {local:?} {what}"), text, max)?;
        }
        for f in &d.fields {
            check_text(&format!("dataset {local:?} field name"), &f.name, 63)?;
            check_text(
                &format!("dataset {local:?} field description"),
                &f.description,
                1000,
            )?;
            if !["public", "internal", "sensitive", "secret"].contains(&f.sensitivity.as_str()) {
                return Err(PublishError::Invalid(format!(
                    "dataset {local:?} field {:?}: unknown sensitivity",
                    f.name
                )));
            }
        }
        d.id = format!("{member}/{local}");
        d.department = member.to_string();
        d.department_name = member_name.to_string();
        d.catalog_version = version;
        d.tags.truncate(32);
        out.push(d);
    }
    Ok(out)
}

impl Federation {
    /// Loads every stored catalog and builds the index.
    pub fn open(
        db: &Db,
        offline_after: Duration,
        active: &dyn Fn(&str) -> bool,
    ) -> Result<Federation, StorageError> {
        let catalogs = db.tree("catalogs")?;
        let fed = Federation {
            catalogs,
            liveness: db.tree(LIVENESS_TREE)?,
            index: RwLock::new(SearchIndex::new()),
            nodes: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
            offline_after,
        };
        fed.reload_all(active)?;
        Ok(fed)
    }

    /// Reads every stored catalog and heartbeat into memory again.
    pub fn reload_all(&self, active: &dyn Fn(&str) -> bool) -> Result<(), StorageError> {
        for (member, stored) in self.catalogs.scan_prefix::<(String, StoredCatalog)>("")? {
            self.hold_catalog(&member, stored, active(&member));
        }
        for (member, node) in self.liveness.entries::<NodeState>()? {
            self.hold_node(&member, node);
        }
        Ok(())
    }

    /// Reads one member's stored catalog into memory: how a catalog
    /// published to another coordinator reaches this one's search.
    pub fn reload_catalog(&self, member: &str, active: bool) -> Result<(), StorageError> {
        if let Some((_, stored)) = self.catalogs.get::<(String, StoredCatalog)>(member)? {
            self.hold_catalog(member, stored, active);
        }
        Ok(())
    }

    /// Reads one node's stored heartbeat into memory.
    pub fn reload_node(&self, member: &str) -> Result<(), StorageError> {
        if let Some(node) = self.liveness.get::<NodeState>(member)? {
            self.hold_node(member, node);
        }
        Ok(())
    }

    fn hold_catalog(&self, member: &str, stored: StoredCatalog, active: bool) {
        let datasets = decode(&stored);
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                member.to_string(),
                (stored.version, stored.digest.clone(), datasets.len() as u32),
            );
        if active {
            self.index
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .replace_department(member, datasets);
        }
    }

    /// Keeps the newer of the heartbeat held and `node`.
    fn hold_node(&self, member: &str, node: NodeState) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let newer = nodes
            .get(member)
            .is_none_or(|held| held.last_seen_unix <= node.last_seen_unix);
        if newer {
            nodes.insert(member.to_string(), node);
        }
    }

    /// Replaces `member`'s catalog if its digest changed. Returns the version
    /// now held and whether it changed.
    pub fn publish(
        &self,
        member: &str,
        member_name: &str,
        digest: &str,
        datasets: Vec<pb::Dataset>,
    ) -> Result<(u64, bool, u32), PublishError> {
        if digest.len() > 128 {
            return Err(PublishError::Invalid("digest too long".into()));
        }
        let current = self
            .versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(member)
            .cloned();
        if let Some((version, d, n)) = &current {
            if d == digest {
                return Ok((*version, false, *n));
            }
        }
        let version = current.map(|(v, _, _)| v).unwrap_or(0) + 1;
        let datasets = sanitize(member, member_name, version, datasets)?;
        let count = datasets.len() as u32;
        let stored = StoredCatalog {
            version,
            digest: digest.to_string(),
            published_unix: now_unix(),
            datasets: datasets.iter().map(encode).collect(),
        };
        // One record per department: the swap is atomic in the store, and
        // the index swap happens under one write lock.
        self.catalogs
            .insert(member, &(member.to_string(), stored))?;
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace_department(member, datasets);
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(member.to_string(), (version, digest.to_string(), count));
        Ok((version, true, count))
    }

    /// Records a heartbeat; returns whether the coordinator lacks the node's catalog.
    pub fn heartbeat(&self, member: &str, address: &str, digest: &str) -> bool {
        let mut address: String = address.chars().take(255).collect();
        address.retain(|c| !c.is_control());
        let node = NodeState {
            last_seen_unix: now_unix(),
            address,
            digest: digest.chars().take(128).collect(),
        };
        // Liveness is advisory: a heartbeat lost to a crash is replaced by
        // the next one, so it is written without waiting for the disk.
        if let Err(e) = self.liveness.insert_relaxed(member, &node) {
            tracing::warn!(%member, error = %e, "could not store a heartbeat; other coordinators may show the node offline");
        }
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(member.to_string(), node);
        let held = self
            .versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(member)
            .map(|(_, d, _)| d.clone());
        held.as_deref() != Some(digest)
    }

    /// Drops a member's datasets from search (for example when it is revoked).
    pub fn withdraw(&self, member: &str) {
        if let Err(e) = self.liveness.remove(member) {
            tracing::warn!(%member, error = %e, "could not drop a withdrawn node's heartbeat");
        }
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_department(member);
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(member);
    }

    pub fn node_view(&self, member: &str) -> NodeView {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let (version, _, datasets) = versions.get(member).cloned().unwrap_or_default();
        // While the shared store is unreachable, heartbeats sent to other
        // replicas cannot reach this one: a node is judged as it stood
        // when the outage began, not marked offline for the silence; and
        // so for `offline_after` past its end, while the heartbeats flow
        // through the store again.
        let now = now_unix();
        let grace = self.offline_after.as_secs() as i64;
        let judged_at = match self.liveness.last_outage() {
            Some((since, None)) => since.min(now),
            Some((since, Some(until))) if now - until <= grace => since.min(now),
            _ => now,
        };
        match nodes.get(member) {
            Some(n) => NodeView {
                online: judged_at - n.last_seen_unix <= self.offline_after.as_secs() as i64,
                last_seen_unix: n.last_seen_unix,
                catalog_version: version,
                datasets,
                address: n.address.clone(),
            },
            None => NodeView {
                catalog_version: version,
                datasets,
                ..NodeView::default()
            },
        }
    }

    pub fn search(&self, query: &SearchQuery) -> (Vec<Hit>, usize) {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .search(query)
    }

    pub fn dataset(&self, id: &str) -> Option<pb::Dataset> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every published dataset, by id.
    pub fn datasets(&self) -> Vec<pb::Dataset> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.datasets().into_iter().cloned().collect()
    }

    pub fn dataset_count(&self) -> usize {
        self.index.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn encode(d: &pb::Dataset) -> String {
    use base64::Engine;
    use prost::Message;
    base64::engine::general_purpose::STANDARD.encode(d.encode_to_vec())
}

fn decode(stored: &StoredCatalog) -> Vec<pb::Dataset> {
    use base64::Engine;
    use prost::Message;
    stored
        .datasets
        .iter()
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter_map(|bytes| pb::Dataset::decode(bytes.as_slice()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(id: &str, title: &str) -> pb::Dataset {
        pb::Dataset {
            id: id.into(),
            title: title.into(),
            sharing: "conditional".into(),
            fields: vec![pb::Field {
                name: "owner_id".into(),
                sensitivity: "sensitive".into(),
                key_type: "person_id".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn publish_versions_persist_and_ignore_claimed_departments() {
        let db = Db::temporary().unwrap();
        let fed = Federation::open(&db, Duration::from_secs(15), &|_| true).unwrap();
        let mut claimed = ds("tax/vehicles", "机动车登记信息");
        claimed.department = "tax".into();
        let (v, changed, n) = fed
            .publish("vehicle-admin", "车管所", "d1", vec![claimed])
            .unwrap();
        assert_eq!((v, changed, n), (1, true, 1));
        let got = fed
            .dataset("vehicle-admin/vehicles")
            .expect("qualified by the publisher");
        assert_eq!(got.department, "vehicle-admin");
        assert!(fed.dataset("tax/vehicles").is_none());
        assert_eq!(
            fed.publish("vehicle-admin", "车管所", "d1", vec![])
                .unwrap(),
            (1, false, 1)
        );
        let (v, changed, _) = fed
            .publish(
                "vehicle-admin",
                "车管所",
                "d2",
                vec![ds("boats", "船舶登记")],
            )
            .unwrap();
        assert_eq!((v, changed), (2, true));
        assert!(fed.dataset("vehicle-admin/vehicles").is_none());
        // A restart rebuilds the same state from the store.
        let again = Federation::open(&db, Duration::from_secs(15), &|_| true).unwrap();
        assert_eq!(
            again
                .dataset("vehicle-admin/boats")
                .unwrap()
                .catalog_version,
            2
        );
        assert_eq!(again.node_view("vehicle-admin").catalog_version, 2);
    }

    #[test]
    fn invalid_catalogs_are_rejected_whole() {
        let fed = Federation::open(&Db::temporary().unwrap(), Duration::from_secs(15), &|_| {
            true
        })
        .unwrap();
        let mut none = ds("x1", "t");
        none.sharing = "none".into();
        assert!(fed.publish("tax", "税务局", "a", vec![none]).is_err());
        assert!(fed
            .publish("tax", "税务局", "b", vec![ds("Bad Id", "t")])
            .is_err());
        assert!(fed
            .publish("tax", "税务局", "c", vec![ds("ok", "t"), ds("ok", "u")])
            .is_err());
        assert!(fed
            .publish("tax", "税务局", "d", vec![ds("ok", &"长".repeat(201))])
            .is_err());
        assert!(fed
            .publish("tax", "税务局", "e", vec![ds("ok", "a\u{1b}[2J")])
            .is_err());
        assert_eq!(fed.dataset_count(), 0);
    }

    #[test]
    fn liveness_follows_heartbeats() {
        let fed = Federation::open(&Db::temporary().unwrap(), Duration::from_secs(15), &|_| {
            true
        })
        .unwrap();
        assert!(!fed.node_view("tax").online);
        assert!(
            fed.heartbeat("tax", "127.0.0.1:1", "x"),
            "no catalog yet: republish"
        );
        fed.publish("tax", "税务局", "x", vec![ds("taxpayers", "纳税人")])
            .unwrap();
        assert!(!fed.heartbeat("tax", "127.0.0.1:1", "x"));
        let view = fed.node_view("tax");
        assert!(view.online);
        assert_eq!(view.address, "127.0.0.1:1");
    }
}
