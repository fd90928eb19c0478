//! Status codes carried by every response. The numbers reuse Apache IoTDB's
//! `TSStatusCode` where one exists; [`StatusCode::ROUTE_TABLE_STALE`] is ours.

use std::fmt;

/// A response status code (IoTDB's numbering, an `i32` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub i32);

impl StatusCode {
    pub const SUCCESS: Self = Self(200);
    /// IoTDB's INCOMPATIBLE_VERSION: the handshake named a protocol version we do not speak.
    pub const INCOMPATIBLE_VERSION: Self = Self(201);
    /// IoTDB's UNSUPPORTED_OPERATION: unknown opcode.
    pub const UNSUPPORTED_OPERATION: Self = Self(300);
    pub const EXECUTE_STATEMENT_ERROR: Self = Self(301);
    /// IoTDB's ILLEGAL_PARAMETER: malformed body, checksum mismatch, bad frame.
    pub const ILLEGAL_PARAMETER: Self = Self(303);
    pub const INTERNAL_SERVER_ERROR: Self = Self(305);
    /// Not an IoTDB code: the request was sent with an outdated route table
    /// (wrong shard or node for the region, or a region that moved). The client
    /// refetches the route table and retries. Chosen in IoTDB's 400 (redirect)
    /// range but distinct from 400 REDIRECTION_RECOMMEND, which IoTDB clients
    /// treat as success.
    pub const ROUTE_TABLE_STALE: Self = Self(420);
    pub const DATABASE_NOT_EXIST: Self = Self(500);
    pub const DATABASE_ALREADY_EXISTS: Self = Self(501);
    pub const PATH_NOT_EXIST: Self = Self(508);
    pub const SYSTEM_READ_ONLY: Self = Self(600);
    /// Write rejected or the server is overloaded (also: in-flight cap reached).
    pub const WRITE_PROCESS_REJECT: Self = Self(606);
    pub const OUT_OF_TTL: Self = Self(607);
    pub const SQL_PARSE_ERROR: Self = Self(700);
    pub const WRONG_LOGIN_PASSWORD: Self = Self(801);
    /// IoTDB's NOT_LOGIN: a request other than handshake/ping before authentication.
    pub const NOT_LOGIN: Self = Self(802);

    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }

    /// A short upper-case name for known codes (for messages and logs).
    pub fn name(self) -> &'static str {
        match self.0 {
            200 => "SUCCESS_STATUS",
            201 => "INCOMPATIBLE_VERSION",
            300 => "UNSUPPORTED_OPERATION",
            301 => "EXECUTE_STATEMENT_ERROR",
            303 => "ILLEGAL_PARAMETER",
            305 => "INTERNAL_SERVER_ERROR",
            420 => "ROUTE_TABLE_STALE",
            500 => "DATABASE_NOT_EXIST",
            501 => "DATABASE_ALREADY_EXISTS",
            508 => "PATH_NOT_EXIST",
            600 => "SYSTEM_READ_ONLY",
            606 => "WRITE_PROCESS_REJECT",
            607 => "OUT_OF_TTL",
            700 => "SQL_PARSE_ERROR",
            801 => "WRONG_LOGIN_PASSWORD",
            802 => "NOT_LOGIN",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.0, self.name())
    }
}

/// A non-success status with a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    pub message: String,
}

impl Status {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn illegal_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::ILLEGAL_PARAMETER, message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Status {}
