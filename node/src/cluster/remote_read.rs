//! Reads of a region group held by another DataNode: the same `RegionRead` a shard sends
//! its neighbours over the mesh, sent to the holder over the internal protocol, and the
//! `RegionAnswer` back. The receiving DataNode's merge (time order, aggregate
//! combination, `LIMIT`) is the one it uses for its own regions, so a query reads every
//! region group of the cluster the same way.
//!
//! The bodies are JSON mirrors of the engine's types (which know nothing of serde). An
//! answer must fit one internal frame (16 MiB): the asker reads scans a page at a time
//! (`ScanPage`, resumed from a cursor) and splits reads of many series
//! (`datanode::read_pages`), so only one series' oversized answer is refused (with a
//! message saying so).

use iotdb_model::DataType;
use iotdb_net::Status;
use iotdb_storage::{
    AggregateRow, Aggregation, CompareOp, FilterCounters, Operand, PointColumn, SeriesKey,
    TimeRange, Value, ValueFilter, Windows, types::Values,
};
use serde::{Deserialize, Serialize};

use crate::datanode::query::{RegionAnswer, RegionRead};
use crate::datanode::read_pages::ReadCursor;

/// A `RegionRead` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireRead {
    Scan {
        keys: Vec<(String, String)>,
        range: (i64, i64),
    },
    Aggregate {
        keys: Vec<(String, String)>,
        range: (i64, i64),
        /// (start, end, interval)
        windows: Option<(i64, i64, i64)>,
        /// Indexes into `Aggregation::ALL`.
        aggregations: Vec<u8>,
    },
    Last {
        keys: Vec<(String, String)>,
    },
    ScanFiltered {
        keys: Vec<(String, String)>,
        range: (i64, i64),
        filters: Vec<Option<WireFilter>>,
        /// The first this many points of each key (a pushed-down `LIMIT`); absent from
        /// older senders, which read every point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        points_max: Option<u64>,
    },
    /// One page of a scan (`RegionRead::ScanPage`).
    ScanPage {
        keys: Vec<(String, String)>,
        range: (i64, i64),
        filters: Option<Vec<Option<WireFilter>>>,
        cursor: ReadCursor,
        page_bytes_max: u64,
        /// As in `ScanFiltered`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        points_max: Option<u64>,
    },
}

/// A `ValueFilter` on the wire (a regular expression travels as its source).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireFilter {
    Any,
    /// Index into [`COMPARE_OPS`].
    Compare(u8, WireValue),
    In(Vec<WireValue>),
    Matches(String),
    Not(Box<WireFilter>),
    And(Vec<WireFilter>),
    Or(Vec<WireFilter>),
}

const COMPARE_OPS: [CompareOp; 6] = [
    CompareOp::Less,
    CompareOp::LessEqual,
    CompareOp::Greater,
    CompareOp::GreaterEqual,
    CompareOp::Equal,
    CompareOp::NotEqual,
];

/// A value (or a filter operand) on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireValue {
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float(f32),
    Double(f64),
    Text(Vec<u8>),
}

/// A column of points on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireColumn {
    timestamps: Vec<i64>,
    values: WireValues,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WireValues {
    Boolean(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Text(Vec<Vec<u8>>),
}

/// An aggregate row on the wire: (window start, one value per aggregation).
pub type WireAggregateRow = (i64, Vec<Option<WireValue>>);

/// A `RegionAnswer` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireAnswer {
    Points(Vec<Option<WireColumn>>),
    Aggregates(Vec<Option<(DataType, Vec<WireAggregateRow>)>>),
    Last(Vec<Option<(i64, WireValue)>>),
    /// Points, and the filter counters (skipped, all in, pieces checked, points checked).
    Filtered(Vec<Option<WireColumn>>, [u64; 4]),
    /// One page of a scan: points, filter counters, where the next page starts.
    Page {
        columns: Vec<Option<WireColumn>>,
        counters: [u64; 4],
        next: Option<ReadCursor>,
    },
}

fn malformed(what: &str) -> Status {
    Status::internal(format!("a malformed remote region read: {what}"))
}

fn keys_out(keys: &[SeriesKey]) -> Vec<(String, String)> {
    keys.iter()
        .map(|key| (key.device.to_string(), key.measurement.to_string()))
        .collect()
}

