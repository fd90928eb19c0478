//! Region settings and the engine's named limits, each with the reason for its value.

use std::sync::Arc;
use std::time::Duration;

use crate::background::BackgroundPool;
use crate::file_system::FileSystem;

/// Milliseconds in IoTDB's default time partition: 7 days.
pub const TIME_PARTITION_INTERVAL_MS_DEFAULT: i64 = 604_800_000;

/// Memtable bytes per region before a flush starts (IoTDB flushes at 0.4 of its budget),
/// for a region opened without a shard's budget (`Region::open`); a DataNode's regions
/// share their shard's budget instead (`budget::MemoryBudget`).
pub const MEMTABLE_FLUSH_BYTES_DEFAULT: usize = 256 << 20;

/// Memtable bytes per region (active + flushing) past which writes get `Overloaded`:
/// flushes have fallen behind and growing further would risk the process. For a region
/// opened without a shard's budget, like `MEMTABLE_FLUSH_BYTES_DEFAULT`.
pub const MEMTABLE_BYTES_MAX_DEFAULT: usize = 768 << 20;

/// Memtable bytes one shard's regions may hold together (`shard_write_memory_bytes`):
/// past it every write of the shard waits for a flush, then gets `Overloaded` (606).
///
/// Why 1.5 GiB: the per-region default it replaces (`MEMTABLE_BYTES_MAX_DEFAULT`, 768 MiB)
/// times two regions, which is what a shard typically owns (the AUTO policy aims at one
/// region group led per core, and with replication each core also follows about one).
/// One budget per shard lets a busy region use what idle neighbours leave.
pub const SHARD_WRITE_MEMORY_BYTES_DEFAULT: usize = 1536 << 20;

/// A shard's flush threshold is its budget divided by this: flushes start once the active
/// memtables hold a third of the budget.
///
/// Why a third: the same ratio as the per-region defaults (256 MiB of 768 MiB): the
/// memtables being frozen and flushed, plus the active ones refilling meanwhile, fit in the
/// remaining two thirds before writes are refused.
pub const SHARD_FLUSH_FRACTION_DIVISOR: usize = 3;

/// The longest a write waits for the shard's memtable budget to have room
/// (`Region::write_waiting`) before it is refused with `Overloaded`.
///
/// Why 5 s: a flush of a full memtable takes seconds on a busy disk, so a short burst
/// should wait rather than fail; but a client must hear 606 well within its own request
/// timeout (IoTDB's clients default to 20 s or more), and a waiting write holds its
/// tablet in memory and, when routed, one of the shard's mesh handler slots.
pub const WRITE_MEMORY_WAIT_MAX: Duration = Duration::from_secs(5);

/// WAL segment size: small enough that flushed segments are deleted promptly, large
/// enough that segment switches are rare (IoTDB uses 30 MB files).
pub const WAL_SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// A WAL segment remembers the offset of one record per this many bytes, so a read by
/// index (`Wal::read`, a follower catching up) scans at most this much before its first
/// record. Costs 16 bytes of memory per 64 KiB of WAL (256 KiB per retained GiB).
pub const WAL_READ_CHECKPOINT_BYTES: usize = 64 << 10;

/// The most bytes one file read of `Wal::read` asks for beyond the record it needs: a
/// read by index moves at most this much (or one record, if larger) per io_uring
/// operation, so it never holds the shard's loop or a big buffer for long.
pub const WAL_READ_WINDOW_BYTES: usize = 1 << 20;

/// The most bytes one group commit writes at once; more waits for the next write.
pub const WAL_BATCH_BYTES_MAX: usize = 16 << 20;

/// The largest payload of one WAL record, so the largest write a region takes whole. Above
/// the 64 MiB frame body the wire protocol accepts (a tablet's WAL encoding is about its
/// wire size), so any tablet a client may legally send is logged as one record, atomically,
/// never refused for its size. A batch holding a record larger than `WAL_BATCH_BYTES_MAX`
/// is written on its own, and its buffer is not kept for reuse.
pub const WAL_RECORD_PAYLOAD_BYTES_MAX: usize = 96 << 20;

