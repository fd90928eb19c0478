//! Loopback tests of `serve_connection` with a mock handler, driven by raw
//! sockets, the blocking client, the async client, the async failover client and the
//! shard-aware client.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iotdb_net::frame::decode_frame;
use iotdb_net::{
    AsyncCalls, AsyncClient, AsyncFailoverClient, BlockingClient, ClientConfig, ClientError,
    ColumnBatch, ConnectionEnd, ConnectionLimits, DataPartitionEntry, DataType, DatabaseRoute,
    FailoverPolicy, Frame, Handler, Handshake, HandshakeAccepted, Opcode, RawQuery,
    RegionGroupRoute, ReplicaRoute, Request, ResponsePayload, ResponseResult, ResponseStream,
    ResultSet, RouteTable, Session, ShardAwareClient, Status, StatusCode, TypedColumn, Value,
    WireColumn, WireTablet, decode_response, series_slot,
};

#[derive(Default)]
struct MockHandler {
    gate_open: Cell<bool>,
    active: Cell<usize>,
    active_max: Cell<usize>,
    /// "shard:device" per inserted tablet ("-" when the handshake named no shard).
    inserts: RefCell<Vec<String>>,
    route_table: RefCell<Option<RouteTable>>,
    /// Answer the next insert on shard 2 with ROUTE_TABLE_STALE.
    stale_once: Cell<bool>,
}

