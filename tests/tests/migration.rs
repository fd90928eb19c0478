//! Region migration and DataNode removal across real processes.
//!
//! - `MIGRATE REGION` of a group's leader replica in a 1C3D cluster with
//!   `data_replication_factor=2`, while a client writes, with the ConfigNode SIGKILLed in
//!   the middle: after its restart the migration finishes, the new replica leads, the old
//!   one's files are gone, and every acknowledged point reads back.
//! - The same with the DataNode receiving the new replica SIGKILLed (and restarted) while
//!   the replica is being added: the transfer starts again and finishes.
//! - `REMOVE DATANODE` of a node holding single-replica groups (`factor 1`: the only copy
//!   moves, snapshot and WAL tail) while a client writes: the node leaves `SHOW CLUSTER`
//!   and stops itself, and every acknowledged point reads back. Refusals (an unknown
//!   node, a destination already holding the region, a removal below the replication
//!   factor, a removal of the node while it is down and holds the only copies) change
//!   nothing.
//! - `REMOVE CONFIGNODE` of the leader (it hands leadership over first), then of a
//!   follower with the script; the last one is refused.
//! - `REMOVE DATANODE` of a node that holds nothing, sent through that node: it is
//!   removed at once, and still answers before it stops.
//! - `MIGRATE REGION` of a single-replica SchemaRegion while a client creates series,
//!   with the ConfigNode aborting right after the move (`MigrateRegion.SchemaMoved`):
//!   after its restart the migration finishes, every acknowledged series is listed
//!   through every DataNode, the old directory is gone, and `REMOVE DATANODE` of the new
//!   holder moves it again.
//! - `MIGRATE REGION` of a single-replica SchemaRegion to a DataNode SIGKILLed right after
//!   the statement: the copy fails and is tried again (the region refusing changes
//!   meanwhile, answered 606) until that DataNode is back; then it moves and every
//!   acknowledged series is listed.
//! - `MIGRATE REGION` of the leader replica of a SchemaRegion replicated by Raft
//!   (`schema_replication_factor=2`) while series are created: the new replica joins the
//!   Raft group, catches up, takes leadership, the old one leaves; every acknowledged
//!   series is listed through every DataNode, also after the new leader's DataNode is
//!   removed (its replica moves the same way).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use iotdb_net::BlockingClient;
use iotdb_tests::TestCluster;
use iotdb_tests::cluster::text_rows;
use iotdb_tests::load::{Writer, check_rounds};

const BINARY: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
/// Ends a hung wait on a loaded 2-core machine; migrations ship a snapshot first.
const PATIENCE: Duration = Duration::from_secs(60);
/// One region replica as `SHOW DATA REGIONS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Replica {
    region: u32,
    data_node: u32,
    status: String,
    leader: bool,
}

fn data_replicas(client: &mut BlockingClient) -> anyhow::Result<Vec<Replica>> {
    let result = client.execute_sql("SHOW DATA REGIONS")?;
    Ok(text_rows(&result)
        .iter()
        .map(|row| Replica {
            region: row["RegionId"].parse().unwrap(),
            data_node: row["DataNodeId"].parse().unwrap(),
            status: row["Status"].clone(),
            leader: row["Role"] == "Leader",
        })
        .collect())
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

/// Every acknowledged round of every device reads back through DataNode `via`.
fn check_points(cluster: &TestCluster, via: usize, database: &str, acked: &BTreeSet<i64>) {
    let mut client = cluster.client(via).unwrap();
    check_rounds(&mut client, database, acked, PATIENCE);
}

/// Runs `sbin/<script> args... --timeout 60` with the binaries under test and no
/// configuration file; its standard output (it must succeed).
fn run_script(script: &str, args: &[&str]) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_iotdb-ctl-under-test"),
        bin.join("iotdb-ctl"),
    )
    .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("sbin")
        .join(script);
    let output = std::process::Command::new(&path)
        .args(args)
        .args(["--timeout", "60"])
        .env("IOTDB_BIN_DIR", &bin)
        .env("IOTDB_CONF", scratch.path().join("none.toml"))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script}: {printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    printed
}

fn error_of(client: &mut BlockingClient, statement: &str) -> String {
    match client.execute_sql(statement) {
        Ok(result) => panic!("{statement} succeeded: {result:?}"),
        Err(error) => error.to_string(),
    }
}

