//! Request and response messages: one body layout per opcode.
//!
//! Every response body starts with a status (`i32` code, string message);
//! the payload follows only when the code is 200. A server decodes requests
//! with [`Request::decode`]; clients decode responses with [`decode_response`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{WireReader, WireWrite};
use crate::error::DecodeError;
use crate::frame::Opcode;
use crate::partition::RouteTable;
use crate::result::{ColumnBatch, LastPoint, ResultSet};
use crate::status::{Status, StatusCode};
use crate::tablet::{SECTION_ALIGNMENT, TabletView, WireTablet, encoded_contents_bytes_estimate};

/// Handshake and authentication; the first request on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub user: String,
    pub password: String,
    pub client_name: String,
    /// A shard-aware client names the shard (core) it wants to talk to; the
    /// server moves the connection to that shard's loop.
    pub target_shard: Option<u32>,
}

/// The server's answer to a successful handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeAccepted {
    pub session_id: u64,
    pub data_node_id: u32,
    /// The shard now serving this connection.
    pub shard_id: u32,
    pub shard_count: u32,
    /// Version of the route table the server holds (clients refetch if newer).
    pub route_table_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateDatabase {
    pub name: String,
    pub ttl_ms: Option<i64>,
    pub data_region_group_num: Option<u32>,
}

/// One device and some of its measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSelection {
    pub device: String,
    pub measurements: Vec<String>,
}

/// Raw range query over `[start_time, end_time)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuery {
    pub series: Vec<SeriesSelection>,
    pub start_time: i64,
    pub end_time: i64,
    pub limit: Option<u64>,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Aggregation {
    Count = 0,
    Sum = 1,
    Avg = 2,
    Min = 3,
    Max = 4,
    First = 5,
    Last = 6,
    /// IoTDB's `min_time`: the time of the first point (INT64).
    MinTime = 7,
    /// IoTDB's `max_time`: the time of the last point (INT64).
    MaxTime = 8,
    /// IoTDB's `extreme`: the value of largest magnitude, the positive one on a tie.
    Extreme = 9,
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

    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        Self::ALL
            .into_iter()
            .find(|aggregation| *aggregation as u8 == code)
            .ok_or_else(|| DecodeError::invalid("aggregation", format!("unknown code {code}")))
    }

    /// IoTDB's function name (`count`, `avg`, `first_value` …).
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
}

/// GROUP BY window: `[start_time, end_time)` cut into `interval_ms` windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupByWindow {
    pub start_time: i64,
    pub end_time: i64,
    pub interval_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateQuery {
    pub series: Vec<SeriesSelection>,
    pub start_time: i64,
    pub end_time: i64,
    pub aggregations: Vec<Aggregation>,
    pub group_by: Option<GroupByWindow>,
}

/// A decoded insert: views over the received frame, no copy.
#[derive(Debug, Clone)]
pub struct InsertTablets {
    pub tablets: Vec<TabletView>,
}

/// A request as the server sees it.
#[derive(Debug, Clone)]
pub enum Request {
    Handshake(Handshake),
    Ping,
    CreateDatabase(CreateDatabase),
    InsertTablets(InsertTablets),
    QueryRaw(RawQuery),
    QueryAggregate(AggregateQuery),
    QueryLast(Vec<SeriesSelection>),
    /// The client's known route table version.
    FetchRouteTable {
        known_version: u64,
    },
    /// Databases to flush; empty = all.
    Flush {
        databases: Vec<String>,
    },
    ExecuteSql {
        statement: String,
    },
}

