//! Raw results read and answered a page at a time, so that a `SELECT` of any size runs in
//! bounded memory on the receiving DataNode.
//!
//! ```text
//! RawCursor   [next, end) ─ fetch_columns: the first n points of every column ─▶
//!             complete up to t* = the earliest last time among the columns that gave n
//!             ─ align into a Page of columns ─ value filter evaluated on the columns
//!             (select/vector) ─▶ the rows ≤ t*;  next = t* + 1
//!   (DESC)    [lo, end) sized by counts to at most 2n points a column ─ read whole ─▶
//!             its rows;  end = lo
//! RowPages    parts (one, or one per device) ─ cursor pages ─ row maker (Time[, Device],
//!             cells or expressions evaluated on the page's columns) ─ FILL (PREVIOUS carried across pages; LINEAR and
//!             descending fills hold back the rows that wait) ─ OFFSET/LIMIT
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
//! `FILL(LINEAR)`, and `FILL(PREVIOUS)` in descending order, need rows the part (the whole
//! result, or one device under `ALIGN BY DEVICE`) has not reached yet: only the rows that
//! wait for such a value are held back (`fill::HeldFill`), at most [`SQL_RESULT_ROWS_MAX`].

use std::collections::VecDeque;
use std::rc::Rc;

use iotdb_net::{ResultSet, Status, Value as WireValue};
use iotdb_storage::{PointColumn, TimeRange, ValueFilter};

use super::fill::HeldFill;
use super::vector::Page;
use super::{Bound, Column, Rows, bind, fill, fill_previous, push_down, restrict_to_required};
use crate::datanode::Shard;
use crate::datanode::query::check_window_count;
use crate::datanode::sql_exec::{SQL_RESULT_ROWS_MAX, calendar_windows, too_many_rows};
use crate::sql::time::add_months_millis;
use crate::sql::{Expr, Fill, PathPattern, Select, TimeOrder};

/// Points one page of a raw query reads over all its columns (each column reads this many
/// divided by the column count, at least [`COLUMN_PAGE_POINTS_MIN`]).
pub const PAGE_POINTS: usize = 1 << 16;

/// Fewest points a column reads per page, however many columns a query has.
pub const COLUMN_PAGE_POINTS_MIN: usize = 64;

/// One row of a result: one cell per column.
pub type Row = Vec<Option<WireValue>>;

/// Turns a page of the fetched output columns into the result's rows (`Time`, perhaps
/// `Device`, then the value columns).
pub type RowMaker = Box<dyn Fn(Page) -> Result<Vec<Row>, Status>>;

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

    /// The next page of the output columns' rows where the value filter holds (perhaps
    /// none), aligned on time and filtered as columns, or `None` once the range is read.
    pub async fn next_page(&mut self) -> Result<Option<Page>, Status> {
        let Some(points) = self.next_points().await? else {
            return Ok(None);
        };
        let mut page = Page::align(points);
        if let Some(bound) = &self.bound {
            let passing = bound.evaluate(&page).truth();
            page.retain(&passing);
        }
        // A row that passes is kept even when every output cell is null (the filter may
        // read only other series), as IoTDB does.
        page.columns.truncate(self.output_count);
        Ok(Some(page))
    }

    /// The next page of rows as cells (see [`RawCursor::next_page`]).
    pub async fn next_rows(&mut self) -> Result<Option<Rows>, Status> {
        let Some(page) = self.next_page().await? else {
            return Ok(None);
        };
        let cells = page.rows();
        Ok(Some(Rows {
            times: page.times,
            cells,
        }))
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
    /// `FILL(PREVIOUS)`'s latest value of each column in the current part, and its time.
    previous: Vec<Option<(i64, WireValue)>>,
    /// A fill that holds back the rows waiting for later pages (`FILL(LINEAR)`, a
    /// descending `FILL(PREVIOUS)`).
    held: Option<HeldFill>,
    /// Rows still to skip (`OFFSET`), rows still to answer (`LIMIT`).
    skip: usize,
    left: usize,
    /// Rows made and not yet answered.
    ready: VecDeque<Row>,
}

/// Where a paged result's rows come from.
enum Source {
    /// Raw parts still to read, in the result's order, each with how its rows are made.
    Raw(VecDeque<RawPart>),
    /// Windows of an aggregate `GROUP BY` time still to aggregate.
    Windows(WindowPages),
}

