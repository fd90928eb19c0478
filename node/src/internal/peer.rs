//! One pooled, pipelined connection to one peer (outbound side).
//!
//! ```text
//!   send / request ──push──▶ Outbox (bounded) ──▶ writer loop ──batch──▶ socket
//!   request waits on a oneshot ◀── pending[id] ◀── reader task ◀── responses
//! ```
//!
//! A driver task per peer, spawned on first use on the core that owns the endpoint,
//! connects with bounded retries and backoff, says hello, then writes queued frames in
//! batches while a reader task pairs responses with pending requests by request id. When
//! the connection breaks, every pending request fails with `Unreachable` (the transport
//! never resends, so the peer's application sees a request at most once) and the next
//! queued frame makes the driver connect again: a restarted peer is reached again without
//! anyone asking. After connects fail, sends fail at once for `unreachable_hold`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use iotdb_consensus::io::NodeId;
use iotdb_net::internal_frame::{
    OP_ERROR, OP_HELLO, OP_HELLO_ACCEPTED, OP_MESSAGE, OP_REQUEST, OP_RESPONSE, internal_frame,
    internal_frame_with,
};
use monoio::io::{AsyncWriteRent, Splitable};
use monoio::net::TcpStream;

use super::error::InternalError;
use super::hello::Hello;
use super::limits::InternalLimits;
use super::outbox::{Outbox, PushError, Signal};
use super::wire::{ReadEnd, read_frame, write_bytes};

type ResponseSender = oneshot::Sender<Result<Bytes, InternalError>>;

/// The outbound side towards one peer. Owned by the endpoint's core (`Rc`, `!Send`).
pub(crate) struct Peer {
    id: NodeId,
    address: Cell<SocketAddr>,
    local: Rc<Hello>,
    limits: Rc<InternalLimits>,
    outbox: Outbox,
    /// Requests written or queued, by request id, awaiting a response.
    pending: RefCell<HashMap<u64, ResponseSender>>,
    next_request_id: Cell<u64>,
    /// While set and in the future, sends fail at once: the peer was just found down.
    unreachable_until: Cell<Option<Instant>>,
    last_failure: RefCell<String>,
    driver_running: Cell<bool>,
    shut_down: Cell<bool>,
    /// When the current connection last received a frame (`None`: nothing yet).
    last_received: Cell<Option<Instant>>,
    /// Set when a request timed out with nothing received since it was sent: the
    /// connection is half-open (the peer's host died without closing it); it is dropped.
    presumed_dead: Cell<bool>,
}

impl Peer {
    pub(crate) fn new(
        id: NodeId,
        address: SocketAddr,
        local: Rc<Hello>,
        limits: Rc<InternalLimits>,
    ) -> Peer {
        let outbox = Outbox::new(limits.peer_queue_frames_max, limits.peer_queue_bytes_max);
        Peer {
            id,
            address: Cell::new(address),
            local,
            limits,
            outbox,
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(1),
            unreachable_until: Cell::new(None),
            last_failure: RefCell::new(String::new()),
            driver_running: Cell::new(false),
            shut_down: Cell::new(false),
            last_received: Cell::new(None),
            presumed_dead: Cell::new(false),
        }
    }

    pub(crate) fn set_address(&self, address: SocketAddr) {
        self.address.set(address);
    }

    /// Forgets that the peer was found unreachable: the next send connects instead of
    /// failing at once for the rest of `unreachable_hold`.
    pub(crate) fn clear_unreachable(&self) {
        self.unreachable_until.set(None);
    }

    /// Queues a one-way message whose body of exactly `body_bytes` `write_body` encodes in
    /// place, into the frame that is sent (`internal_frame_with`); nothing is encoded when
    /// the peer cannot take it.
    pub(crate) fn send_with(
        self: &Rc<Self>,
        body_bytes: usize,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), InternalError> {
        self.check_sendable(body_bytes)?;
        self.push(internal_frame_with(OP_MESSAGE, 0, body_bytes, write_body))
    }

