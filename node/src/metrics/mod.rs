//! Metrics: counters and gauges of one node, served as Prometheus text on the metrics port
//! (`dn_metric_prometheus_reporter_port`, `cn_metric_prometheus_reporter_port`) when the
//! role's reporter list names `PROMETHEUS` (IoTDB's keys and default: off).
//!
//! ```text
//!   shard 0 ──Relaxed adds──► ShardMetrics[0] ─┐
//!   shard 1 ──Relaxed adds──► ShardMetrics[1] ─┼─► scrape: sum over shards ─► text
//!   shard n ──every second──► gauges[n] ───────┘        (the `metrics` thread)
//! ```
//!
//! Thread per core: each shard owns one [`ShardMetrics`] slot and is the only writer of
//! it, so the write path adds to an uncontended atomic (no lock, no allocation, no shared
//! cache line); the storage I/O counters of the shard's regions
//! ([`iotdb_storage::metrics`]) hang off the same slot. Gauges that live in shard-local
//! state (memtable bytes, region replicas, replication lag) are published by the shard
//! once per [`GAUGE_PUBLISH_INTERVAL`]. The HTTP endpoint ([`http`]) reads every slot at
//! scrape time and sums them; nothing is aggregated in between.
//!
//! Node-level gauges are published by their owner at the same interval: the SchemaRegion
//! replica count by the control thread (which holds the SchemaRegions), and the cluster
//! gauges (nodes, region groups and replicas by status) by the ConfigNode leader (the
//! ConfigNode service, or a standalone node's control thread).

pub mod http;
pub mod text;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iotdb_net::StatusCode;

use crate::confignode::ClusterGauges;
use iotdb_storage::metrics::{StorageMetrics, StorageSnapshot, WAL_FSYNC_BUCKETS_MICROS};

use text::{Exposition, Kind};

/// How often a shard publishes its gauges. Why 1 s: scrapes come every 10–60 s, and the
/// publication walks the shard's regions and replication groups.
pub const GAUGE_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Status codes below this are counted each under its own label; IoTDB's codes are below
/// 1000 (`iotdb_model::status`), anything else is counted as `other`.
const STATUS_CODE_SLOTS: usize = 1024;

/// The reporter that turns the metrics port on, in a `*_metric_reporter_list`.
pub const PROMETHEUS_REPORTER: &str = "PROMETHEUS";

/// What a client request was, for the request counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Write,
    Query,
    /// Anything else (DDL, administration, route fetches): counted only when it fails.
    Other,
}

impl RequestKind {
    /// The kind of an SQL statement, by its first word.
    pub fn of_sql(statement: &str) -> RequestKind {
        let word = statement.trim_start().split_ascii_whitespace().next();
        match word {
            Some(w) if w.eq_ignore_ascii_case("insert") => RequestKind::Write,
            Some(w) if w.eq_ignore_ascii_case("select") => RequestKind::Query,
            _ => RequestKind::Other,
        }
    }
}

/// The counters and published gauges of one shard. Owner: that shard's thread writes;
/// the metrics thread reads. Aligned to 128 bytes (two cache lines, as adjacent-line
/// prefetchers pair them) so neighbouring shards' slots never share a line.
#[repr(align(128))]
pub struct ShardMetrics {
    /// The I/O counters of the shard's regions, installed on the shard's thread.
    pub storage: Arc<StorageMetrics>,
    points_written: AtomicU64,
    write_requests: AtomicU64,
    query_requests: AtomicU64,
    /// Failed requests by status code; the last slot counts codes past the table.
    errors: Box<[AtomicU64]>,
    memtable_bytes: AtomicU64,
    data_region_replicas: AtomicU64,
    /// (region group, entries the furthest follower lags) of the groups this shard
    /// leads; replaced whole once a second.
    replication_lag: Mutex<Vec<(u32, u64)>>,
}

