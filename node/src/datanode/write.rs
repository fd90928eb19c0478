//! The write path: resolve each tablet's database, schema and partition (asking the control
//! shard only for what is new), then hand it to the shard that owns its region, without a
//! copy of the frame when the tablet lies in one time partition.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use iotdb_net::partition::time_slot;
use iotdb_net::{Status, StatusCode, TabletView};
use iotdb_runtime::ShardId;
use iotdb_storage::config::WRITE_MEMORY_WAIT_MAX;
use iotdb_storage::{self as storage, DataType};

use super::control::{ControlAnswer, ControlRequest};
use super::convert;
use super::route::DevicePartitions;
use super::{Message, Shard};
use crate::cluster::protocol::SchemaRequest;

/// A tablet on its way to a region: the received view, or an engine tablet (a view split
/// across time partitions, or an SQL `INSERT`'s rows) with whether its device is aligned.
pub enum Payload {
    View(Arc<str>, TabletView),
    Tablet {
        tablet: storage::Tablet,
        aligned: bool,
    },
}

/// How long a write keeps sending a region group's points to its holder again after
/// transient failures. Why 10 s: a dead DataNode turns `Unknown` after three missed
/// heartbeats (3 s with IoTDB's 1 s interval) and a new leader takes over a moment later;
/// 10 s covers that on a loaded machine and stays under a client's patience.
pub const FORWARD_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// The pause between two sends of a forwarded write that failed transiently.
pub const FORWARD_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether a forwarded write that failed with `status` may succeed when sent again after
/// the route table changes: the holder was unreachable or broke the connection (305), no
/// longer leads the group (420), or was taking over or overloaded (606).
fn forward_may_succeed_later(status: &Status) -> bool {
    matches!(
        status.code,
        StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::ROUTE_TABLE_STALE
            | StatusCode::WRITE_PROCESS_REJECT
    )
}

impl Payload {
    /// The tablet's contents in the wire encoding, and whether it is aligned (a write
    /// forwarded to another DataNode).
    pub(crate) fn wire_contents(&self) -> (bytes::Bytes, bool) {
        match self {
            Payload::View(_, view) => (view.bytes().clone(), view.is_aligned()),
            Payload::Tablet { tablet, aligned } => {
                let wire = convert::to_wire_tablet(tablet);
                let mut out = bytes::BytesMut::new();
                wire.encode_contents(&mut out);
                (out.freeze(), *aligned)
            }
        }
    }

    /// The device written.
    pub(crate) fn device(&self) -> &Arc<str> {
        match self {
            Payload::View(device, _) => device,
            Payload::Tablet { tablet, .. } => &tablet.device,
        }
    }

    /// Each column's measurement and type.
    fn columns(&self) -> Vec<(&str, DataType)> {
        match self {
            Payload::View(_, view) => view
                .columns()
                .map(|column| (column.measurement(), column.data_type()))
                .collect(),
            Payload::Tablet { tablet, .. } => tablet
                .columns
                .iter()
                .map(|column| (&*column.measurement, column.values.data_type()))
                .collect(),
        }
    }

