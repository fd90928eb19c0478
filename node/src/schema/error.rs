//! The SchemaRegion's typed error, with IoTDB status codes: 503
//! TIMESERIES_ALREADY_EXIST, 507 METADATA_ERROR (aligned flag or request
//! shape), 509 ILLEGAL_PATH, 614 DATA_TYPE_MISMATCH, 305
//! INTERNAL_SERVER_ERROR (storage).

use crate::confignode::journal::JournalError;
use crate::sql::DataType;
use iotdb_model::StatusCode;

/// Everything a SchemaRegion can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A measurement exists with another data type; nothing was created.
    #[error("data type of {path} is {existing}, not {requested}")]
    TypeMismatch {
        /// The full timeseries path.
        path: String,
        /// Its registered type.
        existing: DataType,
        /// The type in the request.
        requested: DataType,
    },
    /// The timeseries exists with another schema.
    #[error("timeseries {path} already exists")]
    AlreadyExists {
        /// The full timeseries path.
        path: String,
    },
    /// The device is aligned and the request is not, or the reverse.
    #[error("device {device} is {}aligned", if *.aligned { "" } else { "not " })]
    AlignedMismatch {
        /// The device.
        device: String,
        /// Whether the existing device is aligned.
        aligned: bool,
    },
    /// A malformed device or measurement name.
    #[error("{path} is not a legal path: {reason}")]
    IllegalPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A malformed request (lengths differ, too many measurements, an
    /// encoding the type does not support).
    #[error("invalid schema request: {0}")]
    InvalidRequest(String),
    /// The persisted schema belongs to another database, or a logged
    /// command does not fit the state.
    #[error("corrupt schema region: {0}")]
    Corrupt(String),
    /// The persisted state could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A replicated region could not commit the change now (no leader elected yet, no
    /// quorum of replicas, leadership moved): nothing was changed here; retry.
    #[error("schema region replication: {0}")]
    Unavailable(String),
}

impl SchemaError {
    /// The IoTDB status code a client sees.
    pub fn status_code(&self) -> StatusCode {
        match self {
            SchemaError::TypeMismatch { .. } => StatusCode::DATA_TYPE_MISMATCH,
            SchemaError::AlreadyExists { .. } => StatusCode::TIMESERIES_ALREADY_EXIST,
            SchemaError::AlignedMismatch { .. } | SchemaError::InvalidRequest(_) => {
                StatusCode::METADATA_ERROR
            }
            SchemaError::IllegalPath { .. } => StatusCode::ILLEGAL_PATH,
            SchemaError::Corrupt(_) | SchemaError::Journal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SchemaError::Unavailable(_) => StatusCode::WRITE_PROCESS_REJECT,
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = SchemaError> = std::result::Result<T, E>;
