//! ConfigNode scenario tests and property tests: placement invariants,
//! partition balance and stability, persistence across restarts.

use super::*;
use crate::confignode::procedure::NoEffects;
use crate::sql::{DatabaseAttributes, PathNode, PathPattern, RegionKind, Ttl};
use iotdb_model::StatusCode;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn fixed_clock() -> i64 {
    1_716_820_696_654
}

fn open(dir: &Path) -> ConfigNode {
    let mut node = ConfigNode::open(dir, ClusterSettings::default()).unwrap();
    node.set_clock(fixed_clock);
    node
}

pub(crate) fn data_node(host: u32, shards: u32) -> DataNodeSpec {
    DataNodeSpec {
        internal_address: format!("127.0.0.{host}"),
        internal_port: 10730,
        rpc_address: format!("127.0.0.{host}"),
        rpc_port: 6667,
        mpp_port: 10740,
        schema_consensus_port: 10750,
        data_consensus_port: 10760,
        shard_count: shards,
        version: "2.0.0".into(),
        build_info: "test".into(),
        registration_token: 0,
    }
}

pub(crate) fn config_node(host: u32) -> ConfigNodeSpec {
    ConfigNodeSpec {
        internal_address: format!("127.0.0.{host}"),
        internal_port: 10710,
        consensus_port: 10720,
        version: "2.0.0".into(),
        build_info: "test".into(),
    }
}

fn pattern(text: &str) -> PathPattern {
    PathPattern::new(
        text.split('.')
            .map(|node| match node {
                "*" => PathNode::OneLevel,
                "**" => PathNode::MultiLevel,
                name => PathNode::Name(name.to_string()),
            })
            .collect(),
    )
}

fn column(table: &Table, name: &str) -> Vec<Option<String>> {
    let index = table.columns.iter().position(|c| *c == name).unwrap();
    table.rows.iter().map(|row| row[index].clone()).collect()
}

#[test]
fn standalone_cluster_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    assert_eq!(
        node.register_config_node(config_node(1)).unwrap(),
        NodeId(0)
    );
    node.set_leader(Some(NodeId(0)));
    assert_eq!(node.register_data_node(data_node(1, 4)).unwrap(), NodeId(1));
    // Re-registering the same node keeps its id and changes nothing.
    let version = node.version();
    assert_eq!(node.register_data_node(data_node(1, 4)).unwrap(), NodeId(1));
    assert_eq!(node.version(), version);

    node.create_database("root.sg", &DatabaseAttributes::default())
        .unwrap();
    let error = node
        .create_database("root.sg", &DatabaseAttributes::default())
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::DATABASE_ALREADY_EXISTS);
    for nested in ["root.sg.a", "root"] {
        let error = node
            .create_database(nested, &DatabaseAttributes::default())
            .unwrap_err();
        assert!(
            error.status_code() == StatusCode::DATABASE_CONFLICT
                || error.status_code() == StatusCode::ILLEGAL_PATH
        );
    }
    node.create_database("root.sgx", &DatabaseAttributes::default())
        .unwrap();
    let error = node
        .create_database("root.sgx.inner", &DatabaseAttributes::default())
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::DATABASE_CONFLICT);

    // Schema first (region 0), then data: AUTO gives 4 cores / RF 1 groups.
    let (schema_group, changed) = node.get_or_create_schema_partition("root.sg", 2).unwrap();
    assert!(changed);
    assert_eq!(schema_group, RegionGroupId(0));
    let (data_group, changed) = node.get_or_create_data_partition("root.sg", 2, 0).unwrap();
    assert!(changed);
    assert_eq!(
        node.state()
            .database("root.sg")
            .unwrap()
            .data_region_groups
            .len(),
        4
    );
    assert_eq!(
        node.get_or_create_data_partition("root.sg", 2, 0).unwrap(),
        (data_group, false)
    );
    // Four region groups land on four distinct shards of the one DataNode.
    let shards: std::collections::BTreeSet<ShardId> = node
        .state()
        .region_groups()
        .values()
        .filter(|group| group.kind == RegionGroupKind::Data)
        .map(|group| group.replicas[0].shard)
        .collect();
    assert_eq!(shards.len(), 4);

    let snapshot = node.route_snapshot();
    assert_eq!(snapshot.version, node.version());
    assert_eq!(
        snapshot.data_region_group("root.sg", 2, 0),
        Some(data_group)
    );
    assert_eq!(
        snapshot.database_of_device("root.sg.d1").unwrap().0,
        "root.sg"
    );
    let (leader, endpoint) = snapshot.leader(data_group).unwrap();
    assert_eq!((leader.data_node_id, endpoint.rpc_port), (NodeId(1), 6667));

    let cluster = node.show_cluster(false);
    assert_eq!(
        cluster.columns,
        vec![
            "NodeID",
            "NodeType",
            "Status",
            "InternalAddress",
            "InternalPort",
            "Version",
            "BuildInfo"
        ]
    );
    assert_eq!(
        column(&cluster, "NodeType"),
        vec![Some("ConfigNode".into()), Some("DataNode".into())]
    );
    assert_eq!(node.show_cluster(true).columns.len(), 13);

    let regions = node.show_regions(
        &RegionFilter {
            kind: RegionKind::All,
            databases: &[pattern("root.sg")],
            node_ids: &[],
        },
        &|_, _| Some("0 B".into()),
    );
    assert_eq!(regions.rows.len(), 5);
    assert_eq!(regions.rows[0][1].as_deref(), Some("SchemaRegion"));
    assert_eq!(regions.rows[0][4].as_deref(), Some("1"));
    assert_eq!(regions.rows[0][5].as_deref(), Some("0"));
    assert_eq!(
        regions.rows[0][11].as_deref(),
        Some("2024-05-27T14:38:16.654")
    );
    assert_eq!(regions.rows[0][12], None);
    assert_eq!(regions.rows[1][12].as_deref(), Some("0 B"));
    let data_only = node.show_regions(
        &RegionFilter {
            kind: RegionKind::Data,
            databases: &[],
            node_ids: &[7],
        },
        &|_, _| None,
    );
    assert!(data_only.rows.is_empty());

    let datanodes = node.show_data_nodes();
    assert_eq!(column(&datanodes, "DataRegionNum"), vec![Some("4".into())]);
    assert_eq!(
        column(&datanodes, "SchemaRegionNum"),
        vec![Some("1".into())]
    );
    let databases = node.show_databases(true, None);
    assert_eq!(databases.rows.len(), 2);
    assert_eq!(databases.columns.len(), 11);
    assert_eq!(
        node.show_config_nodes().rows[0][4].as_deref(),
        Some("Leader")
    );
    assert!(
        node.show_variables()
            .rows
            .iter()
            .any(|row| row[0].as_deref() == Some("SeriesSlotNum"))
    );

    // Survives a restart exactly.
    let before = node.state().clone();
    let route_before = node.route_snapshot();
    drop(node);
    let node = open(dir.path());
    assert_eq!(node.state(), &before);
    assert_eq!(*node.route_snapshot(), *route_before);
}

#[test]
fn settings_are_fixed_after_first_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let settings = ClusterSettings {
        series_slot_num: 10,
        ..ClusterSettings::default()
    };
    let error = ConfigNode::open(dir.path(), settings).unwrap_err();
    assert!(matches!(
        error,
        ConfigNodeError::SettingsChanged {
            name: "series_slot_num",
            ..
        }
    ));
}

