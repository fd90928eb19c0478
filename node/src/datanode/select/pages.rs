//! Raw results read and answered a page at a time, so that a `SELECT` of any size runs in
//! bounded memory on the receiving DataNode.
//!
//! ```text
//! RawCursor   [next, end) ─ fetch_columns: the first n points of every column ─▶
//!             complete up to t* = the earliest last time among the columns that gave n
//!             ─ align ─ value filter ─▶ the rows ≤ t*;  next = t* + 1
//! RowPages    parts (one, or one per device) ─ cursor pages ─ row maker (Time[, Device],
//!             cells or expressions) ─ FILL (PREVIOUS carried across pages) ─ OFFSET/LIMIT
//!             ─▶ pages of at most the asker's row count
//! ```
//!
//! Every column of a page is complete up to `t*`: a column that gave fewer than `n` points
//! gave all of its points in the range, and one that gave `n` gave every point up to its
//! last one (the regions read the first points in time order, `Region::scan_first` and
//! `Region::scan_filtered_first`). Each page reads about [`PAGE_POINTS`] points whatever
//! the range holds, from the local shards and from other DataNodes alike.
//!
//! Descending order and `FILL(LINEAR)` need a part's later rows before its earlier ones:
//! such a part (the whole result, or one device under `ALIGN BY DEVICE`) is gathered first,
//! up to [`SQL_RESULT_ROWS_MAX`] rows, then answered in pages.

use std::collections::VecDeque;
use std::rc::Rc;

use iotdb_net::{ResultSet, Status, Value as WireValue};
use iotdb_storage::{DataType, PointColumn, TimeRange, ValueFilter};

use super::{Bound, Column, Rows, bind, fill, fill_previous, push_down, restrict_to_required};
use crate::datanode::Shard;
use crate::datanode::query::align;
use crate::datanode::sql_exec::{SQL_RESULT_ROWS_MAX, too_many_rows};
use crate::sql::{Expr, Fill, PathPattern, Select, TimeOrder};

/// Points one page of a raw query reads over all its columns (each column reads this many
/// divided by the column count, at least [`COLUMN_PAGE_POINTS_MIN`]).
pub const PAGE_POINTS: usize = 1 << 16;

/// Fewest points a column reads per page, however many columns a query has.
pub const COLUMN_PAGE_POINTS_MIN: usize = 64;

/// One row of a result: one cell per column.
pub type Row = Vec<Option<WireValue>>;

/// Turns a row's time and fetched cells into the result's row (`Time`, perhaps `Device`,
/// then the value columns).
pub type RowMaker = Box<dyn Fn(i64, Vec<Option<WireValue>>) -> Result<Row, Status>>;

/// The rows of a raw query aligned by time, in ascending time order, a page at a time.
pub struct RawCursor {
    shard: Rc<Shard>,
    /// The output columns, then the series only the value filter reads.
    fetched: Vec<Column>,
    output_count: usize,
    bound: Option<Bound>,
    filters: Vec<Option<ValueFilter>>,
    /// Where the next page starts; the range's end (exclusive).
    next: i64,
    end: i64,
    /// Points each column reads per page.
    column_points: usize,
    done: bool,
}