impl MockHandler {
    async fn wait_for_gate(&self) {
        while !self.gate_open.get() {
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn rows(texts: &[String]) -> ResultSet {
        let mut result = ResultSet::new(&[("answer", DataType::Text)]);
        for text in texts {
            result
                .rows
                .push(vec![Some(Value::Text(Bytes::copy_from_slice(
                    text.as_bytes(),
                )))]);
        }
        result
    }

    fn one_row(text: &str) -> ResponseResult {
        Ok(ResponsePayload::ResultSet(Self::rows(&[text.to_owned()])))
    }
}

impl Handler for MockHandler {
    async fn authenticate(&self, handshake: &Handshake) -> Result<HandshakeAccepted, Status> {
        if handshake.password != "root" {
            return Err(Status::new(
                StatusCode::WRONG_LOGIN_PASSWORD,
                "wrong password",
            ));
        }
        Ok(HandshakeAccepted {
            session_id: 42,
            data_node_id: 1,
            shard_id: handshake.target_shard.unwrap_or(0),
            shard_count: 4,
            route_table_version: self
                .route_table
                .borrow()
                .as_ref()
                .map_or(0, RouteTable::version),
        })
    }

    async fn handle(
        &self,
        session: &Session,
        request: Request,
        stream: &ResponseStream,
    ) -> ResponseResult {
        match request {
            Request::ExecuteSql { statement } => match statement.as_str() {
                "wait" => {
                    self.wait_for_gate().await;
                    Self::one_row("waited")
                }
                "release" => {
                    self.gate_open.set(true);
                    Self::one_row("released")
                }
                "block" => {
                    self.active.set(self.active.get() + 1);
                    self.active_max
                        .set(self.active_max.get().max(self.active.get()));
                    self.wait_for_gate().await;
                    self.active.set(self.active.get() - 1);
                    Self::one_row("unblocked")
                }
                "stats" => {
                    Self::one_row(&format!("{} {}", self.active.get(), self.active_max.get()))
                }
                "stale" => {
                    self.stale_once.set(true);
                    Self::one_row("armed")
                }
                "inserts" => Ok(ResponsePayload::ResultSet(Self::rows(
                    &self.inserts.borrow(),
                ))),
                "stream" => {
                    for chunk in ["a", "b"] {
                        let payload = ResponsePayload::ResultSet(Self::rows(&[chunk.to_owned()]));
                        stream
                            .send_more(payload)
                            .await
                            .map_err(|error| Status::internal(error.to_string()))?;
                    }
                    Self::one_row("c")
                }
                other => Err(Status::new(
                    StatusCode::SQL_PARSE_ERROR,
                    format!("cannot parse {other}"),
                )),
            },
            Request::InsertTablets(insert) => {
                if session.target_shard == Some(2) && self.stale_once.replace(false) {
                    return Err(Status::new(StatusCode::ROUTE_TABLE_STALE, "moved"));
                }
                let shard = session
                    .target_shard
                    .map_or_else(|| "-".to_owned(), |shard| shard.to_string());
                for tablet in &insert.tablets {
                    self.inserts.borrow_mut().push(format!(
                        "{shard}:{}@{}",
                        tablet.device(),
                        tablet.timestamps()[0]
                    ));
                }
                Ok(ResponsePayload::Done)
            }
            Request::QueryRaw(query) => {
                let batch = |time: i64| ColumnBatch {
                    timestamps: vec![time],
                    columns: vec![WireColumn::new(
                        "root.sg.d1.s1",
                        TypedColumn::Int64(vec![time * 10]),
                    )],
                };
                let first = ResponsePayload::Batch(batch(query.start_time));
                stream
                    .send_more(first)
                    .await
                    .map_err(|error| Status::internal(error.to_string()))?;
                Ok(ResponsePayload::Batch(batch(query.start_time + 1)))
            }
            Request::FetchRouteTable { known_version } => {
                let table = self
                    .route_table
                    .borrow()
                    .clone()
                    .filter(|table| table.version() > known_version);
                Ok(ResponsePayload::RouteTable(table))
            }
            Request::CreateDatabase(_) | Request::Flush { .. } => Ok(ResponsePayload::Done),
            Request::QueryLast(_) => Ok(ResponsePayload::Last(Vec::new())),
            // A wrong payload kind: the server must turn it into a 305.
            Request::QueryAggregate(_) => Ok(ResponsePayload::Pong),
            Request::Ping | Request::Handshake(_) => {
                Err(Status::internal("never reaches the handler"))
            }
        }
    }
}

struct TestServer {
    address: SocketAddr,
    ends: mpsc::Receiver<ConnectionEnd>,
}

fn spawn_server(limits: ConnectionLimits, route_table: Option<RouteTable>) -> TestServer {
    spawn_server_on("127.0.0.1:0".parse().unwrap(), limits, route_table)
}

/// Runs a server on its own thread and monoio runtime; the thread lives until
/// the test process exits.
fn spawn_server_on(
    bind: SocketAddr,
    limits: ConnectionLimits,
    route_table: Option<RouteTable>,
) -> TestServer {
    let (address_sender, address_receiver) = mpsc::channel();
    let (end_sender, ends) = mpsc::channel();
    let route_table = route_table.map(|table| {
        let mut out = BytesMut::new();
        table.encode(&mut out);
        out.freeze()
    });
    std::thread::spawn(move || {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = monoio::net::TcpListener::bind(bind).unwrap();
            address_sender.send(listener.local_addr().unwrap()).unwrap();
            let handler = Rc::new(MockHandler::default());
            if let Some(bytes) = route_table {
                let table =
                    RouteTable::decode(&mut iotdb_net::codec::WireReader::new(bytes)).unwrap();
                *handler.route_table.borrow_mut() = Some(table);
            }
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handler = handler.clone();
                let limits = limits.clone();
                let end_sender = end_sender.clone();
                monoio::spawn(async move {
                    let end = iotdb_net::serve_connection(stream, handler, limits).await;
                    let _ = end_sender.send(end);
                });
            }
        });
    });
    TestServer {
        address: address_receiver.recv().unwrap(),
        ends,
    }
}

fn config() -> ClientConfig {
    ClientConfig::default()
}

fn write_frame(stream: &mut TcpStream, opcode: u8, request_id: u64, body: Bytes) {
    stream
        .write_all(&Frame::new(opcode, 0, request_id, body).encode())
        .unwrap();
}

