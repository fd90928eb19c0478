//! The soak benchmark (`iotdb-perf --duration 10m --rate 100000`): the standard
//! workload's shape (devices × sensors, tablets of `--batch` rows, the random walk's
//! values) written at a fixed rate for a fixed time against an embedded server, whose
//! resident memory, open files and WAL bytes are sampled every second. At the end each
//! series is drawn as a one-line plot with its min, max and last value: once warm they
//! must stay flat (a leak shows as a ramp).
//!
//! Time advances as in the workload: every round writes the next `--batch` rows of
//! every device, `--interval-ms` apart, so the server sees an endless stream of new
//! points, flushes them and compacts them as it would in service. The values of a
//! round are the workload's first rounds again (the walk is generated once), shifted in
//! time.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use iotdb_net::{AsyncCalls, Opcode, RouteTable};

use crate::server_mode::{self, EmbeddedServer, ServerOptions, ShardClient, Target};
use crate::workload::{self, WorkloadSpec};

/// Rounds of values generated up front and cycled (each round is one batch per device).
const ROUNDS_GENERATED: usize = 8;
/// How often the sender wakes up to send what is due.
const TICK: Duration = Duration::from_millis(10);
/// Width of a plot, in characters (samples are bucketed to fit).
const PLOT_WIDTH: usize = 60;

/// What the soak asks for.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub duration: Duration,
    /// Points per second.
    pub rate: u64,
}

/// One sample of the server process.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_bytes: u64,
    open_files: u64,
    wal_bytes: u64,
    points_acknowledged: u64,
}

/// `--duration`: `600`, `600s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("--duration {text:?}: a number with s, m or h"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        other => bail!("--duration {text:?}: unknown unit {other:?} (s, m or h)"),
    };
    if seconds == 0 {
        bail!("--duration must be positive");
    }
    Ok(Duration::from_secs(seconds))
}

/// A prepared round: one tablet body per device, timestamps of round 0.
struct Round {
    tablets: Vec<(String, i64, u64, iotdb_net::WireTablet)>,
}

/// Runs the soak and prints the plots; the server is the embedded one.
pub fn run(spec: &WorkloadSpec, options: &ServerOptions, soak: &SoakOptions) -> anyhow::Result<()> {
    let Target::Embedded { cores, wal_mode } = &options.target else {
        bail!("--duration samples the server's process: run it with the embedded server");
    };
    let generation = WorkloadSpec {
        rows: spec.batch * ROUNDS_GENERATED,
        out_of_order_ratio: 0.0,
        ..spec.clone()
    };
    let generated = workload::generate(&generation);
    let mut rounds: Vec<Round> = (0..ROUNDS_GENERATED)
        .map(|_| Round {
            tablets: Vec::new(),
        })
        .collect();
    for (index, request) in generated.iter().enumerate() {
        let wire = server_mode::to_wire(&request.tablet);
        let points = (wire.timestamps.len() * wire.columns.len()) as u64;
        rounds[index / spec.devices].tablets.push((
            wire.device.clone(),
            wire.timestamps[0],
            points,
            wire,
        ));
    }
    let server = EmbeddedServer::start(*cores, wal_mode)?;
    let pid = server.child.id();
    let data_dir = server.data_dir.path().to_path_buf();
    let address = server.address;
    eprintln!(
        "soak: {} points/s for {:?} against pid {pid}, sampling every second",
        soak.rate, soak.duration
    );

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, acknowledged, stop, data_dir) = (
            samples.clone(),
            acknowledged.clone(),
            stop.clone(),
            data_dir.clone(),
        );
        std::thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let sample = Sample {
                    rss_bytes: rss_bytes(pid).unwrap_or(0),
                    open_files: open_files(pid),
                    wal_bytes: wal_bytes(&data_dir),
                    points_acknowledged: acknowledged.load(Ordering::Relaxed),
                };
                samples.lock().expect("samples").push(sample);
                next += Duration::from_secs(1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };

    let mut runtime = iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .context("building the client runtime")?;
    let outcome = runtime.block_on(write_at_rate(
        spec,
        options,
        address,
        &rounds,
        soak,
        acknowledged.clone(),
    ));
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (written, elapsed, errors) = outcome?;
    drop(server);

    let samples = samples.lock().expect("samples").clone();
    println!();
    println!(
        "soak: {written} points acknowledged in {:.1} s ({:.0} points/s, asked {}), {errors} errors",
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        soak.rate
    );
    let bucket = bucket_seconds(samples.len());
    println!(
        "one column per {bucket} s (its highest sample); \"second half\": the range over the \
         second half of the run, where a warm server must be flat or a steady sawtooth"
    );
    plot("RSS (MiB)", &samples, bucket, |s| {
        s.rss_bytes as f64 / (1 << 20) as f64
    });
    plot("open files", &samples, bucket, |s| s.open_files as f64);
    plot("WAL (MiB)", &samples, bucket, |s| {
        s.wal_bytes as f64 / (1 << 20) as f64
    });
    let rates: Vec<Sample> = samples
        .windows(2)
        .map(|pair| Sample {
            points_acknowledged: pair[1]
                .points_acknowledged
                .saturating_sub(pair[0].points_acknowledged),
            ..pair[1]
        })
        .collect();
    plot("points/s", &rates, bucket, |s| s.points_acknowledged as f64);
    if errors > 0 {
        bail!("{errors} write requests failed during the soak");
    }
    Ok(())
}

