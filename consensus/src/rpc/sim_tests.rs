//! Request/response pairing over the faulty simulated network, across many seeds, plus
//! unit tests of `Rpc`'s edge cases.
//!
//! Every node both asks (random peers, random payloads) and answers (a function of the
//! request and the answering node). Invariants, checked against a model outside the nodes:
//! a response reaches only the request it answers (right id, right peer, right payload),
//! at most once; a response for a pending request is never dropped; every request of a
//! node that stays up ends exactly once, answered or with `RpcError::Timeout`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use super::{Incoming, RequestId, Rpc, RpcError, Unmatched};
use crate::io::{Clock, Env, Node, NodeId, TimerId, Transport, TransportError};
use crate::sim::{ChaosConfig, NetworkConfig, SimConfig, Simulation, check_seeds};

const ASK: TimerId = TimerId(1);
const EXPIRE: TimerId = TimerId(2);
const NODES: u32 = 4;
const TIMEOUT_MS: u64 = 80;
const ISSUE_UNTIL_MS: u64 = 1_500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Answered,
    TimedOut,
    /// The asking node crashed first.
    Abandoned,
}

#[derive(Debug)]
struct Sent {
    peer: NodeId,
    payload: Vec<u8>,
    outcome: Outcome,
}

/// Requests by (asking node, its incarnation, id).
type Key = (NodeId, u64, RequestId);

#[derive(Debug, Default)]
struct Model {
    sent: BTreeMap<Key, Sent>,
    incarnations: BTreeMap<NodeId, u64>,
    violation: Option<String>,
    answered: u64,
    timed_out: u64,
    unmatched: u64,
    abandoned: u64,
}

impl Model {
    fn violate(&mut self, reason: String) {
        if self.violation.is_none() {
            self.violation = Some(reason);
        }
    }

    fn key(&self, node: NodeId, id: RequestId) -> Key {
        (node, self.incarnations.get(&node).copied().unwrap_or(0), id)
    }

    fn settle(&mut self, node: NodeId, id: RequestId, outcome: Outcome) -> Option<&mut Sent> {
        let key = self.key(node, id);
        let Some(sent) = self.sent.get_mut(&key) else {
            self.violate(format!(
                "{node}: {outcome:?} for {id:?}, which it never sent"
            ));
            return None;
        };
        if sent.outcome != Outcome::Pending {
            let previous = sent.outcome;
            self.violate(format!(
                "{node}: {id:?} settled twice: {previous:?} then {outcome:?}"
            ));
            return None;
        }
        sent.outcome = outcome;
        self.sent.get_mut(&key)
    }
}

/// The answer a node gives to a request: it names the node and depends on every byte.
fn answer(request: &[u8], by: NodeId) -> Vec<u8> {
    let mut response: Vec<u8> = request.iter().rev().map(|byte| byte ^ 0x5A).collect();
    response.extend_from_slice(&by.0.to_le_bytes());
    response
}

struct RpcNode {
    rpc: Rpc,
    model: Rc<RefCell<Model>>,
}

impl RpcNode {
    fn arm_expiry(&self, env: &mut dyn Env) {
        if let Some(deadline) = self.rpc.next_deadline_ms() {
            env.set_timer(EXPIRE, deadline.saturating_sub(env.now_ms()));
        }
    }
}

impl Node for RpcNode {
    fn on_start(&mut self, env: &mut dyn Env) {
        self.rpc = Rpc::new(env.random_u64() as u32);
        *self
            .model
            .borrow_mut()
            .incarnations
            .entry(env.node_id())
            .or_default() += 1;
        let delay = 1 + env.random_u64() % 10;
        env.set_timer(ASK, delay);
    }

    fn on_message(&mut self, env: &mut dyn Env, from: NodeId, payload: Bytes) {
        let me = env.node_id();
        let incoming = match self.rpc.receive(from, &payload) {
            Ok(incoming) => incoming,
            Err(error) => {
                self.model.borrow_mut().violate(format!("{me}: {error}"));
                return;
            }
        };
        let mut model = self.model.borrow_mut();
        match incoming {
            Incoming::Request { from, id, payload } => {
                if let Err(error) = Rpc::respond(env, from, id, &answer(&payload, me)) {
                    model.violate(format!("{me}: respond: {error}"));
                }
            }
            Incoming::Response { from, id, payload } => {
                model.answered += 1;
                if let Some(sent) = model.settle(me, id, Outcome::Answered) {
                    let (peer, expected) = (sent.peer, answer(&sent.payload, sent.peer));
                    if from != peer || payload[..] != expected[..] {
                        model.violate(format!(
                            "{me}: response to {id:?} from {from} paired with a request to {peer}"
                        ));
                    }
                }
            }
            Incoming::Unmatched { id, reason, .. } => {
                model.unmatched += 1;
                let key = model.key(me, id);
                if let Some(sent) = model.sent.get(&key)
                    && sent.outcome == Outcome::Pending
                    && reason == Unmatched::NotPending
                {
                    model.violate(format!("{me}: dropped the response to pending {id:?}"));
                }
            }
            Incoming::Message { .. } => model.violate(format!("{me}: unexpected one-way")),
        }
    }

