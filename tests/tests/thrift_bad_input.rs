//! Hostile bytes on the Thrift side of the client port: truncated frames, lying lengths
//! (frame, string, list), wrong field types, calls before `openSession`, unknown methods.
//! Each gets a Thrift exception (or a status) and, where the bytes cannot be trusted, a
//! closed connection; the server never panics and its RSS stays bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use iotdb_tests::{TestServer, server_options};

/// RSS growth tolerated across the flood of hostile connections.
const RSS_GROWTH_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Thrift binary type codes.
const T_I32: u8 = 8;
const T_I64: u8 = 10;
const T_STRING: u8 = 11;
const T_STRUCT: u8 = 12;
const T_LIST: u8 = 15;

/// A strict binary-protocol message body under construction.
struct Message(Vec<u8>);

impl Message {
    fn call(name: &str) -> Self {
        let mut bytes = vec![0x80, 0x01, 0x00, 0x01];
        bytes.extend_from_slice(&(name.len() as i32).to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        Message(bytes)
    }
    fn field(mut self, field_type: u8, id: i16) -> Self {
        self.0.push(field_type);
        self.0.extend_from_slice(&id.to_be_bytes());
        self
    }
    fn i32(mut self, value: i32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i64(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn string(self, value: &str) -> Self {
        let mut message = self.i32(value.len() as i32);
        message.0.extend_from_slice(value.as_bytes());
        message
    }
    fn stop(mut self) -> Self {
        self.0.push(0);
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn framed(&self) -> Vec<u8> {
        let mut frame = (self.0.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&self.0);
        frame
    }
}

fn open_session(password: &str) -> Message {
    Message::call("openSession")
        .field(T_STRUCT, 1)
        .field(T_I32, 1)
        .i32(2)
        .field(T_STRING, 2)
        .string("UTC")
        .field(T_STRING, 3)
        .string("root")
        .field(T_STRING, 4)
        .string(password)
        .stop()
        .stop()
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Reads one framed reply: (message type, body after the 4-byte length).
fn read_reply(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let length = i32::from_be_bytes(length) as usize;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    assert_eq!(&body[..2], &[0x80, 0x01], "a strict binary reply");
    Some((body[3], body))
}

const REPLY: u8 = 2;
const EXCEPTION: u8 = 3;

/// True when the server closed the connection (EOF, or a reset).
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

/// A logged-in connection.
fn session(address: SocketAddr) -> TcpStream {
    let mut stream = connect(address);
    stream.write_all(&open_session("root").framed()).unwrap();
    let (kind, body) = read_reply(&mut stream).expect("openSession reply");
    assert_eq!(kind, REPLY);
    // status.code 200 appears in the reply struct.
    assert!(
        body.windows(4).any(|w| w == 200i32.to_be_bytes()),
        "openSession succeeded"
    );
    stream
}

/// How a hostile connection starts before its bad bytes.
#[derive(Clone, Copy)]
enum Start {
    /// A failed `openSession` first: a Thrift connection that is not authenticated (its
    /// first frame must look like a Thrift call to be taken for Thrift at all).
    FailedLogin,
    LoggedIn,
}

/// Sends `bytes` and expects an exception reply followed by a closed connection.
fn expect_exception_and_close(address: SocketAddr, start: Start, bytes: &[u8], what: &str) {
    let mut stream = match start {
        Start::LoggedIn => session(address),
        Start::FailedLogin => {
            let mut stream = connect(address);
            stream.write_all(&open_session("wrong").framed()).unwrap();
            let (kind, body) = read_reply(&mut stream).expect("openSession reply");
            assert_eq!(kind, REPLY);
            assert!(body.windows(4).any(|w| w == 801i32.to_be_bytes()));
            stream
        }
    };
    stream.write_all(bytes).unwrap();
    let reply = read_reply(&mut stream);
    assert!(
        matches!(reply, Some((EXCEPTION, _))),
        "{what}: wanted an exception, got {reply:?}"
    );
    assert!(closed(&mut stream), "{what}: connection left open");
}

#[test]
fn hostile_thrift_bytes_get_an_error_and_a_closed_connection() {
    let server = TestServer::start(server_options!().cores(2)).expect("start server");
    let address = server.address();
    let rss_before = server.rss_bytes().expect("rss");

    for round in 0..20 {
        // A frame longer than the pre-authentication cap, and a negative length.
        expect_exception_and_close(
            address,
            Start::FailedLogin,
            &[0x00, 0x10, 0x00, 0x00, 0x80, 0x01],
            "1 MiB frame before openSession",
        );
        expect_exception_and_close(
            address,
            Start::FailedLogin,
            &[0xff, 0xff, 0xff, 0xfe, 0x80, 0x01],
            "negative frame length",
        );
        // After login: a frame over the 64 MiB cap.
        expect_exception_and_close(
            address,
            Start::LoggedIn,
            &[0x7f, 0x00, 0x00, 0x00, 0x80, 0x01],
            "2 GiB frame",
        );
        // A string declaring 2 GiB inside a small frame (the thrift crate would allocate it).
        let huge_string = Message::call("insertTablet")
            .field(T_STRUCT, 1)
            .field(T_I64, 1)
            .i64(1)
            .field(T_STRING, 2)
            .raw(&0x7fff_ff00i32.to_be_bytes())
            .raw(b"root.x");
        expect_exception_and_close(
            address,
            Start::LoggedIn,
            &huge_string.framed(),
            "2 GiB string",
        );
        // A list declaring a billion elements, and a negative count.
        for count in [1_000_000_000i32, -5] {
            let huge_list = Message::call("insertTablet")
                .field(T_STRUCT, 1)
                .field(T_LIST, 3)
                .raw(&[T_STRING])
                .i32(count)
                .string("s1");
            expect_exception_and_close(
                address,
                Start::LoggedIn,
                &huge_list.framed(),
                "lying list count",
            );
        }
        // Wrong field types: the request struct as an i32, then a struct cut short.
        let wrong_type = Message::call("executeQueryStatementV2")
            .field(T_I32, 1)
            .i32(7)
            .stop();
        expect_exception_and_close(
            address,
            Start::LoggedIn,
            &wrong_type.framed(),
            "request as i32",
        );
        let cut = Message::call("executeStatementV2")
            .field(T_STRUCT, 1)
            .field(T_I64, 1);
        expect_exception_and_close(address, Start::LoggedIn, &cut.framed(), "struct cut short");
        // Not a Thrift message at all after a valid frame length.
        expect_exception_and_close(
            address,
            Start::FailedLogin,
            &[0, 0, 0, 6, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff],
            "bad message header",
        );
        // A truncated frame: the peer closes half-way; the server just ends the connection.
        let mut stream = connect(address);
        let message = open_session("root").framed();
        stream.write_all(&message[..message.len() / 2]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(closed(&mut stream), "round {round}: truncated frame");
    }

    // Calls before openSession get NOT_LOGIN (802) and the connection stays usable.
    let mut stream = connect(address);
    let query = Message::call("executeQueryStatementV2")
        .field(T_STRUCT, 1)
        .field(T_I64, 1)
        .i64(1)
        .field(T_STRING, 2)
        .string("SHOW DATABASES")
        .field(T_I64, 3)
        .i64(1)
        .stop()
        .stop();
    stream.write_all(&query.framed()).unwrap();
    let (kind, body) = read_reply(&mut stream).expect("reply before login");
    assert_eq!(kind, REPLY);
    assert!(
        body.windows(4).any(|w| w == 802i32.to_be_bytes()),
        "802 NOT_LOGIN"
    );
    // Three wrong passwords close the connection (as the native handshake does).
    for attempt in 0..3 {
        stream.write_all(&open_session("wrong").framed()).unwrap();
        let (kind, body) = read_reply(&mut stream).expect("openSession reply");
        assert_eq!(kind, REPLY);
        assert!(
            body.windows(4).any(|w| w == 801i32.to_be_bytes()),
            "attempt {attempt}: 801"
        );
    }
    assert!(closed(&mut stream), "closed after three failed logins");

    // An unknown method: an exception, the connection stays open and serves the next call.
    let mut stream = session(address);
    stream
        .write_all(&Message::call("noSuchMethod").stop().framed())
        .unwrap();
    assert!(matches!(read_reply(&mut stream), Some((EXCEPTION, _))));
    stream.write_all(&query.framed()).unwrap();
    let (kind, body) = read_reply(&mut stream).expect("query after unknown method");
    assert_eq!(kind, REPLY);
    assert!(body.windows(4).any(|w| w == 200i32.to_be_bytes()));
    // A known but unsupported call answers 300 in its own reply type.
    let template = Message::call("dropSchemaTemplate")
        .field(T_STRUCT, 1)
        .field(T_I64, 1)
        .i64(1)
        .field(T_STRING, 2)
        .string("t")
        .stop()
        .stop();
    stream.write_all(&template.framed()).unwrap();
    let (kind, body) = read_reply(&mut stream).expect("unsupported call reply");
    assert_eq!(kind, REPLY);
    assert!(
        body.windows(4).any(|w| w == 300i32.to_be_bytes()),
        "300 UNSUPPORTED_OPERATION"
    );

    // Bytes that only half look like Thrift (a length over the pre-authentication cap, a
    // reply header) are not taken for Thrift: the native path answers and closes.
    for first in [
        &[0x00u8, 0x10, 0x00, 0x00, 0x80, 0x01, 0x00, 0x01][..],
        &[0x00, 0x00, 0x00, 0x08, 0x80, 0x01, 0x00, 0x02, 0, 0, 0, 0],
    ] {
        let mut stream = connect(address);
        // Padded to a native header's 24 bytes, so the native path can judge the magic.
        let mut bytes = first.to_vec();
        bytes.resize(24, 0);
        stream.write_all(&bytes).unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        assert!(
            reply.starts_with(b"ITDB"),
            "a native error frame: {reply:?}"
        );
    }

    // The server is alive, serves the native protocol too, and its memory is bounded.
    let mut native = server.client().expect("native client after the flood");
    native.ping().expect("native ping");
    let rss_after = server.rss_bytes().expect("rss");
    assert!(
        rss_after < rss_before + RSS_GROWTH_BYTES_MAX,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
}
