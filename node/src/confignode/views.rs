//! Admin SQL result sets built from the ConfigNode state, with IoTDB's
//! column names (IOTDB_FACTS §3.1): `SHOW CLUSTER [DETAILS]`,
//! `SHOW DATANODES`, `SHOW CONFIGNODES`, `SHOW [DATA|SCHEMA] REGIONS`,
//! `SHOW DATABASES [DETAILS]`, `SHOW VARIABLES`, `SHOW ALL TTL`.
//!
//! Cells are text; `None` is a blank (not applicable) cell.

use super::model::{NodeId, RegionGroupId, RegionGroupKind, RegionGroupPolicy};
use super::placement::region_group_target;
use super::state::ConfigState;
use crate::sql::{PathPattern, RegionKind};
use std::collections::{BTreeMap, BTreeSet};

/// A result set: column names and rows of optional text cells.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    /// Column names, IoTDB's spelling.
    pub columns: Vec<String>,
    /// Rows, one cell per column.
    pub rows: Vec<Vec<Option<String>>>,
}

fn names(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|name| name.to_string()).collect()
}

fn cell(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

/// `SHOW CLUSTER [DETAILS]`: ConfigNodes and DataNodes by id.
pub fn show_cluster(state: &ConfigState, details: bool) -> Table {
    let columns = if details {
        vec![
            "NodeID",
            "NodeType",
            "Status",
            "InternalAddress",
            "InternalPort",
            "ConfigConsensusPort",
            "RpcAddress",
            "RpcPort",
            "MppPort",
            "SchemaConsensusPort",
            "DataConsensusPort",
            "Version",
            "BuildInfo",
        ]
    } else {
        vec![
            "NodeID",
            "NodeType",
            "Status",
            "InternalAddress",
            "InternalPort",
            "Version",
            "BuildInfo",
        ]
    };
    let mut rows: BTreeMap<NodeId, Vec<Option<String>>> = BTreeMap::new();
    for node in state.config_nodes().values() {
        let spec = &node.spec;
        let row = if details {
            vec![
                cell(node.node_id),
                cell("ConfigNode"),
                cell(node.status.as_str()),
                cell(&spec.internal_address),
                cell(spec.internal_port),
                cell(spec.consensus_port),
                None,
                None,
                None,
                None,
                None,
                cell(&spec.version),
                cell(&spec.build_info),
            ]
        } else {
            vec![
                cell(node.node_id),
                cell("ConfigNode"),
                cell(node.status.as_str()),
                cell(&spec.internal_address),
                cell(spec.internal_port),
                cell(&spec.version),
                cell(&spec.build_info),
            ]
        };
        rows.insert(node.node_id, row);
    }
    for node in state.data_nodes().values() {
        let spec = &node.spec;
        let row = if details {
            vec![
                cell(node.node_id),
                cell("DataNode"),
                cell(node.status.as_str()),
                cell(&spec.internal_address),
                cell(spec.internal_port),
                None,
                cell(&spec.rpc_address),
                cell(spec.rpc_port),
                cell(spec.mpp_port),
                cell(spec.schema_consensus_port),
                cell(spec.data_consensus_port),
                cell(&spec.version),
                cell(&spec.build_info),
            ]
        } else {
            vec![
                cell(node.node_id),
                cell("DataNode"),
                cell(node.status.as_str()),
                cell(&spec.internal_address),
                cell(spec.internal_port),
                cell(&spec.version),
                cell(&spec.build_info),
            ]
        };
        rows.insert(node.node_id, row);
    }
    Table {
        columns: names(&columns),
        rows: rows.into_values().collect(),
    }
}

/// Region replicas per DataNode: (data, schema).
fn replica_counts(state: &ConfigState) -> BTreeMap<NodeId, (u64, u64)> {
    let mut counts: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    for group in state.region_groups().values() {
        for replica in &group.replicas {
            let entry = counts.entry(replica.data_node_id).or_default();
            match group.kind {
                RegionGroupKind::Data => entry.0 += 1,
                RegionGroupKind::Schema => entry.1 += 1,
            }
        }
    }
    counts
}

/// `SHOW DATANODES`.
pub fn show_data_nodes(state: &ConfigState) -> Table {
    let counts = replica_counts(state);
    let rows = state
        .data_nodes()
        .values()
        .map(|node| {
            let (data, schema) = counts.get(&node.node_id).copied().unwrap_or_default();
            vec![
                cell(node.node_id),
                cell(node.status.as_str()),
                cell(&node.spec.rpc_address),
                cell(node.spec.rpc_port),
                cell(data),
                cell(schema),
            ]
        })
        .collect();
    Table {
        columns: names(&[
            "NodeID",
            "Status",
            "RpcAddress",
            "RpcPort",
            "DataRegionNum",
            "SchemaRegionNum",
        ]),
        rows,
    }
}

/// `SHOW CONFIGNODES`; `leader` is who leads the ConfigNode group now (the consensus
/// layer's view, not replicated state).
pub fn show_config_nodes(state: &ConfigState, leader: Option<NodeId>) -> Table {
    let rows = state
        .config_nodes()
        .values()
        .map(|node| {
            let role = if leader == Some(node.node_id) {
                "Leader"
            } else {
                "Follower"
            };
            vec![
                cell(node.node_id),
                cell(node.status.as_str()),
                cell(&node.spec.internal_address),
                cell(node.spec.internal_port),
                cell(role),
            ]
        })
        .collect();
    Table {
        columns: names(&[
            "NodeID",
            "Status",
            "InternalAddress",
            "InternalPort",
            "Role",
        ]),
        rows,
    }
}

/// Filters of `SHOW REGIONS`.
#[derive(Debug, Clone)]
pub struct RegionFilter<'a> {
    /// Which kinds.
    pub kind: RegionKind,
    /// `OF DATABASE p, ...`; empty means all.
    pub databases: &'a [PathPattern],
    /// `ON NODEID n, ...`; empty means all.
    pub node_ids: &'a [u32],
}

