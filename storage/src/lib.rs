//! `iotdb-storage`: the engine one DataRegion replica runs on one core.
//!
//! ```text
//!  write(tablet) ──► WAL (group commit, io_uring) ──► memtable (per time partition, seq/unseq)
//!                                                        │ flush (frozen memtable, background)
//!                                                        ▼
//!                                   sealed files (per partition, chunks + stats + index)
//!                                                        │ compaction (rate limited)
//!  read(range/aggregate/last) ◄── merge memtables + sequence + unsequence, newest wins
//! ```
//!
//! A region is owned by exactly one shard (core); nothing else touches its files. The
//! crate never opens a socket.

pub mod background;
pub mod budget;
pub mod codec;
pub mod compaction;
pub mod config;
pub mod device_types;
pub mod error;
pub mod file_system;
pub mod filter;
pub mod hash;
pub mod memtable;
pub mod metrics;
pub mod query;
pub mod region;
pub mod sealed;
pub mod stats;
pub mod transfer;
pub mod types;
pub mod wal;

pub use background::{BackgroundPool, JobClass, PoolOptions, PoolStats, QueueFull};
pub use budget::MemoryBudget;
pub use config::{Compression, RegionConfig, WalMode};
pub use device_types::{DeviceTypes, MeasurementMap};
pub use error::{ReplicationError, Result, StorageError};
pub use filter::{CompareOp, FilterCounters, Operand, ValueFilter, Verdict};
pub use query::{AggregateRow, Aggregation, Windows};
pub use region::{Deletion, LogEntry, LogRead, Region, RegionInfo, SnapshotInfo, WriteAck};
pub use stats::Stats;
pub use transfer::{Chunk, SnapshotReader, SnapshotWriter};
pub use types::{
    ColumnRef, DataType, NullBitmap, PointColumn, Points, SeriesKey, Tablet, TabletColumn,
    TabletRef, TimeRange, Timestamp, Value, Values, ValuesRef,
};
