//! The standard workload of `shared/WORKLOAD.md`, and its iot-benchmark-like variations.
//!
//! Values are a deterministic random walk kept in integer hundredths (arithmetic modulo
//! 2^64). The walk can step below zero; the 64-bit state is then read as a two's-complement
//! signed integer (−46.56 is −4656 hundredths), which keeps every value a small decimal.

use std::sync::Arc;

use bytes::Bytes;
use iotdb_storage::{DataType, Tablet, TabletColumn, Values};

/// First timestamp of the standard workload (ms).
pub const T0_MS: i64 = 1_700_000_000_000;

/// The shape of a workload.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub database: String,
    pub devices: usize,
    pub sensors: usize,
    pub rows: usize,
    pub batch: usize,
    pub interval_ms: i64,
    /// Type of each sensor, `sensors` long.
    pub types: Vec<DataType>,
    /// Fraction of requests delivered late (after newer data of their device).
    pub out_of_order_ratio: f64,
    pub seed: u64,
}

impl WorkloadSpec {
    /// `devices × sensors × rows`.
    pub fn points(&self) -> u64 {
        (self.devices * self.sensors * self.rows) as u64
    }

    pub fn device_path(&self, device: usize) -> String {
        format!("{}.d{device}", self.database)
    }

    pub fn sensor_name(sensor: usize) -> String {
        format!("s{sensor}")
    }
}

/// A series the query phase asks about: the first sensor of device 0 of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuerySeries {
    pub sensor: usize,
    pub data_type: DataType,
}

impl QuerySeries {
    /// Whether the numeric aggregates (sum, avg, min, max) are defined on this series;
    /// BOOLEAN and TEXT series get count, first and last only (as in IoTDB).
    pub fn numeric(&self) -> bool {
        self.data_type.is_numeric()
    }

    /// The name of the windowed aggregate query asked of this series.
    pub fn group_by_label(&self) -> &'static str {
        if self.numeric() {
            "count,avg 1h"
        } else {
            "count,first,last 1h"
        }
    }
}

/// One series per sensor type the workload holds (the first sensor of that type), in
/// type-code order, so the query phase asks each type only what it supports.
pub fn query_series(spec: &WorkloadSpec) -> Vec<QuerySeries> {
    let mut series: Vec<QuerySeries> = Vec::new();
    for (sensor, &data_type) in spec.types.iter().enumerate() {
        if !series.iter().any(|q| q.data_type == data_type) {
            series.push(QuerySeries { sensor, data_type });
        }
    }
    series.sort_by_key(|q| q.data_type.code());
    series
}

/// The label of a query row: the query's name, and the type when several are asked.
pub fn query_label(name: &str, series: &QuerySeries, several_types: bool) -> String {
    if several_types {
        format!("{name} {}", series.data_type.name())
    } else {
        name.to_owned()
    }
}

/// Assigns types to `sensors` by the proportions `weights` (iot-benchmark's
/// `INSERT_DATATYPE_PROPORTION`), in type-code order, deterministically.
pub fn types_by_proportion(sensors: usize, weights: &[(DataType, u32)]) -> Vec<DataType> {
    let total: u32 = weights.iter().map(|w| w.1).sum();
    assert!(total > 0, "type proportions sum to zero");
    (0..sensors)
        .map(|s| {
            let mut slot = (s as u32) % total;
            for &(t, w) in weights {
                if slot < w {
                    return t;
                }
                slot -= w;
            }
            unreachable!("slot below total")
        })
        .collect()
}

/// The random walk of one series, in hundredths.
pub struct Walk {
    x: u64,
    v: u64,
}

impl Walk {
    /// The walk of series `k = device·S + sensor`.
    pub fn new(k: u64) -> Walk {
        let x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        Walk {
            x,
            v: 2000 + ((x >> 40) % 2000),
        }
    }

    /// The next value in hundredths.
    pub fn next_hundredths(&mut self) -> i64 {
        self.x = self
            .x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.v = self.v.wrapping_add((self.x >> 33) % 201).wrapping_sub(100);
        self.v as i64
    }
}

/// One request: one device, `batch` consecutive rows, every sensor.
#[derive(Clone, Debug)]
pub struct Request {
    pub tablet: Tablet,
}

impl Request {
    #[cfg(test)]
    pub fn points(&self) -> u64 {
        (self.tablet.rows() * self.tablet.columns.len()) as u64
    }
}

fn column(data_type: DataType, hundredths: &[i64]) -> Values {
    match data_type {
        DataType::Double => Values::Double(hundredths.iter().map(|&v| v as f64 / 100.0).collect()),
        DataType::Float => Values::Float(hundredths.iter().map(|&v| v as f32 / 100.0).collect()),
        DataType::Int32 => Values::Int32(hundredths.iter().map(|&v| v as i32).collect()),
        DataType::Int64 => Values::Int64(hundredths.to_vec()),
        DataType::Boolean => Values::Boolean(hundredths.iter().map(|&v| v % 2 == 0).collect()),
        DataType::Text => Values::Text(
            hundredths
                .iter()
                .map(|&v| Bytes::from(format!("v{v}")))
                .collect(),
        ),
    }
}

