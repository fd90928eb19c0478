//! The ConfigNode's replicated state and the commands that change it.
//!
//! [`ConfigState`] is a pure state machine: [`ConfigState::apply`] checks a
//! [`ConfigCommand`] against the state and then applies it, deterministically
//! and without I/O or clocks (times travel inside the commands). Decisions
//! (which node, which group) are made beforehand by the planner
//! ([`super::placement`]) and recorded in the command, so replaying the
//! command log — locally after a restart, or on a Raft follower later —
//! rebuilds exactly the same state.
//!
//! Owned by the ConfigNode's single thread.

use super::error::{ConfigNodeError, Result};
use super::model::{
    ClusterSettings, ConfigNodeInfo, ConfigNodeSpec, DataNodeInfo, DataNodeSpec, DatabaseSettings,
    NodeId, NodeStatus, REGION_GROUPS_PER_DATABASE_MAX, REPLICATION_FACTOR_MAX, RegionGroup,
    RegionGroupId, RegionGroupKind, RegionGroupPolicy, RegionReplica, ReplicationAck,
    SHARDS_PER_DATA_NODE_MAX,
};
use super::placement::plan_leader_failover;
use super::procedure::{MigrateStep, Procedure, ProcedureId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Longest accepted database name, in bytes; real names are short and this
/// bounds what a client can make us store.
pub const DATABASE_NAME_BYTES_MAX: usize = 1024;

/// One change to the ConfigNode state: the unit that is logged, replayed
/// and (later) replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigCommand {
    /// Adds a ConfigNode (id = the next node id) or updates a known one.
    RegisterConfigNode {
        /// Its id.
        node_id: NodeId,
        /// What it declared.
        spec: ConfigNodeSpec,
    },
    /// Adds a DataNode (id = the next node id) or updates a known one; a
    /// registration sets the status to Running.
    RegisterDataNode {
        /// Its id.
        node_id: NodeId,
        /// What it declared.
        spec: DataNodeSpec,
    },
    /// Changes a node's status.
    SetNodeStatus {
        /// The node.
        node_id: NodeId,
        /// The new status.
        status: NodeStatus,
    },
    /// Forgets a node; a DataNode must hold no replica.
    RemoveNode {
        /// The node.
        node_id: NodeId,
    },
    /// Creates a database.
    CreateDatabase {
        /// `root.x...`.
        name: String,
        /// Its settings.
        settings: DatabaseSettings,
    },
    /// Replaces a database's settings.
    AlterDatabase {
        /// The database.
        name: String,
        /// The new settings.
        settings: DatabaseSettings,
    },
    /// Deletes a database with its region groups and partitions.
    DeleteDatabase {
        /// The database.
        name: String,
    },
    /// Creates region groups; their ids continue the region id sequence.
    CreateRegionGroups {
        /// The new groups, ids ascending.
        groups: Vec<RegionGroup>,
    },
    /// Assigns series slots to SchemaRegionGroups.
    AssignSchemaPartitions {
        /// The database.
        database: String,
        /// (series slot, group), each slot new.
        assignments: Vec<(u32, RegionGroupId)>,
    },
    /// Assigns (series slot, time slot) pairs to DataRegionGroups.
    AssignDataPartitions {
        /// The database.
        database: String,
        /// (series slot, time slot, group), each pair new.
        assignments: Vec<(u32, i64, RegionGroupId)>,
    },
    /// Moves leadership of region groups to another of their replicas.
    ChangeLeaders {
        /// (group, DataNode of the new leader).
        changes: Vec<(RegionGroupId, NodeId)>,
    },
    /// Changes a replicated region group's in-sync set (asked by its leader, or by
    /// the ConfigNode when a member's node stops running).
    ChangeInSync {
        /// The group.
        group: RegionGroupId,
        /// The leader epoch the request was made in: refused if the leader changed since.
        epoch: u64,
        /// The in-sync version the request was made against: refused if it changed since.
        version: u64,
        /// The replicas out of the set afterwards (never the leader).
        out_of_sync: Vec<NodeId>,
    },
    /// Starts a new leader epoch of a group with the same leader.
    NewLeaderEpoch {
        /// The group.
        group: RegionGroupId,
        /// Its current epoch (refused otherwise).
        epoch: u64,
    },
    /// Adds a replica to a data region group (a migration's first step): it starts out
    /// of the in-sync set and is never chosen as leader while its migration adds it.
    AddRegionReplica {
        /// The group.
        group: RegionGroupId,
        /// The new replica (a DataNode not holding the group yet, and its core).
        replica: RegionReplica,
    },
    /// Removes a replica from a data region group (a migration's last step, or its
    /// rollback); never the leader, never the last one.
    RemoveRegionReplica {
        /// The group.
        group: RegionGroupId,
        /// The DataNode whose replica leaves.
        node: NodeId,
    },
    /// Moves the only replica of a SchemaRegion group that is not a Raft group to another
    /// DataNode, which leads it (a migration's last step, once the old DataNode copied
    /// the region there): one command, so no state ever shows two replicas of it.
    MoveSchemaReplica {
        /// The group.
        group: RegionGroupId,
        /// The DataNode holding it now.
        from: NodeId,
        /// The new replica (a DataNode not holding the group, and its core).
        to: RegionReplica,
    },
    /// Records a new procedure at its first step (see [`super::procedure`]).
    StartProcedure {
        /// Its id: the next of the procedure id sequence.
        id: ProcedureId,
        /// The procedure at its first step.
        procedure: Procedure,
    },
    /// Records that a procedure moved to its next step.
    AdvanceProcedure {
        /// The procedure.
        id: ProcedureId,
        /// The same procedure at its new step.
        procedure: Procedure,
    },
    /// Forgets a procedure that completed.
    FinishProcedure {
        /// The procedure.
        id: ProcedureId,
    },
}

