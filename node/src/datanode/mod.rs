//! The DataNode role: one [`Shard`] per core, each owning the region replicas the route
//! table places on it, serving client connections, and routing what it does not own
//! through the mesh.
//!
//! ```text
//!  client ─► shard k (any) ── tablet for group g ──► owner of g?
//!                 │                                   ├─ k itself: region.write, await durable
//!                 │                                   └─ shard j:  mesh Write{g, views} ─► j writes
//!                 └─ unknown database / series / partition ─► control thread: ConfigNode
//!                    role + schema; it publishes a new route table every shard picks up
//! ```
//!
//! Everything in a `Shard` is owned by its core; `NodeShared` holds what all cores read
//! (settings, the route table snapshot, counters).

pub mod admin;
pub mod config_access;
pub mod control;
pub mod control_thread;
pub mod convert;
mod group_read;
pub mod handler;
pub mod lifecycle;
pub mod query;
pub mod read_pages;
pub mod replication;
pub mod route;
pub mod schema_replication;
pub mod select;
pub mod sql_exec;
pub mod write;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use iotdb_net::{Status, StatusCode};
use iotdb_runtime::{MeshEndpoint, Reply, ShardId};
use iotdb_storage::hash::FastMap;
use iotdb_storage::{DataType, DeviceTypes, MemoryBudget, Region};

use crate::config::ServerConfig;
use control::{ControlAnswer, ControlRequest};
use control_thread::ControlHandle;
use route::{RouteView, SharedRoute};

/// How many times a schema question follows `SchemaElsewhere` answers at most (a
/// replicated schema region's follower names its leader; the leader may just have moved).
const SCHEMA_REDIRECTS_MAX: usize = 3;

/// The storage background pool of this process: every region of every shard hands its
/// flushes, compactions and metadata writes to it (fixed threads, bounded queues; see
/// `iotdb_storage::background`), sized by the server's `storage_background_threads`; a
/// process runs one DataNode, so one pool. The server starts it on its main thread before
/// the shards ([`crate::server`]): its threads inherit the CPU affinity of the thread that
/// creates the pool, and created by a shard pinned to core 0 (on the first region open, as
/// it once was) every flush and compaction of the node ran on core 0, beside that shard.
pub(crate) fn background_pool(
    config: &ServerConfig,
) -> Result<iotdb_storage::BackgroundPool, Status> {
    static POOL: std::sync::OnceLock<iotdb_storage::BackgroundPool> = std::sync::OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool.clone());
    }
    let pool =
        iotdb_storage::BackgroundPool::new(config.background_pool_options()).map_err(|e| {
            tracing::error!(error = %e, "starting the storage background pool failed");
            Status::internal(format!("starting the storage background pool: {e}"))
        })?;
    // Two shards racing here: the loser's pool is dropped (its threads stop) unused.
    Ok(POOL.get_or_init(|| pool).clone())
}

/// What every core of the node reads.
pub struct NodeShared {
    pub config: ServerConfig,
    pub data_node_id: u32,
    pub shard_count: usize,
    pub route: Arc<SharedRoute>,
    pub connections: AtomicUsize,
    pub sessions: AtomicU64,
    /// The control thread (ConfigNode role and schema regions).
    pub control: ControlHandle,
    /// Whether a region's turn to read-only was reported (once per process); the control
    /// plane shares it (a SchemaRegion whose journal failed).
    pub read_only_reported: Arc<std::sync::atomic::AtomicBool>,
    /// A cluster member's identity and internal port (`None` standalone).
    pub cluster: Option<crate::cluster::link::ClusterMember>,
    /// The process's metrics; shard `s` writes only `metrics.shard(s)`.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
}

/// What a shard tells a heartbeat: bytes on disk of each region it holds, and a
/// [`LeaderReport`] for each replicated group it leads.
#[derive(Debug, Default)]
pub struct ShardReport {
    pub sizes: Vec<(u32, u64)>,
    pub leading: Vec<crate::confignode::procedure::LeaderReport>,
}

