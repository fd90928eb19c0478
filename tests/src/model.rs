//! [`Model`]: what the database should hold after a sequence of acknowledged inserts, and
//! what each query should answer, computed the simple way (a sorted map per series).
//!
//! Semantics modelled (IoTDB's): a null cell writes nothing (an older value at that
//! timestamp stays); the same timestamp written twice keeps the newest write; raw queries
//! align the selected series on the union of their timestamps; aggregates skip nulls, `count`
//! of nothing is 0 and every other function of nothing is null; `sum` and `avg` are DOUBLE.

use std::collections::{BTreeMap, BTreeSet};

use iotdb_net::{
    Aggregation, ColumnBatch, DataType, GroupByWindow, LastPoint, SeriesSelection, Value,
    WireTablet,
};

/// One series: device path and measurement name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId {
    pub device: String,
    pub measurement: String,
}

impl SeriesId {
    pub fn new(device: &str, measurement: &str) -> Self {
        Self {
            device: device.to_owned(),
            measurement: measurement.to_owned(),
        }
    }

    /// The full path, as result columns name it (`root.db.d1.s1`).
    pub fn path(&self) -> String {
        format!("{}.{}", self.device, self.measurement)
    }
}

/// Aligned rows: a timestamp and one cell per selected series.
pub type Rows = Vec<(i64, Vec<Option<Value>>)>;

/// The expected contents of a database.
#[derive(Clone, Debug, Default)]
pub struct Model {
    series: BTreeMap<SeriesId, (DataType, BTreeMap<i64, Value>)>,
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an acknowledged insert.
    pub fn apply(&mut self, tablet: &WireTablet) {
        for column in &tablet.columns {
            let id = SeriesId::new(&tablet.device, &column.measurement);
            let entry = self
                .series
                .entry(id)
                .or_insert_with(|| (column.values.data_type(), BTreeMap::new()));
            assert_eq!(
                entry.0,
                column.values.data_type(),
                "the model got a type change"
            );
            for (row, timestamp) in tablet.timestamps.iter().enumerate() {
                if let Some(value) = column.value(row) {
                    entry.1.insert(*timestamp, value);
                }
            }
        }
    }

    /// Takes over the series of another model (each client thread models its own devices).
    pub fn absorb(&mut self, other: Model) {
        for (id, (data_type, points)) in other.series {
            let entry = self
                .series
                .entry(id)
                .or_insert_with(|| (data_type, BTreeMap::new()));
            entry.1.extend(points);
        }
    }

    pub fn series_ids(&self) -> impl Iterator<Item = &SeriesId> {
        self.series.keys()
    }

    pub fn data_type(&self, id: &SeriesId) -> Option<DataType> {
        self.series.get(id).map(|(data_type, _)| *data_type)
    }

    pub fn points(&self, id: &SeriesId) -> impl Iterator<Item = (&i64, &Value)> {
        self.series
            .get(id)
            .into_iter()
            .flat_map(|(_, points)| points)
    }

    pub fn point_count(&self) -> usize {
        self.series.values().map(|(_, points)| points.len()).sum()
    }

    /// Devices in the model, sorted.
    pub fn devices(&self) -> Vec<String> {
        let devices: BTreeSet<&String> = self.series.keys().map(|id| &id.device).collect();
        devices.into_iter().cloned().collect()
    }

    /// Measurements of `device`, sorted.
    pub fn measurements(&self, device: &str) -> Vec<String> {
        self.series
            .keys()
            .filter(|id| id.device == device)
            .map(|id| id.measurement.clone())
            .collect()
    }

    /// The whole of `device`, as one selection.
    pub fn selection(&self, device: &str) -> SeriesSelection {
        SeriesSelection {
            device: device.to_owned(),
            measurements: self.measurements(device),
        }
    }

    /// The smallest and one past the largest timestamp held.
    pub fn time_bounds(&self) -> (i64, i64) {
        let mut bounds = (i64::MAX, i64::MIN);
        for (_, points) in self.series.values() {
            if let (Some((first, _)), Some((last, _))) =
                (points.first_key_value(), points.last_key_value())
            {
                bounds.0 = bounds.0.min(*first);
                bounds.1 = bounds.1.max(*last + 1);
            }
        }
        bounds
    }

    fn ids_of(series: &[SeriesSelection]) -> Vec<SeriesId> {
        series
            .iter()
            .flat_map(|selection| {
                selection
                    .measurements
                    .iter()
                    .map(|measurement| SeriesId::new(&selection.device, measurement))
            })
            .collect()
    }