/// `SHOW [DATA|SCHEMA] REGIONS`: one row per replica, by region id then
/// DataNode id. SeriesSlotNum counts the series slots a group serves;
/// TimeSlotNum counts its DataPartitions ((series slot, time slot) pairs, 0
/// for schema groups). `tsfile_size` gives the TsFileSize cell of a data
/// replica (the caller knows the files); schema replicas get a blank.
pub fn show_regions(
    state: &ConfigState,
    filter: &RegionFilter<'_>,
    tsfile_size: &dyn Fn(RegionGroupId, NodeId) -> Option<String>,
) -> Table {
    let mut series_slots: BTreeMap<RegionGroupId, BTreeSet<u32>> = BTreeMap::new();
    let mut time_slots: BTreeMap<RegionGroupId, u64> = BTreeMap::new();
    for database in state.databases().values() {
        for (&slot, &group) in &database.schema_partitions {
            series_slots.entry(group).or_default().insert(slot);
        }
        for (&slot, by_time) in &database.data_partitions {
            for &group in by_time.values() {
                series_slots.entry(group).or_default().insert(slot);
                *time_slots.entry(group).or_default() += 1;
            }
        }
    }
    let mut rows = Vec::new();
    for group in state.region_groups().values() {
        let kind_matches = match filter.kind {
            RegionKind::All => true,
            RegionKind::Data => group.kind == RegionGroupKind::Data,
            RegionKind::Schema => group.kind == RegionGroupKind::Schema,
        };
        let database_matches = filter.databases.is_empty()
            || filter
                .databases
                .iter()
                .any(|pattern| pattern.matches(&group.database));
        if !kind_matches || !database_matches {
            continue;
        }
        let mut holders: Vec<NodeId> = group.replicas.iter().map(|r| r.data_node_id).collect();
        // A Raft SchemaRegion's replica that a migration removed stays listed, `Removing`,
        // until its group no longer counts it a voter (the migration then ends).
        if let Some(leaving) = state
            .migration_of(group.id)
            .and_then(|(_, from, to, step)| step.leaving(from, to))
            .filter(|leaving| group.kind == RegionGroupKind::Schema && !holders.contains(leaving))
        {
            holders.push(leaving);
        }
        holders.sort();
        for holder in holders {
            if !filter.node_ids.is_empty() && !filter.node_ids.contains(&holder.0) {
                continue;
            }
            let node = state.data_nodes().get(&holder);
            let size = match group.kind {
                RegionGroupKind::Data => tsfile_size(group.id, holder),
                RegionGroupKind::Schema => None,
            };
            // A replica a migration adds or removes says so (IoTDB's `Adding` and
            // `Removing` region statuses); otherwise its DataNode's status.
            let migrating = state
                .migration_of(group.id)
                .and_then(|(_, from, to, step)| {
                    if holder == to {
                        step.new_replica_status()
                    } else if holder == from {
                        step.old_replica_status()
                    } else {
                        None
                    }
                });
            rows.push(vec![
                cell(group.id),
                cell(group.kind.as_str()),
                migrating
                    .map(str::to_string)
                    .or_else(|| node.map(|node| node.status.as_str().to_string())),
                cell(&group.database),
                cell(series_slots.get(&group.id).map_or(0, BTreeSet::len)),
                cell(time_slots.get(&group.id).copied().unwrap_or(0)),
                cell(holder),
                node.map(|node| node.spec.rpc_address.clone()),
                node.map(|node| node.spec.rpc_port.to_string()),
                node.map(|node| node.spec.internal_address.clone()),
                cell(group.role_of(holder).as_str()),
                cell(format_timestamp_ms(group.create_time_ms)),
                size,
                cell(group.in_sync(holder)),
            ]);
        }
    }
    Table {
        columns: names(&[
            "RegionId",
            "Type",
            "Status",
            "Database",
            "SeriesSlotNum",
            "TimeSlotNum",
            "DataNodeId",
            "RpcAddress",
            "RpcPort",
            "InternalAddress",
            "Role",
            "CreateTime",
            "TsFileSize",
            // Beyond IoTDB: whether the replica is in its group's in-sync set
            // (`data_replication_ack = in_sync` acknowledges once every member has a write).
            "InSync",
        ]),
        rows,
    }
}