impl RawCursor {
    /// A cursor over the rows of `outputs` in `range` where `filter` holds;
    /// `filter_series` holds the series each of the filter's paths names. With `rows_max`
    /// (a `LIMIT` without a filter, see [`super::rows_needed`]) the first page reads only
    /// that many points of each column, which hold the first `rows_max` rows.
    pub fn open(
        shard: Rc<Shard>,
        outputs: Vec<Column>,
        filter: Option<&Expr>,
        range: TimeRange,
        now_ms: i64,
        filter_series: &[(PathPattern, Vec<Column>)],
        rows_max: Option<usize>,
    ) -> Result<RawCursor, Status> {
        let output_count = outputs.len();
        let mut fetched = outputs;
        let bound = match filter {
            None => None,
            Some(filter) => {
                // Each filter path as indices into the fetched columns.
                let mut resolved: Vec<(PathPattern, Vec<usize>)> = Vec::new();
                for (path, columns) in filter_series {
                    let mut indices = Vec::new();
                    for column in columns.iter().cloned() {
                        let index = match fetched.iter().position(|c| *c == column) {
                            Some(i) => i,
                            None => {
                                fetched.push(column);
                                fetched.len() - 1
                            }
                        };
                        if !indices.contains(&index) {
                            indices.push(index);
                        }
                    }
                    resolved.push((path.clone(), indices));
                }
                Some(bind(filter, now_ms, &mut |e| match e {
                    Expr::Path(p) => resolved
                        .iter()
                        .find(|(q, _)| q == p)
                        .map(|(_, i)| i.clone()),
                    _ => None,
                })?)
            }
        };
        let filters = match &bound {
            Some(b) => push_down(b, fetched.len()),
            None => vec![None; fetched.len()],
        };
        let mut column_points = (PAGE_POINTS / fetched.len().max(1)).max(COLUMN_PAGE_POINTS_MIN);
        if let Some(rows_max) = rows_max.filter(|_| bound.is_none()) {
            column_points = column_points.min(rows_max.max(1));
        }
        Ok(RawCursor {
            shard,
            fetched,
            output_count,
            bound,
            filters,
            next: range.start,
            end: range.end,
            column_points,
            done: range.is_empty(),
        })
    }

    /// The next page of rows (perhaps empty when the filter kept none of its points), or
    /// `None` once the range is read.
    pub async fn next_rows(&mut self) -> Result<Option<Rows>, Status> {
        if self.done {
            return Ok(None);
        }
        let n = self.column_points;
        let range = TimeRange::new(self.next, self.end);
        let (mut points, counters) = self
            .shard
            .fetch_columns(&self.fetched, range, &self.filters, Some(n))
            .await?;
        let complete_to = points
            .iter()
            .filter(|p| p.len() >= n)
            .filter_map(|p| p.timestamps.last().copied())
            .min();
        match complete_to {
            None => self.done = true,
            Some(last) => {
                for column in &mut points {
                    if column.timestamps.last().is_some_and(|&t| t > last) {
                        let whole = std::mem::replace(column, PointColumn::new(column.data_type()));
                        *column =
                            iotdb_storage::query::trim(whole, TimeRange::new(i64::MIN, last + 1));
                    }
                }
                // `last` lies in the range, below its (exclusive) end: no overflow.
                self.next = last + 1;
                self.done = self.next >= self.end;
            }
        }
        if self.bound.is_some() {
            tracing::debug!(?counters, "value filter pushed down");
            restrict_to_required(&mut points, &self.filters);
        }
        let series: Vec<(String, DataType, PointColumn)> = self
            .fetched
            .iter()
            .zip(points)
            .map(|(c, p)| (c.path(), c.data_type, p))
            .collect();
        let mut rows = Rows {
            times: Vec::new(),
            cells: Vec::new(),
        };
        for batch in align(series, 0, None) {
            for (r, &t) in batch.timestamps.iter().enumerate() {
                let row: Vec<Option<WireValue>> =
                    batch.columns.iter().map(|c| c.value(r)).collect();
                if self.bound.as_ref().is_some_and(|b| !b.passes(t, &row)) {
                    continue;
                }
                // A row that passes is kept even when every output cell is null (the filter
                // may read only other series), as IoTDB does.
                rows.times.push(t);
                rows.cells
                    .push(row.into_iter().take(self.output_count).collect());
            }
        }
        Ok(Some(rows))
    }

    /// The first `rows_max` rows (all without it); more than `cap` rows is refused with
    /// `too_many`.
    pub async fn collect(
        mut self,
        rows_max: Option<usize>,
        cap: usize,
        too_many: impl Fn() -> Status,
    ) -> Result<Rows, Status> {
        let rows_max = rows_max.unwrap_or(usize::MAX);
        let mut all = Rows {
            times: Vec::new(),
            cells: Vec::new(),
        };
        while all.times.len() < rows_max {
            let Some(page) = self.next_rows().await? else {
                break;
            };
            let wanted = page.times.len().min(rows_max - all.times.len());
            all.times.extend_from_slice(&page.times[..wanted]);
            all.cells.extend(page.cells.into_iter().take(wanted));
            if all.times.len() > cap {
                return Err(too_many());
            }
        }
        Ok(all)
    }
}

