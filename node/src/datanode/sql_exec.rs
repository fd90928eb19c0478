//! SQL on the receiving shard: parse, then run data statements here (they need the data
//! path) and send administrative ones to the control plane.
//!
//! ```text
//! text ─ sql::parse ─▶ Statement ─┬─ INSERT      ─▶ one tablet ─▶ Shard::insert (same path as the SDK)
//!                                 ├─ SELECT      ─▶ MatchSeries (control plane) ─▶ raw: RowPages
//!                                 │                 (select/pages, a page at a time) /
//!                                 │                 aggregates, LAST ─▶ ResultSet
//!                                 ├─ DELETE FROM ─▶ MatchSeries ─▶ Shard::delete_data (every region)
//!                                 ├─ FLUSH       ─▶ Shard::flush_all
//!                                 ├─ SHOW/COUNT TIMESERIES|DEVICES ─▶ SchemaRequest::Show
//!                                 │                 (every schema leader's rows, merged)
//!                                 └─ the rest    ─▶ control plane (admin.rs)
//! ```
//!
//! Result sets follow IoTDB's columns: raw and windowed queries start with `Time`, an
//! aggregate without `GROUP BY` has no `Time` column, `SELECT LAST` answers
//! `Time, Timeseries, Value, DataType`.
//!
//! Type inference for series an `INSERT` creates follows IoTDB's defaults
//! (`boolean_string_infer_type=BOOLEAN`, `integer_string_infer_type=DOUBLE`,
//! `floating_string_infer_type=DOUBLE`, strings `TEXT`): an integer literal creates a DOUBLE
//! series, as in IoTDB, so that a later `1.5` into the same series is not a type error.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use iotdb_net::{
    AggregateQuery, ColumnBatch, DataType as WireType, GroupByWindow, ResponsePayload, ResultSet,
    SeriesSelection, Status, StatusCode, Value as WireValue,
};
use iotdb_runtime::ShardId;
use iotdb_storage::{self as storage, DataType, SeriesKey};

use super::control::{ControlAnswer, ControlRequest};
use super::convert;
use super::query::{FilteredFold, Partial};
use super::select::{RowPages, WindowPages};
use super::write::{PartialFailure, Payload};
use super::{Message, Shard};
use crate::cluster::protocol::{SchemaRequest, SchemaView};
use crate::sql::{
    self, Aggregate, AggregateFunction, Insert, LastSortKey, Literal, PathPattern, Projection,
    Select, Statement, TimeFilter, TimeOrder, TimeRange,
};

/// Most rows of a SQL result built or gathered whole (`Shard::execute_sql`), and most rows
/// a streamed `FILL` holds back while they wait for a later value; a result answered in
/// pages (`select::RowPages`) has no row limit.
pub const SQL_RESULT_ROWS_MAX: usize = 1_000_000;

/// Most rows one `INSERT` statement may carry: it becomes one tablet in one frame.
pub const SQL_INSERT_ROWS_MAX: usize = 100_000;

/// A series a pattern matched: device, measurement, type.
type Matched = (String, String, DataType);

/// One device's part of an aggregate `ALIGN BY DEVICE`: the device, its rows' times, and
/// each output column's cells (`None`: the device has no such series).
type DeviceBlock = (String, Vec<i64>, Vec<Option<Vec<Option<WireValue>>>>);

/// What a SQL statement answers: a whole result, or a raw `SELECT`'s result a page at a
/// time (any size, in bounded memory).
pub enum SqlAnswer {
    Whole(ResultSet),
    Pages(RowPages),
}

impl SqlAnswer {
    /// The whole result; a paged one is refused past [`SQL_RESULT_ROWS_MAX`] rows.
    pub async fn gather(self) -> Result<ResultSet, Status> {
        match self {
            SqlAnswer::Whole(result) => Ok(result),
            SqlAnswer::Pages(pages) => pages.gather().await,
        }
    }
}

impl Shard {
    /// Executes one SQL statement and answers its whole result (see
    /// [`SQL_RESULT_ROWS_MAX`]; [`Shard::open_sql`] answers any size a page at a time).
    pub async fn execute_sql(self: &Rc<Self>, text: &str) -> Result<ResultSet, Status> {
        self.open_sql(text).await?.gather().await
    }

    /// Executes one SQL statement; a raw `SELECT` answers its rows a page at a time.
    pub async fn open_sql(self: &Rc<Self>, text: &str) -> Result<SqlAnswer, Status> {
        let statement = statement_of(text)?;
        if let Statement::Select(select) = statement {
            return self.execute_select(select).await;
        }
        self.execute_statement(statement)
            .await
            .map(SqlAnswer::Whole)
    }

    /// Executes one statement other than `SELECT`.
    async fn execute_statement(self: &Rc<Self>, statement: Statement) -> Result<ResultSet, Status> {
        match statement {
            Statement::Flush { .. } => {
                self.flush_all().await?;
                Ok(empty())
            }
            Statement::Insert(insert) => {
                self.execute_insert(insert).await?;
                Ok(empty())
            }
            Statement::Select(select) => self.execute_select(select).await?.gather().await,
            Statement::DeleteData {
                patterns,
                time_filter,
            } => {
                self.execute_delete(patterns, time_filter).await?;
                Ok(empty())
            }
            Statement::ShowTimeseries { .. }
            | Statement::ShowDevices { .. }
            | Statement::CountTimeseries { .. }
            | Statement::CountDevices { .. } => {
                let (view, pattern) = SchemaView::of(&statement).expect("a schema view statement");
                match self
                    .control(ControlRequest::Schema(SchemaRequest::Show {
                        view,
                        pattern,
                    }))
                    .await?
                {
                    ControlAnswer::ResultSet(result) => Ok(result),
                    other => Err(Status::internal(format!(
                        "the control plane answered a schema view with {other:?}"
                    ))),
                }
            }
            Statement::ShowRegions { .. } => {
                let sizes = self.all_region_sizes().await;
                self.control(ControlRequest::ReportRegionSizes(sizes))
                    .await?;
                self.admin(statement).await
            }
            Statement::CreateTimeseries { .. }
            | Statement::CreateAlignedTimeseries { .. }
            | Statement::DeleteTimeseries { .. } => self.execute_schema_change(&statement).await,
            admin => self.admin(admin).await,
        }
    }

    /// `CREATE [ALIGNED] TIMESERIES` (on the node serving the device's SchemaRegion,
    /// wherever it is) and `DELETE TIMESERIES` (on every node serving one).
    async fn execute_schema_change(
        self: &Rc<Self>,
        statement: &Statement,
    ) -> Result<ResultSet, Status> {
        let request = super::admin::schema_change(statement)
            .ok_or_else(|| Status::internal("not a schema change"))??;
        let count = match self.control(ControlRequest::Schema(request)).await? {
            ControlAnswer::Count(count) => count,
            other => {
                return Err(Status::internal(format!(
                    "the control plane answered a schema change with {other:?}"
                )));
            }
        };
        match statement {
            Statement::CreateTimeseries { path, .. } if count == 0 => Err(Status::new(
                StatusCode::TIMESERIES_ALREADY_EXIST,
                format!("timeseries {path} already exists"),
            )),
            Statement::DeleteTimeseries { patterns } if count == 0 => {
                let shown: Vec<String> = patterns.iter().map(ToString::to_string).collect();
                Err(Status::new(
                    StatusCode::PATH_NOT_EXIST,
                    format!("path {} does not exist", shown.join(", ")),
                ))
            }
            _ => Ok(empty()),
        }
    }

    async fn admin(self: &Rc<Self>, statement: Statement) -> Result<ResultSet, Status> {
        match self.control(ControlRequest::Statement(statement)).await? {
            ControlAnswer::ResultSet(result) => Ok(result),
            _ => Ok(empty()),
        }
    }

