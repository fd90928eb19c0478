//! One SchemaRegion's state: the devices of its series slots, each with
//! its measurements (data type, encoding, compressor) and aligned flag.
//!
//! ```text
//!  write ──▶ SchemaRegion::get_or_create_measurements ──hit──▶ types (no allocation)
//!                                   └─miss──▶ SchemaCommand ──append+fdatasync──▶ Journal
//! ```
//!
//! The schema is an in-memory map persisted as an append-only checksummed
//! command log plus a periodic snapshot (the journal shared with
//! [`crate::confignode`]); it is restored on open. All-or-nothing batches:
//! a refused batch creates nothing. A replicated region (more than one replica)
//! has no journal: its commands commit through a [`ReplicatedLog`] (a Raft
//! group, `datanode::schema_replication`) and every replica applies what the log
//! committed, in order; a command an earlier entry contradicts is left out whole
//! and its planner plans again. Every SchemaRegion replica of a DataNode lives
//! on its control thread; nothing else touches it.

mod error;
mod region;

#[cfg(test)]
mod journal_faults;
#[cfg(test)]
mod tests;

pub use error::{Result, SchemaError};
pub use region::{
    DeviceEntry, LOG_RECORDS_PER_SNAPSHOT, MEASUREMENT_NAME_BYTES_MAX,
    MEASUREMENTS_PER_REQUEST_MAX, MeasurementSchema, ReplicatedLog, SchemaCommand, SchemaRegion,
    StoredDevice, StoredSchema, TimeseriesEntry, TypeConflict, default_compressor,
    default_encoding,
};