/// A 1C3D cluster (one core per DataNode) of `factor` replicas and three data region
/// groups per database, every node Running.
fn start_1c3d(factor: &str) -> TestCluster {
    start_1c3d_with(&replicated(factor))
}

/// Settings for `factor` replicas and three data region groups per database.
fn replicated(factor: &str) -> [(&str, &str); 3] {
    [
        ("data_replication_factor", factor),
        ("data_region_group_extension_policy", "CUSTOM"),
        ("default_data_region_group_num_per_database", "3"),
    ]
}

/// A 1C3D cluster (one core per DataNode) with `settings`, every node Running.
fn start_1c3d_with(settings: &[(&str, &str)]) -> TestCluster {
    start_c3d_with(1, settings)
}

/// `config_nodes` ConfigNodes and three DataNodes (one core each) with `settings`, every
/// node Running.
fn start_c3d_with(config_nodes: usize, settings: &[(&str, &str)]) -> TestCluster {
    let cluster = TestCluster::start_configured(BINARY, config_nodes, 3, 1, settings)
        .expect("start the cluster");
    cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == config_nodes + 3 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();
    cluster
}

/// What is SIGKILLed (and restarted half a second later) once a migration's new replica
/// is listed.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// The ConfigNode: its procedure resumes after the restart.
    ConfigNode,
    /// The DataNode receiving the new replica: the transfer starts again.
    Target,
    /// The leading ConfigNode of three, not restarted: the ConfigNode elected in its place
    /// resumes the procedure from the replicated state.
    ConfigNodeLeader,
}

#[test]
fn migrate_region_of_a_leader_finishes_after_a_config_node_kill() {
    migrate_region_of_a_leader_through(Crash::ConfigNode);
}

#[test]
fn migrate_region_of_a_leader_finishes_after_a_target_data_node_kill() {
    migrate_region_of_a_leader_through(Crash::Target);
}

#[test]
fn migrate_region_of_a_leader_finishes_after_the_config_node_leader_is_lost() {
    migrate_region_of_a_leader_through(Crash::ConfigNodeLeader);
}

