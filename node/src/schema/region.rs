//! [`SchemaRegion`]: devices → measurements, with the auto-create hot path,
//! pattern queries, deletes and persistence.

use super::error::{Result, SchemaError};
use crate::confignode::journal::Journal;
use crate::sql::{Compressor, DataType, Encoding, MeasurementSpec, PathPattern};
use iotdb_consensus::raft_group::Committed;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Journal records replayed at most on open before a snapshot is written, for a region of
/// up to this many devices; a larger region waits for as many records as it holds devices
/// ([`SchemaRegion::records_per_snapshot`]).
pub const LOG_RECORDS_PER_SNAPSHOT: u64 = 4096;
/// Longest measurement name, in bytes (IoTDB paths are short; this bounds
/// what one request can make us store).
pub const MEASUREMENT_NAME_BYTES_MAX: usize = 256;
/// Longest device path, in bytes.
pub const DEVICE_PATH_BYTES_MAX: usize = 4096;
/// Most measurements in one create request.
pub const MEASUREMENTS_PER_REQUEST_MAX: usize = 65_536;

/// The journal's file name stem inside the region directory.
const JOURNAL_NAME: &str = "schema";

/// IoTDB's default encoding of a type: BOOLEAN RLE, integers and times
/// TS_2DIFF, floats GORILLA, text PLAIN.
pub fn default_encoding(data_type: DataType) -> Encoding {
    match data_type {
        DataType::Boolean => Encoding::Rle,
        DataType::Int32 | DataType::Int64 | DataType::Timestamp | DataType::Date => {
            Encoding::Ts2Diff
        }
        DataType::Float | DataType::Double => Encoding::Gorilla,
        DataType::Text | DataType::String | DataType::Blob => Encoding::Plain,
    }
}

/// IoTDB's default compressor, LZ4.
pub fn default_compressor() -> Compressor {
    Compressor::Lz4
}

/// How a measurement is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeasurementSchema {
    /// Its data type.
    pub data_type: DataType,
    /// Its encoding.
    pub encoding: Encoding,
    /// Its compressor.
    pub compressor: Compressor,
}

impl MeasurementSchema {
    /// `data_type` with IoTDB's default encoding and compressor.
    pub fn with_defaults(data_type: DataType) -> MeasurementSchema {
        MeasurementSchema {
            data_type,
            encoding: default_encoding(data_type),
            compressor: default_compressor(),
        }
    }

    /// The schema a `CREATE TIMESERIES` spec asks for, defaults filled in;
    /// refuses encodings the type cannot use.
    pub fn from_spec(spec: &MeasurementSpec) -> Result<MeasurementSchema> {
        let schema = MeasurementSchema {
            data_type: spec.data_type,
            encoding: spec
                .encoding
                .unwrap_or_else(|| default_encoding(spec.data_type)),
            compressor: spec.compressor.unwrap_or_else(default_compressor),
        };
        schema.validate()?;
        Ok(schema)
    }

    /// Checks that the encoding suits the type, with IoTDB's table
    /// (`TSEncoding.TYPE_SUPPORTED_ENCODINGS` in apache/tsfile).
    pub fn validate(&self) -> Result<()> {
        if supports(self.data_type, self.encoding) {
            Ok(())
        } else {
            Err(SchemaError::InvalidRequest(format!(
                "encoding {} does not support {}",
                self.encoding, self.data_type
            )))
        }
    }
}

/// Whether IoTDB accepts `encoding` for `data_type` (apache/tsfile's
/// `TSEncoding.TYPE_SUPPORTED_ENCODINGS`): BOOLEAN takes PLAIN and RLE; the
/// integer and time types PLAIN, RLE, TS_2DIFF, GORILLA, ZIGZAG, CHIMP,
/// SPRINTZ and RLBE; FLOAT and DOUBLE the same without ZIGZAG but with
/// GORILLA_V1; TEXT and STRING PLAIN and DICTIONARY; BLOB only PLAIN. DIFF,
/// BITMAP and REGULAR suit no value type.
pub fn supports(data_type: DataType, encoding: Encoding) -> bool {
    use Encoding as E;
    match data_type {
        DataType::Boolean => matches!(encoding, E::Plain | E::Rle),
        DataType::Int32 | DataType::Int64 | DataType::Timestamp | DataType::Date => matches!(
            encoding,
            E::Plain
                | E::Rle
                | E::Ts2Diff
                | E::Gorilla
                | E::Zigzag
                | E::Chimp
                | E::Sprintz
                | E::Rlbe
        ),
        DataType::Float | DataType::Double => matches!(
            encoding,
            E::Plain
                | E::Rle
                | E::Ts2Diff
                | E::GorillaV1
                | E::Gorilla
                | E::Chimp
                | E::Sprintz
                | E::Rlbe
        ),
        DataType::Text | DataType::String => matches!(encoding, E::Plain | E::Dictionary),
        DataType::Blob => encoding == E::Plain,
    }
}

/// How many times a replicated region plans a change again when the log left it out
/// (another leader's entry came first). Why 3: a plan is made on the caught-up state of
/// the serving leader, so only a leader change between planning and commit overtakes it.
const REPLAN_ATTEMPTS: usize = 3;

/// How strictly a logged command is applied (see `SchemaRegion::apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Strict,
    Lenient,
}

/// What to do when a measurement exists with another type than requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeConflict {
    /// Refuse the whole batch (typed inserts: tablets, records).
    Reject,
    /// Use the registered type (SQL inserts, whose literal types are only a
    /// guess; the caller converts the values).
    UseExisting,
}

