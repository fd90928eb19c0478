//! Region replication on a DataNode shard: the driver of `iotdb_consensus::iot`.
//!
//! A replicated data region group (more than one replica) has, on every DataNode holding a
//! replica, one [`Replica`] state machine on the shard that owns the region. This module
//! feeds it events (the ConfigNode's view of the group from the route table, client writes,
//! WAL durability, peers' messages, a tick) and carries out its commands against the
//! shard's [`Region`] and the shard's own consensus endpoint.
//!
//! ```text
//!  DN a, shard 1 (leader of g)                      DN b, shard 0 (follower of g)
//!  client write ─► region.write_for_replication      consensus endpoint :port+0
//!                  ─► Replica::step(Written)                 │ on_message(g, bytes)
//!                  ─► Send{b, Append} ─► consensus ─────────►│ Replica::step(Received)
//!                     endpoint :port+1 (one hop,             │ Apply ─► apply queue ─►
//!                     core to core, WAL bytes as they are)   │  region.apply_replicated
//!                  ◄─ Appended{durable} ◄────────────────────┘ Durable ─► Appended
//!  Acknowledge{through} ─► the waiting client writes return
//! ```
//!
//! Each shard listens on `dn_data_region_consensus_port + shard` and talks only to the
//! owning shard of each peer replica, so a replication batch never crosses the mesh on
//! either side. Peer ids on these endpoints name (DataNode, shard): see [`peer_id`].
//!
//! The replica never waits: a command that needs I/O (a WAL read, the apply queue, a
//! request to the ConfigNode) runs in a task that steps the replica again with the result.
//! `drive` takes the replica's borrow only while stepping, then executes the commands, so
//! no borrow is held across an `.await` and no command re-enters `drive` synchronously.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use futures_channel::oneshot;
use iotdb_consensus::io::NodeId;
use iotdb_consensus::iot::{
    AckMode, Command, Entry, Epochs, Event, GroupView, IotConfig, Message, Recovered, Refusal,
    Replica,
};
use iotdb_net::{Status, StatusCode};
use iotdb_storage::{LogEntry, LogRead, Region};

use super::Shard;
use super::control::ControlRequest;
use super::route::GroupReplication;
use super::write::Payload;
use crate::internal::{EndpointConfig, InternalEndpoint, InternalHandler, InternalLimits};

/// How often every replica of the shard is ticked (timeouts, resends, views).
const TICK_INTERVAL: Duration = Duration::from_millis(10);
/// Longest a client write waits for its acknowledgement (`in_sync`: every in-sync replica
/// durable) before it fails with a retryable status.
const ACK_WAIT_MAX: Duration = Duration::from_secs(30);
/// While the shard's memtable budget is full, a replicated write or apply waits this long
/// for a flush before it is refused (as a local write is).
const MEMORY_WAIT_MAX: Duration = iotdb_storage::config::WRITE_MEMORY_WAIT_MAX;
/// The file beside a region's data holding its replica's epoch table.
const EPOCHS_FILE: &str = "replication-epochs.json";
/// Bits of a consensus peer id that name the shard (`SHARDS_PER_DATA_NODE_MAX` = 1024).
const SHARD_BITS: u32 = 10;
/// Longest a client write waits for its group's new leader to finish catching up (a
/// new group, a failover) before it is refused with a retryable status. The catch-up
/// itself is bounded by `IotConfig::catch_up_timeout_ms`; this is shorter, so a client
/// hears back in time and retries.
const TAKE_OVER_WAIT_MAX: Duration = Duration::from_secs(3);
/// How often a waiting write looks again.
const TAKE_OVER_POLL: Duration = Duration::from_millis(5);
/// How often a leader with lagging followers says so at info level.
const LAG_REPORT_SECONDS: u64 = 5;
/// Group id prefix of every replication frame.
const FRAME_HEADER_BYTES: usize = 4;
/// Snapshot transfer requests (group u32 | op u8 | body) and their answers.
const SNAPSHOT_BEGIN: u8 = 1;
const SNAPSHOT_CHUNK: u8 = 2;
const SNAPSHOT_FINISH: u8 = 3;
const SNAPSHOT_OK: u8 = 0;
const SNAPSHOT_REFUSED: u8 = 1;
/// Bytes of one snapshot chunk: well below the 16 MiB frame bound, large enough that the
/// per-request round trip does not dominate.
const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// One snapshot request's answer may take this long (a chunk's fsync, the install).
const SNAPSHOT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The consensus endpoint's peer id of shard `shard` of DataNode `node`.
pub fn peer_id(node: u32, shard: u16) -> NodeId {
    NodeId((node << SHARD_BITS) | u32::from(shard))
}

fn node_of_peer(peer: NodeId) -> u32 {
    peer.0 >> SHARD_BITS
}

/// The replication state of one shard.
#[derive(Default)]
pub struct ShardReplication {
    endpoint: RefCell<Option<InternalEndpoint>>,
    groups: RefCell<HashMap<u32, Rc<GroupDriver>>>,
    /// The route version the views were last taken from.
    seen_route: Cell<u64>,
    /// The second of the last progress report (debug logging).
    last_report_s: Cell<u64>,
    /// A mirror refresh for a message of an unknown group is under way.
    refreshing: Cell<bool>,
    /// Groups whose region is being replaced by a snapshot: no replica (and no second
    /// open of the region) until the install finished.
    installing: RefCell<HashSet<u32>>,
}

