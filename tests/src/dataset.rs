//! A deterministic dataset and the checks of every query kind against the [`Model`]:
//! mixed types, nulls, out-of-order tablets, overwrites and a tablet straddling two time
//! partitions ([`device_plan`]); raw queries with `LIMIT`/`OFFSET`, every aggregate,
//! windows, `LAST` ([`verify`]). Shared by the standalone end-to-end test and the
//! cluster tests, so a cluster is held to exactly what a standalone server answers.

use bytes::Bytes;
use iotdb_net::{
    AggregateQuery, Aggregation, BlockingClient, DataType, GroupByWindow, RawQuery,
    SeriesSelection, Value, WireTablet,
};

use crate::Model;
use crate::model::rows_of;

/// IoTDB's default time_partition_interval: 7 days in milliseconds.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// The start of a time partition, so partition 0 and partition 1 (a week later) are
/// distinct time slots.
pub const T0: i64 = 2812 * WEEK_MS;
/// Time partitions written per device. Three, so that with two region groups one group
/// can hold partitions on both sides of another's (a read must not fold them out of order).
pub const PARTITIONS: i64 = 3;
pub const ROWS_PER_PARTITION: i64 = 160;
pub const STEP_MS: i64 = 1000;
pub const ROWS_PER_TABLET: usize = 40;
/// Rows rewritten (same timestamps, new values) per device.
pub const OVERWRITES_PER_DEVICE: usize = 60;
pub const SCHEMA: [(&str, DataType); 6] = [
    ("b", DataType::Boolean),
    ("i", DataType::Int32),
    ("l", DataType::Int64),
    ("f", DataType::Float),
    ("d", DataType::Double),
    ("t", DataType::Text),
];
pub const NUMERIC: [&str; 4] = ["i", "l", "f", "d"];

/// splitmix64: deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A cell of `data_type`, null one time in ten. Floats are small multiples of powers of
/// two, so sums are exact in f64 whatever order the server adds them in.
pub fn cell(rng: &mut Rng, data_type: DataType, version: u32) -> Option<Value> {
    if rng.below(10) == 0 {
        return None;
    }
    let k = rng.below(8001) as i64 - 4000;
    Some(match data_type {
        DataType::Boolean => Value::Boolean(k % 2 == 0),
        DataType::Int32 => Value::Int32(k as i32),
        DataType::Int64 => Value::Int64(k * 1_000_003),
        DataType::Float => Value::Float(k as f32 * 0.25),
        DataType::Double => Value::Double(k as f64 * 0.125),
        DataType::Text => Value::Text(Bytes::from(format!("v{version}-{k}"))),
    })
}

pub fn tablet_of(device: &str, rng: &mut Rng, timestamps: &[i64], version: u32) -> WireTablet {
    let mut tablet = WireTablet::new(device, &SCHEMA);
    for t in timestamps {
        let cells: Vec<Option<Value>> = SCHEMA
            .iter()
            .map(|(_, data_type)| cell(rng, *data_type, version))
            .collect();
        tablet.push_row(*t, &cells).expect("cells match the schema");
    }
    tablet
}

/// The inserts of one device, in the order they must be sent (later ones overwrite):
/// the base rows of every partition in tablets sent out of order (one of them with its
/// rows in descending time), then overwrites of random timestamps, one tablet straddling
/// the two partitions.
pub fn device_plan(device: &str, seed: u64, first_row: i64) -> Vec<WireTablet> {
    let mut rng = Rng(seed);
    let mut timestamps = Vec::new();
    for partition in 0..PARTITIONS {
        for row in 0..ROWS_PER_PARTITION {
            timestamps.push(T0 + partition * WEEK_MS + (first_row + row) * STEP_MS);
        }
    }
    let mut chunks: Vec<Vec<i64>> = timestamps
        .chunks(ROWS_PER_TABLET)
        .map(<[i64]>::to_vec)
        .collect();
    rng.shuffle(&mut chunks);
    chunks[0].reverse();
    let mut plan: Vec<WireTablet> = chunks
        .iter()
        .map(|chunk| tablet_of(device, &mut rng, chunk, 0))
        .collect();
    let mut rewritten = timestamps.clone();
    rng.shuffle(&mut rewritten);
    rewritten.truncate(OVERWRITES_PER_DEVICE);
    for (index, chunk) in rewritten.chunks(OVERWRITES_PER_DEVICE / 3).enumerate() {
        plan.push(tablet_of(device, &mut rng, chunk, 1 + index as u32));
    }
    // Straddles the partition boundary: the server splits it.
    let straddling = [
        T0 + (first_row + 3) * STEP_MS,
        T0 + WEEK_MS + (first_row + 4) * STEP_MS,
        T0 + (first_row + 5) * STEP_MS,
    ];
    plan.push(tablet_of(device, &mut rng, &straddling, 9));
    plan
}

pub fn selection(device: &str, measurements: &[&str]) -> SeriesSelection {
    SeriesSelection {
        device: device.to_owned(),
        measurements: measurements.iter().map(|m| (*m).to_owned()).collect(),
    }
}