/// A timeseries matched by a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeseriesEntry {
    /// `device.measurement`.
    pub path: String,
    /// The device path.
    pub device: String,
    /// The measurement name.
    pub measurement: String,
    /// Its schema.
    pub schema: MeasurementSchema,
    /// Whether its device is aligned.
    pub aligned: bool,
}

/// A device matched by a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device path.
    pub device: String,
    /// Whether it is aligned.
    pub aligned: bool,
    /// How many measurements it has.
    pub measurement_count: usize,
}

/// One change to a SchemaRegion, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaCommand {
    /// Creates measurements of one device (and the device if new).
    CreateTimeseries {
        /// The device path.
        device: String,
        /// Whether the device is aligned.
        aligned: bool,
        /// New measurements.
        measurements: Vec<(String, StoredSchema)>,
    },
    /// Deletes (device, measurement) pairs; empty devices disappear.
    DeleteTimeseries {
        /// The series.
        series: Vec<(String, String)>,
    },
}

/// A measurement schema as persisted: IoTDB's upper-case names, so the
/// files read the same whatever the enums' order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    data_type: String,
    encoding: String,
    compressor: String,
}

impl From<MeasurementSchema> for StoredSchema {
    fn from(schema: MeasurementSchema) -> StoredSchema {
        StoredSchema::from(StoredSchemaView::from(schema))
    }
}

impl From<StoredSchemaView> for StoredSchema {
    fn from(view: StoredSchemaView) -> StoredSchema {
        StoredSchema {
            data_type: view.data_type.to_string(),
            encoding: view.encoding.to_string(),
            compressor: view.compressor.to_string(),
        }
    }
}

impl StoredSchema {
    /// The schema, or `Corrupt` naming what is unknown.
    pub fn decode(&self) -> Result<MeasurementSchema> {
        let corrupt = |what: &str| SchemaError::Corrupt(format!("unknown {what} in {self:?}"));
        Ok(MeasurementSchema {
            data_type: self.data_type.parse().map_err(|()| corrupt("data type"))?,
            encoding: self.encoding.parse().map_err(|()| corrupt("encoding"))?,
            compressor: self
                .compressor
                .parse()
                .map_err(|()| corrupt("compressor"))?,
        })
    }
}

/// A device as persisted: path, aligned flag, measurements by name. A region copied to
/// another DataNode travels as parts of these ([`SchemaRegion::export`]).
pub type StoredDevice = (String, bool, Vec<(String, StoredSchema)>);

/// The persisted snapshot of a region.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    database: String,
    /// (device, aligned, measurements), devices sorted.
    devices: Vec<StoredDevice>,
}

/// A [`Snapshot`] borrowed from a region's state, for writing one: serde writes a `&str`
/// as it writes a `String`, so the JSON is the owned snapshot's, byte for byte, without
/// first copying every device path, measurement name and schema name (a checkpoint of
/// the standard workload's 10,000 series made 40,000 small strings to drop again).
#[derive(Serialize)]
struct SnapshotView<'a> {
    database: &'a str,
    devices: Vec<StoredDeviceView<'a>>,
}

/// A [`StoredDevice`] borrowed: path, aligned flag, measurements by name.
type StoredDeviceView<'a> = (&'a str, bool, Vec<(&'a str, StoredSchemaView)>);

/// A [`StoredSchema`] of static names, serialized as it is.
#[derive(Serialize)]
struct StoredSchemaView {
    data_type: &'static str,
    encoding: &'static str,
    compressor: &'static str,
}

impl From<MeasurementSchema> for StoredSchemaView {
    fn from(schema: MeasurementSchema) -> StoredSchemaView {
        StoredSchemaView {
            data_type: schema.data_type.as_str(),
            encoding: schema.encoding.as_str(),
            compressor: schema.compressor.as_str(),
        }
    }
}

/// The snapshot of `devices` of `database`, borrowed: devices and each device's
/// measurements sorted by name, as [`SchemaRegion::snapshot`] sorts them.
fn snapshot_view<'a>(
    database: &'a str,
    devices: &'a HashMap<Box<str>, Device>,
) -> SnapshotView<'a> {
    let mut devices: Vec<_> = devices
        .iter()
        .map(|(path, device)| {
            let mut measurements: Vec<(&str, StoredSchemaView)> = device
                .measurements
                .iter()
                .map(|(name, schema)| (&**name, StoredSchemaView::from(*schema)))
                .collect();
            measurements.sort_unstable_by(|a, b| a.0.cmp(b.0));
            (&**path, device.aligned, measurements)
        })
        .collect();
    devices.sort_unstable_by(|a, b| a.0.cmp(b.0));
    SnapshotView { database, devices }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Device {
    aligned: bool,
    measurements: HashMap<Box<str>, MeasurementSchema>,
}

/// One SchemaRegion replica's schema, persisted under one directory (its own journal),
/// or replicated through a [`ReplicatedLog`].
#[derive(Debug)]
pub struct SchemaRegion {
    database: String,
    devices: HashMap<Box<str>, Device>,
    series_count: usize,
    log: Log,
    /// Why changes are refused now (`Some`): the region's only replica is being copied to
    /// another DataNode, and a change made after the copy was taken would be lost.
    frozen: Option<String>,
    /// Snapshots written since the region was opened ([`SchemaRegion::snapshots_written`]).
    snapshots_written: u64,
}

