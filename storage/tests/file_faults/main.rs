//! Faults in every file the engine writes besides the WAL (sealed files, MANIFEST, MODS,
//! their temp files and directories), injected through `RegionConfig::file_system`.
//!
//! A region lives through a fixed scenario after two flushes without faults (setup):
//! a flush, an unsequence flush, a compaction and a deletion with a flush after it
//! (`Scenario::FlushCompactDelete`), or a deletion arriving during a compaction
//! (`Scenario::DeleteDuringCompaction`). A counting run records every file operation of
//! the faulted part; then, for each operation index, a fresh region runs the scenario
//! with one fault there: ENOSPC, EIO, a short write, or a crash (that operation and every
//! later one fail). After each:
//!
//! - every step that failed failed with `StorageError::ReadOnly` (600 to clients), and once
//!   a fault other than on the removal of a replaced file fired, the region is read-only
//!   and refuses the next write with `ReadOnly`;
//! - the live region still reads exactly the model (every acknowledged point, nothing
//!   deleted);
//! - after a power loss (every file cut to its last fdatasync, every create, rename and
//!   remove not followed by a directory fsync undone) or a process stop (the OS keeps
//!   everything), the directory reopened with plain `std::fs` reads exactly the model,
//!   takes writes (also where deletions were) and flushes, and reads the model again
//!   after a second reopen.
//!
//! By default every index gets a crash followed by a power loss, and the first scenario's
//! indexes one of the other kinds each (rotating) followed by a process stop;
//! `FILE_FAULT_KINDS=all` runs every kind at every index, each both ways (about 4× longer).
//!
//! The modules fault other writers through the same seam: a replica receiving a
//! snapshot (`snapshot_receive`) and TTL expiry (`ttl_expiry`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotdb_storage::file_system::faulty::{
    Fault, FaultKind, FaultyFileSystem, OperationKind, fault_cases, run_fault_cases,
};

mod snapshot_receive;
mod ttl_expiry;
use iotdb_storage::{
    Region, RegionConfig, SeriesKey, StorageError, Tablet, TabletColumn, TimeRange, Values,
};

#[path = "../support/mod.rs"]
mod support;
use support::block_on;

