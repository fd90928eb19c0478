//! The workload against a server over the wire: an embedded standalone server (this
//! binary re-executed as `iotdb-perf serve`, so its CPU time is its own), a local cluster
//! (`--cluster`, every node's CPU summed), or running servers given by `--endpoints`.
//!
//! Each client task keeps up to `pipeline` requests in flight. How it reaches a cluster is
//! its [`Route`]: every client on the first DataNode (`one`), the clients spread over the
//! DataNodes (`spread`), both with a connection per core of their DataNode and the server
//! forwarding what another DataNode leads, or each client a `ShardAwareClient` seeded with
//! every DataNode that sends each request to the (DataNode, core) leading its region
//! group (`shard-aware`, no hop).
//!
//! ```text
//!  one          client 0..n ──► DN1 ─┬─ leads it: its core
//!                                    └─ else: forward ──► DN2 / DN3 (one hop)
//!  spread       client i ──► DN(i % n) ─ same as above
//!  shard-aware  client i ──► DN and core leading the tablet's group (route table)
//! ```

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use iotdb_net::{
    AggregateQuery, Aggregation, AsyncCalls, AsyncClient, ChecksummedBody, ClientConfig,
    ClientError, CreateDatabase, Destination, GroupByWindow, Opcode, RawQuery, RouteTable,
    SeriesSelection, ShardAwareClient, StatusCode, WireTablet,
};

use crate::progress::Progress;
use crate::report::{
    self, Concurrency, DiskBytes, FirstRound, Latencies, Phase, Report, Routing, WriteResult,
};
use crate::verify::{self, Expected};
use crate::workload::{self, T0_MS, WorkloadSpec};

/// How a server is reached.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start one: shards (`None`: every core) and WAL mode.
    Embedded {
        cores: Option<usize>,
        wal_mode: String,
    },
    Endpoints(Vec<SocketAddr>),
    /// Start a local cluster (`crate::cluster_mode`): its shape, each DataNode's shards
    /// and WAL mode, and settings (`key=value`) for every node.
    Cluster {
        shape: crate::cluster_mode::Shape,
        cores: Option<usize>,
        wal_mode: String,
        settings: Vec<String>,
    },
}

/// How the write clients reach the servers (`--route`). Against one server the three
/// differ only in the connections: `one` and `spread` hold one per core of it,
/// `shard-aware` one per core it writes to plus a default connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// Every client talks to the first DataNode (a connection per core); it forwards the
    /// writes for region groups led elsewhere (one hop).
    One,
    /// Client `i` talks to DataNode `i % n` (a connection per core), which forwards what it
    /// does not lead.
    Spread,
    /// Each client is a `ShardAwareClient` seeded with every DataNode (the list rotated by
    /// the client's index, so the default connections spread), sending each write to the
    /// DataNode and core leading its region group: no hop.
    ShardAware,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::One => "one",
            Route::Spread => "spread",
            Route::ShardAware => "shard-aware",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Route::One => {
                "every client on the first DataNode, which forwards what another DataNode leads"
            }
            Route::Spread => {
                "client i on DataNode i % n, which forwards what another DataNode leads"
            }
            Route::ShardAware => {
                "shard-aware clients seeded with every DataNode: each write to the DataNode \
                 and core leading its region group"
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub target: Target,
    pub route: Route,
    pub clients: usize,
    /// Requests each client keeps in flight.
    pub pipeline: usize,
    pub query_repeat: usize,
    pub user: String,
    pub password: String,
}

/// A server process this run started; stopped (SIGTERM) and its directory removed on drop.
pub(crate) struct EmbeddedServer {
    pub(crate) child: Child,
    pub(crate) address: SocketAddr,
    pub(crate) data_dir: tempfile::TempDir,
    cores: Option<usize>,
    wal_mode: String,
}

impl EmbeddedServer {
    pub(crate) fn start(cores: Option<usize>, wal_mode: &str) -> anyhow::Result<EmbeddedServer> {
        let data_dir = tempfile::tempdir().context("creating the server's data directory")?;
        let (child, address) = spawn_server(data_dir.path(), cores, wal_mode)?;
        Ok(EmbeddedServer {
            child,
            address,
            data_dir,
            cores,
            wal_mode: wal_mode.to_owned(),
        })
    }

    /// Stops the server cleanly and starts it again on the same data directory (on a new
    /// port).
    fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let (child, address) = spawn_server(self.data_dir.path(), self.cores, &self.wal_mode)?;
        self.child = child;
        self.address = address;
        Ok(())
    }

    /// SIGTERM (a clean stop: every region flushed), then SIGKILL after a minute. Does
    /// nothing once the process has exited.
    fn stop(&mut self) {
        crate::cluster_mode::stop(&mut self.child);
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `iotdb-perf serve` on `data_dir` and waits for its ready line.
fn spawn_server(
    data_dir: &Path,
    cores: Option<usize>,
    wal_mode: &str,
) -> anyhow::Result<(Child, SocketAddr)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--rpc-address",
            "127.0.0.1",
            "--rpc-port",
            "0",
            "--wal-mode",
            wal_mode,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(cores) = cores {
        command.arg("--cores").arg(cores.to_string());
    }
    let mut child = command.spawn().context("starting the embedded server")?;
    let rest = crate::cluster_mode::wait_ready(
        &mut child,
        "the embedded server",
        iotdb_node::server::READY_LINE_PREFIX,
    )?;
    let address = rest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse::<SocketAddr>()
        .with_context(|| format!("server address in {rest:?}"))?;
    eprintln!("embedded server pid {} on {address}", child.id());
    Ok((child, address))
}

