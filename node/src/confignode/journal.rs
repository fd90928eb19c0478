//! A small durable store for a state machine: a checksummed snapshot file
//! plus an append-only checksummed log of the commands applied since.
//!
//! ```text
//! <dir>/<name>.snapshot   magic "IOTDBSN2" | index u64 | len u64 | raw len u64 | crc32c u32
//!                         | payload (zstd of the JSON, raw len bytes once decompressed)
//!                         (read, no longer written: magic "IOTDBSN1" | index u64 | len u64
//!                         | crc32c u32 | payload, the JSON as it is)
//! <dir>/<name>.log        magic "IOTDBJL1" | record*
//! record                  len u32 | crc32c u32 | index u64 | payload
//! ```
//!
//! Integers are little-endian; payloads are JSON (the control path is not
//! hot, and JSON keeps the files inspectable: `zstd -d` shows a snapshot's).
//! Each crc32c covers the index, (a snapshot) the raw length, and the stored
//! payload. Record indexes are consecutive; a snapshot taken at index `i`
//! covers every record up to `i`.
//!
//! Size: a snapshot is compressed (the standard workload's schema of 10,000
//! series: 0.7 MB of JSON, 2 KB stored), and its owner folds the log into a
//! new one when [`Journal::log_outgrew_snapshot`]: the log is larger than
//! [`LOG_COMPACT_BYTES_MIN`] and than the snapshot's JSON, so writing
//! snapshots costs at most about as much as the log itself, and the log never
//! holds much more than the state it describes. A DataNode also folds its
//! logs at `FLUSH`.
//!
//! Durability: an append returns only after `fdatasync`, so a caller that
//! acknowledges after `append` never loses an acknowledged command. A
//! snapshot and a fresh log are each written to a `.tmp` file, synced,
//! renamed into place, and the directory synced, so either the old or the
//! new file is seen after a crash, never a mix.
//!
//! Recovery: a record that runs past the end of the file, or whose checksum
//! fails with nothing after it, is a torn tail from a crash mid-append (it
//! was never acknowledged) and is truncated. A bad record followed by more
//! bytes is corruption and is reported, never skipped. After a failed write
//! or sync the journal refuses further appends: what reached the disk is
//! unknown until it is reopened and recovered.
//!
//! The journal is shared by the ConfigNode state and by SchemaRegions; it is
//! owned by whichever single thread drives that state machine.
//!
//! Every file operation goes through the storage engine's
//! [`FileSystem`] seam (`std::fs` in production, [`Journal::open`]; a fault-injecting
//! one in tests, [`Journal::open_in`]), so that a test can fail any of them.

use iotdb_storage::file_system::{FileSystem, WritableFile, std_file_system};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The snapshot format written: compressed.
const SNAPSHOT_MAGIC: &[u8; 8] = b"IOTDBSN2";
/// The snapshot format of earlier builds: the JSON stored as it is.
const SNAPSHOT_MAGIC_RAW: &[u8; 8] = b"IOTDBSN1";
const LOG_MAGIC: &[u8; 8] = b"IOTDBJL1";
/// Snapshot header: magic, index, payload length, raw length, checksum.
const SNAPSHOT_HEADER_BYTES: usize = 8 + 8 + 8 + 8 + 4;
/// An uncompressed (`IOTDBSN1`) snapshot's header: magic, index, payload length, checksum.
const SNAPSHOT_RAW_HEADER_BYTES: usize = 8 + 8 + 8 + 4;
/// zstd level of snapshots: zstd's own default trade-off.
const SNAPSHOT_ZSTD_LEVEL: i32 = 3;

/// The log is folded into a snapshot only once it is larger than this (and than the
/// snapshot's JSON): small states are not rewritten on every few commands.
///
/// Why 1 MiB: replaying that much JSON takes milliseconds, and a schema of 10,000 series
/// (about 0.8 MB of log when created device by device) is folded at `FLUSH` or on the
/// next restart, not several times while it is created.
pub const LOG_COMPACT_BYTES_MIN: u64 = 1 << 20;
/// Record header: payload length, checksum, index.
const RECORD_HEADER_BYTES: usize = 4 + 4 + 8;

