//! `iotdb-perf`: an iot-benchmark-like load generator and benchmark harness.
//!
//! With no subcommand it runs the standard workload against a server (`--embedded` starts
//! one); `iotdb-perf storage` runs the same writes in process against one region.

#![forbid(unsafe_code)]

mod cluster_mode;
mod floor;
mod progress;
mod report;
mod server_mode;
mod soak;
mod storage_mode;
mod verify;
mod workload;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use iotdb_storage::{DataType, WalMode};

use crate::workload::WorkloadSpec;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// iotdb-perf: ingest, verify and query a workload, and report the figures.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Run a standalone server (what `--embedded` starts in a child process).
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        rpc_address: String,
        #[arg(long, default_value_t = 6667)]
        rpc_port: u16,
        #[arg(long, default_value = "sync")]
        wal_mode: String,
        #[arg(long)]
        cores: Option<usize>,
    },
    /// Run one node of a `--cluster` (what `--cluster` starts in child processes):
    /// `confignode` or `datanode`, with any configuration key as `--set key=value`.
    #[command(hide = true)]
    Node {
        role: String,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        cores: Option<usize>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// The least a synchronous-client write run of the workload can cost on this machine:
    /// the same request bytes from `--clients` clients, one request in flight each (not
    /// `--pipeline`), to a server with one shard and one WAL per core (`--cores`) that
    /// only appends each request to its shard's WAL and answers once it is durable.
    /// Compare its figure with `--pipeline 1` against the real server.
    Floor {
        /// Keep the shards' logs here (on the disk the server's data would use) instead of
        /// a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write the workload in process into one storage-engine region (no network).
    Storage {
        /// Writes in flight at once.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Keep the region here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct WorkloadArgs {
    /// Database the devices live in.
    #[arg(long, default_value = "root.bench")]
    database: String,
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    #[arg(long, default_value_t = 10)]
    sensors: usize,
    /// Sensor types: one name (`DOUBLE`), or proportions in type-code order
    /// BOOLEAN:INT32:INT64:FLOAT:DOUBLE:TEXT (`1:1:1:1:1:1`).
    #[arg(long, default_value = "DOUBLE")]
    types: String,
    /// Rows per device.
    #[arg(long, default_value_t = 1000)]
    rows: usize,
    /// Rows per tablet (request).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Milliseconds between rows.
    #[arg(long, default_value_t = 1000)]
    interval_ms: i64,
    /// Share of requests delivered after newer data of their device.
    #[arg(long, default_value_t = 0.0)]
    out_of_order_ratio: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// sync | async | off
    #[arg(long, default_value = "sync")]
    wal_mode: String,
    /// Times each query is repeated.
    #[arg(long, default_value_t = 100)]
    query_repeat: usize,
    /// Start a standalone server on a free loopback port with a temporary data directory.
    #[arg(long, conflicts_with = "endpoints")]
    embedded: bool,
    /// Running servers, `host:port,...` (a cluster's DataNodes): the clients reach them as
    /// `--route` says; the first also serves the setup, verification and queries.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<std::net::SocketAddr>,
    /// Start a local cluster instead of a standalone server, `<ConfigNodes>C<DataNodes>D`
    /// (`1C3D`): every node a child process on 127.0.0.1 with a temporary directory, the
    /// clients reaching the DataNodes as `--route` says, the server CPU summed over every
    /// node.
    #[arg(long, conflicts_with = "endpoints")]
    cluster: Option<String>,
    /// How the write clients reach the servers. `one`: every client on the first
    /// DataNode, which forwards the writes for region groups led elsewhere (one hop);
    /// `spread`: client i on DataNode i % n, which forwards what it does not lead;
    /// `shard-aware`: each client a ShardAwareClient seeded with every DataNode, sending
    /// each write to the DataNode and core leading its region group (no hop). Default:
    /// `shard-aware` with `--cluster` or `--endpoints`, `one` against the embedded server
    /// (with one server, all three send each write to the core that leads it).
    #[arg(long, value_enum)]
    route: Option<server_mode::Route>,
    /// `data_replication_factor` of the `--cluster`.
    #[arg(long, default_value_t = 1, requires = "cluster")]
    replication: u32,
    /// Any configuration key for every node of the `--cluster` (repeatable):
    /// `--node-set data_replication_ack=in_sync`.
    #[arg(long = "node-set", value_name = "KEY=VALUE", requires = "cluster")]
    node_set: Vec<String>,
    /// Shards of the embedded server (default: every core), or of each DataNode of the
    /// `--cluster`.
    #[arg(long)]
    cores: Option<usize>,
    /// Requests each client keeps in flight.
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
    #[arg(long, default_value = "root")]
    user: String,
    #[arg(long, default_value = "root")]
    password: String,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Soak instead of the benchmark: write the workload's shape at `--rate` for this
    /// long (`600`, `600s`, `10m`, `1h`) against the embedded server, sampling its RSS,
    /// open files and WAL bytes every second, and plot them at the end.
    #[arg(long, value_parser = soak::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Points per second the soak writes.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Run the whole benchmark this many times, each on a fresh server and data directory
    /// (embedded, `--cluster` or `storage`), print every run's figures, then the median,
    /// the lowest and the highest of each headline figure, ending with the medians'
    /// `points per server CPU-second with flush` and `points/s` lines. A shared machine's
    /// speed drifts from run to run: compare medians, not single runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
}

fn parse_types(spec: &str, sensors: usize) -> anyhow::Result<Vec<DataType>> {
    if let Some(t) = DataType::from_name(spec) {
        return Ok(vec![t; sensors]);
    }
    let weights: Vec<u32> = spec
        .split(':')
        .map(|w| w.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!("--types {spec:?}: a type name or proportions like 1:1:1:1:1:1")
        })?;
    if weights.len() != DataType::ALL.len() {
        bail!(
            "--types proportions need {} numbers (BOOLEAN:INT32:INT64:FLOAT:DOUBLE:TEXT)",
            DataType::ALL.len()
        );
    }
    let pairs: Vec<(DataType, u32)> = DataType::ALL.into_iter().zip(weights).collect();
    if pairs.iter().all(|p| p.1 == 0) {
        bail!("--types proportions are all zero");
    }
    Ok(workload::types_by_proportion(sensors, &pairs))
}

fn spec_of(args: &WorkloadArgs) -> anyhow::Result<WorkloadSpec> {
    if args.devices == 0 || args.sensors == 0 || args.rows == 0 || args.batch == 0 {
        bail!("--devices, --sensors, --rows and --batch must be positive");
    }
    if !(0.0..=1.0).contains(&args.out_of_order_ratio) {
        bail!("--out-of-order-ratio must lie in [0, 1]");
    }
    Ok(WorkloadSpec {
        database: args.database.clone(),
        devices: args.devices,
        sensors: args.sensors,
        rows: args.rows,
        batch: args.batch,
        interval_ms: args.interval_ms,
        types: parse_types(&args.types, args.sensors)?,
        out_of_order_ratio: args.out_of_order_ratio,
        seed: args.seed,
    })
}

/// Logging of a server this binary runs for a run (`serve`, `node`): warnings and errors
/// on stderr unless `RUST_LOG` says otherwise.
fn init_server_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(iotdb_runtime::log_colours())
        .init();
}