/// `MIGRATE REGION` of a group's leader replica to the DataNode without one, while a
/// client writes, with `crash` in the middle: the migration finishes, the new replica
/// leads, nothing else moved, every acknowledged point reads back through every DataNode
/// and the old replica's files are gone.
fn migrate_region_of_a_leader_through(crash: Crash) {
    let config_nodes = match crash {
        Crash::ConfigNodeLeader => 3,
        Crash::ConfigNode | Crash::Target => 1,
    };
    let mut cluster = start_c3d_with(config_nodes, &replicated("2"));
    let database = "root.mig";
    let writer = Writer::start(cluster.data_nodes[0].address(), database, 0, PATIENCE);
    wait_for("first writes", || (writer.acked() >= 5).then_some(()));

    // A group led by a DataNode, moved to the DataNode that has no replica of it.
    let before = data_replicas(&mut cluster.client(0).unwrap()).unwrap();
    let data_nodes: BTreeSet<u32> = before.iter().map(|r| r.data_node).collect();
    assert_eq!(data_nodes.len(), 3, "{before:?}");
    let leader = before.iter().find(|r| r.leader).expect("a leader").clone();
    let holders: BTreeSet<u32> = before
        .iter()
        .filter(|r| r.region == leader.region)
        .map(|r| r.data_node)
        .collect();
    let target = *data_nodes
        .difference(&holders)
        .next()
        .expect("a third node");
    // Statements go through a DataNode that stays up.
    let target_index = cluster.data_node_index(target, 0);
    let observer = [1, 2, 0]
        .into_iter()
        .find(|index| *index != target_index)
        .unwrap();
    let mut admin = cluster.client(observer).unwrap();

    // Refusals change nothing.
    let other = *holders.iter().find(|n| **n != leader.data_node).unwrap();
    let refused = error_of(
        &mut admin,
        &format!(
            "MIGRATE REGION {} FROM {} TO {other}",
            leader.region, leader.data_node
        ),
    );
    assert!(refused.contains("already holds"), "{refused}");
    let refused = error_of(&mut admin, "REMOVE DATANODE 99");
    assert!(refused.contains("99 does not exist"), "{refused}");
    assert_eq!(data_replicas(&mut admin).unwrap(), before);

    let started = Instant::now();
    admin
        .execute_sql(&format!(
            "MIGRATE REGION {} FROM {} TO {target}",
            leader.region, leader.data_node
        ))
        .expect("MIGRATE REGION");
    // The new replica shows up `Adding`; then a node dies mid-migration.
    let listed = wait_for("the new replica listed", || {
        let rows = data_replicas(&mut cluster.client(observer).ok()?).ok()?;
        rows.into_iter()
            .find(|r| r.region == leader.region && r.data_node == target)
    });
    eprintln!(
        "{crash:?} killed while the new replica is {}",
        listed.status
    );
    let config_leader = |cluster: &TestCluster| {
        cluster
            .show_config_nodes(observer)
            .ok()?
            .into_iter()
            .find(|(_, _, role)| role == "Leader")
            .map(|(id, _, _)| id)
    };
    let lost_leader = config_leader(&cluster).expect("a ConfigNode leader");
    let victim = match crash {
        Crash::ConfigNode => &mut cluster.config_nodes[0],
        Crash::Target => &mut cluster.data_nodes[target_index],
        Crash::ConfigNodeLeader => &mut cluster.config_nodes[lost_leader as usize],
    };
    victim.kill().expect("SIGKILL");
    if !matches!(crash, Crash::ConfigNodeLeader) {
        std::thread::sleep(Duration::from_millis(500));
        victim.restart().expect("restart");
    }

    let after = wait_for("the migration finished", || {
        let rows = data_replicas(&mut cluster.client(observer).ok()?).ok()?;
        let group: Vec<&Replica> = rows.iter().filter(|r| r.region == leader.region).collect();
        let nodes: BTreeSet<u32> = group.iter().map(|r| r.data_node).collect();
        let settled = group.iter().all(|r| r.status == "Running");
        (nodes == BTreeSet::from([other, target]) && settled).then_some(rows)
    });
    eprintln!(
        "region {} moved from DataNode {} to {target} in {:?} ({crash:?} killed midway)",
        leader.region,
        leader.data_node,
        started.elapsed()
    );
    if matches!(crash, Crash::ConfigNodeLeader) {
        let leader = wait_for("a ConfigNode leader listed", || config_leader(&cluster));
        assert_ne!(leader, lost_leader, "another ConfigNode leads");
    }
    let new_leader = after
        .iter()
        .find(|r| r.region == leader.region && r.leader)
        .unwrap();
    assert_eq!(
        new_leader.data_node, target,
        "the new replica took leadership: {after:?}"
    );
    // Other groups did not move.
    for replica in before.iter().filter(|r| r.region != leader.region) {
        assert!(
            after
                .iter()
                .any(|r| r.region == replica.region && r.data_node == replica.data_node),
            "{replica:?} moved: {after:?}"
        );
    }

    // Writes went on; every acknowledged point reads back through every DataNode.
    std::thread::sleep(Duration::from_millis(300));
    let acked = writer.finish();
    assert!(acked.len() > 10, "{} rounds", acked.len());
    for via in 0..3 {
        check_points(&cluster, via, database, &acked);
    }
    // The old replica's files are gone.
    let old = cluster.data_node_index(leader.data_node, 0);
    let dir = cluster.data_nodes[old]
        .data_dir()
        .join("datanode")
        .join("data")
        .join(format!("region-{}", leader.region));
    wait_for("the old replica's directory removed", || {
        (!dir.exists()).then_some(())
    });
}

