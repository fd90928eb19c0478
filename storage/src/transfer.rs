//! Snapshot transfer: a snapshot directory (`Region::snapshot`) as a stream of
//! checksummed chunks, and the receiving side that rebuilds it in a staging directory,
//! ready for `Region::install_snapshot`. Storage opens no socket: the caller carries
//! [`Chunk::encode`]d bytes however it likes.
//!
//! ```text
//!  sender shard                                      receiver shard
//!  SnapshotReader::open(snapshot dir)                SnapshotWriter::new(staging dir)
//!    next_chunk(max) ─► Chunk ─► encode ─► (net) ─► decode ─► accept(chunk)   (×N)
//!    ... None                                        finish() ─► SnapshotInfo
//!                                                      └─► Region::install_snapshot
//! ```
//!
//! Files go in a fixed order: `sealed/*` (sorted by name), then `MODS`, then `MANIFEST`,
//! each from offset 0 in consecutive chunks, the last one flagged. The writer refuses a
//! name that is not one of those shapes (no path traversal), a chunk out of order, a
//! checksum that does not match, a file past `SNAPSHOT_FILE_BYTES_MAX`; every file is
//! fsynced when its last chunk arrives, the directories before `finish` returns, and
//! `finish` checks that the MANIFEST names exactly the sealed files received.
//!
//! Chunk encoding (little-endian):
//! ```text
//! "IOSC" | u8 version (1) | u8 flags (bit 0: last of its file; others 0)
//! | u16 name_len | name (UTF-8) | u64 offset | u32 data_len | data | u32 crc32c
//! crc32c over: name, offset (8 bytes LE), flags byte, data
//! ```
//!
//! The reader reads through monoio (io_uring where the runtime has it), one bounded read
//! per chunk. The writer creates, writes, fsyncs and lists through the engine's
//! [`FileSystem`] seam (`crate::file_system`), so that tests can fail any operation of a
//! receive; its calls block the receiving shard, one chunk's write (at most
//! `SNAPSHOT_CHUNK_BYTES_MAX`, 4 MiB from the DataNode) or one fsync at a time, as
//! `Region::snapshot` and `Region::install_snapshot` already do. Both ends belong to the
//! shard that runs them.
//!
//! A failed receive leaves only its staging directory: `finish` is the only way to a
//! [`SnapshotInfo`], it refuses a writer that met an I/O error, and nothing installs a
//! staging directory that `finish` did not describe. The receiver removes the directory
//! before the next attempt (`SnapshotWriter::new` refuses a non-empty one).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::CodecError;
use crate::codec::bits::ByteReader;
use crate::config::{SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_FILE_BYTES_MAX, SNAPSHOT_FILES_MAX};
use crate::error::{ReplicationError, Result, StorageError};
use crate::file_system::{FileSystem, WritableFile, std_file_system};
use crate::region::{Manifest, SnapshotInfo, deletion, sync_dir};
use crate::wal::storage::read_range;

const CHUNK_MAGIC: &[u8; 4] = b"IOSC";
const CHUNK_VERSION: u8 = 1;
const FLAG_LAST_OF_FILE: u8 = 1;
/// Bytes of a chunk's encoding besides its name and data.
const CHUNK_OVERHEAD_BYTES: usize = 4 + 1 + 1 + 2 + 8 + 4 + 4;
/// The longest file name a chunk carries (`sealed/` + a sealed file's name).
const FILE_NAME_BYTES_MAX: usize = 255;
const MANIFEST_FILE: &str = "MANIFEST";
const SEALED_PREFIX: &str = "sealed/";

/// A piece of one file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The file's path inside the snapshot: `MANIFEST`, `MODS` or `sealed/<name>`.
    pub file: String,
    /// Where `data` starts in the file.
    pub offset: u64,
    pub data: Bytes,
    /// [`Chunk::checksum`] of the other fields.
    pub crc32c: u32,
    /// Whether `data` ends the file.
    pub last_of_file: bool,
}

fn invalid_chunk(reason: impl Into<String>) -> StorageError {
    ReplicationError::InvalidChunk(reason.into()).into()
}

impl Chunk {
    /// A chunk with its checksum.
    pub fn new(file: String, offset: u64, data: Bytes, last_of_file: bool) -> Chunk {
        let crc32c = Chunk::checksum(&file, offset, &data, last_of_file);
        Chunk {
            file,
            offset,
            data,
            crc32c,
            last_of_file,
        }
    }

    /// crc32c over the name, the offset, the flags and the data.
    pub fn checksum(file: &str, offset: u64, data: &[u8], last_of_file: bool) -> u32 {
        let mut crc = crc32c::crc32c(file.as_bytes());
        crc = crc32c::crc32c_append(crc, &offset.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &[flags(last_of_file)]);
        crc32c::crc32c_append(crc, data)
    }

