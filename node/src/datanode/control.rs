//! The control plane of a standalone node, on the control thread: the ConfigNode role
//! (databases, region groups, partitions, placement) and the schema regions. Shards reach
//! it through [`super::control_thread::ControlHandle`] with a [`ControlRequest`]; every
//! change it makes that moves data publishes a new route table.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod schema_move;

use anyhow::Context;
use iotdb_model::NodeId;
use iotdb_net::{DataPartitionEntry, ResultSet, Status, StatusCode};
use iotdb_storage::DataType;

use super::config_access::ConfigAccess;
use super::route::{GroupReplication, RouteView};
use super::schema_replication::SchemaRaft;
use crate::cluster::protocol::SchemaRequest;
use crate::config::ServerConfig;
use crate::confignode::{
    ConfigCommand, ConfigNode, ConfigNodeError, ConfigNodeSpec, ConfigRequest, ConfigResponse,
    DataNodeSpec, KillMode, KillPoint, NodeStatus, ProcedureEnv, RegionGroupId, RegionGroupKind,
    ReplicationAck, Role, RouteSnapshot, ShowRequest, Table,
};
use crate::schema::{SchemaError, SchemaRegion, TypeConflict};
use crate::sql::{self, DatabaseAttributes, Statement, Ttl};

/// A question for the control plane.
#[derive(Debug)]
pub enum ControlRequest {
    CreateDatabase {
        name: String,
        ttl_ms: Option<i64>,
        data_region_group_num: Option<u32>,
    },
    /// Creates the database of a device at `default_database_level` if none holds it.
    EnsureDatabase { device: String },
    /// A question for the SchemaRegion of a device, or for every SchemaRegion (series
    /// matching patterns). In a cluster it is answered where the region is.
    Schema(SchemaRequest),
    EnsureDataPartitions {
        database: String,
        series_slot: u32,
        time_slots: Vec<i64>,
    },
    /// An administrative SQL statement (schema, databases, cluster views).
    Statement(Statement),
    /// The shards' region sizes, for `SHOW REGIONS`.
    ReportRegionSizes(HashMap<u32, u64>),
    /// A region of this DataNode turned read-only (a full disk, a failed write or fsync):
    /// the DataNode is shown `ReadOnly` until a restart.
    ReportReadOnly { reason: String },
    /// What a heartbeat of the ConfigNode leader brought: the changes this member's mirror
    /// of the ConfigNode state lacks (answered `RegionsDropped` when replicas here went).
    ApplyDelta(crate::cluster::protocol::Delta),
    /// Bring a member's mirror of the ConfigNode state up to date now (a forwarded write or
    /// read named a region group this node has not heard of yet).
    Refresh,
    /// `FLUSH`: fold the logs of the local ConfigNode and of the journaled SchemaRegions
    /// into compressed snapshots, so that what the flush leaves on disk is compact.
    FoldLogs,
    /// The leader replica of a replicated group asks to change its in-sync set.
    ChangeInSync {
        group: u32,
        epoch: u64,
        version: u64,
        in_sync: Vec<u32>,
    },
    /// A replica named leader of an epoch it led before a restart asks for a new epoch.
    NewLeaderEpoch {
        group: u32,
        epoch: u64,
        step_down: bool,
    },
}

/// The control plane's answer.
#[derive(Debug)]
pub enum ControlAnswer {
    Done,
    Types(Vec<DataType>),
    MaybeTypes(Vec<Option<DataType>>),
    /// A database's TTL changed: every shard applies it to its regions.
    TtlChanged {
        database: String,
        ttl_ms: Option<i64>,
    },
    /// Databases were deleted: their data regions are closed and removed by their shards.
    RegionsDropped {
        data_groups: Vec<u32>,
    },
    ResultSet(ResultSet),
    /// One list per requested pattern: (device, measurement, type).
    Series(Vec<Vec<(String, String, DataType)>>),
    /// [`ControlAnswer::Series`] from this node's SchemaRegions, and the other DataNodes
    /// that hold SchemaRegions (a cluster member): ask them too and merge.
    SeriesAndElsewhere {
        series: Vec<Vec<(String, String, DataType)>>,
        others: Vec<(NodeId, String)>,
    },
    /// A schema view ([`SchemaRequest::Show`]) of this node's serving SchemaRegions, and
    /// the other DataNodes serving SchemaRegions: ask them too and merge.
    ShowAndElsewhere {
        result: ResultSet,
        others: Vec<(NodeId, String)>,
    },
    /// Another DataNode's rows of a schema view.
    Rows(Vec<Vec<Option<String>>>),
    /// Series created or deleted (the answer to `CreateSeries` and `DeleteSeries`).
    Count(u64),
    /// Series this node deleted from the SchemaRegions it serves, and the other live
    /// DataNodes: ask them too (they delete from theirs and drop their cached types), and
    /// add up.
    DeletedAndElsewhere {
        deleted: u64,
        others: Vec<(NodeId, String)>,
    },
    /// The device's SchemaRegion is on another DataNode (a cluster member): ask it there.
    Elsewhere {
        data_node: NodeId,
        /// Its internal endpoint, `host:port`.
        internal_endpoint: String,
    },
}

impl ControlRequest {
    /// The schema question to forward to the DataNode holding the device's SchemaRegion.
    pub fn forwardable(&self) -> Option<SchemaRequest> {
        match self {
            ControlRequest::Schema(request) => Some(request.clone()),
            _ => None,
        }
    }
}

/// Where a device's SchemaRegion is.
enum SchemaPlace {
    /// On this node: the group's id (the region is open).
    Here(u32),
    /// On another DataNode.
    Elsewhere(ControlAnswer),
}

/// The ConfigNode role and the schema regions of a standalone node.
pub struct ControlPlane {
    config: ServerConfig,
    config_node: ConfigAccess,
    config_node_id: NodeId,
    data_node_id: NodeId,
    /// Schema region group → its replica (all on the control thread). Declared before
    /// `schema_raft`: replicated regions close their Raft groups before its thread stops.
    schemas: HashMap<u32, SchemaRegion>,
    /// The Raft groups of replicated SchemaRegions (a cluster member).
    schema_raft: Option<SchemaRaft>,
    /// The schema regions this node answers for now (unreplicated ones, and replicated
    /// ones it leads), as of the last [`ControlPlane::refresh_served`].
    served: HashSet<u32>,
    /// When this node last told the ConfigNode it leads a schema region group.
    leader_reports: HashMap<u32, Instant>,
    resolved: Vec<crate::sql::DataType>,
    region_sizes: HashMap<u32, u64>,
    /// Inside `handle_batch`: schema regions opened now join the batch.
    batching: bool,
    /// Shards of this DataNode now (a restart may have fewer than placement assumed).
    shard_count: usize,
    /// The DataNode's "turned read-only" flag (`NodeShared::read_only_reported`): set here
    /// when a SchemaRegion's journal fails, so heartbeats and SHOW CLUSTER say `ReadOnly`.
    read_only_reported: Arc<AtomicBool>,
    /// The process's metrics, where this plane publishes its gauges (`None` in tests).
    metrics: Option<Arc<crate::metrics::NodeMetrics>>,
    /// SchemaRegion copies being received from another DataNode, by group.
    incoming: HashMap<u32, schema_move::Incoming>,
    /// When this node last tried to copy a SchemaRegion away, by migration.
    copy_attempts: HashMap<u64, Instant>,
    /// When this node last asked a Raft-replicated SchemaRegion group it leads to change
    /// its voters, hand leadership over or report a new replica caught up, by group.
    membership_attempts: HashMap<u32, Instant>,
    /// The commit index a migration's new schema replica must reach, by migration.
    catch_up_targets: HashMap<u64, u64>,
    /// The route view built last: the next one is derived from it when only data
    /// partitions were assigned since.
    last_view: Option<RouteView>,
}