#[test]
fn databases_settings_ttl_delete_and_auto_creation() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    node.register_data_node(data_node(1, 2)).unwrap();
    let attributes = DatabaseAttributes {
        ttl: Some(Ttl::Millis(3_600_000)),
        time_partition_interval_ms: Some(86_400_000),
        data_region_group_num: Some(3),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.a", &attributes).unwrap();
    let settings = &node.state().database("root.a").unwrap().settings;
    assert_eq!(settings.ttl_ms, Some(3_600_000));
    assert_eq!(settings.time_slot(86_400_000 * 2 + 5), 2);
    assert_eq!(settings.time_slot(-1), -1);
    assert_eq!(settings.data_region_groups, RegionGroupPolicy::Custom(3));
    assert_eq!(
        node.show_all_ttl().rows,
        vec![vec![Some("root.a.**".into()), Some("3600000".into())]]
    );

    node.get_or_create_data_partitions("root.a", &[(0, 0), (1, 0), (2, 0)])
        .unwrap();
    assert_eq!(
        node.state()
            .database("root.a")
            .unwrap()
            .data_region_groups
            .len(),
        3
    );
    // The interval cannot change once data partitions exist; TTL can.
    let error = node
        .alter_database(
            "root.a",
            &DatabaseAttributes {
                time_partition_interval_ms: Some(1000),
                ..DatabaseAttributes::default()
            },
        )
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::DATABASE_CONFIG_ERROR);
    node.set_ttl("root.a", None).unwrap();
    assert!(node.show_all_ttl().rows.is_empty());

    let bad = DatabaseAttributes {
        data_replication_factor: Some(0),
        ..DatabaseAttributes::default()
    };
    assert_eq!(
        node.create_database("root.b", &bad)
            .unwrap_err()
            .status_code(),
        StatusCode::DATABASE_CONFIG_ERROR
    );
    // Replication factor 2 with one DataNode cannot place replicas.
    let two = DatabaseAttributes {
        data_replication_factor: Some(2),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.b", &two).unwrap();
    let error = node
        .get_or_create_data_partition("root.b", 0, 0)
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::NO_ENOUGH_DATANODE);

    assert_eq!(
        node.ensure_database_of_device("root.a.d1").unwrap(),
        ("root.a".to_string(), false)
    );
    assert_eq!(
        node.ensure_database_of_device("root.c.x.d1").unwrap(),
        ("root.c".to_string(), true)
    );
    assert!(node.state().databases().contains_key("root.c"));

    let deleted = node
        .delete_databases(&[pattern("root.a")], &mut NoEffects)
        .unwrap();
    assert_eq!(deleted, vec!["root.a".to_string()]);
    assert!(node.state().region_groups().is_empty());
    assert_eq!(
        node.delete_databases(&[pattern("root.zz")], &mut NoEffects)
            .unwrap_err()
            .status_code(),
        StatusCode::DATABASE_NOT_EXIST
    );
    // Region ids keep counting after a delete.
    node.get_or_create_data_partition("root.c", 0, 0).unwrap();
    assert!(node.state().region_groups().keys().all(|id| id.0 >= 3));
    let slot_error = node
        .get_or_create_data_partition("root.c", 1000, 0)
        .unwrap_err();
    assert!(matches!(
        slot_error,
        ConfigNodeError::SeriesSlotOutOfRange { .. }
    ));
}

#[test]
fn leaders_fail_over_and_nodes_with_replicas_are_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    let nodes: Vec<NodeId> = (1..=3)
        .map(|host| node.register_data_node(data_node(host, 2)).unwrap())
        .collect();
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(3),
        data_region_group_num: Some(6),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.r", &attributes).unwrap();
    node.get_or_create_data_partition("root.r", 0, 0).unwrap();
    let leaders = |node: &ConfigNode| {
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for group in node.state().region_groups().values() {
            *counts.entry(group.leader).or_default() += 1;
        }
        counts
    };
    assert_eq!(
        leaders(&node).values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    node.set_node_status(nodes[0], NodeStatus::Unknown).unwrap();
    let after = leaders(&node);
    assert!(!after.contains_key(&nodes[0]));
    assert_eq!(after.values().copied().collect::<Vec<_>>(), vec![3, 3]);
    let removed = node.remove_node(nodes[0]).unwrap_err();
    assert!(matches!(removed, ConfigNodeError::NodeRefused { .. }));
    // A restarted node re-registers under its id and runs again.
    assert_eq!(node.register_data_node(data_node(1, 2)).unwrap(), nodes[0]);
    assert_eq!(
        node.state().data_nodes()[&nodes[0]].status,
        NodeStatus::Running
    );
}

/// Region replicas of `kind` per DataNode and per (DataNode, shard).
fn replica_loads(
    state: &ConfigState,
    kind: RegionGroupKind,
) -> (BTreeMap<NodeId, u64>, BTreeMap<(NodeId, ShardId), u64>) {
    let mut per_node: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut per_shard: BTreeMap<(NodeId, ShardId), u64> = BTreeMap::new();
    for node in state.data_nodes().values() {
        per_node.insert(node.node_id, 0);
        for shard in 0..node.spec.shard_count {
            per_shard.insert((node.node_id, ShardId(shard as u16)), 0);
        }
    }
    for group in state
        .region_groups()
        .values()
        .filter(|group| group.kind == kind)
    {
        for replica in &group.replicas {
            *per_node.get_mut(&replica.data_node_id).unwrap() += 1;
            *per_shard
                .get_mut(&(replica.data_node_id, replica.shard))
                .unwrap() += 1;
        }
    }
    (per_node, per_shard)
}

