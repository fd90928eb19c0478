//! One client port, one server: a second server started on a port another server already
//! listens on must refuse to start (naming the address), and the first keeps serving every
//! client. Before this was enforced, both bound the port with `SO_REUSEPORT` and the kernel
//! split new connections, and so a user's writes, between the two processes.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iotdb_net::{CreateDatabase, DataType, RawQuery, SeriesSelection, Value, WireTablet};
use iotdb_tests::model::rows_of;
use iotdb_tests::{TestServer, server_options};

/// How long the refused server may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh connections opened after the refusal, each writing its own device: with a shared
/// port about half of them would have reached the second process.
const CONNECTIONS: i64 = 24;

#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let first = TestServer::start(server_options!().cores(2)).expect("first server");
    let address = first.address();
    let mut client = first.client().expect("connect");
    client
        .create_database(CreateDatabase {
            name: "root.port".to_owned(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");

    let second_dir = tempfile::tempdir().expect("temporary directory");
    let mut second = Command::new(env!("CARGO_BIN_EXE_iotdb-server-under-test"))
        .arg("standalone")
        .arg("--data-dir")
        .arg(second_dir.path().join("data"))
        .args(["--rpc-address", &address.ip().to_string()])
        .args(["--rpc-port", &address.port().to_string()])
        .args(["--cores", "2"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the second server");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second server on {address} is still running after {EXIT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    second
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "the second server exited with {status}");
    assert!(
        stderr.contains(&address.to_string()) && stderr.contains("already in use"),
        "the refusal must name {address} and say it is in use; stderr:\n{stderr}"
    );
    assert!(
        !stdout.contains(iotdb_node::server::READY_LINE_PREFIX),
        "the second server announced itself ready: {stdout}"
    );

    // Every new connection reaches the first server: each writes its own device, and one
    // client then sees them all.
    for index in 0..CONNECTIONS {
        let mut writer = first.client().expect("connect");
        let device = format!("root.port.d{index}");
        let mut tablet = WireTablet::new(&device, &[("s", DataType::Int64)]);
        tablet
            .push_row(index, &[Some(Value::Int64(index * 7))])
            .expect("row");
        writer.insert_tablets(&[tablet]).expect("insert");
    }
    let mut reader = first.client().expect("connect");
    for index in 0..CONNECTIONS {
        let batches = reader
            .query_raw(RawQuery {
                series: vec![SeriesSelection {
                    device: format!("root.port.d{index}"),
                    measurements: vec!["s".to_owned()],
                }],
                start_time: i64::MIN,
                end_time: i64::MAX,
                limit: None,
                offset: 0,
            })
            .expect("query");
        let (_, rows) = rows_of(&batches).expect("rows");
        assert_eq!(
            rows,
            vec![(index, vec![Some(Value::Int64(index * 7))])],
            "device {index}"
        );
    }
}