/// `SHOW DATABASES [DETAILS] [pattern]`. Min/Max region group numbers are
/// the CUSTOM count, or 1 and the current AUTO target.
pub fn show_databases(state: &ConfigState, details: bool, pattern: Option<&PathPattern>) -> Table {
    let mut columns = vec![
        "Database",
        "SchemaReplicationFactor",
        "DataReplicationFactor",
        "TimePartitionOrigin",
        "TimePartitionInterval",
    ];
    if details {
        columns.extend([
            "SchemaRegionGroupNum",
            "MinSchemaRegionGroupNum",
            "MaxSchemaRegionGroupNum",
            "DataRegionGroupNum",
            "MinDataRegionGroupNum",
            "MaxDataRegionGroupNum",
        ]);
    }
    let mut rows = Vec::new();
    for database in state.databases().values() {
        if pattern.is_some_and(|pattern| !pattern.matches(&database.name)) {
            continue;
        }
        let settings = &database.settings;
        let mut row = vec![
            cell(&database.name),
            cell(settings.schema_replication_factor),
            cell(settings.data_replication_factor),
            cell(0),
            cell(settings.time_partition_interval_ms),
        ];
        if details {
            for kind in [RegionGroupKind::Schema, RegionGroupKind::Data] {
                let target = region_group_target(state, database, kind);
                let minimum = match settings.region_group_policy(kind) {
                    RegionGroupPolicy::Custom(count) => count,
                    RegionGroupPolicy::Auto => 1,
                };
                row.push(cell(database.region_groups(kind).len()));
                row.push(cell(minimum));
                row.push(cell(target.max(database.region_groups(kind).len() as u32)));
            }
        }
        rows.push(row);
    }
    Table {
        columns: names(&columns),
        rows,
    }
}

