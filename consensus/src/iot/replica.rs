//! The replica: views, the follower's side of replication, and what every role shares.
//!
//! The leader's side (catch-up, per-peer dispatchers, acknowledgement, the in-sync set)
//! is in `leader.rs`, as more `impl Replica` blocks over the [`Leadership`] state that
//! exists only while this replica leads.

use std::collections::BTreeMap;

use super::leader::Leadership;
use super::mutant::{self, Mutant};
use super::{
    AckMode, Command, Entry, Epoch, Epochs, Event, GroupView, Index, IotConfig, Message, PeerId,
    Progress, Recovered, Refusal, Role,
};

/// One replica of a region group. Owned by the shard that owns the region; a pure state
/// machine: [`Replica::step`] takes an [`Event`] and appends [`Command`]s.
#[derive(Debug)]
pub struct Replica {
    pub(super) me: PeerId,
    pub(super) config: IotConfig,
    pub(super) now_ms: u64,
    /// The latest view accepted (by `(epoch, in_sync_version)`).
    pub(super) view: Option<GroupView>,
    /// The highest epoch known, from a view or from a peer's message.
    pub(super) epoch: Epoch,
    /// The leader of `epoch`, when known.
    pub(super) leader: Option<PeerId>,
    pub(super) role: Role,
    pub(super) last: Index,
    pub(super) durable: Index,
    pub(super) epochs: Epochs,
    /// Follower: the log agrees with the current leader's through here (this session).
    verified: Index,
    /// Follower: batches that arrived ahead of a gap, by their `prev`.
    reorder: BTreeMap<Index, (Epochs, Vec<Entry>)>,
    /// `Fetch` requests being served (a catching-up leader → the index it asked from).
    serving: BTreeMap<PeerId, Index>,
    /// Follower in `Installing`: the peer whose snapshot the driver waits for.
    installing_from: Option<PeerId>,
    /// Present while this replica leads (or catches up to lead).
    pub(super) lead: Option<Leadership>,
    /// Recovery corrected the table; it is persisted at the first step.
    epochs_dirty: bool,
    /// When `RequestNewEpoch` was last emitted (repeated while the view stays stale).
    new_epoch_requested_ms: Option<u64>,
}

impl Replica {
    /// A replica of `me` over what the driver recovered. It starts as a follower with no
    /// known leader; a `View` tells it its role.
    pub fn new(me: PeerId, config: IotConfig, recovered: Recovered) -> Replica {
        assert!(config.max_batch_entries >= 1 && config.max_pending_batches >= 1);
        let Recovered {
            last_index,
            durable_index,
            mut epochs,
            awaiting_snapshot,
        } = recovered;
        // Labels past the recovered log were persisted for entries that did not survive;
        // the corrected table is persisted before anything else (first `step`).
        let persisted = epochs.clone();
        epochs.truncate_from(last_index + 1);
        epochs.trim(config.epochs_max);
        let epochs_dirty = epochs != persisted;
        let replica = Replica {
            me,
            now_ms: 0,
            view: None,
            epoch: epochs.max_epoch(),
            leader: None,
            role: if awaiting_snapshot {
                Role::Installing
            } else {
                Role::Follower
            },
            last: last_index,
            durable: durable_index.min(last_index),
            epochs,
            verified: 0,
            reorder: BTreeMap::new(),
            serving: BTreeMap::new(),
            installing_from: None,
            lead: None,
            epochs_dirty,
            new_epoch_requested_ms: None,
            config,
        };
        replica.check_invariants();
        replica
    }

