//! `IClientRPCService` on one connection: decode a call, run it on the connection's shard
//! through the same paths as native requests, encode the reply.
//!
//! ```text
//! frame ─ FrameInput ─▶ (method name, seq) ─▶ args struct (generated)
//!   ├─ openSession / closeSession / time zone / properties   connection state only
//!   ├─ insert*  ─▶ insert.rs: native tablets ─▶ Shard::insert (schema, routing, group commit)
//!   ├─ execute*V2 / raw / last ─▶ Shard::open_sql ─▶ Query (pages of TsBlocks; a raw
//!   │                              SELECT's rows are read as the client fetches them)
//!   ├─ fetchResultsV2 / closeOperation                      the connection's open queries
//!   └─ schema calls ─▶ SQL statements built from checked paths ─▶ Shard::execute_sql
//! reply: {0: success} of the method's result type, or a TApplicationException
//! ```
//!
//! Errors of a call become a `TSStatus` with IoTDB's code, so the client raises what it
//! raises against IoTDB. A call that is not implemented gets 300 UNSUPPORTED_OPERATION in
//! its own reply type (or, when the method is unknown, an `UNKNOWN_METHOD` application
//! exception); the connection stays open. Bytes that do not decode get a
//! `PROTOCOL_ERROR` exception and the connection closes.
//!
//! The state here belongs to one connection on one shard (`!Send`).

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use iotdb_net::{DataType, ResultSet, Status, StatusCode, TabletView};
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TFieldIdentifier, TInputProtocol,
    TMessageIdentifier, TMessageType, TOutputProtocol, TSerializable, TStructIdentifier, TType,
};
use thrift::{ApplicationError, ApplicationErrorKind};

use super::generated::*;
use super::input::{FrameInput, ThriftProtocol};
use super::{insert, tsblock};
use crate::config::DEFAULT_USER;
use crate::datanode::Shard;
use crate::datanode::select::{Row, RowPages};
use crate::datanode::sql_exec::SqlAnswer;
use crate::sql;

/// Queries one connection keeps open for paging; opening one more drops the oldest
/// (a client that never calls `closeOperation` cannot grow the server without bound).
///
/// Why 16: an open query holds a raw result's cursor and its next page, or what is left of
/// another result (up to the SQL row cap); a session reads one result at a time, and a few
/// interleaved iterators are plenty.
pub const OPEN_QUERIES_MAX: usize = 16;

/// Rows per TsBlock page when the client names no fetch size (the Python client's default).
pub const FETCH_SIZE_DEFAULT: usize = 5000;

/// Largest page a client may ask for, so one answer stays well inside a frame.
pub const FETCH_SIZE_MAX: usize = 100_000;

/// The reply of one call, by result type.
enum Reply {
    Status(TSStatus),
    Execute(TSExecuteStatementResp),
    Fetch(TSFetchResultsResp),
    Open(TSOpenSessionResp),
    TimeZone(TSGetTimeZoneResp),
    Properties(ServerProperties),
    I64(i64),
}

impl Reply {
    /// The status code of a reply that reports a failure (anything but success).
    fn failure(&self) -> Option<i32> {
        let status = match self {
            Reply::Status(status) => status,
            Reply::Execute(response) => &response.status,
            Reply::Fetch(response) => &response.status,
            Reply::Open(response) => &response.status,
            Reply::TimeZone(_) | Reply::Properties(_) | Reply::I64(_) => return None,
        };
        (status.code != StatusCode::SUCCESS_STATUS.code()).then_some(status.code)
    }
}

/// What a method is, for the request counters (`crate::metrics`). The generic
/// `executeStatement` and `executeUpdateStatement` are counted when they fail only: their
/// SQL is not looked at here.
fn request_kind(method: &str) -> crate::metrics::RequestKind {
    use crate::metrics::RequestKind;
    if method.starts_with("insert") {
        RequestKind::Write
    } else if method.starts_with("executeQueryStatement")
        || method.starts_with("executeRawDataQuery")
        || method.starts_with("executeLastDataQuery")
        || method.starts_with("executeFastLastDataQuery")
        || method.starts_with("executeAggregationQuery")
    {
        RequestKind::Query
    } else {
        RequestKind::Other
    }
}

/// Result types of the methods, to answer an error in the type the client expects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Status,
    Execute,
    Fetch,
    Open,
    TimeZone,
    Properties,
    I64,
}

/// The result type of every `IClientRPCService` method this server knows by name; `None`
/// for names outside the service (answered with `UNKNOWN_METHOD`).
fn reply_kind(method: &str) -> Option<ReplyKind> {
    use ReplyKind::*;
    Some(match method {
        "openSession" => Open,
        "getTimeZone" => TimeZone,
        "getProperties" => Properties,
        "requestStatementId" => I64,
        "fetchResultsV2" | "fetchResults" => Fetch,
        "executeQueryStatementV2"
        | "executeUpdateStatementV2"
        | "executeStatementV2"
        | "executeRawDataQueryV2"
        | "executeLastDataQueryV2"
        | "executeFastLastDataQueryForOnePrefixPath"
        | "executeFastLastDataQueryForOneDeviceV2"
        | "executeAggregationQueryV2"
        | "executeStatement"
        | "executeQueryStatement"
        | "executeUpdateStatement"
        | "executeRawDataQuery"
        | "executeLastDataQuery"
        | "executeAggregationQuery" => Execute,
        "closeSession"
        | "closeOperation"
        | "cancelOperation"
        | "setTimeZone"
        | "setStorageGroup"
        | "createTimeseries"
        | "createAlignedTimeseries"
        | "createMultiTimeseries"
        | "deleteTimeseries"
        | "deleteStorageGroups"
        | "insertRecord"
        | "insertStringRecord"
        | "insertTablet"
        | "insertTablets"
        | "insertRecords"
        | "insertRecordsOfOneDevice"
        | "insertStringRecordsOfOneDevice"
        | "insertStringRecords"
        | "testInsertTablet"
        | "testInsertTablets"
        | "testInsertRecord"
        | "testInsertStringRecord"
        | "testInsertRecords"
        | "testInsertRecordsOfOneDevice"
        | "testInsertStringRecords"
        | "deleteData"
        | "executeBatchStatement"
        | "createSchemaTemplate"
        | "appendSchemaTemplate"
        | "pruneSchemaTemplate"
        | "setSchemaTemplate"
        | "unsetSchemaTemplate"
        | "dropSchemaTemplate"
        | "createTimeseriesUsingSchemaTemplate"
        | "handshake"
        | "sendPipeData"
        | "sendFile"
        | "testConnectionEmptyRPC" => Status,
        _ => return None,
    })
}