    /// The series each pattern matches, sorted by path within a pattern.
    async fn match_series(&self, patterns: Vec<PathPattern>) -> Result<Vec<Vec<Matched>>, Status> {
        match self
            .control(ControlRequest::Schema(SchemaRequest::MatchSeries {
                patterns,
            }))
            .await?
        {
            ControlAnswer::Series(series) => Ok(series),
            _ => Err(Status::internal(
                "the control plane answered MatchSeries wrongly",
            )),
        }
    }

    /// The distinct series of `patterns` in pattern order (none is no error: IoTDB answers a
    /// query that matches nothing with an empty result and its header).
    pub(super) async fn matches(&self, patterns: Vec<PathPattern>) -> Result<Vec<Matched>, Status> {
        let mut out: Vec<Matched> = Vec::new();
        // Seen (device, measurement) pairs: a linear search of `out` made a query over
        // 10,000 series spend most of its time comparing paths.
        let mut seen: std::collections::HashSet<(String, String)> =
            std::collections::HashSet::new();
        for matched in self.match_series(patterns).await? {
            for series in matched {
                if seen.insert((series.0.clone(), series.1.clone())) {
                    out.push(series);
                }
            }
        }
        Ok(out)
    }

    /// The distinct series of `patterns` in pattern order; 508 when none matches.
    async fn require_matches(&self, patterns: Vec<PathPattern>) -> Result<Vec<Matched>, Status> {
        let shown: Vec<String> = patterns.iter().map(ToString::to_string).collect();
        let out = self.matches(patterns).await?;
        if out.is_empty() {
            return Err(Status::new(
                StatusCode::PATH_NOT_EXIST,
                format!("path {} does not exist", shown.join(", ")),
            ));
        }
        Ok(out)
    }

    /// `INSERT INTO device(time, m...) VALUES (...)`: one tablet through the SDK's write path,
    /// so the schema check (and series creation) happens before anything is written.
    /// Runs an `INSERT` (also the path of IoTDB's string records, `rpc::thrift`).
    pub(crate) async fn execute_insert(self: &Rc<Self>, insert: Insert) -> Result<(), Status> {
        if insert.rows.len() > SQL_INSERT_ROWS_MAX {
            return Err(Status::illegal_parameter(format!(
                "an INSERT statement may carry at most {SQL_INSERT_ROWS_MAX} rows"
            )));
        }
        let device = insert.device.to_string();
        for (index, name) in insert.measurements.iter().enumerate() {
            if insert.measurements[..index].contains(name) {
                return Err(Status::illegal_parameter(format!(
                    "measurement {name} appears twice in the INSERT"
                )));
            }
        }
        let existing = match self
            .control(ControlRequest::Schema(SchemaRequest::LookupSeries {
                device: device.clone(),
                measurements: insert.measurements.clone(),
            }))
            .await?
        {
            ControlAnswer::MaybeTypes(types) => types,
            _ => {
                return Err(Status::internal(
                    "the control plane answered LookupSeries wrongly",
                ));
            }
        };
        let mut types = Vec::with_capacity(insert.measurements.len());
        for (column, known) in existing.iter().enumerate() {
            let data_type = match known {
                Some(t) => *t,
                None => insert
                    .rows
                    .iter()
                    .find_map(|row| inferred_type(&row.values[column]))
                    .unwrap_or(DataType::Double),
            };
            types.push(data_type);
        }
        let now_ms = now_ms();
        // Sorted by time, the last of equal times kept: IoTDB's newest-write-wins within a
        // statement, and the write path sees an in-order tablet.
        let mut rows: Vec<(i64, &[Literal])> = insert
            .rows
            .iter()
            .map(|row| (row.time.resolve(now_ms), row.values.as_slice()))
            .collect();
        rows.sort_by_key(|(time, _)| *time);
        let mut deduplicated: Vec<(i64, &[Literal])> = Vec::with_capacity(rows.len());
        for row in rows {
            match deduplicated.last_mut() {
                Some(last) if last.0 == row.0 => *last = row,
                _ => deduplicated.push(row),
            }
        }
        // The engine's tablet, built directly: a null cell (or one refused by a partial
        // insert) holds its type's placeholder and is marked in the column's bitmap.
        let rows = deduplicated.len();
        let mut columns: Vec<storage::TabletColumn> = insert
            .measurements
            .iter()
            .zip(&types)
            .map(|(name, data_type)| storage::TabletColumn {
                measurement: Arc::from(name.as_str()),
                values: storage::Values::with_capacity(*data_type, rows),
                nulls: None,
            })
            .collect();
        let partial = self.shared.config.enable_partial_insert;
        let mut failures: Vec<PartialFailure> = Vec::new();
        let mut timestamps = Vec::with_capacity(rows);
        for (row, (time, literals)) in deduplicated.into_iter().enumerate() {
            timestamps.push(time);
            for ((literal, column), name) in
                literals.iter().zip(&mut columns).zip(&insert.measurements)
            {
                let data_type = column.values.data_type();
                let value = match literal_value(literal, data_type) {
                    Ok(value) => value,
                    Err(found) => {
                        let status = Status::new(
                            StatusCode::DATA_TYPE_MISMATCH,
                            format!(
                                "data type of {device}.{name} is {}, but the value {found} was given",
                                data_type.name()
                            ),
                        );
                        if !partial {
                            return Err(status);
                        }
                        // IoTDB's partial insert: this cell is left out, the row's others stay.
                        failures.push(PartialFailure::new(name, status));
                        None
                    }
                };
                column
                    .push_cell(row, rows, value.map(convert::to_storage_value))
                    .map_err(|actual| {
                        Status::internal(format!(
                            "a {} value for {device}.{name}, a {} series",
                            actual.name(),
                            data_type.name()
                        ))
                    })?;
            }
        }
        let tablet = storage::Tablet {
            device: Arc::from(device.as_str()),
            timestamps,
            columns,
        };
        let payload = Payload::Tablet {
            tablet,
            aligned: insert.aligned,
        };
        self.insert_payloads(vec![payload], failures).await
    }

    async fn execute_select(self: &Rc<Self>, select: Select) -> Result<SqlAnswer, Status> {
        let now = now_ms();
        let range = select
            .time_filter
            .as_ref()
            .map_or(TimeRange::ALL, |f| f.resolve(now));
        match &select.projection {
            Projection::Raw(_) => {
                if select.group_by.is_some() {
                    return Err(Status::new(
                        StatusCode::SQL_PARSE_ERROR,
                        "GROUP BY time needs aggregate functions in the select list",
                    ));
                }
                let range = iotdb_storage::TimeRange::new(range.start_ms, range.end_ms);
                Ok(SqlAnswer::Pages(
                    self.select_raw_rows(&select, range, now).await?,
                ))
            }
            Projection::Computed(_) => {
                if select.group_by.is_some() || select.group_by_level.is_some() {
                    return Err(Status::new(
                        StatusCode::SQL_PARSE_ERROR,
                        "GROUP BY needs aggregate functions in the select list",
                    ));
                }
                let range = iotdb_storage::TimeRange::new(range.start_ms, range.end_ms);
                Ok(SqlAnswer::Pages(
                    self.select_computed(&select, range, now).await?,
                ))
            }
            Projection::Aggregates(_) | Projection::AggregateExpressions(_)
                if WindowPages::pageable(&select, range, now) =>
            {
                let windows = WindowPages::open(self, &select, range, now).await?;
                Ok(SqlAnswer::Pages(RowPages::windows(windows, &select)))
            }
            Projection::Aggregates(_) => if select.align_by_device {
                self.select_aggregates_by_device(&select, range, now, None)
                    .await
            } else {
                self.select_aggregates(&select, range, now).await
            }
            .map(SqlAnswer::Whole),
            Projection::AggregateExpressions(_) => self
                .select_aggregate_expressions(&select, range, now, None)
                .await
                .map(SqlAnswer::Whole),
            Projection::Last(_) => {
                if select.value_filter.is_some() {
                    return Err(unsupported("SELECT LAST takes a time filter only"));
                }
                self.select_last(&select, range).await.map(SqlAnswer::Whole)
            }
        }
    }

