//! Verification of what a server or a region holds against what the generator produced:
//! per series the point count, the first and last time, and a checksum of every
//! (time, value) pair, so a lost, shifted or altered point fails the run, not only a
//! missing one.
//!
//! The checksum is a wrapping sum of a mix of each pair, so it does not depend on the order
//! points are seen in (the generator delivers some requests late; a query returns them in
//! time order). Values enter as their bits (floats by `to_bits`, text by a 64-bit FNV-1a
//! of its bytes), so `-0.0` and `0.0`, or two NaN payloads, are told apart.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::bail;
use iotdb_net::{ColumnBatch, TypedColumn};
use iotdb_storage::{PointColumn, Values};

use crate::workload::{Request, WorkloadSpec};

/// Count, time range and checksum of one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesDigest {
    pub count: u64,
    pub min_time: i64,
    pub max_time: i64,
    pub checksum: u64,
}

impl Default for SeriesDigest {
    fn default() -> Self {
        SeriesDigest {
            count: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
            checksum: 0,
        }
    }
}

impl SeriesDigest {
    /// Adds the point (`time`, value bits).
    pub fn push(&mut self, time: i64, value_bits: u64) {
        self.count += 1;
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        self.checksum = self
            .checksum
            .wrapping_add(mix(mix(time as u64) ^ value_bits));
    }
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn text_bits(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// The bits of row `row` of engine values.
fn engine_bits(values: &Values, row: usize) -> u64 {
    match values {
        Values::Boolean(v) => u64::from(v[row]),
        Values::Int32(v) => i64::from(v[row]) as u64,
        Values::Int64(v) => v[row] as u64,
        Values::Float(v) => u64::from(v[row].to_bits()),
        Values::Double(v) => v[row].to_bits(),
        Values::Text(v) => text_bits(&v[row]),
    }
}

/// The bits of row `row` of a wire column (same rules as [`engine_bits`]).
fn wire_bits(values: &TypedColumn, row: usize) -> u64 {
    match values {
        TypedColumn::Boolean(v) => u64::from(v[row]),
        TypedColumn::Int32(v) => i64::from(v[row]) as u64,
        TypedColumn::Int64(v) => v[row] as u64,
        TypedColumn::Float(v) => u64::from(v[row].to_bits()),
        TypedColumn::Double(v) => v[row].to_bits(),
        TypedColumn::Text(v) => text_bits(&v[row]),
    }
}

/// What the generator produced: (device path, sensor index) → digest.
pub struct Expected {
    series: HashMap<(Arc<str>, usize), SeriesDigest>,
}

impl Expected {
    /// Digests every series of `requests` (the workload as it is sent).
    pub fn of(spec: &WorkloadSpec, requests: &[Request]) -> Expected {
        let mut series: HashMap<(Arc<str>, usize), SeriesDigest> =
            HashMap::with_capacity(spec.devices * spec.sensors);
        for request in requests {
            let tablet = &request.tablet;
            for column in &tablet.columns {
                let sensor = sensor_index(&column.measurement);
                let digest = series.entry((tablet.device.clone(), sensor)).or_default();
                for (row, &time) in tablet.timestamps.iter().enumerate() {
                    if column.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                        continue;
                    }
                    digest.push(time, engine_bits(&column.values, row));
                }
            }
        }
        Expected { series }
    }

    /// Checks one series' digest; returns its point count.
    pub fn check(&self, device: &str, sensor: usize, actual: &SeriesDigest) -> anyhow::Result<u64> {
        let name = format!("{device}.{}", WorkloadSpec::sensor_name(sensor));
        let Some(expected) = self.series.get(&(Arc::from(device), sensor)) else {
            bail!("{name} was not generated");
        };
        if expected.count != actual.count {
            bail!(
                "{name} holds {} points, the generator produced {}",
                actual.count,
                expected.count
            );
        }
        if (expected.min_time, expected.max_time) != (actual.min_time, actual.max_time) {
            bail!(
                "{name} spans [{}, {}], the generator produced [{}, {}]",
                actual.min_time,
                actual.max_time,
                expected.min_time,
                expected.max_time
            );
        }
        if expected.checksum != actual.checksum {
            bail!(
                "{name}: the values differ from the generator's (checksum {:#018x}, expected {:#018x})",
                actual.checksum,
                expected.checksum
            );
        }
        Ok(actual.count)
    }
}

/// The sensor index of `s{n}`.
fn sensor_index(measurement: &str) -> usize {
    measurement
        .strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Digests of each column of a device's raw query result (columns named `s{n}` or by their
/// full path), in the order of `sensors`.
pub fn digest_batches(
    batches: &[ColumnBatch],
    sensors: &[String],
) -> anyhow::Result<Vec<SeriesDigest>> {
    let mut digests = vec![SeriesDigest::default(); sensors.len()];
    for batch in batches {
        if let Err(e) = batch.validate() {
            bail!("a malformed result batch: {e}");
        }
        for column in &batch.columns {
            // Columns are named by the full path (`root.bench.d0.s3`) or the measurement.
            let measurement = column
                .measurement
                .rsplit('.')
                .next()
                .unwrap_or(&column.measurement);
            let Some(index) = sensors.iter().position(|s| s == measurement) else {
                bail!(
                    "the result holds a column {} not asked for",
                    column.measurement
                );
            };
            for (row, &time) in batch.timestamps.iter().enumerate() {
                if column.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    continue;
                }
                digests[index].push(time, wire_bits(&column.values, row));
            }
        }
    }
    Ok(digests)
}

/// The digest of a series scanned from a region.
pub fn digest_points(points: &PointColumn) -> SeriesDigest {
    let mut digest = SeriesDigest::default();
    for (row, &time) in points.timestamps.iter().enumerate() {
        digest.push(time, engine_bits(&points.values, row));
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_and_sees_every_change() {
        let mut a = SeriesDigest::default();
        let mut b = SeriesDigest::default();
        a.push(1, 10);
        a.push(2, 20);
        b.push(2, 20);
        b.push(1, 10);
        assert_eq!(a, b);
        let mut shifted = SeriesDigest::default();
        shifted.push(1, 20);
        shifted.push(2, 10);
        assert_ne!(a.checksum, shifted.checksum, "values swapped between times");
        let mut changed = SeriesDigest::default();
        changed.push(1, 10);
        changed.push(2, 21);
        assert_ne!(a.checksum, changed.checksum);
        assert_eq!((a.count, a.min_time, a.max_time), (2, 1, 2));
    }

    #[test]
    fn engine_and_wire_values_digest_alike() {
        let engine = Values::Double(vec![1.5, -0.0]);
        let wire = TypedColumn::Double(vec![1.5, -0.0]);
        for row in 0..2 {
            assert_eq!(engine_bits(&engine, row), wire_bits(&wire, row));
        }
        assert_ne!(
            engine_bits(&Values::Double(vec![0.0]), 0),
            engine_bits(&engine, 1)
        );
        let text = Values::Text(vec![bytes::Bytes::from_static(b"v1")]);
        let wire_text = TypedColumn::Text(vec![bytes::Bytes::from_static(b"v1")]);
        assert_eq!(engine_bits(&text, 0), wire_bits(&wire_text, 0));
    }
}