/// The wire tablet of a generated request.
pub(crate) fn to_wire(tablet: &iotdb_storage::Tablet) -> WireTablet {
    iotdb_node::datanode::convert::to_wire_tablet(tablet)
}

/// The insert body `iotdb-perf` sends for `wire`, encoded and checksummed.
pub(crate) fn request_body(wire: &WireTablet) -> ChecksummedBody {
    ChecksummedBody::new(iotdb_net::encode_insert_tablets(std::slice::from_ref(wire)))
}

struct Prepared {
    device: String,
    first_time: i64,
    points: u64,
    /// Encoded and checksummed before timing, as the workload prescribes.
    body: ChecksummedBody,
}

pub(crate) fn client_config(options: &ServerOptions, shard: Option<u32>) -> ClientConfig {
    ClientConfig {
        user: options.user.clone(),
        password: options.password.clone(),
        client_name: "iotdb-perf".into(),
        target_shard: shard,
        ..ClientConfig::default()
    }
}

/// One client: a connection per shard of the first endpoint (the standalone case) plus the
/// route table to pick among them.
pub(crate) struct ShardClient {
    pub(crate) connections: Vec<AsyncClient>,
}

impl ShardClient {
    pub(crate) async fn connect(
        address: SocketAddr,
        options: &ServerOptions,
    ) -> Result<ShardClient, ClientError> {
        let first = AsyncClient::connect(address, &client_config(options, Some(0))).await?;
        let shards = first.accepted().shard_count.max(1);
        let mut connections = vec![first];
        for shard in 1..shards {
            connections
                .push(AsyncClient::connect(address, &client_config(options, Some(shard))).await?);
        }
        Ok(ShardClient { connections })
    }
}

/// One write client: how it picks the connection of each request.
enum Writer {
    /// Every core of one DataNode (`one`, `spread`): a write goes to the core leading its
    /// region group when this DataNode leads it, otherwise to any core (by request index),
    /// which forwards it to the DataNode that leads.
    Pinned {
        client: ShardClient,
        /// The DataNode the client talks to, as the route table names it.
        data_node_id: u32,
    },
    ShardAware(Box<ShardAwareClient>),
}

/// The connection a write went out on, where its answer is received.
#[derive(Clone, Debug)]
enum Lane {
    Shard(usize),
    Routed(Destination),
}

/// Where a write goes, and whether that is its region group's leader itself.
struct Choice {
    lane: Lane,
    /// The DataNode and core that lead the write's group (by the client's route table).
    direct: bool,
    /// The route table does not know the write's group yet.
    miss: bool,
}

impl Writer {
    async fn connect(
        route: Route,
        index: usize,
        addresses: &[SocketAddr],
        options: &ServerOptions,
    ) -> Result<Writer, ClientError> {
        let pinned = match route {
            Route::One => addresses[0],
            Route::Spread => addresses[index % addresses.len()],
            Route::ShardAware => {
                let mut seeds = addresses.to_vec();
                seeds.rotate_left(index % addresses.len());
                let client =
                    ShardAwareClient::connect(&seeds, client_config(options, None)).await?;
                return Ok(Writer::ShardAware(Box::new(client)));
            }
        };
        let client = ShardClient::connect(pinned, options).await?;
        let data_node_id = client.connections[0].accepted().data_node_id;
        Ok(Writer::Pinned {
            client,
            data_node_id,
        })
    }

    /// Connections open now (after the writes: every one the client used).
    fn connection_count(&self) -> usize {
        match self {
            Writer::Pinned { client, .. } => client.connections.len(),
            Writer::ShardAware(client) => client.shard_connection_count() + 1,
        }
    }

    /// Where request `index` goes. `route` is the run's shared table (pinned clients);
    /// a shard-aware client has its own.
    fn choose(&self, request: &Prepared, index: usize, route: &RouteTable) -> Choice {
        match self {
            Writer::Pinned {
                client,
                data_node_id,
            } => {
                let shards = client.connections.len();
                let target = route.route_for(&request.device, request.first_time);
                match target {
                    Some(t)
                        if t.data_node_id == *data_node_id && (t.shard_id as usize) < shards =>
                    {
                        Choice {
                            lane: Lane::Shard(t.shard_id as usize),
                            direct: true,
                            miss: false,
                        }
                    }
                    _ => Choice {
                        lane: Lane::Shard(index % shards),
                        direct: false,
                        miss: target.is_none(),
                    },
                }
            }
            Writer::ShardAware(client) => {
                let destination = client.destination(&request.device, request.first_time);
                let routed = destination != Destination::Default;
                Choice {
                    lane: Lane::Routed(destination),
                    direct: routed,
                    miss: !routed,
                }
            }
        }
    }

