//! The ConfigNode state replicated among ConfigNodes by a Raft group (raft-rs, through
//! `iotdb_consensus::raft_group`): a [`RaftStore`] is the ConfigNode's command store, and
//! a thread of its own drives the group on `cn_consensus_port`.
//!
//! ```text
//!  ConfigNode thread                          raft thread (monoio, cn_consensus_port)
//!  ConfigNode::commit ─append─► RaftStore ─Propose─► RaftGroup::propose
//!      (blocks until committed)     ▲                   tick every 100 ms, step peers' messages,
//!                                   │                   advance: persist (fsync), send, commit
//!  catch_up ◄─poll_committed── committed queue ◄──── Committed entries, in index order
//!                                   └── reply(index) once the proposal's entry committed
//! ```
//!
//! Every ConfigNode applies the same committed commands in the same order; the leader
//! applies its own at once (its `append` returns what others committed before it, which
//! it applies first) and followers through `catch_up`. Only the leader proposes: the
//! ConfigNode service redirects followers' requests. Raft ids are node ids plus one (raft
//! reserves 0).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_channel::mpsc;
use iotdb_consensus::io::StdDisk;
use iotdb_consensus::raft_group::{
    Committed as RaftCommitted, MembershipChange, Proposed, RaftGroup, RaftGroupConfig,
    RaftGroupError,
};

use crate::confignode::store::{CommandStore, Committed, Recovered};
use crate::confignode::{ClusterSettings, ConfigCommand, ConfigNodeError, ConfigState, NodeId};
use crate::internal::{EndpointConfig, InternalEndpoint, InternalHandler, InternalLimits};

/// The raft id of a node (raft reserves 0).
pub fn raft_id(node: NodeId) -> u64 {
    u64::from(node.0) + 1
}

/// The node of a raft id.
pub fn node_of(raft_id: u64) -> NodeId {
    NodeId(raft_id.saturating_sub(1) as u32)
}

/// One raft tick. Why 100 ms: with the group's 10-tick election timeout, a dead leader is
/// replaced in 1–2 s, and an idle group costs ten wake-ups a second.
const TICK: Duration = Duration::from_millis(100);

/// How long a proposal may take to commit. Why 5 s: a healthy group commits in
/// milliseconds; longer means no quorum, and the request fails with a clear error rather
/// than hanging (the command may still commit later, and then every node applies it).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Jobs queued for the raft thread at most (the ConfigNode thread proposes one at a time).
const JOBS_MAX: usize = 64;

/// What the raft thread and the ConfigNode thread share.
#[derive(Debug, Default)]
pub struct RaftShared {
    /// Committed entries not yet taken by the ConfigNode thread, by raft index.
    committed: Mutex<VecDeque<(u64, Committed)>>,
    /// The leader's raft id; 0 when unknown.
    leader: AtomicU64,
    /// Peers' consensus addresses by raft id (the ConfigNode thread keeps it current).
    peers: Mutex<HashMap<u64, SocketAddr>>,
    /// The group failed (a disk error): the process must restart.
    failed: AtomicBool,
    /// A follower needs a newer snapshot: the ConfigNode thread should checkpoint.
    compact_requested: AtomicBool,
    /// The voters, as raft ids.
    voters: Mutex<Vec<u64>>,
}

