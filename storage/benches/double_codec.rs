//! Encode and decode speed of DOUBLE chunks of the standard workload, on one core.
//!
//! `cargo bench -p iotdb-storage --bench double_codec` prints points per second for the value
//! column (ALP) and, for reference, the timestamp column (sealed files imply regular
//! timestamps from chunk statistics and store no time block, but irregular ones take this
//! codec). Each figure is the best of several passes over 2,000 series of 1,000 points cut
//! into chunks of `CHUNK_POINTS_MAX` (1024), as the sealed-file writer cuts them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use iotdb_storage::codec::{decode_timestamps, decode_values, encode_timestamps, encode_values};
use iotdb_storage::config::CHUNK_POINTS_MAX;
use iotdb_storage::sealed::workload;
use iotdb_storage::{DataType, PointColumn, Values};

/// Series measured: 200 devices × 10 sensors.
const SERIES: u64 = 2000;
const ROWS: usize = 1000;
/// Passes per figure; the best is reported, as the least disturbed by other processes.
const PASSES: usize = 7;

fn best_of(mut pass: impl FnMut()) -> Duration {
    (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            pass();
            start.elapsed()
        })
        .min()
        .expect("at least one pass")
}

fn report(what: &str, points: usize, elapsed: Duration) {
    let rate = points as f64 / elapsed.as_secs_f64();
    println!("{what:<28} {:>8.1} M points/s", rate / 1e6);
}

fn main() {
    let chunks: Vec<PointColumn> = (0..SERIES)
        .flat_map(|k| {
            let series = workload::series(k / workload::SENSORS, k % workload::SENSORS, ROWS);
            (0..ROWS)
                .step_by(CHUNK_POINTS_MAX)
                .map(|start| {
                    let end = (start + CHUNK_POINTS_MAX).min(ROWS);
                    let mut values = Values::with_capacity(DataType::Double, end - start);
                    values.extend_from(&series.values, start..end);
                    PointColumn {
                        timestamps: series.timestamps[start..end].to_vec(),
                        values,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let points: usize = chunks.iter().map(PointColumn::len).sum();

    let mut encoded_values: Vec<Vec<u8>> = vec![Vec::new(); chunks.len()];
    let encode_time = best_of(|| {
        for (chunk, out) in chunks.iter().zip(encoded_values.iter_mut()) {
            out.clear();
            encode_values(black_box(&chunk.values), out);
        }
    });
    let value_bytes: usize = encoded_values.iter().map(Vec::len).sum();
    let decode_time = best_of(|| {
        for (encoded, chunk) in encoded_values.iter().zip(&chunks) {
            black_box(decode_values(DataType::Double, black_box(encoded), chunk.len()).unwrap());
        }
    });

    let mut encoded_times: Vec<Vec<u8>> = vec![Vec::new(); chunks.len()];
    let time_encode_time = best_of(|| {
        for (chunk, out) in chunks.iter().zip(encoded_times.iter_mut()) {
            out.clear();
            encode_timestamps(black_box(&chunk.timestamps), out);
        }
    });
    let time_bytes: usize = encoded_times.iter().map(Vec::len).sum();
    let time_decode_time = best_of(|| {
        for (encoded, chunk) in encoded_times.iter().zip(&chunks) {
            black_box(decode_timestamps(black_box(encoded), chunk.len()).unwrap());
        }
    });

    println!(
        "{points} points in {} chunks of at most {CHUNK_POINTS_MAX}",
        chunks.len()
    );
    report("DOUBLE encode (ALP)", points, encode_time);
    report("DOUBLE decode (ALP)", points, decode_time);
    report("timestamp encode", points, time_encode_time);
    report("timestamp decode", points, time_decode_time);
    println!(
        "encoded bytes/point: values {:.4}, timestamps {:.4}",
        value_bytes as f64 / points as f64,
        time_bytes as f64 / points as f64
    );
}