/// One replicated group's replica on this shard.
pub(crate) struct GroupDriver {
    group: u32,
    region: Region,
    replica: RefCell<Replica>,
    /// The latest view taken from the route table.
    view: RefCell<Option<GroupReplication>>,
    /// Entries the replica asked to apply, in index order, not yet in the region.
    apply_queue: RefCell<VecDeque<Entry>>,
    applying: Cell<bool>,
    /// Client writes through here were acknowledged.
    acknowledged: Cell<u64>,
    waiters: RefCell<BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
    epochs_path: PathBuf,
    /// Set by `NeedSnapshot`: the replica must be rebuilt from the leader's snapshot.
    awaiting_snapshot: Cell<bool>,
    /// The snapshot being received (follower), with the leader's DataNode sending it.
    receiving: RefCell<Option<(u32, iotdb_storage::SnapshotWriter)>>,
}

impl ShardReplication {
    /// (group, entries its furthest follower lags) of every group this shard's replica
    /// leads, for the replication lag gauge (`crate::metrics`).
    pub(crate) fn leader_lags(&self) -> Vec<(u32, u64)> {
        self.groups
            .borrow()
            .values()
            .filter_map(|driver| {
                let progress = driver.replica.borrow().progress();
                (progress.role == iotdb_consensus::iot::Role::Leader).then(|| {
                    let lag = progress.peers.iter().map(|p| p.lag_entries).max();
                    (driver.group, lag.unwrap_or(0))
                })
            })
            .collect()
    }

    /// A report of every group this shard's replica leads (caught up, taking writes):
    /// how each follower stands, for the ConfigNode's migrations.
    pub(crate) fn leader_reports(
        &self,
        data_node_id: u32,
    ) -> Vec<crate::confignode::procedure::LeaderReport> {
        use crate::confignode::procedure::{LeaderReport, PeerReport};
        self.groups
            .borrow()
            .values()
            .filter_map(|driver| {
                let progress = driver.replica.borrow().progress();
                (progress.role == iotdb_consensus::iot::Role::Leader).then(|| LeaderReport {
                    group: driver.group,
                    epoch: progress.epoch,
                    leader: data_node_id,
                    last_index: progress.last_index,
                    peers: progress
                        .peers
                        .iter()
                        .map(|peer| PeerReport {
                            node: peer.peer as u32,
                            shipping: peer.phase == iotdb_consensus::iot::PeerPhase::Shipping,
                            lag_entries: peer.lag_entries,
                            durable_index: peer.durable_index,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Shuts the consensus endpoint down (at stop).
    pub fn shut_down(&self) {
        if let Some(endpoint) = self.endpoint.borrow_mut().take() {
            endpoint.shut_down();
        }
        for driver in self.groups.borrow_mut().drain().map(|(_, d)| d) {
            driver.fail_waiters();
        }
    }
}

impl GroupDriver {
    /// The consensus endpoint id of replica `node`'s owning shard, per the latest view.
    fn peer_endpoint_id(&self, node: u64) -> Option<NodeId> {
        let view = self.view.borrow();
        let &(node, shard) = view
            .as_ref()?
            .replicas
            .iter()
            .find(|(replica, _)| u64::from(*replica) == node)?;
        Some(peer_id(node, shard))
    }

    fn fail_waiters(&self) {
        // Dropping the senders wakes every waiter with `Canceled`.
        self.waiters.borrow_mut().clear();
    }

    fn release_waiters(&self, through: u64) {
        if through <= self.acknowledged.get() {
            return;
        }
        self.acknowledged.set(through);
        let mut waiters = self.waiters.borrow_mut();
        let later = waiters.split_off(&(through + 1));
        for senders in std::mem::replace(&mut *waiters, later).into_values() {
            for sender in senders {
                let _ = sender.send(());
            }
        }
    }
}

/// Every second at debug level, and every LAG_REPORT_SECONDS at info level while a
/// follower lags, what a leader replica knows of its followers.
fn report_progress(driver: &GroupDriver, second: u64) {
    let progress = driver.replica.borrow().progress();
    tracing::debug!(group = driver.group, ?progress, "replica progress");
    let lagging: Vec<(u64, u64, u64)> = progress
        .peers
        .iter()
        .filter(|peer| peer.lag_entries > 0)
        .map(|peer| (peer.peer, peer.lag_entries, peer.lag_bytes))
        .collect();
    if !lagging.is_empty() && second.is_multiple_of(LAG_REPORT_SECONDS) {
        tracing::info!(
            group = driver.group,
            last_index = progress.last_index,
            lag = ?lagging,
            "replication lag: (follower, entries, bytes still in memory) behind this leader"
        );
    }
}

/// The replication settings of a view.
fn iot_config() -> IotConfig {
    IotConfig {
        // Below the internal transport's 16 MiB frame bound, with room for the header.
        max_batch_bytes: 15 * 1024 * 1024,
        ..IotConfig::default()
    }
}

fn group_view(view: &GroupReplication) -> GroupView {
    let peers = |nodes: &[u32]| nodes.iter().map(|n| u64::from(*n)).collect();
    GroupView {
        epoch: view.epoch,
        leader: u64::from(view.leader),
        replicas: view.replicas.iter().map(|(n, _)| u64::from(*n)).collect(),
        in_sync: peers(&view.in_sync),
        in_sync_version: view.in_sync_version,
        running: peers(&view.running),
        ack: if view.ack_in_sync {
            AckMode::InSync
        } else {
            AckMode::Leader
        },
    }
}

fn to_entry(entry: LogEntry) -> Entry {
    Entry {
        index: entry.index,
        kind: entry.kind,
        payload: entry.payload,
    }
}

fn to_log_entry(entry: &Entry) -> LogEntry {
    LogEntry {
        index: entry.index,
        kind: entry.kind,
        payload: entry.payload.clone(),
    }
}

/// The epoch table file's contents.
#[derive(serde::Serialize, serde::Deserialize)]
struct EpochsFile {
    pairs: Vec<(u64, u64)>,
    leader_fence: u64,
    /// The replica must be rebuilt from the leader's snapshot (`NeedSnapshot`), which
    /// has not been installed yet: it must not lead, even after a restart.
    #[serde(default)]
    awaiting_snapshot: bool,
}

/// What a replica keeps beside its region: its epoch table and whether it awaits a
/// snapshot.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReplicaFile {
    epochs: Epochs,
    awaiting_snapshot: bool,
}

fn load_epochs(path: &std::path::Path) -> Result<ReplicaFile, Status> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplicaFile::default()),
        Err(e) => {
            return Err(Status::internal(format!("reading {}: {e}", path.display())));
        }
    };
    let file: EpochsFile = serde_json::from_slice(&bytes)
        .map_err(|e| Status::internal(format!("{} is damaged: {e}", path.display())))?;
    let epochs = Epochs::from_pairs(file.pairs, file.leader_fence).ok_or_else(|| {
        Status::internal(format!(
            "{} is damaged: epochs out of order",
            path.display()
        ))
    })?;
    Ok(ReplicaFile {
        epochs,
        awaiting_snapshot: file.awaiting_snapshot,
    })
}

fn store_epochs(path: &std::path::Path, replica: &ReplicaFile) -> anyhow::Result<()> {
    let file = EpochsFile {
        pairs: replica.epochs.pairs().to_vec(),
        leader_fence: replica.epochs.leader_fence(),
        awaiting_snapshot: replica.awaiting_snapshot,
    };
    let bytes = serde_json::to_vec(&file)?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir)?;
    crate::confignode::journal::write_atomically(dir, path, &bytes)?;
    Ok(())
}

/// What the consensus endpoint of a shard does with its peers' frames.
struct ReplicationHandler {
    shard: Rc<Shard>,
}

impl InternalHandler for ReplicationHandler {
    fn handle_request(&self, from: NodeId, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes>>> {
        let shard = self.shard.clone();
        Box::pin(async move {
            let answer = shard.receive_snapshot(from, body).await;
            let mut out = Vec::new();
            match answer {
                Ok(()) => out.push(SNAPSHOT_OK),
                Err(reason) => {
                    out.push(SNAPSHOT_REFUSED);
                    out.extend_from_slice(reason.as_bytes());
                }
            }
            Bytes::from(out)
        })
    }

    fn on_message(&self, from: NodeId, body: Bytes) {
        if body.len() < FRAME_HEADER_BYTES {
            tracing::warn!(%from, bytes = body.len(), "a replication frame too short to name its group");
            return;
        }
        let group = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let message = match Message::decode(&body.slice(FRAME_HEADER_BYTES..)) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%from, group, %error, "a malformed replication message was dropped");
                return;
            }
        };
        let Some(driver) = self.shard.replication_driver(group) else {
            // A new group's leader can be quicker than this node's mirror of the
            // ConfigNode state: catch the mirror up, then take the message.
            tracing::debug!(%from, group, "a replication message for a group not known here yet");
            // One refresh at a time per shard; messages meanwhile are resent by their leader.
            // A group being installed is known: its messages wait for the new replica.
            if self.shard.replication.installing.borrow().contains(&group)
                || self.shard.replication.refreshing.replace(true)
            {
                return;
            }
            let shard = self.shard.clone();
            monoio::spawn(async move {
                let refreshed = shard.control(ControlRequest::Refresh).await;
                shard.replication.refreshing.set(false);
                if refreshed.is_err() {
                    return;
                }
                if let Some(driver) = shard.replication_driver(group) {
                    let from = u64::from(node_of_peer(from));
                    shard.drive(&driver, Event::Received { from, message });
                }
            });
            return;
        };
        self.shard.drive(
            &driver,
            Event::Received {
                from: u64::from(node_of_peer(from)),
                message,
            },
        );
    }
}

