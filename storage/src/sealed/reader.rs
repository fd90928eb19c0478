//! Opens a sealed file through `memmap2` and reads its chunks.
//!
//! `open` validates the header, footer and index (checksums, bounds, key order, chunk
//! layout, statistics) once; `read_chunk` validates each block's checksum and the decoded
//! column against its statistics. Bad bytes become `StorageError::Corruption` with the file
//! and offset; nothing panics on them.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::format::{self, FOOTER_LEN, HEADER_LEN};
use super::{ChunkMeta, SealedFileSummary, SeriesMeta};
use crate::codec::bits::ByteReader;
use crate::codec::{self, CodecError};
use crate::error::{Result, StorageError};
use crate::types::{DataType, PointColumn, SeriesKey, TimeRange, Timestamp};

/// An open, validated, immutable sealed file.
///
/// `Send + Sync`: the owning shard shares it read-only (behind an `Arc`) with its
/// background flush and compaction threads; nothing in it changes after `open`.
pub struct SealedFile {
    path: PathBuf,
    map: Mmap,
    series: Vec<SeriesMeta>,
    points: u64,
    min_time: Timestamp,
    max_time: Timestamp,
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: a mapping is undefined behaviour only if the file changes underneath it.
    // Sealed files are immutable once `finish` returns: the owning region never rewrites
    // or truncates them, it only deletes them (which keeps the mapped pages alive), and no
    // other process writes into a region's directory.
    unsafe { Mmap::map(file) }
}

impl SealedFile {
    /// Opens and validates the sealed file at `path`.
    pub fn open(path: &Path) -> Result<SealedFile> {
        let file = File::open(path).map_err(|e| StorageError::io("open sealed file", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("stat sealed file", path, e))?
            .len();
        let corrupt = |offset: u64, reason: &str| StorageError::corruption(path, offset, reason);
        if len < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(corrupt(0, "file shorter than header and footer"));
        }
        let map = map_file(&file).map_err(|e| StorageError::io("mmap sealed file", path, e))?;
        let bytes: &[u8] = &map;
        let version = format::check_header(bytes).map_err(|reason| corrupt(0, reason))?;

        let footer_offset = bytes.len() - FOOTER_LEN;
        let mut footer = [0u8; FOOTER_LEN];
        footer.copy_from_slice(&bytes[footer_offset..]);
        let (index_offset, index_len) = format::parse_footer(&footer)
            .map_err(|reason| corrupt(footer_offset as u64, reason))?;
        // The index and its checksum must sit exactly between the chunks and the footer.
        let index_end = index_offset
            .checked_add(index_len)
            .and_then(|e| e.checked_add(4));
        if index_offset < HEADER_LEN as u64 || index_end != Some(footer_offset as u64) {
            return Err(corrupt(
                footer_offset as u64,
                "index bounds outside the file",
            ));
        }
        let index_start = index_offset as usize;
        let index_stop = index_start + index_len as usize;
        let index = if version >= 3 {
            format::decode_block(&bytes[index_start..footer_offset])
                .map_err(|reason| corrupt(index_offset, &format!("index block: {reason}")))?
        } else {
            let crc = &bytes[index_stop..footer_offset];
            let index = &bytes[index_start..index_stop];
            if u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) != crc32c::crc32c(index) {
                return Err(corrupt(index_offset, "index checksum mismatch"));
            }
            std::borrow::Cow::Borrowed(index)
        };
        let series =
            parse_index(&index, index_offset).map_err(|e| e.into_corruption(path, index_offset))?;