fn spread(counts: impl Iterator<Item = u64> + Clone) -> u64 {
    counts.clone().max().unwrap_or(0) - counts.min().unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Replicas sit on distinct nodes, and with equal shard counts the
    /// replica counts per node and per core differ by at most one.
    #[test]
    fn placement_is_balanced(
        node_count in 1u32..6,
        shards in 1u32..6,
        databases in proptest::collection::vec((1u32..4, 1u32..5), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut node = open(dir.path());
        for host in 1..=node_count {
            node.register_data_node(data_node(host, shards)).unwrap();
        }
        for (index, &(factor, groups)) in databases.iter().enumerate() {
            let factor = factor.min(node_count);
            let name = format!("root.db{index}");
            let attributes = DatabaseAttributes {
                data_replication_factor: Some(factor),
                schema_replication_factor: Some(factor),
                data_region_group_num: Some(groups),
                ..DatabaseAttributes::default()
            };
            node.create_database(&name, &attributes).unwrap();
            node.get_or_create_data_partition(&name, 0, 0).unwrap();
            node.get_or_create_schema_partition(&name, 0).unwrap();
        }
        let state = node.state();
        for group in state.region_groups().values() {
            let mut nodes: Vec<NodeId> = group.replicas.iter().map(|r| r.data_node_id).collect();
            nodes.sort_unstable();
            nodes.dedup();
            prop_assert_eq!(nodes.len(), group.replicas.len());
            prop_assert!(nodes.contains(&group.leader));
        }
        for kind in [RegionGroupKind::Data, RegionGroupKind::Schema] {
            let (per_node, per_shard) = replica_loads(state, kind);
            prop_assert!(spread(per_node.values().copied()) <= 1, "{:?}", per_node);
            prop_assert!(spread(per_shard.values().copied()) <= 1, "{:?}", per_shard);
        }
        // Placement spreads replicas first, so single-replica groups can pile leaders
        // on the node with the fewest regions; the leader balancer (each heartbeat
        // round) then moves replicated groups' leadership off it, and keeps leaders
        // within two of each other.
        for _ in 0..8 {
            if node.balance_leaders(&healthy_reports(&node)).unwrap() == 0 {
                break;
            }
        }
        let state = node.state();
        let mut leaders: BTreeMap<NodeId, u64> = state.data_nodes().keys().map(|id| (*id, 0)).collect();
        for group in state.region_groups().values().filter(|g| g.kind == RegionGroupKind::Data) {
            *leaders.get_mut(&group.leader).unwrap() += 1;
        }
        prop_assert!(spread(leaders.values().copied()) <= 2, "{:?}", leaders);
    }

    /// New partitions are balanced within each time slot (at most the
    /// inherit slack + 1 apart), and existing assignments never move.
    #[test]
    fn data_partitions_balance_and_never_move(
        groups in 1u32..6,
        requests in proptest::collection::vec(
            proptest::collection::vec((0u32..1000, 0i64..4), 1..40), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut node = open(dir.path());
        node.register_data_node(data_node(1, 4)).unwrap();
        node.create_database("root.p", &DatabaseAttributes {
            data_region_group_num: Some(groups),
            ..DatabaseAttributes::default()
        }).unwrap();
        let mut seen: HashMap<(u32, i64), RegionGroupId> = HashMap::new();
        for batch in &requests {
            let (assigned, _) = node.get_or_create_data_partitions("root.p", batch).unwrap();
            prop_assert_eq!(assigned.len(), batch.len());
            for (key, group) in batch.iter().zip(assigned) {
                let previous = *seen.entry(*key).or_insert(group);
                prop_assert_eq!(previous, group);
            }
        }
        let database = node.state().database("root.p").unwrap();
        let mut per_time_slot: BTreeMap<i64, BTreeMap<RegionGroupId, u64>> = BTreeMap::new();
        for by_time in database.data_partitions.values() {
            for (&time_slot, &group) in by_time {
                *per_time_slot.entry(time_slot).or_default().entry(group).or_default() += 1;
            }
        }
        for counts in per_time_slot.values() {
            let all: Vec<u64> = database
                .data_region_groups
                .iter()
                .map(|group| counts.get(group).copied().unwrap_or(0))
                .collect();
            prop_assert!(spread(all.iter().copied()) <= placement::DATA_PARTITION_INHERIT_SLACK + 1, "{:?}", all);
        }
    }

    /// The partition counts placement reads are kept as partitions are assigned, equal
    /// to a recount of the table; a node restarted part way (its counts derived again
    /// from the state it reads back) assigns exactly what a node never restarted does.
    #[test]
    fn partition_counts_are_kept_and_a_restart_places_the_same(
        groups in 1u32..5,
        requests in proptest::collection::vec(
            proptest::collection::vec((0u32..200, 0i64..3), 1..30), 1..10),
        restart_at in 0usize..10,
        checkpoint in any::<bool>(),
    ) {
        let attributes = DatabaseAttributes {
            data_region_group_num: Some(groups),
            ..DatabaseAttributes::default()
        };
        let start = |dir: &Path| {
            let mut node = open(dir);
            node.register_data_node(data_node(1, 4)).unwrap();
            node.create_database("root.c", &attributes).unwrap();
            node
        };
        let (dir_kept, dir_restarted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut kept = start(dir_kept.path());
        let mut restarted = start(dir_restarted.path());
        for (index, batch) in requests.iter().enumerate() {
            if index == restart_at {
                if checkpoint {
                    restarted.checkpoint().unwrap();
                }
                drop(restarted);
                restarted = open(dir_restarted.path());
            }
            let (a, _) = kept.get_or_create_data_partitions("root.c", batch).unwrap();
            let (b, _) = restarted.get_or_create_data_partitions("root.c", batch).unwrap();
            prop_assert_eq!(a, b);
            for node in [&kept, &restarted] {
                let database = node.state().database("root.c").unwrap();
                prop_assert_eq!(
                    database.partition_counts().into_owned(),
                    state::PartitionCounts::of(&database.data_partitions)
                );
            }
        }
    }

    /// Any sequence of operations survives a restart exactly, whether or
    /// not a snapshot was taken in between.
    #[test]
    fn state_survives_restart(
        operations in proptest::collection::vec((0u8..8, 0u32..1000, 0i64..3), 1..40),
        checkpoint_at in 0usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut node = open(dir.path());
        node.register_config_node(config_node(1)).unwrap();
        for (step, &(operation, slot, time_slot)) in operations.iter().enumerate() {
            if step == checkpoint_at {
                node.checkpoint().unwrap();
            }
            let database = format!("root.d{}", slot % 3);
            // Errors are part of the test: refused operations change nothing.
            let _ = match operation {
                0 => node.register_data_node(data_node(slot % 4 + 1, time_slot as u32 + 1)).map(drop),
                1 => node.create_database(&database, &DatabaseAttributes::default()),
                2 | 3 => node.get_or_create_data_partition(&database, slot, time_slot).map(drop),
                4 => node.get_or_create_schema_partition(&database, slot).map(drop),
                5 => node.set_node_status(NodeId(slot % 5), NodeStatus::Unknown),
                6 => node.set_node_status(NodeId(slot % 5), NodeStatus::Running),
                _ => node.delete_database(&database, &mut NoEffects),
            };
        }
        let before = node.state().clone();
        let route = node.route_snapshot();
        prop_assert_eq!(route.version, before.version());
        drop(node);
        let reopened = open(dir.path());
        prop_assert_eq!(reopened.state(), &before);
        prop_assert_eq!(&*reopened.route_snapshot(), &*route);
    }
}

#[test]
fn scale_out_adds_groups_that_take_new_time_slots() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    node.register_data_node(data_node(1, 2)).unwrap();
    node.create_database("root.s", &DatabaseAttributes::default())
        .unwrap();
    let week0: Vec<(u32, i64)> = (0..100).map(|slot| (slot, 0)).collect();
    let (before, _) = node
        .get_or_create_data_partitions("root.s", &week0)
        .unwrap();
    assert_eq!(
        node.state()
            .database("root.s")
            .unwrap()
            .data_region_groups
            .len(),
        2
    );
    let new_node = node.register_data_node(data_node(2, 2)).unwrap();
    let week1: Vec<(u32, i64)> = (0..100).map(|slot| (slot, 1)).collect();
    let (after, _) = node
        .get_or_create_data_partitions("root.s", &week1)
        .unwrap();
    let database = node.state().database("root.s").unwrap();
    assert_eq!(database.data_region_groups.len(), 4);
    // Old partitions stay; the new node's groups take about half of week 1.
    assert_eq!(
        node.get_or_create_data_partitions("root.s", &week0)
            .unwrap(),
        (before, false)
    );
    let on_new_node = after
        .iter()
        .filter(|group| node.state().region_groups()[group].leader == new_node)
        .count();
    assert!((48..=52).contains(&on_new_node), "{on_new_node}");
}

#[test]
fn damaged_journal_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    node.register_data_node(data_node(1, 1)).unwrap();
    node.create_database("root.x", &DatabaseAttributes::default())
        .unwrap();
    drop(node);
    let log = dir.path().join("confignode.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // Damage the first record's payload; a second record follows it.
    bytes[8 + 16 + 2] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let error = ConfigNode::open(dir.path(), ClusterSettings::default()).unwrap_err();
    assert!(matches!(
        error,
        ConfigNodeError::Journal(journal::JournalError::Corrupt { .. })
    ));
    assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn refused_commands_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    let version = node.version();
    assert!(
        node.create_database("root.x", &DatabaseAttributes::default())
            .is_ok()
    );
    assert!(node.get_or_create_data_partition("root.x", 0, 0).is_err());
    assert!(
        node.set_node_status(NodeId(9), NodeStatus::Unknown)
            .is_err()
    );
    assert!(node.delete_database("root.none", &mut NoEffects).is_err());
    assert_eq!(node.version(), version + 1);
    assert_eq!(node.route_snapshot().version, version + 1);
}

/// Records every replica drop it is asked for.
#[derive(Default)]
struct RecordDrops {
    dropped: std::collections::BTreeSet<RegionGroupId>,
}

impl ProcedureEnv for RecordDrops {
    fn drop_replicas(&mut self, groups: &[(RegionGroupId, RegionGroupKind)]) -> Result<(), String> {
        self.dropped.extend(groups.iter().map(|(group, _)| *group));
        Ok(())
    }
}

/// A database deletion crashed at each of its kill points resumes after a restart and ends
/// exactly as an uninterrupted one: database, groups and partitions gone, every replica
/// dropped, the other database untouched, no id reused. Also inside a control batch (as the
/// DataNode's control thread runs it), whose deferred records a crash loses: the
/// procedure's steps are durable before it acts on them.
#[test]
fn delete_database_survives_a_crash_at_every_kill_point() {
    for (point, batched) in KillPoint::DELETE_DATABASE
        .into_iter()
        .flat_map(|point| [(point, false), (point, true)])
    {
        let dir = tempfile::tempdir().unwrap();
        let mut node = open(dir.path());
        node.register_config_node(config_node(1)).unwrap();
        for host in 1..=3 {
            node.register_data_node(data_node(host, 2)).unwrap();
        }
        for database in ["root.gone", "root.kept"] {
            node.create_database(database, &DatabaseAttributes::default())
                .unwrap();
            node.get_or_create_schema_partitions(database, &[1, 2])
                .unwrap();
            node.get_or_create_data_partitions(database, &[(1, 0), (2, 0), (3, 1)])
                .unwrap();
        }
        let doomed: std::collections::BTreeSet<RegionGroupId> = node
            .state()
            .database("root.gone")
            .unwrap()
            .schema_region_groups
            .iter()
            .chain(
                &node
                    .state()
                    .database("root.gone")
                    .unwrap()
                    .data_region_groups,
            )
            .copied()
            .collect();
        assert!(!doomed.is_empty());
        let kept = node.state().database("root.kept").unwrap().clone();
        let next_region_id = node.state().next_region_id();

        node.set_kill_mode(KillMode::Fail(point));
        if batched {
            // Never ended: the crash comes first.
            node.begin_batch();
        }
        let mut first = RecordDrops::default();
        let error = node.delete_database("root.gone", &mut first).unwrap_err();
        assert!(
            matches!(error, ConfigNodeError::Killed(name) if name == point.name()),
            "{point:?}: {error}"
        );
        drop(node);

        // The restart: the procedure is still recorded and resumes.
        let mut node = open(dir.path());
        assert_eq!(node.state().procedures().len(), 1, "{point:?}");
        if node.state().databases().contains_key("root.gone") {
            // Nothing new is created in a database being deleted.
            let refused = node
                .get_or_create_data_partitions("root.gone", &[(9, 9)])
                .unwrap_err();
            assert!(
                matches!(refused, ConfigNodeError::DatabaseBeingDeleted(_)),
                "{point:?}: {refused}"
            );
        }
        let mut second = RecordDrops::default();
        assert_eq!(node.resume_procedures(&mut second).unwrap(), 1);

        let state = node.state();
        assert!(state.procedures().is_empty(), "{point:?}");
        assert!(!state.databases().contains_key("root.gone"), "{point:?}");
        assert!(
            doomed
                .iter()
                .all(|id| !state.region_groups().contains_key(id)),
            "{point:?}"
        );
        assert_eq!(state.database("root.kept").unwrap(), &kept, "{point:?}");
        assert_eq!(
            state.next_region_id(),
            next_region_id,
            "{point:?}: ids never reused"
        );
        let dropped: std::collections::BTreeSet<RegionGroupId> =
            first.dropped.union(&second.dropped).copied().collect();
        assert_eq!(dropped, doomed, "{point:?}: every replica dropped");
        // The database can be created again, with new region group ids.
        node.create_database("root.gone", &DatabaseAttributes::default())
            .unwrap();
        let (groups, _) = node
            .get_or_create_data_partitions("root.gone", &[(1, 0)])
            .unwrap();
        assert!(groups[0].0 >= next_region_id, "{point:?}");
        // And a further restart replays to the same state.
        let version = node.version();
        drop(node);
        let node = open(dir.path());
        assert_eq!(node.version(), version);
        assert!(node.state().procedures().is_empty());
    }
}

/// A node status change is one command: leadership leaves a stopped DataNode in the same
/// command, so no replayed prefix of the log has a group led by a node known to be down.
#[test]
fn node_status_and_leader_failover_are_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    node.register_config_node(config_node(1)).unwrap();
    let settings = DatabaseAttributes {
        data_replication_factor: Some(2),
        ..DatabaseAttributes::default()
    };
    let nodes: Vec<NodeId> = (1..=2)
        .map(|host| node.register_data_node(data_node(host, 1)).unwrap())
        .collect();
    node.create_database("root.sg", &settings).unwrap();
    let (groups, _) = node
        .get_or_create_data_partitions("root.sg", &[(1, 0)])
        .unwrap();
    let leader = node.state().region_groups()[&groups[0]].leader;
    let version = node.version();
    node.set_node_status(leader, NodeStatus::Unknown).unwrap();
    assert_eq!(node.version(), version + 1);
    let new_leader = node.state().region_groups()[&groups[0]].leader;
    assert_ne!(new_leader, leader);
    assert!(nodes.contains(&new_leader));
}

/// With `data_replication_ack = in_sync`: a leader change bumps the epoch, a node that
/// stops running leaves the in-sync sets it follows in, a new leader comes only from the
/// set, and a late in-sync request is refused without changing anything.
#[test]
fn in_sync_sets_follow_failures_and_refuse_late_requests() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ClusterSettings {
        data_replication_ack: ReplicationAck::InSync,
        ..ClusterSettings::default()
    };
    let mut node = ConfigNode::open(dir.path(), settings).unwrap();
    node.set_clock(fixed_clock);
    let nodes: Vec<NodeId> = (1..=3)
        .map(|host| node.register_data_node(data_node(host, 1)).unwrap())
        .collect();
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(3),
        data_region_group_num: Some(1),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.sg", &attributes).unwrap();
    let (groups, _) = node
        .get_or_create_data_partitions("root.sg", &[(1, 0)])
        .unwrap();
    let id = groups[0];
    let group = node.state().region_groups()[&id].clone();
    assert_eq!((group.epoch, group.in_sync_version), (1, 0));
    assert!(group.out_of_sync.is_empty());
    let leader = group.leader;
    let followers: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != leader).collect();

    // The leader drops a follower; a request made at the old version is then late.
    node.change_in_sync(id, 1, 0, &[leader, followers[0]])
        .unwrap();
    let group = node.state().region_groups()[&id].clone();
    assert_eq!(group.out_of_sync, vec![followers[1]]);
    assert_eq!(group.in_sync_version, 1);
    let version = node.version();
    let late = node.change_in_sync(id, 1, 0, &nodes).unwrap_err();
    assert!(matches!(late, ConfigNodeError::StaleRequest(_)), "{late}");
    let wrong_epoch = node.change_in_sync(id, 2, 1, &nodes).unwrap_err();
    assert!(matches!(wrong_epoch, ConfigNodeError::StaleRequest(_)));
    // Leadership never moves to a replica out of the set (it may lack acknowledged writes).
    let mut state = node.state().clone();
    let moved = state
        .apply(&ConfigCommand::ChangeLeaders {
            changes: vec![(id, followers[1])],
        })
        .unwrap_err();
    assert!(
        matches!(moved, ConfigNodeError::InvalidCommand(_)),
        "{moved}"
    );
    let without_leader = node.change_in_sync(id, 1, 1, &followers).unwrap_err();
    assert!(matches!(without_leader, ConfigNodeError::InvalidCommand(_)));
    assert_eq!(node.version(), version, "refused requests change nothing");

    // The leader dies: only the in-sync follower may lead, in a new epoch, and the dead
    // leader leaves the set.
    node.set_node_status(leader, NodeStatus::Unknown).unwrap();
    let group = node.state().region_groups()[&id].clone();
    assert_eq!(group.leader, followers[0]);
    assert_eq!(group.epoch, 2);
    assert_eq!(group.out_of_sync, {
        let mut out = vec![leader, followers[1]];
        out.sort_unstable();
        out
    });
    // A dead replica cannot be asked back in.
    let refused = node
        .change_in_sync(id, 2, group.in_sync_version, &nodes)
        .unwrap_err();
    assert!(
        matches!(refused, ConfigNodeError::StaleRequest(_)),
        "{refused}"
    );
    // The only in-sync replica dies too: no out-of-sync replica may take over.
    node.set_node_status(followers[0], NodeStatus::Unknown)
        .unwrap();
    let group = node.state().region_groups()[&id].clone();
    assert_eq!((group.leader, group.epoch), (followers[0], 2));
    // The nodes come back, and the leader asks the caught-up replicas back in.
    for node_id in &nodes {
        node.set_node_status(*node_id, NodeStatus::Running).unwrap();
    }
    let group = node.state().region_groups()[&id].clone();
    node.change_in_sync(id, 2, group.in_sync_version, &nodes)
        .unwrap();
    assert!(node.state().region_groups()[&id].out_of_sync.is_empty());
}