    /// Whether the stored checksum matches the fields.
    pub fn verify(&self) -> Result<()> {
        let actual = Chunk::checksum(&self.file, self.offset, &self.data, self.last_of_file);
        if actual != self.crc32c {
            return Err(invalid_chunk(format!(
                "checksum mismatch in {} at offset {}",
                self.file, self.offset
            )));
        }
        Ok(())
    }

    /// Bytes of [`Chunk::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        CHUNK_OVERHEAD_BYTES + self.file.len() + self.data.len()
    }

    /// Appends the chunk's encoding (module doc) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(
            self.file.len() <= FILE_NAME_BYTES_MAX,
            "names come from a snapshot"
        );
        assert!(
            self.data.len() <= SNAPSHOT_CHUNK_BYTES_MAX,
            "chunks are bounded"
        );
        out.reserve(self.encoded_len());
        out.extend_from_slice(CHUNK_MAGIC);
        out.push(CHUNK_VERSION);
        out.push(flags(self.last_of_file));
        out.extend_from_slice(&(self.file.len() as u16).to_le_bytes());
        out.extend_from_slice(self.file.as_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.crc32c.to_le_bytes());
    }

    /// Decodes one chunk that fills `bytes` exactly, its checksum verified; the data is a
    /// slice of `bytes`, not a copy.
    pub fn decode(bytes: &Bytes) -> Result<Chunk> {
        let truncated = |error: CodecError| invalid_chunk(error.to_string());
        let mut reader = ByteReader::new(bytes);
        if reader.take(4, "chunk magic").map_err(truncated)? != CHUNK_MAGIC {
            return Err(invalid_chunk("bad magic"));
        }
        let version = reader.u8("chunk version").map_err(truncated)?;
        if version != CHUNK_VERSION {
            return Err(invalid_chunk(format!("unsupported version {version}")));
        }
        let flag_byte = reader.u8("chunk flags").map_err(truncated)?;
        if flag_byte & !FLAG_LAST_OF_FILE != 0 {
            return Err(invalid_chunk(format!("unknown flags {flag_byte:#x}")));
        }
        let name_len = reader.take(2, "file name length").map_err(truncated)?;
        let name_len = u16::from_le_bytes([name_len[0], name_len[1]]) as usize;
        if name_len > FILE_NAME_BYTES_MAX {
            return Err(invalid_chunk(format!("file name of {name_len} bytes")));
        }
        let file = std::str::from_utf8(reader.take(name_len, "file name").map_err(truncated)?)
            .map_err(|_| invalid_chunk("file name is not UTF-8"))?
            .to_string();
        let offset = reader.u64_le("chunk offset").map_err(truncated)?;
        let data_len = reader.u32_le("data length").map_err(truncated)? as usize;
        if data_len > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(invalid_chunk(format!(
                "{data_len} data bytes, at most {SNAPSHOT_CHUNK_BYTES_MAX}"
            )));
        }
        let data_start = reader.position();
        reader.take(data_len, "chunk data").map_err(truncated)?;
        let data = bytes.slice(data_start..reader.position());
        let crc32c = reader.u32_le("chunk checksum").map_err(truncated)?;
        if reader.remaining() != 0 {
            return Err(invalid_chunk(format!(
                "{} trailing bytes",
                reader.remaining()
            )));
        }
        let chunk = Chunk {
            file,
            offset,
            data,
            crc32c,
            last_of_file: flag_byte & FLAG_LAST_OF_FILE != 0,
        };
        chunk.verify()?;
        Ok(chunk)
    }
}

fn flags(last_of_file: bool) -> u8 {
    if last_of_file { FLAG_LAST_OF_FILE } else { 0 }
}

/// Whether `name` is a file a snapshot may hold: `MANIFEST`, `MODS` or `sealed/<name>`
/// with a plain name (letters, digits, `.`, `-`, `_`, not starting with `.`).
fn check_file_name(name: &str) -> Result<()> {
    if name == MANIFEST_FILE || name == deletion::MODS_NAME {
        return Ok(());
    }
    let plain = name.strip_prefix(SEALED_PREFIX).is_some_and(|file| {
        !file.is_empty()
            && !file.starts_with('.')
            && file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    });
    if !plain || name.len() > FILE_NAME_BYTES_MAX {
        return Err(invalid_chunk(format!("refused file name {name:?}")));
    }
    Ok(())
}

/// Streams a snapshot directory as chunks (the module doc). Owned by the shard that
/// sends; the directory must not change while it is read (a snapshot never does).
pub struct SnapshotReader {
    dir: PathBuf,
    /// (name inside the snapshot, bytes), in sending order.
    files: Vec<(String, u64)>,
    /// The file being sent and the next offset in it.
    current: usize,
    offset: u64,
}

