//! The standard workload's data (/work/shared/WORKLOAD.md), bit-exact: timestamps from
//! t0 = 1700000000000 ms in steps of 1000 ms and a random walk in integer hundredths.
//! Shared by the size test, the size example and the codec bench so all measure the same
//! points.

use crate::types::{PointColumn, Values};

/// The first timestamp, in milliseconds.
pub const START_TIME_MS: i64 = 1_700_000_000_000;
/// Milliseconds between rows.
pub const STEP_MS: i64 = 1000;
/// Sensors per device.
pub const SENSORS: u64 = 10;

/// The values of sensor `sensor` of device `device` for `rows` rows, in integer
/// hundredths: the random walk itself.
pub fn hundredths(device: u64, sensor: u64, rows: usize) -> Vec<i64> {
    let k = device * SENSORS + sensor;
    let mut x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut v = 2000 + ((x >> 40) % 2000);
    (0..rows)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            v = v.wrapping_add((x >> 33) % 201).wrapping_sub(100);
            v as i64
        })
        .collect()
}

/// Row `rows` points of sensor `sensor` of device `device`, all DOUBLE.
pub fn series(device: u64, sensor: u64, rows: usize) -> PointColumn {
    let timestamps = (0..rows as i64)
        .map(|row| START_TIME_MS + row * STEP_MS)
        .collect();
    let values = hundredths(device, sensor, rows)
        .into_iter()
        .map(|v| v as f64 / 100.0)
        .collect();
    PointColumn {
        timestamps,
        values: Values::Double(values),
    }
}
