//! A read of one region group cut into requests that each fit one internal frame, so an
//! answer of any size crosses between DataNodes (no shard or core state here: pure
//! functions of the read and the answers so far).
//!
//! ```text
//!  asking DataNode                                  holding DataNode (owner shard)
//!  PagedRead::next_request ─ ScanPage{keys, range, cursor} ─► fill_page: scan from the
//!                                                              cursor, stop at page bytes
//!  PagedRead::absorb ◄── Page{columns, next cursor} ──────────┘
//!  ... until the cursor is None; then finish() is the RegionAnswer a one-shot read gives
//! ```
//!
//! Why a cursor rather than a stream: the holder keeps no state between pages (nothing
//! to clean up when the asker goes away), and a page can be asked of *another* replica
//! when the first stops answering — the cursor (a key, the last timestamp returned of it)
//! means the same on every replica that holds every acknowledged point. Each page re-reads
//! from the cursor; to keep that from re-decoding the rest of a long series for every
//! page, the cursor carries the time span the last page covered and the holder first
//! scans twice that span, reading the rest only when that was not enough.
//!
//! Scans (raw and filtered) page by bytes; aggregates and `LAST` answers are small per
//! series, so their reads are split by series instead: at most [`KEYS_PER_REQUEST_MAX`]
//! a request, fewer when the estimated answer of one series is large (many `GROUP BY`
//! windows). The pages of one group are merged as they arrive into the same answer a
//! one-shot read gives, so the receiving DataNode's merge (time order, `LIMIT`/`OFFSET`)
//! is the one it uses for its own regions and holds the same decoded points; only one
//! page's wire bytes are in memory at a time on either side.

use iotdb_net::Status;
use iotdb_storage::{
    FilterCounters, PointColumn, SeriesKey, TimeRange, ValueFilter, types::Values,
};
use serde::{Deserialize, Serialize};

use super::query::{RegionAnswer, RegionRead};

/// Default bytes of one page of a remote scan (`dn_remote_read_page_bytes`). Why 4 MiB:
/// large enough that a page's round trip costs little next to its transfer, small enough
/// that a page (estimated as JSON, the wire form) stays well inside one 16 MiB frame.
pub const PAGE_BYTES_DEFAULT: usize = 4 << 20;

/// The most bytes a holder puts in one page, whatever the asker asks: the estimate
/// ([`point_bytes`]) bounds the JSON form from above, so 8 MiB leaves half of the 16 MiB
/// frame to spare.
pub const PAGE_BYTES_MAX: usize = 8 << 20;

/// Series per request of a remote read at most. Why 4096: the request names every series
/// of its chunk on every page; 4096 names stay far below a frame however long.
pub const KEYS_PER_REQUEST_MAX: usize = 4096;

/// Where a paged scan resumes, relative to the keys of its request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCursor {
    /// Index of the key to resume with.
    pub key: u32,
    /// The last timestamp of that key already returned (`None`: from the range's start).
    pub after: Option<i64>,
    /// The time span the previous page covered of that key: the next page scans twice
    /// this span first.
    pub span_hint: Option<i64>,
}

/// Bytes one point takes at most on the wire (JSON: a timestamp and a value, each with
/// its separator). Text counts four bytes per byte (a JSON array of numbers).
pub fn point_bytes(values: &Values, index: usize) -> usize {
    const TIMESTAMP: usize = 21;
    TIMESTAMP
        + match values {
            Values::Boolean(_) => 6,
            Values::Int32(_) => 12,
            Values::Int64(_) => 21,
            Values::Float(_) => 16,
            Values::Double(_) => 25,
            Values::Text(v) => 4 * v[index].len() + 3,
        }
}

