//! Sealed (immutable) files: a TsFile-like format of chunks, statistics and a tail index.
//!
//! ```text
//!  flush / compaction thread                      any thread (shared read-only)
//!  SealedFileWriter::create ─ write_series* ─ finish ──► file ──► SealedFile::open (mmap)
//!                                                                  ├ series() / find()
//!                                                                  ├ read_chunk(meta)
//!                                                                  └ read_series(key, range)
//! ```
//!
//! One file holds many series; each series is split into chunks of at most
//! `chunk_points_max` points, each chunk a time block and a value block encoded by
//! [`crate::codec`], compressed where that pays, and checksummed. Per-chunk [`Stats`] live
//! in the index at the tail, compactly coded, so aggregations and range pruning read no
//! data blocks. A chunk whose timestamps are regular has no time block: its statistics
//! (min time, max time, count) imply them. The byte layout is in [`format`].

pub mod format;
mod reader;
pub mod workload;
mod writer;

use std::path::PathBuf;

pub use reader::SealedFile;
pub use writer::SealedFileWriter;

use crate::config::{CHUNK_POINTS_MAX, Compression, RegionConfig};
use crate::stats::Stats;
use crate::types::{DataType, SeriesKey, Timestamp};

/// How a sealed file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Block compression, applied to a block only where it makes it smaller.
    pub compression: Compression,
    /// The most points in one chunk; a longer series is split.
    pub chunk_points_max: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression: Compression::Lz4,
            chunk_points_max: CHUNK_POINTS_MAX,
        }
    }
}

impl From<&RegionConfig> for WriterOptions {
    fn from(config: &RegionConfig) -> Self {
        WriterOptions {
            compression: config.compression,
            chunk_points_max: config.chunk_points_max,
        }
    }
}

/// What a finished sealed file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedFileSummary {
    pub path: PathBuf,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Series in the file.
    pub series: usize,
    /// Points in the file, all series together.
    pub points: u64,
    pub min_time: Timestamp,
    pub max_time: Timestamp,
}

/// One series of a sealed file: its key, type and chunks in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesMeta {
    pub key: SeriesKey,
    pub data_type: DataType,
    pub chunks: Vec<ChunkMeta>,
}

impl SeriesMeta {
    /// Points of the series in this file.
    pub fn points(&self) -> u64 {
        self.chunks.iter().map(|c| c.stats.count).sum()
    }

    /// The statistics of the whole series in this file.
    pub fn stats(&self) -> Stats {
        let mut chunks = self.chunks.iter();
        let mut stats = chunks
            .next()
            .expect("a series has at least one chunk")
            .stats
            .clone();
        for chunk in chunks {
            stats.merge_later(&chunk.stats);
        }
        stats
    }
}

/// Where one chunk lies and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkMeta {
    pub stats: Stats,
    /// File offset of the time block (or, without one, of the value block); the value
    /// block follows the time block.
    pub offset: u64,
    /// Bytes of the time block, checksum included; 0 when the chunk has none because its
    /// timestamps are regular (see [`format::regular_timestamps`]).
    pub time_block_len: u64,
    /// Bytes of the value block, checksum included.
    pub value_block_len: u64,
}

impl ChunkMeta {
    /// The type of the chunk's values.
    pub fn data_type(&self) -> DataType {
        self.stats.data_type()
    }

    /// Bytes the chunk takes in the file.
    pub fn bytes(&self) -> u64 {
        self.time_block_len + self.value_block_len
    }
}

#[cfg(test)]
mod tests;
