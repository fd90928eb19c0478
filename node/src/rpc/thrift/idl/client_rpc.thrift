// The subset of Apache IoTDB's client RPC (`IClientRPCService`, tree model) that this
// server speaks, written from the wire facts: field ids and types must match IoTDB's
// `client.thrift` and `common.thrift` exactly, names are free (they never travel).
// Only structs live here: requests are dispatched by method name in `service.rs`, whose
// argument and result envelopes (`{1: req}`, `{0: success}`) are read and written there.
//
// Regenerate `../generated.rs` with `../regen.sh` (needs the Thrift compiler 0.17, the
// version of the `thrift` crate).

namespace rs iotdb_client_rpc

struct TEndPoint {
  1: required string ip
  2: required i32 port
}

struct TSStatus {
  1: required i32 code
  2: optional string message
  3: optional list<TSStatus> subStatus
  4: optional TEndPoint redirectNode
  5: optional bool needRetry
}

enum TSProtocolVersion {
  IOTDB_SERVICE_PROTOCOL_V1 = 0,
  IOTDB_SERVICE_PROTOCOL_V2 = 1,
  IOTDB_SERVICE_PROTOCOL_V3 = 2,
}

struct TSOpenSessionReq {
  1: required TSProtocolVersion client_protocol
  2: required string zoneId
  3: required string username
  4: optional string password
  5: optional map<string, string> configuration
}

struct TSOpenSessionResp {
  1: required TSStatus status
  2: required TSProtocolVersion serverProtocolVersion
  3: optional i64 sessionId
  4: optional map<string, string> configuration
}

struct TSCloseSessionReq {
  1: required i64 sessionId
}

struct TSExecuteStatementReq {
  1: required i64 sessionId
  2: required string statement
  3: required i64 statementId
  4: optional i32 fetchSize
  5: optional i64 timeout
  6: optional bool enableRedirectQuery
  7: optional bool jdbcQuery
}

struct TSExecuteStatementResp {
  1: required TSStatus status
  2: optional i64 queryId
  3: optional list<string> columns
  4: optional string operationType
  5: optional bool ignoreTimeStamp
  6: optional list<string> dataTypeList
  9: optional map<string, i32> columnNameIndexMap
  13: optional list<binary> queryResult
  14: optional bool moreData
  15: optional string database
  16: optional bool tableModel
  17: optional list<i32> columnIndex2TsBlockColumnIndexList
}

struct TSCloseOperationReq {
  1: required i64 sessionId
  2: optional i64 queryId
  3: optional i64 statementId
  4: optional string preparedStatementName
}

struct TSFetchResultsReq {
  1: required i64 sessionId
  2: required string statement
  3: required i32 fetchSize
  4: required i64 queryId
  5: required bool isAlign
  6: optional i64 timeout
  7: optional i64 statementId
}

struct TSFetchResultsResp {
  1: required TSStatus status
  2: required bool hasResultSet
  3: required bool isAlign
  6: optional list<binary> queryResult
  7: optional bool moreData
}

struct TSGetTimeZoneResp {
  1: required TSStatus status
  2: required string timeZone
}

struct TSSetTimeZoneReq {
  1: required i64 sessionId
  2: required string timeZone
}

struct TSInsertRecordReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required binary values
  5: required i64 timestamp
  6: optional bool isAligned
  7: optional bool isWriteToTable
  8: optional list<i8> columnCategories
}

struct TSInsertStringRecordReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required list<string> values
  5: required i64 timestamp
  6: optional bool isAligned
  7: optional i64 timeout
}

struct TSInsertTabletReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required binary values
  5: required binary timestamps
  6: required list<i32> types
  7: required i32 size
  8: optional bool isAligned
  9: optional bool writeToTable
  10: optional list<i8> columnCategories
  11: optional bool isCompressed
  12: optional list<i8> encodingTypes
  13: optional i8 compressType
}

struct TSInsertTabletsReq {
  1: required i64 sessionId
  2: required list<string> prefixPaths
  3: required list<list<string>> measurementsList
  4: required list<binary> valuesList
  5: required list<binary> timestampsList
  6: required list<list<i32>> typesList
  7: required list<i32> sizeList
  8: optional bool isAligned
}

struct TSInsertRecordsReq {
  1: required i64 sessionId
  2: required list<string> prefixPaths
  3: required list<list<string>> measurementsList
  4: required list<binary> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}

struct TSInsertRecordsOfOneDeviceReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<list<string>> measurementsList
  4: required list<binary> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}

struct TSInsertStringRecordsOfOneDeviceReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<list<string>> measurementsList
  4: required list<list<string>> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}

struct TSInsertStringRecordsReq {
  1: required i64 sessionId
  2: required list<string> prefixPaths
  3: required list<list<string>> measurementsList
  4: required list<list<string>> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}

struct TSDeleteDataReq {
  1: required i64 sessionId
  2: required list<string> paths
  3: required i64 startTime
  4: required i64 endTime
}

struct TSCreateTimeseriesReq {
  1: required i64 sessionId
  2: required string path
  3: required i32 dataType
  4: required i32 encoding
  5: required i32 compressor
  6: optional map<string, string> props
  7: optional map<string, string> tags
  8: optional map<string, string> attributes
  9: optional string measurementAlias
}

struct TSCreateAlignedTimeseriesReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required list<i32> dataTypes
  5: required list<i32> encodings
  6: required list<i32> compressors
  7: optional list<string> measurementAlias
  8: optional list<map<string, string>> tagsList
  9: optional list<map<string, string>> attributesList
}

struct TSCreateMultiTimeseriesReq {
  1: required i64 sessionId
  2: required list<string> paths
  3: required list<i32> dataTypes
  4: required list<i32> encodings
  5: required list<i32> compressors
  6: optional list<map<string, string>> propsList
  7: optional list<map<string, string>> tagsList
  8: optional list<map<string, string>> attributesList
  9: optional list<string> measurementAliasList
}

struct TSRawDataQueryReq {
  1: required i64 sessionId
  2: required list<string> paths
  3: optional i32 fetchSize
  4: required i64 startTime
  5: required i64 endTime
  6: required i64 statementId
  7: optional bool enableRedirectQuery
  8: optional bool jdbcQuery
  9: optional i64 timeout
  10: optional bool legalPathNodes
}

struct TSLastDataQueryReq {
  1: required i64 sessionId
  2: required list<string> paths
  3: optional i32 fetchSize
  4: required i64 time
  5: required i64 statementId
  6: optional bool enableRedirectQuery
  7: optional bool jdbcQuery
  8: optional i64 timeout
  9: optional bool legalPathNodes
}

struct ServerProperties {
  1: required string version
  2: required list<string> supportedTimeAggregationOperations
  3: required string timestampPrecision
  4: i32 maxConcurrentClientNum
  5: optional i32 thriftMaxFrameSize
  6: optional bool isReadOnly
  7: optional string buildInfo
  8: optional string logo
}

// Argument envelopes of the calls whose parameters are not one request struct.
struct SessionIdArgs {
  1: required i64 sessionId
}

struct SessionPathArgs {
  1: required i64 sessionId
  2: required string path
}

struct SessionPathsArgs {
  1: required i64 sessionId
  2: required list<string> paths
}
