//! `iotdb-perf floor`: the least a write run of the workload's shape can cost on this
//! machine — the same request bytes from the same number of synchronous clients to a server
//! that does nothing with a request but make it durable and answer it.
//!
//! The floor server has the real server's shape and I/O: one pinned shard per core, each
//! with its own write-ahead log (`iotdb_storage::wal::Wal`: group commit, `O_DSYNC` direct
//! writes over zeros written ahead in sync mode), its own listener and io_uring loop. A
//! request is a length-prefixed frame holding the body `iotdb-perf` sends the real server
//! for that request (the encoded, checksummed tablet); the shard appends the body to its
//! log as one record, waits until it is durable and answers four bytes. No decoding, no
//! schema, no memtable, no flush. The clients run on one thread, as `iotdb-perf`'s do, each
//! with a connection to every shard and one request in flight; a request goes to the shard
//! its device falls to.
//!
//! What the real server adds to a synchronous client's request is then the difference
//! between `iotdb-perf --pipeline 1` and this, on the same machine in the same minute.
//!
//! ```text
//!  client 0..n (one thread) ──frame──► shard (device % shards)
//!                                         append to its WAL ─► group commit (O_DSYNC)
//!                           ◄──4 bytes──  once durable
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use iotdb_storage::WalMode;
use iotdb_storage::wal::{Wal, WalOptions};
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use serde::Serialize;

use crate::report::Spread;
use crate::server_mode;
use crate::workload::{self, WorkloadSpec};

/// The record kind the floor's logs hold (their only one).
const RECORD_KIND: u8 = 1;

/// The answer to a request: four bytes, as small as a status.
const ANSWER: [u8; 4] = *b"done";

/// A read takes at least this much room in a connection's buffer.
const READ_ROOM_BYTES: usize = 64 * 1024;

/// The largest request the floor server takes (a length past it is a broken client).
const REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How long the clients wait for the shards to listen.
const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// What `iotdb-perf floor` runs.
#[derive(Clone, Debug)]
pub struct FloorOptions {
    /// Shards of the floor server (`None`: every core).
    pub cores: Option<usize>,
    /// Synchronous clients: requests in flight.
    pub clients: usize,
    pub wal_mode: WalMode,
    /// The shards' logs go here (a temporary directory when `None`); put it on the disk
    /// the server's data directory would use.
    pub data_dir: Option<PathBuf>,
}

/// The floor's figures.
#[derive(Clone, Debug, Serialize)]
pub struct FloorReport {
    pub requests: u64,
    pub points: u64,
    pub request_bytes_median: usize,
    pub clients: usize,
    pub shards: usize,
    pub wal_mode: String,
    pub seconds: f64,
    pub points_per_second: f64,
    /// This process's CPU over the timed window: the clients and the floor server both.
    pub cpu_seconds: Option<f64>,
    pub cpu_micros_per_request: Option<f64>,
    /// Records in each shard's log when the shards stopped.
    pub records_by_shard: Vec<u64>,
}

impl FloorReport {
    pub fn print(&self) {
        println!(
            "floor: {} requests of the workload ({} points, {} bytes a request at the median) \
             from {} synchronous clients to {} shards; each request appended to its shard's \
             WAL ({}) and answered once durable, nothing else",
            self.requests,
            self.points,
            self.request_bytes_median,
            self.clients,
            self.shards,
            self.wal_mode
        );
        println!(
            "floor write: {:.3} s, {:.2} M points/s",
            self.seconds,
            self.points_per_second / 1e6
        );
        if let (Some(cpu), Some(per_request)) = (self.cpu_seconds, self.cpu_micros_per_request) {
            println!(
                "floor cpu (clients and server, one process): {cpu:.3} s, {per_request:.0} µs a \
                 request"
            );
        }
        println!(
            "records per shard: {}",
            self.records_by_shard
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "compare: iotdb-perf --pipeline 1 --clients {} with the same workload (its write \
             phase); the difference is what the real server does with a request",
            self.clients
        );
    }
}