    /// Column names of a raw query over `series`.
    pub fn raw_columns(series: &[SeriesSelection]) -> Vec<String> {
        Self::ids_of(series).iter().map(SeriesId::path).collect()
    }

    /// Rows of a raw query over `[start, end)`, after `offset`, at most `limit`.
    pub fn raw(
        &self,
        series: &[SeriesSelection],
        start: i64,
        end: i64,
        offset: u64,
        limit: Option<u64>,
    ) -> Rows {
        let ids = Self::ids_of(series);
        let empty = BTreeMap::new();
        let maps: Vec<&BTreeMap<i64, Value>> = ids
            .iter()
            .map(|id| self.series.get(id).map_or(&empty, |(_, points)| points))
            .collect();
        if start >= end {
            return Vec::new();
        }
        let timestamps: BTreeSet<i64> = maps
            .iter()
            .flat_map(|points| points.range(start..end).map(|(t, _)| *t))
            .collect();
        timestamps
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)))
            .map(|t| {
                (
                    t,
                    maps.iter().map(|points| points.get(&t).cloned()).collect(),
                )
            })
            .collect()
    }

    /// Column names of an aggregate query (`count(root.db.d.s)`, series-major).
    pub fn aggregate_columns(
        series: &[SeriesSelection],
        aggregations: &[Aggregation],
    ) -> Vec<String> {
        let mut names = Vec::new();
        for id in Self::ids_of(series) {
            for aggregation in aggregations {
                names.push(format!("{}({})", aggregation.name(), id.path()));
            }
        }
        names
    }

    /// Rows of an aggregate query: one per window (timestamp = window start), or one at
    /// `start` without GROUP BY; cells series-major as [`Model::aggregate_columns`].
    pub fn aggregate(
        &self,
        series: &[SeriesSelection],
        start: i64,
        end: i64,
        aggregations: &[Aggregation],
        group_by: Option<GroupByWindow>,
    ) -> Rows {
        let windows: Vec<(i64, i64, i64)> = match group_by {
            None => vec![(start, start, end)],
            Some(window) => {
                let mut out = Vec::new();
                let mut window_start = window.start_time;
                while window_start < window.end_time {
                    let window_end = window_start
                        .saturating_add(window.interval_ms)
                        .min(window.end_time);
                    out.push((window_start, window_start.max(start), window_end.min(end)));
                    window_start = window_start.saturating_add(window.interval_ms);
                }
                out
            }
        };
        let ids = Self::ids_of(series);
        windows
            .into_iter()
            .map(|(row_time, from, to)| {
                let mut cells = Vec::new();
                for id in &ids {
                    let timed: Vec<(i64, &Value)> = match self.series.get(id) {
                        Some((_, points)) if from < to => {
                            points.range(from..to).map(|(t, v)| (*t, v)).collect()
                        }
                        _ => Vec::new(),
                    };
                    let points: Vec<&Value> = timed.iter().map(|(_, v)| *v).collect();
                    for aggregation in aggregations {
                        cells.push(aggregate_of(*aggregation, &timed, &points));
                    }
                }
                (row_time, cells)
            })
            .collect()
    }

    /// The newest point of each selected series that has one.
    pub fn last(&self, series: &[SeriesSelection]) -> Vec<LastPoint> {
        Self::ids_of(series)
            .iter()
            .filter_map(|id| {
                let (_, points) = self.series.get(id)?;
                let (timestamp, value) = points.last_key_value()?;
                Some(LastPoint {
                    path: id.path(),
                    timestamp: *timestamp,
                    value: value.clone(),
                })
            })
            .collect()
    }
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Int32(v) => f64::from(*v),
        Value::Int64(v) => *v as f64,
        Value::Float(v) => f64::from(*v),
        Value::Double(v) => *v,
        Value::Boolean(_) | Value::Text(_) => panic!("sum of a non-numeric series"),
    }
}

fn less(a: &Value, b: &Value) -> bool {
    as_f64(a) < as_f64(b)
}