    pub(super) async fn select_aggregates(
        self: &Rc<Self>,
        select: &Select,
        range: TimeRange,
        now: i64,
    ) -> Result<ResultSet, Status> {
        let Projection::Aggregates(aggregates) = &select.projection else {
            return Err(Status::internal("not an aggregate projection"));
        };
        let group_by = match &select.group_by {
            None => None,
            Some(group_by) => Some(group_by_window(group_by, range)?),
        };
        let left_open = match &select.group_by {
            Some(sql::GroupByTime {
                range: Some(window_range),
                ..
            }) => !window_range.left_closed,
            _ => false,
        };
        let mut items: Vec<Vec<Matched>> = Vec::with_capacity(aggregates.len());
        for aggregate in aggregates {
            let patterns: Vec<PathPattern> = select
                .from
                .iter()
                .map(|from| from.join(&aggregate.path))
                .collect();
            items.push(self.matches(patterns).await?);
        }
        // A value filter: the rows it keeps (read raw, filtered on the regions' chunk
        // statistics where they can) folded for every item in one pass.
        let mut folded = match &select.value_filter {
            Some(_) => {
                let filter_series = self.resolve_filter_paths(select).await?;
                let folded = self
                    .filtered_partials(select, &items, range, group_by, now, &filter_series)
                    .await?;
                Some(folded.into_iter())
            }
            None => None,
        };
        let mut result: Option<ResultSet> = None;
        for (index, (aggregate, matched)) in aggregates.iter().zip(items).enumerate() {
            let aggregation = wire_aggregation(aggregate.function)?;
            let folded = folded.as_mut().and_then(Iterator::next);
            if matched.is_empty() {
                // IoTDB drops an item that matches no series from the header.
                continue;
            }
            let alias = select.aliases.get(index).cloned().flatten();
            let paths = column_order(&matched);
            let groups = select
                .group_by_level
                .as_ref()
                .map(|levels| level_groups(&paths, levels, counts_every_measurement(aggregate)));
            let outputs = groups.as_ref().map_or(paths.len(), |g| g.names.len());
            if alias.is_some() && outputs > 1 {
                return Err(Status::illegal_parameter(format!(
                    "alias '{}' can only be matched with one time series",
                    alias.unwrap_or_default()
                )));
            }
            let query = AggregateQuery {
                series: selections(&matched),
                start_time: range.start_ms,
                end_time: range.end_ms,
                aggregations: vec![aggregation],
                group_by,
            };
            let shape = super::query::Shape {
                step_ms: select.group_by.as_ref().and_then(|g| g.sliding_step_ms),
                groups,
                folded,
            };
            let names_of = shape.groups.as_ref().map_or(paths, |g| g.names.clone());
            let batch = self.aggregate_batch(query, shape, select).await?;
            let names: Vec<String> = names_of
                .iter()
                .map(|path| {
                    alias.clone().unwrap_or_else(|| {
                        format!(
                            "{}({path})",
                            aggregate.function.as_str().to_ascii_lowercase()
                        )
                    })
                })
                .collect();
            let part = batches_result(std::slice::from_ref(&batch), &names, group_by.is_some())?;
            result = Some(match result {
                None => part,
                Some(mut so_far) => {
                    let skip = usize::from(group_by.is_some());
                    so_far
                        .column_names
                        .extend(part.column_names.into_iter().skip(skip));
                    so_far
                        .column_types
                        .extend(part.column_types.into_iter().skip(skip));
                    for (row, more) in so_far.rows.iter_mut().zip(part.rows) {
                        row.extend(more.into_iter().skip(skip));
                    }
                    so_far
                }
            });
        }
        let Some(mut result) = result else {
            // Nothing matched: an empty result with its header, as IoTDB answers.
            let mut empty = empty();
            if group_by.is_some() {
                empty.column_names.push("Time".to_string());
                empty.column_types.push(WireType::Int64);
            }
            return Ok(empty);
        };
        let first_value = usize::from(group_by.is_some());
        if let (true, Some(window)) = (left_open, group_by) {
            label_left_open(&mut result, window, select);
        }
        if let Some(having) = &select.having {
            self.apply_having(select, having, &mut result, first_value, now)
                .await?;
        }
        if select.slimit.is_some() || select.soffset.is_some() {
            let kept: Vec<usize> = super::select::series_window(
                (first_value..result.column_names.len()).collect(),
                select,
            );
            let keep = |i: usize| i < first_value || kept.contains(&i);
            result.column_names = retain_columns(std::mem::take(&mut result.column_names), keep);
            result.column_types = retain_columns(std::mem::take(&mut result.column_types), keep);
            for row in &mut result.rows {
                *row = retain_columns(std::mem::take(row), keep);
            }
        }
        if let Some(how) = &select.fill {
            super::select::fill(how, &result.column_types, &mut result.rows, first_value);
        }
        if select.order == TimeOrder::Descending && group_by.is_some() {
            result.rows.reverse();
        }
        page_rows(&mut result.rows, select);
        bounded(result)
    }

    /// `query` shaped by `shape` as one batch; windows in calendar months (`GROUP BY ([a,
    /// b), 1mo)`) differ in length, so each is aggregated on its own (at most
    /// [`CALENDAR_WINDOWS_MAX`]) and the rows stacked.
    async fn aggregate_batch(
        self: &Rc<Self>,
        query: AggregateQuery,
        shape: super::query::Shape,
        select: &Select,
    ) -> Result<ColumnBatch, Status> {
        let months = select.group_by.as_ref().and_then(|g| g.months);
        let (Some(months), Some(window)) = (months, query.group_by) else {
            let ResponsePayload::Batch(batch) = self.query_aggregate_shaped(query, shape).await?
            else {
                return Err(Status::internal("an aggregation answered wrongly"));
            };
            return Ok(batch);
        };
        let windows = calendar_windows(window.start_time, window.end_time, months)?;
        let mut batches = Vec::with_capacity(windows.len());
        for (k, (start, end)) in windows.iter().enumerate() {
            let (from, to) = (
                query.start_time.max(*start),
                query.end_time.min(*end).max(query.start_time.max(*start)),
            );
            let one = AggregateQuery {
                start_time: from,
                end_time: to,
                group_by: None,
                ..query.clone()
            };
            let one_shape = super::query::Shape {
                step_ms: None,
                groups: shape.groups.clone(),
                folded: shape
                    .folded
                    .as_ref()
                    .map(|folded| FilteredFold::pane(folded, k)),
            };
            let ResponsePayload::Batch(batch) = self.query_aggregate_shaped(one, one_shape).await?
            else {
                return Err(Status::internal("an aggregation answered wrongly"));
            };
            batches.push(batch);
        }
        // A left-open range `((a, b], 1mo)` is shifted by one millisecond (see
        // `group_by_window`): each row is labelled with its window's right end, as IoTDB.
        let left_open = select
            .group_by
            .as_ref()
            .and_then(|g| g.range.as_ref())
            .is_some_and(|window_range| !window_range.left_closed);
        let labels = windows
            .iter()
            .map(|(start, end)| if left_open { end - 1 } else { *start })
            .collect();
        super::query::stack_rows(&batches, labels)
    }

