//! The internal transport between real endpoints on 127.0.0.1 ports, each node on its own
//! thread with its own monoio runtime (as each would own a core): pipelined request/response
//! pairing under load, a peer restart, misdirected and garbage bytes, a cluster-name
//! mismatch, exclusive ports, and the bounded queue's `Overloaded`.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use iotdb_consensus::io::{NodeId, Transport, TransportError};
use iotdb_net::internal_frame::{OP_ERROR, decode_internal_frame};
use iotdb_node::internal::{
    EndpointConfig, InternalEndpoint, InternalError, InternalHandler, InternalLimits,
    bind_internal_port,
};

const CLUSTER: &str = "defaultCluster";

/// What a serving node saw: request tags with their delivery counts, and one-way messages.
#[derive(Default)]
struct Seen {
    requests: HashMap<u64, u32>,
    messages: Vec<(NodeId, u64)>,
}

/// Answers a request `tag u64 | delay_ms u8` with `tag | "ok"` after the delay, so
/// responses come back out of order.
struct Recorder {
    seen: Arc<Mutex<Seen>>,
}

fn tag_of(body: &[u8]) -> u64 {
    u64::from_le_bytes(body[..8].try_into().expect("test bodies carry a tag"))
}

impl InternalHandler for Recorder {
    fn handle_request(&self, _from: NodeId, body: Bytes) -> Pin<Box<dyn Future<Output = Bytes>>> {
        let tag = tag_of(&body);
        *self.seen.lock().unwrap().requests.entry(tag).or_default() += 1;
        let delay_ms = u64::from(body.get(8).copied().unwrap_or(0));
        Box::pin(async move {
            if delay_ms > 0 {
                monoio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            let mut out = BytesMut::new();
            out.put_u64_le(tag);
            out.put_slice(b"ok");
            out.freeze()
        })
    }

    fn on_message(&self, from: NodeId, body: Bytes) {
        self.seen
            .lock()
            .unwrap()
            .messages
            .push((from, tag_of(&body)));
    }
}

fn request_body(tag: u64, delay_ms: u8) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64_le(tag);
    out.put_u8(delay_ms);
    out.freeze()
}

/// Runs `future` on a fresh monoio runtime (io_uring where the kernel has it) with timers.
fn run<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("building a monoio runtime")
        .block_on(future)
}

fn config(id: u32, cluster: &str, limits: InternalLimits) -> EndpointConfig {
    EndpointConfig {
        node_id: NodeId(id),
        cluster_name: cluster.into(),
        limits,
    }
}