/// A raw result answered a page at a time: its columns, then its rows on demand (see the
/// module docs).
pub struct RowPages {
    /// The result's columns (no rows).
    header: ResultSet,
    /// The parts still to read, in the result's order, each with how its rows are made.
    parts: VecDeque<(RawCursor, RowMaker)>,
    fill: Option<Fill>,
    /// The first value column (after `Time`, and `Device` under `ALIGN BY DEVICE`).
    first_value: usize,
    descending: bool,
    /// `FILL(PREVIOUS)`'s latest value of each column in the current part.
    previous: Vec<Option<WireValue>>,
    /// Rows still to skip (`OFFSET`), rows still to answer (`LIMIT`).
    skip: usize,
    left: usize,
    /// Rows made and not yet answered.
    ready: VecDeque<Row>,
}

impl RowPages {
    /// Pages of `parts`' rows under `header`, as `select` orders, fills and pages them.
    pub fn new(
        header: ResultSet,
        parts: Vec<(RawCursor, RowMaker)>,
        select: &Select,
        first_value: usize,
    ) -> RowPages {
        let width = header.column_types.len();
        RowPages {
            header,
            parts: parts.into(),
            fill: select.fill.clone(),
            first_value,
            descending: select.order == TimeOrder::Descending,
            previous: vec![None; width],
            skip: select.offset.unwrap_or(0) as usize,
            left: select.limit.map_or(usize::MAX, |l| l as usize),
            ready: VecDeque::new(),
        }
    }

    /// The result's columns, without rows.
    pub fn header(&self) -> &ResultSet {
        &self.header
    }

    /// The next at most `rows_max` rows (`rows_max` of them unless the result ends first),
    /// and whether rows remain after them.
    pub async fn next_page(&mut self, rows_max: usize) -> Result<(Vec<Row>, bool), Status> {
        let rows_max = rows_max.max(1);
        while self.ready.len() < rows_max && self.make_more().await? {}
        let page: Vec<Row> = self.ready.drain(..rows_max.min(self.ready.len())).collect();
        // Whether more remain: a made row, or a part that yields one.
        while self.ready.is_empty() && self.make_more().await? {}
        Ok((page, !self.ready.is_empty()))
    }

    /// The whole result, refused past [`SQL_RESULT_ROWS_MAX`] rows (what a caller gets that
    /// takes a result in one piece).
    pub async fn gather(mut self) -> Result<ResultSet, Status> {
        let mut result = self.header.clone();
        loop {
            let (page, more) = self.next_page(SQL_RESULT_ROWS_MAX + 1).await?;
            result.rows.extend(page);
            if result.rows.len() > SQL_RESULT_ROWS_MAX {
                return Err(too_many_rows());
            }
            if !more {
                return Ok(result);
            }
        }
    }

    /// Reads the next page of the current part into `ready` (through FILL, OFFSET and
    /// LIMIT); `false` once nothing is left to read.
    async fn make_more(&mut self) -> Result<bool, Status> {
        if self.left == 0 {
            self.parts.clear();
            return Ok(false);
        }
        let whole_part = self.descending || matches!(self.fill, Some(Fill::Linear));
        let Some((cursor, make)) = self.parts.front_mut() else {
            return Ok(false);
        };
        let mut rows: Vec<Row> = Vec::new();
        let mut part_done = false;
        loop {
            let Some(page) = cursor.next_rows().await? else {
                part_done = true;
                break;
            };
            for (time, cells) in page.times.into_iter().zip(page.cells) {
                rows.push(make(time, cells)?);
            }
            if rows.len() > SQL_RESULT_ROWS_MAX {
                return Err(too_many_rows());
            }
            if !whole_part {
                break;
            }
        }
        if let Some(how) = &self.fill {
            match how {
                Fill::Previous => fill_previous(&mut rows, self.first_value, &mut self.previous),
                _ => fill(how, &self.header.column_types, &mut rows, self.first_value),
            }
        }
        if self.descending {
            rows.reverse();
        }
        if part_done {
            self.parts.pop_front();
            self.previous.iter_mut().for_each(|v| *v = None);
        }
        let skipped = self.skip.min(rows.len());
        self.skip -= skipped;
        let kept = (rows.len() - skipped).min(self.left);
        self.left -= kept;
        self.ready.extend(rows.into_iter().skip(skipped).take(kept));
        Ok(true)
    }
}