impl SnapshotReader {
    /// Lists the snapshot in `dir`: its sealed files, MODS (if any) and MANIFEST (which
    /// must exist).
    pub fn open(dir: &Path) -> Result<SnapshotReader> {
        let sealed = dir.join("sealed");
        let mut names = Vec::new();
        if sealed.exists() {
            let entries = std::fs::read_dir(&sealed)
                .map_err(|e| StorageError::io("list snapshot files", &sealed, e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| StorageError::io("list snapshot files", &sealed, e))?;
                let name = entry.file_name().into_string().map_err(|name| {
                    ReplicationError::InvalidSnapshot(format!("file name {name:?} is not UTF-8"))
                })?;
                names.push(format!("{SEALED_PREFIX}{name}"));
            }
        }
        names.sort();
        if dir.join(deletion::MODS_NAME).exists() {
            names.push(deletion::MODS_NAME.to_string());
        }
        names.push(MANIFEST_FILE.to_string());
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            check_file_name(&name)?;
            let path = dir.join(&name);
            let bytes = std::fs::metadata(&path)
                .map_err(|e| StorageError::io("stat snapshot file", &path, e))?
                .len();
            files.push((name, bytes));
        }
        Ok(SnapshotReader {
            dir: dir.to_path_buf(),
            files,
            current: 0,
            offset: 0,
        })
    }

    /// Bytes of all the snapshot's files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, bytes)| bytes).sum()
    }

    /// The next chunk, with at most `max_bytes` of data (at least 1, at most
    /// `SNAPSHOT_CHUNK_BYTES_MAX`), or `None` once every file was sent.
    pub async fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<Chunk>> {
        let Some((name, size)) = self.files.get(self.current).cloned() else {
            return Ok(None);
        };
        let path = self.dir.join(&name);
        let wanted = (size - self.offset).min(max_bytes.clamp(1, SNAPSHOT_CHUNK_BYTES_MAX) as u64);
        let data = read_range(&path, self.offset, wanted as usize)
            .await
            .map_err(|e| StorageError::io("read snapshot file", &path, e))?;
        if data.len() as u64 != wanted {
            return Err(ReplicationError::InvalidSnapshot(format!(
                "{} shrank while it was sent",
                path.display()
            ))
            .into());
        }
        let chunk = Chunk::new(
            name,
            self.offset,
            Bytes::from(data),
            self.offset + wanted == size,
        );
        self.offset += wanted;
        if chunk.last_of_file {
            self.current += 1;
            self.offset = 0;
        }
        Ok(Some(chunk))
    }
}

/// The file being received.
struct Receiving {
    name: String,
    file: Box<dyn WritableFile>,
    next_offset: u64,
}

/// Rebuilds a snapshot from chunks in a staging directory (the module doc). Owned by the
/// shard that receives.
pub struct SnapshotWriter {
    file_system: Arc<dyn FileSystem>,
    dir: PathBuf,
    done: BTreeSet<String>,
    current: Option<Receiving>,
    bytes: u64,
    /// Why the writer gave up (an I/O error): it accepts nothing more.
    failed: Option<String>,
}

impl SnapshotWriter {
    /// A writer into `staging_dir`, which must not exist or be empty, through `std::fs`.
    pub fn new(staging_dir: &Path) -> Result<SnapshotWriter> {
        SnapshotWriter::with_file_system(std_file_system(), staging_dir)
    }

