//! Crash test: a child process ingests with `wal_mode=sync` and prints every acknowledged
//! write; the parent `SIGKILL`s it at a random moment, reopens the region and checks that
//! every acknowledged point is there. Repeated over many rounds on one directory, with
//! small memtables so flushes and compactions are often under way when the kill lands.
//!
//! The test binary is its own child: with `IOTDB_CRASH_CHILD_DIR` set, `main` ingests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use iotdb_storage::{
    Region, RegionConfig, SeriesKey, Tablet, TabletColumn, TimeRange, Value, Values, WalMode,
};
use rand::{Rng, SeedableRng};

mod support;
use support::block_on;

const ROWS: i64 = 10;
const DEVICES: u64 = 4;
const WRITERS: u64 = 8;

fn config() -> RegionConfig {
    RegionConfig {
        wal_mode: WalMode::Sync,
        memtable_flush_bytes: 64 << 10,
        wal_segment_bytes: 256 << 10,
        compaction_files_trigger: 3,
        compaction_bytes_per_second: 0,
        time_partition_interval_ms: 5_000,
        ..RegionConfig::default()
    }
}

fn device(id: u64) -> String {
    format!("root.crash.d{}", id % DEVICES)
}

/// Tablet `id`: 10 rows at `id·10 …`, s0 DOUBLE `id·1000 + row`, s1 INT64 `id`.
fn tablet(id: u64) -> Tablet {
    let base = id as i64 * ROWS;
    Tablet {
        device: Arc::from(device(id)),
        timestamps: (base..base + ROWS).collect(),
        columns: vec![
            TabletColumn {
                measurement: Arc::from("s0"),
                values: Values::Double((0..ROWS).map(|r| (id as i64 * 1000 + r) as f64).collect()),
                nulls: None,
            },
            TabletColumn {
                measurement: Arc::from("s1"),
                values: Values::Int64(vec![id as i64; ROWS as usize]),
                nulls: None,
            },
        ],
    }
}

/// The child: writes tablets `first..` from several tasks until killed.
fn child(dir: &Path, first: u64) {
    block_on(async move {
        let region = Region::open(dir, config()).expect("open region");
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let region = region.clone();
            tasks.push(monoio::spawn(async move {
                let mut id = first + writer;
                loop {
                    region
                        .write_durable(&tablet(id))
                        .await
                        .expect("durable write");
                    println!("ack {id}");
                    id += WRITERS;
                }
            }));
        }
        // The writers run until the parent kills this process.
        drop(tasks);
        std::future::pending::<()>().await;
    });
}

fn verify(dir: &Path, acked: &[u64]) {
    block_on(async move {
        let region = Region::open(dir, config()).expect("reopen after the kill");
        for &id in acked {
            let expected = tablet(id);
            let range = TimeRange::new(expected.timestamps[0], expected.timestamps[0] + ROWS);
            let s0 = region
                .scan(&SeriesKey::new(&device(id), "s0"), range)
                .unwrap()
                .unwrap_or_else(|| panic!("series of acknowledged tablet {id} missing"));
            assert_eq!(
                s0.timestamps, expected.timestamps,
                "tablet {id} lost points"
            );
            assert_eq!(
                s0.values, expected.columns[0].values,
                "tablet {id} has wrong values"
            );
            let s1 = region
                .scan(&SeriesKey::new(&device(id), "s1"), range)
                .unwrap()
                .unwrap();
            assert_eq!(s1.values.get(0), Value::Int64(id as i64));
        }
        region.close(false).await.unwrap();
    });
}

fn main() {
    if let Ok(dir) = std::env::var("IOTDB_CRASH_CHILD_DIR") {
        let first =
            std::env::var("IOTDB_CRASH_FIRST_ID").map_or(0, |v| v.parse().expect("first id"));
        child(Path::new(&dir), first);
        return;
    }
    let rounds: usize =
        std::env::var("IOTDB_CRASH_ROUNDS").map_or(20, |v| v.parse().expect("rounds"));
    let seed: u64 = std::env::var("IOTDB_CRASH_SEED")
        .map_or_else(|_| rand::random(), |v| v.parse().expect("seed"));
    println!("crash test: {rounds} rounds, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut next_first = 0u64;
    let exe = std::env::current_exe().unwrap();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .env("IOTDB_CRASH_CHILD_DIR", dir.path())
            .env("IOTDB_CRASH_FIRST_ID", next_first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut ids = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ") {
                    ids.push(id.parse::<u64>().expect("an id"));
                }
            }
            ids
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, not finished");
        let ids = reader.join().unwrap();
        let round_max = ids.iter().copied().max();
        acked.extend(ids);
        verify(dir.path(), &acked);
        println!(
            "round {round}: {} writes acknowledged in all, every one present after the kill",
            acked.len()
        );
        next_first = round_max.map_or(next_first, |m| m + WRITERS + 1) + 1000;
    }
    assert!(!acked.is_empty(), "the child never acknowledged a write");
    println!(
        "crash test passed: {rounds} kills, {} acknowledged writes verified",
        acked.len()
    );
}