/// `runs` floor runs, each on fresh logs: every run's figures, then the medians where
/// there are several; all of them as JSON to `json` if given.
pub fn run_all(
    spec: &WorkloadSpec,
    options: &FloorOptions,
    runs: usize,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    if runs > 1 && options.data_dir.is_some() {
        bail!("--runs needs fresh logs for every run: leave out floor's --data-dir");
    }
    let mut reports = Vec::with_capacity(runs);
    for run_number in 1..=runs {
        if runs > 1 {
            println!("floor run {run_number} of {runs}");
        }
        let report = run(spec, options)?;
        report.print();
        reports.push(report);
    }
    let median = |figure: fn(&FloorReport) -> Option<f64>| {
        Spread::of(reports.iter().map(figure)).map(|spread| spread.median)
    };
    if runs > 1
        && let (Some(rate), Some(seconds)) = (
            median(|r| Some(r.points_per_second)),
            median(|r| Some(r.seconds)),
        )
    {
        println!(
            "floor medians of {runs} runs: {seconds:.3} s, {:.2} M points/s, {} µs CPU a request",
            rate / 1e6,
            median(|r| r.cpu_micros_per_request).map_or("?".to_string(), |us| format!("{us:.0}"))
        );
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs the workload's requests against the floor server and returns its figures.
pub fn run(spec: &WorkloadSpec, options: &FloorOptions) -> anyhow::Result<FloorReport> {
    if options.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let generated = workload::generate(spec);
    let device_index: HashMap<String, usize> = (0..spec.devices)
        .map(|d| (spec.device_path(d), d))
        .collect();
    let requests: Vec<(usize, Bytes)> = generated
        .iter()
        .map(|request| {
            let body = server_mode::request_body(&server_mode::to_wire(&request.tablet));
            let device = device_index
                .get(&*request.tablet.device)
                .copied()
                .unwrap_or(0);
            (device, body.body().clone())
        })
        .collect();
    drop(generated);
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let shards = options
        .cores
        .unwrap_or_else(iotdb_runtime::available_cores)
        .max(1);
    let (addresses, server) = start_server(&dir, shards, options.wal_mode)?;
    let mut sizes: Vec<usize> = requests.iter().map(|(_, body)| body.len()).collect();
    sizes.sort_unstable();
    let request_bytes_median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    let requests = Rc::new(requests);
    let mut runtime = iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .context("building the client runtime")?;
    let timed = runtime.block_on(drive(&addresses, options.clients, requests.clone()));
    // The clients' tasks, and with them their connections, go with the runtime: a shard
    // waiting on a connection a failed run left open would never stop.
    drop(runtime);
    let stopped = stop_server(server);
    // A client's failure explains a shard's (a connection closed inside a request).
    let (seconds, cpu_seconds) = timed?;
    let records_by_shard = stopped?;
    let request_count = requests.len() as u64;
    Ok(FloorReport {
        requests: request_count,
        points: spec.points(),
        request_bytes_median,
        clients: options.clients,
        shards,
        wal_mode: options.wal_mode.name().to_string(),
        seconds,
        points_per_second: spec.points() as f64 / seconds.max(f64::MIN_POSITIVE),
        cpu_seconds,
        cpu_micros_per_request: cpu_seconds.map(|cpu| cpu * 1e6 / (request_count.max(1) as f64)),
        records_by_shard,
    })
}

/// The floor server's shards.
type Server = iotdb_runtime::ShardSet<anyhow::Result<u64>>;

/// Starts one shard per core, each listening on a loopback port with its own log in
/// `dir/shard-<i>`; returns their addresses in shard order.
fn start_server(
    dir: &Path,
    shards: usize,
    mode: WalMode,
) -> anyhow::Result<(Vec<SocketAddr>, Server)> {
    let (sender, receiver) = mpsc::channel::<(usize, anyhow::Result<SocketAddr>)>();
    let dir = dir.to_path_buf();
    let set = iotdb_runtime::ShardSetBuilder::new()
        .cores(shards)
        .start::<(), _, _, _>(move |context| {
            let (sender, dir) = (sender.clone(), dir.clone());
            async move { serve_shard(context, &dir, mode, sender).await }
        })
        .context("starting the floor server's shards")?;
    let mut addresses = vec![None; shards];
    let deadline = Instant::now() + LISTEN_WAIT;
    while addresses.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (shard, address) = receiver.recv_timeout(left).map_err(|_| {
            anyhow!("the floor server's shards did not listen within {LISTEN_WAIT:?}")
        })?;
        addresses[shard] = Some(address.with_context(|| format!("floor shard {shard}"))?);
    }
    Ok((addresses.into_iter().flatten().collect(), set))
}

/// Stops the shards; returns the records each one's log held.
fn stop_server(server: Server) -> anyhow::Result<Vec<u64>> {
    server
        .shutdown()
        .into_iter()
        .enumerate()
        .map(|(shard, result)| {
            result
                .map_err(|e| anyhow!("floor shard {shard}: {e}"))?
                .with_context(|| format!("floor shard {shard}"))
        })
        .collect()
}

/// One shard: its log, its listener, a task per connection; returns the records its log
/// holds once stopped (checked by reopening it).
async fn serve_shard(
    context: iotdb_runtime::ShardContext<()>,
    dir: &Path,
    mode: WalMode,
    ready: mpsc::Sender<(usize, anyhow::Result<SocketAddr>)>,
) -> anyhow::Result<u64> {
    let shard = usize::from(context.id.0);
    let log_dir = dir.join(format!("shard-{shard}"));
    let options = WalOptions {
        mode,
        ..WalOptions::default()
    };
    let opened = Wal::open(&log_dir, options)
        .with_context(|| format!("opening {}", log_dir.display()))
        .and_then(|(wal, records)| {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
            let address = listener.local_addr().context("the listener's address")?;
            Ok((
                wal,
                records.last().map_or(0, |r| r.index),
                listener,
                address,
            ))
        });
    let (wal, last_index, listener, address) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let message = format!("{error:#}");
            let _ = ready.send((shard, Err(error)));
            bail!(message);
        }
    };
    let _ = ready.send((shard, Ok(address)));
    let wal = Rc::new(wal);
    let next_index = Rc::new(Cell::new(last_index + 1));
    let first_index = last_index + 1;
    let mut connections = Vec::new();
    loop {
        monoio::select! {
            () = context.stop.wait() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted.context("accepting a client")?;
                stream.set_nodelay(true).context("setting TCP_NODELAY")?;
                connections.push(monoio::spawn(serve_connection(
                    stream,
                    wal.clone(),
                    next_index.clone(),
                )));
            }
        }
    }
    for connection in connections {
        connection.await?;
    }
    let written = next_index.get() - first_index;
    let wal = Rc::into_inner(wal).ok_or_else(|| anyhow!("the log is still shared"))?;
    wal.close().await.context("closing the log")?;
    if mode == WalMode::Off {
        // The log keeps nothing in this mode.
        return Ok(written);
    }
    // Every answered request is in the log: count what a reopening reads back.
    let (_, records) = Wal::open(&log_dir, options).context("reopening the log")?;
    let read_back = records.iter().filter(|r| r.index >= first_index).count() as u64;
    if read_back != written {
        bail!("the log holds {read_back} of the {written} records appended");
    }
    Ok(written)
}