impl Shard {
    /// Starts this shard's consensus endpoint on `listener` and the replication tick.
    pub(crate) fn start_replication(
        self: &Rc<Self>,
        listener: std::net::TcpListener,
        cluster_name: &str,
    ) -> Result<(), String> {
        let endpoint = InternalEndpoint::new(
            EndpointConfig {
                node_id: peer_id(self.shared.data_node_id, self.id.0),
                cluster_name: cluster_name.to_string(),
                limits: InternalLimits::default(),
            },
            Rc::new(ReplicationHandler {
                shard: self.clone(),
            }),
        )
        .map_err(|e| e.to_string())?;
        endpoint.serve(listener).map_err(|e| e.to_string())?;
        *self.replication.endpoint.borrow_mut() = Some(endpoint);
        let shard = self.clone();
        monoio::spawn(async move {
            let started = Instant::now();
            loop {
                monoio::time::sleep(TICK_INTERVAL).await;
                if shard.replication.endpoint.borrow().is_none() {
                    break;
                }
                shard.replication_tick(started.elapsed().as_millis() as u64);
            }
        });
        Ok(())
    }

    /// The replica of `group` on this shard, started on first use, when the group is
    /// replicated and this shard owns its replica here.
    pub(crate) fn replication_driver(self: &Rc<Self>, group: u32) -> Option<Rc<GroupDriver>> {
        if let Some(driver) = self.replication.groups.borrow().get(&group) {
            return Some(driver.clone());
        }
        self.replication.endpoint.borrow().as_ref()?;
        if self.replication.installing.borrow().contains(&group) {
            return None;
        }
        let route = self.route();
        let view = route.replication.get(&group)?.clone();
        if route.local_shard(group) != Some(self.id.0) {
            return None;
        }
        let region = match self.region(group) {
            Ok(region) => region,
            Err(status) => {
                tracing::error!(group, %status, "opening a replicated region failed");
                return None;
            }
        };
        let epochs_path = self.shared.config.region_dir(group).join(EPOCHS_FILE);
        let file = match load_epochs(&epochs_path) {
            Ok(file) => file,
            Err(status) => {
                tracing::error!(group, %status, "the replica's epoch table cannot be read");
                return None;
            }
        };
        let info = region.info();
        let awaiting_snapshot = file.awaiting_snapshot;
        let driver = Rc::new(GroupDriver {
            group,
            region,
            replica: RefCell::new(self.recovered_replica(info.last_index, file)),
            view: RefCell::new(None),
            apply_queue: RefCell::new(VecDeque::new()),
            applying: Cell::new(false),
            acknowledged: Cell::new(info.last_index),
            waiters: RefCell::new(BTreeMap::new()),
            epochs_path,
            awaiting_snapshot: Cell::new(awaiting_snapshot),
            receiving: RefCell::new(None),
        });
        tracing::info!(
            group,
            shard = self.id.0,
            last_index = info.last_index,
            "replica started"
        );
        self.replication
            .groups
            .borrow_mut()
            .insert(group, driver.clone());
        self.update_view(&driver, &view);
        Some(driver)
    }

