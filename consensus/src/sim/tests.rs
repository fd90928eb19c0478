//! Tests of the simulator itself: determinism, the network's faults, timers, the step
//! bound, and the disk's durability model.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use super::*;
use crate::io::{Disk, DiskError, Env, Node, NodeId, TimerId};

const TICK: TimerId = TimerId(1);

/// Sends a numbered message to a random peer every few ms; records what it receives.
struct Chatter {
    sent: u64,
    received: Rc<RefCell<Vec<(NodeId, NodeId, u64)>>>,
    peers: u32,
}

impl Node for Chatter {
    fn on_start(&mut self, env: &mut dyn Env) {
        env.set_timer(TICK, 1);
    }

    fn on_message(&mut self, env: &mut dyn Env, from: NodeId, payload: Bytes) {
        let mut word = [0; 8];
        word.copy_from_slice(&payload[..8]);
        self.received
            .borrow_mut()
            .push((from, env.node_id(), u64::from_le_bytes(word)));
    }

    fn on_timer(&mut self, env: &mut dyn Env, _timer: TimerId) {
        self.sent += 1;
        let to = NodeId((env.random_u64() % u64::from(self.peers)) as u32);
        env.send(to, Bytes::copy_from_slice(&self.sent.to_le_bytes()))
            .expect("known peer");
        let delay = 1 + env.random_u64() % 5;
        env.set_timer(TICK, delay);
    }
}

type Received = Rc<RefCell<Vec<(NodeId, NodeId, u64)>>>;

fn chatter_sim(seed: u64, config: SimConfig) -> (Simulation<Chatter>, Received) {
    let received: Received = Rc::default();
    let peers = config.nodes as u32;
    let shared = Rc::clone(&received);
    let sim = Simulation::new(seed, config, move |_, _| Chatter {
        sent: 0,
        received: Rc::clone(&shared),
        peers,
    });
    (sim, received)
}

#[test]
fn same_seed_same_trace() {
    check_seeds(module_path!(), "same_seed_same_trace", |seed| {
        let run = || {
            let (mut sim, received) = chatter_sim(seed, SimConfig::faulty(4));
            sim.run_until(2_000).map_err(|error| error.to_string())?;
            let received = received.borrow().clone();
            Ok::<_, String>((sim.trace_hash(), sim.steps(), received))
        };
        let first = run()?;
        let second = run()?;
        if first != second {
            return Err(format!(
                "two runs differ: hash {:x} vs {:x}, steps {} vs {}",
                first.0, second.0, first.1, second.1
            ));
        }
        Ok(())
    });
}

#[test]
fn different_seeds_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (0..20)
        .map(|seed| {
            let (mut sim, _) = chatter_sim(seed, SimConfig::faulty(3));
            sim.run_until(500).expect("bounded");
            sim.trace_hash()
        })
        .collect();
    assert_eq!(hashes.len(), 20);
}

#[test]
fn reliable_network_delivers_everything_once() {
    let (mut sim, received) = chatter_sim(5, SimConfig::reliable(3));
    sim.run_until(1_000).expect("bounded");
    let stats = sim.network_stats().clone();
    // Messages sent in the last millisecond may still be in flight.
    assert!(stats.delivered + 3 >= stats.sent && stats.delivered <= stats.sent);
    assert_eq!(stats.dropped + stats.duplicated + stats.partitioned, 0);
    let received = received.borrow();
    let mut seen = std::collections::BTreeSet::new();
    for entry in received.iter() {
        assert!(seen.insert(*entry), "delivered twice: {entry:?}");
    }
}

#[test]
fn faulty_network_drops_duplicates_and_reorders() {
    let mut config = SimConfig::reliable(2);
    config.network = NetworkConfig {
        drop_probability: 0.2,
        duplicate_probability: 0.2,
        delay_min_ms: 1,
        delay_max_ms: 30,
    };
    let (mut sim, received) = chatter_sim(11, config);
    sim.run_until(3_000).expect("bounded");
    let stats = sim.network_stats().clone();
    assert!(stats.dropped > 0 && stats.duplicated > 0, "{stats:?}");
    let received = received.borrow();
    let mut reordered = false;
    let mut duplicated = false;
    for from in 0..2 {
        for to in 0..2 {
            let stream: Vec<u64> = received
                .iter()
                .filter(|entry| entry.0 == NodeId(from) && entry.1 == NodeId(to))
                .map(|entry| entry.2)
                .collect();
            reordered |= stream.windows(2).any(|pair| pair[0] > pair[1]);
            duplicated |= stream.windows(2).any(|pair| pair[0] == pair[1])
                || stream.len()
                    > stream
                        .iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        .len();
        }
    }
    assert!(reordered && duplicated);
}

