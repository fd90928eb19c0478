//! Bytes on disk per point of the standard workload in one sealed file, default options.
//!
//! `cargo run --release -p iotdb-storage --example workload_size [DEVICES]` (default 1000
//! devices: all 10,000,000 points). Writes to a temporary directory and removes it.

use std::time::Instant;

use iotdb_storage::sealed::{SealedFile, SealedFileWriter, WriterOptions, format, workload};
use iotdb_storage::{SeriesKey, TimeRange};

/// Rows per series, as the workload fixes.
const ROWS: usize = 1000;

fn main() -> anyhow::Result<()> {
    let devices: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 1000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("workload.sealed");
    let mut keys: Vec<(SeriesKey, u64, u64)> = (0..devices)
        .flat_map(|d| {
            (0..workload::SENSORS).map(move |s| {
                let key = SeriesKey::new(&format!("root.bench.d{d}"), &format!("s{s}"));
                (key, d, s)
            })
        })
        .collect();
    keys.sort();

    let start = Instant::now();
    let mut writer = SealedFileWriter::create(&path, WriterOptions::default())?;
    for (key, d, s) in &keys {
        writer.write_series(key, &workload::series(*d, *s, ROWS))?;
    }
    let summary = writer.finish()?;
    let write_time = start.elapsed();

    let start = Instant::now();
    let file = SealedFile::open(&path)?;
    let mut points_read = 0;
    for meta in file.series() {
        points_read += file.read_series_meta(meta, TimeRange::ALL)?.len();
    }
    let read_time = start.elapsed();
    anyhow::ensure!(
        points_read as u64 == summary.points,
        "read back fewer points"
    );

    println!(
        "{devices} devices x {} sensors x {ROWS} rows: {} points, {} bytes, {:.4} bytes/point",
        workload::SENSORS,
        summary.points,
        summary.bytes,
        summary.bytes as f64 / summary.points as f64
    );
    let bytes = std::fs::read(&path)?;
    let mut footer = [0u8; format::FOOTER_LEN];
    footer.copy_from_slice(&bytes[bytes.len() - format::FOOTER_LEN..]);
    let (_, index_len) =
        format::parse_footer(&footer).map_err(|reason| anyhow::anyhow!("footer: {reason}"))?;
    let chunks: usize = file.series().map(|s| s.chunks.len()).sum();
    println!(
        "index {index_len} bytes ({:.4} bytes/point, {:.1} bytes/chunk over {chunks} chunks)",
        index_len as f64 / summary.points as f64,
        index_len as f64 / chunks as f64
    );
    println!(
        "write (generate + encode + fdatasync) {:.2} s, open + read all {:.2} s",
        write_time.as_secs_f64(),
        read_time.as_secs_f64()
    );
    Ok(())
}
