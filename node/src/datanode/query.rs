//! The read path: a query names series by device and measurement; each device's data lies
//! in one region group per time partition, on some shard. The receiving shard asks each
//! owner (itself, through the mesh, or on another DataNode: `group_read`) for its part and
//! stitches the parts in time order.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use iotdb_net::{
    AggregateQuery, ColumnBatch, GroupByWindow, LastPoint, NullBitmap, RawQuery, ResponsePayload,
    ResponseStream, SeriesSelection, Status, StatusCode, WireColumn,
};
use iotdb_runtime::ShardId;
use iotdb_storage::{
    self as storage, AggregateRow, Aggregation, DataType, FilterCounters, PointColumn, SeriesKey,
    TimeRange, Value, ValueFilter, Windows,
};

use super::control::{ControlAnswer, ControlRequest};
use super::convert;
use super::read_pages::{self, ReadCursor};
use super::select::{Column, RawCursor};
use super::{Message, Shard};
use crate::cluster::protocol::SchemaRequest;

/// Rows per streamed result frame: bounds the memory of one response frame.
pub const QUERY_BATCH_ROWS: usize = 65_536;

/// What one region is asked.
#[derive(Clone)]
pub enum RegionRead {
    Scan {
        keys: Vec<SeriesKey>,
        range: TimeRange,
    },
    Aggregate {
        keys: Vec<SeriesKey>,
        range: TimeRange,
        windows: Option<Windows>,
        aggregations: Vec<Aggregation>,
    },
    Last {
        keys: Vec<SeriesKey>,
    },
    /// A scan with a value filter per key (`None`: every point), pushed down to the region;
    /// with `points_max`, only the first that many points of each key (a `LIMIT`).
    ScanFiltered {
        keys: Vec<SeriesKey>,
        range: TimeRange,
        filters: Vec<Option<ValueFilter>>,
        points_max: Option<usize>,
    },
    /// One page of a scan (filtered when `filters` is given): from `cursor` on, at most
    /// `page_bytes_max` bytes (capped at [`read_pages::PAGE_BYTES_MAX`]); how another
    /// DataNode reads a scan of any size (`read_pages`).
    ScanPage {
        keys: Vec<SeriesKey>,
        range: TimeRange,
        filters: Option<Vec<Option<ValueFilter>>>,
        cursor: ReadCursor,
        page_bytes_max: usize,
        /// As in `ScanFiltered`: the first this many points of each key suffice.
        points_max: Option<usize>,
    },
}

impl RegionRead {
    /// The series the read names.
    pub fn keys(&self) -> &[SeriesKey] {
        match self {
            RegionRead::Scan { keys, .. }
            | RegionRead::Aggregate { keys, .. }
            | RegionRead::Last { keys }
            | RegionRead::ScanFiltered { keys, .. }
            | RegionRead::ScanPage { keys, .. } => keys,
        }
    }
}

/// A region's answer, one entry per key (`None`: the region does not hold the series).
pub enum RegionAnswer {
    Points(Vec<Option<PointColumn>>),
    Aggregates(Vec<Option<(DataType, Vec<AggregateRow>)>>),
    Last(Vec<Option<(i64, Value)>>),
    /// Filtered points, and how chunk statistics were used.
    Filtered(Vec<Option<PointColumn>>, FilterCounters),
    /// One page of a scan: one entry per key (`None` outside the page or unknown), the
    /// filter counters of the page, and where the next page starts (`None`: the last).
    Page {
        columns: Vec<Option<PointColumn>>,
        counters: FilterCounters,
        next: Option<ReadCursor>,
    },
}

/// One key's points in `range` that pass `filter` (every point without one), the first
/// `points_max` of them when given; `None` for a series the region does not hold.
fn scan_one(
    region: &storage::Region,
    key: &SeriesKey,
    range: TimeRange,
    filter: Option<&ValueFilter>,
    points_max: Option<usize>,
    counters: &mut FilterCounters,
) -> storage::Result<Option<PointColumn>> {
    match (filter, points_max) {
        (None, None) => region.scan(key, range),
        (None, Some(points_max)) => region.scan_first(key, range, points_max),
        (Some(filter), points_max) => region.scan_filtered_first(
            key,
            range,
            filter,
            points_max.unwrap_or(usize::MAX),
            counters,
        ),
    }
}

/// Devices of an aggregate or last query whose regions are asked together: their reads
/// share one request per region group (and time part). Why 256: a round's partial states
/// (one per series and window) stay small next to the answer, while a query over
/// thousands of devices makes a few hops per round instead of one per device.
const DEVICES_PER_ROUND: usize = 256;

/// Most partial states (one per series and window or pane) an aggregate round holds: a
/// round takes devices while they fit, and a device whose series and windows alone pass
/// it is asked a part of its series at a time. A partial state is a few hundred bytes, and
/// the regions' answers for the round are about as large again: some 100 MB at most.
const PARTIALS_PER_ROUND: usize = 256 * 1024;

/// Most values an aggregate answers (windows × series × functions, or × groups under
/// `GROUP BY LEVEL`): the answer is built whole and sent as one frame, and a client takes
/// frames of 256 MiB at most by default. Past it the query is refused (illegal parameter)
/// before anything is read.
pub const AGGREGATE_VALUES_MAX: usize = 16_000_000;

/// The region reads of one round of devices, one per region group and part `P` (a time
/// range, or nothing), each asking for the series of every device that lies there.
struct Batches<P> {
    /// (group, part, keys) in the order first asked for.
    reads: Vec<(u32, P, Vec<SeriesKey>)>,
    index: HashMap<(u32, P), usize>,
}

