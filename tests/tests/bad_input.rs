//! Bad input over the wire: garbage, lying frame headers, unknown opcodes, malformed
//! bodies, wrong types, unknown paths, bad passwords and requests before the handshake.
//! Each gets its typed answer (or a closed connection where framing is lost), and the
//! server keeps serving other clients with bounded memory.

use bytes::Bytes;
use iotdb_net::{
    ClientConfig, CreateDatabase, DataType, Opcode, RawQuery, Request, SeriesSelection, StatusCode,
    Value, WireTablet,
};
use iotdb_tests::model::rows_of;
use iotdb_tests::raw::{RawConnection, header, truncated_query_body};
use iotdb_tests::{TestServer, server_options};

const DEVICE: &str = "root.bad.d1";
/// Opcode byte of the error response (`Error | 0x80`).
const ERROR_RESPONSE_OPCODE: u8 = 0xFF;
/// The status a wrong type for an existing series gets, from the schema or the engine.
const TYPE_MISMATCH: StatusCode = StatusCode::DATA_TYPE_MISMATCH;
/// RSS growth tolerated across a flood of bad input.
const RSS_GROWTH_BYTES_MAX: u64 = 64 * 1024 * 1024;

fn query(device: &str, measurements: &[&str]) -> RawQuery {
    RawQuery {
        series: vec![SeriesSelection {
            device: device.to_owned(),
            measurements: measurements.iter().map(|m| (*m).to_owned()).collect(),
        }],
        start_time: i64::MIN,
        end_time: i64::MAX,
        limit: None,
        offset: 0,
    }
}

