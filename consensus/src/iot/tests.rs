//! Scenario tests of [`Replica`]s wired together by a tiny synchronous driver: no faults,
//! each test drives one path of the protocol and checks the commands it produces. The
//! faulty, randomized version of all of this is `sim_tests.rs`.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{
    AckMode, Command, Entry, Epochs, Event, GroupView, Index, IotConfig, PeerId, Recovered,
    Refusal, Replica, Role,
};

/// Replicas, their logs, and what they asked the driver for.
struct Group {
    replicas: BTreeMap<PeerId, Replica>,
    logs: BTreeMap<PeerId, Vec<Entry>>,
    /// Messages to these replicas are dropped.
    cut_off: Vec<PeerId>,
    queue: VecDeque<(PeerId, Event)>,
    /// Every command a replica produced, in order.
    commands: Vec<(PeerId, Command)>,
    now_ms: u64,
}

fn entry(index: Index, text: &str) -> Entry {
    Entry {
        index,
        kind: 0,
        payload: Bytes::from(text.to_string()),
    }
}

fn config() -> IotConfig {
    IotConfig {
        max_batch_entries: 2,
        resend_after_ms: 50,
        catch_up_timeout_ms: 200,
        unresponsive_after_ms: 100,
        ..IotConfig::default()
    }
}

/// A replica of a test group: its id, its log's payloads, and the log's epoch pairs.
type Member<'a> = (PeerId, &'a [&'a str], &'a [(u64, Index)]);

impl Group {
    /// Replicas with the given logs, labelled by `pairs`.
    fn new(members: &[Member<'_>]) -> Group {
        let mut group = Group {
            replicas: BTreeMap::new(),
            logs: BTreeMap::new(),
            cut_off: Vec::new(),
            queue: VecDeque::new(),
            commands: Vec::new(),
            now_ms: 0,
        };
        for &(peer, texts, pairs) in members {
            let log: Vec<Entry> = texts
                .iter()
                .enumerate()
                .map(|(position, text)| entry(position as Index + 1, text))
                .collect();
            let recovered = Recovered {
                last_index: log.len() as Index,
                durable_index: log.len() as Index,
                epochs: Epochs::from_pairs(pairs.to_vec(), 0).expect("ascending"),
                awaiting_snapshot: false,
            };
            group
                .replicas
                .insert(peer, Replica::new(peer, config(), recovered));
            group.logs.insert(peer, log);
        }
        group
    }

    fn view(&mut self, epoch: u64, leader: PeerId, running: &[PeerId], ack: AckMode) {
        let replicas: Vec<PeerId> = self.replicas.keys().copied().collect();
        let view = GroupView {
            epoch,
            leader,
            replicas: replicas.clone(),
            in_sync: replicas,
            in_sync_version: epoch * 100,
            running: running.to_vec(),
            ack,
        };
        for &peer in self.replicas.keys() {
            self.queue.push_back((peer, Event::View(view.clone())));
        }
        self.run();
    }

    fn write(&mut self, leader: PeerId, text: &str) -> Index {
        let index = self.replicas[&leader].write_allowed().expect("leads");
        let written = entry(index, text);
        self.logs
            .get_mut(&leader)
            .expect("known")
            .push(written.clone());
        self.queue
            .push_back((leader, Event::Written { entry: written }));
        self.queue
            .push_back((leader, Event::Durable { through: index }));
        self.run();
        index
    }

    fn tick(&mut self, by_ms: u64) {
        self.now_ms += by_ms;
        for &peer in self.replicas.keys() {
            self.queue.push_back((
                peer,
                Event::Tick {
                    now_ms: self.now_ms,
                },
            ));
        }
        self.run();
    }

    /// Delivers everything queued, and what that produces, until quiet.
    fn run(&mut self) {
        let mut steps = 0;
        while let Some((peer, event)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "the group never quiets down");
            if self.cut_off.contains(&peer) && matches!(event, Event::Received { .. }) {
                continue;
            }
            let mut out = Vec::new();
            self.replicas
                .get_mut(&peer)
                .expect("known")
                .step(event, &mut out);
            for command in out {
                self.execute(peer, command.clone());
                self.commands.push((peer, command));
            }
        }
    }

    fn execute(&mut self, peer: PeerId, command: Command) {
        match command {
            Command::Send { to, message } => {
                // Through the codec, as on the wire.
                let bytes = message.to_bytes();
                let message = super::Message::decode(&bytes).expect("decodes");
                self.queue.push_back((
                    to,
                    Event::Received {
                        from: peer,
                        message,
                    },
                ));
            }
            Command::Apply { entries } => {
                let log = self.logs.get_mut(&peer).expect("known");
                for applied in entries {
                    assert_eq!(applied.index, log.len() as Index + 1, "applied in order");
                    log.push(applied);
                }
                let through = log.len() as Index;
                self.queue.push_back((peer, Event::Durable { through }));
            }
            Command::ReadLog { peer: to, from, .. } => {
                let entries = self.logs[&peer]
                    .iter()
                    .skip(from as usize - 1)
                    .take(2)
                    .cloned()
                    .collect();
                self.queue
                    .push_back((peer, Event::LogRead { peer: to, entries }));
            }
            Command::NeedSnapshot { .. } => {
                self.logs.get_mut(&peer).expect("known").clear();
            }
            Command::SendSnapshot { peer: to } => {
                let log = self.logs[&peer].clone();
                let through = log.len() as Index;
                let epochs = self.replicas[&peer].epochs().slice(0, through);
                self.logs.insert(to, log);
                self.queue
                    .push_back((to, Event::SnapshotInstalled { through, epochs }));
                self.queue.push_back((
                    peer,
                    Event::SnapshotSent {
                        peer: to,
                        through,
                        ok: true,
                    },
                ));
            }
            _ => {}
        }
    }

