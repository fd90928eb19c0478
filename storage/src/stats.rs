//! Per-chunk statistics: what aggregations read instead of the points when a chunk lies
//! wholly inside a query window.

use crate::types::{DataType, PointColumn, Timestamp, Value, Values};

/// Statistics of a run of points of one series (a chunk, a memtable slice).
///
/// `min`, `max` and `sum` are kept for numeric types only; `sum` is an f64 as IoTDB's
/// `sum` returns DOUBLE.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub min_time: Timestamp,
    pub max_time: Timestamp,
    pub first: Value,
    pub last: Value,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
}

impl Stats {
    /// The statistics of `points[range]`, or `None` when the range is empty.
    pub fn of(points: &PointColumn, range: std::ops::Range<usize>) -> Option<Stats> {
        if range.is_empty() {
            return None;
        }
        let (first_i, last_i) = (range.start, range.end - 1);
        let (min, max, sum) = numeric_summary(&points.values, range.clone());
        Some(Stats {
            count: range.len() as u64,
            min_time: points.timestamps[first_i],
            max_time: points.timestamps[last_i],
            first: points.values.get(first_i),
            last: points.values.get(last_i),
            min,
            max,
            sum,
        })
    }

    /// The statistics of all of `points`, or `None` when empty.
    pub fn of_all(points: &PointColumn) -> Option<Stats> {
        Stats::of(points, 0..points.len())
    }

    /// The type of the values summarised.
    pub fn data_type(&self) -> DataType {
        self.first.data_type()
    }

    /// Folds `other`, which must cover later timestamps than `self`, into `self`.
    pub fn merge_later(&mut self, other: &Stats) {
        debug_assert!(
            other.min_time > self.max_time,
            "stats merged out of time order"
        );
        self.count += other.count;
        self.max_time = other.max_time;
        self.last = other.last.clone();
        self.min = min_option(self.min, other.min);
        self.max = max_option(self.max, other.max);
        self.sum += other.sum;
    }
}

fn min_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// (min, max, sum) of the values in `range`, or (None, None, 0) for non-numeric types.
fn numeric_summary(
    values: &Values,
    range: std::ops::Range<usize>,
) -> (Option<f64>, Option<f64>, f64) {
    fn fold(iter: impl Iterator<Item = f64>) -> (Option<f64>, Option<f64>, f64) {
        let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for v in iter {
            min = min.min(v);
            max = max.max(v);
            sum += v;
        }
        (Some(min), Some(max), sum)
    }
    match values {
        Values::Int32(v) => fold(v[range].iter().map(|&x| f64::from(x))),
        Values::Int64(v) => fold(v[range].iter().map(|&x| x as f64)),
        Values::Float(v) => fold(v[range].iter().map(|&x| f64::from(x))),
        Values::Double(v) => fold(v[range].iter().copied()),
        Values::Boolean(_) | Values::Text(_) => (None, None, 0.0),
    }
}
