//! A partition that stops receiving writes is compacted into one file even below
//! `compaction_files_trigger`, once it has been cold for `compaction_cold_delay`; a partition
//! still taking writes is left alone. Without this, the files of the last few flushes of a
//! partition kept their short chunks and per-file overhead forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iotdb_storage::{Region, RegionConfig, SeriesKey, Tablet, TabletColumn, TimeRange, Values};

mod support;
use support::block_on;

const PARTITION_MS: i64 = 1_000_000;
/// How long the test waits for the background compaction at most.
const WAIT_MAX: Duration = Duration::from_secs(30);

fn tablet(first: i64, rows: i64) -> Tablet {
    Tablet {
        device: Arc::from("root.cold.d0"),
        timestamps: (first..first + rows).collect(),
        columns: vec![TabletColumn {
            measurement: Arc::from("s0"),
            values: Values::Int64((first..first + rows).map(|v| v * 3).collect()),
            nulls: None,
        }],
    }
}

#[test]
fn a_cold_partition_compacts_into_one_file_and_a_hot_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let config = RegionConfig {
            time_partition_interval_ms: PARTITION_MS,
            compaction_files_trigger: 4,
            compaction_cold_delay: Duration::from_millis(300),
            ..RegionConfig::default()
        };
        let region = Region::open(dir.path(), config).unwrap();
        // Partition 0: two flushes, two files, then no more writes.
        region.write_durable(&tablet(0, 100)).await.unwrap();
        region.flush().await.unwrap();
        region.write_durable(&tablet(100, 100)).await.unwrap();
        region.flush().await.unwrap();
        assert_eq!(region.info().sealed_files, 2);
        // Partition 1: two flushes, then a write that stays in the memtable (hot).
        region
            .write_durable(&tablet(PARTITION_MS, 100))
            .await
            .unwrap();
        region.flush().await.unwrap();
        region
            .write_durable(&tablet(PARTITION_MS + 100, 100))
            .await
            .unwrap();
        region.flush().await.unwrap();
        region
            .write_durable(&tablet(PARTITION_MS + 200, 10))
            .await
            .unwrap();
        assert_eq!(region.info().sealed_files, 4);

        let started = Instant::now();
        while region.info().compactions == 0 {
            assert!(
                started.elapsed() < WAIT_MAX,
                "the cold partition was not compacted within {WAIT_MAX:?}: {:?}",
                region.info()
            );
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the hot partition every chance to be (wrongly) compacted too.
        monoio::time::sleep(Duration::from_millis(600)).await;
        let info = region.info();
        assert_eq!(info.compactions, 1, "{info:?}");
        assert_eq!(info.sealed_files, 3, "one file for partition 0, two for 1");

        // Nothing changed for readers.
        let key = SeriesKey::new("root.cold.d0", "s0");
        let points = region.scan(&key, TimeRange::ALL).unwrap().unwrap();
        let expected: Vec<i64> = (0..200).chain(PARTITION_MS..PARTITION_MS + 210).collect();
        assert_eq!(points.timestamps, expected);

        // Once its last write is flushed, partition 1 goes cold and compacts as well.
        region.flush().await.unwrap();
        let started = Instant::now();
        while region.info().sealed_files != 2 {
            assert!(
                started.elapsed() < WAIT_MAX,
                "partition 1 was not compacted: {:?}",
                region.info()
            );
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        let points = region.scan(&key, TimeRange::ALL).unwrap().unwrap();
        assert_eq!(points.timestamps, expected);
        region.close(false).await.unwrap();
    });
}
