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
//! at once and may finish in any order; beyond the cap the reader stops
//! reading (TCP back-pressure). The writer drains the outbox in batches, one
//! `write` per batch. A streaming handler waits when the outbox holds more
//! than `outbox_bytes_max`, so a slow client cannot make us buffer a whole
//! result.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::SliceMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller, Splitable,
};
use monoio::net::TcpStream;

use crate::error::{DecodeError, NetError};
use crate::frame::{FLAG_MORE, Frame, Opcode, decode_frame};
use crate::message::{
    Handshake, HandshakeAccepted, Request, ResponsePayload, ResponseResult, encode_response,
};
use crate::status::{Status, StatusCode};

/// Bytes asked of the kernel per socket read when the buffer has no room.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Failed handshakes tolerated on one connection before it is closed
/// (slows password guessing without punishing a typo).
pub const HANDSHAKE_ATTEMPTS_MAX: u32 = 3;

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
    /// Encoded response bytes queued for the socket before streaming handlers wait.
    pub outbox_bytes_max: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            frame_body_bytes_max: 64 * 1024 * 1024,
            unauthenticated_frame_body_bytes_max: 64 * 1024,
            in_flight_requests_max: 128,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            outbox_bytes_max: 16 * 1024 * 1024,
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
        )
        .await
        {
            Ok(frame) => frame,
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

/// Frames waiting for the writer task (connection-local; one shard thread).
struct Outbox {
    frames: RefCell<VecDeque<Bytes>>,
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

    /// Queues a frame; false once the connection is closing.
    fn push(&self, frame: &Frame) -> bool {
        if self.closed.get() {
            return false;
        }
        let bytes = frame.encode();
        self.queued_bytes.set(self.queued_bytes.get() + bytes.len());
        self.frames.borrow_mut().push_back(bytes);
        if let Some(waker) = self.writer_waker.borrow_mut().take() {
            waker.wake();
        }
        true
    }

    async fn wait_for_space(&self) {
        poll_fn(|context| {
            if self.closed.get() || self.queued_bytes.get() < self.queued_bytes_max {
                Poll::Ready(())
            } else {
                self.space_wakers.borrow_mut().push(context.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Everything queued, or `None` once closed and drained.
    async fn next_batch(&self) -> Option<Vec<Bytes>> {
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
}

/// Counts running handler tasks; the reader waits on it at the cap.
struct InFlight {
    count: Cell<usize>,
    max: usize,
    waker: RefCell<Option<Waker>>,
    last_activity: Cell<Instant>,
}

impl InFlight {
    async fn acquire(&self) {
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
        self.outbox.wait_for_space().await;
        let frame = response_frame(self.request_id, self.opcode, &Ok(payload), true);
        if self.outbox.push(&frame) {
            Ok(())
        } else {
            Err(NetError::Closed)
        }
    }
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
    let in_flight = Rc::new(InFlight {
        count: Cell::new(0),
        max: limits.in_flight_requests_max.max(1),
        waker: RefCell::new(None),
        last_activity: Cell::new(Instant::now()),
    });
    let end = loop {
        let deadline = ReadDeadline::Idle {
            in_flight: in_flight.clone(),
            idle: limits.idle_timeout,
        };
        let frame = match read_frame(
            &mut reader,
            &mut buffered,
            limits.frame_body_bytes_max,
            deadline,
        )
        .await
        {
            Ok(frame) => frame,
            Err(ReadEnd::Framing(error, request_id)) => {
                outbox.push(&error_frame(request_id, &error));
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
        in_flight.last_activity.set(Instant::now());
        let request = match check_request(&frame) {
            Ok(request) => request,
            Err(reply) => {
                outbox.push(&reply);
                continue;
            }
        };
        match request {
            Request::Ping => {
                outbox.push(&response_frame(
                    frame.request_id,
                    Opcode::Ping,
                    &Ok(ResponsePayload::Pong),
                    false,
                ));
            }
            Request::Handshake(_) => {
                let status = Status::illegal_parameter("already authenticated");
                outbox.push(&response_frame(
                    frame.request_id,
                    Opcode::Handshake,
                    &Err(status),
                    false,
                ));
            }
            request => {
                in_flight.acquire().await;
                let stream = ResponseStream {
                    outbox: outbox.clone(),
                    request_id: frame.request_id,
                    opcode: request.opcode(),
                };
                let handler = handler.clone();
                let session = session.clone();
                let in_flight = in_flight.clone();
                monoio::spawn(async move {
                    let response = handler.handle(&session, request, &stream).await;
                    stream.outbox.push(&response_frame(
                        stream.request_id,
                        stream.opcode,
                        &response,
                        false,
                    ));
                    in_flight.release();
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
        let total: usize = frames.iter().map(Bytes::len).sum();
        let buffer = if frames.len() == 1 {
            frames.into_iter().next().unwrap_or_default()
        } else {
            let mut joined = BytesMut::with_capacity(total);
            frames
                .iter()
                .for_each(|frame| joined.extend_from_slice(frame));
            joined.freeze()
        };
        let (result, _) = writer.write_all(buffer).await;
        outbox.written(total);
        if let Err(error) = result {
            tracing::debug!(%error, "client connection write failed");
            break;
        }
    }
    outbox.close();
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

enum ReadEnd {
    /// Framing lost; the request id if the header was readable.
    Framing(DecodeError, u64),
    Timeout,
    Closed,
    Io,
}

/// Reads until one whole frame is buffered. The socket read is never
/// abandoned half-way except when the connection is about to close, so no
/// received bytes are lost to a timer.
async fn read_frame<R: CancelableAsyncReadRent>(
    reader: &mut R,
    buffer: &mut BytesMut,
    body_bytes_max: u32,
    deadline: ReadDeadline,
) -> Result<Frame, ReadEnd> {
    loop {
        match decode_frame(buffer, body_bytes_max) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => {
                let request_id = if buffer.len() >= 16 {
                    u64::from_le_bytes(buffer[8..16].try_into().unwrap_or_default())
                } else {
                    0
                };
                let request_id = if matches!(error, DecodeError::FrameTooLarge { .. }) {
                    request_id
                } else {
                    0
                };
                return Err(ReadEnd::Framing(error, request_id));
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
