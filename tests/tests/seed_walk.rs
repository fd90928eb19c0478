//! The seed article's walk through a cluster's life (`shared/seeds/000_*.txt`), as an
//! operator runs it: every step through the `sbin/` scripts of an installation directory
//! per machine (`bin/`, `sbin/`, `conf/iotdb-system.toml`, then `logs/` and `data/`, the
//! layout `sbin/dist.sh` packs), each machine a 127.0.0.x host of its own.
//!
//! 1. Start a 3C3D cluster in the seed's order: the ConfigNodes (the first founds the
//!    cluster), then the DataNodes; `show cluster` lists ConfigNodes 0–2 and DataNodes 3–5,
//!    all Running.
//! 2. Create a database; a client writes rounds of points through the first DataNode
//!    from here to step 5 (so does the second client of step 3); `show regions` places every DataRegion on two DataNodes.
//! 3. Expand: a fourth machine's `start-datanode.sh`; it joins as DataNode 6. New series,
//!    written by a second client from now on, go to a region group placed on it too (the
//!    database grows one with the cluster).
//! 4. Shrink while the client writes: `remove-datanode.sh ip:port` on the fourth machine,
//!    then `remove-datanode.sh <id>` on the second or third machine, one whose DataNode
//!    holds a SchemaRegion (when the first DataNode holds them all, `MIGRATE REGION`
//!    moves one there first). Their DataRegion replicas move, and a
//!    SchemaRegion (one replica: `schema_replication_factor=1`) is copied whole to
//!    another DataNode (the script asks the DataNode it removes, so `iotdb-ctl` moves to
//!    another one first); each leaves `show cluster`, holds no replica and stops itself;
//!    every DataRegion keeps two Running replicas and every SchemaRegion is on a
//!    remaining DataNode.
//! 5. Stop the client and check every acknowledged point, then stop the cluster in the
//!    seed's order: every DataNode, then every ConfigNode.
//! 6. Upgrade: on each machine `bin/` and `sbin/` are replaced by those of a new release
//!    directory (copies of the binaries, standing in for a newer build); start again.
//!    Every node runs the new binaries, keeps its id, and every acknowledged point reads
//!    back through every DataNode.
//! 7. Clean: stop, `destroy-all.sh -f` on every machine; a fresh 3C3D starts from the
//!    cleaned directories (new ids from 0, no database).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iotdb_tests::installation::{
    self, Guard, Scripts, alive, cluster_rows, copy_sbin, free_ports, machine_conf, read_pid,
    running_cluster, with_key,
};
use iotdb_tests::load::{Writer, check_rounds};
use iotdb_tests::server::next_loopback_host;

const SERVER: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
const CTL: &str = env!("CARGO_BIN_EXE_iotdb-ctl-under-test");
/// Ends a hung wait on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);
const DATABASE: &str = "root.seed";
/// The devices a second client writes after the expansion: new series of the database,
/// whose new partitions go to the region group its growth (more DataNodes) adds.
const GROWN: &str = "root.seed.grown";

/// One machine of the seed: an installation directory on a loopback host of its own.
struct Machine {
    home: PathBuf,
    ip: Ipv4Addr,
    cn_internal_port: u16,
    dn_rpc_port: u16,
    dn_internal_port: u16,
    scripts: Scripts,
}

/// A `show cluster` row: (NodeID, NodeType, Status, InternalAddress:InternalPort).
type Row = (String, String, String, String);

impl Machine {
    /// Unpacks an installation under `root/name` whose configuration names `seed` (a
    /// ConfigNode's internal address; `None`: this machine's own ConfigNode founds the
    /// cluster) and the cluster-wide keys of this walk.
    fn install(root: &Path, name: &str, seed: Option<&str>) -> Machine {
        let home = root.join(name);
        std::fs::create_dir_all(home.join("conf")).unwrap();
        copy_sbin(&home.join("sbin"));
        installation::bin_dir(&home, SERVER, CTL);
        let ip = next_loopback_host();
        let ports = free_ports(ip, 6);
        let own_seed = format!("{ip}:{}", ports[0]);
        let mut conf = machine_conf("seedWalk", ip, &ports, seed.unwrap_or(&own_seed));
        for (key, value) in [
            ("dn_pin_shards_to_cores", "false"),
            ("data_replication_factor", "2"),
        ] {
            conf = with_key(&conf, key, value);
        }
        std::fs::write(home.join("conf/iotdb-system.toml"), conf).unwrap();
        let scripts = Scripts {
            sbin: home.join("sbin"),
            env: vec![("HOME", home.clone())],
        };
        Machine {
            home,
            ip,
            cn_internal_port: ports[0],
            dn_rpc_port: ports[2],
            dn_internal_port: ports[3],
            scripts,
        }
    }