/// One database: settings, region groups and partition tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseState {
    /// `root.x...`.
    pub name: String,
    /// Its settings.
    pub settings: DatabaseSettings,
    /// SchemaRegionGroups, ascending.
    pub schema_region_groups: Vec<RegionGroupId>,
    /// DataRegionGroups, ascending.
    pub data_region_groups: Vec<RegionGroupId>,
    /// SchemaPartition: series slot → SchemaRegionGroup.
    pub schema_partitions: BTreeMap<u32, RegionGroupId>,
    /// DataPartition: series slot → time slot → DataRegionGroup. Changed only through
    /// [`DatabaseState::assign_data_partition`], which keeps the counts below.
    pub data_partitions: BTreeMap<u32, BTreeMap<i64, RegionGroupId>>,
    /// `data_partitions` counted by group, as placement weighs them; derived, so neither
    /// serialized nor compared.
    #[serde(skip)]
    partition_counts: DerivedCounts,
}

/// DataPartitions counted per DataRegionGroup, overall and within each time slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Partitions per group, every time slot.
    pub by_group: BTreeMap<RegionGroupId, u64>,
    /// Partitions per group within each time slot.
    pub by_time_slot: BTreeMap<i64, BTreeMap<RegionGroupId, u64>>,
}

impl PartitionCounts {
    /// Counts a whole partition table.
    pub fn of(partitions: &BTreeMap<u32, BTreeMap<i64, RegionGroupId>>) -> PartitionCounts {
        let mut counts = PartitionCounts::default();
        for by_time in partitions.values() {
            for (&time_slot, &group) in by_time {
                counts.add(time_slot, group);
            }
        }
        counts
    }

    fn add(&mut self, time_slot: i64, group: RegionGroupId) {
        *self.by_group.entry(group).or_default() += 1;
        *self
            .by_time_slot
            .entry(time_slot)
            .or_default()
            .entry(group)
            .or_default() += 1;
    }

    fn remove(&mut self, time_slot: i64, group: RegionGroupId) {
        fn decrement<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        decrement(&mut self.by_group, group);
        if let Some(by_group) = self.by_time_slot.get_mut(&time_slot) {
            decrement(by_group, group);
            if by_group.is_empty() {
                self.by_time_slot.remove(&time_slot);
            }
        }
    }
}

/// Counts derived from the state: `None` until the first assignment after the state was
/// read back (then counted whole once). Equal to any other: not part of the state.
#[derive(Debug, Clone, Default)]
struct DerivedCounts(Option<PartitionCounts>);

impl PartialEq for DerivedCounts {
    fn eq(&self, _: &DerivedCounts) -> bool {
        true
    }
}

impl Eq for DerivedCounts {}

impl DatabaseState {
    /// A database with no region groups or partitions yet.
    pub fn new(name: String, settings: DatabaseSettings) -> DatabaseState {
        DatabaseState {
            name,
            settings,
            schema_region_groups: Vec::new(),
            data_region_groups: Vec::new(),
            schema_partitions: BTreeMap::new(),
            data_partitions: BTreeMap::new(),
            partition_counts: DerivedCounts::default(),
        }
    }

    /// Assigns (series slot, time slot) to `group`, keeping the partition counts.
    pub fn assign_data_partition(
        &mut self,
        series_slot: u32,
        time_slot: i64,
        group: RegionGroupId,
    ) {
        let previous = self
            .data_partitions
            .entry(series_slot)
            .or_default()
            .insert(time_slot, group);
        match &mut self.partition_counts.0 {
            Some(counts) => {
                if let Some(previous) = previous {
                    counts.remove(time_slot, previous);
                }
                counts.add(time_slot, group);
            }
            None => self.partition_counts.0 = Some(PartitionCounts::of(&self.data_partitions)),
        }
    }

    /// The partitions counted by group: kept as they are assigned, counted here only for a
    /// state read back and not assigned to since.
    pub fn partition_counts(&self) -> std::borrow::Cow<'_, PartitionCounts> {
        match &self.partition_counts.0 {
            Some(counts) => std::borrow::Cow::Borrowed(counts),
            None => std::borrow::Cow::Owned(PartitionCounts::of(&self.data_partitions)),
        }
    }

    /// The region groups of `kind`.
    pub fn region_groups(&self, kind: RegionGroupKind) -> &[RegionGroupId] {
        match kind {
            RegionGroupKind::Schema => &self.schema_region_groups,
            RegionGroupKind::Data => &self.data_region_groups,
        }
    }

    /// The DataRegionGroup of (series slot, time slot), if assigned.
    pub fn data_partition(&self, series_slot: u32, time_slot: i64) -> Option<RegionGroupId> {
        self.data_partitions
            .get(&series_slot)?
            .get(&time_slot)
            .copied()
    }

    /// The number of DataPartitions.
    pub fn data_partition_count(&self) -> usize {
        self.data_partitions.values().map(BTreeMap::len).sum()
    }
}

