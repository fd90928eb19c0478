//! A small durable log over the `Disk` trait: checksummed, length-prefixed records with
//! dense indexes, appended in group commits, recovered with the WAL's rules.
//!
//! It is the pattern the storage WAL and the Raft log store follow, kept small enough to be
//! checked exhaustively in the simulator (`sim_tests`).
//!
//! ```text
//!  append(payload) ──► batch in memory (index = last + 1)          not yet durable
//!  write()         ──► one Disk::write_at of the batch        written, not durable
//!  sync()          ──► one Disk::sync
//!                      ok  ──► durable_index = written index: acknowledge up to it
//!                      err ──► read-only for good; nothing more is ever acknowledged
//!  commit()        ──► write() then sync()
//!  open(disk, name) ──► recovery (below) ──► the records, in index order
//! ```
//!
//! **Recovery.** A damaged record (bad checksum, impossible length, short read) is a *torn
//! tail* only when no valid record follows it: a crash interrupted the last write, and no
//! acknowledged record can lie past that point, so the tail is cut (and the cut synced)
//! and the log continues from there. A damaged record followed by a valid one is
//! corruption: `open` fails with the offset, and no record is ever skipped. A valid record
//! whose index is not the previous one plus one is corruption too. The same rules as
//! `storage/src/wal/recovery.rs`.
//!
//! **Failures.** A failed write or fsync makes the log read-only for the rest of the
//! process's life: after a failed fsync the kernel may have dropped the unsynced pages
//! while reads still return them, so neither a retried fsync nor reopening the file in the
//! same process proves anything about them. The way back is a restart, whose recovery
//! reads what really is on disk (PostgreSQL panics for the same reason). The simulated
//! disk models exactly this, and a test shows that a log which retries is caught losing
//! acknowledged records.
//!
//! **Creation.** A new log file is created, given its header, synced, and its directory
//! entry synced, before `open` returns: a record is never acknowledged in a file whose
//! name could vanish in a crash.
//!
//! One `RecordLog` per file, owned by one core.

pub mod format;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use thiserror::Error;

use crate::io::{Disk, DiskError};
use crate::limits::{LOG_BATCH_BYTES_MAX, LOG_RECORD_PAYLOAD_BYTES_MAX};
use format::{
    FILE_HEADER_BYTES, decode_file_header, decode_record, encode_file_header, encode_record,
    record_bytes,
};

/// A record as recovery returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub payload: Vec<u8>,
}

/// Why a log operation failed.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("log {name}: {source}")]
    Disk {
        name: String,
        #[source]
        source: DiskError,
    },
    #[error("log {name} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        name: String,
        offset: u64,
        reason: String,
    },
    #[error("log {name} is read-only after an earlier write or fsync failure")]
    ReadOnly { name: String },
    #[error("record payload of {bytes} bytes exceeds {LOG_RECORD_PAYLOAD_BYTES_MAX}")]
    PayloadTooLarge { bytes: usize },
    #[error(
        "group-commit batch is full ({bytes} bytes pending, limit {LOG_BATCH_BYTES_MAX}); commit first"
    )]
    BatchFull { bytes: usize },
}

/// What `open` found.
#[derive(Debug)]
pub struct Opened<D: Disk> {
    pub log: RecordLog<D>,
    /// Every record in the file, in index order (1, 2, ...).
    pub records: Vec<Record>,
    /// Bytes of a torn tail that recovery cut.
    pub truncated_bytes: u64,
}

/// An open log: recovered records are durable, later ones durable once committed.
#[derive(Debug)]
pub struct RecordLog<D: Disk> {
    disk: D,
    name: String,
    /// Bytes of the file that hold the header and committed batches.
    file_bytes: u64,
    /// Index of the last appended record (0 for none).
    last_index: u64,
    /// Index of the last record written to the file (durable or not).
    written_index: u64,
    /// Index of the last record known durable.
    durable_index: u64,
    /// Encoded records appended since the last commit.
    batch: Vec<u8>,
    read_only: bool,
    /// Test-only mutation: keep going after a failed fsync, as a buggy log would. The
    /// simulation test uses it to show the harness catches the bug.
    #[cfg(test)]
    retry_after_sync_failure: bool,
}