impl RaftShared {
    /// The leading ConfigNode, if known.
    pub fn leader(&self) -> Option<NodeId> {
        match self.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(node_of(id)),
        }
    }

    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Takes a pending compaction request.
    pub fn take_compact_request(&self) -> bool {
        self.compact_requested.swap(false, Ordering::AcqRel)
    }

    /// Learns (or moves) the consensus addresses of members.
    pub fn add_peers(&self, peers: HashMap<u64, SocketAddr>) {
        if let Ok(mut known) = self.peers.lock() {
            known.extend(peers);
        }
    }

    pub fn voters(&self) -> Vec<u64> {
        self.voters.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

enum Job {
    /// Replies with the raft index once the entry committed (or why it did not).
    Propose {
        data: Vec<u8>,
        reply: SyncSender<Result<u64, String>>,
    },
    /// Replies once `id` is a voter.
    AddVoter {
        id: u64,
        reply: SyncSender<Result<(), String>>,
    },
    /// Proposes removing `id` from the voters (no reply: the leader's tick repeats it
    /// until the configuration no longer names a ConfigNode the state forgot).
    RemoveVoter {
        id: u64,
    },
    Compact {
        index: u64,
        snapshot: Vec<u8>,
    },
    /// The leader hands leadership to the voter holding the most of its log.
    HandOver,
}

/// The ConfigNode's command store over the Raft group.
pub struct RaftStore {
    jobs: mpsc::Sender<Job>,
    shared: Arc<RaftShared>,
    /// The raft index of the last entry the ConfigNode applied.
    applied: u64,
    since_snapshot: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RaftStore")
            .field("applied", &self.applied)
            .field("leader", &self.shared.leader())
            .finish_non_exhaustive()
    }
}

/// How a ConfigNode takes part in the group.
pub struct RaftOptions {
    pub node_id: NodeId,
    pub cluster_name: String,
    /// `confignode/raft` in the data directory.
    pub dir: PathBuf,
    /// The bound `cn_consensus_port`.
    pub listener: std::net::TcpListener,
    /// Founding a new group: this node is its only voter and campaigns at once.
    pub founding: bool,
    pub settings: ClusterSettings,
    /// Consensus addresses known before the state says them (a joining node's, from its
    /// registration), by raft id.
    pub peers: HashMap<u64, SocketAddr>,
}

impl RaftStore {
    /// Opens the group's storage and starts the raft thread. Returns the store and what
    /// the ConfigNode starts from (the latest snapshot; the committed entries after it
    /// come through `poll_committed`).
    pub fn start(options: RaftOptions) -> anyhow::Result<(RaftStore, Recovered)> {
        std::fs::create_dir_all(&options.dir)
            .with_context(|| format!("creating {}", options.dir.display()))?;
        let shared = Arc::new(RaftShared::default());
        shared.add_peers(options.peers.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, receiver) = mpsc::channel(JOBS_MAX);
        let (opened, opened_receiver) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("confignode-raft".into())
            .spawn({
                let shared = shared.clone();
                let stop = stop.clone();
                move || run(options, shared, receiver, stop, opened)
            })
            .context("starting the raft thread")?;
        let restored = opened_receiver
            .recv()
            .context("the raft thread stopped while opening")?
            .map_err(|reason| anyhow::anyhow!("opening the ConfigNode raft group: {reason}"))?;
        let (applied, snapshot) = match restored {
            Some((index, state)) => (index, Some(state)),
            None => (0, None),
        };
        Ok((
            RaftStore {
                jobs,
                shared,
                applied,
                since_snapshot: 0,
                stop,
                thread: Some(thread),
            },
            Recovered {
                snapshot,
                commands: Vec::new(),
            },
        ))
    }

    pub fn shared(&self) -> &Arc<RaftShared> {
        &self.shared
    }

    fn send(&self, job: Job) -> Result<(), ConfigNodeError> {
        self.jobs
            .clone()
            .try_send(job)
            .map_err(|_| ConfigNodeError::Store("the raft thread is not taking jobs".into()))
    }

    /// Makes `node` a voter of the group (idempotent): the leader only.
    pub fn add_voter(&self, node: NodeId) -> Result<(), ConfigNodeError> {
        let (reply, answer) = sync_channel(1);
        self.send(Job::AddVoter {
            id: raft_id(node),
            reply,
        })?;
        answer
            .recv_timeout(PROPOSE_TIMEOUT)
            .map_err(|_| {
                ConfigNodeError::Store("adding a ConfigNode to the group timed out".into())
            })?
            .map_err(ConfigNodeError::Store)
    }

    /// Proposes removing `node` from the group's voters (the leader only; idempotent).
    pub fn remove_voter(&self, node: NodeId) -> Result<(), ConfigNodeError> {
        self.send(Job::RemoveVoter { id: raft_id(node) })
    }