impl ShardMetrics {
    fn new() -> ShardMetrics {
        ShardMetrics {
            storage: Arc::new(StorageMetrics::default()),
            points_written: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
            query_requests: AtomicU64::new(0),
            errors: (0..=STATUS_CODE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            memtable_bytes: AtomicU64::new(0),
            data_region_replicas: AtomicU64::new(0),
            replication_lag: Mutex::new(Vec::new()),
        }
    }

    /// `points` points were written for a client (acknowledged).
    pub fn points_written(&self, points: u64) {
        self.points_written.fetch_add(points, Ordering::Relaxed);
    }

    /// A client request arrived.
    pub fn request(&self, kind: RequestKind) {
        match kind {
            RequestKind::Write => self.write_requests.fetch_add(1, Ordering::Relaxed),
            RequestKind::Query => self.query_requests.fetch_add(1, Ordering::Relaxed),
            RequestKind::Other => 0,
        };
    }

    /// A client request failed with `code`.
    pub fn error(&self, code: StatusCode) {
        let slot = usize::try_from(code.code())
            .ok()
            .filter(|&c| c < STATUS_CODE_SLOTS)
            .unwrap_or(STATUS_CODE_SLOTS);
        self.errors[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The shard's gauges, as it sees them now.
    pub fn publish(&self, memtable_bytes: u64, data_region_replicas: u64, lag: Vec<(u32, u64)>) {
        self.memtable_bytes.store(memtable_bytes, Ordering::Relaxed);
        self.data_region_replicas
            .store(data_region_replicas, Ordering::Relaxed);
        if let Ok(mut published) = self.replication_lag.lock() {
            *published = lag;
        }
    }
}

/// A node's roles, for the status gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    ConfigNode,
    DataNode,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::ConfigNode => "ConfigNode",
            Role::DataNode => "DataNode",
        }
    }
}

/// A node's status as the gauge reports it (IoTDB's `NodeStatus` names, plus the start
/// and the stop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeStatus {
    Starting = 0,
    Running = 1,
    ReadOnly = 2,
    Stopping = 3,
}

impl NodeStatus {
    const ALL: [NodeStatus; 4] = [
        NodeStatus::Starting,
        NodeStatus::Running,
        NodeStatus::ReadOnly,
        NodeStatus::Stopping,
    ];

    fn name(self) -> &'static str {
        match self {
            NodeStatus::Starting => "Starting",
            NodeStatus::Running => "Running",
            NodeStatus::ReadOnly => "ReadOnly",
            NodeStatus::Stopping => "Stopping",
        }
    }
}

/// Every metric of one process: a node view shared by its shards (each writing its own
/// slot), the control thread and the metrics thread (reading).
pub struct NodeMetrics {
    roles: Vec<Role>,
    status: AtomicU8,
    shards: Vec<ShardMetrics>,
    /// SchemaRegion replicas this DataNode holds; written by the control thread.
    schema_region_replicas: AtomicU64,
    /// The cluster as the ConfigNode leader sees it; `None` on a follower (its statuses
    /// would be stale) and before the first publication. Written by the ConfigNode's
    /// thread, replaced whole.
    cluster: Mutex<Option<ClusterGauges>>,
}

