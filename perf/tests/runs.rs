//! `--runs N` repeats the benchmark on fresh servers and ends with the medians, as a single
//! run ends with its own figures; it refuses the targets it cannot make fresh.

use std::process::Command;

const SMALL: [&str; 12] = [
    "--devices",
    "3",
    "--sensors",
    "4",
    "--rows",
    "100",
    "--batch",
    "20",
    "--clients",
    "1",
    "--query-repeat",
    "1",
];

fn perf(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_iotdb-perf"))
        .args(SMALL)
        .args(args)
        .output()
        .expect("run iotdb-perf");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn three_runs_end_with_their_medians() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("runs.json");
    let json_arg = json.to_str().expect("utf-8 path");
    for target in [&["storage"][..], &["--embedded", "--cores", "1"][..]] {
        let mut args = vec!["--runs", "3", "--json", json_arg];
        args.extend_from_slice(target);
        let (ok, stdout, stderr) = perf(&args);
        assert!(ok, "{target:?}:\nstdout:\n{stdout}\nstderr:\n{stderr}");
        for run in 1..=3 {
            assert!(
                stdout.contains(&format!("run {run} of 3")),
                "{target:?}: {stdout}"
            );
        }
        assert_eq!(
            stdout.matches("verified points: 1200").count(),
            3,
            "every run verifies its own data: {stdout}"
        );
        let medians = stdout
            .split("Medians of 3 runs")
            .nth(1)
            .unwrap_or_else(|| panic!("{target:?}: no medians in {stdout}"));
        assert!(medians.contains("points/s, through the flush"), "{medians}");
        let last = medians.lines().last().expect("lines");
        assert!(
            last.starts_with("points/s: "),
            "ends with the median rate: {last}"
        );
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
        assert_eq!(written["runs"].as_array().map(Vec::len), Some(3));
        let rates: Vec<f64> = written["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|run| run["points_per_second"].as_f64().expect("a rate per run"))
            .collect();
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(
            written["medians"]["points_per_second"]["median"].as_f64(),
            Some(sorted[1]),
            "{target:?}: the median of {rates:?}"
        );
    }
}

#[test]
fn runs_refuse_targets_they_cannot_make_fresh() {
    let (ok, _, stderr) = perf(&["--runs", "2", "--endpoints", "127.0.0.1:9"]);
    assert!(
        !ok && stderr.contains("--runs needs a fresh server"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().to_str().expect("utf-8 path");
    let (ok, _, stderr) = perf(&["--runs", "2", "storage", "--data-dir", data]);
    assert!(
        !ok && stderr.contains("--runs needs a fresh directory"),
        "{stderr}"
    );
    let (ok, _, stderr) = perf(&["--runs", "2", "--duration", "1s"]);
    assert!(
        !ok && stderr.contains("a soak (--duration) runs once"),
        "{stderr}"
    );
    let (ok, _, stderr) = perf(&["--runs", "0"]);
    assert!(!ok && stderr.contains("--runs"), "{stderr}");
}