impl Request {
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Handshake(_) => Opcode::Handshake,
            Request::Ping => Opcode::Ping,
            Request::CreateDatabase(_) => Opcode::CreateDatabase,
            Request::InsertTablets(_) => Opcode::InsertTablets,
            Request::QueryRaw(_) => Opcode::QueryRaw,
            Request::QueryAggregate(_) => Opcode::QueryAggregate,
            Request::QueryLast(_) => Opcode::QueryLast,
            Request::FetchRouteTable { .. } => Opcode::FetchRouteTable,
            Request::Flush { .. } => Opcode::Flush,
            Request::ExecuteSql { .. } => Opcode::ExecuteSql,
        }
    }

    pub fn encode_body(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Request::Handshake(handshake) => {
                out.put_string(&handshake.user);
                out.put_string(&handshake.password);
                out.put_string(&handshake.client_name);
                out.put_option(handshake.target_shard.as_ref(), |out, shard| {
                    out.put_u32_le(*shard)
                });
            }
            Request::Ping => {}
            Request::CreateDatabase(create) => {
                out.put_string(&create.name);
                out.put_option(create.ttl_ms.as_ref(), |out, ttl| out.put_i64_le(*ttl));
                out.put_option(create.data_region_group_num.as_ref(), |out, num| {
                    out.put_u32_le(*num)
                });
            }
            Request::InsertTablets(insert) => {
                put_insert_header(&mut out, insert.tablets.len());
                for tablet in &insert.tablets {
                    put_tablet_prefix(&mut out, tablet.bytes().len(), tablet.is_aligned());
                    out.put_slice(tablet.bytes());
                }
            }
            Request::QueryRaw(query) => {
                put_series(&mut out, &query.series);
                out.put_i64_le(query.start_time);
                out.put_i64_le(query.end_time);
                out.put_option(query.limit.as_ref(), |out, limit| out.put_u64_le(*limit));
                out.put_u64_le(query.offset);
            }
            Request::QueryAggregate(query) => {
                put_series(&mut out, &query.series);
                out.put_i64_le(query.start_time);
                out.put_i64_le(query.end_time);
                out.put_count(query.aggregations.len());
                query
                    .aggregations
                    .iter()
                    .for_each(|aggregation| out.put_u8(*aggregation as u8));
                out.put_option(query.group_by.as_ref(), |out, window| {
                    out.put_i64_le(window.start_time);
                    out.put_i64_le(window.end_time);
                    out.put_i64_le(window.interval_ms);
                });
            }
            Request::QueryLast(series) => put_series(&mut out, series),
            Request::FetchRouteTable { known_version } => out.put_u64_le(*known_version),
            Request::Flush { databases } => {
                out.put_count(databases.len());
                databases
                    .iter()
                    .for_each(|database| out.put_string(database));
            }
            Request::ExecuteSql { statement } => out.put_string(statement),
        }
        out.freeze()
    }

    /// Decodes a request body; the whole body must be consumed.
    pub fn decode(opcode: Opcode, body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = WireReader::new(body);
        let request = match opcode {
            Opcode::Handshake => Request::Handshake(Handshake {
                user: reader.string("user")?,
                password: reader.string("password")?,
                client_name: reader.string("client name")?,
                target_shard: reader.option("target shard", |reader| reader.u32("target shard"))?,
            }),
            Opcode::Ping => Request::Ping,
            Opcode::CreateDatabase => Request::CreateDatabase(CreateDatabase {
                name: reader.string("database name")?,
                ttl_ms: reader.option("ttl", |reader| reader.i64("ttl"))?,
                data_region_group_num: reader
                    .option("data region group num", |reader| reader.u32("group num"))?,
            }),
            Opcode::InsertTablets => Request::InsertTablets(decode_insert(&mut reader)?),
            Opcode::QueryRaw => Request::QueryRaw(RawQuery {
                series: decode_series(&mut reader)?,
                start_time: reader.i64("start time")?,
                end_time: reader.i64("end time")?,
                limit: reader.option("limit", |reader| reader.u64("limit"))?,
                offset: reader.u64("offset")?,
            }),
            Opcode::QueryAggregate => Request::QueryAggregate(AggregateQuery {
                series: decode_series(&mut reader)?,
                start_time: reader.i64("start time")?,
                end_time: reader.i64("end time")?,
                aggregations: reader.list("aggregations", 1, |reader| {
                    Aggregation::from_code(reader.u8("aggregation")?)
                })?,
                group_by: reader.option("group by", |reader| {
                    let window = GroupByWindow {
                        start_time: reader.i64("window start")?,
                        end_time: reader.i64("window end")?,
                        interval_ms: reader.i64("window interval")?,
                    };
                    if window.interval_ms <= 0 {
                        return Err(DecodeError::invalid(
                            "group by",
                            "interval must be positive",
                        ));
                    }
                    Ok(window)
                })?,
            }),
            Opcode::QueryLast => Request::QueryLast(decode_series(&mut reader)?),
            Opcode::FetchRouteTable => Request::FetchRouteTable {
                known_version: reader.u64("known version")?,
            },
            Opcode::Flush => Request::Flush {
                databases: reader.list("databases", 4, |reader| reader.string("database"))?,
            },
            Opcode::ExecuteSql => Request::ExecuteSql {
                statement: reader.string("statement")?,
            },
            Opcode::Error => return Err(DecodeError::UnknownOpcode(opcode as u8)),
        };
        reader.finish()?;
        Ok(request)
    }
}

