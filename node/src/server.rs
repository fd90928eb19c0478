//! Process assembly: `iotdb-server standalone` starts the ConfigNode role and the DataNode
//! role in one process — the same code a cluster runs — on one shard per core, and stops
//! them cleanly on SIGTERM (flushing every region).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use crate::datanode::control_thread::ControlThread;

use anyhow::{Context, bail};
use iotdb_runtime::limits::MESH_HANDLERS_IN_FLIGHT_MAX;
use iotdb_runtime::{ShardContext, ShardSetBuilder};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::config::{DEFAULT_PASSWORD, ServerConfig};
use crate::datanode::control::ControlPlane;
use crate::datanode::route::SharedRoute;
use crate::datanode::{Message, NodeShared, Shard, handler};
use crate::metrics::{NodeMetrics, NodeStatus, Role};

/// The line printed on stdout once the server accepts clients (tests wait for it).
pub const READY_LINE_PREFIX: &str = "iotdb-server ready: clients on ";

/// The build identifier every node declares (`BuildInfo` in `SHOW CLUSTER`).
pub const BUILD_INFO: &str = "iotdb-rs";

/// Runs a standalone server until SIGTERM or SIGINT.
pub fn run_standalone(config: ServerConfig) -> anyhow::Result<()> {
    check_config(&config)?;
    let locks = [
        lock_role_dir(&config.confignode_dir())?,
        lock_role_dir(&config.datanode_dir())?,
    ];
    let cores = cores_of(&config);
    let address = config.rpc_socket_address()?;
    // Bind first: with port 0 the kernel picks the port, and the ConfigNode must record
    // (and route clients to) the real one.
    let listeners = bind_client_port(address, cores)?;
    let mut config = config;
    config.dn_rpc_port = listeners[0].local_addr()?.port();
    let control = ControlPlane::open(&config, cores).context("opening the ConfigNode state")?;
    run_data_node(config, cores, listeners, control, None)?;
    drop(locks);
    Ok(())
}

/// Runs a DataNode that joins the cluster of its seed ConfigNode (`dn_seed_config_node`),
/// until SIGTERM or SIGINT.
pub fn run_datanode(config: ServerConfig) -> anyhow::Result<()> {
    use crate::cluster::{identity, link, protocol, registration};
    check_config(&config)?;
    let lock = lock_role_dir(&config.datanode_dir())?;
    let dir = config.datanode_dir();
    let known = identity::load(&dir)?;
    if let Some(known) = &known {
        identity::check_cluster(known, &config.cluster_name, &dir)?;
    }
    let cores = cores_of(&config);
    let listeners = bind_client_port(config.rpc_socket_address()?, cores)?;
    let internal = bind_internal_waiting(config.dn_internal_socket_address()?, "dn_internal_port")?;
    let consensus = bind_consensus_ports(&config, cores)?;
    let schema_consensus = bind_internal_waiting(
        std::net::SocketAddr::new(
            config.dn_internal_socket_address()?.ip(),
            config.dn_schema_region_consensus_port,
        ),
        "dn_schema_region_consensus_port",
    )?;
    let mut config = config;
    config.dn_rpc_port = listeners[0].local_addr()?.port();
    config.dn_internal_port = internal.local_addr()?.port();
    config.dn_data_region_consensus_port = consensus[0].local_addr()?.port();
    config.dn_schema_region_consensus_port = schema_consensus.local_addr()?.port();
    let claimed_id = known.as_ref().map(|k| k.node_id);
    let token = match &known {
        Some(_) => 0,
        None => identity::registration_token(&dir)?,
    };
    let joined = registration::register(
        &config.dn_seed_config_node,
        "dn_seed_config_node",
        &config.cluster_name,
        claimed_id,
        &protocol::ToConfigNode::Register {
            node: protocol::NodeSpec::DataNode(crate::datanode::control::data_node_spec(
                &config, cores, token,
            )),
            settings: config.cluster_settings(),
            claimed_id,
        },
        config.seed_config_node_wait(),
    )?;
    crate::cluster::kill_point("DataNode.Registered");
    if known.is_none() {
        identity::store(
            &dir,
            &identity::Identity {
                cluster_name: config.cluster_name.clone(),
                node_id: joined.node_id,
            },
        )?;
    }
    tracing::info!(data_node = %joined.node_id, leader = %joined.leader, "joined the cluster");
    let member = link::ClusterMember {
        node_id: joined.node_id,
        cluster_name: config.cluster_name.clone(),
        leader: joined.leader,
        leader_address: joined.leader_address,
        listener: Mutex::new(Some(internal)),
        jobs: Mutex::new(None),
        consensus_listeners: Mutex::new(consensus.into_iter().map(Some).collect()),
    };
    let (cn_link, jobs) = link::CnLink::new();
    *member
        .jobs
        .lock()
        .map_err(|_| anyhow::anyhow!("link lock poisoned"))? = Some(jobs);
    let schema_raft = crate::datanode::schema_replication::SchemaRaft::start(
        joined.node_id,
        config.cluster_name.clone(),
        schema_consensus,
    )?;
    let control = ControlPlane::open_member(&config, cores, joined, cn_link, schema_raft)
        .context("opening the DataNode's control plane")?;
    run_data_node(config, cores, listeners, control, Some(member))?;
    drop(lock);
    Ok(())
}

