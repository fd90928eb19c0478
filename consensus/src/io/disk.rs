//! Files as logs and snapshot stores need them: named files in one directory.
//!
//! The durability contract is POSIX's, stated here because the simulated disk enforces
//! exactly it and no more:
//!
//! - `write_at`/`append`/`truncate` change what reads see at once, but survive a crash
//!   only after a successful `sync` of that file. A crash may keep any *prefix* of the
//!   unsynced changes of a file, the last of them torn (partly written).
//! - `create`, `rename` and `remove` survive a crash only after a successful `sync_dir`;
//!   a crash may keep any prefix of them, in order. Syncing a file does not make its
//!   directory entry durable.
//! - A failed `sync` (EIO) may have lost the unsynced changes for good even though reads
//!   still return them (Linux drops the dirty pages), so a later successful `sync` does
//!   not make them durable. A caller that acknowledged after retrying would lose data:
//!   after a failed sync, nothing written before it may be acknowledged, ever.

use thiserror::Error;

use crate::limits::DISK_FILE_NAME_BYTES_MAX;

/// One directory of files, single-threaded (owned by the core that owns the data).
///
/// Names are plain file names (no `/`), checked by [`validate_file_name`].
pub trait Disk {
    /// Creates an empty file; fails with `AlreadyExists` if the name is taken.
    fn create(&mut self, name: &str) -> Result<(), DiskError>;
    /// Writes `data` at the end of the file, returning the offset it was written at.
    fn append(&mut self, name: &str, data: &[u8]) -> Result<u64, DiskError>;
    /// Writes `data` at `offset`; a gap past the end reads as zeros.
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, DiskError>;
    /// The whole file.
    fn read_all(&self, name: &str) -> Result<Vec<u8>, DiskError>;
    /// The file's length in bytes.
    fn len(&self, name: &str) -> Result<u64, DiskError>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), DiskError>;
    /// fdatasync: makes the file's data and length durable.
    fn sync(&mut self, name: &str) -> Result<(), DiskError>;
    /// fsync of the directory: makes creates, renames and removes durable.
    fn sync_dir(&mut self) -> Result<(), DiskError>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError>;
    /// Deletes a file.
    fn remove(&mut self, name: &str) -> Result<(), DiskError>;
    /// The names of the files, sorted.
    fn list(&self) -> Result<Vec<String>, DiskError>;
}

/// The operation a `DiskError` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskOp {
    Create,
    Append,
    WriteAt,
    Read,
    Len,
    Truncate,
    Sync,
    SyncDir,
    Rename,
    Remove,
    List,
}

impl std::fmt::Display for DiskOp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            DiskOp::Create => "create",
            DiskOp::Append => "append",
            DiskOp::WriteAt => "write",
            DiskOp::Read => "read",
            DiskOp::Len => "stat",
            DiskOp::Truncate => "truncate",
            DiskOp::Sync => "fsync",
            DiskOp::SyncDir => "fsync directory",
            DiskOp::Rename => "rename",
            DiskOp::Remove => "remove",
            DiskOp::List => "list",
        };
        formatter.write_str(name)
    }
}

/// A disk operation that failed, with the operation and the file.
#[derive(Debug, Error)]
pub enum DiskError {
    #[error("{op} {name}: no such file")]
    NotFound { op: DiskOp, name: String },
    #[error("{op} {name}: file exists")]
    AlreadyExists { op: DiskOp, name: String },
    #[error("invalid file name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// ENOSPC: nothing of the write reached the file.
    #[error("{op} {name}: no space left on device")]
    NoSpace { op: DiskOp, name: String },
    /// Any other failure, EIO from an fsync among them.
    #[error("{op} {name}: {source}")]
    Io {
        op: DiskOp,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl DiskError {
    /// The operation that failed.
    pub fn op(&self) -> Option<DiskOp> {
        match self {
            DiskError::NotFound { op, .. }
            | DiskError::AlreadyExists { op, .. }
            | DiskError::NoSpace { op, .. }
            | DiskError::Io { op, .. } => Some(*op),
            DiskError::InvalidName { .. } => None,
        }
    }

    /// Maps a `std::io::Error` to the typed variants where one fits.
    pub fn from_io(op: DiskOp, name: &str, source: std::io::Error) -> DiskError {
        let name = name.to_string();
        match source.kind() {
            std::io::ErrorKind::NotFound => DiskError::NotFound { op, name },
            std::io::ErrorKind::AlreadyExists => DiskError::AlreadyExists { op, name },
            std::io::ErrorKind::StorageFull => DiskError::NoSpace { op, name },
            _ => DiskError::Io { op, name, source },
        }
    }
}

/// Checks that `name` is a plain file name every implementation accepts.
pub fn validate_file_name(name: &str) -> Result<(), DiskError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > DISK_FILE_NAME_BYTES_MAX {
        "longer than NAME_MAX"
    } else if name == "." || name == ".." {
        "a directory reference"
    } else if name.contains('/') || name.contains('\0') {
        "contains '/' or NUL"
    } else {
        return Ok(());
    };
    Err(DiskError::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_checked() {
        assert!(validate_file_name("log-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(matches!(
                validate_file_name(bad),
                Err(DiskError::InvalidName { .. })
            ));
        }
        assert!(validate_file_name(&"x".repeat(DISK_FILE_NAME_BYTES_MAX)).is_ok());
        assert!(validate_file_name(&"x".repeat(DISK_FILE_NAME_BYTES_MAX + 1)).is_err());
    }
}
