//! iotdb-ctl: cluster administration and the SQL shell.
//!
//! - [`format`]: rendering result sets as IoTDB's boxed table, CSV or JSON.
//! - [`session`]: a connection to a server, statements executed and their results printed
//!   as IoTDB's CLI prints them (cells, `Time` as ISO-8601, footers, error lines).
//! - [`admin`]: `remove-datanode` and `migrate-region`, which start a procedure and
//!   follow it to its end.
//! - [`shell`]: the interactive `IoTDB>` shell (multi-line statements ending in `;`,
//!   history, `quit`/`exit`), also driven by piped stdin.
//!
//! The binary (`src/main.rs`) is a thin command line over these.

pub mod admin;
pub mod cli;
pub mod format;
pub mod session;
pub mod shell;