/// After a failover and the node's return, leadership is evened out again: only to
/// Running replicas, never undone by the next plan.
#[test]
fn leaders_even_out_when_a_node_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    let nodes: Vec<NodeId> = (1..=3)
        .map(|host| node.register_data_node(data_node(host, 1)).unwrap())
        .collect();
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(2),
        data_region_group_num: Some(6),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.b", &attributes).unwrap();
    node.get_or_create_data_partition("root.b", 0, 0).unwrap();
    let leaders = |node: &ConfigNode| {
        let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        for group in node.state().region_groups().values() {
            if group.kind == RegionGroupKind::Data {
                *counts.get_mut(&group.leader).unwrap() += 1;
            }
        }
        counts.into_values().collect::<Vec<_>>()
    };
    assert_eq!(leaders(&node), vec![2, 2, 2]);
    assert_eq!(
        node.balance_leaders(&healthy_reports(&node)).unwrap(),
        0,
        "even already"
    );
    node.set_node_status(nodes[0], NodeStatus::Unknown).unwrap();
    assert_eq!(leaders(&node)[0], 0);
    node.balance_leaders(&healthy_reports(&node)).unwrap();
    let down = leaders(&node);
    assert_eq!(down[0], 0, "nothing moves to a node that is down: {down:?}");
    assert!(down[1].abs_diff(down[2]) <= 1, "{down:?}");
    node.set_node_status(nodes[0], NodeStatus::Running).unwrap();
    // Back, but behind its leaders' WAL (they report it waiting for snapshots), or not
    // reported yet: nothing moves to it.
    let mut behind = healthy_reports(&node);
    for peer in behind
        .values_mut()
        .flat_map(|report| report.peers.iter_mut())
    {
        if peer.node == nodes[0].0 {
            peer.shipping = false;
        }
    }
    assert_eq!(node.balance_leaders(&behind).unwrap(), 0);
    assert_eq!(node.balance_leaders(&HashMap::new()).unwrap(), 0);
    let version = node.version();
    assert!(node.balance_leaders(&healthy_reports(&node)).unwrap() > 0);
    assert_eq!(node.version(), version + 1, "one command");
    let after = leaders(&node);
    assert!(
        after.iter().max().unwrap() - after.iter().min().unwrap() <= 1,
        "{after:?}"
    );
    assert_eq!(
        node.balance_leaders(&healthy_reports(&node)).unwrap(),
        0,
        "a balanced plan stays"
    );
}

