//! The `hash` mask's keys this node holds: one per consumer department,
//! derived by the coordinator from a master secret that only it holds, and
//! never the key of this node's own department.
//!
//! An owner hashes the values it sends a consumer with that consumer's key,
//! so the consumer's hashed keys still join across every department it
//! queries; the consumer's own node cannot recompute them from guessed
//! values (once, every node held one federation-wide key, and a department
//! could reverse the hashed IDs it received by hashing the IDs in its own
//! records). The keys arrive with a heartbeat over mutual TLS (when the
//! coordinator's set differs from the one the node names by digest) and are
//! kept in `<data_dir>/mask-keys.json`, mode 0600 like a private key, never
//! in the state database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use exchange_policy::HashKey;

/// File name of the keys, in the node's data directory.
pub const FILE: &str = "mask-keys.json";

/// The keys, by consumer member id.
pub struct MaskKeys {
    path: PathBuf,
    keys: RwLock<HashMap<String, (Vec<u8>, HashKey)>>,
}

impl std::fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskKeys({} consumers)", self.len())
    }
}

fn decode(raw: HashMap<String, String>) -> anyhow::Result<HashMap<String, (Vec<u8>, HashKey)>> {
    raw.into_iter()
        .map(|(member, hex_secret)| {
            let secret = hex::decode(&hex_secret).context("a key is not hex")?;
            let key = HashKey::new(&secret).context("a key is shorter than 32 bytes")?;
            Ok((member, (secret, key)))
        })
        .collect()
}

impl MaskKeys {
    /// Loads the keys kept in `data_dir` (none before the first heartbeat),
    /// tightening the file's permissions if someone loosened them.
    pub fn load(data_dir: &Path) -> anyhow::Result<MaskKeys> {
        let path = data_dir.join(FILE);
        let keys = if path.exists() {
            restrict(&path)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let raw: HashMap<String, String> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON object of keys", path.display()))?;
            decode(raw).with_context(|| format!("in {}", path.display()))?
        } else {
            HashMap::new()
        };
        Ok(MaskKeys {
            path,
            keys: RwLock::new(keys),
        })
    }

    /// The key for values sent to `consumer`.
    pub fn get(&self, consumer: &str) -> Option<HashKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(consumer)
            .map(|(_, key)| key.clone())
    }

    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The consumers this node holds keys for.
    pub fn consumers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Installs the keys the coordinator sent, when they differ from those
    /// held: written to a temporary file (0600), synced and renamed over
    /// the old one, then swapped in. Returns whether anything changed.
    pub fn replace(&self, received: &HashMap<String, Vec<u8>>) -> anyhow::Result<bool> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let same = keys.len() == received.len()
            && received
                .iter()
                .all(|(m, s)| keys.get(m).is_some_and(|(held, _)| held == s));
        if same {
            return Ok(false);
        }
        let raw: HashMap<String, String> = received
            .iter()
            .map(|(m, s)| (m.clone(), hex::encode(s)))
            .collect();
        let decoded = decode(raw.clone()).context("the coordinator sent an unusable mask key")?;
        let tmp = self.path.with_extension("json.tmp");
        exchange_pki::files::write_secret(&tmp, &serde_json::to_string(&raw)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        *keys = decoded;
        Ok(true)
    }
}

/// Makes `path` readable by its owner only.
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(file = %path.display(), mode = format!("{:o}", mode & 0o777), "mask keys were readable by others; restricting to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_kept_owner_only_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = MaskKeys::load(dir.path()).unwrap();
        assert!(keys.is_empty());
        let received: HashMap<String, Vec<u8>> = [
            ("tax".to_string(), vec![1u8; 32]),
            ("education".into(), vec![2u8; 32]),
        ]
        .into();
        assert!(keys.replace(&received).unwrap());
        assert!(
            !keys.replace(&received).unwrap(),
            "unchanged keys are not rewritten"
        );
        let path = dir.path().join(FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = MaskKeys::load(dir.path()).unwrap();
        assert_eq!(again.consumers(), ["education", "tax"]);
        assert_eq!(
            again.get("tax").unwrap().digest("x"),
            HashKey::new(&[1u8; 32]).unwrap().digest("x")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "loosened permissions are tightened");
        let short: HashMap<String, Vec<u8>> = [("tax".to_string(), vec![1u8; 8])].into();
        assert!(again.replace(&short).is_err());
        assert_eq!(again.len(), 2, "an unusable key changes nothing");
    }
}
