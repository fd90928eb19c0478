//! SchemaRegion tests: creation rules, the all-or-nothing auto-create
//! path, pattern queries, deletes, and persistence against a model.

use super::*;
use crate::sql::{DataType, PathNode, PathPattern};
use iotdb_model::StatusCode;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn pattern(text: &str) -> PathPattern {
    PathPattern::new(
        text.split('.')
            .map(|node| match node {
                "*" => PathNode::OneLevel,
                "**" => PathNode::MultiLevel,
                name => PathNode::Name(name.to_string()),
            })
            .collect(),
    )
}

#[test]
fn auto_create_is_all_or_nothing_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let mut region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
    let mut types = Vec::new();
    let created = region
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s1", "s2"],
            &[DataType::Double, DataType::Int64],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap();
    assert_eq!(
        (created, types.as_slice()),
        (2, &[DataType::Double, DataType::Int64][..])
    );
    let schema = region.measurement("root.sg.d1", "s1").unwrap();
    assert_eq!(schema, MeasurementSchema::with_defaults(DataType::Double));
    assert_eq!(schema.encoding, crate::sql::Encoding::Gorilla);

    // s3 is new but s2 mismatches: nothing is created, the error names s2.
    let error = region
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s3", "s2"],
            &[DataType::Boolean, DataType::Double],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::DATA_TYPE_MISMATCH);
    assert!(error.to_string().contains("root.sg.d1.s2"));
    assert!(region.measurement("root.sg.d1", "s3").is_none());
    assert!(types.is_empty());

    // SQL inserts take the registered type instead.
    let created = region
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s2", "s3"],
            &[DataType::Double, DataType::Boolean],
            TypeConflict::UseExisting,
            &mut types,
        )
        .unwrap();
    assert_eq!(created, 1);
    assert_eq!(types, vec![DataType::Int64, DataType::Boolean]);

    // Aligned mismatch, duplicates and bad names are refused.
    let error = region
        .get_or_create_measurements(
            "root.sg.d1",
            true,
            &["s1"],
            &[DataType::Double],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap_err();
    assert!(matches!(error, SchemaError::AlignedMismatch { .. }));
    let error = region
        .get_or_create_measurements(
            "root.sg.d2",
            false,
            &["a", "a"],
            &[DataType::Double, DataType::Double],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap_err();
    assert!(matches!(error, SchemaError::InvalidRequest(_)));
    let error = region
        .get_or_create_measurements(
            "root.sg.d2",
            false,
            &["a.b"],
            &[DataType::Double],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::ILLEGAL_PATH);
    let error = region
        .get_or_create_measurements(
            "root.sg.d2",
            false,
            &["a"],
            &[],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap_err();
    assert!(matches!(error, SchemaError::InvalidRequest(_)));
    assert_eq!(region.device_count(), 1);
    assert_eq!(region.series_count(), 3);
}

#[test]
fn snapshots_grow_with_the_region_so_creating_devices_stays_linear() {
    let dir = tempfile::tempdir().unwrap();
    let mut region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
    const DEVICES: usize = 60_000;
    let mut types = Vec::new();
    for batch in 0..DEVICES / 1000 {
        region.begin_batch();
        for device in batch * 1000..(batch + 1) * 1000 {
            region
                .get_or_create_measurements(
                    &format!("root.sg.d{device}"),
                    false,
                    &["s"],
                    &[DataType::Double],
                    TypeConflict::Reject,
                    &mut types,
                )
                .unwrap();
        }
        region.end_batch().unwrap();
    }
    // One snapshot at open, then one each time the log grew to the region's size (in
    // records, at least LOG_RECORDS_PER_SNAPSHOT, or in bytes): the region grows by half
    // or more between two, so their count is logarithmic in the devices (6 here). A fixed
    // count of 4096 records wrote 15, each rewriting every device so far.
    let written = region.snapshots_written();
    assert!(written <= 7, "{written} snapshots for {DEVICES} devices");
    assert_eq!(region.records_per_snapshot(), DEVICES as u64);
    drop(region);
    let region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
    assert_eq!(region.series_count(), DEVICES);
    assert_eq!(
        region.measurement("root.sg.d59999", "s"),
        Some(MeasurementSchema::with_defaults(DataType::Double))
    );
}

#[test]
fn hot_path_hit_keeps_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let mut region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
    let names: Vec<String> = (0..10).map(|index| format!("s{index}")).collect();
    let types = vec![DataType::Double; 10];
    let mut resolved = Vec::with_capacity(16);
    region
        .get_or_create_measurements(
            "root.sg.d1",
            true,
            &names,
            &types,
            TypeConflict::Reject,
            &mut resolved,
        )
        .unwrap();
    let buffer = resolved.as_ptr();
    let created = region
        .get_or_create_measurements(
            "root.sg.d1",
            true,
            &names,
            &types,
            TypeConflict::Reject,
            &mut resolved,
        )
        .unwrap();
    assert_eq!(created, 0);
    assert_eq!(resolved, types);
    // The reused buffer was neither grown nor replaced.
    assert_eq!(resolved.as_ptr(), buffer);
}

#[test]
fn create_show_count_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
    let double = MeasurementSchema::with_defaults(DataType::Double);
    assert!(
        region
            .create_timeseries("root.sg.d1", "s1", double)
            .unwrap()
    );
    assert!(
        !region
            .create_timeseries("root.sg.d1", "s1", double)
            .unwrap()
    );
    let error = region
        .create_timeseries(
            "root.sg.d1",
            "s1",
            MeasurementSchema::with_defaults(DataType::Int32),
        )
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::DATA_TYPE_MISMATCH);
    let mut plain = double;
    plain.encoding = crate::sql::Encoding::Plain;
    let error = region
        .create_timeseries("root.sg.d1", "s1", plain)
        .unwrap_err();
    assert_eq!(error.status_code(), StatusCode::TIMESERIES_ALREADY_EXIST);
    let mut bad = MeasurementSchema::with_defaults(DataType::Text);
    bad.encoding = crate::sql::Encoding::Gorilla;
    assert!(matches!(
        region.create_timeseries("root.sg.d9", "t", bad),
        Err(SchemaError::InvalidRequest(_))
    ));

    let created = region
        .create_aligned_timeseries(
            "root.sg.a.d2",
            &[
                ("x", MeasurementSchema::with_defaults(DataType::Int64)),
                ("y", double),
            ],
        )
        .unwrap();
    assert_eq!(created, 2);
    assert!(matches!(
        region.create_timeseries("root.sg.a.d2", "z", double),
        Err(SchemaError::AlignedMismatch { .. })
    ));

    let all = region.timeseries(&pattern("root.**"));
    let paths: Vec<&str> = all.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["root.sg.a.d2.x", "root.sg.a.d2.y", "root.sg.d1.s1"]
    );
    assert!(all[0].aligned && !all[2].aligned);
    assert_eq!(region.count_timeseries(&pattern("root.sg.*.s1")), 1);
    assert_eq!(region.count_timeseries(&pattern("root.**.y")), 1);
    assert_eq!(region.count_devices(&pattern("root.sg.**")), 2);
    let devices = region.devices(&pattern("root.sg.*"));
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].device.as_str(), devices[0].measurement_count),
        ("root.sg.d1", 1)
    );

    let deleted = region
        .delete_timeseries(&[pattern("root.sg.a.d2.*")])
        .unwrap();
    assert_eq!(deleted, vec!["root.sg.a.d2.x", "root.sg.a.d2.y"]);
    assert_eq!(region.device_count(), 1);
    assert!(
        region
            .delete_timeseries(&[pattern("root.nothing")])
            .unwrap()
            .is_empty()
    );
    // The device is gone, so it may come back non-aligned.
    assert!(
        region
            .create_timeseries("root.sg.a.d2", "z", double)
            .unwrap()
    );

    drop(region);
    let region = SchemaRegion::open(dir.path(), "root.sg").unwrap();
    assert_eq!(region.series_count(), 2);
    assert_eq!(region.device_aligned("root.sg.a.d2"), Some(false));
    drop(region);
    assert!(matches!(
        SchemaRegion::open(dir.path(), "root.other"),
        Err(SchemaError::Corrupt(_))
    ));
}

