//! `Wal`: the append side, the durability waiters, retention, and the state the commit
//! task shares with them.
//!
//! Owned by the region's shard: `Wal` is `Clone` (an `Rc`) but not `Send`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::WalOptions;
use super::WalRecord;
use super::commit;
use super::format::{
    BLOCK_BYTES, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_FLAG_ZEROS_AHEAD, SEGMENT_HEADER_BYTES,
    aligned_position, encode_record_with, encode_segment_header, record_bytes,
};
use super::recovery::{recover, segment_file_name};
use super::storage::{MonoioStorage, WalStorage};
use crate::config::{WAL_BATCH_BYTES_MAX, WAL_READ_CHECKPOINT_BYTES, WalMode};
use crate::error::{Result, StorageError};

/// Spare batch buffers kept for reuse: one being filled and one in flight need no more.
pub(super) const SPARE_BUFFERS_MAX: usize = 2;

/// The write-ahead log of one region replica. Cheap to clone; all clones are one log.
/// When the last clone is dropped the commit task still writes what is pending, then stops;
/// `close` does the same and waits for it.
#[derive(Clone)]
pub struct Wal {
    handle: Rc<Handle>,
}

/// Dropping the last handle starts the shutdown of the commit task.
struct Handle {
    shared: Rc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

/// What the `Wal` handles, the commit task and the fsync timer share.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub options: WalOptions,
    pub storage: Rc<dyn WalStorage>,
    pub state: RefCell<State>,
}

/// Mutable log state. Invariant: `durable_index <= written_index <= last_index`.
pub(super) struct State {
    /// The highest index appended (0: none yet).
    pub last_index: u64,
    /// The highest index whose write completed.
    pub written_index: u64,
    /// The highest index made durable by fdatasync.
    pub durable_index: u64,
    /// Why the log became read-only, once a write or fsync failed.
    pub failure: Option<String>,
    pub closing: bool,
    pub tasks_started: bool,
    /// Set by the fsync timer (async mode), cleared by the commit task.
    pub sync_requested: bool,
    /// Batches not yet taken by the commit task, oldest first; appends fill the last one.
    pub pending: VecDeque<Batch>,
    pub pending_bytes: usize,
    pub spare_buffers: Vec<Vec<u8>>,
    /// Oldest first; the last one is the active segment.
    pub segments: VecDeque<Segment>,
    pub disk_bytes: u64,
    /// Tasks in `wait_durable`, with the index each waits for.
    pub waiters: Vec<(u64, Waker)>,
    pub committer_waker: Option<Waker>,
    pub committer: Option<monoio::task::JoinHandle<()>>,
}

/// A segment file as the log knows it (including bytes still pending).
pub(super) struct Segment {
    pub first_index: u64,
    pub last_index: Option<u64>,
    pub path: Rc<Path>,
    pub bytes: u64,
    /// (index, offset) of one record every `WAL_READ_CHECKPOINT_BYTES` or so, oldest
    /// first: where a read by index starts scanning (`super::reader`).
    pub checkpoints: Vec<(u64, u64)>,
}

/// Where a segment stands, as [`Wal::segment_spans`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpan {
    /// The index in the file name: no record in it is lower.
    pub first_index: u64,
    /// The highest index in it, `None` while it holds no record.
    pub last_index: Option<u64>,
    /// Its bytes, including what is still pending.
    pub bytes: u64,
}

/// Bytes bound for one positional write to one segment.
pub(super) struct Batch {
    pub segment_first_index: u64,
    pub path: Rc<Path>,
    pub offset: u64,
    /// The batch is `bytes[start..]`; `bytes[..start]` is room for the writer
    /// ([`batch_buffer`]).
    pub bytes: Vec<u8>,
    pub start: usize,
    /// The index of the batch's first record.
    pub first_index: u64,
    pub last_index: u64,
}

impl Batch {
    /// The batch's bytes (its room before them not counted).
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }
}