    /// The rows' timestamps.
    fn timestamps(&self) -> std::borrow::Cow<'_, [i64]> {
        match self {
            Payload::View(_, view) => view.timestamps(),
            Payload::Tablet { tablet, .. } => std::borrow::Cow::Borrowed(&tablet.timestamps),
        }
    }

    /// The payload as an owned engine tablet (a copy of a view).
    fn into_tablet(self) -> storage::Tablet {
        match self {
            Payload::View(device, view) => convert::to_storage_tablet(&view, &device),
            Payload::Tablet { tablet, .. } => tablet,
        }
    }

    /// Whether the tablet's device is aligned (what a series it creates is).
    pub(crate) fn is_aligned(&self) -> bool {
        match self {
            Payload::View(_, view) => view.is_aligned(),
            Payload::Tablet { aligned, .. } => *aligned,
        }
    }

    /// Points the payload holds: rows times columns.
    pub(crate) fn points(&self) -> u64 {
        let (rows, columns) = match self {
            Payload::View(_, view) => (view.row_count(), view.column_count()),
            Payload::Tablet { tablet, .. } => (tablet.rows(), tablet.columns.len()),
        };
        (rows * columns) as u64
    }

    /// The payload cut into `pieces` tablets of consecutive rows (as even as rows allow),
    /// in row order: a tablet too large to forward in one internal frame travels in parts.
    pub(crate) fn split_rows(&self, pieces: usize) -> Vec<Payload> {
        let aligned = self.is_aligned();
        self.with_tablet_ref(|tablet| {
            let rows = tablet.rows();
            let pieces = pieces.clamp(1, rows.max(1));
            let chunk_of: Vec<u32> = (0..rows).map(|row| (row * pieces / rows) as u32).collect();
            split(tablet, aligned, &chunk_of)
                .into_iter()
                .map(|(_, part)| part)
                .collect()
        })
    }

    /// Calls `f` with the payload as the engine reads it, borrowed (no owned copy).
    fn with_tablet_ref<R>(&self, f: impl FnOnce(&storage::TabletRef<'_>) -> R) -> R {
        f(&self.engine().tablet())
    }

    /// The payload as the engine reads it: [`EnginePayload::tablet`] borrows it.
    pub(crate) fn engine(&self) -> EnginePayload<'_> {
        match self {
            Payload::View(device, view) => {
                EnginePayload::View(convert::EngineView::new(view, device))
            }
            Payload::Tablet { tablet, .. } => EnginePayload::Tablet(tablet),
        }
    }
}

/// A [`Payload`] ready for the engine: a view's columns cast from the frame, or an engine
/// tablet as it is.
pub(crate) enum EnginePayload<'a> {
    View(convert::EngineView<'a>),
    Tablet(&'a storage::Tablet),
}

impl EnginePayload<'_> {
    /// The tablet, borrowed.
    pub(crate) fn tablet(&self) -> storage::TabletRef<'_> {
        match self {
            EnginePayload::View(view) => view.tablet(),
            EnginePayload::Tablet(tablet) => tablet.as_ref(),
        }
    }
}

impl Shard {
    /// Writes every tablet of an insert request; acknowledged once every one is durable.
    /// Tablets are checked (database, types) before any is written.
    ///
    /// With `enable_partial_insert` (IoTDB's default) a column whose type does not match its
    /// series is left out and the rest is written; the answer is then 614 naming the failed
    /// measurements, as IoTDB's. Without it one bad column refuses the whole request.
    pub async fn insert(self: &Rc<Self>, views: Vec<TabletView>) -> Result<(), Status> {
        self.insert_reporting(views, Vec::new()).await
    }

    /// [`Shard::insert`], with failures already found by the caller (an SQL `INSERT`'s
    /// values that do not fit their series) reported alongside the tablets' own.
    pub async fn insert_reporting(
        self: &Rc<Self>,
        views: Vec<TabletView>,
        failures: Vec<PartialFailure>,
    ) -> Result<(), Status> {
        let payloads = views
            .into_iter()
            .map(|view| Payload::View(Arc::from(view.device()), view))
            .collect();
        self.insert_payloads(payloads, failures).await
    }

    /// [`Shard::insert_reporting`] of tablets in either form: an SQL `INSERT` builds its
    /// engine tablet directly and writes it here.
    pub(crate) async fn insert_payloads(
        self: &Rc<Self>,
        payloads: Vec<Payload>,
        mut failures: Vec<PartialFailure>,
    ) -> Result<(), Status> {
        let partial = self.shared.config.enable_partial_insert;
        let mut by_group: HashMap<u32, Vec<Payload>> = HashMap::new();
        for payload in payloads {
            let device = payload.device().clone();
            let aligned = payload.is_aligned();
            let rejected = self.check_schema(&payload, partial).await?;
            let payload = if rejected.is_empty() {
                payload
            } else {
                let mut tablet = payload.into_tablet();
                tablet
                    .columns
                    .retain(|c| !rejected.iter().any(|f| *f.measurement == *c.measurement));
                failures.extend(rejected);
                if tablet.columns.is_empty() {
                    continue;
                }
                Payload::Tablet { tablet, aligned }
            };
            for (group, payload) in self.place(&device, payload).await? {
                by_group.entry(group).or_default().push(payload);
            }
        }
        let points: u64 = by_group.values().flatten().map(Payload::points).sum();
        let written = self.write_groups(by_group).await;
        if written.is_ok() {
            // Partially failed measurements were cut out of the payloads above, so these
            // are the points written.
            self.metrics().points_written(points);
        }
        match (written, failures.is_empty()) {
            (Err(e), _) => Err(e),
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err(PartialFailure::status(&failures)),
        }
    }