/// Largest accepted record payload. A command is a few kilobytes (a batch
/// of 1000 partition assignments is about 40 KiB); anything near this is a
/// damaged length field, not a real record.
pub const RECORD_BYTES_MAX: usize = 64 << 20;
/// Largest accepted snapshot payload, so a damaged or hostile file cannot
/// make recovery allocate without bound.
pub const SNAPSHOT_BYTES_MAX: u64 = 2 << 30;

/// Errors of the durable store.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file's bytes are not what this store writes.
    #[error("corrupt {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the problem starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A payload could not be encoded.
    #[error("cannot encode a journal payload: {0}")]
    Encode(String),
    /// An earlier write or sync failed; the journal must be reopened.
    #[error("journal {0} failed earlier and must be reopened")]
    Failed(PathBuf),
    /// A payload is larger than [`RECORD_BYTES_MAX`].
    #[error("record of {bytes} bytes exceeds the limit of {RECORD_BYTES_MAX}")]
    RecordTooLarge {
        /// The encoded size.
        bytes: usize,
    },
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io {
        operation,
        path,
        source,
    }
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_le_bytes()), payload)
}

/// A compressed snapshot's checksum: its index, its JSON's length and the stored payload.
fn snapshot_checksum(index: u64, json_len: u64, payload: &[u8]) -> u32 {
    let head = crc32c::crc32c_append(
        crc32c::crc32c(&index.to_le_bytes()),
        &json_len.to_le_bytes(),
    );
    crc32c::crc32c_append(head, payload)
}

/// What [`Journal::open`] found on disk.
#[derive(Debug)]
pub struct Recovered<S, R> {
    /// The latest snapshot, if one was written.
    pub snapshot: Option<S>,
    /// The records after the snapshot, in order.
    pub records: Vec<R>,
}