/// WAL bytes a region keeps for lagging followers (`RegionConfig::wal_retention_bytes_max`;
/// IoTDB's `wal_throttle_threshold_in_byte`). Below a retention floor
/// (`Region::set_retention_floor`) flushed segments are kept for replicas that still
/// need them, but never past this many bytes of WAL: then the oldest flushed segments go
/// anyway and a follower that needed them is caught up by a snapshot instead.
///
/// Why 1 GiB: at the tens of MiB/s a region ingests, a few tens of seconds of writes,
/// which covers a follower restarting or a short network partition, while a node with a
/// few dozen regions spends at most tens of GiB of disk on it. IoTDB's 50 to 200 GB is
/// per node and blocks writes when reached; here the cap is per region and never blocks.
pub const WAL_RETENTION_BYTES_MAX_DEFAULT: u64 = 1 << 30;

/// The most data bytes in one snapshot chunk (`transfer::Chunk`): what one call of
/// `SnapshotReader::next_chunk` reads and one `SnapshotWriter::accept` writes.
///
/// Why 16 MiB: IoTDB's `data_region_iot_max_size_per_batch`; a chunk with its header fits
/// well inside one 64 MiB wire frame, and one read or write of it keeps the shard busy for
/// milliseconds, not seconds.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 16 << 20;

/// The largest file a received snapshot may hold. A sender that claims more (an offset
/// past it) is refused before anything is written there.
///
/// Why 64 GiB: far above any sealed file a region writes (a compaction merges one time
/// partition of one region), far below what would fill a disk by mistake.
pub const SNAPSHOT_FILE_BYTES_MAX: u64 = 64 << 30;

/// The most files a received snapshot may hold.
///
/// Why 100,000: a region's manifest names at most a few files per time partition after
/// compaction, so even decades of weekly partitions stay far below it; the bound keeps a
/// broken sender from filling a directory.
pub const SNAPSHOT_FILES_MAX: usize = 100_000;

/// The most points in one sealed-file chunk (IoTDB: 100,000 points per chunk).
///
/// Why 1024: a chunk's statistics answer an aggregation window that holds the whole chunk
/// without decoding it, so chunks should be short next to the windows users ask for (at
/// one point a second, 1024 points are 17 minutes: an hour's window holds two or three
/// whole chunks and decodes at most two partial ones); each chunk costs its block framing
/// and an index entry, about 25 bytes, so chunks should be long next to that (0.025 bytes
/// a point at 1024; on the standard workload, with the index still uncompressed, 512 took
/// 1.045 bytes a point and 1024 took 1.018).
pub const CHUNK_POINTS_MAX: usize = 1024;

/// How long a partition with several sealed files must go without writes (nothing of it in
/// a memtable, no flush installed in the region) before it is compacted into one file even
/// below `compaction_files_trigger`. A partition that stopped receiving data (last week's,
/// or everything once an ingest ends) is then rewritten once with full-length chunks and
/// one index, instead of keeping the short chunks and per-file overhead of every flush
/// (measured: up to 50 % more bytes per point). Long enough not to rewrite a partition
/// that only paused between flushes.
pub const COMPACTION_COLD_DELAY_DEFAULT: Duration = Duration::from_secs(10);

/// Fewest worker threads of a background pool.
///
/// Why 2: compactions may occupy every worker but one, so that a flush (which
/// back-pressure waits on) never queues behind a compaction running for minutes under its
/// rate limit; with one worker that guarantee is impossible.
pub const BACKGROUND_THREADS_MIN: usize = 2;

/// Most worker threads of a background pool.
///
/// Why 256: flushes and compactions compete with the shards for cores and the disk; more
/// workers than cores only adds contention. 256 matches the most shards a node runs.
pub const BACKGROUND_THREADS_MAX: usize = 256;

/// Jobs each queue (urgent, compaction) of the background pool holds by default.
///
/// Why 256: a region has at most one flush, one compaction and one metadata write
/// outstanding, and a queued job is a small closure holding `Arc`s, so 256 slots take the
/// work of a few hundred regions that all want it in the same tick for a few KiB. Past
/// it, the job is refused and the region asks again on its next tick (10 ms later): the
/// shard never blocks and the queue never grows.
pub const BACKGROUND_QUEUE_JOBS_MAX_DEFAULT: usize = 256;

