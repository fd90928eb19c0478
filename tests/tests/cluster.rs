//! A real cluster on one machine: a ConfigNode process and DataNode processes on their own
//! 127.0.0.x addresses, started in the seed's order (ConfigNode first, then DataNodes that
//! register through their seed). `SHOW CLUSTER` asked of any DataNode lists every node
//! with its id and status; ids survive restarts; a DataNode killed with SIGKILL turns
//! Unknown within three heartbeat intervals and Running again when it comes back (and
//! stays so); a DataNode started before its seed ConfigNode waits for it; a node
//! of another cluster, or with other cluster-wide settings, is refused at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use iotdb_net::{StatusCode, Value};
use iotdb_tests::cluster::{ClusterRow, TEST_HEARTBEAT_MS, text_rows};
use iotdb_tests::{TestCluster, TestServer};

const BINARY: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
/// How long a change that heartbeats carry may take to show on a loaded 2-core machine
/// running debug builds (the figures are printed; the bound only ends a hung test).
const PATIENCE: Duration = Duration::from_secs(20);

fn data_node_ids(rows: &[ClusterRow]) -> BTreeSet<u32> {
    rows.iter()
        .filter(|row| row.node_type == "DataNode")
        .map(|row| row.node_id)
        .collect()
}

fn config_node_ids(rows: &[ClusterRow]) -> BTreeSet<u32> {
    rows.iter()
        .filter(|row| row.node_type == "ConfigNode")
        .map(|row| row.node_id)
        .collect()
}

fn status_of(rows: &[ClusterRow], node_id: u32) -> Option<&str> {
    rows.iter()
        .find(|row| row.node_id == node_id)
        .map(|row| row.status.as_str())
}

/// Writes one point of `device` through DataNode `via` (any DataNode takes any write: one
/// that does not hold the device's region group forwards it to the one that does).
fn write_point(cluster: &TestCluster, via: usize, device: &str, time: i64, value: f64) {
    let statement = format!("INSERT INTO {device}(time, s1) VALUES ({time}, {value})");
    cluster
        .client(via)
        .unwrap()
        .execute_sql(&statement)
        .unwrap_or_else(|e| panic!("{device} through DataNode {via}: {e}"));
}

fn read_point(cluster: &TestCluster, index: usize, device: &str) -> Option<f64> {
    let result = cluster
        .client(index)
        .unwrap()
        .execute_sql(&format!("SELECT s1 FROM {device}"))
        .unwrap_or_else(|e| panic!("reading {device} on DataNode {index}: {e}"));
    assert!(result.rows.len() <= 1, "{device}: {result:?}");
    // Columns: Time, then the series.
    match result.rows.first()?.get(1)?.as_ref()? {
        // SQL infers an integer literal as DOUBLE, as IoTDB does.
        Value::Double(v) => Some(*v),
        other => panic!("{device} holds {other:?}"),
    }
}

