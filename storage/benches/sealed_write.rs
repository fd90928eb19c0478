//! CPU the sealed-file writer spends on the standard workload: what a flush costs per point.
//!
//! `cargo bench -p iotdb-storage --bench sealed_write [PASSES]` writes 2,000 series of 1,000
//! DOUBLE points (200 devices × 10 sensors, chunks of `CHUNK_POINTS_MAX`) into a sealed file
//! with default options, `PASSES` times (default 7), and prints the best pass's thread CPU
//! time and wall time per point. The series are generated before the first pass, so a pass
//! is `SealedFileWriter::write_series` for every series plus `finish` (index and
//! fdatasync). Under `valgrind --tool=callgrind`, run one pass: instruction counts then
//! compare builds without the noise of a shared machine. The file's checksum is printed too,
//! so two builds can be checked to write the same bytes.
//!
//! Each pass also writes the same series as a flush writes what its memtable keeps as
//! first, step and count (`SealedFileWriter::write_evenly_spaced`, the timestamps never
//! spelled out), and prints that line too; both files must be the same bytes.

use std::time::{Duration, Instant};

use iotdb_storage::sealed::{SealedFileWriter, WriterOptions, workload};
use iotdb_storage::{PointColumn, SeriesKey};

/// Series written per pass: 200 devices × 10 sensors.
const SERIES: u64 = 2000;
/// Rows per series, as the workload fixes.
const ROWS: usize = 1000;

/// CPU time this thread has used so far.
fn thread_cpu_time() -> Duration {
    iotdb_runtime::current_thread_cpu_time().expect("read this thread's schedstat")
}

fn main() {
    let passes: usize = match std::env::args().nth(1) {
        Some(arg) if !arg.starts_with('-') => arg.parse().expect("PASSES is a number"),
        _ => 7,
    };
    let mut series: Vec<(SeriesKey, PointColumn)> = (0..SERIES)
        .map(|k| {
            let (device, sensor) = (k / workload::SENSORS, k % workload::SENSORS);
            let key = SeriesKey::new(&format!("root.bench.d{device}"), &format!("s{sensor}"));
            (key, workload::series(device, sensor, ROWS))
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let points = SERIES as usize * ROWS;

    // The same series as first and step, where their timestamps are evenly spaced.
    let spaced: Vec<Option<(i64, i64)>> = series
        .iter()
        .map(|(_, points)| evenly_spaced(&points.timestamps))
        .collect();

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut spelled = Best::default();
    let mut implied = Best::default();
    // The checksum of the file's bytes: equal across builds when the format is untouched.
    let mut file_crc = 0u32;
    for pass in 0..passes {
        let path = dir.path().join(format!("pass{pass}.sealed"));
        let crc = spelled.time(&path, |writer| {
            for (key, points) in &series {
                writer.write_series(key, points).expect("write series");
            }
        });
        let implied_crc = implied.time(&path, |writer| {
            for ((key, points), spaced) in series.iter().zip(&spaced) {
                match spaced {
                    Some((first, step)) => writer
                        .write_evenly_spaced(key, *first, *step, &points.values)
                        .expect("write series"),
                    None => writer.write_series(key, points).expect("write series"),
                }
            }
        });
        assert_eq!(crc, implied_crc, "both ways write the same bytes");
        if pass == 0 {
            file_crc = crc;
        }
    }
    let (Some((cpu, wall, bytes)), Some((implied_cpu, implied_wall, _))) =
        (spelled.best, implied.best)
    else {
        return;
    };
    let per_point = |d: Duration| d.as_secs_f64() * 1e9 / points as f64;
    println!("{points} points, {bytes} bytes (crc32c {file_crc:08x}), best of {passes} passes");
    println!(
        "sealed write: cpu {:.2} ns/point, wall {:.2} ns/point",
        per_point(cpu),
        per_point(wall)
    );
    println!(
        "sealed write, evenly spaced: cpu {:.2} ns/point, wall {:.2} ns/point",
        per_point(implied_cpu),
        per_point(implied_wall)
    );
}

/// `(first, step)` when `timestamps` are `first + step * i`.
fn evenly_spaced(timestamps: &[i64]) -> Option<(i64, i64)> {
    let first = *timestamps.first()?;
    let step = timestamps.get(1).map_or(0, |second| second - first);
    let even = timestamps.iter().enumerate().all(|(i, &t)| {
        Some(t)
            == step
                .checked_mul(i as i64)
                .and_then(|o| first.checked_add(o))
    });
    (even && (step > 0 || timestamps.len() == 1)).then_some((first, step))
}

/// The pass with the least CPU of one way of writing: (cpu, wall, file bytes).
#[derive(Default)]
struct Best {
    best: Option<(Duration, Duration, u64)>,
}

impl Best {
    /// Writes a file at `path` with `write`, keeps the pass if it is the best so far, and
    /// returns the file's checksum.
    fn time(&mut self, path: &std::path::Path, write: impl FnOnce(&mut SealedFileWriter)) -> u32 {
        let (cpu_start, wall_start) = (thread_cpu_time(), Instant::now());
        let mut writer =
            SealedFileWriter::create(path, WriterOptions::default()).expect("create file");
        write(&mut writer);
        let summary = writer.finish().expect("finish file");
        let (cpu, wall) = (thread_cpu_time() - cpu_start, wall_start.elapsed());
        let crc = crc32c::crc32c(&std::fs::read(path).expect("read file"));
        std::fs::remove_file(path).expect("remove file");
        if self.best.is_none_or(|(best_cpu, _, _)| cpu < best_cpu) {
            self.best = Some((cpu, wall, summary.bytes));
        }
        crc
    }
}
