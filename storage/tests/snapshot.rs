//! A snapshot is a consistent set of sealed files plus the WAL index they cover: a region
//! opened on it holds exactly the flushed data, and the records after the index are the
//! WAL tail a catching-up replica would replay.

use std::sync::Arc;

use iotdb_storage::{
    Region, RegionConfig, SeriesKey, Tablet, TabletColumn, TimeRange, Value, Values,
};

mod support;
use support::block_on;

fn tablet(first: i64, rows: i64) -> Tablet {
    Tablet {
        device: Arc::from("root.snap.d0"),
        timestamps: (first..first + rows).collect(),
        columns: vec![TabletColumn {
            measurement: Arc::from("s0"),
            values: Values::Int64((first..first + rows).collect()),
            nulls: None,
        }],
    }
}

#[test]
fn snapshot_holds_the_flushed_files_and_names_the_wal_index() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot_dir = dir.path().join("snapshot");
    block_on(async {
        let region = Region::open(&dir.path().join("region"), RegionConfig::default()).unwrap();
        region.write_durable(&tablet(0, 100)).await.unwrap();
        region.flush().await.unwrap();
        let flushed_index = region.write_durable(&tablet(100, 50)).await.unwrap() - 1;
        // Unflushed writes are not in the snapshot: the WAL tail carries them.
        let info = region.snapshot(&snapshot_dir).unwrap();
        assert_eq!(info.wal_index, flushed_index);
        assert!(info.files >= 1 && info.bytes > 0, "{info:?}");
        // Writes after the snapshot do not change it.
        region.write_durable(&tablet(150, 50)).await.unwrap();
        region.flush().await.unwrap();
        region.close(true).await.unwrap();

        let copy = Region::open(&snapshot_dir, RegionConfig::default()).unwrap();
        let key = SeriesKey::new("root.snap.d0", "s0");
        let points = copy.scan(&key, TimeRange::ALL).unwrap().unwrap();
        assert_eq!(points.timestamps, (0..100).collect::<Vec<_>>());
        assert_eq!(points.values.get(99), Value::Int64(99));
        assert_eq!(copy.info().flushed_index, flushed_index);
        copy.close(false).await.unwrap();
    });
}
