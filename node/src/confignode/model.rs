//! The ConfigNode's vocabulary: node ids and descriptions, statuses,
//! region groups and their replicas, cluster and database settings.
//!
//! These are plain values, cluster views owned by the ConfigNode's thread;
//! copies of them travel inside a [`super::RouteSnapshot`].

use serde::{Deserialize, Serialize};

pub use iotdb_model::{NodeId, RegionGroupId, ShardId};

/// IoTDB's default number of series slots per database.
pub const SERIES_SLOT_NUM_DEFAULT: u32 = 1000;
/// IoTDB's default time partition interval: 7 days in milliseconds.
pub const TIME_PARTITION_INTERVAL_MS_DEFAULT: i64 = 604_800_000;
/// The level of the database node in an auto-created database path:
/// `root.x` for a device `root.x.y.z` (IoTDB's `default_database_level`).
pub const DEFAULT_DATABASE_LEVEL: usize = 1;
/// Largest replication factor accepted; more copies than this is a typo.
pub const REPLICATION_FACTOR_MAX: u32 = 9;
/// Largest region group count a database may ask for, so a typo cannot
/// create millions of regions.
pub const REGION_GROUPS_PER_DATABASE_MAX: u32 = 4096;
/// Largest number of shards (cores) a DataNode may declare.
pub const SHARDS_PER_DATA_NODE_MAX: u32 = 1024;

/// Whether a region group holds schema or data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegionGroupKind {
    /// A SchemaRegionGroup: series slots → timeseries schema.
    Schema,
    /// A DataRegionGroup: (series slot, time slot) → points.
    Data,
}

impl RegionGroupKind {
    /// IoTDB's `Type` column text.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionGroupKind::Schema => "SchemaRegion",
            RegionGroupKind::Data => "DataRegion",
        }
    }
}

/// A node's status (IoTDB's NodeStatus). A replica's status is its
/// DataNode's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Serving.
    Running,
    /// Not heard from within the failure detector's window.
    Unknown,
    /// Being removed from the cluster.
    Removing,
    /// Serving reads only (disk full or an unrecoverable error).
    ReadOnly,
}

impl NodeStatus {
    /// IoTDB's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Running => "Running",
            NodeStatus::Unknown => "Unknown",
            NodeStatus::Removing => "Removing",
            NodeStatus::ReadOnly => "ReadOnly",
        }
    }

    /// Whether new region replicas may be placed on a node in this status
    /// (IoTDB allocates on Running and Unknown nodes).
    pub fn accepts_new_regions(self) -> bool {
        matches!(self, NodeStatus::Running | NodeStatus::Unknown)
    }
}

/// A replica's role in its region group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// The replica clients write to (the ConfigNode's routing choice).
    Leader,
    /// Any other replica.
    Follower,
}

impl Role {
    /// IoTDB's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "Leader",
            Role::Follower => "Follower",
        }
    }
}

/// What a ConfigNode declares when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigNodeSpec {
    /// `cn_internal_address`.
    pub internal_address: String,
    /// `cn_internal_port` (10710).
    pub internal_port: u16,
    /// `cn_consensus_port` (10720).
    pub consensus_port: u16,
    /// Software version, shown by `SHOW CLUSTER`.
    pub version: String,
    /// Build identifier, shown by `SHOW CLUSTER`.
    pub build_info: String,
}

/// A registered ConfigNode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigNodeInfo {
    /// Its id.
    pub node_id: NodeId,
    /// Its status.
    pub status: NodeStatus,
    /// What it declared.
    pub spec: ConfigNodeSpec,
}

/// What a DataNode declares when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataNodeSpec {
    /// `dn_internal_address`.
    pub internal_address: String,
    /// `dn_internal_port` (10730).
    pub internal_port: u16,
    /// `dn_rpc_address`.
    pub rpc_address: String,
    /// `dn_rpc_port` (6667).
    pub rpc_port: u16,
    /// `dn_mpp_data_exchange_port` (10740).
    pub mpp_port: u16,
    /// `dn_schema_region_consensus_port` (10750).
    pub schema_consensus_port: u16,
    /// `dn_data_region_consensus_port` (10760).
    pub data_consensus_port: u16,
    /// Number of shards (cores) serving regions, at least 1.
    pub shard_count: u32,
    /// Software version.
    pub version: String,
    /// Build identifier.
    pub build_info: String,
    /// A random number the DataNode keeps in its data directory until it has an id: a
    /// registration retried after a crash (same token, same address) gets the same id,
    /// while another node on a registered address is refused. 0: none (older journals).
    #[serde(default)]
    pub registration_token: u64,
}