        let points = series
            .iter()
            .flat_map(|s| &s.chunks)
            .map(|c| c.stats.count)
            .sum();
        let min_time = series.iter().map(|s| s.chunks[0].stats.min_time).min();
        let max_time = series
            .iter()
            .map(|s| s.chunks[s.chunks.len() - 1].stats.max_time)
            .max();
        let (Some(min_time), Some(max_time)) = (min_time, max_time) else {
            return Err(corrupt(index_offset, "index lists no series"));
        };
        Ok(SealedFile {
            path: path.to_path_buf(),
            map,
            series,
            points,
            min_time,
            max_time,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file a writer just finished (`SealedFileWriter::finish_open`), mapped, with the
    /// index the writer built rather than the one it wrote, which holds the same (the
    /// crate's tests parse the written one too and panic on any difference). Checks only
    /// that the file has the size written.
    pub(crate) fn from_written(
        summary: &SealedFileSummary,
        series: Vec<SeriesMeta>,
    ) -> Result<SealedFile> {
        let path = &summary.path;
        let file = File::open(path).map_err(|e| StorageError::io("open sealed file", path, e))?;
        let map = map_file(&file).map_err(|e| StorageError::io("mmap sealed file", path, e))?;
        if map.len() as u64 != summary.bytes {
            return Err(StorageError::corruption(
                path,
                0,
                format!("{} bytes where {} were written", map.len(), summary.bytes),
            ));
        }
        let written = SealedFile {
            path: path.clone(),
            map,
            series,
            points: summary.points,
            min_time: summary.min_time,
            max_time: summary.max_time,
        };
        #[cfg(test)]
        {
            let parsed = SealedFile::open(path)?;
            // NaN statistics are unequal to themselves: those compare as printed.
            let same_series = parsed.series == written.series
                || format!("{:?}", parsed.series) == format!("{:?}", written.series);
            assert!(
                same_series
                    && (parsed.points, parsed.min_time, parsed.max_time)
                        == (written.points, written.min_time, written.max_time),
                "{}: the index written differs from the writer's",
                path.display()
            );
        }
        Ok(written)
    }

    /// The file's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The earliest timestamp of any point in the file.
    pub fn min_time(&self) -> Timestamp {
        self.min_time
    }

    /// The latest timestamp of any point in the file.
    pub fn max_time(&self) -> Timestamp {
        self.max_time
    }

    /// Points in the file, all series together.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// The series, in key order.
    pub fn series(&self) -> impl Iterator<Item = &SeriesMeta> {
        self.series.iter()
    }

    /// The series `key`, if the file has it.
    pub fn find(&self, key: &SeriesKey) -> Option<&SeriesMeta> {
        self.series
            .binary_search_by(|s| s.key.cmp(key))
            .ok()
            .map(|i| &self.series[i])
    }

    /// The points of one chunk of this file, after checking its blocks' checksums and the
    /// decoded columns against the chunk's statistics.
    pub fn read_chunk(&self, chunk: &ChunkMeta) -> Result<PointColumn> {
        let count = usize::try_from(chunk.stats.count)
            .map_err(|_| self.corrupt(chunk.offset, "chunk point count"))?;
        let time_offset = chunk.offset;
        let value_offset = chunk.offset.saturating_add(chunk.time_block_len);
        let timestamps = if chunk.time_block_len == 0 {
            // `open` checked that the statistics describe regular timestamps.
            format::regular_timestamps(&chunk.stats)
                .ok_or_else(|| self.corrupt(time_offset, "irregular implied timestamps"))?
        } else {
            let time_raw = self.block(time_offset, chunk.time_block_len)?;
            let timestamps = codec::decode_timestamps(&time_raw, count)
                .map_err(|e| e.into_corruption(&self.path, time_offset))?;
            let increasing = timestamps.windows(2).all(|w| w[0] < w[1]);
            if !increasing
                || timestamps.first() != Some(&chunk.stats.min_time)
                || timestamps.last() != Some(&chunk.stats.max_time)
            {
                return Err(self.corrupt(time_offset, "timestamps disagree with chunk statistics"));
            }
            timestamps
        };
        if timestamps.len() != count {
            return Err(self.corrupt(time_offset, "implied timestamps disagree with the count"));
        }
        let value_raw = self.block(value_offset, chunk.value_block_len)?;
        let values = codec::decode_values(chunk.data_type(), &value_raw, count)
            .map_err(|e| e.into_corruption(&self.path, value_offset))?;
        Ok(PointColumn { timestamps, values })
    }

    /// The points of series `key` inside `range`, or `None` when the file lacks the
    /// series. Chunks outside the range are not read.
    pub fn read_series(&self, key: &SeriesKey, range: TimeRange) -> Result<Option<PointColumn>> {
        match self.find(key) {
            Some(series) => self.read_series_meta(series, range).map(Some),
            None => Ok(None),
        }
    }

    /// The points of `series` (one of this file's) inside `range`.
    pub fn read_series_meta(&self, series: &SeriesMeta, range: TimeRange) -> Result<PointColumn> {
        let mut out = PointColumn::new(series.data_type);
        for chunk in &series.chunks {
            let (min, max) = (chunk.stats.min_time, chunk.stats.max_time);
            if range.is_empty() || !range.overlaps(min, max) {
                continue;
            }
            let points = self.read_chunk(chunk)?;
            if range.covers(min, max) && out.is_empty() {
                out = points;
                continue;
            }
            let start = points.timestamps.partition_point(|&t| t < range.start);
            let end = points.timestamps.partition_point(|&t| t < range.end);
            out.timestamps
                .extend_from_slice(&points.timestamps[start..end]);
            out.values.extend_from(&points.values, start..end);
        }
        Ok(out)
    }

    /// The raw bytes of the block at `offset`, checksum verified and decompressed.
    fn block(&self, offset: u64, len: u64) -> Result<std::borrow::Cow<'_, [u8]>> {
        // A chunk meta from another file, or a bug, must not index out of the map.
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= self.map.len())
            .ok_or_else(|| self.corrupt(offset, "block outside the file"))?;
        format::decode_block(&self.map[range]).map_err(|reason| self.corrupt(offset, &reason))
    }

