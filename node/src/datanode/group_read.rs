//! A read of one region group, wherever its replicas live: which replica answers, what
//! happens when it does not, and how a large answer crosses between DataNodes.
//!
//! ```text
//!  shard k: read_group(g)
//!    order = leader, then (in_sync acknowledgement only) in-sync Running followers
//!    ├─ this node's replica ── read_group_here (mesh) ─────────────────── answer
//!    └─ another DataNode's ── ScanPage/Aggregate/Last ─► shard 0 ─► holder (≤ timeout)
//!         transient failure (unreachable, broken, timed out, 420/606/305) ─► next replica,
//!         resuming from the pages already taken (`read_pages`)
//!    every replica failed ─► 305 naming each replica tried and why
//! ```
//!
//! Which replicas may answer (the rule): the leader first — unless it failed a read on
//! this core within the last 5 s ([`SUSPECT_FOR`]): then it is asked after the others. With
//! `data_replication_ack = leader` only the leader: a follower may lack writes the leader
//! acknowledged and not yet shipped, so the read fails (retryably) until the ConfigNode
//! moves leadership. With `in_sync`, a follower in the group's in-sync set whose DataNode
//! is Running may answer too: a write is acknowledged only once every replica of the set
//! applied it, and the leader leaves a replica out only after the ConfigNode committed
//! that. Before the first follower is asked this node refreshes its mirror of the
//! ConfigNode state, so the set it trusts is at least as new as every write acknowledged
//! before the read began (read-your-writes holds); if the ConfigNode cannot be asked, no
//! follower is.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use iotdb_net::{Status, StatusCode};

use super::Shard;
use super::control::ControlRequest;
use super::query::{RegionAnswer, RegionRead};
use super::read_pages::PagedRead;

/// How long a DataNode that failed a read is asked after the other replicas. Why 5 s:
/// about the time the ConfigNode takes to mark a silent DataNode Unknown (with the
/// default heartbeat) and move its leaderships, after which the route itself sends reads
/// elsewhere.
const SUSPECT_FOR: Duration = Duration::from_secs(5);

thread_local! {
    /// DataNodes this core's reads found failing lately, and when: a read of another
    /// group asks them last, so a frozen DataNode costs a query one timeout rather than
    /// one per region group. Core-local (each shard's thread has its own), never shared.
    static SUSPECTS: RefCell<HashMap<u32, Instant>> = RefCell::new(HashMap::new());
}

/// The DataNodes that failed a read on this core within [`SUSPECT_FOR`].
fn suspects() -> Vec<u32> {
    SUSPECTS.with_borrow_mut(|suspects| {
        suspects.retain(|_, at| at.elapsed() < SUSPECT_FOR);
        suspects.keys().copied().collect()
    })
}

/// `order` with the `suspects` moved to its end, each part in its own order.
fn suspects_last(order: Vec<u32>, suspects: &[u32]) -> Vec<u32> {
    let (healthy, suspect): (Vec<u32>, Vec<u32>) =
        order.into_iter().partition(|n| !suspects.contains(n));
    healthy.into_iter().chain(suspect).collect()
}

/// Whether a replica's failure is its own (another replica may well answer): it could not
/// be reached or timed out (305 from the internal endpoint), did not hold or lead the
/// group any more (420), or was overloaded (606). Anything else is an answer about the
/// read itself and would be the same on every replica.
fn transient(status: &Status) -> bool {
    [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::ROUTE_TABLE_STALE,
        StatusCode::WRITE_PROCESS_REJECT,
    ]
    .contains(&status.code)
}

/// The error of a read no replica could serve: 305 (clients retry it), naming every
/// replica tried and why it failed, in the order they were tried.
fn every_replica_failed(group: u32, leader: u32, failures: &[(u32, Status)]) -> Status {
    let tried: Vec<String> = failures
        .iter()
        .map(|(node, status)| {
            let role = if *node == leader { " (leader)" } else { "" };
            format!("DataNode {node}{role}: {} {}", status.code, status.message)
        })
        .collect();
    Status::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "no replica of region group {group} could serve the read; tried {}",
            tried.join("; ")
        ),
    )
}