    /// Feeds one event; the commands to execute, in order, are appended to `out`.
    pub fn step(&mut self, event: Event, out: &mut Vec<Command>) {
        if std::mem::take(&mut self.epochs_dirty) {
            out.push(Command::PersistEpochs(self.epochs.clone()));
        }
        match event {
            Event::Tick { now_ms } => {
                self.now_ms = self.now_ms.max(now_ms);
                self.repeat_new_epoch_request(out);
                self.leader_tick(out);
            }
            Event::View(view) => self.on_view(view, out),
            Event::Written { entry } => self.on_written(entry, out),
            Event::Durable { through } => self.on_durable(through, out),
            Event::Received { from, message } => self.on_message(from, message, out),
            Event::LogRead { peer, entries } => self.on_log_read(peer, entries, out),
            Event::LogGone { peer, first_kept } => self.on_log_gone(peer, first_kept, out),
            Event::SnapshotSent { peer, through, ok } => {
                self.on_snapshot_sent(peer, through, ok, out)
            }
            Event::SnapshotInstalled { through, epochs } => {
                self.on_snapshot_installed(through, epochs, out)
            }
        }
        self.check_invariants();
    }

    /// Whether a client write may be logged now, and at which index.
    pub fn write_allowed(&self) -> Result<Index, Refusal> {
        match self.role {
            Role::Leader => Ok(self.last + 1),
            Role::CatchingUp => Err(Refusal::CatchingUp),
            Role::Stale => Err(Refusal::Stale),
            Role::Installing if self.leader == Some(self.me) => Err(Refusal::Stale),
            Role::Follower | Role::Installing => Err(Refusal::NotLeader {
                leader: self.leader,
            }),
        }
    }

    /// Role, epoch, indexes and (leader) per-peer progress.
    pub fn progress(&self) -> Progress {
        Progress {
            role: self.role,
            epoch: self.epoch,
            leader: self.leader,
            last_index: self.last,
            durable_index: self.durable,
            acknowledged_index: self.lead.as_ref().map_or(0, |lead| lead.acknowledged),
            peers: self.peer_progress(),
        }
    }

    /// The epoch table as this replica holds it.
    pub fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    pub(super) fn ack_mode(&self) -> AckMode {
        self.view.as_ref().map_or(AckMode::Leader, |view| view.ack)
    }

    fn on_view(&mut self, view: GroupView, out: &mut Vec<Command>) {
        if view.epoch < self.epoch {
            return;
        }
        let newer = match &self.view {
            None => true,
            Some(current) => {
                (view.epoch, view.in_sync_version) > (current.epoch, current.in_sync_version)
            }
        };
        if !newer {
            // Which replicas run changes without a version of its own (a node went down
            // and came back): take it from a view of the same epoch and in-sync version, or
            // a leader never asks a returning replica back in.
            let same = self.view.as_ref().is_some_and(|current| {
                (view.epoch, view.in_sync_version) == (current.epoch, current.in_sync_version)
                    && view.running != current.running
            });
            if same {
                if let Some(current) = self.view.as_mut() {
                    current.running = view.running;
                }
                if self.is_leading() {
                    self.leader_view_changed(out);
                }
            }
            return;
        }
        let leader = view.leader;
        let epoch = view.epoch;
        let leading_this = self.lead.as_ref().is_some_and(|lead| lead.epoch == epoch)
            || (self.role == Role::Stale && self.epoch == epoch);
        self.view = Some(view);
        if leading_this {
            if self.is_leading() {
                self.leader_view_changed(out);
            }
            return;
        }
        self.learn_epoch(epoch, Some(leader));
        if leader != self.me {
            return;
        }
        if self.role == Role::Installing {
            // A wiped replica holds nothing: leading would lose the group's data. It asks
            // to step down at most once per `resend_after_ms` (a tick repeats it): with the
            // replica holding the data down, two wiped ones named in turn would otherwise
            // hand the group back and forth as fast as the ConfigNode commits.
            if self.new_epoch_request_due() {
                self.request_new_epoch(out);
            }
            return;
        }
        if epoch <= self.epochs.leader_fence() && !mutant::active(Mutant::IgnoreLeaderFence) {
            self.role = Role::Stale;
            self.request_new_epoch(out);
            return;
        }
        self.start_catch_up(out);
    }