#[test]
fn partition_cuts_and_heal_restores() {
    let (mut sim, received) = chatter_sim(3, SimConfig::reliable(3));
    sim.network_mut().partition([NodeId(0)]);
    sim.run_until(500).expect("bounded");
    assert!(
        received
            .borrow()
            .iter()
            .all(|(from, to, _)| (*from == NodeId(0)) == (*to == NodeId(0))),
        "nothing crosses the partition"
    );
    assert!(sim.network_stats().partitioned > 0);
    sim.network_mut().heal();
    received.borrow_mut().clear();
    sim.run_until(1_000).expect("bounded");
    assert!(
        received
            .borrow()
            .iter()
            .any(|(from, to, _)| *from == NodeId(0) && *to != NodeId(0))
    );
}

#[test]
fn crashed_node_gets_nothing_and_restarts_fresh() {
    let (mut sim, received) = chatter_sim(4, SimConfig::reliable(2));
    sim.run_until(100).expect("bounded");
    sim.crash(NodeId(1));
    assert!(!sim.is_up(NodeId(1)));
    received.borrow_mut().clear();
    sim.run_until(200).expect("bounded");
    assert!(received.borrow().iter().all(|entry| entry.1 != NodeId(1)));
    assert!(
        received
            .borrow()
            .iter()
            .all(|entry| entry.0 != NodeId(1) || entry.2 <= 1)
    );
    sim.restart(NodeId(1));
    sim.run_until(300).expect("bounded");
    assert!(sim.is_up(NodeId(1)));
    assert_eq!(sim.node(NodeId(1)).map(|node| node.sent > 0), Some(true));
}

/// Re-arms a timer at zero delay forever: a livelock the step bound must catch.
struct Spinner;

impl Node for Spinner {
    fn on_start(&mut self, env: &mut dyn Env) {
        env.set_timer(TICK, 0);
    }
    fn on_message(&mut self, _: &mut dyn Env, _: NodeId, _: Bytes) {}
    fn on_timer(&mut self, env: &mut dyn Env, _: TimerId) {
        env.set_timer(TICK, 0);
    }
}

#[test]
fn step_limit_stops_a_livelock() {
    let mut config = SimConfig::reliable(1);
    config.max_steps = 1_000;
    let mut sim = Simulation::new(0, config, |_, _| Spinner);
    assert_eq!(
        sim.run_until(10),
        Err(SimError::StepLimit {
            max_steps: 1_000,
            now_ms: 0
        })
    );
}

/// Arms three timers, re-arms one and cancels another; records what fires.
struct TimerNode(Rc<RefCell<Vec<(u64, TimerId)>>>);

impl Node for TimerNode {
    fn on_start(&mut self, env: &mut dyn Env) {
        env.set_timer(TimerId(1), 10);
        env.set_timer(TimerId(2), 20);
        env.set_timer(TimerId(3), 30);
        env.set_timer(TimerId(1), 40);
        env.cancel_timer(TimerId(2));
    }
    fn on_message(&mut self, _: &mut dyn Env, _: NodeId, _: Bytes) {}
    fn on_timer(&mut self, env: &mut dyn Env, timer: TimerId) {
        self.0.borrow_mut().push((env.now_ms(), timer));
    }
}

#[test]
fn timers_rearm_cancel_and_die_with_the_node() {
    let fired = Rc::new(RefCell::new(Vec::new()));
    let shared = Rc::clone(&fired);
    let mut sim = Simulation::new(0, SimConfig::reliable(1), move |_, _| {
        TimerNode(Rc::clone(&shared))
    });
    sim.run_until(100).expect("bounded");
    assert_eq!(*fired.borrow(), vec![(30, TimerId(3)), (40, TimerId(1))]);
    fired.borrow_mut().clear();
    sim.run_until(105).expect("bounded");
    sim.crash(NodeId(0));
    sim.restart(NodeId(0));
    sim.run_until(125).expect("bounded");
    sim.crash(NodeId(0));
    sim.run_until(300).expect("bounded");
    assert!(
        fired.borrow().is_empty(),
        "timers of a crashed incarnation never fire"
    );
}