impl NodeMetrics {
    /// The metrics of a process with `roles` and `shards` shards (0 for a ConfigNode).
    pub fn new(roles: Vec<Role>, shards: usize) -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics {
            roles,
            status: AtomicU8::new(NodeStatus::Starting as u8),
            shards: (0..shards).map(|_| ShardMetrics::new()).collect(),
            schema_region_replicas: AtomicU64::new(0),
            cluster: Mutex::new(None),
        })
    }

    /// The SchemaRegion replicas this DataNode holds now.
    pub fn set_schema_region_replicas(&self, count: u64) {
        self.schema_region_replicas.store(count, Ordering::Relaxed);
    }

    /// The cluster gauges: the leader's view, or `None` where this node does not lead.
    pub fn set_cluster(&self, gauges: Option<ClusterGauges>) {
        if let Ok(mut cluster) = self.cluster.lock() {
            *cluster = gauges;
        }
    }

    /// Shard `index`'s slot.
    pub fn shard(&self, index: usize) -> &ShardMetrics {
        &self.shards[index]
    }

    pub fn set_status(&self, status: NodeStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
    }

    /// A running node turned read-only (a region refused writes for lack of disk).
    pub fn set_read_only(&self) {
        let _ = self.status.compare_exchange(
            NodeStatus::Running as u8,
            NodeStatus::ReadOnly as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn status(&self) -> NodeStatus {
        let value = self.status.load(Ordering::Relaxed);
        NodeStatus::ALL
            .into_iter()
            .find(|s| *s as u8 == value)
            .unwrap_or(NodeStatus::Starting)
    }

    /// One scrape: every family, summed over the shards.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        let status = self.status();
        out.family(
            "iotdb_node_status",
            Kind::Gauge,
            "1 for the node's current status, 0 for the others, per role of the process.",
        );
        for role in &self.roles {
            for candidate in NodeStatus::ALL {
                out.sample(
                    "iotdb_node_status",
                    &[("role", role.name()), ("status", candidate.name())],
                    if candidate == status { 1.0 } else { 0.0 },
                );
            }
        }
        if self.roles.contains(&Role::ConfigNode) {
            self.render_cluster(&mut out);
        }
        if self.roles.contains(&Role::DataNode) {
            self.render_data_node(&mut out);
        }
        out.finish()
    }

    /// The ConfigNode leader's cluster gauges (families without samples elsewhere).
    fn render_cluster(&self, out: &mut Exposition) {
        let cluster = self.cluster.lock().ok().and_then(|c| c.clone());
        let families: [(&str, &str, &str, Gauges); 3] = [
            (
                "iotdb_cluster_nodes",
                "type",
                "Nodes of the cluster by type and status, as SHOW CLUSTER lists them (on the \
                 ConfigNode leader).",
                |g| &g.nodes,
            ),
            (
                "iotdb_cluster_region_groups",
                "kind",
                "Region groups by kind and status (Running: every replica runs; Available: \
                 a minority is not Running; Discouraged: one is ReadOnly; Disabled: no \
                 majority runs), on the ConfigNode leader.",
                |g| &g.region_groups,
            ),
            (
                "iotdb_cluster_region_replicas",
                "kind",
                "Region replicas by kind and status, as SHOW REGIONS lists them (on the \
                 ConfigNode leader).",
                |g| &g.region_replicas,
            ),
        ];
        for (name, label, help, field) in families {
            out.family(name, Kind::Gauge, help);
            let Some(cluster) = &cluster else { continue };
            for ((kind, status), count) in field(cluster) {
                out.sample(
                    name,
                    &[(label, kind.as_str()), ("status", status.as_str())],
                    *count as f64,
                );
            }
        }
    }

    fn render_data_node(&self, out: &mut Exposition) {
        let sum = |field: Field| -> f64 {
            self.shards
                .iter()
                .map(|s| field(s).load(Ordering::Relaxed))
                .sum::<u64>() as f64
        };
        let counters: [(&str, &str, Field); 3] = [
            (
                "iotdb_points_written_total",
                "Points written by clients and acknowledged (rows times columns).",
                |s| &s.points_written,
            ),
            (
                "iotdb_write_requests_total",
                "Client write requests (tablet inserts, SQL INSERT).",
                |s| &s.write_requests,
            ),
            (
                "iotdb_query_requests_total",
                "Client query requests (raw, aggregate, last, SQL SELECT).",
                |s| &s.query_requests,
            ),
        ];
        for (name, help, field) in counters {
            out.family(name, Kind::Counter, help)
                .sample(name, &[], sum(field));
        }
        out.family(
            "iotdb_request_errors_total",
            Kind::Counter,
            "Client requests that failed, by IoTDB status code.",
        );
        for slot in 0..=STATUS_CODE_SLOTS {
            let count: u64 = self
                .shards
                .iter()
                .map(|s| s.errors[slot].load(Ordering::Relaxed))
                .sum();
            if count > 0 {
                let label = if slot == STATUS_CODE_SLOTS {
                    "other".to_string()
                } else {
                    slot.to_string()
                };
                out.sample(
                    "iotdb_request_errors_total",
                    &[("status", label.as_str())],
                    count as f64,
                );
            }
        }
        let mut storage = StorageSnapshot::default();
        for shard in &self.shards {
            shard.storage.add_to(&mut storage);
        }
        render_storage(out, &storage);
        out.family(
            "iotdb_memtable_bytes",
            Kind::Gauge,
            "Bytes held by memtables (active and frozen) over all shards.",
        )
        .sample("iotdb_memtable_bytes", &[], sum(|s| &s.memtable_bytes));
        out.family(
            "iotdb_region_replicas",
            Kind::Gauge,
            "Region replicas this DataNode holds, by kind.",
        )
        .sample(
            "iotdb_region_replicas",
            &[("kind", "DataRegion")],
            sum(|s| &s.data_region_replicas),
        )
        .sample(
            "iotdb_region_replicas",
            &[("kind", "SchemaRegion")],
            self.schema_region_replicas.load(Ordering::Relaxed) as f64,
        );
        out.family(
            "iotdb_replication_lag_entries",
            Kind::Gauge,
            "Log entries the furthest follower lags behind, per data region group this \
             node leads.",
        );
        let mut lags: Vec<(u32, u64)> = Vec::new();
        for shard in &self.shards {
            if let Ok(published) = shard.replication_lag.lock() {
                lags.extend(published.iter().copied());
            }
        }
        lags.sort_unstable();
        for (group, lag) in lags {
            out.sample(
                "iotdb_replication_lag_entries",
                &[("region", group.to_string().as_str())],
                lag as f64,
            );
        }
    }
}