    fn request_new_epoch(&mut self, out: &mut Vec<Command>) {
        self.new_epoch_requested_ms = Some(self.now_ms);
        out.push(Command::RequestNewEpoch {
            epoch: self.epoch,
            step_down: self.role == Role::Installing,
        });
    }

    /// Named leader of an epoch it may not lead: ask again until a new view comes (the
    /// ConfigNode may have lost the request, or had no other replica to pick then).
    fn repeat_new_epoch_request(&mut self, out: &mut Vec<Command>) {
        let named =
            self.leader == Some(self.me) && matches!(self.role, Role::Stale | Role::Installing);
        if named && self.new_epoch_request_due() {
            self.request_new_epoch(out);
        }
    }

    fn new_epoch_request_due(&self) -> bool {
        self.new_epoch_requested_ms
            .is_none_or(|at| self.now_ms >= at + self.config.resend_after_ms)
    }

    /// Moves to `epoch` (higher than or equal to the one known) led by `leader`: a
    /// follower session starts over, and a replica leading an older epoch steps down.
    fn learn_epoch(&mut self, epoch: Epoch, leader: Option<PeerId>) {
        let changed = epoch > self.epoch || leader != self.leader;
        self.epoch = self.epoch.max(epoch);
        self.leader = leader;
        if !changed {
            return;
        }
        self.verified = 0;
        self.reorder.clear();
        self.serving.clear();
        if self.lead.is_some() || matches!(self.role, Role::Stale | Role::CatchingUp) {
            self.lead = None;
            self.role = Role::Follower;
        }
    }

    pub(super) fn is_leading(&self) -> bool {
        self.lead.is_some()
    }

    fn on_durable(&mut self, through: Index, out: &mut Vec<Command>) {
        let through = through.min(self.last);
        if through <= self.durable {
            return;
        }
        self.durable = through;
        if self.is_leading() {
            self.leader_durable(out);
        } else if self.role == Role::Follower {
            self.send_appended(out);
        }
    }

    fn on_message(&mut self, from: PeerId, message: Message, out: &mut Vec<Command>) {
        if from == self.me {
            return;
        }
        let epoch = message.epoch();
        let from_leader = matches!(
            message,
            Message::Probe { .. }
                | Message::Append { .. }
                | Message::Rebuild { .. }
                | Message::Fetch { .. }
        );
        if epoch < self.epoch {
            if from_leader {
                // A leader of an old epoch: tell it the newer one so it steps down.
                self.send_state(from, 0, out);
            }
            return;
        }
        if epoch > self.epoch {
            self.learn_epoch(epoch, from_leader.then_some(from));
        } else if from_leader && self.leader != Some(from) {
            if self.is_leading() || self.leader.is_some() {
                // Two senders claim one epoch: impossible with one leader per epoch.
                return;
            }
            self.learn_epoch(epoch, Some(from));
        }
        match message {
            Message::Probe { seq, .. } => self.on_probe(from, seq, out),
            Message::Append {
                prev,
                epochs,
                entries,
                ..
            } => self.on_append(from, prev, epochs, entries, out),
            Message::Rebuild { .. } => self.on_rebuild(from, out),
            Message::Fetch {
                from: first,
                max_bytes,
                ..
            } => {
                self.serving.insert(from, first);
                let max_bytes = usize::try_from(max_bytes)
                    .unwrap_or(usize::MAX)
                    .min(self.config.max_batch_bytes);
                out.push(Command::ReadLog {
                    peer: from,
                    from: first,
                    max_bytes,
                });
            }
            Message::State {
                seq,
                last,
                durable,
                awaiting_snapshot,
                epochs,
                ..
            } => self.on_state(from, seq, last, durable, awaiting_snapshot, epochs, out),
            Message::Appended {
                through,
                last,
                durable,
                ..
            } => self.on_appended(from, through, last, durable, out),
            Message::Fetched {
                gone,
                epochs,
                entries,
                ..
            } => self.on_fetched(from, gone, epochs, entries, out),
        }
    }

