//! `iotdb-perf storage`: the write workload in process against one region of the storage
//! engine, no network, to measure the engine apart from the wire.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iotdb_storage::{
    Aggregation, CompareOp, FilterCounters, Operand, Region, RegionConfig, SeriesKey, TimeRange,
    Value, ValueFilter, WalMode, Windows,
};

use crate::report::{self, Latencies, Report, WriteResult};
use crate::workload::{self, T0_MS, WorkloadSpec};

/// Options of the storage mode.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    pub wal_mode: WalMode,
    /// Writes in flight at once (what a shard sees from many connections); group commit
    /// batches them.
    pub in_flight: usize,
    /// Where the region lives; a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    pub query_repeat: usize,
}

/// Runs the workload and returns its figures.
pub fn run(spec: &WorkloadSpec, options: &StorageOptions) -> anyhow::Result<Report> {
    eprintln!("generating {} points ...", spec.points());
    let requests = workload::generate(spec);
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("region"));
    let config = RegionConfig {
        wal_mode: options.wal_mode,
        ..RegionConfig::default()
    };
    let spec = spec.clone();
    let options = options.clone();
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .context("building the monoio runtime")?;
    runtime.block_on(async move {
        let region = Region::open(&dir, config).context("opening the region")?;
        let mut report = Report {
            mode: "storage".into(),
            ..Report::default()
        };

        // Write.
        let requests = Rc::new(requests);
        let next = Rc::new(Cell::new(0usize));
        let errors = Rc::new(Cell::new(0u64));
        let latencies = Rc::new(RefCell::new(Latencies::default()));
        let cpu_before = report::process_cpu_seconds(std::process::id());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..options.in_flight.max(1) {
            let (region, requests, next, errors, latencies) = (
                region.clone(),
                requests.clone(),
                next.clone(),
                errors.clone(),
                latencies.clone(),
            );
            tasks.push(monoio::spawn(async move {
                loop {
                    let i = next.get();
                    if i >= requests.len() {
                        break;
                    }
                    next.set(i + 1);
                    let t = Instant::now();
                    let result = match region.write(&requests[i].tablet) {
                        Ok(ack) => ack.durable().await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => latencies.borrow_mut().record(t.elapsed()),
                        Err(e) => {
                            errors.set(errors.get() + 1);
                            eprintln!("write {i} failed: {e}");
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        let elapsed = started.elapsed();
        let cpu = match (cpu_before, report::process_cpu_seconds(std::process::id())) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let points = spec.points();
        let latencies = latencies.borrow().clone();
        report.write = Some(WriteResult::new(
            points,
            requests.len() as u64,
            errors.get(),
            elapsed,
            cpu,
            &latencies,
        ));
        eprintln!("wrote {points} points in {:.3} s", elapsed.as_secs_f64());

        // Verify: every series holds every row.
        let mut verified = 0u64;
        for d in 0..spec.devices {
            for s in 0..spec.sensors {
                let key = SeriesKey::new(&spec.device_path(d), &WorkloadSpec::sensor_name(s));
                let rows = region
                    .aggregate(&key, TimeRange::ALL, None, &[Aggregation::Count])?
                    .with_context(|| format!("series {key} is missing"))?;
                let count = match rows[0].values[0] {
                    Some(Value::Int64(c)) => c as u64,
                    ref other => bail!("count of {key} is {other:?}"),
                };
                if count != spec.rows as u64 {
                    bail!("series {key} holds {count} points, not {}", spec.rows);
                }
                verified += count;
            }
        }
        report.verified_points = Some(verified);

        // Flush and compact, then measure the disk.
        let t = Instant::now();
        region.flush().await?;
        eprintln!("flushed in {:.3} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        region.compact().await?;
        eprintln!("compacted in {:.3} s", t.elapsed().as_secs_f64());
        let info = region.info();
        let disk = info.sealed_bytes + info.wal_bytes;
        report.disk_bytes = Some(disk);
        report.bytes_per_point = Some(disk as f64 / points as f64);

        // Queries, each repeated.
        let key = SeriesKey::new(&spec.device_path(0), &WorkloadSpec::sensor_name(0));
        let end = T0_MS + spec.rows as i64 * spec.interval_ms;
        let hour = 3_600_000;
        let mut raw = Latencies::default();
        let mut group_by = Latencies::default();
        let mut last = Latencies::default();
        for _ in 0..options.query_repeat {
            let t = Instant::now();
            let points = region.scan(&key, TimeRange::new(T0_MS, T0_MS + hour))?;
            raw.record(t.elapsed());
            std::hint::black_box(points);
            let t = Instant::now();
            let rows = region.aggregate(
                &key,
                TimeRange::ALL,
                Some(Windows {
                    range: TimeRange::new(T0_MS, end),
                    interval_ms: hour,
                }),
                &[Aggregation::Count, Aggregation::Avg],
            )?;
            group_by.record(t.elapsed());
            std::hint::black_box(rows);
            let t = Instant::now();
            let point = region.last(&key)?;
            last.record(t.elapsed());
            std::hint::black_box(point);
        }
        // A value filter pushed down to every series once (`s > 40`, over all time): how
        // often chunk statistics decide without checking points.
        let filter = ValueFilter::Compare(CompareOp::Greater, Operand::Number(40.0));
        let mut filtered = Latencies::default();
        let mut counters = FilterCounters::default();
        let mut matched = 0u64;
        for d in 0..spec.devices {
            for s in 0..spec.sensors {
                let key = SeriesKey::new(&spec.device_path(d), &WorkloadSpec::sensor_name(s));
                let t = Instant::now();
                let points = region.scan_filtered(&key, TimeRange::ALL, &filter, &mut counters)?;
                filtered.record(t.elapsed());
                matched += points.map_or(0, |p| p.len() as u64);
            }
        }
        let chunks = counters.chunks_skipped + counters.chunks_all_in + counters.pieces_checked;
        eprintln!(
            "value filter s > 40 on {} series: {matched} points match; chunks: {} skipped by \
             statistics, {} kept whole by statistics, {} checked point by point ({} points) \
             of {chunks}",
            spec.devices * spec.sensors,
            counters.chunks_skipped,
            counters.chunks_all_in,
            counters.pieces_checked,
            counters.points_checked,
        );
        report.queries = vec![
            ("raw 1h".into(), raw.summary()),
            ("count,avg 1h".into(), group_by.summary()),
            ("last".into(), last.summary()),
            ("value filter s > 40, per series".into(), filtered.summary()),
        ];
        region.close(false).await?;
        // Give the background threads a moment to see the close.
        monoio::time::sleep(Duration::from_millis(1)).await;
        Ok(report)
    })
}
