//! Recovery at open: read every segment in order, validate every record, cut a torn tail.
//!
//! A segment may end in the zero padding of its last block (`format::BLOCK_BYTES`): that is
//! its clean end, in any segment, and its valid bytes stop before it.
//!
//! A damaged record is a *torn tail* only when it lies in the last segment and nothing
//! valid follows it anywhere: a crash interrupted the last write, and no acknowledged
//! record can be past that point. The tail is truncated and the log goes on from there.
//! A damaged record with a valid record after it, or any damage in an earlier segment,
//! is corruption: opening fails with the file and offset, and no record is ever skipped.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::WalRecord;
use super::format::{
    SEGMENT_FLAG_ZEROS_AHEAD, SEGMENT_HEADER_BYTES, decode_record, decode_segment_header,
    is_block_padding, is_zeros_to_a_block_end,
};
use super::storage::WalStorage;
use crate::config::WAL_READ_CHECKPOINT_BYTES;
use crate::error::{Result, StorageError};

/// Segment file names: `wal-` + the first index, zero-padded to 20 digits + `.log`, so
/// names sort like indexes.
const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_INDEX_DIGITS: usize = 20;

/// The file name of the segment whose first record has `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!(
        "{SEGMENT_PREFIX}{first_index:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_INDEX_DIGITS
    )
}

/// The first index a segment file name carries, or None for other files.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_INDEX_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment as recovery found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredSegment {
    /// The index in the file name: no record in it is lower.
    pub first_index: u64,
    /// The highest record index in it, None when it holds no record.
    pub last_index: Option<u64>,
    pub path: PathBuf,
    /// Valid bytes (0 when even the header was torn: the next write starts with one).
    pub bytes: u64,
    /// (index, offset) of one record every `WAL_READ_CHECKPOINT_BYTES` or so, where a
    /// read by index starts scanning.
    pub checkpoints: Vec<(u64, u64)>,
}

/// Everything recovery learned.
#[derive(Debug)]
pub struct Recovered {
    pub records: Vec<WalRecord>,
    pub segments: Vec<RecoveredSegment>,
    /// Bytes cut from the tail of the last segment.
    pub truncated_bytes: u64,
}

/// Reads, validates and repairs the log in `dir`.
pub fn recover(storage: &dyn WalStorage, dir: &Path) -> Result<Recovered> {
    let names = storage
        .list_dir(dir)
        .map_err(|source| StorageError::io("list WAL directory", dir, source))?;
    let mut segment_names: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| Some((parse_segment_file_name(&name)?, name)))
        .collect();
    segment_names.sort();

    let mut recovered = Recovered {
        records: Vec::new(),
        segments: Vec::with_capacity(segment_names.len()),
        truncated_bytes: 0,
    };
    let mut previous_index: Option<u64> = None;
    let segment_count = segment_names.len();
    for (position, (first_index, name)) in segment_names.into_iter().enumerate() {
        let path = dir.join(&name);
        let is_last = position + 1 == segment_count;
        if let Some(previous) = previous_index
            && first_index <= previous
        {
            return Err(StorageError::corruption(
                &path,
                0,
                format!("segment starts at index {first_index}, not after {previous}"),
            ));
        }
        let data = storage
            .read_file(&path)
            .map_err(|source| StorageError::io("read WAL segment", &path, source))?;
        let data = Bytes::from(data);
        let segment = recover_segment(
            storage,
            &path,
            first_index,
            &data,
            is_last,
            &mut previous_index,
            &mut recovered,
        )?;
        recovered.segments.push(segment);
    }
    Ok(recovered)
}