fn success() -> TSStatus {
    status(StatusCode::SUCCESS_STATUS, "")
}

fn status(code: StatusCode, message: &str) -> TSStatus {
    TSStatus {
        code: code.code(),
        message: (!message.is_empty()).then(|| message.to_owned()),
        sub_status: None,
        redirect_node: None,
        need_retry: None,
    }
}

/// A native status as IoTDB's `TSStatus` (the codes are IoTDB's already).
fn ts_status(error: &Status) -> TSStatus {
    status(error.code, &error.message)
}

fn result_status(result: Result<(), Status>) -> TSStatus {
    match result {
        Ok(()) => success(),
        Err(error) => ts_status(&error),
    }
}

fn error_reply(kind: ReplyKind, error: TSStatus) -> Option<Reply> {
    Some(match kind {
        ReplyKind::Status => Reply::Status(error),
        ReplyKind::Execute => Reply::Execute(execute_status(error)),
        ReplyKind::Fetch => Reply::Fetch(TSFetchResultsResp {
            status: error,
            has_result_set: false,
            is_align: true,
            query_result: None,
            more_data: None,
        }),
        ReplyKind::Open => Reply::Open(TSOpenSessionResp {
            status: error,
            server_protocol_version: TSProtocolVersion::IOTDB_SERVICE_PROTOCOL_V3,
            session_id: None,
            configuration: None,
        }),
        ReplyKind::TimeZone => Reply::TimeZone(TSGetTimeZoneResp {
            status: error,
            time_zone: String::new(),
        }),
        ReplyKind::Properties | ReplyKind::I64 => return None,
    })
}

fn execute_status(status: TSStatus) -> TSExecuteStatementResp {
    TSExecuteStatementResp {
        status,
        query_id: None,
        columns: None,
        operation_type: None,
        ignore_time_stamp: None,
        data_type_list: None,
        column_name_index_map: None,
        query_result: None,
        more_data: None,
        database: None,
        table_model: None,
        column_index2_ts_block_column_index_list: None,
    }
}

/// A result being paged to the client.
struct Query {
    id: i64,
    /// The result's columns (no rows).
    header: ResultSet,
    /// The result's first column is the time column (IoTDB's `ignoreTimeStamp = false`).
    has_time: bool,
    rows: QueryRows,
}

/// Where a query's next rows come from.
enum QueryRows {
    /// What is left of a result computed whole.
    Whole(VecDeque<Row>),
    /// A raw `SELECT` read a page at a time as the client fetches.
    Pages(RowPages),
}

impl Query {
    fn value_types(&self) -> &[DataType] {
        &self.header.column_types[usize::from(self.has_time)..]
    }

    /// The next page as one TsBlock, and whether rows remain after it.
    async fn next_page(&mut self, fetch_size: usize) -> Result<(Vec<u8>, bool), Status> {
        let (rows, more) = match &mut self.rows {
            QueryRows::Whole(rows) => {
                let page: Vec<Row> = rows.drain(..fetch_size.min(rows.len())).collect();
                (page, !rows.is_empty())
            }
            QueryRows::Pages(pages) => pages.next_page(fetch_size).await?,
        };
        let offset = usize::from(self.has_time);
        let times: Vec<i64> = rows
            .iter()
            .map(|row| match row.first() {
                Some(Some(iotdb_net::Value::Int64(t))) if self.has_time => *t,
                _ => 0,
            })
            .collect();
        let block = tsblock::encode(&times, self.value_types(), |row, column| {
            rows[row][column + offset].as_ref()
        });
        Ok((block, more))
    }
}

/// An open session's settings.
struct Session {
    id: i64,
    zone_id: String,
}

/// What one Thrift connection remembers between calls.
pub struct Connection {
    shard: Rc<Shard>,
    protocol: ThriftProtocol,
    session: Option<Session>,
    failed_logins: u32,
    next_statement_id: i64,
    next_query_id: i64,
    queries: VecDeque<Query>,
    /// Largest frame body after authentication, reported by `getProperties`.
    frame_body_bytes_max: u32,
}

/// How a call ended for the connection.
pub enum Outcome {
    /// Send the reply and read the next call.
    Continue(Vec<u8>),
    /// Send the reply (an error), then close the connection.
    Close(Vec<u8>),
}

type ThriftResult<T> = thrift::Result<T>;

/// Reads an argument envelope `{1: T}` (every call but a few takes one request struct).
fn read_request<T: TSerializable>(input: &mut dyn TInputProtocol) -> ThriftResult<T> {
    input.read_struct_begin()?;
    let mut request = None;
    loop {
        let field = input.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        if field.id == Some(1) && field.field_type == TType::Struct {
            request = Some(T::read_from_in_protocol(input)?);
        } else {
            input.skip(field.field_type)?;
        }
        input.read_field_end()?;
    }
    input.read_struct_end()?;
    request.ok_or_else(|| {
        thrift::Error::Protocol(thrift::ProtocolError::new(
            thrift::ProtocolErrorKind::InvalidData,
            "the call's request struct (field 1) is missing",
        ))
    })
}

impl Connection {
    pub fn new(shard: Rc<Shard>, protocol: ThriftProtocol, frame_body_bytes_max: u32) -> Self {
        Self {
            shard,
            protocol,
            session: None,
            failed_logins: 0,
            next_statement_id: 0,
            next_query_id: 0,
            queries: VecDeque::new(),
            frame_body_bytes_max,
        }
    }

