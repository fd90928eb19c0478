//! A region replica: the WAL, the memtables, the sealed files and the background work
//! (flush, compaction, TTL) of one DataRegion, owned by one shard.
//!
//! ```text
//!  shard thread (owns the region)                     background pool (storage-bg-N)
//!  ──────────────────────────────                     ──────────────────────────────
//!  write ─► WAL.append ─► active memtable
//!                            │ over memtable_flush_bytes: freeze
//!                            ▼
//!                      frozen memtables (readable) ──► flush job: encode, write, fsync files
//!                                                                 │
//!  tick (every 10 ms) ◄── output ready ◄──────────────────────────┘
//!        │  plan: new MODS + MANIFEST ──────────────► metadata job: MODS, then MANIFEST
//!        │                                            (tmp, fsync, rename, dir fsync)
//!        │  install in memory, drop WAL ◄── durable ◄─┘
//!        ├─► compaction job (one partition's files → one file, rate limited)
//!        │      └─► metadata job ─► install ─► removal job (the replaced inputs)
//!        └─► TTL: metadata job dropping wholly expired partitions ─► install ─► removal
//! ```
//!
//! [`Region`] is a cheap handle (`Rc`): it is `!Send` and lives on the shard that owns the
//! region; only immutable data (frozen memtables, sealed files, planned manifests) crosses
//! to the background pool ([`crate::background`]), which a process shares between all its
//! regions. The shard's loop never writes or fsyncs a file of the region besides the WAL
//! (through io_uring): sealed files, MODS and MANIFEST are written on the pool and the
//! tick installs the result when its oneshot resolves. A job the pool refuses (queue
//! full) is not started and the next tick asks again, so the shard never waits on it.
//!
//! Crash-safety order, unchanged by running it on the pool: sealed files and their
//! directory entry are durable before a manifest names them; MODS is durable before a
//! manifest whose flushed index passes a deletion's WAL record (both in one metadata job,
//! MODS first); the manifest is durable before the WAL below its flushed index is dropped
//! or a compaction's inputs are deleted. One metadata job runs per region at a time, each
//! planned from the state the previous one installed. A `DELETE` only marks MODS dirty:
//! its WAL record covers it until the next metadata job writes MODS (within a tick).
//! No `RefCell` borrow is held across an `.await`.

pub mod deletion;
mod install;
mod manifest;
mod replication;
pub mod wal_entry;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use crate::device_types::DeviceTypes;
use crate::hash::FastMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::background::{BackgroundPool, JobClass};
use crate::budget::{BudgetAccount, MemoryBudget};
use crate::compaction;
use crate::config::RegionConfig;
use crate::error::{Result, StorageError};
use crate::file_system::{FileSystem, std_file_system};
use crate::filter::{FilterCounters, ValueFilter};
use crate::memtable::{FrozenMemtable, Memtable, ReadScratch, Side};
use crate::query::{self, AggregateRow, Aggregation, RankedPiece, Windows};
use crate::sealed::{SealedFile, SealedFileWriter, WriterOptions};
use crate::types::{
    DataType, PointColumn, SeriesKey, Tablet, TabletRef, TimeRange, Timestamp, Value,
};
use crate::wal::{Wal, WalOptions, WalRecord};

pub use deletion::Deletion;
pub(crate) use manifest::sync_dir;
pub use manifest::{FileEntry, FileKind, Manifest};
pub use replication::{LogEntry, LogRead};

/// How often the background task installs finished jobs and starts new ones.
const TICK_INTERVAL: Duration = Duration::from_millis(10);
/// Ranks of frozen memtables start here: above every file version, below the active one.
const FROZEN_RANK_BASE: u64 = 1 << 62;
const ACTIVE_RANK: u64 = u64::MAX;

/// A time source in milliseconds since the epoch (tests inject their own).
pub type Clock = Rc<dyn Fn() -> Timestamp>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Rc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Timestamp)
    })
}

/// A sealed file in use, with its manifest entry.
#[derive(Clone)]
struct LiveFile {
    entry: FileEntry,
    file: Arc<SealedFile>,
    /// Deletions issued after the file's points were written (persisted in MODS).
    deletions: Vec<Deletion>,
}

/// A memtable waiting for (or in) its flush.
struct Frozen {
    sequence: u64,
    memtable: Arc<FrozenMemtable>,
    /// The highest WAL index whose data it holds.
    last_index: u64,
    /// Deletions issued after it was frozen; its files inherit them.
    deletions: Vec<Deletion>,
}

/// A job queued or running on the background pool.
struct Job<T> {
    receiver: oneshot::Receiver<Result<T>>,
    cancel: Arc<AtomicBool>,
}

impl<T> Job<T> {
    /// The job's result once it is done (a job that panicked is an error), or `None`
    /// while it is queued or runs.
    fn try_finish(&mut self, what: &str) -> Option<Result<T>> {
        match self.receiver.try_recv() {
            Ok(None) => None,
            Ok(Some(result)) => Some(result),
            Err(_) => Some(Err(StorageError::BackgroundJob(format!(
                "the {what} job died"
            )))),
        }
    }
}

struct FlushOutput {
    sequence: u64,
    files: Vec<LiveFile>,
}

struct CompactionOutput {
    partition: i64,
    inputs: Vec<u64>,
    /// How many of each input's deletions the job applied (in `inputs` order); later ones
    /// move to the output.
    applied_deletions: Vec<usize>,
    output: Option<LiveFile>,
}

/// What MODS holds: file id → the deletions of that file.
type Mods = BTreeMap<u64, Vec<Deletion>>;

/// A metadata write (MODS and/or MANIFEST) queued or running on the pool, and what the
/// region applies in memory once it is durable. At most one runs per region, so each
/// plans from the state the previous one left and two never race on `MANIFEST.tmp`.
struct MetadataJob {
    receiver: oneshot::Receiver<Result<()>>,
    install: Install,
    /// Whether it rewrites MODS (a failure then leaves MODS stale).
    writes_mods: bool,
}

/// What a metadata write commits.
enum Install {
    /// A flush's files; `deletions_seen` deletions of its memtable were written to MODS.
    Flush {
        output: FlushOutput,
        manifest: Manifest,
        deletions_seen: usize,
    },
    /// A compaction's output replacing its inputs; the output carried `deletions_seen`.
    Compaction {
        output: CompactionOutput,
        manifest: Manifest,
        deletions_seen: usize,
    },
    /// Wholly expired time partitions (TTL).
    Expire {
        partitions: Vec<i64>,
        manifest: Manifest,
    },
    /// MODS alone: deletions issued since the last write.
    Mods,
}

/// Counters a region reports (for `SHOW REGIONS` and benchmarks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    pub series: usize,
    pub sealed_files: usize,
    pub sealed_bytes: u64,
    pub wal_bytes: u64,
    /// The lowest index the WAL may still hold (its oldest segment's first index), `None`
    /// when it has no segment: what a follower can still be sent from the log.
    pub wal_first_index: Option<u64>,
    /// WAL bytes whose records are all flushed, kept for followers by a retention floor
    /// (or not yet dropped).
    pub wal_retained_bytes: u64,
    pub memtable_bytes: usize,
    pub frozen_memtables: usize,
    pub last_index: u64,
    pub flushed_index: u64,
    pub flushes: u64,
    pub compactions: u64,
    /// Jobs (flushes, compactions, metadata writes, file removals) the background pool
    /// refused (queue full) and that were asked for again on a later tick.
    pub jobs_deferred: u64,
    pub read_only: Option<String>,
}

/// What a snapshot holds: hard links to a consistent set of sealed files and the WAL index
/// they cover. Records after `wal_index` come from the WAL (replica catch-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub dir: PathBuf,
    pub wal_index: u64,
    pub files: usize,
    pub bytes: u64,
}

/// device → measurement → the newest point read from every source.
type LastCache = FastMap<Arc<str>, FastMap<Arc<str>, (Timestamp, Value)>>;

/// What [`State::admit_tablet`] found out about a tablet it let through.
#[derive(Clone, Copy, Debug)]
struct Admitted {
    /// Every column's series is known already: nothing to register once it is logged.
    types_known: bool,
}

