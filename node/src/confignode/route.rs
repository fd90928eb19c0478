//! The route table the ConfigNode publishes: an immutable, versioned
//! snapshot of partitions → region group → replicas (DataNode, shard,
//! role) and the DataNodes' endpoints.
//!
//! A new snapshot is built after every change and handed out as an
//! `Arc<RouteSnapshot>`: read-only, so any core may hold and read it; a
//! holder refreshes when it sees a newer `version`. The node converts it to
//! the wire route table.

use super::model::{
    DatabaseSettings, NodeId, NodeStatus, RegionGroupId, RegionGroupKind, ReplicationAck, Role,
    ShardId,
};
use super::state::ConfigState;
use std::collections::BTreeMap;

/// One database's routing data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRoute {
    /// Its settings (TTL, time partition interval, ...).
    pub settings: DatabaseSettings,
    /// SchemaPartition: series slot → SchemaRegionGroup.
    pub schema_partitions: BTreeMap<u32, RegionGroupId>,
    /// DataPartition: series slot → time slot → DataRegionGroup.
    pub data_partitions: BTreeMap<u32, BTreeMap<i64, RegionGroupId>>,
}

/// One replica of a region group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaRoute {
    /// The DataNode holding it.
    pub data_node_id: NodeId,
    /// The shard (core) owning it there.
    pub shard: ShardId,
    /// Leader or follower.
    pub role: Role,
}

/// One region group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionGroupRoute {
    /// Schema or data.
    pub kind: RegionGroupKind,
    /// Its database.
    pub database: String,
    /// Its replicas; exactly one is the leader.
    pub replicas: Vec<ReplicaRoute>,
    /// The leader epoch (bumped by every leader change).
    pub epoch: u64,
    /// Replicas outside the in-sync set.
    pub out_of_sync: Vec<NodeId>,
    /// The version of the in-sync set.
    pub in_sync_version: u64,
}

impl RegionGroupRoute {
    /// The leader replica.
    pub fn leader(&self) -> &ReplicaRoute {
        self.replicas
            .iter()
            .find(|replica| replica.role == Role::Leader)
            .expect("a region group has a leader")
    }
}

/// A DataNode's endpoints and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNodeRoute {
    /// Client RPC address.
    pub rpc_address: String,
    /// Client RPC port.
    pub rpc_port: u16,
    /// Internal (node-to-node) address.
    pub internal_address: String,
    /// Internal port.
    pub internal_port: u16,
    /// First data-region consensus port: shard `s` replicates on this port + `s`.
    pub data_consensus_port: u16,
    /// Number of shards.
    pub shard_count: u32,
    /// Status when the snapshot was taken.
    pub status: NodeStatus,
}

/// An immutable, versioned route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSnapshot {
    /// The ConfigNode state version it was built from; grows with every
    /// change.
    pub version: u64,
    /// Series slots per database.
    pub series_slot_num: u32,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseRoute>,
    /// Region groups by id.
    pub region_groups: BTreeMap<RegionGroupId, RegionGroupRoute>,
    /// DataNodes by id.
    pub data_nodes: BTreeMap<NodeId, DataNodeRoute>,
    /// `data_replication_ack`.
    pub replication_ack: ReplicationAck,
}

impl RouteSnapshot {
    /// Builds the snapshot of `state`.
    pub fn from_state(state: &ConfigState) -> RouteSnapshot {
        let databases = state
            .databases()
            .values()
            .map(|database| {
                let route = DatabaseRoute {
                    settings: database.settings.clone(),
                    schema_partitions: database.schema_partitions.clone(),
                    data_partitions: database.data_partitions.clone(),
                };
                (database.name.clone(), route)
            })
            .collect();
        let region_groups = state
            .region_groups()
            .values()
            .map(|group| {
                let replicas = group
                    .replicas
                    .iter()
                    .map(|replica| ReplicaRoute {
                        data_node_id: replica.data_node_id,
                        shard: replica.shard,
                        role: group.role_of(replica.data_node_id),
                    })
                    .collect();
                let route = RegionGroupRoute {
                    kind: group.kind,
                    database: group.database.clone(),
                    replicas,
                    epoch: group.epoch,
                    out_of_sync: group.out_of_sync.clone(),
                    in_sync_version: group.in_sync_version,
                };
                (group.id, route)
            })
            .collect();
        let data_nodes = state
            .data_nodes()
            .values()
            .map(|node| {
                let route = DataNodeRoute {
                    rpc_address: node.spec.rpc_address.clone(),
                    rpc_port: node.spec.rpc_port,
                    internal_address: node.spec.internal_address.clone(),
                    internal_port: node.spec.internal_port,
                    data_consensus_port: node.spec.data_consensus_port,
                    shard_count: node.spec.shard_count,
                    status: node.status,
                };
                (node.node_id, route)
            })
            .collect();
        RouteSnapshot {
            version: state.version(),
            series_slot_num: state.settings().series_slot_num,
            databases,
            region_groups,
            data_nodes,
            replication_ack: state.settings().data_replication_ack,
        }
    }

    /// The database holding `device_path`, looked up one level at a time.
    pub fn database_of_device(&self, device_path: &str) -> Option<(&str, &DatabaseRoute)> {
        device_path
            .match_indices('.')
            .map(|(index, _)| &device_path[..index])
            .chain(std::iter::once(device_path))
            .find_map(|prefix| self.databases.get_key_value(prefix))
            .map(|(name, route)| (name.as_str(), route))
    }

    /// The DataRegionGroup of a partition, if assigned.
    pub fn data_region_group(
        &self,
        database: &str,
        series_slot: u32,
        time_slot: i64,
    ) -> Option<RegionGroupId> {
        self.databases
            .get(database)?
            .data_partitions
            .get(&series_slot)?
            .get(&time_slot)
            .copied()
    }

    /// The SchemaRegionGroup of a series slot, if assigned.
    pub fn schema_region_group(&self, database: &str, series_slot: u32) -> Option<RegionGroupId> {
        self.databases
            .get(database)?
            .schema_partitions
            .get(&series_slot)
            .copied()
    }

    /// The leader replica of a group and its DataNode.
    pub fn leader(&self, group: RegionGroupId) -> Option<(&ReplicaRoute, &DataNodeRoute)> {
        let leader = self.region_groups.get(&group)?.leader();
        Some((leader, self.data_nodes.get(&leader.data_node_id)?))
    }
}