    /// The partial states, per pane, of every series of each of `items` (each in
    /// [`selections`] order) folded from their points in `range` (and the windows) on the
    /// rows where `select`'s value filter holds: what value-filtered aggregates aggregate.
    /// One pass over the filtered pages for all the items (a series two items name is read
    /// once), folded as each page comes, so memory holds the partial states, not the rows.
    async fn filtered_partials(
        self: &Rc<Self>,
        select: &Select,
        items: &[Vec<Matched>],
        range: TimeRange,
        group_by: Option<GroupByWindow>,
        now: i64,
        filter_series: &[(PathPattern, Vec<super::select::Column>)],
    ) -> Result<Vec<Vec<Vec<Partial>>>, Status> {
        let mut columns: Vec<super::select::Column> = Vec::new();
        let mut index_of: HashMap<(String, String), usize> = HashMap::new();
        let mut item_series: Vec<Vec<usize>> = Vec::with_capacity(items.len());
        for matched in items {
            let types: HashMap<(&str, &str), DataType> = matched
                .iter()
                .map(|(d, m, t)| ((d.as_str(), m.as_str()), *t))
                .collect();
            let mut series = Vec::new();
            for selection in selections(matched) {
                for measurement in selection.measurements {
                    let data_type = types[&(selection.device.as_str(), measurement.as_str())];
                    let key = (selection.device.clone(), measurement);
                    let index = *index_of.entry(key.clone()).or_insert_with(|| {
                        columns.push(super::select::Column {
                            device: key.0,
                            measurement: key.1,
                            data_type,
                        });
                        columns.len() - 1
                    });
                    series.push(index);
                }
            }
            item_series.push(series);
        }
        let mut fetch = iotdb_storage::TimeRange::new(range.start_ms, range.end_ms);
        if let Some(window) = group_by {
            fetch = fetch.intersect(iotdb_storage::TimeRange::new(
                window.start_time,
                window.end_time,
            ));
        }
        let calendar = match (select.group_by.as_ref().and_then(|g| g.months), group_by) {
            (Some(months), Some(window)) => Some(calendar_windows(
                window.start_time,
                window.end_time,
                months,
            )?),
            _ => None,
        };
        let step_ms = select.group_by.as_ref().and_then(|g| g.sliding_step_ms);
        let mut fold = FilteredFold::new(columns.len(), group_by, step_ms, calendar)?;
        let mut cursor = super::select::RawCursor::open(
            self.clone(),
            columns,
            select.value_filter.as_ref(),
            fetch,
            now,
            filter_series,
            None,
            TimeOrder::Ascending,
        )?;
        while let Some(rows) = cursor.next_rows().await? {
            for (time, cells) in rows.times.iter().zip(rows.cells) {
                for (series, cell) in cells.into_iter().enumerate() {
                    if let Some(value) = cell {
                        fold.fold(series, *time, convert::to_storage_value(value));
                    }
                }
            }
        }
        Ok(item_series
            .iter()
            .map(|series| fold.series(series))
            .collect())
    }

    /// Aggregates `ALIGN BY DEVICE`, as IoTDB lays them out: one row per device (per window
    /// and device with `GROUP BY`, devices in path order), a `Device` column after `Time`,
    /// and one column per select item and measurement, named `count(s1)`. With `only`, the
    /// rows of those devices alone, under the columns of all (a page of `WindowPages`).
    pub(in crate::datanode) async fn select_aggregates_by_device(
        self: &Rc<Self>,
        select: &Select,
        range: TimeRange,
        now: i64,
        only: Option<&[String]>,
    ) -> Result<ResultSet, Status> {
        let Projection::Aggregates(aggregates) = &select.projection else {
            return Err(Status::internal("not an aggregate projection"));
        };
        if select.group_by_level.is_some() {
            return Err(unsupported(
                "GROUP BY LEVEL with ALIGN BY DEVICE is not supported (IoTDB refuses it too)",
            ));
        }
        let group_by = match &select.group_by {
            None => None,
            Some(group_by) => Some(group_by_window(group_by, range)?),
        };
        let step_ms = select.group_by.as_ref().and_then(|g| g.sliding_step_ms);
        // Output columns (item, measurement), item by item, measurements in name order; and
        // what each device has of them.
        let mut columns: Vec<(usize, String)> = Vec::new();
        let mut devices: std::collections::BTreeMap<String, Vec<(usize, String)>> =
            Default::default();
        let mut types_of: HashMap<(String, String), DataType> = HashMap::new();
        for (index, aggregate) in aggregates.iter().enumerate() {
            let patterns = select
                .from
                .iter()
                .map(|from| from.join(&aggregate.path))
                .collect();
            let mut matched = self.matches(patterns).await?;
            matched.sort_by(|a, b| a.1.cmp(&b.1));
            for (device, measurement, data_type) in matched {
                types_of.insert((device.clone(), measurement.clone()), data_type);
                let column = (index, measurement);
                if !columns.contains(&column) {
                    columns.push(column.clone());
                }
                devices.entry(device).or_default().push(column);
            }
        }
        let columns = super::select::series_window(columns, select);
        // Each column's type, the same in every device that has it (known before any
        // device is aggregated, so that a page of devices has the columns of all).
        let mut types: Vec<Option<WireType>> = vec![None; columns.len()];
        for (device, has) in &devices {
            for (position, (index, measurement)) in columns.iter().enumerate() {
                if !has.contains(&(*index, measurement.clone())) {
                    continue;
                }
                let function = aggregates[*index].function;
                let series_type = types_of[&(device.clone(), measurement.clone())];
                let data_type = super::query::to_storage_aggregation(wire_aggregation(function)?)
                    .output_type(series_type);
                match types[position] {
                    Some(known) if known != data_type => {
                        return Err(Status::illegal_parameter(format!(
                            "{}({measurement}) is {} in one device and {} in {device}: \
                             ALIGN BY DEVICE needs one type per column",
                            function.as_str().to_ascii_lowercase(),
                            known.name(),
                            data_type.name()
                        )));
                    }
                    _ => types[position] = Some(data_type),
                }
            }
        }
        // A value filter: its paths resolved once, then each device's aggregates fold the
        // rows it keeps inside that device (its paths name only the device's series).
        let filter_series = match &select.value_filter {
            Some(_) => Some(self.resolve_filter_paths(select).await?),
            None => None,
        };
        // Per device: the rows' times and each column's cells.
        let mut blocks: Vec<DeviceBlock> = Vec::new();
        for (device, has) in &devices {
            if only.is_some_and(|only| !only.contains(device)) {
                continue;
            }
            let mut times = None;
            let mut cells: Vec<Option<Vec<Option<WireValue>>>> = vec![None; columns.len()];
            // Each item's columns that the device has: (position, measurement).
            let wanted_of: Vec<Vec<(usize, &String)>> = (0..aggregates.len())
                .map(|index| {
                    columns
                        .iter()
                        .enumerate()
                        .filter(|(_, column)| column.0 == index && has.contains(column))
                        .map(|(position, (_, measurement))| (position, measurement))
                        .collect()
                })
                .collect();
            // With a value filter, the rows the device keeps folded for all items at once.
            let mut folded = match &filter_series {
                Some(filter_series) => {
                    let own = super::select::within_device(filter_series, device);
                    let items: Vec<Vec<Matched>> = wanted_of
                        .iter()
                        .map(|wanted| {
                            wanted
                                .iter()
                                .map(|(_, m)| {
                                    let key = (device.clone(), (*m).clone());
                                    let data_type = types_of[&key];
                                    (key.0, key.1, data_type)
                                })
                                .collect()
                        })
                        .collect();
                    let folded = self
                        .filtered_partials(select, &items, range, group_by, now, &own)
                        .await?;
                    Some(folded.into_iter())
                }
                None => None,
            };
            for (aggregate, wanted) in aggregates.iter().zip(&wanted_of) {
                let folded = folded.as_mut().and_then(Iterator::next);
                if wanted.is_empty() {
                    continue;
                }
                let query = AggregateQuery {
                    series: vec![SeriesSelection {
                        device: device.clone(),
                        measurements: wanted.iter().map(|(_, m)| (*m).clone()).collect(),
                    }],
                    start_time: range.start_ms,
                    end_time: range.end_ms,
                    aggregations: vec![wire_aggregation(aggregate.function)?],
                    group_by,
                };
                let shape = super::query::Shape {
                    step_ms,
                    groups: None,
                    folded,
                };
                let batch = self.aggregate_batch(query, shape, select).await?;
                for ((position, _), column) in wanted.iter().zip(&batch.columns) {
                    cells[*position] = Some(
                        (0..batch.timestamps.len())
                            .map(|row| column.value(row))
                            .collect(),
                    );
                }
                times.get_or_insert(batch.timestamps);
            }
            if let Some(times) = times {
                blocks.push((device.clone(), times, cells));
            }
        }
        let first_value = usize::from(group_by.is_some()) + 1;
        let mut result = empty();
        if group_by.is_some() {
            result.column_names.push("Time".to_string());
            result.column_types.push(WireType::Int64);
        }
        result.column_names.push("Device".to_string());
        result.column_types.push(WireType::Text);
        for ((index, measurement), data_type) in columns.iter().zip(&types) {
            let alias = select.aliases.get(*index).cloned().flatten();
            result.column_names.push(alias.unwrap_or_else(|| {
                let function = aggregates[*index].function.as_str().to_ascii_lowercase();
                format!("{function}({measurement})")
            }));
            result
                .column_types
                .push(data_type.unwrap_or(WireType::Text));
        }
        let mut rows = Vec::new();
        for (device, times, cells) in blocks {
            let block: Vec<Vec<Option<WireValue>>> = times
                .iter()
                .enumerate()
                .map(|(row, time)| {
                    let mut out = Vec::with_capacity(result.column_names.len());
                    if group_by.is_some() {
                        out.push(Some(WireValue::Int64(*time)));
                    }
                    out.push(Some(WireValue::Text(Bytes::from(device.clone()))));
                    out.extend(
                        cells
                            .iter()
                            .map(|column| column.as_ref().and_then(|c| c[row].clone())),
                    );
                    out
                })
                .collect();
            rows.extend(block);
            if rows.len() > SQL_RESULT_ROWS_MAX {
                return Err(too_many_rows());
            }
        }
        result.rows = rows;
        // HAVING on each device's rows (its columns are named `count(s1)`), then FILL and
        // order within each device, LIMIT over all.
        if let Some(having) = &select.having {
            self.apply_having(select, having, &mut result, first_value, now)
                .await?;
        }
        let rows = std::mem::take(&mut result.rows);
        super::select::finish_device_rows(&mut result, rows, select, first_value);
        if let (
            Some(window),
            Some(sql::GroupByTime {
                range: Some(window_range),
                ..
            }),
        ) = (group_by, &select.group_by)
            && !window_range.left_closed
        {
            label_left_open(&mut result, window, select);
        }
        Ok(result)
    }

