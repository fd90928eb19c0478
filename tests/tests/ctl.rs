//! The `iotdb-ctl` binary against a real server: the interactive shell with piped stdin,
//! and `sql`/`show` with their exit codes and formats.

use std::io::Write;
use std::process::{Command, Stdio};

use iotdb_tests::{TestServer, server_options};

fn ctl_binary() -> &'static str {
    env!("CARGO_BIN_EXE_iotdb-ctl-under-test")
}

#[test]
fn interactive_shell_with_piped_stdin() {
    let server = TestServer::start(server_options!()).unwrap();
    let address = server.address().to_string();
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(ctl_binary())
        .args(["-h", &address, "cli"])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = "CREATE DATABASE root.shell;\n\
                  INSERT INTO root.shell.d(time, s1)\n  VALUES (1, 1.5),\n  (2, 2.5);\n\
                  select s1\n  from root.shell.d;\n\
                  show databases;\n\
                  delete from root.shell.d.nope;\n\
                  quit\n\
                  show databases;\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !stdout.contains("IoTDB>"),
        "no prompt on piped stdin: {stdout}"
    );
    assert!(
        stdout.contains("|1970-01-01T00:00:00.002Z|            2.5|"),
        "{stdout}"
    );
    assert!(stdout.contains("Total line number = 2"), "{stdout}");
    assert!(stdout.contains("It costs "), "{stdout}");
    assert!(stderr.contains("Msg: 508: "), "{stderr}");
    // After quit nothing runs: the SHOW DATABASES table appears once.
    assert_eq!(stdout.matches("root.shell|").count(), 1, "{stdout}");
    let history = std::fs::read_to_string(home.path().join(".iotdb_ctl_history")).unwrap();
    assert!(
        history.contains("select s1   from root.shell.d"),
        "{history}"
    );
    // A failed statement in piped input makes the exit status non-zero.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
}

#[test]
fn sql_subcommand_prints_and_fails_with_status() {
    let server = TestServer::start(server_options!()).unwrap();
    let address = server.address().to_string();
    let ctl = ctl_binary();
    let ok = Command::new(ctl)
        .args(["-h", &address, "sql", "show databases"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let text = String::from_utf8(ok.stdout).unwrap();
    assert!(
        text.contains("Empty set.") && text.contains("It costs "),
        "{text}"
    );
    let bad = Command::new(ctl)
        .args(["-h", &address, "sql", "selec 1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(stderr.starts_with("Msg: 700: "), "{stderr}");
    let csv = Command::new(ctl)
        .args(["-h", &address, "--format", "csv", "show", "datanodes"])
        .output()
        .unwrap();
    assert!(csv.status.success());
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(text.starts_with("NodeID,"), "{text}");
}