/// A leader wiped for a snapshot asks to step down: another Running replica leads a new
/// epoch; with none Running nothing changes (it asks again later); a request for an old
/// epoch changes nothing.
#[test]
fn a_wiped_leader_steps_down_to_a_running_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    let nodes: Vec<NodeId> = (1..=2)
        .map(|host| node.register_data_node(data_node(host, 1)).unwrap())
        .collect();
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(2),
        data_region_group_num: Some(1),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.w", &attributes).unwrap();
    node.get_or_create_data_partition("root.w", 0, 0).unwrap();
    let group = |node: &ConfigNode| {
        node.state()
            .region_groups()
            .values()
            .find(|g| g.kind == RegionGroupKind::Data)
            .unwrap()
            .clone()
    };
    let before = group(&node);
    let other = *nodes.iter().find(|n| **n != before.leader).unwrap();
    node.set_node_status(other, NodeStatus::Unknown).unwrap();
    let version = node.version();
    node.new_leader_epoch(before.id, before.epoch, true)
        .unwrap();
    assert_eq!(node.version(), version, "no other replica runs: no change");
    node.set_node_status(other, NodeStatus::Running).unwrap();
    node.new_leader_epoch(before.id, before.epoch, true)
        .unwrap();
    let after = group(&node);
    assert_eq!(after.leader, other);
    assert_eq!(after.epoch, before.epoch + 1);
    let version = node.version();
    node.new_leader_epoch(before.id, before.epoch, true)
        .unwrap();
    assert_eq!(
        node.version(),
        version,
        "an old epoch's request changes nothing"
    );
    // Without step_down the same leader gets a new epoch (a restarted leader).
    node.new_leader_epoch(after.id, after.epoch, false).unwrap();
    assert_eq!(group(&node).leader, other);
    assert_eq!(group(&node).epoch, after.epoch + 1);
}

/// Journals written while node ids and shards were bare integers still read: the typed ids
/// are `#[serde(transparent)]`, so the JSON is unchanged.
#[test]
fn typed_ids_keep_the_journal_json() {
    let text = r#"{"data_node_id":3,"shard":2}"#;
    let replica: RegionReplica = serde_json::from_str(text).unwrap();
    assert_eq!(
        replica,
        RegionReplica {
            data_node_id: NodeId(3),
            shard: ShardId(2),
        }
    );
    assert_eq!(serde_json::to_string(&replica).unwrap(), text);
    let leaders: BTreeMap<RegionGroupId, NodeId> = serde_json::from_str(r#"{"7":3}"#).unwrap();
    assert_eq!(leaders, BTreeMap::from([(RegionGroupId(7), NodeId(3))]));
}

/// A node's reported status (ReadOnly after its disk filled) shows in the views but is
/// never written: it needs no disk, and a restart starts from what the node reports again.
#[test]
fn reported_status_shows_but_is_not_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    node.register_config_node(config_node(1)).unwrap();
    let data_node_id = node.register_data_node(data_node(1, 2)).unwrap();
    let version = node.version();
    node.report_status(data_node_id, NodeStatus::ReadOnly)
        .unwrap();
    assert_eq!(node.version(), version, "nothing journaled");
    assert_eq!(
        column(&node.show_data_nodes(), "Status"),
        vec![Some("ReadOnly".into())]
    );
    assert!(
        node.report_status(NodeId(42), NodeStatus::ReadOnly)
            .is_err()
    );
    drop(node);
    let mut node = open(dir.path());
    assert_eq!(
        column(&node.show_data_nodes(), "Status"),
        vec![Some("Running".into())]
    );
    node.report_status(data_node_id, NodeStatus::ReadOnly)
        .unwrap();
    node.report_status(data_node_id, NodeStatus::Running)
        .unwrap();
    assert_eq!(
        column(&node.show_data_nodes(), "Status"),
        vec![Some("Running".into())]
    );
}

/// A replicated schema region group elects its leader (Raft): the ConfigNode records the
/// replica that reports itself leader, never moves that leadership on failover, keeps
/// such groups out of in-sync sets, and refuses reports it cannot take.
#[test]
fn schema_groups_record_their_elected_leader_and_keep_it_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ClusterSettings {
        data_replication_ack: ReplicationAck::InSync,
        ..ClusterSettings::default()
    };
    let mut node = ConfigNode::open(dir.path(), settings).unwrap();
    node.set_clock(fixed_clock);
    let nodes: Vec<NodeId> = (1..=4)
        .map(|host| node.register_data_node(data_node(host, 1)).unwrap())
        .collect();
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(3),
        schema_replication_factor: Some(3),
        data_region_group_num: Some(1),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.sg", &attributes).unwrap();
    let (schema, _) = node.get_or_create_schema_partition("root.sg", 0).unwrap();
    let (data, _) = node
        .get_or_create_data_partitions("root.sg", &[(0, 0)])
        .unwrap();
    let data = data[0];
    let group = node.state().region_groups()[&schema].clone();
    assert!(group.elects_leader());
    assert!(!node.state().region_groups()[&data].elects_leader());
    let members: Vec<NodeId> = group.replicas.iter().map(|r| r.data_node_id).collect();
    let elected = *members.iter().find(|n| **n != group.leader).unwrap();
    let outsider = *nodes.iter().find(|n| !members.contains(n)).unwrap();

    // The elected replica's report is recorded; repeating it changes nothing.
    node.report_schema_leader(schema, elected).unwrap();
    assert_eq!(node.state().region_groups()[&schema].leader, elected);
    let version = node.version();
    node.report_schema_leader(schema, elected).unwrap();
    assert_eq!(node.version(), version);
    // Refused: a node without a replica; a data group (the ConfigNode chooses those).
    let error = node.report_schema_leader(schema, outsider).unwrap_err();
    assert!(
        matches!(error, ConfigNodeError::InvalidCommand(_)),
        "{error}"
    );
    let error = node.report_schema_leader(data, elected).unwrap_err();
    assert!(
        matches!(error, ConfigNodeError::NodeRefused { .. }),
        "{error}"
    );

    // The elected leader's DataNode stops: the data groups fail over, the schema group
    // waits for its replicas' election, and stays out of in-sync bookkeeping.
    let other = *members.iter().find(|n| **n != elected).unwrap();
    node.set_node_status(elected, NodeStatus::Unknown).unwrap();
    node.set_node_status(other, NodeStatus::Unknown).unwrap();
    let group = &node.state().region_groups()[&schema];
    assert_eq!(group.leader, elected);
    assert!(group.out_of_sync.is_empty(), "{group:?}");
    let survivor = *members
        .iter()
        .find(|n| **n != elected && **n != other)
        .unwrap();
    node.set_node_status(other, NodeStatus::Running).unwrap();
    node.report_schema_leader(schema, survivor).unwrap();
    assert_eq!(node.state().region_groups()[&schema].leader, survivor);
    assert_ne!(node.state().region_groups()[&data].leader, elected);
}

/// Leaders that fail over (and are balanced back) spread over the cores of the nodes
/// that take them, not only over the nodes: each core serves the writes of the groups it
/// leads.
#[test]
fn failover_spreads_leaders_over_cores() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    let nodes: Vec<NodeId> = (1..=3)
        .map(|host| node.register_data_node(data_node(host, 2)).unwrap())
        .collect();
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(3),
        data_region_group_num: Some(12),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.r", &attributes).unwrap();
    node.get_or_create_data_partition("root.r", 0, 0).unwrap();
    let per_core = |node: &ConfigNode| {
        let mut counts: BTreeMap<(NodeId, ShardId), usize> = BTreeMap::new();
        for group in node.state().region_groups().values() {
            let leader = group
                .replicas
                .iter()
                .find(|r| r.data_node_id == group.leader)
                .unwrap();
            *counts
                .entry((leader.data_node_id, leader.shard))
                .or_default() += 1;
        }
        counts
    };
    assert!(
        per_core(&node).values().all(|count| *count == 2),
        "{:?}",
        per_core(&node)
    );
    node.set_node_status(nodes[0], NodeStatus::Unknown).unwrap();
    let after = per_core(&node);
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.values().all(|count| *count == 3), "{after:?}");
    // Back: balancing returns leaders to it, still even over cores.
    node.set_node_status(nodes[0], NodeStatus::Running).unwrap();
    node.balance_leaders(&healthy_reports(&node)).unwrap();
    let balanced = per_core(&node);
    assert_eq!(balanced.len(), 6, "{balanced:?}");
    assert!(balanced.values().all(|count| *count == 2), "{balanced:?}");
}