    /// Hands leadership to another voter (the leader only; the one holding the most of
    /// the log): it campaigns once it holds the whole log, within an election timeout.
    /// Nothing happens when this node does not lead or is the only voter.
    pub fn hand_over_leadership(&self) -> Result<(), ConfigNodeError> {
        self.send(Job::HandOver)
    }

    /// Stops the raft thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RaftStore {
    fn drop(&mut self) {
        self.stop();
    }
}

impl CommandStore for RaftStore {
    fn append(
        &mut self,
        command: &ConfigCommand,
        state: &ConfigState,
    ) -> crate::confignode::Result<Vec<Committed>> {
        let data = serde_json::to_vec(command)
            .map_err(|e| ConfigNodeError::Store(format!("encoding a command: {e}")))?;
        let (reply, answer) = sync_channel(1);
        self.send(Job::Propose { data, reply })?;
        let deadline = std::time::Instant::now() + PROPOSE_TIMEOUT;
        let index = loop {
            match answer.recv_timeout(Duration::from_millis(20)) {
                Ok(result) => break result.map_err(ConfigNodeError::Store)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if std::time::Instant::now() < deadline =>
                {
                    // A member that needs a snapshot may be the quorum this commit waits
                    // for: give it one (of everything applied so far) instead of
                    // waiting for the ConfigNode thread, which is this thread.
                    if self.shared.take_compact_request() {
                        self.write_snapshot(state)?;
                    }
                }
                Err(_) => {
                    return Err(ConfigNodeError::Store(format!(
                        "the change was not committed within {PROPOSE_TIMEOUT:?} (no quorum \
                         of ConfigNodes?); it may still take effect"
                    )));
                }
            }
        };
        // What others committed before ours comes first; ours is applied by the caller.
        let mut before = Vec::new();
        if let Ok(mut queue) = self.shared.committed.lock() {
            while let Some((at, _)) = queue.front() {
                if *at > index {
                    break;
                }
                let (at, entry) = queue.pop_front().expect("peeked");
                if at > self.applied && at < index {
                    before.push(entry);
                }
            }
        }
        self.applied = self.applied.max(index);
        self.since_snapshot += 1;
        Ok(before)
    }

    fn poll_committed(&mut self) -> Vec<Committed> {
        let mut taken = Vec::new();
        if let Ok(mut queue) = self.shared.committed.lock() {
            for (at, entry) in queue.drain(..) {
                if at > self.applied || matches!(entry, Committed::State(_)) {
                    self.applied = self.applied.max(at);
                    taken.push(entry);
                }
            }
        }
        self.since_snapshot += taken.len() as u64;
        taken
    }

    fn defer_sync(&mut self) {}

    fn sync(&mut self) -> crate::confignode::Result<()> {
        Ok(())
    }

    fn write_snapshot(&mut self, state: &ConfigState) -> crate::confignode::Result<()> {
        if self.applied == 0 {
            return Ok(());
        }
        let snapshot = serde_json::to_vec(state)
            .map_err(|e| ConfigNodeError::Store(format!("encoding a snapshot: {e}")))?;
        self.send(Job::Compact {
            index: self.applied,
            snapshot,
        })?;
        self.since_snapshot = 0;
        Ok(())
    }

    fn records_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }
}

type Opened = Result<Option<(u64, ConfigState)>, String>;

fn decode_state(data: &[u8], settings: &ClusterSettings) -> Result<ConfigState, String> {
    if data.is_empty() {
        return Ok(ConfigState::new(settings.clone()));
    }
    serde_json::from_slice(data).map_err(|e| format!("a snapshot that does not decode: {e}"))
}

/// The raft thread's state (`Rc`: the thread's loop and the endpoint's handler share it).
struct Host {
    group: RaftGroup<StdDisk>,
    endpoint: Option<InternalEndpoint>,
    shared: Arc<RaftShared>,
    settings: ClusterSettings,
    /// Proposals waiting for their entry to commit.
    pending: Vec<PendingProposal>,
    /// Voters being added, waiting for their conf change.
    joining: Vec<(u64, SyncSender<Result<(), String>>)>,
}