    fn on_probe(&mut self, from: PeerId, seq: u64, out: &mut Vec<Command>) {
        if self.role == Role::Installing && self.installing_from != Some(from) {
            // A new leader: take the snapshot from it instead.
            self.installing_from = Some(from);
            out.push(Command::NeedSnapshot { from });
        }
        self.send_state(from, seq, out);
    }

    pub(super) fn send_state(&self, to: PeerId, seq: u64, out: &mut Vec<Command>) {
        out.push(Command::Send {
            to,
            message: Message::State {
                epoch: self.epoch,
                seq,
                last: self.last,
                durable: self.durable,
                awaiting_snapshot: self.role == Role::Installing,
                epochs: self.epochs.slice(0, self.last),
            },
        });
    }

    fn send_appended(&self, out: &mut Vec<Command>) {
        if let Some(leader) = self.leader {
            out.push(Command::Send {
                to: leader,
                message: Message::Appended {
                    epoch: self.epoch,
                    through: self.verified,
                    last: self.last,
                    durable: self.durable,
                },
            });
        }
    }

    fn on_append(
        &mut self,
        from: PeerId,
        prev: Index,
        labels: Epochs,
        entries: Vec<Entry>,
        out: &mut Vec<Command>,
    ) {
        if self.role == Role::Installing {
            self.send_state(from, 0, out);
            return;
        }
        if self.role != Role::Follower {
            return;
        }
        if prev > self.last {
            if entries.is_empty() {
                // A heartbeat past our end: the leader thinks we hold entries we lost
                // (a crash dropped unsynced ones). Tell it where we are.
                self.send_state(from, 0, out);
            } else {
                self.buffer(prev, labels, entries);
            }
            return;
        }
        if !self.accept_batch(prev, &labels, entries, out) {
            self.send_state(from, 0, out);
            return;
        }
        // Batches that waited behind a gap.
        while let Some((&prev, _)) = self.reorder.first_key_value() {
            if prev > self.last {
                break;
            }
            let (labels, entries) = self.reorder.remove(&prev).expect("first key");
            if !self.accept_batch(prev, &labels, entries, out) {
                self.reorder.clear();
                break;
            }
        }
        self.send_appended(out);
    }

    /// Keeps a batch that arrived ahead of a gap, evicting the farthest one past the bound.
    fn buffer(&mut self, prev: Index, labels: Epochs, entries: Vec<Entry>) {
        self.reorder.insert(prev, (labels, entries));
        while self.reorder.len() > self.config.max_pending_batches {
            self.reorder.pop_last();
        }
    }

    /// Applies entries `prev + 1 ..` labelled by `labels` if this log agrees with the
    /// sender's through `prev` and on every index both hold; duplicates are skipped.
    /// False (nothing applied) when the logs do not agree: the sender must re-probe.
    pub(super) fn accept_batch(
        &mut self,
        prev: Index,
        labels: &Epochs,
        entries: Vec<Entry>,
        out: &mut Vec<Command>,
    ) -> bool {
        assert!(prev <= self.last);
        if entries.first().is_some_and(|first| first.index != prev + 1) {
            return false;
        }
        let batch_last = entries.last().map_or(prev, |entry| entry.index);
        // Equal labels at one index mean equal logs up to it (the epoch rule), so one
        // check at the last index both hold covers `prev` and every overlapping entry.
        let overlap_end = batch_last.min(self.last);
        match (
            self.epochs.epoch_at(overlap_end),
            labels.epoch_at(overlap_end),
        ) {
            (Some(mine), Some(theirs)) if mine == theirs => {}
            _ => return false,
        }
        let fresh: Vec<Entry> = entries
            .into_iter()
            .filter(|entry| entry.index > self.last)
            .collect();
        if !fresh.is_empty() {
            let mut table = self.epochs.clone();
            if !table.adopt(labels, self.last + 1, batch_last) {
                return false;
            }
            table.trim(self.config.epochs_max);
            if table != self.epochs {
                self.epochs = table;
                out.push(Command::PersistEpochs(self.epochs.clone()));
            }
            self.last = batch_last;
            if let Some(lead) = self.lead.as_mut() {
                lead.enqueue(&fresh, self.config.queue_bytes_max);
            }
            out.push(Command::Apply { entries: fresh });
        }
        self.verified = self.verified.max(batch_last);
        true
    }