    fn payloads(&self, peer: PeerId) -> Vec<Bytes> {
        self.logs[&peer]
            .iter()
            .map(|entry| entry.payload.clone())
            .collect()
    }

    fn count(&self, matches: impl Fn(&(PeerId, Command)) -> bool) -> usize {
        self.commands
            .iter()
            .filter(|command| matches(command))
            .count()
    }
}

#[test]
fn a_follower_whose_log_is_a_prefix_just_continues() {
    let mut group = Group::new(&[
        (0, &["a", "b", "c", "d", "e"], &[(1, 1)]),
        (1, &["a", "b", "c"], &[(1, 1)]),
    ]);
    group.view(2, 0, &[0], AckMode::Leader);
    assert_eq!(group.replicas[&0].write_allowed(), Ok(6));
    group.write(0, "f");
    assert_eq!(group.payloads(1), group.payloads(0));
    assert_eq!(
        group.count(|(_, command)| matches!(command, Command::NeedSnapshot { .. })),
        0
    );
    assert_eq!(group.replicas[&1].epochs().pairs(), &[(1, 1), (2, 6)]);
}

#[test]
fn a_divergent_follower_is_rebuilt_from_the_leaders_snapshot() {
    // Replica 1 led epoch 2 from index 4 and wrote 4..=5 that nobody got; replica 0 led
    // epoch 3 from index 4 too.
    let mut group = Group::new(&[
        (0, &["a", "b", "c", "x4", "x5", "x6"], &[(1, 1), (3, 4)]),
        (1, &["a", "b", "c", "y4", "y5"], &[(1, 1), (2, 4)]),
    ]);
    group.view(4, 0, &[0], AckMode::Leader);
    assert_eq!(
        group.count(|command| matches!(command, (1, Command::NeedSnapshot { from: 0 }))),
        1
    );
    assert_eq!(
        group.count(|command| matches!(command, (0, Command::SendSnapshot { peer: 1 }))),
        1
    );
    group.write(0, "x7");
    assert_eq!(group.payloads(1), group.payloads(0));
    assert_eq!(group.replicas[&1].progress().role, Role::Follower);
}

#[test]
fn a_new_leader_fetches_the_longer_log_it_is_a_prefix_of() {
    let mut group = Group::new(&[
        (0, &["a", "b"], &[(1, 1)]),
        (1, &["a", "b", "c", "d", "e"], &[(1, 1)]),
    ]);
    group.view(2, 0, &[0, 1], AckMode::Leader);
    assert_eq!(group.replicas[&0].write_allowed(), Ok(6));
    assert_eq!(group.payloads(0), group.payloads(1));
}

#[test]
fn a_new_leader_does_not_fetch_from_a_divergent_log() {
    let mut group = Group::new(&[
        (0, &["a", "b", "x3"], &[(1, 1), (3, 3)]),
        (1, &["a", "b", "y3", "y4", "y5"], &[(1, 1), (2, 3)]),
    ]);
    group.view(4, 0, &[0, 1], AckMode::Leader);
    assert_eq!(group.replicas[&0].write_allowed(), Ok(4));
    assert_eq!(group.payloads(0)[2], Bytes::from("x3"));
    // ...and rebuilds it instead.
    assert_eq!(group.payloads(1), group.payloads(0));
}

#[test]
fn in_sync_waits_for_every_member_then_drops_a_stuck_one() {
    let mut group = Group::new(&[(0, &[], &[]), (1, &[], &[]), (2, &[], &[])]);
    group.view(1, 0, &[0, 1, 2], AckMode::InSync);
    group.cut_off.push(2);
    group.write(0, "a");
    let acknowledged =
        |group: &Group| group.count(|command| matches!(command, (0, Command::Acknowledge { .. })));
    assert_eq!(acknowledged(&group), 0, "replica 2 has not got it");
    group.tick(150);
    let request = group
        .commands
        .iter()
        .find_map(|(_, command)| match command {
            Command::RequestInSync { in_sync, .. } => Some(in_sync.clone()),
            _ => None,
        });
    assert_eq!(request, Some(vec![0, 1]));
    assert_eq!(acknowledged(&group), 0, "not before the view drops it");
    let mut view = GroupView {
        epoch: 1,
        leader: 0,
        replicas: vec![0, 1, 2],
        in_sync: vec![0, 1],
        in_sync_version: 101,
        running: vec![0, 1, 2],
        ack: AckMode::InSync,
    };
    group.queue.push_back((0, Event::View(view.clone())));
    group.run();
    assert_eq!(acknowledged(&group), 1);
    // Replica 2 comes back, catches up, and is asked back in.
    group.cut_off.clear();
    group.tick(60);
    group.tick(60);
    let back = group
        .commands
        .iter()
        .rev()
        .find_map(|(_, command)| match command {
            Command::RequestInSync { in_sync, .. } => Some(in_sync.clone()),
            _ => None,
        });
    assert_eq!(back, Some(vec![0, 1, 2]));
    view.in_sync = vec![0, 1, 2];
    view.in_sync_version += 1;
    group.queue.push_back((0, Event::View(view)));
    group.run();
    assert_eq!(group.payloads(2), group.payloads(0));
}