    /// A writer into `staging_dir` (which must not exist or be empty) through
    /// `file_system`.
    pub fn with_file_system(
        file_system: Arc<dyn FileSystem>,
        staging_dir: &Path,
    ) -> Result<SnapshotWriter> {
        let listed = file_system.list(staging_dir);
        match listed {
            Ok(names) if !names.is_empty() => {
                return Err(StorageError::InvalidArgument(format!(
                    "snapshot staging directory {} is not empty",
                    staging_dir.display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("list snapshot staging", staging_dir, e)),
        }
        let sealed = staging_dir.join("sealed");
        file_system
            .create_dir_all(&sealed)
            .map_err(|e| StorageError::io("create snapshot staging", &sealed, e))?;
        Ok(SnapshotWriter {
            file_system,
            dir: staging_dir.to_path_buf(),
            done: BTreeSet::new(),
            current: None,
            bytes: 0,
            failed: None,
        })
    }

    /// Writes one chunk. Refused without effect: a bad checksum or name, a chunk that is
    /// not the next one of the current file (or, between files, not offset 0 of a file
    /// not received yet), a file past `SNAPSHOT_FILE_BYTES_MAX`, too many files. An I/O
    /// error fails the writer for good: this and every later call return
    /// `StorageError::ReadOnly` (an I/O error on the first).
    pub async fn accept(&mut self, chunk: Chunk) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(StorageError::ReadOnly(reason.clone()));
        }
        chunk.verify()?;
        check_file_name(&chunk.file)?;
        if chunk.data.len() > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(invalid_chunk(format!(
                "{} data bytes, at most {SNAPSHOT_CHUNK_BYTES_MAX}",
                chunk.data.len()
            )));
        }
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if end > SNAPSHOT_FILE_BYTES_MAX {
            return Err(invalid_chunk(format!(
                "{} would reach {end} bytes, at most {SNAPSHOT_FILE_BYTES_MAX}",
                chunk.file
            )));
        }
        match &self.current {
            Some(current) if current.name != chunk.file || current.next_offset != chunk.offset => {
                return Err(invalid_chunk(format!(
                    "expected {} at offset {}, got {} at offset {}",
                    current.name, current.next_offset, chunk.file, chunk.offset
                )));
            }
            Some(_) => {}
            None => {
                if chunk.offset != 0 || self.done.contains(&chunk.file) {
                    return Err(invalid_chunk(format!(
                        "a new file must start at offset 0 and not repeat: {} at offset {}",
                        chunk.file, chunk.offset
                    )));
                }
                if self.done.len() >= SNAPSHOT_FILES_MAX {
                    return Err(invalid_chunk(format!(
                        "more than {SNAPSHOT_FILES_MAX} files"
                    )));
                }
                let path = self.dir.join(&chunk.file);
                let file = self
                    .file_system
                    .create_new(&path)
                    .map_err(|e| self.fail(StorageError::io("create snapshot file", &path, e)))?;
                self.current = Some(Receiving {
                    name: chunk.file.clone(),
                    file,
                    next_offset: 0,
                });
            }
        }
        let current = self.current.as_mut().expect("set above");
        let length = chunk.data.len() as u64;
        // Chunks of a file arrive in order (checked above), so the file is written
        // sequentially.
        let written = current.file.write_all(&chunk.data);
        let path = self.dir.join(&chunk.file);
        if let Err(e) = written {
            return Err(self.fail(StorageError::io("write snapshot file", &path, e)));
        }
        current.next_offset += length;
        self.bytes += length;
        if chunk.last_of_file {
            let mut current = self.current.take().expect("set above");
            if let Err(e) = current.file.sync_data() {
                return Err(self.fail(StorageError::io("fsync snapshot file", &path, e)));
            }
            self.done.insert(current.name);
        }
        Ok(())
    }

    /// Fails the writer for good with `error` (an I/O error: what reached the disk is
    /// unknown, so the receive must start again in an empty directory).
    fn fail(&mut self, error: StorageError) -> StorageError {
        self.failed = Some(error.to_string());
        self.current = None;
        error
    }

    /// Checks that the snapshot is complete (no file half received, a MANIFEST naming
    /// exactly the sealed files received, a MODS that decodes), makes the directories
    /// durable and describes it.
    pub async fn finish(self) -> Result<SnapshotInfo> {
        if let Some(reason) = self.failed {
            return Err(StorageError::ReadOnly(reason));
        }
        if let Some(current) = &self.current {
            return Err(ReplicationError::InvalidSnapshot(format!(
                "{} ends at offset {} without its last chunk",
                current.name, current.next_offset
            ))
            .into());
        }
        if !self.done.contains(MANIFEST_FILE) {
            return Err(ReplicationError::InvalidSnapshot("no MANIFEST received".into()).into());
        }
        let manifest = Manifest::load_in(&*self.file_system, &self.dir)?;
        deletion::load_in(&*self.file_system, &self.dir)?;
        let named: BTreeSet<String> = manifest
            .files
            .iter()
            .map(|entry| format!("{SEALED_PREFIX}{}", entry.file_name()))
            .collect();
        let received: BTreeSet<String> = self
            .done
            .iter()
            .filter(|name| name.starts_with(SEALED_PREFIX))
            .cloned()
            .collect();
        if named != received {
            let missing: Vec<_> = named.difference(&received).collect();
            let extra: Vec<_> = received.difference(&named).collect();
            return Err(ReplicationError::InvalidSnapshot(format!(
                "the MANIFEST does not match the files: missing {missing:?}, unnamed {extra:?}"
            ))
            .into());
        }
        for dir in [self.dir.join("sealed"), self.dir.clone()] {
            sync_dir(&*self.file_system, &dir)?;
        }
        Ok(SnapshotInfo {
            dir: self.dir,
            wal_index: manifest.flushed_index,
            files: manifest.files.len(),
            bytes: self.bytes,
        })
    }
}