/// What this process's DataNode declares when it registers.
/// `registration_token`: see [`DataNodeSpec::registration_token`] (0 standalone).
pub fn data_node_spec(
    config: &ServerConfig,
    cores: usize,
    registration_token: u64,
) -> DataNodeSpec {
    DataNodeSpec {
        internal_address: config.dn_internal_address.clone(),
        internal_port: config.dn_internal_port,
        rpc_address: config.dn_rpc_address.clone(),
        rpc_port: config.dn_rpc_port,
        mpp_port: config.dn_mpp_data_exchange_port,
        schema_consensus_port: config.dn_schema_region_consensus_port,
        data_consensus_port: config.dn_data_region_consensus_port,
        shard_count: cores as u32,
        version: env!("CARGO_PKG_VERSION").to_string(),
        build_info: crate::server::BUILD_INFO.to_string(),
        registration_token,
    }
}

/// The status a client sees for a ConfigNode error (its IoTDB code).
pub(crate) fn config_status(e: ConfigNodeError) -> Status {
    Status::new(e.status_code(), e.to_string())
}

/// The status a client sees for a schema error (its IoTDB code).
pub(super) fn schema_status(e: SchemaError) -> Status {
    Status::new(e.status_code(), e.to_string())
}

/// The engine type of a schema type; the engine stores the six IoTDB 1.x types.
pub fn engine_type(t: sql::DataType) -> Result<DataType, Status> {
    t.stored().ok_or_else(|| {
        Status::new(
            StatusCode::UNSUPPORTED_OPERATION,
            format!(
                "data type {} is not supported: use BOOLEAN, INT32, INT64, FLOAT, DOUBLE or TEXT",
                t.as_str()
            ),
        )
    })
}

fn schema_type(t: DataType) -> sql::DataType {
    sql::DataType::from(t)
}

impl ControlPlane {
    /// Opens the ConfigNode state and registers this process's ConfigNode and DataNode
    /// (kept across restarts: registration from the same address keeps the id).
    pub fn open(config: &ServerConfig, cores: usize) -> anyhow::Result<ControlPlane> {
        let mut config_node =
            ConfigNode::open(&config.confignode_dir(), config.cluster_settings())?;
        let mut no_effects = crate::confignode::NoEffects;
        let config_node_id = config_node
            .handle(
                ConfigRequest::RegisterConfigNode(ConfigNodeSpec {
                    internal_address: config.cn_internal_address.clone(),
                    internal_port: config.cn_internal_port,
                    consensus_port: config.cn_consensus_port,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    build_info: crate::server::BUILD_INFO.to_string(),
                }),
                &mut no_effects,
            )?
            .into_node_id()?;
        let data_node_id = config_node
            .handle(
                ConfigRequest::RegisterDataNode(data_node_spec(config, cores, 0)),
                &mut no_effects,
            )?
            .into_node_id()?;
        config_node.set_leader(Some(config_node_id));
        if let Some(point) = kill_point_from_env()? {
            tracing::warn!(
                kill_point = point.name(),
                "IOTDB_KILL_POINT is set: the process aborts when a procedure reaches it"
            );
            config_node.set_kill_mode(KillMode::Abort(point));
        }
        let mut plane = ControlPlane::new(
            config,
            cores,
            ConfigAccess::Local(Box::new(config_node)),
            config_node_id,
            data_node_id,
        );
        // Finish what a crash interrupted before answering anyone.
        let mut dropped = Vec::new();
        let mut env = DropReplicas {
            schema_dir: plane.config.schema_dir(),
            schemas: &mut plane.schemas,
            data_groups: &mut dropped,
        };
        if let ConfigAccess::Local(node) = &mut plane.config_node {
            let resumed = node.resume_procedures(&mut env)?;
            if resumed > 0 {
                tracing::info!(resumed, "resumed interrupted procedures");
            }
        }
        plane.open_replicas()?;
        Ok(plane)
    }

    /// The control plane of a cluster member: the ConfigNode is another process, reached
    /// through `link`; `registration` is what joining the cluster returned.
    pub fn open_member(
        config: &ServerConfig,
        cores: usize,
        registration: crate::cluster::registration::Registration,
        link: crate::cluster::link::CnLink,
        schema_raft: SchemaRaft,
    ) -> anyhow::Result<ControlPlane> {
        let mut mirror = crate::confignode::ConfigState::new(config.cluster_settings());
        registration
            .delta
            .apply_to(&mut mirror)
            .map_err(|reason| anyhow::anyhow!("the ConfigNode's state did not apply: {reason}"))?;
        let remote = super::config_access::RemoteConfig::new(link, mirror, registration.node_id);
        let mut plane = ControlPlane::new(
            config,
            cores,
            ConfigAccess::Remote(remote),
            registration.leader,
            registration.node_id,
        );
        plane.schema_raft = Some(schema_raft);
        plane.open_replicas()?;
        Ok(plane)
    }

    fn new(
        config: &ServerConfig,
        cores: usize,
        config_node: ConfigAccess,
        config_node_id: NodeId,
        data_node_id: NodeId,
    ) -> ControlPlane {
        ControlPlane {
            config: config.clone(),
            config_node,
            config_node_id,
            data_node_id,
            schemas: HashMap::new(),
            schema_raft: None,
            served: HashSet::new(),
            leader_reports: HashMap::new(),
            resolved: Vec::new(),
            region_sizes: HashMap::new(),
            batching: false,
            shard_count: cores,
            read_only_reported: Arc::new(AtomicBool::new(false)),
            metrics: None,
            incoming: HashMap::new(),
            copy_attempts: HashMap::new(),
            membership_attempts: HashMap::new(),
            catch_up_targets: HashMap::new(),
            last_view: None,
        }
    }

    /// Reconciles replica directories and opens the schema regions placed on this node.
    fn open_replicas(&mut self) -> anyhow::Result<()> {
        self.reconcile_replicas()?;
        self.update_schema_peers();
        let snapshot = self.config_node.route_snapshot();
        for (group, route) in &snapshot.region_groups {
            let here = route
                .replicas
                .iter()
                .any(|replica| replica.data_node_id == self.data_node_id);
            if route.kind == RegionGroupKind::Schema && here {
                self.schema_region(group.0, &route.database.clone())?;
            }
        }
        Ok(())
    }

    /// Removes the replica directories (data and schema) of region groups the ConfigNode
    /// has forgotten: drops a crash or a failed removal interrupted (see
    /// [`super::lifecycle`]). Runs at start-up, before any shard opens a region.
    fn reconcile_replicas(&self) -> anyhow::Result<()> {
        let state = self.config_node.state();
        let mine = |kind: RegionGroupKind| -> std::collections::BTreeSet<u32> {
            state
                .region_groups()
                .values()
                .filter(|group| {
                    group.kind == kind
                        && group
                            .replicas
                            .iter()
                            .any(|replica| replica.data_node_id == self.data_node_id)
                })
                .map(|group| group.id.0)
                .collect()
        };
        let next = state.next_region_id();
        let data_dir = self.config.region_dir(0);
        let data_dir = data_dir.parent().expect("region dirs have a parent");
        super::lifecycle::reconcile_region_dirs(
            data_dir,
            &mine(RegionGroupKind::Data),
            next,
            "data",
        )
        .with_context(|| format!("reconciling {}", data_dir.display()))?;
        let schema_dir = self.config.schema_dir();
        // A copy a migration moves here is kept too (the group names this node once the
        // migration finishes).
        let mut schema_kept = mine(RegionGroupKind::Schema);
        schema_kept.extend(schema_move::copies_to(state, self.data_node_id));
        super::lifecycle::reconcile_region_dirs(&schema_dir, &schema_kept, next, "schema")
            .with_context(|| format!("reconciling {}", schema_dir.display()))?;
        Ok(())
    }