/// A registered DataNode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataNodeInfo {
    /// Its id.
    pub node_id: NodeId,
    /// Its status.
    pub status: NodeStatus,
    /// What it declared.
    pub spec: DataNodeSpec,
}

/// One replica of a region group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegionReplica {
    /// The DataNode holding it.
    pub data_node_id: NodeId,
    /// The shard (core) of that DataNode that owns it.
    pub shard: ShardId,
}

/// A region group: its replicas and which one leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionGroup {
    /// Its id.
    pub id: RegionGroupId,
    /// Schema or data.
    pub kind: RegionGroupKind,
    /// The database it belongs to.
    pub database: String,
    /// Replicas on distinct DataNodes.
    pub replicas: Vec<RegionReplica>,
    /// The DataNode of the leader replica; one of `replicas`.
    pub leader: NodeId,
    /// When it was created, milliseconds since the epoch.
    pub create_time_ms: i64,
    /// The leader epoch: bumped by every change of `leader`, so a replica can tell the
    /// newest routing choice from a late one and the entries of one leader from another's.
    #[serde(default)]
    pub epoch: u64,
    /// Replicas outside the in-sync set (`data_replication_ack = in_sync`): a write is
    /// acknowledged once every other replica holds it durably, and a new leader is
    /// chosen only among the others. Never holds the leader.
    #[serde(default)]
    pub out_of_sync: Vec<NodeId>,
    /// Bumped by every change of `out_of_sync`; a request to change it names the version
    /// it was made against, so a late one is refused.
    #[serde(default)]
    pub in_sync_version: u64,
}

impl RegionGroup {
    /// Whether the replica on `data_node_id` is in the in-sync set.
    pub fn in_sync(&self, data_node_id: NodeId) -> bool {
        self.replicas
            .iter()
            .any(|replica| replica.data_node_id == data_node_id)
            && !self.out_of_sync.contains(&data_node_id)
    }

    /// Whether the group elects its leader (Raft: a SchemaRegion group of more than one
    /// replica): the ConfigNode records the elected leader and never moves it itself.
    pub fn elects_leader(&self) -> bool {
        self.kind == RegionGroupKind::Schema && self.replicas.len() > 1
    }

    /// Makes `leader` the leader in a new epoch (no-op when it already leads).
    pub fn set_leader(&mut self, leader: NodeId) {
        if self.leader != leader {
            self.leader = leader;
            self.epoch += 1;
            if self.out_of_sync.contains(&leader) {
                self.out_of_sync.retain(|node| *node != leader);
                self.in_sync_version += 1;
            }
        }
    }

    /// The role of the replica on `data_node_id`.
    pub fn role_of(&self, data_node_id: NodeId) -> Role {
        if self.leader == data_node_id {
            Role::Leader
        } else {
            Role::Follower
        }
    }
}

/// How many region groups of one kind a database gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegionGroupPolicy {
    /// AUTO extension: data region groups grow towards total cores ÷ data
    /// replication factor as DataNodes join; schema region groups stay at
    /// one per database.
    Auto,
    /// CUSTOM: exactly this many groups.
    Custom(u32),
}

/// `data_replication_ack`: when a write to a replicated data region group is
/// acknowledged to its client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplicationAck {
    /// IoTDB's: once the leader's WAL holds it; the followers get it asynchronously, so
    /// a leader that dies before shipping it takes it along.
    #[default]
    Leader,
    /// Once every replica of the group's in-sync set holds it durably (PacificA, Kafka's
    /// ISR): no acknowledged write is lost while one replica of the set survives.
    InSync,
}

