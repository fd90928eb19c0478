//! Raw `SELECT`s with value filters, aliases, `SLIMIT`/`SOFFSET` and `ALIGN BY DEVICE`.
//!
//! ```text
//! select list × FROM ─ MatchSeries ─▶ output columns (SOFFSET/SLIMIT applied)
//! WHERE value filter ─ bind ─▶ Bound (paths → columns; filter-only series appended)
//!                      push_down ─▶ one ValueFilter per column ─▶ regions (ScanFiltered:
//!                                    chunk statistics skip or keep whole chunks)
//! filtered columns ─ align on time into a Page ─ evaluate the whole filter on the page's
//!                    columns (select/vector) ─ keep the passing rows ─ project ─▶ rows
//! ```
//!
//! `ALIGN BY DEVICE` runs the same per device (the filter's paths resolved inside that
//! device) and stacks the devices in path order, with a `Device` column.

mod bind;
mod computed;
mod fill;
mod pages;
mod vector;

use std::rc::Rc;

use iotdb_net::{ResultSet, SeriesSelection, Status, Value as WireValue};
use iotdb_storage::{
    Aggregation, DataType, FilterCounters, PointColumn, SeriesKey, TimeRange, Value, ValueFilter,
};

pub use bind::{Bound, bind, push_down};
pub use fill::{fill, fill_previous};
pub use pages::{RawCursor, RawPart, Row, RowMaker, RowPages, WindowPages};
pub use vector::{Page, PageColumn, Vector};

use super::Shard;
use super::query::{RegionAnswer, RegionRead};
use crate::sql::{Expr, PathPattern, Select, TimeOrder};

/// One series a query reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub device: String,
    pub measurement: String,
    pub data_type: DataType,
}

impl Column {
    pub fn path(&self) -> String {
        format!("{}.{}", self.device, self.measurement)
    }
}

/// Rows of a raw query before naming: times and one cell per output column.
pub struct Rows {
    pub times: Vec<i64>,
    pub cells: Vec<Vec<Option<WireValue>>>,
}

/// Sets `rows` of an `ALIGN BY DEVICE` result (each device's rows together, its `Device`
/// column just before `first_value`) as `result`'s rows, after `select`'s `FILL` and order
/// within each device, and `LIMIT`/`OFFSET` over all.
pub(super) fn finish_device_rows(
    result: &mut ResultSet,
    rows: Vec<Vec<Option<WireValue>>>,
    select: &Select,
    first_value: usize,
) {
    let mut out = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter().peekable();
    while let Some(row) = rows.next() {
        let device = row[first_value - 1].clone();
        let mut block = vec![row];
        while let Some(next) = rows.next_if(|next| next[first_value - 1] == device) {
            block.push(next);
        }
        if let Some(how) = &select.fill {
            fill(how, &result.column_types, &mut block, first_value);
        }
        if select.order == TimeOrder::Descending {
            block.reverse();
        }
        out.extend(block);
    }
    result.rows = page(out, select);
}

/// Rows of an aggregate result as a page of columns: a row's time is its window's (its
/// first cell) under `GROUP BY` time, 0 otherwise.
pub fn rows_page(rows: &[Row], windowed: bool) -> Page {
    let times = rows
        .iter()
        .map(|row| match row.first() {
            Some(Some(WireValue::Int64(t))) if windowed => *t,
            _ => 0,
        })
        .collect();
    Page::of_rows(times, rows)
}

/// Keeps the rows of an aggregate result where `having` (bound to its columns) is true,
/// evaluated on all of them at once.
pub fn retain_having(having: &Bound, rows: &mut Vec<Row>, windowed: bool) {
    let mut passing = having
        .evaluate(&rows_page(rows, windowed))
        .truth()
        .into_iter();
    rows.retain(|_| passing.next().unwrap_or(false));
}

/// `items` with SOFFSET and SLIMIT applied.
pub fn series_window<T>(items: Vec<T>, select: &Select) -> Vec<T> {
    let skip = select.soffset.unwrap_or(0) as usize;
    let take = select.slimit.map_or(usize::MAX, |l| l as usize);
    items.into_iter().skip(skip).take(take).collect()
}

impl Shard {
    /// The series `patterns` match, as columns, in match order.
    pub(super) async fn columns_of(
        &self,
        patterns: Vec<PathPattern>,
    ) -> Result<Vec<Column>, Status> {
        Ok(self
            .matches(patterns)
            .await?
            .into_iter()
            .map(|(device, measurement, data_type)| Column {
                device,
                measurement,
                data_type,
            })
            .collect())
    }