/// Messages between shards. Payloads are `Bytes`-backed views: a frame read on one core
/// reaches its owner without a copy.
pub enum Message {
    Write {
        group: u32,
        tablets: Vec<write::Payload>,
        reply: Reply<Result<(), Status>>,
    },
    Read {
        group: u32,
        read: query::RegionRead,
        reply: Reply<Result<query::RegionAnswer, Status>>,
    },
    Flush {
        reply: Reply<Result<(), Status>>,
    },
    /// `DELETE FROM`: a logged deletion in a region this shard owns.
    Delete {
        group: u32,
        keys: Vec<iotdb_storage::SeriesKey>,
        range: iotdb_storage::TimeRange,
        reply: Reply<Result<(), Status>>,
    },
    /// A database's TTL changed; regions of it apply the new one.
    SetTtl {
        database: String,
        ttl_ms: Option<i64>,
    },
    /// Series were deleted: forget cached types.
    SchemaChanged,
    /// Bytes on disk of each region of the shard, and what its leading replicas report.
    RegionSizes {
        reply: Reply<ShardReport>,
    },
    /// Region groups of deleted databases: close and remove the ones this shard holds.
    DropRegions {
        groups: Vec<u32>,
        reply: Reply<()>,
    },
    /// A connection whose handshake named this shard.
    Adopt(Box<handler::AdoptedConnection>),
    /// To shard 0, which holds the node's internal endpoint: send a request to another
    /// DataNode (a schema question, a region read) and answer with its response.
    AskNode {
        node: iotdb_model::NodeId,
        address: std::net::SocketAddr,
        body: bytes::Bytes,
        /// How long the answer may take.
        timeout: std::time::Duration,
        reply: Reply<Result<bytes::Bytes, Status>>,
    },
}

/// One core's DataNode state. Owned by that core.
pub struct Shard {
    pub id: ShardId,
    pub shared: Arc<NodeShared>,
    pub mesh: MeshEndpoint<Message>,
    regions: RefCell<HashMap<u32, Region>>,
    route: RefCell<Arc<RouteView>>,
    /// device → measurement → type, as the schema regions answered.
    schema_cache: RefCell<FastMap<Arc<str>, DeviceTypes>>,
    /// The memtable budget every region of this shard draws on (`shard_write_memory_bytes`).
    memory: MemoryBudget,
    /// Shard 0 of a cluster member: the node's internal endpoint.
    internal: RefCell<Option<crate::internal::InternalEndpoint>>,
    /// Replicated region groups with their replica on this shard, and this shard's
    /// consensus endpoint.
    pub(crate) replication: replication::ShardReplication,
}

impl Shard {
    pub fn new(id: ShardId, shared: Arc<NodeShared>, mesh: MeshEndpoint<Message>) -> Rc<Shard> {
        let route = shared.route.load();
        let memory = MemoryBudget::for_shard(shared.config.shard_write_memory_bytes);
        Rc::new(Shard {
            id,
            shared,
            mesh,
            regions: RefCell::new(HashMap::new()),
            route: RefCell::new(route),
            schema_cache: RefCell::new(FastMap::default()),
            memory,
            internal: RefCell::new(None),
            replication: replication::ShardReplication::default(),
        })
    }

    /// The current route table (refreshed when the control thread published a newer one).
    pub fn route(&self) -> Arc<RouteView> {
        if self.shared.route.version() != self.route.borrow().version() {
            *self.route.borrow_mut() = self.shared.route.load();
        }
        self.route.borrow().clone()
    }

    /// Asks the control plane (on its own thread; see [`control_thread`]) and, once it
    /// answered, spreads the answer's side effects to every shard (dropped regions, TTLs,
    /// schema caches) before returning, so a statement returns once they took effect.
    ///
    /// In a cluster, a schema question about a device whose SchemaRegion is on another
    /// DataNode is answered there (one internal request, from shard 0).
    pub async fn control(&self, request: ControlRequest) -> Result<ControlAnswer, Status> {
        self.control_together(vec![request])
            .await
            .pop()
            .expect("one answer per request")
    }