fn run(
    options: RaftOptions,
    shared: Arc<RaftShared>,
    mut jobs: mpsc::Receiver<Job>,
    stop: Arc<AtomicBool>,
    opened: SyncSender<Opened>,
) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(options.node_id.0);
    let me = raft_id(options.node_id);
    let voters = if options.founding {
        vec![me]
    } else {
        Vec::new()
    };
    let config = RaftGroupConfig::new(me, voters, seed);
    let (group, restored) = match RaftGroup::open(StdDisk::new(&options.dir), config) {
        Ok(opened) => opened,
        Err(e) => {
            let _ = opened.send(Err(e.to_string()));
            return;
        }
    };
    let restored = match restored {
        Some(snapshot) => match decode_state(&snapshot.data, &options.settings) {
            Ok(state) => Some((snapshot.index, state)),
            Err(reason) => {
                let _ = opened.send(Err(reason));
                return;
            }
        },
        None => None,
    };
    if let Ok(mut voters) = shared.voters.lock() {
        *voters = group.voters();
    }
    let mut runtime = match raft_runtime() {
        Ok(runtime) => runtime,
        Err(reason) => {
            let _ = opened.send(Err(reason));
            return;
        }
    };
    let _ = opened.send(Ok(restored));
    runtime.block_on(async move {
        let host = Rc::new(std::cell::RefCell::new(Host {
            group,
            endpoint: None,
            shared: shared.clone(),
            settings: options.settings.clone(),
            pending: Vec::new(),
            joining: Vec::new(),
        }));
        let handler = OnMessage({
            let host = host.clone();
            move |from, body: &[u8]| {
                // The loop holds the host only between awaits, never while a message
                // arrives.
                if let Ok(mut host) = host.try_borrow_mut() {
                    host.step(raft_id(from), body);
                    host.process();
                }
            }
        });
        let Some(endpoint) = serve_raft_endpoint(
            options.node_id,
            options.cluster_name.clone(),
            handler,
            options.listener,
            "cn_consensus_port",
        ) else {
            shared.failed.store(true, Ordering::Release);
            return;
        };
        host.borrow_mut().endpoint = Some(endpoint.clone());
        if options.founding {
            let _ = host.borrow_mut().group.campaign();
        }
        host.borrow_mut().process();
        let mut ticks = Ticks::new(TICK);
        while !stop.load(Ordering::Acquire) {
            let job = monoio::select! {
                job = super::link::next_job(&mut jobs) => job,
                _ = monoio::time::sleep(ticks.until_next()) => None,
            };
            let mut host = host.borrow_mut();
            if let Some(job) = job {
                host.take(job);
            }
            if ticks.due()
                && let Err(e) = host.group.tick()
            {
                host.fail(&e);
            }
            host.process();
        }
        endpoint.shut_down();
    });
}

impl Host {
    fn fail(&mut self, error: &RaftGroupError) {
        if error.is_fatal() {
            tracing::error!(%error, "the ConfigNode raft group stopped; restart this ConfigNode");
            self.shared.failed.store(true, Ordering::Release);
        } else {
            tracing::debug!(%error, "raft");
        }
    }