#[derive(Debug, Clone)]
enum Operation {
    Create {
        device: u8,
        measurement: u8,
        data_type: u8,
        aligned: bool,
    },
    Delete {
        device: Option<u8>,
        measurement: u8,
    },
    Checkpoint,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (0u8..4, 0u8..5, 0u8..3, any::<bool>()).prop_map(|(device, measurement, data_type, aligned)| {
            Operation::Create { device, measurement, data_type, aligned }
        }),
        2 => (proptest::option::of(0u8..4), 0u8..5).prop_map(|(device, measurement)| Operation::Delete { device, measurement }),
        1 => Just(Operation::Checkpoint),
    ]
}

const TYPES: [DataType; 3] = [DataType::Double, DataType::Int64, DataType::Text];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random creates and deletes agree with a simple model, and the
    /// schema read back after a restart is the same.
    #[test]
    fn matches_model_and_survives_restart(operations in proptest::collection::vec(operation(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut region = SchemaRegion::open(dir.path(), "root.m").unwrap();
        // device → (aligned, measurement → type)
        let mut model: BTreeMap<String, (bool, BTreeMap<String, DataType>)> = BTreeMap::new();
        let mut resolved = Vec::new();
        for operation in &operations {
            match *operation {
                Operation::Create { device, measurement, data_type, aligned } => {
                    let device = format!("root.m.d{device}");
                    let name = format!("s{measurement}");
                    let data_type = TYPES[usize::from(data_type)];
                    let result = region.get_or_create_measurements(
                        &device, aligned, &[name.as_str()], &[data_type], TypeConflict::Reject, &mut resolved);
                    let expected_ok = match model.get(&device) {
                        Some((existing_aligned, _)) if *existing_aligned != aligned => false,
                        Some((_, measurements)) => measurements.get(&name).is_none_or(|t| *t == data_type),
                        None => true,
                    };
                    prop_assert_eq!(result.is_ok(), expected_ok, "{:?}", result);
                    if expected_ok {
                        let entry = model.entry(device).or_insert((aligned, BTreeMap::new()));
                        entry.1.insert(name, data_type);
                    }
                }
                Operation::Delete { device, measurement } => {
                    let device_pattern = device.map_or("*".to_string(), |d| format!("d{d}"));
                    let text = format!("root.m.{device_pattern}.s{measurement}");
                    region.delete_timeseries(&[pattern(&text)]).unwrap();
                    for (path, (_, measurements)) in model.iter_mut() {
                        if device.is_none_or(|d| *path == format!("root.m.d{d}")) {
                            measurements.remove(&format!("s{measurement}"));
                        }
                    }
                    model.retain(|_, (_, measurements)| !measurements.is_empty());
                }
                Operation::Checkpoint => region.checkpoint().unwrap(),
            }
        }
        let listing = |region: &SchemaRegion| -> Vec<(String, DataType, bool)> {
            region.timeseries(&pattern("root.**")).into_iter()
                .map(|entry| (entry.path, entry.schema.data_type, entry.aligned)).collect()
        };
        let expected: Vec<(String, DataType, bool)> = model.iter()
            .flat_map(|(device, (aligned, measurements))| measurements.iter()
                .map(move |(name, data_type)| (format!("{device}.{name}"), *data_type, *aligned)))
            .collect();
        // Both sides are sorted by path: the model by its BTreeMaps.
        let actual = listing(&region);
        prop_assert_eq!(&actual, &expected);
        prop_assert_eq!(region.series_count(), expected.len());
        drop(region);
        let reopened = SchemaRegion::open(dir.path(), "root.m").unwrap();
        let after = listing(&reopened);
        prop_assert_eq!(after, expected);
    }
}

#[test]
fn encodings_follow_iotdbs_type_table() {
    use super::region::supports;
    use crate::sql::Encoding as E;
    // The examples, then one row per type of IoTDB's table.
    assert!(!supports(DataType::Boolean, E::Ts2Diff));
    assert!(!supports(DataType::Double, E::Regular));
    assert!(!supports(DataType::Text, E::Ts2Diff));
    let accepted =
        |t: DataType| -> Vec<E> { E::ALL.iter().copied().filter(|e| supports(t, *e)).collect() };
    assert_eq!(accepted(DataType::Boolean), [E::Plain, E::Rle]);
    let ints = [
        E::Plain,
        E::Rle,
        E::Ts2Diff,
        E::Gorilla,
        E::Zigzag,
        E::Chimp,
        E::Sprintz,
        E::Rlbe,
    ];
    for t in [
        DataType::Int32,
        DataType::Int64,
        DataType::Timestamp,
        DataType::Date,
    ] {
        assert_eq!(accepted(t), ints);
    }
    let floats = [
        E::Plain,
        E::Rle,
        E::Ts2Diff,
        E::GorillaV1,
        E::Gorilla,
        E::Chimp,
        E::Sprintz,
        E::Rlbe,
    ];
    assert_eq!(accepted(DataType::Float), floats);
    assert_eq!(accepted(DataType::Double), floats);
    assert_eq!(accepted(DataType::Text), [E::Plain, E::Dictionary]);
    assert_eq!(accepted(DataType::String), [E::Plain, E::Dictionary]);
    assert_eq!(accepted(DataType::Blob), [E::Plain]);
    // The default encoding of every type is accepted.
    for t in DataType::ALL {
        assert!(supports(*t, super::region::default_encoding(*t)), "{t}");
    }
}

/// The replicated log of the tests: every replica appends to one shared list of
/// committed entries (a Raft group that commits at once) and reads it from its own cursor.
#[derive(Default)]
struct SharedLog {
    entries: Vec<Vec<u8>>,
    /// The latest compaction: (index, snapshot).
    snapshot: Option<(u64, Vec<u8>)>,
}

struct FakeLog {
    shared: std::sync::Arc<std::sync::Mutex<SharedLog>>,
    /// Entries handed out so far.
    cursor: usize,
}

impl ReplicatedLog for FakeLog {
    fn propose(&mut self, command: Vec<u8>) -> Result<u64> {
        let mut shared = self.shared.lock().unwrap();
        shared.entries.push(command);
        Ok(shared.entries.len() as u64)
    }

    fn take_committed(&mut self) -> Vec<iotdb_consensus::raft_group::Committed> {
        let shared = self.shared.lock().unwrap();
        let taken = shared.entries[self.cursor..]
            .iter()
            .enumerate()
            .map(
                |(offset, data)| iotdb_consensus::raft_group::Committed::Normal {
                    index: (self.cursor + offset + 1) as u64,
                    term: 1,
                    data: bytes::Bytes::from(data.clone()),
                },
            )
            .collect();
        self.cursor = shared.entries.len();
        taken
    }

    fn compact(&mut self, index: u64, snapshot: Vec<u8>) -> Result<()> {
        self.shared.lock().unwrap().snapshot = Some((index, snapshot));
        Ok(())
    }

    fn take_compact_request(&mut self) -> bool {
        false
    }
}

fn replica(
    shared: &std::sync::Arc<std::sync::Mutex<SharedLog>>,
    from_snapshot: bool,
) -> SchemaRegion {
    let snapshot = if from_snapshot {
        shared.lock().unwrap().snapshot.clone()
    } else {
        None
    };
    let log = FakeLog {
        shared: shared.clone(),
        cursor: snapshot.as_ref().map_or(0, |(index, _)| *index as usize),
    };
    SchemaRegion::open_replicated(
        "root.sg",
        Box::new(log),
        snapshot
            .as_ref()
            .map(|(index, data)| (*index, data.as_slice())),
    )
    .unwrap()
}

fn contents(region: &SchemaRegion) -> Vec<(String, DataType, bool)> {
    region
        .timeseries(&pattern("root.**"))
        .into_iter()
        .map(|entry| (entry.path, entry.schema.data_type, entry.aligned))
        .collect()
}

/// Two replicas that plan against states of different ages (two leaders in turn) agree
/// on what the log made of their changes: the first committed wins, the later planner
/// is refused exactly as it would have been had it known (or, with `UseExisting`, told
/// the registered type), and every replica applies the same state.
#[test]
fn replicated_regions_converge_and_refuse_what_an_earlier_entry_contradicts() {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(SharedLog::default()));
    let mut first = replica(&shared, false);
    let mut second = replica(&shared, false);
    let mut types = Vec::new();
    assert!(first.is_replicated());
    first
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s1", "s2"],
            &[DataType::Int64, DataType::Int64],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap();
    assert_eq!(first.applied_index(), 1);
    // `second` plans without having caught up: s2 looks new to it.
    let error = second
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s2"],
            &[DataType::Double],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap_err();
    assert_eq!(
        error.status_code(),
        StatusCode::DATA_TYPE_MISMATCH,
        "{error}"
    );
    assert!(types.is_empty());
    // With UseExisting a stale planner is told the registered type.
    let mut third = replica(&shared, false);
    let created = third
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s2", "s3"],
            &[DataType::Double, DataType::Boolean],
            TypeConflict::Reject,
            &mut types,
        )
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        created.status_code(),
        StatusCode::DATA_TYPE_MISMATCH,
        "{created}"
    );
    let mut fourth = replica(&shared, false);
    fourth
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s2", "s4"],
            &[DataType::Double, DataType::Float],
            TypeConflict::UseExisting,
            &mut types,
        )
        .unwrap();
    assert_eq!(types, vec![DataType::Int64, DataType::Float]);
    // An aligned device planned as non-aligned by a stale replica.
    first
        .create_aligned_timeseries(
            "root.sg.d2",
            &[("a", MeasurementSchema::with_defaults(DataType::Int32))],
        )
        .unwrap();
    let error = second
        .create_timeseries(
            "root.sg.d2",
            "b",
            MeasurementSchema::with_defaults(DataType::Int32),
        )
        .unwrap_err();
    assert!(
        matches!(error, SchemaError::AlignedMismatch { aligned: true, .. }),
        "{error}"
    );
    // Deletions replicate too.
    assert_eq!(
        second
            .delete_timeseries(&[pattern("root.sg.d1.s1")])
            .unwrap(),
        vec!["root.sg.d1.s1".to_string()]
    );
    for region in [&mut first, &mut second, &mut third, &mut fourth] {
        region.catch_up().unwrap();
    }
    let expected = vec![
        ("root.sg.d1.s2".to_string(), DataType::Int64, false),
        ("root.sg.d1.s4".to_string(), DataType::Float, false),
        ("root.sg.d2.a".to_string(), DataType::Int32, true),
    ];
    for region in [&first, &second, &third, &fourth] {
        assert_eq!(contents(region), expected);
        assert_eq!(region.series_count(), 3);
    }

    // A replica restored from a compaction's snapshot, then the entries after it, ends
    // in the same state.
    first.checkpoint().unwrap();
    let at = first.applied_index();
    assert_eq!(shared.lock().unwrap().snapshot.as_ref().unwrap().0, at);
    first
        .get_or_create_measurements(
            "root.sg.d3",
            false,
            &["x"],
            &[DataType::Text],
            TypeConflict::Reject,
            &mut types,
        )
        .unwrap();
    let mut restored = replica(&shared, true);
    restored.catch_up().unwrap();
    assert_eq!(restored.applied_index(), first.applied_index());
    assert_eq!(contents(&restored), contents(&first));
    assert_eq!(contents(&restored).len(), 4);
}

