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

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut best: Option<(Duration, Duration, u64)> = None;
    // The checksum of the file's bytes: equal across builds when the format is untouched.
    let mut file_crc = 0u32;
    for pass in 0..passes {
        let path = dir.path().join(format!("pass{pass}.sealed"));
        let (cpu_start, wall_start) = (thread_cpu_time(), Instant::now());
        let mut writer =
            SealedFileWriter::create(&path, WriterOptions::default()).expect("create file");
        for (key, points) in &series {
            writer.write_series(key, points).expect("write series");
        }
        let summary = writer.finish().expect("finish file");
        let (cpu, wall) = (thread_cpu_time() - cpu_start, wall_start.elapsed());
        if pass == 0 {
            let bytes = std::fs::read(&path).expect("read file");
            file_crc = crc32c::crc32c(&bytes);
        }
        std::fs::remove_file(&path).expect("remove file");
        if best.is_none_or(|(best_cpu, _, _)| cpu < best_cpu) {
            best = Some((cpu, wall, summary.bytes));
        }
    }
    let Some((cpu, wall, bytes)) = best else {
        return;
    };
    let per_point = |d: Duration| d.as_secs_f64() * 1e9 / points as f64;
    println!("{points} points, {bytes} bytes (crc32c {file_crc:08x}), best of {passes} passes");
    println!(
        "sealed write: cpu {:.2} ns/point, wall {:.2} ns/point",
        per_point(cpu),
        per_point(wall)
    );
}