    fn corrupt(&self, offset: u64, reason: &str) -> StorageError {
        StorageError::corruption(&self.path, offset, reason)
    }
}

/// Parses and validates the index: keys strictly increasing, chunks contiguous from the
/// header to the index and in time order, statistics consistent.
fn parse_index(index: &[u8], index_offset: u64) -> Result<Vec<SeriesMeta>, CodecError> {
    let mut reader = ByteReader::new(index);
    let series_count = reader.length(index.len(), "series count")?;
    let mut series: Vec<SeriesMeta> = Vec::with_capacity(series_count);
    let mut offset = HEADER_LEN as u64;
    let mut context = format::IndexContext::default();
    for _ in 0..series_count {
        let key = format::read_series_key(&mut reader, series.last().map(|s| &s.key))?;
        if series.last().is_some_and(|s| s.key >= key) {
            return Err(CodecError::Invalid {
                what: "series keys out of order",
            });
        }
        let type_code = reader.u8("data type")?;
        let data_type = DataType::from_code(type_code).ok_or(CodecError::UnknownTag {
            what: "data type",
            tag: type_code,
        })?;
        let chunk_count = reader.length(reader.remaining(), "chunk count")?;
        if chunk_count == 0 {
            return Err(CodecError::Invalid {
                what: "series without chunks",
            });
        }
        context.read_series_start(&mut reader, data_type)?;
        // Each entry takes at least a byte: a count beyond the bytes left is corrupt, and
        // must not size an allocation.
        let mut chunks: Vec<ChunkMeta> = Vec::with_capacity(chunk_count.min(reader.remaining()));
        for _ in 0..chunk_count {
            let (time_block_len, value_block_len, stats) =
                context.read_chunk(&mut reader, data_type)?;
            if chunks
                .last()
                .is_some_and(|c| c.stats.max_time >= stats.min_time)
            {
                return Err(CodecError::Invalid {
                    what: "chunks out of time order",
                });
            }
            let overhead = format::BLOCK_OVERHEAD_MIN as u64;
            let time_block_ok = if time_block_len == 0 {
                format::regular_timestamps_ok(&stats)
            } else {
                time_block_len >= overhead
            };
            if !time_block_ok || value_block_len < overhead {
                return Err(CodecError::Invalid {
                    what: "block length",
                });
            }
            let chunk = ChunkMeta {
                stats,
                offset,
                time_block_len,
                value_block_len,
            };
            offset = offset
                .checked_add(time_block_len)
                .and_then(|o| o.checked_add(value_block_len))
                .filter(|&end| end <= index_offset)
                .ok_or(CodecError::Invalid {
                    what: "chunk past the index",
                })?;
            chunks.push(chunk);
        }
        series.push(SeriesMeta {
            key,
            data_type,
            chunks,
        });
    }
    reader.finish("index trailing bytes")?;
    if offset != index_offset {
        return Err(CodecError::Invalid {
            what: "chunks do not reach the index",
        });
    }
    Ok(series)
}

/// `SealedFile` is shared across threads; keep it so.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SealedFile>();
};
