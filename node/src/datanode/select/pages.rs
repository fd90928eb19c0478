//! Raw results read and answered a page at a time, so that a `SELECT` of any size runs in
//! bounded memory on the receiving DataNode.
//!
//! ```text
//! RawCursor   [next, end) ─ fetch_columns: the first n points of every column ─▶
//!             complete up to t* = the earliest last time among the columns that gave n
//!             ─ align ─ value filter ─▶ the rows ≤ t*;  next = t* + 1
//!   (DESC)    [lo, end) sized by counts to at most 2n points a column ─ read whole ─▶
//!             its rows;  end = lo
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
//! Descending order reads windows from the end of the range instead: each window is sized
//! from point counts (`count`, `min_time`, `max_time`, answered from chunk statistics where
//! they can be) so that no column has more than twice a page's points in it, read whole,
//! and answered newest first.
//!
//! `FILL(LINEAR)`, and `FILL` in descending order, need rows the part has not reached yet:
//! such a part (the whole result, or one device under `ALIGN BY DEVICE`) is gathered first,
//! up to [`SQL_RESULT_ROWS_MAX`] rows, then answered in pages.

use std::collections::VecDeque;
use std::rc::Rc;

use iotdb_net::{ResultSet, Status, Value as WireValue};
use iotdb_storage::{DataType, PointColumn, TimeRange, ValueFilter};

use super::{Bound, Column, Rows, bind, fill, fill_previous, push_down, restrict_to_required};
use crate::datanode::Shard;
use crate::datanode::query::{align, check_window_count};
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
    /// The part of the range not yet read: `[next, end)`. Ascending pages move `next` up,
    /// descending ones move `end` down.
    next: i64,
    end: i64,
    /// Points each column reads per page.
    column_points: usize,
    /// Newest rows first: pages are time windows taken from the end of the range.
    descending: bool,
    /// The width of the next descending window (its first one: from the range's extent).
    window: Option<i128>,
    done: bool,
}

/// Most windows a descending page tries before it reads the last one it sized: each try
/// narrows the window by the ratio of its points to the page's, so a handful suffice.
const WINDOW_TRIES_MAX: usize = 64;

