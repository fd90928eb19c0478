//! Typed ids, so a node id, a region group id and a shard index cannot be mixed up.
//!
//! Each is a plain value valid on any core. The ConfigNode persists [`NodeId`] and
//! [`RegionGroupId`] (and [`ShardId`] inside a replica's placement) in its journal as bare
//! JSON numbers: `#[serde(transparent)]` keeps journals written before these types existed
//! readable.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node of the cluster. ConfigNodes and DataNodes draw ids from one sequence, starting
/// at 0, as `SHOW CLUSTER` shows. A cluster view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

/// A region group (IoTDB's consensus group). One sequence, starting at 0, covers schema
/// and data region groups, as IoTDB numbers them in `SHOW REGIONS`. A cluster view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionGroupId(pub u32);

/// Index of a shard (core) within its DataNode: `0..shard_count`. A node view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The shard's position, for indexing per-shard tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for RegionGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&NodeId(7)).unwrap(), "7");
        assert_eq!(serde_json::to_string(&RegionGroupId(3)).unwrap(), "3");
        assert_eq!(serde_json::to_string(&ShardId(2)).unwrap(), "2");
        assert_eq!(serde_json::from_str::<NodeId>("7").unwrap(), NodeId(7));
        assert_eq!(
            serde_json::from_str::<RegionGroupId>("3").unwrap(),
            RegionGroupId(3)
        );
        assert_eq!(serde_json::from_str::<ShardId>("2").unwrap(), ShardId(2));
        assert!(serde_json::from_str::<ShardId>("70000").is_err());
    }

    #[test]
    fn ids_as_map_keys_stay_numbers_in_strings() {
        let map = std::collections::BTreeMap::from([(NodeId(1), "a")]);
        let text = serde_json::to_string(&map).unwrap();
        assert_eq!(text, r#"{"1":"a"}"#);
        let back: std::collections::BTreeMap<NodeId, &str> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, map);
    }
}
