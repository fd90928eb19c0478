//! Per-chunk statistics: what aggregations read instead of the points when a chunk lies
//! wholly inside a query window.

use crate::types::{DataType, PointColumn, Points, Timestamp, Value, Values};

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
    pub fn of(points: Points<'_>, range: std::ops::Range<usize>) -> Option<Stats> {
        if range.is_empty() {
            return None;
        }
        let (min_time, max_time) = (
            points.timestamps[range.start],
            points.timestamps[range.end - 1],
        );
        Stats::of_values(points.values, range, min_time, max_time)
    }

    /// [`Stats::of`] where the caller knows the first and last timestamps of the range.
    pub fn of_values(
        values: &Values,
        range: std::ops::Range<usize>,
        min_time: Timestamp,
        max_time: Timestamp,
    ) -> Option<Stats> {
        if range.is_empty() {
            return None;
        }
        let (first_i, last_i) = (range.start, range.end - 1);
        let (min, max, sum) = numeric_summary(values, range.clone());
        Some(Stats {
            count: range.len() as u64,
            min_time,
            max_time,
            first: values.get(first_i),
            last: values.get(last_i),
            min,
            max,
            sum,
        })
    }

    /// The statistics of all of `points`, or `None` when empty.
    pub fn of_all(points: &PointColumn) -> Option<Stats> {
        Stats::of(points.as_points(), 0..points.len())
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
/// Compiled for AVX2 and SSE4.2 too, chosen at run time (`codec`'s "Wider vectors").
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
fn numeric_summary(
    values: &Values,
    range: std::ops::Range<usize>,
) -> (Option<f64>, Option<f64>, f64) {
    // `min` and `max` start at the infinities and take only a value that compares below
    // or above them, so they are never NaN: each comparison below gives exactly what
    // `f64::min` / `f64::max` give (a NaN value is skipped, a tie keeps the earlier value),
    // with one instruction on the loop-carried path instead of a NaN check and a blend.
    // The sum is added left to right, as aggregate answers are compared exactly.
    #[inline]
    fn fold(iter: impl Iterator<Item = f64>) -> (Option<f64>, Option<f64>, f64) {
        let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for v in iter {
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn double_stats(values: &[f64]) -> Stats {
        let points = PointColumn {
            timestamps: (0..values.len() as i64).collect(),
            values: Values::Double(values.to_vec()),
        };
        Stats::of_all(&points).expect("non-empty")
    }

    #[test]
    fn nan_is_skipped_by_min_and_max_and_kept_by_sum() {
        let stats = double_stats(&[f64::NAN, 2.0, f64::NAN, -1.0, 5.0]);
        assert_eq!((stats.min, stats.max), (Some(-1.0), Some(5.0)));
        assert!(stats.sum.is_nan());
        let all_nan = double_stats(&[f64::NAN, f64::NAN]);
        assert_eq!(
            (all_nan.min, all_nan.max),
            (Some(f64::INFINITY), Some(f64::NEG_INFINITY))
        );
    }

    #[test]
    fn a_tie_of_zeros_keeps_the_first() {
        let stats = double_stats(&[0.0, -0.0]);
        assert_eq!(stats.min.map(f64::to_bits), Some(0.0f64.to_bits()));
        assert_eq!(stats.max.map(f64::to_bits), Some(0.0f64.to_bits()));
        let stats = double_stats(&[-0.0, 0.0]);
        assert_eq!(stats.min.map(f64::to_bits), Some((-0.0f64).to_bits()));
        assert_eq!(stats.max.map(f64::to_bits), Some((-0.0f64).to_bits()));
    }

    proptest! {
        /// Against `f64::min`, `f64::max` and a left-to-right sum; the sum bit for bit, as
        /// aggregate answers are compared exactly.
        #[test]
        fn summary_matches_a_plain_fold(values in proptest::collection::vec(
            prop_oneof![any::<f64>(), Just(f64::NAN), -1e6f64..1e6], 1..300)) {
            let stats = double_stats(&values);
            let min = values.iter().fold(f64::INFINITY, |m, &v| m.min(v));
            let max = values.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let sum = values.iter().fold(0.0, |s, &v| s + v);
            prop_assert_eq!(stats.min, Some(min));
            prop_assert_eq!(stats.max, Some(max));
            prop_assert_eq!(stats.sum.to_bits(), sum.to_bits());
        }
    }
}