/// One page of a scan of `keys` series over `range`, starting at `cursor`, holding at most
/// `page_bytes_max` estimated bytes (and at least one point, so every page makes
/// progress). `scan(key index, range)` reads one series (`None`: the region does not hold
/// it). Returns one entry per key (`None` for keys outside this page or unknown) and
/// where the next page starts (`None`: the scan is complete).
pub fn fill_page(
    keys: usize,
    range: TimeRange,
    cursor: ReadCursor,
    page_bytes_max: usize,
    mut scan: impl FnMut(usize, TimeRange) -> Result<Option<PointColumn>, Status>,
) -> Result<(Vec<Option<PointColumn>>, Option<ReadCursor>), Status> {
    let mut columns: Vec<Option<PointColumn>> = (0..keys).map(|_| None).collect();
    let mut bytes = 0usize;
    let mut points = 0usize;
    let mut key = cursor.key as usize;
    let (mut after, mut span_hint) = (cursor.after, cursor.span_hint);
    while key < keys {
        let from = after
            .map_or(range.start, |t| t.saturating_add(1))
            .max(range.start);
        let mut end = span_hint.map_or(range.end, |span| {
            from.saturating_add(span.saturating_mul(2).max(1))
                .min(range.end)
        });
        let mut start = from;
        let mut first_of_page: Option<i64> = None;
        while start < range.end {
            let Some(part) = scan(key, TimeRange::new(start, end))? else {
                break;
            };
            let column = columns[key].get_or_insert_with(|| PointColumn::new(part.data_type()));
            let mut taken = 0;
            while taken < part.len() {
                let size = point_bytes(&part.values, taken);
                if points > 0 && bytes + size > page_bytes_max {
                    break;
                }
                bytes += size;
                points += 1;
                taken += 1;
            }
            column
                .timestamps
                .extend_from_slice(&part.timestamps[..taken]);
            column.values.extend_from(&part.values, 0..taken);
            if taken > 0 {
                first_of_page.get_or_insert(part.timestamps[0]);
            }
            if taken < part.len() {
                let last = column.timestamps.last().copied().or(after);
                let span = match (first_of_page, last) {
                    (Some(first), Some(last)) => Some(last.saturating_sub(first).max(0) + 1),
                    _ => span_hint,
                };
                let next = ReadCursor {
                    key: key as u32,
                    after: last,
                    span_hint: span,
                };
                return Ok((columns, Some(next)));
            }
            start = end;
            end = range.end;
        }
        key += 1;
        after = None;
        span_hint = None;
    }
    Ok((columns, None))
}

/// A read of one region group as a sequence of frame-sized requests, and the answer they
/// add up to. Asking DataNode's view; owned by the task serving the query.
pub struct PagedRead {
    read: RegionRead,
    page_bytes_max: usize,
    /// Series per request (see [`keys_per_request`]).
    chunk: usize,
    /// The first key of the request under way.
    next_key: usize,
    /// Where the scan of the current chunk resumes (scans only).
    cursor: ReadCursor,
    started: bool,
    answer: RegionAnswer,
}

/// Series per request of `read`: [`KEYS_PER_REQUEST_MAX`] for scans (pages bound their
/// answers); for aggregates and `LAST` as many as an estimated `page_bytes_max` holds (a
/// series' aggregate answer is a row per window and a value per aggregation; a `LAST` one
/// a point), at least one.
fn keys_per_request(read: &RegionRead, page_bytes_max: usize) -> usize {
    let per_key = match read {
        RegionRead::Aggregate {
            windows,
            aggregations,
            ..
        } => {
            let rows = windows.map_or(1, |w| w.count());
            rows.saturating_mul(aggregations.len() * 26 + 24)
                .saturating_add(32)
        }
        RegionRead::Last { .. } => 64,
        RegionRead::Scan { .. } | RegionRead::ScanFiltered { .. } | RegionRead::ScanPage { .. } => {
            return KEYS_PER_REQUEST_MAX;
        }
    };
    (page_bytes_max / per_key).clamp(1, KEYS_PER_REQUEST_MAX)
}

impl PagedRead {
    pub fn new(read: RegionRead, page_bytes_max: usize) -> PagedRead {
        let keys = read.keys().len();
        let answer = match &read {
            RegionRead::Scan { .. } | RegionRead::ScanPage { filters: None, .. } => {
                RegionAnswer::Points(Vec::with_capacity(keys))
            }
            RegionRead::ScanFiltered { .. } | RegionRead::ScanPage { .. } => {
                RegionAnswer::Filtered(Vec::with_capacity(keys), FilterCounters::default())
            }
            RegionRead::Aggregate { .. } => RegionAnswer::Aggregates(Vec::with_capacity(keys)),
            RegionRead::Last { .. } => RegionAnswer::Last(Vec::with_capacity(keys)),
        };
        PagedRead {
            chunk: keys_per_request(&read, page_bytes_max),
            read,
            page_bytes_max,
            next_key: 0,
            cursor: ReadCursor::default(),
            started: false,
            answer,
        }
    }