/// `SHOW ALL TTL`: one rule per database with a TTL (`root.x.**`), as
/// IoTDB expands a database TTL.
pub fn show_all_ttl(state: &ConfigState) -> Table {
    let rows = state
        .databases()
        .values()
        .filter_map(|database| {
            let ttl = database.settings.ttl_ms?;
            Some(vec![cell(format!("{}.**", database.name)), cell(ttl)])
        })
        .collect();
    Table {
        columns: names(&["Device", "TTL(ms)"]),
        rows,
    }
}

/// `SHOW VARIABLES`: the cluster-level settings.
pub fn show_variables(state: &ConfigState) -> Table {
    let settings = state.settings();
    let policy = |policy: RegionGroupPolicy| match policy {
        RegionGroupPolicy::Auto => "AUTO".to_string(),
        RegionGroupPolicy::Custom(_) => "CUSTOM".to_string(),
    };
    let count = |policy: RegionGroupPolicy, auto: u32| match policy {
        RegionGroupPolicy::Auto => auto.to_string(),
        RegionGroupPolicy::Custom(count) => count.to_string(),
    };
    let variables: Vec<(&str, String)> = vec![
        ("ClusterName", settings.cluster_name.clone()),
        (
            "DataReplicationFactor",
            settings.data_replication_factor.to_string(),
        ),
        (
            "SchemaReplicationFactor",
            settings.schema_replication_factor.to_string(),
        ),
        (
            "DataRegionConsensusProtocolClass",
            settings.data_region_consensus_protocol_class.clone(),
        ),
        (
            "SchemaRegionConsensusProtocolClass",
            settings.schema_region_consensus_protocol_class.clone(),
        ),
        (
            "ConfigNodeConsensusProtocolClass",
            settings.config_node_consensus_protocol_class.clone(),
        ),
        ("TimePartitionOrigin", "0".to_string()),
        (
            "TimePartitionInterval",
            settings.time_partition_interval_ms.to_string(),
        ),
        (
            "ReadConsistencyLevel",
            settings.read_consistency_level.clone(),
        ),
        (
            "SchemaRegionGroupExtensionPolicy",
            policy(settings.schema_region_group_policy),
        ),
        (
            "DefaultSchemaRegionGroupNumPerDatabase",
            count(settings.schema_region_group_policy, 1),
        ),
        (
            "DataRegionGroupExtensionPolicy",
            policy(settings.data_region_group_policy),
        ),
        (
            "DefaultDataRegionGroupNumPerDatabase",
            count(settings.data_region_group_policy, 0),
        ),
        ("SeriesSlotNum", settings.series_slot_num.to_string()),
        (
            "SeriesSlotExecutorClass",
            "org.apache.iotdb.commons.partition.executor.hash.BKDRHashExecutor".to_string(),
        ),
        ("TimestampPrecision", settings.timestamp_precision.clone()),
        (
            "DataReplicationAck",
            settings.data_replication_ack.name().to_string(),
        ),
    ];
    Table {
        columns: names(&["Variable", "Value"]),
        rows: variables
            .into_iter()
            .map(|(name, value)| vec![cell(name), Some(value)])
            .collect(),
    }
}

/// `2024-05-27T14:38:16.654` (UTC), the shape of IoTDB's CreateTime cell.
pub fn format_timestamp_ms(time_ms: i64) -> String {
    let days = time_ms.div_euclid(86_400_000);
    let millis_of_day = time_ms.rem_euclid(86_400_000);
    let (year, month, day) = crate::sql::time::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        millis_of_day / 3_600_000,
        millis_of_day / 60_000 % 60,
        millis_of_day / 1000 % 60,
        millis_of_day % 1000
    )
}