const DEVICE: &str = "root.faults.d0";
const MEASUREMENTS: [&str; 2] = ["s0", "s1"];
/// How long a test waits for a background job's failure to show.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// Every acknowledged point: (measurement, time) → value.
type Model = BTreeMap<(&'static str, i64), i64>;

/// The value written at `t`; `generation` tells an overwrite from the first write.
fn value(measurement: usize, t: i64, generation: i64) -> i64 {
    generation * 1_000_000 + t * 10 + measurement as i64
}

fn tablet(first: i64, rows: i64, generation: i64) -> Tablet {
    Tablet {
        device: Arc::from(DEVICE),
        timestamps: (first..first + rows).collect(),
        columns: MEASUREMENTS
            .iter()
            .enumerate()
            .map(|(m, name)| TabletColumn {
                measurement: Arc::from(*name),
                values: Values::Int64(
                    (first..first + rows)
                        .map(|t| value(m, t, generation))
                        .collect(),
                ),
                nulls: None,
            })
            .collect(),
    }
}

fn config(file_system: Option<&FaultyFileSystem>) -> RegionConfig {
    RegionConfig {
        // Small segments: a flush lets the WAL drop what it covers, so the sealed files,
        // MANIFEST and MODS alone hold the flushed points.
        wal_segment_bytes: 4 << 10,
        // Compactions only when the scenario asks (`Region::compact`).
        compaction_files_trigger: 1000,
        compaction_cold_delay: Duration::from_secs(3600),
        compaction_bytes_per_second: 0,
        file_system: file_system.map(|fs| Arc::new(fs.clone()) as _),
        ..RegionConfig::default()
    }
}

/// A test directory, on tmpfs where there is one: the runs fsync a lot.
fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// A fresh directory: the region's (not created yet) and a fault-injecting file system
/// keeping its backups beside it. The directory lives as long as the `TempDir`.
fn fixture() -> (tempfile::TempDir, PathBuf, FaultyFileSystem) {
    let root = temp_dir();
    let region_dir = root.path().join("region");
    let fs = FaultyFileSystem::new(&root.path().join("backup")).unwrap();
    (root, region_dir, fs)
}

/// Reopens `region_dir` with plain `std::fs`, checks it against the model and closes it.
fn assert_reopens_to_model(region_dir: &Path, model: &Model, when: &str) {
    block_on(async {
        let region = Region::open(region_dir, config(None))
            .unwrap_or_else(|e| panic!("{when}: reopening failed: {e}"));
        assert_matches_model(&region, model, when);
        region.close(false).await.unwrap();
    });
}

/// A step's failure must be the typed read-only error.
fn expect_read_only(step: &str, error: &StorageError) {
    assert!(
        matches!(error, StorageError::ReadOnly(_)),
        "{step} failed with {error:?}, not ReadOnly"
    );
}

/// The region's points equal the model's, series by series.
fn assert_matches_model(region: &Region, model: &Model, when: &str) {
    for name in MEASUREMENTS {
        let key = SeriesKey::new(DEVICE, name);
        let column = region.scan(&key, TimeRange::ALL).unwrap();
        let actual: Vec<(i64, i64)> = match column {
            None => Vec::new(),
            Some(column) => {
                let Values::Int64(values) = column.values else {
                    panic!("{when}: {name} is not INT64")
                };
                column.timestamps.into_iter().zip(values).collect()
            }
        };
        let expected: Vec<(i64, i64)> = model
            .range((name, i64::MIN)..=(name, i64::MAX))
            .map(|(&(_, t), &v)| (t, v))
            .collect();
        if actual != expected {
            let missing: Vec<_> = expected.iter().filter(|p| !actual.contains(p)).collect();
            let extra: Vec<_> = actual.iter().filter(|p| !expected.contains(p)).collect();
            panic!(
                "{when}: {name} differs from the model: {} points expected, {} read; \
                 missing {:?}…, extra {:?}…",
                expected.len(),
                actual.len(),
                &missing[..missing.len().min(5)],
                &extra[..extra.len().min(5)],
            );
        }
    }
}

/// Writes `rows` rows from `first`; the model takes them once durable.
async fn write(region: &Region, model: &mut Model, first: i64, rows: i64) -> bool {
    write_generation(region, model, first, rows, 0).await
}

/// [`write`] with values of `generation` (an overwrite when the times were written).
async fn write_generation(
    region: &Region,
    model: &mut Model,
    first: i64,
    rows: i64,
    generation: i64,
) -> bool {
    match region.write_durable(&tablet(first, rows, generation)).await {
        Ok(_) => {
            for t in first..first + rows {
                for (m, name) in MEASUREMENTS.iter().enumerate() {
                    model.insert((name, t), value(m, t, generation));
                }
            }
            true
        }
        Err(e) => {
            expect_read_only("a write", &e);
            false
        }
    }
}

async fn delete(region: &Region, model: &mut Model, range: TimeRange) {
    let keys = [SeriesKey::new(DEVICE, MEASUREMENTS[0])];
    let acknowledged = match region.delete(&keys, range) {
        Ok(ack) => ack.durable().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match acknowledged {
        Ok(()) => model.retain(|&(name, t), _| !(name == MEASUREMENTS[0] && range.contains(t))),
        Err(e) => expect_read_only("a deletion", &e),
    }
}

fn step_result(step: &str, result: iotdb_storage::Result<()>) {
    if let Err(e) = result {
        expect_read_only(step, &e);
    }
}

/// The part of the scenario without faults: two flushed files in one partition.
async fn setup(region: &Region, model: &mut Model) {
    assert!(write(region, model, 0, 100).await);
    region.flush().await.unwrap();
    assert!(write(region, model, 100, 100).await);
    region.flush().await.unwrap();
    assert_eq!(region.info().sealed_files, 2);
}

/// What happens while a fault may strike.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// A flush, an overwrite flushed as an unsequence file, a compaction (newest wins), a
    /// deletion and the flush that follows it.
    FlushCompactDelete,
    /// A deletion arriving while a (slow) compaction runs, so its output carries it into
    /// MODS; then the deleted range written again, flushed as an unsequence file and
    /// compacted with the deletion applied.
    DeleteDuringCompaction,
}

impl Scenario {
    fn config(self, file_system: &FaultyFileSystem) -> RegionConfig {
        let config = config(Some(file_system));
        match self {
            Scenario::FlushCompactDelete => config,
            // About 50 ms per series of the setup's two files.
            Scenario::DeleteDuringCompaction => RegionConfig {
                compaction_bytes_per_second: 64_000,
                ..config
            },
        }
    }

    async fn steps(self, region: &Region, model: &mut Model) {
        match self {
            Scenario::FlushCompactDelete => flush_compact_delete(region, model).await,
            Scenario::DeleteDuringCompaction => delete_during_compaction(region, model).await,
        }
    }
}

async fn delete_during_compaction(region: &Region, model: &mut Model) {
    let compacting = region.clone();
    let compaction = monoio::spawn(async move { compacting.compact().await });
    monoio::time::sleep(Duration::from_millis(20)).await;
    delete(region, model, TimeRange::new(0, 150)).await;
    step_result("a compaction a deletion met", compaction.await);
    write_generation(region, model, 0, 150, 2).await;
    step_result("the flush of the deleted range", region.flush().await);
    step_result("the compaction after it", region.compact().await);
}

async fn flush_compact_delete(region: &Region, model: &mut Model) {
    write(region, model, 200, 100).await;
    step_result("a flush", region.flush().await);
    write_generation(region, model, 150, 10, 1).await;
    step_result("the flush of an overwrite", region.flush().await);
    step_result("a compaction", region.compact().await);
    delete(region, model, TimeRange::new(50, 250)).await;
    write(region, model, 300, 10).await;
    step_result("the flush after a deletion", region.flush().await);
}

/// What one run saw.
struct Run {
    /// The operations of the faulted part.
    operations: Vec<(OperationKind, std::path::PathBuf)>,
    fired: bool,
}

/// Runs the scenario in `root` with `fault` armed after the setup, then checks the live
/// region and the reopened region against the model: reopened after a power loss (what
/// was not durable is gone) or after the process stopped (the OS kept everything).
fn run(root: &Path, scenario: Scenario, fault: Option<Fault>, power_loss: bool) -> Run {
    let region_dir = root.join("region");
    let fs = FaultyFileSystem::new(&root.join("backup")).unwrap();
    let mut model = Model::new();
    let (operations, fired) = block_on(async {
        let region = Region::open(&region_dir, scenario.config(&fs)).unwrap();
        setup(&region, &mut model).await;
        let base = fs.operation_count();
        if let Some(fault) = fault.clone() {
            fs.inject(fault);
        }
        scenario.steps(&region, &mut model).await;

        let operations = fs.operations().split_off(base);
        let fired = fs.fired();
        assert!(fired.len() <= 1, "one fault armed, {fired:?} fired");
        let fired_on = fired
            .first()
            .map(|&(index, _)| fs.operations()[index].clone());
        // A replaced file that cannot be removed is an orphan the next open deletes; any
        // other failed operation makes the region read-only.
        if let Some((kind, path)) = &fired_on
            && *kind != OperationKind::Remove
        {
            let deadline = Instant::now() + WAIT_MAX;
            while region.info().read_only.is_none() {
                assert!(
                    Instant::now() < deadline,
                    "a fault on {kind:?} {} fired but the region is not read-only",
                    path.display()
                );
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            let refused = region.write(&tablet(1000, 1, 0)).map(|_| ());
            let error = refused.expect_err("a read-only region refused no write");
            expect_read_only("a write after the fault", &error);
        }
        assert_matches_model(&region, &model, "the live region after the fault");
        region.close(false).await.unwrap();
        (operations, fired_on.is_some())
    });
    if power_loss {
        fs.power_loss().unwrap();
    }

    block_on(async {
        let region = Region::open(&region_dir, config(None))
            .unwrap_or_else(|e| panic!("reopening after {fault:?} failed: {e}"));
        assert_eq!(region.info().read_only, None);
        assert_matches_model(&region, &model, "the reopened region");
        // New points, and points again where deletions were: a deletion that outlived
        // its purpose would hide them.
        assert!(write(&region, &mut model, 400, 50).await);
        assert!(write_generation(&region, &mut model, 0, 300, 3).await);
        region.flush().await.unwrap();
        assert_matches_model(&region, &model, "the reopened region after more writes");
        region.close(true).await.unwrap();
    });
    assert_reopens_to_model(&region_dir, &model, "the region reopened a second time");
    Run { operations, fired }
}

/// Every operation index of the faulted part: a crash followed by a power loss at each,
/// and one of ENOSPC, EIO and a short write (rotating) followed by a process stop.
#[test]
fn a_fault_at_every_operation_of_a_flush_a_compaction_and_a_deletion() {
    fault_at_every_operation(Scenario::FlushCompactDelete, 30, true);
}

/// Every operation index of a compaction that a deletion meets: a crash followed by a
/// power loss at each.
#[test]
fn a_fault_at_every_operation_of_a_compaction_a_deletion_met() {
    fault_at_every_operation(Scenario::DeleteDuringCompaction, 15, false);
}

/// Runs `scenario` once to count its operations (at least `operations_min`), then once
/// per operation index: a crash and a power loss, and with `other_kinds` one of the other
/// kinds (rotating) and a process stop; `FILE_FAULT_KINDS=all`: every kind, both ways.
fn fault_at_every_operation(scenario: Scenario, operations_min: usize, other_kinds: bool) {
    let counting = temp_dir();
    let baseline = run(counting.path(), scenario, None, true);
    assert!(!baseline.fired);
    let count = baseline.operations.len();
    assert!(
        count >= operations_min,
        "{scenario:?} performs more operations: {:?}",
        baseline.operations
    );
    let cases = fault_cases(count, other_kinds);
    let label = format!("{scenario:?}");
    let fired = run_fault_cases(
        &label,
        &baseline.operations,
        &cases,
        |fault, power_loss, _| {
            let dir = temp_dir();
            run(dir.path(), scenario, Some(fault), power_loss).fired
        },
    );
    // Background timing may shift an operation or two between runs; nearly every armed
    // fault must still meet one.
    assert!(
        fired * 10 >= cases.len() * 9,
        "{fired} of {} fired",
        cases.len()
    );
}

/// One named fault per file kind (the enumeration above covers them all; these say which
/// file and which fault).
#[test]
fn each_file_kind_fails_into_read_only() {
    let cases = [
        (OperationKind::SyncData, ".tsf", FaultKind::Io),
        (OperationKind::Write, ".tsf", FaultKind::ShortWrite),
        (OperationKind::Create, ".tsf", FaultKind::NoSpace),
        (OperationKind::SyncDir, "sealed", FaultKind::Io),
        (OperationKind::Write, "MANIFEST.tmp", FaultKind::NoSpace),
        (OperationKind::SyncData, "MANIFEST.tmp", FaultKind::Io),
        (OperationKind::Rename, "MANIFEST", FaultKind::Io),
        (OperationKind::Write, "MODS.tmp", FaultKind::ShortWrite),
        (OperationKind::SyncData, "MODS.tmp", FaultKind::Io),
        (OperationKind::Rename, "MODS", FaultKind::NoSpace),
        (OperationKind::Remove, ".tsf", FaultKind::Io),
    ];
    for (operation, path, kind) in cases {
        let dir = temp_dir();
        let fault = Fault::first(operation, path, kind);
        let result = run(dir.path(), Scenario::FlushCompactDelete, Some(fault), true);
        assert!(
            result.fired,
            "{kind:?} on {operation:?} {path} never met an operation"
        );
    }
}

/// A fault while opening (reading MANIFEST or MODS, listing `sealed/`) fails the open with
/// a typed I/O error and changes nothing: the next open succeeds.
#[test]
fn a_fault_while_opening_fails_the_open_and_the_next_one_recovers() {
    let root = temp_dir();
    let region_dir = root.path().join("region");
    let mut model = Model::new();
    block_on(async {
        let region = Region::open(&region_dir, config(None)).unwrap();
        setup(&region, &mut model).await;
        delete(&region, &mut model, TimeRange::new(10, 20)).await;
        region.close(true).await.unwrap();
    });
    for (operation, path) in [
        (OperationKind::Read, "MANIFEST"),
        (OperationKind::Read, "MODS"),
        (OperationKind::List, "sealed"),
        (OperationKind::CreateDir, "sealed"),
    ] {
        let fs = FaultyFileSystem::new(&root.path().join("backup")).unwrap();
        fs.inject(Fault::first(operation, path, FaultKind::Io));
        block_on(async {
            match Region::open(&region_dir, config(Some(&fs))) {
                Ok(_) => panic!("{operation:?} {path} failed but the open succeeded"),
                Err(StorageError::Io { .. }) => {}
                Err(e) => panic!("{operation:?} {path}: {e:?} is not an I/O error"),
            }
        });
        assert_reopens_to_model(&region_dir, &model, "after a failed open");
    }
}

/// A deletion that arrives while a compaction runs is carried by its output, so the
/// compaction's metadata write puts the output's id in MODS before the manifest names it.
/// When that manifest write fails, MODS names an id no manifest has: the next open must
/// not hand that id to another file, or the stale deletion would hide points written
/// after it once MODS and that file's manifest are reopened together.
#[test]
fn a_failed_compaction_install_leaves_no_deletion_for_a_later_file() {
    let (_root, region_dir, fs) = fixture();
    let mut model = Model::new();
    let deleted = TimeRange::new(0, 150);
    block_on(async {
        let slow = RegionConfig {
            // About 200 ms per series: the deletion lands while the compaction runs.
            compaction_bytes_per_second: 16_000,
            ..config(Some(&fs))
        };
        let region = Region::open(&region_dir, slow).unwrap();
        setup(&region, &mut model).await;
        fs.inject(Fault::first(
            OperationKind::SyncData,
            "MANIFEST.tmp",
            FaultKind::Io,
        ));
        let compacting = region.clone();
        let compaction = monoio::spawn(async move { compacting.compact().await });
        monoio::time::sleep(Duration::from_millis(50)).await;
        delete(&region, &mut model, deleted).await;
        let result = compaction.await;
        step_result("the compaction", result);
        assert!(region.info().read_only.is_some(), "{:?}", region.info());
        region.close(false).await.unwrap();
    });
    fs.power_loss().unwrap();
    block_on(async {
        let region = Region::open(&region_dir, config(None)).unwrap();
        assert_matches_model(&region, &model, "reopened after the failed install");
        // Points in the deleted range, written after the deletion: they must stay.
        assert!(write(&region, &mut model, 0, 150).await);
        region.flush().await.unwrap();
        assert_matches_model(&region, &model, "after rewriting the deleted range");
        region.close(true).await.unwrap();
    });
    assert_reopens_to_model(&region_dir, &model, "reopened once more");
}

/// A clean close whose final flush fails still closes: background jobs stop and the WAL
/// is closed (no job writes into the directory after `close` returns), and the flush's
/// error is returned.
#[test]
fn a_close_whose_flush_fails_still_closes() {
    let (_root, region_dir, fs) = fixture();
    let mut model = Model::new();
    block_on(async {
        let region = Region::open(&region_dir, config(Some(&fs))).unwrap();
        setup(&region, &mut model).await;
        assert!(write(&region, &mut model, 200, 10).await);
        fs.inject(Fault::first(
            OperationKind::Create,
            ".tsf",
            FaultKind::NoSpace,
        ));
        let handle = region.clone();
        let closed = region.close(true).await;
        expect_read_only(
            "a close with a flush",
            &closed.expect_err("the flush failed"),
        );
        assert!(
            matches!(handle.write(&tablet(500, 1, 0)), Err(StorageError::Closed)),
            "the region was left open"
        );
    });
    assert_reopens_to_model(&region_dir, &model, "reopened after a failed clean close");
}