    /// Writes each group's payloads on the shard that owns it — or, a cluster member, on
    /// the DataNode that holds the group (one hop, `cluster::forward`); waits until all
    /// are durable.
    ///
    /// A group forwarded to a DataNode that fails transiently (unreachable, no longer
    /// leading, taking over) is sent again, to whoever the route table names then, every
    /// [`FORWARD_RETRY_PAUSE`] for [`FORWARD_RETRY_FOR`] at most: a leader's death is
    /// not the client's problem when another replica takes over within that time.
    /// Sending again is safe: a write of the same points is idempotent.
    async fn write_groups(
        self: &Rc<Self>,
        mut by_group: HashMap<u32, Vec<Payload>>,
    ) -> Result<(), Status> {
        let started = std::time::Instant::now();
        loop {
            let (result, retry) = self.write_groups_once(by_group).await;
            let Some((group, status)) = retry.first().map(|(g, _, s)| (*g, s.clone())) else {
                return result;
            };
            if result.is_err() || started.elapsed() + FORWARD_RETRY_PAUSE > FORWARD_RETRY_FOR {
                return result.and(Err(status));
            }
            tracing::debug!(group, status = %status.message, "a forwarded write is sent again");
            monoio::time::sleep(FORWARD_RETRY_PAUSE).await;
            // The failover may be known to the ConfigNode already: learn it now rather
            // than at the next heartbeat.
            if let Err(status) = self.control(ControlRequest::Refresh).await {
                tracing::debug!(status = %status.message, "refreshing the route failed");
            }
            by_group = retry
                .into_iter()
                .map(|(g, payloads, _)| (g, payloads))
                .collect();
        }
    }

    /// One round of [`Self::write_groups`]: the first final error (if any), and the
    /// forwarded groups that failed transiently, with their payloads and why.
    async fn write_groups_once(
        self: &Rc<Self>,
        by_group: HashMap<u32, Vec<Payload>>,
    ) -> (Result<(), Status>, Vec<(u32, Vec<Payload>, Status)>) {
        let route = self.route();
        let mut forwarded = Vec::new();
        let mut on_shards = Vec::new();
        let mut local = Vec::new();
        let mut result = Ok(());
        for (group, payloads) in by_group {
            let Some(owner) = route.serving_shard(group) else {
                let (node, address) = match self.holder_elsewhere(&route, group) {
                    Ok(holder) => holder,
                    Err(status) => {
                        result = Err(status);
                        continue;
                    }
                };
                let shard = self.clone();
                forwarded.push(monoio::spawn(async move {
                    let written =
                        crate::cluster::forward::write(&shard, node, address, group, &payloads)
                            .await;
                    (group, payloads, written)
                }));
                continue;
            };
            if owner == self.id.0 {
                local.push((group, payloads));
            } else {
                let shard = self.clone();
                on_shards.push(monoio::spawn(async move {
                    shard.write_on_shard(owner, group, payloads).await
                }));
            }
        }
        for (group, payloads) in local {
            if let Err(e) = self.write_local(group, &payloads).await {
                result = Err(e);
            }
        }
        for task in on_shards {
            if let Err(e) = task.await {
                result = Err(e);
            }
        }
        let mut retry = Vec::new();
        for task in forwarded {
            match task.await {
                (_, _, Ok(())) => {}
                (group, payloads, Err(status)) if forward_may_succeed_later(&status) => {
                    retry.push((group, payloads, status));
                }
                (_, _, Err(status)) => result = Err(status),
            }
        }
        (result, retry)
    }