/// The capacity a fresh batch buffer starts with.
const BATCH_CAPACITY_MIN: usize = 64 << 10;

/// A batch buffer (`spare`, cleared) for a batch that begins at file offset `offset`, and
/// where the batch starts in it: after room (zeros) sized so that the block holding
/// `offset` begins at a block-aligned address. A direct writer puts that block's earlier
/// bytes in the room and writes the buffer where it lies, with no copy of the batch
/// (`storage::MonoioFile`); if the buffer moved while the batch grew, the writer copies it.
pub(super) fn batch_buffer(mut spare: Vec<u8>, offset: u64) -> (Vec<u8>, usize) {
    spare.clear();
    // A fresh buffer starts with room for a small batch, so it need not move while
    // the batch grows; a recycled one has the capacity of the batches before it.
    spare.reserve(2 * BLOCK_BYTES + BATCH_CAPACITY_MIN);
    let in_block = (offset % BLOCK_BYTES as u64) as usize;
    let start = aligned_position(spare.as_ptr() as usize, in_block);
    spare.resize(start, 0);
    (spare, start)
}

impl State {
    /// The highest index a waiter may be released at, per mode.
    pub fn acknowledged_index(&self, mode: WalMode) -> u64 {
        match mode {
            WalMode::Sync => self.durable_index,
            WalMode::Async => self.written_index,
            WalMode::Off => self.last_index,
        }
    }

    /// Removes the waiters at or below the acknowledged index (all of them after a
    /// failure) and returns their wakers, to be woken once the borrow is released.
    pub fn take_ready_waiters(&mut self, mode: WalMode) -> Vec<Waker> {
        let acknowledged = self.acknowledged_index(mode);
        let failed = self.failure.is_some();
        let mut ready = Vec::new();
        let mut position = 0;
        while position < self.waiters.len() {
            if failed || self.waiters[position].0 <= acknowledged {
                ready.push(self.waiters.swap_remove(position).1);
            } else {
                position += 1;
            }
        }
        ready
    }

    pub fn check_invariants(&self) {
        assert!(
            self.durable_index <= self.written_index,
            "durable past written"
        );
        assert!(
            self.written_index <= self.last_index,
            "written past appended"
        );
    }
}

impl Shared {
    /// Marks the log closing and wakes the commit task so it drains and stops.
    fn begin_close(&self) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.closing = true;
            state.committer_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Makes the log read-only: drops pending batches and releases every waiter with the
    /// error. Called by the commit task when a write or fsync fails.
    pub fn fail(&self, reason: String) {
        tracing::error!(dir = %self.dir.display(), "WAL is read-only: {reason}");
        let ready = {
            let mut state = self.state.borrow_mut();
            state.failure.get_or_insert(reason);
            state.pending.clear();
            state.pending_bytes = 0;
            state.take_ready_waiters(self.options.mode)
        };
        ready.into_iter().for_each(Waker::wake);
    }

    /// Wakes the waiters that the current acknowledged index releases.
    pub fn wake_waiters(&self) {
        let ready = self
            .state
            .borrow_mut()
            .take_ready_waiters(self.options.mode);
        ready.into_iter().for_each(Waker::wake);
    }
}

