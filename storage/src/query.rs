//! Reads: merging memtables, sequence and unsequence files into one answer, newest write
//! wins, and aggregations that use chunk statistics where they can.
//!
//! Every source of one series is a [`Piece`]: the points of a memtable partition, or one
//! chunk of a sealed file, with a *rank* (higher = written later). Pieces are sorted by
//! their first timestamp and swept into *clusters* of pieces whose time spans overlap.
//! Clusters are disjoint in time, so a scan is their concatenation; inside a cluster the
//! pieces are merged by rank. A cluster that is a single chunk lying wholly inside an
//! aggregation window is answered from the chunk's statistics without decoding it.

use crate::error::{Result, StorageError};
use crate::filter::{FilterCounters, ValueFilter, Verdict};
use crate::memtable::sorted_newest_wins;
use crate::region::{Deletion, deletion};
use crate::sealed::{ChunkMeta, SealedFile};
use crate::stats::Stats;
use crate::types::{DataType, PointColumn, SeriesKey, TimeRange, Timestamp, Value, Values};

/// Aggregation functions, with IoTDB's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregation {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    /// The time of the first point.
    MinTime,
    /// The time of the last point.
    MaxTime,
    /// The value of largest magnitude (the positive one on a tie), as IoTDB's `extreme`.
    Extreme,
}

impl Aggregation {
    pub const ALL: [Aggregation; 10] = [
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::First,
        Aggregation::Last,
        Aggregation::MinTime,
        Aggregation::MaxTime,
        Aggregation::Extreme,
    ];

    /// IoTDB's function name (`min_value`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::Min => "min_value",
            Aggregation::Max => "max_value",
            Aggregation::First => "first_value",
            Aggregation::Last => "last_value",
            Aggregation::MinTime => "min_time",
            Aggregation::MaxTime => "max_time",
            Aggregation::Extreme => "extreme",
        }
    }

    /// The type of the result over a series of type `input`.
    pub fn output_type(self, input: DataType) -> DataType {
        match self {
            Aggregation::Count | Aggregation::MinTime | Aggregation::MaxTime => DataType::Int64,
            Aggregation::Sum | Aggregation::Avg => DataType::Double,
            Aggregation::Min
            | Aggregation::Max
            | Aggregation::First
            | Aggregation::Last
            | Aggregation::Extreme => input,
        }
    }

    /// Checks the function is defined on `input`.
    pub fn check(self, input: DataType) -> Result<()> {
        let numeric_only = matches!(
            self,
            Aggregation::Sum
                | Aggregation::Avg
                | Aggregation::Min
                | Aggregation::Max
                | Aggregation::Extreme
        );
        if numeric_only && !input.is_numeric() {
            return Err(StorageError::UnsupportedAggregation {
                aggregation: self.name(),
                data_type: input,
            });
        }
        Ok(())
    }
}

/// `GROUP BY ([start, end), interval)`: windows `[start + i·interval, start + (i+1)·interval)`
/// clipped to `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub range: TimeRange,
    pub interval_ms: i64,
}

/// The most windows one aggregation may produce: bounds the result's memory.
pub const WINDOWS_MAX: usize = 10_000_000;

impl Windows {
    /// The number of windows.
    pub fn count(&self) -> usize {
        if self.range.is_empty() {
            return 0;
        }
        let span = (self.range.end as i128) - (self.range.start as i128);
        (span.div_euclid(self.interval_ms as i128)
            + i128::from(span.rem_euclid(self.interval_ms as i128) != 0)) as usize
    }

    fn validate(&self) -> Result<()> {
        if self.interval_ms <= 0 {
            return Err(StorageError::InvalidArgument(format!(
                "GROUP BY interval must be positive, not {} ms",
                self.interval_ms
            )));
        }
        if self.count() > WINDOWS_MAX {
            return Err(StorageError::InvalidArgument(format!(
                "GROUP BY would produce {} windows, more than the limit of {WINDOWS_MAX}",
                self.count()
            )));
        }
        Ok(())
    }

    /// The window `[start, end)` number `index`.
    pub fn window(&self, index: usize) -> TimeRange {
        let start = self
            .range
            .start
            .saturating_add(self.interval_ms.saturating_mul(index as i64));
        TimeRange::new(
            start,
            start.saturating_add(self.interval_ms).min(self.range.end),
        )
    }

