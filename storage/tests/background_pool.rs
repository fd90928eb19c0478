//! Regions share one bounded background pool: however many flushes and compactions they
//! need, the process has exactly the pool's threads for them (no thread per job), a full
//! queue defers a job to a later tick instead of blocking or growing, and every job
//! completes eventually.
//!
//! One test in its own binary: it counts the process's threads through `/proc/self/task`,
//! which other tests running beside it would disturb.

use std::sync::Arc;

use iotdb_storage::{
    BackgroundPool, PoolOptions, Region, RegionConfig, SeriesKey, Tablet, TabletColumn, TimeRange,
    Values,
};

mod support;
use support::block_on;

const REGIONS: usize = 6;
const ROUNDS: i64 = 40;
const ROWS: i64 = 500;
const POOL_THREADS: usize = 2;

/// The names of this process's threads, without io_uring's kernel workers (`iou-wrk-*`,
/// `iou-sqp-*`), which the kernel starts and stops for the WAL's I/O on its own.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .filter(|name| !name.starts_with("iou-"))
        .collect()
}

fn tablet(region: usize, first: i64) -> Tablet {
    Tablet {
        device: Arc::from(format!("root.pool.d{region}").as_str()),
        timestamps: (first..first + ROWS).collect(),
        columns: vec![TabletColumn {
            measurement: Arc::from("s0"),
            values: Values::Int64((first..first + ROWS).collect()),
            nulls: None,
        }],
    }
}

#[test]
fn regions_share_a_bounded_pool_and_no_thread_is_started_per_job() {
    let dirs: Vec<_> = (0..REGIONS).map(|_| tempfile::tempdir().unwrap()).collect();
    let pool = BackgroundPool::new(PoolOptions {
        threads: POOL_THREADS,
        // One slot per class: with six regions flushing at once the queue fills and jobs
        // must be deferred and retried.
        queue_jobs_max: 1,
    })
    .unwrap();
    // A worker names itself as it starts: wait until both run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pool.stats().threads_alive < POOL_THREADS {
        assert!(
            std::time::Instant::now() < deadline,
            "the workers did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let threads_before = thread_names();
    let pool_threads = |names: &[String]| {
        names
            .iter()
            .filter(|n| n.starts_with("storage-bg-"))
            .count()
    };
    assert_eq!(pool_threads(&threads_before), POOL_THREADS);
    block_on(async {
        let config = RegionConfig {
            // A few KiB per flush: every round freezes and flushes every region.
            memtable_flush_bytes: 4 << 10,
            compaction_files_trigger: 4,
            time_partition_interval_ms: 1 << 40,
            background: Some(pool.clone()),
            ..RegionConfig::default()
        };
        let regions: Vec<Region> = dirs
            .iter()
            .map(|d| Region::open(d.path(), config.clone()).unwrap())
            .collect();
        let mut most_threads = 0;
        for round in 0..ROUNDS {
            for (i, region) in regions.iter().enumerate() {
                region
                    .write_durable(&tablet(i, round * ROWS))
                    .await
                    .unwrap();
            }
            monoio::time::sleep(std::time::Duration::from_millis(2)).await;
            let names = thread_names();
            most_threads = most_threads.max(names.len());
            assert_eq!(pool_threads(&names), POOL_THREADS, "threads: {names:?}");
            assert!(
                names.len() <= threads_before.len(),
                "a thread appeared: {names:?}, before {threads_before:?}"
            );
        }
        for region in &regions {
            region.flush().await.unwrap();
            region.compact().await.unwrap();
        }
        let mut flushes = 0;
        let mut compactions = 0;
        let mut deferred = 0;
        for (i, region) in regions.iter().enumerate() {
            let info = region.info();
            flushes += info.flushes;
            compactions += info.compactions;
            deferred += info.jobs_deferred;
            let points = region
                .scan(
                    &SeriesKey::new(&format!("root.pool.d{i}"), "s0"),
                    TimeRange::ALL,
                )
                .unwrap()
                .unwrap();
            assert_eq!(points.len() as i64, ROUNDS * ROWS, "region {i}");
            assert_eq!(info.sealed_files, 1, "region {i} compacted into one file");
        }
        let stats = pool.stats();
        assert!(
            flushes >= (REGIONS as u64) * 10,
            "expected many flushes, got {flushes}"
        );
        assert!(compactions >= REGIONS as u64);
        assert_eq!(
            stats.jobs_refused, deferred,
            "every refusal is one deferral"
        );
        assert!(stats.jobs_completed >= flushes + compactions);
        assert!(stats.running_peak <= POOL_THREADS);
        assert!(stats.compactions_running_peak < POOL_THREADS);
        eprintln!(
            "{flushes} flushes, {compactions} compactions, {deferred} deferred, \
                 at most {most_threads} threads (before: {})",
            threads_before.len()
        );
        for region in regions {
            region.close(true).await.unwrap();
        }
    });
    assert_eq!(pool_threads(&thread_names()), POOL_THREADS);
    drop(pool);
    // Dropping the last handle joins the workers; a joined thread's entry can still be in
    // `/proc/self/task` for a moment (the kernel wakes the joiner before it removes the
    // task), so the count is read until it reaches 0, within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pool_threads(&thread_names()) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        pool_threads(&thread_names()),
        0,
        "the last handle stops the workers"
    );
}