/// The leader report a healthy group would send: every follower shipping, caught up.
fn healthy_reports(node: &ConfigNode) -> HashMap<u32, procedure::LeaderReport> {
    node.state()
        .region_groups()
        .values()
        .filter(|g| g.kind == RegionGroupKind::Data && g.replicas.len() > 1)
        .map(|g| {
            let report = procedure::LeaderReport {
                group: g.id.0,
                epoch: g.epoch,
                leader: g.leader.0,
                last_index: 100,
                peers: g
                    .replicas
                    .iter()
                    .filter(|r| r.data_node_id != g.leader)
                    .map(|r| procedure::PeerReport {
                        node: r.data_node_id.0,
                        shipping: true,
                        lag_entries: 0,
                        durable_index: 100,
                    })
                    .collect(),
            };
            (g.id.0, report)
        })
        .collect()
}

/// Advances procedures (with healthy reports each round) until none runs, at most `rounds`.
fn run_procedures(node: &mut ConfigNode, rounds: usize) {
    for _ in 0..rounds {
        if node.state().procedures().is_empty() {
            return;
        }
        let reports = healthy_reports(node);
        node.advance_procedures(&reports).unwrap();
    }
    assert!(
        node.state().procedures().is_empty(),
        "still running: {:?}",
        node.state().procedures()
    );
}

/// A cluster of four single-core DataNodes and one database of factor 2 (the schema
/// region on one node, data groups on pairs).
fn migration_cluster(dir: &Path) -> ConfigNode {
    let mut node = open(dir);
    node.register_config_node(config_node(1)).unwrap();
    node.set_leader(Some(NodeId(0)));
    for host in 1..=4 {
        node.register_data_node(data_node(host, 1)).unwrap();
    }
    let attributes = DatabaseAttributes {
        data_replication_factor: Some(2),
        data_region_group_num: Some(4),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.m", &attributes).unwrap();
    node.get_or_create_data_partitions("root.m", &[(1, 0), (2, 0), (3, 0), (4, 0)])
        .unwrap();
    node
}

/// The first data region group of `node` and a DataNode that holds no replica of it.
fn data_group_and_outsider(node: &ConfigNode) -> (RegionGroup, NodeId) {
    let group = node
        .state()
        .region_groups()
        .values()
        .find(|g| g.kind == RegionGroupKind::Data)
        .unwrap()
        .clone();
    let outsider = node
        .state()
        .data_nodes()
        .keys()
        .copied()
        .find(|n| group.replicas.iter().all(|r| r.data_node_id != *n))
        .unwrap();
    (group, outsider)
}

/// `MIGRATE REGION` of a group's leader crashed at each of its kill points resumes after
/// a restart and ends as an uninterrupted one: the new replica holds the group and leads
/// it, the old one is gone, nothing else moved; and refusals record nothing.
#[test]
fn migrate_region_survives_a_crash_at_every_kill_point() {
    for point in [
        None,
        Some(KillPoint::MigrateStarted),
        Some(KillPoint::MigratePeerAdded),
        Some(KillPoint::MigrateCaughtUp),
        Some(KillPoint::MigrateLeaderMoved),
        Some(KillPoint::MigratePeerRemoved),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = migration_cluster(dir.path());
        let (group, to) = data_group_and_outsider(&node);
        let from = group.leader;
        let stay = group
            .replicas
            .iter()
            .map(|r| r.data_node_id)
            .find(|n| *n != from)
            .unwrap();
        let untouched: Vec<RegionGroup> = node
            .state()
            .region_groups()
            .values()
            .filter(|g| g.id != group.id)
            .cloned()
            .collect();

        // Refusals: the destination holds it already, an unknown node, a source that holds
        // no replica.
        let version = node.version();
        let refused = node.migrate_region(group.id, from, stay).unwrap_err();
        assert!(refused.to_string().contains("already holds"), "{refused}");
        assert!(matches!(
            node.migrate_region(group.id, from, NodeId(99)),
            Err(ConfigNodeError::NodeNotFound(_))
        ));
        assert!(node.migrate_region(group.id, to, stay).is_err());
        assert_eq!(node.version(), version, "refusals record nothing");

        if let Some(point) = point {
            node.set_kill_mode(KillMode::Fail(point));
        }
        let started = node.migrate_region(group.id, from, to);
        let mut crashed = started.is_err();
        if !crashed {
            // A step waiting for a report is not a crash; keep going until the point.
            for _ in 0..10 {
                let reports = healthy_reports(&node);
                match node.advance_procedures(&reports) {
                    Ok(_) => {}
                    Err(ConfigNodeError::Killed(name)) => {
                        assert_eq!(Some(name), point.map(KillPoint::name));
                        crashed = true;
                        break;
                    }
                    Err(other) => panic!("{point:?}: {other}"),
                }
                if node.state().procedures().is_empty() {
                    break;
                }
            }
        }
        assert_eq!(crashed, point.is_some(), "{point:?}");
        drop(node);

        let mut node = open(dir.path());
        node.set_leader(Some(NodeId(0)));
        run_procedures(&mut node, 10);
        let moved = node.state().region_group(group.id).unwrap();
        let holders: std::collections::BTreeSet<NodeId> =
            moved.replicas.iter().map(|r| r.data_node_id).collect();
        assert_eq!(holders, [stay, to].into_iter().collect(), "{point:?}");
        assert_eq!(moved.leader, to, "{point:?}: the new replica leads");
        assert!(
            moved.in_sync(to) && moved.in_sync(stay),
            "{point:?}: {moved:?}"
        );
        for before in &untouched {
            assert_eq!(
                node.state().region_group(before.id).unwrap().replicas,
                before.replicas,
                "{point:?}"
            );
        }
    }
}

/// A migration whose new replica never catches up is rolled back after the timeout: the
/// group is as it was, and `SHOW REGIONS` shows `Adding` while it waits.
#[test]
fn a_migration_that_never_catches_up_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = migration_cluster(dir.path());
    let (group, to) = data_group_and_outsider(&node);
    node.migrate_region(group.id, group.leader, to).unwrap();
    let none = HashMap::new();
    node.advance_procedures(&none).unwrap();
    node.advance_procedures(&none).unwrap();
    let regions = node.show_regions(
        &RegionFilter {
            kind: RegionKind::Data,
            databases: &[],
            node_ids: &[to.0],
        },
        &|_, _| None,
    );
    let status: Vec<Option<String>> = column(&regions, "RegionId")
        .into_iter()
        .zip(column(&regions, "Status"))
        .filter(|(id, _)| id.as_deref() == Some(group.id.0.to_string().as_str()))
        .map(|(_, status)| status)
        .collect();
    assert_eq!(status, vec![Some("Adding".to_string())]);
    fn much_later() -> i64 {
        fixed_clock() + procedure::MIGRATION_STEP_TIMEOUT_MS + 1
    }
    node.set_clock(much_later);
    node.advance_procedures(&none).unwrap();
    assert!(node.state().procedures().is_empty());
    assert_eq!(
        node.state().region_group(group.id).unwrap().replicas,
        group.replicas
    );
}

/// A SchemaRegion group of factor 2 (a Raft group) of a new database in
/// `migration_cluster`: its id, the group as created, and a DataNode holding none of it.
fn raft_schema_group(node: &mut ConfigNode) -> (RegionGroupId, RegionGroup, NodeId) {
    let attributes = DatabaseAttributes {
        schema_replication_factor: Some(2),
        ..DatabaseAttributes::default()
    };
    node.create_database("root.raft", &attributes).unwrap();
    let group = node
        .get_or_create_schema_partitions("root.raft", &[1])
        .unwrap()
        .0[0];
    let current = node.state().region_group(group).unwrap().clone();
    assert!(current.elects_leader());
    let outsider = *node
        .state()
        .data_nodes()
        .keys()
        .find(|n| current.replicas.iter().all(|r| r.data_node_id != **n))
        .unwrap();
    (group, current, outsider)
}

/// A Raft SchemaRegion migration whose new replica never catches up is rolled back after
/// the timeout, and ends only once the group's leader reports the new replica no longer a
/// voter: until then no migration may add it again.
#[test]
fn a_raft_schema_region_migration_rolled_back_waits_for_the_voter_to_leave() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = migration_cluster(dir.path());
    let (group, before, to) = raft_schema_group(&mut node);
    let id = node.migrate_region(group, before.leader, to).unwrap();
    let none = HashMap::new();
    node.advance_procedures(&none).unwrap();
    node.advance_procedures(&none).unwrap();
    fn much_later() -> i64 {
        fixed_clock() + procedure::MIGRATION_STEP_TIMEOUT_MS + 1
    }
    node.set_clock(much_later);
    node.advance_procedures(&none).unwrap();
    node.advance_procedures(&none).unwrap();
    assert_eq!(
        node.state().region_group(group).unwrap().replicas,
        before.replicas
    );
    assert_eq!(
        node.state().migration_of(group).map(|m| m.3),
        Some(MigrateStep::Cancel)
    );
    let refused = node.migrate_region(group, before.leader, to);
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        node.schema_replica_removed(id, group, before.leader)
            .is_err()
    );
    node.schema_replica_removed(id, group, to).unwrap();
    assert!(node.state().procedures().is_empty());
}

