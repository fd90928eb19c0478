//! Property test: random writes (in and out of order, duplicates, nulls, every type),
//! deletions, flushes, compactions, restarts and TTL changes against a region, with every query
//! answer compared to a simple in-memory model.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use iotdb_storage::region::Clock;
use iotdb_storage::{
    Aggregation, CompareOp, DataType, FilterCounters, NullBitmap, Operand, Region, RegionConfig,
    SeriesKey, StorageError, Tablet, TabletColumn, TimeRange, Value, ValueFilter, Values, WalMode,
    Windows,
};
use proptest::prelude::*;

const DEVICES: [&str; 3] = ["root.db.d0", "root.db.d1", "root.db.d2"];
/// Each measurement name has one type, so random tablets never conflict by accident.
const MEASUREMENTS: [(&str, DataType); 6] = [
    ("b", DataType::Boolean),
    ("i", DataType::Int32),
    ("l", DataType::Int64),
    ("f", DataType::Float),
    ("d", DataType::Double),
    ("t", DataType::Text),
];
/// Small partitions so a few hundred timestamps span several of them.
const PARTITION_MS: i64 = 100;
const TIME_MAX: i64 = 500;

#[derive(Clone, Debug)]
enum Op {
    Write {
        device: usize,
        rows: Vec<(i64, Vec<Option<Value>>)>,
        measurements: Vec<usize>,
    },
    WrongType {
        device: usize,
    },
    Delete {
        device: usize,
        measurement: usize,
        start: i64,
        end: i64,
    },
    Flush,
    Compact,
    Restart,
    SetTtl(Option<i64>),
    AdvanceClock(i64),
    Scan {
        device: usize,
        measurement: usize,
        start: i64,
        end: i64,
    },
    Aggregate {
        device: usize,
        measurement: usize,
        start: i64,
        end: i64,
        interval: Option<i64>,
    },
    Last {
        device: usize,
        measurement: usize,
    },
}

fn value_strategy(data_type: DataType) -> BoxedStrategy<Value> {
    match data_type {
        DataType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        DataType::Int32 => any::<i32>().prop_map(Value::Int32).boxed(),
        DataType::Int64 => prop_oneof![any::<i64>(), -1000i64..1000]
            .prop_map(Value::Int64)
            .boxed(),
        DataType::Float => (-1.0e6f32..1.0e6).prop_map(Value::Float).boxed(),
        DataType::Double => prop_oneof![
            (-1.0e9f64..1.0e9),
            (-10000i64..10000).prop_map(|v| v as f64 / 100.0)
        ]
        .prop_map(Value::Double)
        .boxed(),
        DataType::Text => "[a-z]{0,6}"
            .prop_map(|s| Value::Text(Bytes::from(s)))
            .boxed(),
    }
}

fn write_strategy() -> impl Strategy<Value = Op> {
    (
        0..DEVICES.len(),
        proptest::sample::subsequence(
            (0..MEASUREMENTS.len()).collect::<Vec<_>>(),
            1..=MEASUREMENTS.len(),
        ),
        1usize..20,
        0i64..TIME_MAX,
        any::<bool>(),
    )
        .prop_flat_map(|(device, measurements, rows, base, ordered)| {
            let cells: Vec<BoxedStrategy<Option<Value>>> = measurements
                .iter()
                .map(|&m| {
                    proptest::option::weighted(0.85, value_strategy(MEASUREMENTS[m].1)).boxed()
                })
                .collect();
            let row = (
                if ordered {
                    Just(0i64).boxed()
                } else {
                    (0i64..TIME_MAX).boxed()
                },
                cells,
            );
            proptest::collection::vec(row, rows).prop_map(move |rows| {
                let rows = rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, cells))| {
                        (
                            if ordered {
                                (base + i as i64) % TIME_MAX
                            } else {
                                t
                            },
                            cells,
                        )
                    })
                    .collect();
                Op::Write {
                    device,
                    rows,
                    measurements: measurements.clone(),
                }
            })
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let series = (0..DEVICES.len(), 0..MEASUREMENTS.len());
    let range =
        (0i64..TIME_MAX + 50, 0i64..TIME_MAX + 50).prop_map(|(a, b)| (a.min(b), a.max(b) + 1));
    prop_oneof![
        8 => write_strategy(),
        1 => (0..DEVICES.len()).prop_map(|device| Op::WrongType { device }),
        2 => (series.clone(), range.clone()).prop_map(|((device, measurement), (start, end))| Op::Delete { device, measurement, start, end }),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
        1 => proptest::option::of(50i64..400).prop_map(Op::SetTtl),
        1 => (0i64..200).prop_map(Op::AdvanceClock),
        3 => (series.clone(), range.clone()).prop_map(|((device, measurement), (start, end))| Op::Scan { device, measurement, start, end }),
        3 => (series.clone(), range, proptest::option::of(1i64..120)).prop_map(|((device, measurement), (start, end), interval)| {
            Op::Aggregate { device, measurement, start, end, interval }
        }),
        2 => series.prop_map(|(device, measurement)| Op::Last { device, measurement }),
    ]
}