/// `None` once the server closed the connection.
fn read_frame(stream: &mut TcpStream, buffer: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(frame) = decode_frame(buffer, u32::MAX).unwrap() {
            return Some(frame);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

fn raw_connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

fn raw_session(address: SocketAddr) -> (TcpStream, BytesMut) {
    let mut stream = raw_connect(address);
    let handshake = Request::Handshake(Handshake {
        user: "root".into(),
        password: "root".into(),
        client_name: "raw".into(),
        target_shard: None,
    });
    write_frame(
        &mut stream,
        Opcode::Handshake as u8,
        1,
        handshake.encode_body(),
    );
    let mut buffer = BytesMut::new();
    let frame = read_frame(&mut stream, &mut buffer).unwrap();
    assert!(
        decode_response(Opcode::Handshake, frame.body)
            .unwrap()
            .is_ok()
    );
    (stream, buffer)
}

fn status_of(frame: &Frame) -> StatusCode {
    let code = i32::from_le_bytes(frame.body[..4].try_into().unwrap());
    StatusCode(code)
}

fn sql(statement: &str) -> Bytes {
    Request::ExecuteSql {
        statement: statement.into(),
    }
    .encode_body()
}

fn texts(result: &ResultSet) -> Vec<String> {
    result
        .rows
        .iter()
        .map(|row| match &row[0] {
            Some(Value::Text(text)) => String::from_utf8(text.to_vec()).unwrap(),
            other => panic!("unexpected cell {other:?}"),
        })
        .collect()
}

#[test]
fn pipelined_requests_complete_out_of_order() {
    let server = spawn_server(ConnectionLimits::default(), None);
    let (mut stream, mut buffer) = raw_session(server.address);
    write_frame(&mut stream, Opcode::ExecuteSql as u8, 10, sql("wait"));
    write_frame(&mut stream, Opcode::ExecuteSql as u8, 11, sql("release"));
    let first = read_frame(&mut stream, &mut buffer).unwrap();
    let second = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (first.request_id, second.request_id),
        (11, 10),
        "the blocked request finishes last"
    );
    assert_eq!(first.opcode, Opcode::ExecuteSql.response_code());
}

#[test]
fn bad_requests_get_error_frames_and_the_connection_stays_usable() {
    let server = spawn_server(ConnectionLimits::default(), None);
    let (mut stream, mut buffer) = raw_session(server.address);
    // Unknown opcode.
    write_frame(&mut stream, 0x33, 5, Bytes::new());
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.request_id, reply.opcode, status_of(&reply)),
        (5, 0xFF, StatusCode::UNSUPPORTED_OPERATION)
    );
    // Malformed body.
    write_frame(
        &mut stream,
        Opcode::ExecuteSql as u8,
        6,
        Bytes::from_static(&[1, 2]),
    );
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.request_id, status_of(&reply)),
        (6, StatusCode::ILLEGAL_PARAMETER)
    );
    // Checksum mismatch on a well-framed request.
    let mut bytes =
        BytesMut::from(&Frame::new(Opcode::ExecuteSql as u8, 0, 7, sql("release")).encode()[..]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    stream.write_all(&bytes).unwrap();
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.request_id, status_of(&reply)),
        (7, StatusCode::ILLEGAL_PARAMETER)
    );
    // A handler answering with the wrong payload kind becomes a 305.
    let aggregate = Request::QueryAggregate(iotdb_net::AggregateQuery {
        series: vec![],
        start_time: 0,
        end_time: 1,
        aggregations: vec![],
        group_by: None,
    });
    write_frame(
        &mut stream,
        Opcode::QueryAggregate as u8,
        8,
        aggregate.encode_body(),
    );
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.request_id, status_of(&reply)),
        (8, StatusCode::INTERNAL_SERVER_ERROR)
    );
    // Still usable.
    write_frame(&mut stream, Opcode::Ping as u8, 9, Bytes::new());
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.request_id, reply.opcode, status_of(&reply)),
        (9, 0x82, StatusCode::SUCCESS_STATUS)
    );
}

#[test]
fn garbage_closes_the_connection_after_an_error_frame() {
    let server = spawn_server(ConnectionLimits::default(), None);
    let (mut stream, mut buffer) = raw_session(server.address);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .unwrap();
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.opcode, status_of(&reply)),
        (0xFF, StatusCode::ILLEGAL_PARAMETER)
    );
    assert!(
        read_frame(&mut stream, &mut buffer).is_none(),
        "connection closed"
    );
    assert_eq!(server.ends.recv().unwrap(), ConnectionEnd::FramingLost);
}

#[test]
fn oversized_frame_before_authentication_closes_the_connection() {
    let server = spawn_server(ConnectionLimits::default(), None);
    let mut stream = raw_connect(server.address);
    let handshake = Request::Handshake(Handshake {
        user: "root".into(),
        password: "x".repeat(70 * 1024),
        client_name: "big".into(),
        target_shard: None,
    });
    write_frame(
        &mut stream,
        Opcode::Handshake as u8,
        3,
        handshake.encode_body(),
    );
    let mut buffer = BytesMut::new();
    let reply = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (reply.opcode, reply.request_id, status_of(&reply)),
        (0xFF, 3, StatusCode::ILLEGAL_PARAMETER)
    );
    assert!(read_frame(&mut stream, &mut buffer).is_none());
    assert_eq!(server.ends.recv().unwrap(), ConnectionEnd::FramingLost);
}

