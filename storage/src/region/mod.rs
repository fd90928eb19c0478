//! A region replica: the WAL, the memtables, the sealed files and the background work
//! (flush, compaction, TTL) of one DataRegion, owned by one shard.
//!
//! ```text
//!  shard thread                                       background threads
//!  ────────────                                       ──────────────────
//!  write ─► WAL.append ─► active memtable
//!                            │ over memtable_flush_bytes: freeze
//!                            ▼
//!                      frozen memtables (readable) ──► flush job: encode, write, fsync files
//!                            ▲                                │
//!  tick (every 10 ms) ◄──────┴── install: manifest, drop WAL ◄┘
//!        │
//!        ├─► compaction job (one partition's files → one file, rate limited) ─► install
//!        └─► TTL: drop wholly expired partitions
//! ```
//!
//! [`Region`] is a cheap handle (`Rc`): it is `!Send` and lives on the shard that owns the
//! region; only immutable data (frozen memtables, sealed files) crosses to the background
//! threads. No `RefCell` borrow is held across an `.await`.

pub mod deletion;
mod manifest;
pub mod wal_entry;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::compaction;
use crate::config::RegionConfig;
use crate::error::{Result, StorageError};
use crate::filter::{FilterCounters, ValueFilter};
use crate::memtable::{FrozenMemtable, Memtable, Side};
use crate::query::{self, AggregateRow, Aggregation, RankedPiece, Windows};
use crate::sealed::{SealedFile, SealedFileWriter, WriterOptions};
use crate::types::{DataType, PointColumn, SeriesKey, Tablet, TimeRange, Timestamp, Value};
use crate::wal::{Wal, WalOptions, WalRecord};

pub use deletion::Deletion;
pub use manifest::{FileEntry, FileKind, Manifest};

/// How often the background task installs finished jobs and starts new ones.
const TICK_INTERVAL: Duration = Duration::from_millis(10);
/// Wait before retrying a failed flush or compaction (a full disk may clear).
const JOB_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Ranks of frozen memtables start here: above every file version, below the active one.
const FROZEN_RANK_BASE: u64 = 1 << 62;
const ACTIVE_RANK: u64 = u64::MAX;
/// The largest WAL encoding buffer kept for reuse between writes (a huge tablet's buffer
/// is freed rather than held).
const WAL_SCRATCH_BYTES_MAX: usize = 1 << 20;

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

/// A job running on a background thread.
struct Job<T> {
    receiver: oneshot::Receiver<Result<T>>,
    cancel: Arc<AtomicBool>,
}