    /// The DataNode that serves region group `group` when this node does not (a cluster
    /// member: its holder, or its leader when replicated); `ROUTE_TABLE_STALE` when none is
    /// known.
    pub(crate) fn holder_elsewhere(
        &self,
        route: &super::route::RouteView,
        group: u32,
    ) -> Result<(iotdb_model::NodeId, std::net::SocketAddr), Status> {
        let holder = if self.shared.cluster.is_some() {
            route.remote_holder(group)
        } else {
            None
        };
        let (node, address) = holder.ok_or_else(|| {
            Status::new(
                StatusCode::ROUTE_TABLE_STALE,
                format!("region group {group} is not on this node"),
            )
        })?;
        Ok((iotdb_model::NodeId(node), address))
    }

    /// The shard serving region group `group` on this node, for what another DataNode
    /// forwarded: refused (`ROUTE_TABLE_STALE`, naming the leader) when another DataNode
    /// leads it — forwarded once, never again: the sender's route table is older than ours.
    pub(crate) async fn owner_here(self: &Rc<Self>, group: u32) -> Result<u16, Status> {
        if let Some((leader, _)) = self.route().leader_elsewhere(group) {
            return Err(Status::new(
                StatusCode::ROUTE_TABLE_STALE,
                format!(
                    "region group {group} is led by DataNode {leader}; refetch the route table"
                ),
            ));
        }
        self.local_owner(group).await
    }

    /// Writes a group's payloads on this node only (a write another DataNode forwarded:
    /// never forwarded again); durable on return.
    pub(crate) async fn write_group_here(
        self: &Rc<Self>,
        group: u32,
        payloads: Vec<Payload>,
    ) -> Result<(), Status> {
        let owner = self.owner_here(group).await?;
        if owner == self.id.0 {
            return self.write_local(group, &payloads).await;
        }
        self.write_on_shard(owner, group, payloads).await
    }

    /// Writes a group's payloads on shard `owner` of this node (through the mesh).
    async fn write_on_shard(
        &self,
        owner: u16,
        group: u32,
        payloads: Vec<Payload>,
    ) -> Result<(), Status> {
        self.mesh
            .request(ShardId(owner), |reply| Message::Write {
                group,
                tablets: payloads,
                reply,
            })
            .await
            .map_err(|e| Status::internal(format!("shard {owner}: {e}")))?
    }

    /// Checks the tablet's types against the schema, creating missing series (all or
    /// nothing) through the control plane. A column whose type differs from its series' is
    /// returned as a failure when `partial`, refuses the tablet otherwise.
    async fn check_schema(
        &self,
        payload: &Payload,
        partial: bool,
    ) -> Result<Vec<PartialFailure>, Status> {
        if self.types_all_cached(payload) {
            return Ok(Vec::new());
        }
        let device = payload.device();
        let columns = payload.columns();
        let names: Vec<&str> = columns.iter().map(|&(name, _)| name).collect();
        let cached = self.cached_types(device, &names);
        let mut missing = Vec::new();
        let mut failures = Vec::new();
        for (&(measurement, actual), known) in columns.iter().zip(&cached) {
            match known {
                Some(expected) if *expected != actual => {
                    let status = mismatch(device, measurement, *expected, actual);
                    if !partial {
                        return Err(status);
                    }
                    failures.push(PartialFailure::new(measurement, status));
                }
                Some(_) => {}
                None => missing.push((measurement.to_string(), actual)),
            }
        }
        if missing.is_empty() {
            return Ok(failures);
        }
        self.ensure_database(device).await?;
        let series = ControlRequest::Schema(SchemaRequest::EnsureSeries {
            device: device.to_string(),
            aligned: payload.is_aligned(),
            measurements: missing.clone(),
            use_existing: partial,
        });
        // A new device's first write needs its data partition too: both are asked in one
        // batch of the control plane (one sync of each journal, one route update) rather
        // than the partition after the series, when `place` finds it missing.
        let mut answers = match self.missing_partitions(device, &payload.timestamps()) {
            Some(partitions) => self.control_together(vec![series, partitions]).await,
            None => vec![self.control(series).await],
        };
        let partitions = (answers.len() == 2).then(|| answers.pop().expect("two answers"));
        let answer = answers.pop().expect("one answer per request")?;
        if let Some(partitions) = partitions {
            partitions?;
        }
        let ControlAnswer::Types(types) = answer else {
            return Err(Status::internal(
                "the control plane answered EnsureSeries wrongly",
            ));
        };
        let pairs: Vec<(Arc<str>, DataType)> = missing
            .iter()
            .map(|(m, _)| Arc::from(m.as_str()))
            .zip(types.iter().copied())
            .collect();
        for ((name, wanted), (_, got)) in missing.iter().zip(&pairs) {
            if wanted != got {
                let status = mismatch(device, name, *got, *wanted);
                if !partial {
                    return Err(status);
                }
                failures.push(PartialFailure::new(name, status));
            }
        }
        self.cache_types(device, &pairs);
        Ok(failures)
    }