#[test]
fn requests_before_handshake_get_not_login_and_ping_works() {
    let server = spawn_server(ConnectionLimits::default(), None);
    let mut stream = raw_connect(server.address);
    let mut buffer = BytesMut::new();
    write_frame(&mut stream, Opcode::Ping as u8, 1, Bytes::new());
    assert_eq!(
        status_of(&read_frame(&mut stream, &mut buffer).unwrap()),
        StatusCode::SUCCESS_STATUS
    );
    write_frame(&mut stream, Opcode::ExecuteSql as u8, 2, sql("stats"));
    assert_eq!(
        status_of(&read_frame(&mut stream, &mut buffer).unwrap()),
        StatusCode::NOT_LOGIN
    );
}

#[test]
fn idle_connections_are_closed() {
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_millis(100),
        ..ConnectionLimits::default()
    };
    let server = spawn_server(limits, None);
    let (mut stream, mut buffer) = raw_session(server.address);
    assert!(
        read_frame(&mut stream, &mut buffer).is_none(),
        "closed by the server"
    );
    assert_eq!(server.ends.recv().unwrap(), ConnectionEnd::IdleTimeout);
}

#[test]
fn handshake_timeout_closes_silent_connections() {
    let limits = ConnectionLimits {
        handshake_timeout: Duration::from_millis(100),
        ..ConnectionLimits::default()
    };
    let server = spawn_server(limits, None);
    let mut stream = raw_connect(server.address);
    assert!(read_frame(&mut stream, &mut BytesMut::new()).is_none());
    assert_eq!(server.ends.recv().unwrap(), ConnectionEnd::HandshakeTimeout);
}

