//! `iotdb-server confignode`: the ConfigNode role in a process of its own, serving
//! DataNodes over the internal protocol (`cn_internal_port`) and heartbeating every node.
//!
//! ```text
//!  main thread (monoio): InternalEndpoint on cn_internal_port
//!    ToConfigNode::Register / Config / Fetch ──► ConfigNode::handle (journaled) ──► answer
//!                                                 + the commands the asker's mirror lacks
//!    heartbeat task, every heartbeat_interval_in_ms:
//!      each DataNode ──ToNode::Heartbeat{delta}──► Alive{status, version} ─► Running/ReadOnly
//!                    broken connection, or HEARTBEATS_MISSED_FOR_UNKNOWN missed ─► Unknown
//! ```
//!
//! The first ConfigNode (`cn_seed_config_node` = its own `cn_internal_address:port`)
//! founds the cluster and registers itself; its id and cluster name are kept in
//! `confignode/node-identity.json`, so a restart serves the same cluster as the same node.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use super::identity::{self, Identity};
use super::protocol::{self, Delta, FromConfigNode, FromNode, NodeSpec, ToConfigNode, ToNode};
use super::replicated::{RaftOptions, RaftShared, RaftStore, raft_id};
use crate::config::{HEARTBEATS_MISSED_FOR_UNKNOWN, ServerConfig, parse_endpoint};
use crate::confignode::procedure::LeaderReport;
use crate::confignode::{
    ConfigNode, ConfigNodeSpec, ConfigRequest, NoEffects, NodeId, NodeStatus,
    check_settings_unchanged,
};
use crate::internal::{
    EndpointConfig, InternalEndpoint, InternalError, InternalHandler, InternalLimits,
};

/// The line printed on stdout once the ConfigNode serves (tests and scripts wait for it).
pub const CONFIGNODE_READY_PREFIX: &str = "iotdb-server confignode ready: node ";

/// How long a founding ConfigNode waits to win the election of its one-member group.
const FOUNDING_LEADER_WAIT: Duration = Duration::from_secs(10);

/// This ConfigNode's declaration.
fn own_spec(config: &ServerConfig) -> ConfigNodeSpec {
    ConfigNodeSpec {
        internal_address: config.cn_internal_address.clone(),
        internal_port: config.cn_internal_port,
        consensus_port: config.cn_consensus_port,
        version: env!("CARGO_PKG_VERSION").to_string(),
        build_info: crate::server::BUILD_INFO.to_string(),
    }
}

