//! The commit task (group commit) and the async-mode fsync timer.
//!
//! The commit task runs on the region's shard. Each turn it takes the oldest pending batch
//! — everything appended since the previous batch left, up to `WAL_BATCH_BYTES_MAX` — and
//! issues one positional write and, in `Sync` mode, one fdatasync; then it advances the
//! written and durable indexes and wakes the waiters. Appends that arrive meanwhile gather
//! in the next batch. All file I/O of the log happens here, one operation at a time, so
//! the indexes it publishes need no further ordering.

use std::future::poll_fn;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::task::Poll;

use super::format::BLOCK_BYTES;
use super::log::{Batch, Shared};
use super::storage::WalFile;
use crate::config::WalMode;

/// What the commit task does next.
enum Work {
    Write(Batch),
    Sync,
    /// Closing and nothing is pending: sync what is unsynced and stop.
    Stop,
}

/// The open active segment file.
struct OpenSegment {
    first_index: u64,
    path: Rc<Path>,
    file: Rc<dyn WalFile>,
    /// Writes to it that no fdatasync has covered yet.
    unsynced: bool,
}

/// The commit task: runs until the log closes or fails.
pub(super) async fn run(shared: Rc<Shared>) {
    let mut open: Option<OpenSegment> = None;
    run_until_stopped(&shared, &mut open).await;
    if let Some(segment) = open {
        segment.file.settle().await;
    }
}

async fn run_until_stopped(shared: &Rc<Shared>, open: &mut Option<OpenSegment>) {
    loop {
        match next_work(shared).await {
            Work::Write(batch) => {
                if let Err(reason) = write_batch(shared, open, batch).await {
                    shared.fail(reason);
                    return;
                }
            }
            Work::Sync => {
                if let Err(reason) = sync(shared, open).await {
                    shared.fail(reason);
                    return;
                }
            }
            Work::Stop => {
                if let Err(reason) = sync(shared, open).await {
                    shared.fail(reason);
                }
                return;
            }
        }
    }
}

/// Waits for a pending batch, a sync request or the close.
async fn next_work(shared: &Shared) -> Work {
    poll_fn(|context| {
        let mut state = shared.state.borrow_mut();
        if state.failure.is_some() {
            return Poll::Ready(Work::Stop);
        }
        if let Some(batch) = state.pending.pop_front() {
            state.pending_bytes -= batch.len();
            return Poll::Ready(Work::Write(batch));
        }
        if state.sync_requested {
            state.sync_requested = false;
            return Poll::Ready(Work::Sync);
        }
        if state.closing {
            return Poll::Ready(Work::Stop);
        }
        state.committer_waker = Some(context.waker().clone());
        Poll::Pending
    })
    .await
}