#[test]
fn deadline_goal_fails_with_a_typed_error() {
    let (mut sim, _) = chatter_sim(0, SimConfig::reliable(2));
    let outcome = sim.run_until_goal(50, "never", |_| false);
    assert!(matches!(
        outcome,
        Err(SimError::Deadline {
            deadline_ms: 50,
            ..
        })
    ));
    let (mut sim, received) = chatter_sim(0, SimConfig::reliable(2));
    sim.run_until_goal(1_000, "a delivery", |_| !received.borrow().is_empty())
        .expect("reached");
}

// ---- the simulated disk ----

fn disk(config: DiskConfig, seed: u64) -> SimDisk {
    SimDisk::new(config, SimRng::new(seed))
}

#[test]
fn crash_loses_unsynced_writes_and_keeps_synced_ones() {
    let mut config = DiskConfig::reliable();
    config.writeback_probability = 0.0;
    let mut d = disk(config, 1);
    d.create("f").unwrap();
    d.sync_dir().unwrap();
    d.append("f", b"durable").unwrap();
    d.sync("f").unwrap();
    d.append("f", b"-volatile").unwrap();
    assert_eq!(d.read_all("f").unwrap(), b"durable-volatile");
    d.crash();
    let d = d.handle();
    assert_eq!(d.read_all("f").unwrap(), b"durable");
}

#[test]
fn create_without_sync_dir_is_lost() {
    let mut d = disk(DiskConfig::reliable(), 2);
    d.create("f").unwrap();
    d.append("f", b"data").unwrap();
    d.sync("f").unwrap();
    d.crash();
    let d = d.handle();
    assert!(
        d.list().unwrap().is_empty(),
        "syncing a file does not sync its name"
    );
}

#[test]
fn rename_is_atomic_across_crashes() {
    for seed in 0..200 {
        let mut config = DiskConfig::reliable();
        config.writeback_probability = 0.5;
        let mut d = disk(config, seed);
        d.create("tmp").unwrap();
        d.append("tmp", b"x").unwrap();
        d.sync("tmp").unwrap();
        d.sync_dir().unwrap();
        d.rename("tmp", "final").unwrap();
        d.crash();
        let names = d.handle().list().unwrap();
        assert!(names == ["final"] || names == ["tmp"], "{names:?}");
    }
}

#[test]
fn crash_keeps_a_prefix_of_unsynced_writes_possibly_torn() {
    let mut torn = 0;
    let mut kept_some = 0;
    for seed in 0..300 {
        let mut config = DiskConfig::reliable();
        config.writeback_probability = 0.5;
        config.torn_write_probability = 0.5;
        let mut d = disk(config, seed);
        d.create("f").unwrap();
        d.sync_dir().unwrap();
        d.append("f", b"AAAA").unwrap();
        d.sync("f").unwrap();
        d.append("f", b"BBBB").unwrap();
        d.append("f", b"CCCC").unwrap();
        d.crash();
        let stats = d.stats();
        let after = d.handle().read_all("f").unwrap();
        assert!(after.starts_with(b"AAAA"), "synced data survives");
        let full = b"AAAABBBBCCCC";
        let is_prefix = full.starts_with(&after);
        let zero_tail = after.len() <= full.len()
            && after
                .iter()
                .zip(full.iter())
                .skip_while(|(a, b)| a == b)
                .all(|(a, _)| *a == 0);
        assert!(is_prefix || zero_tail, "{after:?}");
        torn += stats.torn_writes;
        kept_some += u64::from(after.len() > 4);
    }
    assert!(torn > 0 && kept_some > 0);
}

#[test]
fn failed_sync_may_lose_data_that_reads_still_show() {
    let mut config = DiskConfig::reliable();
    config.sync_failure_probability = 1.0;
    config.sync_failure_loses_probability = 1.0;
    let mut d = disk(config, 3);
    d.create("f").unwrap();
    d.set_config(DiskConfig::reliable());
    d.sync_dir().unwrap();
    d.append("f", b"lost").unwrap();
    let mut failing = DiskConfig::reliable();
    failing.sync_failure_probability = 1.0;
    failing.sync_failure_loses_probability = 1.0;
    d.set_config(failing);
    let error = d.sync("f").unwrap_err();
    assert!(matches!(error, DiskError::Io { .. }), "{error}");
    assert_eq!(
        d.read_all("f").unwrap(),
        b"lost",
        "the page cache still shows it"
    );
    d.set_config(DiskConfig::reliable());
    d.append("f", b"+later").unwrap();
    d.sync("f").unwrap();
    assert_eq!(d.stats().lost_on_sync_failure, 1);
    assert_eq!(
        d.durable_contents("f").unwrap(),
        b"\0\0\0\0+later",
        "the retried sync did not bring the lost bytes back"
    );
}