/// Every request of the workload, batch-major (every device's first batch, then every
/// device's second, …), with the out-of-order share moved later.
pub fn generate(spec: &WorkloadSpec) -> Vec<Request> {
    let batches = spec.rows.div_ceil(spec.batch);
    let mut walks: Vec<Vec<Walk>> = (0..spec.devices)
        .map(|d| {
            (0..spec.sensors)
                .map(|s| Walk::new((d * spec.sensors + s) as u64))
                .collect()
        })
        .collect();
    let devices: Vec<Arc<str>> = (0..spec.devices)
        .map(|d| Arc::from(spec.device_path(d)))
        .collect();
    let sensors: Vec<Arc<str>> = (0..spec.sensors)
        .map(|s| Arc::from(WorkloadSpec::sensor_name(s)))
        .collect();
    let mut requests = Vec::with_capacity(batches * spec.devices);
    for b in 0..batches {
        let first_row = b * spec.batch;
        let rows = spec.batch.min(spec.rows - first_row);
        for (d, device) in devices.iter().enumerate() {
            let timestamps: Vec<i64> = (first_row..first_row + rows)
                .map(|r| T0_MS + r as i64 * spec.interval_ms)
                .collect();
            let columns = (0..spec.sensors)
                .map(|s| {
                    let hundredths: Vec<i64> =
                        (0..rows).map(|_| walks[d][s].next_hundredths()).collect();
                    TabletColumn {
                        measurement: sensors[s].clone(),
                        values: column(spec.types[s], &hundredths),
                        nulls: None,
                    }
                })
                .collect();
            requests.push(Request {
                tablet: Tablet {
                    device: device.clone(),
                    timestamps,
                    columns,
                },
            });
        }
    }
    if spec.out_of_order_ratio > 0.0 {
        delay_some(&mut requests, spec.out_of_order_ratio, spec.seed);
    }
    requests
}

/// Moves about `ratio` of the requests `devices`-or-more places later, so they reach the
/// server after newer rows of their device: out-of-order data, deterministically by `seed`.
fn delay_some(requests: &mut Vec<Request>, ratio: f64, seed: u64) {
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let n = requests.len();
    let mut late: Vec<(usize, Request)> = Vec::new();
    let mut kept = Vec::with_capacity(n);
    for (i, r) in std::mem::take(requests).into_iter().enumerate() {
        if (next() % 1_000_000) as f64 / 1_000_000.0 < ratio {
            late.push((i + (n / 4).max(1), r));
        } else {
            kept.push((i, r));
        }
    }
    kept.extend(late);
    kept.sort_by_key(|(position, _)| *position);
    *requests = kept.into_iter().map(|(_, r)| r).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> WorkloadSpec {
        WorkloadSpec {
            database: "root.bench".into(),
            devices: 3,
            sensors: 2,
            rows: 250,
            batch: 100,
            interval_ms: 1000,
            types: vec![DataType::Double; 2],
            out_of_order_ratio: 0.0,
            seed: 1,
        }
    }

    #[test]
    fn walk_matches_the_specification() {
        // k = 0: x = 1, v = 2000 + ((1 >> 40) mod 2000) = 2000.
        let mut walk = Walk::new(0);
        let x1 = 1u64
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let expected = 2000 + ((x1 >> 33) % 201) as i64 - 100;
        assert_eq!(walk.next_hundredths(), expected);
    }

    #[test]
    fn batch_major_order_and_sizes() {
        let requests = generate(&standard());
        assert_eq!(requests.len(), 9);
        assert_eq!(&*requests[0].tablet.device, "root.bench.d0");
        assert_eq!(&*requests[1].tablet.device, "root.bench.d1");
        assert_eq!(requests[3].tablet.timestamps[0], T0_MS + 100_000);
        assert_eq!(requests[8].tablet.rows(), 50);
        let points: u64 = requests.iter().map(Request::points).sum();
        assert_eq!(points, standard().points());
    }

    #[test]
    fn out_of_order_keeps_every_request() {
        let mut spec = standard();
        spec.out_of_order_ratio = 0.3;
        let requests = generate(&spec);
        assert_eq!(requests.len(), 9);
        let points: u64 = requests.iter().map(Request::points).sum();
        assert_eq!(points, spec.points());
    }

    #[test]
    fn types_follow_proportions() {
        let types = types_by_proportion(4, &[(DataType::Boolean, 1), (DataType::Double, 3)]);
        assert_eq!(
            types,
            vec![
                DataType::Boolean,
                DataType::Double,
                DataType::Double,
                DataType::Double
            ]
        );
    }
}