#[test]
fn a_restarted_leader_does_not_lead_its_epoch_again() {
    let epochs = Epochs::from_pairs(vec![(1, 1), (3, 2)], 3).expect("ascending");
    let recovered = Recovered {
        last_index: 2,
        durable_index: 2,
        epochs,
        awaiting_snapshot: false,
    };
    let mut replica = Replica::new(0, config(), recovered);
    let mut out = Vec::new();
    let view = GroupView {
        epoch: 3,
        leader: 0,
        replicas: vec![0],
        in_sync: vec![0],
        in_sync_version: 1,
        running: vec![0],
        ack: AckMode::Leader,
    };
    replica.step(Event::View(view.clone()), &mut out);
    assert_eq!(replica.write_allowed(), Err(Refusal::Stale));
    assert!(out.contains(&Command::RequestNewEpoch {
        epoch: 3,
        step_down: false
    }));
    out.clear();
    replica.step(Event::View(GroupView { epoch: 4, ..view }), &mut out);
    assert_eq!(
        replica.write_allowed(),
        Ok(3),
        "a single replica leads at once"
    );
}

/// A replica wiped for a snapshot holds nothing; named leader (the ConfigNode moved
/// leadership to it before its rebuild), it asks for a new epoch naming another replica,
/// again while no new view comes, and leads nothing meanwhile.
#[test]
fn a_wiped_replica_named_leader_asks_to_step_down() {
    let recovered = Recovered {
        last_index: 0,
        durable_index: 0,
        epochs: Epochs::from_pairs(vec![(1, 1)], 0).expect("ascending"),
        awaiting_snapshot: true,
    };
    let mut replica = Replica::new(1, config(), recovered);
    let mut out = Vec::new();
    let view = GroupView {
        epoch: 3,
        leader: 1,
        replicas: vec![0, 1],
        in_sync: vec![0, 1],
        in_sync_version: 1,
        running: vec![0, 1],
        ack: AckMode::Leader,
    };
    replica.step(Event::View(view.clone()), &mut out);
    assert_eq!(replica.write_allowed(), Err(Refusal::Stale));
    let step_down = Command::RequestNewEpoch {
        epoch: 3,
        step_down: true,
    };
    let requests = |out: &[Command]| {
        out.iter()
            .filter(|command| matches!(command, Command::RequestNewEpoch { .. }))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(requests(&out), vec![step_down.clone()]);
    out.clear();
    replica.step(Event::Tick { now_ms: 10 }, &mut out);
    assert!(
        requests(&out).is_empty(),
        "not again before resend_after_ms"
    );
    replica.step(Event::Tick { now_ms: 60 }, &mut out);
    assert_eq!(requests(&out), vec![step_down]);
    assert_eq!(replica.write_allowed(), Err(Refusal::Stale));
    // Named again in a new epoch soon after (the other replica stepped down to it): it
    // asks again only once `resend_after_ms` passed since the last time.
    out.clear();
    replica.step(Event::View(GroupView { epoch: 5, ..view }), &mut out);
    assert!(requests(&out).is_empty(), "asked at 60 already: {out:?}");
    replica.step(Event::Tick { now_ms: 110 }, &mut out);
    assert_eq!(
        requests(&out),
        vec![Command::RequestNewEpoch {
            epoch: 5,
            step_down: true
        }]
    );
}

#[test]
fn recovery_drops_labels_of_lost_entries_and_persists_the_correction() {
    let epochs = Epochs::from_pairs(vec![(1, 1), (2, 5)], 0).expect("ascending");
    let recovered = Recovered {
        last_index: 4,
        durable_index: 4,
        epochs,
        awaiting_snapshot: false,
    };
    let mut replica = Replica::new(1, config(), recovered);
    assert_eq!(replica.epochs().pairs(), &[(1, 1)]);
    let mut out = Vec::new();
    replica.step(Event::Tick { now_ms: 1 }, &mut out);
    assert_eq!(
        out.first(),
        Some(&Command::PersistEpochs(
            Epochs::from_pairs(vec![(1, 1)], 0).expect("ascending")
        ))
    );
}
