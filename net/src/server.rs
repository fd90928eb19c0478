//! Server-side connection handling, generic over a [`Handler`] (the node
//! implements it; this crate knows nothing of storage).
//!
//! One connection runs on one shard's thread as a small set of tasks:
//!
//! ```text
//!   socket ──read──▶ reader loop ──spawn per request──▶ handler task ─┐
//!                     (limits, timeouts,                              │ frames
//!                      error frames)                                  ▼
//!   socket ◀─write── writer task ◀──────────────────────────────── outbox
//! ```
//!
//! Requests are pipelined: up to `in_flight_requests_max` handler tasks run
//! at once and may finish in any order. The writer drains the outbox in
//! batches, one `write` per batch. Every buffer is bounded, so a client that
//! sends without reading, or announces more than it sends, costs a known amount
//! of memory (the figures are in `docs/protocol.md`):
//!
//! - **Outbox**: at most `outbox_bytes_max` queued bytes (or one frame larger
//!   than that when the outbox is empty). The reader does not read the next
//!   frame while the outbox is full, so pings and error replies, which the
//!   reader queues itself, cannot grow it; handlers wait for room before they
//!   queue a response, streamed or final.
//! - **Handler slots**: a request holds one of `in_flight_requests_max` slots
//!   from its decoding until its last response frame is *written* to the
//!   socket (not merely queued); at the cap the reader stops reading (TCP
//!   back-pressure).
//! - **Request bytes**: the body of every request, from its header's arrival
//!   until its handler returns, is charged to a budget shared by every
//!   connection of the server ([`RequestBytesBudget`]). A frame whose body does
//!   not fit is read and dropped as it arrives, never buffered, and answered
//!   606 (overloaded). The read buffer grows as bytes arrive; an announced
//!   body size is never reserved up front.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use monoio::buf::SliceMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller, Splitable,
};
use monoio::net::TcpStream;

use crate::error::{DecodeError, NetError};
use crate::frame::{FLAG_MORE, Frame, HEADER_BYTES, Opcode, decode_frame, parse_header};
use crate::message::{
    Handshake, HandshakeAccepted, Request, ResponsePayload, ResponseResult, encode_response,
};
use crate::status::{Status, StatusCode};

/// Bytes asked of the kernel per socket read when the buffer has no room.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Failed handshakes tolerated on one connection before it is closed
/// (slows password guessing without punishing a typo).
pub const HANDSHAKE_ATTEMPTS_MAX: u32 = 3;

/// Default of [`ConnectionLimits::outbox_bytes_max`].
///
/// Why 4 MiB: the kernel's socket send buffer tops out at 4 MiB by default
/// (`net.ipv4.tcp_wmem`), so more queued bytes per connection buy no
/// throughput, while a slow reader on each of the server's 1000 connections
/// could hold 1000 times this amount.
pub const OUTBOX_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;

/// Default of the server-wide budget of in-flight request bytes
/// ([`RequestBytesBudget`]).
///
/// Why 256 MiB: it admits four maximum-size (64 MiB) frames at once, or
/// thousands of ordinary insert frames (tens to hundreds of KiB) from every
/// pipelining client together, while capping what clients can make the server
/// hold in request bodies at a fraction of one region's memtable budget
/// (768 MiB), whatever the number of connections times their in-flight cap
/// (1000 × 128 × 64 MiB otherwise).
pub const REQUEST_BYTES_IN_FLIGHT_MAX_DEFAULT: usize = 256 * 1024 * 1024;

/// Request bodies shorter than this are copied out of the read buffer, so a
/// small request that waits in a handler does not pin a whole read chunk
/// (up to `READ_CHUNK_BYTES`) in memory; longer ones are handed on as a slice
/// of it, without a copy.
///
/// Why an eighth of a chunk: a request that outlives the others read into
/// its chunk pins at most eight times its own bytes, while an ordinary insert
/// (100 rows of 10 doubles, about 9 KiB) is not copied. Copying every body
/// under 16 KiB was 2-3 % of a DataNode's CPU under the standard workload
/// (the copy, and the fresh pages it touched), for bytes already in memory.
const BODY_COPY_BYTES_MAX: usize = READ_CHUNK_BYTES / 8;

/// A request body as the handler gets it: a copy if under [`BODY_COPY_BYTES_MAX`] (it no
/// longer holds the read chunk it came in), the slice of the chunk otherwise.
fn detached_if_small(body: Bytes) -> Bytes {
    if body.len() < BODY_COPY_BYTES_MAX {
        Bytes::copy_from_slice(&body)
    } else {
        body
    }
}

