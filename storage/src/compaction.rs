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
use crate::file_system::FileSystem;
use crate::query;
use crate::region::Deletion;
use crate::sealed::{SealedFile, SealedFileWriter, WriterOptions};
use crate::types::{DataType, SeriesKey, TimeRange};

/// One file to merge: its newest-wins version and the deletions to apply to it.
pub struct Input {
    pub version: u64,
    pub file: Arc<SealedFile>,
    pub deletions: Vec<Deletion>,
}

/// Merges `inputs` into a new file at `output`, dropping the points their deletions hide.
/// Returns the output opened for reading (from the writer's index,
/// [`SealedFileWriter::finish_open`]), or `None` (and writes nothing) when no point
/// remains. `bytes_per_second` limits the write rate (0: unlimited); `cancel` aborts,
/// removing the partial output. The output is written through `file_system`.
pub fn merge_files(
    file_system: &dyn FileSystem,
    inputs: &[Input],
    output: &Path,
    options: WriterOptions,
    bytes_per_second: u64,
    cancel: &AtomicBool,
) -> Result<Option<SealedFile>> {
    let mut series: BTreeMap<&SeriesKey, DataType> = BTreeMap::new();
    for input in inputs {
        for meta in input.file.series() {
            series.insert(&meta.key, meta.data_type);
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let result = (|| {
        let mut writer = SealedFileWriter::create_in(file_system, output, options)?;
        let started = Instant::now();
        let mut bytes_read = 0u64;
        let mut written = 0usize;
        for (key, data_type) in series {
            if cancel.load(Ordering::Relaxed) {
                return Err(StorageError::Closed);
            }
            let mut pieces = Vec::new();
            for input in inputs {
                if let Some(meta) = input.file.find(key) {
                    for chunk in &meta.chunks {
                        pieces.extend(query::chunk_piece(
                            input.version,
                            &input.file,
                            chunk,
                            &input.deletions,
                            key,
                        )?);
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
            let _ = file_system.remove_file(output);
            return Ok(None);
        }
        writer.finish_open().map(Some)
    })();
    match result {
        Ok(file) => Ok(file),
        Err(e) => {
            let _ = file_system.remove_file(output);
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
