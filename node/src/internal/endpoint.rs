//! The endpoint a node's core holds: its identity, its peers, its listener, its handler.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use iotdb_consensus::io::{NodeId, Transport, TransportError};

use super::error::InternalError;
use super::hello::Hello;
use super::limits::{CLUSTER_NAME_BYTES_MAX, InternalLimits};
use super::outbox::Signal;
use super::peer::Peer;
use super::server::accept_loop;

/// What a node does with what its peers send. Runs on the endpoint's core.
pub trait InternalHandler {
    /// Answers a request; the body is opaque to the transport (the state machine that
    /// owns the request type defines both bodies, errors included).
    fn handle_request(&self, from: NodeId, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes>>>;
    /// Takes a one-way message (`Transport::send`). Must not block.
    fn on_message(&self, from: NodeId, body: Bytes);
}

/// Who this endpoint is.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub node_id: NodeId,
    /// Must equal every peer's (`cluster_name` in the configuration).
    pub cluster_name: String,
    pub limits: InternalLimits,
}

pub(crate) struct Shared {
    pub(crate) local: Rc<Hello>,
    pub(crate) limits: Rc<InternalLimits>,
    pub(crate) handler: Rc<dyn InternalHandler>,
    /// Fired by `shut_down`: the accept loop and every inbound connection stop.
    pub(crate) stop: Signal,
}

impl Shared {
    pub(crate) fn is_shut_down(&self) -> bool {
        self.stop.is_fired()
    }
}

/// A node's end of the internal protocol on one core: a listener (optional; a pure client
/// such as a tool has none) and one pooled connection per peer.
///
/// Node view, owned by one core (`Rc`, `!Send`): the core that created it drives every
/// connection of it. Clones share the same peers. Must be created inside a monoio runtime
/// with timers enabled.
#[derive(Clone)]
pub struct InternalEndpoint {
    shared: Rc<Shared>,
    peers: Rc<RefCell<HashMap<NodeId, Rc<Peer>>>>,
    local_address: Rc<Cell<Option<SocketAddr>>>,
}

impl InternalEndpoint {
    pub fn new(
        config: EndpointConfig,
        handler: Rc<dyn InternalHandler>,
    ) -> Result<InternalEndpoint, InternalError> {
        if config.cluster_name.len() > CLUSTER_NAME_BYTES_MAX {
            return Err(InternalError::ClusterNameTooLong {
                bytes: config.cluster_name.len(),
                max: CLUSTER_NAME_BYTES_MAX,
            });
        }
        Ok(InternalEndpoint {
            shared: Rc::new(Shared {
                local: Rc::new(Hello {
                    node_id: config.node_id,
                    cluster_name: config.cluster_name,
                }),
                limits: Rc::new(config.limits),
                handler,
                stop: Signal::default(),
            }),
            peers: Rc::new(RefCell::new(HashMap::new())),
            local_address: Rc::new(Cell::new(None)),
        })
    }

    /// Serves peers on `listener` (from [`super::bind_internal_port`]) from now on.
    pub fn serve(&self, listener: std::net::TcpListener) -> Result<SocketAddr, InternalError> {
        let address = listener
            .local_addr()
            .map_err(|error| InternalError::io("reading the internal port's address", error))?;
        let listener = monoio::net::TcpListener::from_std(listener)
            .map_err(|error| InternalError::io("registering the internal port", error))?;
        self.local_address.set(Some(address));
        monoio::spawn(accept_loop(listener, self.shared.clone()));
        Ok(address)
    }

    /// The address `serve` listens on.
    pub fn local_address(&self) -> Option<SocketAddr> {
        self.local_address.get()
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.local.node_id
    }

    /// Adds a peer, or moves it to a new address (used from its next connection on).
    pub fn add_peer(&self, id: NodeId, address: SocketAddr) {
        let mut peers = self.peers.borrow_mut();
        match peers.get(&id) {
            Some(peer) => peer.set_address(address),
            None => {
                let peer = Peer::new(
                    id,
                    address,
                    self.shared.local.clone(),
                    self.shared.limits.clone(),
                );
                peers.insert(id, Rc::new(peer));
            }
        }
    }

    /// Forgets that peer `id` was found unreachable, because it proved alive another way
    /// (it registered again after a restart): the next request connects at once instead
    /// of failing for the rest of `unreachable_hold`.
    pub fn clear_unreachable(&self, id: NodeId) {
        if let Some(peer) = self.peers.borrow().get(&id) {
            peer.clear_unreachable();
        }
    }

    fn peer(&self, id: NodeId) -> Result<Rc<Peer>, InternalError> {
        if self.shared.is_shut_down() {
            return Err(InternalError::Shutdown);
        }
        self.peers
            .borrow()
            .get(&id)
            .cloned()
            .ok_or(InternalError::UnknownPeer(id))
    }

    /// Sends a request to `to` and waits for its response, at most `timeout`.
    ///
    /// Fails fast with `Overloaded` when the peer's queue is full and with `Unreachable`
    /// when the peer is down; a request whose connection breaks fails with `Unreachable`
    /// and is never resent, so the peer's handler sees it at most once.
    pub async fn request(
        &self,
        to: NodeId,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, InternalError> {
        self.peer(to)?.request(body, timeout).await
    }

    /// Queues a one-way message to `to` (best effort, as `Transport` promises).
    pub fn send_message(&self, to: NodeId, body: Bytes) -> Result<(), InternalError> {
        self.send_message_with(to, body.len(), |out| out.extend_from_slice(&body))
    }

    /// [`InternalEndpoint::send_message`] of a body exactly `body_bytes` long that
    /// `write_body` appends straight into the frame to be sent: a large message (a
    /// replication batch) is encoded once, into a buffer allocated at its final size, and
    /// not copied again on its way to the socket. `write_body` does not run when the peer
    /// cannot take the message (shut down, too large, known unreachable); a body of another
    /// length than announced is a bug (panics).
    pub fn send_message_with(
        &self,
        to: NodeId,
        body_bytes: usize,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), InternalError> {
        self.peer(to)?.send_with(body_bytes, write_body)
    }

    /// Stops accepting (the pending accept is cancelled and the listener closed, so the
    /// port is free once the accept loop has run) and stops every peer's connection;
    /// pending requests fail with `Shutdown`.
    pub fn shut_down(&self) {
        self.shared.stop.fire();
        for peer in self.peers.borrow().values() {
            peer.shut_down();
        }
    }
}

impl Transport for InternalEndpoint {
    fn send(&mut self, to: NodeId, payload: Bytes) -> Result<(), TransportError> {
        self.send_message(to, payload)
            .map_err(|error| error.into_transport_error(to))
    }
}
