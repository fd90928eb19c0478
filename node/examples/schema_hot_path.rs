//! Throughput of the schema auto-create hot path on hits (a measurement, not a test):
//! `cargo run --release -p iotdb-node --example schema_hot_path`.

use iotdb_node::schema::{SchemaRegion, TypeConflict};
use iotdb_node::sql::DataType;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut region = SchemaRegion::open(dir.path(), "root.bench").unwrap();
    let names: Vec<String> = (0..10).map(|index| format!("s{index}")).collect();
    let types = vec![DataType::Double; 10];
    let devices: Vec<String> = (0..1000)
        .map(|index| format!("root.bench.d{index}"))
        .collect();
    let mut resolved = Vec::with_capacity(16);
    for device in &devices {
        region
            .get_or_create_measurements(
                device,
                false,
                &names,
                &types,
                TypeConflict::Reject,
                &mut resolved,
            )
            .unwrap();
    }
    let rounds = 200;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for device in &devices {
            region
                .get_or_create_measurements(
                    device,
                    false,
                    &names,
                    &types,
                    TypeConflict::Reject,
                    &mut resolved,
                )
                .unwrap();
        }
    }
    let elapsed = start.elapsed();
    let lookups = rounds * devices.len();
    println!(
        "{lookups} device lookups of 10 measurements: {:.0} ns per device, {:.1} ns per measurement",
        elapsed.as_nanos() as f64 / lookups as f64,
        elapsed.as_nanos() as f64 / (lookups * 10) as f64
    );
}
