//! `iotdb-perf storage`: the write workload in process against one region of the storage
//! engine, no network, to measure the engine apart from the wire.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iotdb_storage::{
    Aggregation, CompareOp, FilterCounters, Operand, Region, RegionConfig, SeriesKey, TimeRange,
    ValueFilter, WalMode, Windows,
};

use crate::report::{self, Latencies, Phase, Report, WriteResult};
use crate::verify::{self, Expected};
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
    let expected = Expected::of(spec, &requests);
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
    let mut runtime = iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .context("building the monoio runtime")?;
    runtime.block_on(async move {
        let region = Region::open(&dir, config.clone()).context("opening the region")?;
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
        let ingest_elapsed = started.elapsed();
        let ingest_cpu = report::process_cpu_seconds(std::process::id());
        // The timed window ends when every point is in sealed files.
        region.flush().await?;
        let flush_elapsed = started.elapsed();
        let flush_cpu = report::process_cpu_seconds(std::process::id());
        let cpu_since = |after: Option<f64>| match (cpu_before, after) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let points = spec.points();
        let latencies = latencies.borrow().clone();
        report.set_write(WriteResult::new(
            points,
            requests.len() as u64,
            errors.get(),
            Phase::new(points, ingest_elapsed, cpu_since(ingest_cpu)),
            Phase::new(points, flush_elapsed, cpu_since(flush_cpu)),
            &latencies,
        ));
        eprintln!(
            "wrote {points} points in {:.3} s, {:.3} s through the flush",
            ingest_elapsed.as_secs_f64(),
            flush_elapsed.as_secs_f64()
        );
        if errors.get() > 0 {
            bail!("{} writes failed", errors.get());
        }

        // Verify every series: count, time range and values.
        let verified = verify_region(&region, &spec, &expected)?;
        report.verified_points = Some(verified);

        // Measure the disk after the flush and after compaction.
        let info = region.info();
        let disk = info.sealed_bytes + info.wal_bytes;
        report.disk_bytes = Some(disk);
        report.bytes_per_point = Some(disk as f64 / points as f64);
        let t = Instant::now();
        region.compact().await?;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!("compacted in {seconds:.3} s");
        let info = region.info();
        let disk = info.sealed_bytes + info.wal_bytes;
        report.disk_bytes_compacted = Some(disk);
        report.bytes_per_point_compacted = Some(disk as f64 / points as f64);
        report.compaction_settle_seconds = Some(seconds);

        // Queries, each repeated: one series of each type, asked what its type supports.
        let end = T0_MS + spec.rows as i64 * spec.interval_ms;
        let hour = 3_600_000;
        let targets = workload::query_series(&spec);
        let several_types = targets.len() > 1;
        report.queries.clear();
        for target in &targets {
            let key = SeriesKey::new(
                &spec.device_path(0),
                &WorkloadSpec::sensor_name(target.sensor),
            );
            let aggregations = if target.numeric() {
                vec![Aggregation::Count, Aggregation::Avg]
            } else {
                vec![Aggregation::Count, Aggregation::First, Aggregation::Last]
            };
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
                    &aggregations,
                )?;
                group_by.record(t.elapsed());
                std::hint::black_box(rows);
                let t = Instant::now();
                let point = region.last(&key)?;
                last.record(t.elapsed());
                std::hint::black_box(point);
            }
            let label = |name: &str| workload::query_label(name, target, several_types);
            report.queries.push((label("raw 1h"), raw.summary()));
            report
                .queries
                .push((label(target.group_by_label()), group_by.summary()));
            report.queries.push((label("last"), last.summary()));
        }
        // A value filter pushed down to every numeric series once (`s > 40`, over all
        // time): how often chunk statistics decide without checking points.
        let filter = ValueFilter::Compare(CompareOp::Greater, Operand::Number(40.0));
        let mut filtered = Latencies::default();
        let mut counters = FilterCounters::default();
        let mut matched = 0u64;
        let mut series = 0usize;
        for d in 0..spec.devices {
            for s in (0..spec.sensors).filter(|&s| spec.types[s].is_numeric()) {
                let key = SeriesKey::new(&spec.device_path(d), &WorkloadSpec::sensor_name(s));
                let t = Instant::now();
                let points = region.scan_filtered(&key, TimeRange::ALL, &filter, &mut counters)?;
                filtered.record(t.elapsed());
                matched += points.map_or(0, |p| p.len() as u64);
                series += 1;
            }
        }
        if series > 0 {
            let chunks = counters.chunks_skipped + counters.chunks_all_in + counters.pieces_checked;
            eprintln!(
                "value filter s > 40 on {series} series: {matched} points match; chunks: {} \
                 skipped by statistics, {} kept whole by statistics, {} checked point by point \
                 ({} points) of {chunks}",
                counters.chunks_skipped,
                counters.chunks_all_in,
                counters.pieces_checked,
                counters.points_checked,
            );
            report
                .queries
                .push(("value filter s > 40, per series".into(), filtered.summary()));
        }
        region.close(true).await?;
        // What a reopen reads back (sealed files, WAL replay) must match as well.
        let region = Region::open(&dir, config).context("reopening the region")?;
        report.verified_after_restart = Some(verify_region(&region, &spec, &expected)?);
        region.close(false).await?;
        // Give the background threads a moment to see the close.
        monoio::time::sleep(Duration::from_millis(1)).await;
        Ok(report)
    })
}

/// Scans every series of the workload from `region` and checks it against the generator;
/// returns the points verified.
fn verify_region(region: &Region, spec: &WorkloadSpec, expected: &Expected) -> anyhow::Result<u64> {
    let mut verified = 0u64;
    for d in 0..spec.devices {
        let device = spec.device_path(d);
        for s in 0..spec.sensors {
            let key = SeriesKey::new(&device, &WorkloadSpec::sensor_name(s));
            let points = region
                .scan(&key, TimeRange::ALL)?
                .with_context(|| format!("series {key} is missing"))?;
            verified += expected.check(&device, s, &verify::digest_points(&points))?;
        }
    }
    if verified != spec.points() {
        bail!(
            "verified {verified} points, the workload wrote {}",
            spec.points()
        );
    }
    Ok(verified)
}
