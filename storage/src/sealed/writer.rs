//! Writes one sealed file, series by series, through the region's
//! [`FileSystem`](crate::file_system::FileSystem) (`std::fs` in production).
//!
//! Runs off the shard's loop (flush and compaction threads): it blocks on writes and on the
//! final fdatasync. A writer that fails or is dropped before `finish` leaves a partial file
//! that `SealedFile::open` rejects (no footer); the owning region deletes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{self, FOOTER_LEN};
use super::{ChunkMeta, SealedFile, SealedFileSummary, SeriesMeta, WriterOptions};
use crate::codec::bits::put_varint;
use crate::codec::{self, COLUMN_VALUES_MAX};
use crate::config::Compression;
use crate::error::{Result, StorageError};
use crate::file_system::{FileSystem, StdFileSystem, WritableFile};
use crate::memtable::DecimalRun;
use crate::stats::Stats;
use crate::types::{PointColumn, Points, SeriesKey, Timestamp, Values};

/// Builds a sealed file. Owned by one flush or compaction task.
pub struct SealedFileWriter {
    path: PathBuf,
    /// Gathers the blocks itself (`FileSystem::create_new_sequential`).
    file: Box<dyn WritableFile>,
    options: WriterOptions,
    /// Bytes written so far: the offset of the next block.
    offset: u64,
    series: Vec<SeriesMeta>,
    points: u64,
    /// Reused encode buffers.
    column: Vec<u8>,
    block: Vec<u8>,
    /// A chunk's decimal digits, widened for the codec.
    integers: Vec<i64>,
    /// Whether each chunk of the series being written has evenly spaced timestamps.
    chunk_regular: Vec<bool>,
    probe: CompressionProbe,
}

/// Blocks in a row of one kind and encoding that compression did not shrink before the
/// writer stops trying it on every such block.
const PROBE_MISSES_BEFORE_SKIPPING: u8 = 8;
/// Once skipping, one such block in this many is still tried, so a file whose data turns
/// compressible again finds out within this many blocks.
pub(super) const PROBE_EVERY: u8 = 16;

/// The two kinds of chunk block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    Time = 0,
    Values = 1,
}

/// Which blocks are worth compressing. An encoded column near its entropy (a random
/// walk's digits packed by the integer codec) leaves LZ4 nothing to find, and trying costs
/// a pass over the block and a zeroed output buffer: about a tenth of a flush's CPU on the
/// standard workload, for no byte saved. So the writer remembers, per block kind and
/// encoding (the column's first byte: the codec's tag), how many blocks in a row
/// compression failed to shrink; after [`PROBE_MISSES_BEFORE_SKIPPING`] it stores such
/// blocks as they are, trying one in [`PROBE_EVERY`], and a try that pays starts over.
/// Readers see nothing new: a block is compressed or not, as before.
struct CompressionProbe {
    states: Box<[[ProbeState; 256]; 2]>,
}

#[derive(Clone, Copy, Debug, Default)]
struct ProbeState {
    /// Tried blocks in a row that compression did not shrink (saturating).
    misses: u8,
    /// Blocks stored without a try since the last try.
    skipped: u8,
}

impl CompressionProbe {
    fn new() -> CompressionProbe {
        CompressionProbe {
            states: Box::new([[ProbeState::default(); 256]; 2]),
        }
    }

    fn state(&mut self, kind: BlockKind, raw: &[u8]) -> &mut ProbeState {
        let tag = raw.first().copied().unwrap_or(0);
        &mut self.states[kind as usize][usize::from(tag)]
    }

    /// Whether to try compressing `raw`, a block of `kind`.
    fn worth_trying(&mut self, kind: BlockKind, raw: &[u8]) -> bool {
        let state = self.state(kind, raw);
        if state.misses < PROBE_MISSES_BEFORE_SKIPPING {
            return true;
        }
        if state.skipped + 1 < PROBE_EVERY {
            state.skipped += 1;
            return false;
        }
        state.skipped = 0;
        true
    }

