//! Region replication across real processes: a 1C3D cluster with
//! `data_replication_factor=2`. Every data region group has two replicas on distinct
//! DataNodes, one the leader; a client connected to one DataNode writes series led by
//! the others; the DataNode leading most groups is killed with SIGKILL while writes run;
//! writes resume through the surviving DataNodes, and with `data_replication_ack =
//! in_sync` every acknowledged point reads back after the failover. The killed node
//! restarts and catches up: when the surviving replica of each of its groups is then
//! stopped, it serves every point itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use iotdb_net::{BlockingClient, Value};
use iotdb_tests::TestCluster;
use iotdb_tests::cluster::{text_rows, time_values};

const BINARY: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
/// Ends a hung wait on a loaded 2-core machine running debug builds; the figures are
/// printed.
const PATIENCE: Duration = Duration::from_secs(30);
const DEVICES: usize = 12;

fn device(index: usize) -> String {
    format!("root.rep.d{index}")
}

/// One data region replica as `SHOW REGIONS` lists it.
#[derive(Debug, Clone)]
struct ReplicaRow {
    region: u32,
    data_node: u32,
    leader: bool,
    in_sync: bool,
}

fn data_replicas(client: &mut BlockingClient) -> Vec<ReplicaRow> {
    let result = client.execute_sql("SHOW DATA REGIONS").unwrap();
    text_rows(&result)
        .iter()
        .map(|row| ReplicaRow {
            region: row["RegionId"].parse().unwrap(),
            data_node: row["DataNodeId"].parse().unwrap(),
            leader: row["Role"] == "Leader",
            in_sync: row["InSync"] == "true",
        })
        .collect()
}

/// Writes `round` of every device through DataNode `via`, retrying each insert until it
/// is acknowledged (a failover refuses writes for a moment); returns the longest wait.
fn write_round(cluster: &TestCluster, via: usize, round: i64) -> Duration {
    let mut longest = Duration::ZERO;
    for index in 0..DEVICES {
        let statement = format!(
            "INSERT INTO {}(time, s1) VALUES ({round}, {})",
            device(index),
            round * 100 + index as i64
        );
        let took = execute_until_acknowledged(cluster, via, &statement);
        if took > Duration::from_secs(1) {
            eprintln!("{statement} took {took:?}");
        }
        longest = longest.max(took);
    }
    longest
}

