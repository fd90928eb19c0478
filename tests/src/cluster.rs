//! [`TestCluster`]: a ConfigNode process and DataNode processes, each on a loopback host
//! of its own (127.0.0.x), started in the seed's order (the ConfigNode first), with a
//! short heartbeat interval so status changes show within a test's patience.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iotdb_net::{BlockingClient, ResultSet};

use crate::server::{Role, ServerOptions, TestServer, free_port, next_loopback_host};

/// The heartbeat interval of test clusters: a killed DataNode is Unknown within three.
pub const TEST_HEARTBEAT_MS: u64 = 200;

/// Starts of a node tried at most, each on a fresh host and port, while a start is refused
/// for a port that something took between its pick and the node's bind.
const PORT_IN_USE_ATTEMPTS: u32 = 3;

/// Whether a node's start failed because a port it was given is in use (the server's
/// own message for it, in its log tail).
fn port_in_use(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("is already in use by another process")
}

/// ConfigNodes and DataNodes.
pub struct TestCluster {
    binary: std::path::PathBuf,
    /// The first founded the cluster; the others joined through it.
    pub config_nodes: Vec<TestServer>,
    pub data_nodes: Vec<TestServer>,
    /// `host:port` of the ConfigNode's internal port (every node's seed).
    pub seed: String,
    pub cluster_name: String,
    /// Settings every node of the cluster starts with (`--set key=value`), after (so
    /// overriding) the test defaults.
    pub settings: Vec<(String, String)>,
}

impl TestCluster {
    /// Starts a ConfigNode, then `data_nodes` DataNodes of `cores` shards each.
    pub fn start(
        binary: impl Into<std::path::PathBuf>,
        data_nodes: usize,
        cores: usize,
    ) -> anyhow::Result<TestCluster> {
        Self::start_with(binary, 1, data_nodes, cores)
    }

    /// Starts `config_nodes` ConfigNodes (the first founds the cluster, the others join
    /// through it, one at a time), then `data_nodes` DataNodes of `cores` shards each.
    pub fn start_with(
        binary: impl Into<std::path::PathBuf>,
        config_nodes: usize,
        data_nodes: usize,
        cores: usize,
    ) -> anyhow::Result<TestCluster> {
        Self::start_configured(binary, config_nodes, data_nodes, cores, &[])
    }

