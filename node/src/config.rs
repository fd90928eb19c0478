//! The server's settings: a TOML file with IoTDB's key names where IoTDB has the concept,
//! overridden by command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use iotdb_storage::{RegionConfig, WalMode};
use serde::{Deserialize, Serialize};

/// IoTDB's default administrator and password (`root`/`root`).
pub const DEFAULT_USER: &str = "root";
pub const DEFAULT_PASSWORD: &str = "root";

/// The smallest `shard_write_memory_bytes` accepted. Why 1 MiB: below it every tablet
/// would freeze and flush a memtable of its own, which only a typo asks for.
pub const SHARD_WRITE_MEMORY_BYTES_MIN: usize = 1 << 20;

/// Heartbeats a node may miss in a row before the ConfigNode shows it `Unknown` (a broken
/// connection marks it at once). Why 2: a node stopped by SIGKILL turns Unknown within
/// three heartbeat intervals, while one slow answer on a busy machine does not flap it.
pub const HEARTBEATS_MISSED_FOR_UNKNOWN: u32 = 2;

/// The shortest `heartbeat_interval_in_ms` accepted. Why 50 ms: below it heartbeats cost
/// more than the work they watch, and timeouts fire on an ordinary scheduling delay.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 50;

/// The default `dn_remote_read_timeout_ms` (see there).
pub const REMOTE_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Settings of one `iotdb-server` process. `conf/iotdb-system.toml` at the repository root
/// lists every key with its default (checked by `tests/tests/scripts.rs`,
/// `shipped_conf_lists_every_key_with_its_default`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub cluster_name: String,
    /// Address clients connect to.
    pub dn_rpc_address: String,
    pub dn_rpc_port: u16,
    pub dn_internal_address: String,
    pub dn_internal_port: u16,
    pub cn_internal_address: String,
    pub cn_internal_port: u16,
    pub cn_consensus_port: u16,
    /// `host:port` of a running ConfigNode (its `cn_internal_port`) that a new ConfigNode
    /// registers with; the first ConfigNode names itself and founds the cluster.
    pub cn_seed_config_node: String,
    /// `host:port` of a running ConfigNode a DataNode registers with (IoTDB's
    /// `dn_seed_config_node`).
    pub dn_seed_config_node: String,
    /// How long a starting node (a DataNode, or a ConfigNode joining a cluster) keeps
    /// trying its seed ConfigNode while it does not answer before it exits with an error
    /// naming the seed key.
    pub seed_config_node_wait_in_ms: u64,
    /// How often the ConfigNode leader heartbeats every node; a node that misses
    /// [`HEARTBEATS_MISSED_FOR_UNKNOWN`] in a row (or whose connection breaks) is `Unknown`.
    pub heartbeat_interval_in_ms: u64,
    pub dn_mpp_data_exchange_port: u16,
    pub dn_schema_region_consensus_port: u16,
    pub dn_data_region_consensus_port: u16,
    /// Root of every file the node writes (`confignode/`, `datanode/`).
    pub data_dir: PathBuf,
    /// Shards (cores) of the DataNode; 0 means every available core.
    pub dn_cores: usize,
    /// Pin each shard's thread to its core. Right on a dedicated machine; on a shared, busy
    /// one a pinned shard must wait for its core, so turning it off can lower latency.
    pub dn_pin_shards_to_cores: bool,
    /// `sync`, `async` or `off`.
    pub wal_mode: String,
    pub wal_async_mode_fsync_delay_in_ms: u64,
    pub time_partition_interval: i64,
    pub series_slot_num: u32,
    pub data_replication_factor: u32,
    pub schema_replication_factor: u32,
    /// `leader` (IoTDB's: acknowledge once the leader's WAL holds a write) or `in_sync`
    /// (once every replica of the group's in-sync set holds it durably).
    pub data_replication_ack: String,
    /// `AUTO` or `CUSTOM`.
    pub data_region_group_extension_policy: String,
    pub default_data_region_group_num_per_database: u32,
    pub root_password: String,
    /// Serve a non-loopback address while `root_password` is still the default.
    pub allow_default_password_on_public_address: bool,
    /// Most client connections at once, over all shards.
    pub dn_rpc_max_concurrent_client_num: usize,
    /// Memtable bytes all regions of one shard may hold together: past it the shard's
    /// writes wait for a flush, then are rejected (606); flushes of the largest memtables
    /// start at a third of it (`iotdb_storage::budget`).
    pub shard_write_memory_bytes: usize,
    /// Replaced by `shard_write_memory_bytes` (memory is budgeted per shard, not per
    /// region): still accepted so existing configuration files load; a start warns.
    pub memtable_flush_bytes: Option<usize>,
    /// Replaced by `shard_write_memory_bytes`; accepted and ignored with a warning.
    pub memtable_bytes_max: Option<usize>,
    /// Milliseconds a time partition with several sealed files must take no writes before
    /// it is compacted into one file (see `iotdb_storage::config::COMPACTION_COLD_DELAY_DEFAULT`).
    pub compaction_cold_delay_in_ms: u64,
    /// WAL bytes a replicated region keeps for lagging followers beyond what it flushed
    /// (per region; IoTDB's `wal_throttle_threshold_in_byte` is per node and blocks
    /// writes). Past it the oldest flushed WAL is deleted anyway and a follower that
    /// needed it is caught up by a snapshot of the region instead.
    pub wal_throttle_threshold_in_byte: u64,
    /// A WAL segment file is closed and a new one begun past this size (IoTDB's name);
    /// flushed WAL is deleted a whole segment at a time.
    pub wal_file_size_threshold_in_byte: u64,
    /// Write WAL files with direct I/O (`O_DIRECT`, whole 4 KiB blocks) where the file
    /// system allows it, else through the page cache: logged bytes go from the batch
    /// buffer to the disk with no copy (this project's key; IoTDB has none).
    pub wal_direct_io: bool,
    /// Worker threads of the storage background pool that runs every region's flushes,
    /// compactions and metadata writes; 0 means half the cores, at least 2
    /// (`iotdb_storage::background::default_threads`).
    pub storage_background_threads: usize,
    /// IoTDB's `enable_partial_insert`: write the measurements of a row that fit their
    /// series and report the others (614), rather than refusing the whole insert.
    pub enable_partial_insert: bool,
    /// How long a DataNode waits for another to answer one request of a region read (a
    /// page of a scan, an aggregate, a `LAST`) before it asks the next replica that may
    /// serve the read (`datanode::group_read`). Why 10 s: a page takes milliseconds; a
    /// replica that takes seconds is frozen or failing, and the query should move on while
    /// the client still waits.
    pub dn_remote_read_timeout_ms: u64,
    /// Bytes of one page of a scan another DataNode answers (capped at 8 MiB so a page
    /// fits an internal frame; `datanode::read_pages`). For tests: small pages make a
    /// small data set span many pages.
    pub dn_remote_read_page_bytes: usize,
    /// IoTDB's reporter list of a DataNode (comma-separated): `PROMETHEUS` serves the
    /// DataNode's metrics on `dn_metric_prometheus_reporter_port` (`crate::metrics`);
    /// empty (IoTDB's default) serves none. A standalone server follows this key.
    pub dn_metric_reporter_list: String,
    /// The DataNode's metrics port, on `dn_rpc_address` (0: the kernel picks one, printed
    /// at start).
    pub dn_metric_prometheus_reporter_port: u16,
    /// IoTDB's reporter list of a ConfigNode: `PROMETHEUS` serves its metrics on
    /// `cn_metric_prometheus_reporter_port`.
    pub cn_metric_reporter_list: String,
    /// The ConfigNode's metrics port, on `cn_internal_address` (0: the kernel picks).
    pub cn_metric_prometheus_reporter_port: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let region = RegionConfig::default();
        ServerConfig {
            cluster_name: "defaultCluster".into(),
            dn_rpc_address: "127.0.0.1".into(),
            dn_rpc_port: 6667,
            dn_internal_address: "127.0.0.1".into(),
            dn_internal_port: 10730,
            cn_internal_address: "127.0.0.1".into(),
            cn_internal_port: 10710,
            cn_consensus_port: 10720,
            cn_seed_config_node: "127.0.0.1:10710".into(),
            dn_seed_config_node: "127.0.0.1:10710".into(),
            seed_config_node_wait_in_ms: crate::cluster::registration::SEED_WAIT_MS_DEFAULT,
            heartbeat_interval_in_ms: 1000,
            dn_mpp_data_exchange_port: 10740,
            dn_schema_region_consensus_port: 10750,
            dn_data_region_consensus_port: 10760,
            data_dir: PathBuf::from("data"),
            dn_cores: 0,
            dn_pin_shards_to_cores: true,
            wal_mode: "sync".into(),
            wal_async_mode_fsync_delay_in_ms: 1000,
            time_partition_interval: iotdb_storage::config::TIME_PARTITION_INTERVAL_MS_DEFAULT,
            series_slot_num: 1000,
            data_replication_factor: 1,
            schema_replication_factor: 1,
            data_replication_ack: "leader".into(),
            data_region_group_extension_policy: "AUTO".into(),
            default_data_region_group_num_per_database: 2,
            root_password: DEFAULT_PASSWORD.into(),
            allow_default_password_on_public_address: false,
            dn_rpc_max_concurrent_client_num: 1000,
            shard_write_memory_bytes: iotdb_storage::config::SHARD_WRITE_MEMORY_BYTES_DEFAULT,
            memtable_flush_bytes: None,
            memtable_bytes_max: None,
            compaction_cold_delay_in_ms: region.compaction_cold_delay.as_millis() as u64,
            wal_throttle_threshold_in_byte: region.wal_retention_bytes_max,
            wal_file_size_threshold_in_byte: region.wal_segment_bytes,
            wal_direct_io: region.wal_direct_io,
            storage_background_threads: 0,
            enable_partial_insert: true,
            dn_remote_read_timeout_ms: REMOTE_READ_TIMEOUT_MS_DEFAULT,
            dn_remote_read_page_bytes: crate::datanode::read_pages::PAGE_BYTES_DEFAULT,
            dn_metric_reporter_list: String::new(),
            dn_metric_prometheus_reporter_port: 9092,
            cn_metric_reporter_list: String::new(),
            cn_metric_prometheus_reporter_port: 9091,
        }
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{key} = {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

impl ServerConfig {
    /// Reads a TOML file; keys not given keep their defaults.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Reads an optional TOML file, then applies `--set KEY=VALUE` overrides (a value is
    /// read as TOML — `6668`, `true`, `"text"` — and as a plain string when it is not
    /// valid TOML, so `--set cluster_name=c1` works unquoted). An unknown key is refused
    /// with its name.
    pub fn load_with_overrides(
        path: Option<&Path>,
        overrides: &[String],
    ) -> Result<ServerConfig, ConfigError> {
        let origin = path.map_or_else(|| PathBuf::from("--set"), Path::to_path_buf);
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Parse {
                        path: path.to_path_buf(),
                        source: Box::new(source),
                    })?
            }
            None => toml::Table::new(),
        };
        for item in overrides {
            let Some((key, value)) = item.split_once('=') else {
                return Err(ConfigError::Invalid {
                    key: "--set",
                    value: item.clone(),
                    reason: "expected KEY=VALUE".into(),
                });
            };
            let key = key.trim();
            let value = value.trim();
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            table.insert(key.to_string(), parsed);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|source| ConfigError::Parse {
                path: origin,
                source: Box::new(source),
            })
    }

    /// The cluster-wide settings this process declares; every node of a cluster must
    /// declare the same (checked at registration, naming the key that differs).
    pub fn cluster_settings(&self) -> crate::confignode::ClusterSettings {
        use crate::confignode::{ClusterSettings, RegionGroupPolicy, ReplicationAck};
        let policy = if self
            .data_region_group_extension_policy
            .eq_ignore_ascii_case("CUSTOM")
        {
            RegionGroupPolicy::Custom(self.default_data_region_group_num_per_database.max(1))
        } else {
            RegionGroupPolicy::Auto
        };
        ClusterSettings {
            cluster_name: self.cluster_name.clone(),
            series_slot_num: self.series_slot_num,
            time_partition_interval_ms: self.time_partition_interval,
            schema_replication_factor: self.schema_replication_factor,
            data_replication_factor: self.data_replication_factor,
            data_region_group_policy: policy,
            data_replication_ack: ReplicationAck::parse(&self.data_replication_ack)
                .unwrap_or_default(),
            ..ClusterSettings::default()
        }
    }

    /// The heartbeat interval.
    pub fn seed_config_node_wait(&self) -> Duration {
        Duration::from_millis(self.seed_config_node_wait_in_ms)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_in_ms)
    }

    /// Checks the settings against each other and the rules of the deployment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: String, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                value,
                reason: reason.into(),
            })
        };
        if self.wal_mode_parsed().is_none() {
            return invalid(
                "wal_mode",
                self.wal_mode.clone(),
                "expected sync, async or off",
            );
        }
        if self.time_partition_interval <= 0 {
            return invalid(
                "time_partition_interval",
                self.time_partition_interval.to_string(),
                "must be positive",
            );
        }
        if self.series_slot_num == 0 {
            return invalid("series_slot_num", "0".into(), "must be positive");
        }
        if self.shard_write_memory_bytes < SHARD_WRITE_MEMORY_BYTES_MIN {
            return invalid(
                "shard_write_memory_bytes",
                self.shard_write_memory_bytes.to_string(),
                "must be at least 1 MiB",
            );
        }
        let max = crate::confignode::REPLICATION_FACTOR_MAX;
        for (key, factor) in [
            ("schema_replication_factor", self.schema_replication_factor),
            ("data_replication_factor", self.data_replication_factor),
        ] {
            if factor == 0 || factor > max {
                return invalid(
                    key,
                    factor.to_string(),
                    &format!("must be between 1 and {max}"),
                );
            }
        }
        if crate::confignode::ReplicationAck::parse(&self.data_replication_ack).is_none() {
            return invalid(
                "data_replication_ack",
                self.data_replication_ack.clone(),
                "expected leader or in_sync",
            );
        }
        if self.heartbeat_interval_in_ms < HEARTBEAT_INTERVAL_MS_MIN {
            return invalid(
                "heartbeat_interval_in_ms",
                self.heartbeat_interval_in_ms.to_string(),
                "must be at least 50",
            );
        }
        for (key, seed) in [
            ("cn_seed_config_node", &self.cn_seed_config_node),
            ("dn_seed_config_node", &self.dn_seed_config_node),
        ] {
            if parse_endpoint(seed).is_none() {
                return invalid(
                    key,
                    seed.clone(),
                    "expected host:port, e.g. 127.0.0.1:10710",
                );
            }
        }
        if !["AUTO", "CUSTOM"].contains(
            &self
                .data_region_group_extension_policy
                .to_ascii_uppercase()
                .as_str(),
        ) {
            return invalid(
                "data_region_group_extension_policy",
                self.data_region_group_extension_policy.clone(),
                "expected AUTO or CUSTOM",
            );
        }
        let ip: IpAddr = match self.dn_rpc_address.parse() {
            Ok(ip) => ip,
            Err(_) => {
                return invalid(
                    "dn_rpc_address",
                    self.dn_rpc_address.clone(),
                    "not an IP address",
                );
            }
        };
        if !ip.is_loopback()
            && self.root_password == DEFAULT_PASSWORD
            && !self.allow_default_password_on_public_address
        {
            return invalid(
                "dn_rpc_address",
                self.dn_rpc_address.clone(),
                "refusing to serve a non-loopback address with the default root password: set \
                 root_password, or allow_default_password_on_public_address = true",
            );
        }
        if self.dn_remote_read_timeout_ms == 0 {
            return invalid("dn_remote_read_timeout_ms", "0".into(), "must be positive");
        }
        if self.dn_remote_read_page_bytes == 0 {
            return invalid("dn_remote_read_page_bytes", "0".into(), "must be positive");
        }
        if self.dn_rpc_max_concurrent_client_num == 0 {
            return invalid(
                "dn_rpc_max_concurrent_client_num",
                "0".into(),
                "must be positive",
            );
        }
        for (key, list) in [
            ("dn_metric_reporter_list", &self.dn_metric_reporter_list),
            ("cn_metric_reporter_list", &self.cn_metric_reporter_list),
        ] {
            if let Err(reason) = crate::metrics::prometheus_enabled(list) {
                return invalid(key, list.clone(), &reason);
            }
        }
        let threads = self.storage_background_threads;
        if threads != 0
            && !(iotdb_storage::config::BACKGROUND_THREADS_MIN
                ..=iotdb_storage::config::BACKGROUND_THREADS_MAX)
                .contains(&threads)
        {
            return invalid(
                "storage_background_threads",
                threads.to_string(),
                "expected 0 (half the cores) or 2 to 256: one worker is kept free of \
                 compactions for flushes",
            );
        }
        Ok(())
    }

    /// The storage background pool's size.
    pub fn background_pool_options(&self) -> iotdb_storage::PoolOptions {
        let mut options = iotdb_storage::PoolOptions::default();
        if self.storage_background_threads != 0 {
            options.threads = self.storage_background_threads;
        }
        options
    }

    pub fn wal_mode_parsed(&self) -> Option<WalMode> {
        WalMode::parse(&self.wal_mode)
    }

    /// `cn_internal_address:cn_internal_port`.
    pub fn cn_internal_socket_address(&self) -> Result<SocketAddr, ConfigError> {
        socket_address(
            "cn_internal_address",
            &self.cn_internal_address,
            self.cn_internal_port,
        )
    }

    /// `dn_internal_address:dn_internal_port`.
    pub fn dn_internal_socket_address(&self) -> Result<SocketAddr, ConfigError> {
        socket_address(
            "dn_internal_address",
            &self.dn_internal_address,
            self.dn_internal_port,
        )
    }

    /// The client RPC socket address.
    pub fn rpc_socket_address(&self) -> Result<SocketAddr, ConfigError> {
        socket_address("dn_rpc_address", &self.dn_rpc_address, self.dn_rpc_port)
    }

    /// The DataNode's (and a standalone server's) metrics endpoint, `None` when
    /// `dn_metric_reporter_list` does not name `PROMETHEUS`.
    pub fn dn_metrics_socket_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        metrics_address(
            &self.dn_metric_reporter_list,
            ("dn_rpc_address", &self.dn_rpc_address),
            self.dn_metric_prometheus_reporter_port,
        )
    }

    /// The ConfigNode's metrics endpoint, `None` when `cn_metric_reporter_list` does not
    /// name `PROMETHEUS`.
    pub fn cn_metrics_socket_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        metrics_address(
            &self.cn_metric_reporter_list,
            ("cn_internal_address", &self.cn_internal_address),
            self.cn_metric_prometheus_reporter_port,
        )
    }

    /// The storage settings of a region of a database with `ttl_ms`.
    pub fn region_config(
        &self,
        ttl_ms: Option<i64>,
        time_partition_interval_ms: i64,
    ) -> RegionConfig {
        RegionConfig {
            wal_mode: self.wal_mode_parsed().unwrap_or(WalMode::Sync),
            wal_async_fsync: Duration::from_millis(self.wal_async_mode_fsync_delay_in_ms),
            time_partition_interval_ms,
            compaction_cold_delay: Duration::from_millis(self.compaction_cold_delay_in_ms),
            wal_retention_bytes_max: self.wal_throttle_threshold_in_byte,
            wal_segment_bytes: self.wal_file_size_threshold_in_byte.max(WAL_FILE_BYTES_MIN),
            wal_direct_io: self.wal_direct_io,
            ttl_ms,
            ..RegionConfig::default()
        }
    }

    pub fn datanode_dir(&self) -> PathBuf {
        self.data_dir.join("datanode")
    }

    pub fn confignode_dir(&self) -> PathBuf {
        self.data_dir.join("confignode")
    }

    pub fn region_dir(&self, region_id: u32) -> PathBuf {
        self.data_dir
            .join("datanode")
            .join("data")
            .join(format!("region-{region_id}"))
    }

    pub fn schema_dir(&self) -> PathBuf {
        self.data_dir.join("datanode").join("schema")
    }
}

