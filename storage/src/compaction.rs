//! Compaction: merges every sealed file of one time partition (sequence and unsequence)
//! into one sequence file, newest write winning, at a bounded write rate.
//!
//! It runs on a background thread over immutable inputs; the region installs the output
//! by swapping the manifest, so a crash mid-way leaves only an orphan output file, which
//! the next open deletes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, StorageError};
use crate::query::{self, RankedPiece};
use crate::sealed::{SealedFile, SealedFileSummary, SealedFileWriter, WriterOptions};
use crate::types::{DataType, SeriesKey, TimeRange};

/// Merges `inputs` (each with its newest-wins version) into a new file at `output`. Returns
/// `None` (and writes nothing) when the inputs hold no points. `bytes_per_second` limits
/// the write rate (0: unlimited); `cancel` aborts, removing the partial output.
pub fn merge_files(
    inputs: &[(u64, Arc<SealedFile>)],
    output: &Path,
    options: WriterOptions,
    bytes_per_second: u64,
    cancel: &AtomicBool,
) -> Result<Option<SealedFileSummary>> {
    let mut series: BTreeMap<&SeriesKey, DataType> = BTreeMap::new();
    for (_, file) in inputs {
        for meta in file.series() {
            series.insert(&meta.key, meta.data_type);
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let result = (|| {
        let mut writer = SealedFileWriter::create(output, options)?;
        let started = Instant::now();
        let mut bytes_read = 0u64;
        let mut written = 0usize;
        for (key, data_type) in series {
            if cancel.load(Ordering::Relaxed) {
                return Err(StorageError::Closed);
            }
            let mut pieces = Vec::new();
            for (version, file) in inputs {
                if let Some(meta) = file.find(key) {
                    for chunk in &meta.chunks {
                        pieces.push(RankedPiece::chunk(*version, file, chunk));
                    }
                }
            }
            let points = query::scan(data_type, pieces, TimeRange::ALL)?;
            bytes_read += (points.len() * 16) as u64;
            if !points.is_empty() {
                writer.write_series(key, &points)?;
                written += 1;
            }
            throttle(started, bytes_read, bytes_per_second);
        }
        if written == 0 {
            drop(writer);
            let _ = std::fs::remove_file(output);
            return Ok(None);
        }
        writer.finish().map(Some)
    })();
    match result {
        Ok(summary) => Ok(summary),
        Err(e) => {
            let _ = std::fs::remove_file(output);
            Err(e)
        }
    }
}

/// Sleeps so that `bytes` since `started` stay under `bytes_per_second`. The rate is taken
/// on the merged points' in-memory size (16 bytes a point), a stable proxy for the I/O.
fn throttle(started: Instant, bytes: u64, bytes_per_second: u64) {
    if bytes_per_second == 0 {
        return;
    }
    let due = Duration::from_secs_f64(bytes as f64 / bytes_per_second as f64);
    let elapsed = started.elapsed();
    if due > elapsed {
        std::thread::sleep(due - elapsed);
    }
}
