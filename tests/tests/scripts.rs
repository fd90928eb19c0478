//! The `sbin/` scripts run for real, as an operator runs them (the seed's walk-through):
//!
//! - a standalone server from an unpacked installation (`sbin/`, `conf/`, `bin/` in a
//!   temporary directory, the scripts finding the binaries in its `bin/`): start, a second
//!   start refused, statements through `start-cli.sh`, destroy refused while it runs,
//!   stop, destroy declined then forced, a start that fails with the reason;
//! - a 1C2D cluster from the checkout's `sbin/` (binaries through `IOTDB_BIN_DIR`): a
//!   ConfigNode and a DataNode sharing one configuration file and data directory, as on
//!   one machine of the seed's 3C3D, and a second DataNode given `--set` overrides;
//!   `show cluster` through `start-cli.sh`, stop in the seed's order (DataNodes, then the
//!   ConfigNode), start again with every id and the data kept.
//!
//! - the tarball of `sbin/dist.sh` (binaries through `IOTDB_BIN_DIR`), unpacked: its
//!   layout, and a standalone server started and stopped by its own `sbin/`.
//!
//! Beside them, `shipped_conf_lists_every_key_with_its_default` holds `conf/iotdb-system.toml`
//! to the server's configuration keys and defaults.
//!
//! The binaries under test are `iotdb-server-under-test` and `iotdb-ctl-under-test`; a
//! directory of symbolic links named `iotdb-server` and `iotdb-ctl` stands in for `bin/`.
//! Every node gets its own 127.0.0.x host and kernel-picked free ports. A guard kills any
//! process a pid file still names when the test ends, and prints the logs on failure.

use std::time::Instant;

use iotdb_node::config::ServerConfig;
use iotdb_tests::installation::{
    self, Guard, Scripts, alive, copy_sbin, free_ports, machine_conf, read_pid, repository,
    running_cluster, with_key,
};
use iotdb_tests::server::{free_port, next_loopback_host};
use serde::Deserialize;

/// `parent/bin` with links to the binaries under test.
fn bin_dir(parent: &std::path::Path) -> std::path::PathBuf {
    installation::bin_dir(
        parent,
        env!("CARGO_BIN_EXE_iotdb-server-under-test"),
        env!("CARGO_BIN_EXE_iotdb-ctl-under-test"),
    )
}

/// Writes `conf` set for a standalone server on `ip:port` with one core to
/// `home/conf/iotdb-system.toml`; the scripts of `home/sbin`, and a guard over `home/logs`.
fn standalone_home(
    home: &std::path::Path,
    conf: &str,
    ip: std::net::Ipv4Addr,
    port: u16,
) -> (Scripts, Guard) {
    let conf = with_key(conf, "dn_rpc_address", &format!("\"{ip}\""));
    let conf = with_key(&conf, "dn_rpc_port", &port.to_string());
    let conf = with_key(&conf, "dn_cores", "1");
    std::fs::create_dir_all(home.join("conf")).unwrap();
    std::fs::write(home.join("conf/iotdb-system.toml"), conf).unwrap();
    let scripts = Scripts {
        sbin: home.join("sbin"),
        env: vec![("HOME", home.to_path_buf())],
    };
    let guard = Guard {
        log_dirs: vec![home.join("logs")],
    };
    (scripts, guard)
}