    fn update_view(self: &Rc<Self>, driver: &Rc<GroupDriver>, view: &GroupReplication) {
        if driver.view.borrow().as_ref() == Some(view) {
            return;
        }
        tracing::info!(
            group = driver.group,
            epoch = view.epoch,
            leader = view.leader,
            in_sync = ?view.in_sync,
            running = ?view.running,
            in_sync_ack = view.ack_in_sync,
            "replica view"
        );
        *driver.view.borrow_mut() = Some(view.clone());
        let endpoint = self.replication.endpoint.borrow().clone();
        if let Some(endpoint) = endpoint {
            let route = self.route();
            for &(node, shard) in &view.replicas {
                if node == self.shared.data_node_id {
                    continue;
                }
                if let Some(address) = route.consensus_address(node, shard) {
                    // `add_peer` also moves a known peer to a new address.
                    endpoint.add_peer(peer_id(node, shard), address);
                }
            }
        }
        if view.leader != self.shared.data_node_id {
            // Writes waiting here will never be acknowledged by this replica.
            driver.fail_waiters();
        }
        self.drive(driver, Event::View(group_view(view)));
    }

    /// Every tick: new views from a newer route table, then time for every replica.
    fn replication_tick(self: &Rc<Self>, now_ms: u64) {
        let route = self.route();
        if route.version() != self.replication.seen_route.get() {
            self.replication.seen_route.set(route.version());
            for (&group, view) in &route.replication {
                if route.local_shard(group) != Some(self.id.0) {
                    continue;
                }
                let existing = self.replication.groups.borrow().get(&group).cloned();
                match existing {
                    Some(driver) => self.update_view(&driver, view),
                    None => {
                        self.replication_driver(group);
                    }
                }
            }
            let gone: Vec<u32> = self
                .replication
                .groups
                .borrow()
                .keys()
                .copied()
                .filter(|group| {
                    route.local_shard(*group) != Some(self.id.0)
                        || !route.replication.contains_key(group)
                })
                .collect();
            for group in gone {
                if let Some(driver) = self.replication.groups.borrow_mut().remove(&group) {
                    driver.fail_waiters();
                }
            }
        }
        let drivers: Vec<Rc<GroupDriver>> =
            self.replication.groups.borrow().values().cloned().collect();
        let second = now_ms / 1000;
        let report = second != self.replication.last_report_s.replace(second);
        for driver in drivers {
            self.drive(&driver, Event::Tick { now_ms });
            if report {
                report_progress(&driver, second);
            }
        }
    }

    /// Whether `driver` is still the group's replica here (a task of one replaced by a
    /// snapshot install, or of a dropped group, must not act any more).
    fn is_current(&self, driver: &Rc<GroupDriver>) -> bool {
        self.replication
            .groups
            .borrow()
            .get(&driver.group)
            .is_some_and(|current| Rc::ptr_eq(current, driver))
    }

    /// Steps the replica with `event` and carries out what it asks.
    fn drive(self: &Rc<Self>, driver: &Rc<GroupDriver>, event: Event) {
        if !self.is_current(driver) {
            return;
        }
        let mut commands = Vec::new();
        driver.replica.borrow_mut().step(event, &mut commands);
        for command in commands {
            self.execute(driver, command);
        }
    }