/// The cluster gauges of the ConfigNode's metrics endpoint, counted from the rows of
/// `SHOW CLUSTER` and `SHOW REGIONS` so that a scrape and those statements agree. Keys
/// are (node type or region kind, status), IoTDB's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterGauges {
    /// Nodes by (`ConfigNode` | `DataNode`, status).
    pub nodes: BTreeMap<(String, String), u64>,
    /// Region groups by (`DataRegion` | `SchemaRegion`, group status: see
    /// [`region_group_status`]).
    pub region_groups: BTreeMap<(String, String), u64>,
    /// Region replicas by (kind, the replica's status in `SHOW REGIONS`).
    pub region_replicas: BTreeMap<(String, String), u64>,
}

/// Counts [`ClusterGauges`] from `state`.
pub fn cluster_gauges(state: &ConfigState) -> ClusterGauges {
    let mut gauges = ClusterGauges::default();
    let text = |row: &[Option<String>], column: usize| row[column].clone().unwrap_or_default();
    for row in &show_cluster(state, false).rows {
        *gauges
            .nodes
            .entry((text(row, 1), text(row, 2)))
            .or_default() += 1;
    }
    let all = RegionFilter {
        kind: RegionKind::All,
        databases: &[],
        node_ids: &[],
    };
    // (kind, replica statuses) per region group, from the rows in region id order.
    let mut groups: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for row in &show_regions(state, &all, &|_, _| None).rows {
        let (kind, status) = (text(row, 1), text(row, 2));
        *gauges
            .region_replicas
            .entry((kind.clone(), status.clone()))
            .or_default() += 1;
        groups
            .entry(text(row, 0))
            .or_insert_with(|| (kind, Vec::new()))
            .1
            .push(status);
    }
    for (kind, statuses) in groups.into_values() {
        let status = region_group_status(&statuses);
        *gauges
            .region_groups
            .entry((kind, status.to_string()))
            .or_default() += 1;
    }
    gauges
}

/// IoTDB's RegionGroupStatus from its replicas' statuses: `Running` when every replica
/// runs; `Disabled` when more than (n-1)/2 are `Unknown` or `Removing` (no majority
/// left); `Discouraged` when one is `ReadOnly`; `Available` otherwise (an `Adding`
/// replica, or a minority down).
pub fn region_group_status(statuses: &[String]) -> &'static str {
    let down = statuses
        .iter()
        .filter(|s| *s == "Unknown" || *s == "Removing")
        .count();
    if statuses.iter().all(|s| s == "Running") {
        "Running"
    } else if down > statuses.len().saturating_sub(1) / 2 {
        "Disabled"
    } else if statuses.iter().any(|s| s == "ReadOnly") {
        "Discouraged"
    } else {
        "Available"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_iotdb() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000");
        assert_eq!(
            format_timestamp_ms(1_716_820_696_654),
            "2024-05-27T14:38:16.654"
        );
        assert_eq!(format_timestamp_ms(-1), "1969-12-31T23:59:59.999");
    }

    #[test]
    fn region_group_status_follows_iotdb() {
        let status = |replicas: &[&str]| {
            let replicas: Vec<String> = replicas.iter().map(|s| s.to_string()).collect();
            region_group_status(&replicas)
        };
        assert_eq!(status(&["Running", "Running"]), "Running");
        assert_eq!(status(&["Running", "Running", "Unknown"]), "Available");
        assert_eq!(status(&["Running", "Running", "Adding"]), "Available");
        assert_eq!(status(&["Running", "Unknown"]), "Disabled");
        assert_eq!(status(&["Unknown"]), "Disabled");
        assert_eq!(status(&["Running", "Running", "ReadOnly"]), "Discouraged");
        assert_eq!(status(&["Running", "Removing", "Unknown"]), "Disabled");
    }
}
