//! The leader's side: catching up before leading, one dispatcher per peer, snapshots,
//! acknowledgement in both ack modes, the in-sync set and the WAL retention floor.
//!
//! A peer's dispatcher moves through [`PeerPhase`]s:
//!
//! ```text
//!   Probing ──State(prefix of ours)──► Shipping ──timeout / unsolicited State──► Probing
//!      │                                  │ LogGone
//!      └──State(divergent)──► Rebuilding ◄┘ ──State(awaiting snapshot)──► Snapshotting
//!                                                  SnapshotSent / timeout ──► Probing
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::mutant::{self, Mutant};
use super::replica::Replica;
use super::{
    AckMode, Command, Entry, Epoch, Epochs, Index, IotConfig, Message, PeerId, PeerPhase,
    PeerProgress, Role,
};

/// State that exists only while this replica leads its epoch (or catches up to).
#[derive(Debug)]
pub(super) struct Leadership {
    pub(super) epoch: Epoch,
    catch_up: Option<CatchUp>,
    /// Recent entries, contiguous and ending at the log's last index when not empty.
    queue: VecDeque<Entry>,
    queue_bytes: usize,
    peers: BTreeMap<PeerId, Peer>,
    pub(super) acknowledged: Index,
    /// The first index of this leader's epoch. Everything before it may have been
    /// acknowledged by an earlier leader, so a replica joins the in-sync set only once it
    /// holds all of it durably (Kafka's KAFKA-7128: a lagging high watermark after a
    /// leader change would otherwise admit a replica missing acknowledged writes).
    epoch_start: Index,
    retention_floor: Option<Index>,
    /// The in-sync set last requested and when (`sent_ms`), until a newer view arrives.
    requested_in_sync: Option<(Vec<PeerId>, u64)>,
    /// Replicas requested into the in-sync set since the last view change: they count for
    /// acknowledgement at once, since the ConfigNode may already have added them.
    pending_adds: BTreeSet<PeerId>,
    next_seq: u64,
}

#[derive(Debug)]
struct CatchUp {
    started_ms: u64,
    seq: u64,
    probed_ms: u64,
    /// Replicas asked, and their answers `(last, labels)` once they came.
    answers: BTreeMap<PeerId, Option<(Index, Epochs)>>,
    /// The replica entries are fetched from, up to which index, and when last asked.
    source: Option<(PeerId, Index, u64)>,
}

#[derive(Debug)]
struct Peer {
    phase: PeerPhase,
    phase_since_ms: u64,
    seq: u64,
    matched: Index,
    /// Durable on the peer and within `matched`: what counts for acknowledgement.
    durable: Index,
    next: Index,
    /// Batches sent and not yet acknowledged: `(first, last, sent_ms)`.
    in_flight: VecDeque<(Index, Index, u64)>,
    /// An outstanding `ReadLog`: `(from, asked_ms)`.
    reading: Option<(Index, u64)>,
    last_sent_ms: u64,
    last_progress_ms: u64,
}