impl<T> Job<T> {
    /// The job's result once its thread is done (a thread that died is an error), or
    /// `None` while it runs.
    fn try_finish(&mut self, what: &str) -> Option<Result<T>> {
        match self.receiver.try_recv() {
            Ok(None) => None,
            Ok(Some(result)) => Some(result),
            Err(_) => Some(Err(StorageError::BackgroundJob(format!(
                "the {what} thread died"
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

/// Counters a region reports (for `SHOW REGIONS` and benchmarks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    pub series: usize,
    pub sealed_files: usize,
    pub sealed_bytes: u64,
    pub wal_bytes: u64,
    pub memtable_bytes: usize,
    pub frozen_memtables: usize,
    pub last_index: u64,
    pub flushed_index: u64,
    pub flushes: u64,
    pub compactions: u64,
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
type LastCache = HashMap<Arc<str>, HashMap<Arc<str>, (Timestamp, Value)>>;

struct State {
    dir: PathBuf,
    config: RegionConfig,
    clock: Clock,
    manifest: Manifest,
    /// partition → files, in manifest order.
    files: BTreeMap<i64, Vec<LiveFile>>,
    /// device → measurement → type: a series keeps the type of its first write.
    types: HashMap<Arc<str>, HashMap<Arc<str>, DataType>>,
    active: Memtable,
    frozen: VecDeque<Frozen>,
    frozen_sequence: u64,
    /// (partition, device) → the newest time frozen or flushed: older points are unsequence.
    flushed_last_time: HashMap<(i64, Arc<str>), Timestamp>,
    last_cache: LastCache,
    next_index: u64,
    /// Reused buffer for encoding WAL payloads.
    wal_scratch: Vec<u8>,
    flush_job: Option<Job<FlushOutput>>,
    compaction_job: Option<(i64, Job<CompactionOutput>)>,
    retry_after: Option<Instant>,
    last_job_error: Option<String>,
    read_only: Option<String>,
    closed: bool,
    flushes: u64,
    compactions: u64,
    /// When the last flush was installed: partitions count as cold only after
    /// `compaction_cold_delay` without one.
    last_flush_installed: Option<Instant>,
    /// Set while [`Region::compact`] runs: cold partitions qualify at once.
    compact_requested: bool,
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
        if config.time_partition_interval_ms <= 0 {
            return Err(StorageError::InvalidArgument(format!(
                "time_partition_interval must be positive, not {}",
                config.time_partition_interval_ms
            )));
        }
        let sealed_dir = dir.join("sealed");
        std::fs::create_dir_all(&sealed_dir)
            .map_err(|e| StorageError::io("create region directory", &sealed_dir, e))?;
        let manifest = Manifest::load(dir)?;
        remove_orphans(&sealed_dir, &manifest)?;
        let mut mods = deletion::load(dir)?;

        let mut state = State {
            dir: dir.to_path_buf(),
            config: config.clone(),
            clock,
            manifest: manifest.clone(),
            files: BTreeMap::new(),
            types: HashMap::new(),
            active: Memtable::default(),
            frozen: VecDeque::new(),
            frozen_sequence: 0,
            flushed_last_time: HashMap::new(),
            last_cache: HashMap::new(),
            next_index: manifest.flushed_index + 1,
            wal_scratch: Vec::new(),
            flush_job: None,
            compaction_job: None,
            retry_after: None,
            last_job_error: None,
            read_only: None,
            closed: false,
            flushes: 0,
            compactions: 0,
            last_flush_installed: None,
            compact_requested: false,
        };
        for entry in &manifest.files {
            let file = Arc::new(SealedFile::open(&sealed_dir.join(entry.file_name()))?);
            state.add_file(LiveFile {
                entry: entry.clone(),
                file,
                deletions: mods.remove(&entry.id).unwrap_or_default(),
            })?;
        }

        let (wal, records) = Wal::open(
            &dir.join("wal"),
            WalOptions {
                mode: config.wal_mode,
                async_fsync: config.wal_async_fsync,
                segment_bytes: config.wal_segment_bytes,
            },
        )?;
        state.replay(records)?;
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
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if state.closed {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &state.read_only {
            return Err(StorageError::ReadOnly(reason.clone()));
        }
        tablet.validate()?;
        state.check_types(tablet)?;
        let memtable_bytes = state.memtable_bytes();
        if memtable_bytes >= state.config.memtable_bytes_max {
            return Err(StorageError::Overloaded {
                memtable_bytes,
                limit_bytes: state.config.memtable_bytes_max,
            });
        }
        let index = state.next_index;
        // The encoding buffer is reused from write to write: no allocation per tablet.
        let mut payload = std::mem::take(&mut state.wal_scratch);
        payload.clear();
        wal_entry::encode(tablet, &mut payload);
        let appended = self.wal.append(index, wal_entry::KIND_TABLET, &payload);
        if payload.capacity() <= WAL_SCRATCH_BYTES_MAX {
            state.wal_scratch = payload;
        }
        if let Err(e) = appended {
            if let StorageError::ReadOnly(reason) = &e {
                state.read_only = Some(reason.clone());
            }
            return Err(e);
        }
        state.next_index += 1;
        state.register_types(tablet);
        state.apply(tablet);
        if state.active.heap_bytes() >= state.config.memtable_flush_bytes {
            state.freeze(index);
        }
        Ok(WriteAck {
            wal: self.wal.clone(),
            index,
        })
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
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if state.closed {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &state.read_only {
            return Err(StorageError::ReadOnly(reason.clone()));
        }
        if keys.len() > deletion::DELETION_KEYS_MAX {
            return Err(StorageError::InvalidArgument(format!(
                "a deletion names {} series, at most {}",
                keys.len(),
                deletion::DELETION_KEYS_MAX
            )));
        }
        let index = state.next_index;
        let mut payload = Vec::new();
        deletion::encode_record(keys, range, &mut payload);
        if let Err(e) = self.wal.append(index, deletion::KIND_DELETE, &payload) {
            if let StorageError::ReadOnly(reason) = &e {
                state.read_only = Some(reason.clone());
            }
            return Err(e);
        }
        state.next_index += 1;
        let deletions: Vec<Deletion> = keys
            .iter()
            .map(|key| Deletion {
                key: key.clone(),
                range,
            })
            .collect();
        state.apply_deletions(index, &deletions);
        if let Err(e) = state.store_mods() {
            state.read_only = Some(format!("persisting a deletion failed: {e}"));
            return Err(e);
        }
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
                series.iter().map(|(measurement, &t)| {
                    (
                        SeriesKey {
                            device: device.clone(),
                            measurement: measurement.clone(),
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

    /// The points of `key` in `range` that pass `filter` (`None` for an unknown series),
    /// with how the chunk statistics were used added to `counters`.
    pub fn scan_filtered(
        &self,
        key: &SeriesKey,
        range: TimeRange,
        filter: &ValueFilter,
        counters: &mut FilterCounters,
    ) -> Result<Option<PointColumn>> {
        let state = self.state.borrow();
        let Some(data_type) = state.series_type(key) else {
            return Ok(None);
        };
        let range = state.visible(range);
        query::scan_filtered(
            data_type,
            state.pieces(key, range)?,
            range,
            filter,
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
                let mut state = self.state.borrow_mut();
                if state.frozen.front().is_none_or(|f| f.sequence > target) {
                    return Ok(());
                }
                if let Some(error) = state.last_job_error.take() {
                    return Err(StorageError::BackgroundJob(format!(
                        "flush failed: {error}"
                    )));
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
                let mut state = self.state.borrow_mut();
                if let Some(error) = state.last_job_error.take() {
                    return Err(StorageError::BackgroundJob(format!(
                        "compaction failed: {error}"
                    )));
                }
                if state.compaction_job.is_none() && state.eligible_partition().is_none() {
                    return Ok(());
                }
                state.retry_after = None;
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
        if let Err(e) = state.poll_flush(&self.wal) {
            tracing::error!(dir = %state.dir.display(), error = %e, "installing a flush failed");
            state.last_job_error = Some(e.to_string());
        }
        if let Err(e) = state.poll_compaction() {
            tracing::error!(dir = %state.dir.display(), error = %e, "installing a compaction failed");
            state.last_job_error = Some(e.to_string());
        }
        if let Err(e) = state.drop_expired_partitions() {
            tracing::error!(dir = %state.dir.display(), error = %e, "dropping expired partitions failed");
        }
        if state.retry_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        state.start_flush();
        state.start_compaction();
    }

    /// Hard-links a consistent set of sealed files into `target` (which must not exist)
    /// with a manifest naming them; the WAL records after `wal_index` complete it.
    pub fn snapshot(&self, target: &Path) -> Result<SnapshotInfo> {
        let state = self.state.borrow();
        let sealed = target.join("sealed");
        std::fs::create_dir_all(&sealed)
            .map_err(|e| StorageError::io("create snapshot directory", &sealed, e))?;
        let mut bytes = 0;
        for live in state.files.values().flatten() {
            let name = live.entry.file_name();
            let from = state.dir.join("sealed").join(&name);
            let to = sealed.join(&name);
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
                .map_err(|e| StorageError::io("link snapshot file", &to, e))?;
            bytes += live.file.bytes();
        }
        manifest::sync_dir(&sealed)?;
        deletion::store(target, &state.mods())?;
        state.manifest.store(target)?;
        Ok(SnapshotInfo {
            dir: target.to_path_buf(),
            wal_index: state.manifest.flushed_index,
            files: state.manifest.files.len(),
            bytes,
        })
    }

    /// What the region holds.
    pub fn info(&self) -> RegionInfo {
        let state = self.state.borrow();
        RegionInfo {
            series: state.types.values().map(HashMap::len).sum(),
            sealed_files: state.manifest.files.len(),
            sealed_bytes: state.files.values().flatten().map(|f| f.file.bytes()).sum(),
            wal_bytes: self.wal.disk_bytes(),
            memtable_bytes: state.memtable_bytes(),
            frozen_memtables: state.frozen.len(),
            last_index: state.next_index - 1,
            flushed_index: state.manifest.flushed_index,
            flushes: state.flushes,
            compactions: state.compactions,
            read_only: state.read_only.clone(),
        }
    }

    /// Stops background work and closes the WAL. With `flush`, memtables are flushed first
    /// (a clean shutdown); without, the WAL alone holds them (as after a crash).
    pub async fn close(self, flush: bool) -> Result<()> {
        if flush && self.state.borrow().read_only.is_none() {
            self.flush().await?;
        }
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
        // Let cancelled jobs finish so no thread writes into the directory after close.
        loop {
            let running = {
                let state = self.state.borrow();
                state.flush_job.is_some() || state.compaction_job.is_some()
            };
            if !running {
                break;
            }
            {
                let mut state = self.state.borrow_mut();
                if let Some(job) = &mut state.flush_job
                    && job.try_finish("flush").is_some()
                {
                    state.flush_job = None;
                }
                if let Some((_, job)) = &mut state.compaction_job
                    && job.try_finish("compaction").is_some()
                {
                    state.compaction_job = None;
                }
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        self.wal.clone().close().await
    }
}

/// Deletes files in `sealed/` that the manifest does not name (crashed flush/compaction).
/// Deletes nothing until every file the manifest names is known to exist: a manifest that
/// names a missing file means the disk lost something (a compaction output whose directory
/// entry was not durable, a file removed by hand), and deleting the files it does not name
/// could then destroy the only remaining copy of that data (the compaction's inputs).
fn remove_orphans(sealed_dir: &Path, manifest: &Manifest) -> Result<()> {
    for entry in &manifest.files {
        let path = sealed_dir.join(entry.file_name());
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
    let entries = std::fs::read_dir(sealed_dir)
        .map_err(|e| StorageError::io("list sealed files", sealed_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list sealed files", sealed_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !known.contains(&name) {
            tracing::info!(file = %entry.path().display(), "removing a file no manifest names (interrupted flush or compaction)");
            std::fs::remove_file(entry.path())
                .map_err(|e| StorageError::io("remove orphan file", entry.path(), e))?;
        }
    }
    Ok(())
}

impl State {
    fn series_type(&self, key: &SeriesKey) -> Option<DataType> {
        self.types.get(&key.device)?.get(&key.measurement).copied()
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
        match series.get(measurement) {
            Some(&known) if known != data_type => Err(StorageError::corruption(
                path,
                0,
                format!("series {device}.{measurement} is {data_type} here but {known} elsewhere"),
            )),
            Some(_) => Ok(()),
            None => {
                series.insert(measurement.clone(), data_type);
                Ok(())
            }
        }
    }

    fn replay(&mut self, records: Vec<WalRecord>) -> Result<()> {
        let mut replayed = 0usize;
        for record in records {
            // A kind this build does not know is not skipped: its write would be lost
            // silently (a newer version's record, or damage the checksum missed).
            if record.kind != deletion::KIND_DELETE && record.kind != wal_entry::KIND_TABLET {
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
                replayed += 1;
                continue;
            }
            let tablet = wal_entry::decode(&record.payload).map_err(|e| {
                StorageError::corruption(
                    self.dir.join("wal"),
                    record.index,
                    format!("record {}: {}", record.index, e.0),
                )
            })?;
            self.check_types(&tablet)?;
            self.register_types(&tablet);
            self.apply(&tablet);
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(dir = %self.dir.display(), records = replayed, "replayed the WAL");
        }
        Ok(())
    }

    /// Checks every column's type against its series. Registers nothing: new series are
    /// registered by [`State::register_types`] once the write is logged, so a tablet
    /// refused later (overload, a WAL failure) leaves no type behind.
    fn check_types(&self, tablet: &Tablet) -> Result<()> {
        let Some(known) = self.types.get(&tablet.device) else {
            return Ok(());
        };
        for column in &tablet.columns {
            let actual = column.values.data_type();
            if let Some(&expected) = known.get(&column.measurement)
                && expected != actual
            {
                return Err(StorageError::TypeMismatch {
                    series: format!("{}.{}", tablet.device, column.measurement),
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Registers the series of a checked and logged tablet that are new.
    fn register_types(&mut self, tablet: &Tablet) {
        let known = self.types.get(&tablet.device);
        if tablet
            .columns
            .iter()
            .all(|c| known.is_some_and(|m| m.contains_key(&c.measurement)))
        {
            return;
        }
        let series = self.types.entry(tablet.device.clone()).or_default();
        for column in &tablet.columns {
            series
                .entry(column.measurement.clone())
                .or_insert(column.values.data_type());
        }
    }

    fn apply(&mut self, tablet: &Tablet) {
        let interval = self.config.time_partition_interval_ms;
        let flushed = &self.flushed_last_time;
        let device = &tablet.device;
        // The rows of a tablet nearly always share one time partition: look its flushed
        // time up once, not once per row.
        let memo: std::cell::Cell<Option<(i64, Option<Timestamp>)>> = std::cell::Cell::new(None);
        self.active.apply(
            tablet,
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
        // The newest row (the later of equal times) of a column without nulls is the same
        // for every such column.
        let newest_row = (0..tablet.rows()).max_by_key(|&r| (tablet.timestamps[r], r));
        for column in &tablet.columns {
            let newest = if column.nulls.as_ref().is_none_or(|n| n.none_null()) {
                newest_row
            } else {
                (0..tablet.rows())
                    .filter(|&r| !column.is_null(r))
                    .max_by_key(|&r| (tablet.timestamps[r], r))
            };
            if let Some(row) = newest {
                self.offer_last(
                    device,
                    &column.measurement,
                    tablet.timestamps[row],
                    column.values.get(row),
                );
            }
        }
    }

    /// Offers a written point to the last-value cache: it replaces an older or equal-time
    /// entry (equal: the newer write wins). A series without an entry stays without one:
    /// older files may hold newer points, and only a read of every source may fill it.
    fn offer_last(
        &mut self,
        device: &Arc<str>,
        measurement: &Arc<str>,
        t: Timestamp,
        value: Value,
    ) {
        if let Some(entry) = self
            .last_cache
            .get_mut(device)
            .and_then(|s| s.get_mut(measurement))
            && entry.0 <= t
        {
            *entry = (t, value);
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

    fn store_mods(&self) -> Result<()> {
        deletion::store(&self.dir, &self.mods())
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
                    let newest = series
                        .values()
                        .filter_map(|b| b.points.timestamps.last())
                        .max();
                    if let Some(&newest) = newest {
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

    /// Starts flushing the oldest frozen memtable on a background thread.
    fn start_flush(&mut self) {
        if self.flush_job.is_some() || self.read_only.is_some() {
            return;
        }
        let Some(frozen) = self.frozen.front() else {
            return;
        };
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
        let (sender, receiver) = oneshot::channel();
        let job_cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("region-flush".into())
            .spawn(move || {
                let result =
                    write_flush_files(&memtable, planned, &sealed_dir, options, &job_cancel)
                        .map(|files| FlushOutput { sequence, files });
                let _ = sender.send(result);
            });
        match spawned {
            Ok(_) => self.flush_job = Some(Job { receiver, cancel }),
            Err(e) => {
                self.last_job_error = Some(format!("spawning a flush thread: {e}"));
                self.retry_after = Some(Instant::now() + JOB_RETRY_DELAY);
            }
        }
    }

    /// Passes a job's result through; a failure postpones the next job (a full disk may
    /// clear).
    fn retry_later_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.retry_after = Some(Instant::now() + JOB_RETRY_DELAY);
        }
        result
    }

    /// Installs a finished flush: manifest first (the commit point), then memory, then WAL.
    fn poll_flush(&mut self, wal: &Wal) -> Result<()> {
        let Some(job) = &mut self.flush_job else {
            return Ok(());
        };
        let Some(output) = job.try_finish("flush") else {
            return Ok(());
        };
        self.flush_job = None;
        let output = self.retry_later_on_error(output)?;
        let frozen = self
            .frozen
            .front()
            .expect("a flush runs for the oldest frozen memtable");
        assert_eq!(frozen.sequence, output.sequence, "flushes install in order");
        let inherited = frozen.deletions.clone();
        let mut output = output;
        for live in &mut output.files {
            live.deletions = inherited
                .iter()
                .filter(|d| live.file.find(&d.key).is_some())
                .cloned()
                .collect();
        }
        // MODS first: a manifest naming the files without their deletions would resurrect
        // deleted points once the WAL records below the flushed index are gone.
        if output.files.iter().any(|f| !f.deletions.is_empty()) {
            let mut mods = self.mods();
            for live in &output.files {
                if !live.deletions.is_empty() {
                    mods.insert(live.entry.id, live.deletions.clone());
                }
            }
            deletion::store(&self.dir, &mods)?;
        }
        let mut manifest = self.manifest.clone();
        manifest
            .files
            .extend(output.files.iter().map(|f| f.entry.clone()));
        manifest.flushed_index = manifest.flushed_index.max(frozen.last_index);
        manifest.store(&self.dir)?;
        self.manifest = manifest;
        for live in output.files {
            self.add_file(live)?;
        }
        self.frozen.pop_front();
        self.flushes += 1;
        self.last_flush_installed = Some(Instant::now());
        wal.remove_segments_below(self.manifest.flushed_index + 1)?;
        Ok(())
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
        if self.compaction_job.is_some() || self.read_only.is_some() {
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
        let (sender, receiver) = oneshot::channel();
        let job_cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("region-compact".into())
            .spawn(move || {
                let result = compaction::merge_files(&inputs, &path, options, rate, &job_cancel)
                    .and_then(|written| {
                        // The output's directory entry must be durable before the manifest
                        // names it and the inputs are deleted.
                        if written.is_some()
                            && let Some(sealed) = path.parent()
                        {
                            manifest::sync_dir(sealed)?;
                        }
                        let output = match written {
                            Some(_) => Some(LiveFile {
                                entry,
                                file: Arc::new(SealedFile::open(&path)?),
                                deletions: Vec::new(),
                            }),
                            None => None,
                        };
                        Ok(CompactionOutput {
                            partition,
                            inputs: input_ids,
                            applied_deletions,
                            output,
                        })
                    });
                let _ = sender.send(result);
            });
        match spawned {
            Ok(_) => self.compaction_job = Some((partition, Job { receiver, cancel })),
            Err(e) => {
                self.last_job_error = Some(format!("spawning a compaction thread: {e}"));
                self.retry_after = Some(Instant::now() + JOB_RETRY_DELAY);
            }
        }
    }

    /// Installs a finished compaction: the manifest swaps inputs for the output atomically,
    /// then the inputs are deleted (open readers keep their mappings).
    fn poll_compaction(&mut self) -> Result<()> {
        let Some((_, job)) = &mut self.compaction_job else {
            return Ok(());
        };
        let Some(output) = job.try_finish("compaction") else {
            return Ok(());
        };
        self.compaction_job = None;
        let output = self.retry_later_on_error(output)?;
        let Some(current) = self.files.get(&output.partition) else {
            // The partition expired (TTL) meanwhile: the output is not needed.
            if let Some(out) = output.output {
                remove_file_logged(out.file.path());
            }
            return Ok(());
        };
        if !output
            .inputs
            .iter()
            .all(|id| current.iter().any(|f| f.entry.id == *id))
        {
            if let Some(out) = output.output {
                remove_file_logged(out.file.path());
            }
            return Ok(());
        }
        let mut output = output;
        // Deletions that arrived while the job ran were not applied: the output keeps them
        // (MODS first, as for a flush).
        if let Some(out) = &mut output.output {
            for (id, applied) in output.inputs.iter().zip(&output.applied_deletions) {
                let input = current
                    .iter()
                    .find(|f| f.entry.id == *id)
                    .expect("checked above");
                for d in input.deletions.iter().skip(*applied) {
                    if out.file.find(&d.key).is_some() {
                        deletion::attach(&mut out.deletions, d);
                    }
                }
            }
            if !out.deletions.is_empty() {
                let mut mods = self.mods();
                mods.insert(out.entry.id, out.deletions.clone());
                deletion::store(&self.dir, &mods)?;
            }
        }
        let mut manifest = self.manifest.clone();
        manifest.files.retain(|f| !output.inputs.contains(&f.id));
        if let Some(out) = &output.output {
            manifest.files.push(out.entry.clone());
        }
        manifest.store(&self.dir)?;
        self.manifest = manifest;
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
        let had_deletions = removed.iter().any(|f| !f.deletions.is_empty());
        for live in removed {
            remove_file_logged(live.file.path());
        }
        if had_deletions {
            // Applied physically now: MODS no longer needs the inputs' entries.
            self.store_mods()?;
        }
        self.compactions += 1;
        Ok(())
    }

    /// Drops the files of partitions that lie wholly before the TTL cut-off.
    fn drop_expired_partitions(&mut self) -> Result<()> {
        let Some(ttl) = self.config.ttl_ms else {
            return Ok(());
        };
        let cutoff = (self.clock)().saturating_sub(ttl);
        let interval = self.config.time_partition_interval_ms;
        let compacting = self.compaction_job.as_ref().map(|(p, _)| *p);
        let expired: Vec<i64> = self
            .files
            .keys()
            .copied()
            .take_while(|&p| (p + 1).saturating_mul(interval) <= cutoff)
            .filter(|&p| Some(p) != compacting)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let mut manifest = self.manifest.clone();
        manifest.files.retain(|f| !expired.contains(&f.partition));
        manifest.store(&self.dir)?;
        self.manifest = manifest;
        // Cached last points may lie in the dropped files; the next read refills the cache.
        self.last_cache.clear();
        for partition in expired {
            for live in self.files.remove(&partition).unwrap_or_default() {
                remove_file_logged(live.file.path());
            }
            self.flushed_last_time.retain(|(p, _), _| *p != partition);
            tracing::info!(dir = %self.dir.display(), partition, "dropped an expired time partition");
        }
        Ok(())
    }
}

fn remove_file_logged(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "removing a replaced sealed file failed");
    }
}

/// Writes the planned files of a frozen memtable (on the flush thread).
fn write_flush_files(
    memtable: &FrozenMemtable,
    planned: Vec<FileEntry>,
    sealed_dir: &Path,
    options: WriterOptions,
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
            .filter(|(_, buffer)| !buffer.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let path = sealed_dir.join(entry.file_name());
        let mut writer = SealedFileWriter::create(&path, options)?;
        for (key, buffer) in series {
            writer.write_series(&key, &buffer.points)?;
        }
        writer.finish()?;
        out.push(LiveFile {
            entry,
            file: Arc::new(SealedFile::open(&path)?),
            deletions: Vec::new(),
        });
    }
    manifest::sync_dir(sealed_dir)?;
    Ok(out)
}
