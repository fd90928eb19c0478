//! The one table of status codes: IoTDB's `TSStatusCode` numbers and names
//! (DOCS/latest/Reference/Status-Codes.md), plus [`StatusCode::ROUTE_TABLE_STALE`], which
//! is ours. Every layer that answers a client (the native wire, the Thrift front end, the
//! ConfigNode, the SchemaRegion, the SQL parser) takes its codes from here; nothing else
//! defines a numeric status code.
//!
//! A code is a newtype over the wire's `i32` rather than a closed enum because a client
//! must carry whatever code a server sends, including ones this table does not name.

use std::fmt;

/// A response status code (IoTDB's numbering, an `i32` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub i32);

/// Declares the table: each row becomes an associated constant and a [`StatusCode::KNOWN`]
/// entry with its name and meaning, so a code, its name and its meaning cannot drift apart.
macro_rules! status_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $meaning:literal;)*) => {
        impl StatusCode {
            $(
                $(#[$doc])*
                #[doc = concat!("`", stringify!($code), "`: ", $meaning)]
                pub const $name: StatusCode = StatusCode($code);
            )*

            /// Every code this table names: (code, IoTDB's name, short meaning), by code.
            pub const KNOWN: &'static [(StatusCode, &'static str, &'static str)] = &[
                $((StatusCode($code), stringify!($name), $meaning),)*
            ];
        }
    };
}

status_codes! {
    SUCCESS_STATUS = 200, "success";
    /// The handshake named a protocol version we do not speak.
    INCOMPATIBLE_VERSION = 201, "incompatible protocol version";
    /// An unknown opcode, or a data type the engine does not store.
    UNSUPPORTED_OPERATION = 300, "unsupported operation";
    EXECUTE_STATEMENT_ERROR = 301, "statement refused or failed";
    /// Inspect the sub-statuses (Thrift multi-device inserts).
    MULTIPLE_ERROR = 302, "several errors; see the sub-statuses";
    /// Malformed body, checksum mismatch, bad frame.
    ILLEGAL_PARAMETER = 303, "illegal parameter";
    INTERNAL_SERVER_ERROR = 305, "internal server error";
    /// IoTDB clients treat it as success.
    REDIRECTION_RECOMMEND = 400, "success; another node is recommended";
    /// Not an IoTDB code: the request was sent with an outdated route table (wrong shard
    /// or node for the region, or a region that moved). The client refetches the route
    /// table and retries. Chosen in IoTDB's 400 (redirect) range but distinct from 400
    /// REDIRECTION_RECOMMEND, which IoTDB clients treat as success.
    ROUTE_TABLE_STALE = 420, "route table stale; refetch and retry";
    DATABASE_NOT_EXIST = 500, "database does not exist";
    DATABASE_ALREADY_EXISTS = 501, "database already exists";
    TIMESERIES_ALREADY_EXIST = 503, "timeseries already exists";
    /// The aligned flag or the shape of a schema request.
    METADATA_ERROR = 507, "metadata error";
    PATH_NOT_EXIST = 508, "path does not exist";
    ILLEGAL_PATH = 509, "illegal path";
    /// A database setting out of range or that may not change.
    DATABASE_CONFIG_ERROR = 525, "database configuration error";
    /// A database nested in, or containing, another.
    DATABASE_CONFLICT = 529, "database conflicts with an existing one";
    SYSTEM_READ_ONLY = 600, "system is read-only";
    /// Write rejected or the server is overloaded (also: in-flight cap reached).
    WRITE_PROCESS_REJECT = 606, "write rejected; retry later";
    OUT_OF_TTL = 607, "data older than the TTL";
    /// The one code for a type conflict, wherever it is found (schema or engine).
    DATA_TYPE_MISMATCH = 614, "data type mismatch";
    SQL_PARSE_ERROR = 700, "SQL does not parse";
    WRONG_LOGIN_PASSWORD = 801, "wrong user name or password";
    /// A request other than handshake or ping before authentication.
    NOT_LOGIN = 802, "not logged in";
    /// Fewer DataNodes than the replication factor needs.
    NO_ENOUGH_DATANODE = 903, "not enough DataNodes";
}