impl Wal {
    /// Opens (creating `dir` if needed) the log on io_uring through monoio, recovers it and
    /// returns every valid record for replay. Opening needs no runtime; the first append
    /// must run on the monoio runtime thread that owns the region (it spawns the commit
    /// task there).
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Vec<WalRecord>)> {
        let storage = MonoioStorage {
            direct_io: options.direct_io,
            synchronous_writes: options.mode == WalMode::Sync,
            zeros_ahead_limit: options.segment_bytes,
        };
        Wal::open_with_storage(dir, options, Rc::new(storage))
    }

    /// `open` on any storage (tests pass `MemoryStorage`).
    pub fn open_with_storage(
        dir: &Path,
        options: WalOptions,
        storage: Rc<dyn WalStorage>,
    ) -> Result<(Wal, Vec<WalRecord>)> {
        if options.mode == WalMode::Async && options.async_fsync.is_zero() {
            return Err(StorageError::InvalidArgument(
                "wal_async_fsync must be positive in async mode".to_string(),
            ));
        }
        if options.segment_bytes == 0 {
            return Err(StorageError::InvalidArgument(
                "wal_segment_bytes must be positive".to_string(),
            ));
        }
        storage
            .create_dir_all(dir)
            .map_err(|source| StorageError::io("create WAL directory", dir, source))?;
        let recovered = recover(storage.as_ref(), dir)?;
        // Recovery read the last segment through the page cache: make what it returns
        // durable before anyone treats it as such.
        if let Some(last) = recovered.segments.last() {
            storage
                .truncate_file(&last.path, last.bytes)
                .map_err(|source| StorageError::io("sync WAL segment", &last.path, source))?;
        }
        let last_record_index = recovered.records.last().map_or(0, |record| record.index);
        // An empty active segment still says where the log stood: keep indexes above it.
        let last_segment_floor = recovered
            .segments
            .last()
            .map_or(0, |segment| segment.first_index.saturating_sub(1));
        let last_index = last_record_index.max(last_segment_floor);
        let segments: VecDeque<Segment> = recovered
            .segments
            .into_iter()
            .map(|segment| Segment {
                first_index: segment.first_index,
                last_index: segment.last_index,
                path: Rc::from(segment.path),
                bytes: segment.bytes,
                checkpoints: segment.checkpoints,
            })
            .collect();
        let disk_bytes = segments.iter().map(|segment| segment.bytes).sum();
        let state = State {
            last_index,
            written_index: last_index,
            durable_index: last_index,
            failure: None,
            closing: false,
            tasks_started: false,
            sync_requested: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
            spare_buffers: Vec::new(),
            segments,
            disk_bytes,
            waiters: Vec::new(),
            committer_waker: None,
            committer: None,
        };
        let shared = Rc::new(Shared {
            dir: dir.to_path_buf(),
            options,
            storage,
            state: RefCell::new(state),
        });
        let wal = Wal {
            handle: Rc::new(Handle { shared }),
        };
        Ok((wal, recovered.records))
    }

    pub(super) fn shared(&self) -> &Rc<Shared> {
        &self.handle.shared
    }

    /// Buffers one record for the next group commit and returns at once; `wait_durable`
    /// tells when it is acknowledged. `index` must exceed every index before it (0 is never
    /// valid).
    pub fn append(&self, index: u64, kind: u8, payload: &[u8]) -> Result<()> {
        self.append_parts(index, kind, &[payload])
    }

    /// `append` of a payload given in parts, copied once straight into the batch.
    pub fn append_parts(&self, index: u64, kind: u8, parts: &[&[u8]]) -> Result<()> {
        let payload_bytes: usize = parts.iter().map(|part| part.len()).sum();
        self.append_with(index, kind, payload_bytes, |buffer| {
            for part in parts {
                buffer.extend_from_slice(part);
            }
        })
    }

    /// `append` of a payload of `payload_bytes` bytes that `write` encodes straight into
    /// the batch (it must append exactly that many bytes to the buffer it is given; it is
    /// not called when the log refuses the record or keeps nothing, `WalMode::Off`).
    pub fn append_with(
        &self,
        index: u64,
        kind: u8,
        payload_bytes: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let shared = self.shared();
        if payload_bytes > RECORD_PAYLOAD_BYTES_MAX {
            return Err(StorageError::InvalidArgument(format!(
                "WAL record payload of {payload_bytes} bytes exceeds {RECORD_PAYLOAD_BYTES_MAX}"
            )));
        }
        let mut state = shared.state.borrow_mut();
        if let Some(failure) = &state.failure {
            return Err(StorageError::ReadOnly(failure.clone()));
        }
        if state.closing {
            return Err(StorageError::Closed);
        }
        if index <= state.last_index {
            return Err(StorageError::InvalidArgument(format!(
                "WAL index {index} does not exceed the last index {}",
                state.last_index
            )));
        }
        if shared.options.mode == WalMode::Off {
            state.last_index = index;
            state.written_index = index;
            state.durable_index = index;
            return Ok(());
        }

        let record_len = record_bytes(payload_bytes);
        let State {
            segments,
            pending,
            spare_buffers,
            ..
        } = &mut *state;
        let roll = segments.back().is_none_or(|active| {
            active.last_index.is_some()
                && active.bytes + record_len as u64 > shared.options.segment_bytes
        });
        if roll {
            segments.push_back(Segment {
                first_index: index,
                last_index: None,
                path: Rc::from(shared.dir.join(segment_file_name(index))),
                bytes: 0,
                checkpoints: Vec::new(),
            });
        }
        let active = segments.back_mut().expect("an active segment exists");
        let header_bytes = if active.bytes == 0 {
            SEGMENT_HEADER_BYTES
        } else {
            0
        };
        let added_bytes = header_bytes + record_len;
        let joins_last_batch = pending.back().is_some_and(|batch| {
            batch.segment_first_index == active.first_index
                && batch.len() + added_bytes <= WAL_BATCH_BYTES_MAX
        });
        if !joins_last_batch {
            let (bytes, start) =
                batch_buffer(spare_buffers.pop().unwrap_or_default(), active.bytes);
            pending.push_back(Batch {
                segment_first_index: active.first_index,
                path: active.path.clone(),
                offset: active.bytes,
                bytes,
                start,
                first_index: index,
                last_index: index,
            });
        }
        let batch = pending.back_mut().expect("a batch to fill");
        debug_assert_eq!(batch.offset + batch.len() as u64, active.bytes);
        if header_bytes > 0 {
            encode_segment_header(&mut batch.bytes, SEGMENT_FLAG_ZEROS_AHEAD);
        }
        encode_record_with(&mut batch.bytes, index, kind, payload_bytes, write);
        batch.last_index = index;
        let record_offset = active.bytes + header_bytes as u64;
        if active
            .checkpoints
            .last()
            .is_none_or(|&(_, offset)| record_offset - offset >= WAL_READ_CHECKPOINT_BYTES as u64)
        {
            active.checkpoints.push((index, record_offset));
        }
        active.bytes += added_bytes as u64;
        active.last_index = Some(index);
        state.last_index = index;
        state.pending_bytes += added_bytes;
        state.disk_bytes += added_bytes as u64;

        if !state.tasks_started {
            state.tasks_started = true;
            state.committer = Some(monoio::spawn(commit::run(shared.clone())));
            if shared.options.mode == WalMode::Async {
                monoio::spawn(commit::run_fsync_timer(Rc::downgrade(shared)));
            }
        }
        let waker = state.committer_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Waits until `index` is acknowledged under the log's mode: fdatasync'ed (`Sync`),
    /// written to the OS (`Async`), or at once (`Off`). Fails with `ReadOnly` if the log
    /// failed before getting there.
    pub async fn wait_durable(&self, index: u64) -> Result<()> {
        let shared = self.shared();
        let mode = shared.options.mode;
        poll_fn(|context| {
            let mut state = shared.state.borrow_mut();
            if index <= state.acknowledged_index(mode) {
                return Poll::Ready(Ok(()));
            }
            if let Some(failure) = &state.failure {
                return Poll::Ready(Err(StorageError::ReadOnly(failure.clone())));
            }
            if index > state.last_index {
                return Poll::Ready(Err(StorageError::InvalidArgument(format!(
                    "waiting for WAL index {index}, beyond the last index {}",
                    state.last_index
                ))));
            }
            state.waiters.push((index, context.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// The highest index appended (0 when the log has never held a record).
    pub fn last_index(&self) -> u64 {
        self.shared().state.borrow().last_index
    }

    /// The highest index handed to the OS.
    pub fn written_index(&self) -> u64 {
        self.shared().state.borrow().written_index
    }

    /// The highest index made durable by fdatasync (in `Off` mode, the last index: that
    /// mode promises nothing more).
    pub fn durable_index(&self) -> u64 {
        self.shared().state.borrow().durable_index
    }

    /// Bytes appended but not yet taken by a write (for back-pressure by the region).
    pub fn pending_bytes(&self) -> usize {
        self.shared().state.borrow().pending_bytes
    }

    /// Bytes of all segments, including what is still pending.
    pub fn disk_bytes(&self) -> u64 {
        self.shared().state.borrow().disk_bytes
    }

    /// Every segment, oldest first (for retention decisions and `RegionInfo`).
    pub fn segment_spans(&self) -> Vec<SegmentSpan> {
        self.shared()
            .state
            .borrow()
            .segments
            .iter()
            .map(|segment| SegmentSpan {
                first_index: segment.first_index,
                last_index: segment.last_index,
                bytes: segment.bytes,
            })
            .collect()
    }

    /// The number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared().state.borrow().segments.len()
    }

    /// Why the log is read-only, if it is.
    pub fn failure(&self) -> Option<String> {
        self.shared().state.borrow().failure.clone()
    }

    /// Deletes the oldest segments whose records are all below `index` (a flush made them
    /// unnecessary) and returns how many. Never one with a write still to complete; the
    /// active segment only when nothing is pending and all of it is durable.
    pub fn remove_segments_below(&self, index: u64) -> Result<usize> {
        let shared = self.shared();
        let mut removed = 0;
        loop {
            let path = {
                let mut state = shared.state.borrow_mut();
                if state.segments.len() == 1 {
                    // The active segment goes too once every record in it is below `index`
                    // and durable: the next append starts a new segment. This is what
                    // leaves no WAL behind after a flush of an idle region.
                    let active = &state.segments[0];
                    let idle = state.pending.is_empty() && state.durable_index == state.last_index;
                    if !idle || active.last_index.is_none_or(|last| last >= index) {
                        break;
                    }
                    let active = state.segments.pop_front().expect("one segment");
                    state.disk_bytes -= active.bytes;
                    drop(state);
                    match shared.storage.remove_file(&active.path) {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(StorageError::io(
                                "remove WAL segment",
                                &*active.path,
                                source,
                            ));
                        }
                    }
                    removed += 1;
                    break;
                }
                if state.segments.len() < 2 {
                    break;
                }
                let oldest = &state.segments[0];
                let next_first_index = state.segments[1].first_index;
                let oldest_last_index = oldest
                    .last_index
                    .unwrap_or(next_first_index.saturating_sub(1));
                if oldest_last_index >= index || oldest_last_index > state.written_index {
                    break;
                }
                let oldest = state.segments.pop_front().expect("two segments");
                state.disk_bytes -= oldest.bytes;
                oldest.path
            };
            match shared.storage.remove_file(&path) {
                Ok(()) => {}
                // Already gone: the goal is met.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StorageError::io("remove WAL segment", &*path, source)),
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Writes and syncs everything pending, stops the commit task and waits for it.
    /// Fails with `ReadOnly` if the log had failed.
    pub async fn close(self) -> Result<()> {
        let shared = self.shared().clone();
        shared.begin_close();
        let committer = shared.state.borrow_mut().committer.take();
        if let Some(committer) = committer {
            committer.await;
        }
        let state = shared.state.borrow();
        state.check_invariants();
        match &state.failure {
            Some(failure) => Err(StorageError::ReadOnly(failure.clone())),
            None => Ok(()),
        }
    }
}
