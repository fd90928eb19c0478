//! Request/response correlation over an unreliable `Transport`.
//!
//! The network may lose, delay, duplicate and reorder messages, and a peer may crash and
//! come back. [`Rpc`] keeps the table of requests awaiting an answer and guarantees to its
//! owner:
//!
//! - a response is handed over only for a request that is still pending, only if it came
//!   from the node the request went to, and at most once (a duplicate, a late response
//!   after a timeout, or a response to an earlier incarnation is `Incoming::Unmatched`);
//! - every request ends exactly once: a matched response, or a typed timeout from
//!   [`Rpc::expire`] (`RpcError::Timeout`) — unless the owner itself dies first;
//! - ids are never reused within an incarnation, and an incarnation's ids start from a
//!   caller-chosen epoch (random, or a persisted boot count), so a response meant for the
//!   previous incarnation of this node does not pair with a new request.
//!
//! The server side is stateless here: a request delivered twice is answered twice (the
//! client drops the second answer); handlers must be idempotent or deduplicate by id.
//!
//! One `Rpc` per node (per shard), single-threaded. The owner arms one timer at
//! [`Rpc::next_deadline_ms`] and calls [`Rpc::expire`] when it fires.

pub mod envelope;

#[cfg(test)]
mod sim_tests;

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

pub use envelope::{EnvelopeError, EnvelopeKind, RequestId};

use crate::io::{Clock, NodeId, Transport, TransportError};
use crate::limits::RPC_IN_FLIGHT_MAX;

/// A failed or unanswered request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RpcError {
    #[error("{limit} requests already await a response")]
    TooManyInFlight { limit: usize },
    #[error("request {id:?} to {peer} got no response within {timeout_ms} ms")]
    Timeout {
        id: RequestId,
        peer: NodeId,
        timeout_ms: u64,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("bad envelope from the network: {0}")]
    Envelope(#[from] EnvelopeError),
}

/// Why a response was not paired with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    /// No such request is pending: a duplicate, a response after the timeout, or one for
    /// an earlier incarnation.
    NotPending,
    /// The request is pending, but went to another node; it stays pending.
    WrongPeer { expected: NodeId },
}

/// A received message, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A request to answer with [`Rpc::respond`].
    Request {
        from: NodeId,
        id: RequestId,
        payload: Bytes,
    },
    /// The response to a pending request; the request is no longer pending.
    Response {
        from: NodeId,
        id: RequestId,
        payload: Bytes,
    },
    /// A one-way message.
    Message { from: NodeId, payload: Bytes },
    /// A response that pairs with no pending request; drop it.
    Unmatched {
        from: NodeId,
        id: RequestId,
        reason: Unmatched,
    },
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    peer: NodeId,
    deadline_ms: u64,
    timeout_ms: u64,
}

/// The requests one node awaits answers to.
#[derive(Debug)]
pub struct Rpc {
    epoch: u32,
    next_sequence: u32,
    pending: BTreeMap<RequestId, Pending>,
}

impl Rpc {
    /// A table whose ids carry `epoch` in their high 32 bits. Pass a different epoch for
    /// every incarnation of the node (`Env::random_u64`, or a persisted boot counter).
    pub fn new(epoch: u32) -> Rpc {
        Rpc {
            epoch,
            next_sequence: 0,
            pending: BTreeMap::new(),
        }
    }

    /// Sends `payload` to `to` as a request that times out after `timeout_ms`.
    pub fn request<E: Clock + Transport + ?Sized>(
        &mut self,
        env: &mut E,
        to: NodeId,
        payload: &[u8],
        timeout_ms: u64,
    ) -> Result<RequestId, RpcError> {
        if self.pending.len() >= RPC_IN_FLIGHT_MAX {
            return Err(RpcError::TooManyInFlight {
                limit: RPC_IN_FLIGHT_MAX,
            });
        }
        let id = self.next_id();
        env.send(to, envelope::encode(EnvelopeKind::Request(id), payload))?;
        let deadline_ms = env.now_ms().saturating_add(timeout_ms);
        let previous = self.pending.insert(
            id,
            Pending {
                peer: to,
                deadline_ms,
                timeout_ms,
            },
        );
        assert!(
            previous.is_none(),
            "request ids are unique among pending ones"
        );
        Ok(id)
    }

    /// The next id: the epoch and a sequence that skips ids still pending after a wrap.
    fn next_id(&mut self) -> RequestId {
        // At most RPC_IN_FLIGHT_MAX ids are pending, so this ends within that many tries.
        for _ in 0..=RPC_IN_FLIGHT_MAX {
            self.next_sequence = self.next_sequence.wrapping_add(1);
            let id = RequestId((u64::from(self.epoch) << 32) | u64::from(self.next_sequence));
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
        unreachable!("more than RPC_IN_FLIGHT_MAX requests pending")
    }

    /// Answers request `id` from `to`.
    pub fn respond<T: Transport + ?Sized>(
        transport: &mut T,
        to: NodeId,
        id: RequestId,
        payload: &[u8],
    ) -> Result<(), RpcError> {
        transport.send(to, envelope::encode(EnvelopeKind::Response(id), payload))?;
        Ok(())
    }

    /// Sends a one-way message.
    pub fn send_one_way<T: Transport + ?Sized>(
        transport: &mut T,
        to: NodeId,
        payload: &[u8],
    ) -> Result<(), RpcError> {
        transport.send(to, envelope::encode(EnvelopeKind::OneWay, payload))?;
        Ok(())
    }

    /// Classifies a message from the network, settling the request a response answers.
    pub fn receive(&mut self, from: NodeId, frame: &Bytes) -> Result<Incoming, RpcError> {
        let (kind, payload) = envelope::decode(frame)?;
        Ok(match kind {
            EnvelopeKind::Request(id) => Incoming::Request { from, id, payload },
            EnvelopeKind::OneWay => Incoming::Message { from, payload },
            EnvelopeKind::Response(id) => match self.pending.get(&id) {
                None => Incoming::Unmatched {
                    from,
                    id,
                    reason: Unmatched::NotPending,
                },
                Some(pending) if pending.peer != from => Incoming::Unmatched {
                    from,
                    id,
                    reason: Unmatched::WrongPeer {
                        expected: pending.peer,
                    },
                },
                Some(_) => {
                    self.pending.remove(&id);
                    Incoming::Response { from, id, payload }
                }
            },
        })
    }

    /// Removes and returns the requests whose deadline is at or before `now_ms`, as
    /// `RpcError::Timeout`s, earliest deadline first.
    pub fn expire(&mut self, now_ms: u64) -> Vec<RpcError> {
        let mut expired: Vec<(u64, RequestId)> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline_ms <= now_ms)
            .map(|(&id, pending)| (pending.deadline_ms, id))
            .collect();
        expired.sort();
        expired
            .into_iter()
            .map(|(_, id)| {
                let pending = self.pending.remove(&id).expect("just listed");
                RpcError::Timeout {
                    id,
                    peer: pending.peer,
                    timeout_ms: pending.timeout_ms,
                }
            })
            .collect()
    }

    /// The earliest deadline among pending requests: when to call `expire` next.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|pending| pending.deadline_ms)
            .min()
    }

    /// Requests awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The pending request ids, for a test's bookkeeping when the node dies.
    pub fn pending_ids(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.pending.keys().copied()
    }
}
