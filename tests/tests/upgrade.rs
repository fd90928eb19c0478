//! Upgrades: a data directory written by an earlier build opens in this one with every
//! point, and one written by a later build (a newer data format) is refused with a message
//! naming both versions.
//!
//! `tests/fixtures/data-format-N/` is a standalone server's data directory written by the
//! first build of format N: [`WRITES`] sent to a one-core server, with a flush in the
//! middle (sealed files, a deletion — in MODS, or still only in the WAL where the kill
//! came first — and from format 2 the folded, compressed
//! schema and ConfigNode snapshots) and the rest left in the WAL by a SIGKILL. Format 1
//! is the build that introduced format stamps; format 2 compressed the sealed files'
//! index and the journals' snapshots; format 3 logs tablet writes in the compact WAL
//! record (its WAL tail: a listed-timestamp record and a DOUBLE kept as digits). Keep them
//! all: every later build must open each.
//! When the format changes, add the new version's fixture beside them
//! (`write_the_fixture`, below, writes one) and to [`FORMATS`].

use std::path::{Path, PathBuf};

use iotdb_net::ResultSet;
use iotdb_tests::{TestServer, server_options};

/// What the fixture's server was sent, in order.
const WRITES: &[&str] = &[
    "CREATE DATABASE root.fx",
    "CREATE TIMESERIES root.fx.d1.b WITH DATATYPE=BOOLEAN, ENCODING=RLE",
    "CREATE TIMESERIES root.fx.d1.i WITH DATATYPE=INT32, ENCODING=TS_2DIFF",
    "CREATE TIMESERIES root.fx.d1.l WITH DATATYPE=INT64",
    "CREATE TIMESERIES root.fx.d1.f WITH DATATYPE=FLOAT, ENCODING=GORILLA",
    "CREATE TIMESERIES root.fx.d1.d WITH DATATYPE=DOUBLE",
    "CREATE TIMESERIES root.fx.d1.t WITH DATATYPE=TEXT",
    "CREATE ALIGNED TIMESERIES root.fx.v(lat FLOAT, lon DOUBLE)",
    "INSERT INTO root.fx.d1(time, b, i, l, f, d, t) VALUES \
     (1000, true, 1, 10, 1.5, 2.25, 'one'), (2000, false, 2, 20, 2.5, 3.25, 'two'), \
     (3000, true, 3, 30, 3.5, 4.25, 'three')",
    // Two time partitions (IoTDB's default interval is 7 days).
    "INSERT INTO root.fx.d2(time, s) VALUES (1000, 100), (604801000, 200)",
    "INSERT INTO root.fx.v(time, lat, lon) ALIGNED VALUES (1000, 45.5, 7.25), (2000, 45.75, 7.5)",
    "FLUSH",
    "DELETE FROM root.fx.d1.i WHERE time <= 1000",
    // In the WAL only (the server is killed).
    "INSERT INTO root.fx.d1(time, i, t) VALUES (4000, 4, 'four'), (2000, 22, 'two again')",
    "INSERT INTO root.fx.d3(time, s) VALUES (5000, 1.25)",
];

/// What is asked of the fixture, and of a fresh server sent [`WRITES`].
const QUERIES: &[&str] = &[
    "SELECT * FROM root.fx.**",
    "SELECT count(i), sum(l), max_value(f), last_value(t) FROM root.fx.d1",
    "SELECT LAST * FROM root.fx.**",
    "SHOW TIMESERIES root.fx.**",
    "SHOW DATABASES",
];

/// The formats whose fixtures this build must open.
const FORMATS: &[u32] = &[1, 2, 3];

fn fixture(format: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/data-format-{format}"))
}

/// Copies a directory tree (the fixture into a server's temporary directory).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn answers(server: &TestServer) -> Vec<ResultSet> {
    let mut client = server.client().expect("connect");
    QUERIES
        .iter()
        .map(|query| {
            client
                .execute_sql(query)
                .unwrap_or_else(|e| panic!("{query}: {e}"))
        })
        .collect()
}

