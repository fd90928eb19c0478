//! A cluster member's line to the ConfigNode, and its side of the ConfigNode's
//! heartbeats.
//!
//! ```text
//!  control thread ──CnLink::call (blocks the control thread only)──► jobs queue ─┐
//!                                                                                 ▼
//!  shard 0 (monoio): InternalEndpoint on dn_internal_port ──request──► ConfigNode leader
//!                    ◄── ToNode::Heartbeat{delta} ── ConfigNode leader
//!                        └─► control thread (ApplyDelta), side effects to every shard
//!                        └─► FromNode::Alive{status, version}
//! ```
//!
//! The endpoint lives on shard 0: a node's control traffic is small, and a shard can
//! spread what a heartbeat changed (dropped regions, TTLs) to the other shards over the
//! mesh. The control thread never runs an event loop; it hands its request to shard 0 and
//! waits for the answer, bounded by [`CN_REQUEST_TIMEOUT`].

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::mpsc;
use iotdb_net::{Status, StatusCode};

use super::protocol::{self, FromConfigNode, FromNode, ToConfigNode, ToNode};
use crate::confignode::{NodeId, NodeStatus};
use crate::datanode::Shard;
use crate::datanode::control::{ControlAnswer, ControlRequest};
use crate::internal::{EndpointConfig, InternalEndpoint, InternalHandler, InternalLimits};

/// How long a request to the ConfigNode may take. Why 10 s: a ConfigNode answers in
/// milliseconds; one that takes longer is down or failing over, and the client's
/// statement should fail with a clear error rather than hang.
pub const CN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer a DataNode sends another in one internal frame (the transport's
/// frame limit, less room for the frame itself).
const REMOTE_ANSWER_BYTES_MAX: usize =
    iotdb_consensus::limits::TRANSPORT_PAYLOAD_BYTES_MAX - 64 * 1024;

/// Requests queued for shard 0 to send to the ConfigNode. Why 1024: the control thread
/// sends one at a time; the bound only guards against a stalled shard 0.
const LINK_QUEUE_MAX: usize = 1024;

/// One request to the ConfigNode (or to another DataNode, `to`) and where its answer
/// goes.
pub struct LinkJob {
    body: Bytes,
    to: Option<(NodeId, SocketAddr)>,
    reply: SyncSender<Result<Bytes, String>>,
}

/// The control thread's handle (`Send`): a request travels through shard 0's endpoint.
#[derive(Clone)]
pub struct CnLink {
    jobs: mpsc::Sender<LinkJob>,
}

/// Shard 0's end of the link.
pub type LinkJobs = mpsc::Receiver<LinkJob>;

impl CnLink {
    pub fn new() -> (CnLink, LinkJobs) {
        let (jobs, receiver) = mpsc::channel(LINK_QUEUE_MAX);
        (CnLink { jobs }, receiver)
    }

    /// Sends `request` to the ConfigNode leader and waits for its answer (blocking: for
    /// the control thread only).
    pub fn call(&self, request: &ToConfigNode) -> Result<FromConfigNode, Status> {
        let body = self.send(protocol::encode(request), None)?;
        protocol::decode("ConfigNode answer", &body)
    }

    /// Sends `request` to DataNode `node` at `address` and waits for its answer (blocking:
    /// for the control thread only), at most [`CN_REQUEST_TIMEOUT`].
    pub fn call_data_node(
        &self,
        node: NodeId,
        address: SocketAddr,
        request: &ToNode,
    ) -> Result<FromNode, Status> {
        let body = self.send(protocol::encode(request), Some((node, address)))?;
        protocol::decode("DataNode answer", &body)
    }

    fn send(&self, body: Bytes, to: Option<(NodeId, SocketAddr)>) -> Result<Bytes, Status> {
        let (reply, answer) = sync_channel(1);
        let asked = match to {
            Some((node, _)) => format!("DataNode {node}"),
            None => "the ConfigNode".to_string(),
        };
        let job = LinkJob { body, to, reply };
        self.jobs.clone().try_send(job).map_err(|e| {
            if e.is_full() {
                Status::new(
                    StatusCode::WRITE_PROCESS_REJECT,
                    "overloaded: too many requests queued for the ConfigNode; retry",
                )
            } else {
                Status::internal("the DataNode is stopping: no line to the ConfigNode")
            }
        })?;
        answer
            .recv_timeout(CN_REQUEST_TIMEOUT + Duration::from_secs(1))
            .map_err(|_| Status::internal(format!("the request to {asked} was dropped")))?
            .map_err(|reason| {
                Status::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{asked} could not be asked: {reason}"),
                )
            })
    }
}