#[test]
fn in_flight_cap_bounds_concurrent_handlers() {
    const CAP: usize = 4;
    let limits = ConnectionLimits {
        in_flight_requests_max: CAP,
        ..ConnectionLimits::default()
    };
    let server = spawn_server(limits, None);
    let mut worker = BlockingClient::connect(server.address, &config()).unwrap();
    let mut observer = BlockingClient::connect(server.address, &config()).unwrap();
    let ids: Vec<u64> = (0..3 * CAP)
        .map(|_| {
            worker
                .send(&Request::ExecuteSql {
                    statement: "block".into(),
                })
                .unwrap()
        })
        .collect();
    let stats = |observer: &mut BlockingClient| -> (usize, usize) {
        let text = texts(&observer.execute_sql("stats").unwrap()).remove(0);
        let mut parts = text.split(' ').map(|part| part.parse::<usize>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    while stats(&mut observer).0 < CAP {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the reader every chance to exceed the cap; it must not.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(stats(&mut observer), (CAP, CAP));
    observer.execute_sql("release").unwrap();
    for id in ids {
        worker.receive(id).unwrap();
    }
    assert_eq!(stats(&mut observer).1, CAP);
}

#[test]
fn blocking_client_covers_every_request() {
    let table = sample_route_table("127.0.0.1:1".to_owned());
    let server = spawn_server(ConnectionLimits::default(), Some(table));
    let mut client = BlockingClient::connect(server.address, &config()).unwrap();
    assert_eq!(client.accepted().session_id, 42);
    client.ping().unwrap();
    let create = iotdb_net::CreateDatabase {
        name: "root.sg".into(),
        ttl_ms: None,
        data_region_group_num: Some(2),
    };
    client.create_database(create).unwrap();
    let mut tablet = WireTablet::new("root.sg.d1", &[("s1", DataType::Double)]);
    tablet.push_row(1, &[Some(Value::Double(1.0))]).unwrap();
    client.insert_tablets(&[tablet]).unwrap();
    let batches = client
        .query_raw(RawQuery {
            series: vec![],
            start_time: 100,
            end_time: 200,
            limit: None,
            offset: 0,
        })
        .unwrap();
    assert_eq!(
        batches
            .iter()
            .map(|batch| batch.timestamps[0])
            .collect::<Vec<_>>(),
        vec![100, 101],
        "streamed"
    );
    assert!(client.query_last(vec![]).unwrap().is_empty());
    assert_eq!(
        client
            .fetch_route_table(0)
            .unwrap()
            .map(|table| table.version()),
        Some(7)
    );
    assert!(client.fetch_route_table(7).unwrap().is_none());
    client.flush(vec![]).unwrap();
    assert_eq!(
        texts(&client.execute_sql("stream").unwrap()),
        vec!["a", "b", "c"],
        "streamed chunks merged"
    );
    let error = client.execute_sql("nonsense").unwrap_err();
    assert_eq!(error.status_code(), Some(StatusCode::SQL_PARSE_ERROR));
    // Pipelining through the client API: send all, then collect in reverse.
    let ids: Vec<u64> = (0..5)
        .map(|_| client.send(&Request::Ping).unwrap())
        .collect();
    for id in ids.into_iter().rev() {
        client.receive(id).unwrap();
    }
}

#[test]
fn wrong_password_is_a_typed_error() {
    let server = spawn_server(ConnectionLimits::default(), None);
    let config = ClientConfig {
        password: "nope".into(),
        ..config()
    };
    let error = BlockingClient::connect(server.address, &config).unwrap_err();
    assert_eq!(
        error.status_code(),
        Some(StatusCode::WRONG_LOGIN_PASSWORD),
        "{error}"
    );
}

/// Database `root.sg` (1000 series slots, 1000 ms time slots); `root.sg.d1`
/// in time slot 0 belongs to group 3, led by shard 2 of `endpoint`.
fn sample_route_table(endpoint: String) -> RouteTable {
    RouteTable::new(
        7,
        vec![DatabaseRoute {
            name: "root.sg".into(),
            series_slot_num: 1000,
            time_partition_interval_ms: 1000,
            data_partitions: vec![DataPartitionEntry {
                series_slot: series_slot("root.sg.d1", 1000),
                time_slot: 0,
                region_group_id: 3,
            }],
        }],
        vec![RegionGroupRoute {
            region_group_id: 3,
            replicas: vec![ReplicaRoute {
                data_node_id: 1,
                rpc_endpoint: endpoint,
                shard_id: 2,
                is_leader: true,
            }],
        }],
    )
    .unwrap()
}

fn run_async<F: Future<Output = ()>>(future: F) {
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    runtime.block_on(future);
}

#[test]
fn async_client_pipelines() {
    let server = spawn_server(ConnectionLimits::default(), None);
    run_async(async move {
        let mut client = AsyncClient::connect(server.address, &config())
            .await
            .unwrap();
        let wait = client
            .send(&Request::ExecuteSql {
                statement: "wait".into(),
            })
            .await
            .unwrap();
        let release = client
            .send(&Request::ExecuteSql {
                statement: "release".into(),
            })
            .await
            .unwrap();
        assert_eq!(client.outstanding(), 2);
        client.receive(release).await.unwrap();
        client.receive(wait).await.unwrap();
        client.ping().await.unwrap();
        let error = client.execute_sql("nonsense").await.unwrap_err();
        assert!(
            matches!(error, ClientError::Status(ref status) if status.code == StatusCode::SQL_PARSE_ERROR)
        );
    });
}

/// The async failover client passes endpoints that refuse or drop it, rides over a
/// connection the server closed (the same request again, elsewhere), and returns an error
/// no other DataNode would fix at once, where it is.
#[test]
fn async_failover_client_moves_on_from_broken_endpoints_only() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    // Accepts and drops every connection: a handshake that breaks.
    let dropper = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dropping = dropper.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in dropper.incoming() {
            drop(stream);
        }
    });
    // Closes a connection idle for 200 ms: the client's next call finds it broken.
    let server = spawn_server(
        ConnectionLimits {
            idle_timeout: Duration::from_millis(200),
            ..ConnectionLimits::default()
        },
        None,
    );
    let policy = FailoverPolicy {
        retry_for: Duration::from_secs(20),
        pause: Duration::from_millis(10),
    };
    run_async(async move {
        let endpoints = [dead, dropping, server.address];
        let mut client = AsyncFailoverClient::connect(&endpoints, &config(), policy)
            .await
            .unwrap();
        assert_eq!(client.endpoint(), server.address);
        assert!(client.accepted().is_some());
        client.ping().await.unwrap();
        let mut tablet = WireTablet::new("root.sg.d1", &[("s1", DataType::Int32)]);
        tablet.push_row(0, &[Some(Value::Int32(1))]).unwrap();
        client.insert_tablets(&[tablet.clone()]).await.unwrap();

        monoio::time::sleep(Duration::from_millis(500)).await;
        // The server closed the connection: the insert goes round the endpoints (the
        // dead one, the dropping one) and back to the server on a new connection.
        tablet.timestamps[0] = 1;
        client.insert_tablets(&[tablet]).await.unwrap();
        assert_eq!(client.endpoint(), server.address);
        let inserts = texts(&client.execute_sql("inserts").await.unwrap());
        assert_eq!(inserts, vec!["-:root.sg.d1@0", "-:root.sg.d1@1"]);

        let error = client.execute_sql("nonsense").await.unwrap_err();
        assert_eq!(error.status_code(), Some(StatusCode::SQL_PARSE_ERROR));
        assert_eq!(
            client.endpoint(),
            server.address,
            "a lasting error stays put"
        );

        // A refused login is not retried elsewhere either.
        let wrong = ClientConfig {
            password: "nope".into(),
            ..config()
        };
        let error = AsyncFailoverClient::connect(&[server.address, dead], &wrong, policy)
            .await
            .unwrap_err();
        assert_eq!(error.status_code(), Some(StatusCode::WRONG_LOGIN_PASSWORD));
        let error = AsyncFailoverClient::connect(&[dead, dropping], &config(), policy)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Net(_)), "{error}");
    });
}