    /// Whether `openSession` succeeded (the larger frame limit applies from then on).
    pub fn is_authenticated(&self) -> bool {
        self.session.is_some()
    }

    /// Handles one frame body (one call).
    pub async fn handle_frame(&mut self, frame: &[u8]) -> Outcome {
        let mut input = FrameInput::new(self.protocol, frame);
        let message = match input.read_message_begin() {
            Ok(message) => message,
            Err(error) => {
                return Outcome::Close(self.exception(
                    "",
                    0,
                    ApplicationErrorKind::ProtocolError,
                    &format!("bad message header: {error}"),
                ));
            }
        };
        if !matches!(
            message.message_type,
            TMessageType::Call | TMessageType::OneWay
        ) {
            return Outcome::Close(self.exception(
                &message.name,
                message.sequence_number,
                ApplicationErrorKind::InvalidMessageType,
                "a client sends calls only",
            ));
        }
        let name = message.name.clone();
        let sequence = message.sequence_number;
        let Some(kind) = reply_kind(&name) else {
            if let Err(error) = input.skip(TType::Struct) {
                return Outcome::Close(self.protocol_error(&name, sequence, &error));
            }
            return Outcome::Continue(self.exception(
                &name,
                sequence,
                ApplicationErrorKind::UnknownMethod,
                &format!("unknown method {name}"),
            ));
        };
        let reply = match self.call(&name, kind, &mut input).await {
            Ok(reply) => reply,
            Err(error) => return Outcome::Close(self.protocol_error(&name, sequence, &error)),
        };
        let metrics = self.shard.metrics();
        metrics.request(request_kind(&name));
        if let Some(code) = reply.as_ref().and_then(Reply::failure) {
            metrics.error(StatusCode(code));
        }
        let close = self.failed_logins >= iotdb_net::HANDSHAKE_ATTEMPTS_MAX;
        let bytes = match reply {
            Some(reply) => self.encode_reply(&name, sequence, &reply),
            None => self.exception(
                &name,
                sequence,
                ApplicationErrorKind::InternalError,
                "not logged in: call openSession first",
            ),
        };
        if close {
            Outcome::Close(bytes)
        } else {
            Outcome::Continue(bytes)
        }
    }