/// Writes one batch (opening its segment first if it is a new one) and, in `Sync` mode,
/// makes it durable: an fdatasync, or nothing more where the file's writes are synchronous
/// ([`super::WalFile::writes_are_durable`]). Errors are the reason the log becomes
/// read-only.
async fn write_batch(
    shared: &Shared,
    open: &mut Option<OpenSegment>,
    batch: Batch,
) -> Result<(), String> {
    if open
        .as_ref()
        .is_none_or(|segment| segment.first_index != batch.segment_first_index)
    {
        // The previous segment is complete: make it durable before writing past it, so
        // recovery never finds a later segment after an incomplete one.
        sync(shared, open).await?;
        if let Some(previous) = open.take() {
            previous.file.settle().await;
        }
        let file = shared
            .storage
            .open_file(&batch.path)
            .await
            .map_err(|error| format!("open {}: {error}", batch.path.display()))?;
        *open = Some(OpenSegment {
            first_index: batch.segment_first_index,
            path: batch.path.clone(),
            file,
            unsynced: false,
        });
    }
    let segment = open.as_mut().expect("segment opened above");
    let started = std::time::Instant::now();
    let batch_bytes = batch.len();
    let (result, mut buffer) = segment
        .file
        .write_all_at(batch.bytes, batch.start, batch.offset)
        .await;
    result.map_err(|error| {
        format!(
            "write {batch_bytes} bytes to {} at offset {}: {error}",
            batch.path.display(),
            batch.offset
        )
    })?;
    segment.unsynced = true;
    {
        let mut state = shared.state.borrow_mut();
        assert!(
            batch.last_index > state.written_index,
            "batches complete in order"
        );
        state.written_index = batch.last_index;
        state.check_invariants();
        // A buffer grown past a normal batch by one huge record is freed, not kept.
        if state.spare_buffers.len() < super::log::SPARE_BUFFERS_MAX
            && buffer.capacity() <= crate::config::WAL_BATCH_BYTES_MAX + 2 * BLOCK_BYTES
        {
            buffer.clear();
            state.spare_buffers.push(buffer);
        }
    }
    if shared.options.mode != WalMode::Sync {
        shared.wake_waiters();
    } else if segment.file.writes_are_durable() || mutant::trusts_every_write() {
        // A synchronous write (`O_DSYNC`): durable as it completed, as after an fdatasync.
        crate::metrics::wal_fsync(started.elapsed());
        segment.unsynced = false;
        made_durable(shared, batch.last_index);
    } else {
        sync(shared, open).await?;
    }
    Ok(())
}

/// fdatasync of the open segment if it has unsynced writes; everything written is then
/// durable (earlier segments were synced before the log moved past them).
async fn sync(shared: &Shared, open: &mut Option<OpenSegment>) -> Result<(), String> {
    let Some(segment) = open.as_mut().filter(|segment| segment.unsynced) else {
        return Ok(());
    };
    let written_index = shared.state.borrow().written_index;
    if !mutant::skips_fsync() {
        let started = std::time::Instant::now();
        segment
            .file
            .sync_data()
            .await
            .map_err(|error| format!("fdatasync {}: {error}", segment.path.display()))?;
        crate::metrics::wal_fsync(started.elapsed());
    }
    segment.unsynced = false;
    made_durable(shared, written_index);
    Ok(())
}

/// Everything up to `written_index` is durable: moves the durable index and releases its
/// waiters.
fn made_durable(shared: &Shared, written_index: u64) {
    {
        let mut state = shared.state.borrow_mut();
        state.durable_index = state.durable_index.max(written_index);
        state.check_invariants();
    }
    shared.wake_waiters();
}

/// Async mode: asks the commit task for an fdatasync every `async_fsync`. Holds the log
/// weakly and stops once it closes.
pub(super) async fn run_fsync_timer(shared: Weak<Shared>) {
    let Some(period) = shared.upgrade().map(|shared| shared.options.async_fsync) else {
        return;
    };
    loop {
        monoio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let waker = {
            let mut state = shared.state.borrow_mut();
            if state.closing || state.failure.is_some() {
                return;
            }
            state.sync_requested = true;
            state.committer_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Deliberate bugs the WAL simulation (`sim_tests`) must catch, switched on per thread;
/// compiled out of non-test builds.
pub(super) mod mutant {
    #[cfg(test)]
    thread_local! {
        /// Treat a batch as durable without its fdatasync.
        pub static SKIP_FSYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[cfg(test)]
    thread_local! {
        /// Treat every write as durable, whether or not the file writes synchronously.
        pub static TRUST_EVERY_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[cfg(test)]
    pub fn skips_fsync() -> bool {
        SKIP_FSYNC.with(std::cell::Cell::get)
    }

    #[cfg(not(test))]
    pub fn skips_fsync() -> bool {
        false
    }

    #[cfg(test)]
    pub fn trusts_every_write() -> bool {
        TRUST_EVERY_WRITE.with(std::cell::Cell::get)
    }

    #[cfg(not(test))]
    pub fn trusts_every_write() -> bool {
        false
    }
}
