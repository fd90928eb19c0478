//! CPU a received tablet costs between the frame and the WAL's batch: what the write path
//! spent converting it into an owned engine tablet and encoding it twice, against the
//! borrowed view it is written from now.
//!
//! `cargo bench -p iotdb-node --bench tablet_ingest [PASSES]` decodes 1,000 tablets of the
//! standard workload's shape (100 rows × 10 DOUBLE sensors) from one insert request, then
//! per pass (default 10) takes every tablet 400 times through each path and prints the best
//! pass's thread CPU per tablet and per point:
//!
//! - `owned`: `convert::to_storage_tablet` (a copy of every column, an `Arc` per name), the
//!   WAL payload encoded into a scratch buffer, then copied into the batch (the path before
//!   `EngineView`);
//! - `borrowed`: `convert::EngineView` over the frame and the payload encoded straight into
//!   the batch (`Wal::append_with` does the same).
//!
//! The memtable's append, the same for both, is left out.

use std::sync::Arc;
use std::time::Duration;

use iotdb_net::{Opcode, Request, TypedColumn, WireColumn, WireTablet};
use iotdb_node::datanode::convert::{EngineView, to_storage_tablet};
use iotdb_storage::region::wal_entry;

const TABLETS: usize = 1000;
/// Times each path takes every tablet per pass, so a pass runs long enough to time.
const ROUNDS: usize = 400;
const ROWS: usize = 100;
const SENSORS: usize = 10;

/// CPU time this thread has used so far.
fn thread_cpu_time() -> Duration {
    iotdb_runtime::current_thread_cpu_time().expect("read this thread's schedstat")
}

fn main() {
    let passes: usize = match std::env::args().nth(1) {
        Some(arg) if !arg.starts_with('-') => arg.parse().expect("PASSES is a number"),
        _ => 10,
    };
    let tablets: Vec<WireTablet> = (0..TABLETS)
        .map(|t| {
            let first = (t / 100 * ROWS) as i64 * 1000;
            WireTablet {
                device: format!("root.bench.d{}", t % 100),
                is_aligned: false,
                timestamps: (0..ROWS as i64).map(|r| first + r * 1000).collect(),
                columns: (0..SENSORS)
                    .map(|s| {
                        let values = (0..ROWS).map(|r| (r * s) as f64 / 100.0).collect();
                        WireColumn::new(format!("s{s}"), TypedColumn::Double(values))
                    })
                    .collect(),
            }
        })
        .collect();
    let body = iotdb_net::encode_insert_tablets(&tablets);
    let Request::InsertTablets(insert) =
        Request::decode(Opcode::InsertTablets, body).expect("decode the insert")
    else {
        panic!("an insert decodes as an insert");
    };
    let views = insert.tablets;
    let devices: Vec<Arc<str>> = views.iter().map(|v| Arc::from(v.device())).collect();

    let mut scratch = Vec::new();
    let mut batch = Vec::new();
    let mut owned = Duration::MAX;
    let mut borrowed = Duration::MAX;
    let mut check = (0usize, 0usize);
    for _ in 0..passes {
        let start = thread_cpu_time();
        for (view, device) in std::iter::repeat_n(views.iter().zip(&devices), ROUNDS).flatten() {
            let tablet = to_storage_tablet(view, device);
            scratch.clear();
            wal_entry::encode(&tablet.as_ref(), &mut scratch);
            batch.clear();
            batch.extend_from_slice(&scratch);
            check.0 = check.0.wrapping_add(std::hint::black_box(&batch).len());
        }
        owned = owned.min(thread_cpu_time() - start);

        let start = thread_cpu_time();
        for (view, device) in std::iter::repeat_n(views.iter().zip(&devices), ROUNDS).flatten() {
            let engine = EngineView::new(view, device);
            let tablet = engine.tablet();
            batch.clear();
            batch.reserve(wal_entry::encoded_len(&tablet));
            wal_entry::encode(&tablet, &mut batch);
            check.1 = check.1.wrapping_add(std::hint::black_box(&batch).len());
        }
        borrowed = borrowed.min(thread_cpu_time() - start);
    }
    assert_eq!(check.0, check.1, "both paths encode the same payloads");
    let tablets = (TABLETS * ROUNDS) as f64;
    let points = tablets * (ROWS * SENSORS) as f64;
    let report = |name: &str, cpu: Duration| {
        println!(
            "{name:>8}: {:.0} ns/tablet, {:.2} ns/point",
            cpu.as_secs_f64() * 1e9 / tablets,
            cpu.as_secs_f64() * 1e9 / points
        );
    };
    println!("{TABLETS} tablets of {ROWS} rows × {SENSORS} DOUBLE, best of {passes} passes");
    report("owned", owned);
    report("borrowed", borrowed);
}