    async fn send(&mut self, lane: &Lane, body: ChecksummedBody) -> Result<u64, ClientError> {
        let connection = match (self, lane) {
            (Writer::Pinned { client, .. }, Lane::Shard(shard)) => &mut client.connections[*shard],
            (Writer::ShardAware(client), Lane::Routed(destination)) => {
                client.connection(destination).await?
            }
            _ => unreachable!("a lane comes from its own writer"),
        };
        connection
            .send_checksummed(Opcode::InsertTablets, body)
            .await
    }

    async fn receive(&mut self, lane: &Lane, id: u64) -> Result<(), ClientError> {
        let result = match (&mut *self, lane) {
            (Writer::Pinned { client, .. }, Lane::Shard(shard)) => {
                client.connections[*shard].receive(id).await
            }
            (Writer::ShardAware(client), Lane::Routed(destination)) => {
                match client.open_connection(destination) {
                    Some(connection) => connection.receive(id).await,
                    None => Err(ClientError::Unavailable(format!(
                        "the connection to {destination:?} was dropped"
                    ))),
                }
            }
            _ => unreachable!("a lane comes from its own writer"),
        };
        if let (Err(error), Writer::ShardAware(client), Lane::Routed(destination)) =
            (&result, self, lane)
        {
            client.forget(destination, error);
        }
        result.map(|_| ())
    }

    /// Learns the partitions the servers created since the table was fetched (the
    /// writes that missed were routed by the server that received them).
    async fn refresh_route(&mut self, route: &RefCell<RouteTable>) -> Result<(), ClientError> {
        match self {
            Writer::Pinned { client, .. } => {
                let known = route.borrow().version();
                if let Some(table) = client.connections[0].fetch_route_table(known).await? {
                    *route.borrow_mut() = table;
                }
                Ok(())
            }
            Writer::ShardAware(client) => client.refresh_route_table().await,
        }
    }
}

/// Runs the workload against the target and returns its figures.
pub fn run(spec: &WorkloadSpec, options: &ServerOptions) -> anyhow::Result<Report> {
    eprintln!("generating {} points ...", spec.points());
    let generated = workload::generate(spec);
    let expected = Rc::new(Expected::of(spec, &generated));
    let requests: Vec<Prepared> = generated
        .into_iter()
        .map(|r| {
            let wire = to_wire(&r.tablet);
            Prepared {
                device: wire.device.clone(),
                first_time: wire.timestamps[0],
                points: (wire.timestamps.len() * wire.columns.len()) as u64,
                body: request_body(&wire),
            }
        })
        .collect();
    let mut server = match &options.target {
        Target::Embedded { cores, wal_mode } => Some(EmbeddedServer::start(*cores, wal_mode)?),
        Target::Endpoints(_) | Target::Cluster { .. } => None,
    };
    let cluster = match &options.target {
        Target::Cluster {
            shape,
            cores,
            wal_mode,
            settings,
        } => Some(crate::cluster_mode::EmbeddedCluster::start(
            *shape, *cores, wal_mode, settings,
        )?),
        _ => None,
    };
    let addresses = match (&server, &cluster, &options.target) {
        (Some(s), _, _) => vec![s.address],
        (_, Some(c), _) => c.endpoints.clone(),
        (_, _, Target::Endpoints(list)) if list.is_empty() => {
            return Err(anyhow!("--endpoints is empty"));
        }
        (_, _, Target::Endpoints(list)) => list.clone(),
        _ => unreachable!("embedded and cluster targets start servers"),
    };
    let server_pids: Vec<u32> = match (&server, &cluster) {
        (Some(s), _) => vec![s.child.id()],
        (_, Some(c)) => c.pids(),
        _ => Vec::new(),
    };
    let mut runtime = iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .context("building the client runtime")?;
    let mut report = runtime.block_on(drive(
        spec,
        options,
        &addresses,
        requests,
        &server_pids,
        cluster
            .as_ref()
            .map_or(0, crate::cluster_mode::EmbeddedCluster::config_node_count),
        expected.clone(),
    ))?;
    report.mode = match &options.target {
        Target::Embedded { .. } => "embedded".into(),
        Target::Endpoints(list) => format!("endpoints {}", addresses_text(list)),
        Target::Cluster {
            shape, settings, ..
        } => format!("cluster {shape} ({})", settings.join(" ")),
    };
    drop(cluster);
    if let Some(server) = &mut server {
        let points = spec.points() as f64;
        let by_kind = dir_bytes_by_kind(server.data_dir.path());
        let bytes = by_kind.total();
        report.disk_bytes = Some(bytes);
        report.disk_bytes_by_kind = Some(by_kind);
        report.bytes_per_point = Some(bytes as f64 / points);
        report.compaction_settle_seconds = settle_compaction(server.data_dir.path());
        let bytes = dir_bytes_by_kind(server.data_dir.path()).total();
        report.disk_bytes_compacted = Some(bytes);
        report.bytes_per_point_compacted = Some(bytes as f64 / points);
        // What a restart reads back (sealed files, WAL replay) must match as well.
        server.restart().context("restarting the embedded server")?;
        let address = server.address;
        let verified = runtime.block_on(async {
            let mut admin = AsyncClient::connect(address, &client_config(options, None))
                .await
                .with_context(|| format!("connecting to {address} after the restart"))?;
            verify_all(&mut admin, spec, &expected).await
        })?;
        eprintln!("verified {verified} points after a restart");
        report.verified_after_restart = Some(verified);
        server.stop();
    }
    Ok(report)
}