    /// The index of the window holding `t` (which must lie in the range).
    fn index_of(&self, t: Timestamp) -> usize {
        (((t as i128) - (self.range.start as i128)) / (self.interval_ms as i128)) as usize
    }

    /// The windows that overlap `part`, as windows of their own (the same interval; the
    /// last still ends where the last of these does), and the index here of the first of
    /// them. A region asked for one time part of a long range answers a row for each of
    /// these, not for every window of the range.
    pub fn within(&self, part: TimeRange) -> (Windows, usize) {
        let overlap = self.range.intersect(part);
        if overlap.is_empty() {
            let empty = TimeRange::new(self.range.start, self.range.start);
            return (
                Windows {
                    range: empty,
                    ..*self
                },
                0,
            );
        }
        let first = self.index_of(overlap.start);
        let last = self.index_of(overlap.end - 1);
        let range = TimeRange::new(self.window(first).start, self.window(last).end);
        (Windows { range, ..*self }, first)
    }
}

/// One row of an aggregation result: a window's start and one value per function (`None`
/// where the window holds no point; `count` is then 0).
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateRow {
    pub window_start: Timestamp,
    pub values: Vec<Option<Value>>,
}

/// A source of points of one series.
pub enum Piece<'a> {
    /// Points already in memory (a memtable partition), sorted and deduplicated.
    Points(PointColumn),
    /// One chunk of a sealed file.
    Chunk {
        file: &'a SealedFile,
        chunk: &'a ChunkMeta,
    },
}

/// A piece with its rank (higher = newer) and time span.
pub struct RankedPiece<'a> {
    pub rank: u64,
    pub min_time: Timestamp,
    pub max_time: Timestamp,
    pub piece: Piece<'a>,
}

impl<'a> RankedPiece<'a> {
    /// A memtable piece, or `None` when it holds no points.
    pub fn points(rank: u64, points: PointColumn) -> Option<RankedPiece<'a>> {
        let (&min_time, &max_time) = (points.timestamps.first()?, points.timestamps.last()?);
        Some(RankedPiece {
            rank,
            min_time,
            max_time,
            piece: Piece::Points(points),
        })
    }

    /// A sealed-file chunk.
    pub fn chunk(rank: u64, file: &'a SealedFile, chunk: &'a ChunkMeta) -> RankedPiece<'a> {
        RankedPiece {
            rank,
            min_time: chunk.stats.min_time,
            max_time: chunk.stats.max_time,
            piece: Piece::Chunk { file, chunk },
        }
    }

    fn decode(&self) -> Result<PointColumn> {
        match &self.piece {
            Piece::Points(points) => Ok(points.clone()),
            Piece::Chunk { file, chunk } => file.read_chunk(chunk),
        }
    }
}

/// A sealed-file chunk as a piece, without the points `deletions` hide: the chunk itself
/// when no deletion of `key` overlaps it (its statistics stay usable), else its decoded
/// points minus the deleted ones (`None` when nothing remains).
pub fn chunk_piece<'a>(
    rank: u64,
    file: &'a SealedFile,
    chunk: &'a ChunkMeta,
    deletions: &[Deletion],
    key: &SeriesKey,
) -> Result<Option<RankedPiece<'a>>> {
    let deleted = deletion::ranges_for(deletions, key, chunk.stats.min_time, chunk.stats.max_time);
    if deleted.is_empty() {
        return Ok(Some(RankedPiece::chunk(rank, file, chunk)));
    }
    let points = deletion::without(file.read_chunk(chunk)?, &deleted);
    Ok(RankedPiece::points(rank, points))
}