#[test]
fn remove_data_node_moves_its_only_copies_and_stops_it() {
    let mut cluster = start_1c3d("1");
    let database = "root.rm";
    let writer = Writer::start(cluster.data_nodes[0].address(), database, 0, PATIENCE);
    wait_for("first writes", || (writer.acked() >= 5).then_some(()));

    let mut admin = cluster.client(0).unwrap();
    let schema = admin.execute_sql("SHOW SCHEMA REGIONS").unwrap();
    let schema_holders: BTreeSet<u32> = text_rows(&schema)
        .iter()
        .map(|row| row["DataNodeId"].parse().unwrap())
        .collect();
    let replicas = data_replicas(&mut admin).unwrap();
    let victim = replicas
        .iter()
        .map(|r| r.data_node)
        .find(|n| !schema_holders.contains(n))
        .expect("a DataNode with data regions and no SchemaRegion");
    let victim_index = cluster.data_node_index(victim, 0);
    assert_ne!(
        victim_index, 0,
        "the writer's DataNode holds the SchemaRegion"
    );
    let moved: Vec<u32> = replicas
        .iter()
        .filter(|r| r.data_node == victim)
        .map(|r| r.region)
        .collect();

    // While it is down its only copies cannot be sent: the removal is refused, nothing
    // changes, and it is removed once it runs again.
    cluster.data_nodes[victim_index].kill().expect("SIGKILL");
    cluster
        .wait_for_cluster(0, PATIENCE, "the killed DataNode Unknown", |rows| {
            rows.iter()
                .any(|row| row.node_id == victim && row.status == "Unknown")
        })
        .unwrap();
    let refused = error_of(&mut admin, &format!("REMOVE DATANODE {victim}"));
    assert!(
        refused.contains("it is Unknown and holds the only replica of DataRegion"),
        "{refused}"
    );
    assert_eq!(
        data_replicas(&mut admin)
            .unwrap()
            .iter()
            .filter(|r| r.data_node == victim)
            .map(|r| r.region)
            .collect::<Vec<_>>(),
        moved
    );
    cluster.data_nodes[victim_index].restart().expect("restart");
    cluster
        .wait_for_cluster(0, PATIENCE, "the restarted DataNode Running", |rows| {
            rows.iter()
                .all(|row| row.node_id != victim || row.status == "Running")
        })
        .unwrap();

    // As the seed does it: `sbin/remove-datanode.sh ip:port` (here through DataNode 0,
    // naming the victim by its client address), which waits for the end.
    let started = Instant::now();
    let victim_address = cluster.data_nodes[victim_index].address().to_string();
    let printed = run_script(
        "remove-datanode.sh",
        &[
            &victim_address,
            "-h",
            &cluster.data_nodes[0].address().to_string(),
        ],
    );
    assert!(
        printed.contains(&format!("DataNode {victim} removed")),
        "{printed}"
    );
    eprint!("{printed}");
    cluster
        .wait_for_cluster(0, PATIENCE, "the removed DataNode gone", |rows| {
            rows.iter().all(|row| row.node_id != victim)
        })
        .unwrap();
    let status = cluster.data_nodes[victim_index]
        .wait_exit(PATIENCE)
        .expect("the removed DataNode stops itself");
    assert!(status.success(), "{status:?}");
    eprintln!(
        "DataNode {victim} removed in {:?}; its regions {moved:?} moved",
        started.elapsed()
    );
    let after = data_replicas(&mut admin).unwrap();
    for region in &moved {
        let holders: Vec<&Replica> = after.iter().filter(|r| r.region == *region).collect();
        assert_eq!(holders.len(), 1, "region {region}: {after:?}");
        assert_ne!(holders[0].data_node, victim);
    }

    // With two DataNodes left and factor 1, removing one more is allowed; with factor 2
    // it would not be: the refusal is checked on a database of factor 2.
    admin
        .execute_sql("CREATE DATABASE root.two WITH DATA_REPLICATION_FACTOR=2")
        .expect("a database of factor 2");
    let survivor = cluster
        .show_cluster(0)
        .unwrap()
        .iter()
        .find(|row| row.node_type == "DataNode")
        .map(|row| row.node_id)
        .unwrap();
    let refused = error_of(&mut admin, &format!("REMOVE DATANODE {survivor}"));
    assert!(refused.contains("replication factor 2"), "{refused}");

    std::thread::sleep(Duration::from_millis(300));
    let acked = writer.finish();
    assert!(acked.len() > 10, "{} rounds", acked.len());
    check_points(&cluster, 0, database, &acked);
    // A restart of the remaining cluster keeps every point.
    for index in (0..3).filter(|i| *i != victim_index) {
        cluster.data_nodes[index].stop().expect("stop");
        cluster.data_nodes[index].restart().expect("restart");
    }
    check_points(&cluster, 0, database, &acked);
}

