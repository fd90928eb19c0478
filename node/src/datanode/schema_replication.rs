//! SchemaRegion replication: every replicated SchemaRegion group (more than one replica,
//! `schema_replication_factor`) is a Raft group (raft-rs, through
//! `iotdb_consensus::raft_group`, the ConfigNode's library), as IoTDB replicates schema
//! regions with Ratis: schema changes must be linearizable — a series created through one
//! DataNode is never missing on the next leader.
//!
//! ```text
//!  control thread (owns every SchemaRegion)        schema-raft thread (monoio,
//!  SchemaRegion::commit ─propose─► RaftLog ─Job─►   dn_schema_region_consensus_port)
//!       (blocks until committed)        ▲           one RaftGroup per replica here:
//!  SchemaRegion::catch_up ◄─ committed queue ◄──────  tick every 50 ms, step peers'
//!       (every batch, every 100 ms)                  messages (group id ‖ raft bytes),
//!                                                    advance: persist (fsync), send,
//!                                                    hand committed entries over
//! ```
//!
//! The group elects its leader; the ConfigNode only records it (`ReportSchemaLeader`).
//! Only the leader's control thread plans and proposes schema changes, and only once it
//! committed an entry of its own term and applied everything before it
//! ([`SchemaRaft::serves`]); a follower sends the asker to the leader. Every replica
//! applies the same committed commands in the same order (its own included), so the
//! state of every replica is a prefix of the log. The Raft log and its snapshots (the
//! region's state as JSON) live in `region-<id>/raft`; they replace the region's own
//! journal.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use futures_channel::mpsc;
use iotdb_consensus::io::StdDisk;
use iotdb_consensus::raft_group::{
    Committed, MembershipChange, RaftGroup, RaftGroupConfig, RaftGroupError, RestoredSnapshot,
};
use iotdb_model::NodeId;

use crate::cluster::replicated::{
    OnMessage, PendingProposal, Ticks, answer_proposals, node_of, not_leader_error, raft_id,
    raft_runtime, serve_raft_endpoint,
};
use crate::internal::InternalEndpoint;
use crate::schema::{ReplicatedLog, SchemaError};

/// One raft tick. Why 50 ms: with the group's 10-tick election timeout a dead leader is
/// replaced in 0.5–1 s; an idle group costs twenty wake-ups a second.
const TICK: Duration = Duration::from_millis(50);

/// How long a proposal may take to commit. Why 5 s: a healthy group commits in
/// milliseconds; longer means no quorum, and the request fails with a clear error rather
/// than hanging the control thread (the command may still commit later, and then every
/// replica applies it).
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening or closing a group may take on the raft thread.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// Jobs queued for the raft thread at most (the control thread waits on each proposal).
const JOBS_MAX: usize = 256;

/// Committed entries a group holds for the control thread at most before the raft thread
/// stops handing more over (the control thread takes them every 100 ms).
const COMMITTED_QUEUE_MAX: usize = 65_536;

/// What the raft thread and the control thread share about one group.
#[derive(Debug, Default)]
struct GroupShared {
    /// Committed entries the control thread has not taken yet, in index order.
    committed: Mutex<VecDeque<Committed>>,
    /// The leader's raft id; 0 when unknown.
    leader: AtomicU64,
    /// This replica leads and committed an entry of its term (see `RaftGroup::leader_ready`):
    /// set after the entries before it were queued.
    ready: AtomicBool,
    /// A disk error stopped the group: the DataNode must restart.
    failed: AtomicBool,
    /// A lagging replica needs a newer snapshot.
    compact_requested: AtomicBool,
    /// The voters of the configuration applied here (raft ids, sorted).
    voters: Mutex<Vec<u64>>,
    /// While this replica leads: through which index each voter holds the log.
    matched: Mutex<HashMap<u64, u64>>,
    /// The commit index this replica knows.
    commit: AtomicU64,
}

/// What opening a group gives the control thread: the state both threads share, and the
/// snapshot to restore the region from.
type Opened = (Arc<GroupShared>, Option<RestoredSnapshot>);

/// A replica's log and the snapshot (`(index, data)`) its region starts from.
pub type OpenedReplica = (Box<dyn ReplicatedLog>, Option<(u64, Bytes)>);