#[test]
fn no_space_is_typed_and_writes_nothing() {
    let mut config = DiskConfig::reliable();
    config.capacity_bytes = 10;
    let mut d = disk(config, 4);
    d.create("f").unwrap();
    d.append("f", b"12345678").unwrap();
    let error = d.append("f", b"abc").unwrap_err();
    assert!(matches!(error, DiskError::NoSpace { .. }), "{error}");
    assert_eq!(d.read_all("f").unwrap(), b"12345678");
    d.write_at("f", 0, b"ab").unwrap();
    assert_eq!(d.len("f").unwrap(), 8);
}

#[test]
fn missing_files_and_bad_names_are_typed() {
    let mut d = disk(DiskConfig::reliable(), 5);
    assert!(matches!(
        d.append("nope", b"x"),
        Err(DiskError::NotFound { .. })
    ));
    assert!(matches!(
        d.create("a/b"),
        Err(DiskError::InvalidName { .. })
    ));
    d.create("x").unwrap();
    assert!(matches!(
        d.create("x"),
        Err(DiskError::AlreadyExists { .. })
    ));
    d.remove("x").unwrap();
    assert!(matches!(d.remove("x"), Err(DiskError::NotFound { .. })));
    d.create("y").unwrap();
    d.write_at("y", 4, b"z").unwrap();
    assert_eq!(d.read_all("y").unwrap(), b"\0\0\0\0z");
    assert_eq!(d.read_at("y", 3, 10).unwrap(), b"\0z");
    assert_eq!(d.read_at("y", 10, 10).unwrap(), b"");
    d.truncate("y", 2).unwrap();
    assert_eq!(d.len("y").unwrap(), 2);
}

#[test]
#[should_panic(expected = "after its node crashed")]
fn a_handle_from_before_a_crash_is_dead() {
    let mut d = disk(DiskConfig::reliable(), 6);
    let stale = d.handle();
    d.create("f").unwrap();
    d.crash();
    let _ = stale.list();
}

#[test]
fn page_writeback_can_persist_a_later_page_without_an_earlier_one() {
    let mut out_of_order = 0;
    for seed in 0..200 {
        let mut config = DiskConfig::reliable();
        config.writeback = Writeback::PagesAnyOrder;
        config.writeback_probability = 0.5;
        let mut d = disk(config, seed);
        d.create("f").unwrap();
        d.sync_dir().unwrap();
        d.append("f", &[1; PAGE_BYTES as usize * 3]).unwrap();
        d.crash();
        let after = d.handle().read_all("f").unwrap();
        assert!(after.len() <= PAGE_BYTES as usize * 3);
        let page = |index: usize| after.get(index * PAGE_BYTES as usize).copied();
        out_of_order += u64::from(page(0) == Some(0) && page(1) == Some(1));
    }
    assert!(out_of_order > 0);
}

/// Does nothing: a run of silent nodes has only the scheduler's own events.
struct Silent;

impl Node for Silent {
    fn on_start(&mut self, _: &mut dyn Env) {}
    fn on_message(&mut self, _: &mut dyn Env, _: NodeId, _: Bytes) {}
    fn on_timer(&mut self, _: &mut dyn Env, _: TimerId) {}
}

#[test]
fn toggling_chaos_keeps_one_chain_of_decisions() {
    let mut config = SimConfig::reliable(2);
    config.chaos = ChaosConfig {
        interval_ms: 10,
        ..ChaosConfig::none()
    };
    let mut sim = Simulation::new(9, config, |_, _| Silent);
    sim.run_until(5).expect("bounded");
    assert_eq!(sim.steps(), 2, "the two starts");
    sim.set_chaos(false);
    sim.set_chaos(true);
    sim.set_chaos(false);
    sim.set_chaos(true);
    sim.run_until(1_000).expect("bounded");
    assert_eq!(
        sim.steps(),
        2 + 100,
        "one chaos decision every 10 ms, not two"
    );
}

#[test]
fn crash_at_crashes_at_the_given_time() {
    let (mut sim, _) = chatter_sim(2, SimConfig::reliable(2));
    sim.crash_at(NodeId(1), 50);
    sim.run_until(49).expect("bounded");
    assert!(sim.is_up(NodeId(1)));
    sim.run_until(50).expect("bounded");
    assert!(!sim.is_up(NodeId(1)));
    assert!(sim.is_up(NodeId(0)));
}