    /// What a try on `raw` gave.
    fn record(&mut self, kind: BlockKind, raw: &[u8], compressed: bool) {
        let state = self.state(kind, raw);
        state.misses = if compressed {
            0
        } else {
            state.misses.saturating_add(1)
        };
    }
}

impl SealedFileWriter {
    /// Creates the file at `path` (which must not exist: sealed files are never rewritten)
    /// and writes its header.
    pub fn create(path: &Path, options: WriterOptions) -> Result<SealedFileWriter> {
        SealedFileWriter::create_in(&StdFileSystem, path, options)
    }

    /// [`SealedFileWriter::create`] through `file_system`.
    pub fn create_in(
        file_system: &dyn FileSystem,
        path: &Path,
        options: WriterOptions,
    ) -> Result<SealedFileWriter> {
        assert!(
            (1..=COLUMN_VALUES_MAX).contains(&options.chunk_points_max),
            "chunk_points_max {} outside 1..={COLUMN_VALUES_MAX}",
            options.chunk_points_max
        );
        let file = file_system
            .create_new_sequential(path)
            .map_err(|e| StorageError::io("create sealed file", path, e))?;
        let mut writer = SealedFileWriter {
            path: path.to_path_buf(),
            file,
            options,
            offset: 0,
            series: Vec::new(),
            points: 0,
            column: Vec::new(),
            integers: Vec::new(),
            block: Vec::new(),
            chunk_regular: Vec::new(),
            probe: CompressionProbe::new(),
        };
        writer.write_all(&format::header())?;
        Ok(writer)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| StorageError::io("write sealed file", &self.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes out what the file has gathered (a failure is a write's, not the sync's).
    fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| StorageError::io("write sealed file", &self.path, e))
    }

    /// Writes one series. Series must come in strictly increasing key order, each once,
    /// with at least one point and strictly increasing timestamps: anything else is the
    /// caller's bug and panics.
    pub fn write_series(&mut self, key: &SeriesKey, points: &PointColumn) -> Result<()> {
        self.write_points(key, points.as_points())
    }

    /// [`Self::write_series`] from borrowed columns.
    pub fn write_points(&mut self, key: &SeriesKey, points: Points<'_>) -> Result<()> {
        self.write_points_with(key, points, None)
    }

    /// [`Self::write_points`] of DOUBLE values that are also given as decimal digits
    /// (`decimal`, index for index: a memtable's [`DecimalRun`]): their chunks are encoded
    /// from the digits, with no exponent to find nor value to convert again. The file holds
    /// the same values, bit for bit.
    pub(crate) fn write_points_with(
        &mut self,
        key: &SeriesKey,
        points: Points<'_>,
        decimal: Option<DecimalRun<'_>>,
    ) -> Result<()> {
        self.check_next_series(key, points.values.len());
        check_decimal(key, points.values, decimal);
        assert_eq!(
            points.timestamps.len(),
            points.values.len(),
            "series {key}: timestamps and values differ in length"
        );
        // One pass over the timestamps, before anything is written: they must strictly
        // increase, and each regularly spaced chunk needs no time block.
        let chunk_points_max = self.options.chunk_points_max;
        self.chunk_regular.clear();
        let mut increasing = true;
        let mut previous_last: Option<Timestamp> = None;
        for timestamps in points.timestamps.chunks(chunk_points_max) {
            let spacing = Spacing::of(timestamps);
            increasing &= spacing.increasing && previous_last.is_none_or(|t| t < timestamps[0]);
            previous_last = timestamps.last().copied();
            self.chunk_regular.push(spacing.regular);
        }
        assert!(
            increasing,
            "series {key}: timestamps not strictly increasing"
        );
        let mut chunks = Vec::with_capacity(self.chunk_regular.len());
        for index in 0..self.chunk_regular.len() {
            let start = index * chunk_points_max;
            let end = (start + chunk_points_max).min(points.len());
            let times = if self.chunk_regular[index] {
                ChunkTimes::Implied {
                    min_time: points.timestamps[start],
                    max_time: points.timestamps[end - 1],
                }
            } else {
                ChunkTimes::Listed(&points.timestamps[start..end])
            };
            chunks.push(self.write_chunk(points.values, start..end, times, decimal)?);
        }
        self.push_series(key, points.values, chunks);
        Ok(())
    }