/// Groups pieces overlapping `range` into time-disjoint clusters, in time order.
fn clusters(mut pieces: Vec<RankedPiece<'_>>, range: TimeRange) -> Vec<Vec<RankedPiece<'_>>> {
    pieces.retain(|p| range.overlaps(p.min_time, p.max_time));
    pieces.sort_by_key(|p| (p.min_time, p.rank));
    let mut out: Vec<Vec<RankedPiece<'_>>> = Vec::new();
    let mut cluster_end = i64::MIN;
    for piece in pieces {
        match out.last_mut() {
            Some(cluster) if piece.min_time <= cluster_end => {
                cluster_end = cluster_end.max(piece.max_time);
                cluster.push(piece);
            }
            _ => {
                cluster_end = piece.max_time;
                out.push(vec![piece]);
            }
        }
    }
    out
}

/// The points of one cluster, merged newest-wins, restricted to `range`.
fn merge_cluster(mut cluster: Vec<RankedPiece<'_>>, range: TimeRange) -> Result<PointColumn> {
    if cluster.len() == 1 {
        let points = cluster.pop().map(|p| p.decode()).transpose()?;
        return Ok(trim(points.expect("cluster is non-empty"), range));
    }
    cluster.sort_by_key(|p| p.rank);
    let mut all: Option<PointColumn> = None;
    for piece in &cluster {
        let points = trim(piece.decode()?, range);
        match &mut all {
            None => all = Some(points),
            Some(all) => {
                all.timestamps.extend_from_slice(&points.timestamps);
                all.values.extend_from(&points.values, 0..points.len());
            }
        }
    }
    // Appended oldest rank first, so the stable sort keeps the newest of each timestamp last.
    Ok(sorted_newest_wins(
        all.expect("cluster is non-empty").as_points(),
    ))
}

/// `points` restricted to `range`.
pub fn trim(points: PointColumn, range: TimeRange) -> PointColumn {
    let start = points.timestamps.partition_point(|&t| t < range.start);
    let end = points.timestamps.partition_point(|&t| t < range.end);
    if start == 0 && end == points.len() {
        return points;
    }
    let mut values = Values::with_capacity(points.data_type(), end - start);
    values.extend_from(&points.values, start..end);
    PointColumn {
        timestamps: points.timestamps[start..end].to_vec(),
        values,
    }
}

/// Every point of a series in `range`, newest write winning, in time order.
pub fn scan(
    data_type: DataType,
    pieces: Vec<RankedPiece<'_>>,
    range: TimeRange,
) -> Result<PointColumn> {
    scan_first(data_type, pieces, range, usize::MAX)
}

/// The first `points_max` points of a series in `range` (all when it has fewer), newest
/// write winning, in time order. Clusters of overlapping pieces are merged in time order
/// and the scan stops at the cluster that completes the count, so the chunks after it are
/// never decoded.
pub fn scan_first(
    data_type: DataType,
    pieces: Vec<RankedPiece<'_>>,
    range: TimeRange,
    points_max: usize,
) -> Result<PointColumn> {
    let mut out = PointColumn::new(data_type);
    if range.is_empty() || points_max == 0 {
        return Ok(out);
    }
    for cluster in clusters(pieces, range) {
        let points = merge_cluster(cluster, range)?;
        let wanted = points.len().min(points_max - out.len());
        if out.is_empty() && wanted == points.len() {
            out = points;
        } else {
            out.timestamps
                .extend_from_slice(&points.timestamps[..wanted]);
            out.values.extend_from(&points.values, 0..wanted);
        }
        if out.len() == points_max {
            break;
        }
    }
    debug_assert!(out.len() <= points_max);
    Ok(out)
}

/// The points of a series in `range` that pass `filter`, newest write winning, in time
/// order. A chunk alone in its cluster is judged by its statistics first: skipped when no
/// point can pass, kept whole when every point does (see [`crate::filter`]).
pub fn scan_filtered(
    data_type: DataType,
    pieces: Vec<RankedPiece<'_>>,
    range: TimeRange,
    filter: &ValueFilter,
    counters: &mut FilterCounters,
) -> Result<PointColumn> {
    scan_filtered_first(data_type, pieces, range, filter, usize::MAX, counters)
}

/// The first `points_max` points of a series in `range` that pass `filter` (all when
/// fewer pass), as [`scan_filtered`] finds them; the scan stops at the cluster that
/// completes the count, so the chunks after it are neither judged nor decoded.
pub fn scan_filtered_first(
    data_type: DataType,
    pieces: Vec<RankedPiece<'_>>,
    range: TimeRange,
    filter: &ValueFilter,
    points_max: usize,
    counters: &mut FilterCounters,
) -> Result<PointColumn> {
    let mut out = PointColumn::new(data_type);
    if range.is_empty() || points_max == 0 {
        return Ok(out);
    }
    for cluster in clusters(pieces, range) {
        let verdict = match cluster.as_slice() {
            [only] => match &only.piece {
                Piece::Chunk { chunk, .. } => Some(filter.verdict(&chunk.stats, data_type)),
                Piece::Points(_) => None,
            },
            _ => None,
        };
        let points = match verdict {
            Some(Verdict::AllOut) => {
                counters.chunks_skipped += 1;
                continue;
            }
            Some(Verdict::AllIn) => {
                counters.chunks_all_in += 1;
                merge_cluster(cluster, range)?
            }
            Some(Verdict::Unknown) | None => {
                let points = merge_cluster(cluster, range)?;
                counters.pieces_checked += 1;
                counters.points_checked += points.len() as u64;
                filter.apply(points)
            }
        };
        let wanted = points.len().min(points_max - out.len());
        if out.is_empty() && wanted == points.len() {
            out = points;
        } else {
            out.timestamps
                .extend_from_slice(&points.timestamps[..wanted]);
            out.values.extend_from(&points.values, 0..wanted);
        }
        if out.len() == points_max {
            break;
        }
    }
    Ok(out)
}

/// Running state of the aggregations of one window.
#[derive(Clone, Debug, Default)]
struct Accumulator {
    count: u64,
    sum: f64,
    min: Option<Value>,
    max: Option<Value>,
    first: Option<(Timestamp, Value)>,
    last: Option<(Timestamp, Value)>,
}

/// Largest integer magnitude an f64 holds exactly: INT64 statistics beyond it are not used
/// for min/max, whose answers must be exact.
const F64_EXACT_INT_MAX: f64 = 9_007_199_254_740_992.0;

fn value_from_f64(data_type: DataType, v: f64) -> Value {
    match data_type {
        DataType::Int32 => Value::Int32(v as i32),
        DataType::Int64 => Value::Int64(v as i64),
        DataType::Float => Value::Float(v as f32),
        DataType::Double => Value::Double(v),
        DataType::Boolean | DataType::Text => unreachable!("min/max of a non-numeric type"),
    }
}

/// Whether `a < b` for two numeric values of one type.
fn numeric_less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int32(a), Value::Int32(b)) => a < b,
        (Value::Int64(a), Value::Int64(b)) => a < b,
        (Value::Float(a), Value::Float(b)) => a < b,
        (Value::Double(a), Value::Double(b)) => a < b,
        _ => false,
    }
}