#[test]
fn remove_config_node_shrinks_the_group_the_leader_included_and_refuses_the_last() {
    let mut cluster = TestCluster::start_with(BINARY, 3, 1, 1).expect("start 3C1D");
    let all_running = |rows: &[(u32, String, String)]| {
        rows.len() == 3 && rows.iter().all(|(_, status, _)| status == "Running")
    };
    let rows = wait_for("three ConfigNodes Running", || {
        let rows = cluster.show_config_nodes(0).ok()?;
        all_running(&rows).then_some(rows)
    });
    let leader = rows.iter().find(|(_, _, role)| role == "Leader").unwrap().0;
    let mut admin = cluster.client(0).unwrap();
    let refused = error_of(&mut admin, "REMOVE CONFIGNODE 77");
    assert!(refused.contains("77 does not exist"), "{refused}");

    // The leader: it hands leadership over, the next leader removes it, it stops itself.
    let started = Instant::now();
    admin
        .execute_sql(&format!("REMOVE CONFIGNODE {leader}"))
        .expect("REMOVE CONFIGNODE of the leader");
    let status = cluster.config_nodes[leader as usize]
        .wait_exit(PATIENCE)
        .expect("the removed leader stops itself");
    assert!(status.success(), "{status:?}");
    let rows = wait_for("two ConfigNodes listed, one leading", || {
        let rows = cluster.show_config_nodes(0).ok()?;
        (rows.len() == 2 && rows.iter().any(|(_, _, role)| role == "Leader")).then_some(rows)
    });
    assert!(rows.iter().all(|(id, _, _)| *id != leader), "{rows:?}");
    eprintln!(
        "the leading ConfigNode {leader} removed in {:?}",
        started.elapsed()
    );
    // The two that remain still commit: a database and a write.
    admin
        .execute_sql("INSERT INTO root.cn.d1(time, s1) VALUES (1, 1)")
        .expect("a write after the removal");

    // The leader now: removing the other one leaves one; the last is refused.
    let rows = cluster.show_config_nodes(0).unwrap();
    let leader = rows.iter().find(|(_, _, role)| role == "Leader").unwrap().0;
    let other = rows.iter().find(|(id, _, _)| *id != leader).unwrap().0;
    let printed = run_script(
        "remove-confignode.sh",
        &[
            &other.to_string(),
            "-h",
            &cluster.data_nodes[0].address().to_string(),
        ],
    );
    assert!(
        printed.contains(&format!("ConfigNode {other} removed")),
        "{printed}"
    );
    cluster.config_nodes[other as usize]
        .wait_exit(PATIENCE)
        .expect("the second removed ConfigNode stops itself");
    let refused = wait_for("the last ConfigNode refused", || {
        let message = error_of(&mut admin, &format!("REMOVE CONFIGNODE {leader}"));
        message.contains("the last ConfigNode").then_some(message)
    });
    eprintln!("{refused}");
    admin
        .execute_sql("INSERT INTO root.cn.d1(time, s1) VALUES (2, 2)")
        .expect("a write with one ConfigNode left");
}

#[test]
fn remove_data_node_holding_nothing_answers_the_client_it_was_sent_through() {
    // No database: no DataNode holds a replica, so a removal finishes at once, and the
    // news reaches the removed node with the answer to its own REMOVE DATANODE.
    let mut cluster = start_1c3d("1");
    let rows = cluster.show_cluster(0).unwrap();
    let victim = rows
        .iter()
        .filter(|row| row.node_type == "DataNode")
        .map(|row| row.node_id)
        .find(|id| cluster.data_node_index(*id, 0) != 0)
        .unwrap();
    let victim_index = cluster.data_node_index(victim, 0);
    let mut through_itself = cluster.client(victim_index).unwrap();
    through_itself
        .execute_sql(&format!("REMOVE DATANODE {victim}"))
        .expect("the answer to REMOVE DATANODE reaches the client before the node stops");
    let status = cluster.data_nodes[victim_index]
        .wait_exit(PATIENCE)
        .unwrap_or_else(|e| {
            let log = cluster.data_nodes[victim_index].log_tail();
            panic!("the removed DataNode did not stop itself: {e}\n{log}")
        });
    assert!(status.success(), "{status:?}");
    let after = cluster.show_cluster(0).unwrap();
    assert!(after.iter().all(|row| row.node_id != victim), "{after:?}");
    assert_eq!(after.len(), rows.len() - 1, "{after:?}");
}

/// `SHOW SCHEMA REGIONS` as (region, DataNode, status) rows.
fn schema_replicas(client: &mut BlockingClient) -> anyhow::Result<Vec<(u32, u32, String)>> {
    let result = client.execute_sql("SHOW SCHEMA REGIONS")?;
    Ok(text_rows(&result)
        .iter()
        .map(|row| {
            (
                row["RegionId"].parse().unwrap(),
                row["DataNodeId"].parse().unwrap(),
                row["Status"].clone(),
            )
        })
        .collect())
}