    /// [`Self::write_points`] of a series whose timestamps are `first + step * i` for each
    /// of its values (the memtable keeps an evenly sampled series so): the same file,
    /// without the timestamps spelled out to be checked and found evenly spaced again.
    /// `step` must be positive when there are two values or more.
    pub fn write_evenly_spaced(
        &mut self,
        key: &SeriesKey,
        first: Timestamp,
        step: i64,
        values: &Values,
    ) -> Result<()> {
        self.write_evenly_spaced_with(key, first, step, values, None)
    }

    /// [`Self::write_evenly_spaced`] with the values' decimal digits, as
    /// [`Self::write_points_with`].
    pub(crate) fn write_evenly_spaced_with(
        &mut self,
        key: &SeriesKey,
        first: Timestamp,
        step: i64,
        values: &Values,
        decimal: Option<DecimalRun<'_>>,
    ) -> Result<()> {
        self.check_next_series(key, values.len());
        check_decimal(key, values, decimal);
        assert!(
            step > 0 || values.len() == 1,
            "series {key}: a step of {step} is not increasing"
        );
        let time_at = |index: usize| {
            i64::try_from(index)
                .ok()
                .and_then(|index| step.checked_mul(index))
                .and_then(|offset| first.checked_add(offset))
                .unwrap_or_else(|| panic!("series {key}: timestamp {index} overflows"))
        };
        let chunk_points_max = self.options.chunk_points_max;
        let mut chunks = Vec::with_capacity(values.len().div_ceil(chunk_points_max));
        for start in (0..values.len()).step_by(chunk_points_max) {
            let end = (start + chunk_points_max).min(values.len());
            let times = ChunkTimes::Implied {
                min_time: time_at(start),
                max_time: time_at(end - 1),
            };
            chunks.push(self.write_chunk(values, start..end, times, decimal)?);
        }
        self.push_series(key, values, chunks);
        Ok(())
    }

    /// The checks every series passes before it is written: it comes after the last one
    /// in key order, and has points.
    fn check_next_series(&self, key: &SeriesKey, points: usize) {
        assert!(
            self.series.last().is_none_or(|last| last.key < *key),
            "series {key} written out of key order"
        );
        assert!(points > 0, "series {key} has no points");
    }

    fn push_series(&mut self, key: &SeriesKey, values: &Values, chunks: Vec<ChunkMeta>) {
        self.points += values.len() as u64;
        self.series.push(SeriesMeta {
            key: key.clone(),
            data_type: values.data_type(),
            chunks,
        });
    }