impl Accumulator {
    fn offer_min_max(&mut self, min: Value, max: Value) {
        if self.min.as_ref().is_none_or(|m| numeric_less(&min, m)) {
            self.min = Some(min);
        }
        if self.max.as_ref().is_none_or(|m| numeric_less(m, &max)) {
            self.max = Some(max);
        }
    }

    fn offer_first_last(&mut self, first: (Timestamp, Value), last: (Timestamp, Value)) {
        if self.first.as_ref().is_none_or(|f| first.0 < f.0) {
            self.first = Some(first);
        }
        if self.last.as_ref().is_none_or(|l| last.0 > l.0) {
            self.last = Some(last);
        }
    }

    /// Whether `stats` can stand in for its points (min/max exact for this type).
    fn stats_usable(stats: &Stats) -> bool {
        stats.data_type() != DataType::Int64
            || (stats.min.is_none_or(|m| m.abs() <= F64_EXACT_INT_MAX)
                && stats.max.is_none_or(|m| m.abs() <= F64_EXACT_INT_MAX))
    }

    fn add_stats(&mut self, stats: &Stats) {
        let data_type = stats.data_type();
        self.count += stats.count;
        self.sum += stats.sum;
        if let (Some(min), Some(max)) = (stats.min, stats.max) {
            self.offer_min_max(
                value_from_f64(data_type, min),
                value_from_f64(data_type, max),
            );
        }
        self.offer_first_last(
            (stats.min_time, stats.first.clone()),
            (stats.max_time, stats.last.clone()),
        );
    }