    fn take(&mut self, job: Job) {
        match job {
            Job::Propose { data, reply } => match self.group.propose(data) {
                Ok(proposed) => self.pending.push((proposed, reply)),
                Err(e) => {
                    let _ = reply.try_send(Err(propose_error(&e)));
                }
            },
            Job::AddVoter { id, reply } => {
                if self.group.voters().contains(&id) {
                    let _ = reply.try_send(Ok(()));
                    return;
                }
                match self.group.propose_add_voter(id) {
                    Ok(_) => self.joining.push((id, reply)),
                    Err(e) => {
                        let _ = reply.try_send(Err(propose_error(&e)));
                    }
                }
            }
            Job::RemoveVoter { id } => {
                if !self.group.voters().contains(&id) {
                    return;
                }
                if let Err(e) = self.group.propose_remove_voter(id) {
                    tracing::warn!(error = %e, id, "proposing a ConfigNode's removal failed; retried");
                }
            }
            Job::HandOver => {
                let me = self.group.id();
                let successor = self
                    .group
                    .voters()
                    .into_iter()
                    .filter(|id| *id != me)
                    .max_by_key(|id| self.group.matched(*id).unwrap_or(0));
                let Some(successor) = successor else {
                    return;
                };
                match self.group.transfer_leader(successor) {
                    Ok(()) => {
                        tracing::info!(to = %node_of(successor), "handing ConfigNode leadership over")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "handing ConfigNode leadership over failed")
                    }
                }
            }
            Job::Compact { index, snapshot } => {
                if let Err(e) = self.group.compact(index, snapshot) {
                    tracing::warn!(error = %e, index, "compacting the ConfigNode raft log failed");
                    self.fail(&e);
                }
            }
        }
    }

    fn step(&mut self, from: u64, body: &[u8]) {
        if let Err(e) = self.group.step(from, body) {
            self.fail(&e);
        }
    }

    /// Persists, sends and hands over what the group has ready.
    fn process(&mut self) {
        let output = match self.group.advance() {
            Ok(output) => output,
            Err(e) => {
                self.fail(&e);
                for (_, reply) in self.pending.drain(..) {
                    let _ = reply.try_send(Err(e.to_string()));
                }
                return;
            }
        };
        if let Some(endpoint) = &self.endpoint {
            let peers = self
                .shared
                .peers
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default();
            for (to, bytes) in output.messages {
                let Some(address) = peers.get(&to) else {
                    tracing::debug!(to, "no consensus address known for a raft peer yet");
                    continue;
                };
                endpoint.add_peer(node_of(to), *address);
                let _ = endpoint.send_message(node_of(to), bytes);
            }
        }
        for committed in output.committed {
            self.hand_over(committed);
        }
        if let Some(leader) = output.leader_changed {
            tracing::info!(
                ?leader,
                term = self.group.term(),
                me = self.group.id(),
                "raft leader changed"
            );
            self.shared
                .leader
                .store(leader.unwrap_or(0), Ordering::Release);
            if leader != Some(self.group.id()) {
                for (_, reply) in self.pending.drain(..) {
                    let _ = reply.try_send(Err("leadership moved to another ConfigNode".into()));
                }
            }
        }
        if output.compact_requested {
            self.shared.compact_requested.store(true, Ordering::Release);
        }
    }

    fn hand_over(&mut self, committed: RaftCommitted) {
        let (index, entry) = match committed {
            RaftCommitted::Normal { index, term, data } => {
                let entry = match serde_json::from_slice::<ConfigCommand>(&data) {
                    Ok(command) => Some(Committed::Command(command)),
                    Err(e) => {
                        // Every node skips it alike.
                        tracing::error!(index, error = %e, "a committed entry does not decode; skipped");
                        None
                    }
                };
                answer_proposals(&mut self.pending, index, term);
                match entry {
                    Some(entry) => (index, entry),
                    None => return,
                }
            }
            RaftCommitted::ConfChange {
                index,
                change,
                voters,
                ..
            } => {
                tracing::info!(
                    index,
                    ?change,
                    ?voters,
                    "ConfigNode group membership changed"
                );
                if let Ok(mut known) = self.shared.voters.lock() {
                    *known = voters.clone();
                }
                if let MembershipChange::AddVoter(id) = change {
                    self.joining.retain(|(joining, reply)| {
                        if *joining == id {
                            let _ = reply.try_send(Ok(()));
                            false
                        } else {
                            true
                        }
                    });
                }
                // The ConfigNode takes it too, so a snapshot it writes names the new
                // configuration's members.
                (index, Committed::Nothing)
            }
            RaftCommitted::Snapshot(snapshot) => {
                match decode_state(&snapshot.data, &self.settings) {
                    Ok(state) => {
                        if let Ok(mut known) = self.shared.voters.lock() {
                            *known = snapshot.voters.clone();
                        }
                        (snapshot.index, Committed::State(Box::new(state)))
                    }
                    Err(reason) => {
                        tracing::error!(%reason, "a snapshot from the leader does not decode");
                        self.shared.failed.store(true, Ordering::Release);
                        return;
                    }
                }
            }
        };
        if let Ok(mut queue) = self.shared.committed.lock() {
            queue.push_back((index, entry));
        }
    }
}

