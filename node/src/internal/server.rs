//! The accepting side: the accept loop of an internal port and one task per inbound
//! connection.
//!
//! ```text
//!   accept ──▶ hello (small frame cap, hello_timeout) ──▶ cluster name checked
//!          ──▶ reader loop ──spawn per request (≤ inbound_in_flight_max)──▶ handler
//!                                       responses ──▶ Outbox ──▶ writer task ──▶ socket
//! ```
//!
//! Anything that is not the internal protocol (a client frame, garbage, a wrong version, a
//! frame over the limit) gets one error frame and the connection closes; the endpoint goes
//! on serving everyone else. A client frame gets its answer in the client protocol, so a
//! client pointed at the wrong port reads a clear error instead of a protocol mismatch.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use iotdb_net::internal_frame::{
    InternalFrameError, OP_ERROR, OP_HELLO, OP_HELLO_ACCEPTED, OP_MESSAGE, OP_REQUEST, OP_RESPONSE,
    internal_frame,
};
use iotdb_net::{Frame, Opcode, Status, StatusCode, encode_response};
use monoio::io::{AsyncWriteRent, Splitable};
use monoio::net::{TcpListener, TcpStream};

use super::endpoint::Shared;
use super::error::InternalError;
use super::hello::Hello;
use super::outbox::Outbox;
use super::wire::{ReadEnd, read_frame, write_bytes};