/// The smallest WAL segment accepted: one page; smaller ones only multiply files.
const WAL_FILE_BYTES_MIN: u64 = 4096;

/// `host:port` → a socket address (the host must be an IP address or `localhost`).
pub fn parse_endpoint(endpoint: &str) -> Option<SocketAddr> {
    let (host, port) = endpoint.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let ip: IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The metrics endpoint on `address` (the role's own, so nodes on different hosts of one
/// machine do not collide) when `list` turns Prometheus on.
fn metrics_address(
    list: &str,
    (key, address): (&'static str, &str),
    port: u16,
) -> Result<Option<SocketAddr>, ConfigError> {
    match crate::metrics::prometheus_enabled(list) {
        Ok(true) => socket_address(key, address, port).map(Some),
        Ok(false) => Ok(None),
        Err(reason) => Err(ConfigError::Invalid {
            key: "metric_reporter_list",
            value: list.to_string(),
            reason,
        }),
    }
}

fn socket_address(key: &'static str, address: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let ip: IpAddr = address.parse().map_err(|_| ConfigError::Invalid {
        key,
        value: address.to_string(),
        reason: "not an IP address".into(),
    })?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tablet as large as the wire allows is logged as one WAL record: the frame limit
    /// of client connections stays below the WAL's record limit, with room for the WAL
    /// entry's own encoding (a quarter more than the frame).
    #[test]
    fn any_legal_frame_fits_one_wal_record() {
        let frame = crate::datanode::handler::connection_limits().frame_body_bytes_max as usize;
        assert!(
            frame + frame / 4 <= iotdb_storage::config::WAL_RECORD_PAYLOAD_BYTES_MAX,
            "frames of {frame} bytes may not fit a WAL record"
        );
    }

    #[test]
    fn defaults_are_valid_and_toml_overrides_them() {
        ServerConfig::default().validate().unwrap();
        let config: ServerConfig =
            toml::from_str("dn_rpc_port = 7000\nwal_mode = \"async\"").unwrap();
        assert_eq!(config.dn_rpc_port, 7000);
        assert_eq!(config.wal_mode_parsed(), Some(WalMode::Async));
        assert_eq!(config.cluster_name, "defaultCluster");
        assert!(toml::from_str::<ServerConfig>("no_such_key = 1").is_err());
    }

    /// Configuration files written for the per-region memtable keys still load (the keys
    /// are ignored with a warning at start).
    #[test]
    fn replaced_memtable_keys_still_load() {
        let config: ServerConfig = toml::from_str(
            "memtable_flush_bytes = 1048576
memtable_bytes_max = 4194304",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.memtable_flush_bytes, Some(1 << 20));
        assert_eq!(
            config.shard_write_memory_bytes,
            iotdb_storage::config::SHARD_WRITE_MEMORY_BYTES_DEFAULT
        );
    }

    /// `--set` overrides any key of the file, unquoted strings included; unknown keys
    /// and malformed items are refused with their name.
    #[test]
    fn set_overrides_keys() {
        let config = ServerConfig::load_with_overrides(
            None,
            &[
                "dn_rpc_port=6668".into(),
                "cluster_name=c1".into(),
                "dn_pin_shards_to_cores = false".into(),
                "cn_seed_config_node=127.0.0.2:10710".into(),
            ],
        )
        .unwrap();
        assert_eq!(config.dn_rpc_port, 6668);
        assert_eq!(config.cluster_name, "c1");
        assert!(!config.dn_pin_shards_to_cores);
        assert_eq!(config.cn_seed_config_node, "127.0.0.2:10710");
        config.validate().unwrap();
        let unknown = ServerConfig::load_with_overrides(None, &["no_such_key=1".into()])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("no_such_key"), "{unknown}");
        assert!(ServerConfig::load_with_overrides(None, &["dn_rpc_port".into()]).is_err());
        let bad_seed = ServerConfig::load_with_overrides(None, &["dn_seed_config_node=x".into()])
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(bad_seed.contains("dn_seed_config_node"), "{bad_seed}");
    }

    #[test]
    fn default_password_on_a_public_address_is_refused() {
        let config = ServerConfig {
            dn_rpc_address: "0.0.0.0".into(),
            ..ServerConfig::default()
        };
        assert!(config.validate().is_err());
        let allowed = ServerConfig {
            allow_default_password_on_public_address: true,
            ..config.clone()
        };
        allowed.validate().unwrap();
        let changed = ServerConfig {
            root_password: "s3cret".into(),
            ..config
        };
        changed.validate().unwrap();
    }
}