/// What shard 0 needs to serve the cluster: taken once when it starts.
pub struct ClusterMember {
    pub node_id: NodeId,
    pub cluster_name: String,
    /// The ConfigNode leader.
    pub leader: NodeId,
    pub leader_address: SocketAddr,
    pub listener: Mutex<Option<std::net::TcpListener>>,
    pub jobs: Mutex<Option<LinkJobs>>,
    /// Each shard's data-region consensus listener, taken by that shard at start.
    pub consensus_listeners: Mutex<Vec<Option<std::net::TcpListener>>>,
}

/// Starts the node's internal endpoint on shard 0 (called by shard 0 only) and the task
/// that sends the control thread's requests. Returns the endpoint (shut it down at stop).
pub fn start_on_shard(
    shard: &Rc<Shard>,
    member: &ClusterMember,
) -> Result<InternalEndpoint, String> {
    let listener = member
        .listener
        .lock()
        .map_err(|_| "the internal listener lock is poisoned")?
        .take()
        .ok_or("the internal listener was taken already")?;
    let mut jobs = member
        .jobs
        .lock()
        .map_err(|_| "the link lock is poisoned")?
        .take()
        .ok_or("the ConfigNode link was taken already")?;
    let handler = Rc::new(DataNodeHandler {
        shard: shard.clone(),
        config_nodes: RefCell::new(None),
        endpoint: RefCell::new(None),
    });
    let endpoint = InternalEndpoint::new(
        EndpointConfig {
            node_id: member.node_id,
            cluster_name: member.cluster_name.clone(),
            limits: InternalLimits::default(),
        },
        handler.clone(),
    )
    .map_err(|e| e.to_string())?;
    handler.endpoint.replace(Some(endpoint.clone()));
    endpoint.serve(listener).map_err(|e| e.to_string())?;
    shard.set_internal_endpoint(endpoint.clone());
    let config_nodes = Rc::new(ConfigNodes {
        leader: RefCell::new(member.leader),
        known: RefCell::new(Vec::new()),
    });
    config_nodes.learn(
        member.leader,
        &[(member.leader, member.leader_address)],
        &endpoint,
    );
    handler.config_nodes.replace(Some(config_nodes.clone()));
    let sender = endpoint.clone();
    monoio::spawn(async move {
        while let Some(job) = next_job(&mut jobs).await {
            let endpoint = sender.clone();
            let config_nodes = config_nodes.clone();
            monoio::spawn(async move {
                let answer = match job.to {
                    Some((node, address)) => {
                        ask_node(&endpoint, node, address, job.body, CN_REQUEST_TIMEOUT)
                            .await
                            .map_err(|status| status.message)
                    }
                    None => config_nodes.ask(&endpoint, job.body).await,
                };
                let _ = job.reply.try_send(answer);
            });
        }
    });
    Ok(endpoint)
}

/// Attempts of one request at most: the leader, then wherever redirects and failures
/// point. Why 6: a leader change is one redirect; a dead leader costs one failed attempt
/// per other ConfigNode before the new one answers.
const ATTEMPTS_MAX: usize = 6;

/// The ConfigNodes a DataNode knows, and which one leads (shard 0's view, updated by
/// every heartbeat and redirect).
struct ConfigNodes {
    leader: RefCell<NodeId>,
    known: RefCell<Vec<(NodeId, SocketAddr)>>,
}

impl ConfigNodes {
    fn learn(&self, leader: NodeId, nodes: &[(NodeId, SocketAddr)], endpoint: &InternalEndpoint) {
        for (id, address) in nodes {
            endpoint.add_peer(*id, *address);
        }
        if !nodes.is_empty() {
            *self.known.borrow_mut() = nodes.to_vec();
        }
        *self.leader.borrow_mut() = leader;
    }

