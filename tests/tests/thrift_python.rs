//! IoTDB's own Python client against this server: installs the released `apache-iotdb`
//! package (pinned in `tests/python/requirements.txt`) into a virtual environment under the
//! build directory, then runs `tests/python/thrift_session_check.py` against a real server.
//!
//! The environment is cached (`target/tmp/python-iotdb-client/`) and rebuilt when the
//! requirements change. Python 3 with `venv` is required: without it the test fails and
//! says so (set `IOTDB_TEST_PYTHON` to use another interpreter). pip needs PyPI the first
//! time.

use std::path::{Path, PathBuf};
use std::process::Command;

use iotdb_tests::{TestServer, server_options};

const REQUIREMENTS: &str = include_str!("../python/requirements.txt");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/python/thrift_session_check.py"
);

fn python() -> String {
    std::env::var("IOTDB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The cached virtual environment with the pinned client installed.
fn environment() -> PathBuf {
    let interpreter = python();
    let version = Command::new(&interpreter).arg("--version").output();
    match version {
        Ok(output) if output.status.success() => {}
        _ => panic!(
            "Python 3 is required for the Thrift client test (IoTDB's Python client runs \
             against the server) but `{interpreter} --version` failed: install python3 with \
             venv, or set IOTDB_TEST_PYTHON to an interpreter"
        ),
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-iotdb-client");
    let marker = root.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(REQUIREMENTS) {
        return root;
    }
    let _ = std::fs::remove_dir_all(&root);
    run(
        Command::new(&interpreter).args(["-m", "venv"]).arg(&root),
        "creating the virtual environment (python3 -m venv)",
    );
    let requirements = root.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).expect("writing requirements");
    run(
        Command::new(root.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install of the pinned apache-iotdb client",
    );
    std::fs::write(&marker, REQUIREMENTS).expect("writing the install marker");
    root
}

#[test]
fn python_session_against_the_server() {
    let environment = environment();
    let server = TestServer::start(server_options!().cores(2)).expect("start server");
    let address = server.address();
    let output = Command::new(environment.join("bin/python"))
        .arg(SCRIPT)
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .output()
        .expect("running the Python check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("ALL CHECKS PASSED"),
        "the Python client check failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        output.status,
        server.log_tail()
    );
}