impl Leadership {
    fn new(epoch: Epoch) -> Leadership {
        Leadership {
            epoch,
            catch_up: None,
            queue: VecDeque::new(),
            queue_bytes: 0,
            peers: BTreeMap::new(),
            acknowledged: 0,
            epoch_start: 0,
            retention_floor: None,
            requested_in_sync: None,
            pending_adds: BTreeSet::new(),
            next_seq: 1,
        }
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Appends entries to the shipping queue, dropping the oldest past `bytes_max` (those
    /// are read back from the WAL when a peer needs them).
    pub(super) fn enqueue(&mut self, entries: &[Entry], bytes_max: usize) {
        for entry in entries {
            if let Some(back) = self.queue.back() {
                assert_eq!(back.index + 1, entry.index, "queue stays contiguous");
            }
            self.queue_bytes += entry.payload.len();
            self.queue.push_back(entry.clone());
        }
        while self.queue_bytes > bytes_max {
            let Some(front) = self.queue.pop_front() else {
                break;
            };
            self.queue_bytes -= front.payload.len();
        }
    }

    /// Drops queued entries below `index`.
    fn drop_queued_below(&mut self, index: Index) {
        while self.queue.front().is_some_and(|entry| entry.index < index) {
            let front = self.queue.pop_front().expect("checked");
            self.queue_bytes -= front.payload.len();
        }
    }

    fn queue_front(&self) -> Option<Index> {
        self.queue.front().map(|entry| entry.index)
    }

    pub(super) fn check_invariants(&self, last: Index, config: &IotConfig) {
        assert!(self.queue_bytes <= config.queue_bytes_max);
        if let Some(back) = self.queue.back() {
            assert_eq!(back.index, last, "the queue ends at the log's end");
            assert_eq!(
                back.index - self.queue.front().expect("non-empty").index + 1,
                self.queue.len() as u64
            );
        }
        assert!(self.acknowledged <= last);
        for (peer, state) in &self.peers {
            assert!(
                state.durable <= state.matched && state.matched <= last,
                "peer {peer}: durable {} matched {} last {last}",
                state.durable,
                state.matched
            );
            assert!(state.in_flight.len() <= config.max_pending_batches);
        }
    }
}

impl Replica {
    /// Named leader of a new epoch: fence it, then ask the running replicas for their logs.
    pub(super) fn start_catch_up(&mut self, out: &mut Vec<Command>) {
        let epoch = self.epoch;
        self.epochs.set_leader_fence(epoch);
        out.push(Command::PersistEpochs(self.epochs.clone()));
        let mut lead = Leadership::new(epoch);
        let seq = lead.seq();
        let running: Vec<PeerId> = self
            .view
            .as_ref()
            .map(|view| view.running.clone())
            .unwrap_or_default();
        let answers: BTreeMap<PeerId, Option<(Index, Epochs)>> = running
            .into_iter()
            .filter(|&peer| peer != self.me)
            .map(|peer| (peer, None))
            .collect();
        for &peer in answers.keys() {
            out.push(Command::Send {
                to: peer,
                message: Message::Probe { epoch, seq },
            });
        }
        let nobody = answers.is_empty();
        lead.catch_up = Some(CatchUp {
            started_ms: self.now_ms,
            seq,
            probed_ms: self.now_ms,
            answers,
            source: None,
        });
        self.lead = Some(lead);
        self.role = Role::CatchingUp;
        if nobody {
            self.finish_catch_up(out);
        }
    }

    /// Picks the longest log of which ours is a prefix, once every replica answered (or
    /// half the catch-up time passed), and fetches from it; finishes if there is none.
    fn choose_source(&mut self, out: &mut Vec<Command>) {
        let Some(catch_up) = self.lead.as_ref().and_then(|lead| lead.catch_up.as_ref()) else {
            return;
        };
        if catch_up.source.is_some() {
            return;
        }
        let all_answered = catch_up.answers.values().all(Option::is_some);
        let half_time = self.now_ms >= catch_up.started_ms + self.config.catch_up_timeout_ms / 2;
        if !all_answered && !half_time {
            return;
        }
        let best = catch_up
            .answers
            .iter()
            .filter_map(|(&peer, answer)| {
                answer.as_ref().map(|(last, epochs)| (peer, *last, epochs))
            })
            .filter(|&(_, last, epochs)| {
                last > self.last && epochs.common_prefix(last, &self.epochs, self.last) == self.last
            })
            .max_by_key(|&(peer, last, _)| (last, peer))
            .map(|(peer, last, _)| (peer, last));
        match best {
            Some((peer, target)) => {
                let now_ms = self.now_ms;
                if let Some(catch_up) = self.lead.as_mut().and_then(|lead| lead.catch_up.as_mut()) {
                    catch_up.source = Some((peer, target, now_ms));
                }
                self.send_fetch(peer, out);
            }
            None => self.finish_catch_up(out),
        }
    }

    fn send_fetch(&self, peer: PeerId, out: &mut Vec<Command>) {
        out.push(Command::Send {
            to: peer,
            message: Message::Fetch {
                epoch: self.epoch,
                from: self.last + 1,
                max_bytes: self.config.max_batch_bytes as u64,
            },
        });
    }

    pub(super) fn on_fetched(
        &mut self,
        from: PeerId,
        gone: bool,
        labels: Epochs,
        entries: Vec<Entry>,
        out: &mut Vec<Command>,
    ) {
        let Some(catch_up) = self.lead.as_ref().and_then(|lead| lead.catch_up.as_ref()) else {
            return;
        };
        let Some((source, target, _)) = catch_up.source else {
            return;
        };
        if source != from
            || entries
                .first()
                .is_some_and(|first| first.index != self.last + 1)
        {
            return;
        }
        if gone || entries.is_empty() || !self.accept_batch(self.last, &labels, entries, out) {
            self.finish_catch_up(out);
            return;
        }
        if self.last >= target {
            self.finish_catch_up(out);
        } else {
            let now_ms = self.now_ms;
            if let Some(catch_up) = self.lead.as_mut().and_then(|lead| lead.catch_up.as_mut()) {
                catch_up.source = Some((source, target, now_ms));
            }
            self.send_fetch(source, out);
        }
    }

    /// Starts this replica's epoch at `last + 1` and begins dispatching to every peer.
    fn finish_catch_up(&mut self, out: &mut Vec<Command>) {
        let epoch = self.epoch;
        self.epochs.begin(epoch, self.last + 1);
        self.epochs.trim(self.config.epochs_max);
        out.push(Command::PersistEpochs(self.epochs.clone()));
        self.role = Role::Leader;
        let peers: Vec<PeerId> = self
            .view
            .as_ref()
            .map(|view| view.replicas.clone())
            .unwrap_or_default();
        let now_ms = self.now_ms;
        let lead = self.lead.as_mut().expect("catching up");
        lead.catch_up = None;
        lead.epoch_start = self.last + 1;
        for peer in peers.into_iter().filter(|&peer| peer != self.me) {
            let seq = lead.seq();
            lead.peers.insert(peer, Peer::probing(now_ms, seq));
            out.push(Command::Send {
                to: peer,
                message: Message::Probe { epoch, seq },
            });
        }
        self.update_acknowledged(out);
        self.update_retention_floor(out);
    }

    pub(super) fn on_written(&mut self, entry: Entry, out: &mut Vec<Command>) {
        assert_eq!(
            self.role,
            Role::Leader,
            "a write logged on a replica that does not lead"
        );
        assert_eq!(
            entry.index,
            self.last + 1,
            "a write logged at the wrong index"
        );
        self.last = entry.index;
        let bytes_max = self.config.queue_bytes_max;
        let lead = self.lead.as_mut().expect("leading");
        lead.enqueue(std::slice::from_ref(&entry), bytes_max);
        let peers: Vec<PeerId> = lead.peers.keys().copied().collect();
        for peer in peers {
            self.pump(peer, out);
        }
    }

    pub(super) fn leader_durable(&mut self, out: &mut Vec<Command>) {
        self.update_acknowledged(out);
        self.update_retention_floor(out);
    }

    /// The view changed within this epoch (in-sync set, running replicas).
    pub(super) fn leader_view_changed(&mut self, out: &mut Vec<Command>) {
        let Some(replicas) = self.view.as_ref().map(|view| view.replicas.clone()) else {
            return;
        };
        let now_ms = self.now_ms;
        let leading = self.role == Role::Leader;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        // A newer view settles every request based on an older one: the ConfigNode
        // applies a request only at the version it names, and views carry the whole set.
        lead.requested_in_sync = None;
        lead.pending_adds.clear();
        if leading {
            // A replica removed from the group (a migration's last step) is shipped to no
            // more; one added is probed from the start.
            lead.peers.retain(|peer, _| replicas.contains(peer));
            for peer in replicas.into_iter().filter(|&peer| peer != self.me) {
                if !lead.peers.contains_key(&peer) {
                    let seq = lead.seq();
                    lead.peers.insert(peer, Peer::probing(now_ms, seq));
                }
            }
        }
        self.maintain_in_sync(out);
        self.update_acknowledged(out);
    }

    /// Sends the next batches to `peer` while the window allows.
    fn pump(&mut self, peer: PeerId, out: &mut Vec<Command>) {
        let config = self.config.clone();
        let (last, now_ms, epoch) = (self.last, self.now_ms, self.epoch);
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let queue_front = lead.queue_front();
        let Some(state) = lead.peers.get_mut(&peer) else {
            return;
        };
        while state.phase == PeerPhase::Shipping
            && state.in_flight.len() < config.max_pending_batches
            && state.next <= last
            && state.reading.is_none()
        {
            if queue_front.is_none_or(|front| state.next < front) {
                state.reading = Some((state.next, now_ms));
                out.push(Command::ReadLog {
                    peer,
                    from: state.next,
                    max_bytes: config.max_batch_bytes,
                });
                break;
            }
            let start = (state.next - queue_front.expect("checked")) as usize;
            let mut bytes = 0;
            let mut batch = Vec::new();
            for entry in lead.queue.range(start..) {
                if batch.len() >= config.max_batch_entries
                    || (!batch.is_empty() && bytes + entry.payload.len() > config.max_batch_bytes)
                {
                    break;
                }
                bytes += entry.payload.len();
                batch.push(entry.clone());
            }
            if !send_batch(&self.epochs, epoch, peer, state, batch, now_ms, out) {
                state.enter(PeerPhase::Rebuilding, now_ms);
                self.send_rebuild(peer, out);
                break;
            }
        }
    }

    pub(super) fn on_log_read(
        &mut self,
        peer: PeerId,
        mut entries: Vec<Entry>,
        out: &mut Vec<Command>,
    ) {
        let reading = self
            .lead
            .as_ref()
            .and_then(|lead| lead.peers.get(&peer))
            .and_then(|state| state.reading.map(|(from, _)| (from, state.phase)));
        let Some((from, phase)) = reading else {
            if self.is_serving(peer) {
                self.serve_fetch(peer, Some(entries), out);
            }
            return;
        };
        let config = self.config.clone();
        let (last, now_ms, epoch) = (self.last, self.now_ms, self.epoch);
        let lead = self.lead.as_mut().expect("reading implies leading");
        let state = lead.peers.get_mut(&peer).expect("reading");
        state.reading = None;
        if phase != PeerPhase::Shipping
            || entries
                .first()
                .is_none_or(|first| first.index != from || from != state.next)
        {
            return;
        }
        entries.retain(|entry| entry.index <= last);
        entries.truncate(config.max_batch_entries);
        if !send_batch(&self.epochs, epoch, peer, state, entries, now_ms, out) {
            state.enter(PeerPhase::Rebuilding, now_ms);
            self.send_rebuild(peer, out);
            return;
        }
        self.pump(peer, out);
    }

    pub(super) fn on_log_gone(&mut self, peer: PeerId, _first_kept: Index, out: &mut Vec<Command>) {
        let now_ms = self.now_ms;
        let reading = self
            .lead
            .as_mut()
            .and_then(|lead| lead.peers.get_mut(&peer))
            .filter(|state| state.reading.is_some());
        match reading {
            Some(state) => {
                // The peer is behind what the WAL still holds: only a snapshot helps.
                state.reading = None;
                state.enter(PeerPhase::Rebuilding, now_ms);
                self.send_rebuild(peer, out);
                self.maintain_in_sync(out);
            }
            None => {
                if self.is_serving(peer) {
                    self.serve_fetch(peer, None, out);
                }
            }
        }
    }

    /// Whether `peer` counts for acknowledgement (InSync: in the set or being added).
    fn in_ack_set(&self, peer: PeerId) -> bool {
        let Some(view) = &self.view else {
            return false;
        };
        view.ack == AckMode::InSync
            && (view.in_sync.contains(&peer)
                || self
                    .lead
                    .as_ref()
                    .is_some_and(|lead| lead.pending_adds.contains(&peer)))
    }

    /// Asks `peer` to wipe itself for a snapshot, unless it still counts for
    /// acknowledgement (then the in-sync maintenance drops it first).
    fn send_rebuild(&self, peer: PeerId, out: &mut Vec<Command>) {
        if self.in_ack_set(peer) {
            return;
        }
        out.push(Command::Send {
            to: peer,
            message: Message::Rebuild { epoch: self.epoch },
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_state(
        &mut self,
        from: PeerId,
        seq: u64,
        last: Index,
        durable: Index,
        awaiting_snapshot: bool,
        epochs: Epochs,
        out: &mut Vec<Command>,
    ) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if let Some(catch_up) = lead.catch_up.as_mut() {
            if seq == catch_up.seq && !awaiting_snapshot {
                if let Some(answer) = catch_up.answers.get_mut(&from) {
                    *answer = Some((last, epochs));
                }
            } else if seq == catch_up.seq {
                catch_up.answers.remove(&from);
            }
            self.choose_source(out);
            return;
        }
        let now_ms = self.now_ms;
        let my_last = self.last;
        let common = self.epochs.common_prefix(my_last, &epochs, last);
        let Some(state) = lead.peers.get_mut(&from) else {
            return;
        };
        // The peer may have lost its log since it last reported (wiped, crashed).
        state.durable = state.durable.min(durable);
        state.matched = state.matched.min(last);
        if awaiting_snapshot {
            if state.phase != PeerPhase::Snapshotting {
                state.enter(PeerPhase::Snapshotting, now_ms);
                out.push(Command::SendSnapshot { peer: from });
            }
            return;
        }
        match state.phase {
            PeerPhase::Probing if seq == state.seq => {
                if last > common && !mutant::active(Mutant::TrustEveryFollower) {
                    state.enter(PeerPhase::Rebuilding, now_ms);
                    self.send_rebuild(from, out);
                    self.maintain_in_sync(out);
                    return;
                }
                state.enter(PeerPhase::Shipping, now_ms);
                state.matched = last;
                state.durable = durable.min(last);
                state.next = last + 1;
                state.last_progress_ms = now_ms;
                self.pump(from, out);
            }
            PeerPhase::Shipping if seq == 0 => {
                let seq = lead.seq();
                let state = lead.peers.get_mut(&from).expect("present");
                state.probe(seq, now_ms);
                out.push(Command::Send {
                    to: from,
                    message: Message::Probe {
                        epoch: self.epoch,
                        seq,
                    },
                });
            }
            _ => {}
        }
        self.update_acknowledged(out);
    }

    pub(super) fn on_appended(
        &mut self,
        from: PeerId,
        through: Index,
        last: Index,
        durable: Index,
        out: &mut Vec<Command>,
    ) {
        let (my_last, now_ms) = (self.last, self.now_ms);
        let Some(lead) = self.lead.as_mut().filter(|lead| lead.catch_up.is_none()) else {
            return;
        };
        let Some(state) = lead.peers.get_mut(&from) else {
            return;
        };
        if state.phase != PeerPhase::Shipping {
            return;
        }
        if last < state.matched {
            // The peer lost entries it had confirmed (a crash before they were durable):
            // find out where it stands.
            let seq = lead.seq();
            let state = lead.peers.get_mut(&from).expect("present");
            state.probe(seq, now_ms);
            let epoch = self.epoch;
            out.push(Command::Send {
                to: from,
                message: Message::Probe { epoch, seq },
            });
            return;
        }
        state.matched = state.matched.max(through.min(my_last));
        let credit = durable.min(state.matched);
        if credit > state.durable {
            state.durable = credit;
            state.last_progress_ms = now_ms;
        }
        while state
            .in_flight
            .front()
            .is_some_and(|&(_, batch_last, _)| batch_last <= through)
        {
            state.in_flight.pop_front();
        }
        self.pump(from, out);
        self.update_acknowledged(out);
        self.update_retention_floor(out);
    }

    pub(super) fn on_snapshot_sent(
        &mut self,
        peer: PeerId,
        _through: Index,
        _ok: bool,
        out: &mut Vec<Command>,
    ) {
        let now_ms = self.now_ms;
        let epoch = self.epoch;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let seq = lead.seq();
        let Some(state) = lead.peers.get_mut(&peer) else {
            return;
        };
        if state.phase == PeerPhase::Snapshotting {
            // Installed or not, the peer's State says where it stands now.
            state.probe(seq, now_ms);
            out.push(Command::Send {
                to: peer,
                message: Message::Probe { epoch, seq },
            });
        }
    }

    /// Timers of the leader: catch-up deadline, resends, heartbeats, the in-sync set.
    pub(super) fn leader_tick(&mut self, out: &mut Vec<Command>) {
        let now_ms = self.now_ms;
        let config = self.config.clone();
        let epoch = self.epoch;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if let Some(catch_up) = lead.catch_up.as_mut() {
            if now_ms >= catch_up.started_ms + config.catch_up_timeout_ms {
                self.finish_catch_up(out);
                return;
            }
            if let Some((source, _, asked_ms)) = catch_up.source {
                if now_ms >= asked_ms + config.resend_after_ms {
                    catch_up.source = Some((source, catch_up.source.expect("set").1, now_ms));
                    self.send_fetch(source, out);
                }
                return;
            }
            if now_ms >= catch_up.probed_ms + config.resend_after_ms {
                catch_up.probed_ms = now_ms;
                for (&peer, answer) in &catch_up.answers {
                    if answer.is_none() {
                        out.push(Command::Send {
                            to: peer,
                            message: Message::Probe {
                                epoch,
                                seq: catch_up.seq,
                            },
                        });
                    }
                }
            }
            self.choose_source(out);
            return;
        }
        let peers: Vec<PeerId> = lead.peers.keys().copied().collect();
        for peer in peers {
            let lead = self.lead.as_mut().expect("leading");
            let seq = lead.seq();
            let state = lead.peers.get_mut(&peer).expect("listed");
            let waited = now_ms.saturating_sub(state.phase_since_ms);
            match state.phase {
                PeerPhase::Probing | PeerPhase::Rebuilding if waited >= config.resend_after_ms => {
                    state.phase_since_ms = now_ms;
                    if state.phase == PeerPhase::Probing {
                        state.seq = seq;
                        out.push(Command::Send {
                            to: peer,
                            message: Message::Probe { epoch, seq },
                        });
                    } else {
                        self.send_rebuild(peer, out);
                    }
                }
                PeerPhase::Snapshotting if waited >= config.snapshot_timeout_ms => {
                    state.probe(seq, now_ms);
                    out.push(Command::Send {
                        to: peer,
                        message: Message::Probe { epoch, seq },
                    });
                }
                PeerPhase::Shipping => {
                    let stuck = state
                        .in_flight
                        .front()
                        .is_some_and(|&(_, _, sent_ms)| now_ms >= sent_ms + config.resend_after_ms);
                    if stuck {
                        // Resend from the position the follower reports.
                        state.probe(seq, now_ms);
                        out.push(Command::Send {
                            to: peer,
                            message: Message::Probe { epoch, seq },
                        });
                        continue;
                    }
                    if state
                        .reading
                        .is_some_and(|(_, asked_ms)| now_ms >= asked_ms + config.resend_after_ms)
                    {
                        state.reading = None;
                    }
                    if state.in_flight.is_empty()
                        && now_ms >= state.last_sent_ms + config.resend_after_ms
                    {
                        // A heartbeat: an empty batch, answered with the follower's
                        // durable index (its earlier answer may have been lost).
                        send_batch(&self.epochs, epoch, peer, state, Vec::new(), now_ms, out);
                    }
                    self.pump(peer, out);
                }
                _ => {}
            }
        }
        self.maintain_in_sync(out);
        self.update_acknowledged(out);
        self.update_retention_floor(out);
    }

    /// InSync: asks the ConfigNode to drop members that are stuck behind (or must be
    /// rebuilt) and to add replicas that caught up with everything acknowledged.
    fn maintain_in_sync(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Leader {
            return;
        }
        let Some(view) = self.view.clone() else {
            return;
        };
        if view.ack != AckMode::InSync {
            return;
        }
        let (me, last, now_ms) = (self.me, self.last, self.now_ms);
        let config = self.config.clone();
        let lead = self.lead.as_mut().expect("leading");
        let mut desired: BTreeSet<PeerId> = view.in_sync.iter().copied().collect();
        desired.insert(me);
        for (&peer, state) in &lead.peers {
            let listed = view.in_sync.contains(&peer);
            let stuck = state.durable < last
                && now_ms >= state.last_progress_ms + config.unresponsive_after_ms;
            let must_rebuild =
                matches!(state.phase, PeerPhase::Rebuilding | PeerPhase::Snapshotting);
            if listed && (stuck || must_rebuild) {
                desired.remove(&peer);
            }
            let caught_up = state.phase == PeerPhase::Shipping
                && state.durable >= lead.acknowledged.max(lead.epoch_start - 1)
                && !stuck;
            if !listed && caught_up && view.replicas.contains(&peer) && view.running.contains(&peer)
            {
                desired.insert(peer);
            }
        }
        let desired: Vec<PeerId> = desired.into_iter().collect();
        let mut current: Vec<PeerId> = view.in_sync.clone();
        current.sort_unstable();
        current.dedup();
        if desired == current {
            return;
        }
        let repeat = lead
            .requested_in_sync
            .as_ref()
            .is_some_and(|(requested, sent_ms)| {
                *requested == desired && now_ms < sent_ms + config.resend_after_ms
            });
        if repeat {
            return;
        }
        for &peer in &desired {
            if !view.in_sync.contains(&peer) {
                lead.pending_adds.insert(peer);
            }
        }
        lead.requested_in_sync = Some((desired.clone(), now_ms));
        out.push(Command::RequestInSync {
            epoch: view.epoch,
            in_sync: desired,
            version: view.in_sync_version,
        });
    }

    fn update_acknowledged(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Leader {
            return;
        }
        let mut through = self.durable;
        if self.ack_mode() == AckMode::InSync && !mutant::active(Mutant::AckWithoutInSync) {
            let view = self.view.as_ref().expect("InSync comes from a view");
            let lead = self.lead.as_ref().expect("leading");
            for &peer in view.in_sync.iter().chain(lead.pending_adds.iter()) {
                if peer != self.me {
                    let credit = lead.peers.get(&peer).map_or(0, |state| state.durable);
                    through = through.min(credit);
                }
            }
        }
        let lead = self.lead.as_mut().expect("leading");
        if through > lead.acknowledged {
            lead.acknowledged = through;
            out.push(Command::Acknowledge { through });
        }
    }

    /// The WAL must keep what some peer still needs: the least durable index + 1 over
    /// peers that are shipping or probing (a peer being rebuilt needs a snapshot instead).
    fn update_retention_floor(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.last;
        let lead = self.lead.as_mut().expect("leading");
        let floor = lead
            .peers
            .values()
            .filter(|state| matches!(state.phase, PeerPhase::Shipping | PeerPhase::Probing))
            .map(|state| state.durable + 1)
            .min()
            .unwrap_or(last + 1);
        if lead.retention_floor != Some(floor) {
            lead.retention_floor = Some(floor);
            out.push(Command::SetRetentionFloor(floor));
        }
        // What every follower holds durably leaves the shipping queue too: a resend starts
        // from the follower's durable index, and anything older a follower could still
        // need (after a rebuild) is read back from the WAL. Otherwise the queue keeps
        // every payload up to `queue_bytes_max`, and the leader's memory grows with it.
        let durable_everywhere = lead
            .peers
            .values()
            .map(|state| state.durable + 1)
            .min()
            .unwrap_or(last + 1);
        lead.drop_queued_below(durable_everywhere);
    }

    pub(super) fn peer_progress(&self) -> Vec<PeerProgress> {
        let Some(lead) = &self.lead else {
            return Vec::new();
        };
        lead.peers
            .iter()
            .map(|(&peer, state)| {
                let lag_bytes = lead
                    .queue
                    .iter()
                    .filter(|entry| entry.index > state.durable)
                    .map(|entry| entry.payload.len() as u64)
                    .sum();
                PeerProgress {
                    peer,
                    phase: state.phase,
                    durable_index: state.durable,
                    matched_index: state.matched,
                    in_flight_batches: state.in_flight.len(),
                    lag_entries: self.last - state.durable,
                    lag_bytes,
                }
            })
            .collect()
    }
}

impl Peer {
    fn probing(now_ms: u64, seq: u64) -> Peer {
        Peer {
            phase: PeerPhase::Probing,
            phase_since_ms: now_ms,
            seq,
            matched: 0,
            durable: 0,
            next: 1,
            in_flight: VecDeque::new(),
            reading: None,
            last_sent_ms: now_ms,
            last_progress_ms: now_ms,
        }
    }

    fn enter(&mut self, phase: PeerPhase, now_ms: u64) {
        self.phase = phase;
        self.phase_since_ms = now_ms;
        self.in_flight.clear();
        self.reading = None;
    }

    fn probe(&mut self, seq: u64, now_ms: u64) {
        self.enter(PeerPhase::Probing, now_ms);
        self.seq = seq;
    }
}

/// Sends one batch (possibly empty: a heartbeat) from `state.next`. False when this
/// leader's table no longer labels the index before it (trimmed): the peer needs a
/// snapshot.
fn send_batch(
    epochs: &Epochs,
    epoch: Epoch,
    peer: PeerId,
    state: &mut Peer,
    entries: Vec<Entry>,
    now_ms: u64,
    out: &mut Vec<Command>,
) -> bool {
    let prev = state.next - 1;
    let batch_last = entries.last().map_or(prev, |entry| entry.index);
    if epochs.epoch_at(prev).is_none() {
        return false;
    }
    if !entries.is_empty() {
        state.in_flight.push_back((prev + 1, batch_last, now_ms));
        state.next = batch_last + 1;
    }
    state.last_sent_ms = now_ms;
    out.push(Command::Send {
        to: peer,
        message: Message::Append {
            epoch,
            prev,
            epochs: epochs.slice(prev, batch_last),
            entries,
        },
    });
    true
}
