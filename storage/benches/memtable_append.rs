//! CPU the memtable spends taking the standard workload's tablets: finding each column's
//! series buffer and appending the column to it.
//!
//! `cargo bench -p iotdb-storage --bench memtable_append [PASSES]` builds the standard
//! workload's 10,000 tablets (1,000 devices × 10 batches of 100 rows × 10 DOUBLE sensors),
//! then per pass (default 7) applies all of them, batch-major as `iotdb-perf` sends them,
//! to a new memtable and drops it. It prints the first pass's thread CPU and wall time per
//! point (fresh memory: the buffers' pages are first touched) and the best of the others
//! (memory the allocator has already had: the lookups and copies alone). The allocator is
//! the server's (mimalloc, tuned as the server tunes it).

use std::sync::Arc;
use std::time::{Duration, Instant};

// The server's allocator, tuned as the server tunes it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use iotdb_storage::memtable::{Memtable, Side};
use iotdb_storage::sealed::workload;
use iotdb_storage::types::{Tablet, TabletColumn, Values};

const DEVICES: u64 = 1000;
const ROWS: usize = 1000;
const BATCH: usize = 100;

/// CPU time this thread has used so far.
fn thread_cpu_time() -> Duration {
    iotdb_runtime::current_thread_cpu_time().expect("read this thread's schedstat")
}

fn main() {
    iotdb_runtime::tune_allocator();
    let passes: usize = match std::env::args().nth(1) {
        Some(arg) if !arg.starts_with('-') => arg.parse().expect("PASSES is a number"),
        _ => 7,
    };
    let names: Vec<Arc<str>> = (0..workload::SENSORS)
        .map(|s| Arc::from(format!("s{s}").as_str()))
        .collect();
    let mut per_device: Vec<Vec<Tablet>> = (0..DEVICES)
        .map(|d| {
            let device: Arc<str> = Arc::from(format!("root.bench.d{d}").as_str());
            let series: Vec<_> = (0..workload::SENSORS)
                .map(|s| workload::series(d, s, ROWS))
                .collect();
            (0..ROWS)
                .step_by(BATCH)
                .map(|start| Tablet {
                    device: device.clone(),
                    timestamps: series[0].timestamps[start..start + BATCH].to_vec(),
                    columns: series
                        .iter()
                        .zip(&names)
                        .map(|(points, name)| TabletColumn {
                            measurement: name.clone(),
                            values: match &points.values {
                                Values::Double(v) => {
                                    Values::Double(v[start..start + BATCH].to_vec())
                                }
                                other => {
                                    panic!("the workload is DOUBLE, not {}", other.data_type())
                                }
                            },
                            nulls: None,
                        })
                        .collect(),
                })
                .collect()
        })
        .collect();
    // Batch-major: every device's first batch, then every device's second, ...
    let mut tablets = Vec::new();
    for batch in 0..ROWS / BATCH {
        for device in &mut per_device {
            tablets.push(std::mem::replace(&mut device[batch], empty_tablet()));
        }
    }
    let points = (DEVICES as usize * ROWS) as u64 * workload::SENSORS;

    // (thread CPU, wall) of the first pass, and the best of the others.
    let mut first = None;
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..passes {
        let mut memtable = Memtable::default();
        let (cpu_started, wall_started) = (thread_cpu_time(), Instant::now());
        for tablet in &tablets {
            memtable.apply(&tablet.as_ref(), |_| 0, |_, _| Side::Sequence);
        }
        let pass = (thread_cpu_time() - cpu_started, wall_started.elapsed());
        assert_eq!(memtable.points(), points);
        drop(memtable);
        if first.is_none() {
            first = Some(pass);
        } else {
            best = (best.0.min(pass.0), best.1.min(pass.1));
        }
    }
    let per_point = |time: Duration| time.as_nanos() as f64 / points as f64;
    // The thread's CPU time advances by the scheduler's tick on some kernels (4 ms here):
    // the wall time of a pass is the finer figure on a quiet machine.
    let line = |what: &str, (cpu, wall): (Duration, Duration)| {
        println!(
            "memtable append, {what}: cpu {:.2} ns/point, wall {:.2} ns/point",
            per_point(cpu),
            per_point(wall)
        );
    };
    println!(
        "{points} points in {} tablets, {passes} passes",
        tablets.len()
    );
    if let Some(first) = first {
        line("first pass", first);
    }
    if best.0 != Duration::MAX {
        line("best later pass", best);
    }
}

fn empty_tablet() -> Tablet {
    Tablet {
        device: Arc::from(""),
        timestamps: Vec::new(),
        columns: Vec::new(),
    }
}
