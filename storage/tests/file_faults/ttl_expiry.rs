//! Faults while TTL expiry drops wholly expired time partitions: its metadata job (a
//! MANIFEST without the partitions' files, MODS when they carried deletions) and the
//! removal of their sealed files, all through the region's `FileSystem`.
//!
//! Three partitions are flushed (one with a deletion), one more point batch stays in the
//! WAL only; then a TTL makes the first two partitions expire. A counting run records
//! every file operation from setting the TTL until the expired files are gone; then each
//! index gets one fault (as in the other scenarios). After each:
//!
//! - a fault on anything but the removal of an expired file turns the region read-only
//!   and the next write is refused with `ReadOnly`;
//! - the live region, and the directory reopened with `std::fs` (after a power loss or a
//!   process stop) under the same TTL and clock, read exactly the unexpired points:
//!   expiry never takes a point of a partition that has not expired, and a point it hid
//!   never comes back into view;
//! - the reopened region takes writes and flushes, and reads the model again after a
//!   second reopen.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use iotdb_storage::file_system::faulty::{
    Fault, FaultyFileSystem, OperationKind, fault_cases, run_fault_cases,
};
use iotdb_storage::region::Clock;
use iotdb_storage::{Region, RegionConfig, TimeRange};

use super::{
    Model, WAIT_MAX, assert_matches_model, block_on, config, delete, expect_read_only, tablet,
    temp_dir, write, write_generation,
};

/// Each partition holds 100 ms of points.
const PARTITION_MS: i64 = 100;
/// The injected clock's time.
const NOW_MS: i64 = 1_000;
/// Points older than `NOW_MS - TTL_MS` (partitions 0 and 1) expire.
const TTL_MS: i64 = NOW_MS - 2 * PARTITION_MS;

fn clock() -> Clock {
    Rc::new(|| NOW_MS)
}

fn ttl_config(file_system: Option<&FaultyFileSystem>, ttl_ms: Option<i64>) -> RegionConfig {
    RegionConfig {
        time_partition_interval_ms: PARTITION_MS,
        ttl_ms,
        ..config(file_system)
    }
}

/// The points a read may show under the TTL.
fn unexpired(model: &Model) -> Model {
    let cutoff = NOW_MS - TTL_MS;
    model
        .iter()
        .filter(|&(&(_, t), _)| t >= cutoff)
        .map(|(&key, &value)| (key, value))
        .collect()
}

fn sealed_files_on_disk(region_dir: &Path) -> usize {
    std::fs::read_dir(region_dir.join("sealed")).map_or(0, |entries| entries.count())
}

/// Runs the expiry with `fault` armed; returns its operations and whether it fired.
fn run(
    root: &Path,
    fault: Option<Fault>,
    power_loss: bool,
    expected_operations: Option<usize>,
) -> (Vec<(OperationKind, std::path::PathBuf)>, bool) {
    let region_dir = root.join("region");
    let fs = FaultyFileSystem::new(&root.join("backup")).unwrap();
    let mut model = Model::new();
    let (operations, fired) = block_on(async {
        let region =
            Region::open_with_clock(&region_dir, ttl_config(Some(&fs), None), clock()).unwrap();
        for partition in 0..3 {
            assert!(write(&region, &mut model, partition * PARTITION_MS, 50).await);
        }
        delete(&region, &mut model, TimeRange::new(10, 20)).await;
        region.flush().await.unwrap();
        assert_eq!(region.info().sealed_files, 3);
        // Only the WAL holds these, in the partition that stays.
        assert!(write_generation(&region, &mut model, 240, 20, 1).await);

        let base = fs.operation_count();
        if let Some(fault) = fault.clone() {
            fs.inject(fault);
        }
        region.set_ttl(Some(TTL_MS));
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let done = match expected_operations {
                // The counting run: until the expired files are gone from the disk.
                None => sealed_files_on_disk(&region_dir) == 1,
                // A faulted run: until the region turned read-only, or every operation
                // ran and any fault that fired was on a removal (which only logs).
                Some(count) => {
                    let fired_on_removal_or_none = fs
                        .fired()
                        .iter()
                        .all(|&(index, _)| fs.operations()[index].0 == OperationKind::Remove);
                    region.info().read_only.is_some()
                        || (fs.operation_count() - base >= count && fired_on_removal_or_none)
                }
            };
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the expiry did not finish: {:?}",
                region.info()
            );
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        // The expiry's jobs run on other threads: an operation is counted a moment before
        // its fault is recorded, and the region turns read-only a moment after the job
        // saw the error. Let both land before looking.
        monoio::time::sleep(Duration::from_millis(20)).await;
        let operations = fs.operations().split_off(base);
        let fired = fs.fired();
        let fired_on = fired.first().map(|&(index, _)| fs.operations()[index].0);
        if let Some(kind) = fired_on
            && kind != OperationKind::Remove
        {
            while region.info().read_only.is_none() {
                assert!(
                    Instant::now() < deadline,
                    "{kind:?} failed, and the region takes writes"
                );
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            let refused = region.write(&tablet(NOW_MS, 1, 0)).map(|_| ());
            expect_read_only("a write after the fault", &refused.unwrap_err());
        }
        assert_matches_model(&region, &unexpired(&model), "the live region");
        region.close(false).await.unwrap();
        (operations, fired_on.is_some())
    });
    if power_loss {
        fs.power_loss().unwrap();
    }
    let reopen = |model: &Model, when: &str| {
        block_on(async {
            let region =
                Region::open_with_clock(&region_dir, ttl_config(None, Some(TTL_MS)), clock())
                    .unwrap_or_else(|e| panic!("{when}: reopening after {fault:?} failed: {e}"));
            assert_matches_model(&region, &unexpired(model), when);
            region
        })
    };
    let region = reopen(&model, "the reopened region");
    block_on(async {
        assert!(write_generation(&region, &mut model, 200, 100, 2).await);
        region.flush().await.unwrap();
        assert_matches_model(&region, &unexpired(&model), "after more writes");
        region.close(true).await.unwrap();
    });
    let region = reopen(&model, "the region reopened a second time");
    block_on(async { region.close(false).await.unwrap() });
    (operations, fired)
}

#[test]
fn a_fault_at_every_operation_of_a_ttl_expiry() {
    let counting = temp_dir();
    let (operations, fired) = run(counting.path(), None, true, None);
    assert!(!fired);
    // MANIFEST.tmp (create, write, fdatasync), rename, directory fsync, MODS likewise,
    // and the removal of two expired files.
    assert!(operations.len() >= 10, "{operations:?}");
    let cases = fault_cases(operations.len(), true);
    let fired = run_fault_cases("TTL expiry", &operations, &cases, |fault, power_loss, _| {
        let dir = temp_dir();
        run(dir.path(), Some(fault), power_loss, Some(operations.len())).1
    });
    assert!(
        fired * 10 >= cases.len() * 9,
        "{fired} of {} fired",
        cases.len()
    );
}