struct State {
    dir: PathBuf,
    config: RegionConfig,
    clock: Clock,
    manifest: Manifest,
    /// partition → files, in manifest order.
    files: BTreeMap<i64, Vec<LiveFile>>,
    /// device → measurement → type: a series keeps the type of its first write.
    types: FastMap<Arc<str>, DeviceTypes>,
    active: Memtable,
    frozen: VecDeque<Frozen>,
    frozen_sequence: u64,
    /// (partition, device) → the newest time frozen or flushed: older points are unsequence.
    flushed_last_time: FastMap<(i64, Arc<str>), Timestamp>,
    last_cache: LastCache,
    next_index: u64,
    /// The compact record of the tablet being written, in buffers kept for the next.
    tablet_record: wal_entry::TabletRecord,
    flush_job: Option<Job<FlushOutput>>,
    compaction_job: Option<(i64, Job<CompactionOutput>)>,
    /// Why the region takes no more writes: a WAL append or fsync failed, or a flush,
    /// compaction or metadata write did (`StorageError::ReadOnly` from then on; a restart
    /// recovers from what is durable).
    read_only: Option<String>,
    closed: bool,
    flushes: u64,
    compactions: u64,
    /// When the last flush was installed: partitions count as cold only after
    /// `compaction_cold_delay` without one.
    last_flush_installed: Option<Instant>,
    /// Set while [`Region::compact`] runs: cold partitions qualify at once.
    compact_requested: bool,
    /// Runs flushes, compactions and metadata writes; shared with other regions.
    pool: BackgroundPool,
    /// A finished flush waiting for its metadata write.
    flush_ready: Option<FlushOutput>,
    /// A finished compaction waiting for its metadata write.
    compaction_ready: Option<CompactionOutput>,
    metadata_job: Option<MetadataJob>,
    /// A live file's deletions are not all in MODS yet (the WAL holds them).
    mods_dirty: bool,
    /// Replaced sealed files to delete on the pool (no manifest names them any more).
    files_to_remove: Vec<PathBuf>,
    removal_job: Option<oneshot::Receiver<Result<()>>>,
    /// Jobs the pool refused (queue full) and that were retried on a later tick.
    jobs_deferred: u64,
    /// This region's share of its shard's memtable budget.
    memory: BudgetAccount,
    /// WAL from this index on is kept for followers even when flushed
    /// ([`Region::set_retention_floor`]), within `wal_retention_bytes_max`.
    retention_floor: Option<u64>,
    /// A trim left segments it meant to drop because a write into them was still in
    /// flight: the tick tries again, so the cap holds once the WAL writer catches up.
    wal_trim_pending: bool,
    /// Writes sealed files, MANIFEST and MODS (`RegionConfig::file_system`); shared with
    /// the jobs on the pool.
    file_system: Arc<dyn FileSystem>,
}

/// A handle on an open region. Clones share the region.
#[derive(Clone)]
pub struct Region {
    state: Rc<RefCell<State>>,
    wal: Wal,
}

/// The acknowledgement of a write: await [`WriteAck::durable`] before telling the client.
pub struct WriteAck {
    wal: Wal,
    index: u64,
}

impl WriteAck {
    /// The write's search index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Resolves once the write is as durable as the WAL mode promises.
    pub async fn durable(self) -> Result<u64> {
        self.wal.wait_durable(self.index).await?;
        Ok(self.index)
    }
}

fn partition_of(t: Timestamp, interval: i64) -> i64 {
    t.div_euclid(interval)
}

impl Region {
    /// Opens (or creates) the region in `dir` and replays its WAL. Must run inside a monoio
    /// runtime with timers: it spawns the WAL's commit task and the region's background task.
    pub fn open(dir: &Path, config: RegionConfig) -> Result<Region> {
        Region::open_with_clock(dir, config, system_clock())
    }

    /// [`Region::open`] with an injected clock (TTL tests).
    pub fn open_with_clock(dir: &Path, config: RegionConfig, clock: Clock) -> Result<Region> {
        let budget = MemoryBudget::new(config.memtable_flush_bytes, config.memtable_bytes_max);
        Region::open_in_budget(dir, config, clock, &budget)
    }

    /// [`Region::open`] drawing on a shard's shared memtable budget: the region's own
    /// `memtable_flush_bytes` / `memtable_bytes_max` are then unused, and the budget decides
    /// when it freezes and when its writes are refused (`budget`'s module doc).
    pub fn open_with_budget(
        dir: &Path,
        config: RegionConfig,
        budget: &MemoryBudget,
    ) -> Result<Region> {
        Region::open_in_budget(dir, config, system_clock(), budget)
    }

    fn open_in_budget(
        dir: &Path,
        config: RegionConfig,
        clock: Clock,
        budget: &MemoryBudget,
    ) -> Result<Region> {
        if config.time_partition_interval_ms <= 0 {
            return Err(StorageError::InvalidArgument(format!(
                "time_partition_interval must be positive, not {}",
                config.time_partition_interval_ms
            )));
        }
        // A snapshot install interrupted by a crash is finished or discarded first.
        let file_system = config.file_system.clone().unwrap_or_else(std_file_system);
        install::recover(&*file_system, dir)?;
        let sealed_dir = dir.join("sealed");
        file_system
            .create_dir_all(&sealed_dir)
            .map_err(|e| StorageError::io("create region directory", &sealed_dir, e))?;
        let manifest = Manifest::load_in(&*file_system, dir)?;
        remove_orphans(&*file_system, &sealed_dir, &manifest)?;
        let mut mods = deletion::load_in(&*file_system, dir)?;

        let mut state = State {
            dir: dir.to_path_buf(),
            config: config.clone(),
            clock,
            manifest: manifest.clone(),
            files: BTreeMap::new(),
            types: FastMap::default(),
            active: Memtable::default(),
            frozen: VecDeque::new(),
            frozen_sequence: 0,
            flushed_last_time: FastMap::default(),
            last_cache: FastMap::default(),
            next_index: manifest.flushed_index + 1,
            tablet_record: wal_entry::TabletRecord::default(),
            flush_job: None,
            compaction_job: None,
            read_only: None,
            closed: false,
            flushes: 0,
            compactions: 0,
            last_flush_installed: None,
            compact_requested: false,
            pool: config
                .background
                .clone()
                .unwrap_or_else(BackgroundPool::process_default),
            jobs_deferred: 0,
            memory: budget.account(),
            flush_ready: None,
            compaction_ready: None,
            metadata_job: None,
            mods_dirty: false,
            files_to_remove: Vec::new(),
            removal_job: None,
            retention_floor: None,
            wal_trim_pending: false,
            file_system,
        };
        for entry in &manifest.files {
            let file = Arc::new(SealedFile::open(&sealed_dir.join(entry.file_name()))?);
            state.add_file(LiveFile {
                entry: entry.clone(),
                file,
                deletions: mods.remove(&entry.id).unwrap_or_default(),
            })?;
        }
        // What is left in MODS names files no manifest has: MODS is written before the
        // manifest that names a new file, and that manifest write failed. Those ids must
        // never be handed out again, or the stale deletions would apply to a later file
        // (hiding points written after them) once MODS and that file's manifest are read
        // together; and MODS is rewritten without them.
        if let Some(&highest) = mods.keys().next_back() {
            state.manifest.next_file_id = state.manifest.next_file_id.max(highest);
            state.mods_dirty = true;
        }

        let (wal, records) = Wal::open(&dir.join("wal"), WalOptions::from_config(&config))?;
        state.replay(records)?;
        state.balance_memory();
        let region = Region {
            state: Rc::new(RefCell::new(state)),
            wal,
        };
        region.spawn_background();
        Ok(region)
    }