    /// Asks the leader; follows a redirect, and on a failure tries the next ConfigNode.
    async fn ask(&self, endpoint: &InternalEndpoint, body: Bytes) -> Result<Bytes, String> {
        let mut last_error = String::from("no ConfigNode is known");
        // Every attempt together within one request timeout: the control thread waits
        // that long (and a second) for the answer.
        let deadline = std::time::Instant::now() + CN_REQUEST_TIMEOUT;
        for attempt in 0..ATTEMPTS_MAX {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                break;
            };
            let target = *self.leader.borrow();
            match endpoint.request(target, body.clone(), left).await {
                Ok(answer) => {
                    match protocol::decode::<FromConfigNode>("ConfigNode answer", &answer) {
                        Ok(FromConfigNode::NotLeader {
                            leader: Some(leader),
                            leader_address,
                        }) => {
                            if let Some(address) = leader_address
                                .as_deref()
                                .and_then(crate::config::parse_endpoint)
                            {
                                endpoint.add_peer(leader, address);
                            }
                            *self.leader.borrow_mut() = leader;
                            last_error =
                                format!("ConfigNode {target} does not lead; {leader} does");
                        }
                        Ok(FromConfigNode::NotLeader { leader: None, .. }) => {
                            // An election is under way: wait a moment, ask again.
                            last_error = "the ConfigNode group has no leader right now".into();
                            monoio::time::sleep(Duration::from_millis(200 << attempt.min(3))).await;
                        }
                        _ => return Ok(answer),
                    }
                }
                Err(error) => {
                    last_error = format!("ConfigNode {target}: {error}");
                    // Try the next ConfigNode we know.
                    let known = self.known.borrow().clone();
                    if let Some(index) = known.iter().position(|(id, _)| *id == target) {
                        let next = known[(index + 1) % known.len()].0;
                        *self.leader.borrow_mut() = next;
                    }
                    if known.len() <= 1 {
                        return Err(last_error);
                    }
                }
            }
        }
        Err(last_error)
    }
}

/// The next item of a cross-thread queue (`None` once every sender is gone): how a
/// monoio loop waits on a plain thread's requests.
pub(crate) async fn next_job<T>(jobs: &mut mpsc::Receiver<T>) -> Option<T> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *jobs), cx)).await
}

/// Serves the ConfigNode leader's heartbeats (and other DataNodes' schema questions) on
/// shard 0.
struct DataNodeHandler {
    shard: Rc<Shard>,
    config_nodes: RefCell<Option<Rc<ConfigNodes>>>,
    endpoint: RefCell<Option<InternalEndpoint>>,
}

impl InternalHandler for DataNodeHandler {
    fn handle_request(&self, _from: NodeId, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes>>> {
        let shard = self.shard.clone();
        let config_nodes = self.config_nodes.borrow().clone();
        let endpoint = self.endpoint.borrow().clone();
        Box::pin(async move {
            if body.first() == Some(&super::forward::WRITE_TAG) {
                return protocol::encode(&super::forward::serve(&shard, body).await);
            }
            let answer = match protocol::decode::<ToNode>("DataNode request", &body) {
                Ok(ToNode::Heartbeat {
                    leader,
                    config_nodes: nodes,
                    delta,
                }) => {
                    if let (Some(config_nodes), Some(endpoint)) = (config_nodes, endpoint) {
                        let nodes: Vec<(NodeId, SocketAddr)> = nodes
                            .iter()
                            .filter_map(|(id, address)| {
                                Some((*id, crate::config::parse_endpoint(address)?))
                            })
                            .collect();
                        config_nodes.learn(leader, &nodes, &endpoint);
                    }
                    heartbeat(&shard, delta).await
                }
                Ok(ToNode::Schema(request)) => schema(&shard, request).await,
                Ok(ToNode::Read { group, read: wire }) => read(&shard, group, wire).await,
                Ok(ToNode::Delete {
                    group,
                    series,
                    start_ms,
                    end_ms,
                }) => {
                    let keys: Vec<iotdb_storage::SeriesKey> = series
                        .iter()
                        .map(|(device, measurement)| {
                            iotdb_storage::SeriesKey::new(device, measurement)
                        })
                        .collect();
                    let range = iotdb_storage::TimeRange::new(start_ms, end_ms);
                    match shard.delete_group_here(group, keys, range).await {
                        Ok(()) => FromNode::Deleted,
                        Err(status) => FromNode::Refused(status.into()),
                    }
                }
                Err(status) => FromNode::Refused(status.into()),
            };
            let body = protocol::encode(&answer);
            if body.len() > REMOTE_ANSWER_BYTES_MAX {
                return protocol::encode(&FromNode::Refused(
                    Status::new(
                        StatusCode::EXECUTE_STATEMENT_ERROR,
                        format!(
                            "the answer of this DataNode is {} bytes, more than one internal \
                             frame carries ({REMOTE_ANSWER_BYTES_MAX}); scans are paged and \
                             reads of many series split, so only a single series' answer this \
                             large (a huge text value, millions of GROUP BY windows) gets \
                             here: narrow the query",
                            body.len()
                        ),
                    )
                    .into(),
                ));
            }
            body
        })
    }

    fn on_message(&self, from: NodeId, _body: Bytes) {
        tracing::debug!(%from, "ignored a one-way message: the DataNode expects none yet");
    }
}

/// Answers another DataNode's schema question from a SchemaRegion held here. Asked of
/// the control thread directly, never forwarded again: if the region is not served here
/// (a follower replica, or the asker's mirror is older than ours), the asker is told
/// where it is (`SchemaElsewhere`) and asks there itself, a bounded number of times.
async fn schema(shard: &Shard, request: protocol::SchemaRequest) -> FromNode {
    let deleting = matches!(request, protocol::SchemaRequest::DeleteSeries { .. });
    let answer = shard
        .shared
        .control
        .call(ControlRequest::Schema(request))
        .await;
    if deleting {
        // Whether or not this node served any of them, its shards may cache their types.
        shard.drop_cached_schemas().await;
    }
    match answer {
        Ok(ControlAnswer::Count(count)) => FromNode::Count(count),
        // Only this node's SchemaRegions: the asker asks the others itself.
        Ok(ControlAnswer::DeletedAndElsewhere { deleted, .. }) => FromNode::Count(deleted),
        Ok(ControlAnswer::Types(types)) => FromNode::Types(types),
        Ok(ControlAnswer::MaybeTypes(types)) => FromNode::MaybeTypes(types),
        // Only this node's SchemaRegions: the asker asks the others itself.
        Ok(ControlAnswer::Series(series) | ControlAnswer::SeriesAndElsewhere { series, .. }) => {
            FromNode::Series(series)
        }
        Ok(ControlAnswer::ResultSet(result) | ControlAnswer::ShowAndElsewhere { result, .. }) => {
            FromNode::Rows(crate::datanode::control::text_rows(&result))
        }
        Ok(ControlAnswer::Elsewhere {
            data_node,
            internal_endpoint,
        }) => FromNode::SchemaElsewhere {
            data_node,
            internal_endpoint,
        },
        Ok(other) => FromNode::Refused(
            Status::internal(format!("unexpected answer to a schema request: {other:?}")).into(),
        ),
        Err(status) => FromNode::Refused(status.into()),
    }
}

/// Sends `body` to DataNode `node` at `address` and waits at most `timeout` for the
/// answer (shard 0 only: it owns the endpoint). Every failure (unreachable, a broken
/// connection, the timeout) is a 305 naming the DataNode.
pub async fn ask_node(
    endpoint: &InternalEndpoint,
    node: NodeId,
    address: SocketAddr,
    body: Bytes,
    timeout: Duration,
) -> Result<Bytes, Status> {
    endpoint.add_peer(node, address);
    endpoint.request(node, body, timeout).await.map_err(|e| {
        Status::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("asking DataNode {node}: {e}"),
        )
    })
}

