//! Golden SQL tests (GreptimeDB sqlness style) against a real standalone `iotdb-server`.
//!
//! Every `tests/sql/<case>.sql` at the workspace root holds statements ending in `;`
//! (lines starting with `--` are comments, copied to the output). Each case runs on a
//! fresh server; `tests/sql/<case>.result` holds every statement followed by what
//! `iotdb-ctl sql` prints for it, without the `It costs` timing line (errors as the
//! `Msg: <code>: <message>` line the binary writes to stderr).
//!
//! Regenerate the expected files after an intended change with
//! `IOTDB_GOLDEN_REGENERATE=1 cargo test -p iotdb-node --test sql_golden`, then review the
//! diff.
//!
//! The tests of the `iotdb-ctl` binary itself are in `tests/tests/ctl.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use iotdb_ctl::format::OutputFormat;
use iotdb_ctl::session::{Session, render_result};
use iotdb_ctl::shell::take_statements;

/// A standalone server on a free port, killed on drop.
struct Server {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_iotdb-server"))
            .args(["standalone", "--data-dir"])
            .arg(dir.path())
            .args([
                "--rpc-address",
                "127.0.0.1",
                "--rpc-port",
                "0",
                "--cores",
                "2",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting iotdb-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("iotdb-server exited before its ready line")
                .unwrap();
            if let Some(rest) = line.strip_prefix(iotdb_node::server::READY_LINE_PREFIX) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql")
}

/// Runs one case file and returns the text its `.result` file should hold.
fn run_case(sql: &str) -> String {
    let server = Server::start();
    let mut session = Session::connect(&server.address, "root", "root").unwrap();
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
                Ok(result) => out.push_str(&render_result(&result, OutputFormat::Table, None)),
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
    // The kernel picks the client port: mask it (same width, so tables stay aligned).
    let port = server.address.rsplit(':').next().unwrap_or_default();
    out.replace(port, &"P".repeat(port.len()))
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
