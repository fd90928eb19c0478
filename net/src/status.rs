//! The status every response carries. Its code comes from the one table in
//! `iotdb_model::status` (IoTDB's `TSStatusCode` numbering), re-exported here.

use std::fmt;

pub use iotdb_model::StatusCode;

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