fn propose_error(error: &RaftGroupError) -> String {
    not_leader_error(error, "this ConfigNode does not lead the ConfigNode group")
}

/// A proposal's error as its proposer reads it: `not_leader` and the leader when raft
/// knows one.
pub(crate) fn not_leader_error(error: &RaftGroupError, not_leader: &str) -> String {
    match error {
        RaftGroupError::NotLeader { leader } => format!(
            "{not_leader} (leader: {})",
            leader.map_or("unknown".to_string(), |l| node_of(l).to_string())
        ),
        other => other.to_string(),
    }
}

/// A proposal waiting for its entry, answered when an entry commits at its index: its
/// index if the entry is its own (same term), else why it was lost.
pub(crate) type PendingProposal = (Proposed, SyncSender<Result<u64, String>>);

/// Answers the proposals waiting for the entry committed at (`index`, `term`).
pub(crate) fn answer_proposals(pending: &mut Vec<PendingProposal>, index: u64, term: u64) {
    pending.retain(|(proposed, reply)| {
        if proposed.index != index {
            return true;
        }
        let _ = reply.try_send(if proposed.term == term {
            Ok(index)
        } else {
            Err("the proposal was replaced by another leader's entry".into())
        });
        false
    });
}

/// A raft thread's clock: a tick every `interval` however many jobs arrive in between
/// (a wait restarted by every job would starve the ticks of a busy leader).
pub(crate) struct Ticks {
    interval: Duration,
    next: std::time::Instant,
}

impl Ticks {
    pub(crate) fn new(interval: Duration) -> Ticks {
        Ticks {
            interval,
            next: std::time::Instant::now() + interval,
        }
    }

    /// How long until the next tick is due.
    pub(crate) fn until_next(&self) -> Duration {
        self.next
            .saturating_duration_since(std::time::Instant::now())
    }

    /// Whether a tick is due now (it then counts as taken).
    pub(crate) fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.interval;
        true
    }
}

/// A raft thread's runtime: io_uring where the kernel has it, with timers.
pub(crate) type RaftRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The monoio runtime of a raft thread (timers for ticks).
pub(crate) fn raft_runtime() -> Result<RaftRuntime, String> {
    iotdb_runtime::runtime_builder()
        .enable_timer()
        .build()
        .map_err(|e| format!("starting the raft runtime: {e}"))
}

/// Serves a raft thread's consensus port (`key` names it in errors) with `handler`;
/// `None` when it failed (logged). Must run inside the thread's runtime.
pub(crate) fn serve_raft_endpoint(
    node_id: NodeId,
    cluster_name: String,
    handler: OnMessage<impl Fn(NodeId, &[u8]) + 'static>,
    listener: std::net::TcpListener,
    key: &str,
) -> Option<InternalEndpoint> {
    let endpoint = match InternalEndpoint::new(
        EndpointConfig {
            node_id,
            cluster_name,
            limits: InternalLimits::default(),
        },
        Rc::new(handler),
    ) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::error!(error = %e, key, "the raft endpoint failed");
            return None;
        }
    };
    if let Err(e) = endpoint.serve(listener) {
        tracing::error!(error = %e, key, "serving a raft consensus port failed");
        return None;
    }
    Some(endpoint)
}

/// A raft thread's endpoint handler: one-way messages go to the closure (raft sends no
/// requests).
pub(crate) struct OnMessage<F>(pub F);

impl<F: Fn(NodeId, &[u8])> InternalHandler for OnMessage<F> {
    fn handle_request(
        &self,
        _from: NodeId,
        _body: Bytes,
    ) -> Pin<Box<dyn std::future::Future<Output = Bytes>>> {
        Box::pin(async { Bytes::new() })
    }

    fn on_message(&self, from: NodeId, body: Bytes) {
        (self.0)(from, &body);
    }
}