#[test]
fn standalone_from_an_unpacked_installation() {
    let started = Instant::now();
    let home_dir = tempfile::Builder::new()
        .prefix("iotdb-sbin-")
        .tempdir()
        .unwrap();
    let home = home_dir.path();
    // The layout of the tarball: sbin/, conf/, bin/.
    copy_sbin(&home.join("sbin"));
    bin_dir(home);
    let ip = next_loopback_host();
    let port = free_port(ip).unwrap();
    let conf = std::fs::read_to_string(repository().join("conf/iotdb-system.toml")).unwrap();
    let (scripts, _guard) = standalone_home(home, &conf, ip, port);
    // data_dir = "data" is relative: to the installation.
    let data = home.join("data");
    let pid_file = home.join("logs/standalone.pid");

    let run = scripts.run("start-standalone.sh", &[]).ok();
    assert!(run.stdout.contains("is serving"), "{}", run.text());
    let pid = read_pid(&pid_file);
    assert!(alive(&pid));
    assert!(data.join("datanode").is_dir() && data.join("confignode").is_dir());
    scripts
        .run("start-standalone.sh", &[])
        .fails_saying("already running");
    assert_eq!(
        read_pid(&pid_file),
        pid,
        "a refused start keeps the pid file"
    );

    // The host without a port takes dn_rpc_port from the configuration.
    let host = ip.to_string();
    scripts.sql(&host, "CREATE DATABASE root.sbin");
    scripts.sql(&host, "INSERT INTO root.sbin.d(time, s) VALUES (1, 42)");
    let rows = scripts.sql(&format!("{ip}:{port}"), "SELECT s FROM root.sbin.d");
    assert!(rows.contains(",42"), "{rows}");
    scripts
        .run("start-cli.sh", &["-h", &host, "-e", "SELEC 1"])
        .fails_saying("700");

    scripts
        .run("destroy-all.sh", &["-f"])
        .fails_saying("is running");
    assert!(
        data.join("datanode").is_dir(),
        "a refused destroy deletes nothing"
    );

    let run = scripts.run("stop-standalone.sh", &[]).ok();
    assert!(run.stdout.contains("stopped"), "{}", run.text());
    assert!(!pid_file.exists());
    assert!(
        !alive(&pid),
        "pid {pid} still runs after stop-standalone.sh"
    );
    let run = scripts.run("stop-standalone.sh", &[]).ok();
    assert!(
        run.stdout.contains("no standalone server is running"),
        "{}",
        run.text()
    );

    // Started again, it has its data.
    scripts.run("start-standalone.sh", &[]).ok();
    let rows = scripts.sql(&host, "SELECT s FROM root.sbin.d");
    assert!(rows.contains(",42"), "{rows}");
    scripts.run("stop-standalone.sh", &[]).ok();

    // destroy asks; anything but yes deletes nothing.
    let run = scripts
        .run_with_input("destroy-all.sh", &[], "n\n")
        .fails_saying("nothing deleted");
    assert!(
        run.stdout
            .contains(&data.join("datanode").display().to_string()),
        "{}",
        run.text()
    );
    assert!(data.join("datanode").is_dir());
    scripts.run("destroy-all.sh", &["-f"]).ok();
    assert!(!data.exists(), "destroy-all.sh left {}", data.display());
    assert!(!home.join("logs").exists(), "destroy-all.sh left the logs");

    // A fresh start: no database.
    scripts.run("start-standalone.sh", &[]).ok();
    let databases = scripts.sql(&host, "SHOW DATABASES");
    assert!(!databases.contains("root.sbin"), "{databases}");
    scripts.run("stop-standalone.sh", &[]).ok();

    // A start that fails says why and leaves no pid file.
    scripts
        .run("start-standalone.sh", &["--set", "wal_mode=bogus"])
        .fails_saying("expected sync, async or off");
    assert!(!pid_file.exists());
    eprintln!("standalone walk-through: {:?}", started.elapsed());
}

