//! Apache IoTDB's client RPC (`IClientRPCService`, Thrift) on the client port, beside the
//! native protocol, so IoTDB's own SDKs (Python `Session`/`SessionPool`, Java, Go, C++,
//! JDBC) work unchanged.
//!
//! ```text
//!  accept (datanode::handler) ─ first bytes ─┬─ "ITDB"                 ─▶ native protocol
//!                                            ├─ len(4) 0x80 0x01 ...   ─▶ Thrift binary  ┐
//!                                            └─ len(4) 0x82 ...        ─▶ Thrift compact ┴▶ serve()
//!  serve(): read a framed message (4-byte big-endian length) ─▶ service::Connection
//!           ─▶ the shard's write/SQL paths ─▶ framed reply; one call at a time (the
//!           Thrift clients are synchronous)
//! ```
//!
//! A Thrift connection runs on the shard that accepted it and uses the native connection
//! limits (`iotdb_net::ConnectionLimits`): a frame body of at most the pre-authentication cap
//! until `openSession` succeeds and of at most the frame size cap after, `openSession`
//! within the handshake timeout, the idle timeout, at most `HANDSHAKE_ATTEMPTS_MAX` failed
//! logins. A frame that breaks these limits or does not decode gets a Thrift
//! `TApplicationException` and the connection closes.
//!
//! The message structs are generated from `idl/client_rpc.thrift` by `regen.sh` into
//! `generated.rs` (committed); `input.rs` reads them with bounds checks, `insert.rs` turns
//! IoTDB's insert payloads into native tablets, `tsblock.rs` encodes query results.

#[allow(
    clippy::all,
    clippy::pedantic,
    dead_code,
    unused_imports,
    unused_extern_crates,
    non_camel_case_types,
    missing_debug_implementations
)]
#[rustfmt::skip]
pub mod generated;
pub mod input;
pub mod insert;
pub mod service;
pub mod tsblock;

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use monoio::buf::SliceMut;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

use crate::datanode::Shard;
use input::ThriftProtocol;
use iotdb_net::ConnectionLimits;

/// Bytes asked of the kernel per socket read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// The native protocol (frame magic `ITDB`), or bytes neither protocol starts with:
    /// the native path answers those with its bad-magic error.
    Native,
    Thrift(ThriftProtocol),
}

/// Tells the protocol from a connection's first bytes.
///
/// A native frame starts with the magic `ITDB`. A Thrift client's first message is its
/// `openSession` call in a framed transport: a 4-byte big-endian length, which is below the
/// 64 KiB pre-authentication cap (so its first two bytes are zero; `ITDB` read as a length
/// is over 1 GiB), then the strict binary header `80 01 00 01` (version 1, CALL) or the
/// compact header `82 21` (protocol id, version 1 with CALL). Anything else is left to the
/// native path, which answers it with its bad-magic error: random bytes are taken for
/// Thrift only with a chance of about 2^-32.
pub fn sniff(first: &[u8]) -> Sniffed {
    const BINARY_CALL: [u8; 4] = [0x80, 0x01, 0x00, 0x01];
    const COMPACT_CALL: [u8; 2] = [0x82, 0x21];
    if first.first().is_some_and(|b| *b != 0) || first.get(1).is_some_and(|b| *b != 0) {
        return Sniffed::Native;
    }
    if first.len() < 6 {
        return Sniffed::NeedMore;
    }
    if first[4..6] == COMPACT_CALL {
        return Sniffed::Thrift(ThriftProtocol::Compact);
    }
    if first[4..6] != BINARY_CALL[..2] {
        return Sniffed::Native;
    }
    if first.len() < 8 {
        return Sniffed::NeedMore;
    }
    if first[4..8] == BINARY_CALL {
        Sniffed::Thrift(ThriftProtocol::Binary)
    } else {
        Sniffed::Native
    }
}

/// Why a Thrift connection ended (for logs and tests).
#[derive(Debug, PartialEq, Eq)]
pub enum ThriftEnd {
    PeerClosed,
    /// `closeSession`'s client closed, or the server closed after an error reply.
    ClosedAfterError,
    HandshakeTimeout,
    IdleTimeout,
    Io,
}