impl StatusCode {
    /// The code as it travels on the wire, whether or not the table names it.
    pub fn from_code(code: i32) -> StatusCode {
        StatusCode(code)
    }

    /// The number on the wire.
    pub fn code(self) -> i32 {
        self.0
    }

    pub fn is_success(self) -> bool {
        self == Self::SUCCESS_STATUS
    }

    /// The table's row for this code, if it names it.
    fn row(self) -> Option<&'static (StatusCode, &'static str, &'static str)> {
        Self::KNOWN.iter().find(|(code, _, _)| *code == self)
    }

    /// IoTDB's upper-case name for known codes (for messages and logs), else `UNKNOWN`.
    pub fn name(self) -> &'static str {
        self.row().map_or("UNKNOWN", |(_, name, _)| name)
    }

    /// A short meaning for known codes, else `unknown status code`.
    pub fn meaning(self) -> &'static str {
        self.row()
            .map_or("unknown status code", |(_, _, meaning)| meaning)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in StatusCode::KNOWN.windows(2) {
            assert!(pair[0].0.code() < pair[1].0.code(), "{:?}", pair);
        }
    }

    #[test]
    fn wire_values_are_iotdb_ones() {
        let expected = [
            (StatusCode::SUCCESS_STATUS, 200, "SUCCESS_STATUS"),
            (
                StatusCode::EXECUTE_STATEMENT_ERROR,
                301,
                "EXECUTE_STATEMENT_ERROR",
            ),
            (StatusCode::MULTIPLE_ERROR, 302, "MULTIPLE_ERROR"),
            (StatusCode::ILLEGAL_PARAMETER, 303, "ILLEGAL_PARAMETER"),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                305,
                "INTERNAL_SERVER_ERROR",
            ),
            (StatusCode::DATABASE_NOT_EXIST, 500, "DATABASE_NOT_EXIST"),
            (
                StatusCode::DATABASE_ALREADY_EXISTS,
                501,
                "DATABASE_ALREADY_EXISTS",
            ),
            (
                StatusCode::TIMESERIES_ALREADY_EXIST,
                503,
                "TIMESERIES_ALREADY_EXIST",
            ),
            (StatusCode::METADATA_ERROR, 507, "METADATA_ERROR"),
            (StatusCode::PATH_NOT_EXIST, 508, "PATH_NOT_EXIST"),
            (StatusCode::ILLEGAL_PATH, 509, "ILLEGAL_PATH"),
            (
                StatusCode::DATABASE_CONFIG_ERROR,
                525,
                "DATABASE_CONFIG_ERROR",
            ),
            (StatusCode::DATABASE_CONFLICT, 529, "DATABASE_CONFLICT"),
            (StatusCode::SYSTEM_READ_ONLY, 600, "SYSTEM_READ_ONLY"),
            (
                StatusCode::WRITE_PROCESS_REJECT,
                606,
                "WRITE_PROCESS_REJECT",
            ),
            (StatusCode::OUT_OF_TTL, 607, "OUT_OF_TTL"),
            (StatusCode::DATA_TYPE_MISMATCH, 614, "DATA_TYPE_MISMATCH"),
            (StatusCode::SQL_PARSE_ERROR, 700, "SQL_PARSE_ERROR"),
            (
                StatusCode::WRONG_LOGIN_PASSWORD,
                801,
                "WRONG_LOGIN_PASSWORD",
            ),
            (StatusCode::NO_ENOUGH_DATANODE, 903, "NO_ENOUGH_DATANODE"),
        ];
        for (status, code, name) in expected {
            assert_eq!(status.code(), code);
            assert_eq!(status.name(), name);
            assert_eq!(StatusCode::from_code(code), status);
        }
        assert_eq!(StatusCode(999).name(), "UNKNOWN");
        assert_eq!(
            StatusCode::ROUTE_TABLE_STALE.to_string(),
            "420 (ROUTE_TABLE_STALE)"
        );
    }
}
