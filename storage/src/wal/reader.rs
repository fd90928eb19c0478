//! Reading the log back by index: what a replica's dispatcher ships to a follower.
//!
//! ```text
//!  read(from, max_bytes)
//!     │ locate `from` (no borrow held across an await):
//!     ├─ below the first segment ────────────► Gone { first_kept }
//!     ├─ written (≤ written_index) ──────────► segment file: start at the nearest
//!     │                                        checkpoint ≤ from, read windows through
//!     │                                        `WalStorage::read_at` (io_uring), skip
//!     │                                        records below `from`
//!     ├─ in a pending batch (not yet taken) ─► copied from memory
//!     └─ in the batch being written ─────────► wait for the write (only when nothing
//!                                              was read yet), then locate again
//! ```
//!
//! Every record is checksummed again as it is read (from disk or from memory); a record
//! that fails, or an index that is not the next one expected, is a typed error, never
//! skipped. Each file read moves at most `WAL_READ_WINDOW_BYTES` beyond the record it
//! needs, so one call costs the loop a few bounded io_uring reads.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use super::WalRecord;
use super::format::{
    RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES, decode_record,
    record_bytes,
};
use super::log::{State, Wal};
use super::storage::WalStorage;
use crate::config::WAL_READ_WINDOW_BYTES;
use crate::error::{Result, StorageError};

/// What [`Wal::read`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRead {
    /// Consecutive records from the index asked for; empty when the log holds nothing at
    /// or after it yet.
    Records(Vec<WalRecord>),
    /// The log no longer holds the index asked for; `first_kept` is the lowest it holds
    /// (the last index + 1 when it holds none).
    Gone { first_kept: u64 },
}

/// Where the record at an index lies now.
enum Source {
    /// Past the last index: nothing to read yet.
    End,
    Gone(u64),
    File {
        path: Rc<Path>,
        start_offset: u64,
        /// The last index of the segment that is written: read no further in it.
        last_index: u64,
    },
    Pending,
    /// In the batch the commit task is writing right now.
    InFlight,
}

/// Records gathered so far and the byte budget they count against.
struct Gathered {
    records: Vec<WalRecord>,
    bytes: usize,
    max_bytes: usize,
    next: u64,
}

impl Gathered {
    /// Whether a record with `payload_bytes` fits: the first always does.
    fn fits(&self, payload_bytes: usize) -> bool {
        self.records.is_empty() || self.bytes + record_bytes(payload_bytes) <= self.max_bytes
    }

    fn full(&self) -> bool {
        !self.records.is_empty() && self.bytes >= self.max_bytes
    }

    fn push(&mut self, index: u64, kind: u8, payload: &[u8]) {
        assert_eq!(index, self.next, "records are gathered in index order");
        self.bytes += record_bytes(payload.len());
        self.records.push(WalRecord {
            index,
            kind,
            payload: Bytes::copy_from_slice(payload),
        });
        self.next += 1;
    }
}

