//! Hand-made frames over a plain `std::net::TcpStream`, for the bad-input tests: garbage,
//! lying headers, unknown opcodes and malformed bodies that the SDK's clients refuse to
//! send. Responses are decoded only as far as the frame and its leading status.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use iotdb_net::frame::decode_frame;
use iotdb_net::{Frame, HEADER_BYTES, MAGIC, Opcode, PROTOCOL_VERSION, Request, StatusCode};

/// A hang guard for reads: a server that neither answers nor closes fails the test
/// instead of blocking it forever.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body this helper accepts (responses to bad input are small statuses).
const RESPONSE_BODY_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// One response frame, with its status decoded.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub opcode: u8,
    pub flags: u16,
    pub request_id: u64,
    pub status: StatusCode,
    pub message: String,
    pub body: Bytes,
}

/// A 24-byte frame header with arbitrary (possibly lying) fields.
pub fn header(opcode: u8, flags: u16, request_id: u64, body_length: u32, crc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(opcode);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&body_length.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A well-framed frame (correct length and checksum) around any body.
pub fn frame(opcode: u8, request_id: u64, body: &[u8]) -> Vec<u8> {
    let length = u32::try_from(body.len()).expect("test bodies are small");
    let mut out = header(opcode, 0, request_id, length, crc32c::crc32c(body));
    out.extend_from_slice(body);
    out
}

/// A connection that speaks frames byte by byte.
pub struct RawConnection {
    stream: TcpStream,
    buffer: BytesMut,
}

impl RawConnection {
    pub fn connect(address: SocketAddr) -> anyhow::Result<Self> {
        let stream =
            TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: BytesMut::new(),
        })
    }

    /// Writes bytes as they are. A reset by a server that already gave up on us is not an
    /// error here: the test looks at what the server answered.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self.stream.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error).context("writing raw bytes"),
        }
    }

    pub fn send_frame(&mut self, opcode: u8, request_id: u64, body: &[u8]) -> anyhow::Result<()> {
        self.send_bytes(&frame(opcode, request_id, body))
    }

    pub fn send_request(&mut self, request: &Request, request_id: u64) -> anyhow::Result<()> {
        self.send_frame(request.opcode() as u8, request_id, &request.encode_body())
    }

    /// Handshakes as `user`/`password`; returns the server's answer.
    pub fn handshake(&mut self, user: &str, password: &str) -> anyhow::Result<RawResponse> {
        let request = Request::Handshake(iotdb_net::Handshake {
            user: user.to_owned(),
            password: password.to_owned(),
            client_name: "raw-test".to_owned(),
            target_shard: None,
        });
        self.send_request(&request, 1)?;
        self.read_response()?
            .context("the server closed the connection instead of answering the handshake")
    }

    /// Handshakes as root/root and requires success.
    pub fn authenticate(&mut self) -> anyhow::Result<()> {
        let answer = self.handshake("root", "root")?;
        if answer.status != StatusCode::SUCCESS_STATUS {
            bail!("handshake refused: {} {}", answer.status, answer.message);
        }
        Ok(())
    }

    /// The next response frame, or `None` once the server closed the connection.
    pub fn read_response(&mut self) -> anyhow::Result<Option<RawResponse>> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buffer, RESPONSE_BODY_BYTES_MAX)
                .context("the server sent a malformed frame")?
            {
                return Ok(Some(parse_response(frame)?));
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => return Ok(None),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    bail!("the server neither answered nor closed within {READ_TIMEOUT:?}")
                }
                Err(error) => return Err(error).context("reading a response"),
            }
        }
    }

    /// Every frame until the server closes the connection.
    pub fn read_until_closed(&mut self) -> anyhow::Result<Vec<RawResponse>> {
        let mut responses = Vec::new();
        while let Some(response) = self.read_response()? {
            responses.push(response);
        }
        Ok(responses)
    }

    /// Sends a ping and requires a pong: the connection still works.
    pub fn ping(&mut self, request_id: u64) -> anyhow::Result<()> {
        self.send_frame(Opcode::Ping as u8, request_id, &[])?;
        let answer = self
            .read_response()?
            .context("the server closed the connection instead of answering a ping")?;
        if answer.request_id != request_id || answer.status != StatusCode::SUCCESS_STATUS {
            bail!("bad answer to ping {request_id}: {answer:?}");
        }
        Ok(())
    }
}

/// Decodes the status at the start of a response body.
fn parse_response(frame: Frame) -> anyhow::Result<RawResponse> {
    let body = frame.body.clone();
    if frame.body_crc32c != crc32c::crc32c(&body) {
        bail!("response frame with a bad checksum");
    }
    if body.len() < 8 {
        bail!("response body of {} bytes has no status", body.len());
    }
    let code = i32::from_le_bytes(body[0..4].try_into().expect("4 bytes"));
    let length = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes")) as usize;
    let message = body
        .get(8..8 + length)
        .context("status message runs past the body")?;
    Ok(RawResponse {
        opcode: frame.opcode,
        flags: frame.flags,
        request_id: frame.request_id,
        status: StatusCode(code),
        message: String::from_utf8_lossy(message).into_owned(),
        body,
    })
}

/// A body that is the right opcode's start but then stops (a truncated series list).
pub fn truncated_query_body() -> Bytes {
    let mut body = BytesMut::new();
    body.put_u32_le(1); // one series
    body.put_u32_le(1000); // a device name of 1000 bytes ...
    body.put_slice(b"root.x"); // ... of which 6 arrive
    body.freeze()
}