    fn execute(self: &Rc<Self>, driver: &Rc<GroupDriver>, command: Command) {
        let group = driver.group;
        match command {
            Command::Send { to, message } => self.send_replication(driver, to, &message),
            Command::Apply { entries } => {
                driver.apply_queue.borrow_mut().extend(entries);
                if !driver.applying.get() {
                    driver.applying.set(true);
                    let shard = self.clone();
                    let driver = driver.clone();
                    monoio::spawn(async move { shard.apply_queued(&driver).await });
                }
            }
            Command::PersistEpochs(epochs) => {
                // Rare (a new epoch) and small: written in place, before anything after it.
                let file = ReplicaFile {
                    epochs,
                    awaiting_snapshot: driver.awaiting_snapshot.get(),
                };
                if let Err(error) = store_epochs(&driver.epochs_path, &file) {
                    tracing::error!(group, error = %error, "persisting the replica's epoch table failed; restarting the replica from its files");
                    self.restart_replica(driver);
                }
            }
            Command::ReadLog {
                peer,
                from,
                max_bytes,
            } => {
                let shard = self.clone();
                let driver = driver.clone();
                monoio::spawn(async move {
                    let event = match driver.region.read_log(from, max_bytes).await {
                        Ok(LogRead::Entries(entries)) => Event::LogRead {
                            peer,
                            entries: entries.into_iter().map(to_entry).collect(),
                        },
                        Ok(LogRead::Gone { first_kept }) => Event::LogGone { peer, first_kept },
                        Err(error) => {
                            tracing::error!(group = driver.group, %error, "reading the WAL for a follower failed");
                            return;
                        }
                    };
                    shard.drive(&driver, event);
                });
            }
            Command::SendSnapshot { peer } => {
                let shard = self.clone();
                let driver = driver.clone();
                monoio::spawn(async move {
                    let (through, ok) = match shard.send_snapshot(&driver, peer).await {
                        Ok(through) => {
                            tracing::info!(
                                group = driver.group,
                                peer,
                                through,
                                "snapshot sent and installed"
                            );
                            (through, true)
                        }
                        Err(reason) => {
                            tracing::warn!(group = driver.group, peer, %reason, "sending a snapshot failed; it is retried");
                            (0, false)
                        }
                    };
                    shard.drive(&driver, Event::SnapshotSent { peer, through, ok });
                });
            }
            Command::NeedSnapshot { from } => {
                if !driver.awaiting_snapshot.replace(true) {
                    // Persisted: a restart must not forget that this replica's data is
                    // not the group's (it may not lead until the install).
                    let file = ReplicaFile {
                        epochs: driver.replica.borrow().epochs().clone(),
                        awaiting_snapshot: true,
                    };
                    if let Err(error) = store_epochs(&driver.epochs_path, &file) {
                        tracing::error!(group, %error, "persisting the replica's snapshot wait failed");
                    }
                    tracing::error!(
                        group,
                        leader = from,
                        "this replica diverged from (or fell behind) the leader's log and must \
                         be rebuilt from its snapshot"
                    );
                }
            }
            Command::Acknowledge { through } => driver.release_waiters(through),
            Command::RequestInSync {
                epoch,
                in_sync,
                version,
            } => {
                let request = ControlRequest::ChangeInSync {
                    group,
                    epoch,
                    version,
                    in_sync: in_sync.into_iter().map(|n| n as u32).collect(),
                };
                self.spawn_control(group, request);
            }
            Command::RequestNewEpoch { epoch, step_down } => {
                let request = ControlRequest::NewLeaderEpoch {
                    group,
                    epoch,
                    step_down,
                };
                self.spawn_control(group, request);
            }
            Command::SetRetentionFloor(floor) => driver.region.set_retention_floor(Some(floor)),
        }
    }

    fn spawn_control(self: &Rc<Self>, group: u32, request: ControlRequest) {
        let shard = self.clone();
        tracing::debug!(group, ?request, "asking the ConfigNode");
        monoio::spawn(async move {
            match shard.control(request).await {
                Ok(_) => tracing::debug!(group, "the ConfigNode took the replication request"),
                Err(status) => {
                    tracing::warn!(group, %status, "the ConfigNode refused a replication request")
                }
            }
        });
    }

    fn send_replication(self: &Rc<Self>, driver: &Rc<GroupDriver>, to: u64, message: &Message) {
        let Some(id) = driver.peer_endpoint_id(to) else {
            return;
        };
        let endpoint = self.replication.endpoint.borrow().clone();
        let Some(endpoint) = endpoint else { return };
        // Best effort: a lost message is resent by the replica's timers. The group id and
        // the message are encoded straight into the frame that is sent: a batch of entries
        // (megabytes) is copied once, into a buffer of its final size.
        let body_bytes = FRAME_HEADER_BYTES + message.encoded_len();
        let sent = endpoint.send_message_with(id, body_bytes, |out| {
            out.put_u32_le(driver.group);
            message.encode(out);
        });
        if let Err(error) = sent {
            tracing::debug!(group = driver.group, peer = to, %error, "a replication message was not sent");
        }
    }

    /// Applies the queued entries in order, then reports their durability.
    async fn apply_queued(self: &Rc<Self>, driver: &Rc<GroupDriver>) {
        loop {
            let mut last = None;
            loop {
                if !self.is_current(driver) {
                    // Replaced (a snapshot install) or dropped: its entries are moot.
                    driver.apply_queue.borrow_mut().clear();
                    driver.applying.set(false);
                    return;
                }
                let Some(entry) = driver.apply_queue.borrow_mut().pop_front() else {
                    break;
                };
                match self.apply_one(driver, &entry).await {
                    Ok(ack) => last = Some(ack),
                    Err(status) => {
                        tracing::error!(group = driver.group, index = entry.index, %status, "applying a replicated entry failed; restarting the replica from its files");
                        driver.apply_queue.borrow_mut().clear();
                        driver.applying.set(false);
                        self.restart_replica(driver);
                        return;
                    }
                }
            }
            if let Some(ack) = last {
                match ack.durable().await {
                    Ok(through) => self.drive(driver, Event::Durable { through }),
                    Err(error) => {
                        tracing::error!(group = driver.group, %error, "the replica's WAL failed");
                    }
                }
            }
            if driver.apply_queue.borrow().is_empty() {
                driver.applying.set(false);
                return;
            }
        }
    }