/// Insert body header: `u32 tablet_count`, `u32 reserved (0)`; keeps the
/// first tablet 8-aligned.
fn put_insert_header(out: &mut BytesMut, tablet_count: usize) {
    out.put_count(tablet_count);
    out.put_u32_le(0);
}

/// Per tablet: `u32 contents_length` (a multiple of 8), `u32 flags` (bit 0 aligned).
fn put_tablet_prefix(out: &mut BytesMut, contents_length: usize, is_aligned: bool) {
    out.put_count(contents_length);
    out.put_u32_le(u32::from(is_aligned));
}

/// Encodes an insert-tablets body straight from owned tablets (the client
/// path: one pass, no intermediate views).
///
/// Panics if a tablet fails [`WireTablet::validate`]; clients validate first.
pub fn encode_insert_tablets(tablets: &[WireTablet]) -> Bytes {
    let estimate: usize = tablets
        .iter()
        .map(|tablet| 8 + encoded_contents_bytes_estimate(tablet))
        .sum();
    let mut out = BytesMut::with_capacity(8 + estimate);
    put_insert_header(&mut out, tablets.len());
    for tablet in tablets {
        let prefix_at = out.len();
        put_tablet_prefix(&mut out, 0, tablet.is_aligned);
        let contents_at = out.len();
        tablet.encode_contents(&mut out);
        let length = u32::try_from(out.len() - contents_at).expect("tablet over 4 GiB");
        out[prefix_at..prefix_at + 4].copy_from_slice(&length.to_le_bytes());
    }
    out.freeze()
}

fn decode_insert(reader: &mut WireReader) -> Result<InsertTablets, DecodeError> {
    let count = reader.count("tablets", 8)?;
    if reader.u32("insert reserved")? != 0 {
        return Err(DecodeError::invalid(
            "insert header",
            "reserved field is not 0",
        ));
    }
    let mut tablets = Vec::with_capacity(count);
    for _ in 0..count {
        let length = reader.u32("tablet length")? as usize;
        let flags = reader.u32("tablet flags")?;
        if flags & !1 != 0 {
            return Err(DecodeError::invalid(
                "tablet flags",
                format!("unknown bits {flags:#x}"),
            ));
        }
        if !length.is_multiple_of(SECTION_ALIGNMENT) {
            return Err(DecodeError::invalid(
                "tablet length",
                format!("{length} is not a multiple of 8"),
            ));
        }
        let contents = reader.take(length, "tablet")?;
        tablets.push(TabletView::decode(contents, flags & 1 != 0)?);
    }
    Ok(InsertTablets { tablets })
}

fn put_series(out: &mut BytesMut, series: &[SeriesSelection]) {
    out.put_count(series.len());
    for selection in series {
        out.put_string(&selection.device);
        out.put_count(selection.measurements.len());
        selection
            .measurements
            .iter()
            .for_each(|measurement| out.put_string(measurement));
    }
}

fn decode_series(reader: &mut WireReader) -> Result<Vec<SeriesSelection>, DecodeError> {
    reader.list("series", 8, |reader| {
        Ok(SeriesSelection {
            device: reader.string("device")?,
            measurements: reader.list("measurements", 4, |reader| reader.string("measurement"))?,
        })
    })
}

/// A successful response's payload; which variant answers which request is
/// fixed by [`ResponsePayload::answers`].
#[derive(Debug, Clone, PartialEq)]
pub enum ResponsePayload {
    Handshake(HandshakeAccepted),
    Pong,
    /// Create database, insert, flush: the status says it all.
    Done,
    /// Raw and aggregate queries; may be streamed as several frames.
    Batch(ColumnBatch),
    Last(Vec<LastPoint>),
    /// `None` when the client's known version is current.
    RouteTable(Option<RouteTable>),
    /// SQL; may be streamed as several frames, each a chunk of rows.
    ResultSet(ResultSet),
}