#[test]
fn shard_aware_client_routes_refreshes_and_fails_over() {
    // Reserve a port so the route table can name the server's endpoint.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = probe.local_addr().unwrap();
    drop(probe);
    let server = spawn_server_on(
        address,
        ConnectionLimits::default(),
        Some(sample_route_table(address.to_string())),
    );
    // A closed port first among the seeds: the client must fail over.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    run_async(async move {
        let mut client = ShardAwareClient::connect(&[dead, server.address], config())
            .await
            .unwrap();
        assert_eq!(client.route_table().version(), 7);
        let tablet = |device: &str, time: i64| {
            let mut tablet = WireTablet::new(device, &[("s1", DataType::Int32)]);
            tablet.push_row(time, &[Some(Value::Int32(1))]).unwrap();
            tablet
        };
        // d1@0 has a route (shard 2); d1@5000 is a new time slot; d2 has no partition.
        let batch = [
            tablet("root.sg.d1", 0),
            tablet("root.sg.d1", 5000),
            tablet("root.sg.d2", 0),
        ];
        client.insert_tablets(&batch).await.unwrap();
        assert_eq!(client.shard_connection_count(), 1);
        // A stale answer from shard 2 makes the client refresh and resend.
        let mut plain = AsyncClient::connect(server.address, &config())
            .await
            .unwrap();
        plain.execute_sql("stale").await.unwrap();
        client
            .insert_tablets(&[tablet("root.sg.d1", 1)])
            .await
            .unwrap();
        let mut inserts = texts(&plain.execute_sql("inserts").await.unwrap());
        inserts.sort();
        assert_eq!(
            inserts,
            vec![
                "-:root.sg.d1@5000",
                "-:root.sg.d2@0",
                "2:root.sg.d1@0",
                "2:root.sg.d1@1"
            ]
        );
    });
}