    /// Whether any request's answer was taken yet (a replica may still be asked the whole
    /// read in one go).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The whole read, for a replica on this node asked before any page was taken.
    pub fn whole(&self) -> RegionRead {
        self.read.clone()
    }

    fn chunk_keys(&self) -> std::ops::Range<usize> {
        let keys = self.read.keys().len();
        self.next_key..(self.next_key + self.chunk).min(keys)
    }

    /// The next request, or `None` once the read is complete.
    pub fn next_request(&self) -> Option<RegionRead> {
        let keys = self.chunk_keys();
        if keys.is_empty() {
            return None;
        }
        let chunk = |all: &[SeriesKey]| all[keys.clone()].to_vec();
        let page = |all: &[SeriesKey],
                    range: &TimeRange,
                    filters: Option<&[Option<ValueFilter>]>,
                    points_max: Option<usize>| RegionRead::ScanPage {
            keys: chunk(all),
            range: *range,
            filters: filters.map(|f| f[keys.clone()].to_vec()),
            cursor: self.cursor,
            page_bytes_max: self.page_bytes_max,
            points_max,
        };
        Some(match &self.read {
            RegionRead::Scan { keys: all, range } => page(all, range, None, None),
            RegionRead::ScanFiltered {
                keys: all,
                range,
                filters,
                points_max,
            } => page(all, range, Some(filters), *points_max),
            RegionRead::ScanPage {
                keys: all,
                range,
                filters,
                points_max,
                ..
            } => page(all, range, filters.as_deref(), *points_max),
            RegionRead::Aggregate {
                keys: all,
                range,
                windows,
                aggregations,
            } => RegionRead::Aggregate {
                keys: chunk(all),
                range: *range,
                windows: *windows,
                aggregations: aggregations.clone(),
            },
            RegionRead::Last { keys: all } => RegionRead::Last { keys: chunk(all) },
        })
    }

    /// Takes the answer to the request [`PagedRead::next_request`] gave last. An answer of
    /// the wrong kind or length is the answering replica's fault (a typed error).
    pub fn absorb(&mut self, answer: RegionAnswer) -> Result<(), Status> {
        let keys = self.chunk_keys();
        self.started = true;
        let points_max = match &self.read {
            RegionRead::ScanFiltered { points_max, .. }
            | RegionRead::ScanPage { points_max, .. } => *points_max,
            _ => None,
        };
        match (&mut self.answer, answer) {
            (
                RegionAnswer::Points(columns),
                RegionAnswer::Page {
                    columns: page,
                    next,
                    ..
                },
            ) => {
                merge_page(columns, keys.clone(), page)?;
                if keep_cursor(&mut self.cursor, next, keys.len())?
                    && !skip_full_keys(&mut self.cursor, columns, keys.clone(), points_max)
                {
                    return Ok(());
                }
            }
            (
                RegionAnswer::Filtered(columns, total),
                RegionAnswer::Page {
                    columns: page,
                    counters,
                    next,
                },
            ) => {
                merge_page(columns, keys.clone(), page)?;
                total.add(&counters);
                if keep_cursor(&mut self.cursor, next, keys.len())?
                    && !skip_full_keys(&mut self.cursor, columns, keys.clone(), points_max)
                {
                    return Ok(());
                }
            }
            (RegionAnswer::Aggregates(all), RegionAnswer::Aggregates(part)) => {
                if part.len() != keys.len() {
                    return Err(wrong("aggregation"));
                }
                all.extend(part);
            }
            (RegionAnswer::Last(all), RegionAnswer::Last(part)) => {
                if part.len() != keys.len() {
                    return Err(wrong("last query"));
                }
                all.extend(part);
            }
            _ => return Err(wrong("read (another kind of answer)")),
        }
        self.next_key = keys.end;
        self.cursor = ReadCursor::default();
        Ok(())
    }

    /// The answer the whole read gives (call once `next_request` is `None`).
    pub fn finish(mut self) -> RegionAnswer {
        let keys = self.read.keys().len();
        if let RegionAnswer::Points(columns) | RegionAnswer::Filtered(columns, _) = &mut self.answer
        {
            columns.resize_with(keys, || None);
        }
        self.answer
    }
}

