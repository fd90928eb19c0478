//! A real full disk: the server's data directory on a small tmpfs that ingest fills.
//!
//! When the WAL can no longer write, the region turns read-only and writes get the typed
//! 600 (SYSTEM_READ_ONLY); every acknowledged point stays readable, before and after a
//! restart. The documented way back to Running (`docs/operations.md`, "A full disk") is
//! to free space and restart the server, which this test does.
//!
//! A second test fails only the background flush: a one-page tmpfs, filled, mounted over
//! the region's `sealed/` directory while the WAL keeps its room. The flush fails with
//! ENOSPC on a pool thread, the region turns read-only, writes answer 600 and `SHOW
//! CLUSTER` shows the DataNode `ReadOnly`; nothing acknowledged is lost, and a restart
//! with room again is back to `Running`. No test-only hook in the server: the fault is a
//! real full file system, placed where only the flush writes.
//!
//! A third fills the disk under a SchemaRegion's own journal by creating series: the
//! statement that does not fit fails, the SchemaRegion then answers 600 and the DataNode is
//! `ReadOnly`; restarted with room, every acknowledged series is there.
//!
//! Mounting needs root (CAP_SYS_ADMIN); where it is refused a test says why and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use iotdb_net::{
    CreateDatabase, DataType, RawQuery, SeriesSelection, StatusCode, Value, WireTablet,
};
use iotdb_tests::model::rows_of;
use iotdb_tests::{ServerOptions, TestServer, server_options};

/// Size of the file system the data directory lives on.
const TMPFS_BYTES: u64 = 48 << 20;
/// Space held back by a file the test deletes to free space again.
const BALLAST_BYTES: usize = 8 << 20;
const DEVICE: &str = "root.full.d1";
const MEASUREMENTS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const ROWS_PER_WRITE: i64 = 5000;
/// Writes before the test gives up on filling the disk (far more than it holds).
const WRITES_MAX: i64 = 2000;

/// A tmpfs mounted for the test, unmounted on drop.
struct TmpfsMount {
    path: PathBuf,
    /// The mount point when the test made one (removed after the unmount).
    _dir: Option<tempfile::TempDir>,
}

impl TmpfsMount {
    /// A tmpfs of `bytes` on a fresh directory.
    fn new(bytes: u64) -> Result<TmpfsMount, String> {
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let mut mount = TmpfsMount::at(dir.path(), bytes)?;
        mount._dir = Some(dir);
        Ok(mount)
    }