impl<P> Default for Batches<P> {
    fn default() -> Self {
        Batches {
            reads: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<P: Copy + Eq + std::hash::Hash> Batches<P> {
    /// Adds `selection`'s series to the read of (`group`, `part`); returns which read and
    /// where in its answer the series' entries start.
    fn add(&mut self, group: u32, part: P, selection: &SeriesSelection) -> (usize, usize) {
        let reads = &mut self.reads;
        let read = *self.index.entry((group, part)).or_insert_with(|| {
            reads.push((group, part, Vec::new()));
            reads.len() - 1
        });
        let keys = &mut self.reads[read].2;
        let offset = keys.len();
        keys.extend(
            selection
                .measurements
                .iter()
                .map(|m| SeriesKey::new(&selection.device, m)),
        );
        (read, offset)
    }
}

impl Shard {
    /// Serves a read of a region this shard owns.
    pub fn read_local(&self, group: u32, read: &RegionRead) -> Result<RegionAnswer, Status> {
        let region = self.region(group)?;
        let status = |e: storage::StorageError| convert::status_of(&e);
        Ok(match read {
            RegionRead::Scan { keys, range } => RegionAnswer::Points(
                keys.iter()
                    .map(|k| region.scan(k, *range))
                    .collect::<Result<_, _>>()
                    .map_err(status)?,
            ),
            RegionRead::Aggregate {
                keys,
                range,
                windows,
                aggregations,
            } => {
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    let Some(data_type) = region.series_type(key) else {
                        out.push(None);
                        continue;
                    };
                    let usable: Vec<Aggregation> = aggregations
                        .iter()
                        .copied()
                        .filter(|a| a.check(data_type).is_ok())
                        .collect();
                    let rows = region
                        .aggregate(key, *range, *windows, &usable)
                        .map_err(status)?;
                    out.push(rows.map(|rows| (data_type, expand(rows, &usable, aggregations))));
                }
                RegionAnswer::Aggregates(out)
            }
            RegionRead::ScanFiltered {
                keys,
                range,
                filters,
                points_max,
            } => {
                let mut counters = FilterCounters::default();
                let mut out = Vec::with_capacity(keys.len());
                for (key, filter) in keys.iter().zip(filters) {
                    let points = scan_one(
                        &region,
                        key,
                        *range,
                        filter.as_ref(),
                        *points_max,
                        &mut counters,
                    );
                    out.push(points.map_err(status)?);
                }
                RegionAnswer::Filtered(out, counters)
            }
            RegionRead::ScanPage {
                keys,
                range,
                filters,
                cursor,
                page_bytes_max,
                points_max,
            } => {
                let mut counters = FilterCounters::default();
                let page_bytes_max = (*page_bytes_max).min(read_pages::PAGE_BYTES_MAX);
                let (columns, next) =
                    read_pages::fill_page(keys.len(), *range, *cursor, page_bytes_max, |i, r| {
                        let filter = filters.as_ref().and_then(|f| f.get(i)?.as_ref());
                        scan_one(&region, &keys[i], r, filter, *points_max, &mut counters)
                            .map_err(status)
                    })?;
                RegionAnswer::Page {
                    columns,
                    counters,
                    next,
                }
            }
            RegionRead::Last { keys } => RegionAnswer::Last(
                keys.iter()
                    .map(|k| region.last(k))
                    .collect::<Result<_, _>>()
                    .map_err(status)?,
            ),
        })
    }

    /// Reads `read` from region group `group` on this node only.
    pub(crate) async fn read_group_here(
        self: &Rc<Self>,
        group: u32,
        read: RegionRead,
    ) -> Result<RegionAnswer, Status> {
        let owner = self.local_owner(group).await?;
        if owner == self.id.0 {
            return self.read_local(group, &read);
        }
        self.mesh
            .request(ShardId(owner), |reply| Message::Read { group, read, reply })
            .await
            .map_err(|e| Status::internal(format!("shard {owner}: {e}")))?
    }

    /// Where `device`'s data in `range` lies: (region group, the part of `range` in its
    /// time partitions), in time order. A group usually holds several time partitions of a
    /// device, so each read is clipped to its own partitions or points would repeat.
    pub(super) fn parts_of(&self, device: &str, range: TimeRange) -> Vec<(u32, TimeRange)> {
        let route = self.route();
        let Some(partitions) = route.device(device) else {
            return Vec::new();
        };
        let interval = partitions.time_partition_interval_ms;
        let mut parts: Vec<(u32, TimeRange)> = Vec::new();
        for (slot, group) in partitions.groups_in(range.start, range.end) {
            let slot_start = slot.saturating_mul(interval);
            let slot_range = TimeRange::new(slot_start, slot_start.saturating_add(interval));
            let part = range.intersect(slot_range);
            match parts.last_mut() {
                // Adjacent partitions of one group: one read.
                Some((last_group, last)) if *last_group == group && last.end == part.start => {
                    last.end = part.end
                }
                _ => parts.push((group, part)),
            }
        }
        parts
    }

    /// Every region group holding data of `device`.
    fn groups_of(&self, device: &str) -> Vec<u32> {
        let mut groups: Vec<u32> = self
            .parts_of(device, TimeRange::ALL)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    /// The schema's types of `selection`'s measurements (`None`: no such series).
    async fn schema_types(
        &self,
        selection: &SeriesSelection,
    ) -> Result<Vec<Option<DataType>>, Status> {
        let names: Vec<&str> = selection.measurements.iter().map(String::as_str).collect();
        let cached = self.cached_types(&selection.device, &names);
        if cached.iter().all(Option::is_some) {
            return Ok(cached);
        }
        if self.shared.cluster.is_some() {
            // Plan against a current route table (partitions another DataNode created).
            self.control(ControlRequest::Refresh).await?;
        }
        match self
            .control(ControlRequest::Schema(SchemaRequest::LookupSeries {
                device: selection.device.clone(),
                measurements: selection.measurements.clone(),
            }))
            .await?
        {
            ControlAnswer::MaybeTypes(types) => Ok(types),
            _ => Err(Status::internal(
                "the control plane answered LookupSeries wrongly",
            )),
        }
    }

    /// Every selected series must exist (508 otherwise); returns their types.
    async fn require_series(
        &self,
        series: &[SeriesSelection],
    ) -> Result<Vec<Vec<DataType>>, Status> {
        let mut out = Vec::with_capacity(series.len());
        for selection in series {
            let types = self.schema_types(selection).await?;
            let mut known = Vec::with_capacity(types.len());
            for (measurement, t) in selection.measurements.iter().zip(types) {
                known.push(t.ok_or_else(|| {
                    Status::new(
                        StatusCode::PATH_NOT_EXIST,
                        format!("path {}.{measurement} does not exist", selection.device),
                    )
                })?);
            }
            out.push(known);
        }
        Ok(out)
    }

    /// A raw range query: one column per series (`device.measurement`), rows aligned by
    /// time, read a page of points at a time ([`RawCursor`]) and streamed in batches of at
    /// most [`QUERY_BATCH_ROWS`] rows, `offset` and `limit` applied after the merge.
    pub async fn query_raw(
        self: &Rc<Self>,
        query: RawQuery,
        stream: &ResponseStream,
    ) -> Result<ResponsePayload, Status> {
        let types = self.require_series(&query.series).await?;
        let mut columns = Vec::new();
        for (selection, types) in query.series.iter().zip(types) {
            for (measurement, data_type) in selection.measurements.iter().zip(types) {
                columns.push(Column {
                    device: selection.device.clone(),
                    measurement: measurement.clone(),
                    data_type,
                });
            }
        }
        let mut skip = query.offset as usize;
        let mut left = query.limit.map_or(usize::MAX, |l| l as usize);
        let rows_max = query.limit.map(|_| skip.saturating_add(left));
        let range = TimeRange::new(query.start_time, query.end_time);
        let mut cursor = RawCursor::open(
            self.clone(),
            columns,
            None,
            range,
            0,
            &[],
            rows_max,
            crate::sql::TimeOrder::Ascending,
        )?;
        let mut ready: Option<ColumnBatch> = None;
        while left > 0 {
            let Some(points) = cursor.next_points().await? else {
                break;
            };
            let series: Vec<(String, DataType, PointColumn)> = cursor
                .columns()
                .iter()
                .zip(points)
                .map(|(c, p)| (c.path(), c.data_type, p))
                .collect();
            let (batches, rows) = align(series, skip, Some(left));
            let taken = rows.saturating_sub(skip).min(left);
            skip -= skip.min(rows);
            left -= taken;
            for batch in batches.into_iter().filter(|b| !b.timestamps.is_empty()) {
                if let Some(full) = ready.replace(batch) {
                    stream
                        .send_more(ResponsePayload::Batch(full))
                        .await
                        .map_err(|e| Status::internal(format!("streaming a result: {e}")))?;
                }
            }
        }
        let last = match ready {
            Some(batch) => batch,
            None => {
                let empty: Vec<(String, DataType, PointColumn)> = cursor
                    .columns()
                    .iter()
                    .map(|c| (c.path(), c.data_type, PointColumn::new(c.data_type)))
                    .collect();
                align(empty, 0, None).0.remove(0)
            }
        };
        Ok(ResponsePayload::Batch(last))
    }

    /// An aggregate query: one row per window (or one row), one column per series and
    /// function, named as IoTDB names them (`count(root.db.d1.s1)`).
    pub async fn query_aggregate(
        self: &Rc<Self>,
        query: AggregateQuery,
    ) -> Result<ResponsePayload, Status> {
        self.query_aggregate_shaped(query, Shape::default()).await
    }

    /// [`Self::query_aggregate`] shaped as SQL asks (see [`Shape`]): sliding windows, and
    /// series aggregated together by level.
    pub(super) async fn query_aggregate_shaped(
        self: &Rc<Self>,
        query: AggregateQuery,
        shape: Shape,
    ) -> Result<ResponsePayload, Status> {
        let step_ms = shape.step_ms;
        let types = self.require_series(&query.series).await?;
        let aggregations: Vec<Aggregation> = query
            .aggregations
            .iter()
            .map(|a| to_storage_aggregation(*a))
            .collect();
        if aggregations.is_empty() {
            return Err(Status::illegal_parameter("no aggregation requested"));
        }
        let range = TimeRange::new(query.start_time, query.end_time);
        // What the regions aggregate: the windows, or the panes of sliding windows.
        let (sliding, windows) = panes(query.group_by, step_ms)?;
        let fetch = windows.map_or(range, |w| range.intersect(w.range));
        // Partial states combine across regions: ask for count and sum too (avg), always.
        // Extreme combines from min and max.
        let mut wanted = vec![Aggregation::Count, Aggregation::Sum];
        for a in &aggregations {
            let parts: &[Aggregation] = match a {
                Aggregation::Avg => &[],
                Aggregation::Extreme => &[Aggregation::Min, Aggregation::Max],
                other => std::slice::from_ref(other),
            };
            for part in parts {
                if !wanted.contains(part) {
                    wanted.push(*part);
                }
            }
        }
        if shape.groups.is_some() {
            // Series merge out of time order: the first and last points are told apart
            // by their times.
            for part in [Aggregation::MinTime, Aggregation::MaxTime] {
                if !wanted.contains(&part) {
                    wanted.push(part);
                }
            }
        }
        let mut grouped: Vec<Option<(DataType, Vec<Partial>)>> = match &shape.groups {
            Some(groups) => vec![None; groups.names.len()],
            None => Vec::new(),
        };
        let mut series_index = 0;
        let panes = windows.map_or(1, |w| w.count());
        let window_starts: Vec<i64> = match (&sliding, &windows) {
            (Some(s), _) => s.window_starts().collect(),
            (None, Some(w)) => (0..w.count()).map(|i| w.window(i).start).collect(),
            (None, None) => vec![query.start_time],
        };
        let rows = window_starts.len();
        let series_count: usize = query.series.iter().map(|s| s.measurements.len()).sum();
        let output_columns = shape
            .groups
            .as_ref()
            .map_or(series_count, |g| g.names.len());
        check_aggregate_values(rows, output_columns, aggregations.len())?;
        let mut columns = Vec::new();
        for (selections, round_types) in aggregate_rounds(&query.series, &types, panes) {
            let (selections, round_types) = (&*selections, &*round_types);
            // The series index of the value-filtered points of the next device.
            let mut points_index = series_index;
            let mut partials: Vec<Vec<Vec<Partial>>> = Vec::with_capacity(selections.len());
            // One read per (region group, time part) for every device of the round that
            // lies there (rather than one per device: each read is a hop to the owning
            // shard or DataNode); each device remembers where its answers are, part by
            // part in time order, so they fold in the order they did one device at a time.
            let mut batches: Batches<(i64, i64)> = Batches::default();
            let mut answers_of: Vec<Vec<(usize, usize)>> = Vec::with_capacity(selections.len());
            for (selection, types) in selections.iter().zip(round_types) {
                for a in &aggregations {
                    for t in types {
                        a.check(*t).map_err(|e| convert::status_of(&e))?;
                    }
                }
                let mut partial: Vec<Vec<Partial>> =
                    vec![vec![Partial::default(); panes]; selection.measurements.len()];
                if let Some(folded) = &shape.folded {
                    for (offset, series_partial) in partial.iter_mut().enumerate() {
                        let series = folded
                            .get(points_index + offset)
                            .filter(|series| series.len() == panes)
                            .ok_or_else(|| {
                                Status::internal("a value-filtered aggregate lacks a series' panes")
                            })?;
                        series_partial.clone_from(series);
                    }
                }
                points_index += selection.measurements.len();
                partials.push(partial);
                let mut at = Vec::new();
                if shape.folded.is_none() {
                    for (group, part) in self.parts_of(&selection.device, fetch) {
                        at.push(batches.add(group, (part.start, part.end), selection));
                    }
                }
                answers_of.push(at);
            }
            let mut answers = Vec::with_capacity(batches.reads.len());
            // Each read asks only the windows its time part overlaps (`Windows::within`);
            // its rows fold into the panes from its first window on.
            let mut first_panes = Vec::with_capacity(batches.reads.len());
            for (group, (start, end), keys) in batches.reads {
                let range = TimeRange::new(start, end);
                let (read_windows, first_pane) = match windows {
                    Some(w) => {
                        let (within, first) = w.within(range);
                        (Some(within), first)
                    }
                    None => (None, 0),
                };
                let read = RegionRead::Aggregate {
                    keys,
                    range,
                    windows: read_windows,
                    aggregations: wanted.clone(),
                };
                let RegionAnswer::Aggregates(answer) = self.read_group(group, read).await? else {
                    return Err(Status::internal("a region answered an aggregation wrongly"));
                };
                answers.push(answer);
                first_panes.push(first_pane);
            }
            for (((selection, types), mut partial), at) in selections
                .iter()
                .zip(round_types)
                .zip(partials)
                .zip(answers_of)
            {
                for (batch, offset) in at {
                    let answer = answers[batch]
                        .get_mut(offset..offset + partial.len())
                        .ok_or_else(|| {
                            Status::internal("a region answered fewer series than asked")
                        })?;
                    for (series_partial, answer) in partial.iter_mut().zip(answer) {
                        if let Some((_, region_rows)) = answer.take() {
                            let panes = series_partial.iter_mut().skip(first_panes[batch]);
                            for (p, row) in panes.zip(region_rows) {
                                p.fold(&wanted, &row.values);
                            }
                        }
                    }
                }
                if let Some(s) = &sliding {
                    partial = partial.iter().map(|panes| s.combine(panes)).collect();
                }
                for ((measurement, data_type), series_partial) in
                    selection.measurements.iter().zip(types).zip(partial)
                {
                    let path = format!("{}.{measurement}", selection.device);
                    let index = series_index;
                    series_index += 1;
                    if let Some(groups) = &shape.groups {
                        let group = *groups.of_series.get(index).ok_or_else(|| {
                            Status::internal("GROUP BY LEVEL: a series has no group")
                        })?;
                        match &mut grouped[group] {
                            slot @ None => *slot = Some((*data_type, series_partial)),
                            Some((group_type, so_far)) => {
                                check_group_type(
                                    &aggregations,
                                    &groups.names[group],
                                    *group_type,
                                    *data_type,
                                )?;
                                for (mine, theirs) in so_far.iter_mut().zip(&series_partial) {
                                    mine.merge_series(theirs);
                                }
                            }
                        }
                        continue;
                    }
                    push_columns(
                        &mut columns,
                        &path,
                        *data_type,
                        &series_partial,
                        &aggregations,
                        rows,
                    );
                }
            }
        }
        if let Some(groups) = &shape.groups {
            for (name, group) in groups.names.iter().zip(grouped) {
                let Some((data_type, partial)) = group else {
                    return Err(Status::internal(format!(
                        "GROUP BY LEVEL: no series in {name}"
                    )));
                };
                push_columns(&mut columns, name, data_type, &partial, &aggregations, rows);
            }
        }
        Ok(ResponsePayload::Batch(ColumnBatch {
            timestamps: window_starts,
            columns,
        }))
    }

    /// The newest point of each series that has one.
    pub async fn query_last(
        self: &Rc<Self>,
        series: Vec<SeriesSelection>,
    ) -> Result<ResponsePayload, Status> {
        let mut out = Vec::new();
        for selections in series.chunks(DEVICES_PER_ROUND) {
            // One read per region group for every device of the round it holds; a group
            // may hold partitions older and newer than another's: every group is asked,
            // and the newest point kept.
            let mut batches: Batches<()> = Batches::default();
            let answers_of: Vec<Vec<(usize, usize)>> = selections
                .iter()
                .map(|selection| {
                    self.groups_of(&selection.device)
                        .into_iter()
                        .map(|group| batches.add(group, (), selection))
                        .collect()
                })
                .collect();
            let mut answers = Vec::with_capacity(batches.reads.len());
            for (group, (), keys) in batches.reads {
                let RegionAnswer::Last(points) =
                    self.read_group(group, RegionRead::Last { keys }).await?
                else {
                    return Err(Status::internal("a region answered a last query wrongly"));
                };
                answers.push(points);
            }
            for (selection, at) in selections.iter().zip(answers_of) {
                let mut found: Vec<Option<(i64, Value)>> = vec![None; selection.measurements.len()];
                for (batch, offset) in at {
                    let points = answers[batch]
                        .get_mut(offset..offset + found.len())
                        .ok_or_else(|| {
                            Status::internal("a region answered fewer series than asked")
                        })?;
                    for (slot, point) in found.iter_mut().zip(points) {
                        if let Some(point) = point.take()
                            && slot.as_ref().is_none_or(|(t, _)| point.0 > *t)
                        {
                            *slot = Some(point);
                        }
                    }
                }
                for (measurement, point) in selection.measurements.iter().zip(found) {
                    if let Some((timestamp, value)) = point {
                        out.push(LastPoint {
                            path: format!("{}.{measurement}", selection.device),
                            timestamp,
                            value: convert::to_wire_value(value),
                        });
                    }
                }
            }
        }
        Ok(ResponsePayload::Last(out))
    }
}

pub fn to_storage_aggregation(a: iotdb_net::Aggregation) -> Aggregation {
    match a {
        iotdb_net::Aggregation::Count => Aggregation::Count,
        iotdb_net::Aggregation::Sum => Aggregation::Sum,
        iotdb_net::Aggregation::Avg => Aggregation::Avg,
        iotdb_net::Aggregation::Min => Aggregation::Min,
        iotdb_net::Aggregation::Max => Aggregation::Max,
        iotdb_net::Aggregation::First => Aggregation::First,
        iotdb_net::Aggregation::Last => Aggregation::Last,
        iotdb_net::Aggregation::MinTime => Aggregation::MinTime,
        iotdb_net::Aggregation::MaxTime => Aggregation::MaxTime,
        iotdb_net::Aggregation::Extreme => Aggregation::Extreme,
    }
}

/// Rows computed for `usable` functions, laid out for `all` (`None` where unusable).
fn expand(
    rows: Vec<AggregateRow>,
    usable: &[Aggregation],
    all: &[Aggregation],
) -> Vec<AggregateRow> {
    rows.into_iter()
        .map(|row| AggregateRow {
            window_start: row.window_start,
            values: all
                .iter()
                .map(|a| {
                    usable
                        .iter()
                        .position(|u| u == a)
                        .and_then(|i| row.values[i].clone())
                })
                .collect(),
        })
        .collect()
}

/// An aggregation's state across regions (which are disjoint in time and folded in time
/// order).
#[derive(Clone, Debug, Default)]
pub(super) struct Partial {
    count: i64,
    sum: f64,
    min: Option<Value>,
    max: Option<Value>,
    first: Option<Value>,
    last: Option<Value>,
    min_time: Option<Value>,
    max_time: Option<Value>,
}

fn less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int32(a), Value::Int32(b)) => a < b,
        (Value::Int64(a), Value::Int64(b)) => a < b,
        (Value::Float(a), Value::Float(b)) => a < b,
        (Value::Double(a), Value::Double(b)) => a < b,
        _ => false,
    }
}