/// Waits until the server processes use less than 5 % of a core over half a second (at
/// most 60 s); returns how long it took.
async fn settle_cluster(server_cpu: &impl Fn() -> Option<f64>) -> Duration {
    const WINDOW: Duration = Duration::from_millis(500);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let before = server_cpu();
        monoio::time::sleep(WINDOW).await;
        match (before, server_cpu()) {
            (Some(a), Some(b)) if b - a < 0.05 * WINDOW.as_secs_f64() => break,
            (Some(_), Some(_)) => {}
            _ => break,
        }
    }
    started.elapsed()
}

/// Reads every series of the workload back (one raw query per device) and checks its
/// count, time range and value checksum against the generator's; returns the points
/// verified. A mismatch is an error.
async fn verify_all(
    admin: &mut AsyncClient,
    spec: &WorkloadSpec,
    expected: &Expected,
) -> anyhow::Result<u64> {
    let measurements: Vec<String> = (0..spec.sensors).map(WorkloadSpec::sensor_name).collect();
    let mut verified = 0u64;
    for d in 0..spec.devices {
        let device = spec.device_path(d);
        let batches = admin
            .query_raw(RawQuery {
                series: vec![SeriesSelection {
                    device: device.clone(),
                    measurements: measurements.clone(),
                }],
                start_time: i64::MIN,
                end_time: i64::MAX,
                limit: None,
                offset: 0,
            })
            .await
            .with_context(|| format!("reading {device} back"))?;
        let digests = verify::digest_batches(&batches, &measurements)
            .with_context(|| format!("reading {device} back"))?;
        for (sensor, digest) in digests.iter().enumerate() {
            verified += expected.check(&device, sensor, digest)?;
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

/// Repeats of the cross-series query at most (it reads the whole workload each time).
const CROSS_SERIES_REPEAT_MAX: usize = 10;

/// The longest wait for compaction to settle after the final flush. A region compacts a
/// partition with several files once it has been cold for `compaction_cold_delay` (10 s),
/// then at its rate limit (64 MiB/s of points per region).
const COMPACTION_SETTLE_MAX: Duration = Duration::from_secs(300);
/// How often the data directory is looked at while waiting.
const COMPACTION_POLL: Duration = Duration::from_millis(250);
/// How often the wait prints a progress line.
const COMPACTION_PROGRESS: Duration = Duration::from_secs(5);

/// Waits until every time partition of every region under `dir` is one sealed file (what
/// compaction leaves once it has nothing more to do), printing progress; returns the
/// seconds it took, or `None` when [`COMPACTION_SETTLE_MAX`] passed first.
fn settle_compaction(dir: &Path) -> Option<f64> {
    let started = Instant::now();
    let mut last_progress = started;
    loop {
        let pending = partitions_with_several_files(dir);
        if pending == 0 {
            let seconds = started.elapsed().as_secs_f64();
            if seconds >= 1.0 {
                eprintln!("compaction settled in {seconds:.1} s");
            }
            return Some(seconds);
        }
        if started.elapsed() >= COMPACTION_SETTLE_MAX {
            eprintln!(
                "compaction did not settle within {COMPACTION_SETTLE_MAX:?}: {pending} partitions still hold several files"
            );
            return None;
        }
        if last_progress.elapsed() >= COMPACTION_PROGRESS {
            last_progress = Instant::now();
            eprintln!(
                "waiting for compaction: {pending} partitions hold several files ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(COMPACTION_POLL);
    }
}

/// How many (region, time partition) pairs under `dir` hold more than one sealed file.
/// Sealed files are named `<partition>-<seq|unseq>-<id>-L<level>.tsf` in a region's
/// `sealed/` directory.
fn partitions_with_several_files(dir: &Path) -> usize {
    let mut counts: std::collections::HashMap<(std::path::PathBuf, String), usize> =
        std::collections::HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".tsf") {
                // From the right: the partition number itself may be negative.
                let partition = stem.rsplitn(4, '-').nth(3).unwrap_or_default().to_owned();
                *counts.entry((current.clone(), partition)).or_default() += 1;
            }
        }
    }
    counts.values().filter(|&&n| n > 1).count()
}

/// Bytes of every file under `dir`, by kind: sealed files, WAL segments, the rest.
fn dir_bytes_by_kind(dir: &Path) -> DiskBytes {
    let mut bytes = DiskBytes::default();
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((current, in_wal)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                stack.push((entry.path(), in_wal || entry.file_name() == "wal"));
            } else if entry.file_name().to_string_lossy().ends_with(".tsf") {
                bytes.sealed += metadata.len();
            } else if in_wal {
                bytes.wal += metadata.len();
            } else {
                bytes.other += metadata.len();
            }
        }
    }
    bytes
}