    /// Whether the schema cache holds every column's series with the column's type: the
    /// write path's usual case, answered with no allocation (no column list, no answers).
    fn types_all_cached(&self, payload: &Payload) -> bool {
        let cache = self.schema_cache.borrow();
        let Some(known) = cache.get(&**payload.device()) else {
            return false;
        };
        let cached = |(position, (measurement, data_type)): (usize, (&str, DataType))| {
            known.get_column(position, measurement) == Some(data_type)
        };
        match payload {
            Payload::View(_, view) => view
                .columns()
                .map(|column| (column.measurement(), column.data_type()))
                .enumerate()
                .all(cached),
            Payload::Tablet { tablet, .. } => tablet
                .columns
                .iter()
                .map(|column| (&*column.measurement, column.values.data_type()))
                .enumerate()
                .all(cached),
        }
    }

    /// The request creating the data partitions a tablet of `device` lacks, if any (and
    /// if a database holds the device).
    fn missing_partitions(&self, device: &str, timestamps: &[i64]) -> Option<ControlRequest> {
        let route = self.route();
        let partitions = route.device(device)?;
        match placement(&partitions, timestamps) {
            Placement::Missing(time_slots) => Some(ControlRequest::EnsureDataPartitions {
                database: partitions.database.to_string(),
                series_slot: partitions.series_slot,
                time_slots,
            }),
            Placement::Empty | Placement::Whole(_) | Placement::Rows(_) => None,
        }
    }

