//! iotdb-ctl: cluster administration and the SQL shell.
//!
//! Modules so far:
//! - [`format`]: rendering result sets as IoTDB's boxed table, CSV or JSON.

pub mod format;