    /// Decodes the arguments and runs the call. `Err` only for undecodable arguments.
    async fn call(
        &mut self,
        name: &str,
        kind: ReplyKind,
        input: &mut FrameInput<'_>,
    ) -> ThriftResult<Option<Reply>> {
        // Calls allowed without a session.
        match name {
            "openSession" => {
                let request: TSOpenSessionReq = read_request(input)?;
                return Ok(Some(Reply::Open(self.open_session(request))));
            }
            "getProperties" => {
                input.skip(TType::Struct)?;
                return Ok(Some(Reply::Properties(self.properties())));
            }
            "closeSession" => {
                let request: TSCloseSessionReq = read_request(input)?;
                if let Some(session) = self.session.take() {
                    tracing::debug!(
                        session = session.id,
                        asked = request.session_id,
                        "thrift session closed"
                    );
                }
                self.queries.clear();
                return Ok(Some(Reply::Status(success())));
            }
            _ => {}
        }
        macro_rules! request {
            ($type:ty) => {{
                let request: $type = read_request(input)?;
                if self.session.is_none() {
                    return Ok(not_logged_in(kind));
                }
                request
            }};
        }
        macro_rules! args {
            ($type:ty) => {{
                let args = <$type>::read_from_in_protocol(input)?;
                if self.session.is_none() {
                    return Ok(not_logged_in(kind));
                }
                args
            }};
        }
        let reply = match name {
            "requestStatementId" => {
                let _ = args!(SessionIdArgs);
                self.next_statement_id += 1;
                Reply::I64(self.next_statement_id)
            }
            "getTimeZone" => {
                let _ = args!(SessionIdArgs);
                Reply::TimeZone(TSGetTimeZoneResp {
                    status: success(),
                    time_zone: self
                        .session
                        .as_ref()
                        .map(|s| s.zone_id.clone())
                        .unwrap_or_default(),
                })
            }
            "setTimeZone" => {
                let request = request!(TSSetTimeZoneReq);
                if let Some(session) = self.session.as_mut() {
                    session.zone_id = request.time_zone;
                }
                Reply::Status(success())
            }
            "executeQueryStatementV2" | "executeStatementV2" | "executeUpdateStatementV2" => {
                let request = request!(TSExecuteStatementReq);
                let fetch_size = fetch_size(request.fetch_size);
                Reply::Execute(self.execute(&request.statement, fetch_size).await)
            }
            "executeRawDataQueryV2" => {
                let request = request!(TSRawDataQueryReq);
                Reply::Execute(self.raw_query(&request).await)
            }
            "executeLastDataQueryV2" => {
                let request = request!(TSLastDataQueryReq);
                Reply::Execute(self.last_query(&request).await)
            }
            "fetchResultsV2" => {
                let request = request!(TSFetchResultsReq);
                Reply::Fetch(self.fetch(&request).await)
            }
            "closeOperation" | "cancelOperation" => {
                if name == "closeOperation" {
                    let request = request!(TSCloseOperationReq);
                    match request.query_id {
                        Some(id) => self.queries.retain(|q| q.id != id),
                        None => self.queries.clear(),
                    }
                } else {
                    input.skip(TType::Struct)?;
                }
                Reply::Status(success())
            }
            "setStorageGroup" => {
                let args = args!(SessionPathArgs);
                Reply::Status(self.set_storage_group(&args.path).await)
            }
            "deleteStorageGroups" => {
                let args = args!(SessionPathsArgs);
                Reply::Status(
                    self.paths_statement("DELETE DATABASE", &args.paths, "")
                        .await,
                )
            }
            "deleteTimeseries" => {
                let args = args!(SessionPathsArgs);
                Reply::Status(
                    self.paths_statement("DELETE TIMESERIES", &args.paths, "")
                        .await,
                )
            }
            "deleteData" => {
                let request = request!(TSDeleteDataReq);
                Reply::Status(self.delete_data(&request).await)
            }
            "createTimeseries" => {
                let request = request!(TSCreateTimeseriesReq);
                Reply::Status(
                    self.create_timeseries(
                        &request.path,
                        request.data_type,
                        request.encoding,
                        request.compressor,
                    )
                    .await,
                )
            }
            "createMultiTimeseries" => {
                let request = request!(TSCreateMultiTimeseriesReq);
                Reply::Status(self.create_multi_timeseries(&request).await)
            }
            "createAlignedTimeseries" => {
                let request = request!(TSCreateAlignedTimeseriesReq);
                Reply::Status(self.create_aligned_timeseries(&request).await)
            }
            "insertTablet" | "testInsertTablet" => {
                let request = request!(TSInsertTabletReq);
                let tablets = tablet_of(&request).map(|t| vec![t]);
                Reply::Status(self.write(tablets, name.starts_with("test")).await)
            }
            "insertTablets" | "testInsertTablets" => {
                let request = request!(TSInsertTabletsReq);
                Reply::Status(
                    self.write(tablets_of(&request), name.starts_with("test"))
                        .await,
                )
            }
            "insertRecord" | "testInsertRecord" => {
                let request = request!(TSInsertRecordReq);
                let tablets = insert::record(
                    &request.prefix_path,
                    &request.measurements,
                    &request.values,
                    request.timestamp,
                    request.is_aligned.unwrap_or(false),
                )
                .and_then(|tablet| insert::view(&tablet))
                .map(|t| vec![t]);
                Reply::Status(self.write(tablets, name.starts_with("test")).await)
            }
            "insertRecords" | "testInsertRecords" => {
                let request = request!(TSInsertRecordsReq);
                let tablets = records_of(
                    |i| request.prefix_paths.get(i).map(String::as_str),
                    &request.measurements_list,
                    &request.values_list,
                    &request.timestamps,
                    request.prefix_paths.len(),
                    request.is_aligned.unwrap_or(false),
                );
                Reply::Status(self.write(tablets, name.starts_with("test")).await)
            }
            "insertRecordsOfOneDevice" | "testInsertRecordsOfOneDevice" => {
                let request = request!(TSInsertRecordsOfOneDeviceReq);
                let tablets = records_of(
                    |_| Some(request.prefix_path.as_str()),
                    &request.measurements_list,
                    &request.values_list,
                    &request.timestamps,
                    request.timestamps.len(),
                    request.is_aligned.unwrap_or(false),
                );
                Reply::Status(self.write(tablets, name.starts_with("test")).await)
            }
            "insertStringRecord" | "testInsertStringRecord" => {
                let request = request!(TSInsertStringRecordReq);
                let rows = vec![StringRecord {
                    device: &request.prefix_path,
                    measurements: &request.measurements,
                    values: &request.values,
                    timestamp: request.timestamp,
                }];
                let aligned = request.is_aligned.unwrap_or(false);
                Reply::Status(
                    self.string_records(&rows, aligned, name.starts_with("test"))
                        .await,
                )
            }
            "insertStringRecords" | "testInsertStringRecords" => {
                let request = request!(TSInsertStringRecordsReq);
                let aligned = request.is_aligned.unwrap_or(false);
                let result = string_records_of(
                    |i| request.prefix_paths.get(i).map(String::as_str),
                    &request.measurements_list,
                    &request.values_list,
                    &request.timestamps,
                    request.prefix_paths.len(),
                );
                Reply::Status(match result {
                    Ok(rows) => {
                        self.string_records(&rows, aligned, name.starts_with("test"))
                            .await
                    }
                    Err(error) => ts_status(&error),
                })
            }
            "insertStringRecordsOfOneDevice" => {
                let request = request!(TSInsertStringRecordsOfOneDeviceReq);
                let aligned = request.is_aligned.unwrap_or(false);
                let result = string_records_of(
                    |_| Some(request.prefix_path.as_str()),
                    &request.measurements_list,
                    &request.values_list,
                    &request.timestamps,
                    request.timestamps.len(),
                );
                Reply::Status(match result {
                    Ok(rows) => self.string_records(&rows, aligned, false).await,
                    Err(error) => ts_status(&error),
                })
            }
            "testConnectionEmptyRPC" => {
                input.skip(TType::Struct)?;
                Reply::Status(success())
            }
            _ => {
                input.skip(TType::Struct)?;
                if self.session.is_none() {
                    return Ok(not_logged_in(kind));
                }
                return Ok(error_reply(
                    kind,
                    status(
                        StatusCode::UNSUPPORTED_OPERATION,
                        &format!("{name} is not supported by this server"),
                    ),
                ));
            }
        };
        Ok(Some(reply))
    }

    fn open_session(&mut self, request: TSOpenSessionReq) -> TSOpenSessionResp {
        let config = &self.shard.shared.config;
        let refuse = |code: StatusCode, message: &str| TSOpenSessionResp {
            status: status(code, message),
            server_protocol_version: TSProtocolVersion::IOTDB_SERVICE_PROTOCOL_V3,
            session_id: None,
            configuration: None,
        };
        if request.username != DEFAULT_USER
            || request.password.as_deref() != Some(config.root_password.as_str())
        {
            self.failed_logins += 1;
            tracing::warn!(user = %request.username, "thrift authentication failed");
            return refuse(
                StatusCode::WRONG_LOGIN_PASSWORD,
                "Authentication failed: wrong user name or password",
            );
        }
        if request.client_protocol != TSProtocolVersion::IOTDB_SERVICE_PROTOCOL_V3 {
            return refuse(
                StatusCode::INCOMPATIBLE_VERSION,
                &format!(
                    "client protocol version {} is not supported; this server speaks V3",
                    request.client_protocol.0
                ),
            );
        }
        let dialect = request
            .configuration
            .as_ref()
            .and_then(|c| c.get("sql_dialect"))
            .map(String::as_str)
            .unwrap_or("tree");
        if !dialect.eq_ignore_ascii_case("tree") {
            return refuse(
                StatusCode::UNSUPPORTED_OPERATION,
                &format!(
                    "sql_dialect {dialect} is not supported: this server has the tree model only"
                ),
            );
        }
        let id = self.shard.next_session() as i64;
        self.session = Some(Session {
            id,
            zone_id: request.zone_id,
        });
        self.failed_logins = 0;
        tracing::debug!(session = id, "thrift session opened");
        let configuration = BTreeMap::from([
            ("timestamp_precision".to_owned(), "ms".to_owned()),
            ("sql_dialect".to_owned(), "tree".to_owned()),
        ]);
        TSOpenSessionResp {
            status: success(),
            server_protocol_version: TSProtocolVersion::IOTDB_SERVICE_PROTOCOL_V3,
            session_id: Some(id),
            configuration: Some(configuration),
        }
    }