    async fn ensure_database(&self, device: &str) -> Result<(), Status> {
        if self.route().device(device).is_some() {
            return Ok(());
        }
        self.control(ControlRequest::EnsureDatabase {
            device: device.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Splits the tablet by time partition and returns each part with its region group,
    /// creating missing partitions through the control plane. A tablet whose earliest
    /// and latest rows share a time partition (nearly every one) is placed whole, with no
    /// look at its other rows and no copy of its timestamps.
    async fn place(
        &self,
        device: &Arc<str>,
        payload: Payload,
    ) -> Result<Vec<(u32, Payload)>, Status> {
        let rows = match &payload {
            Payload::View(_, view) => view.row_count(),
            Payload::Tablet { tablet, .. } => tablet.rows(),
        };
        if rows == 0 {
            // Nothing to place, whether or not a database holds the device.
            return Ok(Vec::new());
        }
        for attempt in 0..2 {
            let route = self.route();
            let partitions = route.device(device).ok_or_else(|| {
                Status::new(
                    StatusCode::DATABASE_NOT_EXIST,
                    format!("no database holds {device}"),
                )
            })?;
            let placed = placement(&partitions, &payload.timestamps());
            let missing = match placed {
                Placement::Empty => return Ok(Vec::new()),
                Placement::Whole(group) => return Ok(vec![(group, payload)]),
                Placement::Rows(groups) => {
                    let aligned = payload.is_aligned();
                    return Ok(payload.with_tablet_ref(|tablet| split(tablet, aligned, &groups)));
                }
                Placement::Missing(slots) => slots,
            };
            if attempt == 1 {
                break;
            }
            let request = ControlRequest::EnsureDataPartitions {
                database: partitions.database.to_string(),
                series_slot: partitions.series_slot,
                time_slots: missing,
            };
            self.control(request).await?;
        }
        Err(Status::internal(format!(
            "no data partition for {device} after creating it"
        )))
    }

    /// Writes `payloads` into this shard's region of `group` and waits until durable.
    pub async fn write_local(
        self: &Rc<Self>,
        group: u32,
        payloads: &[Payload],
    ) -> Result<(), Status> {
        if let Some(driver) = self.replicated_here(group)? {
            return Box::pin(self.write_replicated(&driver, payloads)).await;
        }
        let region = self.region(group)?;
        let mut acks = Vec::with_capacity(payloads.len());
        let mut result = Ok(());
        for payload in payloads {
            // While the shard's memtable budget is full the write waits for a flush, up
            // to WRITE_MEMORY_WAIT_MAX, then gets Overloaded (606).
            let engine = payload.engine();
            let written = region
                .write_waiting_ref(&engine.tablet(), WRITE_MEMORY_WAIT_MAX)
                .await;
            match written {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    result = Err(convert::status_of(&e));
                    break;
                }
            }
        }
        for ack in acks {
            if let Err(e) = ack.durable().await {
                result = Err(convert::status_of(&e));
            }
        }
        if let Err(status) = &result
            && status.code == StatusCode::SYSTEM_READ_ONLY
        {
            Box::pin(self.report_read_only(&status.message)).await;
        }
        result
    }

    /// Tells the control plane, once per process, that a region turned read-only, so
    /// `SHOW CLUSTER` shows this DataNode `ReadOnly`.
    pub(crate) async fn report_read_only(&self, reason: &str) {
        if self
            .shared
            .read_only_reported
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let reason = reason.to_string();
        if let Err(status) = self
            .control(ControlRequest::ReportReadOnly { reason })
            .await
        {
            tracing::warn!(error = %status.message, "reporting the DataNode read-only failed");
            self.shared
                .read_only_reported
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// A measurement left out of a partial insert, and why.
pub struct PartialFailure {
    pub measurement: String,
    pub status: Status,
}

impl PartialFailure {
    pub fn new(measurement: &str, status: Status) -> PartialFailure {
        PartialFailure {
            measurement: measurement.to_string(),
            status,
        }
    }

    /// IoTDB's answer to a partial insert: the first failure's code, every failed
    /// measurement and each reason (`Fail to insert measurements [s2] caused by [...]`).
    pub fn status(failures: &[PartialFailure]) -> Status {
        let mut names: Vec<&str> = Vec::new();
        let mut reasons: Vec<&str> = Vec::new();
        for f in failures {
            if !names.contains(&f.measurement.as_str()) {
                names.push(&f.measurement);
            }
            if !reasons.contains(&f.status.message.as_str()) {
                reasons.push(&f.status.message);
            }
        }
        let code = failures
            .first()
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, |f| f.status.code);
        Status::new(
            code,
            format!(
                "Fail to insert measurements [{}] caused by [{}]",
                names.join(", "),
                reasons.join(", ")
            ),
        )
    }
}

fn mismatch(device: &str, measurement: &str, expected: DataType, actual: DataType) -> Status {
    Status::new(
        StatusCode::DATA_TYPE_MISMATCH,
        format!("data type of {device}.{measurement} is {expected}, not {actual}"),
    )
}

/// Splits `tablet` by the region group of each row (`groups[row]`), one part per group in
/// group order, each copying its runs of consecutive rows rather than point by point; the
/// parts keep the tablet's `aligned` flag.
fn split(tablet: &storage::TabletRef<'_>, aligned: bool, groups: &[u32]) -> Vec<(u32, Payload)> {
    // Runs of consecutive rows of one group, in row order: each part copies whole runs.
    let mut runs: Vec<(u32, std::ops::Range<usize>)> = Vec::new();
    for (row, &group) in groups.iter().enumerate() {
        match runs.last_mut() {
            Some((last, range)) if *last == group => range.end = row + 1,
            _ => runs.push((group, row..row + 1)),
        }
    }
    let mut order: Vec<u32> = runs.iter().map(|(group, _)| *group).collect();
    order.sort_unstable();
    order.dedup();
    order
        .into_iter()
        .map(|group| {
            let ranges: Vec<std::ops::Range<usize>> = runs
                .iter()
                .filter(|(g, _)| *g == group)
                .map(|(_, range)| range.clone())
                .collect();
            let rows: usize = ranges.iter().map(ExactSizeIterator::len).sum();
            let mut timestamps = Vec::with_capacity(rows);
            for range in &ranges {
                timestamps.extend_from_slice(&tablet.timestamps[range.clone()]);
            }
            let columns = tablet
                .columns
                .iter()
                .map(|c| {
                    let mut values = storage::Values::with_capacity(c.values.data_type(), rows);
                    let mut nulls = storage::NullBitmap::new(rows);
                    let mut at = 0;
                    for range in &ranges {
                        values.extend_from_ref(c.values, range.clone());
                        if c.nulls.is_some() {
                            for (i, row) in range.clone().enumerate() {
                                if c.is_null(row) {
                                    nulls.set_null(at + i);
                                }
                            }
                        }
                        at += range.len();
                    }
                    storage::TabletColumn {
                        measurement: Arc::from(c.measurement),
                        values,
                        nulls: (!nulls.none_null()).then_some(nulls),
                    }
                })
                .collect();
            let part = storage::Tablet {
                device: tablet.device.clone(),
                timestamps,
                columns,
            };
            (
                group,
                Payload::Tablet {
                    tablet: part,
                    aligned,
                },
            )
        })
        .collect()
}

/// Where a tablet's rows go.
#[derive(Debug, PartialEq)]
enum Placement {
    /// No rows.
    Empty,
    /// Every row to one region group.
    Whole(u32),
    /// Each row's region group (the tablet spans time partitions).
    Rows(Vec<u32>),
    /// The time slots (sorted, distinct) that have no data partition yet.
    Missing(Vec<i64>),
}

/// The region groups of rows at `timestamps` of a device with `partitions`.
fn placement(partitions: &DevicePartitions<'_>, timestamps: &[i64]) -> Placement {
    let Some((min, max)) = storage::types::time_bounds(timestamps) else {
        return Placement::Empty;
    };
    let interval = partitions.time_partition_interval_ms;
    if time_slot(min, interval) == time_slot(max, interval) {
        // Every row lies in the partition of the earliest.
        return match partitions.group_at(min) {
            Some(group) => Placement::Whole(group),
            None => Placement::Missing(vec![time_slot(min, interval)]),
        };
    }
    let groups: Vec<Option<u32>> = timestamps.iter().map(|&t| partitions.group_at(t)).collect();
    if groups.iter().all(Option::is_some) {
        return Placement::Rows(groups.into_iter().flatten().collect());
    }
    let mut slots: Vec<i64> = timestamps
        .iter()
        .zip(&groups)
        .filter(|(_, g)| g.is_none())
        .map(|(&t, _)| time_slot(t, interval))
        .collect();
    slots.sort_unstable();
    slots.dedup();
    Placement::Missing(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(slots: &[iotdb_net::DataPartitionEntry]) -> DevicePartitions<'_> {
        DevicePartitions {
            database: "root.db",
            database_index: 0,
            series_slot: 0,
            time_partition_interval_ms: 10,
            slots,
        }
    }

    #[test]
    fn a_tablet_in_one_partition_is_placed_whole() {
        let slots = [(0, 7), (1, 8), (3, 9)].map(|(time_slot, region_group_id)| {
            iotdb_net::DataPartitionEntry {
                series_slot: 0,
                time_slot,
                region_group_id,
            }
        });
        let p = partitions(&slots);
        assert_eq!(placement(&p, &[]), Placement::Empty);
        // Out of order, but all in slot 1.
        assert_eq!(placement(&p, &[15, 10, 19]), Placement::Whole(8));
        assert_eq!(placement(&p, &[3, 12, 5]), Placement::Rows(vec![7, 8, 7]));
        // Slot 2 has no partition yet; slot -1 (negative times floor) neither.
        assert_eq!(placement(&p, &[21, 25]), Placement::Missing(vec![2]));
        assert_eq!(
            placement(&p, &[35, 21, -1, 22]),
            Placement::Missing(vec![-1, 2])
        );
    }

    #[test]
    fn parts_of_an_aligned_tablet_are_forwarded_aligned() {
        // A forwarded part tells the receiver how to create a missing series: an aligned
        // device's parts must say aligned, or the receiver's EnsureSeries is refused.
        let mut wire =
            iotdb_net::WireTablet::new("root.db.v", &[("lat", storage::DataType::Float)]);
        wire.is_aligned = true;
        for row in 0..4 {
            wire.push_row(row, &[Some(iotdb_net::Value::Float(row as f32))])
                .unwrap();
        }
        let mut contents = bytes::BytesMut::new();
        wire.encode_contents(&mut contents);
        let view = TabletView::decode(contents.freeze(), true).unwrap();
        let payload = Payload::View(Arc::from("root.db.v"), view);
        assert!(payload.wire_contents().1);
        let parts = payload.split_rows(2);
        assert_eq!(parts.len(), 2);
        for part in &parts {
            assert!(part.is_aligned() && part.wire_contents().1);
            assert_eq!(part.points(), 2);
        }
        let split_parts = payload.with_tablet_ref(|tablet| split(tablet, true, &[1, 1, 2, 2]));
        assert!(split_parts.iter().all(|(_, part)| part.wire_contents().1));
    }

    #[test]
    fn split_keeps_every_row_values_and_nulls() {
        let groups = [1, 1, 2, 2, 1, 3, 1];
        let rows = groups.len();
        let mut nulls = storage::NullBitmap::new(rows);
        for row in [1, 2, 6] {
            nulls.set_null(row);
        }
        let tablet = storage::Tablet {
            device: Arc::from("root.db.d1"),
            timestamps: (0..rows as i64).map(|r| r * 100).collect(),
            columns: vec![
                storage::TabletColumn {
                    measurement: Arc::from("s0"),
                    values: storage::Values::Double((0..rows).map(|r| r as f64).collect()),
                    nulls: Some(nulls),
                },
                storage::TabletColumn {
                    measurement: Arc::from("s1"),
                    values: storage::Values::Int64((0..rows as i64).map(|r| -r).collect()),
                    nulls: None,
                },
            ],
        };
        let parts = split(&tablet.as_ref(), false, &groups);
        assert_eq!(
            parts.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        for (group, payload) in &parts {
            let Payload::Tablet { tablet: part, .. } = payload else {
                panic!("split makes engine tablets");
            };
            let expected: Vec<usize> = (0..rows).filter(|&r| groups[r] == *group).collect();
            let times: Vec<i64> = expected.iter().map(|&r| r as i64 * 100).collect();
            assert_eq!(part.timestamps, times, "group {group}");
            for (column, original) in part.columns.iter().zip(&tablet.columns) {
                assert_eq!(column.measurement, original.measurement);
                for (i, &row) in expected.iter().enumerate() {
                    assert_eq!(column.values.get(i), original.values.get(row));
                    assert_eq!(column.is_null(i), original.is_null(row), "row {row}");
                }
                assert_eq!(column.values.len(), expected.len());
            }
            // A part without nulls carries no bitmap.
            if *group == 3 {
                assert!(part.columns[0].nulls.is_none());
            }
        }
    }
}