/// The whole ConfigNode state (a cluster view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigState {
    settings: ClusterSettings,
    /// Incremented by every applied command.
    version: u64,
    next_node_id: NodeId,
    next_region_id: u32,
    /// The id the next procedure gets; ids are never reused.
    #[serde(default)]
    next_procedure_id: ProcedureId,
    /// Procedures that have not finished, by id: resumed after a restart.
    #[serde(default)]
    procedures: BTreeMap<ProcedureId, Procedure>,
    config_nodes: BTreeMap<NodeId, ConfigNodeInfo>,
    data_nodes: BTreeMap<NodeId, DataNodeInfo>,
    databases: BTreeMap<String, DatabaseState>,
    region_groups: BTreeMap<RegionGroupId, RegionGroup>,
}

fn invalid(message: String) -> ConfigNodeError {
    ConfigNodeError::InvalidCommand(message)
}

/// Checks that `name` is a database path `root.x[.y...]` without wildcards
/// or empty nodes.
pub fn validate_database_name(name: &str) -> Result<()> {
    let illegal = |reason| {
        Err(ConfigNodeError::IllegalPath {
            path: name.to_string(),
            reason,
        })
    };
    if name.len() > DATABASE_NAME_BYTES_MAX {
        return illegal("too long");
    }
    let mut nodes = name.split('.');
    if nodes.next() != Some("root") {
        return illegal("a database path starts with root");
    }
    let mut levels = 0;
    for node in nodes {
        if node.is_empty() {
            return illegal("empty node");
        }
        if node.contains('*') {
            return illegal("a database path has no wildcard");
        }
        levels += 1;
    }
    if levels == 0 {
        return illegal("a database path has a node below root");
    }
    Ok(())
}

/// The database a device is auto-created in: its first
/// [`super::model::DEFAULT_DATABASE_LEVEL`] nodes below `root` (`root.x` for
/// `root.x.y.z`).
pub fn database_of(device_path: &str) -> Result<String> {
    let illegal = |reason| ConfigNodeError::IllegalPath {
        path: device_path.to_string(),
        reason,
    };
    if !device_path.starts_with("root.") {
        return Err(illegal("a device path starts with root"));
    }
    let end = device_path
        .match_indices('.')
        .nth(super::model::DEFAULT_DATABASE_LEVEL)
        .map_or(device_path.len(), |(index, _)| index);
    let database = &device_path[..end];
    validate_database_name(database)?;
    if end == device_path.len() {
        return Err(illegal("a device path is deeper than its database"));
    }
    Ok(database.to_string())
}

/// Checks a database's settings against the limits.
pub fn validate_settings(database: &str, settings: &DatabaseSettings) -> Result<()> {
    let refuse = |reason: String| {
        Err(ConfigNodeError::DatabaseConfig {
            database: database.to_string(),
            reason,
        })
    };
    if settings.time_partition_interval_ms <= 0 {
        return refuse("TIME_PARTITION_INTERVAL must be positive".into());
    }
    for (name, factor) in [
        (
            "SCHEMA_REPLICATION_FACTOR",
            settings.schema_replication_factor,
        ),
        ("DATA_REPLICATION_FACTOR", settings.data_replication_factor),
    ] {
        if !(1..=REPLICATION_FACTOR_MAX).contains(&factor) {
            return refuse(format!("{name} must be in 1..={REPLICATION_FACTOR_MAX}"));
        }
    }
    for (name, policy) in [
        ("SCHEMA_REGION_GROUP_NUM", settings.schema_region_groups),
        ("DATA_REGION_GROUP_NUM", settings.data_region_groups),
    ] {
        if let RegionGroupPolicy::Custom(count) = policy
            && !(1..=REGION_GROUPS_PER_DATABASE_MAX).contains(&count)
        {
            return refuse(format!(
                "{name} must be in 1..={REGION_GROUPS_PER_DATABASE_MAX}"
            ));
        }
    }
    Ok(())
}

impl ConfigState {
    /// An empty cluster with `settings`.
    pub fn new(settings: ClusterSettings) -> ConfigState {
        ConfigState {
            settings,
            version: 0,
            next_node_id: NodeId(0),
            next_region_id: 0,
            next_procedure_id: 0,
            procedures: BTreeMap::new(),
            config_nodes: BTreeMap::new(),
            data_nodes: BTreeMap::new(),
            databases: BTreeMap::new(),
            region_groups: BTreeMap::new(),
        }
    }

    /// The cluster settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The number of commands applied so far.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id the next registered node gets.
    pub fn next_node_id(&self) -> NodeId {
        self.next_node_id
    }

    /// The id the next region group gets.
    pub fn next_region_id(&self) -> u32 {
        self.next_region_id
    }

    /// The id the next procedure gets.
    pub fn next_procedure_id(&self) -> ProcedureId {
        self.next_procedure_id
    }

    /// Unfinished procedures by id (ascending = the order they started).
    pub fn procedures(&self) -> &BTreeMap<ProcedureId, Procedure> {
        &self.procedures
    }

    /// The unfinished procedure working on `database`, if any.
    pub fn procedure_on(&self, database: &str) -> Option<ProcedureId> {
        self.procedures
            .iter()
            .find(|(_, procedure)| procedure.database() == Some(database))
            .map(|(id, _)| *id)
    }

