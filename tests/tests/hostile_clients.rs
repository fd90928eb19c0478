//! Hostile clients against a real server: clients that never read, a thousand idle
//! connections, connect-and-close floods, handshakes drip-fed a byte at a time and
//! pipelining far past the in-flight cap. After each, the server's resident memory is
//! under the bound `docs/protocol.md` ("Memory bounds") states for that load, and a
//! well-behaved client is still served (a write and a read succeed). No timings are
//! asserted: every wait is bounded only to turn a hang into a failure.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use iotdb_net::frame::decode_frame;
use iotdb_net::{
    CreateDatabase, DataType, Frame, Handshake, Opcode, RawQuery, Request, SeriesSelection,
    StatusCode, Value, WireTablet,
};
use iotdb_tests::model::rows_of;
use iotdb_tests::{TestServer, server_options};

const DATABASE: &str = "root.hostile";
const DEVICE: &str = "root.hostile.d1";

/// Per-connection bounds of `docs/protocol.md` (defaults of `ConnectionLimits`).
const OUTBOX_BYTES_MAX: u64 = 4 * 1024 * 1024;
const READ_CHUNK_BYTES: u64 = 64 * 1024;
const UNAUTHENTICATED_FRAME_BYTES_MAX: u64 = 64 * 1024;
/// Resident memory a connection costs beyond its buffers: its tasks, socket state in the
/// process, allocator slack. Generous; the buffers are what the bound is about.
const CONNECTION_OVERHEAD_BYTES: u64 = 16 * 1024;
/// Slack over the stated bound for what the server does meanwhile (the normal client's
/// writes and reads, a flush, allocator caches).
const RSS_SLACK_BYTES: u64 = 48 * 1024 * 1024;
/// What a connect-and-close flood may leave in the allocator's caches (queries of closed
/// connections that ran to the end, freed but kept memory).
const FLOOD_RESIDUE_BYTES: u64 = 32 * 1024 * 1024;
/// How long a bounded wait may last before the test fails (a hang, not a slow server).
const WAIT_MAX: Duration = Duration::from_secs(60);

fn start() -> TestServer {
    start_with(None)
}