enum Job {
    Open {
        group: u32,
        dir: PathBuf,
        voters: Vec<u64>,
        /// A new group: this replica campaigns at once rather than after a timeout.
        campaign: bool,
        reply: SyncSender<Result<Opened, String>>,
    },
    Propose {
        group: u32,
        data: Vec<u8>,
        reply: SyncSender<Result<u64, String>>,
    },
    Compact {
        group: u32,
        index: u64,
        snapshot: Vec<u8>,
    },
    Close {
        group: u32,
        reply: SyncSender<()>,
    },
    /// The leader proposes a membership change (one at a time; refused ones are retried
    /// by the control thread).
    ChangeVoters {
        group: u32,
        change: MembershipChange,
    },
    /// The leader hands leadership to a voter.
    TransferLeader {
        group: u32,
        to: u64,
    },
}

/// The DataNode's schema-raft thread and what the control thread asks of it.
pub struct SchemaRaft {
    jobs: mpsc::Sender<Job>,
    node_id: NodeId,
    /// Peers' schema consensus addresses (the control thread keeps them current).
    peers: Arc<Mutex<HashMap<NodeId, SocketAddr>>>,
    groups: HashMap<u32, Arc<GroupShared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SchemaRaft {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SchemaRaft")
            .field("node_id", &self.node_id)
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SchemaRaft {
    /// Starts the raft thread serving `listener` (the bound `dn_schema_region_consensus_port`).
    pub fn start(
        node_id: NodeId,
        cluster_name: String,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<SchemaRaft> {
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, receiver) = mpsc::channel(JOBS_MAX);
        let thread = std::thread::Builder::new()
            .name("schema-raft".into())
            .spawn({
                let peers = peers.clone();
                let stop = stop.clone();
                move || run(node_id, cluster_name, listener, peers, receiver, stop)
            })
            .context("starting the schema raft thread")?;
        Ok(SchemaRaft {
            jobs,
            node_id,
            peers,
            groups: HashMap::new(),
            stop,
            thread: Some(thread),
        })
    }

    fn send(jobs: &mpsc::Sender<Job>, job: Job) -> Result<(), String> {
        jobs.clone()
            .try_send(job)
            .map_err(|_| "the schema raft thread is not taking jobs".to_string())
    }

    /// Learns (or moves) peers' schema consensus addresses.
    pub fn set_peers(&self, peers: HashMap<NodeId, SocketAddr>) {
        if let Ok(mut known) = self.peers.lock() {
            *known = peers;
        }
    }

    /// Opens (creating on first use) this node's replica of `group` in `dir`, whose
    /// voters are the DataNodes `replicas`. Returns the log for its SchemaRegion and the
    /// snapshot to restore it from (`(index, data)`; none: an empty region).
    pub fn open(
        &mut self,
        group: u32,
        dir: PathBuf,
        replicas: &[NodeId],
        campaign: bool,
    ) -> anyhow::Result<OpenedReplica> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (reply, answer) = sync_channel(1);
        Self::send(
            &self.jobs,
            Job::Open {
                group,
                dir,
                voters: replicas.iter().map(|node| raft_id(*node)).collect(),
                campaign,
                reply,
            },
        )
        .map_err(anyhow::Error::msg)?;
        let (shared, restored) = answer
            .recv_timeout(JOB_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("opening schema raft group {group} timed out"))?
            .map_err(|reason| anyhow::anyhow!("opening schema raft group {group}: {reason}"))?;
        self.groups.insert(group, shared.clone());
        let log = RaftLog {
            group,
            jobs: self.jobs.clone(),
            shared,
        };
        Ok((
            Box::new(log),
            restored.map(|snapshot| (snapshot.index, snapshot.data)),
        ))
    }

    /// Forgets a group whose replica was closed (its `RaftLog` dropped).
    pub fn forget(&mut self, group: u32) {
        self.groups.remove(&group);
    }

    /// Whether the replica of `group` here leads it and may serve: it committed an entry
    /// of its term, so once its SchemaRegion caught up it holds every committed change.
    /// Call before `SchemaRegion::catch_up`.
    pub fn serves(&self, group: u32) -> bool {
        self.groups.get(&group).is_some_and(|shared| {
            shared.ready.load(Ordering::Acquire) && !shared.failed.load(Ordering::Acquire)
        })
    }

    /// The DataNode whose replica leads `group`, as this replica knows.
    pub fn leader(&self, group: u32) -> Option<NodeId> {
        match self.groups.get(&group)?.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(node_of(id)),
        }
    }