    /// Asks the ConfigNode. Procedure effects on this node: schema replicas are dropped
    /// here; dropped data region groups are returned for the shards that own them to drop
    /// (a crash before they do is repaired at the next start by
    /// [`Self::reconcile_replicas`]).
    pub(super) fn config_with_drops(
        &mut self,
        request: ConfigRequest,
    ) -> Result<(ConfigResponse, Vec<u32>), Status> {
        let mut data_groups = Vec::new();
        let mut env = DropReplicas {
            schema_dir: self.config.schema_dir(),
            schemas: &mut self.schemas,
            data_groups: &mut data_groups,
        };
        let response = self.config_node.handle(request, &mut env)?;
        Ok((response, data_groups))
    }

    /// Asks the ConfigNode a request that drops no replica itself. (A cluster member's
    /// answer may bring the deletion of a database by another DataNode: its data
    /// replicas here are closed by their shards, which follow the route table —
    /// `Shard::follow_route` — and its schema replicas were dropped by `DropReplicas`.)
    pub(super) fn config(&mut self, request: ConfigRequest) -> Result<ConfigResponse, Status> {
        let (response, dropped) = self.config_with_drops(request)?;
        debug_assert!(
            dropped.is_empty() || matches!(self.config_node, ConfigAccess::Remote(_)),
            "a request that drops regions went through config()"
        );
        Ok(response)
    }

    /// A ConfigNode view.
    pub(super) fn show(&mut self, show: ShowRequest) -> Result<Table, Status> {
        self.config(ConfigRequest::Show(show))?
            .into_table()
            .map_err(config_status)
    }

    /// The ConfigNode's current route table (what DataNodes and clients route with).
    pub(super) fn route_snapshot(&self) -> std::sync::Arc<RouteSnapshot> {
        self.config_node.route_snapshot()
    }

    pub fn data_node_id(&self) -> NodeId {
        self.data_node_id
    }

    pub fn config_node_id(&self) -> NodeId {
        self.config_node_id
    }

    fn schema_dir(&self, group: u32) -> PathBuf {
        self.config.schema_dir().join(format!("region-{group}"))
    }

    fn schema_region(&mut self, group: u32, database: &str) -> anyhow::Result<&mut SchemaRegion> {
        if !self.schemas.contains_key(&group) {
            let dir = self.schema_dir(group);
            let joining = self
                .config_node
                .state()
                .migration_of(RegionGroupId(group))
                .is_some_and(|(_, _, to, _)| to == self.data_node_id);
            let elected = self.elected_group(group).map(|g| {
                // A replica a migration adds joins the group as it is (its leader adds it
                // as a voter and sends it a snapshot): it founds nothing.
                let replicas: Vec<NodeId> = if joining {
                    Vec::new()
                } else {
                    g.replicas.iter().map(|r| r.data_node_id).collect()
                };
                (replicas, g.leader == self.data_node_id)
            });
            let mut region = match (elected, &mut self.schema_raft) {
                (Some((replicas, campaign)), Some(raft)) => {
                    let (log, restored) =
                        raft.open(group, dir.join("raft"), &replicas, campaign)?;
                    SchemaRegion::open_replicated(
                        database,
                        log,
                        restored.as_ref().map(|(index, data)| (*index, &data[..])),
                    )
                    .with_context(|| format!("restoring schema region {group}"))?
                }
                (Some(_), None) => anyhow::bail!(
                    "schema region group {group} is replicated, but this node takes part in \
                    no schema consensus (a standalone node)"
                ),
                (None, _) => SchemaRegion::open(&dir, database).with_context(|| {
                    format!("opening schema region {group} in {}", dir.display())
                })?,
            };
            if self.batching {
                region.begin_batch();
            }
            self.schemas.insert(group, region);
        }
        Ok(self.schemas.get_mut(&group).expect("inserted above"))
    }

    /// Shares the DataNode's read-only flag (see [`NodeShared::read_only_reported`]).
    ///
    /// [`NodeShared::read_only_reported`]: super::NodeShared::read_only_reported
    pub fn share_read_only_flag(&mut self, flag: Arc<AtomicBool>) {
        self.read_only_reported = flag;
    }

    /// The process's metrics, for [`Self::publish_metrics`].
    pub fn share_metrics(&mut self, metrics: Arc<crate::metrics::NodeMetrics>) {
        self.metrics = Some(metrics);
    }

    /// Publishes the SchemaRegion replicas this node holds and, on a standalone node
    /// (whose ConfigNode is this plane's), the cluster gauges.
    pub fn publish_metrics(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        metrics.set_schema_region_replicas(self.schemas.len() as u64);
        if let ConfigAccess::Local(node) = &self.config_node {
            metrics.set_cluster(Some(node.cluster_gauges()));
        }
    }

    /// Once a SchemaRegion of this node failed a journal write: tells the ConfigNode this
    /// DataNode is `ReadOnly` (once per process, as a failed data region does).
    fn report_failed_schema(&mut self) {
        let failed: Vec<u32> = self
            .schemas
            .iter()
            .filter(|(_, region)| region.has_failed())
            .map(|(group, _)| *group)
            .collect();
        if failed.is_empty() || self.read_only_reported.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(
            data_node = %self.data_node_id,
            groups = ?failed,
            "a schema region's journal failed: the DataNode is ReadOnly until it restarts \
             (free space or fix the device first)"
        );
        if let Err(status) = self.config(ConfigRequest::ReportNodeStatus {
            node_id: self.data_node_id,
            status: NodeStatus::ReadOnly,
        }) {
            tracing::warn!(error = %status.message, "reporting the DataNode read-only failed");
            self.read_only_reported.store(false, Ordering::Release);
        }
    }

    /// The route view of the current state: derived from the previous one when the
    /// commands since only assigned partitions (one write creating a device's partition
    /// copies one flat vector), built whole from the ConfigNode's route snapshot otherwise.
    pub fn route_view(&mut self) -> RouteView {
        let version = self.config_node.version();
        let derived = self.last_view.as_ref().and_then(|last| {
            let commands = self.config_node.commands_since(last.version())?;
            derive_route_view(last, version, &commands)
        });
        let view = derived.unwrap_or_else(|| {
            route_view_of(
                &self.config_node.route_snapshot(),
                self.data_node_id,
                self.shard_count,
            )
        });
        self.last_view = Some(view.clone());
        view
    }