fn start_with(config: Option<&str>) -> TestServer {
    let mut options = server_options!().cores(2);
    if let Some(config) = config {
        options = options.config_toml(config);
    }
    let server = TestServer::start(options).expect("start the server");
    let mut client = server.client().expect("connect");
    client
        .create_database(CreateDatabase {
            name: DATABASE.to_owned(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
    let mut tablet = WireTablet::new(DEVICE, &[("s1", DataType::Int64)]);
    for t in 0..1000 {
        tablet.push_row(t, &[Some(Value::Int64(t))]).expect("a row");
    }
    client.insert_tablets(&[tablet]).expect("seed");
    server
}

/// A normal client is served: it writes a point at `time` and reads it back.
fn assert_served(server: &TestServer, time: i64) {
    let mut client = server.client().expect("a normal client connects");
    let mut tablet = WireTablet::new(DEVICE, &[("s2", DataType::Int64)]);
    tablet
        .push_row(time, &[Some(Value::Int64(-time))])
        .expect("a row");
    client.insert_tablets(&[tablet]).expect("a normal write");
    let batches = client
        .query_raw(RawQuery {
            series: vec![SeriesSelection {
                device: DEVICE.to_owned(),
                measurements: vec!["s2".to_owned()],
            }],
            start_time: time,
            end_time: time + 1,
            limit: None,
            offset: 0,
        })
        .expect("a normal read");
    let (_, rows) = rows_of(&batches).expect("batches");
    assert_eq!(rows.len(), 1, "the point written at {time} reads back");
    assert_eq!(rows[0].1[0], Some(Value::Int64(-time)));
}

/// Requires the server's RSS to be at most `baseline` plus `allowed` plus the slack.
fn assert_rss_within(server: &TestServer, baseline: u64, allowed: u64, what: &str) {
    let rss = server.rss_bytes().expect("rss");
    let bound = baseline + allowed + RSS_SLACK_BYTES;
    eprintln!(
        "{what}: RSS {} MiB (baseline {} MiB, bound {} MiB)",
        rss >> 20,
        baseline >> 20,
        bound >> 20
    );
    assert!(
        rss <= bound,
        "{what}: RSS {rss} bytes over the bound {bound} (baseline {baseline} + {allowed} + slack)"
    );
}

fn open_files(server: &TestServer) -> usize {
    let pid = server.pid().expect("running");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// The soft limit on open files of this process (the server inherits it).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

fn handshake_frame(request_id: u64) -> Vec<u8> {
    let request = Request::Handshake(Handshake {
        user: "root".to_owned(),
        password: "root".to_owned(),
        client_name: "hostile".to_owned(),
        target_shard: None,
    });
    Frame::new(
        Opcode::Handshake as u8,
        0,
        request_id,
        request.encode_body(),
    )
    .encode()
    .to_vec()
}

fn authenticated_stream(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(WAIT_MAX))
        .expect("read timeout");
    stream.write_all(&handshake_frame(1)).expect("handshake");
    let mut buffer = bytes::BytesMut::new();
    let frame = read_frame(&mut stream, &mut buffer).expect("a handshake answer");
    assert_eq!(status_of(&frame), StatusCode::SUCCESS_STATUS);
    assert!(buffer.is_empty());
    stream
}

/// `None` once the server closed the connection.
fn read_frame(stream: &mut TcpStream, buffer: &mut bytes::BytesMut) -> Option<Frame> {
    loop {
        if let Some(frame) = decode_frame(buffer, 256 << 20).expect("a well-formed frame") {
            return Some(frame);
        }
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return None,
            Err(error) => panic!("reading a response: {error}"),
        }
    }
}

fn status_of(frame: &Frame) -> StatusCode {
    StatusCode(i32::from_le_bytes(
        frame.body[..4].try_into().expect("a status"),
    ))
}

/// Pipelined requests: ten pings and one SQL query of 1000 rows, with increasing ids.
fn request_batch(first_id: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for offset in 0..10 {
        bytes.extend_from_slice(
            &Frame::new(Opcode::Ping as u8, 0, first_id + offset, Default::default()).encode(),
        );
    }
    let query = Request::ExecuteSql {
        statement: format!("SELECT s1 FROM {DEVICE}"),
    };
    bytes.extend_from_slice(
        &Frame::new(
            Opcode::ExecuteSql as u8,
            0,
            first_id + 10,
            query.encode_body(),
        )
        .encode(),
    );
    bytes
}

/// Sends pipelined requests without reading until the kernel takes no more bytes for a
/// while (the server stopped reading) or `bytes_max` were sent. Returns the bytes sent;
/// only whole batches are ever started, but the last may be cut.
fn send_until_blocked(stream: &mut TcpStream, bytes_max: usize) -> usize {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut sent = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut next_id = 100;
    let mut refusals = 0;
    while sent < bytes_max && refusals < 40 {
        if pending.is_empty() {
            pending = request_batch(next_id);
            next_id += 11;
        }
        match stream.write(&pending) {
            Ok(count) => {
                sent += count;
                pending.drain(..count);
                refusals = 0;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                refusals += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(error) => panic!("sending pipelined requests: {error}"),
        }
    }
    stream.set_nonblocking(false).expect("blocking");
    sent
}

#[test]
fn clients_that_never_read_cost_a_bounded_outbox_each() {
    const SLOW_READERS: u64 = 4;
    const BYTES_MAX: usize = 256 * 1024 * 1024;
    let server = start();
    assert_served(&server, 10_000);
    let baseline = server.rss_bytes().expect("rss");
    let mut slow = Vec::new();
    for _ in 0..SLOW_READERS {
        let mut stream = authenticated_stream(server.address());
        let sent = send_until_blocked(&mut stream, BYTES_MAX);
        assert!(
            sent < BYTES_MAX,
            "the server kept reading {sent} bytes from a client that never reads"
        );
        eprintln!(
            "a slow reader got {} KiB in before the server stopped reading",
            sent >> 10
        );
        slow.push(stream);
    }
    // Requests already read: at most an outbox, the in-flight cap of answers being
    // written and one read chunk per connection.
    let allowed =
        SLOW_READERS * (OUTBOX_BYTES_MAX + 2 * READ_CHUNK_BYTES + CONNECTION_OVERHEAD_BYTES);
    assert_rss_within(&server, baseline, allowed, "slow readers");
    assert_served(&server, 10_001);
    drop(slow);
    assert_served(&server, 10_002);
}

#[test]
fn a_thousand_idle_connections() {
    const WANTED: usize = 1000;
    // Each connection costs this process one descriptor and the server one more; both
    // inherit this soft limit.
    let limit = open_files_limit() as usize;
    let connections = WANTED.min(limit.saturating_sub(200));
    if connections < WANTED {
        eprintln!(
            "the open files limit is {limit}: opening {connections} idle connections instead of {WANTED}"
        );
    }
    // One more than the idle ones may connect: the normal client.
    let server = start_with(Some(&format!(
        "dn_rpc_max_concurrent_client_num = {}",
        connections + 16
    )));
    assert_served(&server, 20_000);
    let baseline = server.rss_bytes().expect("rss");
    let mut idle = Vec::with_capacity(connections);
    for index in 0..connections {
        if index % 2 == 0 {
            // Silent: connected, nothing sent (the handshake timeout is 10 s).
            idle.push(TcpStream::connect(server.address()).expect("connect"));
        } else {
            idle.push(authenticated_stream(server.address()));
        }
    }
    let allowed = connections as u64
        * (UNAUTHENTICATED_FRAME_BYTES_MAX + READ_CHUNK_BYTES + CONNECTION_OVERHEAD_BYTES);
    assert_rss_within(&server, baseline, allowed, "idle connections");
    assert_served(&server, 20_001);
    // The authenticated ones still answer.
    for stream in idle.iter_mut().skip(1).step_by(100) {
        stream
            .write_all(&Frame::new(Opcode::Ping as u8, 0, 9, Default::default()).encode())
            .expect("ping");
        let frame = read_frame(stream, &mut bytes::BytesMut::new()).expect("a pong");
        assert_eq!(
            (frame.request_id, status_of(&frame)),
            (9, StatusCode::SUCCESS_STATUS)
        );
    }
    drop(idle);
    assert_served(&server, 20_002);
}

#[test]
fn connect_and_close_floods_leave_nothing_behind() {
    const ROUNDS: usize = 2000;
    let server = start();
    assert_served(&server, 30_000);
    let files_before = open_files(&server);
    let baseline = server.rss_bytes().expect("rss");
    let handshake = handshake_frame(1);
    let flood = |rounds: std::ops::Range<usize>| {
        for round in rounds {
            let Ok(mut stream) = TcpStream::connect(server.address()) else {
                continue;
            };
            match round % 4 {
                0 => {}
                1 => {
                    let _ = stream.write_all(&handshake[..handshake.len() / 2]);
                }
                2 => {
                    let _ = stream.write_all(&handshake);
                }
                _ => {
                    let _ = stream.write_all(&handshake);
                    let _ = stream.write_all(&request_batch(5));
                }
            }
            drop(stream);
        }
    };
    flood(0..ROUNDS / 2);
    let half_way = server.rss_bytes().expect("rss");
    flood(ROUNDS / 2..ROUNDS);
    // Every connection's descriptor is closed again (bounded wait: the server notices
    // each close on its own loop).
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let files = open_files(&server);
        if files <= files_before + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server still holds {files} descriptors ({files_before} before the flood)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Connections closed with queries still running finish them first, and the
    // allocator keeps some freed memory: a first flood may cost that much once, but a
    // second as long must not cost it again (nothing per connection stays behind).
    assert_rss_within(
        &server,
        baseline,
        FLOOD_RESIDUE_BYTES,
        "after a connect-and-close flood",
    );
    assert_rss_within(&server, half_way, 0, "after a second flood as long");
    assert_served(&server, 30_001);
}

#[test]
fn handshakes_drip_fed_a_byte_at_a_time() {
    const DRIPPERS: usize = 20;
    let server = start();
    assert_served(&server, 40_000);
    let baseline = server.rss_bytes().expect("rss");
    let handshake = handshake_frame(1);
    let mut streams: Vec<TcpStream> = (0..DRIPPERS)
        .map(|_| {
            let stream = TcpStream::connect(server.address()).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(WAIT_MAX))
                .expect("read timeout");
            stream
        })
        .collect();
    for (index, byte) in handshake.iter().enumerate() {
        for stream in &mut streams {
            stream.write_all(&[*byte]).expect("one byte");
        }
        if index == handshake.len() / 2 {
            // Half-way through every handshake, others are served.
            assert_served(&server, 40_001);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for stream in &mut streams {
        let frame = read_frame(stream, &mut bytes::BytesMut::new()).expect("an answer");
        assert_eq!(
            (frame.request_id, status_of(&frame)),
            (1, StatusCode::SUCCESS_STATUS),
            "a drip-fed handshake succeeds"
        );
    }
    let allowed = DRIPPERS as u64
        * (UNAUTHENTICATED_FRAME_BYTES_MAX + READ_CHUNK_BYTES + CONNECTION_OVERHEAD_BYTES);
    assert_rss_within(&server, baseline, allowed, "drip-fed handshakes");
    assert_served(&server, 40_002);
}

#[test]
fn pipelining_far_past_the_in_flight_cap() {
    /// Ten times the default in-flight cap (128) of batches of eleven requests.
    const BATCHES: u64 = 1280 / 11 * 10;
    let server = start();
    assert_served(&server, 50_000);
    let baseline = server.rss_bytes().expect("rss");
    let mut stream = authenticated_stream(server.address());
    let mut reader = stream.try_clone().expect("clone");
    let expected: HashSet<u64> = (0..BATCHES * 11).map(|offset| 100 + offset).collect();
    let count = expected.len();
    let reading = std::thread::spawn(move || {
        let mut buffer = bytes::BytesMut::new();
        let mut seen = HashSet::new();
        while seen.len() < count {
            let frame = read_frame(&mut reader, &mut buffer).expect("an answer");
            assert_eq!(
                status_of(&frame),
                StatusCode::SUCCESS_STATUS,
                "request {}",
                frame.request_id
            );
            assert!(!frame.has_more(), "small answers come in one frame");
            assert!(
                seen.insert(frame.request_id),
                "request {} answered twice",
                frame.request_id
            );
        }
        seen
    });
    for batch in 0..BATCHES {
        stream
            .write_all(&request_batch(100 + batch * 11))
            .expect("pipelined requests");
    }
    let seen = reading.join().expect("the reader");
    assert_eq!(seen, expected, "every request answered exactly once");
    let allowed = OUTBOX_BYTES_MAX + 2 * READ_CHUNK_BYTES + CONNECTION_OVERHEAD_BYTES;
    assert_rss_within(&server, baseline, allowed, "pipelining past the cap");
    assert_served(&server, 50_001);
}