/// A serving node on its own thread; dropping its `stop` ends the thread and its runtime,
/// which closes every socket of it (a process exit, as far as peers can tell).
struct ServingNode {
    address: SocketAddr,
    stop: Option<futures_channel::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServingNode {
    fn start(id: u32, cluster: &str, address: SocketAddr, seen: Arc<Mutex<Seen>>) -> ServingNode {
        let (bound, address_receiver) = std::sync::mpsc::channel();
        let mut node = ServingNode::spawn(id, cluster, address, seen, bound);
        node.address = address_receiver.recv().expect("the node binds its port");
        node
    }

    /// Starts a node at a known address without waiting for it: a restarted node may have
    /// to wait for its port, and the caller's runtime must keep running meanwhile.
    fn restart(id: u32, cluster: &str, address: SocketAddr, seen: Arc<Mutex<Seen>>) -> ServingNode {
        ServingNode::spawn(id, cluster, address, seen, std::sync::mpsc::channel().0)
    }

    fn spawn(
        id: u32,
        cluster: &str,
        address: SocketAddr,
        seen: Arc<Mutex<Seen>>,
        bound: std::sync::mpsc::Sender<SocketAddr>,
    ) -> ServingNode {
        let (stop, stopped) = futures_channel::oneshot::channel::<()>();
        let cluster = cluster.to_owned();
        let thread = std::thread::spawn(move || {
            let listener = bind_with_retry(address);
            let _ = bound.send(listener.local_addr().unwrap());
            run(async move {
                let endpoint = InternalEndpoint::new(
                    config(id, &cluster, InternalLimits::default()),
                    Rc::new(Recorder { seen }),
                )
                .unwrap();
                endpoint.serve(listener).unwrap();
                let _ = stopped.await;
                endpoint.shut_down();
                // Let the accept loop and the connections cancel their reads and close.
                monoio::time::sleep(Duration::from_millis(10)).await;
            });
        });
        ServingNode {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for ServingNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A restarted node may find its port still held for a moment by the dying runtime.
fn bind_with_retry(address: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match bind_internal_port(address, "dn_internal_port") {
            Ok(listener) => return listener,
            Err(InternalError::PortInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("binding {address}: {error}"),
        }
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client(
    id: u32,
    cluster: &str,
    peer: (u32, SocketAddr),
    limits: InternalLimits,
) -> InternalEndpoint {
    let endpoint = InternalEndpoint::new(
        config(id, cluster, limits),
        Rc::new(Recorder {
            seen: Arc::default(),
        }),
    )
    .unwrap();
    endpoint.add_peer(NodeId(peer.0), peer.1);
    endpoint
}

#[test]
fn pipelined_requests_pair_with_their_responses_under_load() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = ServingNode::start(2, CLUSTER, any_port(), seen.clone());
    run(async {
        let endpoint = client(1, CLUSTER, (2, server.address), InternalLimits::default());
        let mut tag = 0u64;
        for _round in 0..4 {
            let mut handles = Vec::new();
            for _ in 0..500 {
                tag += 1;
                let endpoint = endpoint.clone();
                let my_tag = tag;
                handles.push(monoio::spawn(async move {
                    let body = request_body(my_tag, (my_tag % 4) as u8);
                    // A bound for a hang, not a figure: on a loaded CI machine running
                    // other multi-process tests beside this one, 500 requests in flight
                    // once took more than 20 s.
                    let response = endpoint
                        .request(NodeId(2), body, Duration::from_secs(60))
                        .await
                        .expect("request under load");
                    (my_tag, response)
                }));
            }
            for handle in handles {
                let (my_tag, response) = handle.await;
                assert_eq!(
                    tag_of(&response),
                    my_tag,
                    "response paired with its request"
                );
                assert_eq!(&response[8..], b"ok");
            }
        }
        // One-way messages through the consensus `Transport` trait.
        let mut transport = endpoint.clone();
        for message in 0..100u64 {
            transport
                .send(NodeId(2), Bytes::copy_from_slice(&message.to_le_bytes()))
                .unwrap();
        }
        assert_eq!(
            transport.send(NodeId(9), Bytes::new()),
            Err(TransportError::UnknownNode(NodeId(9)))
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().messages.len() < 100 && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 2000);
    assert!(
        seen.requests.values().all(|&count| count == 1),
        "each request handled once"
    );
    let messages: Vec<u64> = seen.messages.iter().map(|&(_, tag)| tag).collect();
    assert_eq!(
        messages,
        (0..100).collect::<Vec<_>>(),
        "one connection keeps order"
    );
    assert!(seen.messages.iter().all(|&(from, _)| from == NodeId(1)));
}

#[test]
fn a_restarted_peer_is_unreachable_while_down_and_reached_again_after() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut server = ServingNode::start(2, CLUSTER, any_port(), seen.clone());
    let address = server.address;
    let limits = InternalLimits {
        connect_backoff_initial: Duration::from_millis(10),
        unreachable_hold: Duration::from_millis(100),
        ..InternalLimits::default()
    };
    let mut succeeded = Vec::new();
    run(async {
        let endpoint = client(1, CLUSTER, (2, address), limits);
        let timeout = Duration::from_secs(2);
        for tag in 1..=10 {
            endpoint
                .request(NodeId(2), request_body(tag, 0), timeout)
                .await
                .unwrap();
            succeeded.push(tag);
        }
        server.stop();
        let mut tag = 100;
        for _ in 0..5 {
            tag += 1;
            let error = endpoint
                .request(NodeId(2), request_body(tag, 0), timeout)
                .await
                .expect_err("the peer is down");
            assert!(
                matches!(
                    error,
                    InternalError::Unreachable { .. } | InternalError::Timeout { .. }
                ),
                "{error}"
            );
        }
        server = ServingNode::restart(2, CLUSTER, address, seen.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tag += 1;
            match endpoint
                .request(NodeId(2), request_body(tag, 0), timeout)
                .await
            {
                Ok(response) => {
                    assert_eq!(tag_of(&response), tag);
                    succeeded.push(tag);
                    break;
                }
                Err(error) if Instant::now() < deadline => {
                    assert!(matches!(
                        error,
                        InternalError::Unreachable { .. } | InternalError::Timeout { .. }
                    ));
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("peer not reached after its restart: {error}"),
            }
        }
        for _ in 0..10 {
            tag += 1;
            endpoint
                .request(NodeId(2), request_body(tag, 0), timeout)
                .await
                .unwrap();
            succeeded.push(tag);
        }
    });
    drop(server);
    let seen = seen.lock().unwrap();
    assert!(
        seen.requests.values().all(|&count| count == 1),
        "never delivered twice"
    );
    for tag in succeeded {
        assert_eq!(
            seen.requests.get(&tag),
            Some(&1),
            "request {tag} answered once"
        );
    }
}

/// Writes `bytes` to the port and reads until the server closes, within 5 s.
fn poke(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("the server closes the connection");
    reply
}

#[test]
fn client_frames_and_garbage_are_refused_and_the_endpoint_keeps_serving() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = ServingNode::start(2, CLUSTER, any_port(), seen.clone());

    let ping = iotdb_net::Frame::new(iotdb_net::Opcode::Ping as u8, 0, 1, Bytes::new()).encode();
    let reply = poke(server.address, &ping);
    let mut buffer = BytesMut::from(&reply[..]);
    let frame = iotdb_net::frame::decode_frame(&mut buffer, 1 << 20)
        .unwrap()
        .expect("a client-protocol error frame");
    assert_eq!(frame.opcode, iotdb_net::Opcode::Error.response_code());
    let status = iotdb_net::decode_response(iotdb_net::Opcode::Error, frame.body)
        .unwrap()
        .expect_err("an error status");
    assert!(
        status.message.contains("internal port"),
        "{}",
        status.message
    );

    let reply = poke(server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buffer = BytesMut::from(&reply[..]);
    let frame = decode_internal_frame(&mut buffer, 1 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(frame.opcode, OP_ERROR);
    assert!(String::from_utf8_lossy(&frame.body).contains("bad magic"));

    run(async {
        let endpoint = client(1, CLUSTER, (2, server.address), InternalLimits::default());
        let response = endpoint
            .request(NodeId(2), request_body(7, 0), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(tag_of(&response), 7);
    });
}

#[test]
fn a_cluster_name_mismatch_is_refused_naming_both() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = ServingNode::start(2, "clusterA", any_port(), seen.clone());
    run(async {
        let endpoint = client(
            1,
            "clusterB",
            (2, server.address),
            InternalLimits::default(),
        );
        let error = endpoint
            .request(NodeId(2), request_body(1, 0), Duration::from_secs(5))
            .await
            .expect_err("refused");
        let InternalError::Refused { message, .. } = &error else {
            panic!("expected a refusal, got {error}");
        };
        assert!(
            message.contains("clusterA") && message.contains("clusterB"),
            "{message}"
        );
    });
    assert!(seen.lock().unwrap().requests.is_empty());
}

#[test]
fn a_second_endpoint_on_the_same_internal_port_fails_to_bind() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = ServingNode::start(2, CLUSTER, any_port(), seen);
    let error = bind_internal_port(server.address, "dn_internal_port").expect_err("exclusive");
    assert!(matches!(
        error,
        InternalError::PortInUse {
            key: "dn_internal_port",
            ..
        }
    ));
    assert!(error.to_string().contains("dn_internal_port"), "{error}");
}

#[test]
fn a_full_queue_is_overloaded_and_a_dead_peer_unreachable() {
    // A port nobody listens on: bind one, note it, close it.
    let dead = std::net::TcpListener::bind(any_port())
        .unwrap()
        .local_addr()
        .unwrap();
    let limits = InternalLimits {
        peer_queue_frames_max: 4,
        connect_attempts_max: 2,
        connect_backoff_initial: Duration::from_millis(5),
        unreachable_hold: Duration::from_secs(60),
        ..InternalLimits::default()
    };
    run(async {
        let endpoint = client(1, CLUSTER, (2, dead), limits);
        for _ in 0..4 {
            endpoint
                .send_message(NodeId(2), Bytes::from_static(b"x"))
                .unwrap();
        }
        assert!(matches!(
            endpoint.send_message(NodeId(2), Bytes::from_static(b"x")),
            Err(InternalError::Overloaded { .. })
        ));
        let error = endpoint
            .request(NodeId(2), request_body(1, 0), Duration::from_secs(5))
            .await;
        // The queue is still full until the driver gives up, or the peer is already down.
        assert!(matches!(
            error,
            Err(InternalError::Overloaded { .. } | InternalError::Unreachable { .. })
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            match endpoint.send_message(NodeId(2), Bytes::from_static(b"x")) {
                Err(error @ InternalError::Unreachable { .. }) => break error,
                _ if Instant::now() < deadline => {
                    monoio::time::sleep(Duration::from_millis(10)).await
                }
                other => panic!("expected Unreachable, got {other:?}"),
            }
        };
        let mut transport = endpoint.clone();
        assert_eq!(
            transport.send(NodeId(2), Bytes::new()),
            Err(TransportError::Unreachable(NodeId(2)))
        );
        assert!(error.to_string().contains("unreachable"));
    });
}

#[test]
fn a_half_open_connection_is_dropped_and_reconnected() {
    // A peer that says hello, then never answers and never closes (its host died).
    let listener = std::net::TcpListener::bind(any_port()).unwrap();
    let address = listener.local_addr().unwrap();
    let accepts = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let accepts = accepts.clone();
        move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut hello = [0u8; 24 + 6 + CLUSTER.len()];
                if stream.read_exact(&mut hello).is_err() {
                    return;
                }
                let mut body = BytesMut::new();
                body.put_u32_le(2);
                body.put_u16_le(CLUSTER.len() as u16);
                body.put_slice(CLUSTER.as_bytes());
                let accepted = iotdb_net::internal_frame::internal_frame(
                    iotdb_net::internal_frame::OP_HELLO_ACCEPTED,
                    0,
                    body.freeze(),
                );
                stream.write_all(&accepted).unwrap();
                accepts.lock().unwrap().push(stream);
            }
        }
    });
    let limits = InternalLimits {
        dead_connection_silence: Duration::from_millis(200),
        ..InternalLimits::default()
    };
    run(async {
        let endpoint = client(1, CLUSTER, (2, address), limits);
        let error = endpoint
            .request(NodeId(2), request_body(1, 0), Duration::from_millis(300))
            .await
            .expect_err("the peer never answers");
        assert!(matches!(error, InternalError::Timeout { .. }), "{error}");
        // The silent connection is presumed dead; the next request opens a new one.
        monoio::time::sleep(Duration::from_millis(50)).await;
        let _ = endpoint
            .request(NodeId(2), request_body(2, 0), Duration::from_millis(300))
            .await;
    });
    assert_eq!(
        accepts.lock().unwrap().len(),
        2,
        "a second connection was opened"
    );
}

/// Hands every one-way message to a shared inbox (what a shard loop's driver would feed to
/// `Node::on_message`).
struct Inbox {
    messages: Rc<std::cell::RefCell<Vec<(NodeId, Bytes)>>>,
}

impl InternalHandler for Inbox {
    fn handle_request(&self, _from: NodeId, _body: Bytes) -> Pin<Box<dyn Future<Output = Bytes>>> {
        Box::pin(async { Bytes::new() })
    }

    fn on_message(&self, from: NodeId, body: Bytes) {
        self.messages.borrow_mut().push((from, body));
    }
}

/// The consensus crate's `Rpc` over the real transport: requests and responses travel as
/// one-way messages (`Transport::send`) and pair by the envelope's id.
#[test]
fn consensus_rpc_pairs_over_the_real_transport() {
    use iotdb_consensus::io::{Clock, SystemClock, TimerId};
    use iotdb_consensus::rpc::{Incoming, Rpc};

    struct Env {
        endpoint: InternalEndpoint,
        clock: SystemClock,
    }
    impl Clock for Env {
        fn now_ms(&self) -> u64 {
            self.clock.now_ms()
        }
        fn set_timer(&mut self, timer: TimerId, after_ms: u64) {
            self.clock.set_timer(timer, after_ms)
        }
        fn cancel_timer(&mut self, timer: TimerId) {
            self.clock.cancel_timer(timer)
        }
    }
    impl Transport for Env {
        fn send(&mut self, to: NodeId, payload: Bytes) -> Result<(), TransportError> {
            self.endpoint.send(to, payload)
        }
    }

    run(async {
        let mut nodes = Vec::new();
        for id in [1u32, 2] {
            let messages = Rc::new(std::cell::RefCell::new(Vec::new()));
            let endpoint = InternalEndpoint::new(
                config(id, CLUSTER, InternalLimits::default()),
                Rc::new(Inbox {
                    messages: messages.clone(),
                }),
            )
            .unwrap();
            let address = endpoint
                .serve(bind_internal_port(any_port(), "dn_internal_port").unwrap())
                .unwrap();
            nodes.push((endpoint, messages, address));
        }
        nodes[0].0.add_peer(NodeId(2), nodes[1].2);
        nodes[1].0.add_peer(NodeId(1), nodes[0].2);
        let mut env = Env {
            endpoint: nodes[0].0.clone(),
            clock: SystemClock::new(),
        };
        let mut rpc = Rpc::new(7);
        let mut sent = HashMap::new();
        for index in 0..200u32 {
            let id = rpc
                .request(&mut env, NodeId(2), &index.to_le_bytes(), 10_000)
                .unwrap();
            sent.insert(id, index);
        }
        let mut server_rpc = Rpc::new(9);
        let mut server_transport = nodes[1].0.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sent.is_empty() && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
            for (from, frame) in nodes[1].1.borrow_mut().drain(..) {
                let Incoming::Request { from, id, payload } =
                    server_rpc.receive(from, &frame).unwrap()
                else {
                    panic!("node 2 gets only requests");
                };
                Rpc::respond(&mut server_transport, from, id, &payload).unwrap();
            }
            for (from, frame) in nodes[0].1.borrow_mut().drain(..) {
                let Incoming::Response { id, payload, .. } = rpc.receive(from, &frame).unwrap()
                else {
                    panic!("node 1 gets only responses");
                };
                let index = sent
                    .remove(&id)
                    .expect("a response pairs with a pending request");
                assert_eq!(&payload[..], &index.to_le_bytes());
            }
        }
        assert!(sent.is_empty(), "{} requests unanswered", sent.len());
        assert_eq!(rpc.in_flight(), 0);
    });
}