impl<D: Disk> RecordLog<D> {
    /// Opens (creating if missing) the log file `name` on `disk` and recovers it.
    pub fn open(mut disk: D, name: &str) -> Result<Opened<D>, LogError> {
        let io = |source| LogError::Disk {
            name: name.to_string(),
            source,
        };
        let exists = disk.list().map_err(io)?.iter().any(|file| file == name);
        if !exists {
            disk.create(name).map_err(io)?;
        }
        let data = disk.read_all(name).map_err(io)?;
        let (records, valid_bytes) = recover(name, &data)?;
        let mut truncated_bytes = 0;
        if valid_bytes < data.len() || valid_bytes == 0 {
            truncated_bytes = (data.len() - valid_bytes) as u64;
            if valid_bytes == 0 {
                // No valid header (a new file, or its header was torn): start afresh.
                let mut header = Vec::with_capacity(FILE_HEADER_BYTES);
                encode_file_header(&mut header);
                disk.truncate(name, 0).map_err(io)?;
                disk.append(name, &header).map_err(io)?;
            } else {
                disk.truncate(name, valid_bytes as u64).map_err(io)?;
            }
            disk.sync(name).map_err(io)?;
        }
        // Always: the file may have been created by this call or by an earlier one that
        // failed before syncing the directory. Opening is rare; one fsync is cheap.
        disk.sync_dir().map_err(io)?;
        let last_index = records.last().map_or(0, |record| record.index);
        let file_bytes = disk.len(name).map_err(io)?;
        let log = RecordLog {
            disk,
            name: name.to_string(),
            file_bytes,
            last_index,
            written_index: last_index,
            durable_index: last_index,
            batch: Vec::new(),
            read_only: false,
            #[cfg(test)]
            retry_after_sync_failure: false,
        };
        log.check_invariants();
        Ok(Opened {
            log,
            records,
            truncated_bytes,
        })
    }