    /// Writes `values[range]` as one chunk, with a time block unless the chunk's
    /// timestamps are evenly spaced (then its statistics imply them); the values from
    /// `decimal`'s digits where given.
    fn write_chunk(
        &mut self,
        values: &Values,
        range: std::ops::Range<usize>,
        times: ChunkTimes<'_>,
        decimal: Option<DecimalRun<'_>>,
    ) -> Result<ChunkMeta> {
        let (min_time, max_time) = match times {
            ChunkTimes::Implied { min_time, max_time } => (min_time, max_time),
            ChunkTimes::Listed(timestamps) => (timestamps[0], timestamps[timestamps.len() - 1]),
        };
        let stats = Stats::of_values(values, range.clone(), min_time, max_time)
            .expect("chunk ranges are non-empty");
        let offset = self.offset;

        self.block.clear();
        if let ChunkTimes::Listed(timestamps) = times {
            self.column.clear();
            codec::encode_timestamps(timestamps, &mut self.column);
            self.put_column_block(BlockKind::Time);
        }
        let time_block_len = self.block.len() as u64;

        self.column.clear();
        match decimal {
            Some(run) => {
                self.integers.clear();
                run.digits.widen_into(range, &mut self.integers);
                codec::float::encode_decimals(run.exponent, &mut self.integers, &mut self.column);
            }
            None => codec::encode_values_range(values, range, &mut self.column),
        }
        self.put_column_block(BlockKind::Values);
        let value_block_len = self.block.len() as u64 - time_block_len;

        let block = std::mem::take(&mut self.block);
        let written = self.write_all(&block);
        self.block = block;
        written?;
        Ok(ChunkMeta {
            stats,
            offset,
            time_block_len,
            value_block_len,
        })
    }

    /// Appends the encoded column (`self.column`) to `self.block` as a block of `kind`,
    /// compressed where that makes it smaller, unless the probe says trying is not worth it.
    fn put_column_block(&mut self, kind: BlockKind) {
        let compression = self.options.compression;
        if compression == Compression::None || !self.probe.worth_trying(kind, &self.column) {
            format::encode_block(&self.column, Compression::None, &mut self.block);
            return;
        }
        let compressed = format::encode_block(&self.column, compression, &mut self.block);
        self.probe.record(kind, &self.column, compressed);
    }

    /// Writes the index and footer, fdatasyncs the file and returns what it holds. At
    /// least one series must have been written (an empty sealed file is a caller's bug).
    /// The caller makes the file's directory entry durable (fsync of the directory) when it
    /// records the file in its manifest.
    pub fn finish(self) -> Result<SealedFileSummary> {
        self.finish_with_index().map(|(summary, _)| summary)
    }

    /// [`SealedFileWriter::finish`], then the file opened for reading from the index the
    /// writer built ([`SealedFile::from_written`]): the same file `SealedFile::open` gives,
    /// without reading back, decompressing and checking the index just written.
    pub fn finish_open(self) -> Result<SealedFile> {
        let (summary, series) = self.finish_with_index()?;
        SealedFile::from_written(&summary, series)
    }

    /// [`SealedFileWriter::finish`], with the file's index as written.
    fn finish_with_index(mut self) -> Result<(SealedFileSummary, Vec<SeriesMeta>)> {
        assert!(
            !self.series.is_empty(),
            "a sealed file needs at least one series"
        );
        let index_offset = self.offset;
        let mut index = Vec::new();
        put_varint(&mut index, self.series.len() as u64);
        let mut previous: Option<&SeriesKey> = None;
        let mut context = format::IndexContext::default();
        for series in &self.series {
            format::put_series_key(&series.key, previous, &mut index);
            previous = Some(&series.key);
            index.push(series.data_type.code());
            put_varint(&mut index, series.chunks.len() as u64);
            context.put_series_start(series.data_type, &series.chunks[0].stats, &mut index);
            for chunk in &series.chunks {
                context.put_chunk(chunk, &mut index);
            }
        }
        // The index is one zstd block (its series names and fixed fields compress to about
        // half); the footer's length leaves out the block's checksum, as in version 2.
        let mut tail = Vec::with_capacity(index.len() / 2 + FOOTER_LEN);
        format::encode_block(&index, Compression::Zstd, &mut tail);
        let index_len = (tail.len() - 4) as u64;
        tail.extend_from_slice(&format::footer(index_offset, index_len));
        // What was written so far reaches the file now; the index and footer follow it
        // through the page cache even where the file bypasses it (`O_DIRECT`), since
        // `SealedFile::open` reads them back at once.
        self.flush()?;
        self.write_all(&tail)?;
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| StorageError::io("fdatasync sealed file", &self.path, e))?;
        let min_time = self.series.iter().map(first_time).min();
        let max_time = self.series.iter().map(last_time).max();
        let summary = SealedFileSummary {
            path: self.path,
            bytes: self.offset,
            series: self.series.len(),
            points: self.points,
            min_time: min_time.expect("non-empty"),
            max_time: max_time.expect("non-empty"),
        };
        Ok((summary, self.series))
    }
}