fn check_config(config: &ServerConfig) -> anyhow::Result<()> {
    config.validate()?;
    for (key, value) in [
        ("memtable_flush_bytes", config.memtable_flush_bytes),
        ("memtable_bytes_max", config.memtable_bytes_max),
    ] {
        if let Some(value) = value {
            tracing::warn!(
                key,
                value,
                shard_write_memory_bytes = config.shard_write_memory_bytes,
                "this key is no longer used: memtable memory is budgeted per shard; set \
                 shard_write_memory_bytes instead"
            );
        }
    }
    if config.root_password == DEFAULT_PASSWORD {
        tracing::warn!(
            "the root password is the default one; set root_password in the configuration"
        );
    }
    Ok(())
}

fn cores_of(config: &ServerConfig) -> usize {
    if config.dn_cores == 0 {
        iotdb_runtime::available_cores()
    } else {
        config.dn_cores
    }
}

/// Creates a role's directory (`confignode/` or `datanode/` in the data directory) and
/// takes its lock (`.lock` in it): one process per role directory. Why per role, not per
/// data directory: a ConfigNode and a DataNode on one machine may share one configuration
/// file and so one `data_dir` (as IoTDB's 1C1D-per-machine deployments do), since neither
/// writes into the other's directory; two DataNodes, or a standalone server and either
/// role, still exclude each other. Then checks (and writes) the role directory's format
/// stamp (`crate::format`): a newer format is refused.
pub(crate) fn lock_role_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the directory {}", dir.display()))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!("{} is in use by another iotdb-server", dir.display());
    }
    let stamp = crate::format::check_and_stamp(dir)?;
    tracing::debug!(
        format_version = stamp.format_version,
        written_by = %stamp.written_by,
        "role directory format"
    );
    Ok(lock)
}

/// Calls `stop` on the first SIGTERM or SIGINT; `close` the handle once stopped.
pub(crate) fn stop_on_signals(
    stop: impl FnOnce() + Send + 'static,
) -> anyhow::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "stopping");
                stop();
            }
        })
        .context("starting the signal thread")?;
    Ok(handle)
}