/// Validates one segment, appending its records; repairs a torn tail when `is_last`.
fn recover_segment(
    storage: &dyn WalStorage,
    path: &Path,
    first_index: u64,
    data: &Bytes,
    is_last: bool,
    previous_index: &mut Option<u64>,
    recovered: &mut Recovered,
) -> Result<RecoveredSegment> {
    let mut segment = RecoveredSegment {
        first_index,
        last_index: None,
        path: path.to_path_buf(),
        bytes: data.len() as u64,
        checkpoints: Vec::new(),
    };
    let damage = match decode_segment_header(data) {
        Err(reason) => Some((0, reason)),
        Ok(flags) => {
            let zeros_ahead = flags & SEGMENT_FLAG_ZEROS_AHEAD != 0;
            let mut offset = SEGMENT_HEADER_BYTES;
            let mut damage = None;
            while offset < data.len() {
                match decode_record(data, offset) {
                    Ok(record) => {
                        let lowest = previous_index.map_or(first_index, |previous| {
                            first_index.max(previous.saturating_add(1))
                        });
                        if record.index < lowest
                            || previous_index.is_some_and(|p| record.index <= p)
                        {
                            return Err(StorageError::corruption(
                                path,
                                offset as u64,
                                format!(
                                    "record index {} does not follow {previous_index:?} (segment starts at {first_index})",
                                    record.index
                                ),
                            ));
                        }
                        recovered.records.push(WalRecord {
                            index: record.index,
                            kind: record.kind,
                            payload: data.slice(record.payload_start..record.end()),
                        });
                        if segment.checkpoints.last().is_none_or(|&(_, at)| {
                            offset as u64 - at >= WAL_READ_CHECKPOINT_BYTES as u64
                        }) {
                            segment.checkpoints.push((record.index, offset as u64));
                        }
                        *previous_index = Some(record.index);
                        segment.last_index = Some(record.index);
                        offset = record.end();
                    }
                    // The zeros that fill the last block of a direct write, or zeros
                    // written ahead of the log's end.
                    Err(_)
                        if is_block_padding(&data[offset..], data.len())
                            || zeros_ahead
                                && is_zeros_to_a_block_end(&data[offset..], data.len()) =>
                    {
                        segment.bytes = offset as u64;
                        break;
                    }
                    Err(reason) => {
                        damage = Some((offset, reason));
                        break;
                    }
                }
            }
            damage
        }
    };
    let Some((offset, reason)) = damage else {
        return Ok(segment);
    };
    if !is_last {
        return Err(StorageError::corruption(
            path,
            offset as u64,
            format!("{reason} in a segment that is not the last"),
        ));
    }
    if let Some(valid_offset) = find_valid_record(data, offset + 1, *previous_index) {
        return Err(StorageError::corruption(
            path,
            offset as u64,
            format!("{reason}, and a valid record follows at offset {valid_offset}"),
        ));
    }
    // A torn tail: cut it. If the header itself was torn the file becomes empty and the
    // next write starts with a fresh header.
    tracing::warn!(
        path = %path.display(),
        offset,
        cut_bytes = data.len() - offset,
        "truncating torn WAL tail: {reason}"
    );
    storage
        .truncate_file(path, offset as u64)
        .map_err(|source| StorageError::io("truncate torn WAL tail", path, source))?;
    recovered.truncated_bytes += (data.len() - offset) as u64;
    segment.bytes = offset as u64;
    Ok(segment)
}

/// The offset of the first well-formed record at or after `from` whose index could follow
/// `previous_index`, if any. Quadratic in the worst case, but it only runs over a torn
/// tail, which is at most one group-commit batch.
fn find_valid_record(data: &[u8], from: usize, previous_index: Option<u64>) -> Option<usize> {
    (from..data.len()).find(|&offset| {
        decode_record(data, offset)
            .is_ok_and(|record| previous_index.is_none_or(|previous| record.index > previous))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_roundtrip() {
        for index in [0, 1, 42, u64::MAX] {
            let name = segment_file_name(index);
            assert_eq!(parse_segment_file_name(&name), Some(index));
        }
        assert_eq!(parse_segment_file_name("wal-1.log"), None);
        assert_eq!(
            parse_segment_file_name("wal-0000000000000000000x.log"),
            None
        );
        assert_eq!(parse_segment_file_name("other.txt"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
