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

use std::cell::RefCell;
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
use crate::config::{HEARTBEATS_MISSED_FOR_UNKNOWN, ServerConfig, parse_endpoint};
use crate::confignode::{
    ConfigNode, ConfigNodeSpec, ConfigRequest, NoEffects, NodeId, NodeStatus,
    check_settings_unchanged,
};
use crate::internal::{
    EndpointConfig, InternalEndpoint, InternalError, InternalHandler, InternalLimits,
};

/// The line printed on stdout once the ConfigNode serves (tests and scripts wait for it).
pub const CONFIGNODE_READY_PREFIX: &str = "iotdb-server confignode ready: node ";

/// Runs a ConfigNode until SIGTERM or SIGINT.
pub fn run_confignode(config: ServerConfig) -> anyhow::Result<()> {
    config.validate()?;
    let dir = config.confignode_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = crate::server::lock_data_dir(&config.data_dir)?;
    let own = config.cn_internal_socket_address()?;
    let seed = parse_endpoint(&config.cn_seed_config_node).context("cn_seed_config_node")?;
    let known = identity::load(&dir)?;
    if let Some(known) = &known {
        identity::check_cluster(known, &config.cluster_name, &dir)?;
    } else if seed != own {
        bail!(
            "cn_seed_config_node = {seed} is another ConfigNode: joining a running ConfigNode \
             group needs the replicated ConfigNode state, which this version does not have \
             yet; run one ConfigNode (cn_seed_config_node = {own}, its own address)"
        );
    }
    let listener = crate::server::bind_internal_waiting(own, "cn_internal_port")?;
    let mut node = ConfigNode::open(&dir, config.cluster_settings())
        .with_context(|| format!("opening the ConfigNode state in {}", dir.display()))?;
    let node_id = node
        .handle(
            ConfigRequest::RegisterConfigNode(ConfigNodeSpec {
                internal_address: config.cn_internal_address.clone(),
                internal_port: config.cn_internal_port,
                consensus_port: config.cn_consensus_port,
                version: env!("CARGO_PKG_VERSION").to_string(),
                build_info: crate::server::BUILD_INFO.to_string(),
            }),
            &mut NoEffects,
        )?
        .into_node_id()?;
    match &known {
        Some(known) if known.node_id != node_id => bail!(
            "{} says this is node {}, but the ConfigNode state registers it as {node_id}",
            dir.display(),
            known.node_id
        ),
        Some(_) => {}
        None => identity::store(
            &dir,
            &Identity {
                cluster_name: config.cluster_name.clone(),
                node_id,
            },
        )?,
    }
    node.set_leader(Some(node_id));
    if let Some(point) = crate::datanode::control::kill_point_from_env()? {
        node.set_kill_mode(crate::confignode::KillMode::Abort(point));
    }
    let resumed = node.resume_procedures(&mut NoEffects)?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed interrupted procedures");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signals = crate::server::stop_on_signals({
        let stop = stop.clone();
        move || stop.store(true, Ordering::Release)
    })?;
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .context("starting the ConfigNode runtime")?;
    let service = Rc::new(Service {
        node: RefCell::new(node),
        node_id,
        address: own,
        liveness: RefCell::new(HashMap::new()),
    });
    runtime.block_on(async {
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
        println!("{CONFIGNODE_READY_PREFIX}{node_id} on {bound}");
        heartbeat_loop(&service, &endpoint, config.heartbeat_interval(), &stop).await;
        endpoint.shut_down();
        anyhow::Ok(())
    })?;
    signals.close();
    if let Err(e) = service.node.borrow_mut().checkpoint() {
        tracing::error!(error = %e, "checkpointing the ConfigNode state failed");
    }
    tracing::info!("stopped");
    Ok(())
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
}

struct Service {
    node: RefCell<ConfigNode>,
    node_id: NodeId,
    address: SocketAddr,
    liveness: RefCell<HashMap<NodeId, Liveness>>,
}

impl Service {
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
        match request {
            ToConfigNode::Register {
                node,
                settings,
                claimed_id,
            } => self.register(node, &settings, claimed_id),
            ToConfigNode::Config {
                request,
                known_version,
            } => {
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
        let refused = |message: String| {
            FromConfigNode::Refused(protocol::WireStatus {
                code: iotdb_net::StatusCode::EXECUTE_STATEMENT_ERROR.code(),
                message,
            })
        };
        let result = {
            let mut node = self.node.borrow_mut();
            if let Err(e) = check_settings_unchanged(node.state().settings(), settings) {
                return refused(format!(
                    "{e}: every node of a cluster must be started with the same value"
                ));
            }
            let NodeSpec::DataNode(spec) = spec else {
                return refused(
                    "joining a running ConfigNode group needs the replicated ConfigNode \
                     state, which this version does not have yet"
                        .into(),
                );
            };
            let holder = node
                .state()
                .data_nodes()
                .values()
                .find(|info| {
                    info.spec.internal_address == spec.internal_address
                        && info.spec.internal_port == spec.internal_port
                })
                .map(|info| info.node_id);
            match (claimed_id, holder) {
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
                FromConfigNode::Registered {
                    node_id,
                    leader: self.node_id,
                    leader_address: self.address.to_string(),
                    delta: self.delta_since(None),
                }
            }
            Err(e) => refused(e.to_string()),
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
                    status, version, ..
                }) => {
                    entry.missed = 0;
                    entry.acked_version = Some(version);
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
        let mut node = self.node.borrow_mut();
        let Some(current) = node.state().data_nodes().get(&target).map(|n| n.status) else {
            return;
        };
        let change = match status {
            Some(reported) => {
                if let Err(e) = node.report_status(target, reported) {
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
) {
    let tick = interval.min(Duration::from_millis(100));
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if Instant::now() < next {
            monoio::time::sleep(tick.min(next - Instant::now())).await;
            continue;
        }
        next = Instant::now() + interval;
        let targets: Vec<(NodeId, Option<SocketAddr>)> = service
            .node
            .borrow()
            .state()
            .data_nodes()
            .values()
            .filter(|info| info.status != NodeStatus::Removing)
            .map(|info| {
                let address = format!("{}:{}", info.spec.internal_address, info.spec.internal_port);
                (info.node_id, parse_endpoint(&address))
            })
            .collect();
        for (target, address) in targets {
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
            let (acked, incarnation) = {
                let liveness = service.liveness.borrow();
                (
                    liveness[&target].acked_version,
                    liveness[&target].incarnation,
                )
            };
            let body = protocol::encode(&ToNode::Heartbeat {
                leader: service.node_id,
                config_nodes: service.config_node_endpoints(),
                delta: service.delta_since(acked),
            });
            let service = service.clone();
            let endpoint = endpoint.clone();
            monoio::spawn(async move {
                let outcome = endpoint
                    .request(target, body, interval)
                    .await
                    .and_then(|answer| {
                        protocol::decode::<FromNode>("heartbeat answer", &answer).map_err(
                            |status| InternalError::Malformed {
                                what: "heartbeat answer",
                                reason: status.message,
                            },
                        )
                    });
                service.heartbeat_done(target, incarnation, outcome);
            });
        }
    }
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