/// The DataNode role on one shard per core, with `control` on its own thread; a cluster
/// `member` also serves the internal port on shard 0.
fn run_data_node(
    config: ServerConfig,
    cores: usize,
    listeners: Vec<TcpListener>,
    mut control: ControlPlane,
    member: Option<crate::cluster::link::ClusterMember>,
) -> anyhow::Result<()> {
    let bound = listeners[0].local_addr()?;
    let data_node_id = control.data_node_id();
    let config_node_id = control.config_node_id();
    let route = Arc::new(SharedRoute::new(control.route_view()));
    let read_only_reported = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clustered = member.is_some();
    // A standalone server is both roles and serves both sets on the DataNode's port.
    let roles = if clustered {
        vec![Role::DataNode]
    } else {
        vec![Role::ConfigNode, Role::DataNode]
    };
    let metrics = NodeMetrics::new(roles, cores);
    let mut control = control;
    control.share_read_only_flag(read_only_reported.clone());
    control.share_metrics(metrics.clone());
    let (control_thread, control) =
        ControlThread::start(control, route.clone()).context("starting the control thread")?;
    crate::metrics::serve(
        config.dn_metrics_socket_address()?,
        "dn_metric_prometheus_reporter_port",
        &metrics,
    )?;
    let shared = Arc::new(NodeShared {
        config: config.clone(),
        data_node_id: data_node_id.0,
        shard_count: cores,
        route,
        connections: AtomicUsize::new(0),
        sessions: AtomicU64::new(0),
        control,
        read_only_reported,
        cluster: member,
        metrics: metrics.clone(),
    });
    let listeners: Arc<Mutex<Vec<Option<TcpListener>>>> =
        Arc::new(Mutex::new(listeners.into_iter().map(Some).collect()));
    // The storage pool's threads start here, on this unpinned thread, so that they may run
    // on every core the process may use: started by a pinned shard they would inherit its
    // one core.
    crate::datanode::background_pool(&config)
        .map_err(|status| anyhow::anyhow!("{}", status.message))?;
    let shards = ShardSetBuilder::new()
        .cores(cores)
        .pin_to_cores(config.dn_pin_shards_to_cores)
        .start({
            let shared = shared.clone();
            move |context: ShardContext<Message>| {
                shard_main(context, shared.clone(), listeners.clone())
            }
        })
        .context("starting the shards")?;
    let stop = shards.stop_signal();
    let stopping = metrics.clone();
    let signal_handle = stop_on_signals(move || {
        stopping.set_status(NodeStatus::Stopping);
        tracing::info!("flushing and closing every region");
        stop.request();
    })?;
    tracing::info!(
        config_node = %config_node_id,
        data_node = %data_node_id,
        %bound,
        shards = cores,
        wal_mode = %config.wal_mode,
        data_dir = %config.data_dir.display(),
        "{} started",
        if clustered { "DataNode" } else { "standalone server (ConfigNode and DataNode roles)" }
    );
    metrics.set_status(NodeStatus::Running);
    println!("{READY_LINE_PREFIX}{bound} ({cores} shards)");
    let results = shards.join();
    signal_handle.close();
    // Every shard has stopped asking: answer what is queued, checkpoint, stop.
    control_thread.stop();
    let mut failed = false;
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                failed = true;
                tracing::error!(shard = index, %message, "shard failed");
            }
            Err(e) => {
                failed = true;
                tracing::error!(shard = index, error = %e, "shard failed");
            }
        }
    }
    if failed {
        bail!("the server stopped after a shard failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How often a cluster member's shard looks for a newer route table to follow (dropped
/// regions, TTLs). Why 200 ms: a tenth of the default heartbeat that brings the change.
const ROUTE_FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a start waits for its client port to be released before giving up. A process
/// that just died (a crash, SIGKILL, a quick restart) may hold its listening socket a
/// little longer: io_uring tears its rings down after the process exits, and requests
/// still pending on the socket keep it open until then.
const PORT_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between two attempts to bind a port in use.
const PORT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Binds the client port exclusively (see `iotdb_runtime::net::shard_listeners`), waiting
/// up to [`PORT_RELEASE_WAIT`] while another process holds it, then failing with a message
/// naming the address.
fn bind_client_port(
    address: std::net::SocketAddr,
    cores: usize,
) -> anyhow::Result<Vec<TcpListener>> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    let mut told = false;
    loop {
        match iotdb_runtime::net::shard_listeners(address, cores) {
            Ok(listeners) => return Ok(listeners),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() >= deadline {
                    bail!(
                        "the client port {address} (dn_rpc_port) is already in use by another \
                         process; stop it or choose another port"
                    );
                }
                if !told {
                    told = true;
                    tracing::warn!(
                        %address,
                        "the client port is in use; waiting up to {PORT_RELEASE_WAIT:?} for it to be released"
                    );
                }
                std::thread::sleep(PORT_RETRY_PAUSE);
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("listening on {address}"))),
        }
    }
}

/// Binds the data-region consensus port of every shard: shard `s` replicates on
/// `dn_data_region_consensus_port + s` (port 0: shard 0 takes a free port, the others the
/// ports after it), on the internal address.
fn bind_consensus_ports(config: &ServerConfig, cores: usize) -> anyhow::Result<Vec<TcpListener>> {
    let ip = config.dn_internal_socket_address()?.ip();
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(cores);
    for shard in 0..cores {
        let port = match listeners.first() {
            None => config.dn_data_region_consensus_port,
            Some(first) => {
                u16::try_from(usize::from(first.local_addr()?.port()) + shard).map_err(|_| {
                    anyhow::anyhow!(
                        "dn_data_region_consensus_port: shard {shard} would listen past port 65535"
                    )
                })?
            }
        };
        listeners.push(bind_internal_waiting(
            std::net::SocketAddr::new(ip, port),
            "dn_data_region_consensus_port (shard s listens on it + s)",
        )?);
    }
    Ok(listeners)
}

