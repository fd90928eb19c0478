//! Reads of region groups held by other DataNodes, across real processes: a 1C3D cluster
//! with `data_replication_factor=2` and `data_replication_ack=in_sync`, one data region
//! group per database, tiny remote-read pages (`dn_remote_read_page_bytes`) so a few
//! thousand points span many pages, and a short `dn_remote_read_timeout_ms`.
//!
//! Through the DataNode that holds no replica of the group: a raw query returns every
//! point once, in order (with `LIMIT`/`OFFSET` after the merge), and the same query still
//! does while the group's leader is frozen with SIGSTOP — the read times out on the
//! leader and moves on to the in-sync follower — and once the leader (both replicas in
//! sync again) is killed. With the last replica frozen too, the client's error names the
//! replicas tried.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use iotdb_net::{
    BlockingClient, CreateDatabase, RawQuery, SeriesSelection, TypedColumn, Value, WireColumn,
    WireTablet,
};
use iotdb_tests::TestCluster;
use iotdb_tests::cluster::text_rows;
use iotdb_tests::model::Rows;

const BINARY: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
/// Ends a hung wait on a loaded 2-core machine running debug builds.
const PATIENCE: Duration = Duration::from_secs(30);
const DEVICE: &str = "root.rr.d1";
const POINTS: i64 = 3000;
const READ_TIMEOUT_MS: u64 = 1000;
/// About 60 points of two series a page: the query's answer spans about a hundred pages.
const PAGE_BYTES: usize = 4096;

/// Sends SIGCONT to a process it stopped, when dropped: a failing test never leaves a
/// frozen server behind.
struct Frozen {
    pid: u32,
}

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        signal("-STOP", pid);
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", self.pid);
    }
}

fn signal(which: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed: {status}");
}

/// The (leader, follower) DataNode ids of the only data region group.
fn group_replicas(client: &mut BlockingClient) -> (u32, u32) {
    let result = client.execute_sql("SHOW DATA REGIONS").unwrap();
    let rows = text_rows(&result);
    assert_eq!(rows.len(), 2, "one group, two replicas: {rows:?}");
    let node = |leader: bool| -> u32 {
        rows.iter()
            .find(|row| (row["Role"] == "Leader") == leader)
            .map(|row| row["DataNodeId"].parse().unwrap())
            .unwrap_or_else(|| panic!("no {leader} replica in {rows:?}"))
    };
    (node(true), node(false))
}

/// Index in `cluster.data_nodes` of each DataNode id.
fn data_node_indexes(cluster: &TestCluster) -> BTreeMap<u32, usize> {
    cluster
        .show_cluster(0)
        .unwrap()
        .iter()
        .filter(|row| row.node_type == "DataNode")
        .map(|row| {
            let index = cluster
                .data_nodes
                .iter()
                .position(|node| node.address().ip().to_string() == row.internal_address)
                .unwrap_or_else(|| panic!("no DataNode process at {}", row.internal_address));
            (row.node_id, index)
        })
        .collect()
}

/// The rows a raw query of `measurements` (of `s1`, `s2`) returns.
fn query(
    client: &mut BlockingClient,
    measurements: &[&str],
    limit: Option<u64>,
    offset: u64,
) -> Result<Rows, String> {
    let batches = client
        .query_raw(RawQuery {
            series: vec![SeriesSelection {
                device: DEVICE.into(),
                measurements: measurements.iter().map(|m| m.to_string()).collect(),
            }],
            start_time: i64::MIN,
            end_time: i64::MAX,
            limit,
            offset,
        })
        .map_err(|e| e.to_string())?;
    Ok(iotdb_tests::model::rows_of(&batches)?.1)
}

/// The rows every point of `measurements` makes, in time order.
fn expected(measurements: &[&str]) -> Rows {
    (0..POINTS)
        .map(|t| {
            let cells = measurements
                .iter()
                .map(|m| match *m {
                    "s1" => Some(Value::Int64(t * 7)),
                    _ => Some(Value::Double(t as f64 / 4.0)),
                })
                .collect();
            (t, cells)
        })
        .collect()
}