/// How SQL shapes an aggregation beyond the SDK's [`AggregateQuery`].
#[derive(Debug, Default)]
pub(super) struct Shape {
    /// Windows start every `step_ms` instead of every interval (`GROUP BY ([a, b),
    /// interval, step)`): the regions aggregate panes (see [`Sliding`]) and each window
    /// combines its panes' partial states, so no point is read twice.
    pub step_ms: Option<i64>,
    /// Series aggregated together (`GROUP BY LEVEL`): one output column per group and
    /// aggregation instead of per series.
    pub groups: Option<SeriesGroups>,
    /// The series' partial states per pane, already folded from the rows a `WHERE` value
    /// filter kept ([`FilteredFold`]), per series in the query's order: the regions are
    /// not asked.
    pub folded: Option<Vec<Vec<Partial>>>,
}

/// The sliding windows of `group_by` with `step_ms` (when the step differs from the
/// interval), and the windows the points fold into: the windows themselves, or the
/// sliding windows' panes; checked positive and at most [`storage::query::WINDOWS_MAX`].
fn panes(
    group_by: Option<GroupByWindow>,
    step_ms: Option<i64>,
) -> Result<(Option<Sliding>, Option<Windows>), Status> {
    let sliding = match (group_by, step_ms) {
        (Some(g), Some(step_ms)) if step_ms != g.interval_ms => {
            if g.interval_ms <= 0 || step_ms <= 0 {
                return Err(Status::illegal_parameter(
                    "GROUP BY interval and sliding step must be positive",
                ));
            }
            Some(Sliding {
                range: TimeRange::new(g.start_time, g.end_time),
                interval_ms: g.interval_ms,
                step_ms,
            })
        }
        _ => None,
    };
    let windows = group_by.map(|g| Windows {
        range: TimeRange::new(g.start_time, g.end_time),
        interval_ms: sliding.map_or(g.interval_ms, |s| s.pane_ms()),
    });
    if let Some(w) = &windows {
        if w.interval_ms <= 0 {
            return Err(Status::illegal_parameter(
                "GROUP BY interval must be positive",
            ));
        }
        if let Some(s) = &sliding {
            check_window_count(s.window_count() as u128)?;
        }
        check_window_count(w.count() as u128)?;
    }
    Ok((sliding, windows))
}