    /// Whether a disk error stopped the replica of `group`.
    pub fn has_failed(&self, group: u32) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|shared| shared.failed.load(Ordering::Acquire))
    }

    /// The DataNodes whose replicas are voters of `group`, as the replica here applied.
    pub fn voters(&self, group: u32) -> Vec<NodeId> {
        self.groups
            .get(&group)
            .and_then(|shared| shared.voters.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(node_of)
            .collect()
    }

    /// While the replica here leads `group`: through which index `node`'s replica holds
    /// the log.
    pub fn matched(&self, group: u32, node: NodeId) -> Option<u64> {
        let shared = self.groups.get(&group)?;
        shared.matched.lock().ok()?.get(&raft_id(node)).copied()
    }

    /// The commit index of `group` the replica here knows.
    pub fn commit_index(&self, group: u32) -> u64 {
        self.groups
            .get(&group)
            .map_or(0, |shared| shared.commit.load(Ordering::Acquire))
    }

    /// Proposes adding (`add`) or removing `node`'s replica as a voter of `group` (the
    /// replica here must lead; a refusal is only logged: the caller asks again).
    pub fn change_voters(&self, group: u32, node: NodeId, add: bool) -> Result<(), String> {
        let id = raft_id(node);
        let change = if add {
            MembershipChange::AddVoter(id)
        } else {
            MembershipChange::RemoveVoter(id)
        };
        Self::send(&self.jobs, Job::ChangeVoters { group, change })
    }

    /// Hands leadership of `group` to `node`'s replica (the replica here must lead).
    pub fn transfer_leader(&self, group: u32, node: NodeId) -> Result<(), String> {
        Self::send(
            &self.jobs,
            Job::TransferLeader {
                group,
                to: raft_id(node),
            },
        )
    }

    /// The groups with a replica here.
    pub fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.groups.keys().copied()
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Stops the raft thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SchemaRaft {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A SchemaRegion replica's end of its Raft group. Dropping it closes the group on the
/// raft thread (its files are closed before the region's directory may be removed).
struct RaftLog {
    group: u32,
    jobs: mpsc::Sender<Job>,
    shared: Arc<GroupShared>,
}

impl ReplicatedLog for RaftLog {
    fn propose(&mut self, command: Vec<u8>) -> crate::schema::Result<u64> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(SchemaError::Unavailable(format!(
                "schema region group {}: the replica here stopped after a disk error; \
                 restart this DataNode",
                self.group
            )));
        }
        let (reply, answer) = sync_channel(1);
        SchemaRaft::send(
            &self.jobs,
            Job::Propose {
                group: self.group,
                data: command,
                reply,
            },
        )
        .map_err(SchemaError::Unavailable)?;
        match answer.recv_timeout(PROPOSE_TIMEOUT) {
            Ok(result) => result.map_err(|reason| {
                SchemaError::Unavailable(format!("schema region group {}: {reason}", self.group))
            }),
            Err(_) => Err(SchemaError::Unavailable(format!(
                "schema region group {}: the change was not committed within \
                 {PROPOSE_TIMEOUT:?} (no quorum of its replicas?); it may still take effect",
                self.group
            ))),
        }
    }

    fn take_committed(&mut self) -> Vec<Committed> {
        self.shared
            .committed
            .lock()
            .map(|mut queue| queue.drain(..).collect())
            .unwrap_or_default()
    }

    fn compact(&mut self, index: u64, snapshot: Vec<u8>) -> crate::schema::Result<()> {
        SchemaRaft::send(
            &self.jobs,
            Job::Compact {
                group: self.group,
                index,
                snapshot,
            },
        )
        .map_err(SchemaError::Unavailable)
    }

    fn take_compact_request(&mut self) -> bool {
        self.shared.compact_requested.swap(false, Ordering::AcqRel)
    }
}

impl Drop for RaftLog {
    fn drop(&mut self) {
        let (reply, answer) = sync_channel(1);
        if SchemaRaft::send(
            &self.jobs,
            Job::Close {
                group: self.group,
                reply,
            },
        )
        .is_ok()
        {
            let _ = answer.recv_timeout(JOB_TIMEOUT);
        }
    }
}

/// One replica on the raft thread.
struct Replica {
    group: RaftGroup<StdDisk>,
    shared: Arc<GroupShared>,
    /// Proposals waiting for their entry to commit.
    pending: Vec<PendingProposal>,
}

/// The raft thread's state (`Rc`: the loop and the endpoint's handler share it).
struct Host {
    me: NodeId,
    replicas: HashMap<u32, Replica>,
    endpoint: Option<InternalEndpoint>,
    peers: Arc<Mutex<HashMap<NodeId, SocketAddr>>>,
    seed: u64,
}