#[test]
fn remote_reads_page_large_answers_and_move_on_from_a_frozen_leader() {
    let page_bytes = PAGE_BYTES.to_string();
    let timeout = READ_TIMEOUT_MS.to_string();
    let mut cluster = TestCluster::start_configured(
        BINARY,
        1,
        3,
        1,
        &[
            ("data_replication_factor", "2"),
            ("data_replication_ack", "in_sync"),
            ("data_region_group_extension_policy", "CUSTOM"),
            ("default_data_region_group_num_per_database", "1"),
            ("dn_remote_read_page_bytes", &page_bytes),
            ("dn_remote_read_timeout_ms", &timeout),
        ],
    )
    .expect("start 1C3D");
    cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 4 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    let mut writer = cluster.client(0).unwrap();
    writer
        .create_database(CreateDatabase {
            name: "root.rr".into(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .unwrap();
    // Three tablets: three WAL entries and memtable pieces, not one.
    for part in 0..3 {
        let times: Vec<i64> = (part * POINTS / 3..(part + 1) * POINTS / 3).collect();
        let tablet = WireTablet {
            device: DEVICE.into(),
            is_aligned: false,
            columns: vec![
                WireColumn::new(
                    "s1",
                    TypedColumn::Int64(times.iter().map(|t| t * 7).collect()),
                ),
                WireColumn::new(
                    "s2",
                    TypedColumn::Double(times.iter().map(|t| *t as f64 / 4.0).collect()),
                ),
            ],
            timestamps: times,
        };
        writer.insert_tablets(&[tablet]).unwrap();
    }
    let (leader, follower) = group_replicas(&mut writer);
    let indexes = data_node_indexes(&cluster);
    let reader = *indexes
        .iter()
        .find(|(id, _)| **id != leader && **id != follower)
        .expect("a DataNode without a replica")
        .1;
    eprintln!(
        "group led by DataNode {leader}, follower {follower}; reading through index {reader}"
    );
    let mut client = cluster.client(reader).unwrap();

    // (a) Every point, once, in order, though the answer spans about a hundred pages: one
    // series alone (its column is the answer as the pages built it), then both aligned.
    let s1 = query(&mut client, &["s1"], None, 0).unwrap();
    assert_eq!(s1.len(), POINTS as usize);
    assert_eq!(s1, expected(&["s1"]));
    let both = ["s1", "s2"];
    assert_eq!(query(&mut client, &both, None, 0).unwrap(), expected(&both));
    // LIMIT and OFFSET apply after the merge of the pages.
    let tail = query(&mut client, &both, Some(10), POINTS as u64 - 4).unwrap();
    assert_eq!(tail, expected(&both)[POINTS as usize - 4..]);

    // (b) The leader frozen: the read times out there and the in-sync follower answers.
    let pid = cluster.data_nodes[indexes[&leader]]
        .pid()
        .expect("the leader runs");
    let frozen = Frozen::freeze(pid);
    let started = Instant::now();
    let outcome = query(&mut client, &both, None, 0);
    let took = started.elapsed();
    drop(frozen);
    eprintln!("the query with the leader frozen took {took:?}");
    let all = outcome.expect("the follower answers while the leader is frozen");
    assert_eq!(all, expected(&both));
    // Bounded by the timeout (once per request to the frozen leader before the read
    // moves on) plus a margin for a loaded machine; not a speed measurement.
    assert!(
        took < Duration::from_millis(READ_TIMEOUT_MS) + PATIENCE,
        "the read waited {took:?} on a frozen leader"
    );

    // (c) Both replicas in sync again, the leader killed: the broken connection moves the
    // read on at once.
    let started = Instant::now();
    let killed = loop {
        let rows = text_rows(&client.execute_sql("SHOW DATA REGIONS").unwrap());
        let leader = rows.iter().find(|row| row["Role"] == "Leader");
        if rows.iter().all(|row| row["InSync"] == "true")
            && let Some(row) = leader
        {
            break row["DataNodeId"].parse::<u32>().unwrap();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the replicas never came back in sync: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    cluster.data_nodes[indexes[&killed]]
        .kill()
        .expect("kill the leader");
    let all = query(&mut client, &both, None, 0).expect("the follower answers for a killed leader");
    assert_eq!(all, expected(&both));

    // (d) The last replica frozen too: the client hears which replicas were tried and why.
    let last = if killed == leader { follower } else { leader };
    let frozen = Frozen::freeze(cluster.data_nodes[indexes[&last]].pid().expect("it runs"));
    let error = query(&mut client, &both, None, 0).expect_err("no replica can answer");
    drop(frozen);
    eprintln!("with no replica left: {error}");
    assert!(
        error.contains("no replica of region group") && error.contains(&format!("DataNode {last}")),
        "{error}"
    );
}