/// One counter or gauge of a shard's slot, to sum over shards.
type Field = fn(&ShardMetrics) -> &AtomicU64;

/// One family of the cluster gauges.
type Gauges = fn(&ClusterGauges) -> &std::collections::BTreeMap<(String, String), u64>;

fn render_storage(out: &mut Exposition, storage: &StorageSnapshot) {
    out.family(
        "iotdb_wal_fsync_seconds",
        Kind::Histogram,
        "Latency of WAL fdatasyncs.",
    );
    for (bound, count) in WAL_FSYNC_BUCKETS_MICROS.iter().zip(&storage.wal_fsync_le) {
        let le = format!("{}", *bound as f64 / 1e6);
        out.sample(
            "iotdb_wal_fsync_seconds_bucket",
            &[("le", le.as_str())],
            *count as f64,
        );
    }
    let all = storage.wal_fsync_le[WAL_FSYNC_BUCKETS_MICROS.len()];
    out.sample(
        "iotdb_wal_fsync_seconds_bucket",
        &[("le", "+Inf")],
        all as f64,
    )
    .sample(
        "iotdb_wal_fsync_seconds_sum",
        &[],
        storage.wal_fsync_micros as f64 / 1e6,
    )
    .sample("iotdb_wal_fsync_seconds_count", &[], all as f64);
    out.family(
        "iotdb_flush_bytes_total",
        Kind::Counter,
        "Bytes of sealed files written by memtable flushes.",
    )
    .sample("iotdb_flush_bytes_total", &[], storage.flush_bytes as f64);
    out.family(
        "iotdb_compaction_bytes_total",
        Kind::Counter,
        "Bytes of sealed files written by compactions.",
    )
    .sample(
        "iotdb_compaction_bytes_total",
        &[],
        storage.compaction_bytes as f64,
    );
}

/// The line printed on stdout once the metrics endpoint listens (tests read the port
/// from it when the configured port is 0).
pub const METRICS_LINE_PREFIX: &str = "iotdb-server metrics: http://";

/// Serves `metrics` on `address` (`None`: metrics are off) from the `metrics` thread;
/// `key` names the port's configuration key in errors. Returns the bound address.
pub fn serve(
    address: Option<std::net::SocketAddr>,
    key: &'static str,
    metrics: &Arc<NodeMetrics>,
) -> Result<Option<std::net::SocketAddr>, http::MetricsError> {
    let Some(address) = address else {
        return Ok(None);
    };
    let render: http::Render = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let bound = http::start(address, key, render)?;
    tracing::info!(%bound, "serving Prometheus metrics on /metrics");
    println!("{METRICS_LINE_PREFIX}{bound}/metrics");
    Ok(Some(bound))
}