    /// A raw query aligned by time: `Time` then one column per output series, answered a
    /// page at a time.
    pub(in crate::datanode) async fn select_raw_rows(
        self: &Rc<Self>,
        select: &Select,
        range: TimeRange,
        now_ms: i64,
    ) -> Result<RowPages, Status> {
        let crate::sql::Projection::Raw(items) = &select.projection else {
            return Err(Status::internal("not a raw projection"));
        };
        if select.align_by_device {
            return self
                .select_raw_by_device(select, items, range, now_ms)
                .await;
        }
        // Columns grouped by device in first-seen order, as the unfiltered path always did.
        let matched = self.columns_of(select.series_patterns()).await?;
        let mut outputs: Vec<Column> = Vec::new();
        for column in &matched {
            if !outputs.iter().any(|c| c.device == column.device) {
                outputs.extend(
                    matched
                        .iter()
                        .filter(|c| c.device == column.device)
                        .cloned(),
                );
            }
        }
        let outputs = series_window(outputs, select);
        let mut names: Vec<String> = outputs.iter().map(Column::path).collect();
        self.apply_aliases(select, items, &mut names, &outputs)
            .await?;
        let resolved = self.resolve_filter_paths(select).await?;
        let mut header = ResultSet::new(&[("Time", DataType::Int64)]);
        for (name, column) in names.iter().zip(&outputs) {
            header.column_names.push(name.clone());
            header.column_types.push(column.data_type);
        }
        let cursor = RawCursor::of_select(self, outputs, select, range, now_ms, &resolved)?;
        let make: RowMaker = Box::new(|page| {
            let rows = (0..page.len()).map(|r| {
                let mut row = Vec::with_capacity(page.columns.len() + 1);
                row.push(Some(WireValue::Int64(page.times[r])));
                row.extend((0..page.columns.len()).map(|c| page.cell(c, r)));
                row
            });
            Ok(rows.collect())
        });
        Ok(RowPages::new(
            header,
            vec![RawPart::whole(cursor, make)],
            select,
            1,
        ))
    }

    /// Renames the column of each aliased select item; an alias must name one series.
    async fn apply_aliases(
        &self,
        select: &Select,
        items: &[PathPattern],
        names: &mut [String],
        outputs: &[Column],
    ) -> Result<(), Status> {
        for (item, alias) in items.iter().zip(&select.aliases) {
            let Some(alias) = alias else { continue };
            let patterns: Vec<PathPattern> = select.from.iter().map(|f| f.join(item)).collect();
            let matched = self.columns_of(patterns).await?;
            if matched.len() > 1 {
                return Err(Status::illegal_parameter(format!(
                    "alias '{alias}' can only be matched with one time series"
                )));
            }
            for column in matched {
                if let Some(i) = outputs.iter().position(|c| *c == column) {
                    names[i] = alias.clone();
                }
            }
        }
        Ok(())
    }