    fn on_timer(&mut self, env: &mut dyn Env, timer: TimerId) {
        let me = env.node_id();
        if timer == EXPIRE {
            for error in self.rpc.expire(env.now_ms()) {
                let mut model = self.model.borrow_mut();
                match error {
                    RpcError::Timeout { id, .. } => {
                        model.timed_out += 1;
                        model.settle(me, id, Outcome::TimedOut);
                    }
                    other => model.violate(format!("{me}: expire returned {other}")),
                }
            }
        } else if env.now_ms() < ISSUE_UNTIL_MS {
            let peer = NodeId(
                ((u64::from(me.0) + 1 + env.random_u64() % u64::from(NODES - 1)) % u64::from(NODES))
                    as u32,
            );
            let payload: Vec<u8> = (0..1 + env.random_u64() % 24)
                .map(|_| env.random_u64() as u8)
                .collect();
            match self.rpc.request(env, peer, &payload, TIMEOUT_MS) {
                Ok(id) => {
                    let mut model = self.model.borrow_mut();
                    let key = model.key(me, id);
                    let sent = Sent {
                        peer,
                        payload,
                        outcome: Outcome::Pending,
                    };
                    if model.sent.insert(key, sent).is_some() {
                        model.violate(format!("{me}: request id {id:?} reused"));
                    }
                }
                Err(RpcError::TooManyInFlight { .. }) => {}
                Err(error) => self.model.borrow_mut().violate(format!("{me}: {error}")),
            }
            let delay = 1 + env.random_u64() % 10;
            env.set_timer(ASK, delay);
        }
        self.arm_expiry(env);
    }

    fn on_crash(&mut self) {
        let mut model = self.model.borrow_mut();
        let me_and_ids: Vec<RequestId> = self.rpc.pending_ids().collect();
        for id in me_and_ids {
            // The node's id is in every key of its requests; find it through the model.
            let key = model
                .sent
                .iter()
                .find(|(key, sent)| key.2 == id && sent.outcome == Outcome::Pending)
                .map(|(key, _)| *key);
            if let Some(key) = key {
                model.abandoned += 1;
                if let Some(sent) = model.sent.get_mut(&key) {
                    sent.outcome = Outcome::Abandoned;
                }
            }
        }
    }
}

fn config() -> SimConfig {
    let mut config = SimConfig::reliable(NODES as usize);
    config.network = NetworkConfig {
        drop_probability: 0.1,
        duplicate_probability: 0.1,
        delay_min_ms: 1,
        delay_max_ms: 60,
    };
    config.chaos = ChaosConfig {
        interval_ms: 25,
        crash_probability: 0.03,
        restart_delay_min_ms: 1,
        restart_delay_max_ms: 100,
        partition_probability: 0.03,
        heal_probability: 0.3,
    };
    config
}

#[derive(Debug, Default)]
struct Totals {
    answered: u64,
    timed_out: u64,
    unmatched: u64,
    abandoned: u64,
}

#[test]
fn responses_pair_with_their_requests() {
    let mut totals = Totals::default();
    let mut seeds = 0;
    check_seeds(
        module_path!(),
        "responses_pair_with_their_requests",
        |seed| {
            seeds += 1;
            let model = Rc::new(RefCell::new(Model::default()));
            let shared = Rc::clone(&model);
            let mut sim = Simulation::new(seed, config(), move |_, _| RpcNode {
                rpc: Rpc::new(0),
                model: Rc::clone(&shared),
            });
            // Requests stop at ISSUE_UNTIL_MS; by then plus a timeout every one has settled.
            sim.run_until(ISSUE_UNTIL_MS + TIMEOUT_MS + 10)
                .map_err(|error| error.to_string())?;
            let model = model.borrow();
            if let Some(reason) = &model.violation {
                return Err(reason.clone());
            }
            if let Some((key, _)) = model
                .sent
                .iter()
                .find(|(_, sent)| sent.outcome == Outcome::Pending)
            {
                return Err(format!("request {key:?} never settled"));
            }
            totals.answered += model.answered;
            totals.timed_out += model.timed_out;
            totals.unmatched += model.unmatched;
            totals.abandoned += model.abandoned;
            Ok(())
        },
    );
    eprintln!("rpc simulation, {seeds} seeds: {totals:?}");
    if seeds >= 50 {
        assert!(totals.answered > 0 && totals.timed_out > 0, "{totals:?}");
        assert!(totals.unmatched > 0 && totals.abandoned > 0, "{totals:?}");
    }
}