    fn cn_internal(&self) -> String {
        format!("{}:{}", self.ip, self.cn_internal_port)
    }

    fn dn_internal(&self) -> String {
        format!("{}:{}", self.ip, self.dn_internal_port)
    }

    /// Its DataNode's client address, as `start-cli.sh -h` and `remove-datanode.sh` take it.
    fn rpc(&self) -> String {
        format!("{}:{}", self.ip, self.dn_rpc_port)
    }

    fn pid_file(&self, role: &str) -> PathBuf {
        self.home.join("logs").join(format!("{role}.pid"))
    }

    fn start(&self, role: &str) {
        let run = self.scripts.run(&format!("start-{role}.sh"), &[]).ok();
        assert!(run.stdout.contains("is serving"), "{}", run.text());
    }

    /// Runs `stop-ROLE.sh`; the process its pid file named no longer runs.
    fn stop(&self, role: &str) {
        let pid = read_pid(&self.pid_file(role));
        self.scripts.run(&format!("stop-{role}.sh"), &[]).ok();
        assert!(!alive(&pid), "pid {pid} still runs after stop-{role}.sh");
        assert!(!self.pid_file(role).exists());
    }

    /// `start-cli.sh -h <its DataNode> -e STATEMENT --format csv`.
    fn sql(&self, statement: &str) -> String {
        self.scripts.sql(&self.rpc(), statement)
    }

    /// The program a role's process runs (its pid file's `/proc/PID/exe`).
    fn running_binary(&self, role: &str) -> PathBuf {
        let pid = read_pid(&self.pid_file(role));
        std::fs::read_link(Path::new("/proc").join(pid).join("exe")).unwrap()
    }
}

/// A CSV result of `start-cli.sh --format csv` as column → cell rows (the rows whose
/// first cell is a number: ids lead every admin view).
fn csv_rows(csv: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = csv.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line} under {header:?}");
            header
                .iter()
                .zip(cells)
                .map(|(name, cell)| (name.to_string(), cell.to_string()))
                .collect()
        })
        .collect()
}

/// `show regions` of one kind (`SchemaRegion`, `DataRegion`) as region id → the
/// (DataNodeId, Status) of each replica.
fn regions(machine: &Machine, kind: &str) -> BTreeMap<u32, Vec<(u32, String)>> {
    let mut regions: BTreeMap<u32, Vec<(u32, String)>> = BTreeMap::new();
    for row in csv_rows(&machine.sql("show regions")) {
        if row["Type"] == kind {
            regions
                .entry(row["RegionId"].parse().unwrap())
                .or_default()
                .push((row["DataNodeId"].parse().unwrap(), row["Status"].clone()));
        }
    }
    regions
}