fn main() -> anyhow::Result<()> {
    iotdb_runtime::tune_allocator();
    let cli = Cli::parse();
    if let Some(Mode::Serve {
        data_dir,
        rpc_address,
        rpc_port,
        wal_mode,
        cores,
    }) = cli.mode
    {
        init_server_logging();
        let config = iotdb_node::config::ServerConfig {
            data_dir,
            dn_rpc_address: rpc_address,
            dn_rpc_port: rpc_port,
            wal_mode,
            dn_cores: cores.unwrap_or(0),
            ..iotdb_node::config::ServerConfig::default()
        };
        return iotdb_node::server::run_standalone(config);
    }
    if let Some(Mode::Node {
        role,
        data_dir,
        cores,
        set,
    }) = &cli.mode
    {
        init_server_logging();
        let mut config = iotdb_node::config::ServerConfig::load_with_overrides(None, set)?;
        config.data_dir = data_dir.clone();
        if let Some(cores) = cores {
            config.dn_cores = *cores;
        }
        return match role.as_str() {
            "confignode" => iotdb_node::cluster::confignode_service::run_confignode(config),
            "datanode" => iotdb_node::server::run_datanode(config),
            other => bail!("iotdb-perf node {other}: expected confignode or datanode"),
        };
    }
    let spec = spec_of(&cli.workload)?;
    let wal_mode = WalMode::parse(&cli.workload.wal_mode)
        .with_context(|| format!("--wal-mode {:?}: sync, async or off", cli.workload.wal_mode))?;
    if let (None, Some(duration)) = (&cli.mode, cli.workload.duration) {
        if cli.workload.runs > 1 {
            bail!("--runs repeats the benchmark; a soak (--duration) runs once");
        }
        let options = server_mode::ServerOptions {
            target: server_mode::Target::Embedded {
                cores: cli.workload.cores,
                wal_mode: wal_mode.name().to_string(),
            },
            route: server_mode::Route::One,
            clients: 1,
            pipeline: cli.workload.pipeline,
            query_repeat: 0,
            user: cli.workload.user.clone(),
            password: cli.workload.password.clone(),
        };
        let soak = soak::SoakOptions {
            duration,
            rate: cli.workload.rate.max(1),
        };
        return soak::run(&spec, &options, &soak);
    }
    let runs = cli.workload.runs as usize;
    if let Some(Mode::Floor { data_dir }) = &cli.mode {
        let options = floor::FloorOptions {
            cores: cli.workload.cores,
            clients: cli.workload.clients,
            wal_mode,
            data_dir: data_dir.clone(),
        };
        return floor::run_all(&spec, &options, runs, cli.workload.json.as_deref());
    }
    if runs > 1 {
        if !cli.workload.endpoints.is_empty() {
            bail!(
                "--runs needs a fresh server for every run: the servers of --endpoints keep \
                 the first run's series and data; use the embedded server or --cluster"
            );
        }
        if let Some(Mode::Storage {
            data_dir: Some(dir),
            ..
        }) = &cli.mode
        {
            bail!(
                "--runs needs a fresh directory for every run: leave out storage's \
                 --data-dir ({}) and each run gets a temporary one",
                dir.display()
            );
        }
    }
    let workload = serde_json::json!({
        "database": spec.database, "devices": spec.devices, "sensors": spec.sensors, "rows": spec.rows,
        "batch": spec.batch, "clients": cli.workload.clients, "interval_ms": spec.interval_ms,
        "types": spec.types.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "out_of_order_ratio": spec.out_of_order_ratio, "seed": spec.seed, "wal_mode": wal_mode.name(),
        "pipeline": cli.workload.pipeline, "cores": cli.workload.cores,
    });
    let mut reports = Vec::with_capacity(runs);
    for run in 1..=runs {
        if runs > 1 {
            println!();
            println!(
                "==================================== run {run} of {runs} ===================================="
            );
        }
        let mut report = run_once(&cli, &spec, wal_mode)?;
        report.workload = workload.clone();
        report.print();
        reports.push(report);
    }
    let json = if runs > 1 {
        let medians = report::Medians::of(&reports);
        medians.print();
        serde_json::json!({ "runs": reports, "medians": medians })
    } else {
        serde_json::to_value(&reports[0])?
    };
    if let Some(path) = &cli.workload.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One run of the benchmark as the command line says (not `serve`, `node` or a soak).
fn run_once(cli: &Cli, spec: &WorkloadSpec, wal_mode: WalMode) -> anyhow::Result<report::Report> {
    let report = match &cli.mode {
        Some(Mode::Storage {
            in_flight,
            data_dir,
        }) => storage_mode::run(
            spec,
            &storage_mode::StorageOptions {
                wal_mode,
                in_flight: *in_flight,
                data_dir: data_dir.clone(),
                query_repeat: cli.workload.query_repeat,
            },
        )?,
        Some(Mode::Serve { .. } | Mode::Node { .. } | Mode::Floor { .. }) => {
            unreachable!("served above")
        }
        None => {
            let target = if let Some(shape) = &cli.workload.cluster {
                let mut settings = vec![format!(
                    "data_replication_factor={}",
                    cli.workload.replication
                )];
                settings.extend(cli.workload.node_set.iter().cloned());
                server_mode::Target::Cluster {
                    shape: cluster_mode::Shape::parse(shape)?,
                    cores: cli.workload.cores,
                    wal_mode: wal_mode.name().to_string(),
                    settings,
                }
            } else if !cli.workload.endpoints.is_empty() {
                server_mode::Target::Endpoints(cli.workload.endpoints.clone())
            } else {
                // `--embedded` is the default target: no flag needed on a fresh machine.
                server_mode::Target::Embedded {
                    cores: cli.workload.cores,
                    wal_mode: wal_mode.name().to_string(),
                }
            };
            let route = cli.workload.route.unwrap_or(match target {
                server_mode::Target::Embedded { .. } => server_mode::Route::One,
                server_mode::Target::Cluster { .. } | server_mode::Target::Endpoints(_) => {
                    server_mode::Route::ShardAware
                }
            });
            server_mode::run(
                spec,
                &server_mode::ServerOptions {
                    target,
                    route,
                    clients: cli.workload.clients,
                    pipeline: cli.workload.pipeline,
                    query_repeat: cli.workload.query_repeat,
                    user: cli.workload.user.clone(),
                    password: cli.workload.password.clone(),
                },
            )?
        }
    };
    Ok(report)
}