/// Accepts until the endpoint shuts down.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Rc<Shared>) {
    let connections = Rc::new(Cell::new(0usize));
    loop {
        let canceller = monoio::io::Canceller::new();
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let accepted = monoio::select! {
            accepted = &mut accept => accepted,
            _ = shared.stop.wait() => {
                // Cancel and await the accept so the kernel lets go of the listening socket
                // now (a dropped io_uring accept would keep the port bound).
                canceller.cancel();
                let _ = accept.await;
                break;
            }
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting on the internal port failed");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if connections.get() >= shared.limits.inbound_connections_max {
            tracing::warn!(%address, "too many internal connections; closing the new one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.set(connections.get() + 1);
        let shared = shared.clone();
        let connections = connections.clone();
        monoio::spawn(async move {
            if let Err(error) = serve_connection(stream, &shared).await {
                tracing::debug!(%address, %error, "internal connection closed");
            }
            connections.set(connections.get() - 1);
        });
    }
}

/// The bytes that refuse a connection: an internal error frame, or for a client-protocol
/// frame an error in the client protocol.
fn refusal(error: &InternalError) -> Bytes {
    if matches!(error, InternalError::Frame(InternalFrameError::ClientFrame)) {
        let status = Status::new(StatusCode::ILLEGAL_PARAMETER, error.to_string());
        return Frame::new(
            Opcode::Error.response_code(),
            0,
            0,
            encode_response(&Err(status)),
        )
        .encode();
    }
    internal_frame(OP_ERROR, 0, Bytes::from(error.to_string()))
}

async fn refuse(mut stream: TcpStream, error: InternalError) -> Result<(), InternalError> {
    let _ = write_bytes(&mut stream, refusal(&error)).await;
    let _ = stream.shutdown().await;
    Err(error)
}

async fn serve_connection(mut stream: TcpStream, shared: &Rc<Shared>) -> Result<(), InternalError> {
    let limits = shared.limits.clone();
    let mut buffer = BytesMut::new();
    let first = monoio::time::timeout(
        limits.hello_timeout,
        read_frame(
            &mut stream,
            &mut buffer,
            limits.hello_body_bytes_max,
            &shared.stop,
        ),
    )
    .await;
    let frame = match first {
        Err(_) => {
            return refuse(
                stream,
                InternalError::Malformed {
                    what: "hello",
                    reason: format!("none within {:?}", limits.hello_timeout),
                },
            )
            .await;
        }
        Ok(Err(ReadEnd::Closed)) => return Ok(()),
        Ok(Err(ReadEnd::Bad(error))) => return refuse(stream, error).await,
        Ok(Ok(frame)) => frame,
    };
    if frame.opcode != OP_HELLO {
        let error = InternalError::Malformed {
            what: "first frame",
            reason: format!("opcode {:#04x}, expected a hello", frame.opcode),
        };
        return refuse(stream, error).await;
    }
    let hello = match Hello::decode(&frame.body) {
        Ok(hello) => hello,
        Err(error) => return refuse(stream, error).await,
    };
    if hello.cluster_name != shared.local.cluster_name {
        let error = InternalError::Refused {
            peer: hello.node_id,
            message: format!(
                "cluster_name mismatch: node {} belongs to cluster '{}', this node ({}) to '{}'",
                hello.node_id, hello.cluster_name, shared.local.node_id, shared.local.cluster_name
            ),
        };
        let _ = write_bytes(
            &mut stream,
            internal_frame(
                OP_ERROR,
                0,
                Bytes::from(match &error {
                    InternalError::Refused { message, .. } => message.clone(),
                    other => other.to_string(),
                }),
            ),
        )
        .await;
        let _ = stream.shutdown().await;
        return Err(error);
    }
    write_bytes(
        &mut stream,
        internal_frame(OP_HELLO_ACCEPTED, 0, shared.local.encode()),
    )
    .await?;
    serve_peer(stream, buffer, hello, shared).await
}

/// Serves an authenticated peer until it closes or breaks the protocol.
async fn serve_peer(
    stream: TcpStream,
    mut buffer: BytesMut,
    hello: Hello,
    shared: &Rc<Shared>,
) -> Result<(), InternalError> {
    let limits = shared.limits.clone();
    let from = hello.node_id;
    let (mut reader, mut writer) = stream.into_split();
    // Responses are bounded by the in-flight limit; error frames add at most one.
    let outbox = Rc::new(Outbox::new(limits.inbound_in_flight_max + 1, usize::MAX));
    let writer_task = monoio::spawn({
        let outbox = outbox.clone();
        let batch_max = limits.write_batch_bytes_max;
        async move {
            while let Some(batch) = outbox.next_batch(batch_max, || false).await {
                if write_bytes(&mut writer, batch).await.is_err() {
                    outbox.clear();
                    return;
                }
            }
            let _ = writer.shutdown().await;
        }
    });
    let in_flight = Rc::new(Cell::new(0usize));
    let in_flight_waker = Rc::new(std::cell::RefCell::new(None::<std::task::Waker>));
    let result = loop {
        let frame = match read_frame(
            &mut reader,
            &mut buffer,
            limits.frame_body_bytes_max,
            &shared.stop,
        )
        .await
        {
            Ok(frame) => frame,
            Err(ReadEnd::Closed) => break Ok(()),
            Err(ReadEnd::Bad(error)) => {
                let _ = outbox.push(refusal(&error));
                break Err(error);
            }
        };
        match frame.opcode {
            OP_MESSAGE => shared.handler.on_message(from, frame.body),
            OP_REQUEST => {
                // Back-pressure: stop reading while the limit is reached.
                poll_fn(|context| {
                    if in_flight.get() < limits.inbound_in_flight_max {
                        Poll::Ready(())
                    } else {
                        *in_flight_waker.borrow_mut() = Some(context.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
                in_flight.set(in_flight.get() + 1);
                let response = shared.handler.handle_request(from, frame.body);
                let outbox = outbox.clone();
                let in_flight = in_flight.clone();
                let in_flight_waker = in_flight_waker.clone();
                let request_id = frame.request_id;
                monoio::spawn(async move {
                    let body = response.await;
                    if outbox
                        .push(internal_frame(OP_RESPONSE, request_id, body))
                        .is_err()
                    {
                        tracing::error!("internal response outbox over its in-flight bound");
                    }
                    in_flight.set(in_flight.get() - 1);
                    if let Some(waker) = in_flight_waker.borrow_mut().take() {
                        waker.wake();
                    }
                });
            }
            other => {
                let error = InternalError::Malformed {
                    what: "frame",
                    reason: format!("opcode {other:#04x} is not a request or message"),
                };
                let _ = outbox.push(refusal(&error));
                break Err(error);
            }
        }
    };
    outbox.close();
    let _ = writer_task.await;
    result
}
