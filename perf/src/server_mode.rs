//! The workload against a server over the wire: an embedded standalone server (this
//! binary re-executed as `iotdb-perf serve`, so its CPU time is its own), or running
//! servers given by `--endpoints`.
//!
//! Each client task routes every request to the shard owning its region (shard-aware,
//! zero hops), keeping up to `pipeline` requests in flight.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use iotdb_net::{
    AggregateQuery, Aggregation, AsyncClient, ClientConfig, ClientError, CreateDatabase,
    GroupByWindow, Opcode, RawQuery, RouteTable, SeriesSelection, StatusCode, TypedColumn, Value,
    WireColumn, WireTablet,
};
use iotdb_storage::Values;

use crate::report::{self, Latencies, Report, WriteResult};
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
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub target: Target,
    pub clients: usize,
    /// Requests each client keeps in flight.
    pub pipeline: usize,
    pub query_repeat: usize,
    pub user: String,
    pub password: String,
}

/// A server process this run started; stopped (SIGTERM) and its directory removed on drop.
struct EmbeddedServer {
    child: Child,
    address: SocketAddr,
    data_dir: tempfile::TempDir,
}

impl EmbeddedServer {
    fn start(cores: Option<usize>, wal_mode: &str) -> anyhow::Result<EmbeddedServer> {
        let data_dir = tempfile::tempdir().context("creating the server's data directory")?;
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
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
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let Some(line) = lines.next() else {
                let status = child.wait()?;
                bail!("the embedded server exited ({status}) before it was ready");
            };
            let line = line?;
            if let Some(rest) = line.strip_prefix(iotdb_node::server::READY_LINE_PREFIX) {
                let address = rest.split_whitespace().next().unwrap_or_default();
                break address
                    .parse::<SocketAddr>()
                    .with_context(|| format!("server address in {line:?}"))?;
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        eprintln!("embedded server pid {} on {address}", child.id());
        Ok(EmbeddedServer {
            child,
            address,
            data_dir,
        })
    }

    fn stop(&mut self) {
        let pid = self.child.id();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The wire tablet of a generated request.
fn to_wire(tablet: &iotdb_storage::Tablet) -> WireTablet {
    WireTablet {
        device: tablet.device.to_string(),
        is_aligned: false,
        timestamps: tablet.timestamps.clone(),
        columns: tablet
            .columns
            .iter()
            .map(|c| WireColumn {
                measurement: c.measurement.to_string(),
                values: match &c.values {
                    Values::Boolean(v) => TypedColumn::Boolean(v.clone()),
                    Values::Int32(v) => TypedColumn::Int32(v.clone()),
                    Values::Int64(v) => TypedColumn::Int64(v.clone()),
                    Values::Float(v) => TypedColumn::Float(v.clone()),
                    Values::Double(v) => TypedColumn::Double(v.clone()),
                    Values::Text(v) => TypedColumn::Text(v.clone()),
                },
                nulls: None,
            })
            .collect(),
    }
}

struct Prepared {
    device: String,
    first_time: i64,
    points: u64,
    body: Bytes,
}

fn client_config(options: &ServerOptions, shard: Option<u32>) -> ClientConfig {
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
struct ShardClient {
    connections: Vec<AsyncClient>,
}

impl ShardClient {
    async fn connect(
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

/// Runs the workload against the target and returns its figures.
pub fn run(spec: &WorkloadSpec, options: &ServerOptions) -> anyhow::Result<Report> {
    eprintln!("generating {} points ...", spec.points());
    let requests: Vec<Prepared> = workload::generate(spec)
        .into_iter()
        .map(|r| {
            let wire = to_wire(&r.tablet);
            Prepared {
                device: wire.device.clone(),
                first_time: wire.timestamps[0],
                points: (wire.timestamps.len() * wire.columns.len()) as u64,
                body: iotdb_net::encode_insert_tablets(std::slice::from_ref(&wire)),
            }
        })
        .collect();
    let mut server = match &options.target {
        Target::Embedded { cores, wal_mode } => Some(EmbeddedServer::start(*cores, wal_mode)?),
        Target::Endpoints(_) => None,
    };
    let address = match (&server, &options.target) {
        (Some(s), _) => s.address,
        (None, Target::Endpoints(list)) => *list
            .first()
            .ok_or_else(|| anyhow!("--endpoints is empty"))?,
        (None, Target::Embedded { .. }) => unreachable!("embedded starts a server"),
    };
    let server_pid = server.as_ref().map(|s| s.child.id());
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .context("building the client runtime")?;
    let spec_owned = spec.clone();
    let options_owned = options.clone();
    let mut report = runtime.block_on(async move {
        drive(&spec_owned, &options_owned, address, requests, server_pid).await
    })?;
    report.mode = match &options.target {
        Target::Embedded { .. } => "embedded".into(),
        Target::Endpoints(_) => "endpoints".into(),
    };
    if let Some(server) = &mut server {
        let bytes = dir_bytes(server.data_dir.path());
        report.disk_bytes = Some(bytes);
        report.bytes_per_point = Some(bytes as f64 / spec.points() as f64);
        server.stop();
    }
    Ok(report)
}

/// Bytes of every file under `dir` (data files, WAL, metadata).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn drive(
    spec: &WorkloadSpec,
    options: &ServerOptions,
    address: SocketAddr,
    requests: Vec<Prepared>,
    server_pid: Option<u32>,
) -> anyhow::Result<Report> {
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
        Ok(()) => {}
        Err(e) if e.status_code() == Some(StatusCode::DATABASE_ALREADY_EXISTS) => {}
        Err(e) => return Err(e).context("creating the database"),
    }

    // Write.
    let route = Rc::new(RefCell::new(
        admin
            .fetch_route_table(0)
            .await?
            .unwrap_or_else(RouteTable::empty),
    ));
    let requests = Rc::new(requests);
    let next = Rc::new(Cell::new(0usize));
    let errors = Rc::new(Cell::new(0u64));
    let latencies = Rc::new(RefCell::new(Latencies::default()));
    let mut clients = Vec::new();
    for _ in 0..options.clients.max(1) {
        clients.push(
            ShardClient::connect(address, options)
                .await
                .context("connecting a client")?,
        );
    }
    let cpu_before = server_pid.and_then(report::process_cpu_seconds);
    let started = Instant::now();
    let points_done = Rc::new(Cell::new(0u64));
    let progress = monoio::spawn(crate::progress::report(
        "write",
        points_done.clone(),
        spec.points(),
    ));
    let mut tasks = Vec::new();
    for client in clients {
        let (requests, next, errors, latencies, route, points_done) = (
            requests.clone(),
            next.clone(),
            errors.clone(),
            latencies.clone(),
            route.clone(),
            points_done.clone(),
        );
        let pipeline = options.pipeline.max(1);
        tasks.push(monoio::spawn(async move {
            write_client(
                client,
                requests,
                next,
                errors,
                latencies,
                route,
                pipeline,
                points_done,
            )
            .await
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    points_done.set(spec.points());
    progress.await;
    let cpu = match (cpu_before, server_pid.and_then(report::process_cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let latencies = latencies.borrow().clone();
    let write = WriteResult::new(
        spec.points(),
        requests.len() as u64,
        errors.get(),
        elapsed,
        cpu,
        &latencies,
    );
    eprintln!(
        "wrote {} points in {:.3} s",
        spec.points(),
        elapsed.as_secs_f64()
    );
    if errors.get() > 0 {
        bail!("{} write requests failed", errors.get());
    }

    // Verify: every series holds every row.
    let mut verified = 0u64;
    for d in 0..spec.devices {
        let device = spec.device_path(d);
        let measurements: Vec<String> = (0..spec.sensors).map(WorkloadSpec::sensor_name).collect();
        let batches = admin
            .query_aggregate(AggregateQuery {
                series: vec![SeriesSelection {
                    device: device.clone(),
                    measurements: measurements.clone(),
                }],
                start_time: i64::MIN,
                end_time: i64::MAX,
                aggregations: vec![Aggregation::Count],
                group_by: None,
            })
            .await
            .with_context(|| format!("counting {device}"))?;
        let batch = batches
            .first()
            .ok_or_else(|| anyhow!("no count for {device}"))?;
        for (column, measurement) in batch.columns.iter().zip(&measurements) {
            let count = match column.values.get(0) {
                Some(Value::Int64(c)) => c as u64,
                other => bail!("count of {device}.{measurement} is {other:?}"),
            };
            if count != spec.rows as u64 {
                bail!(
                    "{device}.{measurement} holds {count} points, not {}",
                    spec.rows
                );
            }
            verified += count;
        }
    }
    eprintln!("verified {verified} points");
    admin.flush(Vec::new()).await.context("flushing")?;

    // Queries.
    let device = spec.device_path(0);
    let selection = || {
        vec![SeriesSelection {
            device: device.clone(),
            measurements: vec![WorkloadSpec::sensor_name(0)],
        }]
    };
    let hour = 3_600_000;
    let end = T0_MS + spec.rows as i64 * spec.interval_ms;
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
                aggregations: vec![Aggregation::Count, Aggregation::Avg],
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
    // SQL: a value filter pushed down to the regions, on one device at a time in turn, and
    // ALIGN BY DEVICE over every device (the first 10 rows of each).
    let (mut filtered, mut by_device) = (Latencies::default(), Latencies::default());
    for i in 0..options.query_repeat {
        let device = spec.device_path(i % spec.devices);
        let sensor = WorkloadSpec::sensor_name(0);
        let t = Instant::now();
        admin
            .execute_sql(&format!(
                "SELECT {sensor} FROM {device} WHERE {sensor} > 40"
            ))
            .await?;
        filtered.record(t.elapsed());
        let t = Instant::now();
        let result = admin
            .execute_sql(&format!(
                "SELECT {sensor} FROM {}.* WHERE time < {} ALIGN BY DEVICE",
                spec.database,
                T0_MS + 10 * spec.interval_ms
            ))
            .await?;
        by_device.record(t.elapsed());
        if result.rows.len() != spec.devices * spec.rows.min(10) {
            bail!("ALIGN BY DEVICE answered {} rows", result.rows.len());
        }
    }
    Ok(Report {
        write: Some(write),
        verified_points: Some(verified),
        queries: vec![
            ("raw 1h".into(), raw.summary()),
            ("count,avg 1h".into(), group_by.summary()),
            ("last".into(), last.summary()),
            ("sql value filter s > 40".into(), filtered.summary()),
            (
                "sql align by device, 10 rows each".into(),
                by_device.summary(),
            ),
        ],
        ..Report::default()
    })
}

/// One client's share of the writes: takes requests from the shared counter, sends each to
/// its shard's connection, keeps `pipeline` in flight.
async fn write_client(
    mut client: ShardClient,
    requests: Rc<Vec<Prepared>>,
    next: Rc<Cell<usize>>,
    errors: Rc<Cell<u64>>,
    latencies: Rc<RefCell<Latencies>>,
    route: Rc<RefCell<RouteTable>>,
    pipeline: usize,
    points_done: Rc<Cell<u64>>,
) -> anyhow::Result<()> {
    let mut in_flight: VecDeque<(usize, usize, u64, Instant)> = VecDeque::new();
    let mut misses = 0usize;
    loop {
        while in_flight.len() < pipeline {
            let i = next.get();
            if i >= requests.len() {
                break;
            }
            next.set(i + 1);
            let request = &requests[i];
            let shard = {
                let route = route.borrow();
                route
                    .route_for(&request.device, request.first_time)
                    .map(|t| t.shard_id as usize)
            };
            let shard = match shard {
                Some(s) if s < client.connections.len() => s,
                _ => {
                    misses += 1;
                    i % client.connections.len()
                }
            };
            let id = client.connections[shard]
                .send_body(Opcode::InsertTablets, request.body.clone())
                .await?;
            in_flight.push_back((i, shard, id, Instant::now()));
        }
        let Some((index, shard, id, sent)) = in_flight.pop_front() else {
            break;
        };
        match client.connections[shard].receive(id).await {
            Ok(_) => {
                latencies.borrow_mut().record(sent.elapsed());
                points_done.set(points_done.get() + requests[index].points);
            }
            Err(e) => {
                errors.set(errors.get() + 1);
                eprintln!("write failed: {e}");
            }
        }
        // New partitions appear as the workload moves on: refresh the route table after
        // misses (the server routed those requests itself).
        if misses >= 64 {
            misses = 0;
            let known = route.borrow().version();
            if let Some(table) = client.connections[shard].fetch_route_table(known).await? {
                *route.borrow_mut() = table;
            }
        }
    }
    Ok(())
}