fn keys_in(keys: &[(String, String)]) -> Vec<SeriesKey> {
    keys.iter()
        .map(|(device, measurement)| SeriesKey::new(device, measurement))
        .collect()
}

fn range_in((start, end): (i64, i64)) -> TimeRange {
    TimeRange { start, end }
}

fn range_out(range: TimeRange) -> (i64, i64) {
    (range.start, range.end)
}

impl WireRead {
    pub fn of(read: &RegionRead) -> WireRead {
        match read {
            RegionRead::Scan { keys, range } => WireRead::Scan {
                keys: keys_out(keys),
                range: range_out(*range),
            },
            RegionRead::Aggregate {
                keys,
                range,
                windows,
                aggregations,
            } => WireRead::Aggregate {
                keys: keys_out(keys),
                range: range_out(*range),
                windows: windows.map(|w| (w.range.start, w.range.end, w.interval_ms)),
                aggregations: aggregations
                    .iter()
                    .map(|a| {
                        Aggregation::ALL
                            .iter()
                            .position(|b| b == a)
                            .expect("every aggregation is in ALL") as u8
                    })
                    .collect(),
            },
            RegionRead::Last { keys } => WireRead::Last {
                keys: keys_out(keys),
            },
            RegionRead::ScanFiltered {
                keys,
                range,
                filters,
                points_max,
            } => WireRead::ScanFiltered {
                keys: keys_out(keys),
                range: range_out(*range),
                filters: filters_out(filters),
                points_max: points_max.map(|n| n as u64),
            },
            RegionRead::ScanPage {
                keys,
                range,
                filters,
                cursor,
                page_bytes_max,
                points_max,
            } => WireRead::ScanPage {
                keys: keys_out(keys),
                range: range_out(*range),
                filters: filters.as_deref().map(filters_out),
                cursor: *cursor,
                page_bytes_max: *page_bytes_max as u64,
                points_max: points_max.map(|n| n as u64),
            },
        }
    }

    pub fn into_read(self) -> Result<RegionRead, Status> {
        Ok(match self {
            WireRead::Scan { keys, range } => RegionRead::Scan {
                keys: keys_in(&keys),
                range: range_in(range),
            },
            WireRead::Aggregate {
                keys,
                range,
                windows,
                aggregations,
            } => RegionRead::Aggregate {
                keys: keys_in(&keys),
                range: range_in(range),
                windows: windows.map(|(start, end, interval_ms)| Windows {
                    range: TimeRange { start, end },
                    interval_ms,
                }),
                aggregations: aggregations
                    .iter()
                    .map(|i| {
                        Aggregation::ALL
                            .get(usize::from(*i))
                            .copied()
                            .ok_or_else(|| malformed("an unknown aggregation"))
                    })
                    .collect::<Result<_, _>>()?,
            },
            WireRead::Last { keys } => RegionRead::Last {
                keys: keys_in(&keys),
            },
            WireRead::ScanFiltered {
                keys,
                range,
                filters,
                points_max,
            } => RegionRead::ScanFiltered {
                keys: keys_in(&keys),
                range: range_in(range),
                filters: filters_in(filters)?,
                points_max: points_max.map(count_in),
            },
            WireRead::ScanPage {
                keys,
                range,
                filters,
                cursor,
                page_bytes_max,
                points_max,
            } => RegionRead::ScanPage {
                keys: keys_in(&keys),
                range: range_in(range),
                filters: filters.map(filters_in).transpose()?,
                cursor,
                page_bytes_max: count_in(page_bytes_max),
                points_max: points_max.map(count_in),
            },
        })
    }
}

/// A count from the wire as a `usize` (saturating: a larger count only means "all").
fn count_in(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}

fn filters_out(filters: &[Option<ValueFilter>]) -> Vec<Option<WireFilter>> {
    filters.iter().map(|f| f.as_ref().map(filter_out)).collect()
}

fn filters_in(filters: Vec<Option<WireFilter>>) -> Result<Vec<Option<ValueFilter>>, Status> {
    filters
        .into_iter()
        .map(|f| f.map(filter_in).transpose())
        .collect()
}

fn counters_out(counters: &FilterCounters) -> [u64; 4] {
    [
        counters.chunks_skipped,
        counters.chunks_all_in,
        counters.pieces_checked,
        counters.points_checked,
    ]
}