impl RawCursor {
    /// A cursor over the rows of `outputs` in `range` where `filter` holds;
    /// `filter_series` holds the series each of the filter's paths names. With `rows_max`
    /// (a `LIMIT` without a filter, see [`super::rows_needed`]) the first page reads only
    /// that many points of each column, which hold the first `rows_max` rows.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        shard: Rc<Shard>,
        outputs: Vec<Column>,
        filter: Option<&Expr>,
        range: TimeRange,
        now_ms: i64,
        filter_series: &[(PathPattern, Vec<Column>)],
        rows_max: Option<usize>,
        order: TimeOrder,
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
            descending: order == TimeOrder::Descending,
            window: None,
            done: range.is_empty(),
        })
    }

    /// A cursor over `outputs` as `select` reads them: its value filter (the series of its
    /// paths in `filter_series`), its `LIMIT` pushed down ([`super::rows_needed`]), its order.
    pub fn of_select(
        shard: &Rc<Shard>,
        outputs: Vec<Column>,
        select: &Select,
        range: TimeRange,
        now_ms: i64,
        filter_series: &[(PathPattern, Vec<Column>)],
    ) -> Result<RawCursor, Status> {
        RawCursor::open(
            shard.clone(),
            outputs,
            select.value_filter.as_ref(),
            range,
            now_ms,
            filter_series,
            super::rows_needed(select),
            select.order,
        )
    }

    /// The next page's points of every fetched column, each complete up to the same time
    /// (the series only a value filter reads included, restricted to the times where every
    /// filtered column has a point), or `None` once the range is read.
    pub async fn next_points(&mut self) -> Result<Option<Vec<PointColumn>>, Status> {
        if self.done {
            return Ok(None);
        }
        if self.descending {
            return self.next_window().await;
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
        Ok(Some(points))
    }

    /// A descending page: the points of a window `[lo, end)` at the end of what is left,
    /// sized from point counts (chunk statistics where they answer) so that no column has
    /// more than twice a page's points in it; every point of the window, in time order.
    async fn next_window(&mut self) -> Result<Option<Vec<PointColumn>>, Status> {
        let n = self.column_points as u64;
        if self.window.is_none() {
            // The range's extent: no page reads past the newest point or before the oldest.
            let extent = self.extent(TimeRange::new(self.next, self.end)).await?;
            let Some((most, oldest, newest)) = extent else {
                self.done = true;
                return Ok(None);
            };
            self.next = oldest;
            self.end = newest + 1;
            let span = i128::from(self.end) - i128::from(self.next);
            self.window = Some((span * i128::from(n) / i128::from(most.max(1))).max(1));
        }
        let mut window = self.window.unwrap_or(1);
        let mut tries = 0;
        let (lo, most) = loop {
            tries += 1;
            let lo = (i128::from(self.end) - window).max(i128::from(self.next)) as i64;
            let range = TimeRange::new(lo, self.end);
            let most = self.extent(range).await?.map_or(0, |(most, _, _)| most);
            if most > 2 * n && i128::from(self.end) - i128::from(lo) > 1 && tries < WINDOW_TRIES_MAX
            {
                let span = i128::from(self.end) - i128::from(lo);
                window = (span * i128::from(n) / i128::from(most)).max(1);
                continue;
            }
            break (lo, most);
        };
        let range = TimeRange::new(lo, self.end);
        let (mut points, counters) = self
            .shard
            .fetch_columns(&self.fetched, range, &self.filters, None)
            .await?;
        // The next window sized from this one (wider after an empty one, to cross gaps).
        let span = i128::from(self.end) - i128::from(lo);
        self.window = Some(match most {
            0 => span.saturating_mul(4),
            most => (span * i128::from(n) / i128::from(most)).max(1),
        });
        self.end = lo;
        self.done = self.end <= self.next;
        if self.bound.is_some() {
            tracing::debug!(?counters, "value filter pushed down");
            restrict_to_required(&mut points, &self.filters);
        }
        Ok(Some(points))
    }

    /// The most points a fetched column has in `range`, and the oldest and newest time of
    /// any; `None` when no column has a point there.
    async fn extent(&self, range: TimeRange) -> Result<Option<(u64, i64, i64)>, Status> {
        let counted = self.shard.count_columns(&self.fetched, range).await?;
        let most = counted.iter().map(|(count, _)| *count).max().unwrap_or(0);
        let oldest = counted
            .iter()
            .filter_map(|(_, span)| span.map(|s| s.0))
            .min();
        let newest = counted
            .iter()
            .filter_map(|(_, span)| span.map(|s| s.1))
            .max();
        Ok(oldest
            .zip(newest)
            .map(|(oldest, newest)| (most, oldest, newest)))
    }

    /// The fetched columns' paths and types, in the order of [`RawCursor::next_points`].
    pub fn columns(&self) -> &[Column] {
        &self.fetched
    }

    /// The next page of rows (perhaps empty when the filter kept none of its points), or
    /// `None` once the range is read.
    pub async fn next_rows(&mut self) -> Result<Option<Rows>, Status> {
        let Some(points) = self.next_points().await? else {
            return Ok(None);
        };
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
        for batch in align(series, 0, None).0 {
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
    /// Where the rows come from.
    source: Source,
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

/// Where a paged result's rows come from.
enum Source {
    /// Raw parts still to read, in the result's order, each with how its rows are made.
    Raw(VecDeque<(RawCursor, RowMaker)>),
    /// Windows of an aggregate `GROUP BY` time still to aggregate.
    Windows(WindowPages),
}

impl RowPages {
    /// Pages of `parts`' rows under `header`, as `select` orders, fills and pages them.
    pub fn new(
        header: ResultSet,
        parts: Vec<(RawCursor, RowMaker)>,
        select: &Select,
        first_value: usize,
    ) -> RowPages {
        RowPages::of(header, Source::Raw(parts.into()), select, first_value)
    }

    /// Pages of an aggregate `GROUP BY` time result whose first page of windows is
    /// `first` (see [`WindowPages::open`]).
    pub fn windows(windows: WindowPages, first: ResultSet, select: &Select) -> RowPages {
        let mut header = first;
        let mut rows = std::mem::take(&mut header.rows);
        let mut pages = RowPages::of(header, Source::Windows(windows), select, 1);
        pages.fill_rows(&mut rows);
        pages.take_rows(rows);
        pages
    }

    fn of(header: ResultSet, source: Source, select: &Select, first_value: usize) -> RowPages {
        let width = header.column_types.len();
        RowPages {
            header,
            source,
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

    /// Reads the next page into `ready` (through FILL, OFFSET and LIMIT); `false` once
    /// nothing is left to read.
    async fn make_more(&mut self) -> Result<bool, Status> {
        if self.left == 0 {
            self.source = Source::Raw(VecDeque::new());
            return Ok(false);
        }
        match &mut self.source {
            Source::Raw(parts) => {
                // LINEAR needs later rows; descending FILL the older rows of later pages.
                let whole_part = matches!(self.fill, Some(Fill::Linear))
                    || (self.descending && self.fill.is_some());
                let Some((cursor, make)) = parts.front_mut() else {
                    return Ok(false);
                };
                let (mut rows, part_done) = raw_rows(cursor, make, whole_part).await?;
                if part_done {
                    parts.pop_front();
                }
                if self.descending && whole_part {
                    // The part came newest window first: back into time order to fill.
                    rows.sort_by_key(|row| match row.first() {
                        Some(Some(WireValue::Int64(t))) => *t,
                        _ => i64::MIN,
                    });
                }
                self.fill_rows(&mut rows);
                if self.descending {
                    rows.reverse();
                }
                if part_done {
                    self.previous.iter_mut().for_each(|v| *v = None);
                }
                self.take_rows(rows);
            }
            Source::Windows(windows) => {
                // Rows in the result's order; a FILL here is in ascending order (see
                // `WindowPages::open`).
                let Some(mut rows) = windows.next_rows().await? else {
                    return Ok(false);
                };
                self.fill_rows(&mut rows);
                self.take_rows(rows);
            }
        }
        Ok(true)
    }

    /// `FILL` of the next rows in time order (`PREVIOUS` from the rows before them).
    fn fill_rows(&mut self, rows: &mut [Row]) {
        match &self.fill {
            None => {}
            Some(Fill::Previous) => fill_previous(rows, self.first_value, &mut self.previous),
            Some(how) => fill(how, &self.header.column_types, rows, self.first_value),
        }
    }

    /// Takes the next rows of the result (FILLed already) through OFFSET and LIMIT into
    /// `ready`.
    fn take_rows(&mut self, rows: Vec<Row>) {
        let skipped = self.skip.min(rows.len());
        self.skip -= skipped;
        let kept = (rows.len() - skipped).min(self.left);
        self.left -= kept;
        self.ready.extend(rows.into_iter().skip(skipped).take(kept));
    }
}

/// The next page of a raw part's rows, all of the part's when `whole_part` (at most
/// [`SQL_RESULT_ROWS_MAX`]), in ascending time order within each page; and whether the
/// part is read.
async fn raw_rows(
    cursor: &mut RawCursor,
    make: &RowMaker,
    whole_part: bool,
) -> Result<(Vec<Row>, bool), Status> {
    let mut rows: Vec<Row> = Vec::new();
    loop {
        let Some(page) = cursor.next_rows().await? else {
            return Ok((rows, true));
        };
        for (time, cells) in page.times.into_iter().zip(page.cells) {
            rows.push(make(time, cells)?);
        }
        if rows.len() > SQL_RESULT_ROWS_MAX {
            return Err(too_many_rows());
        }
        if !whole_part {
            return Ok((rows, false));
        }
    }
}

/// Windows aggregated per page of an aggregate `GROUP BY` time query with many windows:
/// the query runs whole for each page's windows (its `GROUP BY` range narrowed to them),
/// in the result's order, so HAVING, `GROUP BY LEVEL`, SLIMIT and expressions of aggregates
/// work as on a whole result; `RowPages` applies FILL, OFFSET and LIMIT across pages.
pub struct WindowPages {
    shard: Rc<Shard>,
    /// The query, LIMIT, OFFSET and FILL cleared (`RowPages` applies them).
    select: Select,
    /// The WHERE clause's time range, and the time it was resolved at.
    range: crate::sql::TimeRange,
    now_ms: i64,
    /// The `GROUP BY` range in the statement's terms (`[a, b)`, or `(a, b]` when not
    /// `left_closed`), and the window length.
    a: i64,
    b: i64,
    left_closed: bool,
    interval: i64,
    /// Windows not yet aggregated: `[next, end)`, numbered from `a`.
    next: i64,
    end: i64,
    descending: bool,
}

/// Windows one page aggregates.
pub const WINDOWS_PER_PAGE: i64 = 10_000;

impl WindowPages {
    /// Whether `select` is an aggregate `GROUP BY` time query of more than
    /// [`WINDOWS_PER_PAGE`] tumbling windows that can be answered in pages: not `ALIGN BY
    /// DEVICE` (rows by device first), not sliding or calendar windows, no `FILL(LINEAR)`,
    /// no `FILL` in descending order. Other aggregate queries are answered whole.
    pub fn pageable(select: &Select, range: crate::sql::TimeRange, now_ms: i64) -> bool {
        let Some(group_by) = &select.group_by else {
            return false;
        };
        let tumbling = group_by.months.is_none()
            && group_by
                .sliding_step_ms
                .is_none_or(|step| step == group_by.interval_ms);
        let fill_pages = match &select.fill {
            None => true,
            Some(Fill::Linear) => false,
            Some(_) => select.order == TimeOrder::Ascending,
        };
        if select.align_by_device || !tumbling || !fill_pages || group_by.interval_ms <= 0 {
            return false;
        }
        let (a, b, _) = Self::bounds(select, range, now_ms);
        let span = i128::from(b) - i128::from(a);
        span > i128::from(WINDOWS_PER_PAGE) * i128::from(group_by.interval_ms)
    }

    /// The `GROUP BY` range `(a, b, left_closed)` in the statement's terms: its own, or
    /// the WHERE clause's `[a, b)`.
    fn bounds(select: &Select, range: crate::sql::TimeRange, now_ms: i64) -> (i64, i64, bool) {
        match select.group_by.as_ref().and_then(|g| g.range.as_ref()) {
            Some(r) => (
                r.start.resolve(now_ms),
                r.end.resolve(now_ms),
                r.left_closed,
            ),
            None => (range.start_ms, range.end_ms, true),
        }
    }

    /// Pages for a [`WindowPages::pageable`] `select`, with its first page.
    pub async fn open(
        shard: &Rc<Shard>,
        select: &Select,
        range: crate::sql::TimeRange,
        now_ms: i64,
    ) -> Result<(WindowPages, ResultSet), Status> {
        let interval = select.group_by.as_ref().map_or(1, |g| g.interval_ms.max(1));
        let (a, b, left_closed) = Self::bounds(select, range, now_ms);
        let span = i128::from(b) - i128::from(a);
        let windows = (span + i128::from(interval) - 1) / i128::from(interval);
        check_window_count(windows.max(0) as u128)?;
        let mut narrowed = select.clone();
        narrowed.limit = None;
        narrowed.offset = None;
        narrowed.fill = None;
        let mut pages = WindowPages {
            shard: shard.clone(),
            select: narrowed,
            range,
            now_ms,
            a,
            b,
            left_closed,
            interval,
            next: 0,
            end: i64::try_from(windows.max(0)).unwrap_or(i64::MAX),
            descending: select.order == TimeOrder::Descending,
        };
        let first = pages
            .next_result()
            .await?
            .ok_or_else(|| Status::internal("a paged GROUP BY without windows"))?;
        Ok((pages, first))
    }

    /// The next page's rows, `None` once every window is answered.
    async fn next_rows(&mut self) -> Result<Option<Vec<Row>>, Status> {
        Ok(self.next_result().await?.map(|result| result.rows))
    }

    /// The next page's whole result (columns and rows).
    async fn next_result(&mut self) -> Result<Option<ResultSet>, Status> {
        if self.next >= self.end {
            return Ok(None);
        }
        let (first, last) = if self.descending {
            let last = self.end;
            let first = self.next.max(last - WINDOWS_PER_PAGE);
            self.end = first;
            (first, last)
        } else {
            let last = self.end.min(self.next + WINDOWS_PER_PAGE);
            let first = self.next;
            self.next = last;
            (first, last)
        };
        let at = |k: i64| {
            let t = i128::from(self.a) + i128::from(k) * i128::from(self.interval);
            i64::try_from(t.min(i128::from(self.b))).unwrap_or(self.b)
        };
        let mut page = self.select.clone();
        if let Some(group_by) = &mut page.group_by {
            group_by.range = Some(crate::sql::GroupByRange {
                start: crate::sql::TimeExpr::Absolute(at(first)),
                end: crate::sql::TimeExpr::Absolute(at(last)),
                left_closed: self.left_closed,
            });
        }
        let result = match &page.projection {
            crate::sql::Projection::AggregateExpressions(_) => {
                self.shard
                    .select_aggregate_expressions(&page, self.range, self.now_ms)
                    .await?
            }
            _ => {
                self.shard
                    .select_aggregates(&page, self.range, self.now_ms)
                    .await?
            }
        };
        Ok(Some(result))
    }
}