/// Binds an internal port exclusively, waiting up to [`PORT_RELEASE_WAIT`] while another
/// process (a node that just died) still holds it.
pub(crate) fn bind_internal_waiting(
    address: std::net::SocketAddr,
    key: &'static str,
) -> anyhow::Result<TcpListener> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match crate::internal::bind_internal_port(address, key) {
            Ok(listener) => return Ok(listener),
            Err(crate::internal::InternalError::PortInUse { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(PORT_RETRY_PAUSE);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{key}: stop the other process or choose another port"
                )));
            }
        }
    }
}

async fn shard_main(
    context: ShardContext<Message>,
    shared: Arc<NodeShared>,
    listeners: Arc<Mutex<Vec<Option<TcpListener>>>>,
) -> Result<(), String> {
    let listener = listeners.lock().map_err(|_| "listener lock poisoned")?[context.id.index()]
        .take()
        .ok_or("no listener for this shard")?;
    let listener =
        monoio::net::TcpListener::from_std(listener).map_err(|e| format!("listener: {e}"))?;
    let stop = context.stop.clone();
    iotdb_storage::metrics::install_for_this_thread(
        shared.metrics.shard(context.id.index()).storage.clone(),
    );
    let shard = Shard::new(context.id, shared.clone(), context.mesh);
    let endpoint = match &shared.cluster {
        Some(member) if context.id.index() == 0 => {
            Some(crate::cluster::link::start_on_shard(&shard, member)?)
        }
        _ => None,
    };
    if let Some(member) = &shared.cluster {
        let listener = member
            .consensus_listeners
            .lock()
            .map_err(|_| "consensus listener lock poisoned")?
            .get_mut(context.id.index())
            .and_then(Option::take)
            .ok_or("no consensus listener for this shard")?;
        shard.start_replication(listener, &member.cluster_name)?;
    }
    shard.open_owned_regions();
    if shared.cluster.is_some() {
        // Other DataNodes change the ConfigNode state too: follow the route table.
        let follower = shard.clone();
        let follower_stop = stop.clone();
        monoio::spawn(async move {
            let mut seen = follower.route();
            loop {
                monoio::select! {
                    _ = follower_stop.wait() => break,
                    _ = monoio::time::sleep(ROUTE_FOLLOW_INTERVAL) => {}
                }
                let now = follower.route();
                if now.version() != seen.version() {
                    follower.follow_route(&seen, &now).await;
                    seen = now;
                }
            }
        });
    }
    monoio::spawn(publish_gauges(shard.clone(), stop.clone()));
    let receiver = shard.clone();
    let receiver_stop = stop.clone();
    // At most MESH_HANDLERS_IN_FLIGHT_MAX messages are handled at once; past that the
    // shard stops receiving and its senders meet the mesh's back-pressure.
    let limit = iotdb_runtime::InFlightLimit::new(MESH_HANDLERS_IN_FLIGHT_MAX);
    monoio::spawn(async move {
        let serve = receiver.mesh.serve(&limit, |message| {
            let shard = receiver.clone();
            async move { shard.on_message(message).await }
        });
        monoio::select! {
            _ = serve => {},
            _ = receiver_stop.wait() => {},
        }
    });
    handler::accept_loop(shard.clone(), listener, stop).await;
    if let Some(endpoint) = endpoint {
        endpoint.shut_down();
    }
    shard.stop_replication();
    shard.close_regions(true).await;
    Ok(())
}

/// Publishes the shard's gauges into its metrics slot every
/// [`crate::metrics::GAUGE_PUBLISH_INTERVAL`] until the node stops.
async fn publish_gauges(shard: std::rc::Rc<Shard>, stop: iotdb_runtime::StopSignal) {
    loop {
        shard.publish_metrics();
        // A region may turn read-only with no client write to hear it (a background flush,
        // compaction or metadata write failed): SHOW CLUSTER must say so all the same.
        if let Some(reason) = shard.read_only_region() {
            shard.report_read_only(&reason).await;
        }
        monoio::select! {
            _ = stop.wait() => break,
            _ = monoio::time::sleep(crate::metrics::GAUGE_PUBLISH_INTERVAL) => {}
        }
    }
}