    fn spawn_background(&self) {
        let weak = Rc::downgrade(&self.state);
        let wal = self.wal.clone();
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(TICK_INTERVAL).await;
                let Some(state) = weak.upgrade() else { break };
                let region = Region {
                    state,
                    wal: wal.clone(),
                };
                if region.state.borrow().closed {
                    break;
                }
                region.tick();
            }
        });
    }

    /// Writes `tablet`: logged, then visible to reads. Await the returned ack's
    /// [`WriteAck::durable`] before acknowledging to a client. A type that disagrees with
    /// an existing series rejects the whole tablet.
    pub fn write(&self, tablet: &Tablet) -> Result<WriteAck> {
        self.write_ref(&tablet.as_ref())
    }

    /// [`Region::write`] of a borrowed tablet (a received request's columns where they
    /// lie): encoded straight into the WAL's batch, then appended to the memtable; no
    /// owned copy of it is made on the way.
    pub fn write_ref(&self, tablet: &TabletRef<'_>) -> Result<WriteAck> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let admitted = state.admit_tablet(tablet)?;
        let index = state.next_index;
        let mut record = std::mem::take(&mut state.tablet_record);
        record.prepare(tablet);
        let logged = self.append_record_with(
            state,
            index,
            wal_entry::KIND_TABLET_COMPACT,
            record.encoded_len(tablet),
            |out| record.encode(tablet, out),
        );
        let ack = logged.map(|()| self.apply_logged(state, index, tablet, admitted, Some(&record)));
        record.done();
        state.tablet_record = record;
        ack
    }

    /// Appends an admitted tablet's record of `kind` at `index` (the next index), then
    /// applies it; `record` is the compact record's preparation when the caller made it.
    fn log_tablet(
        &self,
        state: &mut State,
        (index, kind, payload): (u64, u8, &[u8]),
        (tablet, admitted): (&TabletRef<'_>, Admitted),
        record: Option<&wal_entry::TabletRecord>,
    ) -> Result<WriteAck> {
        self.append_record(state, index, kind, payload)?;
        Ok(self.apply_logged(state, index, tablet, admitted, record))
    }

    /// Applies a tablet whose record was just logged at `index`; `record`, its compact
    /// record's preparation, hands the memtable the digits it found.
    fn apply_logged(
        &self,
        state: &mut State,
        index: u64,
        tablet: &TabletRef<'_>,
        admitted: Admitted,
        record: Option<&wal_entry::TabletRecord>,
    ) -> WriteAck {
        if !admitted.types_known {
            state.register_types(tablet);
        }
        state.apply(tablet, record);
        state.balance_memory();
        WriteAck {
            wal: self.wal.clone(),
            index,
        }
    }

    /// Appends one record at the region's next index; a WAL failure makes the region
    /// read-only.
    fn append_record(&self, state: &mut State, index: u64, kind: u8, payload: &[u8]) -> Result<()> {
        self.append_record_with(state, index, kind, payload.len(), |out| {
            out.extend_from_slice(payload)
        })
    }

    /// [`Region::append_record`] of a payload of `payload_bytes` that `write` encodes into
    /// the WAL's batch.
    fn append_record_with(
        &self,
        state: &mut State,
        index: u64,
        kind: u8,
        payload_bytes: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        assert_eq!(
            index, state.next_index,
            "records are logged at the next index"
        );
        if let Err(e) = self.wal.append_with(index, kind, payload_bytes, write) {
            if let StorageError::ReadOnly(reason) = &e {
                state.read_only = Some(reason.clone());
            }
            return Err(e);
        }
        state.next_index += 1;
        Ok(())
    }

    /// [`Region::write`], but while the shard's memtable budget is full it waits (up to
    /// `max_wait`) for a flush to give bytes back instead of failing at once; past
    /// `max_wait` it fails with `Overloaded` as `write` does.
    pub async fn write_waiting(&self, tablet: &Tablet, max_wait: Duration) -> Result<WriteAck> {
        self.write_waiting_ref(&tablet.as_ref(), max_wait).await
    }

    /// [`Region::write_waiting`] of a borrowed tablet ([`Region::write_ref`]).
    pub async fn write_waiting_ref(
        &self,
        tablet: &TabletRef<'_>,
        max_wait: Duration,
    ) -> Result<WriteAck> {
        self.waiting_for_room(max_wait, || self.write_ref(tablet))
            .await
    }

    /// Runs `operation` until it is not refused for a full memtable budget, waiting for a
    /// flush to give bytes back between tries, at most `max_wait` in all.
    pub(crate) async fn waiting_for_room<T>(
        &self,
        max_wait: Duration,
        mut operation: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        match operation() {
            // Boxed: the wait's timer and budget futures would otherwise sit in every
            // write's future (copied whole when a request's task is spawned).
            Err(StorageError::Overloaded { .. }) => {
                Box::pin(self.retrying_for_room(max_wait, operation)).await
            }
            other => other,
        }
    }

    async fn retrying_for_room<T>(
        &self,
        max_wait: Duration,
        mut operation: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + max_wait;
        loop {
            match operation() {
                Err(StorageError::Overloaded { .. }) if Instant::now() < deadline => {
                    let budget = self.state.borrow().memory.budget().clone();
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    monoio::select! {
                        _ = budget.wait_for_room() => {}
                        _ = monoio::time::sleep(remaining) => {}
                    }
                }
                other => return other,
            }
        }
    }

    /// [`Region::write`] and wait until durable; returns the search index.
    pub async fn write_durable(&self, tablet: &Tablet) -> Result<u64> {
        let ack = self.write(tablet)?;
        ack.durable().await
    }

    /// Deletes the points of `keys` in `range` that the region holds now (later writes are
    /// not affected): logged in the WAL, then applied. Await the ack's durability before
    /// acknowledging to a client.
    pub fn delete(&self, keys: &[SeriesKey], range: TimeRange) -> Result<WriteAck> {
        // Deletions are rare and small: the replicated form's record is simply dropped.
        self.delete_for_replication(keys, range).map(|(ack, _)| ack)
    }

    /// Appends an admitted deletion's record at `index` (the next index), then applies it.
    fn log_deletion(
        &self,
        state: &mut State,
        index: u64,
        payload: &[u8],
        deletions: &[Deletion],
    ) -> Result<WriteAck> {
        self.append_record(state, index, deletion::KIND_DELETE, payload)?;
        state.apply_deletions(index, deletions);
        state.balance_memory();
        // MODS is rewritten by a metadata write on the pool, always before a manifest
        // whose flushed index passes this record; until then the WAL holds the deletion.
        state.mods_dirty = true;
        Ok(WriteAck {
            wal: self.wal.clone(),
            index,
        })
    }

    /// The data type of a series, if the region holds it.
    pub fn series_type(&self, key: &SeriesKey) -> Option<DataType> {
        self.state.borrow().series_type(key)
    }

    /// Every series the region holds, sorted.
    pub fn series(&self) -> Vec<(SeriesKey, DataType)> {
        let state = self.state.borrow();
        let mut out: Vec<(SeriesKey, DataType)> = state
            .types
            .iter()
            .flat_map(|(device, series)| {
                series.iter().map(|(measurement, t)| {
                    (
                        SeriesKey {
                            device: device.clone(),
                            measurement: Arc::from(measurement),
                        },
                        t,
                    )
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Every point of `key` in `range`, newest write winning; `None` for an unknown series.
    pub fn scan(&self, key: &SeriesKey, range: TimeRange) -> Result<Option<PointColumn>> {
        let state = self.state.borrow();
        let Some(data_type) = state.series_type(key) else {
            return Ok(None);
        };
        let range = state.visible(range);
        query::scan(data_type, state.pieces(key, range)?, range).map(Some)
    }

    /// The first `points_max` points of `key` in `range` (`None` for an unknown series),
    /// decoding only the chunks they lie in: what a query with `LIMIT` needs of a series.
    pub fn scan_first(
        &self,
        key: &SeriesKey,
        range: TimeRange,
        points_max: usize,
    ) -> Result<Option<PointColumn>> {
        let state = self.state.borrow();
        let Some(data_type) = state.series_type(key) else {
            return Ok(None);
        };
        let range = state.visible(range);
        query::scan_first(data_type, state.pieces(key, range)?, range, points_max).map(Some)
    }

    /// The points of `key` in `range` that pass `filter` (`None` for an unknown series),
    /// with how the chunk statistics were used added to `counters`.
    pub fn scan_filtered(
        &self,
        key: &SeriesKey,
        range: TimeRange,
        filter: &ValueFilter,
        counters: &mut FilterCounters,
    ) -> Result<Option<PointColumn>> {
        self.scan_filtered_first(key, range, filter, usize::MAX, counters)
    }

    /// The first `points_max` points of `key` in `range` that pass `filter`, decoding only
    /// the chunks up to the one that completes the count: a page of a filtered scan.
    pub fn scan_filtered_first(
        &self,
        key: &SeriesKey,
        range: TimeRange,
        filter: &ValueFilter,
        points_max: usize,
        counters: &mut FilterCounters,
    ) -> Result<Option<PointColumn>> {
        let state = self.state.borrow();
        let Some(data_type) = state.series_type(key) else {
            return Ok(None);
        };
        let range = state.visible(range);
        query::scan_filtered_first(
            data_type,
            state.pieces(key, range)?,
            range,
            filter,
            points_max,
            counters,
        )
        .map(Some)
    }

    /// Aggregates `key` over `range`, per window when `windows` is given. `None` for an
    /// unknown series.
    pub fn aggregate(
        &self,
        key: &SeriesKey,
        range: TimeRange,
        windows: Option<Windows>,
        aggregations: &[Aggregation],
    ) -> Result<Option<Vec<AggregateRow>>> {
        let state = self.state.borrow();
        let Some(data_type) = state.series_type(key) else {
            return Ok(None);
        };
        let visible = state.visible(range);
        let fetch = match windows {
            Some(w) => visible.intersect(w.range),
            None => visible,
        };
        query::aggregate(
            data_type,
            state.pieces(key, fetch)?,
            visible,
            windows,
            aggregations,
        )
        .map(Some)
    }

    /// The newest point of `key` (from the last-value cache when it can).
    pub fn last(&self, key: &SeriesKey) -> Result<Option<(Timestamp, Value)>> {
        let state = self.state.borrow_mut();
        let Some(data_type) = state.series_type(key) else {
            return Ok(None);
        };
        let visible = state.visible(TimeRange::ALL);
        let cached = state
            .last_cache
            .get(&key.device)
            .and_then(|m| m.get(&key.measurement))
            .cloned();
        if let Some((t, value)) = cached {
            return Ok(visible.contains(t).then_some((t, value)));
        }
        // Miss: read the newest cluster of pieces only.
        let pieces = state.pieces(key, visible)?;
        let Some(newest) = pieces.iter().map(|p| p.max_time).max() else {
            return Ok(None);
        };
        let newest_start = pieces
            .iter()
            .filter(|p| p.max_time == newest)
            .map(|p| p.min_time)
            .min()
            .unwrap_or(newest);
        let points = query::scan(data_type, pieces, TimeRange::new(newest_start, visible.end))?;
        drop(state);
        let Some(&t) = points.timestamps.last() else {
            return Ok(None);
        };
        let value = points.values.get(points.len() - 1);
        let mut state = self.state.borrow_mut();
        state.cache_last(&key.device, &key.measurement, t, value.clone());
        Ok(Some((t, value)))
    }

    /// Freezes the active memtable and waits until every frozen memtable is in sealed files.
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let mut state = self.state.borrow_mut();
            let last = state.next_index - 1;
            state.freeze(last);
            state.frozen.back().map(|f| f.sequence)
        };
        let Some(target) = target else { return Ok(()) };
        loop {
            {
                let state = self.state.borrow();
                if state.frozen.front().is_none_or(|f| f.sequence > target) {
                    return Ok(());
                }
                if let Some(reason) = &state.read_only {
                    return Err(StorageError::ReadOnly(reason.clone()));
                }
                if state.closed {
                    return Err(StorageError::Closed);
                }
            }
            self.tick();
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs compaction now on every eligible partition, cold ones without waiting for
    /// `compaction_cold_delay`, and waits for it.
    pub async fn compact(&self) -> Result<()> {
        /// Clears the request however the wait ends (returned or dropped).
        struct Requested<'a>(&'a RefCell<State>);
        impl Drop for Requested<'_> {
            fn drop(&mut self) {
                self.0.borrow_mut().compact_requested = false;
            }
        }
        self.state.borrow_mut().compact_requested = true;
        let _requested = Requested(&self.state);
        loop {
            {
                let state = self.state.borrow();
                if let Some(reason) = &state.read_only {
                    return Err(StorageError::ReadOnly(reason.clone()));
                }
                if state.compacting_partition().is_none() && state.eligible_partition().is_none() {
                    return Ok(());
                }
            }
            self.tick();
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sets the time to live (`None`: forever). Takes effect on reads at once; wholly
    /// expired partitions are dropped by the next tick.
    pub fn set_ttl(&self, ttl_ms: Option<i64>) {
        self.state.borrow_mut().config.ttl_ms = ttl_ms;
        self.tick();
    }

    /// Installs finished background work and starts new work. Runs every 10 ms on its own;
    /// tests may call it to make progress deterministic.
    pub fn tick(&self) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if state.closed {
            return;
        }
        if let Err(e) = state.finish_metadata(&self.wal) {
            state.turn_read_only("a metadata write or its install", &e);
        }
        if let Err(e) = state.collect_jobs() {
            state.turn_read_only("a flush or compaction", &e);
        }
        state.start_removals();
        if state.wal_trim_pending
            && let Err(e) = state.trim_wal(&self.wal)
        {
            // Not retried each tick: the next flush or floor change tries again.
            state.wal_trim_pending = false;
            tracing::warn!(dir = %state.dir.display(), error = %e, "dropping WAL segments failed");
        }
        state.balance_memory();
        state.start_metadata();
        state.start_flush();
        state.start_compaction();
        state.check_invariants();
    }

    /// Hard-links a consistent set of sealed files into `target` (which must not exist)
    /// with a manifest naming them; the WAL records after `wal_index` complete it.
    pub fn snapshot(&self, target: &Path) -> Result<SnapshotInfo> {
        let state = self.state.borrow();
        let file_system = &*state.file_system;
        let sealed = target.join("sealed");
        file_system
            .create_dir_all(&sealed)
            .map_err(|e| StorageError::io("create snapshot directory", &sealed, e))?;
        let mut bytes = 0;
        for live in state.files.values().flatten() {
            let name = live.entry.file_name();
            let from = state.dir.join("sealed").join(&name);
            install::link_or_copy(file_system, &from, &sealed.join(&name))?;
            bytes += live.file.bytes();
        }
        manifest::sync_dir(file_system, &sealed)?;
        deletion::store_in(file_system, target, &state.mods())?;
        state.manifest.store_in(file_system, target)?;
        Ok(SnapshotInfo {
            dir: target.to_path_buf(),
            wal_index: state.manifest.flushed_index,
            files: state.manifest.files.len(),
            bytes,
        })
    }

    /// Why the region takes no more writes, if it turned read-only (a WAL, flush,
    /// compaction or metadata write failed); cheaper than [`Region::info`].
    pub fn read_only(&self) -> Option<String> {
        self.state.borrow().read_only.clone()
    }

    /// What the region holds.
    pub fn info(&self) -> RegionInfo {
        let state = self.state.borrow();
        let spans = self.wal.segment_spans();
        RegionInfo {
            series: state.types.values().map(DeviceTypes::len).sum(),
            sealed_files: state.manifest.files.len(),
            sealed_bytes: state.files.values().flatten().map(|f| f.file.bytes()).sum(),
            wal_bytes: self.wal.disk_bytes(),
            wal_first_index: spans.first().map(|span| span.first_index),
            wal_retained_bytes: spans
                .iter()
                .filter(|span| {
                    span.last_index
                        .is_some_and(|last| last <= state.manifest.flushed_index)
                })
                .map(|span| span.bytes)
                .sum(),
            memtable_bytes: state.memtable_bytes(),
            frozen_memtables: state.frozen.len(),
            last_index: state.next_index - 1,
            flushed_index: state.manifest.flushed_index,
            flushes: state.flushes,
            compactions: state.compactions,
            jobs_deferred: state.jobs_deferred,
            read_only: state.read_only.clone(),
        }
    }

    /// Stops background work and closes the WAL. With `flush`, memtables are flushed first
    /// (a clean shutdown); without, the WAL alone holds them (as after a crash). A flush
    /// that fails does not stop the close: its error is returned once the region is closed.
    pub async fn close(self, flush: bool) -> Result<()> {
        // A failed flush still closes the region (its jobs stopped, the WAL closed), then
        // reports the failure: what it left undone is in the WAL.
        let flushed = if flush && self.state.borrow().read_only.is_none() {
            self.flush().await
        } else {
            Ok(())
        };
        {
            let mut state = self.state.borrow_mut();
            if let Some((_, job)) = &state.compaction_job {
                job.cancel.store(true, Ordering::Relaxed);
            }
            if let Some(job) = &state.flush_job {
                job.cancel.store(true, Ordering::Relaxed);
            }
            state.closed = true;
        }
        // Let cancelled jobs finish so no job writes into the directory after close (a queued
        // job still runs, sees the cancel flag and stops at once). A metadata write that
        // completes now is not installed in memory: the region is closing, and what it made
        // durable is what the next open reads.
        while self.state.borrow_mut().poll_jobs_for_close() {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        let closed = self.wal.clone().close().await;
        flushed.and(closed)
    }
}

/// Deletes files in `sealed/` that the manifest does not name (crashed flush/compaction).
/// Deletes nothing until every file the manifest names is known to exist: a manifest that
/// names a missing file means the disk lost something (a compaction output whose directory
/// entry was not durable, a file removed by hand), and deleting the files it does not name
/// could then destroy the only remaining copy of that data (the compaction's inputs).
fn remove_orphans(
    file_system: &dyn FileSystem,
    sealed_dir: &Path,
    manifest: &Manifest,
) -> Result<()> {
    for entry in &manifest.files {
        let path = sealed_dir.join(entry.file_name());
        match file_system.exists(&path) {
            Ok(true) => {}
            Ok(false) => {
                return Err(StorageError::Corruption {
                    path: path.clone(),
                    offset: 0,
                    reason: "the manifest names this sealed file but it does not exist; \
                             no file of the region was deleted"
                        .into(),
                });
            }
            Err(e) => return Err(StorageError::io("check sealed file", &path, e)),
        }
    }
    let known: std::collections::HashSet<String> =
        manifest.files.iter().map(FileEntry::file_name).collect();
    let names = file_system
        .list(sealed_dir)
        .map_err(|e| StorageError::io("list sealed files", sealed_dir, e))?;
    for name in names {
        if !known.contains(&name) {
            let path = sealed_dir.join(&name);
            tracing::info!(file = %path.display(), "removing a file no manifest names (interrupted flush or compaction)");
            file_system
                .remove_file(&path)
                .map_err(|e| StorageError::io("remove orphan file", &path, e))?;
        }
    }
    Ok(())
}

impl State {
    /// Whether the region takes writes at all.
    fn check_writable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &self.read_only {
            return Err(StorageError::ReadOnly(reason.clone()));
        }
        Ok(())
    }

    /// The checks a tablet passes before it is logged (a local write and a replicated
    /// one alike): the region is writable, the tablet is well formed, its types agree
    /// with the region's series, and the shard's memtable budget has room.
    fn admit_tablet(&self, tablet: &TabletRef<'_>) -> Result<Admitted> {
        self.check_writable()?;
        tablet.validate()?;
        let types_known = self.check_types(tablet)?;
        let budget = self.memory.budget();
        if budget.is_full() {
            return Err(StorageError::Overloaded {
                memtable_bytes: budget.total_bytes(),
                limit_bytes: budget.max_bytes(),
            });
        }
        Ok(Admitted { types_known })
    }

    /// The checks a deletion of `keys` series passes before it is logged.
    fn admit_deletion(&self, keys: usize) -> Result<()> {
        self.check_writable()?;
        if keys > deletion::DELETION_KEYS_MAX {
            return Err(StorageError::InvalidArgument(format!(
                "a deletion names {keys} series, at most {}",
                deletion::DELETION_KEYS_MAX
            )));
        }
        Ok(())
    }

    fn series_type(&self, key: &SeriesKey) -> Option<DataType> {
        self.types.get(&key.device)?.get(&key.measurement)
    }

    /// Reports the memtables to the shard's budget and freezes the active one if the
    /// budget asks (its sum over the shard passed the flush threshold and this region's
    /// active memtable is among the largest). Called after every change of the memtables.
    fn balance_memory(&mut self) {
        let frozen: usize = self.frozen.iter().map(|f| f.memtable.heap_bytes).sum();
        self.memory.report(self.active.heap_bytes(), frozen);
        if self.memory.take_freeze_request() && !self.active.is_empty() {
            let last_index = self.next_index - 1;
            self.freeze(last_index);
            let frozen: usize = self.frozen.iter().map(|f| f.memtable.heap_bytes).sum();
            self.memory.report(self.active.heap_bytes(), frozen);
        }
    }

    fn memtable_bytes(&self) -> usize {
        self.active.heap_bytes()
            + self
                .frozen
                .iter()
                .map(|f| f.memtable.heap_bytes)
                .sum::<usize>()
    }

    /// `range` minus what the TTL hides.
    fn visible(&self, range: TimeRange) -> TimeRange {
        match self.config.ttl_ms {
            Some(ttl) => range.intersect(TimeRange::new(
                (self.clock)().saturating_sub(ttl),
                Timestamp::MAX,
            )),
            None => range,
        }
    }

    fn add_file(&mut self, live: LiveFile) -> Result<()> {
        for meta in live.file.series() {
            self.learn_type(
                &meta.key.device,
                &meta.key.measurement,
                meta.data_type,
                live.file.path(),
            )?;
            let max_time = meta.chunks.iter().map(|c| c.stats.max_time).max();
            if let (FileKind::Sequence, Some(max_time)) = (live.entry.kind, max_time) {
                let slot = (live.entry.partition, meta.key.device.clone());
                let entry = self.flushed_last_time.entry(slot).or_insert(max_time);
                *entry = (*entry).max(max_time);
            }
        }
        self.files
            .entry(live.entry.partition)
            .or_default()
            .push(live);
        Ok(())
    }

    /// Records the type of a series read from disk; two files disagreeing is corruption.
    fn learn_type(
        &mut self,
        device: &Arc<str>,
        measurement: &Arc<str>,
        data_type: DataType,
        path: &Path,
    ) -> Result<()> {
        let series = self.types.entry(device.clone()).or_default();
        let known = series.get_or_insert(measurement, data_type);
        if known != data_type {
            return Err(StorageError::corruption(
                path,
                0,
                format!("series {device}.{measurement} is {data_type} here but {known} elsewhere"),
            ));
        }
        Ok(())
    }

    fn replay(&mut self, records: Vec<WalRecord>) -> Result<()> {
        let mut replayed = 0usize;
        for record in records {
            // A kind this build does not know is not skipped: its write would be lost
            // silently (a newer version's record, or damage the checksum missed).
            if record.kind != deletion::KIND_DELETE && !wal_entry::is_tablet(record.kind) {
                return Err(StorageError::corruption(
                    self.dir.join("wal"),
                    record.index,
                    format!(
                        "record {} has unknown kind {}; refusing to replay past it",
                        record.index, record.kind
                    ),
                ));
            }
            self.next_index = self.next_index.max(record.index + 1);
            if record.index <= self.manifest.flushed_index {
                continue;
            }
            if record.kind == deletion::KIND_DELETE {
                let deletions = deletion::decode_record(&record.payload).map_err(|e| {
                    StorageError::corruption(
                        self.dir.join("wal"),
                        record.index,
                        format!("record {}: {e}", record.index),
                    )
                })?;
                self.apply_deletions(record.index, &deletions);
                // The sealed files' share of the deletion lives only in memory and in this
                // record now: MODS must be written before a manifest lets the WAL drop it
                // (a crash came before MODS was), or the points come back at the next open.
                self.mods_dirty = true;
                replayed += 1;
                continue;
            }
            let tablet = wal_entry::decode_kind(record.kind, &record.payload).map_err(|e| {
                StorageError::corruption(
                    self.dir.join("wal"),
                    record.index,
                    format!("record {}: {}", record.index, e.0),
                )
            })?;
            let tablet = tablet.as_ref();
            if !self.check_types(&tablet)? {
                self.register_types(&tablet);
            }
            self.apply(&tablet, None);
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(dir = %self.dir.display(), records = replayed, "replayed the WAL");
        }
        Ok(())
    }

    /// Checks every column's type against its series, and says whether every column's
    /// series is known (none to register). Registers nothing: new series are registered by
    /// [`State::register_types`] once the write is logged, so a tablet refused later
    /// (overload, a WAL failure) leaves no type behind.
    fn check_types(&self, tablet: &TabletRef<'_>) -> Result<bool> {
        let Some(known) = self.types.get(tablet.device) else {
            return Ok(tablet.columns.is_empty());
        };
        let mut all_known = true;
        for (position, column) in tablet.columns.iter().enumerate() {
            let actual = column.values.data_type();
            match known.get_column(position, column.measurement) {
                Some(expected) if expected != actual => {
                    return Err(StorageError::TypeMismatch {
                        series: format!("{}.{}", tablet.device, column.measurement),
                        expected,
                        actual,
                    });
                }
                Some(_) => {}
                None => all_known = false,
            }
        }
        Ok(all_known)
    }

    /// Registers the series of a checked and logged tablet that are new (called only when
    /// [`State::check_types`] found one).
    fn register_types(&mut self, tablet: &TabletRef<'_>) {
        let known = self.types.get(tablet.device);
        if tablet
            .columns
            .iter()
            .all(|c| known.is_some_and(|m| m.get(c.measurement).is_some()))
        {
            return;
        }
        let series = self.types.entry(tablet.device.clone()).or_default();
        for column in &tablet.columns {
            series.get_or_insert(column.measurement, column.values.data_type());
        }
    }

    /// Appends a logged tablet to the memtable; `record`, its compact record's
    /// preparation, holds digits the memtable appends as they are.
    fn apply(&mut self, tablet: &TabletRef<'_>, record: Option<&wal_entry::TabletRecord>) {
        let rows = tablet.rows();
        let converted = |column| record.and_then(|record| record.converted(column, rows));
        let interval = self.config.time_partition_interval_ms;
        let flushed = &self.flushed_last_time;
        let device = tablet.device;
        // The rows of a tablet nearly always share one time partition: look its flushed
        // time up once, not once per row.
        let memo: std::cell::Cell<Option<(i64, Option<Timestamp>)>> = std::cell::Cell::new(None);
        self.active.apply_converted(
            tablet,
            converted,
            |t| partition_of(t, interval),
            |slot, t| {
                let last = match memo.get() {
                    Some((memo_slot, last)) if memo_slot == slot => last,
                    _ => {
                        let last = flushed.get(&(slot, device.clone())).copied();
                        memo.set(Some((slot, last)));
                        last
                    }
                };
                match last {
                    Some(last) if t <= last => Side::Unsequence,
                    _ => Side::Sequence,
                }
            },
        );
        self.offer_last(tablet);
    }

    /// Offers a written tablet's newest points to the last-value cache: each replaces an
    /// older or equal-time entry (equal: the newer write wins). A series without an entry
    /// stays without one: older files may hold newer points, and only a read of every
    /// source may fill it.
    fn offer_last(&mut self, tablet: &TabletRef<'_>) {
        let Some(cached) = self.last_cache.get_mut(tablet.device) else {
            return;
        };
        // The newest row (the later of equal times) of a column without nulls is the same
        // for every such column.
        let newest_row = (0..tablet.rows()).max_by_key(|&r| (tablet.timestamps[r], r));
        for column in &tablet.columns {
            let Some(entry) = cached.get_mut(column.measurement) else {
                continue;
            };
            let newest = if !column.has_nulls() {
                newest_row
            } else {
                (0..tablet.rows())
                    .filter(|&r| !column.is_null(r))
                    .max_by_key(|&r| (tablet.timestamps[r], r))
            };
            if let Some(row) = newest
                && entry.0 <= tablet.timestamps[row]
            {
                *entry = (tablet.timestamps[row], column.values.get(row));
            }
        }
    }

    /// Fills the last-value cache with the newest point read from every source.
    fn cache_last(
        &mut self,
        device: &Arc<str>,
        measurement: &Arc<str>,
        t: Timestamp,
        value: Value,
    ) {
        let series = match self.last_cache.get_mut(device) {
            Some(s) => s,
            None => self.last_cache.entry(device.clone()).or_default(),
        };
        series.insert(measurement.clone(), (t, value));
    }

    /// Every piece of `key` that may hold points in `range`, deleted points removed (a
    /// chunk a deletion overlaps is decoded and filtered, so its statistics are not used).
    fn pieces(&self, key: &SeriesKey, range: TimeRange) -> Result<Vec<RankedPiece<'_>>> {
        let mut pieces = Vec::new();
        if range.is_empty() {
            return Ok(pieces);
        }
        let interval = self.config.time_partition_interval_ms;
        let slots = partition_of(range.start, interval)..=partition_of(range.end - 1, interval);
        for live in self.files.range(slots.clone()).flat_map(|(_, f)| f) {
            if let Some(meta) = live.file.find(key) {
                for chunk in &meta.chunks {
                    if range.overlaps(chunk.stats.min_time, chunk.stats.max_time) {
                        pieces.extend(query::chunk_piece(
                            live.entry.version,
                            &live.file,
                            chunk,
                            &live.deletions,
                            key,
                        )?);
                    }
                }
            }
        }
        for frozen in &self.frozen {
            for (&slot, _) in frozen.memtable.partitions.range(slots.clone()) {
                if let Some(points) = frozen.memtable.read(slot, key) {
                    let deleted = match (points.timestamps.first(), points.timestamps.last()) {
                        (Some(&min), Some(&max)) => {
                            deletion::ranges_for(&frozen.deletions, key, min, max)
                        }
                        _ => Vec::new(),
                    };
                    pieces.extend(RankedPiece::points(
                        FROZEN_RANK_BASE + frozen.sequence,
                        deletion::without(points, &deleted),
                    ));
                }
            }
        }
        for (&slot, _) in self.active.partitions.range(slots) {
            if let Some(points) = self.active.read(slot, key) {
                pieces.extend(RankedPiece::points(ACTIVE_RANK, points));
            }
        }
        Ok(pieces)
    }

    /// Applies deletions logged at WAL `index`: every point held now is in a frozen
    /// memtable or a sealed file after the freeze, and each of those takes the deletions;
    /// cached last points of the series are forgotten.
    fn apply_deletions(&mut self, index: u64, deletions: &[Deletion]) {
        self.freeze(index.saturating_sub(1));
        for frozen in &mut self.frozen {
            for d in deletions {
                deletion::attach(&mut frozen.deletions, d);
            }
        }
        for live in self.files.values_mut().flatten() {
            for d in deletions {
                if live.file.find(&d.key).is_some() {
                    deletion::attach(&mut live.deletions, d);
                }
            }
        }
        for d in deletions {
            if let Some(series) = self.last_cache.get_mut(&d.key.device) {
                series.remove(&d.key.measurement);
            }
        }
    }

    /// The deletions of every live file, by file id (what MODS holds).
    fn mods(&self) -> BTreeMap<u64, Vec<Deletion>> {
        self.files
            .values()
            .flatten()
            .filter(|f| !f.deletions.is_empty())
            .map(|f| (f.entry.id, f.deletions.clone()))
            .collect()
    }

    /// Turns the active memtable into a frozen one (if it holds anything).
    fn freeze(&mut self, last_index: u64) {
        if self.active.is_empty() {
            return;
        }
        let memtable = std::mem::take(&mut self.active).freeze();
        // Points at or before what is frozen now are unsequence from here on.
        for (&slot, partition) in &memtable.partitions {
            for side in [&partition.sequence, &partition.unsequence] {
                for (device, series) in &side.devices {
                    let newest = series.values().filter_map(|b| b.last_time()).max();
                    if let Some(newest) = newest {
                        let entry = self
                            .flushed_last_time
                            .entry((slot, device.clone()))
                            .or_insert(newest);
                        *entry = (*entry).max(newest);
                    }
                }
            }
        }
        self.frozen_sequence += 1;
        self.frozen.push_back(Frozen {
            sequence: self.frozen_sequence,
            memtable: Arc::new(memtable),
            last_index,
            deletions: Vec::new(),
        });
    }

    fn sealed_dir(&self) -> PathBuf {
        self.dir.join("sealed")
    }

    fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            compression: self.config.compression,
            chunk_points_max: self.config.chunk_points_max,
        }
    }

    /// Queues the flush of the oldest frozen memtable on the background pool (urgent
    /// class); a full queue leaves it for the next tick.
    fn start_flush(&mut self) {
        if self.flush_busy() || self.read_only.is_some() {
            return;
        }
        let Some(frozen) = self.frozen.front() else {
            return;
        };
        let ids_before = self.manifest.next_file_id;
        let mut planned = Vec::new();
        for (&slot, partition) in &frozen.memtable.partitions {
            for (kind, side) in [
                (FileKind::Sequence, &partition.sequence),
                (FileKind::Unsequence, &partition.unsequence),
            ] {
                if side.is_empty() {
                    continue;
                }
                let id = self.manifest.allocate_id();
                planned.push(FileEntry {
                    id,
                    version: id,
                    partition: slot,
                    kind,
                    level: 0,
                });
            }
        }
        let memtable = frozen.memtable.clone();
        let sequence = frozen.sequence;
        let sealed_dir = self.sealed_dir();
        let options = self.writer_options();
        let cancel = Arc::new(AtomicBool::new(false));
        let job_cancel = cancel.clone();
        let file_system = self.file_system.clone();
        let submitted = self.pool.try_run(JobClass::Urgent, move || {
            let target = FlushTarget {
                file_system: &*file_system,
                sealed_dir: &sealed_dir,
                options,
            };
            write_flush_files(&memtable, planned, &target, &job_cancel)
                .map(|files| FlushOutput { sequence, files })
        });
        match submitted {
            Ok(receiver) => self.flush_job = Some(Job { receiver, cancel }),
            Err(full) => {
                // Nothing was written: hand the ids back and ask again next tick.
                self.manifest.next_file_id = ids_before;
                self.jobs_deferred += 1;
                tracing::debug!(dir = %self.dir.display(), error = %full, "flush deferred");
            }
        }
    }

    /// A flush, compaction or metadata write failed: the region takes no more writes and
    /// starts no more jobs. Retrying is not safe in general: after a failed fsync the
    /// kernel may have dropped the dirty pages, so a later successful fsync proves nothing
    /// (the WAL follows the same rule). Every acknowledged write is still in the WAL (no
    /// manifest passed it), and a restart recovers from what is durable.
    fn turn_read_only(&mut self, what: &str, error: &StorageError) {
        if matches!(error, StorageError::Closed) {
            return;
        }
        tracing::error!(dir = %self.dir.display(), error = %error, "{what} failed: the region is read-only until it is reopened");
        if self.read_only.is_none() {
            self.read_only = Some(format!("{what} failed: {error}"));
        }
    }

    /// Whether a flush is anywhere between queued and installed.
    fn flush_busy(&self) -> bool {
        self.flush_job.is_some()
            || self.flush_ready.is_some()
            || matches!(
                self.metadata_job,
                Some(MetadataJob {
                    install: Install::Flush { .. },
                    ..
                })
            )
    }

    /// The partition a compaction works on, from queued to installed.
    fn compacting_partition(&self) -> Option<i64> {
        if let Some((partition, _)) = &self.compaction_job {
            return Some(*partition);
        }
        if let Some(output) = &self.compaction_ready {
            return Some(output.partition);
        }
        match &self.metadata_job {
            Some(MetadataJob {
                install: Install::Compaction { output, .. },
                ..
            }) => Some(output.partition),
            _ => None,
        }
    }

    /// Takes the results of finished flush and compaction jobs; they are installed through
    /// a metadata write ([`State::start_metadata`]).
    fn collect_jobs(&mut self) -> Result<()> {
        if let Some(job) = &mut self.flush_job
            && let Some(output) = job.try_finish("flush")
        {
            self.flush_job = None;
            let output = output?;
            crate::metrics::flushed(output.files.iter().map(|f| f.file.bytes()).sum());
            assert!(self.flush_ready.is_none(), "one flush at a time");
            self.flush_ready = Some(output);
        }
        if let Some((_, job)) = &mut self.compaction_job
            && let Some(output) = job.try_finish("compaction")
        {
            self.compaction_job = None;
            let output = output?;
            crate::metrics::compacted(output.output.as_ref().map_or(0, |f| f.file.bytes()));
            assert!(self.compaction_ready.is_none(), "one compaction at a time");
            self.compaction_ready = Some(output);
        }
        Ok(())
    }

    /// Queues a metadata write on the background pool: MODS first, then the manifest, each
    /// replaced atomically (temp file, fsync, rename, directory fsync). `install` is
    /// applied in memory once both are durable ([`State::finish_metadata`]). A full queue
    /// hands `install` back unsubmitted.
    fn submit_metadata(
        &mut self,
        install: Install,
        mods: Option<BTreeMap<u64, Vec<Deletion>>>,
        manifest: Option<Manifest>,
    ) -> std::result::Result<(), Box<Install>> {
        assert!(self.metadata_job.is_none(), "one metadata write at a time");
        let dir = self.dir.clone();
        let writes_mods = mods.is_some();
        let file_system = self.file_system.clone();
        let submitted = self.pool.try_run(JobClass::Urgent, move || {
            // MODS first: a manifest naming files without their deletions would resurrect
            // deleted points once the WAL records below the flushed index are gone.
            if let Some(mods) = mods {
                deletion::store_in(&*file_system, &dir, &mods)?;
            }
            if let Some(manifest) = manifest {
                manifest.store_in(&*file_system, &dir)?;
            }
            Ok(())
        });
        match submitted {
            Ok(receiver) => {
                if writes_mods {
                    // Every deletion held now is in this write; later ones dirty it again.
                    self.mods_dirty = false;
                }
                self.metadata_job = Some(MetadataJob {
                    receiver,
                    install,
                    writes_mods,
                });
                Ok(())
            }
            Err(full) => {
                self.jobs_deferred += 1;
                tracing::debug!(dir = %self.dir.display(), error = %full, "metadata write deferred");
                Err(Box::new(install))
            }
        }
    }

    /// The MODS content with `extra` files' deletions added, when it must be written: some
    /// of `extra` carry deletions, or a deletion since the last write is not in it yet.
    fn mods_with(&self, extra: &[&LiveFile]) -> Option<BTreeMap<u64, Vec<Deletion>>> {
        if !self.mods_dirty && extra.iter().all(|f| f.deletions.is_empty()) {
            return None;
        }
        let mut mods = self.mods();
        for live in extra {
            if !live.deletions.is_empty() {
                mods.insert(live.entry.id, live.deletions.clone());
            }
        }
        Some(mods)
    }

    /// Starts the next metadata write if none runs: a finished flush first (back-pressure
    /// waits on it), then a finished compaction, then wholly expired partitions, then MODS
    /// alone when a deletion is not in it yet.
    fn start_metadata(&mut self) {
        if self.metadata_job.is_some() || self.read_only.is_some() {
            return;
        }
        if let Some(output) = self.flush_ready.take() {
            let (install, mods, manifest) = self.plan_flush_install(output);
            if let Err(install) = self.submit_metadata(install, mods, Some(manifest)) {
                let Install::Flush { output, .. } = *install else {
                    unreachable!("submit_metadata hands back what it was given")
                };
                self.flush_ready = Some(output);
            }
            return;
        }
        if let Some(output) = self.compaction_ready.take() {
            if let Some((install, mods, manifest)) = self.plan_compaction_install(output)
                && let Err(install) = self.submit_metadata(install, mods, Some(manifest))
            {
                let Install::Compaction { output, .. } = *install else {
                    unreachable!("submit_metadata hands back what it was given")
                };
                self.compaction_ready = Some(output);
            }
            return;
        }
        let expired = self.expired_partitions();
        if !expired.is_empty() {
            let mut manifest = self.manifest.clone();
            manifest.files.retain(|f| !expired.contains(&f.partition));
            let install = Install::Expire {
                partitions: expired,
                manifest: manifest.clone(),
            };
            // A full queue: the next tick finds the partitions again.
            let _ = self.submit_metadata(install, None, Some(manifest));
            return;
        }
        if self.mods_dirty {
            let mods = self.mods();
            let _ = self.submit_metadata(Install::Mods, Some(mods), None);
        }
    }

    /// What installing a finished flush writes: its files inherit the frozen memtable's
    /// deletions (in MODS), and the manifest names them and covers the WAL up to the
    /// memtable's last index.
    fn plan_flush_install(&self, mut output: FlushOutput) -> (Install, Option<Mods>, Manifest) {
        let frozen = self
            .frozen
            .front()
            .expect("a flush runs for the oldest frozen memtable");
        assert_eq!(frozen.sequence, output.sequence, "flushes install in order");
        inherit_deletions(&mut output.files, &frozen.deletions);
        let mods = self.mods_with(&output.files.iter().collect::<Vec<_>>());
        let mut manifest = self.manifest.clone();
        manifest
            .files
            .extend(output.files.iter().map(|f| f.entry.clone()));
        manifest.flushed_index = manifest.flushed_index.max(frozen.last_index);
        let install = Install::Flush {
            output,
            manifest: manifest.clone(),
            deletions_seen: frozen.deletions.len(),
        };
        (install, mods, manifest)
    }

    /// What installing a finished compaction writes, or `None` (its output removed) when
    /// its inputs are gone (the partition expired meanwhile).
    fn plan_compaction_install(
        &mut self,
        mut output: CompactionOutput,
    ) -> Option<(Install, Option<Mods>, Manifest)> {
        let inputs_live = self.files.get(&output.partition).is_some_and(|current| {
            output
                .inputs
                .iter()
                .all(|id| current.iter().any(|f| f.entry.id == *id))
        });
        if !inputs_live {
            if let Some(out) = output.output {
                self.files_to_remove.push(out.file.path().to_path_buf());
            }
            return None;
        }
        let deletions_seen = self.carry_late_deletions(&mut output);
        let mods = match &output.output {
            Some(out) => self.mods_with(&[out]),
            None => self.mods_with(&[]),
        };
        let mut manifest = self.manifest.clone();
        manifest.files.retain(|f| !output.inputs.contains(&f.id));
        if let Some(out) = &output.output {
            manifest.files.push(out.entry.clone());
        }
        let install = Install::Compaction {
            output,
            manifest: manifest.clone(),
            deletions_seen,
        };
        Some((install, mods, manifest))
    }

    /// Deletions that reached a compaction's inputs after the job took them were not
    /// applied: the output keeps them. Returns how many the output carries.
    fn carry_late_deletions(&self, output: &mut CompactionOutput) -> usize {
        let current = &self.files[&output.partition];
        let Some(out) = &mut output.output else {
            return 0;
        };
        for (id, applied) in output.inputs.iter().zip(&output.applied_deletions) {
            let input = current
                .iter()
                .find(|f| f.entry.id == *id)
                .expect("the inputs are live");
            for d in input.deletions.iter().skip(*applied) {
                if out.file.find(&d.key).is_some() {
                    deletion::attach(&mut out.deletions, d);
                }
            }
        }
        out.deletions.len()
    }

    /// Applies a finished metadata write in memory: the manifest and MODS are durable now.
    /// A failed write installs nothing and the region turns read-only
    /// ([`State::turn_read_only`]): the MANIFEST on disk is then the old one or, when only
    /// the directory fsync failed, possibly the new one; either names only durable files,
    /// and the next open recovers from it and the WAL.
    fn finish_metadata(&mut self, wal: &Wal) -> Result<()> {
        let Some(job) = &mut self.metadata_job else {
            return Ok(());
        };
        let result = match job.receiver.try_recv() {
            Ok(None) => return Ok(()),
            Ok(Some(result)) => result,
            Err(_) => Err(StorageError::BackgroundJob(
                "the metadata write job died".into(),
            )),
        };
        let job = self.metadata_job.take().expect("checked above");
        if let Err(e) = result {
            if job.writes_mods {
                self.mods_dirty = true;
            }
            return Err(e);
        }
        match job.install {
            Install::Flush {
                output,
                manifest,
                deletions_seen,
            } => self.install_flush(wal, output, manifest, deletions_seen),
            Install::Compaction {
                output,
                manifest,
                deletions_seen,
            } => self.install_compaction(output, manifest, deletions_seen),
            Install::Expire {
                partitions,
                manifest,
            } => {
                self.install_expiry(partitions, manifest);
                Ok(())
            }
            Install::Mods => Ok(()),
        }
    }

    /// Takes `manifest` (durable now) as the region's, keeping file ids allocated since it
    /// was planned.
    fn adopt_manifest(&mut self, mut manifest: Manifest) {
        assert!(
            manifest.flushed_index >= self.manifest.flushed_index,
            "the flushed index never goes back"
        );
        manifest.next_file_id = manifest.next_file_id.max(self.manifest.next_file_id);
        self.manifest = manifest;
    }

    /// A flush whose manifest is durable: memory, then the WAL below the flushed index.
    fn install_flush(
        &mut self,
        wal: &Wal,
        mut output: FlushOutput,
        manifest: Manifest,
        deletions_seen: usize,
    ) -> Result<()> {
        let frozen = self
            .frozen
            .front()
            .expect("a flush installs for the oldest frozen memtable");
        assert_eq!(frozen.sequence, output.sequence, "flushes install in order");
        if frozen.deletions.len() != deletions_seen {
            // Deletions issued while MODS and the manifest were written: the WAL still
            // holds them (past the flushed index); the next metadata write persists them.
            inherit_deletions(&mut output.files, &frozen.deletions);
            self.mods_dirty = true;
        }
        self.adopt_manifest(manifest);
        for live in output.files {
            self.add_file(live)?;
        }
        self.frozen.pop_front();
        self.flushes += 1;
        self.last_flush_installed = Some(Instant::now());
        self.trim_wal(wal)
    }

    /// Drops WAL segments the region no longer needs: every one below the flushed index,
    /// except those a retention floor keeps for followers while the WAL stays within
    /// `wal_retention_bytes_max` (past it, the oldest flushed segments go anyway).
    fn trim_wal(&mut self, wal: &Wal) -> Result<()> {
        let flushed_bound = self.manifest.flushed_index + 1;
        let bound = match self.retention_floor {
            None => flushed_bound,
            Some(floor) => {
                let mut bound = floor.min(flushed_bound);
                let mut total = wal.disk_bytes();
                for span in wal.segment_spans() {
                    if total <= self.config.wal_retention_bytes_max {
                        break;
                    }
                    match span.last_index {
                        Some(last) if last < flushed_bound => {
                            bound = bound.max(last + 1);
                            total -= span.bytes;
                        }
                        _ => break,
                    }
                }
                bound
            }
        };
        wal.remove_segments_below(bound)?;
        // The WAL keeps a segment whose write is still in flight (or the active one until
        // it is idle); what should have gone goes at a later tick.
        self.wal_trim_pending = wal
            .segment_spans()
            .first()
            .and_then(|oldest| oldest.last_index)
            .is_some_and(|last| last < bound);
        Ok(())
    }

    /// A compaction whose manifest is durable: swap inputs for the output in memory, then
    /// delete the inputs (open readers keep their mappings).
    fn install_compaction(
        &mut self,
        mut output: CompactionOutput,
        manifest: Manifest,
        deletions_seen: usize,
    ) -> Result<()> {
        assert!(
            self.files
                .get(&output.partition)
                .is_some_and(|current| output
                    .inputs
                    .iter()
                    .all(|id| current.iter().any(|f| f.entry.id == *id))),
            "metadata writes are serialized: nothing removed the inputs meanwhile"
        );
        if self.carry_late_deletions(&mut output) != deletions_seen {
            self.mods_dirty = true;
        }
        self.adopt_manifest(manifest);
        let removed: Vec<LiveFile> = {
            let files = self
                .files
                .get_mut(&output.partition)
                .expect("checked above");
            let (gone, kept): (Vec<LiveFile>, Vec<LiveFile>) = files
                .drain(..)
                .partition(|f| output.inputs.contains(&f.entry.id));
            *files = kept;
            if let Some(out) = output.output {
                files.push(out);
            }
            gone
        };
        if self.files.get(&output.partition).is_some_and(Vec::is_empty) {
            self.files.remove(&output.partition);
        }
        if removed.iter().any(|f| !f.deletions.is_empty()) {
            // Applied physically now: MODS no longer needs the inputs' entries.
            self.mods_dirty = true;
        }
        self.files_to_remove
            .extend(removed.iter().map(|f| f.file.path().to_path_buf()));
        self.compactions += 1;
        Ok(())
    }

    /// Expired partitions whose manifest is durable: forget and delete their files.
    fn install_expiry(&mut self, partitions: Vec<i64>, manifest: Manifest) {
        self.adopt_manifest(manifest);
        // Cached last points may lie in the dropped files; the next read refills the cache.
        self.last_cache.clear();
        for partition in partitions {
            for live in self.files.remove(&partition).unwrap_or_default() {
                self.mods_dirty |= !live.deletions.is_empty();
                self.files_to_remove.push(live.file.path().to_path_buf());
            }
            self.flushed_last_time.retain(|(p, _), _| *p != partition);
            tracing::info!(dir = %self.dir.display(), partition, "dropped an expired time partition");
        }
    }

    /// Partitions wholly before the TTL cut-off (not one being compacted).
    fn expired_partitions(&self) -> Vec<i64> {
        let Some(ttl) = self.config.ttl_ms else {
            return Vec::new();
        };
        let cutoff = (self.clock)().saturating_sub(ttl);
        let interval = self.config.time_partition_interval_ms;
        let compacting = self.compacting_partition();
        self.files
            .keys()
            .copied()
            .take_while(|&p| (p + 1).saturating_mul(interval) <= cutoff)
            .filter(|&p| Some(p) != compacting)
            .collect()
    }

    /// Deletes replaced sealed files on the pool; the manifest no longer names them, so a
    /// crash before this leaves orphans that the next open removes.
    fn start_removals(&mut self) {
        if let Some(job) = &mut self.removal_job {
            match job.try_recv() {
                Ok(None) => return,
                Ok(Some(_)) | Err(_) => self.removal_job = None,
            }
        }
        if self.files_to_remove.is_empty() {
            return;
        }
        let paths = std::mem::take(&mut self.files_to_remove);
        let job_paths = paths.clone();
        let file_system = self.file_system.clone();
        match self.pool.try_run(JobClass::Urgent, move || {
            for path in &job_paths {
                remove_file_logged(&*file_system, path);
            }
            Ok(())
        }) {
            Ok(receiver) => self.removal_job = Some(receiver),
            Err(_) => {
                self.jobs_deferred += 1;
                self.files_to_remove = paths;
            }
        }
    }

    /// Drops finished jobs; whether any still runs (for [`Region::close`]).
    fn poll_jobs_for_close(&mut self) -> bool {
        if let Some(job) = &mut self.flush_job
            && job.try_finish("flush").is_some()
        {
            self.flush_job = None;
        }
        if let Some((_, job)) = &mut self.compaction_job
            && job.try_finish("compaction").is_some()
        {
            self.compaction_job = None;
        }
        if let Some(job) = &mut self.metadata_job
            && !matches!(job.receiver.try_recv(), Ok(None))
        {
            self.metadata_job = None;
        }
        if let Some(job) = &mut self.removal_job
            && !matches!(job.try_recv(), Ok(None))
        {
            self.removal_job = None;
        }
        self.flush_job.is_some()
            || self.compaction_job.is_some()
            || self.metadata_job.is_some()
            || self.removal_job.is_some()
    }

    /// Checks what holds between ticks.
    fn check_invariants(&self) {
        assert!(
            self.flush_ready.is_none() || self.flush_job.is_none(),
            "one flush at a time"
        );
        let compactions = usize::from(self.compaction_job.is_some())
            + usize::from(self.compaction_ready.is_some())
            + usize::from(matches!(
                self.metadata_job,
                Some(MetadataJob {
                    install: Install::Compaction { .. },
                    ..
                })
            ));
        assert!(compactions <= 1, "one compaction at a time");
        if let Some(MetadataJob {
            install: Install::Flush { output, .. },
            ..
        }) = &self.metadata_job
        {
            assert_eq!(
                self.frozen.front().map(|f| f.sequence),
                Some(output.sequence),
                "a flush installs for the oldest frozen memtable"
            );
        }
        assert!(
            self.manifest.flushed_index < self.next_index,
            "the manifest covers only logged records"
        );
    }

    /// The partition compaction should work on next, if any: one with several files of
    /// which one is unsequence, or at least `compaction_files_trigger` of them, or which
    /// has gone cold ([`State::is_cold`]).
    fn eligible_partition(&self) -> Option<i64> {
        self.files
            .iter()
            .find(|&(&partition, files)| {
                files.len() >= 2
                    && (files.len() >= self.config.compaction_files_trigger
                        || files.iter().any(|f| f.entry.kind == FileKind::Unsequence)
                        || self.is_cold(partition))
            })
            .map(|(&p, _)| p)
    }

    /// Whether `partition` takes no writes now: nothing of it in the active or a frozen
    /// memtable, and no flush installed for `compaction_cold_delay` (no delay while
    /// [`Region::compact`] runs).
    fn is_cold(&self, partition: i64) -> bool {
        let delay = if self.compact_requested {
            Duration::ZERO
        } else {
            self.config.compaction_cold_delay
        };
        !self.active.partitions.contains_key(&partition)
            && self
                .frozen
                .iter()
                .all(|f| !f.memtable.partitions.contains_key(&partition))
            && self
                .last_flush_installed
                .is_none_or(|installed| installed.elapsed() >= delay)
    }

    fn start_compaction(&mut self) {
        if self.compacting_partition().is_some() || self.read_only.is_some() {
            return;
        }
        let Some(partition) = self.eligible_partition() else {
            return;
        };
        let inputs: Vec<compaction::Input> = self.files[&partition]
            .iter()
            .map(|f| compaction::Input {
                version: f.entry.version,
                file: f.file.clone(),
                deletions: f.deletions.clone(),
            })
            .collect();
        let applied_deletions: Vec<usize> = inputs.iter().map(|i| i.deletions.len()).collect();
        let input_ids: Vec<u64> = self.files[&partition].iter().map(|f| f.entry.id).collect();
        let level = self.files[&partition]
            .iter()
            .map(|f| f.entry.level)
            .max()
            .unwrap_or(0);
        let ids_before = self.manifest.next_file_id;
        let id = self.manifest.allocate_id();
        let entry = FileEntry {
            id,
            version: inputs.iter().map(|i| i.version).max().unwrap_or(id),
            partition,
            kind: FileKind::Sequence,
            level: level.saturating_add(1),
        };
        let path = self.sealed_dir().join(entry.file_name());
        let options = self.writer_options();
        let rate = self.config.compaction_bytes_per_second;
        let cancel = Arc::new(AtomicBool::new(false));
        let job_cancel = cancel.clone();
        let file_system = self.file_system.clone();
        let submitted = self.pool.try_run(JobClass::Compaction, move || {
            let file_system = &*file_system;
            let written =
                compaction::merge_files(file_system, &inputs, &path, options, rate, &job_cancel)?;
            // The output's directory entry must be durable before the manifest names it
            // and the inputs are deleted.
            if written.is_some()
                && let Some(sealed) = path.parent()
            {
                manifest::sync_dir(file_system, sealed)?;
            }
            let output = written.map(|file| LiveFile {
                entry,
                file: Arc::new(file),
                deletions: Vec::new(),
            });
            Ok(CompactionOutput {
                partition,
                inputs: input_ids,
                applied_deletions,
                output,
            })
        });
        match submitted {
            Ok(receiver) => self.compaction_job = Some((partition, Job { receiver, cancel })),
            Err(full) => {
                // Nothing was written: hand the id back and ask again next tick.
                self.manifest.next_file_id = ids_before;
                self.jobs_deferred += 1;
                tracing::debug!(dir = %self.dir.display(), error = %full, "compaction deferred");
            }
        }
    }
}

/// Gives each flushed file the deletions of its memtable that name a series it holds.
fn inherit_deletions(files: &mut [LiveFile], deletions: &[Deletion]) {
    for live in files {
        live.deletions = deletions
            .iter()
            .filter(|d| live.file.find(&d.key).is_some())
            .cloned()
            .collect();
    }
}

fn remove_file_logged(file_system: &dyn FileSystem, path: &Path) {
    if let Err(e) = file_system.remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "removing a replaced sealed file failed");
    }
}

