//! `--cluster 1C3D`: a local multi-process cluster for the workload — ConfigNodes and
//! DataNodes, each this binary re-executed as `iotdb-perf node <role>` (so every node's
//! CPU time is its own and is summed into the report), on 127.0.0.1 with ports the kernel
//! picks, in a temporary directory removed afterwards.
//!
//! ```text
//!  iotdb-perf ─┬─ node confignode (seed)    ◄─ register ─┐
//!              ├─ node datanode 1 ───────────────────────┤ every node: --set <settings>
//!              ├─ node datanode 2 ───────────────────────┤ (data_replication_factor, ...)
//!              └─ node datanode 3 ───────────────────────┘
//!  clients on the DataNodes' client ports as `--route` says (server_mode::Route)
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a cluster may take to have every node Running.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to stop cleanly (flushing every region) before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The shape of a cluster: `1C3D` is one ConfigNode and three DataNodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub config_nodes: usize,
    pub data_nodes: usize,
}

impl Shape {
    /// Parses `<n>C<m>D` (case-insensitive), n and m at least 1.
    pub fn parse(text: &str) -> anyhow::Result<Shape> {
        let upper = text.trim().to_ascii_uppercase();
        let parsed = upper
            .strip_suffix('D')
            .and_then(|rest| rest.split_once('C'))
            .and_then(|(c, d)| Some((c.parse::<usize>().ok()?, d.parse::<usize>().ok()?)));
        match parsed {
            Some((config_nodes, data_nodes))
                if (1..=7).contains(&config_nodes) && (1..=16).contains(&data_nodes) =>
            {
                Ok(Shape {
                    config_nodes,
                    data_nodes,
                })
            }
            _ => bail!(
                "--cluster {text:?}: expected <ConfigNodes>C<DataNodes>D, such as 1C3D \
                 (1-7 ConfigNodes, 1-16 DataNodes)"
            ),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}C{}D", self.config_nodes, self.data_nodes)
    }
}

/// A running local cluster; dropping it stops every node (DataNodes first, as the
/// scripts do) and removes its directory.
pub(crate) struct EmbeddedCluster {
    config_nodes: Vec<Child>,
    data_nodes: Vec<Child>,
    /// The DataNodes' client endpoints.
    pub(crate) endpoints: Vec<SocketAddr>,
    pub(crate) data_dir: tempfile::TempDir,
}