/// `sbin/dist.sh` packs a tarball whose unpacked tree has the distribution's layout and
/// runs a standalone server from its own `sbin/` and `bin/`. `iotdb-perf` is not a binary
/// of this test package: a stand-in script takes its place in the packed `bin/`.
#[test]
fn dist_tarball_unpacks_to_a_working_installation() {
    let work_dir = tempfile::Builder::new()
        .prefix("iotdb-dist-")
        .tempdir()
        .unwrap();
    let work = work_dir.path();
    let bin = bin_dir(&work.join("built"));
    std::fs::write(bin.join("iotdb-perf"), "#!/bin/sh\necho stand-in\n").unwrap();
    std::fs::set_permissions(
        bin.join("iotdb-perf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let checkout = Scripts {
        sbin: repository().join("sbin"),
        env: vec![("IOTDB_BIN_DIR", bin.clone())],
    };
    let out = work.join("out");
    let run = checkout.run("dist.sh", &["-o", out.to_str().unwrap()]).ok();
    let tarballs: Vec<std::path::PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(tarballs.len(), 1, "{tarballs:?}\n{}", run.text());
    let tarball = &tarballs[0];
    assert!(
        run.stdout.contains(&tarball.display().to_string()),
        "{}",
        run.text()
    );
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let roots: Vec<std::path::PathBuf> = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(roots.len(), 1, "one top directory: {roots:?}");
    let home = &roots[0];
    let name = home.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("iotdb-rs-"), "{name}");
    assert_eq!(
        tarball.file_name().unwrap().to_str().unwrap(),
        format!("{name}.tar.gz")
    );
    for path in [
        "bin/iotdb-server",
        "bin/iotdb-ctl",
        "bin/iotdb-perf",
        "sbin/start-standalone.sh",
        "sbin/stop-standalone.sh",
        "sbin/start-confignode.sh",
        "sbin/start-datanode.sh",
        "sbin/remove-datanode.sh",
        "sbin/destroy-all.sh",
        "sbin/iotdb-common.sh",
        "conf/iotdb-system.toml",
        "docs/operations.md",
        "README.md",
        "ARCHITECTURE.md",
    ] {
        let file = home.join(path);
        assert!(file.is_file(), "{path} missing from the tarball");
        assert!(
            !file.is_symlink(),
            "{path} is a link, not the file: {}",
            file.display()
        );
    }
    assert!(
        !home.join("sbin/dist.sh").exists(),
        "dist.sh needs a checkout"
    );
    assert_eq!(
        std::fs::read(home.join("conf/iotdb-system.toml")).unwrap(),
        std::fs::read(repository().join("conf/iotdb-system.toml")).unwrap()
    );

    let ip = next_loopback_host();
    let port = free_port(ip).unwrap();
    let conf = std::fs::read_to_string(home.join("conf/iotdb-system.toml")).unwrap();
    let (scripts, _guard) = standalone_home(home, &conf, ip, port);
    let run = scripts.run("start-standalone.sh", &[]).ok();
    assert!(run.stdout.contains("is serving"), "{}", run.text());
    let pid = read_pid(&home.join("logs/standalone.pid"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        home.join("bin/iotdb-server").canonicalize().unwrap(),
        "the installation runs its own bin/"
    );
    let host = format!("{ip}:{port}");
    scripts.sql(&host, "CREATE DATABASE root.dist");
    scripts.sql(&host, "INSERT INTO root.dist.d(time, s) VALUES (1, 7)");
    let rows = scripts.sql(&host, "SELECT s FROM root.dist.d");
    assert!(rows.contains(",7"), "{rows}");
    scripts.run("stop-standalone.sh", &[]).ok();
    assert!(
        !alive(&pid),
        "pid {pid} still runs after stop-standalone.sh"
    );
}

#[test]
fn cluster_1c2d_from_the_checkout() {
    let started = Instant::now();
    let root_dir = tempfile::Builder::new()
        .prefix("iotdb-sbin-cluster-")
        .tempdir()
        .unwrap();
    let root = root_dir.path();
    let bin = bin_dir(root);
    // Machine A: a ConfigNode and a DataNode from one configuration file, one data
    // directory and one log directory. Machine B: a DataNode with --set overrides.
    let a = next_loopback_host();
    let b = next_loopback_host();
    let pa = free_ports(a, 6);
    let pb = free_ports(b, 4);
    let conf = machine_conf("sbin", a, &pa, &format!("{a}:{}", pa[0]));
    let conf = with_key(
        &conf,
        "data_dir",
        &format!("\"{}\"", root.join("a/data").display()),
    );
    let conf_path = root.join("iotdb-system.toml");
    std::fs::write(&conf_path, conf).unwrap();
    let machine_a = Scripts {
        sbin: repository().join("sbin"),
        env: vec![
            ("IOTDB_BIN_DIR", bin.clone()),
            ("IOTDB_CONF", conf_path.clone()),
            ("IOTDB_LOG_DIR", root.join("a/logs")),
            ("HOME", root.to_path_buf()),
        ],
    };
    let machine_b = Scripts {
        sbin: repository().join("sbin"),
        env: vec![
            ("IOTDB_BIN_DIR", bin.clone()),
            ("IOTDB_CONF", conf_path.clone()),
            ("IOTDB_LOG_DIR", root.join("b/logs")),
            ("HOME", root.to_path_buf()),
        ],
    };
    let b_sets: Vec<String> = [
        format!("dn_rpc_address={b}"),
        format!("dn_rpc_port={}", pb[0]),
        format!("dn_internal_address={b}"),
        format!("dn_internal_port={}", pb[1]),
        format!("dn_schema_region_consensus_port={}", pb[2]),
        format!("dn_data_region_consensus_port={}", pb[3]),
        format!("data_dir={}", root.join("b/data").display()),
    ]
    .iter()
    .flat_map(|set| ["--set".to_string(), set.clone()])
    .collect();
    let b_args: Vec<&str> = b_sets.iter().map(String::as_str).collect();
    let _guard = Guard {
        log_dirs: vec![root.join("a/logs"), root.join("b/logs")],
    };
    let host_a = format!("{a}:{}", pa[2]);
    let host_b = format!("{b}:{}", pb[0]);

    let start_all = || {
        machine_a.run("start-confignode.sh", &[]).ok();
        machine_a.run("start-datanode.sh", &[]).ok();
        machine_b.run("start-datanode.sh", &b_args).ok();
    };
    start_all();
    let before = running_cluster(&machine_a, &host_a, 3);
    let kinds: Vec<&str> = before.iter().map(|row| row.1.as_str()).collect();
    assert_eq!(kinds, ["ConfigNode", "DataNode", "DataNode"], "{before:?}");
    assert_eq!(before[0].3, format!("{a}:{}", pa[0]));
    machine_b.sql(&host_b, "CREATE DATABASE root.sbin");
    machine_b.sql(&host_b, "INSERT INTO root.sbin.d(time, s) VALUES (7, 77)");
    // Both DataNodes' data and logs stay apart; the ConfigNode shares machine A's.
    assert!(root.join("a/data/confignode").is_dir() && root.join("a/data/datanode").is_dir());
    assert!(root.join("b/data/datanode").is_dir() && !root.join("b/data/confignode").exists());
    assert!(
        root.join("a/logs/confignode.log").is_file() && root.join("a/logs/datanode.log").is_file()
    );

    // The seed's order: DataNodes, then the ConfigNode.
    let pids: Vec<String> = [
        root.join("b/logs/datanode.pid"),
        root.join("a/logs/datanode.pid"),
        root.join("a/logs/confignode.pid"),
    ]
    .iter()
    .map(|path| read_pid(path))
    .collect();
    machine_b.run("stop-datanode.sh", &b_args).ok();
    machine_a.run("stop-datanode.sh", &[]).ok();
    machine_a.run("stop-confignode.sh", &[]).ok();
    for pid in &pids {
        assert!(!alive(pid), "pid {pid} still runs after its stop script");
    }

    // Started again: the same nodes with the same ids, and the data.
    start_all();
    let after = running_cluster(&machine_b, &host_b, 3);
    assert_eq!(after, before);
    let rows = machine_a.sql(&host_a, "SELECT s FROM root.sbin.d");
    assert!(rows.contains(",77"), "{rows}");
    machine_b.run("stop-datanode.sh", &b_args).ok();
    machine_a.run("stop-datanode.sh", &[]).ok();
    machine_a.run("stop-confignode.sh", &[]).ok();
    eprintln!("1C2D walk-through: {:?}", started.elapsed());
}

/// The configuration file shipped in `conf/` (and in the distribution tarball) names
/// every key of `iotdb_node::config::ServerConfig`, each with the code's default, and loads with the
/// server's own loader: the file cannot drift from the code. Keys without a default
/// (`Option`s, the replaced memtable keys) must appear as a commented `# key =` line.
#[test]
fn shipped_conf_lists_every_key_with_its_default() {
    let path = repository().join("conf/iotdb-system.toml");
    let loaded = ServerConfig::load(&path).unwrap();
    loaded.validate().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let in_file: toml::Table = text.parse().unwrap();
    let default = toml::Table::try_from(ServerConfig::default()).unwrap();
    let loaded = toml::Table::try_from(loaded).unwrap();
    let mut problems = Vec::new();
    for key in field_names::<ServerConfig>() {
        match (default.get(key), in_file.get(key)) {
            (Some(want), Some(value)) if loaded.get(key) != Some(want) => problems.push(format!(
                "{key}: the file says {value}, the code's default is {want}"
            )),
            (Some(want), None) => problems.push(format!("{key} = {want} is missing")),
            (None, Some(value)) => problems.push(format!(
                "{key} = {value}: the code has no default, so the file must not set one"
            )),
            (None, None) if !text.lines().any(|l| l.trim() == format!("# {key} =")) => {
                problems.push(format!("{key} (no default) needs a `# {key} =` line"))
            }
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagrees with ServerConfig:\n{}",
        path.display(),
        problems.join("\n")
    );
    // Every key of the file is a field (the loader also refuses unknown keys).
    assert_eq!(in_file.len(), default.len(), "{in_file:?}");
}

/// The field names of a `#[derive(Deserialize)]` struct, as serde's derive declares
/// them to the deserializer (so `Option` fields without a value are listed too).
fn field_names<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    use serde::de::{self, Visitor};

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names collected")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Fields(Vec<&'static str>);
    impl<'de> de::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend_from_slice(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut fields = Fields(Vec::new());
    assert!(T::deserialize(&mut fields).is_err());
    assert!(!fields.0.is_empty(), "not a struct");
    fields.0
}