/// Serves a Thrift connection whose first bytes (already read) are in `buffered`.
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    mut buffered: BytesMut,
    protocol: ThriftProtocol,
    handshake_deadline: Instant,
    limits: ConnectionLimits,
) -> ThriftEnd {
    let mut connection = service::Connection::new(shard, protocol, limits.frame_body_bytes_max);
    loop {
        let authenticated = connection.is_authenticated();
        let cap = if authenticated {
            limits.frame_body_bytes_max
        } else {
            limits.unauthenticated_frame_body_bytes_max
        } as usize;
        let deadline = if authenticated {
            Instant::now() + limits.idle_timeout
        } else {
            handshake_deadline
        };
        // The length word.
        if let Err(end) = fill(&mut stream, &mut buffered, 4, deadline, authenticated).await {
            return end;
        }
        let length = i32::from_be_bytes([buffered[0], buffered[1], buffered[2], buffered[3]]);
        if length <= 0 || length as usize > cap {
            let message = format!(
                "frame length {length} outside 1..={cap} bytes{}",
                if authenticated {
                    ""
                } else {
                    " (before openSession)"
                }
            );
            tracing::debug!(%message, "thrift framing lost; closing");
            let reply = frame_error(protocol, &message);
            let _ = stream.write_all(reply).await;
            let _ = stream.shutdown().await;
            return ThriftEnd::ClosedAfterError;
        }
        let total = 4 + length as usize;
        // After openSession a frame's bytes are charged to the server-wide request bytes
        // budget from its length word on, as native frames are (docs/protocol.md).
        let charged = if authenticated {
            match limits.request_bytes_budget.try_acquire(length as usize) {
                Some(charged) => Some(charged),
                None => {
                    if let Err(end) =
                        discard(&mut stream, &mut buffered, total, deadline, authenticated).await
                    {
                        return end;
                    }
                    let message = format!(
                        "overloaded: a frame of {length} bytes does not fit the server's \
                         in-flight request bytes budget ({} bytes); retry later",
                        limits.request_bytes_budget.max()
                    );
                    let _ = stream.write_all(frame_error(protocol, &message)).await;
                    let _ = stream.shutdown().await;
                    return ThriftEnd::ClosedAfterError;
                }
            }
        } else {
            None
        };
        if let Err(end) = fill(&mut stream, &mut buffered, total, deadline, authenticated).await {
            return end;
        }
        let frame = buffered.split_to(total);
        let outcome = connection.handle_frame(&frame[4..]).await;
        drop(frame);
        drop(charged);
        let (reply, close) = match outcome {
            service::Outcome::Continue(reply) => (reply, false),
            service::Outcome::Close(reply) => (reply, true),
        };
        if stream.write_all(reply).await.0.is_err() {
            return ThriftEnd::Io;
        }
        if close {
            let _ = stream.shutdown().await;
            return ThriftEnd::ClosedAfterError;
        }
        if buffered.is_empty() && buffered.capacity() > 4 * READ_CHUNK_BYTES {
            // Let a large request's buffer go once it is answered.
            buffered = BytesMut::new();
        }
    }
}

/// An exception message for a frame that could not be read (no method name or sequence).
fn frame_error(protocol: ThriftProtocol, message: &str) -> Vec<u8> {
    use thrift::protocol::{
        TBinaryOutputProtocol, TCompactOutputProtocol, TMessageIdentifier, TMessageType,
        TOutputProtocol,
    };
    let error = thrift::ApplicationError::new(
        thrift::ApplicationErrorKind::ProtocolError,
        message.to_owned(),
    );
    let mut frame = vec![0u8; 4];
    let write = |output: &mut dyn TOutputProtocol| -> thrift::Result<()> {
        output.write_message_begin(&TMessageIdentifier::new("", TMessageType::Exception, 0))?;
        thrift::Error::write_application_error_to_out_protocol(&error, output)?;
        output.write_message_end()?;
        output.flush()
    };
    let result = match protocol {
        ThriftProtocol::Binary => write(&mut TBinaryOutputProtocol::new(&mut frame, true)),
        ThriftProtocol::Compact => write(&mut TCompactOutputProtocol::new(&mut frame)),
    };
    assert!(result.is_ok(), "encoding a thrift exception failed");
    let length = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    frame
}

/// Reads until `buffered` holds at least `wanted` bytes, or the deadline passes.
async fn fill(
    stream: &mut TcpStream,
    buffered: &mut BytesMut,
    wanted: usize,
    deadline: Instant,
    authenticated: bool,
) -> Result<(), ThriftEnd> {
    while buffered.len() < wanted {
        match read_until(stream, buffered, wanted, deadline).await {
            ReadOutcome::Data => {}
            ReadOutcome::Closed => return Err(ThriftEnd::PeerClosed),
            ReadOutcome::Io => return Err(ThriftEnd::Io),
            ReadOutcome::Timeout => {
                let _ = stream.shutdown().await;
                return Err(if authenticated {
                    ThriftEnd::IdleTimeout
                } else {
                    ThriftEnd::HandshakeTimeout
                });
            }
        }
    }
    Ok(())
}