/// Value-filtered aggregates folded as the filtered rows are read, a page at a time: each
/// series' points go into its partial state of the pane that holds them, so nothing but
/// the partial states (series × panes) is kept, however many rows the filter keeps.
pub(super) struct FilteredFold {
    windows: FoldWindows,
    /// Per series, per pane.
    partials: Vec<Vec<Partial>>,
}

/// The panes a [`FilteredFold`] folds a point into.
enum FoldWindows {
    /// No `GROUP BY`: one pane.
    Whole,
    /// `GROUP BY` windows of one length, or the panes of sliding windows.
    Fixed(Windows),
    /// Calendar windows (`1mo`), `[start, end)` in time order: each aggregated on its own.
    Calendar(Vec<(i64, i64)>),
}

impl FilteredFold {
    /// A fold of `series` series for the windows `query_aggregate_shaped` aggregates under
    /// `group_by` and `step_ms`, or for `calendar` windows (each then answered by a query
    /// of its own, [`FilteredFold::pane`]).
    pub fn new(
        series: usize,
        group_by: Option<GroupByWindow>,
        step_ms: Option<i64>,
        calendar: Option<Vec<(i64, i64)>>,
    ) -> Result<Self, Status> {
        let windows = match calendar {
            Some(calendar) => FoldWindows::Calendar(calendar),
            None => match panes(group_by, step_ms)?.1 {
                Some(windows) => FoldWindows::Fixed(windows),
                None => FoldWindows::Whole,
            },
        };
        let panes = match &windows {
            FoldWindows::Whole => 1,
            FoldWindows::Fixed(windows) => windows.count(),
            FoldWindows::Calendar(calendar) => calendar.len(),
        };
        Ok(FilteredFold {
            windows,
            partials: vec![vec![Partial::default(); panes]; series],
        })
    }