fn counters_in([skipped, all_in, pieces, points]: [u64; 4]) -> FilterCounters {
    FilterCounters {
        chunks_skipped: skipped,
        chunks_all_in: all_in,
        pieces_checked: pieces,
        points_checked: points,
    }
}

fn operand_out(operand: &Operand) -> WireValue {
    match operand {
        Operand::Number(n) => WireValue::Double(*n),
        Operand::Text(t) => WireValue::Text(t.to_vec()),
        Operand::Boolean(b) => WireValue::Boolean(*b),
    }
}

fn operand_in(value: WireValue) -> Result<Operand, Status> {
    Ok(match value {
        WireValue::Double(n) => Operand::Number(n),
        WireValue::Text(t) => Operand::Text(t.into()),
        WireValue::Boolean(b) => Operand::Boolean(b),
        _ => return Err(malformed("a filter operand")),
    })
}

fn filter_out(filter: &ValueFilter) -> WireFilter {
    match filter {
        ValueFilter::Any => WireFilter::Any,
        ValueFilter::Compare(op, operand) => WireFilter::Compare(
            COMPARE_OPS
                .iter()
                .position(|o| o == op)
                .expect("every operator is listed") as u8,
            operand_out(operand),
        ),
        ValueFilter::In(operands) => WireFilter::In(operands.iter().map(operand_out).collect()),
        ValueFilter::Matches(regex) => WireFilter::Matches(regex.as_str().to_string()),
        ValueFilter::Not(inner) => WireFilter::Not(Box::new(filter_out(inner))),
        ValueFilter::And(all) => WireFilter::And(all.iter().map(filter_out).collect()),
        ValueFilter::Or(any) => WireFilter::Or(any.iter().map(filter_out).collect()),
    }
}

fn filter_in(filter: WireFilter) -> Result<ValueFilter, Status> {
    Ok(match filter {
        WireFilter::Any => ValueFilter::Any,
        WireFilter::Compare(op, operand) => ValueFilter::Compare(
            *COMPARE_OPS
                .get(usize::from(op))
                .ok_or_else(|| malformed("an unknown comparison"))?,
            operand_in(operand)?,
        ),
        WireFilter::In(operands) => ValueFilter::In(
            operands
                .into_iter()
                .map(operand_in)
                .collect::<Result<_, _>>()?,
        ),
        WireFilter::Matches(source) => ValueFilter::Matches(
            regex::Regex::new(&source).map_err(|_| malformed("a regular expression"))?,
        ),
        WireFilter::Not(inner) => ValueFilter::Not(Box::new(filter_in(*inner)?)),
        WireFilter::And(all) => {
            ValueFilter::And(all.into_iter().map(filter_in).collect::<Result<_, _>>()?)
        }
        WireFilter::Or(any) => {
            ValueFilter::Or(any.into_iter().map(filter_in).collect::<Result<_, _>>()?)
        }
    })
}

fn value_out(value: &Value) -> WireValue {
    match value {
        Value::Boolean(v) => WireValue::Boolean(*v),
        Value::Int32(v) => WireValue::Int32(*v),
        Value::Int64(v) => WireValue::Int64(*v),
        Value::Float(v) => WireValue::Float(*v),
        Value::Double(v) => WireValue::Double(*v),
        Value::Text(v) => WireValue::Text(v.to_vec()),
    }
}

fn value_in(value: WireValue) -> Value {
    match value {
        WireValue::Boolean(v) => Value::Boolean(v),
        WireValue::Int32(v) => Value::Int32(v),
        WireValue::Int64(v) => Value::Int64(v),
        WireValue::Float(v) => Value::Float(v),
        WireValue::Double(v) => Value::Double(v),
        WireValue::Text(v) => Value::Text(v.into()),
    }
}

fn column_out(column: &PointColumn) -> WireColumn {
    WireColumn {
        timestamps: column.timestamps.clone(),
        values: match &column.values {
            Values::Boolean(v) => WireValues::Boolean(v.clone()),
            Values::Int32(v) => WireValues::Int32(v.clone()),
            Values::Int64(v) => WireValues::Int64(v.clone()),
            Values::Float(v) => WireValues::Float(v.clone()),
            Values::Double(v) => WireValues::Double(v.clone()),
            Values::Text(v) => WireValues::Text(v.iter().map(|t| t.to_vec()).collect()),
        },
    }
}