    fn on_rebuild(&mut self, from: PeerId, out: &mut Vec<Command>) {
        if self.role == Role::Installing {
            if self.installing_from != Some(from) {
                self.installing_from = Some(from);
                out.push(Command::NeedSnapshot { from });
            }
            self.send_state(from, 0, out);
            return;
        }
        if self.role != Role::Follower {
            return;
        }
        let listed_in_sync = self
            .view
            .as_ref()
            .is_none_or(|view| view.ack == AckMode::InSync && view.in_sync.contains(&self.me));
        if listed_in_sync {
            // An in-sync replica may hold acknowledged writes nobody else has: it is wiped
            // only after a view drops it from the set.
            self.send_state(from, 0, out);
            return;
        }
        self.role = Role::Installing;
        self.installing_from = Some(from);
        self.last = 0;
        self.durable = 0;
        self.verified = 0;
        self.reorder.clear();
        self.epochs.truncate_from(1);
        out.push(Command::NeedSnapshot { from });
        self.send_state(from, 0, out);
    }

    fn on_snapshot_installed(&mut self, through: Index, epochs: Epochs, out: &mut Vec<Command>) {
        let fence = self.epochs.leader_fence();
        self.epochs = epochs;
        self.epochs.set_leader_fence(fence);
        self.epochs.truncate_from(through + 1);
        self.epochs.trim(self.config.epochs_max);
        out.push(Command::PersistEpochs(self.epochs.clone()));
        self.last = through;
        self.durable = through;
        self.verified = 0;
        self.reorder.clear();
        self.installing_from = None;
        if self.role == Role::Installing {
            self.role = Role::Follower;
        }
    }

    /// A replica serving a catching-up leader's `Fetch` got its entries.
    pub(super) fn serve_fetch(
        &mut self,
        peer: PeerId,
        entries: Option<Vec<Entry>>,
        out: &mut Vec<Command>,
    ) {
        let Some(from) = self.serving.remove(&peer) else {
            return;
        };
        let message = match entries {
            Some(mut entries) => {
                if entries.first().is_some_and(|first| first.index != from) {
                    return;
                }
                entries.retain(|entry| entry.index <= self.last);
                entries.truncate(self.config.max_batch_entries);
                let through = entries.last().map_or(from, |entry| entry.index);
                Message::Fetched {
                    epoch: self.epoch,
                    gone: false,
                    epochs: self.epochs.slice(from.saturating_sub(1), through),
                    entries,
                }
            }
            None => Message::Fetched {
                epoch: self.epoch,
                gone: true,
                epochs: Epochs::new(),
                entries: Vec::new(),
            },
        };
        out.push(Command::Send { to: peer, message });
    }

    pub(super) fn is_serving(&self, peer: PeerId) -> bool {
        self.serving.contains_key(&peer)
    }

    fn check_invariants(&self) {
        assert!(self.durable <= self.last, "durable past the log's end");
        assert!(
            self.epochs
                .pairs()
                .last()
                .is_none_or(|&(_, first)| first <= self.last + 1),
            "labels past the log's end: {:?} last {}",
            self.epochs,
            self.last
        );
        assert!(self.epochs.pairs().len() <= self.config.epochs_max.max(1));
        assert!(self.reorder.len() <= self.config.max_pending_batches);
        assert_eq!(
            self.lead.is_some(),
            matches!(self.role, Role::Leader | Role::CatchingUp)
        );
        if let Some(lead) = &self.lead {
            lead.check_invariants(self.last, &self.config);
        }
    }
}