    fn properties(&self) -> ServerProperties {
        let config = &self.shard.shared.config;
        ServerProperties {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            supported_time_aggregation_operations: [
                "count",
                "sum",
                "avg",
                "min_value",
                "max_value",
                "first_value",
                "last_value",
            ]
            .map(str::to_owned)
            .to_vec(),
            timestamp_precision: "ms".to_owned(),
            max_concurrent_client_num: i32::try_from(config.dn_rpc_max_concurrent_client_num).ok(),
            thrift_max_frame_size: i32::try_from(self.frame_body_bytes_max).ok(),
            is_read_only: Some(false),
            build_info: None,
            logo: None,
        }
    }

    /// Runs SQL and answers with its first page (or just the status).
    async fn execute(&mut self, statement: &str, fetch_size: usize) -> TSExecuteStatementResp {
        let (header, rows) = match self.shard.open_sql(statement).await {
            Ok(SqlAnswer::Whole(mut result)) => {
                let rows = std::mem::take(&mut result.rows);
                (result, QueryRows::Whole(rows.into()))
            }
            Ok(SqlAnswer::Pages(pages)) => (pages.header().clone(), QueryRows::Pages(pages)),
            Err(error) => return execute_status(ts_status(&error)),
        };
        if header.column_names.is_empty() {
            return execute_status(success());
        }
        let has_time = header.column_names.first().map(String::as_str) == Some("Time")
            && header.column_types.first() == Some(&DataType::Int64);
        self.next_query_id += 1;
        let mut query = Query {
            id: self.next_query_id,
            header,
            has_time,
            rows,
        };
        let (block, more) = match query.next_page(fetch_size).await {
            Ok(page) => page,
            Err(error) => return execute_status(ts_status(&error)),
        };
        let offset = usize::from(has_time);
        let columns: Vec<String> = query.header.column_names[offset..].to_vec();
        let types: Vec<String> = query
            .value_types()
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
        let mut index_map = BTreeMap::new();
        for (index, name) in columns.iter().enumerate() {
            index_map.entry(name.clone()).or_insert(index as i32);
        }
        let id = query.id;
        if more {
            if self.queries.len() >= OPEN_QUERIES_MAX {
                self.queries.pop_front();
            }
            self.queries.push_back(query);
        }
        TSExecuteStatementResp {
            status: success(),
            query_id: Some(id),
            columns: Some(columns),
            operation_type: None,
            ignore_time_stamp: Some(!has_time),
            data_type_list: Some(types),
            column_name_index_map: Some(index_map),
            query_result: Some(vec![block]),
            more_data: Some(more),
            database: None,
            table_model: Some(false),
            column_index2_ts_block_column_index_list: None,
        }
    }

    async fn fetch(&mut self, request: &TSFetchResultsReq) -> TSFetchResultsResp {
        let fetch_size = fetch_size(Some(request.fetch_size));
        let Some(index) = self.queries.iter().position(|q| q.id == request.query_id) else {
            return TSFetchResultsResp {
                status: status(
                    StatusCode::EXECUTE_STATEMENT_ERROR,
                    &format!(
                        "query {} is not open on this connection (finished, closed, or \
                         dropped after {OPEN_QUERIES_MAX} newer queries)",
                        request.query_id
                    ),
                ),
                has_result_set: false,
                is_align: true,
                query_result: None,
                more_data: Some(false),
            };
        };
        let (block, more) = match self.queries[index].next_page(fetch_size).await {
            Ok(page) => page,
            Err(error) => {
                self.queries.remove(index);
                return TSFetchResultsResp {
                    status: ts_status(&error),
                    has_result_set: false,
                    is_align: true,
                    query_result: None,
                    more_data: Some(false),
                };
            }
        };
        if !more {
            self.queries.remove(index);
        }
        TSFetchResultsResp {
            status: success(),
            has_result_set: true,
            is_align: true,
            query_result: Some(vec![block]),
            more_data: Some(more),
        }
    }

    async fn raw_query(&mut self, request: &TSRawDataQueryReq) -> TSExecuteStatementResp {
        let suffixes = match series_suffixes(&request.paths) {
            Ok(suffixes) => suffixes,
            Err(error) => return execute_status(ts_status(&error)),
        };
        let statement = format!(
            "SELECT {suffixes} FROM root WHERE time >= {} AND time < {}",
            request.start_time, request.end_time
        );
        self.execute(&statement, fetch_size(request.fetch_size))
            .await
    }

    async fn last_query(&mut self, request: &TSLastDataQueryReq) -> TSExecuteStatementResp {
        let suffixes = match series_suffixes(&request.paths) {
            Ok(suffixes) => suffixes,
            Err(error) => return execute_status(ts_status(&error)),
        };
        let statement = if request.time == i64::MIN {
            format!("SELECT LAST {suffixes} FROM root")
        } else {
            format!(
                "SELECT LAST {suffixes} FROM root WHERE time >= {}",
                request.time
            )
        };
        self.execute(&statement, fetch_size(request.fetch_size))
            .await
    }

    async fn run(&self, statement: &str) -> Result<(), Status> {
        self.shard.execute_sql(statement).await.map(|_| ())
    }