fn column_in(column: WireColumn) -> Result<PointColumn, Status> {
    let values = match column.values {
        WireValues::Boolean(v) => Values::Boolean(v),
        WireValues::Int32(v) => Values::Int32(v),
        WireValues::Int64(v) => Values::Int64(v),
        WireValues::Float(v) => Values::Float(v),
        WireValues::Double(v) => Values::Double(v),
        WireValues::Text(v) => Values::Text(v.into_iter().map(Into::into).collect()),
    };
    let length = iotdb_storage::with_values!(&values, v => v.len());
    if length != column.timestamps.len() {
        return Err(malformed(
            "a column whose values and timestamps differ in length",
        ));
    }
    Ok(PointColumn {
        timestamps: column.timestamps,
        values,
    })
}

impl WireAnswer {
    pub fn of(answer: &RegionAnswer) -> WireAnswer {
        match answer {
            RegionAnswer::Points(columns) => {
                WireAnswer::Points(columns.iter().map(|c| c.as_ref().map(column_out)).collect())
            }
            RegionAnswer::Aggregates(series) => WireAnswer::Aggregates(
                series
                    .iter()
                    .map(|s| {
                        s.as_ref().map(|(data_type, rows)| {
                            (
                                *data_type,
                                rows.iter()
                                    .map(|row| {
                                        (
                                            row.window_start,
                                            row.values
                                                .iter()
                                                .map(|v| v.as_ref().map(value_out))
                                                .collect(),
                                        )
                                    })
                                    .collect(),
                            )
                        })
                    })
                    .collect(),
            ),
            RegionAnswer::Last(points) => WireAnswer::Last(
                points
                    .iter()
                    .map(|p| p.as_ref().map(|(time, value)| (*time, value_out(value))))
                    .collect(),
            ),
            RegionAnswer::Filtered(columns, counters) => WireAnswer::Filtered(
                columns.iter().map(|c| c.as_ref().map(column_out)).collect(),
                counters_out(counters),
            ),
            RegionAnswer::Page {
                columns,
                counters,
                next,
            } => WireAnswer::Page {
                columns: columns.iter().map(|c| c.as_ref().map(column_out)).collect(),
                counters: counters_out(counters),
                next: *next,
            },
        }
    }

