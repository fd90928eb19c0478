//! Faults in every file operation of the journal (the ConfigNode's command store and each
//! single-replica SchemaRegion's), injected through `Journal::open_in` with the storage
//! engine's `FaultyFileSystem`.
//!
//! A scenario opens a fresh journal, appends records one by one (each synced) and as two
//! group-committed batches (the second written ahead of its sync, as the control plane
//! writes every journal a batch changed before syncing any), writes a snapshot (the compaction: a new snapshot file, then a
//! fresh log) and appends again. A counting run records every operation; then each index
//! gets one fault: a crash followed by a power loss (every file cut to its last
//! fdatasync, every create, rename and remove not followed by a directory fsync undone),
//! and one of ENOSPC, EIO and a short write (rotating) followed by a process stop. After
//! each:
//!
//! - the step that met the fault failed with `JournalError::Io`, and the next append is
//!   refused with `Failed`: nothing is acknowledged after a failure;
//! - the directory reopened with `std::fs` holds every acknowledged record (an append that
//!   returned `Ok` outside a batch; a batch whose `sync` returned `Ok`) in order, followed
//!   by at most a prefix of the records whose outcome was an error, and nothing else;
//! - the reopened journal appends at the next index and reopens again to the same records.
//!
//! A second test faults every operation of an open that finds a torn tail (recovery
//! truncates it): the open fails with `Io` or recovers, and a later open recovers the same.
//! `FILE_FAULT_KINDS=all` runs every kind at every index, each both ways.

use std::path::Path;
use std::sync::Arc;

use iotdb_storage::file_system::FileSystem;
use iotdb_storage::file_system::faulty::{
    FaultyFileSystem, OperationKind, fault_cases, run_fault_cases,
};

use super::journal::{Journal, JournalError};

const NAME: &str = "faults";

type Opened = (Journal, super::journal::Recovered<Vec<u32>, u32>);

fn open_in(file_system: Arc<dyn FileSystem>, dir: &Path) -> Result<Opened, JournalError> {
    Journal::open_in(file_system, dir, NAME)
}

/// What the scenario's caller saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Records acknowledged, in order.
    acknowledged: Vec<u32>,
    /// Records handed to the journal whose outcome was not (yet) an acknowledgement, in
    /// order: each may or may not survive.
    unsure: Vec<u32>,
    /// Whether a call failed.
    failed: bool,
}

/// Runs the scenario through `file_system`; stops at the first failure, which must be
/// an I/O error, after checking that the failed journal refuses the next append.
fn scenario(file_system: Arc<dyn FileSystem>, dir: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    let mut journal = match open_in(file_system, dir) {
        Ok((journal, recovered)) => {
            assert!(recovered.snapshot.is_none() && recovered.records.is_empty());
            journal
        }
        Err(JournalError::Io { .. }) => {
            outcome.failed = true;
            return outcome;
        }
        Err(other) => panic!("the first open failed with {other:?}"),
    };
    match steps(&mut journal, &mut outcome) {
        Ok(()) => {}
        Err(JournalError::Io { .. }) => {
            outcome.failed = true;
            let refused = journal.append(&99);
            assert!(
                matches!(refused, Err(JournalError::Failed(_))),
                "a failed journal answered {refused:?}"
            );
        }
        Err(other) => panic!("a step failed with {other:?}, not an I/O error"),
    }
    outcome
}

/// The scenario's steps on an open journal, recording what was acknowledged.
fn steps(journal: &mut Journal, outcome: &mut Outcome) -> Result<(), JournalError> {
    // Synced appends, acknowledged one by one.
    for record in [1, 2] {
        outcome.unsure.push(record);
        journal.append(&record)?;
        outcome.acknowledged.append(&mut outcome.unsure);
    }
    // A group commit: acknowledged together once the batch's sync returns.
    journal.defer_sync();
    for record in [3, 4, 5] {
        outcome.unsure.push(record);
        journal.append(&record)?;
    }
    journal.sync()?;
    outcome.acknowledged.append(&mut outcome.unsure);
    // A batch written ahead of its sync: still acknowledged only once the sync returns.
    journal.defer_sync();
    for record in [6, 7] {
        outcome.unsure.push(record);
        journal.append(&record)?;
    }
    journal.write_deferred()?;
    journal.sync()?;
    outcome.acknowledged.append(&mut outcome.unsure);
    // The compaction: everything so far becomes the snapshot.
    journal.write_snapshot(&outcome.acknowledged)?;
    for record in [8, 9] {
        outcome.unsure.push(record);
        journal.append(&record)?;
        outcome.acknowledged.append(&mut outcome.unsure);
    }
    Ok(())
}

/// The snapshot's records followed by the log's.
fn contents(recovered: super::journal::Recovered<Vec<u32>, u32>) -> Vec<u32> {
    let mut records = recovered.snapshot.unwrap_or_default();
    records.extend(recovered.records);
    records
}