    /// [`TestCluster::start_with`], every node also started with `settings` (cluster-wide
    /// ones such as `data_replication_factor`).
    pub fn start_configured(
        binary: impl Into<std::path::PathBuf>,
        config_nodes: usize,
        data_nodes: usize,
        cores: usize,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<TestCluster> {
        let mut cluster = Self::planned(binary, settings)?;
        cluster.start_seed()?;
        for _ in 1..config_nodes {
            let ip = next_loopback_host();
            let port = free_port(ip)?;
            cluster.add_config_node(ip, port)?;
        }
        for _ in 0..data_nodes {
            cluster.add_data_node(cores)?;
        }
        Ok(cluster)
    }

    /// A cluster with its seed ConfigNode's address chosen and no node started (a test
    /// that starts nodes in an order of its own, e.g. a DataNode before its seed);
    /// [`TestCluster::start_seed`] starts the seed.
    pub fn planned(
        binary: impl Into<std::path::PathBuf>,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<TestCluster> {
        let ip = next_loopback_host();
        let port = free_port(ip)?;
        Ok(TestCluster {
            binary: binary.into(),
            config_nodes: Vec::new(),
            data_nodes: Vec::new(),
            seed: format!("{ip}:{port}"),
            cluster_name: "testCluster".to_string(),
            settings: settings
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        })
    }

    /// Starts the seed ConfigNode (the first; it founds the cluster) on its address.
    pub fn start_seed(&mut self) -> anyhow::Result<()> {
        let seed: SocketAddr = self.seed.parse().context("the seed address")?;
        let IpAddr::V4(ip) = seed.ip() else {
            bail!("the seed {seed} is not an IPv4 loopback address");
        };
        self.add_config_node(ip, seed.port())
    }

    /// Options of a ConfigNode of this cluster on `ip` (its seed is the first one's).
    pub fn config_node_options(&self, ip: Ipv4Addr) -> anyhow::Result<ServerOptions> {
        let port = free_port(ip)?;
        self.config_node_options_on(ip, port)
    }

    fn config_node_options_on(&self, ip: Ipv4Addr, port: u16) -> anyhow::Result<ServerOptions> {
        let mut consensus = free_port(ip)?;
        while consensus == port {
            consensus = free_port(ip)?;
        }
        Ok(self
            .with_settings(ServerOptions::new(&self.binary))
            .role(Role::ConfigNode)
            .set("cluster_name", &self.cluster_name)
            .set("cn_internal_address", ip)
            .set("cn_internal_port", port)
            .set("cn_consensus_port", consensus)
            .set("cn_seed_config_node", &self.seed)
            .set("heartbeat_interval_in_ms", TEST_HEARTBEAT_MS))
    }

    fn with_settings(&self, mut options: ServerOptions) -> ServerOptions {
        for (key, value) in &self.settings {
            options = options.set(key, value);
        }
        // `IOTDB_TEST_RUST_LOG=...` sets the nodes' RUST_LOG (debugging a cluster test).
        if let Ok(filter) = std::env::var("IOTDB_TEST_RUST_LOG") {
            options = options.env("RUST_LOG", &filter);
        }
        options
    }

    fn add_config_node(&mut self, ip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
        let options = self.config_node_options_on(ip, port)?;
        let node = TestServer::start_on(ip, options)
            .with_context(|| format!("starting ConfigNode {}", self.config_nodes.len() + 1))?;
        self.config_nodes.push(node);
        Ok(())
    }

    /// Options of a new DataNode of this cluster on `ip` (a test may change them).
    pub fn data_node_options(&self, ip: Ipv4Addr, cores: usize) -> anyhow::Result<ServerOptions> {
        Ok(self
            .with_settings(ServerOptions::new(&self.binary))
            .kernel_port()
            .role(Role::DataNode)
            .cores(cores)
            .set("cluster_name", &self.cluster_name)
            .set("dn_internal_address", ip)
            .set("dn_internal_port", free_port(ip)?)
            .set("dn_seed_config_node", &self.seed)
            .set("heartbeat_interval_in_ms", TEST_HEARTBEAT_MS))
    }

    /// Starts one more DataNode (expansion). Its internal port is picked free on a host of
    /// its own, but something can take it before the node binds it (seen once in CI): a
    /// start refused for a port in use is tried again on a fresh host and port, a bounded
    /// number of times.
    pub fn add_data_node(&mut self, cores: usize) -> anyhow::Result<&mut TestServer> {
        let mut attempt = 1;
        let node = loop {
            let ip = next_loopback_host();
            let options = self.data_node_options(ip, cores)?;
            match TestServer::start_on(ip, options) {
                Ok(node) => break node,
                Err(error) if attempt < PORT_IN_USE_ATTEMPTS && port_in_use(&error) => {
                    eprintln!("DataNode start refused for a port in use, retrying: {error:#}");
                    attempt += 1;
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("starting DataNode {}", self.data_nodes.len() + 1)
                    });
                }
            }
        };
        self.data_nodes.push(node);
        Ok(self.data_nodes.last_mut().expect("pushed"))
    }

    /// `SHOW CONFIGNODES` asked of DataNode `index`: (NodeID, Status, Role) rows.
    pub fn show_config_nodes(&self, index: usize) -> anyhow::Result<Vec<(u32, String, String)>> {
        let result = self.client(index)?.execute_sql("SHOW CONFIGNODES")?;
        let column = |name: &str| column(&result, name);
        let (id, status, role) = (column("NodeID")?, column("Status")?, column("Role")?);
        result
            .rows
            .iter()
            .map(|row| {
                Ok((
                    text(row, id)?.parse()?,
                    text(row, status)?,
                    text(row, role)?,
                ))
            })
            .collect()
    }

    /// A client of DataNode `index`.
    pub fn client(&self, index: usize) -> anyhow::Result<BlockingClient> {
        self.data_nodes[index].client()
    }