    /// `ALIGN BY DEVICE`: `Time, Device`, then one column per measurement name.
    async fn select_raw_by_device(
        self: &Rc<Self>,
        select: &Select,
        items: &[PathPattern],
        range: TimeRange,
        now_ms: i64,
    ) -> Result<RowPages, Status> {
        let mut measurements: Vec<(String, DataType)> = Vec::new();
        // Devices in path order, each with the series the select list names in it.
        let mut devices: std::collections::BTreeMap<String, Vec<Column>> = Default::default();
        let mut item_of_measurement: Vec<usize> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let patterns: Vec<PathPattern> = select.from.iter().map(|f| f.join(item)).collect();
            let mut matched = self.columns_of(patterns).await?;
            matched.sort_by(|a, b| a.measurement.cmp(&b.measurement));
            for column in matched {
                let known = devices.entry(column.device.clone()).or_default();
                if !known.contains(&column) {
                    known.push(column.clone());
                }
                if !measurements.iter().any(|(m, _)| *m == column.measurement) {
                    measurements.push((column.measurement.clone(), column.data_type));
                    item_of_measurement.push(index);
                }
            }
        }
        let measurements = series_window(measurements, select);
        // The filter's paths, resolved once for every device (one schema lookup per path).
        let resolved = self.resolve_filter_paths(select).await?;
        let mut result = ResultSet::new(&[("Time", DataType::Int64), ("Device", DataType::Text)]);
        for (i, (measurement, data_type)) in measurements.iter().enumerate() {
            let alias = select
                .aliases
                .get(item_of_measurement[i])
                .cloned()
                .flatten();
            result
                .column_names
                .push(alias.unwrap_or_else(|| measurement.clone()));
            result.column_types.push(*data_type);
        }
        let mut parts = Vec::with_capacity(devices.len());
        let width = measurements.len() + 2;
        for (device, known) in devices {
            // Only this device's series, at the positions of the measurement columns.
            let mut outputs = Vec::new();
            let mut positions = Vec::new();
            for (i, (measurement, _)) in measurements.iter().enumerate() {
                if let Some(column) = known.iter().find(|c| c.measurement == *measurement) {
                    outputs.push(column.clone());
                    positions.push(i + 2);
                }
            }
            if outputs.is_empty() {
                continue;
            }
            let lacking = (2..width).filter(|at| !positions.contains(at)).collect();
            let own = within_device(&resolved, &device);
            let cursor = RawCursor::of_select(self, outputs, select, range, now_ms, &own)?;
            let device = WireValue::Text(bytes::Bytes::from(device));
            let make: RowMaker = Box::new(move |page| {
                let rows = (0..page.len()).map(|r| {
                    let mut row = vec![None; width];
                    row[0] = Some(WireValue::Int64(page.times[r]));
                    row[1] = Some(device.clone());
                    for (c, &at) in positions.iter().enumerate() {
                        row[at] = page.cell(c, r);
                    }
                    row
                });
                Ok(rows.collect())
            });
            parts.push(RawPart {
                cursor,
                make,
                lacking,
            });
        }
        Ok(RowPages::new(result, parts, select, 2))
    }

    /// The series each path of the WHERE filter names under the FROM prefixes.
    pub(super) async fn resolve_filter_paths(
        &self,
        select: &Select,
    ) -> Result<Vec<(PathPattern, Vec<Column>)>, Status> {
        let mut out: Vec<(PathPattern, Vec<Column>)> = Vec::new();
        let Some(filter) = &select.value_filter else {
            return Ok(out);
        };
        let mut paths: Vec<PathPattern> = Vec::new();
        filter.visit(&mut |e| {
            if let Expr::Path(p) = e
                && !paths.contains(p)
            {
                paths.push(p.clone());
            }
        });
        for path in paths {
            let patterns: Vec<PathPattern> = select.from.iter().map(|f| f.join(&path)).collect();
            out.push((path, self.columns_of(patterns).await?));
        }
        Ok(out)
    }

    /// Every column's points in `range` (filtered where a filter is given), read from the
    /// regions holding each device, in time order; with `points_max`, each column's first
    /// `points_max` points (or more), the regions of later time partitions not asked for a
    /// column that has them.
    pub(super) async fn fetch_columns(
        self: &Rc<Self>,
        columns: &[Column],
        range: TimeRange,
        filters: &[Option<ValueFilter>],
        points_max: Option<usize>,
    ) -> Result<(Vec<PointColumn>, FilterCounters), Status> {
        let mut out: Vec<PointColumn> = columns
            .iter()
            .map(|c| PointColumn::new(c.data_type))
            .collect();
        let mut counters = FilterCounters::default();
        let mut devices: Vec<&str> = Vec::new();
        for c in columns {
            if !devices.contains(&c.device.as_str()) {
                devices.push(&c.device);
            }
        }
        for device in devices {
            for (group, part) in self.parts_of(device, range) {
                // The device's columns that still need points (all without a limit).
                let indices: Vec<usize> = (0..columns.len())
                    .filter(|&i| columns[i].device == device)
                    .filter(|&i| points_max.is_none_or(|n| out[i].len() < n))
                    .collect();
                if indices.is_empty() {
                    break;
                }
                let keys: Vec<SeriesKey> = indices
                    .iter()
                    .map(|&i| SeriesKey::new(device, &columns[i].measurement))
                    .collect();
                let read = RegionRead::ScanFiltered {
                    keys,
                    range: part,
                    filters: indices.iter().map(|&i| filters[i].clone()).collect(),
                    points_max: points_max.map(|n| {
                        let fewest = indices.iter().map(|&i| out[i].len()).min();
                        n - fewest.unwrap_or(0)
                    }),
                };
                let RegionAnswer::Filtered(parts, used) = self.read_group(group, read).await?
                else {
                    return Err(Status::internal(
                        "a region answered a filtered scan wrongly",
                    ));
                };
                counters.add(&used);
                for (&i, part) in indices.iter().zip(parts) {
                    if let Some(part) = part {
                        out[i].timestamps.extend_from_slice(&part.timestamps);
                        out[i].values.extend_from(&part.values, 0..part.len());
                    }
                }
            }
        }
        Ok((out, counters))
    }
}

/// A column's point count in a range, and the oldest and newest time of its points.
pub type ColumnCount = (u64, Option<(i64, i64)>);