/// A port the kernel has free now on 127.0.0.1 (a ConfigNode's ports must be known before
/// it starts: they are its own seed).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl EmbeddedCluster {
    /// Starts the cluster: every node with `settings` (`key=value`), DataNodes with
    /// `cores` shards each and `wal_mode`; returns once every node is Running.
    pub(crate) fn start(
        shape: Shape,
        cores: Option<usize>,
        wal_mode: &str,
        settings: &[String],
    ) -> anyhow::Result<EmbeddedCluster> {
        let data_dir = tempfile::tempdir().context("creating the cluster's directory")?;
        let mut cluster = EmbeddedCluster {
            config_nodes: Vec::new(),
            data_nodes: Vec::new(),
            endpoints: Vec::new(),
            data_dir,
        };
        let common: Vec<String> = settings
            .iter()
            .cloned()
            .chain([format!("wal_mode={wal_mode}")])
            .collect();
        let seed = format!("127.0.0.1:{}", free_port()?);
        for index in 0..shape.config_nodes {
            let port = if index == 0 {
                seed.rsplit(':').next().unwrap_or_default().to_string()
            } else {
                free_port()?.to_string()
            };
            let mut sets = common.clone();
            sets.extend([
                "cn_internal_address=127.0.0.1".to_string(),
                format!("cn_internal_port={port}"),
                format!("cn_consensus_port={}", free_port()?),
                format!("cn_seed_config_node={seed}"),
            ]);
            let dir = cluster.data_dir.path().join(format!("cn{index}"));
            let (child, _) = spawn_node(
                "confignode",
                &dir,
                None,
                &sets,
                iotdb_node::cluster::confignode_service::CONFIGNODE_READY_PREFIX,
            )?;
            cluster.config_nodes.push(child);
        }
        for index in 0..shape.data_nodes {
            let mut sets = common.clone();
            sets.extend([
                "dn_rpc_address=127.0.0.1".to_string(),
                "dn_rpc_port=0".to_string(),
                "dn_internal_address=127.0.0.1".to_string(),
                "dn_internal_port=0".to_string(),
                "dn_data_region_consensus_port=0".to_string(),
                "dn_schema_region_consensus_port=0".to_string(),
                format!("dn_seed_config_node={seed}"),
            ]);
            let dir = cluster.data_dir.path().join(format!("dn{index}"));
            let (child, line) = spawn_node(
                "datanode",
                &dir,
                cores,
                &sets,
                iotdb_node::server::READY_LINE_PREFIX,
            )?;
            cluster.data_nodes.push(child);
            let address = line.split_whitespace().next().unwrap_or_default();
            cluster.endpoints.push(
                address
                    .parse()
                    .with_context(|| format!("a DataNode's address in {line:?}"))?,
            );
        }
        cluster.wait_until_running(shape)?;
        eprintln!(
            "cluster {shape} running (DataNodes on {}); settings: {}",
            cluster
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if settings.is_empty() {
                "defaults".to_string()
            } else {
                settings.join(" ")
            }
        );
        Ok(cluster)
    }

    /// Every node's process id (for their CPU time).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.config_nodes
            .iter()
            .chain(&self.data_nodes)
            .map(Child::id)
            .collect()
    }

    /// How many of [`EmbeddedCluster::pids`] (the first ones) are ConfigNodes.
    pub(crate) fn config_node_count(&self) -> usize {
        self.config_nodes.len()
    }

    /// Waits until `SHOW CLUSTER` lists every node Running.
    fn wait_until_running(&self, shape: Shape) -> anyhow::Result<()> {
        let expected = shape.config_nodes + shape.data_nodes;
        let deadline = Instant::now() + FORMATION_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let running = iotdb_net::BlockingClient::connect(
                self.endpoints[0],
                &iotdb_net::ClientConfig::default(),
            )
            .and_then(|mut client| client.execute_sql("SHOW CLUSTER"));
            match running {
                Ok(result) => {
                    let status = result.column_names.iter().position(|c| c == "Status");
                    let count = result
                        .rows
                        .iter()
                        .filter(|row| {
                            status.and_then(|s| row.get(s)).is_some_and(|cell| {
                                matches!(cell, Some(iotdb_net::Value::Text(t)) if t.as_ref() == b"Running")
                            })
                        })
                        .count();
                    if count == expected {
                        return Ok(());
                    }
                    last = format!("{count} of {expected} nodes Running");
                }
                Err(error) => last = error.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the cluster did not form within {FORMATION_TIMEOUT:?}: {last}")
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        for child in self.data_nodes.iter_mut().chain(&mut self.config_nodes) {
            stop(child);
        }
    }
}

/// SIGTERM (a clean stop), then SIGKILL after [`STOP_TIMEOUT`]; nothing once it exited.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `iotdb-perf node <role>` on `dir` and waits for the line starting with `ready`;
/// returns the child and what followed the prefix.
fn spawn_node(
    role: &str,
    dir: &Path,
    cores: Option<usize>,
    settings: &[String],
    ready: &str,
) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut command = Command::new(exe);
    command.arg("node").arg(role).arg("--data-dir").arg(dir);
    if let Some(cores) = cores {
        command.arg("--cores").arg(cores.to_string());
    }
    for setting in settings {
        command.arg("--set").arg(setting);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting a {role}"))?;
    let rest = wait_ready(&mut child, &format!("a {role}"), ready)?;
    eprintln!("{role} pid {} ready: {rest}", child.id());
    Ok((child, rest))
}

/// Reads `child`'s stdout (piped) until a line starts with `ready`; returns what follows
/// it, and keeps draining the pipe so the child never blocks on it.
pub(crate) fn wait_ready(child: &mut Child, what: &str, ready: &str) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("the child's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let rest = loop {
        let Some(line) = lines.next() else {
            let status = child.wait()?;
            bail!("{what} exited ({status}) before it was ready");
        };
        let line = line?;
        if let Some(rest) = line.strip_prefix(ready) {
            break rest.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Shape::parse("1C3D").unwrap(),
            Shape {
                config_nodes: 1,
                data_nodes: 3
            }
        );
        assert_eq!(Shape::parse("3c5d").unwrap().to_string(), "3C5D");
        for bad in ["", "3D", "1C", "0C3D", "1C0D", "1C17D", "xCyD", "1C3"] {
            assert!(Shape::parse(bad).is_err(), "{bad}");
        }
    }
}