/// Largest queue a background pool accepts.
///
/// Why: a queue much deeper than the regions of a node only hides that the disk cannot
/// keep up; the memtable budget's back-pressure is what should answer that.
pub const BACKGROUND_QUEUE_JOBS_MAX_LIMIT: usize = 64 * 1024;

/// How WAL writes are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalMode {
    /// Acknowledge a write after its WAL record is fdatasync'ed (default).
    Sync,
    /// Acknowledge after the write reaches the OS; fdatasync every `wal_async_fsync_ms`.
    Async,
    /// No WAL: acknowledged writes live only in memory until flushed.
    Off,
}

impl WalMode {
    pub fn parse(name: &str) -> Option<WalMode> {
        match name.to_ascii_lowercase().as_str() {
            "sync" => Some(WalMode::Sync),
            "async" => Some(WalMode::Async),
            "off" | "disable" => Some(WalMode::Off),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WalMode::Sync => "sync",
            WalMode::Async => "async",
            WalMode::Off => "off",
        }
    }
}

/// Settings of one region replica.
#[derive(Clone, Debug)]
pub struct RegionConfig {
    pub wal_mode: WalMode,
    /// fdatasync period in `WalMode::Async`.
    pub wal_async_fsync: Duration,
    pub wal_segment_bytes: u64,
    /// Write WAL segments with direct I/O where the file system allows it (default): no
    /// copy of every logged byte into the page cache.
    pub wal_direct_io: bool,
    /// The most WAL bytes kept for followers below the flushed index
    /// ([`WAL_RETENTION_BYTES_MAX_DEFAULT`]).
    pub wal_retention_bytes_max: u64,
    pub time_partition_interval_ms: i64,
    pub memtable_flush_bytes: usize,
    pub memtable_bytes_max: usize,
    pub chunk_points_max: usize,
    /// Block compression for sealed-file chunks.
    pub compression: Compression,
    /// Compaction write rate limit in bytes per second (0: unlimited).
    pub compaction_bytes_per_second: u64,
    /// A partition compacts once it has this many sealed files.
    pub compaction_files_trigger: usize,
    /// A partition with several files compacts once it has been cold this long
    /// ([`COMPACTION_COLD_DELAY_DEFAULT`]).
    pub compaction_cold_delay: Duration,
    /// Time to live in milliseconds, `None` for forever.
    pub ttl_ms: Option<i64>,
    /// The pool that runs this region's flushes, compactions and metadata writes, shared
    /// with the other regions of the process; `None`: [`BackgroundPool::process_default`].
    pub background: Option<BackgroundPool>,
    /// Where sealed files, MANIFEST and MODS are written (not the WAL); `None`:
    /// [`crate::file_system::StdFileSystem`]. Tests pass a fault-injecting one.
    pub file_system: Option<Arc<dyn FileSystem>>,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            wal_mode: WalMode::Sync,
            wal_async_fsync: Duration::from_millis(1000),
            wal_segment_bytes: WAL_SEGMENT_BYTES_DEFAULT,
            wal_direct_io: true,
            wal_retention_bytes_max: WAL_RETENTION_BYTES_MAX_DEFAULT,
            time_partition_interval_ms: TIME_PARTITION_INTERVAL_MS_DEFAULT,
            memtable_flush_bytes: MEMTABLE_FLUSH_BYTES_DEFAULT,
            memtable_bytes_max: MEMTABLE_BYTES_MAX_DEFAULT,
            chunk_points_max: CHUNK_POINTS_MAX,
            compression: Compression::Lz4,
            compaction_bytes_per_second: 64 << 20,
            compaction_files_trigger: 4,
            compaction_cold_delay: COMPACTION_COLD_DELAY_DEFAULT,
            ttl_ms: None,
            background: None,
            file_system: None,
        }
    }
}

/// Block compression applied to encoded chunk blocks where it pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}
