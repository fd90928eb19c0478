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

/// How many running sums a summary keeps: value `i` of a run goes to lane `i % LANES`.
pub const SUM_LANES: usize = 4;

/// The sum of `values` as statistics and aggregates define it: value `i` is added to lane
/// `i % 4` in order, and the lanes are added as `(l0 + l1) + (l2 + l3)`. Four independent
/// chains of additions instead of one: a loop over them runs at the adder's throughput and
/// vectorises, where a single chain waits out each addition's latency. Every sum of a run
/// of points (a chunk's statistics, an aggregate over points) uses this order, so an
/// answer from statistics and one from the same points agree bit for bit.
#[inline]
pub fn lane_sum<T: Copy>(values: &[T], to_f64: impl Fn(T) -> f64) -> f64 {
    let mut sum = [0.0f64; SUM_LANES];
    let mut chunks = values.chunks_exact(SUM_LANES);
    for chunk in &mut chunks {
        for (lane, &v) in sum.iter_mut().zip(chunk) {
            *lane += to_f64(v);
        }
    }
    for (lane, &v) in sum.iter_mut().zip(chunks.remainder()) {
        *lane += to_f64(v);
    }
    combine_lanes(sum)
}

#[inline]
fn combine_lanes(sum: [f64; SUM_LANES]) -> f64 {
    (sum[0] + sum[1]) + (sum[2] + sum[3])
}

/// (min, max, sum) of the values in `range`, or (None, None, 0) for non-numeric types.
/// Compiled for AVX2 and SSE4.2 too, chosen at run time (`codec`'s "Wider vectors").
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
fn numeric_summary(
    values: &Values,
    range: std::ops::Range<usize>,
) -> (Option<f64>, Option<f64>, f64) {
    match values {
        Values::Int32(v) => fold(&v[range], f64::from),
        Values::Int64(v) => fold(&v[range], |x| x as f64),
        Values::Float(v) => fold(&v[range], f64::from),
        Values::Double(v) => fold(&v[range], |x| x),
        Values::Boolean(_) | Values::Text(_) => (None, None, 0.0),
    }
}

/// min, max and [`lane_sum`] of `values` in one pass, in the sum's lanes.
///
/// `min` and `max` start at the infinities and take only a value that compares below or
/// above them, so they are never NaN: each gives exactly what a left-to-right fold of
/// `f64::min` / `f64::max` gives, a NaN value skipped and, of two equal values, the
/// earlier kept. Kept per lane, they need that rule only where lanes tie: equal floats
/// are the same bits except for the two zeros, so a zero result is replaced by the
/// run's first zero, the one a left-to-right fold keeps.
#[inline(always)]
fn fold<T: Copy>(values: &[T], to_f64: impl Fn(T) -> f64) -> (Option<f64>, Option<f64>, f64) {
    let mut min = [f64::INFINITY; SUM_LANES];
    let mut max = [f64::NEG_INFINITY; SUM_LANES];
    let mut sum = [0.0f64; SUM_LANES];
    let mut chunks = values.chunks_exact(SUM_LANES);
    for chunk in &mut chunks {
        let v: [f64; SUM_LANES] = std::array::from_fn(|lane| to_f64(chunk[lane]));
        for lane in 0..SUM_LANES {
            min[lane] = if v[lane] < min[lane] {
                v[lane]
            } else {
                min[lane]
            };
            max[lane] = if v[lane] > max[lane] {
                v[lane]
            } else {
                max[lane]
            };
            sum[lane] += v[lane];
        }
    }
    for (lane, &v) in chunks.remainder().iter().enumerate() {
        let v = to_f64(v);
        min[lane] = if v < min[lane] { v } else { min[lane] };
        max[lane] = if v > max[lane] { v } else { max[lane] };
        sum[lane] += v;
    }
    let first_zero = || {
        values
            .iter()
            .map(|&v| to_f64(v))
            .find(|v| *v == 0.0)
            .expect("a zero result is one of the values")
    };
    let mut low = min
        .iter()
        .copied()
        .fold(f64::INFINITY, |m, v| if v < m { v } else { m });
    let mut high = max
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, |m, v| if v > m { v } else { m });
    if low == 0.0 {
        low = first_zero();
    }
    if high == 0.0 {
        high = first_zero();
    }
    (Some(low), Some(high), combine_lanes(sum))
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
        /// Against `f64::min`, `f64::max` folded left to right and the sum added value by
        /// value into lane `i % 4`; the sum bit for bit, as aggregate answers are compared
        /// exactly, and the zeros' signs too (the earlier of two equal values is kept).
        #[test]
        fn summary_matches_a_plain_fold(values in proptest::collection::vec(
            prop_oneof![any::<f64>(), Just(f64::NAN), Just(0.0), Just(-0.0), -1e6f64..1e6], 1..300)) {
            let stats = double_stats(&values);
            let min = values.iter().fold(f64::INFINITY, |m, &v| m.min(v));
            let max = values.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let mut lanes = [0.0f64; SUM_LANES];
            for (i, &v) in values.iter().enumerate() {
                lanes[i % SUM_LANES] += v;
            }
            let sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
            let first_wins_min = values.iter().fold(f64::INFINITY, |m, &v| if v < m { v } else { m });
            let first_wins_max =
                values.iter().fold(f64::NEG_INFINITY, |m, &v| if v > m { v } else { m });
            prop_assert_eq!(stats.min, Some(min));
            prop_assert_eq!(stats.max, Some(max));
            prop_assert_eq!(stats.min.map(f64::to_bits), Some(first_wins_min.to_bits()));
            prop_assert_eq!(stats.max.map(f64::to_bits), Some(first_wins_max.to_bits()));
            prop_assert_eq!(stats.sum.to_bits(), sum.to_bits());
            prop_assert_eq!(lane_sum(&values, |v| v).to_bits(), sum.to_bits());
        }
    }
}