    fn add_points(&mut self, points: &PointColumn, rows: std::ops::Range<usize>) {
        if rows.is_empty() {
            return;
        }
        self.count += rows.len() as u64;
        // The sum in the lanes chunk statistics use, so that a chunk's points give the
        // answer its statistics give.
        fn fold<T: Copy + PartialOrd>(v: &[T], to_f64: impl Fn(T) -> f64) -> (f64, T, T) {
            let sum = crate::stats::lane_sum(v, to_f64);
            let (mut min, mut max) = (v[0], v[0]);
            for &x in v {
                if x < min {
                    min = x;
                }
                if x > max {
                    max = x;
                }
            }
            (sum, min, max)
        }
        let numeric = match &points.values {
            Values::Int32(v) => {
                let (s, lo, hi) = fold(&v[rows.clone()], f64::from);
                Some((s, Value::Int32(lo), Value::Int32(hi)))
            }
            Values::Int64(v) => {
                let (s, lo, hi) = fold(&v[rows.clone()], |x| x as f64);
                Some((s, Value::Int64(lo), Value::Int64(hi)))
            }
            Values::Float(v) => {
                let (s, lo, hi) = fold(&v[rows.clone()], f64::from);
                Some((s, Value::Float(lo), Value::Float(hi)))
            }
            Values::Double(v) => {
                let (s, lo, hi) = fold(&v[rows.clone()], |x| x);
                Some((s, Value::Double(lo), Value::Double(hi)))
            }
            Values::Boolean(_) | Values::Text(_) => None,
        };
        if let Some((sum, min, max)) = numeric {
            self.sum += sum;
            self.offer_min_max(min, max);
        }
        let (first, last) = (rows.start, rows.end - 1);
        self.offer_first_last(
            (points.timestamps[first], points.values.get(first)),
            (points.timestamps[last], points.values.get(last)),
        );
    }

    fn finish(&self, aggregations: &[Aggregation]) -> Vec<Option<Value>> {
        aggregations
            .iter()
            .map(|aggregation| match aggregation {
                Aggregation::Count => Some(Value::Int64(self.count as i64)),
                _ if self.count == 0 => None,
                Aggregation::Sum => Some(Value::Double(self.sum)),
                Aggregation::Avg => Some(Value::Double(self.sum / self.count as f64)),
                Aggregation::Min => self.min.clone(),
                Aggregation::Max => self.max.clone(),
                Aggregation::First => self.first.as_ref().map(|f| f.1.clone()),
                Aggregation::Last => self.last.as_ref().map(|l| l.1.clone()),
                Aggregation::MinTime => self.first.as_ref().map(|f| Value::Int64(f.0)),
                Aggregation::MaxTime => self.last.as_ref().map(|l| Value::Int64(l.0)),
                Aggregation::Extreme => extreme(self.min.as_ref(), self.max.as_ref()),
            })
            .collect()
    }
}

/// The value of largest magnitude of `min` and `max` (the positive one on a tie), as
/// IoTDB's `extreme`.
pub fn extreme(min: Option<&Value>, max: Option<&Value>) -> Option<Value> {
    let (min, max) = (min?, max?);
    let magnitude = |v: &Value| v.as_f64().map_or(0.0, f64::abs);
    Some(if magnitude(min) > magnitude(max) {
        min.clone()
    } else {
        max.clone()
    })
}

/// Aggregates one series over `range`, in one row, or per window when `windows` is given
/// (then `range` further restricts the windows, e.g. by TTL).
pub fn aggregate(
    data_type: DataType,
    pieces: Vec<RankedPiece<'_>>,
    range: TimeRange,
    windows: Option<Windows>,
    aggregations: &[Aggregation],
) -> Result<Vec<AggregateRow>> {
    for aggregation in aggregations {
        aggregation.check(data_type)?;
    }
    if let Some(w) = &windows {
        w.validate()?;
    }
    let window_count = windows.map_or(1, |w| w.count());
    let mut accumulators = vec![Accumulator::default(); window_count];
    let effective = windows.map_or(range, |w| range.intersect(w.range));
    if !effective.is_empty() {
        for cluster in clusters(pieces, effective) {
            fold_cluster(cluster, effective, windows.as_ref(), &mut accumulators)?;
        }
    }
    Ok(accumulators
        .iter()
        .enumerate()
        .map(|(i, acc)| AggregateRow {
            window_start: windows.map_or(range.start, |w| w.window(i).start),
            values: acc.finish(aggregations),
        })
        .collect())
}

/// The window index of `t` and the end of that window; one window when not grouping.
fn bucket_of(windows: Option<&Windows>, t: Timestamp) -> (usize, Timestamp) {
    match windows {
        None => (0, Timestamp::MAX),
        Some(w) => {
            let index = w.index_of(t);
            (index, w.window(index).end)
        }
    }
}