/// One part of a raw result (the whole result, or one device under `ALIGN BY DEVICE`).
pub struct RawPart {
    pub cursor: RawCursor,
    /// Turns the cursor's rows into the result's.
    pub make: RowMaker,
    /// The value columns the part never fills (a device's missing series): a descending
    /// `FILL(PREVIOUS)` does not hold rows back for them.
    pub lacking: Vec<usize>,
}

impl RawPart {
    /// A part that may fill every column.
    pub fn whole(cursor: RawCursor, make: RowMaker) -> RawPart {
        RawPart {
            cursor,
            make,
            lacking: Vec::new(),
        }
    }
}

/// Rows of one part of a result (the whole result, or one device under `ALIGN BY
/// DEVICE`), and whether the part ends with them.
type PartRows = (Vec<Row>, bool);

impl RowPages {
    /// Pages of `parts`' rows under `header`, as `select` orders, fills and pages them.
    pub fn new(
        header: ResultSet,
        parts: Vec<RawPart>,
        select: &Select,
        first_value: usize,
    ) -> RowPages {
        RowPages::of(header, Source::Raw(parts.into()), select, first_value)
    }

    /// Pages of an aggregate `GROUP BY` time result (see [`WindowPages::open`]).
    pub fn windows(windows: WindowPages, select: &Select) -> RowPages {
        let header = windows.header.clone();
        let first_value = windows.first_value();
        RowPages::of(header, Source::Windows(windows), select, first_value)
    }