    /// `SHOW CLUSTER` asked of DataNode `index`, as (NodeID, NodeType, Status,
    /// InternalAddress, InternalPort) rows.
    pub fn show_cluster(&self, index: usize) -> anyhow::Result<Vec<ClusterRow>> {
        let result = self.client(index)?.execute_sql("SHOW CLUSTER")?;
        rows_of(&result)
    }

    /// The position in [`TestCluster::data_nodes`] of the DataNode whose id is `id`, by its
    /// internal address in `SHOW CLUSTER` asked of DataNode `via`.
    pub fn data_node_index(&self, id: u32, via: usize) -> usize {
        let rows = self.show_cluster(via).unwrap();
        let row = rows
            .iter()
            .find(|row| row.node_id == id)
            .unwrap_or_else(|| panic!("no node {id} in {rows:?}"));
        self.data_nodes
            .iter()
            .position(|node| node.address().ip().to_string() == row.internal_address)
            .unwrap_or_else(|| panic!("no DataNode process at {}", row.internal_address))
    }

    /// Waits up to `timeout` until `SHOW CLUSTER` on DataNode `index` satisfies `done`.
    pub fn wait_for_cluster(
        &self,
        index: usize,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[ClusterRow]) -> bool,
    ) -> anyhow::Result<Vec<ClusterRow>> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.show_cluster(index);
            if let Ok(rows) = &rows
                && done(rows)
            {
                return Ok(rows.clone());
            }
            if Instant::now() >= deadline {
                bail!("{what}: not within {timeout:?}; last SHOW CLUSTER: {rows:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A `SELECT s FROM device` result as time → value, for integral test values (stored as
/// INT64, or DOUBLE when the series was auto-created from a literal).
pub fn time_values(result: &ResultSet) -> std::collections::BTreeMap<i64, i64> {
    result
        .rows
        .iter()
        .map(|row| {
            let time = match &row[0] {
                Some(iotdb_net::Value::Int64(t)) => *t,
                other => panic!("time {other:?}"),
            };
            let value = match &row[1] {
                Some(iotdb_net::Value::Double(v)) => *v as i64,
                Some(iotdb_net::Value::Int64(v)) => *v,
                other => panic!("value {other:?}"),
            };
            (time, value)
        })
        .collect()
}

/// One row of `SHOW CLUSTER`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRow {
    pub node_id: u32,
    pub node_type: String,
    pub status: String,
    pub internal_address: String,
    pub internal_port: u16,
}

/// The position of column `name`.
/// The rows of an admin view (`SHOW REGIONS`, ...) as column name → text cell; a cell
/// that is not text (or null) is shown as its debug form.
pub fn text_rows(result: &ResultSet) -> Vec<std::collections::BTreeMap<String, String>> {
    result
        .rows
        .iter()
        .map(|row| {
            result
                .column_names
                .iter()
                .zip(row)
                .map(|(name, cell)| {
                    let text = match cell {
                        Some(iotdb_net::Value::Text(bytes)) => {
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                        other => format!("{other:?}"),
                    };
                    (name.clone(), text)
                })
                .collect()
        })
        .collect()
}

fn column(result: &ResultSet, name: &str) -> anyhow::Result<usize> {
    result
        .column_names
        .iter()
        .position(|c| c == name)
        .with_context(|| format!("no {name} column in {:?}", result.column_names))
}

fn rows_of(result: &ResultSet) -> anyhow::Result<Vec<ClusterRow>> {
    let column = |name: &str| column(result, name);
    let (id, kind, status, address, port) = (
        column("NodeID")?,
        column("NodeType")?,
        column("Status")?,
        column("InternalAddress")?,
        column("InternalPort")?,
    );
    result
        .rows
        .iter()
        .map(|row| {
            Ok(ClusterRow {
                node_id: text(row, id)?.parse()?,
                node_type: text(row, kind)?,
                status: text(row, status)?,
                internal_address: text(row, address)?,
                internal_port: text(row, port)?.parse()?,
            })
        })
        .collect()
}

fn text(row: &[Option<iotdb_net::Value>], i: usize) -> anyhow::Result<String> {
    match &row[i] {
        Some(iotdb_net::Value::Text(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        other => bail!("column {i} is {other:?}, not text"),
    }
}
