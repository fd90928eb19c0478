//! Faults in every file operation of a single-replica SchemaRegion's journal
//! (`SchemaRegion::open_in` with the storage engine's `FaultyFileSystem`): its first open
//! (which writes a snapshot), series created one by one, a batch ended by one sync, a
//! checkpoint (the journal's compaction) and a creation after it.
//!
//! Each operation index gets a crash followed by a power loss, and one of ENOSPC, EIO and
//! a short write (rotating) followed by a process stop (`FILE_FAULT_KINDS=all`: every
//! kind, both ways; the runner is the ConfigNode journal test's). After each: the call that met the fault failed with
//! `SchemaError::Journal` (500 to clients) and the region refuses the next creation the
//! same way; reopened with `std::fs`, the region holds every acknowledged series (a
//! creation that returned `Ok` outside a batch; a batch whose `end_batch` returned `Ok`)
//! with its data type, and no series that was never handed to it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use iotdb_model::StatusCode;
use iotdb_storage::file_system::FileSystem;
use iotdb_storage::file_system::faulty::FaultyFileSystem;

use crate::confignode::journal_faults::fault_every_operation;

use super::{MeasurementSchema, SchemaError, SchemaRegion};
use crate::sql::DataType;

const DATABASE: &str = "root.sg";
const DEVICE: &str = "root.sg.d1";

/// What the scenario's caller saw: measurement names.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: BTreeSet<String>,
    /// Handed to the region without an acknowledgement: each may or may not survive.
    unsure: BTreeSet<String>,
    failed: bool,
}

fn schema() -> MeasurementSchema {
    MeasurementSchema::with_defaults(DataType::Int64)
}

fn create(region: &mut SchemaRegion, outcome: &mut Outcome, name: &str) -> super::Result<()> {
    outcome.unsure.insert(name.to_string());
    region.create_timeseries(DEVICE, name, schema())?;
    Ok(())
}

fn acknowledge(outcome: &mut Outcome) {
    outcome.acknowledged.append(&mut outcome.unsure);
}

fn steps(region: &mut SchemaRegion, outcome: &mut Outcome) -> super::Result<()> {
    for name in ["s0", "s1"] {
        create(region, outcome, name)?;
        acknowledge(outcome);
    }
    region.begin_batch();
    for name in ["s2", "s3"] {
        create(region, outcome, name)?;
    }
    region.end_batch()?;
    acknowledge(outcome);
    region.checkpoint()?;
    create(region, outcome, "s4")?;
    acknowledge(outcome);
    Ok(())
}

fn is_journal_error(error: &SchemaError) -> bool {
    matches!(error, SchemaError::Journal(_))
        && error.status_code() == StatusCode::INTERNAL_SERVER_ERROR
}

fn scenario(file_system: Arc<dyn FileSystem>, dir: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    let mut region = match SchemaRegion::open_in(file_system, dir, DATABASE) {
        Ok(region) => region,
        Err(error) => {
            assert!(is_journal_error(&error), "the open failed with {error:?}");
            outcome.failed = true;
            return outcome;
        }
    };
    if let Err(error) = steps(&mut region, &mut outcome) {
        assert!(is_journal_error(&error), "a step failed with {error:?}");
        outcome.failed = true;
        let refused = region.create_timeseries(DEVICE, "refused", schema());
        assert!(
            refused.as_ref().is_err_and(is_journal_error),
            "a failed region answered {refused:?}"
        );
        assert!(region.measurement(DEVICE, "refused").is_none());
        assert!(region.has_failed(), "a failed region does not say so");
    }
    outcome
}

/// Reopens `dir` with `std::fs` and checks it against `outcome`.
fn check_reopen(dir: &Path, outcome: &Outcome, when: &str) {
    let region = SchemaRegion::open(dir, DATABASE)
        .unwrap_or_else(|e| panic!("{when}: reopening failed: {e}"));
    for name in &outcome.acknowledged {
        assert_eq!(
            region.measurement(DEVICE, name).map(|s| s.data_type),
            Some(DataType::Int64),
            "{when}: acknowledged {name} is gone"
        );
    }
    let expected = outcome.acknowledged.len()..=outcome.acknowledged.len() + outcome.unsure.len();
    let count = region.series_count();
    assert!(expected.contains(&count), "{when}: {count} series");
    for name in ["s0", "s1", "s2", "s3", "s4", "refused"] {
        if region.measurement(DEVICE, name).is_some() {
            assert!(
                outcome.acknowledged.contains(name) || outcome.unsure.contains(name),
                "{when}: {name} was never handed over but exists"
            );
        }
    }
}

#[test]
fn a_fault_at_every_operation_of_a_schema_region_journal() {
    let counting = tempfile::tempdir().unwrap();
    let fs = FaultyFileSystem::new(&counting.path().join("backup")).unwrap();
    let dir = counting.path().join("schema");
    let outcome = scenario(Arc::new(fs.clone()), &dir);
    assert!(
        !outcome.failed && outcome.acknowledged.len() == 5,
        "{outcome:?}"
    );
    check_reopen(&dir, &outcome, "the counting run");
    let operations = fs.operations();
    assert!(operations.len() >= 30, "{operations:?}");

    fault_every_operation(
        "schema region journal",
        &operations,
        scenario,
        |outcome| outcome.failed,
        check_reopen,
    );
}