    /// Queues a request and waits for its response, at most `timeout`.
    pub(crate) async fn request(
        self: &Rc<Self>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, InternalError> {
        self.check_sendable(body.len())?;
        if self.pending.borrow().len() >= self.limits.peer_in_flight_max {
            return Err(InternalError::Overloaded {
                peer: self.id,
                what: "requests in flight",
            });
        }
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        self.push(internal_frame(OP_REQUEST, request_id, body))?;
        let (sender, receiver) = oneshot::channel();
        self.pending.borrow_mut().insert(request_id, sender);
        let sent_at = Instant::now();
        match monoio::time::timeout(timeout, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(oneshot::Canceled)) => Err(InternalError::Shutdown),
            Err(_) => {
                // A response arriving later finds no pending entry and is dropped.
                self.pending.borrow_mut().remove(&request_id);
                if timeout >= self.limits.dead_connection_silence
                    && self.last_received.get().is_none_or(|at| at < sent_at)
                {
                    self.presumed_dead.set(true);
                    self.outbox.wake();
                }
                Err(InternalError::Timeout {
                    peer: self.id,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    fn check_sendable(&self, bytes: usize) -> Result<(), InternalError> {
        if self.shut_down.get() {
            return Err(InternalError::Shutdown);
        }
        let max = self.limits.frame_body_bytes_max as usize;
        if bytes > max {
            return Err(InternalError::PayloadTooLarge { bytes, max });
        }
        if let Some(until) = self.unreachable_until.get() {
            if Instant::now() < until {
                return Err(self.unreachable());
            }
            self.unreachable_until.set(None);
        }
        Ok(())
    }

    fn unreachable(&self) -> InternalError {
        InternalError::Unreachable {
            peer: self.id,
            reason: self.last_failure.borrow().clone(),
        }
    }

    fn push(self: &Rc<Self>, frame: Bytes) -> Result<(), InternalError> {
        self.outbox
            .push(frame)
            .map_err(|full| InternalError::Overloaded {
                peer: self.id,
                what: match full {
                    PushError::FullFrames => "queued frames",
                    PushError::FullBytes => "queued bytes",
                },
            })?;
        if !self.driver_running.get() {
            self.driver_running.set(true);
            monoio::spawn(drive(self.clone()));
        }
        Ok(())
    }

    /// Fails every pending request with `Unreachable` (giving `reason`) and drops what is
    /// queued: nothing is resent on the next connection.
    fn fail_all(&self, reason: String) {
        self.outbox.clear();
        *self.last_failure.borrow_mut() = reason;
        let pending: Vec<ResponseSender> =
            self.pending.borrow_mut().drain().map(|(_, s)| s).collect();
        for sender in pending {
            let _ = sender.send(Err(self.unreachable()));
        }
    }

    /// Stops the driver; pending requests fail with `Shutdown`.
    pub(crate) fn shut_down(&self) {
        self.shut_down.set(true);
        self.outbox.clear();
        self.outbox.close();
        for (_, sender) in self.pending.borrow_mut().drain() {
            let _ = sender.send(Err(InternalError::Shutdown));
        }
    }

    /// Pairs a response (or a per-request error) with its pending request.
    fn settle(&self, request_id: u64, result: Result<Bytes, InternalError>) {
        match self.pending.borrow_mut().remove(&request_id) {
            Some(sender) => {
                let _ = sender.send(result);
            }
            None => {
                tracing::debug!(peer = %self.id, request_id, "late or unknown response dropped")
            }
        }
    }
}

/// The peer's driver: connect when there is something to send, run the connection until it
/// breaks, repeat; exits when the peer is shut down.
async fn drive(peer: Rc<Peer>) {
    loop {
        if peer.shut_down.get() {
            break;
        }
        // Wait for work without taking it: an empty peek-batch would consume frames.
        if !wait_for_work(&peer).await {
            break;
        }
        match connect(&peer).await {
            Ok((stream, buffer)) => {
                peer.unreachable_until.set(None);
                let reason = run_connection(&peer, stream, buffer).await;
                tracing::debug!(peer = %peer.id, %reason, "internal connection ended");
                peer.fail_all(format!("connection lost ({reason})"));
            }
            Err(error) => {
                tracing::debug!(peer = %peer.id, %error, "peer unreachable");
                peer.unreachable_until
                    .set(Some(Instant::now() + peer.limits.unreachable_hold));
                let (reason, refusal) = match error {
                    InternalError::Refused { message, .. } => (message.clone(), Some(message)),
                    other => (other.to_string(), None),
                };
                // Requests waiting on a refused hello learn the peer's words.
                if let Some(message) = refusal {
                    let pending: Vec<ResponseSender> =
                        peer.pending.borrow_mut().drain().map(|(_, s)| s).collect();
                    for sender in pending {
                        let _ = sender.send(Err(InternalError::Refused {
                            peer: peer.id,
                            message: message.clone(),
                        }));
                    }
                }
                peer.fail_all(reason);
            }
        }
    }
    peer.driver_running.set(false);
}

async fn wait_for_work(peer: &Peer) -> bool {
    std::future::poll_fn(|context| {
        if peer.outbox.is_closing() {
            return std::task::Poll::Ready(false);
        }
        if !peer.outbox.is_empty() {
            return std::task::Poll::Ready(true);
        }
        peer.outbox.register(context.waker());
        std::task::Poll::Pending
    })
    .await
}

/// Connects with bounded retries and backoff, then exchanges hellos. A refusal is final
/// (retrying cannot change a cluster name); socket errors are retried.
async fn connect(peer: &Peer) -> Result<(TcpStream, BytesMut), InternalError> {
    let limits = &peer.limits;
    let mut backoff = limits.connect_backoff_initial;
    let mut last_error = None;
    for attempt in 1..=limits.connect_attempts_max.max(1) {
        if attempt > 1 {
            monoio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(limits.connect_backoff_max);
        }
        let address = peer.address.get();
        let stream =
            match monoio::time::timeout(limits.connect_timeout, TcpStream::connect_addr(address))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    last_error = Some(InternalError::Unreachable {
                        peer: peer.id,
                        reason: format!("connecting to {address}: {error}"),
                    });
                    continue;
                }
                Err(_) => {
                    last_error = Some(InternalError::Unreachable {
                        peer: peer.id,
                        reason: format!("connecting to {address} timed out"),
                    });
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        match monoio::time::timeout(limits.hello_timeout, hello(peer, stream)).await {
            Ok(Ok(connected)) => return Ok(connected),
            Ok(Err(error @ InternalError::Refused { .. })) => return Err(error),
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => {
                last_error = Some(InternalError::Unreachable {
                    peer: peer.id,
                    reason: format!("no hello from {address} within {:?}", limits.hello_timeout),
                })
            }
        }
    }
    Err(last_error.unwrap_or_else(|| peer.unreachable()))
}

async fn hello(peer: &Peer, mut stream: TcpStream) -> Result<(TcpStream, BytesMut), InternalError> {
    write_bytes(
        &mut stream,
        internal_frame(OP_HELLO, 0, peer.local.encode()),
    )
    .await?;
    let mut buffer = BytesMut::new();
    // The hello runs under `hello_timeout`; nothing else stops it.
    let never = Signal::default();
    let frame = match read_frame(
        &mut stream,
        &mut buffer,
        peer.limits.hello_body_bytes_max,
        &never,
    )
    .await
    {
        Ok(frame) => frame,
        Err(ReadEnd::Closed) => {
            return Err(InternalError::Unreachable {
                peer: peer.id,
                reason: "closed during hello".into(),
            });
        }
        Err(ReadEnd::Bad(error)) => return Err(error),
    };
    match frame.opcode {
        OP_HELLO_ACCEPTED => {
            let theirs = Hello::decode(&frame.body)?;
            if theirs.node_id != peer.id && peer.id != super::SEED_PEER {
                return Err(InternalError::Refused {
                    peer: peer.id,
                    message: format!(
                        "{} answers as node {}, not {}",
                        peer.address.get(),
                        theirs.node_id,
                        peer.id
                    ),
                });
            }
            Ok((stream, buffer))
        }
        OP_ERROR => Err(InternalError::Refused {
            peer: peer.id,
            message: String::from_utf8_lossy(&frame.body).into_owned(),
        }),
        other => Err(InternalError::Malformed {
            what: "hello answer",
            reason: format!("opcode {other:#04x}"),
        }),
    }
}

/// Runs one established connection until it breaks; returns why it ended.
async fn run_connection(peer: &Rc<Peer>, stream: TcpStream, buffer: BytesMut) -> String {
    let (mut reader, mut writer) = stream.into_split();
    let broken: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let stop_reader = Rc::new(Signal::default());
    peer.last_received.set(None);
    peer.presumed_dead.set(false);
    let reader_task = monoio::spawn({
        let peer = peer.clone();
        let broken = broken.clone();
        let stop_reader = stop_reader.clone();
        async move {
            let mut buffer = buffer;
            let reason = loop {
                let frame = match read_frame(
                    &mut reader,
                    &mut buffer,
                    peer.limits.frame_body_bytes_max,
                    &stop_reader,
                )
                .await
                {
                    Ok(frame) => frame,
                    Err(ReadEnd::Closed) => break "closed by the peer".to_owned(),
                    Err(ReadEnd::Bad(error)) => break error.to_string(),
                };
                peer.last_received.set(Some(Instant::now()));
                match frame.opcode {
                    OP_RESPONSE => peer.settle(frame.request_id, Ok(frame.body)),
                    OP_ERROR if frame.request_id != 0 => {
                        let message = String::from_utf8_lossy(&frame.body).into_owned();
                        peer.settle(
                            frame.request_id,
                            Err(InternalError::Refused {
                                peer: peer.id,
                                message,
                            }),
                        );
                    }
                    OP_ERROR => {
                        break format!(
                            "the peer closed with: {}",
                            String::from_utf8_lossy(&frame.body)
                        );
                    }
                    other => break format!("unexpected opcode {other:#04x} from the peer"),
                }
            };
            *broken.borrow_mut() = Some(reason);
            peer.outbox.wake();
        }
    });
    let batch_max = peer.limits.write_batch_bytes_max;
    let reason = loop {
        let batch = peer
            .outbox
            .next_batch(batch_max, || {
                broken.borrow().is_some() || peer.presumed_dead.get()
            })
            .await;
        let Some(batch) = batch else {
            if peer.presumed_dead.get() {
                break "no frame received while a request timed out; presumed dead".to_owned();
            }
            break broken
                .borrow()
                .clone()
                .unwrap_or_else(|| "shut down".to_owned());
        };
        if let Err(error) = write_bytes(&mut writer, batch).await {
            break error.to_string();
        }
    };
    // Half-close so the peer ends its side, and stop our reader (its read is cancelled,
    // so the socket is closed now even if the peer never answers).
    let _ = writer.shutdown().await;
    stop_reader.fire();
    reader_task.await;
    reason
}