impl ReplicationAck {
    /// The configuration value (`leader`, `in_sync`).
    pub fn name(self) -> &'static str {
        match self {
            ReplicationAck::Leader => "leader",
            ReplicationAck::InSync => "in_sync",
        }
    }

    /// Parses a configuration value.
    pub fn parse(text: &str) -> Option<ReplicationAck> {
        match text {
            "leader" => Some(ReplicationAck::Leader),
            "in_sync" => Some(ReplicationAck::InSync),
            _ => None,
        }
    }
}

/// Cluster-wide settings, fixed when the cluster is first started (IoTDB
/// refuses most of these changes after the first start, and so do we).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// `cluster_name`.
    pub cluster_name: String,
    /// `series_slot_num`.
    pub series_slot_num: u32,
    /// Default `time_partition_interval` for new databases, milliseconds.
    pub time_partition_interval_ms: i64,
    /// Default `schema_replication_factor` for new databases.
    pub schema_replication_factor: u32,
    /// Default `data_replication_factor` for new databases.
    pub data_replication_factor: u32,
    /// `schema_region_group_extension_policy` for databases that do not set
    /// a count.
    pub schema_region_group_policy: RegionGroupPolicy,
    /// `data_region_group_extension_policy` for databases that do not set a
    /// count.
    pub data_region_group_policy: RegionGroupPolicy,
    /// `data_region_consensus_protocol_class`.
    pub data_region_consensus_protocol_class: String,
    /// `schema_region_consensus_protocol_class`.
    pub schema_region_consensus_protocol_class: String,
    /// `config_node_consensus_protocol_class`.
    pub config_node_consensus_protocol_class: String,
    /// `read_consistency_level`.
    pub read_consistency_level: String,
    /// `timestamp_precision`.
    pub timestamp_precision: String,
    /// `data_replication_ack`.
    #[serde(default)]
    pub data_replication_ack: ReplicationAck,
}

impl Default for ClusterSettings {
    fn default() -> ClusterSettings {
        ClusterSettings {
            cluster_name: "defaultCluster".into(),
            series_slot_num: SERIES_SLOT_NUM_DEFAULT,
            time_partition_interval_ms: TIME_PARTITION_INTERVAL_MS_DEFAULT,
            schema_replication_factor: 1,
            data_replication_factor: 1,
            schema_region_group_policy: RegionGroupPolicy::Auto,
            data_region_group_policy: RegionGroupPolicy::Auto,
            data_region_consensus_protocol_class: "org.apache.iotdb.consensus.iot.IoTConsensus"
                .into(),
            schema_region_consensus_protocol_class:
                "org.apache.iotdb.consensus.ratis.RatisConsensus".into(),
            config_node_consensus_protocol_class: "org.apache.iotdb.consensus.ratis.RatisConsensus"
                .into(),
            read_consistency_level: "strong".into(),
            timestamp_precision: "ms".into(),
            data_replication_ack: ReplicationAck::Leader,
        }
    }
}

/// One database's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// Time to live in milliseconds; `None` is infinite.
    pub ttl_ms: Option<u64>,
    /// `time_partition_interval`, milliseconds, positive.
    pub time_partition_interval_ms: i64,
    /// Replicas per SchemaRegionGroup.
    pub schema_replication_factor: u32,
    /// Replicas per DataRegionGroup.
    pub data_replication_factor: u32,
    /// How many SchemaRegionGroups it gets.
    pub schema_region_groups: RegionGroupPolicy,
    /// How many DataRegionGroups it gets.
    pub data_region_groups: RegionGroupPolicy,
}

impl DatabaseSettings {
    /// The replication factor of region groups of `kind`.
    pub fn replication_factor(&self, kind: RegionGroupKind) -> u32 {
        match kind {
            RegionGroupKind::Schema => self.schema_replication_factor,
            RegionGroupKind::Data => self.data_replication_factor,
        }
    }

    /// The region group policy of `kind`.
    pub fn region_group_policy(&self, kind: RegionGroupKind) -> RegionGroupPolicy {
        match kind {
            RegionGroupKind::Schema => self.schema_region_groups,
            RegionGroupKind::Data => self.data_region_groups,
        }
    }

    /// The time slot of `time_ms`: floor division by the interval (time
    /// partition origin 0), so negative times get negative slots.
    pub fn time_slot(&self, time_ms: i64) -> i64 {
        time_ms.div_euclid(self.time_partition_interval_ms)
    }
}