    /// Lays a node's reported status over a copy of the state that only views read
    /// (`ConfigNode::view_state`); never applied to the replicated state.
    pub(super) fn overlay_status(&mut self, node_id: NodeId, status: NodeStatus) {
        if let Some(node) = self.data_nodes.get_mut(&node_id) {
            node.status = status;
        }
        if let Some(node) = self.config_nodes.get_mut(&node_id) {
            node.status = status;
        }
    }

    /// `data_replication_ack = in_sync`: takes a node that stopped running out of the
    /// in-sync set of every group it is a follower of (the leaders go on without it;
    /// it asks back in once caught up). A leader stays: leadership moved first where an
    /// in-sync replica was running, and a group without one keeps its set.
    fn leave_in_sync_sets(&mut self, node_id: NodeId) {
        if self.settings.data_replication_ack != ReplicationAck::InSync {
            return;
        }
        for group in self.region_groups.values_mut() {
            // Only data region groups have in-sync sets (schema groups commit by Raft).
            if group.kind == RegionGroupKind::Data
                && group.leader != node_id
                && group.in_sync(node_id)
                && group.replicas.len() > 1
            {
                group.out_of_sync.push(node_id);
                group.out_of_sync.sort_unstable();
                group.in_sync_version += 1;
            }
        }
    }

    /// The migration running on `group`, if any: (procedure id, from, to, step).
    pub fn migration_of(
        &self,
        group: RegionGroupId,
    ) -> Option<(ProcedureId, NodeId, NodeId, MigrateStep)> {
        self.procedures
            .iter()
            .find_map(|(&id, procedure)| match procedure {
                Procedure::MigrateRegion {
                    group: g,
                    from,
                    to,
                    step,
                    ..
                } if *g == group => Some((id, *from, *to, *step)),
                _ => None,
            })
    }

    /// The DataNode whose replica of `group` a migration is adding (it holds too little
    /// to lead yet).
    pub fn adding_replica(&self, group: RegionGroupId) -> Option<NodeId> {
        self.migration_of(group)
            .filter(|(_, _, _, step)| step.new_replica_status().is_some())
            .map(|(_, _, to, _)| to)
    }

    /// The removal running for DataNode `node`, if any.
    pub fn removal_of(&self, node: NodeId) -> Option<ProcedureId> {
        self.procedures
            .iter()
            .find_map(|(&id, procedure)| match procedure {
                Procedure::RemoveDataNode { node: n, .. } if *n == node => Some(id),
                _ => None,
            })
    }

    /// Refuses to create anything in a database a procedure is deleting.
    fn check_not_deleting(&self, database: &str) -> Result<()> {
        match self.procedure_on(database) {
            Some(_) => Err(ConfigNodeError::DatabaseBeingDeleted(database.to_string())),
            None => Ok(()),
        }
    }

    /// ConfigNodes by id.
    pub fn config_nodes(&self) -> &BTreeMap<NodeId, ConfigNodeInfo> {
        &self.config_nodes
    }

    /// DataNodes by id.
    pub fn data_nodes(&self) -> &BTreeMap<NodeId, DataNodeInfo> {
        &self.data_nodes
    }

    /// Databases by name.
    /// The DataNode registered with this internal address and port.
    pub fn data_node_at(&self, address: &str, port: u16) -> Option<&DataNodeInfo> {
        self.data_nodes
            .values()
            .find(|info| info.spec.internal_address == address && info.spec.internal_port == port)
    }

    /// The ConfigNode registered with this internal address and port.
    pub fn config_node_at(&self, address: &str, port: u16) -> Option<&ConfigNodeInfo> {
        self.config_nodes
            .values()
            .find(|info| info.spec.internal_address == address && info.spec.internal_port == port)
    }

    pub fn databases(&self) -> &BTreeMap<String, DatabaseState> {
        &self.databases
    }

    /// One database.
    pub fn database(&self, name: &str) -> Result<&DatabaseState> {
        self.databases
            .get(name)
            .ok_or_else(|| ConfigNodeError::DatabaseNotExist(name.to_string()))
    }

    /// Region groups by id.
    pub fn region_groups(&self) -> &BTreeMap<RegionGroupId, RegionGroup> {
        &self.region_groups
    }

    /// One region group, or the typed error naming it.
    pub fn region_group(&self, id: RegionGroupId) -> Result<&RegionGroup> {
        self.region_groups
            .get(&id)
            .ok_or(ConfigNodeError::RegionGroupNotFound(id))
    }

    /// The existing database that holds `device_path` (the database itself
    /// or a path below it), looked up one level at a time.
    pub fn database_of_device(&self, device_path: &str) -> Option<&DatabaseState> {
        device_path
            .match_indices('.')
            .map(|(index, _)| &device_path[..index])
            .chain(std::iter::once(device_path))
            .find_map(|prefix| self.databases.get(prefix))
    }

    /// The existing database equal to, nested in or containing `name`.
    fn overlapping_database(&self, name: &str) -> Option<&str> {
        self.databases.keys().map(String::as_str).find(|existing| {
            *existing == name || is_path_prefix(existing, name) || is_path_prefix(name, existing)
        })
    }