    async fn set_storage_group(&self, path: &str) -> TSStatus {
        match checked_path(path, false) {
            Ok(path) => result_status(self.run(&format!("CREATE DATABASE {path}")).await),
            Err(error) => ts_status(&error),
        }
    }

    /// `{verb} p1, p2, ... {suffix}` over checked path patterns.
    async fn paths_statement(&self, verb: &str, paths: &[String], suffix: &str) -> TSStatus {
        if paths.is_empty() {
            return status(StatusCode::ILLEGAL_PARAMETER, "no path given");
        }
        let checked: Result<Vec<&str>, Status> =
            paths.iter().map(|p| checked_path(p, true)).collect();
        match checked {
            Ok(paths) => result_status(
                self.run(&format!("{verb} {}{suffix}", paths.join(", ")))
                    .await,
            ),
            Err(error) => ts_status(&error),
        }
    }

    async fn delete_data(&self, request: &TSDeleteDataReq) -> TSStatus {
        // IoTDB's range is inclusive at both ends; i64::MIN / MAX mean "unbounded".
        let mut conditions = Vec::new();
        if request.start_time != i64::MIN {
            conditions.push(format!("time >= {}", request.start_time));
        }
        if request.end_time != i64::MAX {
            conditions.push(format!("time <= {}", request.end_time));
        }
        let suffix = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        self.paths_statement("DELETE FROM", &request.paths, &suffix)
            .await
    }

    async fn create_timeseries(
        &self,
        path: &str,
        data_type: i32,
        encoding: i32,
        compressor: i32,
    ) -> TSStatus {
        let statement = checked_path(path, false).and_then(|path| {
            Ok(format!(
                "CREATE TIMESERIES {path} WITH DATATYPE={}, ENCODING={}, COMPRESSOR={}",
                type_name(data_type)?,
                encoding_name(encoding)?,
                compressor_name(compressor)?
            ))
        });
        match statement {
            Ok(statement) => result_status(self.run(&statement).await),
            Err(error) => ts_status(&error),
        }
    }

    async fn create_multi_timeseries(&self, request: &TSCreateMultiTimeseriesReq) -> TSStatus {
        let count = request.paths.len();
        if request.data_types.len() != count
            || request.encodings.len() != count
            || request.compressors.len() != count
        {
            return status(
                StatusCode::ILLEGAL_PARAMETER,
                "paths, data types, encodings and compressors differ in length",
            );
        }
        let mut statuses = Vec::with_capacity(count);
        for index in 0..count {
            statuses.push(
                self.create_timeseries(
                    &request.paths[index],
                    request.data_types[index],
                    request.encodings[index],
                    request.compressors[index],
                )
                .await,
            );
        }
        combine(statuses)
    }

    async fn create_aligned_timeseries(&self, request: &TSCreateAlignedTimeseriesReq) -> TSStatus {
        let count = request.measurements.len();
        if request.data_types.len() != count
            || request.encodings.len() != count
            || request.compressors.len() != count
        {
            return status(
                StatusCode::ILLEGAL_PARAMETER,
                "measurements, data types, encodings and compressors differ in length",
            );
        }
        let statement = (|| -> Result<String, Status> {
            let device = checked_path(&request.prefix_path, false)?;
            let mut items = Vec::with_capacity(count);
            for index in 0..count {
                let measurement = checked_node(&request.measurements[index])?;
                items.push(format!(
                    "{measurement} {} ENCODING={} COMPRESSOR={}",
                    type_name(request.data_types[index])?,
                    encoding_name(request.encodings[index])?,
                    compressor_name(request.compressors[index])?
                ));
            }
            Ok(format!(
                "CREATE ALIGNED TIMESERIES {device}({})",
                items.join(", ")
            ))
        })();
        match statement {
            Ok(statement) => result_status(self.run(&statement).await),
            Err(error) => ts_status(&error),
        }
    }

    /// Writes converted tablets through the native write path (`test`: convert only).
    async fn write(&self, views: Result<Vec<TabletView>, Status>, test_only: bool) -> TSStatus {
        let result = async {
            let views = views?;
            if test_only {
                return Ok(());
            }
            self.shard.insert(views).await
        }
        .await;
        let mut answer = result_status(result);
        answer.redirect_node = redirect_hint();
        answer
    }