/// An open snapshot + log pair. See the module docs for the format.
pub struct Journal {
    file_system: Arc<dyn FileSystem>,
    dir: PathBuf,
    snapshot_path: PathBuf,
    log_path: PathBuf,
    log: Box<dyn WritableFile>,
    /// Index the next appended record gets.
    next_index: u64,
    /// Records in the log after the latest snapshot.
    records_since_snapshot: u64,
    /// Bytes of the log file (its magic included).
    log_bytes: u64,
    /// Bytes of the latest snapshot's JSON, before compression (0: none).
    snapshot_json_bytes: u64,
    failed: bool,
    /// Appends skip their fdatasync until [`Journal::sync`] (group commit of a batch).
    deferred_sync: bool,
    /// Records appended but not yet synced.
    unsynced: bool,
    /// Frames of deferred appends not yet written: a batch goes to the log in one write
    /// at [`Journal::sync`], not a system call per record.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Journal")
            .field("log_path", &self.log_path)
            .field("next_index", &self.next_index)
            .field("records_since_snapshot", &self.records_since_snapshot)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating if needed) the store `name` in `dir` through `std::fs`,
    /// recovering the snapshot and the records after it.
    pub fn open<S: DeserializeOwned, R: DeserializeOwned>(
        dir: &Path,
        name: &str,
    ) -> Result<(Journal, Recovered<S, R>), JournalError> {
        Journal::open_in(std_file_system(), dir, name)
    }

    /// [`Journal::open`] through `file_system`, which every later operation of the
    /// journal uses too.
    pub fn open_in<S: DeserializeOwned, R: DeserializeOwned>(
        file_system: Arc<dyn FileSystem>,
        dir: &Path,
        name: &str,
    ) -> Result<(Journal, Recovered<S, R>), JournalError> {
        let fs = &*file_system;
        fs.create_dir_all(dir)
            .map_err(io_error("create directory", dir))?;
        let snapshot_path = dir.join(format!("{name}.snapshot"));
        let log_path = dir.join(format!("{name}.log"));
        for stale in [tmp_path(&snapshot_path), tmp_path(&log_path)] {
            if fs.exists(&stale).map_err(io_error("look for", &stale))? {
                fs.remove_file(&stale)
                    .map_err(io_error("remove stale file", &stale))?;
            }
        }
        let (snapshot_index, snapshot, snapshot_json_bytes) =
            match read_snapshot::<S>(fs, &snapshot_path)? {
                Some((index, state, json_bytes)) => (index, Some(state), json_bytes),
                None => (0, None, 0),
            };
        if !fs
            .exists(&log_path)
            .map_err(io_error("look for", &log_path))?
        {
            write_atomically_in(fs, dir, &log_path, LOG_MAGIC)?;
        }
        let (records, next_index, log_bytes) = read_log::<R>(fs, &log_path, snapshot_index)?;
        let mut log = fs
            .open_append(&log_path)
            .map_err(io_error("open log", &log_path))?;
        // The recovered records may sit only in the page cache (a process crash before
        // their sync): make them durable before anything is acknowledged on top of them.
        log.sync_data().map_err(io_error("sync log", &log_path))?;
        let journal = Journal {
            file_system,
            dir: dir.to_path_buf(),
            snapshot_path,
            log_path,
            log,
            next_index,
            records_since_snapshot: records.len() as u64,
            log_bytes,
            snapshot_json_bytes,
            failed: false,
            deferred_sync: false,
            unsynced: false,
            pending: Vec::new(),
        };
        Ok((journal, Recovered { snapshot, records }))
    }

    /// Appends one record and syncs it; returns its index. The record is
    /// durable when this returns `Ok`.
    pub fn append<R: Serialize>(&mut self, record: &R) -> Result<u64, JournalError> {
        if self.failed {
            return Err(JournalError::Failed(self.log_path.clone()));
        }
        let payload =
            serde_json::to_vec(record).map_err(|error| JournalError::Encode(error.to_string()))?;
        if payload.len() > RECORD_BYTES_MAX {
            return Err(JournalError::RecordTooLarge {
                bytes: payload.len(),
            });
        }
        let index = self.next_index;
        let frame_bytes = RECORD_HEADER_BYTES + payload.len();
        if self.deferred_sync {
            // Written with the rest of the batch at `sync`.
            put_frame(&mut self.pending, index, &payload);
            self.unsynced = true;
        } else {
            let mut frame = Vec::with_capacity(frame_bytes);
            put_frame(&mut frame, index, &payload);
            let written = self
                .log
                .write_all(&frame)
                .and_then(|()| self.log.sync_data());
            if let Err(source) = written {
                return Err(self.failure("append to log", source));
            }
        }
        self.next_index += 1;
        self.records_since_snapshot += 1;
        self.log_bytes += frame_bytes as u64;
        Ok(index)
    }

    /// Writes `state` as the snapshot covering every record so far, then
    /// starts an empty log.
    pub fn write_snapshot<S: Serialize>(&mut self, state: &S) -> Result<(), JournalError> {
        if self.failed {
            return Err(JournalError::Failed(self.log_path.clone()));
        }
        let result = self.write_snapshot_inner(state);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn write_snapshot_inner<S: Serialize>(&mut self, state: &S) -> Result<(), JournalError> {
        let json =
            serde_json::to_vec(state).map_err(|error| JournalError::Encode(error.to_string()))?;
        if json.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(JournalError::Encode(format!(
                "a snapshot of {} bytes exceeds the limit of {SNAPSHOT_BYTES_MAX}",
                json.len()
            )));
        }
        let payload = zstd::bulk::compress(&json, SNAPSHOT_ZSTD_LEVEL)
            .map_err(|error| JournalError::Encode(format!("compressing a snapshot: {error}")))?;
        // Deferred records not yet written are in `state`: the snapshot covers them.
        let index = self.next_index - 1;
        let json_len = json.len() as u64;
        let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&index.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json_len.to_le_bytes());
        bytes.extend_from_slice(&snapshot_checksum(index, json_len, &payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let fs = &*self.file_system;
        write_atomically_in(fs, &self.dir, &self.snapshot_path, &bytes)?;
        // A crash here leaves the old log beside the new snapshot; recovery
        // skips its records because their indexes are covered.
        write_atomically_in(fs, &self.dir, &self.log_path, LOG_MAGIC)?;
        self.log = fs
            .open_append(&self.log_path)
            .map_err(io_error("open log", &self.log_path))?;
        self.pending.clear();
        self.records_since_snapshot = 0;
        self.log_bytes = LOG_MAGIC.len() as u64;
        self.snapshot_json_bytes = json_len;
        Ok(())
    }

    /// Whether the log should be folded into a new snapshot: it is larger than
    /// [`LOG_COMPACT_BYTES_MIN`] and than the latest snapshot's JSON (what writing the
    /// next one costs).
    pub fn log_outgrew_snapshot(&self) -> bool {
        self.log_bytes >= LOG_COMPACT_BYTES_MIN.max(self.snapshot_json_bytes)
    }

    /// Defers the write and the fdatasync of later appends to [`Journal::sync`], so a
    /// batch of records costs one write and one sync; none of them is durable before it
    /// returns (a snapshot written meanwhile covers them).
    pub fn defer_sync(&mut self) {
        self.deferred_sync = true;
    }

    /// Whether an earlier write or sync failed (the journal must be reopened).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Writes the deferred appends to the log without syncing them: still none is durable
    /// before [`Journal::sync`]. A batch that changes several journals writes them all
    /// first, then syncs each: the first sync then makes the others' new bytes durable
    /// too on a journaling file system (its commit covers every file's appended data in
    /// `data=ordered` mode), so theirs costs little more than the disk's cache flush.
    pub fn write_deferred(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.failed {
            return Err(JournalError::Failed(self.log_path.clone()));
        }
        let written = self.log.write_all(&self.pending);
        self.pending.clear();
        written.map_err(|source| self.failure("append to log", source))
    }

    /// Writes and syncs deferred appends and ends deferral.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.deferred_sync = false;
        if !self.unsynced {
            return Ok(());
        }
        if self.failed {
            return Err(JournalError::Failed(self.log_path.clone()));
        }
        self.write_deferred()?;
        if let Err(source) = self.log.sync_data() {
            return Err(self.failure("sync log", source));
        }
        self.unsynced = false;
        Ok(())
    }

    /// Marks the journal failed (it must be reopened) and returns the error of the log
    /// operation that failed.
    fn failure(&mut self, operation: &'static str, source: std::io::Error) -> JournalError {
        self.failed = true;
        JournalError::Io {
            operation,
            path: self.log_path.clone(),
            source,
        }
    }

    /// Records appended since the latest snapshot (the replay cost).
    pub fn records_since_snapshot(&self) -> u64 {
        self.records_since_snapshot
    }
}