    /// Handles a batch of requests with one fdatasync per journal (group commit): the
    /// answers are valid only once this returns, and all fail if the sync fails. Returns the
    /// answers in order and, when routing changed, the new table.
    pub fn handle_batch(
        &mut self,
        requests: Vec<ControlRequest>,
    ) -> (Vec<Result<ControlAnswer, Status>>, Option<RouteView>) {
        let version = self.config_node.version();
        // A SchemaRegion whose journal failed in an earlier batch refuses every request
        // (600) and has nothing of this batch to sync: its failure must not fail the rest.
        let failed_before: HashSet<u32> = self
            .schemas
            .iter()
            .filter(|(_, region)| region.has_failed())
            .map(|(group, _)| *group)
            .collect();
        self.config_node.begin_batch();
        for schema in self.schemas.values_mut() {
            schema.begin_batch();
        }
        self.batching = true;
        let mut answers: Vec<Result<ControlAnswer, Status>> =
            requests.into_iter().map(|r| self.dispatch(r)).collect();
        self.batching = false;
        // Every journal's records are written before any is synced: the first sync then
        // carries the others' bytes too, and theirs is little more than a cache flush
        // (`Journal::write_deferred`). A failed write fails its journal (its sync fails
        // too) and is the error the batch reports, naming the I/O error.
        let config_written = self.config_node.write_batch();
        let schemas_written =
            each_live_schema(&mut self.schemas, &failed_before, SchemaRegion::write_batch);
        let config_synced = self.config_node.end_batch();
        let schemas_synced =
            each_live_schema(&mut self.schemas, &failed_before, SchemaRegion::end_batch);
        let synced = schemas_written
            .and(config_written)
            .and(schemas_synced)
            .and(config_synced);
        if let Err(status) = synced {
            tracing::error!(status = %status.message, "making control-plane changes durable failed");
            for answer in &mut answers {
                *answer = Err(status.clone());
            }
        }
        self.report_failed_schema();
        let published = (self.config_node.version() != version).then(|| self.route_view());
        (answers, published)
    }