    /// Checks `command` against the state, then applies it and bumps the
    /// version. On error nothing changed.
    pub fn apply(&mut self, command: &ConfigCommand) -> Result<()> {
        self.check(command)?;
        self.mutate(command);
        self.version += 1;
        Ok(())
    }

    /// Whether `command` may be applied to the current state.
    pub fn check(&self, command: &ConfigCommand) -> Result<()> {
        match command {
            ConfigCommand::RegisterConfigNode { node_id, spec } => {
                if *node_id != self.next_node_id {
                    // A known id re-registers its own node only (same internal address
                    // and port): a registration planned from a state that lacked another
                    // one with this id must not take that node's id over.
                    let known = self.config_nodes.get(node_id).ok_or_else(|| {
                        invalid(format!("config node id {node_id} out of sequence"))
                    })?;
                    if (&known.spec.internal_address, known.spec.internal_port)
                        != (&spec.internal_address, spec.internal_port)
                    {
                        return Err(invalid(format!(
                            "config node id {node_id} belongs to {}:{}",
                            known.spec.internal_address, known.spec.internal_port
                        )));
                    }
                }
            }
            ConfigCommand::RegisterDataNode { node_id, spec } => {
                if !(1..=SHARDS_PER_DATA_NODE_MAX).contains(&spec.shard_count) {
                    return Err(ConfigNodeError::NodeRefused {
                        node_id: *node_id,
                        reason: format!(
                            "shard count {} outside 1..={SHARDS_PER_DATA_NODE_MAX}",
                            spec.shard_count
                        ),
                    });
                }
                if *node_id == self.next_node_id {
                    return Ok(());
                }
                let known = self
                    .data_nodes
                    .get(node_id)
                    .ok_or_else(|| invalid(format!("data node id {node_id} out of sequence")))?;
                if (&known.spec.internal_address, known.spec.internal_port)
                    != (&spec.internal_address, spec.internal_port)
                {
                    // See RegisterConfigNode: an id never moves to another node.
                    return Err(invalid(format!(
                        "data node id {node_id} belongs to {}:{}",
                        known.spec.internal_address, known.spec.internal_port
                    )));
                }
                let shard_used = self
                    .region_groups
                    .values()
                    .flat_map(|group| &group.replicas)
                    .filter(|replica| replica.data_node_id == *node_id)
                    .any(|replica| u32::from(replica.shard.0) >= spec.shard_count);
                if shard_used {
                    return Err(ConfigNodeError::NodeRefused {
                        node_id: *node_id,
                        reason: format!(
                            "regions live on shards beyond the new shard count {}",
                            spec.shard_count
                        ),
                    });
                }
            }
            ConfigCommand::SetNodeStatus { node_id, .. } => {
                if !self.config_nodes.contains_key(node_id)
                    && !self.data_nodes.contains_key(node_id)
                {
                    return Err(ConfigNodeError::NodeNotFound(*node_id));
                }
            }
            ConfigCommand::RemoveNode { node_id } => {
                if self.data_nodes.contains_key(node_id) {
                    let replicas = self
                        .region_groups
                        .values()
                        .filter(|group| {
                            group
                                .replicas
                                .iter()
                                .any(|replica| replica.data_node_id == *node_id)
                        })
                        .count();
                    if replicas > 0 {
                        return Err(ConfigNodeError::NodeRefused {
                            node_id: *node_id,
                            reason: format!("holds {replicas} region replicas; migrate them first"),
                        });
                    }
                } else if !self.config_nodes.contains_key(node_id) {
                    return Err(ConfigNodeError::NodeNotFound(*node_id));
                }
            }
            ConfigCommand::CreateDatabase { name, settings } => {
                validate_database_name(name)?;
                self.check_not_deleting(name)?;
                validate_settings(name, settings)?;
                if let Some(existing) = self.overlapping_database(name) {
                    return Err(if existing == name {
                        ConfigNodeError::DatabaseAlreadyExists(name.clone())
                    } else {
                        ConfigNodeError::DatabaseConflict {
                            database: name.clone(),
                            existing: existing.to_string(),
                        }
                    });
                }
            }
            ConfigCommand::AlterDatabase { name, settings } => {
                self.check_not_deleting(name)?;
                let database = self.database(name)?;
                validate_settings(name, settings)?;
                check_alter(database, settings)?;
            }
            ConfigCommand::DeleteDatabase { name } => {
                self.database(name)?;
            }
            ConfigCommand::CreateRegionGroups { groups } => {
                for group in groups {
                    self.check_not_deleting(&group.database)?;
                }
                self.check_new_groups(groups)?;
            }
            ConfigCommand::AssignSchemaPartitions {
                database,
                assignments,
            } => {
                self.check_not_deleting(database)?;
                let state = self.database(database)?;
                let mut seen = HashSet::new();
                for &(slot, group) in assignments {
                    self.check_slot(slot)?;
                    if state.schema_partitions.contains_key(&slot) || !seen.insert(slot) {
                        return Err(invalid(format!("schema slot {slot} already assigned")));
                    }
                    check_member(state, RegionGroupKind::Schema, group)?;
                }
            }
            ConfigCommand::AssignDataPartitions {
                database,
                assignments,
            } => {
                self.check_not_deleting(database)?;
                let state = self.database(database)?;
                let mut seen = HashSet::new();
                for &(slot, time_slot, group) in assignments {
                    self.check_slot(slot)?;
                    if state.data_partition(slot, time_slot).is_some()
                        || !seen.insert((slot, time_slot))
                    {
                        return Err(invalid(format!(
                            "data partition ({slot}, {time_slot}) already assigned"
                        )));
                    }
                    check_member(state, RegionGroupKind::Data, group)?;
                }
            }
            ConfigCommand::ChangeLeaders { changes } => {
                for &(group_id, leader) in changes {
                    let group = self.region_group(group_id)?;
                    if !group
                        .replicas
                        .iter()
                        .any(|replica| replica.data_node_id == leader)
                    {
                        return Err(invalid(format!(
                            "node {leader} holds no replica of region group {group_id}"
                        )));
                    }
                    if self.settings.data_replication_ack == ReplicationAck::InSync
                        && group.kind == RegionGroupKind::Data
                        && !group.in_sync(leader)
                    {
                        // It may lack acknowledged writes.
                        return Err(invalid(format!(
                            "node {leader} is not in the in-sync set of region group {group_id}"
                        )));
                    }
                }
            }
            ConfigCommand::ChangeInSync {
                group,
                epoch,
                version,
                out_of_sync,
            } => {
                let current = self.region_group(*group)?;
                if current.epoch != *epoch || current.in_sync_version != *version {
                    return Err(ConfigNodeError::StaleRequest(format!(
                        "region group {group} is at epoch {} in-sync version {}, the request \
                         was made at {epoch}/{version}",
                        current.epoch, current.in_sync_version
                    )));
                }
                if out_of_sync.contains(&current.leader) {
                    return Err(invalid(format!(
                        "the leader {} of region group {group} cannot leave the in-sync set",
                        current.leader
                    )));
                }
                if let Some(node) = out_of_sync.iter().find(|node| {
                    !current
                        .replicas
                        .iter()
                        .any(|replica| replica.data_node_id == **node)
                }) {
                    return Err(invalid(format!(
                        "node {node} holds no replica of region group {group}"
                    )));
                }
            }
            ConfigCommand::NewLeaderEpoch { group, epoch } => {
                let current = self.region_group(*group)?;
                if current.epoch != *epoch {
                    return Err(ConfigNodeError::StaleRequest(format!(
                        "region group {group} is at epoch {}, not {epoch}",
                        current.epoch
                    )));
                }
            }
            ConfigCommand::AddRegionReplica { group, replica } => {
                let current = self.region_group(*group)?;
                let refused = |reason: String| ConfigNodeError::RegionRefused {
                    group: *group,
                    reason,
                };
                if current.kind != RegionGroupKind::Data && !current.elects_leader() {
                    return Err(refused(
                        "a SchemaRegion of one replica moves whole (MoveSchemaReplica)".into(),
                    ));
                }
                let node = self
                    .data_nodes
                    .get(&replica.data_node_id)
                    .ok_or(ConfigNodeError::NodeNotFound(replica.data_node_id))?;
                if current
                    .replicas
                    .iter()
                    .any(|r| r.data_node_id == replica.data_node_id)
                {
                    return Err(refused(format!(
                        "DataNode {} already holds a replica of it",
                        replica.data_node_id
                    )));
                }
                if u32::from(replica.shard.0) >= node.spec.shard_count {
                    return Err(refused(format!(
                        "DataNode {} has no core {}",
                        replica.data_node_id, replica.shard.0
                    )));
                }
            }
            ConfigCommand::RemoveRegionReplica { group, node } => {
                let current = self.region_group(*group)?;
                let refused = |reason: String| ConfigNodeError::RegionRefused {
                    group: *group,
                    reason,
                };
                if !current.replicas.iter().any(|r| r.data_node_id == *node) {
                    return Err(refused(format!("DataNode {node} holds no replica of it")));
                }
                if current.leader == *node {
                    return Err(refused(format!(
                        "the replica on DataNode {node} leads it; leadership moves first"
                    )));
                }
                if current.replicas.len() == 1 {
                    return Err(refused("its last replica cannot be removed".into()));
                }
            }
            ConfigCommand::MoveSchemaReplica { group, from, to } => {
                let current = self.region_group(*group)?;
                let refused = |reason: String| ConfigNodeError::RegionRefused {
                    group: *group,
                    reason,
                };
                if current.kind != RegionGroupKind::Schema || current.replicas.len() != 1 {
                    return Err(refused(
                        "only a SchemaRegion group of one replica moves whole".into(),
                    ));
                }
                if current.replicas[0].data_node_id != *from {
                    return Err(refused(format!("DataNode {from} holds no replica of it")));
                }
                let node = self
                    .data_nodes
                    .get(&to.data_node_id)
                    .ok_or(ConfigNodeError::NodeNotFound(to.data_node_id))?;
                if to.data_node_id == *from {
                    return Err(refused(format!(
                        "DataNode {from} already holds a replica of it"
                    )));
                }
                if u32::from(to.shard.0) >= node.spec.shard_count {
                    return Err(refused(format!(
                        "DataNode {} has no core {}",
                        to.data_node_id, to.shard.0
                    )));
                }
            }
            ConfigCommand::StartProcedure { id, procedure } => {
                if *id != self.next_procedure_id {
                    return Err(invalid(format!("procedure id {id} out of sequence")));
                }
                if let Some(database) = procedure.database() {
                    self.database(database)?;
                    self.check_not_deleting(database)?;
                }
            }
            ConfigCommand::AdvanceProcedure { id, procedure } => {
                let current = self
                    .procedures
                    .get(id)
                    .ok_or_else(|| invalid(format!("procedure {id} is not running")))?;
                if current.kind() != procedure.kind() || current.database() != procedure.database()
                {
                    return Err(invalid(format!(
                        "procedure {id} is a {} and cannot become a {}",
                        current.kind(),
                        procedure.kind()
                    )));
                }
            }
            ConfigCommand::FinishProcedure { id } => {
                if !self.procedures.contains_key(id) {
                    return Err(invalid(format!("procedure {id} is not running")));
                }
            }
        }
        Ok(())
    }