    /// String records: types come from the schema (or are inferred as for SQL `INSERT`),
    /// so they go through the SQL insert path, one statement per record.
    async fn string_records(
        &self,
        records: &[StringRecord<'_>],
        aligned: bool,
        test_only: bool,
    ) -> TSStatus {
        let mut inserts = Vec::with_capacity(records.len());
        for record in records {
            match string_insert(record, aligned) {
                Ok(insert) => inserts.push(insert),
                Err(error) => return ts_status(&error),
            }
        }
        if test_only {
            return success();
        }
        for insert in inserts {
            if let Err(error) = self.shard.execute_insert(insert).await {
                return ts_status(&error);
            }
        }
        success()
    }

    fn encode_reply(&self, name: &str, sequence: i32, reply: &Reply) -> Vec<u8> {
        self.encode(|output| {
            output.write_message_begin(&TMessageIdentifier::new(
                name,
                TMessageType::Reply,
                sequence,
            ))?;
            output.write_struct_begin(&TStructIdentifier::new("result"))?;
            let field_type = if matches!(reply, Reply::I64(_)) {
                TType::I64
            } else {
                TType::Struct
            };
            output.write_field_begin(&TFieldIdentifier::new("success", field_type, 0))?;
            match reply {
                Reply::Status(value) => value.write_to_out_protocol(output)?,
                Reply::Execute(value) => value.write_to_out_protocol(output)?,
                Reply::Fetch(value) => value.write_to_out_protocol(output)?,
                Reply::Open(value) => value.write_to_out_protocol(output)?,
                Reply::TimeZone(value) => value.write_to_out_protocol(output)?,
                Reply::Properties(value) => value.write_to_out_protocol(output)?,
                Reply::I64(value) => output.write_i64(*value)?,
            }
            output.write_field_end()?;
            output.write_field_stop()?;
            output.write_struct_end()?;
            output.write_message_end()
        })
    }

    fn exception(
        &self,
        name: &str,
        sequence: i32,
        kind: ApplicationErrorKind,
        message: &str,
    ) -> Vec<u8> {
        let error = ApplicationError::new(kind, message.to_owned());
        self.encode(|output| {
            output.write_message_begin(&TMessageIdentifier::new(
                name,
                TMessageType::Exception,
                sequence,
            ))?;
            thrift::Error::write_application_error_to_out_protocol(&error, output)?;
            output.write_message_end()
        })
    }

    fn protocol_error(&self, name: &str, sequence: i32, error: &thrift::Error) -> Vec<u8> {
        tracing::debug!(method = name, %error, "undecodable thrift call; closing");
        self.exception(
            name,
            sequence,
            ApplicationErrorKind::ProtocolError,
            &format!("undecodable arguments: {error}"),
        )
    }

    /// A framed message: 4-byte big-endian length, then the body `write` produces.
    fn encode(&self, write: impl FnOnce(&mut dyn TOutputProtocol) -> ThriftResult<()>) -> Vec<u8> {
        let mut frame = vec![0u8; 4];
        let result = match self.protocol {
            ThriftProtocol::Binary => {
                let mut output = TBinaryOutputProtocol::new(&mut frame, true);
                write(&mut output).and_then(|()| output.flush())
            }
            ThriftProtocol::Compact => {
                let mut output = TCompactOutputProtocol::new(&mut frame);
                write(&mut output).and_then(|()| output.flush())
            }
        };
        // Writing into a Vec fails only on a bug (e.g. a value the protocol cannot carry).
        assert!(result.is_ok(), "encoding a thrift reply failed: {result:?}");
        let length = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        frame
    }
}

fn not_logged_in(kind: ReplyKind) -> Option<Reply> {
    error_reply(
        kind,
        status(
            StatusCode::NOT_LOGIN,
            "Log in failed. Either you are not authorized or the session has timed out: \
             call openSession first",
        ),
    )
}

/// IoTDB's redirect hint on inserts: the endpoint of the DataNode leading the device's
/// region, which IoTDB's SDKs cache to send that device's later writes there directly.
///
/// This node is the only DataNode (standalone), so it leads every region and the hint is
/// always absent. In a cluster this is where the route table's leader endpoint for the
/// written devices goes (`TEndPoint{rpc address, rpc port}`, on the status, or per device
/// on sub-statuses of code 400 for multi-device inserts).
fn redirect_hint() -> Option<TEndPoint> {
    None
}

/// One status for several: success if all succeeded, else IoTDB's 302 MULTIPLE_ERROR
/// with every status as a sub-status.
fn combine(statuses: Vec<TSStatus>) -> TSStatus {
    if statuses
        .iter()
        .all(|s| s.code == StatusCode::SUCCESS_STATUS.code())
    {
        return success();
    }
    let message = statuses
        .iter()
        .filter(|s| s.code != StatusCode::SUCCESS_STATUS.code())
        .filter_map(|s| s.message.clone())
        .collect::<Vec<_>>()
        .join("; ");
    TSStatus {
        code: StatusCode::MULTIPLE_ERROR.code(),
        message: Some(message),
        sub_status: Some(statuses.into_iter().map(Box::new).collect()),
        redirect_node: None,
        need_retry: None,
    }
}

fn fetch_size(requested: Option<i32>) -> usize {
    match requested {
        Some(size) if size > 0 => (size as usize).min(FETCH_SIZE_MAX),
        _ => FETCH_SIZE_DEFAULT,
    }
}

/// A path (or, with `pattern`, a path pattern) from the client, accepted only if the SQL
/// parser reads it back as exactly itself, so that it can be placed in a statement.
fn checked_path(path: &str, pattern: bool) -> Result<&str, Status> {
    let illegal = || {
        Status::new(
            StatusCode::ILLEGAL_PATH,
            format!("{path} is not a legal path"),
        )
    };
    let statement = sql::parse(&format!("SHOW TIMESERIES {path}")).map_err(|_| illegal())?;
    let sql::Statement::ShowTimeseries {
        pattern: Some(parsed),
    } = statement
    else {
        return Err(illegal());
    };
    if parsed.to_string() != path || (!pattern && parsed.has_wildcard()) {
        return Err(illegal());
    }
    Ok(path)
}

/// One node name (a measurement), checked like a path.
fn checked_node(name: &str) -> Result<&str, Status> {
    checked_path(&format!("root.{name}"), false)?;
    if name.contains('.') {
        return Err(Status::new(
            StatusCode::ILLEGAL_PATH,
            format!("{name} is not a legal measurement name"),
        ));
    }
    Ok(name)
}

/// Full series paths as select items under `FROM root` (`root.sg.d.s` → `sg.d.s`).
fn series_suffixes(paths: &[String]) -> Result<String, Status> {
    if paths.is_empty() {
        return Err(Status::illegal_parameter("no path given"));
    }
    let mut suffixes = Vec::with_capacity(paths.len());
    for path in paths {
        let checked = checked_path(path, false)?;
        let suffix = checked.strip_prefix("root.").ok_or_else(|| {
            Status::new(
                StatusCode::ILLEGAL_PATH,
                format!("{path} is not a full series path"),
            )
        })?;
        suffixes.push(suffix);
    }
    Ok(suffixes.join(", "))
}

fn type_name(code: i32) -> Result<&'static str, Status> {
    insert::data_type(code).map(DataType::name)
}

fn encoding_name(code: i32) -> Result<&'static str, Status> {
    Ok(match code {
        0 => "PLAIN",
        1 => "DICTIONARY",
        2 => "RLE",
        3 => "DIFF",
        4 => "TS_2DIFF",
        5 => "BITMAP",
        6 => "GORILLA_V1",
        7 => "REGULAR",
        8 => "GORILLA",
        9 => "ZIGZAG",
        11 => "CHIMP",
        12 => "SPRINTZ",
        13 => "RLBE",
        _ => {
            return Err(Status::illegal_parameter(format!(
                "unknown encoding {code}"
            )));
        }
    })
}