    fn dispatch(&mut self, request: ControlRequest) -> Result<ControlAnswer, Status> {
        match request {
            ControlRequest::CreateDatabase {
                name,
                ttl_ms,
                data_region_group_num,
            } => {
                let attributes = DatabaseAttributes {
                    ttl: ttl_ms.map(|t| Ttl::Millis(t.max(0) as u64)),
                    data_region_group_num,
                    ..DatabaseAttributes::default()
                };
                self.config(ConfigRequest::CreateDatabase { name, attributes })?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::EnsureDatabase { device } => {
                self.config(ConfigRequest::EnsureDatabaseOfDevice { device })?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::Schema(SchemaRequest::EnsureSeries {
                device,
                aligned,
                measurements,
                use_existing,
            }) => {
                let conflict = if use_existing {
                    TypeConflict::UseExisting
                } else {
                    TypeConflict::Reject
                };
                let names: Vec<&str> = measurements.iter().map(|(m, _)| m.as_str()).collect();
                let types: Vec<sql::DataType> =
                    measurements.iter().map(|(_, t)| schema_type(*t)).collect();
                let region = match self.schema_of(&device, true)? {
                    Some(SchemaPlace::Here(region)) => region,
                    Some(SchemaPlace::Elsewhere(answer)) => return Ok(answer),
                    None => unreachable!("created when asked to"),
                };
                let mut resolved = std::mem::take(&mut self.resolved);
                let result = self
                    .schemas
                    .get_mut(&region)
                    .expect("opened by schema_of")
                    .get_or_create_measurements(
                        &device,
                        aligned,
                        &names,
                        &types,
                        conflict,
                        &mut resolved,
                    );
                let answer = result.map_err(schema_status).and_then(|_| {
                    resolved
                        .iter()
                        .map(|t| engine_type(*t))
                        .collect::<Result<Vec<_>, _>>()
                });
                self.resolved = resolved;
                answer.map(ControlAnswer::Types)
            }
            ControlRequest::Schema(SchemaRequest::LookupSeries {
                device,
                measurements,
            }) => {
                let region = match self.schema_of(&device, false)? {
                    Some(SchemaPlace::Here(region)) => region,
                    Some(SchemaPlace::Elsewhere(answer)) => return Ok(answer),
                    None => {
                        return Ok(ControlAnswer::MaybeTypes(vec![None; measurements.len()]));
                    }
                };
                let schema = &self.schemas[&region];
                Ok(ControlAnswer::MaybeTypes(
                    measurements
                        .iter()
                        .map(|m| {
                            schema
                                .measurement(&device, m)
                                .and_then(|s| engine_type(s.data_type).ok())
                        })
                        .collect(),
                ))
            }
            ControlRequest::EnsureDataPartitions {
                database,
                series_slot,
                time_slots,
            } => {
                let partitions = time_slots.iter().map(|t| (series_slot, *t)).collect();
                self.config(ConfigRequest::GetOrCreateDataPartitions {
                    database,
                    partitions,
                })?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::Schema(SchemaRequest::MatchSeries { patterns }) => {
                // A query plans against the route table: a member first catches its
                // mirror up, so partitions another DataNode created a moment ago (and
                // wrote to) are read too.
                self.refresh_mirror()?;
                self.refresh_served()?;
                let series = patterns
                    .iter()
                    .map(|pattern| self.match_series(pattern))
                    .collect();
                let others = self.other_schema_holders();
                if others.is_empty() {
                    Ok(ControlAnswer::Series(series))
                } else {
                    Ok(ControlAnswer::SeriesAndElsewhere { series, others })
                }
            }
            ControlRequest::Schema(SchemaRequest::Show { view, pattern }) => {
                // As a query: what another DataNode created a moment ago is listed too.
                self.refresh_mirror()?;
                let ControlAnswer::ResultSet(result) = self.execute(view.statement(pattern))?
                else {
                    return Err(Status::internal("a schema view answered no rows"));
                };
                let others = self.other_schema_holders();
                if others.is_empty() {
                    Ok(ControlAnswer::ResultSet(result))
                } else {
                    Ok(ControlAnswer::ShowAndElsewhere { result, others })
                }
            }
            ControlRequest::Schema(SchemaRequest::CreateSeries {
                device,
                aligned,
                measurements,
            }) => {
                let region = match self.schema_of(&device, true)? {
                    Some(SchemaPlace::Here(region)) => region,
                    Some(SchemaPlace::Elsewhere(answer)) => return Ok(answer),
                    None => unreachable!("created when asked to"),
                };
                let schemas = measurements
                    .iter()
                    .map(|(name, stored)| Ok((name.as_str(), stored.decode()?)))
                    .collect::<crate::schema::Result<Vec<_>>>()
                    .map_err(schema_status)?;
                let created = self
                    .schemas
                    .get_mut(&region)
                    .expect("opened by schema_of")
                    .create_many(&device, aligned, &schemas)
                    .map_err(schema_status)?;
                Ok(ControlAnswer::Count(created as u64))
            }
            ControlRequest::Schema(SchemaRequest::DeleteSeries { patterns }) => {
                // Which regions this node leads now, as for a query.
                self.refresh_mirror()?;
                self.refresh_served()?;
                let mut deleted = 0;
                for schema in self.schemas_mut() {
                    deleted += schema
                        .delete_timeseries(&patterns)
                        .map_err(schema_status)?
                        .len() as u64;
                }
                let others = self.other_live_data_nodes();
                Ok(ControlAnswer::DeletedAndElsewhere { deleted, others })
            }
            ControlRequest::Schema(SchemaRequest::InstallRegion {
                procedure,
                group,
                database,
                part,
                last,
                devices,
            }) => self.install_schema_part(procedure, group, &database, part, last, devices),
            ControlRequest::Statement(statement) => self.execute(statement),
            ControlRequest::ReportReadOnly { reason } => {
                tracing::error!(
                    data_node = %self.data_node_id,
                    %reason,
                    "a region turned read-only: the DataNode is ReadOnly until it restarts \
                     (free space or fix the device first)"
                );
                // Reported, not journaled: the journal may sit on the very disk that filled.
                self.config(ConfigRequest::ReportNodeStatus {
                    node_id: self.data_node_id,
                    status: NodeStatus::ReadOnly,
                })?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::ReportRegionSizes(sizes) => {
                self.region_sizes = sizes;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::Refresh => {
                self.refresh_mirror()?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::FoldLogs => {
                self.fold_logs()?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::ChangeInSync {
                group,
                epoch,
                version,
                in_sync,
            } => {
                self.config(ConfigRequest::ChangeInSync {
                    group: RegionGroupId(group),
                    epoch,
                    version,
                    in_sync: in_sync.into_iter().map(NodeId).collect(),
                })?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::NewLeaderEpoch {
                group,
                epoch,
                step_down,
            } => {
                self.config(ConfigRequest::NewLeaderEpoch {
                    group: RegionGroupId(group),
                    epoch,
                    step_down,
                })?;
                Ok(ControlAnswer::Done)
            }
            ControlRequest::ApplyDelta(delta) => {
                let mut data_groups = Vec::new();
                let mut env = DropReplicas {
                    schema_dir: self.config.schema_dir(),
                    schemas: &mut self.schemas,
                    data_groups: &mut data_groups,
                };
                self.config_node.apply_delta(delta, &mut env)?;
                if data_groups.is_empty() {
                    Ok(ControlAnswer::Done)
                } else {
                    Ok(ControlAnswer::RegionsDropped { data_groups })
                }
            }
        }
    }

    /// The schema region group of `device` (creating database and partition when
    /// `create`), opened when it is on this node.
    fn schema_of(&mut self, device: &str, create: bool) -> Result<Option<SchemaPlace>, Status> {
        let slot_num = self.config.series_slot_num;
        // What the state (a member's mirror) already holds needs no ConfigNode request:
        // only a database or a schema partition that does not exist yet is created there.
        // (A database being deleted is asked about, so the ConfigNode refuses it.)
        let known = self
            .config_node
            .state()
            .database_of_device(device)
            .map(|database| database.name.clone());
        let database = match known {
            Some(name) if !create || self.config_node.state().procedure_on(&name).is_none() => name,
            _ if create => self
                .config(ConfigRequest::EnsureDatabaseOfDevice {
                    device: device.to_string(),
                })?
                .into_database()
                .map_err(config_status)?,
            _ => return Ok(None),
        };
        let slot = iotdb_net::series_slot(device, slot_num);
        let group = match self.config_node.schema_partition(&database, slot) {
            Some(group) => group,
            None if create => {
                let groups = self
                    .config(ConfigRequest::GetOrCreateSchemaPartitions {
                        database: database.clone(),
                        series_slots: vec![slot],
                    })?
                    .into_groups()
                    .map_err(config_status)?;
                groups[0]
            }
            None => return Ok(None),
        };
        if let Some(elsewhere) = self.holder_elsewhere(group) {
            return Ok(Some(SchemaPlace::Elsewhere(elsewhere)));
        }
        let region = self
            .schema_region(group.0, &database)
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        if region.has_failed() {
            // The failed batch's series are still in memory but not durable: serving them
            // would acknowledge writes to series a restart may not know.
            return Err(Status::new(
                StatusCode::SYSTEM_READ_ONLY,
                format!(
                    "schema region group {} on DataNode {} stopped after a failed journal \
                     write; free disk space and restart that DataNode",
                    group.0, self.data_node_id
                ),
            ));
        }
        if let Some(elsewhere) = self.schema_leader_elsewhere(group.0)? {
            return Ok(Some(SchemaPlace::Elsewhere(elsewhere)));
        }
        Ok(Some(SchemaPlace::Here(group.0)))
    }

    /// For a replicated schema region with a replica here: `None` when this replica leads
    /// and caught up (it may serve), else where the leader is. A group without a leader
    /// (a new group, or an election after its leader died) is waited for up to
    /// [`SCHEMA_LEADER_WAIT`]: an election takes about a second.
    fn schema_leader_elsewhere(&mut self, group: u32) -> Result<Option<ControlAnswer>, Status> {
        if self.schema_raft.is_none()
            || !self.schemas.get(&group).is_some_and(|r| r.is_replicated())
        {
            return Ok(None);
        }
        let deadline = Instant::now() + SCHEMA_LEADER_WAIT;
        loop {
            let raft = self.schema_raft.as_ref().expect("checked above");
            if raft.has_failed(group) {
                return Err(Status::internal(format!(
                    "the replica of schema region group {group} on DataNode {} stopped after \
                    a disk error; restart that DataNode",
                    self.data_node_id
                )));
            }
            if self.catch_up_serving(group)? {
                return Ok(None);
            }
            let raft = self.schema_raft.as_ref().expect("checked above");
            if let Some(leader) = raft.leader(group)
                && leader != self.data_node_id
                && let Some(answer) = self.elsewhere(leader)
            {
                return Ok(Some(answer));
            }
            if Instant::now() >= deadline {
                return Err(schema_status(crate::schema::SchemaError::Unavailable(
                    format!(
                        "schema region group {group} has no leader yet (an election is under way, \
                    or too few of its replicas run); retry"
                    ),
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Schema region group `group` when it elects its leader (more than one replica).
    fn elected_group(&self, group: u32) -> Option<&crate::confignode::RegionGroup> {
        self.config_node
            .state()
            .region_groups()
            .get(&RegionGroupId(group))
            .filter(|g| g.elects_leader())
    }

    /// Catches the replicated schema region of `group` up and says whether this replica
    /// serves it (see [`SchemaRaft::serves`]). Asked before catching up: entries before
    /// the leader's first of its term are queued before it says it serves.
    fn catch_up_serving(&mut self, group: u32) -> Result<bool, Status> {
        let serves = self.schema_raft.as_ref().is_some_and(|r| r.serves(group));
        if let Some(region) = self.schemas.get_mut(&group) {
            region.catch_up().map_err(schema_status)?;
        }
        Ok(serves)
    }

    /// Where to send a schema question for DataNode `node`.
    fn elsewhere(&self, node: NodeId) -> Option<ControlAnswer> {
        let info = self.config_node.state().data_nodes().get(&node)?;
        Some(ControlAnswer::Elsewhere {
            data_node: node,
            internal_endpoint: format!(
                "{}:{}",
                info.spec.internal_address, info.spec.internal_port
            ),
        })
    }

    /// The DataNode answering for schema region group `group`: this replica's Raft
    /// knowledge when it has one, else the ConfigNode's record.
    fn schema_leader(&self, group: RegionGroupId) -> Option<NodeId> {
        if let Some(raft) = &self.schema_raft
            && self
                .schemas
                .get(&group.0)
                .is_some_and(|r| r.is_replicated())
            && let Some(leader) = raft.leader(group.0)
        {
            return Some(leader);
        }
        let state = self.config_node.state();
        let recorded = state.region_groups().get(&group)?;
        Some(recorded.leader)
    }

    /// Takes note of which schema regions this node answers for now (unreplicated ones,
    /// and the replicated ones it leads), after catching those up.
    fn refresh_served(&mut self) -> Result<(), Status> {
        self.open_placed_schemas();
        self.served.clear();
        let groups: Vec<(u32, bool)> = self
            .schemas
            .iter()
            .map(|(group, region)| (*group, region.is_replicated()))
            .collect();
        for (group, replicated) in groups {
            if !replicated || self.catch_up_serving(group)? {
                self.served.insert(group);
            }
        }
        Ok(())
    }

    /// Opens the schema regions the state places here that are not open yet: replicas of
    /// a replicated group another DataNode created, and a region a migration moved here
    /// (so that views and queries count it at once).
    fn open_placed_schemas(&mut self) {
        let placed: Vec<(u32, String)> = self
            .config_node
            .state()
            .region_groups()
            .values()
            .filter(|g| {
                g.kind == RegionGroupKind::Schema
                    && !self.schemas.contains_key(&g.id.0)
                    && g.replicas
                        .iter()
                        .any(|r| r.data_node_id == self.data_node_id)
            })
            .map(|g| (g.id.0, g.database.clone()))
            .collect();
        for (group, database) in placed {
            if let Err(e) = self.schema_region(group, &database) {
                tracing::warn!(group, error = %format!("{e:#}"), "opening a schema region replica failed");
            }
        }
    }

    /// Periodic work of a cluster member's replicated schema regions (every
    /// [`super::control_thread::MAINTENANCE_INTERVAL`] while idle): learns peers' addresses,
    /// moves single-replica schema regions (`schema_move`), opens the replicas placed here
    /// (`open_placed_schemas`), applies what their
    /// groups committed, and tells the ConfigNode which groups this node leads. Returns
    /// the new route table when the ConfigNode state changed.
    pub fn maintain(&mut self) -> Option<RouteView> {
        self.schema_raft.as_ref()?;
        let version = self.config_node.version();
        self.update_schema_peers();
        self.move_schema_regions();
        if let Err(status) = self.refresh_served() {
            tracing::warn!(status = %status.message, "applying committed schema changes failed");
        }
        self.follow_schema_membership();
        let raft = self.schema_raft.as_mut()?;
        let open: HashSet<u32> = self.schemas.keys().copied().collect();
        let dropped: Vec<u32> = raft.groups().filter(|g| !open.contains(g)).collect();
        for group in dropped {
            raft.forget(group);
        }
        let mut reports = Vec::new();
        for group in self.served.iter().copied() {
            let recorded = self.elected_group(group).map(|g| g.leader);
            let due = self
                .leader_reports
                .get(&group)
                .is_none_or(|at| at.elapsed() >= LEADER_REPORT_INTERVAL);
            if recorded.is_some_and(|leader| leader != self.data_node_id) && due {
                reports.push(group);
            }
        }
        for group in reports {
            self.leader_reports.insert(group, Instant::now());
            if let Err(status) = self.config(ConfigRequest::ReportSchemaLeader {
                group: RegionGroupId(group),
                leader: self.data_node_id,
            }) {
                tracing::warn!(group, status = %status.message, "reporting schema region leadership failed");
            }
        }
        (self.config_node.version() != version).then(|| self.route_view())
    }

    /// Tells the schema raft thread where every DataNode's schema consensus port is.
    fn update_schema_peers(&self) {
        let Some(raft) = &self.schema_raft else {
            return;
        };
        let peers = self
            .config_node
            .state()
            .data_nodes()
            .iter()
            .filter_map(|(id, info)| {
                let address = crate::config::parse_endpoint(&format!(
                    "{}:{}",
                    info.spec.internal_address, info.spec.schema_consensus_port
                ))?;
                Some((*id, address))
            })
            .collect();
        raft.set_peers(peers);
    }

    /// The other DataNodes holding SchemaRegions, with their internal endpoints.
    fn other_schema_holders(&self) -> Vec<(NodeId, String)> {
        let state = self.config_node.state();
        let holders: std::collections::BTreeSet<NodeId> = state
            .region_groups()
            .values()
            .filter(|group| {
                group.kind == RegionGroupKind::Schema && !self.served.contains(&group.id.0)
            })
            .filter_map(|group| self.schema_leader(group.id))
            .filter(|node| *node != self.data_node_id)
            .collect();
        holders
            .into_iter()
            .filter_map(|node| {
                let info = state.data_nodes().get(&node)?;
                Some((
                    node,
                    format!("{}:{}", info.spec.internal_address, info.spec.internal_port),
                ))
            })
            .collect()
    }

    /// The other DataNodes not `Unknown` (a cluster member), with their internal
    /// endpoints: those that may serve a SchemaRegion or cache a schema.
    fn other_live_data_nodes(&self) -> Vec<(NodeId, String)> {
        self.config_node
            .state()
            .data_nodes()
            .iter()
            .filter(|(id, info)| **id != self.data_node_id && info.status != NodeStatus::Unknown)
            .map(|(id, info)| {
                (
                    *id,
                    format!("{}:{}", info.spec.internal_address, info.spec.internal_port),
                )
            })
            .collect()
    }

    /// Catches a member's mirror of the ConfigNode state up (standalone: nothing to do).
    /// Data replicas it drops are closed by the shards following the route table.
    fn refresh_mirror(&mut self) -> Result<(), Status> {
        let mut data_groups = Vec::new();
        let mut env = DropReplicas {
            schema_dir: self.config.schema_dir(),
            schemas: &mut self.schemas,
            data_groups: &mut data_groups,
        };
        self.config_node.refresh(&mut env)
    }

    /// Where to ask when a SchemaRegion group's replica is on another DataNode (`None`
    /// when one is here: always so standalone).
    fn holder_elsewhere(&self, group: RegionGroupId) -> Option<ControlAnswer> {
        let state = self.config_node.state();
        let replicas = &state.region_groups().get(&group)?.replicas;
        if replicas
            .iter()
            .any(|replica| replica.data_node_id == self.data_node_id)
        {
            return None;
        }
        // A replicated group's recorded leader (a follower sends the asker on).
        let holder = self.schema_leader(group)?;
        self.elsewhere(holder)
    }

    /// Every series matching `pattern`, sorted by path (types the engine cannot store are
    /// left out: no data can exist for them).
    fn match_series(&self, pattern: &sql::PathPattern) -> Vec<(String, String, DataType)> {
        let mut entries: Vec<_> = self.schemas().flat_map(|s| s.timeseries(pattern)).collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries
            .into_iter()
            .filter_map(|e| {
                let data_type = engine_type(e.schema.data_type).ok()?;
                Some((e.device, e.measurement, data_type))
            })
            .collect()
    }

    /// Writes a checkpoint of the ConfigNode state (clean shutdown).
    pub fn checkpoint(&mut self) {
        self.config_node.checkpoint();
        for (group, schema) in &mut self.schemas {
            if let Err(e) = schema.checkpoint() {
                tracing::error!(group, error = %e, "checkpointing a schema region failed");
            }
        }
    }

    /// Folds the logs that hold records into new snapshots (`FLUSH`): the local
    /// ConfigNode's and each journaled SchemaRegion's. The first failure is the answer
    /// (the others are still tried); a failed journal refuses changes until a restart.
    fn fold_logs(&mut self) -> Result<(), Status> {
        let mut first_error = self.config_node.fold_log().err();
        for (group, schema) in &mut self.schemas {
            if let Err(e) = schema.fold_log() {
                tracing::error!(group, error = %e, "folding a schema region's log failed");
                first_error.get_or_insert_with(|| {
                    Status::internal(format!(
                        "the data is flushed, but folding the log of SchemaRegion {group} \
                         failed: {e}"
                    ))
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Executes an administrative statement.
    fn execute(&mut self, statement: Statement) -> Result<ControlAnswer, Status> {
        self.refresh_served()?;
        super::admin::execute(self, statement)
    }

    /// Bytes on disk of each data region group, as last reported by the shards.
    pub(super) fn region_sizes(&self) -> HashMap<u32, u64> {
        self.region_sizes.clone()
    }

    /// The schema regions this node answers for (see [`Self::refresh_served`]).
    pub(super) fn schemas(&self) -> impl Iterator<Item = &SchemaRegion> {
        self.schemas
            .iter()
            .filter(|(group, _)| self.served.contains(group))
            .map(|(_, region)| region)
    }

    pub(super) fn schemas_mut(&mut self) -> impl Iterator<Item = &mut SchemaRegion> {
        let served = &self.served;
        self.schemas
            .iter_mut()
            .filter(move |(group, _)| served.contains(group))
            .map(|(_, region)| region)
    }
}

/// How long a schema question waits for a replicated schema region group to elect a
/// leader. Why 5 s: an election takes 0.5–1 s (`schema_replication::TICK`); longer means
/// too few replicas run, which a retry will not fix sooner.
const SCHEMA_LEADER_WAIT: Duration = Duration::from_secs(5);

/// How often a schema region leader repeats its report while the ConfigNode records
/// another leader (a report may be lost with a ConfigNode leader change).
const LEADER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// `IOTDB_KILL_POINT=<name>`: a test hook that aborts the process when a procedure
/// reaches the named kill point (see [`KillPoint`]); unknown names are refused.
pub(crate) fn kill_point_from_env() -> anyhow::Result<Option<KillPoint>> {
    match std::env::var("IOTDB_KILL_POINT") {
        Ok(name) if name.is_empty() => Ok(None),
        Ok(name) => match KillPoint::from_name(&name) {
            Some(point) => Ok(Some(point)),
            // A kill point of joining the cluster (`crate::cluster::kill_point`).
            None if crate::cluster::KILL_POINTS.contains(&name.as_str()) => Ok(None),
            None => {
                let known: Vec<&str> = KillPoint::ALL
                    .iter()
                    .map(|p| p.name())
                    .chain(crate::cluster::KILL_POINTS)
                    .collect();
                anyhow::bail!(
                    "IOTDB_KILL_POINT={name} names no kill point; known: {}",
                    known.join(", ")
                )
            }
        },
        Err(_) => Ok(None),
    }
}

/// The effects of the ConfigNode's procedures on this node: schema replicas are dropped
/// at once (they live on the control thread); data region groups are collected for the
/// shards that own them.
struct DropReplicas<'a> {
    schema_dir: PathBuf,
    schemas: &'a mut HashMap<u32, SchemaRegion>,
    data_groups: &'a mut Vec<u32>,
}

impl ProcedureEnv for DropReplicas<'_> {
    fn drop_replicas(&mut self, groups: &[(RegionGroupId, RegionGroupKind)]) -> Result<(), String> {
        for &(group, kind) in groups {
            match kind {
                RegionGroupKind::Data => {
                    if !self.data_groups.contains(&group.0) {
                        self.data_groups.push(group.0);
                    }
                }
                RegionGroupKind::Schema => {
                    self.schemas.remove(&group.0);
                    let dir = self.schema_dir.join(format!("region-{}", group.0));
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(format!("removing {}: {e}", dir.display()));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A SHOW view as a result set of TEXT columns.
pub fn table_result(table: Table) -> ResultSet {
    ResultSet {
        column_names: table.columns.iter().map(|c| c.to_string()).collect(),
        column_types: vec![iotdb_net::DataType::Text; table.columns.len()],
        rows: table
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|cell| cell.map(|s| iotdb_net::Value::Text(bytes::Bytes::from(s))))
                    .collect()
            })
            .collect(),
    }
}

/// A result set's cells as text (a SHOW view's, whose columns are all TEXT).
pub fn text_rows(result: &ResultSet) -> Vec<Vec<Option<String>>> {
    result
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| match cell {
                    Some(iotdb_net::Value::Text(text)) => {
                        Some(String::from_utf8_lossy(text).into_owned())
                    }
                    Some(other) => Some(format!("{other:?}")),
                    None => None,
                })
                .collect()
        })
        .collect()
}

/// `last` moved to `version` by `commands`, when they only assigned partitions (schema
/// partitions are not part of the view); `None` when another command changed what the view
/// holds, or a partition's database is unknown to `last`.
pub fn derive_route_view(
    last: &RouteView,
    version: u64,
    commands: &[ConfigCommand],
) -> Option<RouteView> {
    let mut added = Vec::new();
    for command in commands {
        match command {
            ConfigCommand::AssignDataPartitions {
                database,
                assignments,
            } => added.extend(
                assignments
                    .iter()
                    .map(|(series, time, group)| (database.as_str(), *series, *time, group.0)),
            ),
            ConfigCommand::AssignSchemaPartitions { .. } => {}
            _ => return None,
        }
    }
    last.with_partitions(version, &added)
}

/// The route view of a ConfigNode snapshot.
pub fn route_view_of(
    snapshot: &RouteSnapshot,
    data_node_id: NodeId,
    shard_count: usize,
) -> RouteView {
    let databases = snapshot
        .databases
        .iter()
        .map(|(name, db)| iotdb_net::DatabaseRoute {
            name: name.clone(),
            series_slot_num: snapshot.series_slot_num,
            time_partition_interval_ms: db.settings.time_partition_interval_ms,
            data_partitions: db
                .data_partitions
                .iter()
                .flat_map(|(series_slot, times)| {
                    times
                        .iter()
                        .map(move |(time_slot, group)| DataPartitionEntry {
                            series_slot: *series_slot,
                            time_slot: *time_slot,
                            region_group_id: group.0,
                        })
                })
                .collect(),
        })
        .collect();
    let groups = snapshot
        .region_groups
        .iter()
        .filter(|(_, g)| g.kind == RegionGroupKind::Data)
        .map(|(RegionGroupId(id), group)| iotdb_net::RegionGroupRoute {
            region_group_id: *id,
            replicas: group
                .replicas
                .iter()
                .map(|r| {
                    let endpoint = snapshot
                        .data_nodes
                        .get(&r.data_node_id)
                        .map(|n| format!("{}:{}", n.rpc_address, n.rpc_port))
                        .unwrap_or_default();
                    iotdb_net::ReplicaRoute {
                        data_node_id: r.data_node_id.0,
                        rpc_endpoint: endpoint,
                        shard_id: u32::from(r.shard.0),
                        is_leader: r.role == Role::Leader,
                    }
                })
                .collect(),
        })
        .collect();
    let ttls = snapshot
        .databases
        .iter()
        .map(|(name, db)| {
            (
                name.clone(),
                db.settings.ttl_ms.map(|t| t.min(i64::MAX as u64) as i64),
            )
        })
        .collect();
    let mut view = RouteView::new(
        snapshot.version,
        databases,
        groups,
        data_node_id.0,
        shard_count,
        ttls,
    );
    view.group_databases = snapshot
        .region_groups
        .iter()
        .map(|(id, group)| (id.0, group.database.clone()))
        .collect();
    view.internal_endpoints = snapshot
        .data_nodes
        .iter()
        .filter_map(|(id, node)| {
            let address = crate::config::parse_endpoint(&format!(
                "{}:{}",
                node.internal_address, node.internal_port
            ))?;
            Some((id.0, address))
        })
        .collect();
    view.consensus_endpoints = snapshot
        .data_nodes
        .iter()
        .filter_map(|(id, node)| {
            let address = crate::config::parse_endpoint(&format!(
                "{}:{}",
                node.internal_address, node.data_consensus_port
            ))?;
            Some((id.0, address))
        })
        .collect();
    let in_sync = |group: &crate::confignode::RegionGroupRoute| -> Vec<u32> {
        group
            .replicas
            .iter()
            .map(|r| r.data_node_id)
            .filter(|n| !group.out_of_sync.contains(n))
            .map(|n| n.0)
            .collect()
    };
    let running = |group: &crate::confignode::RegionGroupRoute| -> Vec<u32> {
        group
            .replicas
            .iter()
            .map(|r| r.data_node_id)
            .filter(|n| {
                snapshot
                    .data_nodes
                    .get(n)
                    // A DataNode being removed serves until its replicas have moved: a
                    // new leader catches up from it.
                    .is_some_and(|node| {
                        matches!(node.status, NodeStatus::Running | NodeStatus::Removing)
                    })
            })
            .map(|n| n.0)
            .collect()
    };
    view.read_replicas = snapshot
        .region_groups
        .iter()
        .filter(|(_, group)| group.kind == RegionGroupKind::Data && !group.replicas.is_empty())
        .map(|(id, group)| {
            let replicas = super::route::ReadReplicas {
                leader: group.leader().data_node_id.0,
                data_nodes: group.replicas.iter().map(|r| r.data_node_id.0).collect(),
                in_sync: in_sync(group),
                running: running(group),
                ack_in_sync: snapshot.replication_ack == ReplicationAck::InSync,
            };
            (id.0, replicas)
        })
        .collect();
    view.replication = snapshot
        .region_groups
        .iter()
        .filter(|(_, group)| {
            group.kind == RegionGroupKind::Data
                && group.replicas.len() > 1
                && group
                    .replicas
                    .iter()
                    .any(|r| r.data_node_id == data_node_id)
        })
        .map(|(id, group)| {
            let replication = GroupReplication {
                epoch: group.epoch,
                leader: group.leader().data_node_id.0,
                // The shard that owns each replica now: a DataNode restarted with fewer
                // cores than it was placed with maps its replicas onto the cores it has.
                replicas: group
                    .replicas
                    .iter()
                    .map(|r| {
                        let cores = snapshot
                            .data_nodes
                            .get(&r.data_node_id)
                            .map_or(1, |node| node.shard_count.max(1));
                        (r.data_node_id.0, (u32::from(r.shard.0) % cores) as u16)
                    })
                    .collect(),
                in_sync: in_sync(group),
                in_sync_version: group.in_sync_version,
                running: running(group),
                ack_in_sync: snapshot.replication_ack == ReplicationAck::InSync,
            };
            (id.0, replication)
        })
        .collect();
    view
}

/// Runs `step` on every SchemaRegion but those whose journal failed before this batch
/// (`failed_before`: they refuse every request and have nothing to make durable); the
/// last error, as a status.
fn each_live_schema(
    schemas: &mut HashMap<u32, SchemaRegion>,
    failed_before: &HashSet<u32>,
    mut step: impl FnMut(&mut SchemaRegion) -> Result<(), SchemaError>,
) -> Result<(), Status> {
    let mut result = Ok(());
    for (group, schema) in schemas {
        if !failed_before.contains(group)
            && let Err(e) = step(schema)
        {
            result = Err(schema_status(e));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::{derive_route_view, route_view_of};
    use crate::confignode::tests::{config_node, data_node};
    use crate::confignode::{ClusterSettings, ConfigCommand, ConfigNode, NodeId};
    use crate::datanode::route::RouteView;
    use crate::sql::DatabaseAttributes;

    /// Everything a shard reads of a view, and the wire table clients fetch.
    fn assert_same_view(derived: &RouteView, whole: &RouteView, devices: &[String], step: usize) {
        assert_eq!(derived.version(), whole.version(), "step {step}");
        assert_eq!(derived.wire_table(), whole.wire_table(), "step {step}");
        assert_eq!(derived.ttls, whole.ttls, "step {step}");
        assert_eq!(
            derived.group_databases, whole.group_databases,
            "step {step}"
        );
        assert_eq!(derived.replication, whole.replication, "step {step}");
        assert_eq!(derived.read_replicas, whole.read_replicas, "step {step}");
        for group in whole.wire_table().region_groups() {
            let id = group.region_group_id;
            assert_eq!(
                derived.local_shard(id),
                whole.local_shard(id),
                "step {step}"
            );
            assert_eq!(
                derived.remote_holder(id),
                whole.remote_holder(id),
                "step {step}"
            );
        }
        for device in devices {
            let (a, b) = (derived.device(device), whole.device(device));
            assert_eq!(a.is_some(), b.is_some(), "step {step}: {device}");
            let (Some(a), Some(b)) = (a, b) else { continue };
            assert_eq!(a.slots, b.slots, "step {step}: {device}");
            assert_eq!(a.series_slot, b.series_slot, "step {step}: {device}");
            assert_eq!(
                a.groups_in(i64::MIN, i64::MAX).collect::<Vec<_>>(),
                b.groups_in(i64::MIN, i64::MAX).collect::<Vec<_>>(),
                "step {step}: {device}"
            );
        }
    }

    /// A route view derived from the one before, command by command, is the view built
    /// whole from the ConfigNode's state, at every version of a history that assigns
    /// data and schema partitions (most steps), and creates databases, region groups and
    /// DataNodes, changes TTLs (which take the whole rebuild).
    #[test]
    fn a_view_derived_from_assigned_partitions_is_the_view_built_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = ConfigNode::open(dir.path(), ClusterSettings::default()).unwrap();
        node.register_config_node(config_node(1)).unwrap();
        node.set_leader(Some(NodeId(0)));
        let this = node.register_data_node(data_node(1, 2)).unwrap();
        let databases = ["root.a", "root.b", "root.c"];
        node.create_database(databases[0], &DatabaseAttributes::default())
            .unwrap();
        let devices: Vec<String> = databases
            .iter()
            .flat_map(|db| (0..40).map(move |d| format!("{db}.d{d}")))
            .collect();
        let whole = |node: &ConfigNode| route_view_of(&node.route_snapshot(), this, 2);
        let mut last = whole(&node);
        let (mut derived_count, mut rebuilt_count) = (0, 0);
        let mut random = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random % bound
        };
        let mut created = 1;
        for step in 0..400 {
            match next(20) {
                0 if created < databases.len() => {
                    node.create_database(databases[created], &DatabaseAttributes::default())
                        .unwrap();
                    created += 1;
                }
                1 => {
                    node.register_data_node(data_node(2 + next(3) as u32, 2))
                        .unwrap();
                }
                2 => {
                    let db = databases[next(created as u64) as usize];
                    node.set_ttl(db, Some(1000 * (1 + next(5)))).unwrap();
                }
                3..=5 => {
                    let db = databases[next(created as u64) as usize];
                    node.get_or_create_schema_partition(db, next(1000) as u32)
                        .unwrap();
                }
                _ => {
                    let db = databases[next(created as u64) as usize];
                    let pairs: Vec<(u32, i64)> = (0..1 + next(4))
                        .map(|_| (next(1000) as u32, next(6) as i64 - 2))
                        .collect();
                    node.get_or_create_data_partitions(db, &pairs).unwrap();
                }
            }
            let version = node.version();
            let commands = node.commands_since(last.version()).unwrap();
            // Only a command other than a partition assignment (a database's first
            // partition also creates its region groups) takes the whole rebuild.
            let only_partitions = commands.iter().all(|command| {
                matches!(
                    command,
                    ConfigCommand::AssignDataPartitions { .. }
                        | ConfigCommand::AssignSchemaPartitions { .. }
                )
            });
            let expected = whole(&node);
            match derive_route_view(&last, version, &commands) {
                Some(derived) => {
                    assert!(only_partitions, "step {step}: derived over {commands:?}");
                    assert_same_view(&derived, &expected, &devices, step);
                    derived_count += 1;
                    last = derived;
                }
                None => {
                    assert!(
                        !only_partitions,
                        "step {step}: not derived over {commands:?}"
                    );
                    rebuilt_count += 1;
                    last = expected;
                }
            }
        }
        assert!(derived_count > 250, "{derived_count} derived");
        assert!(rebuilt_count > 10, "{rebuilt_count} rebuilt");
    }
}