    fn check_slot(&self, slot: u32) -> Result<()> {
        if slot >= self.settings.series_slot_num {
            return Err(ConfigNodeError::SeriesSlotOutOfRange {
                slot,
                series_slot_num: self.settings.series_slot_num,
            });
        }
        Ok(())
    }

    fn check_new_groups(&self, groups: &[RegionGroup]) -> Result<()> {
        for (offset, group) in groups.iter().enumerate() {
            let expected = self.next_region_id as u64 + offset as u64;
            if u64::from(group.id.0) != expected {
                return Err(invalid(format!(
                    "region group id {} out of sequence (expected {expected})",
                    group.id
                )));
            }
            let database = self.database(&group.database)?;
            let factor = database.settings.replication_factor(group.kind);
            if group.replicas.len() != factor as usize {
                return Err(invalid(format!(
                    "region group {} has {} replicas, replication factor is {factor}",
                    group.id,
                    group.replicas.len()
                )));
            }
            let mut nodes = BTreeSet::new();
            for replica in &group.replicas {
                let node = self
                    .data_nodes
                    .get(&replica.data_node_id)
                    .ok_or(ConfigNodeError::NodeNotFound(replica.data_node_id))?;
                if u32::from(replica.shard.0) >= node.spec.shard_count
                    || !nodes.insert(replica.data_node_id)
                {
                    return Err(invalid(format!(
                        "region group {} has a bad or duplicate replica {replica:?}",
                        group.id
                    )));
                }
            }
            if !nodes.contains(&group.leader) {
                return Err(invalid(format!(
                    "region group {} leader {} holds no replica",
                    group.id, group.leader
                )));
            }
        }
        Ok(())
    }