    /// Folds one point of `series` (points of a series come in time order).
    pub fn fold(&mut self, series: usize, time: i64, value: Value) {
        let pane = match &self.windows {
            FoldWindows::Whole => Some(0),
            FoldWindows::Fixed(w) => w.range.contains(time).then(|| {
                ((i128::from(time) - i128::from(w.range.start)) / i128::from(w.interval_ms))
                    as usize
            }),
            FoldWindows::Calendar(calendar) => {
                let k = calendar.partition_point(|(_, end)| *end <= time);
                calendar
                    .get(k)
                    .filter(|(start, _)| *start <= time)
                    .map(|_| k)
            }
        };
        let Some(p) = pane.and_then(|pane| self.partials[series].get_mut(pane)) else {
            return;
        };
        let v = Some(value);
        let t = Some(Value::Int64(time));
        p.fold(
            &POINT_PARTS,
            &[
                Some(Value::Int64(1)),
                v.clone(),
                v.clone(),
                v.clone(),
                v.clone(),
                v,
                t.clone(),
                t,
            ],
        );
    }

    /// The partial states of the series at `indices`, for [`Shape::folded`].
    pub fn series(&self, indices: &[usize]) -> Vec<Vec<Partial>> {
        indices.iter().map(|&i| self.partials[i].clone()).collect()
    }

