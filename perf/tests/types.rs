//! `iotdb-perf` runs to its end with every `--types` form its help documents: one type
//! name (each of the six) or proportions in type-code order. The query phase must ask each
//! type only what it supports (no `avg` of a BOOLEAN or TEXT series), against the embedded
//! server and in storage mode.

use std::process::Command;

/// The forms the `--types` help documents: every type name, and proportions.
const TYPE_FORMS: [&str; 9] = [
    "BOOLEAN",
    "INT32",
    "INT64",
    "FLOAT",
    "DOUBLE",
    "TEXT",
    "1:1:1:1:1:1",
    "0:0:0:0:1:0",
    "2:0:1:0:2:1",
];

/// Runs `iotdb-perf` with a small workload and returns its stdout; fails the test on a
/// non-zero exit.
fn run(types: &str, storage: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iotdb-perf"));
    command.args([
        "--devices",
        "3",
        "--sensors",
        "6",
        "--rows",
        "120",
        "--batch",
        "40",
        "--clients",
        "1",
        "--query-repeat",
        "2",
        "--types",
        types,
    ]);
    if storage {
        command.arg("storage");
    } else {
        command.args(["--embedded", "--cores", "1"]);
    }
    let output = command.output().expect("run iotdb-perf");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "iotdb-perf --types {types} (storage: {storage}) failed with {}:\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The type names present in a `--types` form over 6 sensors: every type of non-zero
/// weight (the forms above weigh at most 6 in all, so each such type gets a sensor).
fn expected_types(form: &str) -> Vec<&'static str> {
    const NAMES: [&str; 6] = ["BOOLEAN", "INT32", "INT64", "FLOAT", "DOUBLE", "TEXT"];
    match NAMES.iter().find(|n| n.eq_ignore_ascii_case(form)) {
        Some(name) => vec![name],
        None => form
            .split(':')
            .zip(NAMES)
            .filter(|(weight, _)| *weight != "0")
            .map(|(_, name)| name)
            .collect(),
    }
}

fn check(form: &str, stdout: &str) {
    assert!(
        stdout.lines().any(|l| l.starts_with("points/s: ")),
        "no closing points/s line for --types {form}:\n{stdout}"
    );
    let types = expected_types(form);
    if types.len() > 1 {
        for name in types {
            let aggregate = if matches!(name, "BOOLEAN" | "TEXT") {
                format!("count,first,last 1h {name}")
            } else {
                format!("count,avg 1h {name}")
            };
            for row in [format!("raw 1h {name}"), aggregate, format!("last {name}")] {
                assert!(
                    stdout.contains(&row),
                    "--types {form}: no query row {row:?} in:\n{stdout}"
                );
            }
        }
    } else {
        let aggregate = if matches!(types[0], "BOOLEAN" | "TEXT") {
            "count,first,last 1h"
        } else {
            "count,avg 1h"
        };
        assert!(
            stdout.contains(aggregate),
            "--types {form}: no query row {aggregate:?} in:\n{stdout}"
        );
    }
}

#[test]
fn every_documented_types_form_runs_against_the_embedded_server() {
    for form in TYPE_FORMS {
        let stdout = run(form, false);
        check(form, &stdout);
    }
}

#[test]
fn every_documented_types_form_runs_in_storage_mode() {
    for form in TYPE_FORMS {
        let stdout = run(form, true);
        check(form, &stdout);
    }
}