/// Where and how a flush writes its files.
struct FlushTarget<'a> {
    file_system: &'a dyn FileSystem,
    sealed_dir: &'a Path,
    options: WriterOptions,
}

/// Writes the planned files of a frozen memtable (on a background pool worker).
fn write_flush_files(
    memtable: &FrozenMemtable,
    planned: Vec<FileEntry>,
    target: &FlushTarget<'_>,
    cancel: &AtomicBool,
) -> Result<Vec<LiveFile>> {
    let mut out = Vec::with_capacity(planned.len());
    for entry in planned {
        if cancel.load(Ordering::Relaxed) {
            return Err(StorageError::Closed);
        }
        let partition = &memtable.partitions[&entry.partition];
        let side = match entry.kind {
            FileKind::Sequence => &partition.sequence,
            FileKind::Unsequence => &partition.unsequence,
        };
        // A series whose cells were all null has a buffer but no points.
        let series: Vec<_> = side
            .sorted_series()
            .into_iter()
            .filter(|(_, buffer)| !buffer.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let path = target.sealed_dir.join(entry.file_name());
        let mut writer = SealedFileWriter::create_in(target.file_system, &path, target.options)?;
        // A series kept as first, step and count is written so; the others' timestamps
        // are spelled out (one buffer for all of them). DOUBLE values kept as decimal
        // digits are encoded from the digits.
        let mut scratch = ReadScratch::default();
        for (key, buffer) in series {
            let decimal = buffer.decimal_run();
            match buffer.evenly_spaced(&mut scratch) {
                Some((first, step, values)) => {
                    writer.write_evenly_spaced_with(&key, first, step, values, decimal)?;
                }
                None => writer.write_points_with(&key, buffer.points(&mut scratch), decimal)?,
            }
        }
        out.push(LiveFile {
            entry,
            file: Arc::new(writer.finish_open()?),
            deletions: Vec::new(),
        });
    }
    manifest::sync_dir(target.file_system, target.sealed_dir)?;
    Ok(out)
}