    /// Of `folded` (from [`FilteredFold::series`] of a calendar fold), calendar window
    /// `k`'s pane of every series.
    pub fn pane(folded: &[Vec<Partial>], k: usize) -> Vec<Vec<Partial>> {
        folded
            .iter()
            .map(|panes| panes.get(k).cloned().into_iter().collect())
            .collect()
    }
}

/// What one point contributes to a partial state, for [`Partial::fold`].
const POINT_PARTS: [Aggregation; 8] = [
    Aggregation::Count,
    Aggregation::Sum,
    Aggregation::Min,
    Aggregation::Max,
    Aggregation::First,
    Aggregation::Last,
    Aggregation::MinTime,
    Aggregation::MaxTime,
];

/// Which group each series of a query belongs to.
#[derive(Debug, Clone)]
pub(super) struct SeriesGroups {
    /// The group of each series, in the query's series order (selection by selection).
    pub of_series: Vec<usize>,
    /// Each group's path (`root.ln.*.*.status`), naming its columns.
    pub names: Vec<String>,
}

/// Batches of one row each (an aggregation per window) as one batch of a row per window,
/// the rows at `starts`.
pub(super) fn stack_rows(batches: &[ColumnBatch], starts: Vec<i64>) -> Result<ColumnBatch, Status> {
    let Some(first) = batches.first() else {
        return Ok(ColumnBatch {
            timestamps: starts,
            columns: Vec::new(),
        });
    };
    let mut columns = Vec::with_capacity(first.columns.len());
    for (index, template) in first.columns.iter().enumerate() {
        let data_type = template.values.data_type();
        let mut column = iotdb_net::WireColumn {
            measurement: template.measurement.clone(),
            values: iotdb_net::TypedColumn::empty(data_type),
            nulls: None,
        };
        let mut nulls = NullBitmap::new(0);
        for batch in batches {
            let value = batch
                .columns
                .get(index)
                .filter(|c| c.values.data_type() == data_type && batch.timestamps.len() == 1)
                .ok_or_else(|| Status::internal("calendar windows answered unevenly"))?
                .value(0);
            nulls.push(value.is_none());
            column.values.push(value.as_ref());
        }
        if nulls.as_bytes().iter().any(|b| *b != 0) {
            column.nulls = Some(nulls);
        }
        columns.push(column);
    }
    Ok(ColumnBatch {
        timestamps: starts,
        columns,
    })
}

/// One column per aggregation of one series (or group) from its per-window partial states.
fn push_columns(
    columns: &mut Vec<iotdb_net::WireColumn>,
    path: &str,
    data_type: DataType,
    partial: &[Partial],
    aggregations: &[Aggregation],
    rows: usize,
) {
    for a in aggregations {
        let output = a.output_type(data_type);
        let mut column = convert::empty_column(format!("{}({path})", a.name()), output, rows);
        let mut nulls = NullBitmap::new(0);
        for p in partial {
            let value = p.finish(*a).map(convert::to_wire_value);
            nulls.push(value.is_none());
            column.values.push(value.as_ref());
        }
        if nulls.as_bytes().iter().any(|b| *b != 0) {
            column.nulls = Some(nulls);
        }
        columns.push(column);
    }
}

/// Series aggregated together must agree on what an aggregation's column holds: the same
/// type, unless every aggregation's output type is fixed (count, sum, avg, times).
fn check_group_type(
    aggregations: &[Aggregation],
    group: &str,
    a: DataType,
    b: DataType,
) -> Result<(), Status> {
    if a == b
        || aggregations
            .iter()
            .all(|agg| agg.output_type(a) == agg.output_type(b))
    {
        return Ok(());
    }
    Err(Status::illegal_parameter(format!(
        "GROUP BY LEVEL aggregates series of different types ({} and {}) into {group}: \
         min_value, max_value, extreme, first_value and last_value need one type",
        a.name(),
        b.name()
    )))
}

impl Partial {
    /// Adds another series' partial state of the same window (its points may be earlier
    /// or later than this one's: first and last go by time; on a tie the other's last wins,
    /// this one's first stays).
    fn merge_series(&mut self, other: &Partial) {
        self.merge_totals(other);
        let time = |v: &Option<Value>| match v {
            Some(Value::Int64(t)) => Some(*t),
            _ => None,
        };
        let (mine, theirs) = (time(&self.min_time), time(&other.min_time));
        if theirs.is_some_and(|theirs| mine.is_none_or(|mine| theirs < mine)) {
            self.min_time.clone_from(&other.min_time);
            self.first.clone_from(&other.first);
        }
        let (mine, theirs) = (time(&self.max_time), time(&other.max_time));
        if theirs.is_some_and(|theirs| mine.is_none_or(|mine| theirs >= mine)) {
            self.max_time.clone_from(&other.max_time);
            self.last.clone_from(&other.last);
        }
    }

    /// Count, sum, min and max of both.
    fn merge_totals(&mut self, other: &Partial) {
        self.count += other.count;
        self.sum += other.sum;
        if let Some(v) = &other.min
            && self.min.as_ref().is_none_or(|m| less(v, m))
        {
            self.min = Some(v.clone());
        }
        if let Some(v) = &other.max
            && self.max.as_ref().is_none_or(|m| less(m, v))
        {
            self.max = Some(v.clone());
        }
    }

    /// Adds `later`'s points (all after this one's, in time) to this partial state.
    fn merge(&mut self, later: &Partial) {
        self.merge_totals(later);
        if self.first.is_none() {
            self.first.clone_from(&later.first);
        }
        if self.min_time.is_none() {
            self.min_time.clone_from(&later.min_time);
        }
        if later.last.is_some() {
            self.last.clone_from(&later.last);
        }
        if later.max_time.is_some() {
            self.max_time.clone_from(&later.max_time);
        }
    }

