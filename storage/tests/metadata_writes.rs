//! MODS and MANIFEST are written by metadata jobs on the background pool, never by the
//! shard during a `DELETE` or a tick, and the crash-safety order survives the move: a
//! deletion reaches MODS before a manifest that lets the WAL drop its record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iotdb_storage::region::deletion;
use iotdb_storage::{
    BackgroundPool, PoolOptions, Region, RegionConfig, SeriesKey, Tablet, TabletColumn, TimeRange,
    Values,
};

mod support;
use support::block_on;

const WAIT_MAX: Duration = Duration::from_secs(30);

fn tablet(first: i64, rows: i64) -> Tablet {
    Tablet {
        device: Arc::from("root.meta.d0"),
        timestamps: (first..first + rows).collect(),
        columns: vec![TabletColumn {
            measurement: Arc::from("s0"),
            values: Values::Int64((first..first + rows).collect()),
            nulls: None,
        }],
    }
}

fn key() -> SeriesKey {
    SeriesKey::new("root.meta.d0", "s0")
}

/// Deletes `start..end` of the series and waits until the deletion is durable (its WAL
/// record synced).
async fn delete_durable(region: &Region, start: i64, end: i64) {
    region
        .delete(&[key()], TimeRange::new(start, end))
        .unwrap()
        .durable()
        .await
        .unwrap();
}

fn timestamps(region: &Region) -> Vec<i64> {
    region
        .scan(&key(), TimeRange::ALL)
        .unwrap()
        .unwrap()
        .timestamps
}

#[test]
fn deletions_reach_mods_through_the_pool_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pool = BackgroundPool::new(PoolOptions {
        threads: 2,
        queue_jobs_max: 4,
    })
    .unwrap();
    let config = RegionConfig {
        // Small WAL segments: a flush lets the WAL drop the records it covers.
        wal_segment_bytes: 4 << 10,
        background: Some(pool.clone()),
        ..RegionConfig::default()
    };
    block_on(async {
        let region = Region::open(dir.path(), config.clone()).unwrap();
        region.write_durable(&tablet(0, 100)).await.unwrap();
        region.flush().await.unwrap();
        assert!(
            !dir.path().join(deletion::MODS_NAME).exists(),
            "no deletion yet, no MODS"
        );

        // The DELETE itself writes only its WAL record (the region's tick may already
        // have handed MODS to the pool by the time the record is durable, so that is
        // not asserted here) ...
        let jobs_before = pool.stats().jobs_completed;
        delete_durable(&region, 10, 20).await;
        // ... and a metadata job on the pool persists it within a few ticks.
        let deadline = Instant::now() + WAIT_MAX;
        // MODS appears at its rename, before the job's directory fsync and return: wait
        // for the job to complete as well.
        while !dir.path().join(deletion::MODS_NAME).exists()
            || pool.stats().jobs_completed <= jobs_before
        {
            assert!(
                Instant::now() < deadline,
                "MODS never written by a pool job"
            );
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        let mods = deletion::load(dir.path()).unwrap();
        assert_eq!(mods.values().map(Vec::len).sum::<usize>(), 1);

        // A deletion followed at once by a flush: the flush's metadata job writes MODS
        // before the manifest that lets the WAL drop the deletion's record.
        region.write_durable(&tablet(100, 100)).await.unwrap();
        delete_durable(&region, 150, 160).await;
        region.write_durable(&tablet(200, 50)).await.unwrap();
        region.flush().await.unwrap();
        let expected: Vec<i64> = (0..250)
            .filter(|t| !(10..20).contains(t) && !(150..160).contains(t))
            .collect();
        assert_eq!(timestamps(&region), expected);
        let info = region.info();
        assert_eq!(info.flushed_index, info.last_index, "everything is flushed");
        region.close(false).await.unwrap();

        // Reopened from MANIFEST and MODS alone (the WAL holds nothing unflushed).
        let region = Region::open(dir.path(), config.clone()).unwrap();
        assert_eq!(timestamps(&region), expected);
        region.compact().await.unwrap();
        assert_eq!(timestamps(&region), expected);
        region.close(true).await.unwrap();
        let region = Region::open(dir.path(), config).unwrap();
        assert_eq!(timestamps(&region), expected);
        region.close(true).await.unwrap();
    });
}

/// Copies the files of a region directory but MODS (sealed files, WAL, MANIFEST): the
/// image a crash leaves when it lands before MODS was written. The region is live: a
/// pool job may be writing MODS meanwhile, so a file listed and gone by the time it is
/// copied (a `.tmp` renamed) is left out, as a crash an instant later would.
fn copy_region_without_mods(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_region_without_mods(&entry.path(), &target);
        } else if entry.file_name() != deletion::MODS_NAME {
            match std::fs::copy(entry.path(), &target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                copied => {
                    copied.unwrap();
                }
            }
        }
    }
}

/// A deletion that reached only the WAL before a crash is replayed at the next open onto
/// the sealed files; a flush after that lets the WAL drop its record, so that flush must
/// write MODS first, or the deleted points come back at the open after.
#[test]
fn a_deletion_replayed_from_the_wal_reaches_mods_before_its_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let config = RegionConfig {
        wal_segment_bytes: 4 << 10,
        ..RegionConfig::default()
    };
    let expected: Vec<i64> = (0..300).filter(|t| !(10..20).contains(t)).collect();
    block_on(async {
        let region = Region::open(dir.path(), config.clone()).unwrap();
        region.write_durable(&tablet(0, 100)).await.unwrap();
        region.flush().await.unwrap();
        delete_durable(&region, 10, 20).await;
        // The crash image: the WAL holds the deletion, MODS does not (yet).
        copy_region_without_mods(dir.path(), crashed.path());
        region.close(false).await.unwrap();

        let region = Region::open(crashed.path(), config.clone()).unwrap();
        assert_eq!(timestamps(&region), expected[..90].to_vec(), "replayed");
        // More writes and a flush: the manifest now covers the deletion's record.
        region.write_durable(&tablet(100, 200)).await.unwrap();
        region.flush().await.unwrap();
        let info = region.info();
        assert_eq!(info.flushed_index, info.last_index, "everything is flushed");
        region.close(true).await.unwrap();

        let region = Region::open(crashed.path(), config.clone()).unwrap();
        assert_eq!(
            timestamps(&region),
            expected,
            "after the flush and a reopen"
        );
        let mods = deletion::load(crashed.path()).unwrap();
        assert_eq!(mods.values().map(Vec::len).sum::<usize>(), 1);
        region.close(true).await.unwrap();
    });
}