    /// [`Self::control`] for several requests handled in one batch of the control plane
    /// (one sync of each journal, one route update for all): their answers, in order.
    pub async fn control_together(
        &self,
        requests: Vec<ControlRequest>,
    ) -> Vec<Result<ControlAnswer, Status>> {
        // Boxed: every request path that may ask the control plane (a write creating a
        // series or a partition) would otherwise carry this future's kilobytes in its own,
        // and a task's future is copied whole when spawned, once per request.
        Box::pin(self.control_unboxed(requests)).await
    }

    async fn control_unboxed(
        &self,
        requests: Vec<ControlRequest>,
    ) -> Vec<Result<ControlAnswer, Status>> {
        let forwardable: Vec<_> = requests.iter().map(ControlRequest::forwardable).collect();
        let answers = self.shared.control.call_together(requests).await;
        let mut followed = Vec::with_capacity(answers.len());
        for (answer, forwardable) in answers.into_iter().zip(forwardable) {
            followed.push(self.follow_answer(answer, forwardable).await);
        }
        followed
    }

    /// What an answer of the control plane leads to: the schema question asked where its
    /// region is (a cluster member), the side effects spread to every shard.
    async fn follow_answer(
        &self,
        answer: Result<ControlAnswer, Status>,
        forwardable: Option<crate::cluster::protocol::SchemaRequest>,
    ) -> Result<ControlAnswer, Status> {
        if let (Ok(answer), Some(schema)) = (&answer, forwardable) {
            match answer {
                ControlAnswer::Elsewhere {
                    data_node,
                    internal_endpoint,
                } => {
                    return Box::pin(self.ask_schema_holder(*data_node, internal_endpoint, schema))
                        .await;
                }
                ControlAnswer::SeriesAndElsewhere { series, others } => {
                    return Box::pin(self.match_everywhere(series.clone(), others, schema)).await;
                }
                ControlAnswer::ShowAndElsewhere { result, others } => {
                    if let crate::cluster::protocol::SchemaRequest::Show { view, .. } = schema {
                        return Box::pin(self.show_everywhere(view, result, others, schema)).await;
                    }
                }
                ControlAnswer::DeletedAndElsewhere { deleted, others } => {
                    // Dropped first: a DataNode that fails to answer below must not leave
                    // this one writing to series that are gone.
                    self.drop_cached_schemas().await;
                    return Box::pin(self.delete_everywhere(*deleted, others, schema)).await;
                }
                _ => {}
            }
        }
        self.broadcast_side_effects(&answer).await;
        answer
    }

    /// Adds every other live DataNode's deletions (`DELETE TIMESERIES`) to this node's.
    async fn delete_everywhere(
        &self,
        mut deleted: u64,
        others: &[(iotdb_model::NodeId, String)],
        request: crate::cluster::protocol::SchemaRequest,
    ) -> Result<ControlAnswer, Status> {
        self.ask_each(
            others,
            &request,
            "a series deletion",
            |answer| match answer {
                ControlAnswer::Count(theirs) => {
                    deleted += theirs;
                    Ok(())
                }
                other => Err(other),
            },
        )
        .await?;
        Ok(ControlAnswer::Count(deleted))
    }

