//! The write-ahead log: checksummed records in segment files, group commit over io_uring.
//!
//! One `Wal` serves one region replica and lives on the shard (core) that owns the region;
//! it is single-threaded (`Rc`, `RefCell`), and so are its tasks.
//!
//! ```text
//!  append(index, kind, payload) ──copy──► pending batches (≤ WAL_BATCH_BYTES_MAX each)
//!                                              │ commit task, once per loop tick:
//!                                              ▼
//!                         one write_all_at (io_uring) ─► one fdatasync ─► durable_index,
//!                                                                          wake waiters
//!  wait_durable(index) ◄─────────────────────────────────────────────────────┘
//! ```
//!
//! While a batch is in flight, appends gather in the next one. `WalMode` picks when a
//! waiter is released: after the fdatasync (`Sync`), after the write reached the OS
//! (`Async`, with an fdatasync every `async_fsync` from a timer task), or at once (`Off`,
//! nothing is written). A failed write or fsync makes the log read-only for good.
//!
//! In `Sync` mode the real storage opens direct segments with `O_DSYNC`: the write is
//! durable when it completes and takes the fdatasync's place
//! (`WalFile::writes_are_durable`). An fdatasync runs on an io_uring worker thread that the
//! kernel must wake and the shard then waits for; a synchronous direct write completes as
//! any write does, the file system flushing the disk's cache for it (the same number of
//! device flushes, measured, with half the context switches).
//!
//! Files: `wal-<first index, 20 digits>.log` in the region's WAL directory; the format is
//! in `format`, recovery (torn tail vs corruption) in `recovery`, the storage interface
//! with its io_uring and fault-injecting in-memory implementations in `storage` and
//! `memory`.

mod commit;
pub mod format;
mod log;
pub mod memory;
mod reader;
pub mod recovery;
pub mod storage;

use std::time::Duration;

pub use log::{SegmentSpan, Wal};
pub use memory::{Fault, MemoryStorage};
pub use reader::WalRead;
pub use storage::{MonoioStorage, WalFile, WalStorage};

use crate::config::{RegionConfig, WalMode};

/// How a `Wal` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    pub mode: WalMode,
    /// fdatasync period in `WalMode::Async`.
    pub async_fsync: Duration,
    /// A segment is closed and a new one begun once the next record would take it past
    /// this size (a segment always holds at least one record).
    pub segment_bytes: u64,
    /// Segments are written with direct I/O where the file system allows it
    /// ([`MonoioStorage::direct_io`]).
    pub direct_io: bool,
}

impl WalOptions {
    /// The WAL settings of a region's configuration.
    pub fn from_config(config: &RegionConfig) -> WalOptions {
        WalOptions {
            mode: config.wal_mode,
            async_fsync: config.wal_async_fsync,
            segment_bytes: config.wal_segment_bytes,
            direct_io: config.wal_direct_io,
        }
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions::from_config(&RegionConfig::default())
    }
}

/// One record as recovery returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    /// The search index: strictly increasing across the log.
    pub index: u64,
    /// What the payload holds; opaque to the WAL.
    pub kind: u8,
    pub payload: bytes::Bytes,
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