    /// The devices an aggregate `ALIGN BY DEVICE` may answer rows for, in path order: those
    /// with a series that its select list or `HAVING` names (a device without an
    /// aggregated series answers no row).
    pub(in crate::datanode) async fn aggregate_devices(
        &self,
        select: &Select,
    ) -> Result<Vec<String>, Status> {
        let mut patterns = select.series_patterns();
        if let Some(having) = &select.having {
            having.visit(&mut |e| {
                if let sql::Expr::Path(path) = e {
                    for joined in select.from.iter().map(|from| from.join(path)) {
                        if !patterns.contains(&joined) {
                            patterns.push(joined);
                        }
                    }
                }
            });
        }
        let mut devices: Vec<String> = self
            .matches(patterns)
            .await?
            .into_iter()
            .map(|(device, _, _)| device)
            .collect();
        devices.sort();
        devices.dedup();
        Ok(devices)
    }

    /// Keeps the rows of an aggregate result where `having` holds. Its aggregates
    /// (`count(s1)`) name result columns; one that matches several expands as in WHERE.
    async fn apply_having(
        &self,
        select: &Select,
        having: &sql::Expr,
        result: &mut ResultSet,
        first_value: usize,
        now: i64,
    ) -> Result<(), Status> {
        let mut resolved: Vec<(sql::Expr, Vec<usize>)> = Vec::new();
        let mut calls = Vec::new();
        having.visit(&mut |e| {
            if let sql::Expr::Function { name, args } = e
                && AggregateFunction::from_name(name).is_some()
            {
                calls.push((e.clone(), name.clone(), args.clone()));
            }
        });
        for (call, name, args) in calls {
            let [sql::Expr::Path(path)] = args.as_slice() else {
                return Err(Status::illegal_parameter(format!(
                    "{name} in HAVING takes one series"
                )));
            };
            let function = AggregateFunction::from_name(&name).expect("checked above");
            let columns = self
                .aggregate_columns(select, function, path, &result.column_names, first_value)
                .await?
                .ok_or_else(|| {
                    Status::illegal_parameter(format!(
                        "{name}({path}) in HAVING must also be in the select list"
                    ))
                })?;
            resolved.push((call, columns));
        }
        let bound = super::select::bind(having, now, &mut |e| {
            resolved
                .iter()
                .find(|(c, _)| c == e)
                .map(|(_, i)| i.clone())
        })?;
        super::select::retain_having(&bound, &mut result.rows, select.group_by.is_some());
        Ok(())
    }

    /// The columns among `names` (from `first_value` on) that hold `function(path)` of
    /// `select`'s series: one per series, or per group under `GROUP BY LEVEL` (named as
    /// IoTDB names them); `None` when one of them is not there.
    pub(super) async fn aggregate_columns(
        &self,
        select: &Select,
        function: AggregateFunction,
        path: &PathPattern,
        names: &[String],
        first_value: usize,
    ) -> Result<Option<Vec<usize>>, Status> {
        let patterns: Vec<PathPattern> = select.from.iter().map(|f| f.join(path)).collect();
        let matched = self.matches(patterns).await?;
        let series = if select.align_by_device {
            // `ALIGN BY DEVICE` names a column by measurement (`count(s1)`).
            let mut measurements: Vec<String> = matched.into_iter().map(|(_, m, _)| m).collect();
            measurements.sort();
            measurements.dedup();
            measurements
        } else {
            let paths = column_order(&matched);
            match &select.group_by_level {
                Some(levels) => {
                    let aggregate = Aggregate {
                        function,
                        path: path.clone(),
                    };
                    level_groups(&paths, levels, counts_every_measurement(&aggregate)).names
                }
                None => paths,
            }
        };
        let function = function.as_str().to_ascii_lowercase();
        let mut columns = Vec::with_capacity(series.len());
        for one in series {
            let wanted = format!("{function}({one})");
            match (first_value..names.len()).find(|&i| names[i] == wanted) {
                Some(column) => columns.push(column),
                None => return Ok(None),
            }
        }
        Ok(Some(columns))
    }