/// Sends the rounds' tablets at `rate` points per second for `duration`, each to its
/// shard's connection; returns the points acknowledged, the time taken and the errors.
async fn write_at_rate(
    spec: &WorkloadSpec,
    options: &ServerOptions,
    address: std::net::SocketAddr,
    rounds: &[Round],
    soak: &SoakOptions,
    acknowledged: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<(u64, Duration, u64)> {
    let mut admin = server_mode::connect_admin(spec, options, address).await?;
    let mut client = ShardClient::connect(address, options).await?;
    let mut route = admin
        .fetch_route_table(0)
        .await?
        .unwrap_or_else(RouteTable::empty);
    let round_span_ms = spec.batch as i64 * spec.interval_ms;
    let started = Instant::now();
    let mut due_points = 0.0f64;
    let mut written = 0u64;
    let mut errors = 0u64;
    let mut sequence = 0usize;
    let mut misses = 0usize;
    let pipeline = options.pipeline.max(1);
    while started.elapsed() < soak.duration {
        let target = started.elapsed().as_secs_f64() * soak.rate as f64;
        let mut in_flight: VecDeque<(usize, u64, u64)> = VecDeque::new();
        while due_points < target {
            let round_number = sequence / spec.devices;
            let round = &rounds[round_number % rounds.len()];
            let (device, first_time, points, wire) = &round.tablets[sequence % spec.devices];
            let shift = (round_number / rounds.len()) as i64 * rounds.len() as i64 * round_span_ms;
            let mut tablet = wire.clone();
            tablet.timestamps.iter_mut().for_each(|t| *t += shift);
            let body: Bytes = iotdb_net::encode_insert_tablets(std::slice::from_ref(&tablet));
            let shard = route
                .route_for(device, first_time + shift)
                .map(|t| t.shard_id as usize)
                .filter(|shard| *shard < client.connections.len())
                .unwrap_or_else(|| {
                    misses += 1;
                    sequence % client.connections.len()
                });
            let id = client.connections[shard]
                .send_body(Opcode::InsertTablets, body)
                .await?;
            in_flight.push_back((shard, id, *points));
            due_points += *points as f64;
            sequence += 1;
            if in_flight.len() >= pipeline {
                let (shard, id, points) = in_flight.pop_front().expect("in flight");
                record(&mut client, shard, id, points, &mut written, &mut errors).await;
            }
        }
        while let Some((shard, id, points)) = in_flight.pop_front() {
            record(&mut client, shard, id, points, &mut written, &mut errors).await;
        }
        acknowledged.store(written, Ordering::Relaxed);
        if misses >= 64 {
            misses = 0;
            if let Some(table) = admin.fetch_route_table(route.version()).await? {
                route = table;
            }
        }
        monoio::time::sleep(TICK).await;
    }
    Ok((written, started.elapsed(), errors))
}

async fn record(
    client: &mut ShardClient,
    shard: usize,
    id: u64,
    points: u64,
    written: &mut u64,
    errors: &mut u64,
) {
    match client.connections[shard].receive(id).await {
        Ok(_) => *written += points,
        Err(error) => {
            *errors += 1;
            eprintln!("write failed: {error}");
        }
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count() as u64)
}

/// Bytes of every file under a `wal` directory below `dir`.
fn wal_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, in_wal: bool, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path: PathBuf = entry.path();
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                walk(&path, in_wal || entry.file_name() == "wal", total);
            } else if in_wal {
                *total += metadata.len();
            }
        }
    }
    let mut total = 0;
    walk(dir, false, &mut total);
    total
}

fn bucket_seconds(samples: usize) -> usize {
    samples.div_ceil(PLOT_WIDTH).max(1)
}

/// One row of eighth-block characters (each column the highest sample of its `bucket`),
/// then min, max and last, and the range over the second half of the run.
fn plot(label: &str, samples: &[Sample], bucket: usize, value: impl Fn(&Sample) -> f64) {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if samples.is_empty() {
        println!("{label:>12} (no samples)");
        return;
    }
    let values: Vec<f64> = samples.iter().map(&value).collect();
    let range = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    };
    let (min, max) = range(&values);
    let (late_min, late_max) = range(&values[values.len() / 2..]);
    let last = *values.last().expect("not empty");
    let line: String = values
        .chunks(bucket.max(1))
        .map(|chunk| {
            let peak = chunk.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let level = if max > min {
                ((peak - min) / (max - min) * 7.0).round() as usize
            } else {
                0
            };
            LEVELS[level.min(7)]
        })
        .collect();
    println!(
        "{label:>12} {line}  min {min:.1}  max {max:.1}  last {last:.1}  second half {late_min:.1}..{late_max:.1}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn wal_bytes_counts_only_files_under_wal_directories() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("region-1").join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join("wal-1.log"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("region-1").join("x.sealed"), [0u8; 50]).unwrap();
        assert_eq!(wal_bytes(dir.path()), 100);
    }
}