/// A series' decimal digits go with DOUBLE values, one digit a value.
fn check_decimal(key: &SeriesKey, values: &Values, decimal: Option<DecimalRun<'_>>) {
    if let Some(run) = decimal {
        assert!(
            matches!(values, Values::Double(_)) && run.digits.len() == values.len(),
            "series {key}: {} decimal digits for {} {:?} values",
            run.digits.len(),
            values.len(),
            values.data_type()
        );
    }
}

fn first_time(series: &SeriesMeta) -> Timestamp {
    series.chunks[0].stats.min_time
}

fn last_time(series: &SeriesMeta) -> Timestamp {
    series.chunks[series.chunks.len() - 1].stats.max_time
}

/// The timestamps of a chunk as its writer sees them.
#[derive(Clone, Copy)]
enum ChunkTimes<'a> {
    /// Evenly spaced from `min_time` to `max_time`: the statistics imply them, and the
    /// chunk has no time block.
    Implied {
        min_time: Timestamp,
        max_time: Timestamp,
    },
    /// Anything else: written in the chunk's time block.
    Listed(&'a [Timestamp]),
}

/// How a run of timestamps is spaced.
struct Spacing {
    /// Each timestamp is greater than the one before.
    increasing: bool,
    /// Every gap equals the first (wrapping), so the first and last timestamps and the
    /// count imply them all.
    regular: bool,
}

impl Spacing {
    /// The spacing of `timestamps` (non-empty), in one branch-free pass.
    fn of(timestamps: &[Timestamp]) -> Spacing {
        let step = match timestamps {
            [first, second, ..] => second.wrapping_sub(*first),
            _ => 0,
        };
        let (mut increasing, mut regular) = (true, true);
        for pair in timestamps.windows(2) {
            increasing &= pair[0] < pair[1];
            regular &= pair[1].wrapping_sub(pair[0]) == step;
        }
        Spacing {
            increasing,
            regular,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's policy: every block is tried until
    /// [`PROBE_MISSES_BEFORE_SKIPPING`] in a row fail, then one in [`PROBE_EVERY`]; a try
    /// that pays starts over; kinds and encodings are counted apart.
    #[test]
    fn the_probe_skips_after_misses_and_starts_over_when_one_pays() {
        let mut probe = CompressionProbe::new();
        let alp = [1u8, 9, 9];
        for _ in 0..PROBE_MISSES_BEFORE_SKIPPING {
            assert!(probe.worth_trying(BlockKind::Values, &alp));
            probe.record(BlockKind::Values, &alp, false);
        }
        let tries: Vec<bool> = (0..2 * usize::from(PROBE_EVERY))
            .map(|_| {
                let trying = probe.worth_trying(BlockKind::Values, &alp);
                if trying {
                    probe.record(BlockKind::Values, &alp, false);
                }
                trying
            })
            .collect();
        assert_eq!(tries.iter().filter(|&&t| t).count(), 2);
        assert!(tries[usize::from(PROBE_EVERY) - 1]);
        // Another encoding, and the time blocks, are still tried.
        assert!(probe.worth_trying(BlockKind::Values, &[2u8]));
        assert!(probe.worth_trying(BlockKind::Time, &alp));
        // A try that pays: every block is tried again.
        while !probe.worth_trying(BlockKind::Values, &alp) {}
        probe.record(BlockKind::Values, &alp, true);
        for _ in 0..PROBE_EVERY {
            assert!(probe.worth_trying(BlockKind::Values, &alp));
        }
    }
}