fn wrong(what: &str) -> Status {
    Status::internal(format!("a region answered a {what} wrongly"))
}

/// Appends a page's columns (for the keys `keys` of the whole read) to `columns`.
fn merge_page(
    columns: &mut Vec<Option<PointColumn>>,
    keys: std::ops::Range<usize>,
    page: Vec<Option<PointColumn>>,
) -> Result<(), Status> {
    if page.len() != keys.len() {
        return Err(wrong("scan page"));
    }
    if columns.len() < keys.end {
        columns.resize_with(keys.end, || None);
    }
    for (slot, part) in columns[keys].iter_mut().zip(page) {
        let Some(part) = part else { continue };
        match slot {
            Some(column) if column.data_type() == part.data_type() => {
                column.timestamps.extend_from_slice(&part.timestamps);
                column.values.extend_from(&part.values, 0..part.len());
            }
            Some(_) => return Err(wrong("scan page (a type changed)")),
            None => *slot = Some(part),
        }
    }
    Ok(())
}

/// With `points_max` (a `LIMIT` pushed down), moves `cursor` past the keys that already
/// have that many points in `columns` (the whole read's; `keys` the chunk's range of
/// them): their remaining points are not needed. `true` when that completes the chunk.
fn skip_full_keys(
    cursor: &mut ReadCursor,
    columns: &[Option<PointColumn>],
    keys: std::ops::Range<usize>,
    points_max: Option<usize>,
) -> bool {
    let Some(points_max) = points_max else {
        return false;
    };
    let full = |key: u32| {
        columns
            .get(keys.start + key as usize)
            .and_then(Option::as_ref)
            .is_some_and(|column| column.len() >= points_max)
    };
    if !full(cursor.key) {
        return false;
    }
    while (cursor.key as usize) < keys.len() && full(cursor.key) {
        *cursor = ReadCursor {
            key: cursor.key + 1,
            after: None,
            span_hint: None,
        };
    }
    cursor.key as usize >= keys.len()
}