impl Shard {
    /// Each column's points in `range`, counted by the regions holding its device (from
    /// chunk statistics where a chunk lies inside the range): what sizes a descending page.
    pub(super) async fn count_columns(
        self: &Rc<Self>,
        columns: &[Column],
        range: TimeRange,
    ) -> Result<Vec<ColumnCount>, Status> {
        let mut out: Vec<ColumnCount> = vec![(0, None); columns.len()];
        let mut devices: Vec<&str> = Vec::new();
        for c in columns {
            if !devices.contains(&c.device.as_str()) {
                devices.push(&c.device);
            }
        }
        for device in devices {
            let indices: Vec<usize> = (0..columns.len())
                .filter(|&i| columns[i].device == device)
                .collect();
            let keys: Vec<SeriesKey> = indices
                .iter()
                .map(|&i| SeriesKey::new(device, &columns[i].measurement))
                .collect();
            for (group, part) in self.parts_of(device, range) {
                let read = RegionRead::Aggregate {
                    keys: keys.clone(),
                    range: part,
                    windows: None,
                    aggregations: vec![
                        Aggregation::Count,
                        Aggregation::MinTime,
                        Aggregation::MaxTime,
                    ],
                };
                let RegionAnswer::Aggregates(answers) = self.read_group(group, read).await? else {
                    return Err(Status::internal("a region answered a count wrongly"));
                };
                for (&i, answer) in indices.iter().zip(answers) {
                    let Some(row) = answer.and_then(|(_, rows)| rows.into_iter().next()) else {
                        continue;
                    };
                    if let [
                        Some(Value::Int64(count)),
                        Some(Value::Int64(oldest)),
                        Some(Value::Int64(newest)),
                    ] = row.values[..]
                    {
                        out[i].0 += u64::try_from(count).unwrap_or(0);
                        out[i].1 = Some(match out[i].1 {
                            None => (oldest, newest),
                            Some((a, b)) => (a.min(oldest), b.max(newest)),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Keeps, in every column, only the times at which every filtered column has a point: a
/// row where a filtered column is null cannot pass.
fn restrict_to_required(points: &mut [PointColumn], filters: &[Option<ValueFilter>]) {
    let required: Vec<usize> = (0..points.len())
        .filter(|&i| filters[i].is_some())
        .collect();
    let Some(&first) = required.first() else {
        return;
    };
    let mut times: Vec<i64> = points[first].timestamps.clone();
    for &i in &required[1..] {
        let other = &points[i].timestamps;
        times.retain(|t| other.binary_search(t).is_ok());
    }
    for column in points.iter_mut() {
        if column.timestamps.len() == times.len() && column.timestamps == times {
            continue;
        }
        let mut kept = PointColumn::new(column.data_type());
        for (i, t) in column.timestamps.iter().enumerate() {
            if times.binary_search(t).is_ok() {
                kept.timestamps.push(*t);
                kept.values.push_from(&column.values, i);
            }
        }
        *column = kept;
    }
}

/// The rows of a raw query (in time order) that its `LIMIT`/`OFFSET` can return:
/// `offset + limit`, when those are the first rows by time (ascending order, no `FILL`,
/// which may read later rows); `None` when every row may be needed.
pub fn rows_needed(select: &Select) -> Option<usize> {
    let limit = select.limit?;
    if select.order != TimeOrder::Ascending || select.fill.is_some() {
        return None;
    }
    let rows = limit.saturating_add(select.offset.unwrap_or(0));
    Some(usize::try_from(rows).unwrap_or(usize::MAX))
}

/// The filter's paths (`filter_series`) restricted to `device`'s series: under `ALIGN BY
/// DEVICE` a filter is evaluated inside each device, other devices' series do not count.
pub fn within_device(
    filter_series: &[(PathPattern, Vec<Column>)],
    device: &str,
) -> Vec<(PathPattern, Vec<Column>)> {
    filter_series
        .iter()
        .map(|(path, columns)| {
            let mine = columns.iter().filter(|c| c.device == device).cloned();
            (path.clone(), mine.collect())
        })
        .collect()
}

/// `rows` with OFFSET and LIMIT applied.
pub fn page<T>(rows: Vec<T>, select: &Select) -> Vec<T> {
    let skip = select.offset.unwrap_or(0) as usize;
    let take = select.limit.map_or(usize::MAX, |l| l as usize);
    rows.into_iter().skip(skip).take(take).collect()
}

/// The selections (device, measurements) of `columns`, devices in first-seen order.
pub fn selections_of(columns: &[Column]) -> Vec<SeriesSelection> {
    let mut out: Vec<SeriesSelection> = Vec::new();
    for c in columns {
        match out.iter_mut().find(|s| s.device == c.device) {
            Some(s) => s.measurements.push(c.measurement.clone()),
            None => out.push(SeriesSelection {
                device: c.device.clone(),
                measurements: vec![c.measurement.clone()],
            }),
        }
    }
    out
}