    fn of(header: ResultSet, source: Source, select: &Select, first_value: usize) -> RowPages {
        let width = header.column_types.len();
        let descending = select.order == TimeOrder::Descending;
        let held = select
            .fill
            .as_ref()
            .and_then(|how| HeldFill::new(how, &header.column_types, first_value, descending));
        RowPages {
            header,
            source,
            fill: select.fill.clone(),
            first_value,
            descending,
            previous: vec![None; width],
            held,
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
        // Each part's rows in time order (a raw page is; windows come in the result's).
        let parts: Vec<PartRows> = match &mut self.source {
            Source::Raw(parts) => {
                let Some(part) = parts.front_mut() else {
                    return Ok(false);
                };
                if let Some(held) = &mut self.held {
                    held.set_lacking(&part.lacking);
                }
                let (rows, part_done) = raw_rows(&mut part.cursor, &part.make).await?;
                if part_done {
                    parts.pop_front();
                }
                vec![(rows, part_done)]
            }
            Source::Windows(windows) => {
                let Some(mut parts) = windows.next_parts().await? else {
                    return Ok(false);
                };
                if self.descending {
                    parts.iter_mut().for_each(|(rows, _)| rows.reverse());
                }
                parts
            }
        };
        for (rows, part_done) in parts {
            let mut rows = self.fill_part(rows, part_done)?;
            if self.descending {
                rows.reverse();
            }
            self.take_rows(rows);
        }
        Ok(true)
    }

    /// `FILL` of a part's next rows in time order (`PREVIOUS` from the rows before them):
    /// the rows that can be answered now, in time order.
    fn fill_part(&mut self, mut rows: Vec<Row>, part_done: bool) -> Result<Vec<Row>, Status> {
        if let Some(held) = &mut self.held {
            return held.push(rows, part_done);
        }
        match &self.fill {
            None => {}
            Some(Fill::Previous(within_ms)) => {
                fill_previous(&mut rows, self.first_value, *within_ms, &mut self.previous)
            }
            Some(how) => fill(how, &self.header.column_types, &mut rows, self.first_value),
        }
        if part_done {
            self.previous.iter_mut().for_each(|v| *v = None);
        }
        Ok(rows)
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

/// The next page of a raw part's rows, in ascending time order, and whether the part is
/// read.
async fn raw_rows(cursor: &mut RawCursor, make: &RowMaker) -> Result<PartRows, Status> {
    let Some(page) = cursor.next_page().await? else {
        return Ok((Vec::new(), true));
    };
    Ok((make(page)?, false))
}

/// Windows aggregated per page of an aggregate `GROUP BY` time query with many windows (or
/// any number under `ALIGN BY DEVICE`): the query runs whole for each page's windows, its
/// `GROUP BY` range narrowed to them, so HAVING, `GROUP BY LEVEL`, SLIMIT and expressions
/// of aggregates work as on a whole result; `RowPages` applies FILL, OFFSET and LIMIT
/// across pages.
///
/// ```text
/// windows k = 0..count: [start + k·step, +interval) clipped to end (or calendar months)
/// page      windows [first, last): GROUP BY [start(first), end(last - 1)), left-closed
///           ─ aggregate ─ drop windows starting at or after start(last) (overlapping
///           sliding windows the narrowed range adds) ─ label (right ends if left-open) ─▶
/// ALIGN BY DEVICE: device after device (path order), each a part of its own; several
///           whole devices a page when they have few windows
/// ```
///
/// A page's windows are the statement's windows because each starts where the statement's
/// does: fixed windows are `start + k·step`; a page of calendar windows starts only at a
/// window whose day of the month is the statement's (months added to it then clamp alike).
pub struct WindowPages {
    shard: Rc<Shard>,
    /// The query, LIMIT, OFFSET and FILL cleared (`RowPages` applies them).
    select: Select,
    /// The WHERE clause's time range, and the time it was resolved at.
    range: crate::sql::TimeRange,
    now_ms: i64,
    windows: Windows,
    /// A left-open range `((a, b], i)`: each row shows its window's right end (IoTDB).
    right_labels: bool,
    /// Under `ALIGN BY DEVICE` the devices in path order, each answered whole before the
    /// next, and the first of those not answered yet.
    devices: Option<Vec<String>>,
    device: usize,
    /// Windows of the current part not yet aggregated: `[next, end)`.
    next: i64,
    end: i64,
    descending: bool,
    /// The result's columns.
    header: ResultSet,
    /// The first page's parts, aggregated by [`WindowPages::open`].
    first: Option<Vec<PartRows>>,
}

/// Windows one page aggregates.
pub const WINDOWS_PER_PAGE: i64 = 10_000;

/// The windows of a `GROUP BY` time clause, window `k` as `[start, end)` in whole
/// milliseconds (a left-open `(a, b]` shifted to `[a + 1, b + 1)`).
enum Windows {
    /// `[start + k·step, start + k·step + interval)` clipped to `end`.
    Fixed {
        start: i64,
        end: i64,
        interval: i64,
        step: i64,
    },
    /// Natural months (at most `CALENDAR_WINDOWS_MAX`): each window, and the statement's
    /// start and step in months.
    Calendar {
        windows: Vec<(i64, i64)>,
        start: i64,
        step: i64,
    },
}

impl Windows {
    /// The windows of `select`'s `GROUP BY` over `[start, end)`.
    fn of(select: &Select, start: i64, end: i64) -> Result<Windows, Status> {
        let group_by = select
            .group_by
            .as_ref()
            .ok_or_else(|| Status::internal("paged windows without GROUP BY"))?;
        if let Some(months) = group_by.months {
            return Ok(Windows::Calendar {
                windows: calendar_windows(start, end, months)?,
                start,
                step: i64::from(months.step),
            });
        }
        let interval = group_by.interval_ms;
        let step = group_by.sliding_step_ms.unwrap_or(interval);
        if interval <= 0 || step <= 0 {
            return Err(Status::illegal_parameter(
                "GROUP BY interval and sliding step must be positive",
            ));
        }
        let windows = Windows::Fixed {
            start,
            end,
            interval,
            step,
        };
        // The limits of the whole query (sliding windows are aggregated in panes).
        check_window_count(windows.count() as u128)?;
        if step != interval {
            let (mut pane, mut other) = (interval, step);
            while other != 0 {
                (pane, other) = (other, pane % other);
            }
            check_window_count(span_windows(start, end, pane) as u128)?;
        }
        Ok(windows)
    }

    fn count(&self) -> i64 {
        match self {
            Windows::Fixed {
                start, end, step, ..
            } => span_windows(*start, *end, *step),
            Windows::Calendar { windows, .. } => windows.len() as i64,
        }
    }

    /// Window `k`'s `[start, end)`.
    fn window(&self, k: i64) -> (i64, i64) {
        match self {
            Windows::Fixed {
                start,
                end,
                interval,
                step,
            } => {
                let from = i128::from(*start) + i128::from(k) * i128::from(*step);
                let to = (from + i128::from(*interval)).min(i128::from(*end));
                (from as i64, to as i64)
            }
            Windows::Calendar { windows, .. } => windows[k as usize],
        }
    }

    /// The end of the window starting at `start`.
    fn end_of(&self, start: i64) -> i64 {
        match self {
            Windows::Fixed { end, interval, .. } => start.saturating_add(*interval).min(*end),
            Windows::Calendar { windows, .. } => {
                let k = windows.partition_point(|w| w.0 < start);
                windows.get(k).map_or(start, |w| w.1)
            }
        }
    }

    /// Whether a page may start at window `k`: the windows a narrowed range starting there
    /// makes are the statement's.
    fn starts_page(&self, k: i64) -> bool {
        match self {
            Windows::Fixed { .. } => true,
            Windows::Calendar {
                windows,
                start,
                step,
            } => {
                let from = windows[k as usize].0;
                add_months_millis(from, -k * step) == Some(*start)
            }
        }
    }
}

/// How many windows starting every `step` from `start` begin before `end`.
fn span_windows(start: i64, end: i64, step: i64) -> i64 {
    let span = (i128::from(end) - i128::from(start)).max(0);
    let step = i128::from(step.max(1));
    i64::try_from((span + step - 1) / step).unwrap_or(i64::MAX)
}

impl WindowPages {
    /// Whether `select` is an aggregate `GROUP BY` time query answered in pages: under
    /// `ALIGN BY DEVICE` always (device after device), otherwise past [`WINDOWS_PER_PAGE`]
    /// windows. A query whose `GROUP BY` range is missing or empty is answered whole (and
    /// refused there).
    pub fn pageable(select: &Select, range: crate::sql::TimeRange, now_ms: i64) -> bool {
        let Some(group_by) = &select.group_by else {
            return false;
        };
        let (a, b, left_closed) = Self::bounds(select, range, now_ms);
        if a == i64::MIN || b == i64::MAX || a >= b {
            return false;
        }
        if group_by.months.is_some() && group_by.range.is_none() {
            return false;
        }
        if select.align_by_device {
            return select.group_by_level.is_none();
        }
        let (start, end) = Self::shifted(a, b, left_closed);
        Windows::of(select, start, end).is_ok_and(|w| w.count() > WINDOWS_PER_PAGE)
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

    /// `[a, b)`, or `(a, b]` as the whole milliseconds `[a + 1, b + 1)`.
    fn shifted(a: i64, b: i64, left_closed: bool) -> (i64, i64) {
        if left_closed {
            (a, b)
        } else {
            (a.saturating_add(1), b.saturating_add(1))
        }
    }

    /// Pages for a [`WindowPages::pageable`] `select`; the first page is aggregated here,
    /// so that an error in the query is answered before any row.
    pub async fn open(
        shard: &Rc<Shard>,
        select: &Select,
        range: crate::sql::TimeRange,
        now_ms: i64,
    ) -> Result<WindowPages, Status> {
        let (a, b, left_closed) = Self::bounds(select, range, now_ms);
        let (start, end) = Self::shifted(a, b, left_closed);
        let windows = Windows::of(select, start, end)?;
        let devices = if select.align_by_device {
            Some(shard.aggregate_devices(select).await?)
        } else {
            None
        };
        let mut narrowed = select.clone();
        narrowed.limit = None;
        narrowed.offset = None;
        narrowed.fill = None;
        let mut pages = WindowPages {
            shard: shard.clone(),
            select: narrowed,
            range,
            now_ms,
            end: windows.count(),
            windows,
            right_labels: !left_closed,
            devices,
            device: 0,
            next: 0,
            descending: select.order == TimeOrder::Descending,
            header: ResultSet::new(&[]),
            first: None,
        };
        let (header, first) = pages.next_result().await?;
        pages.header = header;
        pages.first = Some(first);
        Ok(pages)
    }

    /// The first value column: after `Time` (and `Device`).
    fn first_value(&self) -> usize {
        1 + usize::from(self.devices.is_some())
    }

    /// The next page's parts in the result's order, `None` once every window is answered.
    async fn next_parts(&mut self) -> Result<Option<Vec<PartRows>>, Status> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let devices_left = self.devices.as_ref().map_or(1, Vec::len) > self.device;
        if !devices_left {
            return Ok(None);
        }
        Ok(Some(self.next_result().await?.1))
    }

    /// The next page's columns and parts (none when no device is left).
    async fn next_result(&mut self) -> Result<(ResultSet, Vec<PartRows>), Status> {
        let count = self.windows.count();
        if let Some(devices) = &self.devices
            && (count <= WINDOWS_PER_PAGE || self.device >= devices.len())
        {
            // Whole devices, as many as a page of windows holds (none: just the columns).
            let per_page = usize::try_from(WINDOWS_PER_PAGE / count.max(1)).unwrap_or(1);
            let to = self
                .device
                .saturating_add(per_page.max(1))
                .min(devices.len());
            let some = devices[self.device.min(to)..to].to_vec();
            self.device = to;
            let mut result = self.aggregate(0, count, Some(&some)).await?;
            let rows = std::mem::take(&mut result.rows);
            return Ok((result, by_device(rows)));
        }
        let (first, last) = self.next_block();
        let device = self
            .devices
            .as_ref()
            .and_then(|devices| devices.get(self.device..=self.device))
            .map(<[String]>::to_vec);
        let mut result = self.aggregate(first, last, device.as_deref()).await?;
        let part_done = self.next >= self.end;
        if part_done {
            // The next device's windows (none follow without ALIGN BY DEVICE).
            self.device += 1;
            (self.next, self.end) = (0, count);
        }
        let rows = std::mem::take(&mut result.rows);
        Ok((result, vec![(rows, part_done)]))
    }

    /// The next page's windows `[first, last)` of the current part, in the result's order.
    fn next_block(&mut self) -> (i64, i64) {
        if self.descending {
            let last = self.end;
            let mut first = self.next.max(last - WINDOWS_PER_PAGE);
            while first > self.next && !self.windows.starts_page(first) {
                first -= 1;
            }
            self.end = first;
            (first, last)
        } else {
            let first = self.next;
            let mut last = self.end.min(first + WINDOWS_PER_PAGE);
            let mut k = last;
            while k > first && k < self.end && !self.windows.starts_page(k) {
                k -= 1;
            }
            if k == first {
                k = last;
                while k < self.end && !self.windows.starts_page(k) {
                    k += 1;
                }
            }
            last = k;
            self.next = last;
            (first, last)
        }
    }

    /// The whole query over windows `[first, last)` (of `devices` only, under `ALIGN BY
    /// DEVICE`), labelled as the statement labels them.
    async fn aggregate(
        &self,
        first: i64,
        last: i64,
        devices: Option<&[String]>,
    ) -> Result<ResultSet, Status> {
        let (from, _) = self.windows.window(first);
        let (_, to) = self.windows.window(last - 1);
        let mut page = self.select.clone();
        if let Some(group_by) = &mut page.group_by {
            group_by.range = Some(crate::sql::GroupByRange {
                start: crate::sql::TimeExpr::Absolute(from),
                end: crate::sql::TimeExpr::Absolute(to),
                left_closed: true,
            });
        }
        let (range, now_ms) = (self.range, self.now_ms);
        let mut result = match (&page.projection, devices) {
            (crate::sql::Projection::AggregateExpressions(_), _) => {
                self.shard
                    .select_aggregate_expressions(&page, range, now_ms, devices)
                    .await?
            }
            (_, Some(_)) => {
                self.shard
                    .select_aggregates_by_device(&page, range, now_ms, devices)
                    .await?
            }
            (_, None) => self.shard.select_aggregates(&page, range, now_ms).await?,
        };
        // Overlapping sliding windows that start after the page's belong to the next page.
        let next_start = (last < self.windows.count()).then(|| self.windows.window(last).0);
        result.rows.retain(|row| match (row.first(), next_start) {
            (Some(Some(WireValue::Int64(t))), Some(next)) => *t < next,
            _ => true,
        });
        if self.right_labels {
            for row in &mut result.rows {
                if let Some(Some(WireValue::Int64(t))) = row.first_mut() {
                    *t = self.windows.end_of(*t) - 1;
                }
            }
        }
        Ok(result)
    }
}

/// Rows of whole devices (their `Device` column second) cut into one part per device.
fn by_device(rows: Vec<Row>) -> Vec<PartRows> {
    let mut parts: Vec<PartRows> = Vec::new();
    for row in rows {
        match parts.last_mut() {
            Some((part, _)) if part.last().map(|r| &r[1]) == Some(&row[1]) => part.push(row),
            _ => parts.push((vec![row], true)),
        }
    }
    parts
}