/// Appends a record's frame (length, checksum, index, payload) to `out`.
fn put_frame(out: &mut Vec<u8>, index: u64, payload: &[u8]) {
    // The length fits: the caller bounded it by RECORD_BYTES_MAX.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(index, payload).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` with `bytes` through `std::fs`: [`write_atomically_in`].
pub(crate) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    write_atomically_in(&*std_file_system(), dir, path, bytes)
}

/// Replaces `path` with `bytes`: write a temporary file, sync it, rename it
/// over `path`, sync the directory.
fn write_atomically_in(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), JournalError> {
    let tmp = tmp_path(path);
    let mut file = fs.create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all(bytes).map_err(io_error("write", &tmp))?;
    file.sync_data().map_err(io_error("sync", &tmp))?;
    drop(file);
    fs.rename(&tmp, path)
        .map_err(io_error("rename into place", path))?;
    fs.sync_dir(dir).map_err(io_error("sync directory", dir))
}

/// The snapshot at `path`, if there is one: its index, its state and the bytes of its JSON.
fn read_snapshot<S: DeserializeOwned>(
    fs: &dyn FileSystem,
    path: &Path,
) -> Result<Option<(u64, S, u64)>, JournalError> {
    let file_bytes = match fs.file_bytes(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("stat snapshot", path)(error)),
    };
    let corrupt = |offset: u64, reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if file_bytes > SNAPSHOT_BYTES_MAX + SNAPSHOT_HEADER_BYTES as u64 {
        return Err(corrupt(0, format!("{file_bytes} bytes exceeds the limit")));
    }
    let bytes = fs.read(path).map_err(io_error("read snapshot", path))?;
    let compressed = match bytes.get(..8) {
        Some(magic) if magic == SNAPSHOT_MAGIC => true,
        Some(magic) if magic == SNAPSHOT_MAGIC_RAW => false,
        _ => return Err(corrupt(0, "bad magic".into())),
    };
    let header_bytes = if compressed {
        SNAPSHOT_HEADER_BYTES
    } else {
        SNAPSHOT_RAW_HEADER_BYTES
    };
    let Some((header, payload)) = bytes.split_at_checked(header_bytes) else {
        return Err(corrupt(0, "shorter than its header".into()));
    };
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let index = word(8);
    let length = word(16);
    if length != payload.len() as u64 {
        return Err(corrupt(
            16,
            format!("length {length} but {} payload bytes", payload.len()),
        ));
    }
    let crc_at = header_bytes - 4;
    let stored = u32::from_le_bytes(header[crc_at..].try_into().expect("4 bytes"));
    let json = if compressed {
        let json_len = word(24);
        if snapshot_checksum(index, json_len, payload) != stored {
            return Err(corrupt(crc_at as u64, "checksum mismatch".into()));
        }
        if json_len > SNAPSHOT_BYTES_MAX {
            return Err(corrupt(
                24,
                format!("{json_len} bytes of JSON exceeds the limit"),
            ));
        }
        let json = zstd::bulk::decompress(payload, json_len as usize).map_err(|error| {
            corrupt(header_bytes as u64, format!("does not decompress: {error}"))
        })?;
        if json.len() as u64 != json_len {
            return Err(corrupt(
                24,
                format!("{} bytes of JSON, {json_len} expected", json.len()),
            ));
        }
        std::borrow::Cow::Owned(json)
    } else {
        if checksum(index, payload) != stored {
            return Err(corrupt(crc_at as u64, "checksum mismatch".into()));
        }
        std::borrow::Cow::Borrowed(payload)
    };
    let state = serde_json::from_slice(&json)
        .map_err(|error| corrupt(header_bytes as u64, error.to_string()))?;
    Ok(Some((index, state, json.len() as u64)))
}