#[test]
fn data_written_by_every_earlier_format_opens_with_every_point() {
    assert_eq!(
        FORMATS.last(),
        Some(&iotdb_node::format::DATA_FORMAT_VERSION),
        "no fixture of this build's format: write one (write_the_fixture)"
    );
    let expected = fresh_answers();
    for &format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        copy_tree(&fixture(format), &data);
        let mut old = TestServer::start(server_options!().data_dir(&data))
            .unwrap_or_else(|e| panic!("open the fixture of format {format}: {e:#}"));
        let found = answers(&old);
        // Opened again after the upgrade stamped it (and after a restart replayed it).
        old.stop().expect("stop");
        for role in ["confignode", "datanode"] {
            let stamp = std::fs::read_to_string(data.join(role).join("format.json"))
                .expect("a format stamp");
            let current = format!(
                "\"format_version\": {}",
                iotdb_node::format::DATA_FORMAT_VERSION
            );
            assert!(stamp.contains(&current), "format {format}, {role}: {stamp}");
        }
        old.restart().expect("restart");
        let again = answers(&old);
        old.stop().expect("stop");
        for (when, answered) in [("opened", &found), ("restarted", &again)] {
            for ((query, found), expected) in QUERIES.iter().zip(answered).zip(&expected) {
                assert!(!expected.rows.is_empty(), "{query}: nothing to compare");
                assert_eq!(
                    found.column_names, expected.column_names,
                    "format {format} {when}, {query}: columns"
                );
                assert_eq!(
                    found.rows, expected.rows,
                    "format {format} {when}, {query}: rows"
                );
            }
        }
        // Every point of the WAL tail and the deletion are there.
        let all = &found[0];
        assert_eq!(all.rows.len(), 6, "format {format}: {all:?}");
    }
}

/// What a fresh server answers [`QUERIES`] after [`WRITES`].
fn fresh_answers() -> Vec<ResultSet> {
    let mut fresh = TestServer::start(server_options!()).expect("a fresh server");
    let mut client = fresh.client().expect("connect");
    for statement in WRITES {
        client
            .execute_sql(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let expected = answers(&fresh);
    fresh.stop().expect("stop");
    expected
}

#[test]
fn a_newer_data_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_tree(&fixture(1), &data);
    std::fs::write(
        data.join("datanode/format.json"),
        r#"{"format_version": 7, "written_by": "9.1.0"}"#,
    )
    .unwrap();
    let error = match TestServer::start(server_options!().data_dir(&data)) {
        Ok(_) => panic!("a data directory of format 7 was opened"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("data format version 7")
            && error.contains("iotdb-server 9.1.0")
            && error.contains(&format!(
                "format versions up to {}",
                iotdb_node::format::DATA_FORMAT_VERSION
            )),
        "{error}"
    );
    // Nothing was changed: the stamp still says 7.
    let stamp = std::fs::read_to_string(data.join("datanode/format.json")).unwrap();
    assert!(stamp.contains("7"), "{stamp}");
}

/// Writes `tests/fixtures/data-format-<N>/` (N = this build's format) from [`WRITES`]:
/// `cargo test -p iotdb-tests --test upgrade -- --ignored write_the_fixture`.
#[test]
#[ignore = "writes a fixture into the source tree; run by hand when the format changes"]
fn write_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start(server_options!().data_dir(&data)).expect("start");
    let mut client = server.client().expect("connect");
    for statement in WRITES {
        client
            .execute_sql(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    server.kill().expect("SIGKILL: the tail stays in the WAL");
    for role in ["confignode", "datanode"] {
        std::fs::remove_file(data.join(role).join(".lock")).unwrap();
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "fixtures/data-format-{}",
        iotdb_node::format::DATA_FORMAT_VERSION
    ));
    assert!(!target.exists(), "{} exists: keep it", target.display());
    copy_tree(&data, &target);
}