/// 1C3D: every DataNode sees the same cluster; the schema of a device lives in one
/// SchemaRegion whichever DataNode wrote it; a restart of every node keeps ids and data.
#[test]
fn a_1c3d_cluster_forms_and_restarts_with_its_ids_and_data() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(BINARY, 3, 2).expect("start 1C3D");
    eprintln!("1C3D started in {:?}", started.elapsed());
    let rows = cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 4 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    assert_eq!(rows[0].node_type, "ConfigNode");
    assert_eq!(
        rows[0].node_id, 0,
        "the first ConfigNode founds the cluster as node 0"
    );
    assert_eq!(
        format!("{}:{}", rows[0].internal_address, rows[0].internal_port),
        cluster.seed
    );
    let ids = data_node_ids(&rows);
    assert_eq!(ids, BTreeSet::from([1, 2, 3]), "one id sequence: {rows:?}");
    for index in 1..3 {
        assert_eq!(
            cluster.show_cluster(index).unwrap(),
            rows,
            "any DataNode answers"
        );
    }

    cluster
        .client(1)
        .unwrap()
        .execute_sql("CREATE DATABASE root.sg")
        .unwrap();
    let devices: Vec<String> = (0..12).map(|d| format!("root.sg.d{d}")).collect();
    for (i, device) in devices.iter().enumerate() {
        write_point(&cluster, i % 3, device, 1, i as f64);
    }
    // Every device's schema exists once: a write through a DataNode that does not hold
    // the SchemaRegion asked the one that does (no local copies). Any DataNode lists and
    // counts every series and device, each once, from every SchemaRegion's holder.
    let expected: Vec<String> = {
        let mut paths: Vec<String> = devices.iter().map(|d| format!("{d}.s1")).collect();
        paths.sort();
        paths
    };
    let first_column = |index: usize, statement: &str| -> Vec<String> {
        let result = cluster
            .client(index)
            .unwrap()
            .execute_sql(statement)
            .unwrap_or_else(|e| panic!("{statement} on DataNode {index}: {e}"));
        result
            .rows
            .iter()
            .map(|row| match &row[0] {
                Some(Value::Text(text)) => String::from_utf8_lossy(text).into_owned(),
                other => panic!("{statement}: {other:?}"),
            })
            .collect()
    };
    let mut sorted_devices = devices.clone();
    sorted_devices.sort();
    for index in 0..3 {
        assert_eq!(first_column(index, "SHOW TIMESERIES root.sg.**"), expected);
        assert_eq!(
            first_column(index, "SHOW DEVICES root.sg.**"),
            sorted_devices
        );
        assert_eq!(first_column(index, "COUNT TIMESERIES root.sg.**"), ["12"]);
        assert_eq!(first_column(index, "COUNT DEVICES"), ["12"]);
        assert_eq!(first_column(index, "COUNT TIMESERIES root.sg.d1.**"), ["1"]);
    }
    // Every DataNode refuses a value of another type: the type came from the one
    // SchemaRegion, wherever it is.
    for index in 0..3 {
        let error = cluster
            .client(index)
            .unwrap()
            .execute_sql("INSERT INTO root.sg.d0(time, s1) VALUES (2, 'text')")
            .expect_err("s1 is DOUBLE");
        assert_ne!(
            error.status_code(),
            Some(StatusCode::ROUTE_TABLE_STALE),
            "{error}"
        );
    }

    // SHOW REGIONS on any DataNode gives every data region's size on disk: its own from
    // its shards, the others' from their heartbeats to the ConfigNode.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let result = cluster
            .client(0)
            .unwrap()
            .execute_sql("SHOW DATA REGIONS")
            .unwrap();
        let size = result
            .column_names
            .iter()
            .position(|c| c == "TsFileSize")
            .expect("TsFileSize");
        let slots = result
            .column_names
            .iter()
            .position(|c| c == "TimeSlotNum")
            .expect("TimeSlotNum");
        let missing: Vec<_> = result
            .rows
            .iter()
            .filter(|row| {
                !matches!(&row[slots], Some(Value::Text(t)) if t.as_ref() == b"0")
                    && row[size].is_none()
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "regions without a size: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Stop everything (DataNodes first, as the scripts do), start in the seed's order.
    for node in &mut cluster.data_nodes {
        node.stop().expect("stop a DataNode");
    }
    cluster.config_nodes[0].stop().expect("stop the ConfigNode");
    cluster.config_nodes[0]
        .restart()
        .expect("restart the ConfigNode");
    for node in &mut cluster.data_nodes {
        node.restart().expect("restart a DataNode");
    }
    let after = cluster
        .wait_for_cluster(
            2,
            PATIENCE,
            "every node Running after the restart",
            |rows| rows.len() == 4 && rows.iter().all(|row| row.status == "Running"),
        )
        .unwrap();
    assert_eq!(after, rows, "ids, addresses and ports survive restarts");
    for (i, device) in devices.iter().enumerate() {
        // Any DataNode reads it: the holder from its region, the others from the holder.
        for index in 0..3 {
            assert_eq!(
                read_point(&cluster, index, device),
                Some(i as f64),
                "{device} through DataNode {index}"
            );
        }
    }

    // Any DataNode deletes too: `DELETE FROM` of a device whose region group another
    // DataNode holds is carried out there.
    for (i, device) in devices.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        cluster
            .client((i + 1) % 3)
            .unwrap()
            .execute_sql(&format!("DELETE FROM {device}.s1"))
            .unwrap_or_else(|e| panic!("deleting {device} through DataNode {}: {e}", (i + 1) % 3));
    }
    cluster
        .client(2)
        .unwrap()
        .execute_sql("DELETE FROM root.sg.d1.s1, root.sg.d3.s1 WHERE time < 1")
        .expect("a deletion that matches no point");
    for (i, device) in devices.iter().enumerate() {
        let expected = (i % 2 == 1).then_some(i as f64);
        for index in 0..3 {
            assert_eq!(
                read_point(&cluster, index, device),
                expected,
                "{device} through DataNode {index} after the deletions"
            );
        }
    }
}

