//! Golden SQL tests (GreptimeDB sqlness style) against a real standalone `iotdb-server`.
//!
//! Every `tests/tests/sql/<case>.sql` holds statements ending in `;`
//! (lines starting with `--` are comments, copied to the output). Each case runs on a
//! fresh server; `tests/sql/<case>.result` holds every statement followed by what
//! `iotdb-ctl sql` prints for it, without the `It costs` timing line (errors as the
//! `Msg: <code>: <message>` line the binary writes to stderr).
//!
//! Regenerate the expected files after an intended change with
//! `IOTDB_GOLDEN_REGENERATE=1 cargo test -p iotdb-tests --test sql_golden`, then review the
//! diff.
//!
//! The tests of the `iotdb-ctl` binary itself are in `tests/tests/ctl.rs`.

use std::path::{Path, PathBuf};

use iotdb_ctl::format::OutputFormat;
use iotdb_ctl::session::{Session, render_result};
use iotdb_ctl::shell::take_statements;
use iotdb_tests::{TestServer, server_options};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql")
}

/// Runs one case file and returns the text its `.result` file should hold.
fn run_case(sql: &str) -> String {
    // A case may start with `-- config: key = value` lines: server settings it runs under.
    let config: String = sql
        .lines()
        .map_while(|line| line.strip_prefix("-- config: "))
        .map(|setting| format!("{setting}\n"))
        .collect();
    let mut options = server_options!().cores(2);
    if !config.is_empty() {
        options = options.config_toml(&config);
    }
    let server = TestServer::start(options).unwrap();
    let address = server.address().to_string();
    let mut session = Session::connect(&address, "root", "root").unwrap();
    let mut out = String::new();
    let mut pending = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") && pending.trim().is_empty() {
            out.push_str(line);
            out.push_str("\n\n");
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        for statement in take_statements(&mut pending) {
            out.push_str(&statement);
            out.push_str(";\n\n");
            match session.execute(&statement) {
                Ok(mut result) => {
                    mask_address(&mut result, server.address());
                    out.push_str(&render_result(&result, OutputFormat::Table, None));
                }
                Err(error) => {
                    out.push_str(&error.to_string());
                    out.push('\n');
                }
            }
            out.push('\n');
        }
    }
    assert!(
        pending.trim().is_empty(),
        "a statement lacks its ';': {pending}"
    );
    out
}

/// The harness picks the server's loopback address and port per run: cells holding them
/// read `<ip>` and `<port>`, so the tables are the same every run.
fn mask_address(result: &mut iotdb_net::ResultSet, address: std::net::SocketAddr) {
    let (ip, port) = (address.ip().to_string(), address.port().to_string());
    for cell in result.rows.iter_mut().flatten().flatten() {
        if let iotdb_net::Value::Text(text) = cell {
            if text.as_ref() == ip.as_bytes() {
                *text = bytes::Bytes::from_static(b"<ip>");
            } else if text.as_ref() == port.as_bytes() {
                *text = bytes::Bytes::from_static(b"<port>");
            }
        }
    }
}

#[test]
fn golden_sql_files() {
    let regenerate = std::env::var_os("IOTDB_GOLDEN_REGENERATE").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/sql exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");
    let mut failed = Vec::new();
    for case in cases {
        let sql = std::fs::read_to_string(&case).unwrap();
        let actual = run_case(&sql);
        let result_path = case.with_extension("result");
        if regenerate {
            std::fs::write(&result_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&result_path).unwrap_or_default();
        if expected != actual {
            let actual_path = case.with_extension("actual");
            std::fs::write(&actual_path, &actual).unwrap();
            failed.push(format!(
                "{} differs: compare with {}",
                result_path.display(),
                actual_path.display()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "golden mismatches (IOTDB_GOLDEN_REGENERATE=1 rewrites them):\n{}",
        failed.join("\n")
    );
}