/// Waits until every listed replica is `Running` (a migration's `Adding`/`Removing`
/// replicas settle) and returns the DataRegions.
fn settled_data_regions(machine: &Machine) -> BTreeMap<u32, Vec<(u32, String)>> {
    let started = Instant::now();
    loop {
        let data = regions(machine, "DataRegion");
        if data
            .values()
            .flatten()
            .all(|(_, status)| status == "Running")
        {
            return data;
        }
        assert!(started.elapsed() < PATIENCE, "not settled: {data:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The DataNode ids holding a replica of any region.
fn holders(regions: &BTreeMap<u32, Vec<(u32, String)>>) -> BTreeSet<u32> {
    regions.values().flatten().map(|(node, _)| *node).collect()
}

/// Every DataRegion has two replicas on distinct DataNodes among `nodes`.
#[track_caller]
fn assert_two_replicas_each(regions: &BTreeMap<u32, Vec<(u32, String)>>, nodes: &BTreeSet<u32>) {
    assert!(!regions.is_empty());
    for (region, replicas) in regions {
        let on: BTreeSet<u32> = replicas.iter().map(|(node, _)| *node).collect();
        assert_eq!(on.len(), 2, "region {region}: {replicas:?}");
        assert!(
            on.is_subset(nodes),
            "region {region} on {on:?}, not within {nodes:?}"
        );
    }
}

/// `remove-datanode.sh NODE` on `machine` (asking its own DataNode, as the seed runs it on
/// the node it removes); then the node is gone from `show cluster` asked of `observer`,
/// holds no replica, and its process stopped itself.
fn remove_data_node(machine: &Machine, node: &str, id: u32, observer: &Machine) {
    let held = settled_data_regions(observer)
        .values()
        .flatten()
        .filter(|(node, _)| *node == id)
        .count();
    assert!(
        held > 0,
        "DataNode {id} holds no DataRegion replica to move"
    );
    let started = Instant::now();
    let pid = read_pid(&machine.pid_file("datanode"));
    let run = machine
        .scripts
        .run("remove-datanode.sh", &[node, "--timeout", "60"])
        .ok();
    // The script asked the DataNode it removes; iotdb-ctl moved to another one first.
    assert!(
        run.stdout
            .contains(&format!("DataNode {id} stops itself once removed"))
            && run.stdout.contains(&format!("DataNode {id} removed")),
        "{}",
        run.text()
    );
    let rows = cluster_rows(&observer.sql("show cluster"));
    assert!(rows.iter().all(|row| row.0 != id.to_string()), "{rows:?}");
    let data = settled_data_regions(observer);
    assert!(!holders(&data).contains(&id), "{data:?}");
    let deadline = Instant::now() + PATIENCE;
    while alive(&pid) {
        assert!(
            Instant::now() < deadline,
            "the removed DataNode {id} still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "DataNode {id} removed ({node}) in {:?}; its {held} DataRegion replicas moved",
        started.elapsed()
    );
}

/// Every acknowledged round of each (database, rounds) reads back exactly through
/// `machine`'s DataNode; how many points that is.
fn check_databases(machine: &Machine, acked: &[(&str, BTreeSet<i64>)]) -> usize {
    let mut client = iotdb_net::BlockingClient::connect(
        machine.rpc().as_str(),
        &iotdb_net::ClientConfig::default(),
    )
    .unwrap();
    acked
        .iter()
        .map(|(database, rounds)| {
            assert!(rounds.len() > 10, "{database}: {} rounds", rounds.len());
            check_rounds(&mut client, database, rounds, PATIENCE)
        })
        .sum()
}

/// Starts machines' ConfigNodes, then their DataNodes, in the seed's order.
fn start_cluster(config_nodes: &[&Machine], data_nodes: &[&Machine]) {
    for machine in config_nodes {
        machine.start("confignode");
    }
    for machine in data_nodes {
        machine.start("datanode");
    }
}

/// Stops every DataNode, then every ConfigNode, with the stop scripts.
fn stop_cluster(config_nodes: &[&Machine], data_nodes: &[&Machine]) {
    for machine in data_nodes {
        machine.stop("datanode");
    }
    for machine in config_nodes {
        machine.stop("confignode");
    }
}

/// On each machine, the seed's upgrade: `bin/` and `sbin/` removed and replaced by those
/// of a new release directory beside it (here copies of the binaries under test).
fn upgrade(root: &Path, machines: &[&Machine]) {
    let release = root.join("release");
    std::fs::create_dir_all(release.join("bin")).unwrap();
    std::fs::copy(SERVER, release.join("bin/iotdb-server")).unwrap();
    std::fs::copy(CTL, release.join("bin/iotdb-ctl")).unwrap();
    for (index, machine) in machines.iter().enumerate() {
        // The new release unpacked on this machine (hard links: one copy on disk).
        let new = root.join(format!("new_iotdb-{index}"));
        std::fs::create_dir_all(new.join("bin")).unwrap();
        for binary in ["iotdb-server", "iotdb-ctl"] {
            std::fs::hard_link(
                release.join("bin").join(binary),
                new.join("bin").join(binary),
            )
            .unwrap();
        }
        copy_sbin(&new.join("sbin"));
        for dir in ["bin", "sbin"] {
            std::fs::remove_dir_all(machine.home.join(dir)).unwrap();
            std::fs::rename(new.join(dir), machine.home.join(dir)).unwrap();
        }
    }
}

#[test]
fn seed_walk_start_expand_shrink_stop_upgrade_destroy() {
    let walk = Instant::now();
    let root_dir = tempfile::Builder::new()
        .prefix("iotdb-seed-walk-")
        .tempdir()
        .unwrap();
    let root = root_dir.path();
    let m1 = Machine::install(root, "iotdb-1", None);
    let seed = m1.cn_internal();
    let m2 = Machine::install(root, "iotdb-2", Some(&seed));
    let m3 = Machine::install(root, "iotdb-3", Some(&seed));
    let m4 = Machine::install(root, "iotdb-4", Some(&seed));
    let machines = [&m1, &m2, &m3, &m4];
    let _guard = Guard {
        log_dirs: machines.iter().map(|m| m.home.join("logs")).collect(),
    };

    // 1. Start: ConfigNodes first, then DataNodes.
    let three = [&m1, &m2, &m3];
    start_cluster(&three, &three);
    let started = running_cluster(&m1.scripts, &m1.rpc(), 6);
    let expected: Vec<Row> = three
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                i.to_string(),
                "ConfigNode".into(),
                "Running".into(),
                m.cn_internal(),
            )
        })
        .chain(three.iter().enumerate().map(|(i, m)| {
            (
                (i + 3).to_string(),
                "DataNode".into(),
                "Running".into(),
                m.dn_internal(),
            )
        }))
        .collect();
    assert_eq!(started, expected);
    eprintln!("3C3D started in {:?}", walk.elapsed());

    // 2. A database and a client writing through the first DataNode.
    m1.sql(&format!("CREATE DATABASE {DATABASE}"));
    let writer = Writer::start(m1.rpc().parse().unwrap(), DATABASE, 0, PATIENCE);
    let deadline = Instant::now() + PATIENCE;
    while writer.acked() < 5 {
        assert!(Instant::now() < deadline, "no writes acknowledged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = settled_data_regions(&m2);
    assert_two_replicas_each(&data, &BTreeSet::from([3, 4, 5]));
    let schema_holders = holders(&regions(&m2, "SchemaRegion"));
    assert!(!schema_holders.is_empty());

    // 3. Expansion: a fourth machine's DataNode joins as DataNode 6. Existing regions
    // stay; with one more core the database grows a region group, placed on the emptiest
    // DataNodes (so also on DataNode 6), which takes the new series' partitions.
    m4.start("datanode");
    let expanded = running_cluster(&m1.scripts, &m3.rpc(), 7);
    let mut expected_expanded = expected.clone();
    expected_expanded.push((
        "6".into(),
        "DataNode".into(),
        "Running".into(),
        m4.dn_internal(),
    ));
    assert_eq!(expanded, expected_expanded);
    let grown_writer = Writer::start(m1.rpc().parse().unwrap(), GROWN, 0, PATIENCE);
    let deadline = Instant::now() + PATIENCE;
    while grown_writer.acked() < 5 {
        assert!(
            Instant::now() < deadline,
            "no writes to {GROWN} acknowledged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = settled_data_regions(&m1);
    assert_two_replicas_each(&data, &BTreeSet::from([3, 4, 5, 6]));

    // 4. Shrinking while the client writes: the fourth machine's DataNode by ip:port,
    // then, by id, a DataNode other than the writer's, holding a SchemaRegion if one does.
    remove_data_node(&m4, &m4.rpc(), 6, &m1);
    let schema_holders = holders(&regions(&m1, "SchemaRegion"));
    let (victim, victim_id) = [(&m2, 4), (&m3, 5)]
        .into_iter()
        .max_by_key(|(_, id)| schema_holders.contains(id))
        .unwrap();
    if !schema_holders.contains(&victim_id) {
        // The writers' DataNode holds them all: move one onto the victim first, as an
        // operator would (`MIGRATE REGION`), so that its removal moves it once more.
        let schema = regions(&m1, "SchemaRegion");
        let (region, replicas) = schema.iter().next().unwrap();
        m1.sql(&format!(
            "MIGRATE REGION {region} FROM {} TO {victim_id}",
            replicas[0].0
        ));
        let deadline = Instant::now() + PATIENCE;
        while regions(&m1, "SchemaRegion")[region] != [(victim_id, "Running".to_string())] {
            assert!(Instant::now() < deadline, "SchemaRegion {region} not moved");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let schema_holders = holders(&regions(&m1, "SchemaRegion"));
    assert!(schema_holders.contains(&victim_id));
    remove_data_node(victim, &victim_id.to_string(), victim_id, &m1);
    let remaining: BTreeSet<u32> = [3, 4, 5]
        .into_iter()
        .filter(|id| *id != victim_id)
        .collect();
    let data = settled_data_regions(&m1);
    assert_two_replicas_each(&data, &remaining);
    let schema = regions(&m1, "SchemaRegion");
    assert!(
        holders(&schema).is_subset(&remaining),
        "SchemaRegions on a removed DataNode: {schema:?}"
    );
    eprintln!(
        "removed DataNodes 6 and {victim_id}; SchemaRegions were on {schema_holders:?}, now \
         on {:?}",
        holders(&schema)
    );
    let shrunk = running_cluster(&m1.scripts, &m1.rpc(), 5);
    let expected_shrunk: Vec<Row> = expected
        .iter()
        .filter(|row| row.0 != victim_id.to_string())
        .cloned()
        .collect();
    assert_eq!(shrunk, expected_shrunk);

    // 5. Clients first, then DataNodes, then ConfigNodes.
    std::thread::sleep(Duration::from_millis(300));
    let acked = [(DATABASE, writer.finish()), (GROWN, grown_writer.finish())];
    let points = check_databases(&m1, &acked);
    let serving: Vec<&Machine> = three
        .iter()
        .copied()
        .filter(|m| !std::ptr::eq(*m, victim))
        .collect();
    stop_cluster(&three, &serving);
    // The removed nodes stopped themselves: their stop scripts find nothing running.
    for machine in [victim, &m4] {
        let run = machine.scripts.run("stop-datanode.sh", &[]).ok();
        assert!(
            run.stdout.contains("no DataNode is running"),
            "{}",
            run.text()
        );
    }
    eprintln!(
        "{points} points written; cluster stopped at {:?}",
        walk.elapsed()
    );

    // 6. Upgrade, start again: the new binaries run, every id and point is kept.
    upgrade(root, &three);
    start_cluster(&three, &serving);
    for machine in three {
        assert_eq!(
            machine.running_binary("confignode"),
            machine
                .home
                .join("bin/iotdb-server")
                .canonicalize()
                .unwrap()
        );
    }
    for machine in &serving {
        assert_eq!(
            machine.running_binary("datanode"),
            machine
                .home
                .join("bin/iotdb-server")
                .canonicalize()
                .unwrap()
        );
    }
    let restarted = running_cluster(&m1.scripts, &serving[1].rpc(), 5);
    assert_eq!(restarted, expected_shrunk);
    assert_eq!(
        settled_data_regions(&m1),
        data,
        "regions moved across the restart"
    );
    // The DataNode up first led every group for a while; the leaders even out.
    let balanced = Instant::now();
    loop {
        let mut leaders: BTreeMap<u32, usize> = holders(&data).iter().map(|n| (*n, 0)).collect();
        for row in csv_rows(&m1.sql("show regions")) {
            if row["Type"] == "DataRegion" && row["Role"] == "Leader" {
                *leaders
                    .entry(row["DataNodeId"].parse().unwrap())
                    .or_default() += 1;
            }
        }
        let (most, least) = (leaders.values().max(), leaders.values().min());
        if most
            .zip(least)
            .is_some_and(|(most, least)| most - least <= 1)
        {
            break;
        }
        assert!(
            balanced.elapsed() < PATIENCE,
            "DataRegion leaders per DataNode after the restart: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for machine in &serving {
        assert_eq!(check_databases(machine, &acked), points);
    }
    eprintln!(
        "upgraded and restarted with every point at {:?}",
        walk.elapsed()
    );

    // 7. Clean every machine and start a fresh 3C3D.
    stop_cluster(&three, &serving);
    for machine in machines {
        machine.scripts.run("destroy-all.sh", &["-f"]).ok();
        assert!(
            !machine.home.join("data").exists(),
            "{}",
            machine.home.display()
        );
    }
    start_cluster(&three, &three);
    let fresh = running_cluster(&m1.scripts, &m2.rpc(), 6);
    assert_eq!(fresh, expected);
    let databases = m3.sql("SHOW DATABASES");
    assert!(!databases.contains(DATABASE), "{databases}");
    stop_cluster(&three, &three);
    eprintln!("seed walk: {:?}", walk.elapsed());
}
