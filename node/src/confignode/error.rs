//! The ConfigNode's typed error, with IoTDB status codes.
//!
//! Codes (IoTDB `TSStatusCode`): 500 DATABASE_NOT_EXIST, 501
//! DATABASE_ALREADY_EXISTS, 509 ILLEGAL_PATH, 525 DATABASE_CONFIG_ERROR, 529
//! DATABASE_CONFLICT (a database nested in or containing another), 903
//! NO_ENOUGH_DATANODE (fewer DataNodes than the replication factor). Refused
//! node operations and out-of-range slots map to 301
//! EXECUTE_STATEMENT_ERROR; storage failures and inconsistent commands to
//! 305 INTERNAL_SERVER_ERROR.

use super::journal::JournalError;
use super::model::{NodeId, RegionGroupId};
use iotdb_model::StatusCode;

/// Everything the ConfigNode state machine can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum ConfigNodeError {
    /// The database already exists.
    #[error("{0} has already been created as database")]
    DatabaseAlreadyExists(String),
    /// The new database is nested in, or contains, an existing one.
    #[error("{database} conflicts with the existing database {existing}")]
    DatabaseConflict {
        /// The requested database.
        database: String,
        /// The existing database it overlaps.
        existing: String,
    },
    /// No such database.
    #[error("database {0} does not exist")]
    DatabaseNotExist(String),
    /// The database is being deleted: nothing new is created in it.
    #[error("database {0} is being deleted")]
    DatabaseBeingDeleted(String),
    /// A test's kill point was reached: the operation stopped there, as a crash would.
    #[error("stopped at kill point {0}")]
    Killed(&'static str),
    /// A database or device path is malformed.
    #[error("{path} is not a legal path: {reason}")]
    IllegalPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A database setting is out of range or may not change.
    #[error("database {database}: {reason}")]
    DatabaseConfig {
        /// The database.
        database: String,
        /// What is wrong.
        reason: String,
    },
    /// Fewer DataNodes can take replicas than the replication factor needs.
    #[error("need {needed} DataNodes for the replicas but only {available} are available")]
    NotEnoughDataNodes {
        /// The replication factor.
        needed: u32,
        /// DataNodes that accept new regions.
        available: u32,
    },
    /// No node with this id.
    #[error("node {0} does not exist")]
    NodeNotFound(NodeId),
    /// A node operation that the node's current state forbids.
    #[error("node {node_id}: {reason}")]
    NodeRefused {
        /// The node.
        node_id: NodeId,
        /// Why.
        reason: String,
    },
    /// A slot number outside `0..series_slot_num`.
    #[error("series slot {slot} is outside 0..{series_slot_num}")]
    SeriesSlotOutOfRange {
        /// The slot given.
        slot: u32,
        /// The cluster's slot count.
        series_slot_num: u32,
    },
    /// The cluster settings given at open differ from the persisted ones.
    #[error("cluster setting {name} is {persisted} and cannot change to {given}")]
    SettingsChanged {
        /// The setting.
        name: &'static str,
        /// Its persisted value.
        persisted: String,
        /// The value given now.
        given: String,
    },
    /// A command is inconsistent with the state (from a damaged log, or a
    /// bug in the planner).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// A region group id that does not exist.
    #[error("region group {0} does not exist")]
    RegionGroupNotFound(RegionGroupId),
    /// A region group operation (a migration) that the group's state forbids.
    #[error("region {group}: {reason}")]
    RegionRefused {
        /// The group.
        group: RegionGroupId,
        /// Why.
        reason: String,
    },
    /// A request made against a state that changed since (a late in-sync request).
    #[error("stale request: {0}")]
    StaleRequest(String),
    /// The persisted state could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A command store other than the journal failed (see `store::DiskStore`).
    #[error("config store: {0}")]
    Store(String),
}

impl ConfigNodeError {
    /// The IoTDB status code a client sees.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ConfigNodeError::DatabaseAlreadyExists(_) => StatusCode::DATABASE_ALREADY_EXISTS,
            ConfigNodeError::DatabaseConflict { .. } => StatusCode::DATABASE_CONFLICT,
            ConfigNodeError::DatabaseNotExist(_) => StatusCode::DATABASE_NOT_EXIST,
            ConfigNodeError::IllegalPath { .. } => StatusCode::ILLEGAL_PATH,
            ConfigNodeError::DatabaseConfig { .. } => StatusCode::DATABASE_CONFIG_ERROR,
            ConfigNodeError::NotEnoughDataNodes { .. } => StatusCode::NO_ENOUGH_DATANODE,
            ConfigNodeError::NodeNotFound(_)
            | ConfigNodeError::NodeRefused { .. }
            | ConfigNodeError::SeriesSlotOutOfRange { .. }
            | ConfigNodeError::RegionGroupNotFound(_)
            | ConfigNodeError::RegionRefused { .. }
            | ConfigNodeError::DatabaseBeingDeleted(_)
            | ConfigNodeError::StaleRequest(_)
            | ConfigNodeError::SettingsChanged { .. } => StatusCode::EXECUTE_STATEMENT_ERROR,
            ConfigNodeError::InvalidCommand(_)
            | ConfigNodeError::Journal(_)
            | ConfigNodeError::Store(_)
            | ConfigNodeError::Killed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = ConfigNodeError> = std::result::Result<T, E>;