/// Writes pings on a non-blocking socket until the kernel refuses more bytes for a
/// while (the server stopped reading), or `bytes_max` were written. Returns the bytes
/// written; the last ping may be partial.
fn ping_until_blocked(stream: &mut TcpStream, bytes_max: usize) -> usize {
    let ping = Frame::new(Opcode::Ping as u8, 0, 7, Bytes::new()).encode();
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1024)
        .collect();
    stream.set_nonblocking(true).unwrap();
    let mut written = 0;
    let mut refusals = 0;
    while written < bytes_max && refusals < 40 {
        let offset = written % batch.len();
        match stream.write(&batch[offset..]) {
            Ok(count) => {
                written += count;
                refusals = 0;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                refusals += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(error) => panic!("writing pings: {error}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    written
}

#[test]
fn a_client_that_never_reads_stops_the_server_reading() {
    // Pings are answered by the reader itself: before the outbox had a bound it
    // queued their answers for ever; now a full outbox stops the reading.
    const BYTES_MAX: usize = 256 * 1024 * 1024;
    let limits = ConnectionLimits {
        outbox_bytes_max: 64 * 1024,
        ..ConnectionLimits::default()
    };
    let server = spawn_server(limits, None);
    let (mut stream, mut buffer) = raw_session(server.address);
    let written = ping_until_blocked(&mut stream, BYTES_MAX);
    assert!(
        written < BYTES_MAX,
        "the server kept reading {written} bytes of pings from a client that never reads"
    );
    // Complete the last ping, then every ping gets its answer, in order.
    let ping_bytes = Frame::new(Opcode::Ping as u8, 0, 7, Bytes::new()).encode();
    let partial = written % ping_bytes.len();
    let pings = written.div_ceil(ping_bytes.len());
    let mut writer = stream.try_clone().unwrap();
    let finisher = std::thread::spawn(move || {
        if partial > 0 {
            writer.write_all(&ping_bytes[partial..]).unwrap();
        }
    });
    for _ in 0..pings {
        let frame = read_frame(&mut stream, &mut buffer).expect("a pong");
        assert_eq!(frame.opcode, Opcode::Ping.response_code());
        assert_eq!(status_of(&frame), StatusCode::SUCCESS_STATUS);
    }
    finisher.join().unwrap();
    write_frame(&mut stream, Opcode::ExecuteSql as u8, 9, sql("stats"));
    let frame = read_frame(&mut stream, &mut buffer).unwrap();
    assert_eq!(
        (frame.request_id, status_of(&frame)),
        (9, StatusCode::SUCCESS_STATUS)
    );
}

#[test]
fn a_spent_request_bytes_budget_answers_overloaded_and_the_connection_stays_usable() {
    let limits = ConnectionLimits {
        request_bytes_budget: iotdb_net::server::RequestBytesBudget::new(1024),
        ..ConnectionLimits::default()
    };
    let budget = limits.request_bytes_budget.clone();
    let server = spawn_server(limits, None);
    let (mut holder, mut holder_buffer) = raw_session(server.address);
    let (mut other, mut other_buffer) = raw_session(server.address);

    // A body larger than the whole budget is refused without being buffered.
    let statement = "x".repeat(4096);
    write_frame(&mut other, Opcode::ExecuteSql as u8, 3, sql(&statement));
    let refused = read_frame(&mut other, &mut other_buffer).unwrap();
    assert_eq!(refused.request_id, 3);
    assert_eq!(refused.opcode, Opcode::ExecuteSql.response_code());
    assert_eq!(status_of(&refused), StatusCode::WRITE_PROCESS_REJECT);

    // A header announcing 800 bytes holds them from its arrival, before the body comes.
    let held = Frame::new(Opcode::ExecuteSql as u8, 0, 4, sql(&"y".repeat(796))).encode();
    assert_eq!(held.len(), 24 + 800);
    holder.write_all(&held[..34]).unwrap();
    while budget.used() < 800 {
        std::thread::sleep(Duration::from_millis(2));
    }
    write_frame(
        &mut other,
        Opcode::ExecuteSql as u8,
        5,
        sql(&"z".repeat(400)),
    );
    let refused = read_frame(&mut other, &mut other_buffer).unwrap();
    assert_eq!(
        (refused.request_id, status_of(&refused)),
        (5, StatusCode::WRITE_PROCESS_REJECT)
    );
    // Pings cost nothing and are answered while the budget is spent.
    write_frame(&mut other, Opcode::Ping as u8, 6, Bytes::new());
    let pong = read_frame(&mut other, &mut other_buffer).unwrap();
    assert_eq!(
        (pong.request_id, status_of(&pong)),
        (6, StatusCode::SUCCESS_STATUS)
    );

    // Once the held request is answered its bytes are given back.
    holder.write_all(&held[34..]).unwrap();
    let answer = read_frame(&mut holder, &mut holder_buffer).unwrap();
    assert_eq!(
        (answer.request_id, status_of(&answer)),
        (4, StatusCode::SQL_PARSE_ERROR)
    );
    write_frame(
        &mut other,
        Opcode::ExecuteSql as u8,
        7,
        sql(&"z".repeat(400)),
    );
    let answer = read_frame(&mut other, &mut other_buffer).unwrap();
    assert_eq!(
        (answer.request_id, status_of(&answer)),
        (7, StatusCode::SQL_PARSE_ERROR),
        "the budget was given back"
    );
    assert_eq!(budget.used(), 0);
}