/// Serves one client connection until it closes: each frame (`u32` length, little-endian,
/// then the body) appended to the log, answered once durable.
async fn serve_connection(
    mut stream: TcpStream,
    wal: Rc<Wal>,
    next_index: Rc<Cell<u64>>,
) -> anyhow::Result<()> {
    let mut buffer = Vec::with_capacity(READ_ROOM_BYTES);
    loop {
        let Some(frame_end) = frame_end(&buffer)? else {
            if buffer.capacity() - buffer.len() < READ_ROOM_BYTES {
                buffer.reserve(READ_ROOM_BYTES);
            }
            let (length, capacity) = (buffer.len(), buffer.capacity());
            let (read, returned) = stream.read(SliceMut::new(buffer, length, capacity)).await;
            buffer = returned.into_inner();
            if read.context("reading a request")? == 0 {
                if buffer.is_empty() {
                    return Ok(());
                }
                bail!("a client closed its connection inside a request");
            }
            continue;
        };
        let index = next_index.get();
        next_index.set(index + 1);
        wal.append(index, RECORD_KIND, &buffer[4..frame_end])
            .context("appending a request")?;
        buffer.drain(..frame_end);
        wal.wait_durable(index)
            .await
            .context("waiting for the log")?;
        let (written, _) = stream.write_all(ANSWER.to_vec()).await;
        written.context("answering")?;
    }
}

/// Where the first whole frame in `buffer` ends, if it holds one.
fn frame_end(buffer: &[u8]) -> anyhow::Result<Option<usize>> {
    let Some(header) = buffer.first_chunk::<4>() else {
        return Ok(None);
    };
    let length = u32::from_le_bytes(*header) as usize;
    if length > REQUEST_BYTES_MAX {
        bail!("a request of {length} bytes (the most is {REQUEST_BYTES_MAX})");
    }
    Ok((buffer.len() >= 4 + length).then_some(4 + length))
}