/// The single-replica SchemaRegion group of `migration_cluster`'s database (created now),
/// its holder and a DataNode holding nothing of it.
fn schema_group(node: &mut ConfigNode) -> (RegionGroupId, NodeId, NodeId) {
    let group = node
        .get_or_create_schema_partitions("root.m", &[7])
        .unwrap()
        .0[0];
    let holder = node.state().region_group(group).unwrap().replicas[0].data_node_id;
    let other = *node
        .state()
        .data_nodes()
        .keys()
        .find(|n| **n != holder)
        .unwrap();
    (group, holder, other)
}

/// Advances procedures until migration `id` copies the SchemaRegion (at most 10 rounds).
fn until_copying(node: &mut ConfigNode, id: ProcedureId) -> Result<()> {
    for _ in 0..10 {
        if matches!(
            node.state().procedures().get(&id),
            Some(Procedure::MigrateRegion {
                step: MigrateStep::CopySchema,
                ..
            })
        ) {
            return Ok(());
        }
        let reports = healthy_reports(node);
        node.advance_procedures(&reports)?;
    }
    panic!(
        "migration {id} never copies: {:?}",
        node.state().procedures()
    );
}

/// `MIGRATE REGION` of a single-replica SchemaRegion crashed at each of its kill points
/// resumes and ends as an uninterrupted one: the group names the new DataNode alone, which
/// leads it. Reports that do not match the running copy are refused without a change,
/// and one repeated after the move is answered.
#[test]
fn a_single_replica_schema_region_moves_whole_surviving_a_crash_at_every_kill_point() {
    for point in [
        None,
        Some(KillPoint::MigrateStarted),
        Some(KillPoint::MigratePeerAdded),
        Some(KillPoint::MigrateSchemaMoved),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = migration_cluster(dir.path());
        let (group, from, to) = schema_group(&mut node);
        if let Some(point) = point {
            node.set_kill_mode(KillMode::Fail(point));
        }
        let mut crashed = match node.migrate_region(group, from, to) {
            Ok(id) => match until_copying(&mut node, id) {
                Ok(()) => false,
                Err(ConfigNodeError::Killed(_)) => true,
                Err(other) => panic!("{point:?}: {other}"),
            },
            Err(ConfigNodeError::Killed(_)) => true,
            Err(other) => panic!("{point:?}: {other}"),
        };
        if crashed {
            drop(node);
            node = open(dir.path());
            node.set_leader(Some(NodeId(0)));
            crashed = false;
        }
        let id = node.state().migration_of(group).expect("recorded").0;
        until_copying(&mut node, id).unwrap();
        // While it copies: the old replica is Removing and still the only one.
        let regions = node.show_regions(
            &RegionFilter {
                kind: RegionKind::Schema,
                databases: &[],
                node_ids: &[],
            },
            &|_, _| None,
        );
        assert_eq!(
            column(&regions, "Status"),
            vec![Some("Removing".to_string())]
        );
        assert_eq!(column(&regions, "DataNodeId"), vec![Some(from.to_string())]);
        let version = node.version();
        for (wrong_id, wrong_from, wrong_to) in [(id + 1, from, to), (id, to, from)] {
            let refused = node
                .schema_region_copied(wrong_id, group, wrong_from, wrong_to)
                .unwrap_err();
            assert!(
                refused.to_string().contains("is copying it now"),
                "{refused}"
            );
        }
        assert_eq!(node.version(), version, "refusals record nothing");

        match node.schema_region_copied(id, group, from, to) {
            Ok(()) => {}
            Err(ConfigNodeError::Killed(name)) => {
                assert_eq!(Some(name), point.map(KillPoint::name));
                crashed = true;
            }
            Err(other) => panic!("{point:?}: {other}"),
        }
        assert_eq!(crashed, point == Some(KillPoint::MigrateSchemaMoved));
        drop(node);
        let mut node = open(dir.path());
        node.set_leader(Some(NodeId(0)));
        run_procedures(&mut node, 10);
        let moved = node.state().region_group(group).unwrap();
        assert_eq!(moved.replicas.len(), 1, "{point:?}");
        assert_eq!(moved.replicas[0].data_node_id, to, "{point:?}");
        assert_eq!(moved.leader, to, "{point:?}");
        // The source's report, repeated after the move (its answer was lost): answered.
        node.schema_region_copied(id, group, from, to).unwrap();
    }
}

/// A SchemaRegion copy that never arrives is dropped after `SCHEMA_COPY_TIMEOUT_MS`: the
/// group is as it was.
#[test]
fn a_schema_region_copy_that_never_arrives_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = migration_cluster(dir.path());
    let (group, from, to) = schema_group(&mut node);
    let before = node.state().region_group(group).unwrap().clone();
    let id = node.migrate_region(group, from, to).unwrap();
    until_copying(&mut node, id).unwrap();
    fn later() -> i64 {
        fixed_clock() + procedure::SCHEMA_COPY_TIMEOUT_MS + 1
    }
    node.set_clock(later);
    node.advance_procedures(&HashMap::new()).unwrap();
    assert!(node.state().procedures().is_empty());
    assert_eq!(node.state().region_group(group).unwrap(), &before);
    let refused = node.schema_region_copied(id, group, from, to).unwrap_err();
    assert!(
        refused.to_string().contains("is copying it now"),
        "{refused}"
    );
}

/// `MIGRATE REGION` of the leader replica of a Raft-replicated SchemaRegion, crashed at
/// each kill point of its way: the new replica is added, waits for its Raft leader's
/// `SchemaReplicaCaughtUp`, the old replica stays until the group reports the new one
/// leading, and then leaves; the migration ends once the Raft leader reports the old
/// replica no longer a voter (`SchemaReplicaRemoved`); the resumed migration ends as an
/// uninterrupted one.
#[test]
fn a_raft_schema_region_migration_survives_a_crash_at_every_kill_point() {
    for point in [
        None,
        Some(KillPoint::MigrateStarted),
        Some(KillPoint::MigratePeerAdded),
        Some(KillPoint::MigrateCaughtUp),
        Some(KillPoint::MigratePeerRemoved),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = migration_cluster(dir.path());
        let (group, current, to) = raft_schema_group(&mut node);
        let from = current.leader;
        let stay = current
            .replicas
            .iter()
            .map(|r| r.data_node_id)
            .find(|n| *n != from)
            .unwrap();
        if let Some(point) = point {
            node.set_kill_mode(KillMode::Fail(point));
        }
        // Each call either moves on or crashes at the armed point; a crash reopens.
        let mut crashed = false;
        let mut step = |node: &mut ConfigNode, call: &dyn Fn(&mut ConfigNode) -> Result<()>| {
            match call(node) {
                Ok(()) => {}
                Err(ConfigNodeError::Killed(name)) => {
                    assert_eq!(Some(name), point.map(KillPoint::name));
                    crashed = true;
                    *node = open(dir.path());
                    node.set_leader(Some(NodeId(0)));
                }
                Err(other) => panic!("{point:?}: {other}"),
            }
        };
        let advance = |node: &mut ConfigNode| -> Result<()> {
            node.advance_procedures(&HashMap::new()).map(|_| ())
        };
        step(&mut node, &|node| {
            node.migrate_region(group, from, to).map(|_| ())
        });
        step(&mut node, &advance);
        step(&mut node, &advance);
        let (id, _, _, at) = node.state().migration_of(group).expect("running");
        assert_eq!(
            at,
            MigrateStep::CatchUp,
            "{point:?}: waits for the Raft leader"
        );
        let added = node.state().region_group(group).unwrap();
        assert_eq!(added.replicas.len(), 3, "{point:?}");
        assert!(
            added.in_sync(to),
            "{point:?}: a Raft group keeps no in-sync set"
        );
        step(&mut node, &|node| {
            node.schema_replica_caught_up(id, group, to)
        });
        if node.state().migration_of(group).map(|m| m.3) == Some(MigrateStep::CatchUp) {
            // Crashed before the step was recorded: the Raft leader reports again.
            node.schema_replica_caught_up(id, group, to).unwrap();
        }
        step(&mut node, &advance);
        assert_eq!(
            node.state().migration_of(group).map(|m| m.3),
            Some(MigrateStep::TransferLeader),
            "{point:?}: the old replica leads until the group says otherwise"
        );
        node.report_schema_leader(group, to).unwrap();
        step(&mut node, &advance);
        step(&mut node, &advance);
        assert_eq!(crashed, point.is_some(), "{point:?}");
        for _ in 0..3 {
            advance(&mut node).unwrap();
        }
        // The old replica is out of the group's replicas, but the migration runs until
        // the Raft leader says it is no longer a voter (it may not join again before).
        assert_eq!(
            node.state().migration_of(group).map(|m| m.3),
            Some(MigrateStep::RemovePeer),
            "{point:?}"
        );
        let early = node.version();
        assert!(node.schema_replica_removed(id, group, to).is_err());
        assert_eq!(node.version(), early);
        node.schema_replica_removed(id, group, from).unwrap();
        assert!(node.state().migration_of(group).is_none(), "{point:?}");
        let moved = node.state().region_group(group).unwrap();
        let holders: std::collections::BTreeSet<NodeId> =
            moved.replicas.iter().map(|r| r.data_node_id).collect();
        assert_eq!(holders, [stay, to].into_iter().collect(), "{point:?}");
        assert_eq!(moved.leader, to, "{point:?}");
        // A late report of the finished migration is refused without a change.
        let version = node.version();
        assert!(node.schema_replica_caught_up(id, group, to).is_err());
        assert!(node.schema_replica_removed(id, group, from).is_err());
        assert_eq!(node.version(), version);
    }
}