/// One aggregate over points in time order. The test data keeps sums exact in f64 (values
/// are small multiples of powers of two), so the order the server adds them in is moot.
fn aggregate_of(
    aggregation: Aggregation,
    timed: &[(i64, &Value)],
    points: &[&Value],
) -> Option<Value> {
    if aggregation == Aggregation::Count {
        return Some(Value::Int64(points.len() as i64));
    }
    if points.is_empty() {
        return None;
    }
    let sum = || points.iter().map(|v| as_f64(v)).sum::<f64>();
    Some(match aggregation {
        Aggregation::Count => unreachable!("handled above"),
        Aggregation::Sum => Value::Double(sum()),
        Aggregation::Avg => Value::Double(sum() / points.len() as f64),
        Aggregation::Min => (*points
            .iter()
            .copied()
            .reduce(|a, b| if less(b, a) { b } else { a })?)
        .clone(),
        Aggregation::Max => (*points
            .iter()
            .copied()
            .reduce(|a, b| if less(a, b) { b } else { a })?)
        .clone(),
        Aggregation::First => points[0].clone(),
        Aggregation::Last => points[points.len() - 1].clone(),
        Aggregation::MinTime => Value::Int64(timed[0].0),
        Aggregation::MaxTime => Value::Int64(timed[timed.len() - 1].0),
        Aggregation::Extreme => {
            let min = aggregate_of(Aggregation::Min, timed, points)?;
            let max = aggregate_of(Aggregation::Max, timed, points)?;
            if as_f64(&min).abs() > as_f64(&max).abs() {
                min
            } else {
                max
            }
        }
    })
}

/// Column names and rows of a (possibly streamed) query answer, batches concatenated.
/// Fails if the batches disagree on their columns.
pub fn rows_of(batches: &[ColumnBatch]) -> Result<(Vec<String>, Rows), String> {
    let mut names: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for batch in batches {
        batch.validate()?;
        let batch_names: Vec<String> = batch
            .columns
            .iter()
            .map(|column| column.measurement.clone())
            .collect();
        match &names {
            None => names = Some(batch_names),
            Some(known) if *known != batch_names => {
                return Err(format!("batches disagree: {known:?} vs {batch_names:?}"));
            }
            Some(_) => {}
        }
        for (row, timestamp) in batch.timestamps.iter().enumerate() {
            rows.push((
                *timestamp,
                batch
                    .columns
                    .iter()
                    .map(|column| column.value(row))
                    .collect(),
            ));
        }
    }
    Ok((names.unwrap_or_default(), rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn tablet(device: &str, rows: &[(i64, Option<i64>, Option<&str>)]) -> WireTablet {
        let mut tablet = WireTablet::new(device, &[("a", DataType::Int64), ("b", DataType::Text)]);
        for (t, a, b) in rows {
            tablet
                .push_row(
                    *t,
                    &[
                        a.map(Value::Int64),
                        b.map(|b| Value::Text(Bytes::copy_from_slice(b.as_bytes()))),
                    ],
                )
                .unwrap();
        }
        tablet
    }

    #[test]
    fn newest_wins_and_nulls_write_nothing() {
        let mut model = Model::new();
        model.apply(&tablet(
            "root.m.d",
            &[(1, Some(10), Some("x")), (2, Some(20), None)],
        ));
        model.apply(&tablet("root.m.d", &[(1, Some(11), None), (3, None, None)]));
        let selection = [model.selection("root.m.d")];
        let rows = model.raw(&selection, 0, 10, 0, None);
        let text = |s: &str| Some(Value::Text(Bytes::copy_from_slice(s.as_bytes())));
        assert_eq!(
            rows,
            vec![
                (1, vec![Some(Value::Int64(11)), text("x")]),
                (2, vec![Some(Value::Int64(20)), None]),
            ]
        );
        assert_eq!(model.raw(&selection, 0, 10, 1, Some(5)).len(), 1);
        let aggregations = [Aggregation::Count, Aggregation::First, Aggregation::Last];
        let only_a = [SeriesSelection {
            device: "root.m.d".into(),
            measurements: vec!["a".into()],
        }];
        let windows = GroupByWindow {
            start_time: 0,
            end_time: 4,
            interval_ms: 2,
        };
        assert_eq!(
            model.aggregate(&only_a, 0, 10, &aggregations, Some(windows)),
            vec![
                (
                    0,
                    vec![
                        Some(Value::Int64(1)),
                        Some(Value::Int64(11)),
                        Some(Value::Int64(11))
                    ]
                ),
                (
                    2,
                    vec![
                        Some(Value::Int64(1)),
                        Some(Value::Int64(20)),
                        Some(Value::Int64(20))
                    ]
                ),
            ]
        );
        assert_eq!(
            model.aggregate(
                &only_a,
                5,
                10,
                &[Aggregation::Count, Aggregation::Sum],
                None
            ),
            vec![(5, vec![Some(Value::Int64(0)), None])]
        );
        assert_eq!(model.last(&only_a)[0].timestamp, 2);
    }
}