impl Wal {
    /// Consecutive records from `from`, as many as fit in `max_bytes` (counted as the
    /// WAL stores them, header included) but at least one when the log holds `from`.
    /// Reads records still pending in memory as well as the segment files. Must run on
    /// the shard that owns the log.
    pub async fn read(&self, from: u64, max_bytes: usize) -> Result<WalRead> {
        if from == 0 {
            return Err(StorageError::InvalidArgument(
                "WAL indexes start at 1".to_string(),
            ));
        }
        let shared = self.shared().clone();
        let mut gathered = Gathered {
            records: Vec::new(),
            bytes: 0,
            max_bytes,
            next: from,
        };
        let mut missing_file: Option<Rc<Path>> = None;
        while !gathered.full() {
            let source = locate(&shared.state.borrow(), gathered.next);
            match source {
                Source::End => break,
                Source::Gone(first_kept) => {
                    if gathered.records.is_empty() {
                        return Ok(WalRead::Gone { first_kept });
                    }
                    break;
                }
                Source::Pending => {
                    let before = gathered.next;
                    copy_pending(&shared.state.borrow(), &shared.dir, &mut gathered)?;
                    if gathered.next == before {
                        break;
                    }
                }
                Source::InFlight => {
                    if !gathered.records.is_empty() {
                        break;
                    }
                    // Resolves once the batch is written (or the log failed).
                    self.wait_durable(gathered.next).await?;
                }
                Source::File {
                    path,
                    start_offset,
                    last_index,
                } => {
                    let before = gathered.next;
                    match read_segment(self, &path, start_offset, last_index, &mut gathered).await {
                        Ok(()) => {}
                        // Removed meanwhile (a flush): locate again, once per file.
                        Err(StorageError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound
                                && missing_file.as_ref() != Some(&path) =>
                        {
                            missing_file = Some(path);
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                    if gathered.next == before {
                        if !gathered.records.is_empty() {
                            // The budget ends here.
                            break;
                        }
                        return Err(StorageError::corruption(
                            &*path,
                            start_offset,
                            format!(
                                "record {} is not in the segment that should hold it",
                                gathered.next
                            ),
                        ));
                    }
                }
            }
        }
        Ok(WalRead::Records(gathered.records))
    }
}

/// Where the record at `index` lies now.
fn locate(state: &State, index: u64) -> Source {
    if index > state.last_index {
        return Source::End;
    }
    let Some(first) = state.segments.front() else {
        return Source::Gone(state.last_index + 1);
    };
    if index < first.first_index {
        return Source::Gone(first.first_index);
    }
    if index <= state.written_index {
        let segment = state
            .segments
            .iter()
            .rev()
            .find(|segment| segment.first_index <= index)
            .expect("the first segment starts at or below the index");
        let start_offset = segment
            .checkpoints
            .iter()
            .rev()
            .find(|&&(at_index, _)| at_index <= index)
            .map_or(SEGMENT_HEADER_BYTES as u64, |&(_, offset)| offset);
        return Source::File {
            path: segment.path.clone(),
            start_offset,
            last_index: segment.last_index.unwrap_or(0).min(state.written_index),
        };
    }
    match state.pending.front() {
        Some(batch) if batch.first_index <= index => Source::Pending,
        _ => Source::InFlight,
    }
}

/// Copies records from the pending batches (all in memory, under one borrow).
fn copy_pending(state: &State, dir: &Path, gathered: &mut Gathered) -> Result<()> {
    for batch in &state.pending {
        if batch.last_index < gathered.next {
            continue;
        }
        let bytes = &batch.bytes[batch.start..];
        let mut offset = if batch.offset == 0 {
            SEGMENT_HEADER_BYTES
        } else {
            0
        };
        while offset < bytes.len() {
            let record = decode_record(bytes, offset).map_err(|reason| {
                StorageError::corruption(
                    dir,
                    batch.offset + offset as u64,
                    format!("pending WAL batch: {reason}"),
                )
            })?;
            offset = record.end();
            if record.index < gathered.next {
                continue;
            }
            check_next(dir, batch.offset, record.index, gathered.next)?;
            if !gathered.fits(record.payload_bytes) {
                return Ok(());
            }
            gathered.push(
                record.index,
                record.kind,
                &bytes[record.payload_start..record.end()],
            );
            if gathered.full() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The log holds consecutive indexes: a record past the expected one means a hole.
fn check_next(path: &Path, offset: u64, found: u64, expected: u64) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(StorageError::corruption(
        path,
        offset,
        format!("the WAL has no record {expected}: record {found} follows"),
    ))
}

/// A window of one segment file being read.
struct Cursor<'a> {
    path: &'a Path,
    buffer: Vec<u8>,
    /// The file offset of `buffer[0]`.
    buffer_offset: u64,
    /// Where the next record starts in `buffer`.
    position: usize,
    window: usize,
}

impl Cursor<'_> {
    /// Makes `need` bytes from `position` available if the file has them; whether it has.
    async fn ensure(&mut self, storage: &dyn WalStorage, need: usize) -> Result<bool> {
        if self.buffer.len() - self.position >= need {
            return Ok(true);
        }
        self.buffer.drain(..self.position);
        self.buffer_offset += self.position as u64;
        self.position = 0;
        let want = (need - self.buffer.len()).max(self.window);
        let at = self.buffer_offset + self.buffer.len() as u64;
        let more = storage
            .read_at(self.path, at, want)
            .await
            .map_err(|source| StorageError::io("read WAL segment", self.path, source))?;
        self.buffer.extend_from_slice(&more);
        Ok(self.buffer.len() >= need)
    }
}

/// Reads records of one segment file from `start_offset` until `last_index`, the budget
/// or the end of the file.
async fn read_segment(
    wal: &Wal,
    path: &Path,
    start_offset: u64,
    last_index: u64,
    gathered: &mut Gathered,
) -> Result<()> {
    let storage = wal.shared().storage.clone();
    let mut cursor = Cursor {
        path,
        buffer: Vec::new(),
        buffer_offset: start_offset,
        position: 0,
        window: gathered
            .max_bytes
            .saturating_sub(gathered.bytes)
            .clamp(RECORD_HEADER_BYTES, WAL_READ_WINDOW_BYTES),
    };
    while gathered.next <= last_index && !gathered.full() {
        // Written records are whole: where the file is short, `decode_record` names the
        // damage.
        if cursor.ensure(storage.as_ref(), RECORD_HEADER_BYTES).await? {
            let at = cursor.position + 4;
            let length =
                u32::from_le_bytes(cursor.buffer[at..at + 4].try_into().expect("4 bytes")) as usize;
            // An absurd length is refused by `decode_record`, not read.
            if length <= RECORD_PAYLOAD_BYTES_MAX {
                cursor
                    .ensure(storage.as_ref(), record_bytes(length))
                    .await?;
            }
        }
        let record_offset = cursor.buffer_offset + cursor.position as u64;
        let record = decode_record(&cursor.buffer, cursor.position)
            .map_err(|reason| StorageError::corruption(path, record_offset, reason))?;
        cursor.position = record.end();
        if record.index < gathered.next {
            continue;
        }
        check_next(path, record_offset, record.index, gathered.next)?;
        if !gathered.fits(record.payload_bytes) {
            break;
        }
        gathered.push(
            record.index,
            record.kind,
            &cursor.buffer[record.payload_start..record.end()],
        );
    }
    Ok(())
}