    pub fn into_answer(self) -> Result<RegionAnswer, Status> {
        let columns =
            |columns: Vec<Option<WireColumn>>| -> Result<Vec<Option<PointColumn>>, Status> {
                columns
                    .into_iter()
                    .map(|c| c.map(column_in).transpose())
                    .collect()
            };
        Ok(match self {
            WireAnswer::Points(c) => RegionAnswer::Points(columns(c)?),
            WireAnswer::Aggregates(series) => RegionAnswer::Aggregates(
                series
                    .into_iter()
                    .map(|s| {
                        s.map(|(data_type, rows)| {
                            (
                                data_type,
                                rows.into_iter()
                                    .map(|(window_start, values)| AggregateRow {
                                        window_start,
                                        values: values
                                            .into_iter()
                                            .map(|v| v.map(value_in))
                                            .collect(),
                                    })
                                    .collect(),
                            )
                        })
                    })
                    .collect(),
            ),
            WireAnswer::Last(points) => RegionAnswer::Last(
                points
                    .into_iter()
                    .map(|p| p.map(|(time, value)| (time, value_in(value))))
                    .collect(),
            ),
            WireAnswer::Filtered(c, counters) => {
                RegionAnswer::Filtered(columns(c)?, counters_in(counters))
            }
            WireAnswer::Page {
                columns: c,
                counters,
                next,
            } => RegionAnswer::Page {
                columns: columns(c)?,
                counters: counters_in(counters),
                next,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_read(read: &RegionRead) -> RegionRead {
        let body = serde_json::to_vec(&WireRead::of(read)).unwrap();
        serde_json::from_slice::<WireRead>(&body)
            .unwrap()
            .into_read()
            .unwrap()
    }

    /// Every read and answer crosses the wire unchanged (filters with regular expressions
    /// included), and damaged bodies are typed errors.
    #[test]
    fn reads_and_answers_cross_the_wire_unchanged() {
        let keys = vec![SeriesKey::new("root.sg.d1", "s1")];
        let range = TimeRange { start: 5, end: 99 };
        let filter = ValueFilter::And(vec![
            ValueFilter::Compare(CompareOp::GreaterEqual, Operand::Number(1.5)),
            ValueFilter::Not(Box::new(ValueFilter::Matches(
                regex::Regex::new("^a.*z$").unwrap(),
            ))),
            ValueFilter::In(vec![Operand::Text("x".into()), Operand::Boolean(true)]),
        ]);
        let read = RegionRead::ScanFiltered {
            keys: keys.clone(),
            range,
            filters: vec![Some(filter.clone()), None],
            points_max: Some(10),
        };
        let RegionRead::ScanFiltered {
            keys: k,
            range: r,
            filters,
            points_max,
        } = roundtrip_read(&read)
        else {
            panic!("kind changed");
        };
        assert_eq!((k, r, points_max), (keys.clone(), range, Some(10)));
        assert_eq!(format!("{:?}", filters[0]), format!("{:?}", Some(filter)));
        let aggregate = RegionRead::Aggregate {
            keys: keys.clone(),
            range,
            windows: Some(Windows {
                range,
                interval_ms: 10,
            }),
            aggregations: Aggregation::ALL.to_vec(),
        };
        let RegionRead::Aggregate {
            windows,
            aggregations,
            ..
        } = roundtrip_read(&aggregate)
        else {
            panic!("kind changed");
        };
        assert_eq!(aggregations, Aggregation::ALL.to_vec());
        assert_eq!(windows.map(|w| w.interval_ms), Some(10));

        let answer = RegionAnswer::Points(vec![
            Some(PointColumn {
                timestamps: vec![1, 2],
                values: Values::Text(vec!["a".into(), "b".into()]),
            }),
            None,
        ]);
        let body = serde_json::to_vec(&WireAnswer::of(&answer)).unwrap();
        let RegionAnswer::Points(columns) = serde_json::from_slice::<WireAnswer>(&body)
            .unwrap()
            .into_answer()
            .unwrap()
        else {
            panic!("kind changed");
        };
        assert_eq!(columns[0].as_ref().unwrap().timestamps, [1, 2]);
        assert!(columns[1].is_none());
        let page = RegionRead::ScanPage {
            keys: keys.clone(),
            range,
            filters: Some(vec![None]),
            cursor: ReadCursor {
                key: 0,
                after: Some(41),
                span_hint: Some(7),
            },
            page_bytes_max: 4096,
            points_max: None,
        };
        let RegionRead::ScanPage {
            cursor,
            page_bytes_max,
            filters,
            points_max,
            ..
        } = roundtrip_read(&page)
        else {
            panic!("kind changed");
        };
        assert_eq!(
            (cursor.after, cursor.span_hint, page_bytes_max, points_max),
            (Some(41), Some(7), 4096, None)
        );
        assert_eq!(filters.map(|f| f.len()), Some(1));
        let answer = RegionAnswer::Page {
            columns: vec![None],
            counters: FilterCounters::default(),
            next: Some(cursor),
        };
        let body = serde_json::to_vec(&WireAnswer::of(&answer)).unwrap();
        let RegionAnswer::Page { next, .. } = serde_json::from_slice::<WireAnswer>(&body)
            .unwrap()
            .into_answer()
            .unwrap()
        else {
            panic!("kind changed");
        };
        assert_eq!(next, Some(cursor));
        let damaged = WireAnswer::Points(vec![Some(WireColumn {
            timestamps: vec![1, 2, 3],
            values: WireValues::Int64(vec![1]),
        })]);
        assert!(damaged.into_answer().is_err(), "lengths must agree");
        let unknown = WireRead::Aggregate {
            keys: vec![],
            range: (0, 1),
            windows: None,
            aggregations: vec![200],
        };
        assert!(unknown.into_read().is_err());
        let bad_regex = WireRead::ScanFiltered {
            keys: vec![],
            range: (0, 1),
            filters: vec![Some(WireFilter::Matches("(".into()))],
            points_max: None,
        };
        assert!(bad_regex.into_read().is_err());
    }
}
