//! Joining the cluster: a starting node asks its seed ConfigNode for an id before it
//! serves anything, through a short-lived endpoint on a runtime of its own.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use super::protocol::{self, Delta, FromConfigNode, ToConfigNode};
use crate::config::parse_endpoint;
use crate::confignode::NodeId;
use crate::internal::{
    EndpointConfig, InternalEndpoint, InternalError, InternalHandler, InternalLimits, SEED_PEER,
};

/// The default `seed_config_node_wait_in_ms`: how long a starting node keeps trying an
/// unreachable seed before it gives up with an error. Why 20 s: long enough for nodes
/// started together by a script (the ConfigNode a moment after its DataNodes), short
/// enough that a wrong address fails visibly.
pub const SEED_WAIT_MS_DEFAULT: u64 = 20_000;

/// The id a node that has none yet shows in its hello (never handed out: ids count up
/// from 0 and a cluster never reaches this many nodes).
pub const UNREGISTERED: NodeId = NodeId(u32::MAX);

/// What registration returned.
#[derive(Debug)]
pub struct Registration {
    pub node_id: NodeId,
    pub leader: NodeId,
    pub leader_address: SocketAddr,
    pub delta: Delta,
    /// Every ConfigNode's consensus endpoint (for a joining ConfigNode).
    pub consensus_peers: Vec<(NodeId, SocketAddr)>,
}

/// Registers with the ConfigNode at `seed` (`host:port`), retrying an unreachable seed
/// for up to `wait`. A refusal (another cluster, other settings, an address taken) is an
/// error at once, with the ConfigNode's reason.
pub fn register(
    seed: &str,
    seed_key: &str,
    cluster_name: &str,
    claimed_id: Option<NodeId>,
    request: &ToConfigNode,
    wait: Duration,
) -> anyhow::Result<Registration> {
    let address =
        parse_endpoint(seed).with_context(|| format!("{seed_key} = {seed:?} is not host:port"))?;
    let body = protocol::encode(request);
    let mut runtime = iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .context("starting the registration runtime")?;
    let answer = runtime.block_on(ask_seed(
        address,
        cluster_name,
        claimed_id.unwrap_or(UNREGISTERED),
        body,
        wait,
    ));
    let body = answer
        .with_context(|| format!("registering with the seed ConfigNode {address} ({seed_key})"))?;
    match protocol::decode::<FromConfigNode>("registration answer", &body)
        .map_err(|status| anyhow::anyhow!(status.message))?
    {
        FromConfigNode::Registered {
            node_id,
            leader,
            leader_address,
            delta,
            consensus_peers,
        } => {
            let leader_address = parse_endpoint(&leader_address).with_context(|| {
                format!("the ConfigNode named its leader at {leader_address:?}")
            })?;
            let consensus_peers = consensus_peers
                .iter()
                .filter_map(|(id, address)| Some((*id, parse_endpoint(address)?)))
                .collect();
            Ok(Registration {
                node_id,
                leader,
                leader_address,
                delta,
                consensus_peers,
            })
        }
        FromConfigNode::Refused(status) => {
            bail!(
                "the ConfigNode {address} refused this node: {}",
                status.message
            )
        }
        other => bail!("unexpected registration answer from {address}: {other:?}"),
    }
}

async fn ask_seed(
    address: SocketAddr,
    cluster_name: &str,
    hello_id: NodeId,
    body: Bytes,
    wait: Duration,
) -> anyhow::Result<Bytes> {
    let endpoint = InternalEndpoint::new(
        EndpointConfig {
            node_id: hello_id,
            cluster_name: cluster_name.to_string(),
            limits: InternalLimits::default(),
        },
        Rc::new(NoRequests),
    )?;
    endpoint.add_peer(SEED_PEER, address);
    let deadline = Instant::now() + wait;
    let mut told = false;
    let mut target = SEED_PEER;
    let answer = loop {
        match endpoint
            .request(target, body.clone(), super::link::CN_REQUEST_TIMEOUT)
            .await
        {
            Ok(answer) => {
                match protocol::decode::<FromConfigNode>("registration answer", &answer) {
                    // The seed is a follower: register with the leader it names.
                    Ok(FromConfigNode::NotLeader {
                        leader: Some(leader),
                        leader_address: Some(leader_address),
                    }) if Instant::now() < deadline => {
                        let Some(leader_address) = parse_endpoint(&leader_address) else {
                            break Err(anyhow::anyhow!(
                                "the seed names its leader at {leader_address:?}"
                            ));
                        };
                        endpoint.add_peer(leader, leader_address);
                        target = leader;
                    }
                    Ok(FromConfigNode::NotLeader { .. }) if Instant::now() < deadline => {
                        // An election is under way.
                        monoio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => break Ok(answer),
                }
            }
            Err(error @ (InternalError::Unreachable { .. } | InternalError::Timeout { .. }))
                if Instant::now() < deadline =>
            {
                if !told {
                    told = true;
                    tracing::warn!(%address, %error, "the seed ConfigNode is not reachable yet; retrying for up to {wait:?}");
                }
                monoio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error @ (InternalError::Unreachable { .. } | InternalError::Timeout { .. })) => {
                break Err(anyhow::anyhow!(
                    "{error}; gave up after {wait:?} (seed_config_node_wait_in_ms)"
                ));
            }
            Err(InternalError::Refused { message, .. }) => {
                break Err(anyhow::anyhow!("refused: {message}"));
            }
            Err(error) => break Err(anyhow::Error::new(error)),
        }
    };
    endpoint.shut_down();
    answer
}

/// A registering node serves nothing.
struct NoRequests;

impl InternalHandler for NoRequests {
    fn handle_request(
        &self,
        _from: NodeId,
        _body: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Bytes>>> {
        Box::pin(async { Bytes::new() })
    }

    fn on_message(&self, _from: NodeId, _body: Bytes) {}
}