/// Executes `statement` through DataNode `via`, again every 100 ms until it is
/// acknowledged (a failover refuses it for a moment; the first refusal is printed), for
/// [`PATIENCE`] at most; returns how long it took.
fn execute_until_acknowledged(cluster: &TestCluster, via: usize, statement: &str) -> Duration {
    let started = Instant::now();
    let mut told = false;
    loop {
        let outcome = cluster
            .client(via)
            .map_err(|e| e.to_string())
            .and_then(|mut client| client.execute_sql(statement).map_err(|e| e.to_string()));
        match outcome {
            Ok(_) => return started.elapsed(),
            Err(error) if started.elapsed() < PATIENCE => {
                if !told {
                    told = true;
                    eprintln!("retrying {statement} via {via}: {error}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("{statement} via {via} never succeeded: {error}"),
        }
    }
}

/// Every device's (time → value) as DataNode `via` answers. A read of a group whose
/// leader just stopped fails until `via`'s route table names the new one: retried.
fn read_all(cluster: &TestCluster, via: usize) -> BTreeMap<String, BTreeMap<i64, i64>> {
    let mut client = cluster.client(via).unwrap();
    (0..DEVICES)
        .map(|index| {
            let statement = format!("SELECT s1 FROM {}", device(index));
            let started = Instant::now();
            let result = loop {
                match client.execute_sql(&statement) {
                    Ok(result) => break result,
                    Err(error) if started.elapsed() < PATIENCE => {
                        if started.elapsed() < Duration::from_millis(100) {
                            eprintln!("retrying {statement} via {via}: {error}");
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(error) => panic!("{statement} via {via}: {error}"),
                }
            };
            (device(index), time_values(&result))
        })
        .collect()
}

fn expected(rounds: &BTreeSet<i64>) -> BTreeMap<String, BTreeMap<i64, i64>> {
    (0..DEVICES)
        .map(|index| {
            let points = rounds
                .iter()
                .map(|round| (*round, round * 100 + index as i64))
                .collect();
            (device(index), points)
        })
        .collect()
}

/// A 1C3D cluster (one core per DataNode) with `settings`, every node Running.
fn start_1c3d(settings: &[(&str, &str)]) -> TestCluster {
    let cluster = TestCluster::start_configured(BINARY, 1, 3, 1, settings).expect("start 1C3D");
    cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 4 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    cluster
}

/// Restarts DataNode `index` and waits until DataNode `via` shows every DataNode Running.
fn restart_data_node(cluster: &mut TestCluster, index: usize, via: usize) {
    cluster.data_nodes[index].restart().expect("restart");
    cluster
        .wait_for_cluster(via, PATIENCE, "the restarted DataNode Running", |rows| {
            rows.iter()
                .all(|row| row.node_type != "DataNode" || row.status == "Running")
        })
        .unwrap();
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn in_sync_replicas_keep_every_acknowledged_point_across_a_leader_kill() {
    let mut cluster = start_1c3d(&[
        ("data_replication_factor", "2"),
        ("data_replication_ack", "in_sync"),
        ("data_region_group_extension_policy", "CUSTOM"),
        ("default_data_region_group_num_per_database", "6"),
        // The setting: writes must resume within 5 s of the kill.
        ("heartbeat_interval_in_ms", "500"),
    ]);
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    for round in 0..5 {
        write_round(&cluster, 0, round);
        acked.insert(round);
    }

    // Two replicas per group on distinct DataNodes, exactly one leader.
    let replicas = data_replicas(&mut cluster.client(0).unwrap());
    let mut groups: BTreeMap<u32, Vec<ReplicaRow>> = BTreeMap::new();
    for row in &replicas {
        groups.entry(row.region).or_default().push(row.clone());
    }
    assert!(!groups.is_empty(), "{replicas:?}");
    for (group, rows) in &groups {
        let nodes: BTreeSet<u32> = rows.iter().map(|r| r.data_node).collect();
        assert_eq!((rows.len(), nodes.len()), (2, 2), "group {group}: {rows:?}");
        assert_eq!(rows.iter().filter(|r| r.leader).count(), 1, "{rows:?}");
    }
    assert_eq!(read_all(&cluster, 1), expected(&acked), "before the kill");

    // Kill the DataNode leading most groups while a client keeps writing through another.
    let mut leaders: BTreeMap<u32, usize> = BTreeMap::new();
    for row in replicas.iter().filter(|r| r.leader) {
        *leaders.entry(row.data_node).or_default() += 1;
    }
    let (&victim_id, _) = leaders.iter().max_by_key(|(_, count)| **count).unwrap();
    let victim = cluster.data_node_index(victim_id, 0);
    let via = (victim + 1) % 3;
    let killed = Instant::now();
    cluster.data_nodes[victim].kill().expect("SIGKILL");
    let mut longest = Duration::ZERO;
    for round in 5..10 {
        longest = longest.max(write_round(&cluster, via, round));
        acked.insert(round);
    }
    eprintln!(
        "leader DataNode {victim_id} killed: writes resumed within {longest:?} (round of \
         {DEVICES} inserts done {:?} after the kill)",
        killed.elapsed()
    );
    assert!(
        longest < Duration::from_secs(5),
        "writes resumed only after {longest:?}"
    );
    assert_eq!(
        read_all(&cluster, via),
        expected(&acked),
        "every acknowledged point after the failover"
    );
    let after = data_replicas(&mut cluster.client(via).unwrap());
    assert!(
        after
            .iter()
            .filter(|r| r.leader)
            .all(|r| r.data_node != victim_id),
        "no group is led by the dead node: {after:?}"
    );

    // The killed node comes back and catches up; then each surviving DataNode is stopped
    // in turn, so that the restarted one leads its groups and serves them alone.
    restart_data_node(&mut cluster, victim, via);
    for round in 10..12 {
        write_round(&cluster, via, round);
        acked.insert(round);
    }
    // Back in every in-sync set (its leaders ask once it caught up).
    let all_in_sync = |cluster: &TestCluster, via: usize| {
        wait_for("every replica in sync", || {
            let rows = data_replicas(&mut cluster.client(via).ok()?);
            rows.iter().all(|r| r.in_sync).then_some(())
        })
    };
    all_in_sync(&cluster, via);
    let other = (victim + 2) % 3;
    assert_eq!(
        read_all(&cluster, victim),
        expected(&acked),
        "via the restarted node"
    );

    // The restarted replica can lead: stop the survivor that does not hold the (not yet
    // replicated) schema region, so the restarted node leads the groups they share.
    let schema_holder = schema_holder(&mut cluster.client(via).unwrap());
    let stopped = [via, other]
        .into_iter()
        .find(|index| cluster.data_node_index(schema_holder, victim) != *index)
        .expect("one survivor does not hold the schema region");
    let stopped_id = data_replicas(&mut cluster.client(victim).unwrap())
        .iter()
        .map(|r| r.data_node)
        .find(|id| cluster.data_node_index(*id, victim) == stopped)
        .expect("the stopped node holds replicas");
    cluster.data_nodes[stopped].stop().expect("stop");
    let led = wait_for("leaders moved off the stopped node", || {
        let rows = data_replicas(&mut cluster.client(victim).ok()?);
        rows.iter()
            .filter(|r| r.leader)
            .all(|r| r.data_node != stopped_id)
            .then(|| {
                rows.iter()
                    .filter(|r| r.data_node == victim_id && r.leader)
                    .map(|r| r.region)
                    .collect::<BTreeSet<u32>>()
            })
    });
    eprintln!("with DataNode {stopped_id} stopped, DataNode {victim_id} leads groups {led:?}");
    assert_eq!(
        read_all(&cluster, victim),
        expected(&acked),
        "with {stopped_id} stopped"
    );
    cluster.data_nodes[stopped].restart().expect("restart");
    cluster
        .wait_for_cluster(victim, PATIENCE, "all Running again", |rows| {
            rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    all_in_sync(&cluster, victim);

    compare_replicas(&mut cluster, victim);
}

/// Stops every DataNode (a clean stop flushes) and compares the two replicas of every data
/// region group, series by series, point by point, from their files.
fn compare_replicas(cluster: &mut TestCluster, via: usize) {
    let replicas = data_replicas(&mut cluster.client(via).unwrap());
    let holders: Vec<(u32, usize)> = replicas
        .iter()
        .map(|r| (r.region, cluster.data_node_index(r.data_node, via)))
        .collect();
    let groups: BTreeSet<u32> = replicas.iter().map(|r| r.region).collect();
    for node in &mut cluster.data_nodes {
        node.stop().expect("stop");
    }
    let mut compared = 0;
    for group in &groups {
        let dirs: Vec<std::path::PathBuf> = holders
            .iter()
            .filter(|(region, _)| region == group)
            .map(|(_, index)| {
                cluster.data_nodes[*index]
                    .data_dir()
                    .join("datanode/data")
                    .join(format!("region-{group}"))
            })
            .collect();
        assert_eq!(dirs.len(), 2, "group {group}: {replicas:?}");
        let first = region_contents(&dirs[0]);
        let second = region_contents(&dirs[1]);
        assert!(!first.is_empty(), "group {group} holds nothing");
        assert_eq!(first, second, "the two replicas of group {group} differ");
        compared += first.len();
    }
    eprintln!(
        "{} groups, {compared} series compared replica against replica",
        groups.len()
    );
}

/// Leader mode, and a follower that missed more than its leader's WAL keeps: with a
/// one-byte WAL cap and 4 KiB WAL files, the leader's flushed WAL is gone when the
/// follower returns (and the leader restarted, so no memory queue holds it either), so the
/// follower is rebuilt from a snapshot of the leader's region streamed over the consensus
/// port; the replicas then hold the same points.
#[test]
fn a_follower_behind_the_leaders_wal_is_rebuilt_from_a_snapshot() {
    let mut cluster = TestCluster::start_configured(
        BINARY,
        1,
        2,
        1,
        &[
            ("data_replication_factor", "2"),
            ("data_replication_ack", "leader"),
            ("data_region_group_extension_policy", "CUSTOM"),
            ("default_data_region_group_num_per_database", "4"),
            ("wal_throttle_threshold_in_byte", "1"),
            ("wal_file_size_threshold_in_byte", "4096"),
        ],
    )
    .expect("start 1C2D");
    cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 3 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    for round in 0..5 {
        write_round(&cluster, 0, round);
        acked.insert(round);
    }
    // Node 1 stops; node 0 leads everything and takes writes the follower misses, then
    // flushes them (its WAL below the flushed index goes: the cap is one byte).
    cluster.data_nodes[1].stop().expect("stop");
    for round in 5..25 {
        write_round(&cluster, 0, round);
        acked.insert(round);
    }
    cluster
        .client(0)
        .unwrap()
        .execute_sql("FLUSH")
        .expect("flush");
    // The leader restarts too, so that what the follower missed is in no memory queue:
    // only in sealed files.
    cluster.data_nodes[0].stop().expect("stop the leader");
    cluster.data_nodes[0].restart().expect("restart the leader");
    cluster.data_nodes[1].restart().expect("restart");
    cluster
        .wait_for_cluster(0, PATIENCE, "both DataNodes Running", |rows| {
            rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    for round in 25..27 {
        write_round(&cluster, 0, round);
        acked.insert(round);
    }
    let log = cluster.data_nodes[1].log_path();
    let groups = data_replicas(&mut cluster.client(0).unwrap())
        .iter()
        .map(|r| r.region)
        .collect::<BTreeSet<u32>>()
        .len();
    wait_for("every replica of node 1 rebuilt from a snapshot", || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.matches("installed the leader's snapshot").count() >= groups).then_some(())
    });
    assert_eq!(read_all(&cluster, 1), expected(&acked));
    compare_replicas(&mut cluster, 0);
}

/// The DataNode holding the database's SchemaRegion.
fn schema_holder(client: &mut BlockingClient) -> u32 {
    let result = client.execute_sql("SHOW SCHEMA REGIONS").unwrap();
    text_rows(&result)[0]["DataNodeId"].parse().unwrap()
}

/// Every series of the region in `dir` (closed) with all its points, as text.
fn region_contents(dir: &std::path::Path) -> BTreeMap<String, String> {
    use iotdb_storage::{Region, RegionConfig, TimeRange};
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let region = Region::open(dir, RegionConfig::default())
            .unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()));
        let contents = region
            .series()
            .into_iter()
            .map(|(key, _)| {
                let points = region.scan(&key, TimeRange::ALL).unwrap();
                (format!("{key:?}"), format!("{points:?}"))
            })
            .collect();
        region.close(false).await.unwrap();
        contents
    })
}

/// `SHOW SCHEMA REGIONS` as (region, DataNode, leader) rows.
fn schema_replicas(client: &mut BlockingClient) -> Vec<(u32, u32, bool)> {
    let result = client.execute_sql("SHOW SCHEMA REGIONS").unwrap();
    text_rows(&result)
        .iter()
        .map(|row| {
            (
                row["RegionId"].parse().unwrap(),
                row["DataNodeId"].parse().unwrap(),
                row["Role"] == "Leader",
            )
        })
        .collect()
}

/// Creates series `root.sch.d{index}.s{index % 3}` by writing one point to it through
/// DataNode `via` (the SchemaRegion creates it on the fly), retrying until acknowledged;
/// returns the path and how long it took.
fn create_series(cluster: &TestCluster, via: usize, index: usize) -> (String, Duration) {
    let statement = format!(
        "INSERT INTO root.sch.d{index}(time, s{}) VALUES (1, {index})",
        index % 3
    );
    let took = execute_until_acknowledged(cluster, via, &statement);
    (format!("root.sch.d{index}.s{}", index % 3), took)
}

/// Every series under `root.sch` with its one value, as a query through DataNode `via`
/// sees them (the query asks every schema region's leader which series exist).
fn series_via(cluster: &TestCluster, via: usize) -> BTreeMap<String, i64> {
    let started = Instant::now();
    let result = loop {
        match cluster
            .client(via)
            .and_then(|mut client| Ok(client.execute_sql("SELECT * FROM root.sch.**")?))
        {
            Ok(result) => break result,
            Err(error) if started.elapsed() < PATIENCE => {
                eprintln!("retrying the query via {via}: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("querying via {via}: {error}"),
        }
    };
    let row = result.rows.first().cloned().unwrap_or_default();
    result
        .column_names
        .iter()
        .zip(row)
        .skip(1)
        .map(|(name, value)| {
            let value = match value {
                Some(Value::Double(v)) => v as i64,
                Some(Value::Int64(v)) => v,
                other => panic!("{name}: {other:?}"),
            };
            (name.clone(), value)
        })
        .collect()
}

/// Creates series `indexes` through DataNode `via` (see [`create_series`]), recording
/// them in `created`; returns the longest wait.
fn create_all(
    cluster: &TestCluster,
    via: usize,
    indexes: std::ops::Range<usize>,
    created: &mut BTreeMap<String, i64>,
) -> Duration {
    let mut longest = Duration::ZERO;
    for index in indexes {
        let (path, took) = create_series(cluster, via, index);
        created.insert(path, index as i64);
        longest = longest.max(took);
    }
    longest
}

/// Schema regions replicate through Raft (`schema_replication_factor=3` on three
/// DataNodes): series created through one DataNode exist on every replica; when the
/// DataNode whose replica leads the schema region is killed, the other two elect a new
/// leader and series creation resumes; the killed node restarts, catches up, and with
/// the second leader killed too, it and the third replica carry on with every series.
#[test]
fn schema_regions_replicate_through_raft_and_survive_their_leaders_kill() {
    let mut cluster = start_1c3d(&[
        ("schema_replication_factor", "3"),
        ("data_replication_factor", "3"),
        ("heartbeat_interval_in_ms", "500"),
    ]);
    let mut created = BTreeMap::new();
    create_all(&cluster, 0, 0..6, &mut created);

    // Three replicas on distinct DataNodes; the ConfigNode records the elected leader.
    let rows = wait_for("one elected schema region leader recorded", || {
        let rows = schema_replicas(&mut cluster.client(0).ok()?);
        (rows.len() == 3 && rows.iter().filter(|r| r.2).count() == 1).then_some(rows)
    });
    let nodes: BTreeSet<u32> = rows.iter().map(|r| r.1).collect();
    assert_eq!(nodes.len(), 3, "{rows:?}");
    let leader = rows.iter().find(|r| r.2).expect("a leader").1;
    assert_eq!(series_via(&cluster, 1), created);

    // Kill the leader's DataNode; the others elect a new leader and creation resumes.
    let victim = cluster.data_node_index(leader, 0);
    let via = (victim + 1) % 3;
    let killed = Instant::now();
    cluster.data_nodes[victim].kill().expect("SIGKILL");
    let longest = create_all(&cluster, via, 6..12, &mut created);
    eprintln!(
        "schema leader DataNode {leader} killed: series creation resumed within {longest:?} \
         ({:?} after the kill for six series)",
        killed.elapsed()
    );
    assert!(
        longest < Duration::from_secs(5),
        "series creation resumed only after {longest:?}"
    );
    let second = wait_for("a new schema region leader recorded", || {
        let rows = schema_replicas(&mut cluster.client(via).ok()?);
        rows.iter().find(|r| r.2 && r.1 != leader).map(|r| r.1)
    });
    assert_eq!(series_via(&cluster, via), created);

    // The killed node comes back and catches up; then the second leader is killed, and
    // the restarted replica with the third one carry the group.
    restart_data_node(&mut cluster, victim, via);
    create_all(&cluster, victim, 12..15, &mut created);
    let second_index = cluster.data_node_index(second, victim);
    let third = (0..3)
        .find(|index| *index != victim && *index != second_index)
        .expect("a third DataNode");
    cluster.data_nodes[second_index].kill().expect("SIGKILL");
    create_all(&cluster, victim, 15..18, &mut created);
    assert_eq!(series_via(&cluster, victim), created);
    assert_eq!(series_via(&cluster, third), created);
    // SHOW/COUNT TIMESERIES through a follower's DataNode too (asked of the leader).
    for index in [victim, third] {
        let result = cluster
            .client(index)
            .unwrap()
            .execute_sql("COUNT TIMESERIES root.sch.**")
            .unwrap();
        assert_eq!(
            text_rows(&result)[0]["count(timeseries)"],
            created.len().to_string(),
            "via {index}"
        );
        let result = cluster
            .client(index)
            .unwrap()
            .execute_sql("SHOW TIMESERIES root.sch.**")
            .unwrap();
        let listed: Vec<String> = text_rows(&result)
            .iter()
            .map(|row| row["Timeseries"].clone())
            .collect();
        assert_eq!(listed, created.keys().cloned().collect::<Vec<_>>());
    }
    let rows = wait_for("a third leader recorded", || {
        let rows = schema_replicas(&mut cluster.client(victim).ok()?);
        rows.iter().any(|r| r.2 && r.1 != second).then_some(rows)
    });
    eprintln!("after the second kill: {rows:?}");

    // Every replica back; deleting the database closes each replica's Raft group and
    // removes its directory on every DataNode.
    cluster.data_nodes[second_index].restart().expect("restart");
    cluster
        .wait_for_cluster(victim, PATIENCE, "all Running again", |rows| {
            rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    let region = rows[0].0;
    let replica_dirs = |cluster: &TestCluster| -> Vec<std::path::PathBuf> {
        cluster
            .data_nodes
            .iter()
            .map(|node| {
                node.data_dir()
                    .join("datanode/schema")
                    .join(format!("region-{region}"))
            })
            .filter(|dir| dir.exists())
            .collect()
    };
    assert_eq!(replica_dirs(&cluster).len(), 3);
    cluster
        .client(victim)
        .unwrap()
        .execute_sql("DELETE DATABASE root.sch")
        .expect("delete the database");
    wait_for("every schema replica removed", || {
        replica_dirs(&cluster).is_empty().then_some(())
    });
}

/// Clients given every DataNode keep writing and reading while the DataNode one of them is
/// connected to is killed: a `FailoverClient` (SQL), an `AsyncFailoverClient` (tablets,
/// and the reads of its series) and a `ShardAwareClient` (tablets to the leaders' cores).
/// No error reaches the caller, and every acknowledged point reads back (RF=2, `in_sync`).
#[test]
fn a_failover_client_rides_over_the_death_of_its_data_node() {
    use iotdb_net::{
        AsyncCalls, AsyncFailoverClient, ClientConfig, DataType, FailoverClient, FailoverPolicy,
        ShardAwareClient, WireTablet,
    };
    let mut cluster = start_1c3d(&[
        ("data_replication_factor", "2"),
        ("data_replication_ack", "in_sync"),
        ("schema_replication_factor", "3"),
        ("heartbeat_interval_in_ms", "500"),
    ]);
    let endpoints: Vec<std::net::SocketAddr> = cluster
        .data_nodes
        .iter()
        .map(|node| node.address())
        .collect();
    let policy = FailoverPolicy {
        retry_for: PATIENCE,
        ..FailoverPolicy::default()
    };
    let mut client =
        FailoverClient::connect(&endpoints, &ClientConfig::default(), policy).expect("connect");
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    let mut sharded = runtime
        .block_on(ShardAwareClient::connect(
            &endpoints,
            ClientConfig::default(),
        ))
        .expect("connect the shard-aware client");
    sharded.set_failover_policy(policy);
    let mut async_client = runtime
        .block_on(AsyncFailoverClient::connect(
            &endpoints,
            &ClientConfig::default(),
            policy,
        ))
        .expect("connect the async failover client");
    let async_connected = async_client.accepted().expect("connected").data_node_id;
    // The database and the schema of every device exist before the kill, so what the
    // test measures is the data path (a new device's schema would wait for the schema
    // region's election as well, which the schema test covers).
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let mut write = |client: &mut FailoverClient, round: i64| {
        let mut tablets = Vec::new();
        let mut async_tablets = Vec::new();
        for index in 0..DEVICES {
            let value = round * 100 + index as i64;
            let statement = format!(
                "INSERT INTO {}(time, s1) VALUES ({round}, {value})",
                device(index)
            );
            client
                .execute_sql(&statement)
                .unwrap_or_else(|e| panic!("{statement}: an error reached the caller: {e}"));
            let mut tablet = WireTablet::new(device(index), &[("s2", DataType::Double)]);
            tablet
                .push_row(round, &[Some(Value::Double(value as f64))])
                .expect("a row");
            tablets.push(tablet);
            let mut tablet = WireTablet::new(device(index), &[("s3", DataType::Double)]);
            tablet
                .push_row(round, &[Some(Value::Double(value as f64))])
                .expect("a row");
            async_tablets.push(tablet);
        }
        runtime
            .block_on(sharded.insert_tablets(&tablets))
            .unwrap_or_else(|e| {
                panic!("round {round} of tablets: an error reached the caller: {e}")
            });
        runtime
            .block_on(async_client.insert_tablets(&async_tablets))
            .unwrap_or_else(|e| {
                panic!("round {round} through the async client: an error reached the caller: {e}")
            });
    };
    for round in 0..3 {
        write(&mut client, round);
        acked.insert(round);
    }
    let connected = client.accepted().expect("connected").data_node_id;
    let victim = cluster.data_node_index(connected, 0);
    let killed = Instant::now();
    cluster.data_nodes[victim].kill().expect("SIGKILL");
    for round in 3..8 {
        write(&mut client, round);
        acked.insert(round);
    }
    eprintln!(
        "DataNode {connected} (the client's) killed: five rounds written {:?} after the kill, \
         through {} (the async client through {})",
        killed.elapsed(),
        client.endpoint(),
        async_client.endpoint()
    );
    assert_ne!(client.endpoint(), endpoints[victim]);
    if async_connected == connected {
        assert_ne!(async_client.endpoint(), endpoints[victim]);
    }
    for (index, measurement) in (0..DEVICES).flat_map(|i| [(i, "s1"), (i, "s2"), (i, "s3")]) {
        let statement = format!("SELECT {measurement} FROM {}", device(index));
        // The async client's series are read through it (its query path after the kill).
        let result = if measurement == "s3" {
            runtime.block_on(async_client.execute_sql(&statement))
        } else {
            client.execute_sql(&statement)
        }
        .expect("a read after the kill");
        let times: Vec<i64> = result
            .rows
            .iter()
            .map(|row| match &row[0] {
                Some(Value::Int64(t)) => *t,
                other => panic!("time {other:?}"),
            })
            .collect();
        assert_eq!(
            times,
            acked.iter().copied().collect::<Vec<_>>(),
            "{statement}"
        );
    }
}