    /// Asks each of `others` `request` (following schema redirects) and hands the answers
    /// to `take` in turn; one `take` gives back is unexpected: an internal error naming
    /// `what` was asked.
    async fn ask_each(
        &self,
        others: &[(iotdb_model::NodeId, String)],
        request: &crate::cluster::protocol::SchemaRequest,
        what: &str,
        mut take: impl FnMut(ControlAnswer) -> Result<(), ControlAnswer>,
    ) -> Result<(), Status> {
        for (node, endpoint) in others {
            let answer = self
                .ask_schema_holder(*node, endpoint, request.clone())
                .await?;
            if let Err(other) = take(answer) {
                return Err(Status::internal(format!(
                    "DataNode {node} answered {what} with {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// Drops every shard's cached schema (series were deleted).
    pub(crate) async fn drop_cached_schemas(&self) {
        for to in 0..self.shared.shard_count {
            let to = ShardId(to as u16);
            if to == self.id {
                self.clear_schema_cache();
            } else {
                self.mesh.send(to, Message::SchemaChanged).await;
            }
        }
    }

    /// Merges this node's series matches with every other schema holder's, per pattern,
    /// sorted by path.
    async fn match_everywhere(
        &self,
        mut series: Vec<Vec<(String, String, DataType)>>,
        others: &[(iotdb_model::NodeId, String)],
        request: crate::cluster::protocol::SchemaRequest,
    ) -> Result<ControlAnswer, Status> {
        self.ask_each(others, &request, "a series match", |answer| match answer {
            ControlAnswer::Series(theirs) if theirs.len() == series.len() => {
                for (mine, theirs) in series.iter_mut().zip(theirs) {
                    mine.extend(theirs);
                }
                Ok(())
            }
            other => Err(other),
        })
        .await?;
        for list in &mut series {
            // By full path, as one node's own answer is sorted.
            list.sort_by_cached_key(|(device, measurement, _)| format!("{device}.{measurement}"));
            list.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        }
        Ok(ControlAnswer::Series(series))
    }

    /// Merges this node's rows of a schema view with every other schema leader's: listed
    /// rows sorted by their first column (path, device), each once; counts summed.
    async fn show_everywhere(
        &self,
        view: crate::cluster::protocol::SchemaView,
        result: &iotdb_net::ResultSet,
        others: &[(iotdb_model::NodeId, String)],
        request: crate::cluster::protocol::SchemaRequest,
    ) -> Result<ControlAnswer, Status> {
        use crate::cluster::protocol::SchemaView;
        let mut rows = control::text_rows(result);
        self.ask_each(others, &request, "a schema view", |answer| match answer {
            ControlAnswer::Rows(theirs) => {
                rows.extend(theirs);
                Ok(())
            }
            other => Err(other),
        })
        .await?;
        match view {
            SchemaView::Timeseries | SchemaView::Devices => {
                rows.sort_by(|a, b| a.first().cmp(&b.first()));
                rows.dedup_by(|a, b| a.first() == b.first());
            }
            SchemaView::CountTimeseries | SchemaView::CountDevices => {
                let total: u64 = rows
                    .iter()
                    .filter_map(|row| row.first()?.as_deref()?.parse::<u64>().ok())
                    .sum();
                rows = vec![vec![Some(total.to_string())]];
            }
        }
        Ok(ControlAnswer::ResultSet(control::table_result(
            crate::confignode::Table {
                columns: result.column_names.clone(),
                rows,
            },
        )))
    }

    /// The shard of this node holding region group `group`, refreshing a member's route
    /// table from the ConfigNode once when it does not know the group (another DataNode
    /// that just created it forwards a write or read here before the heartbeat would tell).
    pub(crate) async fn local_owner(&self, group: u32) -> Result<u16, Status> {
        if let Some(owner) = self.route().local_shard(group) {
            return Ok(owner);
        }
        if self.shared.cluster.is_some() {
            self.control(ControlRequest::Refresh).await?;
            if let Some(owner) = self.route().local_shard(group) {
                return Ok(owner);
            }
        }
        Err(Status::new(
            StatusCode::ROUTE_TABLE_STALE,
            format!("region group {group} is not on this DataNode"),
        ))
    }

    /// Sets shard 0's internal endpoint (a cluster member).
    pub fn set_internal_endpoint(&self, endpoint: crate::internal::InternalEndpoint) {
        *self.internal.borrow_mut() = Some(endpoint);
    }

    async fn ask_schema_holder(
        &self,
        holder: iotdb_model::NodeId,
        endpoint: &str,
        request: crate::cluster::protocol::SchemaRequest,
    ) -> Result<ControlAnswer, Status> {
        use crate::cluster::protocol::{FromNode, ToNode};
        let address = crate::config::parse_endpoint(endpoint).ok_or_else(|| {
            Status::internal(format!(
                "DataNode {holder} has no usable internal address {endpoint:?}"
            ))
        })?;
        let body = crate::cluster::protocol::encode(&ToNode::Schema(request));
        let (mut holder, mut address) = (holder, address);
        for _ in 0..SCHEMA_REDIRECTS_MAX {
            let answer = self.ask_node(holder, address, body.clone()).await?;
            match crate::cluster::protocol::decode::<FromNode>("schema answer", &answer)? {
                FromNode::Types(types) => return Ok(ControlAnswer::Types(types)),
                FromNode::MaybeTypes(types) => return Ok(ControlAnswer::MaybeTypes(types)),
                FromNode::Series(series) => return Ok(ControlAnswer::Series(series)),
                FromNode::Rows(rows) => return Ok(ControlAnswer::Rows(rows)),
                FromNode::Count(count) => return Ok(ControlAnswer::Count(count)),
                FromNode::Refused(status) => return Err(status.into()),
                FromNode::SchemaElsewhere {
                    data_node,
                    internal_endpoint,
                } if data_node != holder => {
                    tracing::debug!(from = %holder, to = %data_node, "a schema question sent on");
                    address = crate::config::parse_endpoint(&internal_endpoint).ok_or_else(|| {
                        Status::internal(format!(
                            "DataNode {data_node} has no usable internal address {internal_endpoint:?}"
                        ))
                    })?;
                    holder = data_node;
                }
                other => {
                    return Err(Status::internal(format!(
                        "unexpected schema answer from DataNode {holder}: {other:?}"
                    )));
                }
            }
        }
        Err(Status::new(
            StatusCode::ROUTE_TABLE_STALE,
            format!(
                "the schema question was sent on {SCHEMA_REDIRECTS_MAX} times without reaching \
                    the DataNode that serves it (a leader change under way); retry"
            ),
        ))
    }

    /// Sends a request to another DataNode's internal port and waits for its answer: from
    /// shard 0, which holds the node's internal endpoint (one mesh hop from any other).
    pub(crate) async fn ask_node(
        &self,
        node: iotdb_model::NodeId,
        address: std::net::SocketAddr,
        body: bytes::Bytes,
    ) -> Result<bytes::Bytes, Status> {
        self.ask_node_within(
            node,
            address,
            body,
            crate::cluster::link::CN_REQUEST_TIMEOUT,
        )
        .await
    }

    /// [`Shard::ask_node`] waiting at most `timeout` for the answer (a region read's
    /// `dn_remote_read_timeout_ms`).
    pub(crate) async fn ask_node_within(
        &self,
        node: iotdb_model::NodeId,
        address: std::net::SocketAddr,
        body: bytes::Bytes,
        timeout: std::time::Duration,
    ) -> Result<bytes::Bytes, Status> {
        if self.id.0 == 0 {
            let internal = self.internal.borrow().clone();
            let internal = internal.ok_or_else(|| {
                Status::internal("this DataNode has no internal endpoint (not a cluster member)")
            })?;
            return crate::cluster::link::ask_node(&internal, node, address, body, timeout).await;
        }
        self.mesh
            .request(ShardId(0), |reply| Message::AskNode {
                node,
                address,
                body,
                timeout,
                reply,
            })
            .await
            .map_err(|e| Status::internal(format!("reaching shard 0: {e}")))?
    }

    /// Closes and deletes the regions of `groups` this shard holds (their database is gone).
    pub async fn drop_regions(&self, groups: &[u32]) {
        self.clear_schema_cache();
        for group in groups {
            let Some(region) = self.regions.borrow_mut().remove(group) else {
                continue;
            };
            if let Err(e) = region.close(false).await {
                tracing::warn!(group, error = %e, "closing a dropped region failed");
            }
            let dir = self.shared.config.region_dir(*group);
            // The removal runs on the storage background pool, never on this shard's
            // loop; the statement still waits for it, so it returns once the files are
            // gone. A removal that fails (or finds the pool full) is finished at the next
            // start, when region directories are reconciled against the route table.
            match self.remove_on_pool(dir.clone()).await {
                Ok(()) => {
                    tracing::info!(group, dir = %dir.display(), "dropped the region of a deleted database")
                }
                Err(reason) => {
                    tracing::warn!(group, dir = %dir.display(), %reason,
                        "removing a dropped region failed; the next start removes it")
                }
            }
        }
    }

    /// Removes a directory tree on the storage background pool and waits for it.
    async fn remove_on_pool(&self, dir: std::path::PathBuf) -> Result<(), String> {
        let pool = background_pool(&self.shared.config).map_err(|status| status.message)?;
        let done = pool
            .try_run(iotdb_storage::JobClass::Urgent, move || {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| iotdb_storage::StorageError::io("remove dropped region", &dir, e))
            })
            .map_err(|full| full.to_string())?;
        match done.await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("the removal job was cancelled".to_string()),
        }
    }

    /// TTL changes reach every shard's regions; schema deletions every shard's cache;
    /// deleted databases' regions are dropped by their shards.
    async fn broadcast_side_effects(&self, answer: &Result<ControlAnswer, Status>) {
        if let Ok(ControlAnswer::RegionsDropped { data_groups }) = answer {
            for to in 0..self.shared.shard_count {
                let to = ShardId(to as u16);
                if to == self.id {
                    self.drop_regions(data_groups).await;
                } else {
                    // Wait for each: the statement returns once the files are gone.
                    let groups = data_groups.clone();
                    if let Err(e) = self
                        .mesh
                        .request(to, |reply| Message::DropRegions { groups, reply })
                        .await
                    {
                        tracing::warn!(shard = to.0, error = %e, "dropping regions failed");
                    }
                }
            }
        }
        if let Ok(ControlAnswer::TtlChanged { database, ttl_ms }) = answer {
            for to in 0..self.shared.shard_count {
                let to = ShardId(to as u16);
                if to == self.id {
                    self.apply_ttl(database, *ttl_ms);
                } else {
                    self.mesh
                        .send(
                            to,
                            Message::SetTtl {
                                database: database.clone(),
                                ttl_ms: *ttl_ms,
                            },
                        )
                        .await;
                }
            }
        }
    }

    /// Brings the regions this shard has open in line with a newer route table (a
    /// cluster member, whose ConfigNode state changes through other DataNodes too): a
    /// region no longer placed here (its database was deleted) is closed and removed, and
    /// a database whose TTL changed has it applied.
    pub async fn follow_route(&self, previous: &RouteView, current: &RouteView) {
        let open: Vec<u32> = self.regions.borrow().keys().copied().collect();
        let gone: Vec<u32> = open
            .iter()
            .copied()
            .filter(|group| current.local_shard(*group) != Some(self.id.0))
            .collect();
        if !gone.is_empty() {
            tracing::info!(groups = ?gone, shard = self.id.0, "the route table no longer places these regions here");
            self.drop_regions(&gone).await;
        }
        for (database, ttl) in &current.ttls {
            if previous.ttls.get(database) != Some(ttl) {
                self.apply_ttl(database, *ttl);
            }
        }
    }

    fn apply_ttl(&self, database: &str, ttl_ms: Option<i64>) {
        let route = self.route();
        for (group, region) in self.regions.borrow().iter() {
            if route
                .database_of_group(*group)
                .is_some_and(|d| d.name == database)
            {
                region.set_ttl(ttl_ms);
            }
        }
    }

    /// The schema cache's types for `device`'s `measurements`, `None` where unknown.
    pub fn cached_types(&self, device: &str, measurements: &[&str]) -> Vec<Option<DataType>> {
        let cache = self.schema_cache.borrow();
        let known = cache.get(device);
        measurements
            .iter()
            .map(|m| known.and_then(|k| k.get(m)))
            .collect()
    }

    pub fn cache_types(&self, device: &Arc<str>, types: &[(Arc<str>, DataType)]) {
        let mut cache = self.schema_cache.borrow_mut();
        let entry = cache.entry(device.clone()).or_default();
        for (m, t) in types {
            entry.insert(m, *t);
        }
    }

    /// Forgets cached schema (after a schema deletion).
    pub fn clear_schema_cache(&self) {
        self.schema_cache.borrow_mut().clear();
    }

    /// The region of `group`, opened on first use. Only the owner shard calls this.
    pub fn region(&self, group: u32) -> Result<Region, Status> {
        if let Some(region) = self.regions.borrow().get(&group) {
            return Ok(region.clone());
        }
        let route = self.route();
        if route.local_shard(group) != Some(self.id.0) {
            return Err(Status::new(
                StatusCode::ROUTE_TABLE_STALE,
                format!("region group {group} is not on shard {}", self.id.0),
            ));
        }
        let database = route
            .database_of_group(group)
            .ok_or_else(|| Status::internal(format!("region group {group} has no database")))?;
        let ttl = self.ttl_of(&database.name);
        let mut config = self
            .shared
            .config
            .region_config(ttl, database.time_partition_interval_ms);
        config.background = Some(background_pool(&self.shared.config)?);
        let dir = self.shared.config.region_dir(group);
        let region = Region::open_with_budget(&dir, config, &self.memory).map_err(|e| {
            tracing::error!(group, dir = %dir.display(), error = %e, "opening a region failed");
            convert::status_of(&e)
        })?;
        tracing::info!(group, shard = self.id.0, dir = %dir.display(), "region open");
        self.regions.borrow_mut().insert(group, region.clone());
        Ok(region)
    }

    fn ttl_of(&self, database: &str) -> Option<i64> {
        self.shared
            .route
            .load()
            .ttls
            .get(database)
            .copied()
            .flatten()
    }

    /// Opens every region the route table places on this shard (WAL replay at start).
    pub fn open_owned_regions(&self) {
        let route = self.route();
        for group in route.groups_on_shard(self.id.0) {
            if let Err(status) = self.region(group) {
                tracing::error!(group, status = %status.message, "region failed to open");
            }
        }
    }

    /// Flushes every region of this shard.
    ///
    /// The regions flush at once (each flush is a job on the background pool, so they run
    /// on as many pool threads as it has); the first error is returned once every flush
    /// has ended.
    pub async fn flush_local(&self) -> Result<(), Status> {
        let regions: Vec<Region> = self.regions.borrow().values().cloned().collect();
        let outcomes = iotdb_runtime::join_all(regions.iter().map(Region::flush)).await;
        outcomes
            .into_iter()
            .collect::<Result<(), _>>()
            .map_err(|e| convert::status_of(&e))
    }

    /// Closes every region; `flush` for a clean shutdown.
    /// This shard's metrics slot (only this shard writes it).
    pub fn metrics(&self) -> &crate::metrics::ShardMetrics {
        self.shared.metrics.shard(self.id.index())
    }

    /// Publishes this shard's gauges into its metrics slot: memtable bytes, data region
    /// replicas, the lag of the groups it leads, and a turn to read-only.
    pub fn publish_metrics(&self) {
        self.metrics().publish(
            self.memory.total_bytes() as u64,
            self.regions.borrow().len() as u64,
            self.replication.leader_lags(),
        );
        if self
            .shared
            .read_only_reported
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.shared.metrics.set_read_only();
        }
    }

    pub async fn close_regions(&self, flush: bool) {
        let regions: Vec<(u32, Region)> = self.regions.borrow_mut().drain().collect();
        for (group, region) in regions {
            if let Err(e) = region.close(flush).await {
                tracing::error!(group, error = %e, "closing a region failed");
            }
        }
    }

    /// Why a region of this shard turned read-only, if one did.
    pub fn read_only_region(&self) -> Option<String> {
        self.regions.borrow().values().find_map(Region::read_only)
    }

    /// Sizes of the regions on this shard (for SHOW REGIONS).
    pub fn region_sizes(&self) -> Vec<(u32, u64)> {
        self.regions
            .borrow()
            .iter()
            .map(|(g, r)| {
                let info = r.info();
                (*g, info.sealed_bytes + info.wal_bytes)
            })
            .collect()
    }

    /// Serves one mesh message.
    pub async fn on_message(self: &Rc<Self>, message: Message) {
        match message {
            Message::Write {
                group,
                tablets,
                reply,
            } => {
                let result = self.write_local(group, &tablets).await;
                let _ = reply.send(result);
            }
            Message::Read { group, read, reply } => {
                let _ = reply.send(self.read_local(group, &read));
            }
            Message::Flush { reply } => {
                let _ = reply.send(self.flush_local().await);
            }
            Message::Delete {
                group,
                keys,
                range,
                reply,
            } => {
                let _ = reply.send(self.delete_local(group, &keys, range).await);
            }
            Message::SetTtl { database, ttl_ms } => self.apply_ttl(&database, ttl_ms),
            Message::SchemaChanged => self.clear_schema_cache(),
            Message::RegionSizes { reply } => {
                let _ = reply.send(self.shard_report());
            }
            Message::DropRegions { groups, reply } => {
                self.drop_regions(&groups).await;
                let _ = reply.send(());
            }
            Message::Adopt(connection) => {
                let shard = self.clone();
                monoio::spawn(async move { handler::serve_adopted(shard, *connection).await });
            }
            Message::AskNode {
                node,
                address,
                body,
                timeout,
                reply,
            } => {
                let _ = reply.send(self.ask_node_within(node, address, body, timeout).await);
            }
        }
    }

    /// `FLUSH`: every region of every shard (this one locally) sealed into files, and the
    /// control plane's logs folded into snapshots ([`ControlRequest::FoldLogs`]).
    ///
    /// Every shard flushes at once, and the control thread folds its logs meanwhile (they
    /// share nothing); the first error is returned once all have ended.
    pub async fn flush_all(&self) -> Result<(), Status> {
        // `Some(shard)`: that shard's regions; `None`: the control plane's logs.
        let parts = (0..self.shared.shard_count)
            .map(|to| Some(ShardId(to as u16)))
            .chain([None]);
        let outcomes = iotdb_runtime::join_all(parts.map(|part| async move {
            match part {
                Some(to) if to == self.id => self.flush_local().await,
                Some(to) => self
                    .mesh
                    .request(to, |reply| Message::Flush { reply })
                    .await
                    .map_err(|e| Status::internal(format!("flush on shard {}: {e}", to.0)))?,
                None => self.control(ControlRequest::FoldLogs).await.map(drop),
            }
        }))
        .await;
        outcomes.into_iter().collect()
    }

    /// Bytes on disk of every region of the node.
    pub async fn all_region_sizes(&self) -> HashMap<u32, u64> {
        self.node_report().await.sizes.into_iter().collect()
    }

    /// This shard's [`ShardReport`].
    fn shard_report(&self) -> ShardReport {
        ShardReport {
            sizes: self.region_sizes(),
            leading: self.replication.leader_reports(self.shared.data_node_id),
        }
    }

    /// Every shard's [`ShardReport`] together (a heartbeat's answer).
    pub async fn node_report(&self) -> ShardReport {
        let mut report = self.shard_report();
        for to in 0..self.shared.shard_count {
            let to = ShardId(to as u16);
            if to != self.id
                && let Ok(theirs) = self
                    .mesh
                    .request(to, |reply| Message::RegionSizes { reply })
                    .await
            {
                report.sizes.extend(theirs.sizes);
                report.leading.extend(theirs.leading);
            }
        }
        report
    }

    /// A new session id, unique in this process.
    pub fn next_session(&self) -> u64 {
        self.shared.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }
}