/// Reads a region group held here for another DataNode: only from this node's own
/// replicas (never forwarded again), and only an answer that fits one internal frame (the
/// asker pages scans and splits reads of many series so that they do: `read_pages`).
async fn read(shard: &Rc<Shard>, group: u32, read: super::remote_read::WireRead) -> FromNode {
    let read = match read.into_read() {
        Ok(read) => read,
        Err(status) => return FromNode::Refused(status.into()),
    };
    match shard.read_group_here(group, read).await {
        Ok(answer) => FromNode::Region(super::remote_read::WireAnswer::of(&answer)),
        Err(status) => FromNode::Refused(status.into()),
    }
}

async fn heartbeat(shard: &Rc<Shard>, delta: protocol::Delta) -> FromNode {
    if !matches!(delta, protocol::Delta::None) {
        // Applied behind the answer: a control thread busy with a slow ConfigNode request
        // must not make this DataNode miss heartbeats. The answer names the version before
        // the changes, so an unapplied delta is simply sent again (applying is idempotent).
        let shard = shard.clone();
        monoio::spawn(async move {
            match shard.control(ControlRequest::ApplyDelta(delta)).await {
                Ok(ControlAnswer::Done | ControlAnswer::RegionsDropped { .. }) => {}
                Ok(other) => tracing::warn!(?other, "unexpected answer to a heartbeat's changes"),
                Err(status) => {
                    tracing::warn!(status = %status.message, "applying a heartbeat's changes failed")
                }
            }
        });
    }
    let shared = &shard.shared;
    let route = shared.route.load();
    let regions = (0..shared.shard_count)
        .map(|s| route.groups_on_shard(s as u16).len())
        .sum::<usize>();
    let status = if shared
        .read_only_reported
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        NodeStatus::ReadOnly
    } else {
        NodeStatus::Running
    };
    let report = shard.node_report().await;
    FromNode::Alive {
        status,
        version: route.version(),
        regions: regions as u32,
        region_sizes: report.sizes,
        leading: report.leading,
    }
}
