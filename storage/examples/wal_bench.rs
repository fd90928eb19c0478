//! WAL throughput in sync mode: concurrent appender tasks on one monoio runtime, each
//! appending a payload and waiting for its fdatasync, as a region's writers would.
//! Also times a single write + fdatasync on the same disk.
//!
//! `cargo run --release -p iotdb-storage --example wal_bench -- [DIR] [SECONDS] [TASKS] [PAYLOAD_BYTES]`

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use iotdb_storage::WalMode;
use iotdb_storage::wal::{Wal, WalOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/wal-bench".to_string()),
    );
    let seconds: f64 = args.next().map_or(Ok(5.0), |arg| arg.parse())?;
    let tasks: usize = args.next().map_or(Ok(64), |arg| arg.parse())?;
    let payload_bytes: usize = args.next().map_or(Ok(9000), |arg| arg.parse())?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!("io_uring available: {}", monoio::utils::detect_uring());

    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(256)
        .enable_timer()
        .build()?;
    runtime.block_on(async move {
        time_fdatasync(&dir.join("fsync-probe"), payload_bytes).await?;
        let wal_dir = dir.join("wal");
        let options = WalOptions {
            mode: WalMode::Sync,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(&wal_dir, options)?;
        let next_index = Rc::new(Cell::new(0u64));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let wal = wal.clone();
            let next_index = next_index.clone();
            let payload = vec![0x5a; payload_bytes];
            handles.push(monoio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let index = next_index.get() + 1;
                    next_index.set(index);
                    let appended = Instant::now();
                    wal.append(index, 1, &payload)?;
                    wal.wait_durable(index).await?;
                    latencies.push(appended.elapsed());
                }
                Ok::<_, iotdb_storage::StorageError>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for handle in handles {
            latencies.extend(handle.await?);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let disk_bytes = wal.disk_bytes();
        wal.close().await?;
        latencies.sort();
        let appends = latencies.len() as f64;
        let percentile = |p: f64| latencies[((appends - 1.0) * p) as usize];
        println!(
            "sync mode, {tasks} tasks, {payload_bytes}-byte payloads: {:.0} appends/s, {:.1} MB/s, \
             latency p50 {:?} p99 {:?}, {disk_bytes} bytes on disk",
            appends / elapsed,
            appends * payload_bytes as f64 / elapsed / 1e6,
            percentile(0.5),
            percentile(0.99),
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Times appending `payload_bytes` then fdatasync, as one WAL batch of one record would.
async fn time_fdatasync(path: &std::path::Path, payload_bytes: usize) -> anyhow::Result<()> {
    let file = monoio::fs::File::create(path).await?;
    let rounds = 200;
    let mut buffer = vec![0x33; payload_bytes];
    let mut durations = Vec::with_capacity(rounds);
    let mut sync_only = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let started = Instant::now();
        let (result, returned) = file
            .write_all_at(buffer, (round * payload_bytes) as u64)
            .await;
        result?;
        buffer = returned;
        let synced = Instant::now();
        file.sync_data().await?;
        sync_only.push(synced.elapsed());
        durations.push(started.elapsed());
    }
    file.close().await?;
    std::fs::remove_file(path)?;
    durations.sort();
    sync_only.sort();
    println!(
        "write {payload_bytes} B + fdatasync (appending): median {:?}, p99 {:?}; fdatasync alone median {:?}",
        durations[rounds / 2],
        durations[rounds * 99 / 100],
        sync_only[rounds / 2],
    );
    Ok(())
}
