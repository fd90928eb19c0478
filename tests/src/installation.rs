//! The operator's installation in a test: `sbin/` scripts run as an operator runs them
//! ([`Scripts`], [`Run`]), a `bin/` of links to the binaries under test ([`bin_dir`]), a
//! configuration edited key by key ([`with_key`]), `show cluster` read through
//! `start-cli.sh` ([`cluster_rows`], [`running_cluster`]), and a [`Guard`] that kills
//! whatever a pid file still names when the test ends (and prints the logs on failure).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::server::free_port;

/// The checkout: `sbin/`, `conf/`.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// `parent/bin`: links named as the release binaries (`iotdb-server`, `iotdb-ctl`) to the
/// binaries under test (an integration test's `CARGO_BIN_EXE_iotdb-server-under-test` and
/// `CARGO_BIN_EXE_iotdb-ctl-under-test`).
pub fn bin_dir(parent: &Path, server: &str, ctl: &str) -> PathBuf {
    let bin = parent.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, target) in [("iotdb-server", server), ("iotdb-ctl", ctl)] {
        std::os::unix::fs::symlink(target, bin.join(name)).unwrap();
    }
    bin
}

/// The checkout's `sbin/` copied to `to`, as `sbin/dist.sh` packs it (without `dist.sh`,
/// which needs the checkout).
pub fn copy_sbin(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(repository().join("sbin")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "dist.sh" {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// `count` distinct free ports on `ip`.
pub fn free_ports(ip: Ipv4Addr, count: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < count {
        ports.insert(free_port(ip).unwrap());
    }
    ports.into_iter().collect()
}

/// Replaces the `key = ...` line of a configuration file's text.
pub fn with_key(conf: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut found = false;
    let text: Vec<String> = conf
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                found = true;
                format!("{prefix}{value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(found, "no {key} line in the configuration");
    text.join("\n") + "\n"
}

/// `conf/iotdb-system.toml` of the checkout set up for one machine of a cluster on the
/// loopback host `ip`: `cluster_name`, both seeds (`seed`: a ConfigNode's `ip:port`), a
/// 200 ms heartbeat, one core, and its six ports (`ports`, in this order):
/// `cn_internal_port`, `cn_consensus_port`, `dn_rpc_port`, `dn_internal_port`,
/// `dn_schema_region_consensus_port`, `dn_data_region_consensus_port`.
pub fn machine_conf(cluster_name: &str, ip: Ipv4Addr, ports: &[u16], seed: &str) -> String {
    assert_eq!(ports.len(), 6, "six ports");
    let mut conf = std::fs::read_to_string(repository().join("conf/iotdb-system.toml")).unwrap();
    let seed = format!("\"{seed}\"");
    for (key, value) in [
        ("cluster_name", format!("\"{cluster_name}\"")),
        ("cn_internal_address", format!("\"{ip}\"")),
        ("cn_internal_port", ports[0].to_string()),
        ("cn_consensus_port", ports[1].to_string()),
        ("cn_seed_config_node", seed.clone()),
        ("dn_seed_config_node", seed),
        ("heartbeat_interval_in_ms", "200".to_string()),
        ("dn_rpc_address", format!("\"{ip}\"")),
        ("dn_rpc_port", ports[2].to_string()),
        ("dn_internal_address", format!("\"{ip}\"")),
        ("dn_internal_port", ports[3].to_string()),
        ("dn_schema_region_consensus_port", ports[4].to_string()),
        ("dn_data_region_consensus_port", ports[5].to_string()),
        ("dn_cores", "1".to_string()),
    ] {
        conf = with_key(&conf, key, &value);
    }
    conf
}

/// How the scripts are run: from which `sbin/`, with which environment.
pub struct Scripts {
    pub sbin: PathBuf,
    pub env: Vec<(&'static str, PathBuf)>,
}

/// What a script printed and how it exited.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{}", self.text());
        self
    }

    #[track_caller]
    pub fn fails_saying(self, words: &str) -> Run {
        assert_ne!(self.code, Some(0), "{}", self.text());
        assert!(
            self.stderr.contains(words) || self.stdout.contains(words),
            "expected {words:?}: {}",
            self.text()
        );
        self
    }
}

impl Scripts {
    pub fn run(&self, script: &str, args: &[&str]) -> Run {
        self.run_with_input(script, args, "")
    }

    pub fn run_with_input(&self, script: &str, args: &[&str], input: &str) -> Run {
        let mut command = Command::new(self.sbin.join(script));
        command.args(args).stdin(Stdio::piped());
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        for key in ["IOTDB_HOME", "IOTDB_CONF", "IOTDB_BIN_DIR", "IOTDB_LOG_DIR"] {
            command.env_remove(key);
        }
        command.env("IOTDB_START_TIMEOUT", "60");
        command.env("IOTDB_STOP_TIMEOUT", "60");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `start-cli.sh -h HOST -e STATEMENT --format csv`, which must succeed.
    #[track_caller]
    pub fn sql(&self, host: &str, statement: &str) -> String {
        self.run(
            "start-cli.sh",
            &["-h", host, "-e", statement, "--format", "csv"],
        )
        .ok()
        .stdout
    }
}

/// Kills what a pid file still names when the test ends, and prints the logs when it
/// failed.
pub struct Guard {
    pub log_dirs: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for dir in &self.log_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                match path.extension().and_then(|e| e.to_str()) {
                    Some("pid") => {
                        let pid = text.trim();
                        eprintln!("killing pid {pid} of {}", path.display());
                        let _ = Command::new("kill").args(["-KILL", pid]).status();
                    }
                    Some("log") if std::thread::panicking() => {
                        eprintln!("--- {}\n{text}", path.display());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Whether a process with this pid runs: it exists and is not a zombie (a stopped server
/// whose new parent, once its start script exited, has not collected it yet).
pub fn alive(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) else {
        return false;
    };
    // `pid (name) state ...`: the state follows the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|rest| rest.chars().next()), Some('Z') | None)
}

pub fn read_pid(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The rows of `show cluster` as (NodeID, NodeType, Status, InternalAddress:InternalPort).
pub fn cluster_rows(csv: &str) -> Vec<(String, String, String, String)> {
    let mut lines = csv.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    let (id, kind, status, address, port) = (
        column("NodeID"),
        column("NodeType"),
        column("Status"),
        column("InternalAddress"),
        column("InternalPort"),
    );
    lines
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (
                cells[id].to_string(),
                cells[kind].to_string(),
                cells[status].to_string(),
                format!("{}:{}", cells[address], cells[port]),
            )
        })
        .collect()
}

/// `show cluster` through start-cli.sh once every node shows `Running` (a restarted
/// DataNode is Unknown until the ConfigNode's next heartbeat reaches it).
pub fn running_cluster(
    scripts: &Scripts,
    host: &str,
    nodes: usize,
) -> Vec<(String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = cluster_rows(&scripts.sql(host, "show cluster"));
        if rows.len() == nodes && rows.iter().all(|row| row.2 == "Running") {
            return rows;
        }
        assert!(Instant::now() < deadline, "not all Running: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