    async fn apply_one(
        &self,
        driver: &GroupDriver,
        entry: &Entry,
    ) -> Result<iotdb_storage::WriteAck, Status> {
        driver
            .region
            .apply_replicated_waiting(&to_log_entry(entry), MEMORY_WAIT_MAX)
            .await
            .map_err(|e| super::convert::status_of(&e))
    }

    /// A replica state machine for a region whose WAL ends at `last_index` (all of it
    /// durable once replayed), with the epoch table and snapshot wait kept beside it.
    fn recovered_replica(&self, last_index: u64, file: ReplicaFile) -> Replica {
        let mut epochs = file.epochs;
        if epochs.pairs().is_empty() && last_index > 0 {
            // A region written while its group had one replica (a migration of a
            // single-replica group makes it replicated now): its entries are labelled
            // epoch 0, before any leader epoch, so they can be shipped. No other replica
            // holds entries of epoch 0: a group has one replica while it is unreplicated,
            // and a removed replica's files are deleted.
            epochs = iotdb_consensus::iot::Epochs::from_pairs(vec![(0, 1)], epochs.leader_fence())
                .expect("one pair starting at index 1");
        }
        let recovered = Recovered {
            last_index,
            durable_index: last_index,
            epochs,
            awaiting_snapshot: file.awaiting_snapshot,
        };
        Replica::new(u64::from(self.shared.data_node_id), iot_config(), recovered)
    }

    /// Rebuilds the replica's state machine from the region's files (after a failure that
    /// left the two apart), then gives it the current view again.
    fn restart_replica(self: &Rc<Self>, driver: &Rc<GroupDriver>) {
        let file = load_epochs(&driver.epochs_path).unwrap_or_default();
        *driver.replica.borrow_mut() =
            self.recovered_replica(driver.region.info().last_index, file);
        driver.fail_waiters();
        let view = driver.view.borrow().clone();
        if let Some(view) = view {
            self.drive(driver, Event::View(group_view(&view)));
        }
    }