/// The clients: each with a connection to every shard and one request in flight, taking
/// the next request of the workload in turn. Returns the wall seconds and this process's
/// CPU seconds from the first request to the last answer.
async fn drive(
    addresses: &[SocketAddr],
    clients: usize,
    requests: Rc<Vec<(usize, Bytes)>>,
) -> anyhow::Result<(f64, Option<f64>)> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut streams = Vec::with_capacity(addresses.len());
        for address in addresses {
            let stream = TcpStream::connect_addr(*address)
                .await
                .with_context(|| format!("connecting to floor shard {address}"))?;
            stream.set_nodelay(true).context("setting TCP_NODELAY")?;
            streams.push(stream);
        }
        connections.push(streams);
    }
    let next = Rc::new(Cell::new(0usize));
    let pid = std::process::id();
    let cpu_before = crate::report::process_cpu_seconds(pid);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for streams in connections {
        tasks.push(monoio::spawn(client(
            streams,
            requests.clone(),
            next.clone(),
        )));
    }
    let mut closing = Vec::with_capacity(clients);
    for task in tasks {
        closing.push(task.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::report::process_cpu_seconds(pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    for streams in closing {
        for mut stream in streams {
            // Closing our end ends the shard's connection task.
            let _ = stream.shutdown().await;
        }
    }
    Ok((seconds, cpu))
}

/// One synchronous client: a request, its answer, the next.
async fn client(
    mut streams: Vec<TcpStream>,
    requests: Rc<Vec<(usize, Bytes)>>,
    next: Rc<Cell<usize>>,
) -> anyhow::Result<Vec<TcpStream>> {
    let mut frame = Vec::new();
    let mut answer = Vec::with_capacity(ANSWER.len());
    loop {
        let i = next.get();
        let Some((device, body)) = requests.get(i) else {
            return Ok(streams);
        };
        next.set(i + 1);
        let shard = device % streams.len();
        let stream = &mut streams[shard];
        let length = u32::try_from(body.len()).context("a request over 4 GiB")?;
        frame.clear();
        frame.extend_from_slice(&length.to_le_bytes());
        frame.extend_from_slice(body);
        let (written, returned) = stream.write_all(frame).await;
        frame = returned;
        written.context("sending a request")?;
        answer.clear();
        while answer.len() < ANSWER.len() {
            let filled = answer.len();
            let (read, returned) = stream.read(answer.slice_mut(filled..ANSWER.len())).await;
            answer = returned.into_inner();
            if read.context("reading an answer")? == 0 {
                bail!("a floor shard closed the connection");
            }
        }
        if answer != ANSWER {
            bail!("a floor shard answered {answer:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            database: "root.floor".into(),
            devices: 7,
            sensors: 3,
            rows: 20,
            batch: 10,
            interval_ms: 1000,
            types: vec![iotdb_storage::DataType::Double; 3],
            out_of_order_ratio: 0.0,
            seed: 42,
        }
    }

    #[test]
    fn every_request_is_answered_once_durable_in_its_shards_log() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let spec = spec();
        let report = run(
            &spec,
            &FloorOptions {
                cores: Some(2),
                clients: 3,
                wal_mode: WalMode::Sync,
                data_dir: Some(dir.path().to_path_buf()),
            },
        )
        .expect("floor run");
        // 7 devices × 2 batches: devices 0, 2, 4, 6 on shard 0, the rest on shard 1.
        assert_eq!(report.requests, 14);
        assert_eq!(report.records_by_shard, vec![8, 6]);
        assert_eq!(report.points, spec.points());
        // The logs hold the request bodies as sent.
        let generated = workload::generate(&spec);
        let (_, records) =
            Wal::open(&dir.path().join("shard-1"), WalOptions::default()).expect("reopen");
        let mut bodies: Vec<Bytes> = records.into_iter().map(|r| r.payload).collect();
        let mut expected: Vec<Bytes> = generated
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 % 2 == 1)
            .map(|(_, r)| {
                server_mode::request_body(&server_mode::to_wire(&r.tablet))
                    .body()
                    .clone()
            })
            .collect();
        bodies.sort();
        expected.sort();
        assert_eq!(bodies, expected);
    }

    #[test]
    fn a_frame_is_whole_only_with_its_body() {
        assert_eq!(frame_end(&[]).unwrap(), None);
        assert_eq!(frame_end(&[3, 0, 0]).unwrap(), None);
        assert_eq!(frame_end(&[3, 0, 0, 0, 1, 2]).unwrap(), None);
        assert_eq!(frame_end(&[3, 0, 0, 0, 1, 2, 3, 9]).unwrap(), Some(7));
        assert!(frame_end(&u32::MAX.to_le_bytes()).is_err());
    }
}
