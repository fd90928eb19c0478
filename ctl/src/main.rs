//! `iotdb-ctl`: run SQL against a server, an interactive shell, and cluster views.
//!
//! ```text
//! iotdb-ctl [-h host:port] [-u user] [-p password] [--format table|csv|json] sql "STATEMENT"
//! iotdb-ctl [-h ...] cli
//! iotdb-ctl [-h ...] show cluster [details] | show regions | show datanodes | show databases
//! ```
//! Exit status: 0 on success, 1 when the server refused a statement (its `Msg: <code>: ...`
//! line on stderr), 2 when the server cannot be reached or the arguments are wrong.

fn main() -> std::process::ExitCode {
    iotdb_ctl::cli::main()
}