    /// Writes a client's payloads into the replicated group led here, and waits until the
    /// replica acknowledges them (the leader's WAL, or every in-sync replica).
    pub(crate) async fn write_replicated(
        self: &Rc<Self>,
        driver: &Rc<GroupDriver>,
        payloads: &[Payload],
    ) -> Result<(), Status> {
        let mut acks = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let engine = payload.engine();
            let tablet = engine.tablet();
            acks.push(
                self.log_replicated(driver, |region| region.write_ref_for_replication(&tablet))
                    .await?,
            );
        }
        self.acknowledged(driver, acks).await
    }

    /// `DELETE FROM` in the replicated group led here: logged and shipped like a write.
    pub(crate) async fn delete_replicated(
        self: &Rc<Self>,
        driver: &Rc<GroupDriver>,
        keys: &[iotdb_storage::SeriesKey],
        range: iotdb_storage::TimeRange,
    ) -> Result<(), Status> {
        let ack = self
            .log_replicated(driver, |region| region.delete_for_replication(keys, range))
            .await?;
        self.acknowledged(driver, vec![ack]).await
    }

    /// Logs one entry through `log` on the leader and hands it to the replica; waits (up
    /// to MEMORY_WAIT_MAX) while the shard's memtable budget is full.
    async fn log_replicated(
        self: &Rc<Self>,
        driver: &Rc<GroupDriver>,
        log: impl Fn(&Region) -> iotdb_storage::Result<(iotdb_storage::WriteAck, LogEntry)>,
    ) -> Result<iotdb_storage::WriteAck, Status> {
        let deadline = Instant::now() + MEMORY_WAIT_MAX;
        let taking_over = Instant::now() + TAKE_OVER_WAIT_MAX;
        loop {
            if let Err(status) = self.check_writable(driver) {
                // A leader that is catching up (a new group, a failover) accepts writes
                // within moments: the write waits rather than fail.
                if status.code == StatusCode::WRITE_PROCESS_REJECT && Instant::now() < taking_over {
                    monoio::time::sleep(TAKE_OVER_POLL).await;
                    continue;
                }
                return Err(status);
            }
            // No await between the check, the log and `Written`: the replica and the
            // region agree on the index.
            match log(&driver.region) {
                Err(iotdb_storage::StorageError::Overloaded { .. })
                    if Instant::now() < deadline =>
                {
                    // As `Region::write_waiting` does: woken by a flush giving bytes back.
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    monoio::select! {
                        _ = self.memory.wait_for_room() => {}
                        _ = monoio::time::sleep(remaining) => {}
                    }
                }
                Err(e) => return Err(super::convert::status_of(&e)),
                Ok((ack, entry)) => {
                    self.drive(
                        driver,
                        Event::Written {
                            entry: to_entry(entry),
                        },
                    );
                    return Ok(ack);
                }
            }
        }
    }

    /// Waits until the entries of `acks` are durable here and acknowledged by the replica.
    async fn acknowledged(
        self: &Rc<Self>,
        driver: &Rc<GroupDriver>,
        acks: Vec<iotdb_storage::WriteAck>,
    ) -> Result<(), Status> {
        let mut last = 0;
        for ack in acks {
            let through = ack
                .durable()
                .await
                .map_err(|e| super::convert::status_of(&e))?;
            self.drive(driver, Event::Durable { through });
            last = through;
        }
        self.wait_acknowledged(driver, last).await
    }

    fn check_writable(&self, driver: &GroupDriver) -> Result<(), Status> {
        if !driver.apply_queue.borrow().is_empty() {
            return Err(Status::new(
                StatusCode::WRITE_PROCESS_REJECT,
                format!(
                    "region group {} is catching up with its replicas; retry",
                    driver.group
                ),
            ));
        }
        match driver.replica.borrow().write_allowed() {
            Ok(_) => Ok(()),
            Err(Refusal::NotLeader { leader }) => Err(Status::new(
                StatusCode::ROUTE_TABLE_STALE,
                match leader {
                    Some(leader) => format!(
                        "region group {} is led by DataNode {leader}; refetch the route table",
                        driver.group
                    ),
                    None => format!("region group {} has no leader now; retry", driver.group),
                },
            )),
            Err(refusal) => Err(Status::new(
                StatusCode::WRITE_PROCESS_REJECT,
                format!(
                    "region group {} is taking over as leader ({refusal:?}); retry",
                    driver.group
                ),
            )),
        }
    }

    async fn wait_acknowledged(&self, driver: &GroupDriver, through: u64) -> Result<(), Status> {
        if through == 0 || driver.acknowledged.get() >= through {
            return Ok(());
        }
        let (sender, receiver) = oneshot::channel();
        driver
            .waiters
            .borrow_mut()
            .entry(through)
            .or_default()
            .push(sender);
        let not_acknowledged = || {
            Status::new(
                StatusCode::WRITE_PROCESS_REJECT,
                format!(
                    "the write to region group {} was logged but not acknowledged by its \
                     in-sync replicas (leadership moved or a replica is unresponsive); retry \
                     it: writes are idempotent",
                    driver.group
                ),
            )
        };
        monoio::select! {
            answer = receiver => answer.map_err(|_| not_acknowledged()),
            _ = monoio::time::sleep(ACK_WAIT_MAX) => Err(not_acknowledged()),
        }
    }

    /// Leader: takes a snapshot of the region (hard links of its sealed files), streams it
    /// to `peer`'s owning shard, and returns the index it covers once the peer installed it.
    async fn send_snapshot(&self, driver: &GroupDriver, peer: u64) -> Result<u64, String> {
        let to = driver
            .peer_endpoint_id(peer)
            .ok_or("the peer is not a replica of the group")?;
        let endpoint = self
            .replication
            .endpoint
            .borrow()
            .clone()
            .ok_or("replication is stopped")?;
        let dir = self
            .shared
            .config
            .region_dir(driver.group)
            .with_extension(format!(
                "snapshot-to-{peer}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
        let result = async {
            let info = driver.region.snapshot(&dir).map_err(|e| e.to_string())?;
            let through = info.wal_index;
            let epochs = driver.replica.borrow().epochs().slice(1, through);
            let request = |op: u8, body: &[u8]| {
                let mut out = Vec::with_capacity(5 + body.len());
                out.put_u32_le(driver.group);
                out.put_u8(op);
                out.extend_from_slice(body);
                let endpoint = endpoint.clone();
                async move {
                    let answer = endpoint
                        .request(to, Bytes::from(out), SNAPSHOT_REQUEST_TIMEOUT)
                        .await
                        .map_err(|e| e.to_string())?;
                    match answer.first() {
                        Some(&SNAPSHOT_OK) => Ok(()),
                        _ => Err(format!(
                            "the follower refused: {}",
                            String::from_utf8_lossy(answer.get(1..).unwrap_or_default())
                        )),
                    }
                }
            };
            request(SNAPSHOT_BEGIN, &[]).await?;
            let mut reader =
                iotdb_storage::SnapshotReader::open(&dir).map_err(|e| e.to_string())?;
            let mut sent = 0u64;
            while let Some(chunk) = reader
                .next_chunk(SNAPSHOT_CHUNK_BYTES)
                .await
                .map_err(|e| e.to_string())?
            {
                let mut body = Vec::with_capacity(chunk.encoded_len());
                chunk.encode(&mut body);
                sent += body.len() as u64;
                request(SNAPSHOT_CHUNK, &body).await?;
            }
            let finish = serde_json::to_vec(&EpochsFile {
                pairs: epochs.pairs().to_vec(),
                leader_fence: 0,
                awaiting_snapshot: false,
            })
            .map_err(|e| e.to_string())?;
            let mut body = through.to_le_bytes().to_vec();
            body.extend_from_slice(&finish);
            request(SNAPSHOT_FINISH, &body).await?;
            tracing::info!(
                group = driver.group,
                peer,
                through,
                bytes = sent,
                files = info.files,
                "snapshot streamed"
            );
            Ok(through)
        }
        .await;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a sent snapshot failed");
        }
        result
    }

    /// Follower: one request of a snapshot transfer from the group's leader.
    async fn receive_snapshot(self: &Rc<Self>, from: NodeId, body: Bytes) -> Result<(), String> {
        if body.len() < FRAME_HEADER_BYTES + 1 {
            return Err("a snapshot request too short".into());
        }
        let group = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let op = body[4];
        let body = body.slice(FRAME_HEADER_BYTES + 1..);
        let driver = self
            .replication_driver(group)
            .ok_or_else(|| format!("region group {group} is not replicated on this shard"))?;
        let leader = node_of_peer(from);
        if driver.view.borrow().as_ref().map(|view| view.leader) != Some(leader) {
            return Err(format!(
                "DataNode {leader} does not lead region group {group}"
            ));
        }
        let staging = self
            .shared
            .config
            .region_dir(group)
            .with_extension("snapshot-receiving");
        match op {
            SNAPSHOT_BEGIN => {
                if !driver.awaiting_snapshot.get() {
                    return Err("this replica is not waiting for a snapshot".into());
                }
                driver.receiving.borrow_mut().take();
                if staging.exists() {
                    std::fs::remove_dir_all(&staging).map_err(|e| e.to_string())?;
                }
                let writer =
                    iotdb_storage::SnapshotWriter::new(&staging).map_err(|e| e.to_string())?;
                *driver.receiving.borrow_mut() = Some((leader, writer));
                Ok(())
            }
            SNAPSHOT_CHUNK => {
                let chunk = iotdb_storage::Chunk::decode(&body).map_err(|e| e.to_string())?;
                let (sender, mut writer) = driver
                    .receiving
                    .borrow_mut()
                    .take()
                    .ok_or("no snapshot transfer is under way")?;
                if sender != leader {
                    return Err("another leader's transfer is under way".into());
                }
                let accepted = writer.accept(chunk).await;
                if accepted.is_ok() {
                    *driver.receiving.borrow_mut() = Some((sender, writer));
                }
                accepted.map_err(|e| e.to_string())
            }
            SNAPSHOT_FINISH => {
                let (sender, writer) = driver
                    .receiving
                    .borrow_mut()
                    .take()
                    .ok_or("no snapshot transfer is under way")?;
                if sender != leader || body.len() < 8 {
                    return Err("a malformed snapshot finish".into());
                }
                let through = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                let file: EpochsFile =
                    serde_json::from_slice(&body[8..]).map_err(|e| e.to_string())?;
                let mut epochs = Epochs::from_pairs(file.pairs, 0)
                    .ok_or("the snapshot's epoch table is out of order")?;
                let info = writer.finish().await.map_err(|e| e.to_string())?;
                if info.wal_index != through {
                    return Err(format!(
                        "the snapshot covers index {}, the leader said {through}",
                        info.wal_index
                    ));
                }
                self.install_received(&driver, &staging, &mut epochs)
                    .await?;
                Ok(())
            }
            other => Err(format!("unknown snapshot operation {other}")),
        }
    }

    /// Replaces the replica's region with the received snapshot, then starts a fresh
    /// replica state machine on it.
    async fn install_received(
        self: &Rc<Self>,
        driver: &Rc<GroupDriver>,
        staging: &std::path::Path,
        epochs: &mut Epochs,
    ) -> Result<(), String> {
        let group = driver.group;
        let old_fence = load_epochs(&driver.epochs_path)
            .map(|file| file.epochs.leader_fence())
            .unwrap_or(0);
        epochs.set_leader_fence(old_fence);
        self.replication.groups.borrow_mut().remove(&group);
        self.replication.installing.borrow_mut().insert(group);
        driver.fail_waiters();
        let installed = async {
            let region = self.regions.borrow_mut().remove(&group);
            if let Some(region) = region
                && let Err(e) = region.close(false).await
            {
                tracing::warn!(group, error = %e, "closing the replica before the install failed");
            }
            let dir = self.shared.config.region_dir(group);
            Region::install_snapshot(&dir, staging).map_err(|e| e.to_string())?;
            let file = ReplicaFile {
                epochs: epochs.clone(),
                awaiting_snapshot: false,
            };
            store_epochs(&driver.epochs_path, &file).map_err(|e| e.to_string())
        }
        .await;
        self.replication.installing.borrow_mut().remove(&group);
        installed?;
        if let Err(e) = std::fs::remove_dir_all(staging) {
            tracing::warn!(dir = %staging.display(), error = %e, "removing the snapshot staging failed");
        }
        self.replication_driver(group)
            .ok_or("the replica did not reopen after the install")?;
        tracing::info!(group, "installed the leader's snapshot");
        Ok(())
    }

    /// The replica of `group` on this shard when the group is replicated (`None`: it is
    /// not, write the region directly). A replicated group whose replica is not ready here
    /// (being rebuilt, its files unreadable) refuses: a write must never reach its region
    /// around the replica.
    pub(crate) fn replicated_here(
        self: &Rc<Self>,
        group: u32,
    ) -> Result<Option<Rc<GroupDriver>>, Status> {
        if !self.route().replication.contains_key(&group) {
            return Ok(None);
        }
        self.replication_driver(group).map(Some).ok_or_else(|| {
            Status::new(
                StatusCode::WRITE_PROCESS_REJECT,
                format!("the replica of region group {group} on this DataNode is not ready; retry"),
            )
        })
    }

    /// Stops replication on this shard (at stop).
    pub(crate) fn stop_replication(&self) {
        self.replication.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_name_node_and_shard() {
        let id = peer_id(7, 3);
        assert_eq!(node_of_peer(id), 7);
        assert_ne!(peer_id(7, 3), peer_id(7, 4));
        assert_ne!(peer_id(7, 3), peer_id(8, 3));
        assert_eq!(node_of_peer(peer_id(4_000_000, 1023)), 4_000_000);
    }

    #[test]
    fn epoch_tables_survive_a_round_trip_and_damage_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g").join(EPOCHS_FILE);
        assert_eq!(load_epochs(&path).unwrap(), ReplicaFile::default());
        let file = ReplicaFile {
            epochs: Epochs::from_pairs(vec![(1, 1), (3, 40)], 3).unwrap(),
            awaiting_snapshot: true,
        };
        store_epochs(&path, &file).unwrap();
        assert_eq!(load_epochs(&path).unwrap(), file);
        std::fs::write(&path, b"{\"pairs\":[[3,40],[1,1]],\"leader_fence\":0}").unwrap();
        assert!(load_epochs(&path).is_err());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_epochs(&path).is_err());
    }
}