/// Reads and drops the first `bytes` of the stream (a frame refused by the budget), a
/// read at a time, never holding more than one read's worth.
async fn discard(
    stream: &mut TcpStream,
    buffered: &mut BytesMut,
    bytes: usize,
    deadline: Instant,
    authenticated: bool,
) -> Result<(), ThriftEnd> {
    let mut remaining = bytes;
    loop {
        let dropped = buffered.len().min(remaining);
        bytes::Buf::advance(buffered, dropped);
        remaining -= dropped;
        if remaining == 0 {
            return Ok(());
        }
        fill(stream, buffered, 1, deadline, authenticated).await?;
    }
}

/// Reads what the first bytes of a connection need to be told apart, bounded by the
/// handshake deadline. `Err` when the peer went away or the deadline passed.
pub async fn read_first_bytes(
    stream: &mut TcpStream,
    buffered: &mut BytesMut,
    deadline: Instant,
) -> Result<Sniffed, ThriftEnd> {
    loop {
        let sniffed = sniff(buffered);
        if sniffed != Sniffed::NeedMore {
            return Ok(sniffed);
        }
        let wanted = buffered.len() + 1;
        match read_until(stream, buffered, wanted, deadline).await {
            ReadOutcome::Data => {}
            ReadOutcome::Closed => return Err(ThriftEnd::PeerClosed),
            ReadOutcome::Io => return Err(ThriftEnd::Io),
            ReadOutcome::Timeout => return Err(ThriftEnd::HandshakeTimeout),
        }
    }
}

enum ReadOutcome {
    Data,
    Closed,
    Io,
    Timeout,
}

/// One socket read into `buffered`'s spare capacity, abandoned (cancelled and awaited, so
/// the kernel lets go of the buffer) at `deadline`.
async fn read_until(
    stream: &mut TcpStream,
    buffered: &mut BytesMut,
    wanted: usize,
    deadline: Instant,
) -> ReadOutcome {
    let spare = buffered.capacity() - buffered.len();
    let needed = wanted.saturating_sub(buffered.len());
    if spare < needed.clamp(1, READ_CHUNK_BYTES) || spare == 0 {
        // Grow in bounded steps: memory follows the bytes that arrive, not a declared length.
        buffered.reserve(needed.clamp(READ_CHUNK_BYTES, 4 * 1024 * 1024));
    }
    let length = buffered.len();
    let capacity = buffered.capacity();
    let canceller = Canceller::new();
    let read = stream.cancelable_read(
        SliceMut::new(std::mem::take(buffered), length, capacity),
        canceller.handle(),
    );
    let mut read = std::pin::pin!(read);
    let mut sleep = std::pin::pin!(monoio::time::sleep_until(deadline.into()));
    let mut timed_out = false;
    let (result, returned) = monoio::select! {
        outcome = &mut read => outcome,
        _ = &mut sleep => {
            timed_out = true;
            let _ = canceller.cancel();
            (&mut read).await
        }
    };
    *buffered = returned.into_inner();
    match result {
        Ok(0) if !timed_out => ReadOutcome::Closed,
        Ok(_) if !timed_out => ReadOutcome::Data,
        Ok(_) => ReadOutcome::Timeout,
        Err(_) if timed_out => ReadOutcome::Timeout,
        Err(error) => {
            tracing::debug!(%error, "thrift connection read failed");
            ReadOutcome::Io
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_both_protocols() {
        assert_eq!(sniff(b"ITDB\x01\x01"), Sniffed::Native);
        assert_eq!(sniff(b"I"), Sniffed::Native);
        assert_eq!(sniff(&[0, 0, 0]), Sniffed::NeedMore);
        assert_eq!(sniff(&[0, 0, 0, 40, 0x80, 0x01, 0x00]), Sniffed::NeedMore);
        assert_eq!(
            sniff(&[0, 0, 0, 40, 0x80, 0x01, 0x00, 0x01]),
            Sniffed::Thrift(ThriftProtocol::Binary)
        );
        assert_eq!(
            sniff(&[0, 0, 0, 40, 0x82, 0x21]),
            Sniffed::Thrift(ThriftProtocol::Compact)
        );
        // A reply or exception header, a large length, or other bytes: native.
        assert_eq!(
            sniff(&[0, 0, 0, 40, 0x80, 0x01, 0x00, 0x02]),
            Sniffed::Native
        );
        assert_eq!(
            sniff(&[0, 1, 0, 40, 0x80, 0x01, 0x00, 0x01]),
            Sniffed::Native
        );
        assert_eq!(sniff(&[0, 0, 0, 40, 0x00, 0x00]), Sniffed::Native);
        assert_eq!(sniff(b"GET / HTTP/1.1"), Sniffed::Native);
    }
}