pub fn check_raw(
    client: &mut BlockingClient,
    model: &Model,
    series: Vec<SeriesSelection>,
    range: (i64, i64),
    offset: u64,
    limit: Option<u64>,
) {
    let what = format!(
        "raw {series:?} [{}, {}) offset {offset} limit {limit:?}",
        range.0, range.1
    );
    let batches = client
        .query_raw(RawQuery {
            series: series.clone(),
            start_time: range.0,
            end_time: range.1,
            limit,
            offset,
        })
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let (names, rows) = rows_of(&batches).unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_eq!(names, Model::raw_columns(&series), "{what}: column names");
    let expected = model.raw(&series, range.0, range.1, offset, limit);
    assert_eq!(rows.len(), expected.len(), "{what}: row count");
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want, "{what}: first differing row");
    }
}

pub fn check_aggregate(
    client: &mut BlockingClient,
    model: &Model,
    series: Vec<SeriesSelection>,
    range: (i64, i64),
    aggregations: &[Aggregation],
    group_by: Option<GroupByWindow>,
) {
    let what = format!(
        "aggregate {aggregations:?} of {series:?} [{}, {}) by {group_by:?}",
        range.0, range.1
    );
    let batches = client
        .query_aggregate(AggregateQuery {
            series: series.clone(),
            start_time: range.0,
            end_time: range.1,
            aggregations: aggregations.to_vec(),
            group_by,
        })
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let (names, rows) = rows_of(&batches).unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_eq!(
        names,
        Model::aggregate_columns(&series, aggregations),
        "{what}: column names"
    );
    let expected = model.aggregate(&series, range.0, range.1, aggregations, group_by);
    assert_eq!(rows.len(), expected.len(), "{what}: row count");
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want, "{what}: first differing row");
    }
}

/// Every query kind over everything in the model.
pub fn verify(client: &mut BlockingClient, model: &Model) {
    let (start, end) = model.time_bounds();
    let devices = model.devices();
    for device in &devices {
        let all = model.selection(device);
        check_raw(client, model, vec![all.clone()], (start, end), 0, None);
        check_raw(client, model, vec![all.clone()], (start, end), 37, Some(50));
        check_raw(client, model, vec![all.clone()], (start, end), 0, Some(0));
        // One series over every partition: each point once, in time order.
        check_raw(
            client,
            model,
            vec![selection(device, &["i"])],
            (start, end),
            0,
            None,
        );
        check_raw(
            client,
            model,
            vec![selection(device, &["t"])],
            (start, end),
            100,
            Some(200),
        );
        // The second partition on, one series at a time.
        for (measurement, _) in SCHEMA {
            check_raw(
                client,
                model,
                vec![selection(device, &[measurement])],
                (T0 + WEEK_MS, end),
                5,
                None,
            );
        }
        check_aggregate(
            client,
            model,
            vec![selection(device, &NUMERIC)],
            (start, end),
            &Aggregation::ALL,
            None,
        );
        let any_type = [Aggregation::Count, Aggregation::First, Aggregation::Last];
        check_aggregate(
            client,
            model,
            vec![selection(device, &["b", "t"])],
            (start, end),
            &any_type,
            None,
        );
        // Daily windows over every partition: most are empty.
        let daily = GroupByWindow {
            start_time: T0,
            end_time: T0 + (PARTITIONS - 1) * WEEK_MS + 86_400_000,
            interval_ms: 86_400_000,
        };
        check_aggregate(
            client,
            model,
            vec![selection(device, &NUMERIC)],
            (start, end),
            &Aggregation::ALL,
            Some(daily),
        );
        // Fine windows clipped by a narrower query range, starting before the data.
        let fine = GroupByWindow {
            start_time: T0 - 5_000,
            end_time: T0 + (ROWS_PER_PARTITION + 20) * STEP_MS,
            interval_ms: 37_000,
        };
        check_aggregate(
            client,
            model,
            vec![selection(device, &["i", "d", "b"])],
            (T0 + 3_000, T0 + 200_000),
            &any_type,
            Some(fine),
        );
        check_aggregate(
            client,
            model,
            vec![selection(device, &["f", "l"])],
            (T0 + 3_000, T0 + 200_000),
            &Aggregation::ALL,
            Some(fine),
        );
        let last = client.query_last(vec![all.clone()]).expect("last");
        assert_eq!(last, model.last(&[all]), "last of {device}");
    }
    // Several devices in one request.
    if devices.len() >= 2 {
        let pair = vec![
            selection(&devices[0], &["b", "i"]),
            selection(&devices[devices.len() - 1], &["t", "d"]),
        ];
        check_raw(client, model, pair.clone(), (start, end), 11, Some(300));
        check_aggregate(
            client,
            model,
            pair.clone(),
            (start, end),
            &[Aggregation::Count, Aggregation::Last],
            None,
        );
        assert_eq!(
            client.query_last(pair.clone()).expect("last"),
            model.last(&pair)
        );
    }
}
