//! Guards of a region against damage and against half-done writes: a WAL record of a kind
//! this build does not know stops the replay (it is not skipped); a manifest naming a file
//! that is gone stops the open before any file is deleted; a tablet refused by the
//! back-pressure check leaves no series type behind.

use std::sync::Arc;

use iotdb_storage::wal::{Wal, WalOptions};
use iotdb_storage::{
    Region, RegionConfig, SeriesKey, StorageError, Tablet, TabletColumn, TimeRange, Values,
};

mod support;
use support::block_on;

fn tablet(measurement: &str, values: Values) -> Tablet {
    let rows = values.len() as i64;
    Tablet {
        device: Arc::from("root.guard.d0"),
        timestamps: (0..rows).collect(),
        columns: vec![TabletColumn {
            measurement: Arc::from(measurement),
            values,
            nulls: None,
        }],
    }
}

#[test]
fn an_unknown_wal_record_kind_stops_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let config = RegionConfig::default();
    block_on(async {
        let region = Region::open(dir.path(), config.clone()).unwrap();
        let index = region
            .write_durable(&tablet("s0", Values::Int64(vec![1, 2, 3])))
            .await
            .unwrap();
        region.close(false).await.unwrap();
        // A record of kind 9 after it, as a newer version (or damage) would leave.
        let (wal, _) =
            Wal::open(&dir.path().join("wal"), WalOptions::from_config(&config)).unwrap();
        wal.append(index + 1, 9, b"from the future").unwrap();
        wal.wait_durable(index + 1).await.unwrap();
        wal.close().await.unwrap();

        let error = Region::open(dir.path(), config.clone())
            .err()
            .expect("the open must fail");
        assert!(
            matches!(&error, StorageError::Corruption { reason, .. } if reason.contains("unknown kind 9")),
            "{error}"
        );
    });
}

#[test]
fn a_missing_manifest_file_stops_the_open_before_anything_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = RegionConfig::default();
    block_on(async {
        let region = Region::open(dir.path(), config.clone()).unwrap();
        region
            .write_durable(&tablet("s0", Values::Int64(vec![1, 2, 3])))
            .await
            .unwrap();
        region.flush().await.unwrap();
        region.close(false).await.unwrap();
    });
    let sealed = dir.path().join("sealed");
    let named: Vec<_> = std::fs::read_dir(&sealed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    std::fs::remove_file(&named[0]).unwrap();
    // A file no manifest names: what an interrupted compaction leaves, and here the only
    // copy of the data if the manifest's file was lost.
    let orphan = sealed.join("0-seq-000000000099-L1.tsf");
    std::fs::write(&orphan, b"compaction output").unwrap();
    block_on(async {
        let error = Region::open(dir.path(), config.clone())
            .err()
            .expect("the open must fail");
        assert!(
            matches!(&error, StorageError::Corruption { reason, .. } if reason.contains("does not exist")),
            "{error}"
        );
    });
    assert!(orphan.exists(), "the open deleted a file before failing");
}

#[test]
fn a_tablet_refused_for_overload_leaves_no_type_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = RegionConfig {
        memtable_flush_bytes: usize::MAX,
        memtable_bytes_max: 64 * 1024,
        ..RegionConfig::default()
    };
    block_on(async {
        let region = Region::open(dir.path(), config).unwrap();
        // Fill the memtable past its limit.
        region
            .write_durable(&tablet("big", Values::Int64((0..8192).collect())))
            .await
            .unwrap();
        let refused = region.write(&tablet("s1", Values::Double(vec![1.5])));
        assert!(
            matches!(refused, Err(StorageError::Overloaded { .. })),
            "{:?}",
            refused.err()
        );
        // s1 is still unknown: a later INT64 write of it is not a type mismatch.
        region.flush().await.unwrap();
        region
            .write_durable(&tablet("s1", Values::Int64(vec![7])))
            .await
            .unwrap();
        let points = region
            .scan(&SeriesKey::new("root.guard.d0", "s1"), TimeRange::ALL)
            .unwrap()
            .unwrap();
        assert_eq!(points.values, Values::Int64(vec![7]));
        region.close(false).await.unwrap();
    });
}