    /// Adds a record to the current batch and returns its index. Not durable until a
    /// `commit` that includes it returns.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        if self.read_only {
            return Err(self.read_only_error());
        }
        if payload.len() > LOG_RECORD_PAYLOAD_BYTES_MAX {
            return Err(LogError::PayloadTooLarge {
                bytes: payload.len(),
            });
        }
        if self.batch.len() + record_bytes(payload.len()) > LOG_BATCH_BYTES_MAX {
            return Err(LogError::BatchFull {
                bytes: self.batch.len(),
            });
        }
        self.last_index += 1;
        encode_record(&mut self.batch, self.last_index, payload);
        self.check_invariants();
        Ok(self.last_index)
    }

    /// Writes the batch with one write and one fsync; returns the durable index, which
    /// covers every record appended so far. Any failure makes the log read-only.
    pub fn commit(&mut self) -> Result<u64, LogError> {
        self.write()?;
        self.sync()
    }

    /// The first half of a commit: writes the batch to the file (one write), returning the
    /// index of the last record written. Nothing is durable yet; a crash may keep any
    /// prefix of it, torn. A driver on io_uring submits this, then `sync` on completion.
    pub fn write(&mut self) -> Result<u64, LogError> {
        if self.read_only {
            return Err(self.read_only_error());
        }
        if self.batch.is_empty() {
            return Ok(self.written_index);
        }
        if let Err(source) = self.disk.write_at(&self.name, self.file_bytes, &self.batch) {
            self.read_only = true;
            return Err(self.disk_error(source));
        }
        self.file_bytes += self.batch.len() as u64;
        self.batch.clear();
        self.written_index = self.last_index;
        self.check_invariants();
        Ok(self.written_index)
    }

    /// The second half of a commit: one fsync, after which every record written so far is
    /// durable; returns the durable index (acknowledge up to it). A failure makes the log
    /// read-only and acknowledges nothing.
    pub fn sync(&mut self) -> Result<u64, LogError> {
        if self.read_only {
            return Err(self.read_only_error());
        }
        if self.durable_index == self.written_index {
            return Ok(self.durable_index);
        }
        if let Err(source) = self.disk.sync(&self.name) {
            #[cfg(test)]
            if self.retry_after_sync_failure {
                return Err(self.disk_error(source));
            }
            self.read_only = true;
            return Err(self.disk_error(source));
        }
        self.durable_index = self.written_index;
        self.check_invariants();
        Ok(self.durable_index)
    }

    fn disk_error(&self, source: DiskError) -> LogError {
        LogError::Disk {
            name: self.name.clone(),
            source,
        }
    }

    /// Index of the last record written to the file (not necessarily durable).
    pub fn written_index(&self) -> u64 {
        self.written_index
    }

    /// Index of the last record known durable.
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    /// Index of the last appended record.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The disk, for the owner's *other* files (a snapshot, the next log file). Writing
    /// this log's own file through it would break the log.
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Closes the log and hands the disk back (records not committed are dropped).
    pub fn into_disk(self) -> D {
        self.disk
    }

    /// Whether a failure has made the log read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn read_only_error(&self) -> LogError {
        LogError::ReadOnly {
            name: self.name.clone(),
        }
    }

    fn check_invariants(&self) {
        assert!(self.durable_index <= self.written_index);
        assert!(self.written_index <= self.last_index);
        assert!(self.file_bytes >= FILE_HEADER_BYTES as u64);
        assert!(self.batch.len() <= LOG_BATCH_BYTES_MAX);
        if !self.read_only {
            assert_eq!(
                self.batch.is_empty(),
                self.written_index == self.last_index,
                "records past the written index are exactly the batch"
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn set_retry_after_sync_failure(&mut self, retry: bool) {
        self.retry_after_sync_failure = retry;
    }
}

/// Validates `data` (a whole log file): returns its records and how many leading bytes
/// are valid, or `Corrupt` when damage has a valid record after it.
fn recover(name: &str, data: &[u8]) -> Result<(Vec<Record>, usize), LogError> {
    let corrupt = |offset: usize, reason: String| LogError::Corrupt {
        name: name.to_string(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    if let Err(reason) = decode_file_header(data) {
        if let Some(valid) = find_valid_record(data, 0, 0) {
            return Err(corrupt(
                0,
                format!("file header: {reason}, and a valid record follows at offset {valid}"),
            ));
        }
        return Ok((records, 0));
    }
    let mut offset = FILE_HEADER_BYTES;
    let mut previous = 0u64;
    while offset < data.len() {
        match decode_record(data, offset) {
            Ok(record) => {
                if record.index != previous + 1 {
                    return Err(corrupt(
                        offset,
                        format!("record index {} does not follow {previous}", record.index),
                    ));
                }
                records.push(Record {
                    index: record.index,
                    payload: data[record.payload_start..record.end].to_vec(),
                });
                previous = record.index;
                offset = record.end;
            }
            Err(reason) => {
                if let Some(valid) = find_valid_record(data, offset + 1, previous) {
                    return Err(corrupt(
                        offset,
                        format!("{reason}, and a valid record follows at offset {valid}"),
                    ));
                }
                return Ok((records, offset));
            }
        }
    }
    Ok((records, offset))
}

/// The first offset at or after `from` holding a well-formed record whose index could
/// come after `previous`. Quadratic in the worst case, but it only runs over a torn tail,
/// which is at most one group-commit batch.
fn find_valid_record(data: &[u8], from: usize, previous: u64) -> Option<usize> {
    (from..data.len())
        .find(|&offset| decode_record(data, offset).is_ok_and(|record| record.index > previous))
}