    fn mutate(&mut self, command: &ConfigCommand) {
        match command {
            ConfigCommand::RegisterConfigNode { node_id, spec } => {
                self.take_node_id(*node_id);
                self.config_nodes.insert(
                    *node_id,
                    ConfigNodeInfo {
                        node_id: *node_id,
                        status: NodeStatus::Running,
                        spec: spec.clone(),
                    },
                );
            }
            ConfigCommand::RegisterDataNode { node_id, spec } => {
                self.take_node_id(*node_id);
                self.data_nodes.insert(
                    *node_id,
                    DataNodeInfo {
                        node_id: *node_id,
                        status: NodeStatus::Running,
                        spec: spec.clone(),
                    },
                );
            }
            ConfigCommand::SetNodeStatus { node_id, status } => {
                if let Some(node) = self.config_nodes.get_mut(node_id) {
                    node.status = *status;
                }
                if let Some(node) = self.data_nodes.get_mut(node_id) {
                    node.status = *status;
                }
                // Leadership leaves DataNodes that stopped running in the same command, so
                // no state exists (and no crash can leave one) where a group is led by a
                // node known to be down while another replica runs.
                for (group, leader) in plan_leader_failover(self) {
                    self.region_groups
                        .get_mut(&group)
                        .expect("planned")
                        .set_leader(leader);
                }
                if *status != NodeStatus::Running {
                    self.leave_in_sync_sets(*node_id);
                }
            }
            ConfigCommand::RemoveNode { node_id } => {
                self.data_nodes.remove(node_id);
                self.config_nodes.remove(node_id);
            }
            ConfigCommand::CreateDatabase { name, settings } => {
                self.databases.insert(
                    name.clone(),
                    DatabaseState::new(name.clone(), settings.clone()),
                );
            }
            ConfigCommand::AlterDatabase { name, settings } => {
                let database = self.databases.get_mut(name).expect("checked");
                database.settings = settings.clone();
            }
            ConfigCommand::DeleteDatabase { name } => {
                let database = self.databases.remove(name).expect("checked");
                for id in database
                    .schema_region_groups
                    .iter()
                    .chain(&database.data_region_groups)
                {
                    self.region_groups.remove(id);
                }
            }
            ConfigCommand::CreateRegionGroups { groups } => {
                for group in groups {
                    let database = self.databases.get_mut(&group.database).expect("checked");
                    match group.kind {
                        RegionGroupKind::Schema => database.schema_region_groups.push(group.id),
                        RegionGroupKind::Data => database.data_region_groups.push(group.id),
                    }
                    self.next_region_id = group.id.0 + 1;
                    self.region_groups.insert(group.id, group.clone());
                }
            }
            ConfigCommand::AssignSchemaPartitions {
                database,
                assignments,
            } => {
                let database = self.databases.get_mut(database).expect("checked");
                database
                    .schema_partitions
                    .extend(assignments.iter().copied());
            }
            ConfigCommand::AssignDataPartitions {
                database,
                assignments,
            } => {
                let database = self.databases.get_mut(database).expect("checked");
                for &(slot, time_slot, group) in assignments {
                    database.assign_data_partition(slot, time_slot, group);
                }
            }
            ConfigCommand::ChangeLeaders { changes } => {
                for &(group, leader) in changes {
                    self.region_groups
                        .get_mut(&group)
                        .expect("checked")
                        .set_leader(leader);
                }
            }
            ConfigCommand::NewLeaderEpoch { group, .. } => {
                self.region_groups.get_mut(group).expect("checked").epoch += 1;
            }
            ConfigCommand::ChangeInSync {
                group, out_of_sync, ..
            } => {
                let group = self.region_groups.get_mut(group).expect("checked");
                let mut out_of_sync = out_of_sync.clone();
                out_of_sync.sort_unstable();
                out_of_sync.dedup();
                group.out_of_sync = out_of_sync;
                group.in_sync_version += 1;
            }
            ConfigCommand::AddRegionReplica { group, replica } => {
                let group = self.region_groups.get_mut(group).expect("checked");
                group.replicas.push(*replica);
                // Out of the in-sync set until its leader reports it caught up: with
                // `in_sync` acknowledgement the leader asks it in; otherwise the
                // migration's catch-up step takes it out of the list. (A SchemaRegion's
                // Raft group keeps no in-sync set.)
                if group.kind == RegionGroupKind::Data {
                    group.out_of_sync.push(replica.data_node_id);
                    group.out_of_sync.sort_unstable();
                    group.out_of_sync.dedup();
                }
                group.in_sync_version += 1;
            }
            ConfigCommand::RemoveRegionReplica { group, node } => {
                let group = self.region_groups.get_mut(group).expect("checked");
                group.replicas.retain(|r| r.data_node_id != *node);
                group.out_of_sync.retain(|n| n != node);
                // A new version: every replica's view changes (the leader stops shipping
                // to the removed one).
                group.in_sync_version += 1;
            }
            ConfigCommand::MoveSchemaReplica { group, to, .. } => {
                let group = self.region_groups.get_mut(group).expect("checked");
                group.replicas = vec![*to];
                group.out_of_sync.clear();
                group.in_sync_version += 1;
                group.set_leader(to.data_node_id);
            }
            ConfigCommand::StartProcedure { id, procedure } => {
                self.next_procedure_id = id + 1;
                self.procedures.insert(*id, procedure.clone());
            }
            ConfigCommand::AdvanceProcedure { id, procedure } => {
                self.procedures.insert(*id, procedure.clone());
            }
            ConfigCommand::FinishProcedure { id } => {
                self.procedures.remove(id);
            }
        }
    }

