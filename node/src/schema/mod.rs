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
//! a refused batch creates nothing. A SchemaRegion replica is owned by one
//! shard (core); nothing else touches it.

mod error;
mod region;

#[cfg(test)]
mod tests;

pub use error::{Result, SchemaError};
pub use region::{
    DeviceEntry, LOG_RECORDS_PER_SNAPSHOT, MEASUREMENT_NAME_BYTES_MAX,
    MEASUREMENTS_PER_REQUEST_MAX, MeasurementSchema, SchemaCommand, SchemaRegion, StoredSchema,
    TimeseriesEntry, TypeConflict, default_compressor, default_encoding,
};
