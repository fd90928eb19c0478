//! The storage engine's one error type.

use std::path::PathBuf;

use crate::types::DataType;

/// Everything the storage engine can fail with. I/O errors carry the operation and path.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk failed validation (checksum, bounds, magic, version).
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("series {series} is {expected}, not {actual}")]
    TypeMismatch {
        series: String,
        expected: DataType,
        actual: DataType,
    },
    #[error("invalid tablet: {0}")]
    InvalidTablet(String),
    /// A write or fsync failed earlier; the region accepts no more writes.
    #[error("region is read-only after an earlier failure: {0}")]
    ReadOnly(String),
    /// Memtables are over budget and flushes have not caught up; retry later.
    #[error("region overloaded: {memtable_bytes} bytes in memtables, limit {limit_bytes}")]
    Overloaded {
        memtable_bytes: usize,
        limit_bytes: usize,
    },
    #[error("{aggregation} is not defined on {data_type}")]
    UnsupportedAggregation {
        aggregation: &'static str,
        data_type: DataType,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A background job died (panicked) or the pool could not start a worker thread.
    #[error("background job: {0}")]
    BackgroundJob(String),
    #[error("region is closed")]
    Closed,
    /// Region replication refused a log entry or a snapshot chunk (`ReplicationError`).
    #[error("replication: {0}")]
    Replication(#[from] ReplicationError),
}

/// Why a replicated log entry or a snapshot transfer was refused. Nothing was written
/// when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// The entry's index is below the region's next index: it was applied already.
    #[error("entry {index} is a duplicate: the region's next index is {next_index}")]
    Duplicate { index: u64, next_index: u64 },
    /// The entry's index is above the region's next index: entries in between are missing.
    #[error("entry {index} leaves a gap: the region's next index is {next_index}")]
    Gap { index: u64, next_index: u64 },
    /// The entry's kind is unknown or its payload does not decode.
    #[error("entry {index} is invalid: {reason}")]
    InvalidEntry { index: u64, reason: String },
    /// A snapshot chunk failed validation (name, order, checksum, size, encoding).
    #[error("snapshot chunk refused: {0}")]
    InvalidChunk(String),
    /// A received snapshot is incomplete or inconsistent.
    #[error("snapshot refused: {0}")]
    InvalidSnapshot(String),
}

/// The storage engine's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// An I/O error with its operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A corruption error.
    pub fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