/// The log of a replicated SchemaRegion (a Raft group, see
/// `datanode::schema_replication`): the region proposes its commands there and applies
/// what comes out committed, in log order, on every replica alike — its own commands
/// included, so the leader's state is always a prefix of the log.
pub trait ReplicatedLog: Send {
    /// Proposes an encoded command and waits until it is committed (or why it was not);
    /// returns its index. The entry itself comes out of `take_committed` like any other.
    fn propose(&mut self, command: Vec<u8>) -> Result<u64>;
    /// The entries committed since the last call, in order.
    fn take_committed(&mut self) -> Vec<Committed>;
    /// Replaces the log up to `index` by `snapshot`, the state as of `index`.
    fn compact(&mut self, index: u64, snapshot: Vec<u8>) -> Result<()>;
    /// Whether a lagging replica needs a newer snapshot than the log holds (compact now).
    fn take_compact_request(&mut self) -> bool;
}

/// Where a region's changes go.
enum Log {
    /// Its own journal, synced per batch.
    Journal(Journal),
    /// A replicated log.
    Replicated {
        log: Box<dyn ReplicatedLog>,
        /// Index of the last committed entry applied.
        applied: u64,
        /// Entries applied since the last compaction.
        since_snapshot: u64,
    },
}

impl std::fmt::Debug for Log {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Log::Journal(journal) => formatter.debug_tuple("Journal").field(journal).finish(),
            Log::Replicated { applied, .. } => formatter
                .debug_struct("Replicated")
                .field("applied", applied)
                .finish_non_exhaustive(),
        }
    }
}