/// `REMOVE DATANODE` of the holder of a single-replica SchemaRegion moves it (once its
/// copy is reported) and then forgets the node.
#[test]
fn remove_data_node_moves_its_single_replica_schema_region() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = migration_cluster(dir.path());
    let (group, holder, _) = schema_group(&mut node);
    let removal = node.remove_data_node(holder).unwrap();
    let mut copied = false;
    for _ in 0..40 {
        if !node.state().procedures().contains_key(&removal) {
            break;
        }
        if let Some((id, from, to, MigrateStep::CopySchema)) = node.state().migration_of(group) {
            assert_eq!(from, holder);
            node.schema_region_copied(id, group, from, to).unwrap();
            copied = true;
        }
        let reports = healthy_reports(&node);
        node.advance_procedures(&reports).unwrap();
    }
    assert!(copied);
    assert!(
        node.state().procedures().is_empty(),
        "{:?}",
        node.state().procedures()
    );
    assert!(!node.state().data_nodes().contains_key(&holder));
    let moved = node.state().region_group(group).unwrap();
    assert_ne!(moved.replicas[0].data_node_id, holder);
}

/// `REMOVE DATANODE` of a node whose co-holder of a group is Unknown is refused (the node
/// may hold the only good copy), and so is one while a group on the node is migrating;
/// neither records anything.
#[test]
fn remove_data_node_is_refused_while_a_co_holder_is_down_or_a_group_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = migration_cluster(dir.path());
    let (group, to) = data_group_and_outsider(&node);
    let victim = group.replicas[0].data_node_id;
    let co_holder = group.replicas[1].data_node_id;

    node.set_node_status(co_holder, NodeStatus::Unknown)
        .unwrap();
    let version = node.version();
    let refused = node.remove_data_node(victim).unwrap_err();
    assert!(
        matches!(refused, ConfigNodeError::NodeRefused { node_id, .. } if node_id == victim),
        "{refused}"
    );
    let message = refused.to_string();
    assert!(
        message.contains(&format!(
            "DataNode {co_holder}, which holds another replica"
        )) && message.contains("is not Running"),
        "{message}"
    );
    assert_eq!(node.version(), version, "a refusal records nothing");
    assert!(node.state().procedures().is_empty());

    node.set_node_status(co_holder, NodeStatus::Running)
        .unwrap();
    let migration = node.migrate_region(group.id, co_holder, to).unwrap();
    let version = node.version();
    let refused = node.remove_data_node(victim).unwrap_err();
    assert!(
        refused.to_string().contains(&format!(
            "region {} is being migrated (procedure {migration})",
            group.id
        )),
        "{refused}"
    );
    assert_eq!(node.version(), version, "a refusal records nothing");
    assert_eq!(node.state().procedures().len(), 1);
}

/// `REMOVE DATANODE` of a node that is not Running and holds the only replica of a group
/// is refused (only that node could send the copy, so the removal could never finish);
/// once the node runs again it is accepted.
#[test]
fn remove_data_node_that_is_down_with_a_single_replica_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = migration_cluster(dir.path());
    let (group, holder, _) = schema_group(&mut node);
    assert_eq!(node.state().region_group(group).unwrap().replicas.len(), 1);

    node.set_node_status(holder, NodeStatus::Unknown).unwrap();
    let version = node.version();
    let refused = node.remove_data_node(holder).unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains(&format!(
            "it is Unknown and holds the only replica of SchemaRegion {group}"
        )),
        "{message}"
    );
    assert_eq!(node.version(), version, "a refusal records nothing");
    assert!(node.state().procedures().is_empty());
    assert_eq!(
        node.state().data_nodes()[&holder].status,
        NodeStatus::Unknown,
        "the node is not turned Removing"
    );

    node.set_node_status(holder, NodeStatus::Running).unwrap();
    let removal = node.remove_data_node(holder).unwrap();
    assert!(node.state().procedures().contains_key(&removal));
}

/// `REMOVE DATANODE` crashed at each of its kill points resumes and ends with the node
/// forgotten and every group it held on other nodes with its full replica count; removals
/// below the replication factor or of an unknown node are refused without a change.
#[test]
fn remove_data_node_survives_a_crash_at_every_kill_point() {
    for point in [
        None,
        Some(KillPoint::RemoveDataNodeStarted),
        Some(KillPoint::RemoveDataNodeMigrationStarted),
        Some(KillPoint::MigratePeerAdded),
        // No `MigrateLeaderMoved`: a Removing node's leaderships moved when it turned
        // Removing (to replicas that hold everything), so no migration transfers one.
        Some(KillPoint::MigrateCaughtUp),
        Some(KillPoint::MigratePeerRemoved),
        Some(KillPoint::RemoveDataNodeForgotten),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = migration_cluster(dir.path());
        let schema_holders: Vec<NodeId> = node
            .state()
            .region_groups()
            .values()
            .filter(|g| g.kind == RegionGroupKind::Schema)
            .flat_map(|g| g.replicas.iter().map(|r| r.data_node_id))
            .collect();
        // Schema regions are created lazily; none yet, so every DataNode qualifies.
        let victim = node
            .state()
            .data_nodes()
            .keys()
            .copied()
            .find(|n| {
                !schema_holders.contains(n)
                    && node
                        .state()
                        .region_groups()
                        .values()
                        .any(|g| g.replicas.iter().any(|r| r.data_node_id == *n))
            })
            .unwrap();
        let version = node.version();
        assert!(matches!(
            node.remove_data_node(NodeId(99)),
            Err(ConfigNodeError::NodeNotFound(_))
        ));
        assert_eq!(node.version(), version);

        if let Some(point) = point {
            node.set_kill_mode(KillMode::Fail(point));
        }
        let mut crashed = node.remove_data_node(victim).is_err();
        for _ in 0..40 {
            if crashed || node.state().procedures().is_empty() {
                break;
            }
            let reports = healthy_reports(&node);
            match node.advance_procedures(&reports) {
                Ok(_) => {}
                Err(ConfigNodeError::Killed(_)) => crashed = true,
                Err(other) => panic!("{point:?}: {other}"),
            }
        }
        assert_eq!(crashed, point.is_some(), "{point:?}");
        drop(node);
        let mut node = open(dir.path());
        node.set_leader(Some(NodeId(0)));
        run_procedures(&mut node, 40);
        assert!(
            !node.state().data_nodes().contains_key(&victim),
            "{point:?}"
        );
        for group in node.state().region_groups().values() {
            if group.kind == RegionGroupKind::Data {
                assert_eq!(group.replicas.len(), 2, "{point:?}: {group:?}");
            }
            assert!(
                group.replicas.iter().all(|r| r.data_node_id != victim),
                "{point:?}: {group:?}"
            );
        }

        // Three DataNodes left, factor 2: one more may go, not two more.
        let left: Vec<NodeId> = node.state().data_nodes().keys().copied().collect();
        assert_eq!(left.len(), 3);
        node.remove_data_node(left[0]).unwrap();
        run_procedures(&mut node, 40);
        let version = node.version();
        let refused = node.remove_data_node(left[1]).unwrap_err();
        assert!(
            refused.to_string().contains("replication factor 2"),
            "{refused}"
        );
        assert_eq!(node.version(), version);
    }
}