impl ResponsePayload {
    /// Whether this payload kind answers a request with `opcode`.
    pub fn answers(&self, opcode: Opcode) -> bool {
        matches!(
            (self, opcode),
            (ResponsePayload::Handshake(_), Opcode::Handshake)
                | (ResponsePayload::Pong, Opcode::Ping)
                | (
                    ResponsePayload::Done,
                    Opcode::CreateDatabase | Opcode::InsertTablets | Opcode::Flush
                )
                | (
                    ResponsePayload::Batch(_),
                    Opcode::QueryRaw | Opcode::QueryAggregate
                )
                | (ResponsePayload::Last(_), Opcode::QueryLast)
                | (ResponsePayload::RouteTable(_), Opcode::FetchRouteTable)
                | (ResponsePayload::ResultSet(_), Opcode::ExecuteSql)
        )
    }

    /// Checks what encoding would otherwise assert (server-built payloads).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ResponsePayload::Batch(batch) => batch.validate(),
            ResponsePayload::ResultSet(result_set) => result_set.validate(),
            _ => Ok(()),
        }
    }

    fn encode(&self, out: &mut BytesMut, body_start: usize) {
        match self {
            ResponsePayload::Handshake(accepted) => {
                out.put_u64_le(accepted.session_id);
                out.put_u32_le(accepted.data_node_id);
                out.put_u32_le(accepted.shard_id);
                out.put_u32_le(accepted.shard_count);
                out.put_u64_le(accepted.route_table_version);
            }
            ResponsePayload::Pong | ResponsePayload::Done => {}
            ResponsePayload::Batch(batch) => {
                out.pad_to(body_start, SECTION_ALIGNMENT);
                batch.encode(out);
            }
            ResponsePayload::Last(points) => {
                out.put_count(points.len());
                points.iter().for_each(|point| point.encode(out));
            }
            ResponsePayload::RouteTable(table) => {
                out.put_option(table.as_ref(), |out, table| table.encode(out))
            }
            ResponsePayload::ResultSet(result_set) => result_set.encode(out),
        }
    }

    fn decode(opcode: Opcode, reader: &mut WireReader) -> Result<Self, DecodeError> {
        Ok(match opcode {
            Opcode::Handshake => ResponsePayload::Handshake(HandshakeAccepted {
                session_id: reader.u64("session id")?,
                data_node_id: reader.u32("data node id")?,
                shard_id: reader.u32("shard id")?,
                shard_count: reader.u32("shard count")?,
                route_table_version: reader.u64("route table version")?,
            }),
            Opcode::Ping => ResponsePayload::Pong,
            Opcode::CreateDatabase | Opcode::InsertTablets | Opcode::Flush => ResponsePayload::Done,
            Opcode::QueryRaw | Opcode::QueryAggregate => {
                reader.align(SECTION_ALIGNMENT)?;
                ResponsePayload::Batch(ColumnBatch::decode(reader)?)
            }
            Opcode::QueryLast => {
                ResponsePayload::Last(reader.list("last points", 18, LastPoint::decode)?)
            }
            Opcode::FetchRouteTable => {
                ResponsePayload::RouteTable(reader.option("route table", RouteTable::decode)?)
            }
            Opcode::ExecuteSql => ResponsePayload::ResultSet(ResultSet::decode(reader)?),
            Opcode::Error => {
                return Err(DecodeError::invalid(
                    "response",
                    "error frames carry no payload",
                ));
            }
        })
    }
}

/// What a handler produces for one response frame.
pub type ResponseResult = Result<ResponsePayload, Status>;

/// Encodes a response body: status, then the payload on success.
pub fn encode_response(response: &ResponseResult) -> Bytes {
    let mut out = BytesMut::new();
    match response {
        Ok(payload) => {
            out.put_i32_le(StatusCode::SUCCESS_STATUS.0);
            out.put_string("");
            payload.encode(&mut out, 0);
        }
        Err(status) => {
            // A 200 with no payload would be unreadable: never send one.
            let code = if status.code.is_success() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                status.code
            };
            out.put_i32_le(code.0);
            out.put_string(&status.message);
        }
    }
    out.freeze()
}