/// A DataNode killed with SIGKILL turns Unknown within three heartbeat intervals (plus
/// the scheduling slack of a loaded machine), and Running again once restarted, with
/// its id.
#[test]
fn a_killed_data_node_turns_unknown_and_comes_back() {
    let mut cluster = TestCluster::start(BINARY, 2, 1).expect("start 1C2D");
    let rows = cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 3 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    let victim_id = *data_node_ids(&rows).iter().last().unwrap();
    let killed = Instant::now();
    cluster.data_nodes[1].kill().expect("SIGKILL");
    cluster
        .wait_for_cluster(0, PATIENCE, "the killed DataNode Unknown", |rows| {
            status_of(rows, victim_id) == Some("Unknown")
        })
        .unwrap();
    let unknown_after = killed.elapsed();
    eprintln!("killed DataNode Unknown after {unknown_after:?} (heartbeat {TEST_HEARTBEAT_MS} ms)");
    assert!(
        unknown_after < Duration::from_millis(3 * TEST_HEARTBEAT_MS) + Duration::from_secs(2),
        "Unknown only after {unknown_after:?}"
    );
    let restarted = Instant::now();
    cluster.data_nodes[1].restart().expect("restart");
    let rows = cluster
        .wait_for_cluster(0, PATIENCE, "the restarted DataNode Running", |rows| {
            status_of(rows, victim_id) == Some("Running")
        })
        .unwrap();
    eprintln!("restarted DataNode Running after {:?}", restarted.elapsed());
    assert_eq!(data_node_ids(&rows).len(), 2, "no new id: {rows:?}");
    // It stays Running: the connection failures the ConfigNode remembers of its previous
    // process do not fail the first heartbeats after it registered again.
    for _ in 0..(5 * TEST_HEARTBEAT_MS / 100) {
        let rows = cluster.show_cluster(0).unwrap();
        assert_eq!(status_of(&rows, victim_id), Some("Running"), "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nodes that do not belong are refused with a clear error and a non-zero exit, never
/// joined as a second cluster: another cluster_name, other cluster-wide settings, an
/// internal address another DataNode already registered.
#[test]
fn nodes_that_do_not_belong_are_refused() {
    let mut cluster = TestCluster::start(BINARY, 1, 1).expect("start 1C1D");
    let refused = |options: iotdb_tests::ServerOptions, ip, expected: &[&str]| {
        let error = match TestServer::start_on(ip, options) {
            Ok(_) => panic!("a node that does not belong started"),
            Err(error) => format!("{error:#}"),
        };
        for text in expected {
            assert!(error.contains(text), "{text:?} missing from: {error}");
        }
    };
    let ip = iotdb_tests::server::next_loopback_host();
    let other_name = cluster
        .data_node_options(ip, 1)
        .unwrap()
        .set("cluster_name", "otherCluster");
    refused(other_name, ip, &["otherCluster", "testCluster"]);
    let other_slots = cluster
        .data_node_options(ip, 1)
        .unwrap()
        .set("series_slot_num", 999);
    refused(other_slots, ip, &["series_slot_num", "999"]);
    // A new DataNode (no identity of its own) on the internal address and port another
    // DataNode registered: refused, even while that DataNode is down.
    let first = cluster.show_cluster(0).unwrap()[1].clone();
    cluster.data_nodes[0].stop().expect("stop the DataNode");
    let taken_ip: std::net::Ipv4Addr = first.internal_address.parse().unwrap();
    let impostor = cluster
        .data_node_options(taken_ip, 1)
        .unwrap()
        .set("dn_internal_port", first.internal_port);
    refused(
        impostor,
        taken_ip,
        &["already registered", &first.node_id.to_string()],
    );
    cluster.data_nodes[0]
        .restart()
        .expect("the real one comes back");
    let rows = cluster.show_cluster(0).unwrap();
    assert_eq!(rows.len(), 2, "nobody joined: {rows:?}");
}

/// `SHOW REGIONS` as (RegionId, Type, DataNodeId, TimeSlotNum) rows.
fn regions(cluster: &TestCluster, index: usize) -> Vec<(u32, String, u32, u64)> {
    let result = cluster
        .client(index)
        .unwrap()
        .execute_sql("SHOW REGIONS")
        .unwrap();
    text_rows(&result)
        .iter()
        .map(|row| {
            (
                row["RegionId"].parse().unwrap(),
                row["Type"].clone(),
                row["DataNodeId"].parse().unwrap(),
                row["TimeSlotNum"].parse().unwrap(),
            )
        })
        .collect()
}

/// Seed 002, expansion without migration: a 1C2D cluster holds a week of data; a third
/// DataNode joins; the next week's partitions go partly to new region groups on it,
/// while the first week's stay where they are; every point reads back.
#[test]
fn a_new_data_node_takes_new_partitions_and_nothing_moves() {
    const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
    const DEVICES: usize = 16;
    let mut cluster = TestCluster::start(BINARY, 2, 1).expect("start 1C2D");
    cluster
        .client(0)
        .unwrap()
        .execute_sql("CREATE DATABASE root.farm")
        .unwrap();
    let devices: Vec<String> = (0..DEVICES).map(|d| format!("root.farm.d{d}")).collect();
    for (i, device) in devices.iter().enumerate() {
        write_point(&cluster, i % 2, device, 1, i as f64);
    }
    let before = regions(&cluster, 0);
    let new_id = {
        cluster.add_data_node(1).expect("a third DataNode joins");
        let rows = cluster
            .wait_for_cluster(2, PATIENCE, "the new DataNode Running", |rows| {
                rows.len() == 4 && rows.iter().all(|row| row.status == "Running")
            })
            .unwrap();
        *data_node_ids(&rows).iter().last().unwrap()
    };
    // Nothing moved: every region the first week created is where it was.
    let after_join = regions(&cluster, 2);
    assert_eq!(after_join, before, "joining moves no region");
    // The second week through the old DataNodes only: what lands on the new one was
    // forwarded there.
    for (i, device) in devices.iter().enumerate() {
        write_point(&cluster, i % 2, device, WEEK_MS + 1, (DEVICES + i) as f64);
    }
    let after = regions(&cluster, 1);
    let on_new: Vec<_> = after
        .iter()
        .filter(|(_, kind, node, _)| kind == "DataRegion" && *node == new_id)
        .collect();
    assert!(
        !on_new.is_empty() && on_new.iter().all(|(_, _, _, slots)| *slots > 0),
        "the second week lands partly on the new DataNode {new_id}: {after:?}"
    );
    for old in before.iter().filter(|(_, kind, _, _)| kind == "DataRegion") {
        let now = after
            .iter()
            .find(|r| r.0 == old.0)
            .expect("old region kept");
        assert_eq!(now.2, old.2, "region {} stays on its DataNode", old.0);
    }
    // Every point of both weeks reads back from any DataNode: a query reads the region
    // groups held elsewhere from their DataNodes.
    for index in 0..cluster.data_nodes.len() {
        let mut client = cluster.client(index).unwrap();
        for (i, device) in devices.iter().enumerate() {
            let result = client
                .execute_sql(&format!("SELECT s1 FROM {device}"))
                .unwrap_or_else(|e| panic!("{device} through DataNode {index}: {e}"));
            let values: Vec<_> = result.rows.iter().map(|row| row[1].clone()).collect();
            assert_eq!(
                values,
                [
                    Some(Value::Double(i as f64)),
                    Some(Value::Double((DEVICES + i) as f64))
                ],
                "{device} through DataNode {index}"
            );
        }
        let count = client
            .execute_sql("SELECT count(s1) FROM root.farm.**")
            .unwrap();
        let total: i64 = count.rows[0]
            .iter()
            .map(|v| match v {
                Some(Value::Int64(n)) => *n,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total, 2 * DEVICES as i64, "count through DataNode {index}");
    }
}

/// `SET TTL` and `DELETE DATABASE` through one DataNode reach every DataNode: they learn
/// them from the ConfigNode's heartbeat, apply the TTL and drop their replicas.
#[test]
fn ttl_and_deleted_databases_reach_every_data_node() {
    let cluster = TestCluster::start(BINARY, 2, 1).expect("start 1C2D");
    cluster
        .client(0)
        .unwrap()
        .execute_sql("CREATE DATABASE root.gone")
        .unwrap();
    let devices: Vec<String> = (0..8).map(|d| format!("root.gone.d{d}")).collect();
    for device in &devices {
        write_point(&cluster, 0, device, 1, 1.0);
    }
    let region_dirs = |index: usize| -> Vec<String> {
        let dir = cluster.data_nodes[index]
            .data_dir()
            .join("datanode")
            .join("data");
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !region_dirs(0).is_empty() && !region_dirs(1).is_empty(),
        "both DataNodes hold data (what DataNode 0 took for DataNode 1 was forwarded)"
    );
    // A TTL set through one DataNode reaches the regions of the other: points at time 1
    // are far older than an hour, so they stop being visible anywhere.
    assert!(devices.iter().all(|d| read_point(&cluster, 1, d).is_some()));
    cluster
        .client(0)
        .unwrap()
        .execute_sql("SET TTL TO root.gone 3600000")
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while devices.iter().any(|d| read_point(&cluster, 1, d).is_some()) {
        assert!(
            Instant::now() < deadline,
            "the TTL never reached DataNode 1's regions"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster
        .client(0)
        .unwrap()
        .execute_sql("DELETE DATABASE root.gone")
        .unwrap();
    assert!(
        region_dirs(0).is_empty(),
        "the asking DataNode dropped its own at once"
    );
    let deadline = Instant::now() + PATIENCE;
    while !region_dirs(1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the other DataNode still holds {:?}",
            region_dirs(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = cluster
        .client(1)
        .unwrap()
        .execute_sql("SELECT s1 FROM root.gone.d0")
        .map(|result| result.rows.len());
    assert!(
        matches!(error, Ok(0) | Err(_)),
        "nothing of root.gone remains: {error:?}"
    );
}

/// 3C3D (seed 000): three ConfigNodes replicate the cluster state through Raft. Killing
/// the leading ConfigNode: another takes over within a few election timeouts, no
/// committed change is lost, and DDL works again through the same DataNodes.
#[test]
fn a_3c3d_cluster_replaces_its_config_node_leader() {
    let started = Instant::now();
    let mut cluster = TestCluster::start_with(BINARY, 3, 3, 1).expect("start 3C3D");
    eprintln!("3C3D started in {:?}", started.elapsed());
    let rows = cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 6 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    assert_eq!(
        config_node_ids(&rows),
        BTreeSet::from([0, 1, 2]),
        "ConfigNodes first in the one sequence: {rows:?}"
    );
    assert_eq!(data_node_ids(&rows), BTreeSet::from([3, 4, 5]));
    let config_nodes = cluster.show_config_nodes(1).unwrap();
    let leaders: Vec<u32> = config_nodes
        .iter()
        .filter(|(_, _, role)| role == "Leader")
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(leaders.len(), 1, "one leader: {config_nodes:?}");
    let leader = leaders[0];
    cluster
        .client(0)
        .unwrap()
        .execute_sql("CREATE DATABASE root.before")
        .unwrap();

    let killed = Instant::now();
    cluster.config_nodes[leader as usize]
        .kill()
        .expect("SIGKILL the leader");
    let deadline = Instant::now() + PATIENCE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match cluster
            .client(1)
            .unwrap()
            .execute_sql("CREATE DATABASE root.after")
        {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no DDL {PATIENCE:?} after the kill: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    eprintln!(
        "CREATE DATABASE worked again {:?} after the leader was killed ({attempts} attempts)",
        killed.elapsed()
    );
    let config_nodes = cluster.show_config_nodes(2).unwrap();
    let new_leader = config_nodes
        .iter()
        .find(|(_, _, role)| role == "Leader")
        .map(|(id, _, _)| *id)
        .expect("a new leader");
    assert_ne!(new_leader, leader, "{config_nodes:?}");
    let databases = cluster
        .client(2)
        .unwrap()
        .execute_sql("SHOW DATABASES")
        .unwrap();
    let names: Vec<String> = databases
        .rows
        .iter()
        .map(|row| match &row[0] {
            Some(Value::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(names.contains(&"root.before".to_string()), "{names:?}");
    assert!(names.contains(&"root.after".to_string()), "{names:?}");
    cluster
        .wait_for_cluster(0, PATIENCE, "the killed ConfigNode Unknown", |rows| {
            status_of(rows, leader) == Some("Unknown")
        })
        .unwrap();
    // The old leader comes back as a follower and catches up.
    cluster.config_nodes[leader as usize]
        .restart()
        .expect("restart");
    cluster
        .wait_for_cluster(0, PATIENCE, "the old leader Running again", |rows| {
            status_of(rows, leader) == Some("Running")
        })
        .unwrap();
    cluster
        .client(0)
        .unwrap()
        .execute_sql("CREATE DATABASE root.later")
        .unwrap();
}

/// Joining survives a crash between its steps (the kill points of `cluster::KILL_POINTS`):
/// a DataNode that dies after the ConfigNode registered it, before it kept its id, gets
/// the same id when it starts again; a ConfigNode leader that dies after it registered a
/// joining ConfigNode, before adding it to the Raft group, lets the joiner in with the same
/// id once restarted.
#[test]
fn joining_survives_a_crash_at_each_kill_point() {
    let mut cluster = TestCluster::start(BINARY, 0, 1).expect("start 1C");

    // DataNode.Registered
    let kept = tempfile::tempdir().expect("a data directory that outlives the process");
    let ip = iotdb_tests::server::next_loopback_host();
    let options = cluster
        .data_node_options(ip, 1)
        .unwrap()
        .data_dir(kept.path())
        .env("IOTDB_KILL_POINT", "DataNode.Registered");
    let error = match TestServer::start_on(ip, options.clone()) {
        Ok(_) => panic!("the DataNode should abort at DataNode.Registered"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("exited before it was ready"), "{error}");
    let mut options = options;
    options.env.clear();
    cluster
        .data_nodes
        .push(TestServer::start_on(ip, options).expect("restart the DataNode"));
    let rows = cluster
        .wait_for_cluster(0, PATIENCE, "the DataNode Running", |rows| {
            rows.iter()
                .any(|row| row.node_type == "DataNode" && row.status == "Running")
        })
        .unwrap();
    assert_eq!(
        data_node_ids(&rows),
        BTreeSet::from([1]),
        "registered once, with the id of its first attempt: {rows:?}"
    );

    // ConfigNode.Registered, on the leader (the only ConfigNode).
    cluster.config_nodes[0].stop().expect("stop the ConfigNode");
    cluster.config_nodes[0]
        .options_mut()
        .env
        .push(("IOTDB_KILL_POINT".into(), "ConfigNode.Registered".into()));
    cluster.config_nodes[0].restart().expect("restart armed");
    let joiner_ip = iotdb_tests::server::next_loopback_host();
    let joiner_dir = tempfile::tempdir().unwrap();
    let joiner = cluster
        .config_node_options(joiner_ip)
        .unwrap()
        .data_dir(joiner_dir.path());
    // The joiner keeps trying its seed while the leader is down (up to 20 s).
    let joining = std::thread::spawn(move || TestServer::start_on(joiner_ip, joiner));
    cluster.config_nodes[0]
        .wait_exit(Duration::from_secs(30))
        .expect("the leader aborted at ConfigNode.Registered");
    cluster.config_nodes[0].options_mut().env.clear();
    cluster.config_nodes[0]
        .restart()
        .expect("restart the leader");
    let joined = joining
        .join()
        .expect("the joining thread")
        .expect("the joiner gets in once the leader is back");
    cluster.config_nodes.push(joined);
    let rows = cluster
        .wait_for_cluster(0, PATIENCE, "two ConfigNodes Running", |rows| {
            rows.iter()
                .filter(|row| row.node_type == "ConfigNode" && row.status == "Running")
                .count()
                == 2
        })
        .unwrap();
    assert_eq!(
        config_node_ids(&rows),
        BTreeSet::from([0, 2]),
        "the joiner kept the id it was given: {rows:?}"
    );
    cluster
        .client(0)
        .unwrap()
        .execute_sql("CREATE DATABASE root.two_config_nodes")
        .expect("the two-member group commits");
}

/// A DataNode started before its seed ConfigNode waits for it, saying so once in its log,
/// and registers once the ConfigNode is up; one whose seed never comes exits after
/// `seed_config_node_wait_in_ms` with an error naming the seed key.
#[test]
fn a_data_node_started_before_its_seed_waits_for_it_for_a_bounded_time() {
    let mut cluster = TestCluster::planned(BINARY, &[]).unwrap();
    let ip = iotdb_tests::server::next_loopback_host();
    let mut data_node =
        TestServer::launch_on(ip, cluster.data_node_options(ip, 1).unwrap()).unwrap();
    let waiting = "the seed ConfigNode is not reachable yet; retrying for up to 20s";
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(data_node.log_path())
        .unwrap_or_default()
        .contains(waiting)
    {
        assert!(
            Instant::now() < deadline,
            "the DataNode never said it waits:\n{}",
            data_node.log_tail()
        );
        assert!(data_node.is_running(), "{}", data_node.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.start_seed().unwrap();
    data_node.wait_ready().unwrap();
    cluster.data_nodes.push(data_node);
    let rows = cluster.show_cluster(0).unwrap();
    assert_eq!(data_node_ids(&rows).len(), 1, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row.node_type != "DataNode" || row.status == "Running"),
        "{rows:?}"
    );

    // No ConfigNode ever comes: the DataNode gives up after the configured wait.
    let lonely = TestCluster::planned(BINARY, &[("seed_config_node_wait_in_ms", "1500")]).unwrap();
    let ip = iotdb_tests::server::next_loopback_host();
    let started = Instant::now();
    let error = TestServer::start_on(ip, lonely.data_node_options(ip, 1).unwrap())
        .err()
        .expect("a DataNode without its seed does not start")
        .to_string();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.contains("retrying for up to 1.5s")
            && error.contains("dn_seed_config_node")
            && error.contains("seed_config_node_wait_in_ms"),
        "{error}"
    );
}