/// A region exported in small parts and imported part by part into a fresh one holds the
/// same series (aligned flags and schemas included), also after a reopen; a frozen region
/// refuses every change with a retryable 606 and changes nothing, answers reads, and takes
/// changes again once thawed.
#[test]
fn a_region_copied_in_parts_is_the_same_and_a_frozen_one_takes_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut region = SchemaRegion::open(&dir.path().join("source"), "root.sg").unwrap();
    let double = MeasurementSchema::with_defaults(DataType::Double);
    for device in 0..50 {
        let measurements: Vec<(String, MeasurementSchema)> =
            (0..4).map(|m| (format!("s{m}"), double)).collect();
        let named: Vec<(&str, MeasurementSchema)> =
            measurements.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        if device % 2 == 0 {
            region
                .create_aligned_timeseries(&format!("root.sg.a{device}"), &named)
                .unwrap();
        } else {
            for (name, schema) in named {
                region
                    .create_timeseries(&format!("root.sg.d{device}"), name, schema)
                    .unwrap();
            }
        }
    }
    let parts = region.export(1000);
    assert!(parts.len() > 5, "{} parts", parts.len());
    assert!(parts.iter().all(|part| !part.is_empty()));
    let copy_dir = dir.path().join("copy");
    let mut copy = SchemaRegion::open(&copy_dir, "root.sg").unwrap();
    for part in parts {
        copy.import(part).unwrap();
    }
    copy.checkpoint().unwrap();
    assert_eq!(contents(&copy), contents(&region));
    drop(copy);
    let reopened = SchemaRegion::open(&copy_dir, "root.sg").unwrap();
    assert_eq!(contents(&reopened), contents(&region));
    assert_eq!(reopened.series_count(), 200);
    let empty = SchemaRegion::open(&dir.path().join("empty"), "root.sg").unwrap();
    assert_eq!(empty.export(1000), vec![Vec::new()]);

    region.set_frozen(Some("being moved".into()));
    let before = contents(&region);
    let refused = region
        .create_timeseries("root.sg.new", "s", double)
        .unwrap_err();
    assert_eq!(refused.status_code(), StatusCode::WRITE_PROCESS_REJECT);
    assert!(refused.to_string().contains("being moved"), "{refused}");
    let mut resolved = Vec::new();
    let refused = region
        .get_or_create_measurements(
            "root.sg.d1",
            false,
            &["s9"],
            &[DataType::Double],
            TypeConflict::Reject,
            &mut resolved,
        )
        .unwrap_err();
    assert_eq!(refused.status_code(), StatusCode::WRITE_PROCESS_REJECT);
    assert!(
        region
            .delete_timeseries(&[pattern("root.sg.d1.*")])
            .is_err()
    );
    assert_eq!(contents(&region), before, "nothing changed while frozen");
    assert_eq!(
        region.measurement("root.sg.d1", "s0").map(|m| m.data_type),
        Some(DataType::Double)
    );
    region.set_frozen(None);
    assert!(
        region
            .create_timeseries("root.sg.new", "s", double)
            .unwrap()
    );
}
