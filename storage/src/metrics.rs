//! I/O counters of the regions of one shard: WAL fdatasyncs (count, latency histogram),
//! bytes written by flushes and by compactions.
//!
//! Ownership: one [`StorageMetrics`] per shard, installed on the shard's thread with
//! [`install_for_this_thread`]. Only that thread adds to it — the WAL's commit task runs
//! there, and a finished flush or compaction is collected there — so its atomics are
//! uncontended and `Relaxed`; a metrics endpoint on another thread reads them at scrape
//! time. A thread with nothing installed (unit tests, tools) counts nothing.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in microseconds, of the WAL fdatasync latency histogram's buckets (the
/// last, `+Inf`, is implicit). Why these: an NVMe fdatasync takes tens of microseconds,
/// a disk's several milliseconds, and one past a second is a stall worth seeing.
pub const WAL_FSYNC_BUCKETS_MICROS: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000, 1_000_000,
];

/// The counters of one shard's regions (see the module doc for who writes them).
#[derive(Debug, Default)]
pub struct StorageMetrics {
    wal_fsync_micros: AtomicU64,
    /// Per bucket of [`WAL_FSYNC_BUCKETS_MICROS`], plus one past the last: the count of
    /// fdatasyncs in that bucket alone (not cumulative).
    wal_fsync_buckets: [AtomicU64; WAL_FSYNC_BUCKETS_MICROS.len() + 1],
    flush_bytes: AtomicU64,
    compaction_bytes: AtomicU64,
}

/// A consistent-enough copy of [`StorageMetrics`] for rendering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageSnapshot {
    pub wal_fsync_micros: u64,
    /// Cumulative counts: `wal_fsync_le[i]` fdatasyncs took at most
    /// `WAL_FSYNC_BUCKETS_MICROS[i]`; the last entry is every fdatasync (`+Inf`, the
    /// histogram's count).
    pub wal_fsync_le: [u64; WAL_FSYNC_BUCKETS_MICROS.len() + 1],
    pub flush_bytes: u64,
    pub compaction_bytes: u64,
}

impl StorageMetrics {
    fn record_wal_fsync(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = WAL_FSYNC_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(WAL_FSYNC_BUCKETS_MICROS.len());
        self.wal_fsync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.wal_fsync_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Adds the current values to `sum` (a scrape sums the shards).
    pub fn add_to(&self, sum: &mut StorageSnapshot) {
        sum.wal_fsync_micros += self.wal_fsync_micros.load(Ordering::Relaxed);
        let mut cumulative = 0;
        for (le, bucket) in sum.wal_fsync_le.iter_mut().zip(&self.wal_fsync_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            *le += cumulative;
        }
        sum.flush_bytes += self.flush_bytes.load(Ordering::Relaxed);
        sum.compaction_bytes += self.compaction_bytes.load(Ordering::Relaxed);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<StorageMetrics>>> = const { RefCell::new(None) };
}

/// Makes `metrics` the counters of every region driven by this thread (a shard's).
pub fn install_for_this_thread(metrics: Arc<StorageMetrics>) {
    CURRENT.with(|current| *current.borrow_mut() = Some(metrics));
}

fn with(f: impl FnOnce(&StorageMetrics)) {
    CURRENT.with(|current| {
        if let Some(metrics) = current.borrow().as_deref() {
            f(metrics);
        }
    });
}

/// One WAL fdatasync finished after `took`.
pub(crate) fn wal_fsync(took: Duration) {
    with(|m| m.record_wal_fsync(took));
}

/// A flush wrote `bytes` of sealed files.
pub(crate) fn flushed(bytes: u64) {
    with(|m| {
        m.flush_bytes.fetch_add(bytes, Ordering::Relaxed);
    });
}

/// A compaction wrote `bytes` of sealed files.
pub(crate) fn compacted(bytes: u64) {
    with(|m| {
        m.compaction_bytes.fetch_add(bytes, Ordering::Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts land only on the installing thread's counters, in the right bucket, and
    /// a snapshot's buckets are cumulative.
    #[test]
    fn counts_go_to_the_installed_counters() {
        wal_fsync(Duration::from_micros(10)); // nothing installed: not counted
        let metrics = Arc::new(StorageMetrics::default());
        install_for_this_thread(metrics.clone());
        wal_fsync(Duration::from_micros(10));
        wal_fsync(Duration::from_millis(3));
        wal_fsync(Duration::from_secs(5));
        flushed(100);
        compacted(7);
        let mut sum = StorageSnapshot::default();
        metrics.add_to(&mut sum);
        assert_eq!(sum.wal_fsync_micros, 10 + 3_000 + 5_000_000);
        assert_eq!(sum.wal_fsync_le[0], 1);
        assert_eq!(sum.wal_fsync_le[6], 2, "3 ms is within 5 ms");
        assert_eq!(sum.wal_fsync_le[9], 2);
        assert_eq!(sum.wal_fsync_le[10], 3);
        assert_eq!((sum.flush_bytes, sum.compaction_bytes), (100, 7));
        let other = std::thread::spawn(|| {
            flushed(1);
        });
        other.join().unwrap();
        let mut again = StorageSnapshot::default();
        metrics.add_to(&mut again);
        assert_eq!(
            again.flush_bytes, 100,
            "another thread's flush is not counted here"
        );
    }
}