fn run(
    node_id: NodeId,
    cluster_name: String,
    listener: std::net::TcpListener,
    peers: Arc<Mutex<HashMap<NodeId, SocketAddr>>>,
    mut jobs: mpsc::Receiver<Job>,
    stop: Arc<AtomicBool>,
) {
    let mut runtime = match raft_runtime() {
        Ok(runtime) => runtime,
        Err(reason) => {
            tracing::error!(%reason, "the schema raft thread did not start");
            return;
        }
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(node_id.0);
    runtime.block_on(async move {
        let host = Rc::new(std::cell::RefCell::new(Host {
            me: node_id,
            replicas: HashMap::new(),
            endpoint: None,
            peers,
            seed,
        }));
        let handler = OnMessage({
            let host = host.clone();
            move |from, body: &[u8]| {
                // The loop holds the host only between awaits, never while a message
                // arrives.
                if let Ok(mut host) = host.try_borrow_mut() {
                    host.step(from, body);
                }
            }
        });
        let Some(endpoint) = serve_raft_endpoint(
            node_id,
            cluster_name,
            handler,
            listener,
            "dn_schema_region_consensus_port",
        ) else {
            return;
        };
        host.borrow_mut().endpoint = Some(endpoint.clone());
        let mut ticks = Ticks::new(TICK);
        while !stop.load(Ordering::Acquire) {
            let job = monoio::select! {
                job = crate::cluster::link::next_job(&mut jobs) => job,
                _ = monoio::time::sleep(ticks.until_next()) => None,
            };
            let mut host = host.borrow_mut();
            if let Some(job) = job {
                host.take(job);
            }
            if ticks.due() {
                host.tick();
            }
        }
        endpoint.shut_down();
    });
}

/// A raft message's body on the wire: the group id, then raft's own bytes.
fn frame(group: u32, payload: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(4 + payload.len());
    body.put_u32_le(group);
    body.put_slice(payload);
    body.freeze()
}

impl Host {
    fn take(&mut self, job: Job) {
        match job {
            Job::Open {
                group,
                dir,
                voters,
                campaign,
                reply,
            } => {
                let _ = reply.try_send(self.open(group, dir, voters, campaign));
            }
            Job::Propose { group, data, reply } => {
                let Some(replica) = self.replicas.get_mut(&group) else {
                    let _ = reply.try_send(Err("no replica of the group here".into()));
                    return;
                };
                match replica.group.propose(data) {
                    Ok(proposed) => replica.pending.push((proposed, reply)),
                    Err(e) => {
                        let _ = reply.try_send(Err(not_leader_error(
                            &e,
                            "this replica does not lead the group",
                        )));
                    }
                }
                self.process(group);
            }
            Job::Compact {
                group,
                index,
                snapshot,
            } => {
                if let Some(replica) = self.replicas.get_mut(&group)
                    && let Err(e) = replica.group.compact(index, snapshot)
                {
                    tracing::warn!(group, error = %e, index, "compacting a schema raft log failed");
                    fail(group, replica, &e);
                }
            }
            Job::ChangeVoters { group, change } => {
                let Some(replica) = self.replicas.get_mut(&group) else {
                    return;
                };
                let proposed = match change {
                    MembershipChange::AddVoter(id) => replica.group.propose_add_voter(id),
                    MembershipChange::RemoveVoter(id) => replica.group.propose_remove_voter(id),
                };
                match proposed {
                    Ok(_) => tracing::info!(
                        group,
                        ?change,
                        "schema region group membership change proposed"
                    ),
                    Err(e) => {
                        tracing::debug!(group, ?change, error = %e, "membership change not proposed")
                    }
                }
                self.process(group);
            }
            Job::TransferLeader { group, to } => {
                let Some(replica) = self.replicas.get_mut(&group) else {
                    return;
                };
                match replica.group.transfer_leader(to) {
                    Ok(()) => {
                        tracing::info!(group, to = %node_of(to), "schema region group leadership handed over")
                    }
                    Err(e) => tracing::debug!(group, error = %e, "leadership not handed over"),
                }
                self.process(group);
            }
            Job::Close { group, reply } => {
                if let Some(mut replica) = self.replicas.remove(&group) {
                    for (_, waiting) in replica.pending.drain(..) {
                        let _ = waiting.try_send(Err("the replica was closed".into()));
                    }
                }
                let _ = reply.try_send(());
            }
        }
    }

    fn open(
        &mut self,
        group: u32,
        dir: PathBuf,
        voters: Vec<u64>,
        campaign: bool,
    ) -> Result<Opened, String> {
        if self.replicas.contains_key(&group) {
            return Err(format!("schema raft group {group} is open already"));
        }
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(group.into());
        let config = RaftGroupConfig::new(raft_id(self.me), voters, self.seed);
        let (mut raft, restored) =
            RaftGroup::open(StdDisk::new(&dir), config).map_err(|e| e.to_string())?;
        if campaign && raft.term() == 0 && restored.is_none() {
            let _ = raft.campaign();
        }
        let shared = Arc::new(GroupShared::default());
        self.replicas.insert(
            group,
            Replica {
                group: raft,
                shared: shared.clone(),
                pending: Vec::new(),
            },
        );
        self.process(group);
        Ok((shared, restored))
    }

    fn tick(&mut self) {
        let groups: Vec<u32> = self.replicas.keys().copied().collect();
        for group in groups {
            if let Some(replica) = self.replicas.get_mut(&group)
                && let Err(e) = replica.group.tick()
            {
                fail(group, replica, &e);
            }
            self.process(group);
        }
    }

    fn step(&mut self, from: NodeId, body: &[u8]) {
        if body.len() < 4 {
            tracing::debug!(%from, "a schema raft message without its group id");
            return;
        }
        let group = u32::from_le_bytes(body[..4].try_into().expect("four bytes"));
        let Some(replica) = self.replicas.get_mut(&group) else {
            // Not opened here yet (this node has not heard of the group): the sender
            // retries with its next heartbeat.
            tracing::debug!(%from, group, "a raft message for a schema group not open here");
            return;
        };
        if let Err(e) = replica.group.step(raft_id(from), &body[4..]) {
            fail(group, replica, &e);
        }
        self.process(group);
    }

    /// Persists, sends and hands over what a group has ready.
    fn process(&mut self, group: u32) {
        let Some(replica) = self.replicas.get_mut(&group) else {
            return;
        };
        let queued = replica
            .shared
            .committed
            .lock()
            .map(|queue| queue.len())
            .unwrap_or(0);
        if queued >= COMMITTED_QUEUE_MAX {
            // The control thread is behind: keep the entries in the log until it took these.
            return;
        }
        let output = match replica.group.advance() {
            Ok(output) => output,
            Err(e) => {
                fail(group, replica, &e);
                for (_, reply) in replica.pending.drain(..) {
                    let _ = reply.try_send(Err(e.to_string()));
                }
                return;
            }
        };
        if let Some(endpoint) = &self.endpoint {
            let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
            for (to, bytes) in output.messages {
                let node = node_of(to);
                let Some(address) = peers.get(&node) else {
                    tracing::debug!(%node, "no schema consensus address known for a peer yet");
                    continue;
                };
                endpoint.add_peer(node, *address);
                let _ = endpoint.send_message(node, frame(group, &bytes));
            }
        }
        for committed in output.committed {
            hand_over(replica, committed);
        }
        if let Some(leader) = output.leader_changed {
            tracing::info!(
                group,
                ?leader,
                term = replica.group.term(),
                "schema region group leader changed"
            );
            replica
                .shared
                .leader
                .store(leader.unwrap_or(0), Ordering::Release);
            if leader != Some(replica.group.id()) {
                for (_, reply) in replica.pending.drain(..) {
                    let _ = reply.try_send(Err("leadership moved to another replica".into()));
                }
            }
        }
        if output.compact_requested {
            replica
                .shared
                .compact_requested
                .store(true, Ordering::Release);
        }
        let voters = replica.group.voters();
        if let Ok(mut matched) = replica.shared.matched.lock() {
            matched.clear();
            for voter in &voters {
                if let Some(index) = replica.group.matched(*voter) {
                    matched.insert(*voter, index);
                }
            }
        }
        if let Ok(mut known) = replica.shared.voters.lock() {
            *known = voters;
        }
        replica
            .shared
            .commit
            .store(replica.group.commit_index(), Ordering::Release);
        // After the committed entries were queued: a reader that sees `ready` finds them.
        replica
            .shared
            .ready
            .store(replica.group.leader_ready(), Ordering::Release);
    }
}

fn fail(group: u32, replica: &mut Replica, error: &RaftGroupError) {
    if error.is_fatal() {
        tracing::error!(group, %error, "a schema raft group stopped; restart this DataNode");
        replica.shared.failed.store(true, Ordering::Release);
        replica.shared.ready.store(false, Ordering::Release);
    } else {
        tracing::debug!(group, %error, "schema raft");
    }
}

/// Queues a committed entry for the control thread, then answers the proposal it ends
/// (so the proposer finds its entry queued).
fn hand_over(replica: &mut Replica, committed: Committed) {
    let answered = match &committed {
        Committed::Normal { index, term, .. } => Some((*index, *term)),
        _ => None,
    };
    if let Ok(mut queue) = replica.shared.committed.lock() {
        queue.push_back(committed);
    }
    if let Some((index, term)) = answered {
        answer_proposals(&mut replica.pending, index, term);
    }
}