// ---- unit tests of the edge cases, on a hand-driven clock and transport ----

#[derive(Default)]
struct Wire {
    now_ms: u64,
    sent: Vec<(NodeId, Bytes)>,
}

impl Clock for Wire {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn set_timer(&mut self, _: TimerId, _: u64) {}
    fn cancel_timer(&mut self, _: TimerId) {}
}

impl Transport for Wire {
    fn send(&mut self, to: NodeId, payload: Bytes) -> Result<(), TransportError> {
        self.sent.push((to, payload));
        Ok(())
    }
}

fn respond_frame(id: RequestId, payload: &[u8]) -> Bytes {
    let mut wire = Wire::default();
    Rpc::respond(&mut wire, NodeId(0), id, payload).unwrap();
    wire.sent.remove(0).1
}

#[test]
fn duplicate_late_and_wrong_peer_responses_are_not_paired() {
    let mut wire = Wire::default();
    let mut rpc = Rpc::new(7);
    let id = rpc.request(&mut wire, NodeId(1), b"q", 100).unwrap();
    assert_eq!(id.0 >> 32, 7, "the epoch is in the id");
    let frame = respond_frame(id, b"a");
    assert_eq!(
        rpc.receive(NodeId(2), &frame).unwrap(),
        Incoming::Unmatched {
            from: NodeId(2),
            id,
            reason: Unmatched::WrongPeer {
                expected: NodeId(1)
            }
        }
    );
    assert_eq!(
        rpc.in_flight(),
        1,
        "a wrong peer does not settle the request"
    );
    assert!(matches!(
        rpc.receive(NodeId(1), &frame).unwrap(),
        Incoming::Response { .. }
    ));
    assert!(matches!(
        rpc.receive(NodeId(1), &frame).unwrap(),
        Incoming::Unmatched {
            reason: Unmatched::NotPending,
            ..
        }
    ));

    let late = rpc.request(&mut wire, NodeId(1), b"q2", 100).unwrap();
    assert_ne!(late, id);
    assert!(rpc.expire(99).is_empty());
    assert_eq!(rpc.next_deadline_ms(), Some(100));
    assert_eq!(
        rpc.expire(100),
        vec![RpcError::Timeout {
            id: late,
            peer: NodeId(1),
            timeout_ms: 100
        }]
    );
    assert!(matches!(
        rpc.receive(NodeId(1), &respond_frame(late, b"")).unwrap(),
        Incoming::Unmatched {
            reason: Unmatched::NotPending,
            ..
        }
    ));
    assert!(
        rpc.receive(NodeId(1), &Bytes::from_static(b"\x02"))
            .is_err()
    );
}

#[test]
fn a_new_incarnation_ignores_responses_meant_for_the_old_one() {
    let mut wire = Wire::default();
    let mut old = Rpc::new(1);
    let old_id = old.request(&mut wire, NodeId(1), b"q", 100).unwrap();
    let mut new = Rpc::new(2);
    let new_id = new.request(&mut wire, NodeId(1), b"q", 100).unwrap();
    assert_ne!(old_id, new_id);
    assert!(matches!(
        new.receive(NodeId(1), &respond_frame(old_id, b"")).unwrap(),
        Incoming::Unmatched {
            reason: Unmatched::NotPending,
            ..
        }
    ));
}

#[test]
fn in_flight_requests_are_bounded() {
    let mut wire = Wire::default();
    let mut rpc = Rpc::new(0);
    for _ in 0..crate::limits::RPC_IN_FLIGHT_MAX {
        rpc.request(&mut wire, NodeId(1), b"", 10).unwrap();
    }
    assert!(matches!(
        rpc.request(&mut wire, NodeId(1), b"", 10),
        Err(RpcError::TooManyInFlight { .. })
    ));
    assert_eq!(rpc.expire(10).len(), crate::limits::RPC_IN_FLIGHT_MAX);
    rpc.request(&mut wire, NodeId(1), b"", 10)
        .expect("room again");
}