/// The model: per series, time → value; plus the TTL.
struct Model {
    series: BTreeMap<(usize, usize), BTreeMap<i64, Value>>,
    ttl: Option<i64>,
    /// The highest TTL cut-off so far. Points before it may have been deleted for good (a
    /// wholly expired partition's files are dropped), so after the TTL is lowered or unset
    /// they may or may not reappear: answers are compared only from here on.
    watermark: i64,
}

impl Model {
    fn visible(
        &self,
        now: i64,
        device: usize,
        measurement: usize,
        range: TimeRange,
    ) -> Vec<(i64, Value)> {
        let cutoff = self.ttl.map_or(i64::MIN, |ttl| now - ttl);
        self.series
            .get(&(device, measurement))
            .map(|points| {
                points
                    .range(range.start.max(cutoff)..range.end.max(range.start.max(cutoff)))
                    .map(|(&t, v)| (t, v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn tablet_of(device: usize, measurements: &[usize], rows: &[(i64, Vec<Option<Value>>)]) -> Tablet {
    let columns = measurements
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            let (name, data_type) = MEASUREMENTS[m];
            let mut values = Values::new(data_type);
            let mut nulls = NullBitmap::new(rows.len());
            for (r, (_, cells)) in rows.iter().enumerate() {
                match &cells[c] {
                    Some(v) => values.push(v.clone()),
                    None => {
                        values.push(iotdb_storage::types::placeholder(data_type));
                        nulls.set_null(r);
                    }
                }
            }
            TabletColumn {
                measurement: Arc::from(name),
                values,
                nulls: (!nulls.none_null()).then_some(nulls),
            }
        })
        .collect();
    Tablet {
        device: Arc::from(DEVICES[device]),
        timestamps: rows.iter().map(|(t, _)| *t).collect(),
        columns,
    }
}

/// Equal, but for sums and averages (f64, summed in another order) within rounding of
/// `scale`, the sum of the magnitudes summed.
fn close_enough(a: &Value, b: &Value, scale: f64) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x == y || (x - y).abs() <= 1e-12 * (1.0 + scale),
        _ => a == b,
    }
}

fn magnitude(points: &[(i64, Value)]) -> f64 {
    points
        .iter()
        .filter_map(|p| p.1.as_f64())
        .map(f64::abs)
        .sum()
}

fn expected_aggregates(points: &[(i64, Value)]) -> Vec<Option<Value>> {
    let count = Some(Value::Int64(points.len() as i64));
    let Some((_, first)) = points.first() else {
        return vec![count, None, None, None, None, None, None];
    };
    if !first.data_type().is_numeric() {
        return vec![
            count,
            None,
            None,
            None,
            None,
            Some(first.clone()),
            Some(points[points.len() - 1].1.clone()),
        ];
    }
    let sum: f64 = points.iter().map(|p| p.1.as_f64().unwrap()).sum();
    // Exact ordering per type (INT64 beyond 2^53 must not be compared as f64).
    let key = |v: &Value| match v {
        Value::Int64(x) => (*x as i128, 0.0),
        other => (0, other.as_f64().unwrap()),
    };
    let less = |a: &Value, b: &Value| {
        let (ka, kb) = (key(a), key(b));
        ka.0 < kb.0 || (ka.0 == kb.0 && ka.1 < kb.1)
    };
    let mut min = first.clone();
    let mut max = first.clone();
    for (_, v) in points {
        if less(v, &min) {
            min = v.clone();
        }
        if less(&max, v) {
            max = v.clone();
        }
    }
    vec![
        count,
        Some(Value::Double(sum)),
        Some(Value::Double(sum / points.len() as f64)),
        Some(min),
        Some(max),
        Some(first.clone()),
        Some(points[points.len() - 1].1.clone()),
    ]
}

fn config() -> RegionConfig {
    RegionConfig {
        wal_mode: WalMode::Sync,
        time_partition_interval_ms: PARTITION_MS,
        // Tiny chunks so files hold many chunks and statistics get used.
        chunk_points_max: 7,
        compaction_files_trigger: 3,
        compaction_bytes_per_second: 0,
        ..RegionConfig::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let now = Rc::new(Cell::new(1_000i64));
        let clock_now = now.clone();
        let clock: Clock = Rc::new(move || clock_now.get());
        let open = |ttl: Option<i64>| {
            let mut config = config();
            config.ttl_ms = ttl;
            Region::open_with_clock(dir.path(), config, clock.clone()).unwrap()
        };
        let mut model = Model {
            series: BTreeMap::new(),
            ttl: None,
            watermark: i64::MIN,
        };
        let mut region = open(None);
        for op in ops {
            if let Some(ttl) = model.ttl {
                model.watermark = model.watermark.max(now.get() - ttl);
            }
            let watermark = model.watermark;
            match op {
                Op::Write {
                    device,
                    rows,
                    measurements,
                } => {
                    let tablet = tablet_of(device, &measurements, &rows);
                    region.write_durable(&tablet).await.unwrap();
                    for (c, &m) in measurements.iter().enumerate() {
                        for (t, cells) in &rows {
                            if let Some(v) = &cells[c] {
                                model
                                    .series
                                    .entry((device, m))
                                    .or_default()
                                    .insert(*t, v.clone());
                            }
                        }
                    }
                }
                Op::WrongType { device } => {
                    // A DOUBLE series written as INT64 beside a fresh series: the whole
                    // tablet is refused, so the fresh series must not appear.
                    if region
                        .series_type(&SeriesKey::new(DEVICES[device], "d"))
                        .is_none()
                    {
                        continue;
                    }
                    let tablet = Tablet {
                        device: Arc::from(DEVICES[device]),
                        timestamps: vec![1],
                        columns: vec![
                            TabletColumn {
                                measurement: Arc::from("fresh"),
                                values: Values::Int32(vec![1]),
                                nulls: None,
                            },
                            TabletColumn {
                                measurement: Arc::from("d"),
                                values: Values::Int64(vec![1]),
                                nulls: None,
                            },
                        ],
                    };
                    let refused = matches!(
                        region.write(&tablet),
                        Err(StorageError::TypeMismatch { .. })
                    );
                    prop_assert!(refused);
                    prop_assert!(
                        region
                            .scan(&SeriesKey::new(DEVICES[device], "fresh"), TimeRange::ALL)
                            .unwrap()
                            .is_none()
                    );
                }
                Op::Delete {
                    device,
                    measurement,
                    start,
                    end,
                } => {
                    let key = SeriesKey::new(DEVICES[device], MEASUREMENTS[measurement].0);
                    region
                        .delete(&[key], TimeRange::new(start, end))
                        .unwrap()
                        .durable()
                        .await
                        .unwrap();
                    if let Some(points) = model.series.get_mut(&(device, measurement)) {
                        points.retain(|t, _| !(start..end).contains(t));
                    }
                }
                Op::Flush => region.flush().await.unwrap(),
                Op::Compact => region.compact().await.unwrap(),
                Op::Restart => {
                    region.close(false).await.unwrap();
                    region = open(model.ttl);
                }
                Op::SetTtl(ttl) => {
                    model.ttl = ttl;
                    region.set_ttl(ttl);
                }
                Op::AdvanceClock(ms) => {
                    now.set(now.get() + ms);
                    region.tick();
                }
                Op::Scan {
                    device,
                    measurement,
                    start,
                    end,
                } => {
                    let key = SeriesKey::new(DEVICES[device], MEASUREMENTS[measurement].0);
                    let range = TimeRange::new(start.max(watermark), end.max(watermark));
                    let expected = model.visible(now.get(), device, measurement, range);
                    let got = region.scan(&key, range).unwrap();
                    let got: Vec<(i64, Value)> = got
                        .map(|p| {
                            p.timestamps
                                .iter()
                                .enumerate()
                                .map(|(i, &t)| (t, p.values.get(i)))
                                .collect()
                        })
                        .unwrap_or_default();
                    prop_assert_eq!(&got, &expected);
                    // The first points only (a query's LIMIT): a prefix of the whole scan.
                    let first = (expected.len() / 3).max(1);
                    let got_first: Vec<i64> = region
                        .scan_first(&key, range, first)
                        .unwrap()
                        .map(|p| p.timestamps)
                        .unwrap_or_default();
                    let wanted_first: Vec<i64> =
                        expected.iter().take(first).map(|(t, _)| *t).collect();
                    prop_assert_eq!(got_first, wanted_first);
                    // The same scan filtered on the value (pushed down, judged by chunk
                    // statistics where a chunk is alone), against the model filtered by hand.
                    if let Some(threshold) =
                        expected.get(expected.len() / 2).and_then(|p| p.1.as_f64())
                    {
                        let filter =
                            ValueFilter::Compare(CompareOp::Greater, Operand::Number(threshold));
                        let mut counters = FilterCounters::default();
                        let got = region
                            .scan_filtered(&key, range, &filter, &mut counters)
                            .unwrap()
                            .map(|p| {
                                p.timestamps
                                    .iter()
                                    .enumerate()
                                    .map(|(i, &t)| (t, p.values.get(i)))
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default();
                        let wanted: Vec<(i64, Value)> = expected
                            .iter()
                            .filter(|(_, v)| v.as_f64().is_some_and(|x| x > threshold))
                            .cloned()
                            .collect();
                        // The first passing points only (a page of a filtered scan).
                        let first = (wanted.len() / 3).max(1);
                        let got_first: Vec<i64> = region
                            .scan_filtered_first(&key, range, &filter, first, &mut counters)
                            .unwrap()
                            .map(|p| p.timestamps)
                            .unwrap_or_default();
                        let wanted_first: Vec<i64> =
                            wanted.iter().take(first).map(|(t, _)| *t).collect();
                        prop_assert_eq!(got_first, wanted_first);
                        prop_assert_eq!(got, wanted);
                    }
                }
                Op::Aggregate {
                    device,
                    measurement,
                    start,
                    end,
                    interval,
                } => {
                    let key = SeriesKey::new(DEVICES[device], MEASUREMENTS[measurement].0);
                    let Some(data_type) = region.series_type(&key) else {
                        continue;
                    };
                    let range = TimeRange::new(start.max(watermark), end.max(watermark));
                    let aggregations: Vec<Aggregation> = Aggregation::ALL
                        .into_iter()
                        .filter(|a| a.check(data_type).is_ok())
                        .collect();
                    let windows = interval.map(|interval_ms| Windows { range, interval_ms });
                    let rows = region
                        .aggregate(&key, TimeRange::ALL, windows, &aggregations)
                        .unwrap()
                        .unwrap();
                    let expected_windows: Vec<TimeRange> = match windows {
                        Some(w) => (0..w.count()).map(|i| w.window(i)).collect(),
                        None => vec![range],
                    };
                    if windows.is_none() {
                        // Without windows, aggregate over the range itself.
                        let rows = region
                            .aggregate(&key, range, None, &aggregations)
                            .unwrap()
                            .unwrap();
                        prop_assert_eq!(rows.len(), 1);
                        let points = model.visible(now.get(), device, measurement, range);
                        let all = expected_aggregates(&points);
                        let expected: Vec<Option<Value>> = Aggregation::ALL
                            .iter()
                            .zip(all)
                            .filter(|(a, _)| aggregations.contains(a))
                            .map(|(_, v)| v)
                            .collect();
                        for (g, e) in rows[0].values.iter().zip(&expected) {
                            prop_assert!(
                                match (g, e) {
                                    (Some(g), Some(e)) => close_enough(g, e, magnitude(&points)),
                                    (None, None) => true,
                                    _ => false,
                                },
                                "{:?} vs {:?}",
                                rows[0].values,
                                expected
                            );
                        }
                        continue;
                    }
                    prop_assert_eq!(rows.len(), expected_windows.len());
                    for (row, window) in rows.iter().zip(expected_windows) {
                        prop_assert_eq!(row.window_start, window.start);
                        if window.start < watermark {
                            continue;
                        }
                        let points = model.visible(now.get(), device, measurement, window);
                        let all = expected_aggregates(&points);
                        let expected: Vec<Option<Value>> = Aggregation::ALL
                            .iter()
                            .zip(all)
                            .filter(|(a, _)| aggregations.contains(a))
                            .map(|(_, v)| v)
                            .collect();
                        for (g, e) in row.values.iter().zip(&expected) {
                            prop_assert!(
                                match (g, e) {
                                    (Some(g), Some(e)) => close_enough(g, e, magnitude(&points)),
                                    (None, None) => true,
                                    _ => false,
                                },
                                "window {:?}: {:?} vs {:?}",
                                window,
                                row.values,
                                expected
                            );
                        }
                    }
                }
                Op::Last {
                    device,
                    measurement,
                } => {
                    let key = SeriesKey::new(DEVICES[device], MEASUREMENTS[measurement].0);
                    let expected = model
                        .visible(
                            now.get(),
                            device,
                            measurement,
                            TimeRange::new(watermark, i64::MAX),
                        )
                        .pop();
                    let got = region.last(&key).unwrap();
                    match expected {
                        Some(expected) => prop_assert_eq!(got, Some(expected)),
                        None => prop_assert!(
                            got.as_ref().is_none_or(|(t, _)| *t < watermark),
                            "last {:?} should be gone",
                            got
                        ),
                    }
                }
            }
        }
        region.close(true).await.unwrap();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]
    #[test]
    fn region_matches_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run(ops)?;
    }
}