/// Creates `root.bad` with `root.bad.d1.s1` (INT64) and `root.bad.d1.s3` (INT64) holding
/// points at 1..=3.
fn seed(server: &TestServer) {
    let mut client = server.client().expect("connect");
    client
        .create_database(CreateDatabase {
            name: "root.bad".to_owned(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
    let mut tablet = WireTablet::new(DEVICE, &[("s1", DataType::Int64), ("s3", DataType::Int64)]);
    for t in 1..=3 {
        tablet
            .push_row(
                t,
                &[Some(Value::Int64(t * 10)), Some(Value::Int64(t * 100))],
            )
            .expect("row");
    }
    client.insert_tablets(&[tablet]).expect("seed insert");
}

/// Another client can still connect, ping and read the seeded data.
fn assert_healthy(server: &TestServer) {
    let mut client = server.client().expect("a second client connects");
    client.ping().expect("ping");
    let batches = client.query_raw(query(DEVICE, &["s1"])).expect("query");
    let (_, rows) = rows_of(&batches).expect("batches");
    let values: Vec<(i64, Option<Value>)> = rows
        .into_iter()
        .map(|(t, mut cells)| (t, cells.pop().flatten()))
        .collect();
    assert_eq!(
        values,
        (1..=3)
            .map(|t| (t, Some(Value::Int64(t * 10))))
            .collect::<Vec<_>>()
    );
}

/// Lost framing: at most one error frame, never a success, then the server closes.
fn assert_closed_with_error(connection: &mut RawConnection, what: &str) {
    let responses = connection
        .read_until_closed()
        .unwrap_or_else(|error| panic!("{what}: {error:#}"));
    assert!(responses.len() <= 1, "{what}: {responses:?}");
    for response in &responses {
        assert_ne!(
            response.status,
            StatusCode::SUCCESS_STATUS,
            "{what}: {response:?}"
        );
        assert_eq!(
            response.opcode, ERROR_RESPONSE_OPCODE,
            "{what}: {response:?}"
        );
    }
}

fn garbage(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn garbage_bytes_close_the_connection() {
    let server = TestServer::start(server_options!()).expect("start");
    seed(&server);
    for (index, authenticated) in [false, true].into_iter().enumerate() {
        let mut connection = RawConnection::connect(server.address()).expect("connect");
        if authenticated {
            connection.authenticate().expect("handshake");
        }
        connection
            .send_bytes(&garbage(300, index as u64 + 5))
            .expect("send");
        assert_closed_with_error(&mut connection, "garbage");
        assert_healthy(&server);
    }
}

#[test]
fn huge_body_claims_are_refused() {
    let server = TestServer::start(server_options!()).expect("start");
    seed(&server);
    for authenticated in [false, true] {
        let mut connection = RawConnection::connect(server.address()).expect("connect");
        if authenticated {
            connection.authenticate().expect("handshake");
        }
        // 2^31 bytes claimed, 16 sent.
        let mut bytes = header(Opcode::QueryRaw as u8, 0, 7, 1 << 31, 0);
        bytes.extend_from_slice(&[0u8; 16]);
        connection.send_bytes(&bytes).expect("send");
        let what = format!("2^31-byte body (authenticated: {authenticated})");
        let responses = connection.read_until_closed().expect(&what);
        assert_eq!(responses.len(), 1, "{what}: one error frame: {responses:?}");
        assert_eq!(responses[0].status, StatusCode::ILLEGAL_PARAMETER, "{what}");
        assert_eq!(
            responses[0].request_id, 7,
            "{what}: the header's request id"
        );
        assert_healthy(&server);
    }
}

#[test]
fn well_framed_bad_requests_get_errors_and_the_connection_stays_usable() {
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    seed(&server);
    let mut connection = RawConnection::connect(server.address()).expect("connect");
    connection.authenticate().expect("handshake");

    // Unknown opcode.
    connection.send_frame(0x42, 11, b"").expect("send");
    let answer = connection
        .read_response()
        .expect("read")
        .expect("an answer");
    assert_eq!(answer.request_id, 11, "{answer:?}");
    assert_eq!(
        answer.status,
        StatusCode::UNSUPPORTED_OPERATION,
        "{answer:?}"
    );
    assert_eq!(answer.opcode, ERROR_RESPONSE_OPCODE, "{answer:?}");
    connection.ping(12).expect("usable after an unknown opcode");

    // Malformed bodies of known opcodes.
    let malformed: [(Opcode, Bytes); 4] = [
        (Opcode::QueryRaw, truncated_query_body()),
        (Opcode::InsertTablets, Bytes::from(garbage(64, 9))),
        (Opcode::QueryAggregate, Bytes::from_static(&[1, 2, 3])),
        // A string whose length runs past the body.
        (
            Opcode::ExecuteSql,
            Bytes::from_static(&[0xff, 0xff, 0, 0, b'x']),
        ),
    ];
    for (index, (opcode, body)) in malformed.into_iter().enumerate() {
        let request_id = 100 + index as u64;
        connection
            .send_frame(opcode as u8, request_id, &body)
            .expect("send");
        let answer = connection
            .read_response()
            .expect("read")
            .expect("an answer");
        assert_eq!(answer.request_id, request_id, "{opcode:?}: {answer:?}");
        assert_eq!(
            answer.status,
            StatusCode::ILLEGAL_PARAMETER,
            "{opcode:?}: {answer:?}"
        );
        connection
            .ping(200 + index as u64)
            .expect("usable after a malformed body");
    }

    // A checksum mismatch spoils only its frame.
    let body = Request::QueryRaw(query(DEVICE, &["s1"])).encode_body();
    let mut bytes = header(
        Opcode::QueryRaw as u8,
        0,
        300,
        body.len() as u32,
        0xdead_beef,
    );
    bytes.extend_from_slice(&body);
    connection.send_bytes(&bytes).expect("send");
    let answer = connection
        .read_response()
        .expect("read")
        .expect("an answer");
    assert_eq!(answer.request_id, 300, "{answer:?}");
    assert_eq!(answer.status, StatusCode::ILLEGAL_PARAMETER, "{answer:?}");
    connection
        .ping(301)
        .expect("usable after a checksum mismatch");

    // Reserved flag bits.
    let bytes = header(Opcode::Ping as u8, 0x8000, 302, 0, crc32c::crc32c(b""));
    connection.send_bytes(&bytes).expect("send");
    let answer = connection
        .read_response()
        .expect("read")
        .expect("an answer");
    assert_eq!(answer.request_id, 302, "{answer:?}");
    assert_eq!(answer.status, StatusCode::ILLEGAL_PARAMETER, "{answer:?}");
    connection.ping(303).expect("usable after reserved flags");
    assert_healthy(&server);
}

#[test]
fn requests_before_the_handshake_and_bad_passwords() {
    let server = TestServer::start(server_options!()).expect("start");
    seed(&server);

    // A query before the handshake: 802, and the connection may still log in.
    let mut connection = RawConnection::connect(server.address()).expect("connect");
    connection
        .send_request(&Request::QueryRaw(query(DEVICE, &["s1"])), 5)
        .expect("send");
    let answer = connection
        .read_response()
        .expect("read")
        .expect("an answer");
    assert_eq!(answer.status, StatusCode::NOT_LOGIN, "{answer:?}");
    assert_eq!(answer.request_id, 5);
    connection
        .ping(6)
        .expect("ping is allowed before the handshake");
    connection
        .authenticate()
        .expect("handshake after a refused request");
    connection.ping(7).expect("ping after login");

    // Wrong password through the SDK: 801.
    let config = ClientConfig {
        password: "not-root".to_owned(),
        ..ClientConfig::default()
    };
    let error = server
        .client_with(&config)
        .expect_err("a wrong password logs in");
    let code = error
        .downcast_ref::<iotdb_net::ClientError>()
        .and_then(iotdb_net::ClientError::status_code);
    assert_eq!(code, Some(StatusCode::WRONG_LOGIN_PASSWORD), "{error:#}");

    // Unknown user, and repeated failures close the connection.
    let mut connection = RawConnection::connect(server.address()).expect("connect");
    for attempt in 0..3 {
        let answer = connection.handshake("nobody", "root").expect("answer");
        assert_eq!(
            answer.status,
            StatusCode::WRONG_LOGIN_PASSWORD,
            "attempt {attempt}"
        );
    }
    let rest = connection
        .read_until_closed()
        .expect("closed after 3 failures");
    assert!(rest.is_empty(), "{rest:?}");
    assert_healthy(&server);
}

#[test]
fn wrong_type_for_an_existing_series_writes_nothing_of_the_tablet() {
    // IoTDB's all-or-nothing setting.
    wrong_type_for_an_existing_series(false);
}

#[test]
fn wrong_type_for_an_existing_series_writes_the_rest_with_partial_insert() {
    // IoTDB's default: the columns that fit are written, the failing one is reported.
    wrong_type_for_an_existing_series(true);
}

fn wrong_type_for_an_existing_series(partial: bool) {
    let options = server_options!()
        .cores(2)
        .config_toml(&format!("enable_partial_insert = {partial}\n"));
    let server = TestServer::start(options).expect("start");
    seed(&server);
    // From each shard, so both a warm and a cold schema cache are exercised.
    for shard in 0..2u32 {
        let config = ClientConfig {
            target_shard: Some(shard),
            ..ClientConfig::default()
        };
        let mut client = server.client_with(&config).expect("connect");
        let measurement_new = format!("new{shard}");
        let mut tablet = WireTablet::new(
            DEVICE,
            &[
                ("s3", DataType::Int64),
                (measurement_new.as_str(), DataType::Int32),
                ("s1", DataType::Double),
            ],
        );
        let first = 10 + 10 * i64::from(shard);
        for t in first..first + 3 {
            tablet
                .push_row(
                    t,
                    &[
                        Some(Value::Int64(-1)),
                        Some(Value::Int32(-2)),
                        Some(Value::Double(-3.5)),
                    ],
                )
                .expect("row");
        }
        let error = client
            .insert_tablets(&[tablet])
            .expect_err("a DOUBLE into an INT64 series was accepted");
        let times_of = |client: &mut iotdb_net::BlockingClient, measurement: &str| -> Vec<i64> {
            match client.query_raw(query(DEVICE, &[measurement])) {
                Ok(batches) => {
                    let (_, rows) = rows_of(&batches).expect("batches");
                    rows.iter().map(|(t, _)| *t).collect()
                }
                Err(error) => {
                    // Without partial insert the new series may not exist at all.
                    assert_eq!(
                        error.status_code(),
                        Some(StatusCode::PATH_NOT_EXIST),
                        "{error}"
                    );
                    Vec::new()
                }
            }
        };
        // s1 (the mismatched column) keeps only the seeded points either way.
        assert_eq!(
            times_of(&mut client, "s1"),
            vec![1, 2, 3],
            "shard {shard}: s1"
        );
        let written: Vec<i64> = (first..first + 3).collect();
        if partial {
            let mut s3 = vec![1, 2, 3];
            for earlier in 0..=shard {
                s3.extend(10 + 10 * i64::from(earlier)..13 + 10 * i64::from(earlier));
            }
            assert_eq!(times_of(&mut client, "s3"), s3, "shard {shard}: s3");
            assert_eq!(times_of(&mut client, &measurement_new), written);
            assert!(error.to_string().contains("[s1]"), "{error}");
        } else {
            assert_eq!(
                times_of(&mut client, "s3"),
                vec![1, 2, 3],
                "shard {shard}: s3"
            );
            assert!(times_of(&mut client, &measurement_new).is_empty());
        }
        client.ping().expect("the connection stays usable");
        // Checked last, so a wrong code does not hide a wrong write.
        assert_eq!(
            error.status_code(),
            Some(TYPE_MISMATCH),
            "shard {shard}: the same error must get the same code from every shard: {error}"
        );
    }
    assert_healthy(&server);
}

#[test]
fn unknown_databases_and_series_get_typed_statuses() {
    let server = TestServer::start(server_options!()).expect("start");
    seed(&server);
    let mut client = server.client().expect("connect");
    for (device, measurement) in [
        ("root.nosuchdb.d1", "s1"),
        (DEVICE, "nosuchseries"),
        ("root.bad.nosuchdevice", "s1"),
    ] {
        let error = client
            .query_raw(query(device, &[measurement]))
            .expect_err("a query of an unknown series succeeded");
        let code = error.status_code();
        assert!(
            code == Some(StatusCode::PATH_NOT_EXIST)
                || code == Some(StatusCode::DATABASE_NOT_EXIST),
            "{device}.{measurement}: {error}"
        );
        let error = client
            .query_aggregate(iotdb_net::AggregateQuery {
                series: query(device, &[measurement]).series,
                start_time: 0,
                end_time: 100,
                aggregations: vec![iotdb_net::Aggregation::Count],
                group_by: None,
            })
            .expect_err("an aggregate of an unknown series succeeded");
        let code = error.status_code();
        assert!(
            code == Some(StatusCode::PATH_NOT_EXIST)
                || code == Some(StatusCode::DATABASE_NOT_EXIST),
            "{device}.{measurement}: {error}"
        );
        // LAST of nothing is an empty answer or a typed status, never a broken connection.
        match client.query_last(query(device, &[measurement]).series) {
            Ok(points) => assert!(points.is_empty(), "{points:?}"),
            Err(error) => assert!(error.status_code().is_some(), "{error}"),
        }
        client.ping().expect("usable after a typed error");
    }
    assert_healthy(&server);
}

/// An aggregate whose answer would pass the server's bound (windows × series × functions)
/// is refused with a typed status before anything is read, where it used to grow until
/// the kernel killed the server; a large one within the bound (its windows asked a part of
/// the series at a time) is answered in full.
#[test]
fn an_aggregate_too_large_to_answer_gets_a_typed_error() {
    let server = TestServer::start(server_options!()).expect("start");
    seed(&server);
    let mut client = server.client().expect("connect");
    let hour = 3_600_000;
    let aggregate = |end_time: i64, interval_ms: i64| iotdb_net::AggregateQuery {
        series: query(DEVICE, &["s1", "s3"]).series,
        start_time: 0,
        end_time,
        aggregations: vec![iotdb_net::Aggregation::Count, iotdb_net::Aggregation::Avg],
        group_by: Some(iotdb_net::GroupByWindow {
            start_time: 0,
            end_time,
            interval_ms,
        }),
    };
    // 5 M windows (under the window bound) × 2 series × 2 functions: 20 M values.
    let error = client
        .query_aggregate(aggregate(5_000_000 * hour, hour))
        .expect_err("an aggregate of 20 M values was answered");
    assert_eq!(
        error.status_code(),
        Some(StatusCode::ILLEGAL_PARAMETER),
        "{error}"
    );
    assert!(error.to_string().contains("values"), "{error}");
    client.ping().expect("usable after the refusal");
    // 1 M one-millisecond windows × 2 series × 2 functions: 4 M values, in rounds of
    // a series each (a series' windows fill a round). Every window is there; the points
    // at 1, 2 and 3 ms are counted in theirs.
    let batches = client
        .query_aggregate(aggregate(1_000_000, 1))
        .expect("an aggregate of 4 M values");
    let (names, rows) = rows_of(&batches).expect("well-formed batches");
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(rows.len(), 1_000_000);
    for (t, (time, values)) in rows.iter().enumerate().take(4).skip(1) {
        assert_eq!(*time, t as i64);
        assert_eq!(
            (&values[0], &values[2]),
            (&Some(Value::Int64(1)), &Some(Value::Int64(1))),
            "window {t}"
        );
    }
    assert_healthy(&server);
}

#[test]
fn a_flood_of_bad_input_keeps_memory_bounded() {
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    seed(&server);
    assert_healthy(&server);
    let before = server.rss_bytes().expect("rss");

    // 200 malformed frames on one authenticated connection.
    let mut connection = RawConnection::connect(server.address()).expect("connect");
    connection.authenticate().expect("handshake");
    for request_id in 0..200u64 {
        connection
            .send_frame(
                Opcode::InsertTablets as u8,
                1000 + request_id,
                &garbage(4096, request_id),
            )
            .expect("send");
    }
    for _ in 0..200 {
        let answer = connection
            .read_response()
            .expect("read")
            .expect("an answer");
        assert_eq!(answer.status, StatusCode::ILLEGAL_PARAMETER, "{answer:?}");
    }
    connection.ping(1).expect("usable after the flood");

    // 100 connections that lose framing, half of them claiming 2^31-byte bodies.
    for index in 0..100u64 {
        let mut connection = RawConnection::connect(server.address()).expect("connect");
        if index % 2 == 0 {
            connection.send_bytes(&garbage(512, index)).expect("send");
        } else {
            connection.authenticate().expect("handshake");
            connection
                .send_bytes(&header(Opcode::InsertTablets as u8, 0, index, 1 << 31, 0))
                .expect("send");
        }
        assert_closed_with_error(&mut connection, "flood");
    }

    // 16 authenticated connections each claiming a 60 MiB body (under the frame limit)
    // and stalling after 1 KiB: a claim is not a reason to commit memory.
    let mut stalled = Vec::new();
    for index in 0..16u64 {
        let mut connection = RawConnection::connect(server.address()).expect("connect");
        connection.authenticate().expect("handshake");
        let mut bytes = header(Opcode::InsertTablets as u8, 0, index, 60 << 20, 0);
        bytes.extend_from_slice(&garbage(1024, index));
        connection.send_bytes(&bytes).expect("send");
        stalled.push(connection);
    }
    assert_healthy(&server);
    let after = server.rss_bytes().expect("rss");
    assert!(
        after < before + RSS_GROWTH_BYTES_MAX,
        "RSS grew from {before} to {after} bytes under bad input"
    );
    drop(stalled);
    assert_healthy(&server);
}