    fn take_node_id(&mut self, node_id: NodeId) {
        if node_id == self.next_node_id {
            self.next_node_id = NodeId(node_id.0 + 1);
        }
    }
}

/// Whether `prefix` is a proper path prefix of `path` at a node boundary.
fn is_path_prefix(prefix: &str, path: &str) -> bool {
    path.len() > prefix.len() && path.starts_with(prefix) && path.as_bytes()[prefix.len()] == b'.'
}

fn check_member(
    database: &DatabaseState,
    kind: RegionGroupKind,
    group: RegionGroupId,
) -> Result<()> {
    if database.region_groups(kind).contains(&group) {
        Ok(())
    } else {
        Err(invalid(format!(
            "region group {group} is not a {} of {}",
            kind.as_str(),
            database.name
        )))
    }
}

/// What `ALTER DATABASE` may change: TTL and region group counts; the
/// replication factors never, the time partition interval only before any
/// data partition exists (existing partitions would change meaning).
fn check_alter(database: &DatabaseState, settings: &DatabaseSettings) -> Result<()> {
    let refuse = |reason: &str| {
        Err(ConfigNodeError::DatabaseConfig {
            database: database.name.clone(),
            reason: reason.to_string(),
        })
    };
    let current = &database.settings;
    if settings.schema_replication_factor != current.schema_replication_factor
        || settings.data_replication_factor != current.data_replication_factor
    {
        return refuse("the replication factors cannot change");
    }
    if settings.time_partition_interval_ms != current.time_partition_interval_ms
        && !database.data_partitions.is_empty()
    {
        return refuse("the time partition interval cannot change once data exists");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert!(validate_database_name("root.sg").is_ok());
        assert!(validate_database_name("root.a.b").is_ok());
        for bad in [
            "root",
            "sg",
            "root.",
            "root..a",
            "root.*",
            "root.a.**",
            "rooty.a",
        ] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_of_takes_the_first_level() {
        assert_eq!(database_of("root.sg.d1").unwrap(), "root.sg");
        assert_eq!(database_of("root.sg.a.b.c").unwrap(), "root.sg");
        assert!(database_of("root.sg").is_err());
        assert!(database_of("root").is_err());
        assert!(database_of("sg.d1").is_err());
        assert_eq!(
            database_of("x.d").unwrap_err().status_code(),
            iotdb_model::StatusCode::ILLEGAL_PATH
        );
    }

    #[test]
    fn path_prefixes_respect_node_boundaries() {
        assert!(is_path_prefix("root.a", "root.a.b"));
        assert!(!is_path_prefix("root.a", "root.ab"));
        assert!(!is_path_prefix("root.a", "root.a"));
    }
}