/// Runs a ConfigNode until SIGTERM or SIGINT.
pub fn run_confignode(config: ServerConfig) -> anyhow::Result<()> {
    config.validate()?;
    let dir = config.confignode_dir();
    let _lock = crate::server::lock_role_dir(&dir)?;
    let own = config.cn_internal_socket_address()?;
    let consensus = std::net::SocketAddr::new(own.ip(), config.cn_consensus_port);
    let seed = parse_endpoint(&config.cn_seed_config_node).context("cn_seed_config_node")?;
    let known = identity::load(&dir)?;
    if let Some(known) = &known {
        identity::check_cluster(known, &config.cluster_name, &dir)?;
    }
    let listener = crate::server::bind_internal_waiting(own, "cn_internal_port")?;
    let consensus_listener = crate::server::bind_internal_waiting(consensus, "cn_consensus_port")?;
    let metrics = crate::metrics::NodeMetrics::new(vec![crate::metrics::Role::ConfigNode], 0);
    crate::metrics::serve(
        config.cn_metrics_socket_address()?,
        "cn_metric_prometheus_reporter_port",
        &metrics,
    )?;
    // Who this node is: as before a restart; the founder of a new cluster (its seed is
    // itself); or a new member, registered by the seed's group leader.
    let mut peers = std::collections::HashMap::new();
    let (node_id, founding) = match &known {
        Some(known) => (known.node_id, false),
        None if seed == own => (NodeId(0), true),
        None => {
            let joined = super::registration::register(
                &config.cn_seed_config_node,
                "cn_seed_config_node",
                &config.cluster_name,
                None,
                &protocol::ToConfigNode::Register {
                    node: NodeSpec::ConfigNode(own_spec(&config)),
                    settings: config.cluster_settings(),
                    claimed_id: None,
                },
                config.seed_config_node_wait(),
            )?;
            identity::store(
                &dir,
                &Identity {
                    cluster_name: config.cluster_name.clone(),
                    node_id: joined.node_id,
                },
            )?;
            tracing::info!(node_id = %joined.node_id, leader = %joined.leader, "joined the ConfigNode group");
            peers.extend(
                joined
                    .consensus_peers
                    .iter()
                    .map(|(node, address)| (raft_id(*node), *address)),
            );
            (joined.node_id, false)
        }
    };
    let (store, recovered) = RaftStore::start(RaftOptions {
        node_id,
        cluster_name: config.cluster_name.clone(),
        dir: dir.join("raft"),
        listener: consensus_listener,
        founding,
        settings: config.cluster_settings(),
        peers,
    })?;
    let raft = store.shared().clone();
    let mut node = ConfigNode::from_store(store, recovered, config.cluster_settings())
        .with_context(|| format!("opening the ConfigNode state in {}", dir.display()))?;
    if founding {
        let deadline = Instant::now() + FOUNDING_LEADER_WAIT;
        while raft.leader() != Some(node_id) {
            if Instant::now() >= deadline || raft.has_failed() {
                bail!("the new ConfigNode group elected no leader within {FOUNDING_LEADER_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        node.catch_up();
        let registered = node
            .handle(
                ConfigRequest::RegisterConfigNode(own_spec(&config)),
                &mut NoEffects,
            )?
            .into_node_id()?;
        if registered != node_id {
            bail!("the founding ConfigNode was registered as {registered}, not {node_id}");
        }
        identity::store(
            &dir,
            &Identity {
                cluster_name: config.cluster_name.clone(),
                node_id,
            },
        )?;
    }
    if let Some(point) = crate::datanode::control::kill_point_from_env()? {
        node.set_kill_mode(crate::confignode::KillMode::Abort(point));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signals = crate::server::stop_on_signals({
        let stop = stop.clone();
        move || stop.store(true, Ordering::Release)
    })?;
    let mut runtime = iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .context("starting the ConfigNode runtime")?;
    let service = Rc::new(Service {
        node: RefCell::new(node),
        node_id,
        raft,
        leading: Cell::new(false),
        liveness: RefCell::new(HashMap::new()),
        region_sizes: RefCell::new(std::collections::BTreeMap::new()),
        leader_reports: RefCell::new(HashMap::new()),
        last_data_nodes: RefCell::new(HashMap::new()),
        departed: RefCell::new(HashMap::new()),
        seen_self: Cell::new(false),
        removed: Cell::new(false),
        last_voter_check: Cell::new(Instant::now()),
    });
    let outcome = runtime.block_on(async {
        let endpoint = InternalEndpoint::new(
            EndpointConfig {
                node_id,
                cluster_name: config.cluster_name.clone(),
                limits: InternalLimits::default(),
            },
            Rc::new(Handler {
                service: service.clone(),
            }),
        )?;
        let bound = endpoint.serve(listener)?;
        tracing::info!(%node_id, %bound, cluster = %config.cluster_name, "ConfigNode started");
        metrics.set_status(crate::metrics::NodeStatus::Running);
        println!("{CONFIGNODE_READY_PREFIX}{node_id} on {bound}");
        let outcome = heartbeat_loop(
            &service,
            &endpoint,
            config.heartbeat_interval(),
            &stop,
            &metrics,
        )
        .await;
        metrics.set_status(crate::metrics::NodeStatus::Stopping);
        endpoint.shut_down();
        outcome
    });
    signals.close();
    let mut node = service.node.borrow_mut();
    if let Err(e) = node.checkpoint() {
        tracing::error!(error = %e, "checkpointing the ConfigNode state failed");
    }
    outcome?;
    tracing::info!("stopped");
    Ok(())
}

/// A registration refused, with the reason.
fn refused(message: String) -> FromConfigNode {
    FromConfigNode::Refused(protocol::WireStatus {
        code: iotdb_net::StatusCode::EXECUTE_STATEMENT_ERROR.code(),
        message,
    })
}

/// What the ConfigNode knows of a node's heartbeats (runtime only).
#[derive(Debug, Default)]
struct Liveness {
    /// Heartbeats missed in a row.
    missed: u32,
    /// The version of the node's mirror in its last answer.
    acked_version: Option<u64>,
    /// A heartbeat to it is in flight (one at a time per node).
    in_flight: bool,
    /// Bumped when the node registers again (a restart): the outcome of a heartbeat sent
    /// to its previous incarnation is ignored.
    incarnation: u64,
    /// Registered again since the last heartbeat was sent: the connection failure the
    /// endpoint remembers of the previous incarnation is forgotten before the next one,
    /// else that heartbeat fails at once and the node just registered turns Unknown.
    registered_again: bool,
}

struct Service {
    node: RefCell<ConfigNode<RaftStore>>,
    node_id: NodeId,
    raft: Arc<RaftShared>,
    /// Whether this node led at the last tick (a new leader starts liveness afresh and
    /// resumes interrupted procedures).
    leading: Cell<bool>,
    liveness: RefCell<HashMap<NodeId, Liveness>>,
    /// Bytes on disk of each data region, as the DataNodes' heartbeats last said.
    region_sizes: RefCell<std::collections::BTreeMap<u32, u64>>,
    /// What the leader of each replicated data group last said of its followers (the
    /// DataNodes' heartbeat answers): runtime knowledge that moves migrations on.
    leader_reports: RefCell<HashMap<u32, LeaderReport>>,
    /// The DataNodes of the last heartbeat round, to notice one that was forgotten.
    last_data_nodes: RefCell<HashMap<NodeId, Option<SocketAddr>>>,
    /// DataNodes forgotten (removed) that still get heartbeats until they stop, and until
    /// when.
    departed: RefCell<HashMap<NodeId, (Option<SocketAddr>, Instant)>>,
    /// The Raft configuration listed this ConfigNode once (so its absence later means a
    /// removal).
    seen_self: Cell<bool>,
    /// The removal was noticed and the stop requested.
    removed: Cell<bool>,
    /// When the leader last compared the Raft voters with the state's ConfigNodes.
    last_voter_check: Cell<Instant>,
}

/// How long a removed DataNode is still heartbeated (so it learns of its removal and stops
/// itself). Why 30 s: it answers within a heartbeat interval and stops in seconds; a node
/// that does not is down and is told at its next start (its registration is refused).
const DEPARTED_HEARTBEATS_FOR: Duration = Duration::from_secs(30);

impl Service {
    fn is_leader(&self) -> bool {
        self.raft.leader() == Some(self.node_id)
    }

    /// The redirect a follower answers with.
    fn not_leader(&self) -> FromConfigNode {
        let leader = self.raft.leader();
        let leader_address = leader.and_then(|leader| {
            let node = self.node.borrow();
            let info = node.state().config_nodes().get(&leader)?;
            Some(format!(
                "{}:{}",
                info.spec.internal_address, info.spec.internal_port
            ))
        });
        FromConfigNode::NotLeader {
            leader,
            leader_address,
        }
    }

    /// The internal endpoint of this node (`host:port`).
    fn own_address(&self) -> String {
        let node = self.node.borrow();
        node.state()
            .config_nodes()
            .get(&self.node_id)
            .map(|info| format!("{}:{}", info.spec.internal_address, info.spec.internal_port))
            .unwrap_or_default()
    }

    /// Every ConfigNode's consensus endpoint, from the state.
    fn consensus_endpoints(&self) -> Vec<(NodeId, String)> {
        let node = self.node.borrow();
        node.state()
            .config_nodes()
            .values()
            .map(|info| {
                (
                    info.node_id,
                    format!(
                        "{}:{}",
                        info.spec.internal_address, info.spec.consensus_port
                    ),
                )
            })
            .collect()
    }

    /// Tells the raft thread every ConfigNode's consensus address.
    fn sync_peers(&self) {
        let peers = self
            .consensus_endpoints()
            .into_iter()
            .filter_map(|(node, address)| Some((raft_id(node), parse_endpoint(&address)?)))
            .collect();
        self.raft.add_peers(peers);
    }

    /// One tick of the ConfigNode's loop: applies what the group committed, follows
    /// leadership, compacts when asked. An error stops the process (a failed raft disk).
    fn tick(&self) -> anyhow::Result<()> {
        if self.raft.has_failed() {
            bail!("the ConfigNode raft group failed (see the log); restart this ConfigNode");
        }
        let mut node = self.node.borrow_mut();
        node.catch_up();
        node.set_leader(self.raft.leader());
        if self.raft.take_compact_request()
            && let Err(e) = node.checkpoint()
        {
            tracing::warn!(error = %e, "compacting the ConfigNode state failed");
        }
        drop(node);
        self.sync_peers();
        let leading = self.is_leader();
        if leading && !self.leading.get() {
            tracing::info!(node_id = %self.node_id, "leading the ConfigNode group");
            self.liveness.borrow_mut().clear();
            match self.node.borrow_mut().resume_procedures(&mut NoEffects) {
                Ok(0) => {}
                Ok(resumed) => tracing::info!(resumed, "resumed interrupted procedures"),
                Err(e) => {
                    tracing::warn!(error = %e, "resuming procedures failed; retried on the next leadership")
                }
            }
        }
        self.leading.set(leading);
        self.follow_config_node_removals(leading);
        Ok(())
    }

    /// `REMOVE CONFIGNODE`: the leader takes every ConfigNode the state forgot out of the
    /// Raft group (again each second until the configuration says so); a ConfigNode that
    /// finds itself out of the group's configuration stops as on SIGTERM.
    fn follow_config_node_removals(&self, leading: bool) {
        let node = self.node.borrow();
        // The Raft configuration says it, not the state: a follower's state may lag.
        let voters = self.raft.voters();
        let listed = voters.contains(&crate::cluster::replicated::raft_id(self.node_id));
        if listed {
            self.seen_self.set(true);
        } else if self.seen_self.get() && !voters.is_empty() && !self.removed.replace(true) {
            tracing::warn!(node_id = %self.node_id, "this ConfigNode was removed from the cluster; stopping");
            if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
                tracing::error!(error = %e, "stopping after the removal failed; stop this process");
            }
        }
        if !leading || self.last_voter_check.get().elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_voter_check.set(Instant::now());
        let forgotten: Vec<NodeId> = self
            .raft
            .voters()
            .into_iter()
            .map(crate::cluster::replicated::node_of)
            // Never itself: a leader does not vote itself out (REMOVE CONFIGNODE of the
            // leader hands leadership over first, see `serve`).
            .filter(|id| *id != self.node_id && !node.state().config_nodes().contains_key(id))
            .collect();
        for id in forgotten {
            tracing::info!(node = %id, "taking a removed ConfigNode out of the group");
            if let Err(e) = node.store().remove_voter(id) {
                tracing::warn!(node = %id, error = %e, "removing a ConfigNode from the group failed; retried");
            }
        }
    }

    /// The commands a mirror at `known_version` lacks.
    fn delta_since(&self, known_version: Option<u64>) -> Delta {
        let node = self.node.borrow();
        let commands = known_version.and_then(|version| node.commands_since(version));
        match (known_version, commands) {
            (Some(_), Some(commands)) if commands.is_empty() => Delta::None,
            (Some(from_version), Some(commands)) => Delta::Commands {
                from_version,
                commands,
            },
            _ => Delta::Full(Box::new(node.state().clone())),
        }
    }

    /// Whom the leader heartbeats: every DataNode (not being removed) and every other
    /// ConfigNode, with their internal endpoints; `true` for DataNodes.
    fn heartbeat_targets(&self) -> Vec<(NodeId, Option<SocketAddr>, bool)> {
        let node = self.node.borrow();
        let state = node.state();
        // A Removing DataNode serves (and is heartbeated) until its replicas moved.
        let current: HashMap<NodeId, Option<SocketAddr>> = state
            .data_nodes()
            .values()
            .map(|info| {
                let address = format!("{}:{}", info.spec.internal_address, info.spec.internal_port);
                (info.node_id, parse_endpoint(&address))
            })
            .collect();
        // One that was just forgotten (its removal finished) is told so by the next
        // heartbeats' delta, and stops itself; it is heartbeated until it no longer
        // answers, for at most `DEPARTED_HEARTBEATS_FOR`.
        let now = Instant::now();
        let mut departed = self.departed.borrow_mut();
        for (id, address) in self.last_data_nodes.replace(current.clone()) {
            if !current.contains_key(&id) {
                departed.insert(id, (address, now + DEPARTED_HEARTBEATS_FOR));
            }
        }
        departed.retain(|id, (_, until)| {
            *until > now
                && self
                    .liveness
                    .borrow()
                    .get(id)
                    .is_none_or(|l| l.missed < HEARTBEATS_MISSED_FOR_UNKNOWN)
        });
        let data_nodes = current
            .into_iter()
            .chain(departed.iter().map(|(id, (address, _))| (*id, *address)))
            .map(|(id, address)| (id, address, true))
            .collect::<Vec<_>>()
            .into_iter();
        let config_nodes = state
            .config_nodes()
            .values()
            .filter(|info| info.node_id != self.node_id)
            .map(|info| {
                let address = format!("{}:{}", info.spec.internal_address, info.spec.internal_port);
                (info.node_id, parse_endpoint(&address), false)
            });
        data_nodes.chain(config_nodes).collect()
    }

    /// Every ConfigNode's internal endpoint.
    fn config_node_endpoints(&self) -> Vec<(NodeId, String)> {
        self.node
            .borrow()
            .state()
            .config_nodes()
            .values()
            .map(|info| {
                (
                    info.node_id,
                    format!("{}:{}", info.spec.internal_address, info.spec.internal_port),
                )
            })
            .collect()
    }

    fn serve(&self, request: ToConfigNode) -> FromConfigNode {
        if matches!(request, ToConfigNode::Ping) {
            return FromConfigNode::Answer {
                result: Ok(crate::confignode::ConfigResponse::Done),
                delta: Delta::None,
            };
        }
        self.node.borrow_mut().catch_up();
        if !self.is_leader() {
            return self.not_leader();
        }
        match request {
            ToConfigNode::Ping => unreachable!("answered above"),
            ToConfigNode::Register {
                node,
                settings,
                claimed_id,
            } => self.register(node, &settings, claimed_id),
            ToConfigNode::Config {
                request: ConfigRequest::RemoveConfigNode { node_id },
                ..
            } if node_id == self.node_id && self.node.borrow().state().config_nodes().len() > 1 => {
                // A leader does not vote itself out: it hands leadership over and sends
                // the asker on (no leader yet: it waits and asks again), and the next
                // leader removes this node as it removes any follower.
                tracing::info!(node_id = %self.node_id, "REMOVE CONFIGNODE of the leader: handing leadership over first");
                if let Err(e) = self.node.borrow().store().hand_over_leadership() {
                    tracing::warn!(error = %e, "handing ConfigNode leadership over failed");
                }
                FromConfigNode::NotLeader {
                    leader: None,
                    leader_address: None,
                }
            }
            ToConfigNode::Config {
                mut request,
                known_version,
            } => {
                if let ConfigRequest::Show(crate::confignode::ShowRequest::Regions {
                    sizes, ..
                }) = &mut request
                {
                    // The asker knows its own regions' sizes; heartbeats told the others.
                    for (region, size) in self.region_sizes.borrow().iter() {
                        sizes.entry(*region).or_insert(*size);
                    }
                }
                let result = self
                    .node
                    .borrow_mut()
                    .handle(request, &mut NoEffects)
                    .map_err(|e| crate::datanode::control::config_status(e).into());
                FromConfigNode::Answer {
                    result,
                    delta: self.delta_since(Some(known_version)),
                }
            }
            ToConfigNode::Fetch { known_version } => FromConfigNode::Answer {
                result: Ok(crate::confignode::ConfigResponse::Done),
                delta: self.delta_since(Some(known_version)),
            },
        }
    }

    fn register(
        &self,
        spec: NodeSpec,
        settings: &crate::confignode::ClusterSettings,
        claimed_id: Option<NodeId>,
    ) -> FromConfigNode {
        let result = {
            let mut node = self.node.borrow_mut();
            if let Err(e) = check_settings_unchanged(node.state().settings(), settings) {
                return refused(format!(
                    "{e}: every node of a cluster must be started with the same value"
                ));
            }
            let spec = match spec {
                NodeSpec::DataNode(spec) => spec,
                NodeSpec::ConfigNode(spec) => {
                    drop(node);
                    return self.register_config_node(spec, claimed_id);
                }
            };
            let registered = node
                .state()
                .data_node_at(&spec.internal_address, spec.internal_port);
            let holder = registered.map(|info| info.node_id);
            // The same node again (same token): it died before it persisted its id.
            let retried = registered.is_some_and(|info| {
                spec.registration_token != 0
                    && info.spec.registration_token == spec.registration_token
            });
            match (claimed_id, holder) {
                (None, Some(_)) if retried => {}
                (None, Some(holder)) => {
                    return refused(format!(
                        "{}:{} (dn_internal_address:dn_internal_port) is already registered as \
                         DataNode {holder}; a new DataNode needs its own address (or restart \
                         node {holder} with its own data directory)",
                        spec.internal_address, spec.internal_port
                    ));
                }
                (Some(claimed), holder) if holder != Some(claimed) => {
                    let known = node.state().data_nodes().contains_key(&claimed);
                    return refused(if known {
                        format!(
                            "this DataNode is node {claimed}, registered with another internal \
                             address; start it with its original dn_internal_address and \
                             dn_internal_port"
                        )
                    } else {
                        format!(
                            "node {claimed} is not a DataNode of this cluster (its data \
                             directory belongs to another cluster, or the node was removed)"
                        )
                    });
                }
                _ => {}
            }
            node.handle(ConfigRequest::RegisterDataNode(spec), &mut NoEffects)
                .and_then(|answer| answer.into_node_id())
        };
        match result {
            Ok(node_id) => {
                tracing::info!(%node_id, "DataNode registered");
                let mut liveness = self.liveness.borrow_mut();
                let entry = liveness.entry(node_id).or_default();
                entry.missed = 0;
                entry.acked_version = None;
                entry.incarnation += 1;
                entry.registered_again = true;
                FromConfigNode::Registered {
                    node_id,
                    leader: self.node_id,
                    leader_address: self.own_address(),
                    delta: self.delta_since(None),
                    consensus_peers: Vec::new(),
                }
            }
            Err(e) => refused(e.to_string()),
        }
    }

    /// Registers a ConfigNode joining the group and makes it a voter (both idempotent: a
    /// joiner that retries after a crash gets the same id).
    fn register_config_node(
        &self,
        spec: ConfigNodeSpec,
        claimed_id: Option<NodeId>,
    ) -> FromConfigNode {
        let holder = self
            .node
            .borrow()
            .state()
            .config_node_at(&spec.internal_address, spec.internal_port)
            .map(|info| info.node_id);
        if let (Some(claimed), Some(holder)) = (claimed_id, holder)
            && claimed != holder
        {
            return refused(format!(
                "{}:{} is ConfigNode {holder}, not {claimed}",
                spec.internal_address, spec.internal_port
            ));
        }
        let registered = self
            .node
            .borrow_mut()
            .handle(ConfigRequest::RegisterConfigNode(spec), &mut NoEffects)
            .and_then(|answer| answer.into_node_id());
        let node_id = match registered {
            Ok(node_id) => node_id,
            Err(e) => return refused(e.to_string()),
        };
        super::kill_point("ConfigNode.Registered");
        self.sync_peers();
        if let Err(e) = self.node.borrow().store().add_voter(node_id) {
            return refused(format!("adding ConfigNode {node_id} to the group: {e}"));
        }
        tracing::info!(%node_id, "ConfigNode joined the group");
        FromConfigNode::Registered {
            node_id,
            leader: self.node_id,
            leader_address: self.own_address(),
            delta: Delta::None,
            consensus_peers: self.consensus_endpoints(),
        }
    }

    /// Evens out leadership of replicated region groups (a DataNode that came back, or
    /// rejoined an in-sync set, takes its share again). Cheap when even: no command.
    fn balance_leaders(&self) {
        let reports = self.leader_reports.borrow();
        let mut node = self.node.borrow_mut();
        match node.balance_leaders(&reports) {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "moved region group leaders to even them out"),
            Err(e) => tracing::warn!(error = %e, "balancing region group leaders failed"),
        }
    }

    /// Moves migrations and DataNode removals on from the leaders' latest reports.
    fn advance_procedures(&self) {
        let reports = self.leader_reports.borrow();
        let mut node = self.node.borrow_mut();
        match node.advance_procedures(&reports) {
            Ok(0) => {}
            Ok(changes) => tracing::debug!(changes, "procedures moved on"),
            Err(e) => tracing::warn!(error = %e, "moving procedures on failed; retried next round"),
        }
    }

    /// Records a heartbeat's outcome: an answer makes an Unknown node Running again (and
    /// records a ReadOnly report); a broken connection, or too many missed answers, make
    /// it Unknown.
    fn heartbeat_done(
        &self,
        target: NodeId,
        incarnation: u64,
        outcome: Result<FromNode, InternalError>,
    ) {
        let status = {
            let mut liveness = self.liveness.borrow_mut();
            let entry = liveness.entry(target).or_default();
            entry.in_flight = false;
            if entry.incarnation != incarnation {
                return; // Sent to an incarnation that has since registered again.
            }
            match outcome {
                Ok(FromNode::Alive {
                    status,
                    version,
                    region_sizes,
                    leading,
                    ..
                }) => {
                    entry.missed = 0;
                    let mut reports = self.leader_reports.borrow_mut();
                    reports.retain(|_, report| report.leader != target.0);
                    reports.extend(leading.into_iter().map(|report| (report.group, report)));
                    drop(reports);
                    entry.acked_version = Some(version);
                    let mut sizes = self.region_sizes.borrow_mut();
                    sizes.extend(region_sizes);
                    let node = self.node.borrow();
                    let groups = node.state().region_groups();
                    sizes.retain(|id, _| {
                        groups.contains_key(&crate::confignode::RegionGroupId(*id))
                    });
                    Some(status)
                }
                Ok(FromNode::Refused(status)) => {
                    tracing::warn!(node = %target, reason = %status.message, "a node refused a heartbeat");
                    entry.missed += 1;
                    None
                }
                Ok(other) => {
                    tracing::warn!(node = %target, ?other, "a node answered a heartbeat with something else");
                    entry.missed += 1;
                    None
                }
                Err(error) => {
                    entry.missed += 1;
                    if matches!(error, InternalError::Unreachable { .. }) {
                        entry.missed = entry.missed.max(HEARTBEATS_MISSED_FOR_UNKNOWN);
                    }
                    tracing::debug!(node = %target, %error, missed = entry.missed, "heartbeat failed");
                    None
                }
            }
        };
        let missed = self.liveness.borrow()[&target].missed;
        if !self.is_leader() {
            return; // Only the leader records statuses.
        }
        let mut node = self.node.borrow_mut();
        let data_node = node.state().data_nodes().get(&target).map(|n| n.status);
        let config_node = node.state().config_nodes().get(&target).map(|n| n.status);
        let Some(current) = data_node.or(config_node) else {
            return;
        };
        let change = match status {
            Some(reported) => {
                if data_node.is_some()
                    && let Err(e) = node.report_status(target, reported)
                {
                    tracing::warn!(node = %target, error = %e, "recording a reported status failed");
                }
                (current == NodeStatus::Unknown).then_some(NodeStatus::Running)
            }
            None if missed >= HEARTBEATS_MISSED_FOR_UNKNOWN && current == NodeStatus::Running => {
                Some(NodeStatus::Unknown)
            }
            None => None,
        };
        if let Some(status) = change {
            tracing::info!(node = %target, from = %current.as_str(), to = %status.as_str(), "node status changed");
            if let Err(e) = node.set_node_status(target, status) {
                tracing::error!(node = %target, error = %e, "recording a node status failed");
            }
        }
    }
}

/// Heartbeats every DataNode each interval until `stop`.
async fn heartbeat_loop(
    service: &Rc<Service>,
    endpoint: &InternalEndpoint,
    interval: Duration,
    stop: &AtomicBool,
    metrics: &crate::metrics::NodeMetrics,
) -> anyhow::Result<()> {
    let tick = interval.min(Duration::from_millis(50));
    let mut next = Instant::now();
    let mut published: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        service.tick()?;
        if published.is_none_or(|at| at.elapsed() >= crate::metrics::GAUGE_PUBLISH_INTERVAL) {
            published = Some(Instant::now());
            // Only the leader hears heartbeats: a follower's statuses would be stale.
            metrics.set_cluster(
                service
                    .is_leader()
                    .then(|| service.node.borrow().cluster_gauges()),
            );
        }
        if !service.is_leader() || Instant::now() < next {
            monoio::time::sleep(tick).await;
            continue;
        }
        next = Instant::now() + interval;
        service.balance_leaders();
        service.advance_procedures();
        for (target, address, to_data_node) in service.heartbeat_targets() {
            let Some(address) = address else { continue };
            {
                let mut liveness = service.liveness.borrow_mut();
                let entry = liveness.entry(target).or_default();
                if entry.in_flight {
                    entry.missed += 1;
                    continue;
                }
                entry.in_flight = true;
            }
            endpoint.add_peer(target, address);
            if std::mem::take(
                &mut service
                    .liveness
                    .borrow_mut()
                    .entry(target)
                    .or_default()
                    .registered_again,
            ) {
                endpoint.clear_unreachable(target);
            }
            let (acked, incarnation) = {
                let liveness = service.liveness.borrow();
                (
                    liveness[&target].acked_version,
                    liveness[&target].incarnation,
                )
            };
            let body = if to_data_node {
                protocol::encode(&ToNode::Heartbeat {
                    leader: service.node_id,
                    config_nodes: service.config_node_endpoints(),
                    delta: service.delta_since(acked),
                })
            } else {
                protocol::encode(&ToConfigNode::Ping)
            };
            let service = service.clone();
            let endpoint = endpoint.clone();
            monoio::spawn(async move {
                let answer = endpoint.request(target, body, interval).await;
                let outcome = answer.and_then(|answer| {
                    let malformed = |status: iotdb_net::Status| InternalError::Malformed {
                        what: "heartbeat answer",
                        reason: status.message,
                    };
                    if to_data_node {
                        protocol::decode::<FromNode>("heartbeat answer", &answer).map_err(malformed)
                    } else {
                        // A ConfigNode that answers at all is alive.
                        protocol::decode::<FromConfigNode>("ping answer", &answer)
                            .map_err(malformed)
                            .map(|_| FromNode::Alive {
                                status: NodeStatus::Running,
                                version: 0,
                                regions: 0,
                                region_sizes: Vec::new(),
                                leading: Vec::new(),
                            })
                    }
                });
                service.heartbeat_done(target, incarnation, outcome);
            });
        }
    }
    Ok(())
}

struct Handler {
    service: Rc<Service>,
}

impl InternalHandler for Handler {
    fn handle_request(&self, _from: NodeId, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes>>> {
        let answer = match protocol::decode::<ToConfigNode>("ConfigNode request", &body) {
            Ok(request) => self.service.serve(request),
            Err(status) => FromConfigNode::Refused(status.into()),
        };
        let body = protocol::encode(&answer);
        Box::pin(async move { body })
    }

    fn on_message(&self, from: NodeId, _body: Bytes) {
        tracing::debug!(%from, "ignored a one-way message: the ConfigNode expects none yet");
    }
}