fn fold_cluster(
    cluster: Vec<RankedPiece<'_>>,
    effective: TimeRange,
    windows: Option<&Windows>,
    accumulators: &mut [Accumulator],
) -> Result<()> {
    if let [only] = cluster.as_slice()
        && let Piece::Chunk { chunk, .. } = &only.piece
        && effective.covers(only.min_time, only.max_time)
        && Accumulator::stats_usable(&chunk.stats)
    {
        let (first_window, window_end) = bucket_of(windows, only.min_time);
        if only.max_time < window_end {
            accumulators[first_window].add_stats(&chunk.stats);
            return Ok(());
        }
    }
    let points = merge_cluster(cluster, effective)?;
    let mut row = 0;
    while row < points.len() {
        let (index, window_end) = bucket_of(windows, points.timestamps[row]);
        let end = row + points.timestamps[row..].partition_point(|&t| t < window_end);
        accumulators[index].add_points(&points, row..end);
        row = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doubles(ts: &[i64], vs: &[f64]) -> PointColumn {
        PointColumn {
            timestamps: ts.to_vec(),
            values: Values::Double(vs.to_vec()),
        }
    }

    #[test]
    fn newer_pieces_win_and_clusters_concatenate() {
        let pieces = vec![
            RankedPiece::points(1, doubles(&[1, 2, 3], &[1.0, 2.0, 3.0])).unwrap(),
            RankedPiece::points(2, doubles(&[2, 4], &[20.0, 40.0])).unwrap(),
            RankedPiece::points(0, doubles(&[10, 11], &[10.0, 11.0])).unwrap(),
        ];
        let out = scan(DataType::Double, pieces, TimeRange::new(2, 11)).unwrap();
        assert_eq!(out, doubles(&[2, 3, 4, 10], &[20.0, 3.0, 40.0, 10.0]));
    }

    #[test]
    fn windows_aggregate() {
        let pieces = vec![
            RankedPiece::points(0, doubles(&[0, 5, 10, 15, 25], &[1.0, 2.0, 3.0, 4.0, 5.0]))
                .unwrap(),
        ];
        let rows = aggregate(
            DataType::Double,
            pieces,
            TimeRange::ALL,
            Some(Windows {
                range: TimeRange::new(0, 30),
                interval_ms: 10,
            }),
            &[
                Aggregation::Count,
                Aggregation::Avg,
                Aggregation::Max,
                Aggregation::First,
            ],
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].values,
            vec![
                Some(Value::Int64(2)),
                Some(Value::Double(3.5)),
                Some(Value::Double(4.0)),
                Some(Value::Double(3.0))
            ]
        );
        assert_eq!(rows[2].window_start, 20);
        assert_eq!(rows[2].values[0], Some(Value::Int64(1)));
    }

    #[test]
    fn empty_windows_have_zero_count_and_no_values() {
        let rows = aggregate(
            DataType::Int32,
            Vec::new(),
            TimeRange::ALL,
            Some(Windows {
                range: TimeRange::new(0, 10),
                interval_ms: 4,
            }),
            &[Aggregation::Count, Aggregation::Sum],
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].window_start, 8);
        assert_eq!(rows[2].values, vec![Some(Value::Int64(0)), None]);
    }

    #[test]
    fn sum_of_text_is_refused() {
        let err = aggregate(
            DataType::Text,
            Vec::new(),
            TimeRange::ALL,
            None,
            &[Aggregation::Sum],
        )
        .unwrap_err();
        assert!(matches!(err, StorageError::UnsupportedAggregation { .. }));
    }

    #[test]
    fn windows_within_a_part_are_the_windows_overlapping_it_in_place() {
        for (start, end, interval) in [
            (0i64, 100i64, 10i64),
            (-35, 61, 7),
            (5, 6, 1),
            (3, 1_000, 250),
        ] {
            let windows = Windows {
                range: TimeRange::new(start, end),
                interval_ms: interval,
            };
            for part_start in start - 20..end + 20 {
                for part_end in [part_start + 1, part_start + 9, part_start + 40, i64::MAX] {
                    let part = TimeRange::new(part_start, part_end);
                    let overlapping: Vec<TimeRange> = (0..windows.count())
                        .map(|k| windows.window(k))
                        .filter(|w| w.start < part.end && part.start < w.end)
                        .collect();
                    let (within, first) = windows.within(part);
                    let got: Vec<TimeRange> =
                        (0..within.count()).map(|j| within.window(j)).collect();
                    assert_eq!(got, overlapping, "{windows:?} within {part:?}");
                    if let Some(w) = got.first() {
                        assert_eq!(windows.window(first), *w, "{windows:?} within {part:?}");
                    }
                }
            }
        }
    }
}