fn addresses_text(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `addresses`: the servers (a cluster's DataNodes), reached by the write clients as
/// `options.route` says; the first one also serves the setup, the verification and the
/// queries.
async fn drive(
    spec: &WorkloadSpec,
    options: &ServerOptions,
    addresses: &[SocketAddr],
    requests: Vec<Prepared>,
    server_pids: &[u32],
    config_nodes: usize,
    expected: Rc<Expected>,
) -> anyhow::Result<Report> {
    let address = addresses[0];
    // Each server process's CPU seconds, and their total (`None` when a server is not
    // ours, or a process could not be read).
    let per_process = || -> Vec<Option<f64>> {
        server_pids
            .iter()
            .map(|pid| report::process_cpu_seconds(*pid))
            .collect()
    };
    let total = |readings: &[Option<f64>]| -> Option<f64> {
        if readings.is_empty() {
            return None;
        }
        readings.iter().copied().sum()
    };
    let server_cpu = || total(&per_process());
    let mut admin = connect_admin(spec, options, address).await?;

    // Write, then flush: the timed window ends when every point is in sealed files.
    let route = Rc::new(RefCell::new(
        admin
            .fetch_route_table(0)
            .await?
            .unwrap_or_else(RouteTable::empty),
    ));
    let requests = Rc::new(requests);
    let next = Rc::new(Cell::new(0usize));
    let errors = Rc::new(Cell::new(0u64));
    let retried = Rc::new(Cell::new(0u64));
    let latencies = Rc::new(RefCell::new(Latencies::default()));
    let direct = Rc::new(Cell::new(0u64));
    let first_round = Rc::new(FirstRoundClock::of(&requests));
    let mut clients = Vec::new();
    for index in 0..options.clients.max(1) {
        clients.push(
            Writer::connect(options.route, index, addresses, options)
                .await
                .with_context(|| {
                    format!(
                        "connecting client {index} ({}) to {}",
                        options.route.name(),
                        addresses_text(addresses)
                    )
                })?,
        );
    }
    let client_count = clients.len();
    let pipeline = options.pipeline.max(1);
    let per_process_before = per_process();
    let cpu_before = total(&per_process_before);
    let started = Instant::now();
    let progress = Progress::start("write", spec.points());
    let points_done = progress.counter();
    let mut tasks = Vec::new();
    for client in clients {
        let shared = WriteShared {
            requests: requests.clone(),
            next: next.clone(),
            errors: errors.clone(),
            retried: retried.clone(),
            direct: direct.clone(),
            latencies: latencies.clone(),
            route: route.clone(),
            points_done: points_done.clone(),
            first_round: first_round.clone(),
        };
        tasks.push(monoio::spawn(write_client(client, shared, pipeline)));
    }
    let mut writers = Vec::new();
    for task in tasks {
        writers.push(task.await?);
    }
    let concurrency = Concurrency {
        clients: client_count,
        connections_per_client: writers.first().map_or(0, Writer::connection_count),
        pipeline,
        requests_in_flight: client_count * pipeline,
    };
    drop(writers);
    let ingest_elapsed = started.elapsed();
    let ingest_cpu = server_cpu();
    progress.finish(ingest_elapsed).await;
    if errors.get() > 0 {
        bail!("{} write requests failed", errors.get());
    }
    if retried.get() > 0 {
        eprintln!(
            "{} write requests were answered 606/420 (not now, not here) and sent again",
            retried.get()
        );
    }
    admin.flush(Vec::new()).await.context("flushing")?;
    // FLUSH is node-local: every other DataNode flushes its own regions too.
    for endpoint in &addresses[1..] {
        let mut other = AsyncClient::connect(*endpoint, &client_config(options, None))
            .await
            .with_context(|| format!("connecting to {endpoint} to flush"))?;
        other
            .flush(Vec::new())
            .await
            .with_context(|| format!("flushing {endpoint}"))?;
    }
    let flush_elapsed = started.elapsed();
    if addresses.len() > 1 && !server_pids.is_empty() {
        // Replicas may still be applying what their leaders shipped: their work counts
        // too. Wait until the cluster is quiet, then flush every DataNode again.
        let settled = settle_cluster(&server_cpu).await;
        for endpoint in addresses {
            let mut node = AsyncClient::connect(*endpoint, &client_config(options, None))
                .await
                .with_context(|| format!("connecting to {endpoint} to flush"))?;
            node.flush(Vec::new())
                .await
                .with_context(|| format!("flushing {endpoint}"))?;
        }
        eprintln!(
            "the cluster went quiet {:.1} s after the flush (replicas caught up); its CPU \
             through the flush includes that",
            settled.as_secs_f64()
        );
    }
    let per_process_flushed = per_process();
    let flush_cpu = total(&per_process_flushed);
    // Where a cluster's CPU went, node by node (ConfigNodes first, then DataNodes).
    let mut server_cpu_by_process = Vec::new();
    if server_pids.len() > 1 {
        for (index, (before, after)) in per_process_before
            .iter()
            .zip(&per_process_flushed)
            .enumerate()
        {
            let seconds = match (before, after) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            };
            let name = if index < config_nodes {
                format!("ConfigNode {}", index + 1)
            } else {
                format!("DataNode {}", index + 1 - config_nodes)
            };
            server_cpu_by_process.push((name, seconds));
        }
        let data_nodes: f64 = server_cpu_by_process[config_nodes.min(server_pids.len())..]
            .iter()
            .map(|(_, seconds)| seconds)
            .sum();
        eprintln!(
            "DataNodes' cpu through the flush together {data_nodes:.3} s ({:.0} points per \
             DataNode CPU-second)",
            spec.points() as f64 / data_nodes.max(f64::MIN_POSITIVE)
        );
    }
    let cpu_since = |after: Option<f64>| match (cpu_before, after) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let latencies = latencies.borrow().clone();
    let points = spec.points();
    let mut write = WriteResult::new(
        points,
        requests.len() as u64,
        errors.get(),
        Phase::new(points, ingest_elapsed, cpu_since(ingest_cpu)),
        Phase::new(points, flush_elapsed, cpu_since(flush_cpu)),
        &latencies,
    );
    write.first_round = first_round.result(&requests, started, ingest_elapsed);
    eprintln!(
        "wrote {points} points in {:.3} s, {:.3} s through the flush",
        ingest_elapsed.as_secs_f64(),
        flush_elapsed.as_secs_f64()
    );

    // Verify every series: count, time range and values. The first read of what the flush
    // wrote: its time and the server's CPU are printed (not part of any figure).
    let verify_started = Instant::now();
    let verify_cpu = server_cpu();
    let verified = verify_all(&mut admin, spec, &expected).await?;
    let verify_cpu = match (verify_cpu, server_cpu()) {
        (Some(a), Some(b)) => format!(", server CPU {:.3} s", b - a),
        _ => String::new(),
    };
    eprintln!(
        "verified {verified} points in {:.3} s{verify_cpu}",
        verify_started.elapsed().as_secs_f64()
    );

    // Queries: one series of each type the workload holds, asked what its type supports.
    let device = spec.device_path(0);
    let hour = 3_600_000;
    let end = T0_MS + spec.rows as i64 * spec.interval_ms;
    let targets = workload::query_series(spec);
    let several_types = targets.len() > 1;
    let mut queries = Vec::new();
    for target in &targets {
        let selection = || {
            vec![SeriesSelection {
                device: device.clone(),
                measurements: vec![WorkloadSpec::sensor_name(target.sensor)],
            }]
        };
        let aggregations = if target.numeric() {
            vec![Aggregation::Count, Aggregation::Avg]
        } else {
            vec![Aggregation::Count, Aggregation::First, Aggregation::Last]
        };
        let (mut raw, mut group_by, mut last) = (
            Latencies::default(),
            Latencies::default(),
            Latencies::default(),
        );
        for _ in 0..options.query_repeat {
            let t = Instant::now();
            admin
                .query_raw(RawQuery {
                    series: selection(),
                    start_time: T0_MS,
                    end_time: T0_MS + hour,
                    limit: None,
                    offset: 0,
                })
                .await?;
            raw.record(t.elapsed());
            let t = Instant::now();
            admin
                .query_aggregate(AggregateQuery {
                    series: selection(),
                    start_time: T0_MS,
                    end_time: end,
                    aggregations: aggregations.clone(),
                    group_by: Some(GroupByWindow {
                        start_time: T0_MS,
                        end_time: end,
                        interval_ms: hour,
                    }),
                })
                .await?;
            group_by.record(t.elapsed());
            let t = Instant::now();
            admin.query_last(selection()).await?;
            last.record(t.elapsed());
        }
        let label = |name: &str| workload::query_label(name, target, several_types);
        queries.push((label("raw 1h"), raw.summary()));
        queries.push((label(target.group_by_label()), group_by.summary()));
        queries.push((label("last"), last.summary()));
    }
    // Across series: count and avg per hour of every numeric series of every device (the
    // whole workload when every sensor is numeric), in one request.
    let numeric: Vec<String> = (0..spec.sensors)
        .filter(|&s| spec.types[s].is_numeric())
        .map(WorkloadSpec::sensor_name)
        .collect();
    if !numeric.is_empty() {
        // Hourly windows unless their answer would pass the server's bound on an
        // aggregate's values (a long --interval-ms): then whole multiples of an hour.
        let series_count = (spec.devices * numeric.len()) as u128;
        let functions = 2u128;
        let span = u128::try_from((end - T0_MS).max(1)).unwrap_or(1);
        let values_max = iotdb_node::datanode::query::AGGREGATE_VALUES_MAX as u128;
        let windows_max = (values_max / (series_count * functions).max(1)).max(1);
        let hours = span.div_ceil(windows_max * hour as u128).max(1);
        let interval = i64::try_from(hours)
            .unwrap_or(i64::MAX / hour)
            .saturating_mul(hour);
        let series: Vec<SeriesSelection> = (0..spec.devices)
            .map(|d| SeriesSelection {
                device: spec.device_path(d),
                measurements: numeric.clone(),
            })
            .collect();
        let mut across = Latencies::default();
        for _ in 0..options.query_repeat.min(CROSS_SERIES_REPEAT_MAX) {
            let t = Instant::now();
            admin
                .query_aggregate(AggregateQuery {
                    series: series.clone(),
                    start_time: T0_MS,
                    end_time: end,
                    aggregations: vec![Aggregation::Count, Aggregation::Avg],
                    group_by: Some(GroupByWindow {
                        start_time: T0_MS,
                        end_time: end,
                        interval_ms: interval,
                    }),
                })
                .await
                .context("the cross-series GROUP BY")?;
            across.record(t.elapsed());
        }
        queries.push((format!("count,avg {hours}h all series"), across.summary()));

        // SQL: a value filter pushed down to the regions, on one device at a time in turn,
        // and ALIGN BY DEVICE over every device (the first 10 rows of each).
        let sensor = &numeric[0];
        let (mut filtered, mut by_device) = (Latencies::default(), Latencies::default());
        for i in 0..options.query_repeat {
            let device = spec.device_path(i % spec.devices);
            let t = Instant::now();
            admin
                .execute_sql(&format!(
                    "SELECT {sensor} FROM {device} WHERE {sensor} > 40"
                ))
                .await
                .context("the value-filtered query")?;
            filtered.record(t.elapsed());
            let t = Instant::now();
            let result = admin
                .execute_sql(&format!(
                    "SELECT {sensor} FROM {}.* WHERE time < {} ALIGN BY DEVICE",
                    spec.database,
                    T0_MS + 10 * spec.interval_ms
                ))
                .await
                .context("the ALIGN BY DEVICE query")?;
            by_device.record(t.elapsed());
            if result.rows.len() != spec.devices * spec.rows.min(10) {
                bail!("ALIGN BY DEVICE answered {} rows", result.rows.len());
            }
        }
        queries.push((
            format!("sql value filter {sensor} > 40"),
            filtered.summary(),
        ));
        queries.push((
            "sql align by device, 10 rows each".into(),
            by_device.summary(),
        ));
    }
    let mut report = Report {
        routing: Some(Routing {
            route: options.route.name().to_owned(),
            description: options.route.description().to_owned(),
            direct_requests: direct.get(),
            requests: requests.len() as u64,
        }),
        server_cpu_by_process,
        concurrency: Some(concurrency),
        verified_points: Some(verified),
        queries,
        ..Report::default()
    };
    report.set_write(write);
    Ok(report)
}

/// Times a write answered "not now" or "not here" (606, 420) is sent at most.
const WRITE_ATTEMPTS_MAX: u32 = 100;
/// The pause before sending such a write again.
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Writes that missed the route table (their group was new to it) before a client fetches
/// it again: one fetch per batch of misses, not one per write.
const ROUTE_MISSES_BEFORE_REFRESH: usize = 64;

/// What the write clients of a run share (one thread: `Rc`).
struct WriteShared {
    requests: Rc<Vec<Prepared>>,
    /// The next request to send (clients take requests in turn).
    next: Rc<Cell<usize>>,
    errors: Rc<Cell<u64>>,
    retried: Rc<Cell<u64>>,
    /// Requests whose first send went straight to their group's leading DataNode and core.
    direct: Rc<Cell<u64>>,
    latencies: Rc<RefCell<Latencies>>,
    /// The route table of the pinned clients (`one`, `spread`).
    route: Rc<RefCell<RouteTable>>,
    points_done: Rc<Cell<u64>>,
    first_round: Rc<FirstRoundClock>,
}

/// Times the first round of the writes: the first request of each device in sending
/// order (against a fresh server, the one that creates the device's series).
struct FirstRoundClock {
    /// Per request, whether it is its device's first.
    first: Vec<bool>,
    /// First-round requests not acknowledged yet.
    left: Cell<usize>,
    /// When the last of them was.
    done: Cell<Option<Instant>>,
}

impl FirstRoundClock {
    fn of(requests: &[Prepared]) -> FirstRoundClock {
        let mut seen = HashSet::new();
        let first: Vec<bool> = requests
            .iter()
            .map(|request| seen.insert(request.device.as_str()))
            .collect();
        let left = first.iter().filter(|&&f| f).count();
        FirstRoundClock {
            first,
            left: Cell::new(left),
            done: Cell::new(None),
        }
    }

    /// Request `index` was acknowledged.
    fn acknowledged(&self, index: usize) {
        if self.first[index] {
            self.left.set(self.left.get() - 1);
            if self.left.get() == 0 {
                self.done.set(Some(Instant::now()));
            }
        }
    }

    /// The round's figures once the writes are over (`None` if some first request was
    /// never acknowledged, or the first round was the whole run).
    fn result(
        &self,
        requests: &[Prepared],
        started: Instant,
        ingest: Duration,
    ) -> Option<FirstRound> {
        let seconds = self.done.get()?.duration_since(started).as_secs_f64();
        let later_seconds = ingest.as_secs_f64() - seconds;
        let later_points: u64 = requests
            .iter()
            .zip(&self.first)
            .filter(|(_, first)| !**first)
            .map(|(request, _)| request.points)
            .sum();
        (later_points > 0 && later_seconds > 0.0).then(|| FirstRound {
            requests: self.first.iter().filter(|&&f| f).count() as u64,
            seconds,
            later_points_per_second: later_points as f64 / later_seconds,
        })
    }
}

/// One write in flight: its request, the connection it went out on, its id there, when
/// it was first sent and how often.
struct InFlight {
    index: usize,
    lane: Lane,
    id: u64,
    sent: Instant,
    attempts: u32,
}

/// One client's share of the writes: takes requests from the shared counter, sends each
/// where its [`Writer`] routes it, keeps `pipeline` in flight. Returns the writer (its
/// connections count in the summary).
async fn write_client(
    mut client: Writer,
    shared: WriteShared,
    pipeline: usize,
) -> anyhow::Result<Writer> {
    let requests = &shared.requests;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut misses = 0usize;
    loop {
        while in_flight.len() < pipeline {
            let index = shared.next.get();
            if index >= requests.len() {
                break;
            }
            shared.next.set(index + 1);
            let choice = client.choose(&requests[index], index, &shared.route.borrow());
            misses += usize::from(choice.miss);
            if choice.direct {
                shared.direct.set(shared.direct.get() + 1);
            }
            let id = client
                .send(&choice.lane, requests[index].body.clone())
                .await?;
            in_flight.push_back(InFlight {
                index,
                lane: choice.lane,
                id,
                sent: Instant::now(),
                attempts: 1,
            });
        }
        let Some(write) = in_flight.pop_front() else {
            break;
        };
        match client.receive(&write.lane, write.id).await {
            Ok(()) => {
                shared.latencies.borrow_mut().record(write.sent.elapsed());
                shared.first_round.acknowledged(write.index);
                shared
                    .points_done
                    .set(shared.points_done.get() + requests[write.index].points);
            }
            Err(ClientError::Status(status))
                if matches!(
                    status.code,
                    StatusCode::WRITE_PROCESS_REJECT | StatusCode::ROUTE_TABLE_STALE
                ) && write.attempts < WRITE_ATTEMPTS_MAX =>
            {
                // "Not now" (a new replicated group taking over as leader, an overloaded
                // control plane) or "not here" (a moved leader): the same points again, a
                // moment later, routed again by a fresh table when the route was stale;
                // the latency keeps counting from the first send.
                shared.retried.set(shared.retried.get() + 1);
                if status.code == StatusCode::ROUTE_TABLE_STALE {
                    client.refresh_route(&shared.route).await?;
                }
                monoio::time::sleep(WRITE_RETRY_PAUSE).await;
                let choice =
                    client.choose(&requests[write.index], write.index, &shared.route.borrow());
                let id = client
                    .send(&choice.lane, requests[write.index].body.clone())
                    .await?;
                in_flight.push_back(InFlight {
                    lane: choice.lane,
                    id,
                    attempts: write.attempts + 1,
                    ..write
                });
            }
            Err(e) => {
                shared.errors.set(shared.errors.get() + 1);
                eprintln!("write failed: {e}");
            }
        }
        // New partitions appear as the workload moves on: refresh the route table after
        // misses (the server routed those requests itself).
        if misses >= ROUTE_MISSES_BEFORE_REFRESH {
            misses = 0;
            client.refresh_route(&shared.route).await?;
        }
    }
    Ok(client)
}

/// The admin connection of a run: connected, with the workload's database created (an
/// existing one is fine: a soak or a rerun against a live server).
pub(crate) async fn connect_admin(
    spec: &WorkloadSpec,
    options: &ServerOptions,
    address: SocketAddr,
) -> anyhow::Result<AsyncClient> {
    let mut admin = AsyncClient::connect(address, &client_config(options, None))
        .await
        .with_context(|| format!("connecting to {address}"))?;
    match admin
        .create_database(CreateDatabase {
            name: spec.database.clone(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .await
    {
        Ok(()) => Ok(admin),
        Err(e) if e.status_code() == Some(StatusCode::DATABASE_ALREADY_EXISTS) => Ok(admin),
        Err(e) => Err(e).context("creating the database"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(device: &str, points: u64) -> Prepared {
        Prepared {
            device: device.to_string(),
            first_time: 0,
            points,
            body: ChecksummedBody::new(bytes::Bytes::new()),
        }
    }

    /// The first round is each device's first request in sending order, wherever it
    /// lies; it ends when the last of them is acknowledged, in whatever order they are;
    /// the later writes' rate counts the other requests over the rest of the ingest.
    #[test]
    fn the_first_round_is_each_devices_first_request() {
        let requests: Vec<Prepared> = [("a", 10), ("b", 10), ("a", 30), ("c", 10), ("b", 30)]
            .into_iter()
            .map(|(device, points)| prepared(device, points))
            .collect();
        let clock = FirstRoundClock::of(&requests);
        assert_eq!(clock.first, vec![true, true, false, true, false]);
        let started = Instant::now();
        for index in [2, 3, 0, 4] {
            clock.acknowledged(index);
        }
        assert!(
            clock.done.get().is_none(),
            "b's first is not acknowledged yet"
        );
        assert!(
            clock
                .result(&requests, started, Duration::from_secs(1))
                .is_none()
        );
        clock.acknowledged(1);
        let done = clock.done.get().expect("every first request acknowledged");
        let ingest = done.duration_since(started) + Duration::from_secs(2);
        let round = clock
            .result(&requests, started, ingest)
            .expect("a first round and later writes");
        assert_eq!(round.requests, 3);
        assert!(round.seconds < 1.0);
        assert!(
            (round.later_points_per_second - 30.0).abs() < 1e-6,
            "{round:?}"
        );
        // A run of first requests only has no later rate.
        let only: Vec<Prepared> = ["a", "b"].iter().map(|d| prepared(d, 10)).collect();
        let clock = FirstRoundClock::of(&only);
        clock.acknowledged(0);
        clock.acknowledged(1);
        assert!(
            clock
                .result(&only, started, Duration::from_secs(1))
                .is_none()
        );
    }
}