fn check_name(path: &str, name: &str, limit: usize) -> Result<()> {
    let illegal = |reason| {
        Err(SchemaError::IllegalPath {
            path: path.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return illegal("empty name");
    }
    if name.len() > limit {
        return illegal("too long");
    }
    Ok(())
}

fn check_device(device: &str) -> Result<()> {
    check_name(device, device, DEVICE_PATH_BYTES_MAX)?;
    if !device.starts_with("root.") || device.split('.').any(|node| node.is_empty()) {
        return Err(SchemaError::IllegalPath {
            path: device.to_string(),
            reason: "a device path is root.<node>... without empty nodes",
        });
    }
    if device.contains('*') {
        return Err(SchemaError::IllegalPath {
            path: device.to_string(),
            reason: "a device path has no wildcard",
        });
    }
    Ok(())
}

fn check_measurement(device: &str, name: &str) -> Result<()> {
    check_name(
        &format!("{device}.{name}"),
        name,
        MEASUREMENT_NAME_BYTES_MAX,
    )?;
    if name.contains('.') || name.contains('*') {
        return Err(SchemaError::IllegalPath {
            path: format!("{device}.{name}"),
            reason: "a measurement is one node without wildcards",
        });
    }
    Ok(())
}

impl SchemaRegion {
    /// Opens (creating on first use) the schema region of `database` in
    /// `dir`, restoring its snapshot and replaying its log.
    pub fn open(dir: &Path, database: &str) -> Result<SchemaRegion> {
        SchemaRegion::open_in(iotdb_storage::file_system::std_file_system(), dir, database)
    }

    /// [`SchemaRegion::open`] with its journal's files written through `file_system`
    /// (tests inject faults this way).
    pub fn open_in(
        file_system: std::sync::Arc<dyn iotdb_storage::file_system::FileSystem>,
        dir: &Path,
        database: &str,
    ) -> Result<SchemaRegion> {
        let (journal, recovered) =
            Journal::open_in::<Snapshot, SchemaCommand>(file_system, dir, JOURNAL_NAME)?;
        let fresh = recovered.snapshot.is_none();
        let mut region = SchemaRegion {
            database: database.to_string(),
            devices: HashMap::new(),
            series_count: 0,
            log: Log::Journal(journal),
            frozen: None,
            snapshots_written: 0,
        };
        if let Some(snapshot) = recovered.snapshot {
            region.load(snapshot)?;
        }
        for command in &recovered.records {
            region.apply(command, Replay::Strict)?;
        }
        if fresh || !recovered.records.is_empty() {
            // As the ConfigNode does (see `ConfigNode::from_store`): records
            // replayed from the log may live only in the page cache after a
            // failed fsync, so they are made durable in a fresh snapshot and
            // the old log retired before anything is appended after them.
            region.checkpoint()?;
        }
        Ok(region)
    }

    /// A replica of a replicated region: its state is `restored` (the latest snapshot of
    /// the log, at its index; `None` or empty data: an empty region), and then the
    /// entries `log` hands out committed ([`SchemaRegion::catch_up`]).
    pub fn open_replicated(
        database: &str,
        log: Box<dyn ReplicatedLog>,
        restored: Option<(u64, &[u8])>,
    ) -> Result<SchemaRegion> {
        let mut region = SchemaRegion {
            database: database.to_string(),
            devices: HashMap::new(),
            series_count: 0,
            log: Log::Replicated {
                log,
                applied: 0,
                since_snapshot: 0,
            },
            frozen: None,
            snapshots_written: 0,
        };
        if let Some((index, data)) = restored {
            region.restore(index, data)?;
        }
        Ok(region)
    }

    /// Whether the region is replicated (its changes commit through a [`ReplicatedLog`]).
    pub fn is_replicated(&self) -> bool {
        matches!(self.log, Log::Replicated { .. })
    }

    /// Adds a snapshot's devices to the (empty) state.
    fn load(&mut self, snapshot: Snapshot) -> Result<()> {
        if snapshot.database != self.database {
            return Err(SchemaError::Corrupt(format!(
                "the snapshot holds database {}, not {}",
                snapshot.database, self.database
            )));
        }
        for (device, aligned, measurements) in snapshot.devices {
            self.apply(
                &SchemaCommand::CreateTimeseries {
                    device,
                    aligned,
                    measurements,
                },
                Replay::Strict,
            )?;
        }
        Ok(())
    }

    /// Replaces the state by a snapshot of the replicated log taken at `index`.
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<()> {
        self.devices.clear();
        self.series_count = 0;
        if !data.is_empty() {
            let snapshot: Snapshot = serde_json::from_slice(data).map_err(|e| {
                SchemaError::Corrupt(format!("a snapshot that does not decode: {e}"))
            })?;
            self.load(snapshot)?;
        }
        if let Log::Replicated {
            applied,
            since_snapshot,
            ..
        } = &mut self.log
        {
            *applied = index;
            *since_snapshot = 0;
        }
        Ok(())
    }

    /// Applies what the replicated log committed since the last call (a no-op for a
    /// journaled region), and compacts the log when it grew long or a lagging replica
    /// needs a snapshot. A committed entry that does not decode is skipped, as on every
    /// replica alike.
    pub fn catch_up(&mut self) -> Result<()> {
        let Log::Replicated { log, .. } = &mut self.log else {
            return Ok(());
        };
        let committed = log.take_committed();
        for entry in committed {
            match entry {
                Committed::Normal { index, data, .. } => {
                    if index <= self.applied_index() {
                        continue;
                    }
                    if !data.is_empty() {
                        match serde_json::from_slice::<SchemaCommand>(&data) {
                            Ok(command) => self.apply(&command, Replay::Lenient)?,
                            Err(e) => tracing::error!(
                                index,
                                error = %e,
                                "a committed schema command does not decode; skipped"
                            ),
                        }
                    }
                    self.advance_applied(index);
                }
                Committed::ConfChange { index, .. } => self.advance_applied(index),
                Committed::Snapshot(snapshot) => {
                    self.restore(snapshot.index, &snapshot.data)?;
                }
            }
        }
        let records_per_snapshot = self.records_per_snapshot();
        let Log::Replicated {
            log,
            since_snapshot,
            ..
        } = &mut self.log
        else {
            return Ok(());
        };
        if *since_snapshot >= records_per_snapshot || log.take_compact_request() {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Index of the last replicated entry applied (0 for a journaled region).
    pub fn applied_index(&self) -> u64 {
        match &self.log {
            Log::Replicated { applied, .. } => *applied,
            Log::Journal(_) => 0,
        }
    }

    fn advance_applied(&mut self, index: u64) {
        if let Log::Replicated {
            applied,
            since_snapshot,
            ..
        } = &mut self.log
        {
            *applied = index;
            *since_snapshot += 1;
        }
    }

    /// The database this region belongs to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Number of timeseries.
    pub fn series_count(&self) -> usize {
        self.series_count
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The schema of one measurement.
    pub fn measurement(&self, device: &str, measurement: &str) -> Option<MeasurementSchema> {
        self.devices
            .get(device)?
            .measurements
            .get(measurement)
            .copied()
    }

    /// Whether a device is aligned, if it exists.
    pub fn device_aligned(&self, device: &str) -> Option<bool> {
        self.devices.get(device).map(|device| device.aligned)
    }

    /// The snapshot, owned ([`snapshot_view`] copied: what a region copy exports).
    fn snapshot(&self) -> Snapshot {
        let view = snapshot_view(&self.database, &self.devices);
        let devices = view
            .devices
            .into_iter()
            .map(|(path, aligned, measurements)| {
                let measurements = measurements
                    .into_iter()
                    .map(|(name, schema)| (name.to_string(), StoredSchema::from(schema)))
                    .collect();
                (path.to_string(), aligned, measurements)
            })
            .collect();
        Snapshot {
            database: view.database.to_string(),
            devices,
        }
    }

    /// Refuses every change from now on with `reason` (a retryable 606), or (`None`)
    /// accepts them again. Reads are still answered.
    pub fn set_frozen(&mut self, reason: Option<String>) {
        self.frozen = reason;
    }

    /// Whether changes are refused now (see [`SchemaRegion::set_frozen`]).
    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// The whole schema as devices, sorted by path, in parts of about `part_bytes` each
    /// (at least one device a part; an empty region is one empty part): what a copy of
    /// the region to another DataNode carries, one part per request.
    pub fn export(&self, part_bytes: usize) -> Vec<Vec<StoredDevice>> {
        let mut parts = vec![Vec::new()];
        let mut bytes = 0;
        for device in self.snapshot().devices {
            // About what the device takes encoded: its path, and per measurement the
            // name and a schema of a few small numbers.
            let size = device.0.len()
                + device
                    .2
                    .iter()
                    .map(|(name, _)| name.len() + 48)
                    .sum::<usize>();
            let current = parts.last_mut().expect("one part at least");
            if !current.is_empty() && bytes + size > part_bytes {
                parts.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            parts.last_mut().expect("one part at least").push(device);
        }
        parts
    }

    /// Adds devices copied from another DataNode's replica ([`SchemaRegion::export`]'s
    /// parts) to this region, in memory: [`SchemaRegion::checkpoint`] makes them durable.
    /// A part that does not fit the state is [`SchemaError::Corrupt`].
    pub fn import(&mut self, devices: Vec<StoredDevice>) -> Result<()> {
        self.load(Snapshot {
            database: self.database.clone(),
            devices,
        })
    }

    /// Starts a batch: later changes are made durable together by
    /// [`SchemaRegion::end_batch`] (one fdatasync); answer nobody before.
    pub fn begin_batch(&mut self) {
        if let Log::Journal(journal) = &mut self.log {
            journal.defer_sync();
        }
    }

    /// Whether its own journal failed a write or sync: the series it holds in memory may
    /// include some that are not durable, so it must not serve until reopened from disk.
    pub fn has_failed(&self) -> bool {
        matches!(&self.log, Log::Journal(journal) if journal.has_failed())
    }

    /// Writes the batch's records to the journal, not yet durable
    /// ([`Journal::write_deferred`]); [`SchemaRegion::end_batch`] makes them so.
    pub fn write_batch(&mut self) -> Result<()> {
        if let Log::Journal(journal) = &mut self.log {
            journal.write_deferred()?;
        }
        Ok(())
    }

    /// Makes the batch durable (a replicated region's changes are durable once
    /// committed).
    pub fn end_batch(&mut self) -> Result<()> {
        if let Log::Journal(journal) = &mut self.log {
            journal.sync()?;
        }
        Ok(())
    }

    /// Log records after which a snapshot is written: [`LOG_RECORDS_PER_SNAPSHOT`], or as
    /// many as the region holds devices if that is more. A snapshot rewrites every device,
    /// so it waits until the log holds about as much: creating N devices one record each
    /// then costs snapshots of O(N) devices in all, where a fixed count cost O(N² / 4096)
    /// (100,000 devices: 24 snapshots, a third of the server's CPU).
    pub fn records_per_snapshot(&self) -> u64 {
        LOG_RECORDS_PER_SNAPSHOT.max(self.devices.len() as u64)
    }

    /// Snapshots written (or replicated logs compacted) since the region was opened.
    pub fn snapshots_written(&self) -> u64 {
        self.snapshots_written
    }

    /// Writes a snapshot now and starts an empty log (a replicated region: compacts its
    /// log up to what it applied).
    pub fn checkpoint(&mut self) -> Result<()> {
        let snapshot = snapshot_view(&self.database, &self.devices);
        match &mut self.log {
            Log::Journal(journal) => journal.write_snapshot(&snapshot)?,
            Log::Replicated {
                log,
                applied,
                since_snapshot,
            } => {
                if *applied == 0 {
                    return Ok(());
                }
                let data = serde_json::to_vec(&snapshot).map_err(|e| {
                    SchemaError::Corrupt(format!("encoding a schema snapshot: {e}"))
                })?;
                log.compact(*applied, data)?;
                *since_snapshot = 0;
            }
        }
        self.snapshots_written += 1;
        Ok(())
    }

    /// [`SchemaRegion::checkpoint`] of a journaled region whose log holds records since
    /// its latest snapshot (`FLUSH`). A replicated region's log is compacted by its own
    /// rules ([`SchemaRegion::catch_up`]).
    pub fn fold_log(&mut self) -> Result<()> {
        match &self.log {
            Log::Journal(journal) if journal.records_since_snapshot() > 0 => self.checkpoint(),
            _ => Ok(()),
        }
    }

    /// Applies a logged command. `Strict` (a region's own journal, where every command
    /// was planned against the state): a command that does not fit (only possible from a
    /// damaged log) is [`SchemaError::Corrupt`]. `Lenient` (a replicated log, where two
    /// leaders may have planned against older states): what conflicts with the state is
    /// left out — an existing measurement keeps its schema, a device its aligned flag —
    /// the same on every replica, so the first committed wins.
    fn apply(&mut self, command: &SchemaCommand, replay: Replay) -> Result<()> {
        match command {
            SchemaCommand::CreateTimeseries {
                device,
                aligned,
                measurements,
            } => {
                let decoded = measurements
                    .iter()
                    .map(|(name, stored)| Ok((name.as_str(), stored.decode()?)))
                    .collect::<Result<Vec<_>>>()?;
                if replay == Replay::Lenient
                    && let Some(existing) = self.devices.get(device.as_str())
                    && (existing.aligned != *aligned
                        || decoded.iter().any(|(name, schema)| {
                            existing
                                .measurements
                                .get(*name)
                                .is_some_and(|current| current != schema)
                        }))
                {
                    // All or nothing, as its planner promised: an earlier entry decided.
                    return Ok(());
                }
                let entry = self
                    .devices
                    .entry(device.as_str().into())
                    .or_insert_with(|| Device {
                        aligned: *aligned,
                        measurements: HashMap::new(),
                    });
                if entry.aligned != *aligned {
                    return Err(SchemaError::Corrupt(format!(
                        "aligned flag of {device} flips in the log"
                    )));
                }
                for (name, schema) in decoded {
                    if entry.measurements.insert(name.into(), schema).is_none() {
                        self.series_count += 1;
                    }
                }
            }
            SchemaCommand::DeleteTimeseries { series } => {
                for (device, measurement) in series {
                    let Some(entry) = self.devices.get_mut(device.as_str()) else {
                        continue;
                    };
                    if entry.measurements.remove(measurement.as_str()).is_some() {
                        self.series_count -= 1;
                    }
                    if entry.measurements.is_empty() {
                        self.devices.remove(device.as_str());
                    }
                }
            }
        }
        Ok(())
    }

    /// Logs (synced) and applies a command; a replicated region proposes it and applies
    /// everything committed up to it.
    fn commit(&mut self, command: SchemaCommand) -> Result<()> {
        if let Some(reason) = &self.frozen {
            return Err(SchemaError::Unavailable(reason.clone()));
        }
        if let Log::Journal(journal) = &self.log
            && (journal.records_since_snapshot() >= self.records_per_snapshot()
                || journal.log_outgrew_snapshot())
        {
            self.checkpoint()?;
        }
        match &mut self.log {
            Log::Journal(journal) => {
                journal.append(&command)?;
                self.apply(&command, Replay::Strict)
                    .expect("a planned schema command applies");
            }
            Log::Replicated { log, .. } => {
                let data = serde_json::to_vec(&command)
                    .map_err(|e| SchemaError::Corrupt(format!("encoding a schema command: {e}")))?;
                let index = log.propose(data)?;
                self.catch_up()?;
                if self.applied_index() < index {
                    return Err(SchemaError::Unavailable(format!(
                        "entry {index} committed but not handed over (applied {})",
                        self.applied_index()
                    )));
                }
            }
        }
        Ok(())
    }

    /// After a replicated commit: what the log made of the request (another leader's
    /// entry may have come first and the command was left out whole). Refuses, as
    /// planning would have, when the device's aligned flag or a measurement's type is not
    /// what was asked; with [`TypeConflict::UseExisting`] answers the registered type
    /// instead. `Ok(false)`: a measurement is missing, plan again on the state as it is.
    fn recheck<S: AsRef<str>>(
        &self,
        device: &str,
        aligned: bool,
        measurements: &[S],
        conflict: TypeConflict,
        resolved: &mut [DataType],
    ) -> Result<bool> {
        let Some(entry) = self.devices.get(device) else {
            return Ok(false);
        };
        if entry.aligned != aligned {
            return Err(SchemaError::AlignedMismatch {
                device: device.to_string(),
                aligned: entry.aligned,
            });
        }
        for (name, wanted) in measurements.iter().zip(resolved.iter_mut()) {
            let name = name.as_ref();
            match entry.measurements.get(name) {
                Some(schema) if schema.data_type == *wanted => {}
                Some(schema) if conflict == TypeConflict::UseExisting => {
                    *wanted = schema.data_type;
                }
                Some(schema) => {
                    return Err(SchemaError::TypeMismatch {
                        path: format!("{device}.{name}"),
                        existing: schema.data_type,
                        requested: *wanted,
                    });
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// What a replicated region answers when its plans kept being overtaken.
    fn overtaken(device: &str) -> SchemaError {
        SchemaError::Unavailable(format!(
            "the schema of {device} kept changing under this request (other leaders' \
             entries came first {REPLAN_ATTEMPTS} times); retry"
        ))
    }

    /// The auto-create hot path: the types of `measurements` of `device`,
    /// written to `resolved` (cleared first, one per measurement), creating
    /// missing measurements with `types` and default encodings. All or
    /// nothing: on error nothing is created. With [`TypeConflict::Reject`]
    /// an existing measurement of another type is
    /// [`SchemaError::TypeMismatch`]; with [`TypeConflict::UseExisting`] its
    /// registered type is returned. Returns how many measurements were
    /// created.
    ///
    /// When the device and all measurements exist this allocates nothing
    /// (given `resolved` has the capacity, as a reused buffer does).
    pub fn get_or_create_measurements<S: AsRef<str>>(
        &mut self,
        device: &str,
        aligned: bool,
        measurements: &[S],
        types: &[DataType],
        conflict: TypeConflict,
        resolved: &mut Vec<DataType>,
    ) -> Result<usize> {
        for _ in 0..REPLAN_ATTEMPTS {
            if let Some(created) =
                self.get_or_create_once(device, aligned, measurements, types, conflict, resolved)?
            {
                return Ok(created);
            }
        }
        resolved.clear();
        Err(Self::overtaken(device))
    }

    /// One plan of [`SchemaRegion::get_or_create_measurements`]; `None`: a replicated
    /// log left the plan out (an earlier entry conflicted), plan again.
    fn get_or_create_once<S: AsRef<str>>(
        &mut self,
        device: &str,
        aligned: bool,
        measurements: &[S],
        types: &[DataType],
        conflict: TypeConflict,
        resolved: &mut Vec<DataType>,
    ) -> Result<Option<usize>> {
        resolved.clear();
        if measurements.len() != types.len() {
            return Err(SchemaError::InvalidRequest(format!(
                "{} measurements but {} types",
                measurements.len(),
                types.len()
            )));
        }
        let mut missing = 0;
        match self.devices.get(device) {
            Some(entry) => {
                if entry.aligned != aligned {
                    return Err(SchemaError::AlignedMismatch {
                        device: device.to_string(),
                        aligned: entry.aligned,
                    });
                }
                for (name, &requested) in measurements.iter().zip(types) {
                    let name = name.as_ref();
                    match entry.measurements.get(name) {
                        Some(schema) if schema.data_type == requested => resolved.push(requested),
                        Some(schema) => match conflict {
                            TypeConflict::UseExisting => resolved.push(schema.data_type),
                            TypeConflict::Reject => {
                                resolved.clear();
                                return Err(SchemaError::TypeMismatch {
                                    path: format!("{device}.{name}"),
                                    existing: schema.data_type,
                                    requested,
                                });
                            }
                        },
                        None => {
                            missing += 1;
                            resolved.push(requested);
                        }
                    }
                }
            }
            None => {
                missing = measurements.len();
                resolved.extend_from_slice(types);
            }
        }
        if missing == 0 {
            return Ok(Some(0));
        }
        let result = self
            .create_missing(device, aligned, measurements, types)
            .and_then(|created| {
                if !self.is_replicated() {
                    return Ok(Some(created));
                }
                Ok(self
                    .recheck(device, aligned, measurements, conflict, resolved)?
                    .then_some(created))
            });
        if !matches!(result, Ok(Some(_))) {
            resolved.clear();
        }
        result
    }

    /// The slow path of [`SchemaRegion::get_or_create_measurements`]:
    /// validates and logs the missing measurements.
    fn create_missing<S: AsRef<str>>(
        &mut self,
        device: &str,
        aligned: bool,
        measurements: &[S],
        types: &[DataType],
    ) -> Result<usize> {
        check_device(device)?;
        if measurements.len() > MEASUREMENTS_PER_REQUEST_MAX {
            return Err(SchemaError::InvalidRequest(format!(
                "{} measurements exceed the limit of {MEASUREMENTS_PER_REQUEST_MAX}",
                measurements.len()
            )));
        }
        let existing = self.devices.get(device);
        let mut new: Vec<(String, StoredSchema)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for (name, &data_type) in measurements.iter().zip(types) {
            let name = name.as_ref();
            if existing.is_some_and(|entry| entry.measurements.contains_key(name)) {
                continue;
            }
            if !seen.insert(name) {
                return Err(SchemaError::InvalidRequest(format!(
                    "measurement {name} appears twice"
                )));
            }
            check_measurement(device, name)?;
            new.push((
                name.to_string(),
                MeasurementSchema::with_defaults(data_type).into(),
            ));
        }
        let created = new.len();
        self.commit(SchemaCommand::CreateTimeseries {
            device: device.to_string(),
            aligned,
            measurements: new,
        })?;
        Ok(created)
    }

    /// `CREATE TIMESERIES device.measurement ...`: `Ok(true)` if created,
    /// `Ok(false)` if it exists with the same schema,
    /// [`SchemaError::AlreadyExists`] if it exists with another.
    pub fn create_timeseries(
        &mut self,
        device: &str,
        measurement: &str,
        schema: MeasurementSchema,
    ) -> Result<bool> {
        self.create_many(device, false, &[(measurement, schema)])
            .map(|created| created == 1)
    }

    /// `CREATE ALIGNED TIMESERIES device(m1 ..., ...)`: all or nothing;
    /// returns how many were created (existing identical ones are kept).
    pub fn create_aligned_timeseries(
        &mut self,
        device: &str,
        measurements: &[(&str, MeasurementSchema)],
    ) -> Result<usize> {
        self.create_many(device, true, measurements)
    }

    /// Creates `measurements` of `device` (aligned or not), all or nothing; returns how
    /// many were new (existing identical ones are kept, another schema is an error).
    pub fn create_many(
        &mut self,
        device: &str,
        aligned: bool,
        measurements: &[(&str, MeasurementSchema)],
    ) -> Result<usize> {
        for _ in 0..REPLAN_ATTEMPTS {
            if let Some(created) = self.create_many_once(device, aligned, measurements)? {
                return Ok(created);
            }
        }
        Err(Self::overtaken(device))
    }

    /// One plan of [`SchemaRegion::create_many`]; `None`: plan again (see
    /// [`SchemaRegion::get_or_create_once`]).
    fn create_many_once(
        &mut self,
        device: &str,
        aligned: bool,
        measurements: &[(&str, MeasurementSchema)],
    ) -> Result<Option<usize>> {
        check_device(device)?;
        if measurements.len() > MEASUREMENTS_PER_REQUEST_MAX {
            return Err(SchemaError::InvalidRequest(format!(
                "{} measurements exceed the limit of {MEASUREMENTS_PER_REQUEST_MAX}",
                measurements.len()
            )));
        }
        let existing = self.devices.get(device);
        if let Some(entry) = existing
            && entry.aligned != aligned
        {
            return Err(SchemaError::AlignedMismatch {
                device: device.to_string(),
                aligned: entry.aligned,
            });
        }
        let mut new = Vec::new();
        let mut seen = HashSet::new();
        for &(name, schema) in measurements {
            check_measurement(device, name)?;
            schema.validate()?;
            if !seen.insert(name) {
                return Err(SchemaError::InvalidRequest(format!(
                    "measurement {name} appears twice"
                )));
            }
            match existing.and_then(|entry| entry.measurements.get(name)) {
                Some(current) if *current == schema => {}
                Some(current) if current.data_type != schema.data_type => {
                    return Err(SchemaError::TypeMismatch {
                        path: format!("{device}.{name}"),
                        existing: current.data_type,
                        requested: schema.data_type,
                    });
                }
                Some(_) => {
                    return Err(SchemaError::AlreadyExists {
                        path: format!("{device}.{name}"),
                    });
                }
                None => new.push((name.to_string(), StoredSchema::from(schema))),
            }
        }
        if new.is_empty() {
            return Ok(Some(0));
        }
        let created = new.len();
        self.commit(SchemaCommand::CreateTimeseries {
            device: device.to_string(),
            aligned,
            measurements: new,
        })?;
        if self.is_replicated() {
            // Applied whole, or left out whole (an earlier entry conflicted): plan again.
            let applied = measurements
                .iter()
                .all(|(name, schema)| self.measurement(device, name) == Some(*schema))
                && self.device_aligned(device) == Some(aligned);
            if !applied {
                return Ok(None);
            }
        }
        Ok(Some(created))
    }

    /// Calls `visit` for every timeseries whose full path matches
    /// `pattern`.
    fn for_each_match(
        &self,
        pattern: &PathPattern,
        mut visit: impl FnMut(&str, &str, &Device, MeasurementSchema),
    ) {
        let mut nodes: Vec<&str> = Vec::new();
        for (path, device) in &self.devices {
            nodes.clear();
            nodes.extend(path.split('.'));
            for (name, schema) in &device.measurements {
                nodes.push(name);
                if pattern.matches_nodes(&nodes) {
                    visit(path, name, device, *schema);
                }
                nodes.pop();
            }
        }
    }

    /// `SHOW TIMESERIES pattern`: matches sorted by path.
    pub fn timeseries(&self, pattern: &PathPattern) -> Vec<TimeseriesEntry> {
        let mut entries = Vec::new();
        self.for_each_match(pattern, |device, name, entry, schema| {
            entries.push(TimeseriesEntry {
                path: format!("{device}.{name}"),
                device: device.to_string(),
                measurement: name.to_string(),
                schema,
                aligned: entry.aligned,
            });
        });
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries
    }

    /// `COUNT TIMESERIES pattern`.
    pub fn count_timeseries(&self, pattern: &PathPattern) -> u64 {
        let mut count = 0;
        self.for_each_match(pattern, |_, _, _, _| count += 1);
        count
    }

    /// `SHOW DEVICES pattern`: devices whose path matches, sorted.
    pub fn devices(&self, pattern: &PathPattern) -> Vec<DeviceEntry> {
        let mut entries: Vec<DeviceEntry> = self
            .devices
            .iter()
            .filter(|(path, _)| pattern.matches(path))
            .map(|(path, device)| DeviceEntry {
                device: path.to_string(),
                aligned: device.aligned,
                measurement_count: device.measurements.len(),
            })
            .collect();
        entries.sort_by(|a, b| a.device.cmp(&b.device));
        entries
    }

    /// `COUNT DEVICES pattern`.
    pub fn count_devices(&self, pattern: &PathPattern) -> u64 {
        self.devices
            .keys()
            .filter(|path| pattern.matches(path))
            .count() as u64
    }

    /// `DELETE TIMESERIES p, ...`: deletes every match; returns the deleted
    /// paths, sorted (empty if nothing matched; the caller, which sees all
    /// regions, decides whether that is an error).
    pub fn delete_timeseries(&mut self, patterns: &[PathPattern]) -> Result<Vec<String>> {
        let mut series: Vec<(String, String)> = Vec::new();
        for pattern in patterns {
            self.for_each_match(pattern, |device, name, _, _| {
                series.push((device.to_string(), name.to_string()));
            });
        }
        series.sort();
        series.dedup();
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let deleted = series
            .iter()
            .map(|(device, name)| format!("{device}.{name}"))
            .collect();
        self.commit(SchemaCommand::DeleteTimeseries { series })?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::DataType;

    /// A checkpoint writes the borrowed snapshot view: its JSON must be what the owned
    /// snapshot of earlier builds wrote, byte for byte, so that files written before and
    /// after read the same (devices and measurements out of order, aligned and not,
    /// several types and encodings, a name that is not ASCII).
    #[test]
    fn the_borrowed_snapshot_is_the_owned_snapshot_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
        let mut plain = MeasurementSchema::with_defaults(DataType::Double);
        plain.encoding = crate::sql::Encoding::Plain;
        for device in ["root.sg.d2", "root.sg.d10", "root.sg.d1"] {
            for (name, schema) in [
                ("s9", MeasurementSchema::with_defaults(DataType::Int32)),
                ("s10", plain),
                (
                    "\u{e9}t\u{e9}",
                    MeasurementSchema::with_defaults(DataType::Text),
                ),
            ] {
                region.create_timeseries(device, name, schema).unwrap();
            }
        }
        region
            .create_aligned_timeseries(
                "root.sg.a.d2",
                &[
                    ("y", MeasurementSchema::with_defaults(DataType::Boolean)),
                    ("x", MeasurementSchema::with_defaults(DataType::Int64)),
                ],
            )
            .unwrap();
        // What the owned snapshot of earlier builds wrote for this schema: devices and
        // measurements sorted by their bytes, IoTDB's names for types, encodings and
        // compressors.
        let stored = |name: &str, data_type: &str, encoding: &str| {
            format!(
                r#"["{name}",{{"data_type":"{data_type}","encoding":"{encoding}","compressor":"LZ4"}}]"#
            )
        };
        let three = [
            stored("s10", "DOUBLE", "PLAIN"),
            stored("s9", "INT32", "TS_2DIFF"),
            stored("\u{e9}t\u{e9}", "TEXT", "PLAIN"),
        ]
        .join(",");
        let expected = format!(
            r#"{{"database":"root.sg","devices":[["root.sg.a.d2",true,[{},{}]],["root.sg.d1",false,[{three}]],["root.sg.d10",false,[{three}]],["root.sg.d2",false,[{three}]]]}}"#,
            stored("x", "INT64", "TS_2DIFF"),
            stored("y", "BOOLEAN", "RLE"),
        );
        let owned = serde_json::to_vec(&region.snapshot()).unwrap();
        let borrowed =
            serde_json::to_vec(&snapshot_view(&region.database, &region.devices)).unwrap();
        assert_eq!(String::from_utf8(borrowed).unwrap(), expected);
        assert_eq!(String::from_utf8(owned).unwrap(), expected);
        // And a checkpoint reopens to the same schema.
        region.checkpoint().unwrap();
        let before = region.snapshot();
        drop(region);
        let reopened = SchemaRegion::open(dir.path(), "root.sg").unwrap();
        assert_eq!(
            serde_json::to_vec(&reopened.snapshot()).unwrap(),
            serde_json::to_vec(&before).unwrap()
        );
    }
}
