//! A node's identity on disk: the cluster it joined and the id it was given, written at
//! its first registration and read at every start, so a restarted node re-joins as
//! itself (and a node pointed at another cluster's data is refused instead of joining it).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::confignode::NodeId;

/// The file's name inside the role's directory (`confignode/`, `datanode/`).
pub const IDENTITY_FILE: &str = "node-identity.json";

/// What a node persists about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_name: String,
    pub node_id: NodeId,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(IDENTITY_FILE)
}

/// The identity in `dir`, if the node registered before.
pub fn load(dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = path(dir);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let identity =
        serde_json::from_slice(&text).with_context(|| format!("{} is damaged", path.display()))?;
    Ok(Some(identity))
}

/// Persists the identity (temporary file, fsync, rename, directory fsync).
pub fn store(dir: &Path, identity: &Identity) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = serde_json::to_vec_pretty(identity).expect("an identity serializes");
    crate::confignode::journal::write_atomically(dir, &path(dir), &bytes)
        .with_context(|| format!("writing {}", path(dir).display()))
}

/// The file holding a DataNode's registration token until it has an id.
pub const TOKEN_FILE: &str = "registration-token";

/// The registration token of a node without an id: read, or drawn and persisted before
/// the node registers, so a registration retried after a crash presents the same one.
pub fn registration_token(dir: &Path) -> anyhow::Result<u64> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text
                .trim()
                .parse()
                .with_context(|| format!("{} is damaged", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let token = hasher.finish().max(1);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::confignode::journal::write_atomically(dir, &path, token.to_string().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// Refuses to start a node whose data belongs to another cluster.
pub fn check_cluster(identity: &Identity, cluster_name: &str, dir: &Path) -> anyhow::Result<()> {
    if identity.cluster_name != cluster_name {
        bail!(
            "{} belongs to cluster {:?} (node {}), but cluster_name is {:?}: start it with \
             cluster_name = {:?}, or give it an empty data directory to join {:?}",
            dir.display(),
            identity.cluster_name,
            identity.node_id,
            cluster_name,
            identity.cluster_name,
            cluster_name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_and_guards_its_cluster() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let identity = Identity {
            cluster_name: "c1".into(),
            node_id: NodeId(3),
        };
        store(dir.path(), &identity).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, identity);
        check_cluster(&loaded, "c1", dir.path()).unwrap();
        let refused = check_cluster(&loaded, "c2", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("c1") && refused.contains("c2"),
            "{refused}"
        );
        std::fs::write(dir.path().join(IDENTITY_FILE), b"{").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