/// A budget of request bytes shared by every connection of a server (and by
/// every shard: it is an atomic counter behind an `Arc`; clones share it).
///
/// A request's body is charged from the moment its header arrives until its
/// handler returns; a frame whose body does not fit is answered 606
/// (overloaded) and its body is dropped as it arrives.
#[derive(Debug, Clone)]
pub struct RequestBytesBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    used: AtomicUsize,
    max: usize,
}

impl RequestBytesBudget {
    pub fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicUsize::new(0),
                max,
            }),
        }
    }

    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Bytes charged now, over all connections.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes`, or `None` when they do not fit. Zero bytes always fit
    /// (a ping is answered even when the budget is spent).
    pub fn try_acquire(&self, bytes: usize) -> Option<RequestBytes> {
        let mut used = self.inner.used.load(Ordering::Relaxed);
        loop {
            let total = used.checked_add(bytes)?;
            if bytes > 0 && total > self.inner.max {
                return None;
            }
            match self.inner.used.compare_exchange_weak(
                used,
                total,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(RequestBytes {
                        budget: self.inner.clone(),
                        bytes,
                    });
                }
                Err(actual) => used = actual,
            }
        }
    }
}

/// Bytes charged to a [`RequestBytesBudget`]; given back on drop.
#[derive(Debug)]
pub struct RequestBytes {
    budget: Arc<BudgetInner>,
    bytes: usize,
}

impl Drop for RequestBytes {
    fn drop(&mut self) {
        let before = self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        assert!(before >= self.bytes, "request bytes given back twice");
    }
}

/// Per-connection limits; see `docs/protocol.md`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Largest frame body accepted after authentication.
    pub frame_body_bytes_max: u32,
    /// Largest frame body accepted before authentication: an unauthenticated
    /// peer must not make us allocate much.
    pub unauthenticated_frame_body_bytes_max: u32,
    /// Requests handled concurrently on one connection.
    pub in_flight_requests_max: usize,
    /// Time from accept to a successful handshake.
    pub handshake_timeout: Duration,
    /// A connection with no frame received and nothing in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Encoded response bytes queued for the socket: at the bound the reader stops
    /// reading and handlers wait before queueing (one frame larger than the bound
    /// is let through when nothing else is queued).
    pub outbox_bytes_max: usize,
    /// In-flight request bytes of the whole server: clones share it, so a server
    /// passes clones of one `ConnectionLimits` to every connection.
    pub request_bytes_budget: RequestBytesBudget,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            frame_body_bytes_max: 64 * 1024 * 1024,
            unauthenticated_frame_body_bytes_max: 64 * 1024,
            in_flight_requests_max: 128,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            outbox_bytes_max: OUTBOX_BYTES_MAX_DEFAULT,
            request_bytes_budget: RequestBytesBudget::new(REQUEST_BYTES_IN_FLIGHT_MAX_DEFAULT),
        }
    }
}

/// An authenticated connection's identity, passed to every handler call.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub client_name: String,
    pub target_shard: Option<u32>,
    pub peer: Option<SocketAddr>,
    pub accepted: HandshakeAccepted,
}

/// What the node implements. Handlers run on the connection's shard thread
/// (hence `Rc`, no `Send`). [`Request::Ping`] is answered by the connection
/// itself and never reaches the handler; a handshake reaches
/// [`Handler::authenticate`] only.
pub trait Handler: 'static {
    /// Checks credentials; the returned value is sent to the client.
    fn authenticate(
        &self,
        handshake: &Handshake,
    ) -> impl Future<Output = Result<HandshakeAccepted, Status>>;

    /// Handles one request. Large results may be streamed: call
    /// [`ResponseStream::send_more`] for each partial payload, then return the
    /// last one. The payload kind must answer the request's opcode
    /// ([`ResponsePayload::answers`]), else the client gets a 305.
    fn handle(
        &self,
        session: &Session,
        request: Request,
        stream: &ResponseStream,
    ) -> impl Future<Output = ResponseResult>;
}

/// A connection that sent a handshake but is not yet authenticated. The node
/// may move it to the shard the handshake names (its fields are public: move
/// the socket's fd and `buffered` to the target shard, rebuild it there)
/// before calling [`serve_pending`].
#[derive(Debug)]
pub struct PendingConnection {
    pub stream: TcpStream,
    /// Bytes read past the handshake frame (a pipelining client's next requests).
    pub buffered: BytesMut,
    pub handshake: Handshake,
    pub request_id: u64,
    /// When the handshake phase must be over.
    pub deadline: Instant,
    /// Handshakes already rejected on this connection.
    pub failed_attempts: u32,
}

/// Why a connection ended (for the node's logs and tests).
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The peer closed the connection.
    PeerClosed,
    IdleTimeout,
    HandshakeTimeout,
    HandshakeRejected,
    /// Bad magic, version or length: framing lost.
    FramingLost,
    /// Socket error.
    Io,
}

/// Serves one client connection to the end: handshake, then requests.
pub async fn serve_connection<H: Handler>(
    stream: TcpStream,
    handler: Rc<H>,
    limits: ConnectionLimits,
) -> ConnectionEnd {
    let deadline = Instant::now() + limits.handshake_timeout;
    match accept_handshake(stream, BytesMut::new(), deadline, 0, &limits).await {
        Ok(pending) => serve_pending(pending, handler, limits).await,
        Err(end) => end,
    }
}

/// Reads frames until a handshake arrives, answering Ping and refusing other
/// requests with 802. Bounded by `deadline` and the small pre-auth frame cap.
pub async fn accept_handshake(
    mut stream: TcpStream,
    mut buffered: BytesMut,
    deadline: Instant,
    failed_attempts: u32,
    limits: &ConnectionLimits,
) -> Result<PendingConnection, ConnectionEnd> {
    loop {
        let frame = match read_frame(
            &mut stream,
            &mut buffered,
            limits.unauthenticated_frame_body_bytes_max,
            ReadDeadline::Fixed(deadline),
            None,
        )
        .await
        {
            Ok(ReadItem::Frame(frame, _)) => frame,
            Ok(ReadItem::Refused { .. }) => unreachable!("no budget, no refusal"),
            Err(ReadEnd::Framing(error, request_id)) => {
                let _ = stream
                    .write_all(error_frame(request_id, &error).encode())
                    .await;
                return Err(ConnectionEnd::FramingLost);
            }
            Err(ReadEnd::Timeout) => {
                let _ = stream.shutdown().await;
                return Err(ConnectionEnd::HandshakeTimeout);
            }
            Err(ReadEnd::Closed) => return Err(ConnectionEnd::PeerClosed),
            Err(ReadEnd::Io) => return Err(ConnectionEnd::Io),
        };
        let reply = match check_request(&frame) {
            Err(reply) => reply,
            Ok(Request::Handshake(handshake)) => {
                return Ok(PendingConnection {
                    stream,
                    buffered,
                    handshake,
                    request_id: frame.request_id,
                    deadline,
                    failed_attempts,
                });
            }
            Ok(Request::Ping) => response_frame(
                frame.request_id,
                Opcode::Ping,
                &Ok(ResponsePayload::Pong),
                false,
            ),
            Ok(request) => response_frame(
                frame.request_id,
                request.opcode(),
                &Err(Status::new(StatusCode::NOT_LOGIN, "handshake first")),
                false,
            ),
        };
        if stream.write_all(reply.encode()).await.0.is_err() {
            return Err(ConnectionEnd::Io);
        }
    }
}

/// Authenticates a pending connection and serves its requests.
pub async fn serve_pending<H: Handler>(
    pending: PendingConnection,
    handler: Rc<H>,
    limits: ConnectionLimits,
) -> ConnectionEnd {
    let mut pending = pending;
    let (session, stream, buffered) = loop {
        let result = handler.authenticate(&pending.handshake).await;
        let reply = match &result {
            Ok(accepted) => Ok(ResponsePayload::Handshake(*accepted)),
            Err(status) => Err(status.clone()),
        };
        let frame = response_frame(pending.request_id, Opcode::Handshake, &reply, false);
        if pending.stream.write_all(frame.encode()).await.0.is_err() {
            return ConnectionEnd::Io;
        }
        match result {
            Ok(accepted) => {
                let session = Session {
                    user: pending.handshake.user,
                    client_name: pending.handshake.client_name,
                    target_shard: pending.handshake.target_shard,
                    peer: pending.stream.peer_addr().ok(),
                    accepted,
                };
                break (session, pending.stream, pending.buffered);
            }
            Err(_) if pending.failed_attempts + 1 >= HANDSHAKE_ATTEMPTS_MAX => {
                return ConnectionEnd::HandshakeRejected;
            }
            Err(_) => {
                match accept_handshake(
                    pending.stream,
                    pending.buffered,
                    pending.deadline,
                    pending.failed_attempts + 1,
                    &limits,
                )
                .await
                {
                    Ok(next) => pending = next,
                    Err(end) => return end,
                }
            }
        }
    };
    serve_session(stream, buffered, Rc::new(session), handler, limits).await
}

/// Decodes a well-framed request, or builds the error reply that keeps the
/// connection usable.
fn check_request(frame: &Frame) -> Result<Request, Frame> {
    if let Err(error) = frame.verify_checksum() {
        let opcode = Opcode::from_u8(frame.opcode)
            .map_or(Opcode::Error.response_code(), Opcode::response_code);
        return Err(status_frame(
            frame.request_id,
            opcode,
            &Status::illegal_parameter(error.to_string()),
        ));
    }
    let opcode = match Opcode::from_u8(frame.opcode) {
        Some(opcode) if opcode != Opcode::Error && !frame.is_response() => opcode,
        _ => {
            return Err(status_frame(
                frame.request_id,
                Opcode::Error.response_code(),
                &Status::new(
                    StatusCode::UNSUPPORTED_OPERATION,
                    format!("unknown opcode {:#04x}", frame.opcode),
                ),
            ));
        }
    };
    Request::decode(opcode, frame.body.clone()).map_err(|error| {
        status_frame(
            frame.request_id,
            opcode.response_code(),
            &Status::illegal_parameter(error.to_string()),
        )
    })
}

fn status_frame(request_id: u64, opcode_byte: u8, status: &Status) -> Frame {
    Frame::new(
        opcode_byte,
        0,
        request_id,
        encode_response(&Err(status.clone())),
    )
}

fn error_frame(request_id: u64, error: &DecodeError) -> Frame {
    let code = match error {
        DecodeError::BadVersion { .. } => StatusCode::INCOMPATIBLE_VERSION,
        _ => StatusCode::ILLEGAL_PARAMETER,
    };
    status_frame(
        request_id,
        Opcode::Error.response_code(),
        &Status::new(code, error.to_string()),
    )
}

/// Builds a response frame, replacing a payload that does not answer the
/// request (a handler bug) with a 305 rather than confusing the client.
fn response_frame(request_id: u64, opcode: Opcode, response: &ResponseResult, more: bool) -> Frame {
    let checked;
    let response = match response {
        Ok(payload) if !payload.answers(opcode) => {
            tracing::error!(?opcode, "handler answered with the wrong payload kind");
            checked = Err(Status::internal(format!(
                "handler answered {opcode:?} with the wrong payload kind"
            )));
            &checked
        }
        Ok(payload) => match payload.validate() {
            Ok(()) => response,
            Err(reason) => {
                checked = Err(Status::internal(format!(
                    "handler built an invalid payload: {reason}"
                )));
                &checked
            }
        },
        Err(_) => response,
    };
    let flags = if more && response.is_ok() {
        FLAG_MORE
    } else {
        0
    };
    Frame::new(
        opcode.response_code(),
        flags,
        request_id,
        encode_response(response),
    )
}

/// One queued frame and, for a request's last frame, the handler slot it
/// releases once written.
struct Queued {
    bytes: Bytes,
    /// Dropping it (after the write) releases the slot.
    slot: Option<HandlerSlot>,
}

/// Frames waiting for the writer task (connection-local; one shard thread).
struct Outbox {
    frames: RefCell<VecDeque<Queued>>,
    queued_bytes: Cell<usize>,
    queued_bytes_max: usize,
    closed: Cell<bool>,
    writer_waker: RefCell<Option<Waker>>,
    space_wakers: RefCell<Vec<Waker>>,
}

impl Outbox {
    fn new(queued_bytes_max: usize) -> Self {
        Self {
            frames: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            queued_bytes_max,
            closed: Cell::new(false),
            writer_waker: RefCell::new(None),
            space_wakers: RefCell::new(Vec::new()),
        }
    }

    /// Queues a frame (with the handler slot its writing releases); false once
    /// the connection is closing, and then the slot is released at once. Never
    /// waits: callers wait for [`Outbox::wait_for_space`] first, which is what
    /// bounds the queue.
    fn push(&self, frame: &Frame, slot: Option<HandlerSlot>) -> bool {
        if self.closed.get() {
            return false;
        }
        let bytes = frame.encode();
        self.queued_bytes.set(self.queued_bytes.get() + bytes.len());
        self.frames.borrow_mut().push_back(Queued { bytes, slot });
        if let Some(waker) = self.writer_waker.borrow_mut().take() {
            waker.wake();
        }
        true
    }

    /// Whether `bytes` more may be queued: they fit under the bound, or the
    /// outbox is empty (one frame larger than the bound goes out alone).
    fn has_room_for(&self, bytes: usize) -> bool {
        let queued = self.queued_bytes.get();
        queued == 0 || queued.saturating_add(bytes) <= self.queued_bytes_max
    }

    /// Waits until [`Outbox::has_room_for`] `bytes`; false once closed.
    async fn wait_for_space(&self, bytes: usize) -> bool {
        poll_fn(|context| {
            if self.closed.get() {
                Poll::Ready(false)
            } else if self.has_room_for(bytes) {
                Poll::Ready(true)
            } else {
                self.space_wakers.borrow_mut().push(context.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Everything queued, or `None` once closed and drained.
    async fn next_batch(&self) -> Option<Vec<Queued>> {
        poll_fn(|context| {
            let mut frames = self.frames.borrow_mut();
            if !frames.is_empty() {
                return Poll::Ready(Some(frames.drain(..).collect()));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            *self.writer_waker.borrow_mut() = Some(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn written(&self, bytes: usize) {
        self.queued_bytes.set(self.queued_bytes.get() - bytes);
        for waker in self.space_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    fn close(&self) {
        self.closed.set(true);
        if let Some(waker) = self.writer_waker.borrow_mut().take() {
            waker.wake();
        }
        for waker in self.space_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Closes and drops what was not written (the writer failed), releasing
    /// the handler slots those frames held.
    fn close_and_discard(&self) {
        self.close();
        let dropped: Vec<Queued> = self.frames.borrow_mut().drain(..).collect();
        let bytes: usize = dropped.iter().map(|queued| queued.bytes.len()).sum();
        drop(dropped);
        self.written(bytes);
    }
}

/// Counts handler slots in use; the reader waits on it at the cap.
struct InFlight {
    count: Cell<usize>,
    max: usize,
    waker: RefCell<Option<Waker>>,
    last_activity: Cell<Instant>,
}

/// One of a connection's `in_flight_requests_max` slots, held from a request's
/// decoding until its last response frame is written (or dropped with the
/// connection); released on drop.
struct HandlerSlot(Rc<InFlight>);

impl Drop for HandlerSlot {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl InFlight {
    fn new(max: usize) -> Self {
        Self {
            count: Cell::new(0),
            max: max.max(1),
            waker: RefCell::new(None),
            last_activity: Cell::new(Instant::now()),
        }
    }

    async fn acquire(self: &Rc<Self>) -> HandlerSlot {
        poll_fn(|context| {
            if self.count.get() < self.max {
                self.count.set(self.count.get() + 1);
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await;
        HandlerSlot(self.clone())
    }

    fn release(&self) {
        assert!(
            self.count.get() > 0,
            "released more handler slots than acquired"
        );
        self.count.set(self.count.get() - 1);
        self.last_activity.set(Instant::now());
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    async fn drained(&self) {
        poll_fn(|context| {
            if self.count.get() == 0 {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// Lets a handler stream partial results before returning the last one.
pub struct ResponseStream {
    outbox: Rc<Outbox>,
    request_id: u64,
    opcode: Opcode,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResponseStream")
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl ResponseStream {
    /// Sends one partial payload (a frame with the MORE flag). Waits while the
    /// connection's outbox is full; fails once the connection is closing, at
    /// which point the handler should stop.
    pub async fn send_more(&self, payload: ResponsePayload) -> Result<(), NetError> {
        let frame = response_frame(self.request_id, self.opcode, &Ok(payload), true);
        if self.outbox.wait_for_space(frame.body.len()).await && self.outbox.push(&frame, None) {
            Ok(())
        } else {
            Err(NetError::Closed)
        }
    }

    /// Queues the request's last frame once there is room; its writing
    /// releases `slot`.
    async fn finish(&self, response: &ResponseResult, slot: HandlerSlot) {
        let frame = response_frame(self.request_id, self.opcode, response, false);
        if self.outbox.wait_for_space(frame.body.len()).await {
            self.outbox.push(&frame, Some(slot));
        }
    }
}

/// The answer to a request whose body did not fit the server's request bytes budget.
fn overloaded_frame(request_id: u64, opcode: u8, body_length: u32, budget: usize) -> Frame {
    let opcode_byte = Opcode::from_u8(opcode)
        .filter(|opcode| *opcode != Opcode::Error)
        .map_or(Opcode::Error.response_code(), Opcode::response_code);
    status_frame(
        request_id,
        opcode_byte,
        &Status::new(
            StatusCode::WRITE_PROCESS_REJECT,
            format!(
                "overloaded: a request body of {body_length} bytes does not fit the server's \
                 in-flight request bytes budget ({budget} bytes); retry later"
            ),
        ),
    )
}

async fn serve_session<H: Handler>(
    stream: TcpStream,
    mut buffered: BytesMut,
    session: Rc<Session>,
    handler: Rc<H>,
    limits: ConnectionLimits,
) -> ConnectionEnd {
    let (mut reader, writer) = stream.into_split();
    let outbox = Rc::new(Outbox::new(limits.outbox_bytes_max));
    let writer_task = monoio::spawn(write_loop(writer, outbox.clone()));
    let in_flight = Rc::new(InFlight::new(limits.in_flight_requests_max));
    let budget = limits.request_bytes_budget.clone();
    let end = loop {
        // A full outbox stops the reading: the client takes its answers
        // before it may ask for more, and the replies the reader queues itself
        // (pings, errors) add at most one frame past the bound.
        if !outbox.wait_for_space(1).await {
            break ConnectionEnd::Io;
        }
        let deadline = ReadDeadline::Idle {
            in_flight: in_flight.clone(),
            idle: limits.idle_timeout,
        };
        let read = read_frame(
            &mut reader,
            &mut buffered,
            limits.frame_body_bytes_max,
            deadline,
            Some(&budget),
        )
        .await;
        in_flight.last_activity.set(Instant::now());
        let (frame, charged) = match read {
            Ok(ReadItem::Frame(frame, charged)) => (frame, charged),
            Ok(ReadItem::Refused {
                request_id,
                opcode,
                body_length,
            }) => {
                let reply = overloaded_frame(request_id, opcode, body_length, budget.max());
                outbox.push(&reply, None);
                continue;
            }
            Err(ReadEnd::Framing(error, request_id)) => {
                outbox.push(&error_frame(request_id, &error), None);
                break ConnectionEnd::FramingLost;
            }
            Err(ReadEnd::Timeout) => break ConnectionEnd::IdleTimeout,
            Err(ReadEnd::Closed) => {
                // Half-close: finish what is in flight so its responses go out.
                in_flight.drained().await;
                break ConnectionEnd::PeerClosed;
            }
            Err(ReadEnd::Io) => break ConnectionEnd::Io,
        };
        let request = match check_request(&frame) {
            Ok(request) => request,
            Err(reply) => {
                outbox.push(&reply, None);
                continue;
            }
        };
        match request {
            Request::Ping => {
                let reply = response_frame(
                    frame.request_id,
                    Opcode::Ping,
                    &Ok(ResponsePayload::Pong),
                    false,
                );
                outbox.push(&reply, None);
            }
            Request::Handshake(_) => {
                let status = Status::illegal_parameter("already authenticated");
                let reply =
                    response_frame(frame.request_id, Opcode::Handshake, &Err(status), false);
                outbox.push(&reply, None);
            }
            request => {
                let slot = in_flight.acquire().await;
                let stream = ResponseStream {
                    outbox: outbox.clone(),
                    request_id: frame.request_id,
                    opcode: request.opcode(),
                };
                drop(frame);
                let handler = handler.clone();
                let session = session.clone();
                monoio::spawn(async move {
                    let response = handler.handle(&session, request, &stream).await;
                    // The request's body is gone with the handler's future.
                    drop(charged);
                    stream.finish(&response, slot).await;
                });
            }
        }
    };
    outbox.close();
    writer_task.await;
    end
}

async fn write_loop<W: AsyncWriteRent>(mut writer: W, outbox: Rc<Outbox>) {
    while let Some(frames) = outbox.next_batch().await {
        let total: usize = frames.iter().map(|queued| queued.bytes.len()).sum();
        // The slots stay held until the write completes; the frames' bytes go as
        // soon as they are joined, so a batch is never in memory twice.
        let mut slots = Vec::with_capacity(frames.len());
        let buffer = if frames.len() == 1 {
            let Queued { bytes, slot } = frames.into_iter().next().expect("one frame");
            slots.push(slot);
            bytes
        } else {
            let mut joined = BytesMut::with_capacity(total);
            for Queued { bytes, slot } in frames {
                joined.extend_from_slice(&bytes);
                slots.push(slot);
            }
            joined.freeze()
        };
        let (result, _) = writer.write_all(buffer).await;
        // Written: the requests these frames finish give back their slots.
        drop(slots);
        outbox.written(total);
        if let Err(error) = result {
            tracing::debug!(%error, "client connection write failed");
            break;
        }
    }
    outbox.close_and_discard();
    let _ = writer.shutdown().await;
}

enum ReadDeadline {
    /// Give up at this instant (handshake phase).
    Fixed(Instant),
    /// Give up once nothing was received and nothing was in flight for `idle`.
    Idle {
        in_flight: Rc<InFlight>,
        idle: Duration,
    },
}

/// What [`read_frame`] read.
enum ReadItem {
    /// A whole frame, with the request bytes charged for its body.
    Frame(Frame, Option<RequestBytes>),
    /// A frame whose body did not fit the budget: its body was read and dropped.
    Refused {
        request_id: u64,
        opcode: u8,
        body_length: u32,
    },
}

enum ReadEnd {
    /// Framing lost; the request id if the header was readable.
    Framing(DecodeError, u64),
    Timeout,
    Closed,
    Io,
}

/// A frame being received: its header was read, its body is charged (or refused).
enum Receiving {
    Header,
    Body(Option<RequestBytes>),
    Dropping {
        request_id: u64,
        opcode: u8,
        body_length: u32,
        remaining: usize,
    },
}

/// Reads until one whole frame is buffered. The socket read is never
/// abandoned half-way except when the connection is about to close, so no
/// received bytes are lost to a timer.
///
/// With a `budget`, a frame's body is charged to it as soon as its header is
/// buffered; a body that does not fit is read and dropped chunk by chunk and
/// reported as [`ReadItem::Refused`]. The buffer grows as bytes arrive, a read
/// chunk at a time (amortised doubling), never by the announced body size.
async fn read_frame<R: CancelableAsyncReadRent>(
    reader: &mut R,
    buffer: &mut BytesMut,
    body_bytes_max: u32,
    deadline: ReadDeadline,
    budget: Option<&RequestBytesBudget>,
) -> Result<ReadItem, ReadEnd> {
    let mut receiving = Receiving::Header;
    loop {
        if let Receiving::Dropping {
            request_id,
            opcode,
            body_length,
            remaining,
        } = &mut receiving
        {
            let dropped = buffer.len().min(*remaining);
            buffer.advance(dropped);
            *remaining -= dropped;
            if *remaining == 0 {
                return Ok(ReadItem::Refused {
                    request_id: *request_id,
                    opcode: *opcode,
                    body_length: *body_length,
                });
            }
        } else if buffer.len() >= HEADER_BYTES {
            let header = match parse_header(&buffer[..HEADER_BYTES], body_bytes_max) {
                Ok(header) => header,
                Err(error) => {
                    let request_id = if matches!(error, DecodeError::FrameTooLarge { .. }) {
                        u64::from_le_bytes(buffer[8..16].try_into().unwrap_or_default())
                    } else {
                        0
                    };
                    return Err(ReadEnd::Framing(error, request_id));
                }
            };
            let body_length = header.body_length.get();
            if let (Receiving::Header, Some(budget)) = (&receiving, budget) {
                match budget.try_acquire(body_length as usize) {
                    Some(charged) => receiving = Receiving::Body(Some(charged)),
                    None => {
                        buffer.advance(HEADER_BYTES);
                        receiving = Receiving::Dropping {
                            request_id: header.request_id.get(),
                            opcode: header.opcode,
                            body_length,
                            remaining: body_length as usize,
                        };
                        continue;
                    }
                }
            }
            match decode_frame(buffer, body_bytes_max) {
                Ok(Some(mut frame)) => {
                    frame.body = detached_if_small(frame.body);
                    let charged = match receiving {
                        Receiving::Body(charged) => charged,
                        _ => None,
                    };
                    return Ok(ReadItem::Frame(frame, charged));
                }
                Ok(None) => {}
                Err(error) => return Err(ReadEnd::Framing(error, 0)),
            }
        }
        if buffer.capacity() - buffer.len() < READ_CHUNK_BYTES / 4 {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        let canceller = Canceller::new();
        let read =
            reader.cancelable_read(spare_capacity(std::mem::take(buffer)), canceller.handle());
        let mut read = std::pin::pin!(read);
        let mut timed_out = false;
        let (result, returned) = loop {
            let wake_at = match &deadline {
                ReadDeadline::Fixed(instant) => *instant,
                ReadDeadline::Idle { in_flight, idle } => in_flight.last_activity.get() + *idle,
            };
            let mut sleep = std::pin::pin!(monoio::time::sleep_until(wake_at.into()));
            monoio::select! {
                outcome = &mut read => break outcome,
                _ = &mut sleep => {
                    let expired = match &deadline {
                        ReadDeadline::Fixed(_) => true,
                        ReadDeadline::Idle { in_flight, idle } => {
                            if in_flight.count.get() > 0 {
                                in_flight.last_activity.set(Instant::now());
                            }
                            in_flight.count.get() == 0 && in_flight.last_activity.get().elapsed() >= *idle
                        }
                    };
                    if expired {
                        // Cancel and await the read so the kernel lets go of the
                        // socket now (a dropped io_uring read would pin it open).
                        timed_out = true;
                        let _ = canceller.cancel();
                        break (&mut read).await;
                    }
                }
            }
        };
        if timed_out {
            return Err(ReadEnd::Timeout);
        }
        *buffer = returned.into_inner();
        match result {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "client connection read failed");
                return Err(ReadEnd::Io);
            }
        }
    }
}

/// monoio reads into a `BytesMut` from its start; this view makes a read
/// append after the bytes already buffered instead.
fn spare_capacity(buffer: BytesMut) -> SliceMut<BytesMut> {
    let (length, capacity) = (buffer.len(), buffer.capacity());
    debug_assert!(length < capacity, "callers reserve before reading");
    SliceMut::new(buffer, length, capacity)
}

/// Reads one frame without timeouts (the async client's read path).
pub(crate) async fn read_frame_plain<R: AsyncReadRent>(
    reader: &mut R,
    buffer: &mut BytesMut,
    body_bytes_max: u32,
) -> Result<Frame, NetError> {
    loop {
        if let Some(frame) = decode_frame(buffer, body_bytes_max)? {
            return Ok(frame);
        }
        if buffer.capacity() - buffer.len() < READ_CHUNK_BYTES / 4 {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        let (result, returned) = reader.read(spare_capacity(std::mem::take(buffer))).await;
        *buffer = returned.into_inner();
        match result {
            Ok(0) => return Err(NetError::Closed),
            Ok(_) => {}
            Err(error) => return Err(NetError::io("reading a frame", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::Context;

    /// Polls a future once with a waker that does nothing.
    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut context = Context::from_waker(Waker::noop());
        pin!(future).poll(&mut context)
    }

    fn frame_of(body_bytes: usize) -> Frame {
        Frame::new(
            Opcode::Ping.response_code(),
            0,
            1,
            Bytes::from(vec![0; body_bytes]),
        )
    }

    #[test]
    fn small_bodies_leave_the_read_chunk_and_large_ones_stay_in_it() {
        let chunk = Bytes::from(vec![7u8; READ_CHUNK_BYTES]);
        let small = chunk.slice(100..100 + BODY_COPY_BYTES_MAX - 1);
        let copied = detached_if_small(small.clone());
        assert_eq!(copied, small);
        assert_ne!(
            copied.as_ptr(),
            small.as_ptr(),
            "a small body is copied out"
        );
        // An ordinary insert (100 rows of 10 doubles, about 9 KiB) is not copied.
        for len in [BODY_COPY_BYTES_MAX, 9 * 1024, READ_CHUNK_BYTES - 200] {
            let large = chunk.slice(200..200 + len);
            assert_eq!(detached_if_small(large.clone()).as_ptr(), large.as_ptr());
        }
    }

    #[test]
    fn a_full_outbox_makes_the_reader_and_handlers_wait() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(&frame_of(56), None), "80 bytes queued");
        assert_eq!(poll_once(outbox.wait_for_space(1)), Poll::Ready(true));
        assert_eq!(
            poll_once(outbox.wait_for_space(30)),
            Poll::Pending,
            "80 + 30 > 100"
        );
        assert!(
            outbox.push(&frame_of(56), None),
            "the reader's one reply past the bound"
        );
        assert_eq!(poll_once(outbox.wait_for_space(1)), Poll::Pending);
        let batch = poll_once(outbox.next_batch());
        let Poll::Ready(Some(batch)) = batch else {
            panic!("two frames were queued")
        };
        outbox.written(batch.iter().map(|queued| queued.bytes.len()).sum());
        assert_eq!(poll_once(outbox.wait_for_space(1)), Poll::Ready(true));
        // One frame larger than the bound goes out alone.
        assert_eq!(poll_once(outbox.wait_for_space(1000)), Poll::Ready(true));
        outbox.close();
        assert_eq!(poll_once(outbox.wait_for_space(1)), Poll::Ready(false));
    }

    #[test]
    fn a_handler_slot_is_released_when_its_response_is_written_not_queued() {
        let in_flight = Rc::new(InFlight::new(1));
        let outbox = Outbox::new(1 << 20);
        let Poll::Ready(slot) = poll_once(in_flight.acquire()) else {
            panic!("the first slot is free")
        };
        assert!(outbox.push(&frame_of(8), Some(slot)));
        assert_eq!(in_flight.count.get(), 1, "queued, not written: still held");
        assert!(poll_once(in_flight.acquire()).is_pending());
        let Poll::Ready(Some(batch)) = poll_once(outbox.next_batch()) else {
            panic!("one frame was queued")
        };
        assert_eq!(
            in_flight.count.get(),
            1,
            "taken by the writer, not yet written"
        );
        drop(batch);
        assert_eq!(in_flight.count.get(), 0, "written: released");
    }

    #[test]
    fn a_closed_outbox_releases_the_slots_of_unwritten_frames() {
        let in_flight = Rc::new(InFlight::new(2));
        let outbox = Outbox::new(1 << 20);
        let Poll::Ready(first) = poll_once(in_flight.acquire()) else {
            panic!("free")
        };
        let Poll::Ready(second) = poll_once(in_flight.acquire()) else {
            panic!("free")
        };
        assert!(outbox.push(&frame_of(8), Some(first)));
        outbox.close_and_discard();
        assert_eq!(in_flight.count.get(), 1);
        assert_eq!(outbox.queued_bytes.get(), 0);
        assert!(!outbox.push(&frame_of(8), Some(second)), "closed");
        assert_eq!(in_flight.count.get(), 0, "a refused push releases at once");
    }

    #[test]
    fn the_request_bytes_budget_is_shared_and_given_back() {
        let budget = RequestBytesBudget::new(1000);
        let clone = budget.clone();
        let first = budget.try_acquire(600).expect("fits");
        assert!(clone.try_acquire(500).is_none(), "600 + 500 > 1000");
        let second = clone.try_acquire(400).expect("fits exactly");
        assert_eq!(budget.used(), 1000);
        assert!(budget.try_acquire(0).is_some(), "zero bytes always fit");
        assert!(budget.try_acquire(usize::MAX).is_none());
        drop(first);
        assert_eq!(clone.used(), 400);
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