fn compressor_name(code: i32) -> Result<&'static str, Status> {
    Ok(match code {
        0 => "UNCOMPRESSED",
        1 => "SNAPPY",
        2 => "GZIP",
        3 => "LZO",
        4 => "SDT",
        5 => "PAA",
        6 => "PLA",
        7 => "LZ4",
        8 => "ZSTD",
        9 => "LZMA2",
        _ => {
            return Err(Status::illegal_parameter(format!(
                "unknown compressor {code}"
            )));
        }
    })
}

fn tablet_of(request: &TSInsertTabletReq) -> Result<TabletView, Status> {
    insert::tablet_view(&insert::ThriftTablet::of_request(
        request,
        request.is_aligned.unwrap_or(false),
    ))
}

fn tablets_of(request: &TSInsertTabletsReq) -> Result<Vec<TabletView>, Status> {
    let count = request.prefix_paths.len();
    if [
        request.measurements_list.len(),
        request.values_list.len(),
        request.timestamps_list.len(),
        request.types_list.len(),
        request.size_list.len(),
    ]
    .iter()
    .any(|l| *l != count)
    {
        return Err(Status::illegal_parameter(
            "the lists of an insertTablets request differ in length",
        ));
    }
    (0..count)
        .map(|i| {
            insert::tablet_view(&insert::ThriftTablet {
                device: &request.prefix_paths[i],
                measurements: &request.measurements_list[i],
                types: &request.types_list[i],
                values: &request.values_list[i],
                timestamps: &request.timestamps_list[i],
                size: request.size_list[i],
                is_aligned: request.is_aligned.unwrap_or(false),
            })
        })
        .collect()
}

fn records_of<'a>(
    device: impl Fn(usize) -> Option<&'a str>,
    measurements: &[Vec<String>],
    values: &[Vec<u8>],
    timestamps: &[i64],
    count: usize,
    aligned: bool,
) -> Result<Vec<TabletView>, Status> {
    if measurements.len() != count || values.len() != count || timestamps.len() != count {
        return Err(Status::illegal_parameter(
            "the lists of an insert records request differ in length",
        ));
    }
    (0..count)
        .map(|i| {
            let device = device(i).ok_or_else(|| Status::illegal_parameter("device missing"))?;
            insert::record(device, &measurements[i], &values[i], timestamps[i], aligned)
                .and_then(|tablet| insert::view(&tablet))
        })
        .collect()
}

/// One string record (values as text, typed by the schema or inferred).
struct StringRecord<'a> {
    device: &'a str,
    measurements: &'a [String],
    values: &'a [String],
    timestamp: i64,
}

fn string_records_of<'a>(
    device: impl Fn(usize) -> Option<&'a str>,
    measurements: &'a [Vec<String>],
    values: &'a [Vec<String>],
    timestamps: &[i64],
    count: usize,
) -> Result<Vec<StringRecord<'a>>, Status> {
    if measurements.len() != count || values.len() != count || timestamps.len() != count {
        return Err(Status::illegal_parameter(
            "the lists of an insert string records request differ in length",
        ));
    }
    (0..count)
        .map(|i| {
            Ok(StringRecord {
                device: device(i).ok_or_else(|| Status::illegal_parameter("device missing"))?,
                measurements: &measurements[i],
                values: &values[i],
                timestamp: timestamps[i],
            })
        })
        .collect()
}

/// A string value as the literal an SQL `INSERT` would have (IoTDB's type inference for
/// string records: booleans, numbers, else text).
fn literal_of(value: &str) -> sql::Literal {
    if value.eq_ignore_ascii_case("true") {
        sql::Literal::Boolean(true)
    } else if value.eq_ignore_ascii_case("false") {
        sql::Literal::Boolean(false)
    } else if let Ok(integer) = value.parse::<i64>() {
        sql::Literal::Integer(integer)
    } else if let Ok(float) = value.parse::<f64>()
        && float.is_finite()
    {
        sql::Literal::Float(float)
    } else {
        sql::Literal::Text(value.to_owned())
    }
}

fn string_insert(record: &StringRecord<'_>, aligned: bool) -> Result<sql::Insert, Status> {
    if record.measurements.len() != record.values.len() {
        return Err(Status::illegal_parameter(
            "a string record's measurements and values differ in length",
        ));
    }
    let device = checked_path(record.device, false)?;
    let device = match sql::parse(&format!("SHOW TIMESERIES {device}")) {
        Ok(sql::Statement::ShowTimeseries {
            pattern: Some(pattern),
        }) => pattern
            .to_path()
            .ok_or_else(|| Status::illegal_parameter("device path"))?,
        _ => return Err(Status::illegal_parameter("device path")),
    };
    for measurement in record.measurements {
        checked_node(measurement)?;
    }
    Ok(sql::Insert {
        device,
        aligned,
        measurements: record.measurements.to_vec(),
        rows: vec![sql::InsertRow {
            time: sql::TimeExpr::Absolute(record.timestamp),
            values: record.values.iter().map(|v| literal_of(v)).collect(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_accepted_only_verbatim() {
        assert!(checked_path("root.sg.d1.s1", false).is_ok());
        assert!(checked_path("root.sg.**", true).is_ok());
        assert!(checked_path("root.sg.**", false).is_err());
        assert!(checked_path("root.sg.d1; DELETE DATABASE root.**", true).is_err());
        assert!(checked_path("root.sg.d1 WHERE time > 0", true).is_err());
        assert!(checked_node("s1").is_ok());
        assert!(checked_node("a.b").is_err());
    }

    #[test]
    fn string_values_infer_like_sql() {
        assert_eq!(literal_of("TRUE"), sql::Literal::Boolean(true));
        assert_eq!(literal_of("12"), sql::Literal::Integer(12));
        assert_eq!(literal_of("1.5"), sql::Literal::Float(1.5));
        assert_eq!(literal_of("abc"), sql::Literal::Text("abc".into()));
        assert_eq!(literal_of("NaN"), sql::Literal::Text("NaN".into()));
    }
}