    fn fold(&mut self, wanted: &[Aggregation], values: &[Option<Value>]) {
        for (a, v) in wanted.iter().zip(values) {
            let Some(v) = v else { continue };
            match a {
                Aggregation::Count => {
                    if let Value::Int64(c) = v {
                        self.count += c;
                    }
                }
                Aggregation::Sum => self.sum += v.as_f64().unwrap_or(0.0),
                Aggregation::Min => {
                    if self.min.as_ref().is_none_or(|m| less(v, m)) {
                        self.min = Some(v.clone());
                    }
                }
                Aggregation::Max => {
                    if self.max.as_ref().is_none_or(|m| less(m, v)) {
                        self.max = Some(v.clone());
                    }
                }
                Aggregation::First => {
                    if self.first.is_none() {
                        self.first = Some(v.clone());
                    }
                }
                Aggregation::Last => self.last = Some(v.clone()),
                Aggregation::MinTime => {
                    if self.min_time.is_none() {
                        self.min_time = Some(v.clone());
                    }
                }
                Aggregation::MaxTime => self.max_time = Some(v.clone()),
                Aggregation::Avg | Aggregation::Extreme => {}
            }
        }
    }

    fn finish(&self, a: Aggregation) -> Option<Value> {
        match a {
            Aggregation::Count => Some(Value::Int64(self.count)),
            _ if self.count == 0 => None,
            Aggregation::Sum => Some(Value::Double(self.sum)),
            Aggregation::Avg => Some(Value::Double(self.sum / self.count as f64)),
            Aggregation::Min => self.min.clone(),
            Aggregation::Max => self.max.clone(),
            Aggregation::First => self.first.clone(),
            Aggregation::Last => self.last.clone(),
            Aggregation::MinTime => self.min_time.clone(),
            Aggregation::MaxTime => self.max_time.clone(),
            Aggregation::Extreme => storage::query::extreme(self.min.as_ref(), self.max.as_ref()),
        }
    }
}

/// Sliding windows: `GROUP BY ([start, end), interval, step)` with a step other than the
/// interval. Window `k` is `[start + k·step, start + k·step + interval)` clipped to `end`,
/// for every start before `end`. Every window is a run of whole *panes* of
/// `gcd(interval, step)`, so the regions aggregate panes (each point once) and each window
/// merges its panes' partial states: overlapping windows (step < interval) share panes,
/// windows with gaps between them (step > interval) skip some.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sliding {
    range: TimeRange,
    interval_ms: i64,
    step_ms: i64,
}

impl Sliding {
    fn pane_ms(&self) -> i64 {
        let (mut a, mut b) = (self.interval_ms, self.step_ms);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    fn window_count(&self) -> usize {
        let span = i128::from(self.range.end) - i128::from(self.range.start);
        if span <= 0 {
            return 0;
        }
        let step = i128::from(self.step_ms);
        usize::try_from((span + step - 1) / step).unwrap_or(usize::MAX)
    }

    fn window_starts(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.window_count() as i64).map(|k| self.range.start + k * self.step_ms)
    }

    /// Each window's partial state from the panes' (in time order).
    fn combine(&self, panes: &[Partial]) -> Vec<Partial> {
        let pane = self.pane_ms();
        let per_step = (self.step_ms / pane) as usize;
        let per_window = (self.interval_ms / pane) as usize;
        (0..self.window_count())
            .map(|k| {
                let first = k * per_step;
                let last = (first + per_window).min(panes.len());
                let mut window = Partial::default();
                for p in panes.get(first..last).unwrap_or_default() {
                    window.merge(p);
                }
                window
            })
            .collect()
    }
}

/// Refuses an aggregate answering more than [`AGGREGATE_VALUES_MAX`] values.
fn check_aggregate_values(rows: usize, columns: usize, functions: usize) -> Result<(), Status> {
    let values = (rows as u128) * (columns as u128) * (functions as u128);
    if values > AGGREGATE_VALUES_MAX as u128 {
        return Err(Status::illegal_parameter(format!(
            "the aggregate would answer {values} values ({rows} windows x {columns} series or \
             groups x {functions} functions), more than {AGGREGATE_VALUES_MAX}: ask for fewer \
             series, or fewer windows (a wider GROUP BY interval or a narrower time range)"
        )));
    }
    Ok(())
}

/// One round of an aggregate: its selections with their types (borrowed where whole
/// devices, a part of one device's series otherwise).
type Round<'a> = (
    std::borrow::Cow<'a, [SeriesSelection]>,
    std::borrow::Cow<'a, [Vec<DataType>]>,
);

/// The rounds an aggregate over `series` asks its regions in, with each selection's
/// types: consecutive devices while a round holds at most [`DEVICES_PER_ROUND`] devices
/// and [`PARTIALS_PER_ROUND`] partial states (`panes` per series); a device with more
/// series than that allows is asked in parts of its series, each a round of its own.
/// Series keep their order.
fn aggregate_rounds<'a>(
    series: &'a [SeriesSelection],
    types: &'a [Vec<DataType>],
    panes: usize,
) -> Vec<Round<'a>> {
    use std::borrow::Cow;
    let per_round = (PARTIALS_PER_ROUND / panes.max(1)).max(1);
    let mut rounds: Vec<Round<'a>> = Vec::new();
    let whole = |range: std::ops::Range<usize>| -> Round<'a> {
        (
            Cow::Borrowed(&series[range.clone()]),
            Cow::Borrowed(&types[range]),
        )
    };
    let (mut first, mut in_round) = (0usize, 0usize);
    for (index, (selection, selection_types)) in series.iter().zip(types).enumerate() {
        let count = selection.measurements.len();
        let full = index - first == DEVICES_PER_ROUND || in_round + count > per_round;
        if index > first && (full || count > per_round) {
            rounds.push(whole(first..index));
            (first, in_round) = (index, 0);
        }
        if count > per_round {
            for (measurements, part_types) in selection
                .measurements
                .chunks(per_round)
                .zip(selection_types.chunks(per_round))
            {
                let part = SeriesSelection {
                    device: selection.device.clone(),
                    measurements: measurements.to_vec(),
                };
                rounds.push((
                    Cow::Owned(vec![part]),
                    Cow::Owned(vec![part_types.to_vec()]),
                ));
            }
            first = index + 1;
            continue;
        }
        in_round += count;
    }
    if first < series.len() {
        rounds.push(whole(first..series.len()));
    }
    rounds
}