/// Whether a `*_metric_reporter_list` value (comma-separated, IoTDB's form) turns the
/// Prometheus endpoint on; `Err` names a reporter this server does not have.
pub fn prometheus_enabled(list: &str) -> Result<bool, String> {
    let mut enabled = false;
    for reporter in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        if reporter.eq_ignore_ascii_case(PROMETHEUS_REPORTER) {
            enabled = true;
        } else {
            return Err(format!(
                "unknown reporter {reporter:?}: only {PROMETHEUS_REPORTER} is supported"
            ));
        }
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shards' counters are summed, errors labelled by code, the status gauge is 1 for
    /// the current status only, and the histogram's count matches its `+Inf` bucket.
    #[test]
    fn renders_the_sum_of_the_shards() {
        let metrics = NodeMetrics::new(vec![Role::ConfigNode, Role::DataNode], 2);
        metrics.shard(0).points_written(10);
        metrics.shard(1).points_written(5);
        metrics.shard(0).request(RequestKind::Write);
        metrics.shard(1).request(RequestKind::Query);
        metrics.shard(1).request(RequestKind::Other);
        metrics.shard(0).error(StatusCode(507));
        metrics.shard(1).error(StatusCode(507));
        metrics.shard(1).error(StatusCode(5000));
        metrics.shard(0).publish(100, 2, vec![(7, 3)]);
        metrics.shard(1).publish(50, 1, vec![(2, 0)]);
        metrics.set_status(NodeStatus::Running);
        metrics.set_schema_region_replicas(4);
        let mut cluster = ClusterGauges::default();
        cluster
            .nodes
            .insert(("DataNode".into(), "Unknown".into()), 2);
        cluster
            .region_groups
            .insert(("DataRegion".into(), "Available".into()), 5);
        metrics.set_cluster(Some(cluster));
        let text = metrics.render();
        for line in [
            "iotdb_points_written_total 15",
            "iotdb_write_requests_total 1",
            "iotdb_query_requests_total 1",
            "iotdb_request_errors_total{status=\"507\"} 2",
            "iotdb_request_errors_total{status=\"other\"} 1",
            "iotdb_memtable_bytes 150",
            "iotdb_region_replicas{kind=\"DataRegion\"} 3",
            "iotdb_region_replicas{kind=\"SchemaRegion\"} 4",
            "iotdb_cluster_nodes{type=\"DataNode\",status=\"Unknown\"} 2",
            "iotdb_cluster_region_groups{kind=\"DataRegion\",status=\"Available\"} 5",
            "# TYPE iotdb_cluster_region_replicas gauge",
            "iotdb_replication_lag_entries{region=\"2\"} 0",
            "iotdb_replication_lag_entries{region=\"7\"} 3",
            "iotdb_node_status{role=\"ConfigNode\",status=\"Running\"} 1",
            "iotdb_node_status{role=\"DataNode\",status=\"Starting\"} 0",
            "iotdb_wal_fsync_seconds_bucket{le=\"+Inf\"} 0",
            "iotdb_wal_fsync_seconds_count 0",
            "# TYPE iotdb_wal_fsync_seconds histogram",
            "# TYPE iotdb_flush_bytes_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        let config_node = NodeMetrics::new(vec![Role::ConfigNode], 0).render();
        assert!(
            !config_node.contains("iotdb_points_written_total"),
            "{config_node}"
        );
        assert!(
            !config_node.contains("iotdb_cluster_nodes{"),
            "no samples before the leader publishes: {config_node}"
        );
    }

    #[test]
    fn reporter_lists() {
        assert_eq!(prometheus_enabled(""), Ok(false));
        assert_eq!(prometheus_enabled("PROMETHEUS"), Ok(true));
        assert_eq!(prometheus_enabled(" prometheus , "), Ok(true));
        assert!(prometheus_enabled("JMX").unwrap_err().contains("JMX"));
    }

    #[test]
    fn sql_kinds() {
        assert_eq!(RequestKind::of_sql("  insert into"), RequestKind::Write);
        assert_eq!(RequestKind::of_sql("SELECT s1"), RequestKind::Query);
        assert_eq!(RequestKind::of_sql("flush"), RequestKind::Other);
        assert_eq!(RequestKind::of_sql(""), RequestKind::Other);
    }
}