/// Decodes a response body for a request of `opcode` (the response frame's
/// opcode without the response bit; [`Opcode::Error`] for error frames).
pub fn decode_response(opcode: Opcode, body: Bytes) -> Result<ResponseResult, DecodeError> {
    let mut reader = WireReader::new(body);
    let code = StatusCode(reader.i32("status code")?);
    let message = reader.string("status message")?;
    if !code.is_success() {
        reader.finish()?;
        return Ok(Err(Status { code, message }));
    }
    let payload = ResponsePayload::decode(opcode, &mut reader)?;
    reader.finish()?;
    Ok(Ok(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::tests::arb_route_table;
    use crate::tablet::tests::{arb_column, arb_tablet};
    use crate::types::{DataType, Value};
    use proptest::prelude::*;

    fn arb_series() -> impl Strategy<Value = Vec<SeriesSelection>> {
        prop::collection::vec(
            (
                "root\\.[a-z]{1,3}\\.d[0-9]",
                prop::collection::vec("s[0-9]{1,2}", 0..4),
            )
                .prop_map(|(device, measurements)| SeriesSelection {
                    device,
                    measurements,
                }),
            0..4,
        )
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Boolean),
            any::<i32>().prop_map(Value::Int32),
            any::<i64>().prop_map(Value::Int64),
            any::<u32>().prop_map(|bits| Value::Float(f32::from_bits(bits))),
            any::<u64>().prop_map(|bits| Value::Double(f64::from_bits(bits))),
            prop::collection::vec(any::<u8>(), 0..10)
                .prop_map(|bytes| Value::Text(Bytes::from(bytes))),
        ]
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let aggregation = (0u8..7).prop_map(|code| Aggregation::from_code(code).unwrap());
        let window = (any::<i64>(), any::<i64>(), 1i64..i64::MAX).prop_map(
            |(start_time, end_time, interval_ms)| GroupByWindow {
                start_time,
                end_time,
                interval_ms,
            },
        );
        prop_oneof![
            (".{0,8}", ".{0,8}", ".{0,8}", prop::option::of(any::<u32>())).prop_map(
                |(user, password, client_name, target_shard)| Request::Handshake(Handshake {
                    user,
                    password,
                    client_name,
                    target_shard
                })
            ),
            Just(Request::Ping),
            (
                "root\\.[a-z]{1,6}",
                prop::option::of(any::<i64>()),
                prop::option::of(any::<u32>())
            )
                .prop_map(|(name, ttl_ms, data_region_group_num)| {
                    Request::CreateDatabase(CreateDatabase {
                        name,
                        ttl_ms,
                        data_region_group_num,
                    })
                }),
            prop::collection::vec(arb_tablet(), 0..3).prop_map(|tablets| {
                let body = encode_insert_tablets(&tablets);
                Request::decode(Opcode::InsertTablets, body).unwrap()
            }),
            (
                arb_series(),
                any::<i64>(),
                any::<i64>(),
                prop::option::of(any::<u64>()),
                any::<u64>()
            )
                .prop_map(|(series, start_time, end_time, limit, offset)| {
                    Request::QueryRaw(RawQuery {
                        series,
                        start_time,
                        end_time,
                        limit,
                        offset,
                    })
                }),
            (
                arb_series(),
                any::<i64>(),
                any::<i64>(),
                prop::collection::vec(aggregation, 0..7),
                prop::option::of(window)
            )
                .prop_map(|(series, start_time, end_time, aggregations, group_by)| {
                    Request::QueryAggregate(AggregateQuery {
                        series,
                        start_time,
                        end_time,
                        aggregations,
                        group_by,
                    })
                }),
            arb_series().prop_map(Request::QueryLast),
            any::<u64>().prop_map(|known_version| Request::FetchRouteTable { known_version }),
            prop::collection::vec("root\\.[a-z]{1,4}", 0..3)
                .prop_map(|databases| Request::Flush { databases }),
            ".{0,40}".prop_map(|statement| Request::ExecuteSql { statement }),
        ]
    }

    fn arb_result_set() -> impl Strategy<Value = ResultSet> {
        prop::collection::vec(("[A-Za-z]{1,6}", 0u8..6), 1..4).prop_flat_map(|columns| {
            let types: Vec<DataType> = columns
                .iter()
                .map(|(_, code)| DataType::from_code(*code).unwrap())
                .collect();
            let names: Vec<String> = columns.into_iter().map(|(name, _)| name).collect();
            let row_types = types.clone();
            let row = row_types
                .into_iter()
                .map(|data_type| {
                    prop::option::of(arb_value().prop_filter_map("type", move |value| {
                        (value.data_type() == data_type).then_some(value)
                    }))
                })
                .collect::<Vec<_>>();
            prop::collection::vec(row, 0..5).prop_map(move |rows| ResultSet {
                column_names: names.clone(),
                column_types: types.clone(),
                rows,
            })
        })
    }

    fn arb_response() -> impl Strategy<Value = (Opcode, ResponseResult)> {
        let batch = (0usize..10).prop_flat_map(|rows| {
            (
                prop::collection::vec(any::<i64>(), rows),
                prop::collection::vec(arb_column(rows), 0..4),
            )
                .prop_map(|(timestamps, columns)| ColumnBatch {
                    timestamps,
                    columns,
                })
        });
        let last = ("root\\.[a-z]\\.d\\.s[0-9]", any::<i64>(), arb_value()).prop_map(
            |(path, timestamp, value)| LastPoint {
                path,
                timestamp,
                value,
            },
        );
        prop_oneof![
            (
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u64>()
            )
                .prop_map(|(a, b, c, d, e)| (
                    Opcode::Handshake,
                    Ok(ResponsePayload::Handshake(HandshakeAccepted {
                        session_id: a,
                        data_node_id: b,
                        shard_id: c,
                        shard_count: d,
                        route_table_version: e
                    }))
                )),
            Just((Opcode::Ping, Ok(ResponsePayload::Pong))),
            Just((Opcode::InsertTablets, Ok(ResponsePayload::Done))),
            batch.prop_map(|batch| (Opcode::QueryRaw, Ok(ResponsePayload::Batch(batch)))),
            prop::collection::vec(last, 0..4)
                .prop_map(|points| (Opcode::QueryLast, Ok(ResponsePayload::Last(points)))),
            prop::option::of(arb_route_table()).prop_map(|table| (
                Opcode::FetchRouteTable,
                Ok(ResponsePayload::RouteTable(table))
            )),
            arb_result_set().prop_map(|result_set| (
                Opcode::ExecuteSql,
                Ok(ResponsePayload::ResultSet(result_set))
            )),
            (300i32..900, ".{0,20}").prop_map(|(code, message)| (
                Opcode::QueryRaw,
                Err(Status {
                    code: StatusCode(code),
                    message
                })
            )),
        ]
    }

    proptest! {
        #[test]
        fn request_roundtrip(request in arb_request()) {
            let body = request.encode_body();
            let decoded = Request::decode(request.opcode(), body.clone()).unwrap();
            // Byte equality covers views (which have no PartialEq) and NaN payloads.
            prop_assert_eq!(decoded.encode_body(), body);
        }

        #[test]
        fn insert_tablets_roundtrip_to_owned(tablets in prop::collection::vec(arb_tablet(), 0..4)) {
            let body = encode_insert_tablets(&tablets);
            let Request::InsertTablets(insert) = Request::decode(Opcode::InsertTablets, body).unwrap() else {
                panic!("wrong variant");
            };
            let owned: Vec<WireTablet> = insert.tablets.iter().map(TabletView::to_wire_tablet).collect();
            prop_assert_eq!(owned, tablets);
        }

        #[test]
        fn response_roundtrip((opcode, response) in arb_response()) {
            let body = encode_response(&response);
            let decoded = decode_response(opcode, body).unwrap();
            prop_assert_eq!(decoded, response);
        }

        #[test]
        fn random_request_bodies_never_panic(code in 1u8..11, bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Some(opcode) = Opcode::from_u8(code) {
                let _ = Request::decode(opcode, Bytes::from(bytes));
            }
        }

        #[test]
        fn random_response_bodies_never_panic(code in 1u8..11, bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Some(opcode) = Opcode::from_u8(code) {
                let _ = decode_response(opcode, Bytes::from(bytes.clone()));
                let mut with_success = BytesMut::new();
                with_success.put_i32_le(200);
                with_success.put_u32_le(0);
                with_success.extend_from_slice(&bytes);
                let _ = decode_response(opcode, with_success.freeze());
            }
        }
    }
}