/// Refuses a `GROUP BY` of more than [`storage::query::WINDOWS_MAX`] windows.
pub(super) fn check_window_count(windows: u128) -> Result<(), Status> {
    let windows_max = storage::query::WINDOWS_MAX;
    if windows > windows_max as u128 {
        return Err(Status::illegal_parameter(format!(
            "GROUP BY would produce {windows} windows, more than {windows_max}"
        )));
    }
    Ok(())
}

/// Aligns series by time (the union of their timestamps; a series without a point at a time
/// is null there), applies offset and limit, and cuts the rows into batches (at least one);
/// also answers how many rows there were before offset and limit.
pub(super) fn align(
    series: Vec<(String, DataType, PointColumn)>,
    offset: usize,
    limit: Option<usize>,
) -> (Vec<ColumnBatch>, usize) {
    let timestamps: Vec<i64> = if series.len() == 1 {
        series[0].2.timestamps.clone()
    } else {
        let all: BTreeSet<i64> = series
            .iter()
            .flat_map(|s| s.2.timestamps.iter().copied())
            .collect();
        all.into_iter().collect()
    };
    let end = limit.map_or(timestamps.len(), |l| {
        offset.saturating_add(l).min(timestamps.len())
    });
    let selected = &timestamps[offset.min(end)..end];
    let mut batches = Vec::new();
    let mut cursors = vec![0usize; series.len()];
    for chunk in selected.chunks(QUERY_BATCH_ROWS) {
        let columns = series
            .iter()
            .zip(cursors.iter_mut())
            .map(|((name, data_type, points), cursor)| {
                let mut column = convert::empty_column(name.clone(), *data_type, chunk.len());
                let mut nulls = NullBitmap::new(0);
                for &t in chunk {
                    while *cursor < points.len() && points.timestamps[*cursor] < t {
                        *cursor += 1;
                    }
                    if *cursor < points.len() && points.timestamps[*cursor] == t {
                        column
                            .values
                            .push(Some(&convert::to_wire_value(points.values.get(*cursor))));
                        nulls.push(false);
                    } else {
                        column.values.push(None);
                        nulls.push(true);
                    }
                }
                if nulls.as_bytes().iter().any(|b| *b != 0) {
                    column.nulls = Some(nulls);
                }
                column
            })
            .collect::<Vec<WireColumn>>();
        batches.push(ColumnBatch {
            timestamps: chunk.to_vec(),
            columns,
        });
    }
    if batches.is_empty() {
        batches.push(ColumnBatch {
            timestamps: Vec::new(),
            columns: series
                .iter()
                .map(|(name, data_type, _)| convert::empty_column(name.clone(), *data_type, 0))
                .collect(),
        });
    }
    (batches, timestamps.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(series: &[usize]) -> (Vec<SeriesSelection>, Vec<Vec<DataType>>) {
        let selections: Vec<SeriesSelection> = series
            .iter()
            .enumerate()
            .map(|(d, &n)| SeriesSelection {
                device: format!("root.db.d{d}"),
                measurements: (0..n).map(|s| format!("s{s}")).collect(),
            })
            .collect();
        let types = series.iter().map(|&n| vec![DataType::Double; n]).collect();
        (selections, types)
    }

    /// (device, measurement) of every series, in the order the rounds ask them.
    fn flattened(rounds: &[Round<'_>]) -> Vec<(String, String)> {
        rounds
            .iter()
            .flat_map(|(selections, types)| {
                assert_eq!(selections.len(), types.len());
                selections.iter().zip(types.iter()).flat_map(|(s, t)| {
                    assert_eq!(s.measurements.len(), t.len());
                    s.measurements.iter().map(|m| (s.device.clone(), m.clone()))
                })
            })
            .collect()
    }

    fn sizes(rounds: &[Round<'_>]) -> Vec<(usize, usize)> {
        rounds
            .iter()
            .map(|(s, _)| (s.len(), s.iter().map(|s| s.measurements.len()).sum()))
            .collect()
    }

    #[test]
    fn aggregate_rounds_hold_bounded_devices_and_partial_states_in_order() {
        // Few series and windows: one round, every device.
        let (series, types) = devices(&[10, 10, 10]);
        let rounds = aggregate_rounds(&series, &types, 1);
        assert_eq!(sizes(&rounds), vec![(3, 30)]);
        // At most DEVICES_PER_ROUND devices a round.
        let (series, types) = devices(&[1; 600]);
        let rounds = aggregate_rounds(&series, &types, 1);
        assert_eq!(sizes(&rounds), vec![(256, 256), (256, 256), (88, 88)]);
        // 25 series a round at these panes: devices of 10 go two by two, and one of 5
        // still fits beside two.
        let panes = PARTIALS_PER_ROUND / 25;
        let (series, types) = devices(&[10, 10, 10, 10, 5, 6]);
        let rounds = aggregate_rounds(&series, &types, panes);
        assert_eq!(sizes(&rounds), vec![(2, 20), (3, 25), (1, 6)]);
        // A device past the round alone is asked in parts, each a round of its own; its
        // neighbours keep rounds of their own.
        let (series, types) = devices(&[3, 60, 4, 4]);
        let rounds = aggregate_rounds(&series, &types, panes);
        assert_eq!(
            sizes(&rounds),
            vec![(1, 3), (1, 25), (1, 25), (1, 10), (2, 8)]
        );
        let expected: Vec<(String, String)> = series
            .iter()
            .flat_map(|s| s.measurements.iter().map(|m| (s.device.clone(), m.clone())))
            .collect();
        assert_eq!(flattened(&rounds), expected);
        // More panes than a round holds: a series a round.
        let (series, types) = devices(&[2, 1]);
        let rounds = aggregate_rounds(&series, &types, PARTIALS_PER_ROUND * 2);
        assert_eq!(sizes(&rounds), vec![(1, 1), (1, 1), (1, 1)]);
        assert!(aggregate_rounds(&[], &[], 1).is_empty());
    }

    #[test]
    fn an_aggregate_past_its_values_is_refused_before_reading() {
        assert!(check_aggregate_values(24_000, 10_000, 2).is_err());
        assert!(check_aggregate_values(1_000, 10_000, 1).is_ok());
        assert!(check_aggregate_values(usize::MAX, usize::MAX, 40).is_err());
        let status = check_aggregate_values(16_001, 1_000, 1).unwrap_err();
        assert_eq!(status.code, iotdb_model::StatusCode::ILLEGAL_PARAMETER);
        assert!(
            status.message.contains("16001000 values"),
            "{}",
            status.message
        );
    }
}