/// Keeps a page's next cursor; `false` when the chunk of `keys` keys is complete.
fn keep_cursor(
    cursor: &mut ReadCursor,
    next: Option<ReadCursor>,
    keys: usize,
) -> Result<bool, Status> {
    match next {
        Some(next)
            if (next.key as usize) < keys
                && (next.key, next.after) > (cursor.key, cursor.after) =>
        {
            *cursor = next;
            Ok(true)
        }
        Some(_) => Err(wrong("scan page (a cursor that does not move on)")),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotdb_storage::{Aggregation, Value, Windows};

    fn column(timestamps: std::ops::Range<i64>) -> PointColumn {
        PointColumn {
            timestamps: timestamps.clone().collect(),
            values: Values::Int64(timestamps.map(|t| t * 10).collect()),
        }
    }

    fn keys(count: usize) -> Vec<SeriesKey> {
        (0..count)
            .map(|i| SeriesKey::new("root.sg.d", &format!("s{i}")))
            .collect()
    }

    /// A region holding series `i` with points at `[0, lengths[i])` (`None`: unknown);
    /// counts the points its scans decoded.
    struct FakeRegion {
        lengths: Vec<Option<i64>>,
        decoded: usize,
    }

    impl FakeRegion {
        fn scan(&mut self, key: usize, range: TimeRange) -> Result<Option<PointColumn>, Status> {
            let Some(length) = self.lengths[key] else {
                return Ok(None);
            };
            let part = column(range.start.max(0)..range.end.min(length).max(range.start.max(0)));
            self.decoded += part.len();
            Ok(Some(part))
        }

        /// The read served page by page, as a holder would, through `PagedRead`.
        fn serve(&mut self, read: RegionRead, page_bytes_max: usize) -> (RegionAnswer, usize) {
            let mut paged = PagedRead::new(read, page_bytes_max);
            let mut pages = 0;
            while let Some(request) = paged.next_request() {
                let RegionRead::ScanPage {
                    keys,
                    range,
                    cursor,
                    page_bytes_max,
                    points_max,
                    ..
                } = request
                else {
                    panic!("a scan is asked in pages");
                };
                let names: Vec<usize> = keys
                    .iter()
                    .map(|k| k.measurement[1..].parse().unwrap())
                    .collect();
                let (columns, next) =
                    fill_page(keys.len(), range, cursor, page_bytes_max, |i, r| {
                        // As `Region::scan_first`: the first `points_max` points of `r`.
                        let first = points_max.map_or(r.end, |n| r.start.saturating_add(n as i64));
                        self.scan(names[i], TimeRange::new(r.start, first.min(r.end)))
                    })
                    .unwrap();
                pages += 1;
                assert!(pages < 10_000, "a page must make progress");
                paged
                    .absorb(RegionAnswer::Page {
                        columns,
                        counters: FilterCounters::default(),
                        next,
                    })
                    .unwrap();
            }
            (paged.finish(), pages)
        }
    }

    /// Pages hold every point exactly once, in order, whatever the page size; unknown
    /// series stay `None`, empty ones `Some(empty)`; each page keeps to its byte bound.
    #[test]
    fn pages_add_up_to_the_whole_scan() {
        let lengths = vec![Some(1000), None, Some(0), Some(1), Some(2500)];
        let range = TimeRange::new(0, 10_000);
        let whole = |region: &mut FakeRegion| -> Vec<Option<PointColumn>> {
            (0..lengths.len())
                .map(|i| region.scan(i, range).unwrap())
                .collect()
        };
        for page_bytes in [1, 42, 100, 4200, 1 << 20] {
            let mut region = FakeRegion {
                lengths: lengths.clone(),
                decoded: 0,
            };
            let expected = whole(&mut region);
            let read = RegionRead::Scan {
                keys: keys(lengths.len()),
                range,
            };
            let (answer, pages) = region.serve(read, page_bytes);
            let RegionAnswer::Points(columns) = answer else {
                panic!("a scan answers points");
            };
            assert_eq!(columns, expected, "page bytes {page_bytes}");
            let per_point = point_bytes(&Values::Int64(vec![0]), 0);
            let points: usize = 3501;
            let per_page = (page_bytes / per_point).max(1);
            assert!(
                pages >= points.div_ceil(per_page),
                "{pages} pages of {page_bytes} bytes"
            );
        }
    }

    /// With `points_max` (a pushed-down `LIMIT`) each series' first points arrive, at
    /// least `points_max` of them, and the pages stop there instead of reading on.
    #[test]
    fn a_limited_scan_stops_paging_each_series_at_its_first_points() {
        let lengths = vec![Some(100_000), None, Some(3), Some(100_000)];
        let range = TimeRange::new(0, 1_000_000);
        let mut region = FakeRegion {
            lengths: lengths.clone(),
            decoded: 0,
        };
        let read = RegionRead::ScanFiltered {
            keys: keys(lengths.len()),
            range,
            filters: vec![None; lengths.len()],
            points_max: Some(10),
        };
        let per_point = point_bytes(&Values::Int64(vec![0]), 0);
        let (answer, pages) = region.serve(read, 4 * per_point);
        let RegionAnswer::Filtered(columns, _) = answer else {
            panic!("a filtered scan answers filtered points");
        };
        for (column, length) in columns.iter().zip(&lengths) {
            match (column, length) {
                (None, None) => {}
                (Some(column), Some(length)) => {
                    let wanted = (*length).min(10) as usize;
                    assert!(column.len() >= wanted && column.len() <= 20);
                    assert_eq!(
                        column.timestamps[..wanted],
                        (0..wanted as i64).collect::<Vec<_>>()
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            pages <= 12,
            "{pages} pages for three series' first 10 points"
        );
        // Pages re-read a little of each series (the span hint), nothing like the 200,003
        // points the region holds.
        assert!(region.decoded <= 100, "decoded {}", region.decoded);
    }

    /// A cursor resumes after its timestamp, within the range, and the span hint keeps a
    /// long series from being decoded again for every page.
    #[test]
    fn a_cursor_resumes_after_the_last_timestamp_and_rereads_little() {
        let mut region = FakeRegion {
            lengths: vec![Some(100_000)],
            decoded: 0,
        };
        let range = TimeRange::new(10, 100_000);
        let per_page = 1000 * point_bytes(&Values::Int64(vec![0]), 0);
        let (first, next) = fill_page(1, range, ReadCursor::default(), per_page, |i, r| {
            region.scan(i, r)
        })
        .unwrap();
        let first = first[0].as_ref().unwrap();
        assert_eq!(first.timestamps.first(), Some(&10));
        assert_eq!(first.len(), 1000);
        let next = next.unwrap();
        assert_eq!(next.after, Some(1009));
        assert_eq!(next.span_hint, Some(1000));
        region.decoded = 0;
        let (second, _) = fill_page(1, range, next, per_page, |i, r| region.scan(i, r)).unwrap();
        assert_eq!(second[0].as_ref().unwrap().timestamps.first(), Some(&1010));
        assert!(
            region.decoded <= 2000,
            "the hint bounds the re-read: {}",
            region.decoded
        );
        // The whole series through pages decodes a small multiple of its points.
        region.decoded = 0;
        region.serve(
            RegionRead::Scan {
                keys: keys(1),
                range,
            },
            per_page,
        );
        assert!(region.decoded < 4 * 100_000, "decoded {}", region.decoded);
    }

    /// Text points are bounded by their size, and a point larger than a page still moves
    /// the scan on (alone in its page).
    #[test]
    fn a_point_larger_than_a_page_goes_alone() {
        let text = PointColumn {
            timestamps: vec![1, 2, 3],
            values: Values::Text(vec![vec![b'a'; 100].into(); 3]),
        };
        let mut pages = 0;
        let mut cursor = Some(ReadCursor::default());
        while let Some(at) = cursor {
            let (columns, next) = fill_page(1, TimeRange::new(0, 10), at, 50, |_, r| {
                let keep: Vec<usize> = (0..3).filter(|i| r.contains(text.timestamps[*i])).collect();
                Ok(Some(PointColumn {
                    timestamps: keep.iter().map(|i| text.timestamps[*i]).collect(),
                    values: Values::Text(keep.iter().map(|_| vec![b'a'; 100].into()).collect()),
                }))
            })
            .unwrap();
            assert_eq!(columns[0].as_ref().unwrap().len(), 1);
            pages += 1;
            assert!(pages <= 3);
            cursor = next;
        }
        assert_eq!(pages, 3);
    }

    /// Aggregates and LAST reads of many series are split by series and concatenated in
    /// order; an answer of the wrong length is refused.
    #[test]
    fn many_series_are_split_into_requests() {
        let all = keys(KEYS_PER_REQUEST_MAX * 2 + 5);
        let mut paged = PagedRead::new(RegionRead::Last { keys: all.clone() }, PAGE_BYTES_DEFAULT);
        let mut requests = 0;
        while let Some(request) = paged.next_request() {
            let RegionRead::Last { keys } = request else {
                panic!("a last read stays one");
            };
            requests += 1;
            let answer = keys
                .iter()
                .map(|k| Some((k.measurement[1..].parse::<i64>().unwrap(), Value::Int64(0))))
                .collect();
            paged.absorb(RegionAnswer::Last(answer)).unwrap();
        }
        assert_eq!(requests, 3);
        let RegionAnswer::Last(points) = paged.finish() else {
            panic!("kind changed");
        };
        let times: Vec<i64> = points.iter().map(|p| p.as_ref().unwrap().0).collect();
        assert_eq!(times, (0..all.len() as i64).collect::<Vec<_>>());

        let windowed = RegionRead::Aggregate {
            keys: keys(100),
            range: TimeRange::new(0, 1_000_000),
            windows: Some(Windows {
                range: TimeRange::new(0, 1_000_000),
                interval_ms: 10,
            }),
            aggregations: vec![Aggregation::Count, Aggregation::Sum],
        };
        let mut paged = PagedRead::new(windowed, PAGE_BYTES_DEFAULT);
        let Some(RegionRead::Aggregate { keys: first, .. }) = paged.next_request() else {
            panic!("an aggregate stays one");
        };
        assert!(
            first.len() < 100,
            "100 000 windows a series: {}",
            first.len()
        );
        assert!(
            paged
                .absorb(RegionAnswer::Aggregates(vec![None; first.len() + 1]))
                .is_err(),
            "an answer for other series than asked is refused"
        );
    }
}