impl Shard {
    /// Reads `read` from region group `group`, wherever it lives: on this node (this shard
    /// or another through the mesh), or — a cluster member — on the DataNodes holding
    /// it, one replica after another until one answers (see the module docs).
    pub(super) async fn read_group(
        self: &Rc<Self>,
        group: u32,
        read: RegionRead,
    ) -> Result<RegionAnswer, Status> {
        let order = match &self.shared.cluster {
            Some(_) => self.route().read_order(group),
            None => None,
        };
        let Some(order) = order else {
            return self.read_group_here(group, read).await;
        };
        let this_node = self.route().data_node_id;
        let leader = order[0];
        let mut paged = PagedRead::new(read, self.shared.config.dn_remote_read_page_bytes);
        let mut candidates = suspects_last(order, &suspects()).into_iter();
        let mut failures: Vec<(u32, Status)> = Vec::new();
        let mut refreshed = false;
        let mut current = candidates.next();
        while let Some(node) = current {
            if node != leader && !refreshed {
                // First follower: trust only a current in-sync set (module docs).
                refreshed = true;
                if let Err(status) = self.control(ControlRequest::Refresh).await {
                    failures.push((
                        node,
                        Status::new(
                            status.code,
                            format!(
                                "not asked: the ConfigNode could not confirm the in-sync set \
                                 ({})",
                                status.message
                            ),
                        ),
                    ));
                    break;
                }
                let tried: Vec<u32> = failures.iter().map(|(n, _)| *n).collect();
                let fresh = self.route().read_order(group).unwrap_or_default();
                let fresh = fresh.into_iter().filter(|n| !tried.contains(n)).collect();
                candidates = suspects_last(fresh, &suspects()).into_iter();
                current = candidates.next();
                continue;
            }
            let outcome = if node == this_node && !paged.started() {
                // The whole read in one go, as a node without replication reads.
                match self.read_group_here(group, paged.whole()).await {
                    Ok(answer) => return Ok(answer),
                    Err(status) => Err(status),
                }
            } else {
                self.read_pages_from(node, this_node, group, &mut paged)
                    .await
            };
            if node != this_node {
                SUSPECTS.with_borrow_mut(|suspects| match &outcome {
                    Ok(()) => suspects.remove(&node),
                    Err(status) if transient(status) => suspects.insert(node, Instant::now()),
                    Err(_) => None,
                });
            }
            match outcome {
                Ok(()) => return Ok(paged.finish()),
                Err(status) if transient(&status) => {
                    tracing::debug!(group, node, status = %status.message, "a replica failed a read; trying the next");
                    failures.push((node, status));
                    current = candidates.next();
                }
                Err(status) => return Err(status),
            }
        }
        Err(every_replica_failed(group, leader, &failures))
    }

    /// Takes the rest of `paged` from DataNode `node` (this node's replica when it is
    /// `this_node`), request by request; the first failure ends it.
    async fn read_pages_from(
        self: &Rc<Self>,
        node: u32,
        this_node: u32,
        group: u32,
        paged: &mut PagedRead,
    ) -> Result<(), Status> {
        while let Some(request) = paged.next_request() {
            let answer = if node == this_node {
                self.read_group_here(group, request).await?
            } else {
                self.read_remote(node, group, &request).await?
            };
            paged.absorb(answer)?;
        }
        Ok(())
    }

    /// One request of a read to DataNode `node`, bounded by `dn_remote_read_timeout_ms`.
    async fn read_remote(
        &self,
        node: u32,
        group: u32,
        read: &RegionRead,
    ) -> Result<RegionAnswer, Status> {
        use crate::cluster::protocol::{FromNode, ToNode, decode, encode};
        let address = self
            .route()
            .internal_endpoints
            .get(&node)
            .copied()
            .ok_or_else(|| Status::internal("its internal endpoint is not known here"))?;
        let body = encode(&ToNode::Read {
            group,
            read: crate::cluster::remote_read::WireRead::of(read),
        });
        let timeout = Duration::from_millis(self.shared.config.dn_remote_read_timeout_ms);
        let answer = self
            .ask_node_within(iotdb_model::NodeId(node), address, body, timeout)
            .await?;
        match decode::<FromNode>("region answer", &answer)? {
            FromNode::Region(answer) => answer.into_answer(),
            FromNode::Refused(status) => Err(status.into()),
            other => Err(Status::internal(format!(
                "unexpected answer to a region read: {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas that failed lately go last, the rest keep their order.
    #[test]
    fn replicas_that_failed_lately_are_asked_last() {
        assert_eq!(suspects_last(vec![3, 1, 2], &[3]), [1, 2, 3]);
        assert_eq!(suspects_last(vec![3, 1, 2], &[2, 3]), [1, 3, 2]);
        assert_eq!(
            suspects_last(vec![3], &[3]),
            [3],
            "the only replica is still asked"
        );
        assert_eq!(suspects_last(vec![3, 1], &[]), [3, 1]);
    }

    /// A replica's own trouble moves the read on; a refusal of the read itself does not,
    /// and the final error names every replica in the order tried.
    #[test]
    fn only_a_replicas_own_failures_move_the_read_on() {
        assert!(transient(&Status::internal("asking DataNode 2: timed out")));
        assert!(transient(&Status::new(
            StatusCode::ROUTE_TABLE_STALE,
            "not here"
        )));
        assert!(transient(&Status::new(
            StatusCode::WRITE_PROCESS_REJECT,
            "busy"
        )));
        assert!(!transient(&Status::illegal_parameter("bad regex")));
        assert!(!transient(&Status::new(StatusCode::PATH_NOT_EXIST, "gone")));
        let error = every_replica_failed(
            7,
            2,
            &[
                (2, Status::internal("timed out after 1000 ms")),
                (
                    3,
                    Status::new(StatusCode::ROUTE_TABLE_STALE, "not on this DataNode"),
                ),
            ],
        );
        assert_eq!(error.code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            error.message,
            "no replica of region group 7 could serve the read; tried DataNode 2 (leader): \
             305 (INTERNAL_SERVER_ERROR) timed out after 1000 ms; DataNode 3: 420 \
             (ROUTE_TABLE_STALE) not on this DataNode"
        );
    }
}