/// Reopens `dir` with `std::fs` and checks it against `outcome` (the module doc), then
/// appends one more record and checks a second reopen.
fn check_reopen(dir: &Path, outcome: &Outcome, when: &str) {
    let (mut journal, recovered) = Journal::open::<Vec<u32>, u32>(dir, NAME)
        .unwrap_or_else(|e| panic!("{when}: reopening failed: {e}"));
    let records = contents(recovered);
    let acknowledged = &outcome.acknowledged;
    assert!(
        records.starts_with(acknowledged),
        "{when}: acknowledged {acknowledged:?}, recovered {records:?}"
    );
    let rest = &records[acknowledged.len()..];
    assert!(
        outcome.unsure.starts_with(rest),
        "{when}: recovered {rest:?} after the acknowledged records, unsure were {:?}",
        outcome.unsure
    );
    journal
        .append(&100)
        .unwrap_or_else(|e| panic!("{when}: an append after reopening failed: {e}"));
    drop(journal);
    let (_, recovered) = Journal::open::<Vec<u32>, u32>(dir, NAME)
        .unwrap_or_else(|e| panic!("{when}: the second reopen failed: {e}"));
    let mut expected = records;
    expected.push(100);
    assert_eq!(contents(recovered), expected, "{when}: the second reopen");
}

fn faulty(root: &Path) -> FaultyFileSystem {
    FaultyFileSystem::new(&root.join("backup")).unwrap()
}

#[test]
fn a_fault_at_every_operation_of_appends_a_batch_and_a_snapshot() {
    let counting = tempfile::tempdir().unwrap();
    let fs = faulty(counting.path());
    let dir = counting.path().join("journal");
    let outcome = scenario(Arc::new(fs.clone()), &dir);
    assert!(!outcome.failed);
    assert_eq!(outcome.acknowledged, (1..=9).collect::<Vec<_>>());
    check_reopen(&dir, &outcome, "the counting run");
    let operations = fs.operations();
    // Open (directory, log creation, read, open, sync), four appends, two batches (each a
    // write and a sync), a snapshot and a fresh log (each create, write, sync, rename,
    // directory sync).
    assert!(operations.len() >= 30, "{operations:?}");

    fault_every_operation(
        "journal",
        &operations,
        scenario,
        |outcome| outcome.failed,
        check_reopen,
    );
}

/// Runs `scenario` in a fresh directory once per fault case over `operations` (the
/// counting run's): the fault must fail the scenario (`failed`), and after the power loss
/// or process stop, `check` must accept the directory and the scenario's outcome. Shared
/// with the SchemaRegion's journal test.
pub(crate) fn fault_every_operation<O>(
    label: &str,
    operations: &[(OperationKind, std::path::PathBuf)],
    scenario: impl Fn(Arc<dyn FileSystem>, &Path) -> O,
    failed: impl Fn(&O) -> bool,
    check: impl Fn(&Path, &O, &str),
) {
    let cases = fault_cases(operations.len(), true);
    let fired = run_fault_cases(label, operations, &cases, |fault, power_loss, when| {
        let root = tempfile::tempdir().unwrap();
        let fs = faulty(root.path());
        let dir = root.path().join("state");
        fs.inject(fault);
        let outcome = scenario(Arc::new(fs.clone()), &dir);
        assert!(failed(&outcome), "{when}: the fault was swallowed");
        if power_loss {
            fs.power_loss().unwrap();
        }
        check(&dir, &outcome, when);
        !fs.fired().is_empty()
    });
    // One thread, no timing: every armed fault meets its operation.
    assert_eq!(fired, cases.len());
}

#[test]
fn a_fault_at_every_operation_of_recovering_a_torn_tail() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    let (mut journal, _) = Journal::open::<Vec<u32>, u32>(&dir, NAME).unwrap();
    for record in [1, 2, 3] {
        journal.append(&record).unwrap();
    }
    drop(journal);
    // Half of a fourth record, as a crash mid-append leaves it.
    let log = dir.join(format!("{NAME}.log"));
    let mut bytes = std::fs::read(&log).unwrap();
    let whole = bytes.len();
    let (mut journal, _) = Journal::open::<Vec<u32>, u32>(&dir, NAME).unwrap();
    journal.append(&4).unwrap();
    drop(journal);
    let fourth = std::fs::read(&log).unwrap()[whole..].to_vec();
    bytes.extend_from_slice(&fourth[..fourth.len() / 2]);
    let torn = root.path().join("torn");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join(format!("{NAME}.log")), &bytes).unwrap();

    let counting = faulty(&root.path().join("counting"));
    let counted = root.path().join("counted");
    copy_files(&torn, &counted);
    let (_, recovered) = open_in(Arc::new(counting.clone()), &counted).unwrap();
    assert_eq!(contents(recovered), vec![1, 2, 3]);
    let operations = counting.operations();
    assert!(
        operations
            .iter()
            .any(|(kind, _)| *kind == OperationKind::Truncate),
        "{operations:?}"
    );
    let acknowledged = Outcome {
        acknowledged: vec![1, 2, 3],
        ..Outcome::default()
    };
    let cases = fault_cases(operations.len(), true);
    run_fault_cases(
        "journal recovery",
        &operations,
        &cases,
        |fault, power_loss, when| {
            let root = tempfile::tempdir().unwrap();
            let case = root.path().join("journal");
            copy_files(&torn, &case);
            let fs = faulty(root.path());
            fs.inject(fault);
            match open_in(Arc::new(fs.clone()), &case) {
                Ok((_, recovered)) => assert_eq!(contents(recovered), vec![1, 2, 3], "{when}"),
                Err(JournalError::Io { .. }) => {}
                Err(other) => panic!("{when}: the open failed with {other:?}"),
            }
            if power_loss {
                fs.power_loss().unwrap();
            }
            check_reopen(&case, &acknowledged, when);
            !fs.fired().is_empty()
        },
    );
}

fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