/// Creates series `{database}.c{k}.s1` for k = `next`, `next + 1`, ... through `client`
/// until `until(next)` says stop, retrying a refused one (606 while its SchemaRegion is copied)
/// for at most `PATIENCE`; returns the next k. Each acknowledged k goes into `acked`.
fn create_series_until(
    client: &mut BlockingClient,
    database: &str,
    next: &mut u32,
    acked: &mut BTreeSet<u32>,
    mut until: impl FnMut(u32) -> bool,
) -> usize {
    let mut refusals = 0;
    let mut refused_since: Option<Instant> = None;
    while !until(*next) {
        let statement = format!("CREATE TIMESERIES {database}.c{next}.s1 WITH DATATYPE=INT64");
        match client.execute_sql(&statement) {
            Ok(_) => {
                acked.insert(*next);
                *next += 1;
                refused_since = None;
            }
            Err(error) => {
                let since = *refused_since.get_or_insert_with(Instant::now);
                assert!(since.elapsed() < PATIENCE, "{statement}: {error}");
                refusals += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    refusals
}

/// Creates `database` and its first 20 series through DataNode `via`: the client, the
/// next series number and the acknowledged ones, for [`create_series_until`].
fn start_creating(
    cluster: &TestCluster,
    via: usize,
    database: &str,
) -> (BlockingClient, u32, BTreeSet<u32>) {
    let mut creator = cluster.client(via).unwrap();
    creator
        .execute_sql(&format!("CREATE DATABASE {database}"))
        .unwrap();
    let (mut next, mut acked) = (0, BTreeSet::new());
    create_series_until(&mut creator, database, &mut next, &mut acked, |next| {
        next >= 20
    });
    (creator, next, acked)
}

#[test]
fn migrate_a_single_replica_schema_region_while_series_are_created() {
    let mut cluster = start_1c3d("1");
    let database = "root.sch";
    let mut admin = cluster.client(0).unwrap();
    let (mut creator, mut next, mut acked) = start_creating(&cluster, 1, database);
    let before = schema_replicas(&mut admin).unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    let (region, from, _) = before[0].clone();
    let to = cluster
        .show_cluster(0)
        .unwrap()
        .iter()
        .find(|row| row.node_type == "DataNode" && row.node_id != from)
        .map(|row| row.node_id)
        .unwrap();
    let refused = error_of(
        &mut admin,
        &format!("MIGRATE REGION {region} FROM {to} TO {from}"),
    );
    assert!(refused.contains("holds no replica"), "{refused}");
    assert_eq!(schema_replicas(&mut admin).unwrap(), before);

    // The ConfigNode aborts right after moving the replica, before finishing.
    cluster.config_nodes[0].stop().expect("stop the ConfigNode");
    cluster.config_nodes[0].options_mut().env.push((
        "IOTDB_KILL_POINT".into(),
        "MigrateRegion.SchemaMoved".into(),
    ));
    cluster.config_nodes[0].restart().expect("restart armed");
    let mut admin = cluster.client(0).unwrap();
    let started = Instant::now();
    admin
        .execute_sql(&format!("MIGRATE REGION {region} FROM {from} TO {to}"))
        .expect("MIGRATE REGION");
    let cn = &mut cluster.config_nodes[0];
    let refusals = create_series_until(&mut creator, database, &mut next, &mut acked, |_| {
        !cn.is_running() || started.elapsed() > PATIENCE
    });
    assert!(
        started.elapsed() < PATIENCE,
        "the ConfigNode never reached MigrateRegion.SchemaMoved"
    );
    cluster.config_nodes[0].options_mut().env.clear();
    cluster.config_nodes[0]
        .restart()
        .expect("restart the ConfigNode");
    let mut admin = cluster.client(0).unwrap();
    wait_for("the migration finished", || {
        let rows = schema_replicas(&mut admin).ok()?;
        (rows == vec![(region, to, "Running".to_string())]).then_some(())
    });
    eprintln!(
        "schema region {region} moved from DataNode {from} to {to} in {:?} (ConfigNode \
         aborted after the move); {refusals} creations refused while it was copied",
        started.elapsed()
    );
    // Creating goes on through the new holder; every acknowledged series is listed
    // through every DataNode.
    let until = next + 20;
    create_series_until(&mut creator, database, &mut next, &mut acked, |next| {
        next >= until
    });
    for via in 0..3 {
        let mut client = cluster.client(via).unwrap();
        let listed: BTreeSet<u32> = wait_for("every series listed", || {
            let result = client
                .execute_sql(&format!("SHOW TIMESERIES {database}.**"))
                .ok()?;
            let listed: BTreeSet<u32> = text_rows(&result)
                .iter()
                .map(|row| {
                    row["Timeseries"]
                        .strip_prefix(&format!("{database}.c"))
                        .and_then(|rest| rest.strip_suffix(".s1"))
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            (listed == acked).then_some(listed)
        });
        assert_eq!(listed.len(), acked.len());
    }
    let old = cluster.data_node_index(from, 0);
    let dir = cluster.data_nodes[old]
        .data_dir()
        .join("datanode")
        .join("schema")
        .join(format!("region-{region}"));
    wait_for("the old replica's directory removed", || {
        (!dir.exists()).then_some(())
    });

    // Removing the new holder moves the region once more, and its series with it.
    let holder = cluster.data_node_index(to, 0);
    let via = (0..3).find(|i| *i != holder).unwrap();
    let mut admin = cluster.client(via).unwrap();
    admin
        .execute_sql(&format!("REMOVE DATANODE {to}"))
        .expect("REMOVE DATANODE");
    cluster.data_nodes[holder]
        .wait_exit(PATIENCE)
        .expect("the removed DataNode stops itself");
    let rows = wait_for("the region moved again", || {
        let rows = schema_replicas(&mut admin).ok()?;
        (rows.len() == 1 && rows[0].1 != to && rows[0].2 == "Running").then_some(rows)
    });
    assert_eq!(rows[0].0, region);
    // Once the asked DataNode's mirror follows (a heartbeat), it counts every series.
    let mut last = None;
    let counted = Instant::now();
    loop {
        let count = admin
            .execute_sql(&format!("COUNT TIMESERIES {database}.**"))
            .map(|result| text_rows(&result)[0]["count(timeseries)"].clone());
        if count.as_deref().ok() == Some(acked.len().to_string().as_str()) {
            break;
        }
        assert!(
            counted.elapsed() < Duration::from_secs(10),
            "COUNT TIMESERIES: {count:?}, then {last:?}; {} acknowledged",
            acked.len()
        );
        last = Some(count);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn migrate_a_raft_schema_region_leader_while_series_are_created() {
    let cluster = start_1c3d_with(&[
        ("data_replication_factor", "1"),
        ("schema_replication_factor", "2"),
    ]);
    let database = "root.raftsch";
    let mut admin = cluster.client(0).unwrap();
    let (mut creator, mut next, mut acked) = start_creating(&cluster, 0, database);
    let leader_of = |admin: &mut BlockingClient| -> Option<(u32, u32, BTreeSet<u32>)> {
        let result = admin.execute_sql("SHOW SCHEMA REGIONS").ok()?;
        let rows = text_rows(&result);
        // Settled: every replica Running (none `Adding` or `Removing`).
        if rows.iter().any(|row| row["Status"] != "Running") {
            return None;
        }
        let leader = rows.iter().find(|row| row["Role"] == "Leader")?;
        let holders = rows
            .iter()
            .map(|row| row["DataNodeId"].parse().unwrap())
            .collect();
        Some((
            leader["RegionId"].parse().unwrap(),
            leader["DataNodeId"].parse().unwrap(),
            holders,
        ))
    };
    let (region, from, holders) = wait_for("a schema leader", || leader_of(&mut admin));
    assert_eq!(holders.len(), 2, "{holders:?}");
    let to = (1..=3).find(|n| !holders.contains(n)).unwrap();
    let stay = *holders.iter().find(|n| **n != from).unwrap();

    // Through `iotdb-ctl migrate-region`, which waits for the end, while series are
    // created.
    let started = Instant::now();
    let ctl = std::process::Command::new(env!("CARGO_BIN_EXE_iotdb-ctl-under-test"))
        .args(["-h", &cluster.data_nodes[1].address().to_string()])
        .args(["migrate-region", &region.to_string()])
        .args([from.to_string(), to.to_string()])
        .args(["--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("iotdb-ctl migrate-region");
    let mut ctl = Some(ctl);
    let mut output = None;
    let refusals = create_series_until(&mut creator, database, &mut next, &mut acked, |_| {
        if let Some(child) = ctl.as_mut()
            && child.try_wait().unwrap().is_some()
        {
            output = Some(ctl.take().unwrap().wait_with_output().unwrap());
        }
        output.is_some() || started.elapsed() > PATIENCE
    });
    let output = output.expect("iotdb-ctl migrate-region did not return");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && printed.contains(&format!("region {region} migrated")),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, leader, holders) = leader_of(&mut admin).expect("settled");
    assert_eq!(holders, BTreeSet::from([stay, to]));
    // The old leader hands leadership to the new replica; but the group may have elected
    // `stay` on its own between the listing above and the hand-over step (a loaded
    // machine delays a heartbeat), and then the migration leaves leadership where it is.
    assert!(
        leader == to || leader == stay,
        "leader {leader} after migrating {from} -> {to}"
    );
    eprintln!(
        "Raft schema region {region}: moved from DataNode {from} to {to} in {:?}, leader \
         {leader}; {refusals} creations refused meanwhile",
        started.elapsed()
    );
    let until = next + 20;
    create_series_until(&mut creator, database, &mut next, &mut acked, |next| {
        next >= until
    });
    let listed_everywhere = |cluster: &TestCluster, vias: &[usize], acked: &BTreeSet<u32>| {
        for &via in vias {
            let mut client = cluster.client(via).unwrap();
            wait_for("every series listed", || {
                let result = client
                    .execute_sql(&format!("COUNT TIMESERIES {database}.**"))
                    .ok()?;
                (text_rows(&result)[0]["count(timeseries)"] == acked.len().to_string())
                    .then_some(())
            });
        }
    };
    listed_everywhere(&cluster, &[0, 1, 2], &acked);

    // Removing the leader's DataNode moves its replica the same way.
    let mut cluster = cluster;
    let holder = cluster.data_node_index(leader, 0);
    let via = (0..3).find(|i| *i != holder).unwrap();
    let mut admin = cluster.client(via).unwrap();
    admin
        .execute_sql(&format!("REMOVE DATANODE {leader}"))
        .expect("REMOVE DATANODE");
    cluster.data_nodes[holder]
        .wait_exit(PATIENCE)
        .expect("the removed DataNode stops itself");
    wait_for("two Running replicas elsewhere", || {
        leader_of(&mut admin)
            .filter(|(_, _, holders)| holders.len() == 2 && !holders.contains(&leader))
    });
    let mut creator = cluster.client(via).unwrap();
    let until = next + 10;
    create_series_until(&mut creator, database, &mut next, &mut acked, |next| {
        next >= until
    });
    let vias: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    listed_everywhere(&cluster, &vias, &acked);
}

#[test]
fn a_schema_region_copy_to_a_killed_data_node_is_retried_until_it_is_back() {
    let mut cluster = start_1c3d("1");
    let database = "root.retry";
    let (mut creator, mut next, mut acked) = start_creating(&cluster, 0, database);
    let mut admin = cluster.client(0).unwrap();
    let before = schema_replicas(&mut admin).unwrap();
    let (region, from, _) = before[0].clone();
    // The destination: neither the holder nor the creator's DataNode (index 0).
    let to = (1..=3)
        .find(|n| *n != from && cluster.data_node_index(*n, 0) != 0)
        .unwrap();
    let index = cluster.data_node_index(to, 0);
    admin
        .execute_sql(&format!("MIGRATE REGION {region} FROM {from} TO {to}"))
        .expect("MIGRATE REGION");
    cluster.data_nodes[index]
        .kill()
        .expect("SIGKILL the destination");
    let killed = Instant::now();
    // Creations go on (refused while the region waits for its copy); the destination
    // comes back after 3 s.
    let refusals = create_series_until(&mut creator, database, &mut next, &mut acked, |_| {
        killed.elapsed() > Duration::from_secs(3)
    });
    cluster.data_nodes[index]
        .restart()
        .expect("restart the destination");
    wait_for("the region moved", || {
        let rows = schema_replicas(&mut admin).ok()?;
        (rows == vec![(region, to, "Running".to_string())]).then_some(())
    });
    eprintln!(
        "schema region {region} moved to DataNode {to} {:?} after it was killed; {refusals} \
         creations refused meanwhile",
        killed.elapsed()
    );
    let until = next + 10;
    create_series_until(&mut creator, database, &mut next, &mut acked, |next| {
        next >= until
    });
    let mut client = cluster.client(index).unwrap();
    wait_for("every series listed", || {
        let result = client
            .execute_sql(&format!("COUNT TIMESERIES {database}.**"))
            .ok()?;
        (text_rows(&result)[0]["count(timeseries)"] == acked.len().to_string()).then_some(())
    });
}