    /// A tmpfs of `bytes` over the existing directory `path`.
    fn at(path: &Path, bytes: u64) -> Result<TmpfsMount, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|error| format!("running mount: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            path: path.to_path_buf(),
            _dir: None,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.path).status();
        if !matches!(status, Ok(status) if status.success()) {
            // Something still holds it: detach it now, the kernel frees it when let go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The value series `index` holds at `time`: every point is checkable without a model.
fn value_at(index: usize, time: i64) -> f64 {
    (time as f64) * 0.25 + index as f64 * 1_000_000.0
}

fn tablet(first: i64) -> WireTablet {
    let schema: Vec<(&str, DataType)> = MEASUREMENTS
        .iter()
        .map(|name| (*name, DataType::Double))
        .collect();
    let mut tablet = WireTablet::new(DEVICE, &schema);
    for time in first..first + ROWS_PER_WRITE {
        let cells: Vec<Option<Value>> = (0..MEASUREMENTS.len())
            .map(|index| Some(Value::Double(value_at(index, time))))
            .collect();
        tablet.push_row(time, &cells).expect("a row");
    }
    tablet
}

/// Every acknowledged point (times `0..acknowledged_end`) reads back with its value.
fn assert_all_readable(server: &TestServer, acknowledged_end: i64, when: &str) {
    let mut client = server.client().expect("connect");
    let batches = client
        .query_raw(RawQuery {
            series: vec![SeriesSelection {
                device: DEVICE.to_owned(),
                measurements: MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect(),
            }],
            start_time: 0,
            end_time: acknowledged_end,
            limit: None,
            offset: 0,
        })
        .expect("query the acknowledged points");
    let (_, rows) = rows_of(&batches).expect("batches");
    assert_eq!(
        rows.len() as i64,
        acknowledged_end,
        "{when}: every acknowledged row reads back"
    );
    for (expected_time, (time, cells)) in rows.iter().enumerate() {
        assert_eq!(*time, expected_time as i64, "{when}");
        for (index, cell) in cells.iter().enumerate() {
            assert_eq!(
                *cell,
                Some(Value::Double(value_at(index, *time))),
                "{when}: series {index} at {time}"
            );
        }
    }
}

/// The Status of the DataNode row of `SHOW CLUSTER`.
fn data_node_status(client: &mut iotdb_net::BlockingClient) -> String {
    let cluster = client.execute_sql("SHOW CLUSTER").expect("show cluster");
    let column = |name: &str| {
        cluster
            .column_names
            .iter()
            .position(|column| column == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", cluster.column_names))
    };
    let (kind, status) = (column("NodeType"), column("Status"));
    let text = |cell: &Option<Value>| match cell {
        Some(Value::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("a text cell, not {other:?}"),
    };
    cluster
        .rows
        .iter()
        .find(|row| text(&row[kind]) == "DataNode")
        .map(|row| text(&row[status]))
        .expect("a DataNode row")
}

/// A server with `options` and the test's database, and a client of it.
fn start_with_database(options: ServerOptions) -> (TestServer, iotdb_net::BlockingClient) {
    let server = TestServer::start(options).expect("start the server");
    let mut client = server.client().expect("connect");
    client
        .create_database(CreateDatabase {
            name: "root.full".to_owned(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
    (server, client)
}

fn fill_ballast(path: &Path) {
    std::fs::write(path, vec![0x5a; BALLAST_BYTES]).expect("write the ballast file");
}

#[test]
fn a_full_disk_makes_writes_read_only_loses_nothing_and_a_restart_recovers() {
    let mount = match TmpfsMount::new(TMPFS_BYTES) {
        Ok(mount) => mount,
        Err(reason) => {
            eprintln!("skipping the full-disk test: {reason}");
            return;
        }
    };
    let ballast: PathBuf = mount.path().join("ballast");
    fill_ballast(&ballast);
    let options = server_options!()
        .cores(1)
        .data_dir(mount.path().join("data"))
        // Flushes (from 8 MiB, a third of the shard's budget) write sealed files while the
        // disk fills, too.
        .config_toml("shard_write_memory_bytes = 25165824");
    let (mut server, mut client) = start_with_database(options);

    // Ingest until a write fails; everything before it was acknowledged.
    let mut acknowledged_end = 0;
    let failure = loop {
        assert!(
            acknowledged_end < WRITES_MAX * ROWS_PER_WRITE,
            "{} rows written to a {TMPFS_BYTES}-byte file system without a failure",
            acknowledged_end
        );
        match client.insert_tablets(&[tablet(acknowledged_end)]) {
            Ok(()) => acknowledged_end += ROWS_PER_WRITE,
            Err(error) => break error,
        }
    };
    eprintln!("the disk filled after {acknowledged_end} rows: {failure}");
    assert_eq!(
        failure.status_code(),
        Some(StatusCode::SYSTEM_READ_ONLY),
        "a full disk is a typed read-only error, not {failure}"
    );
    // Read-only stays read-only (no half-written state), and reads go on.
    let again = client
        .insert_tablets(&[tablet(acknowledged_end)])
        .expect_err("still read-only");
    assert_eq!(again.status_code(), Some(StatusCode::SYSTEM_READ_ONLY));
    assert_eq!(
        data_node_status(&mut client),
        "ReadOnly",
        "SHOW CLUSTER shows the DataNode read-only"
    );
    assert_all_readable(&server, acknowledged_end, "read-only");
    drop(client);

    // The way back: free space, restart. (SIGKILL: a clean stop would try to flush onto
    // the full disk; recovery replays the WAL either way.)
    server.kill().expect("kill");
    std::fs::remove_file(&ballast).expect("free space");
    back_to_running(&mut server, acknowledged_end);
    drop(server);
    drop(mount);
}

/// After a kill, with room again: a restart recovers every acknowledged point (times
/// `0..acknowledged_end`), the DataNode is `Running`, a write and a flush succeed, and a
/// clean stop and second restart keep everything.
fn back_to_running(server: &mut TestServer, mut acknowledged_end: i64) {
    server.restart().expect("restart with room again");
    assert_all_readable(server, acknowledged_end, "after the restart");
    let mut client = server.client().expect("connect");
    assert_eq!(
        data_node_status(&mut client),
        "Running",
        "after the restart"
    );
    client
        .insert_tablets(&[tablet(acknowledged_end)])
        .expect("Running again: writes succeed");
    acknowledged_end += ROWS_PER_WRITE;
    client.execute_sql("FLUSH").expect("a flush with room");
    assert_all_readable(server, acknowledged_end, "after a new write");
    drop(client);
    server.stop().expect("a clean stop");
    server.restart().expect("a second restart");
    assert_all_readable(server, acknowledged_end, "after a clean restart");
}

/// How long the test waits for the failed flush to show (the region's next tick, then the
/// status gauge).
const READ_ONLY_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The one region directory of the server's DataNode.
fn only_region_dir(data_dir: &Path) -> PathBuf {
    let regions = data_dir.join("datanode").join("data");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&regions)
        .expect("list the region directories")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir() && path.join("sealed").is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one region in {}: {dirs:?}",
        regions.display()
    );
    dirs.remove(0)
}

/// Fills the file system of `dir` with one file until it refuses more.
fn fill_up(dir: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("ballast")).expect("create the ballast");
    let block = vec![0x5a; 4096];
    while file.write_all(&block).is_ok() {}
}

#[test]
fn a_failed_background_flush_turns_the_datanode_read_only() {
    let root = tempfile::tempdir().expect("a data directory");
    let options = server_options!()
        .cores(1)
        .data_dir(root.path().join("data"));
    let (mut server, mut client) = start_with_database(options);
    client
        .insert_tablets(&[tablet(0)])
        .expect("the first write creates the region");
    let mut acknowledged_end = ROWS_PER_WRITE;
    let sealed = only_region_dir(&server.data_dir()).join("sealed");
    assert_eq!(
        std::fs::read_dir(&sealed).expect("list sealed/").count(),
        0,
        "nothing was flushed yet"
    );
    let mount = match TmpfsMount::at(&sealed, 4096) {
        Ok(mount) => mount,
        Err(reason) => {
            eprintln!("skipping the failed-flush test: {reason}");
            return;
        }
    };
    fill_up(mount.path());

    // The flush fails on the pool; a statement that reports it reports the typed 600.
    if let Err(error) = client.execute_sql("FLUSH") {
        assert_eq!(
            error.status_code(),
            Some(StatusCode::SYSTEM_READ_ONLY),
            "FLUSH onto a full sealed/ answered {error}"
        );
    }
    let deadline = std::time::Instant::now() + READ_ONLY_WAIT;
    let refused = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "writes still succeed {READ_ONLY_WAIT:?} after the flush failed"
        );
        match client.insert_tablets(&[tablet(acknowledged_end)]) {
            Ok(()) => acknowledged_end += ROWS_PER_WRITE,
            Err(error) => break error,
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        refused.status_code(),
        Some(StatusCode::SYSTEM_READ_ONLY),
        "a failed flush makes writes a typed read-only error, not {refused}"
    );
    loop {
        let status = data_node_status(&mut client);
        if status == "ReadOnly" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SHOW CLUSTER still says {status} after the flush failed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_all_readable(
        &server,
        acknowledged_end,
        "read-only after the failed flush",
    );
    drop(client);

    // The way back: room for sealed files again (the tiny mount goes; nothing the
    // manifest names was on it), then a restart replays the WAL.
    server.kill().expect("kill");
    drop(mount);
    back_to_running(&mut server, acknowledged_end);
}

/// A full disk under the SchemaRegion's own journal: new series of a known device write
/// only that journal. The first append that does not fit fails its statement; from then
/// on the SchemaRegion answers 600 (its memory may hold series that are not durable) and
/// `SHOW CLUSTER` shows the DataNode `ReadOnly`. Freed and restarted, every series whose
/// creation was acknowledged is there and the DataNode is `Running`.
#[test]
fn a_failed_schema_journal_turns_the_datanode_read_only() {
    let mount = match TmpfsMount::new(16 << 20) {
        Ok(mount) => mount,
        Err(reason) => {
            eprintln!("skipping the schema-journal test: {reason}");
            return;
        }
    };
    let options = server_options!()
        .cores(1)
        .data_dir(mount.path().join("data"));
    let (mut server, mut client) = start_with_database(options);
    client
        .insert_tablets(&[tablet(0)])
        .expect("the first write creates the device and its regions");
    fill_up(mount.path());
    let mut created: Vec<String> = Vec::new();
    let failure = loop {
        assert!(
            created.len() < 100_000,
            "100,000 series created on a full file system"
        );
        let name = format!("x{}", created.len());
        let sql = format!("CREATE TIMESERIES {DEVICE}.{name} WITH DATATYPE=INT64");
        match client.execute_sql(&sql) {
            Ok(_) => created.push(name),
            Err(error) => break error,
        }
    };
    eprintln!(
        "the schema journal failed after {} series: {failure}",
        created.len()
    );
    let refused = client
        .execute_sql(&format!(
            "CREATE TIMESERIES {DEVICE}.late WITH DATATYPE=INT64"
        ))
        .expect_err("a failed SchemaRegion refuses");
    assert_eq!(
        refused.status_code(),
        Some(StatusCode::SYSTEM_READ_ONLY),
        "after a failed journal write: {refused}"
    );
    assert_eq!(data_node_status(&mut client), "ReadOnly", "SHOW CLUSTER");
    drop(client);

    server.kill().expect("kill");
    std::fs::remove_file(mount.path().join("ballast")).expect("free space");
    server.restart().expect("restart with room again");
    let mut client = server.client().expect("connect");
    assert_eq!(
        data_node_status(&mut client),
        "Running",
        "after the restart"
    );
    let shown = client
        .execute_sql(&format!("SHOW TIMESERIES {DEVICE}.**"))
        .expect("show timeseries");
    let names: Vec<String> = shown
        .rows
        .iter()
        .filter_map(|row| match &row[0] {
            Some(Value::Text(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .collect();
    for name in &created {
        let path = format!("{DEVICE}.{name}");
        assert!(names.contains(&path), "acknowledged {path} is gone");
    }
    client
        .execute_sql(&format!(
            "CREATE TIMESERIES {DEVICE}.late WITH DATATYPE=INT64"
        ))
        .expect("a new series once there is room");
    drop(client);
    drop(server);
    drop(mount);
}