    async fn select_last(
        self: &Rc<Self>,
        select: &Select,
        range: TimeRange,
    ) -> Result<ResultSet, Status> {
        let matched = self.matches(select.series_patterns()).await?;
        let types: HashMap<String, DataType> = matched
            .iter()
            .map(|(device, measurement, t)| (format!("{device}.{measurement}"), *t))
            .collect();
        let points = if range.end_ms == TimeRange::ALL.end_ms {
            let ResponsePayload::Last(points) = self.query_last(selections(&matched)).await? else {
                return Err(Status::internal("a last query answered wrongly"));
            };
            points
        } else {
            // An upper bound (`WHERE time < t`): the newest point before it, which the
            // newest point of the series (what `query_last` answers) may not be.
            self.last_within(&matched, range).await?
        };
        let mut result = ResultSet::new(&[
            ("Time", WireType::Int64),
            ("Timeseries", WireType::Text),
            ("Value", WireType::Text),
            ("DataType", WireType::Text),
        ]);
        // IoTDB's `SELECT LAST ... WHERE time >= t` keeps only newer last points.
        let mut points: Vec<_> = points
            .into_iter()
            .filter(|point| range.contains(point.timestamp))
            .map(|point| {
                let data_type = types.get(&point.path).map_or("UNKNOWN", |t| t.name());
                let value = value_text(&point.value);
                (point.timestamp, point.path, value, data_type)
            })
            .collect();
        if let Some(order) = select.last_order {
            // A stable sort: rows equal on the key keep the order they came in.
            points.sort_by(|a, b| {
                let ordering = match order.key {
                    LastSortKey::Time => a.0.cmp(&b.0),
                    LastSortKey::Timeseries => a.1.cmp(&b.1),
                    LastSortKey::Value => a.2.cmp(&b.2),
                    LastSortKey::DataType => a.3.cmp(b.3),
                };
                if order.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        result.rows = points
            .into_iter()
            .map(|(time, path, value, data_type)| {
                vec![
                    Some(WireValue::Int64(time)),
                    Some(text(path)),
                    Some(text(value)),
                    Some(text(data_type)),
                ]
            })
            .collect();
        page_rows(&mut result.rows, select);
        Ok(result)
    }

    /// The newest point of each matched series within `range` (the series that have one),
    /// as the aggregation `max_time, last_value` over it.
    async fn last_within(
        self: &Rc<Self>,
        matched: &[Matched],
        range: TimeRange,
    ) -> Result<Vec<iotdb_net::LastPoint>, Status> {
        let series = selections(matched);
        let paths: Vec<String> = series
            .iter()
            .flat_map(|s| s.measurements.iter().map(|m| format!("{}.{m}", s.device)))
            .collect();
        let query = AggregateQuery {
            series,
            start_time: range.start_ms,
            end_time: range.end_ms,
            aggregations: vec![
                iotdb_net::Aggregation::MaxTime,
                iotdb_net::Aggregation::Last,
            ],
            group_by: None,
        };
        let ResponsePayload::Batch(batch) = self.query_aggregate(query).await? else {
            return Err(Status::internal("a last query answered wrongly"));
        };
        if batch.columns.len() != 2 * paths.len() {
            return Err(Status::internal(
                "a last query answered another number of series",
            ));
        }
        let mut points = Vec::new();
        for (path, pair) in paths.into_iter().zip(batch.columns.chunks(2)) {
            if let (Some(WireValue::Int64(timestamp)), Some(value)) =
                (pair[0].value(0), pair[1].value(0))
            {
                points.push(iotdb_net::LastPoint {
                    path,
                    timestamp,
                    value,
                });
            }
        }
        Ok(points)
    }

    /// `DELETE FROM patterns [WHERE time ...]`: a logged deletion in every region holding the
    /// matched series.
    async fn execute_delete(
        self: &Rc<Self>,
        patterns: Vec<PathPattern>,
        time_filter: Option<TimeFilter>,
    ) -> Result<(), Status> {
        let range = time_range(time_filter.as_ref());
        let matched = self.require_matches(patterns).await?;
        if range.is_empty() {
            return Ok(());
        }
        self.delete_data(selections(&matched), range.start_ms, range.end_ms)
            .await
    }
}

/// Bytes of series names in one forwarded deletion at most. Why 2 MiB: JSON escaping
/// makes a byte at most six (`\u0000`), so a request stays inside one internal frame
/// (16 MiB).
const FORWARD_DELETE_BYTES_MAX: usize = 2 * 1024 * 1024;

impl Shard {
    /// Deletes the points of `series` in `[start_ms, end_ms)` in every region group that
    /// holds them, each on its owner shard — or, a cluster member, on the DataNode that
    /// holds (leads) the group, one hop; returns once every deletion is durable.
    pub async fn delete_data(
        self: &Rc<Self>,
        series: Vec<SeriesSelection>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(), Status> {
        let range = iotdb_storage::TimeRange::new(start_ms, end_ms);
        let route = self.route();
        let mut by_group: HashMap<u32, Vec<SeriesKey>> = HashMap::new();
        for selection in &series {
            let Some(placement) = route.device(&selection.device) else {
                continue;
            };
            for (_, group) in placement.groups_in(start_ms, end_ms) {
                let keys = by_group.entry(group).or_default();
                for measurement in &selection.measurements {
                    keys.push(SeriesKey::new(&selection.device, measurement));
                }
            }
        }
        let mut remote = Vec::new();
        for (group, keys) in by_group {
            let Some(owner) = route.serving_shard(group) else {
                // A group held (led) by another DataNode: deleted there, one hop.
                let (node, address) = self.holder_elsewhere(&route, group)?;
                let shard = self.clone();
                remote.push(monoio::spawn(async move {
                    shard
                        .delete_elsewhere(node, address, group, keys, range)
                        .await
                }));
                continue;
            };
            self.delete_on_shard(owner, group, keys, range).await?;
        }
        let mut result = Ok(());
        for task in remote {
            if let Err(e) = task.await {
                result = Err(e);
            }
        }
        result
    }

    /// A deletion on shard `owner` of this node (this shard, or through the mesh).
    async fn delete_on_shard(
        self: &Rc<Self>,
        owner: u16,
        group: u32,
        keys: Vec<SeriesKey>,
        range: iotdb_storage::TimeRange,
    ) -> Result<(), Status> {
        if owner == self.id.0 {
            return self.delete_local(group, &keys, range).await;
        }
        self.mesh
            .request(ShardId(owner), |reply| Message::Delete {
                group,
                keys,
                range,
                reply,
            })
            .await
            .map_err(|e| Status::internal(format!("shard {owner}: {e}")))?
    }

    /// A deletion another DataNode forwarded, in a group this node holds (never forwarded
    /// again: a follower refuses it, naming the leader); durable on return.
    pub(crate) async fn delete_group_here(
        self: &Rc<Self>,
        group: u32,
        keys: Vec<SeriesKey>,
        range: iotdb_storage::TimeRange,
    ) -> Result<(), Status> {
        let owner = self.owner_here(group).await?;
        self.delete_on_shard(owner, group, keys, range).await
    }

    /// Sends a deletion of `keys` in `group` to DataNode `node`, in requests of at most
    /// [`FORWARD_DELETE_BYTES_MAX`] of series names, and waits until it is durable there.
    async fn delete_elsewhere(
        self: &Rc<Self>,
        node: iotdb_model::NodeId,
        address: std::net::SocketAddr,
        group: u32,
        keys: Vec<SeriesKey>,
        range: iotdb_storage::TimeRange,
    ) -> Result<(), Status> {
        use crate::cluster::protocol::{self, FromNode, ToNode};
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let mut series = Vec::new();
            let mut bytes = 0;
            while let Some(key) = keys.next_if(|key| {
                bytes == 0
                    || bytes + key.device.len() + key.measurement.len() <= FORWARD_DELETE_BYTES_MAX
            }) {
                bytes += key.device.len() + key.measurement.len();
                series.push((key.device.to_string(), key.measurement.to_string()));
            }
            let body = protocol::encode(&ToNode::Delete {
                group,
                series,
                start_ms: range.start,
                end_ms: range.end,
            });
            let answer = self.ask_node(node, address, body).await?;
            match protocol::decode::<FromNode>("delete answer", &answer)? {
                FromNode::Deleted => {}
                FromNode::Refused(status) => return Err(status.into()),
                other => {
                    return Err(Status::internal(format!(
                        "unexpected answer to a forwarded deletion from DataNode {node}: {other:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A deletion in a region this shard owns, awaited until durable.
    pub async fn delete_local(
        self: &Rc<Self>,
        group: u32,
        keys: &[SeriesKey],
        range: iotdb_storage::TimeRange,
    ) -> Result<(), Status> {
        if let Some(driver) = self.replicated_here(group)? {
            return self.delete_replicated(&driver, keys, range).await;
        }
        let region = self.region(group)?;
        let ack = region
            .delete(keys, range)
            .map_err(|e| convert::status_of(&e))?;
        ack.durable()
            .await
            .map(|_| ())
            .map_err(|e| convert::status_of(&e))
    }
}

fn statement_of(text: &str) -> Result<Statement, Status> {
    sql::parse(text).map_err(|e| Status::new(StatusCode::SQL_PARSE_ERROR, e.to_string()))
}

/// The result of a statement that returns no rows.
fn empty() -> ResultSet {
    ResultSet {
        column_names: Vec::new(),
        column_types: Vec::new(),
        rows: Vec::new(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn time_range(filter: Option<&TimeFilter>) -> TimeRange {
    filter.map_or(TimeRange::ALL, |f| f.resolve(now_ms()))
}

fn text(s: impl Into<String>) -> WireValue {
    WireValue::Text(Bytes::from(s.into()))
}

/// The type IoTDB infers for a new series from a literal (see the module docs); `None` for
/// `null`, which says nothing.
fn inferred_type(literal: &Literal) -> Option<DataType> {
    match literal {
        Literal::Boolean(_) => Some(DataType::Boolean),
        Literal::Integer(_) | Literal::Float(_) => Some(DataType::Double),
        Literal::Text(_) => Some(DataType::Text),
        Literal::Null => None,
    }
}

/// A literal as a value of `data_type`; `Err(literal text)` when it does not fit.
fn literal_value(literal: &Literal, data_type: DataType) -> Result<Option<WireValue>, String> {
    let value = match (literal, data_type) {
        (Literal::Null, _) => return Ok(None),
        (Literal::Boolean(b), DataType::Boolean) => WireValue::Boolean(*b),
        (Literal::Integer(i), DataType::Int32) => {
            WireValue::Int32(i32::try_from(*i).map_err(|_| i.to_string())?)
        }
        (Literal::Integer(i), DataType::Int64) => WireValue::Int64(*i),
        (Literal::Integer(i), DataType::Float) => WireValue::Float(*i as f32),
        (Literal::Integer(i), DataType::Double) => WireValue::Double(*i as f64),
        (Literal::Float(f), DataType::Float) => WireValue::Float(*f as f32),
        (Literal::Float(f), DataType::Double) => WireValue::Double(*f),
        (Literal::Text(s), DataType::Text) => WireValue::Text(Bytes::from(s.clone())),
        // IoTDB accepts an unquoted number or boolean into a TEXT series as its text.
        (Literal::Integer(i), DataType::Text) => text(i.to_string()),
        (Literal::Float(f), DataType::Text) => text(f.to_string()),
        (Literal::Boolean(b), DataType::Text) => text(b.to_string()),
        (Literal::Text(s), _) => return Err(format!("'{s}'")),
        (Literal::Integer(i), _) => return Err(i.to_string()),
        (Literal::Float(f), _) => return Err(f.to_string()),
        (Literal::Boolean(b), _) => return Err(b.to_string()),
    };
    Ok(Some(value))
}

/// Keeps the rows of a whole result that `select`'s `OFFSET` and `LIMIT` page to.
fn page_rows(rows: &mut Vec<Vec<Option<WireValue>>>, select: &Select) {
    let start = (select.offset.unwrap_or(0) as usize).min(rows.len());
    let end = select.limit.map_or(rows.len(), |limit| {
        start.saturating_add(limit as usize).min(rows.len())
    });
    rows.truncate(end);
    rows.drain(..start);
}

/// Matched series grouped by device, devices in first-seen order.
fn selections(matched: &[Matched]) -> Vec<SeriesSelection> {
    let mut out: Vec<SeriesSelection> = Vec::new();
    // Each device's place in `out` (a linear search was quadratic in the devices).
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (device, measurement, _) in matched {
        match index.get(device.as_str()) {
            Some(&at) => out[at].measurements.push(measurement.clone()),
            None => {
                index.insert(device, out.len());
                out.push(SeriesSelection {
                    device: device.clone(),
                    measurements: vec![measurement.clone()],
                });
            }
        }
    }
    out
}

/// Whether `aggregate` is IoTDB's `count(*)` (or `count(**)`): under `GROUP BY LEVEL` it
/// counts the points of every measurement of a group together (`count(root.*.wf01.*.*)`,
/// IoTDB's "Aggregation By Level" example 5 and `IoTDBAggregationByLevelIT`).
fn counts_every_measurement(aggregate: &Aggregate) -> bool {
    aggregate.function == AggregateFunction::Count
        && aggregate
            .path
            .nodes
            .last()
            .is_some_and(|node| node.name().is_none())
}

/// `GROUP BY LEVEL = levels` of series `paths` (in query order): a series' group is its
/// path with every node between root and the measurement replaced by `*`, except at the
/// given levels (root is level 0), as IoTDB names the columns (`root.ln.*.*.status`); with
/// `merge_measurements` (`count(*)`) the measurement is `*` too. Groups are ordered by name.
fn level_groups(
    paths: &[String],
    levels: &[usize],
    merge_measurements: bool,
) -> super::query::SeriesGroups {
    let keys: Vec<String> = paths
        .iter()
        .map(|path| {
            let nodes: Vec<&str> = path.split('.').collect();
            let last = nodes.len() - 1;
            nodes
                .iter()
                .enumerate()
                .map(|(level, node)| {
                    let kept = if level == last {
                        !merge_measurements
                    } else {
                        level == 0 || levels.contains(&level)
                    };
                    if kept { *node } else { "*" }
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    let mut names = keys.clone();
    names.sort();
    names.dedup();
    let of_series = keys
        .iter()
        .map(|key| names.binary_search(key).expect("a name of the keys"))
        .collect();
    super::query::SeriesGroups { of_series, names }
}

/// The full paths of the series in the order [`selections`] puts their columns.
fn column_order(matched: &[Matched]) -> Vec<String> {
    selections(matched)
        .iter()
        .flat_map(|s| {
            s.measurements
                .iter()
                .map(move |m| format!("{}.{m}", s.device))
        })
        .collect()
}

/// Batches as a result set named `names` (one per batch column), with a leading `Time`
/// column when `with_time`.
fn batches_result(
    batches: &[ColumnBatch],
    names: &[String],
    with_time: bool,
) -> Result<ResultSet, Status> {
    let Some(first) = batches.first() else {
        return Err(Status::internal("a query answered no batch"));
    };
    if first.columns.len() != names.len() {
        return Err(Status::internal(format!(
            "a query answered {} columns for {} series",
            first.columns.len(),
            names.len()
        )));
    }
    let mut result = empty();
    if with_time {
        result.column_names.push("Time".to_string());
        result.column_types.push(WireType::Int64);
    }
    for (name, column) in names.iter().zip(&first.columns) {
        result.column_names.push(name.clone());
        result.column_types.push(column.values.data_type());
    }
    for batch in batches {
        for (row, timestamp) in batch.timestamps.iter().enumerate() {
            if result.rows.len() >= SQL_RESULT_ROWS_MAX {
                return Err(too_many_rows());
            }
            let mut cells = Vec::with_capacity(result.column_names.len());
            if with_time {
                cells.push(Some(WireValue::Int64(*timestamp)));
            }
            cells.extend(batch.columns.iter().map(|c| c.value(row)));
            result.rows.push(cells);
        }
    }
    Ok(result)
}

/// The items of `values` whose index `keep` accepts.
fn retain_columns<T>(values: Vec<T>, keep: impl Fn(usize) -> bool) -> Vec<T> {
    values
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, v)| v)
        .collect()
}

fn unsupported(message: &str) -> Status {
    Status::new(StatusCode::UNSUPPORTED_OPERATION, message)
}

pub(super) fn too_many_rows() -> Status {
    Status::illegal_parameter(format!(
        "the result has more than {SQL_RESULT_ROWS_MAX} rows: narrow the time range or use LIMIT and OFFSET"
    ))
}

fn bounded(result: ResultSet) -> Result<ResultSet, Status> {
    if result.rows.len() > SQL_RESULT_ROWS_MAX {
        return Err(too_many_rows());
    }
    Ok(result)
}

/// Most windows a `GROUP BY` in calendar months makes: each is one aggregation.
pub const CALENDAR_WINDOWS_MAX: usize = 100_000;

/// The windows of `GROUP BY ([start, end), n mo[, m mo])`: `n` natural months starting
/// every `m` months from `start` (added to `start` each time, the day clamped to the
/// month's length), clipped to `end`.
pub(super) fn calendar_windows(
    start: i64,
    end: i64,
    months: sql::CalendarWindows,
) -> Result<Vec<(i64, i64)>, Status> {
    let overflow = || Status::illegal_parameter("the GROUP BY range overflows in months");
    let mut windows = Vec::new();
    for k in 0_i64.. {
        let offset = k * i64::from(months.step);
        let window_start = sql::time::add_months_millis(start, offset).ok_or_else(overflow)?;
        if window_start >= end {
            break;
        }
        if windows.len() == CALENDAR_WINDOWS_MAX {
            return Err(Status::illegal_parameter(format!(
                "GROUP BY in months would produce more than {CALENDAR_WINDOWS_MAX} windows"
            )));
        }
        let window_end = sql::time::add_months_millis(start, offset + i64::from(months.interval))
            .ok_or_else(overflow)?;
        windows.push((window_start, window_end.min(end)));
    }
    Ok(windows)
}

/// The windows of `GROUP BY ([start, end), interval[, step])` (a sliding step is passed to
/// the aggregation beside them); without a range, the WHERE bounds.
fn group_by_window(group_by: &sql::GroupByTime, range: TimeRange) -> Result<GroupByWindow, Status> {
    let (start_time, end_time) = match &group_by.range {
        Some(window_range) => {
            let now = now_ms();
            let (start, end) = (
                window_range.start.resolve(now),
                window_range.end.resolve(now),
            );
            if window_range.left_closed {
                (start, end)
            } else {
                // `((a, b], i)`: windows (a + k·i, a + (k+1)·i], in whole milliseconds the
                // half-open [a + 1 + k·i, ...) up to b + 1; each row is labelled with its
                // window's right end (see `label_left_open`).
                (start.saturating_add(1), end.saturating_add(1))
            }
        }
        None => {
            if range.start_ms == i64::MIN || range.end_ms == i64::MAX {
                return Err(Status::illegal_parameter(
                    "GROUP BY without a range needs a WHERE clause bounding time on both sides",
                ));
            }
            (range.start_ms, range.end_ms)
        }
    };
    if start_time >= end_time {
        return Err(Status::illegal_parameter(
            "the GROUP BY range is empty: start must be before end",
        ));
    }
    Ok(GroupByWindow {
        start_time,
        end_time,
        interval_ms: group_by.interval_ms,
    })
}

/// Labels each row of a left-open `GROUP BY ((a, b], i)` with its window's right end, as
/// IoTDB does: the row of window start `s` shows `min(s + i, b + 1) - 1`. Windows in
/// calendar months are labelled as they are aggregated (`aggregate_batch`).
fn label_left_open(result: &mut ResultSet, window: GroupByWindow, select: &Select) {
    if select.group_by.as_ref().is_some_and(|g| g.months.is_some()) {
        return;
    }
    for row in &mut result.rows {
        if let Some(Some(WireValue::Int64(start))) = row.first_mut() {
            *start = start
                .saturating_add(window.interval_ms)
                .min(window.end_time)
                .saturating_sub(1);
        }
    }
}

fn wire_aggregation(function: AggregateFunction) -> Result<iotdb_net::Aggregation, Status> {
    use iotdb_net::Aggregation as A;
    Ok(match function {
        AggregateFunction::Count => A::Count,
        AggregateFunction::Avg => A::Avg,
        AggregateFunction::Sum => A::Sum,
        AggregateFunction::MinValue => A::Min,
        AggregateFunction::MaxValue => A::Max,
        AggregateFunction::FirstValue => A::First,
        AggregateFunction::LastValue => A::Last,
        AggregateFunction::MinTime => A::MinTime,
        AggregateFunction::MaxTime => A::MaxTime,
        AggregateFunction::Extreme => A::Extreme,
    })
}

/// A value as IoTDB's `SELECT LAST` prints it in its `Value` column.
fn value_text(value: &WireValue) -> String {
    match value {
        WireValue::Boolean(b) => b.to_string(),
        WireValue::Int32(v) => v.to_string(),
        WireValue::Int64(v) => v.to_string(),
        // Debug formatting keeps the fraction (`50.0`), as IoTDB's Java formatting does.
        WireValue::Float(v) => format!("{v:?}"),
        WireValue::Double(v) => format!("{v:?}"),
        WireValue::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_follows_iotdb_defaults() {
        assert_eq!(inferred_type(&Literal::Integer(1)), Some(DataType::Double));
        assert_eq!(inferred_type(&Literal::Float(1.5)), Some(DataType::Double));
        assert_eq!(
            inferred_type(&Literal::Boolean(true)),
            Some(DataType::Boolean)
        );
        assert_eq!(
            inferred_type(&Literal::Text("a".into())),
            Some(DataType::Text)
        );
        assert_eq!(inferred_type(&Literal::Null), None);
    }

    #[test]
    fn literals_convert_to_the_series_type_or_fail() {
        assert_eq!(
            literal_value(&Literal::Integer(7), DataType::Int32),
            Ok(Some(WireValue::Int32(7)))
        );
        assert!(literal_value(&Literal::Integer(i64::MAX), DataType::Int32).is_err());
        assert!(literal_value(&Literal::Text("x".into()), DataType::Double).is_err());
        assert!(literal_value(&Literal::Float(1.5), DataType::Int64).is_err());
        assert_eq!(literal_value(&Literal::Null, DataType::Int64), Ok(None));
    }

    #[test]
    fn selections_group_by_device_in_first_seen_order() {
        let matched = vec![
            ("root.a.d2".to_string(), "s1".to_string(), DataType::Double),
            ("root.a.d1".to_string(), "s1".to_string(), DataType::Double),
            ("root.a.d2".to_string(), "s2".to_string(), DataType::Double),
        ];
        assert_eq!(
            column_order(&matched),
            ["root.a.d2.s1", "root.a.d2.s2", "root.a.d1.s1"]
        );
    }
}