/// Reads the log's records after `snapshot_index`, truncating a torn tail;
/// returns them, the index the next record gets and the log's length after.
fn read_log<R: DeserializeOwned>(
    fs: &dyn FileSystem,
    path: &Path,
    snapshot_index: u64,
) -> Result<(Vec<R>, u64, u64), JournalError> {
    let bytes = fs.read(path).map_err(io_error("read log", path))?;
    let corrupt = |offset: usize, reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if bytes.get(..LOG_MAGIC.len()) != Some(LOG_MAGIC.as_slice()) {
        return Err(corrupt(0, "bad magic".into()));
    }
    let mut records = Vec::new();
    let mut offset = LOG_MAGIC.len();
    let mut previous_index: Option<u64> = None;
    let mut torn = false;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some(header) = rest.get(..RECORD_HEADER_BYTES) else {
            torn = true;
            break;
        };
        let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let stored = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let index = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let end = RECORD_HEADER_BYTES.saturating_add(length);
        if length > RECORD_BYTES_MAX || end > rest.len() {
            // Runs past the end of the file: only the last, unacknowledged
            // append can look like this.
            torn = true;
            break;
        }
        let payload = &rest[RECORD_HEADER_BYTES..end];
        if checksum(index, payload) != stored {
            if end == rest.len() {
                torn = true;
                break;
            }
            return Err(corrupt(
                offset,
                "checksum mismatch before more records".into(),
            ));
        }
        match previous_index {
            Some(previous) if index != previous + 1 => {
                return Err(corrupt(offset, format!("index {index} follows {previous}")));
            }
            None if index > snapshot_index + 1 => {
                return Err(corrupt(
                    offset,
                    format!("first index {index} leaves a gap after snapshot {snapshot_index}"),
                ));
            }
            _ => {}
        }
        previous_index = Some(index);
        if index > snapshot_index {
            let record = serde_json::from_slice(payload)
                .map_err(|error| corrupt(offset, error.to_string()))?;
            records.push(record);
        }
        offset += end;
    }
    if torn {
        fs.truncate(path, offset as u64)
            .map_err(io_error("truncate torn log tail", path))?;
    }
    let next_index =
        previous_index.map_or(snapshot_index + 1, |index| index.max(snapshot_index) + 1);
    Ok((records, next_index, offset as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};

    type Opened = (Journal, Recovered<Vec<u32>, u32>);

    fn open(dir: &Path) -> Result<Opened, JournalError> {
        Journal::open(dir, "test")
    }

    /// Opening the journal in `dir` reports corruption.
    fn assert_corrupt(dir: &Path) {
        assert!(matches!(open(dir), Err(JournalError::Corrupt { .. })));
    }

    /// Appends `record` until the log outgrows the snapshot; returns how many it took.
    fn append_until_outgrown(journal: &mut Journal, record: &[u8]) -> usize {
        let mut appended = 0;
        while !journal.log_outgrew_snapshot() {
            journal.append(&record).unwrap();
            appended += 1;
            assert!(appended < 10_000, "never outgrew");
        }
        appended
    }

    #[test]
    fn records_and_snapshots_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, recovered) = open(dir.path()).unwrap();
        assert!(recovered.snapshot.is_none() && recovered.records.is_empty());
        assert_eq!(journal.append(&1u32).unwrap(), 1);
        assert_eq!(journal.append(&2u32).unwrap(), 2);
        drop(journal);
        let (mut journal, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.records, vec![1, 2]);
        journal.write_snapshot(&vec![1u32, 2]).unwrap();
        assert_eq!(journal.append(&3u32).unwrap(), 3);
        drop(journal);
        let (_, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(vec![1, 2]));
        assert_eq!(recovered.records, vec![3]);
    }

    #[test]
    fn a_deferred_batch_is_written_at_its_sync() {
        let dir = tempfile::tempdir().unwrap();
        let log_len = || fs::metadata(dir.path().join("test.log")).unwrap().len();
        let (mut journal, _) = open(dir.path()).unwrap();
        journal.append(&1u32).unwrap();
        let before = log_len();
        journal.defer_sync();
        assert_eq!(journal.append(&2u32).unwrap(), 2);
        assert_eq!(journal.append(&3u32).unwrap(), 3);
        // Nothing of the batch reached the file: it goes in one write at `sync`.
        assert_eq!(log_len(), before);
        journal.sync().unwrap();
        assert!(log_len() > before);
        // Written ahead of the sync (a batch that changes several journals): the records
        // are in the file, one write, and a later append of the batch goes at its sync.
        journal.defer_sync();
        journal.append(&31u32).unwrap();
        let before = log_len();
        journal.write_deferred().unwrap();
        let written = log_len();
        assert!(written > before);
        journal.write_deferred().unwrap();
        assert_eq!(log_len(), written, "nothing left to write");
        journal.append(&32u32).unwrap();
        assert_eq!(log_len(), written);
        journal.sync().unwrap();
        assert!(log_len() > written);
        drop(journal);
        let (mut journal, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.records, vec![1, 2, 3, 31, 32]);
        // A batch cut short by a snapshot: the snapshot holds its records.
        journal.defer_sync();
        journal.append(&4u32).unwrap();
        journal
            .write_snapshot(&vec![1u32, 2, 3, 31, 32, 4])
            .unwrap();
        journal.append(&5u32).unwrap();
        journal.sync().unwrap();
        drop(journal);
        let (_, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(vec![1, 2, 3, 31, 32, 4]));
        assert_eq!(recovered.records, vec![5]);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path()).unwrap();
        journal.append(&7u32).unwrap();
        journal.append(&8u32).unwrap();
        drop(journal);
        let log = dir.path().join("test.log");
        let length = fs::metadata(&log).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(length - 1)
            .unwrap();
        let (mut journal, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.records, vec![7]);
        assert_eq!(journal.append(&9u32).unwrap(), 2);
        drop(journal);
        let (_, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.records, vec![7, 9]);
    }

    #[test]
    fn damaged_record_before_good_ones_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path()).unwrap();
        journal.append(&7u32).unwrap();
        journal.append(&8u32).unwrap();
        drop(journal);
        let log = dir.path().join("test.log");
        let mut bytes = fs::read(&log).unwrap();
        // Flip a payload byte of the first record.
        bytes[LOG_MAGIC.len() + RECORD_HEADER_BYTES] ^= 0xff;
        fs::write(&log, &bytes).unwrap();
        assert_corrupt(dir.path());
    }

    #[test]
    fn damaged_snapshot_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path()).unwrap();
        journal.append(&1u32).unwrap();
        journal.write_snapshot(&vec![1u32]).unwrap();
        drop(journal);
        let path = dir.path().join("test.snapshot");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert_corrupt(dir.path());
        fs::write(&path, b"short").unwrap();
        assert_corrupt(dir.path());
    }

    #[test]
    fn stale_log_records_covered_by_the_snapshot_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path()).unwrap();
        journal.append(&1u32).unwrap();
        journal.append(&2u32).unwrap();
        let old_log = fs::read(dir.path().join("test.log")).unwrap();
        journal.write_snapshot(&vec![1u32, 2]).unwrap();
        drop(journal);
        // As if the crash came between the snapshot rename and the log reset.
        fs::write(dir.path().join("test.log"), &old_log).unwrap();
        let (mut journal, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(vec![1, 2]));
        assert!(recovered.records.is_empty());
        assert_eq!(journal.append(&3u32).unwrap(), 3);
    }

    #[test]
    fn snapshots_are_compressed_and_an_uncompressed_one_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path()).unwrap();
        journal.append(&1u32).unwrap();
        let state: Vec<u32> = (0..10_000).map(|i| i % 7).collect();
        journal.write_snapshot(&state).unwrap();
        drop(journal);
        let path = dir.path().join("test.snapshot");
        let written = fs::read(&path).unwrap();
        let json = serde_json::to_vec(&state).unwrap();
        assert_eq!(&written[..8], SNAPSHOT_MAGIC);
        assert!(written.len() * 10 < json.len(), "{} bytes", written.len());
        let (_, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot.as_ref(), Some(&state));

        // As an earlier build wrote it: the JSON as it is, after a shorter header.
        let index = 1u64;
        let mut raw = SNAPSHOT_MAGIC_RAW.to_vec();
        raw.extend_from_slice(&index.to_le_bytes());
        raw.extend_from_slice(&(json.len() as u64).to_le_bytes());
        raw.extend_from_slice(&checksum(index, &json).to_le_bytes());
        raw.extend_from_slice(&json);
        fs::write(&path, &raw).unwrap();
        let (mut journal, recovered) = open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot.as_ref(), Some(&state));
        assert!(recovered.records.is_empty());
        assert_eq!(journal.append(&2u32).unwrap(), 2);
        // A flipped bit in either form's payload is caught.
        for mut bytes in [raw, written] {
            let middle = bytes.len() - 3;
            bytes[middle] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
            assert_corrupt(dir.path());
        }
    }

    #[test]
    fn the_log_outgrows_the_snapshot_past_the_minimum_and_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path()).unwrap();
        // Records of about 1 KiB: the log passes LOG_COMPACT_BYTES_MIN after ~1000.
        let record = vec![7u8; 500];
        let appended = append_until_outgrown(&mut journal, &record);
        let log_bytes = fs::metadata(dir.path().join("test.log")).unwrap().len();
        assert!(log_bytes >= LOG_COMPACT_BYTES_MIN, "{log_bytes}");
        assert!(log_bytes < LOG_COMPACT_BYTES_MIN + 2048, "{log_bytes}");
        // Reopened, the log's size is known again.
        drop(journal);
        let (mut journal, recovered) =
            Journal::open::<Vec<u8>, Vec<u8>>(dir.path(), "test").unwrap();
        assert_eq!(recovered.records.len(), appended);
        assert!(journal.log_outgrew_snapshot());
        // A snapshot whose JSON is larger than the minimum (2 MiB of state): the log must
        // outgrow that instead.
        let big: Vec<u32> = (0..400_000).collect();
        journal.write_snapshot(&big).unwrap();
        assert!(!journal.log_outgrew_snapshot());
        let json_bytes = serde_json::to_vec(&big).unwrap().len() as u64;
        assert!(json_bytes > LOG_COMPACT_BYTES_MIN);
        append_until_outgrown(&mut journal, &record);
        let log_bytes = fs::metadata(dir.path().join("test.log")).unwrap().len();
        assert!(
            log_bytes >= json_bytes && log_bytes < json_bytes + 2048,
            "{log_bytes}"
        );
    }

    #[test]
    fn bad_magic_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("test.log"), b"NOTALOG!").unwrap();
        assert_corrupt(dir.path());
    }
}
