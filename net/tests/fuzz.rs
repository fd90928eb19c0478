//! Fuzzing the wire decoders: frames (client and internal), request and response bodies,
//! tablets and route tables, with arbitrary bytes and with mutations of valid encodings
//! (bytes flipped, cut short, length and count fields replaced by huge values).
//!
//! Each decoder must return a typed error or a value, never panic, and never allocate much
//! more than it was given: decoders check every declared length and count against the
//! bytes that remain. The allocation check watches the process's peak virtual size
//! (`VmPeak`): a `Vec::with_capacity` of a declared gigabyte shows there even if its
//! pages are never touched. The decoders run one after another in a single test so that
//! no other test's allocations blur the figure.
//!
//! `FUZZ_CASES=N` sets the cases per decoder (default [`CASES_DEFAULT`], sized for CI);
//! for long runs: `FUZZ_CASES=1000000 cargo test --release -p iotdb-net --test fuzz`.

use bytes::{Bytes, BytesMut};
use iotdb_net::codec::WireReader;
use iotdb_net::frame::decode_frame;
use iotdb_net::internal_frame::{decode_internal_frame, internal_frame};
use iotdb_net::{
    AggregateQuery, Aggregation, ColumnBatch, CreateDatabase, DataPartitionEntry, DataType,
    DatabaseRoute, Frame, GroupByWindow, Handshake, HandshakeAccepted, LastPoint, Opcode, RawQuery,
    RegionGroupRoute, ReplicaRoute, Request, ResponsePayload, ResultSet, RouteTable,
    SeriesSelection, Status, StatusCode, TabletView, TypedColumn, Value, WireColumn, WireTablet,
    decode_response, encode_insert_tablets, encode_response,
};
use proptest::prelude::*;

#[path = "../../testing/fuzz_harness.rs"]
mod fuzz_harness;
use fuzz_harness::{arbitrary_bytes, cases, mutated};

/// Cases per decoder without `FUZZ_CASES`: a few thousand in all, seconds in CI.
const CASES_DEFAULT: u32 = 2000;
/// The frame body limit the server applies after authentication.
const FRAME_BODY_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// [`fuzz_harness::fuzz`] with this file's case count.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value)) {
    fuzz_harness::fuzz(name, cases(CASES_DEFAULT), strategy, check);
}

fn selection() -> SeriesSelection {
    SeriesSelection {
        device: "root.sg.d1".to_owned(),
        measurements: vec!["s1".to_owned(), "s2".to_owned()],
    }
}

fn sample_tablet() -> WireTablet {
    let mut tablet = WireTablet::new(
        "root.sg.d1",
        &[
            ("b", DataType::Boolean),
            ("i", DataType::Int32),
            ("l", DataType::Int64),
            ("f", DataType::Float),
            ("d", DataType::Double),
            ("t", DataType::Text),
        ],
    );
    for row in 0..5i64 {
        let cells = [
            Some(Value::Boolean(row % 2 == 0)),
            (row != 2).then_some(Value::Int32(row as i32)),
            Some(Value::Int64(row * 1000)),
            Some(Value::Float(row as f32 / 3.0)),
            (row != 4).then_some(Value::Double(row as f64 * 1.5)),
            Some(Value::Text(Bytes::from(format!("text {row}")))),
        ];
        tablet.push_row(row, &cells).expect("a valid row");
    }
    tablet
}

fn sample_requests() -> Vec<(Opcode, Vec<u8>)> {
    let requests = [
        Request::Handshake(Handshake {
            user: "root".into(),
            password: "root".into(),
            client_name: "fuzz".into(),
            target_shard: Some(3),
        }),
        Request::Ping,
        Request::CreateDatabase(CreateDatabase {
            name: "root.sg".into(),
            ttl_ms: Some(1000),
            data_region_group_num: Some(2),
        }),
        Request::QueryRaw(RawQuery {
            series: vec![selection()],
            start_time: 0,
            end_time: 100,
            limit: Some(10),
            offset: 2,
        }),
        Request::QueryAggregate(AggregateQuery {
            series: vec![selection()],
            start_time: 0,
            end_time: 100,
            aggregations: vec![Aggregation::Count, Aggregation::Avg, Aggregation::Last],
            group_by: Some(GroupByWindow {
                start_time: 0,
                end_time: 100,
                interval_ms: 10,
            }),
        }),
        Request::QueryLast(vec![selection()]),
        Request::FetchRouteTable { known_version: 7 },
        Request::Flush {
            databases: vec!["root.sg".into()],
        },
        Request::ExecuteSql {
            statement: "SELECT s1 FROM root.sg.d1".into(),
        },
    ];
    let mut samples: Vec<(Opcode, Vec<u8>)> = requests
        .iter()
        .map(|request| (request.opcode(), request.encode_body().to_vec()))
        .collect();
    samples.push((
        Opcode::InsertTablets,
        encode_insert_tablets(&[sample_tablet(), sample_tablet()]).to_vec(),
    ));
    samples
}

fn sample_route_table() -> RouteTable {
    RouteTable::new(
        3,
        vec![DatabaseRoute {
            name: "root.sg".into(),
            series_slot_num: 1000,
            time_partition_interval_ms: 604_800_000,
            data_partitions: vec![DataPartitionEntry {
                series_slot: 1,
                time_slot: 2,
                region_group_id: 3,
            }],
        }],
        vec![RegionGroupRoute {
            region_group_id: 3,
            replicas: vec![ReplicaRoute {
                data_node_id: 1,
                rpc_endpoint: "127.0.0.1:6667".into(),
                shard_id: 0,
                is_leader: true,
            }],
        }],
    )
    .expect("a valid route table")
}

fn sample_responses() -> Vec<(Opcode, Vec<u8>)> {
    let mut result = ResultSet::new(&[("a", DataType::Int64), ("b", DataType::Text)]);
    result.rows.push(vec![
        Some(Value::Int64(1)),
        Some(Value::Text(Bytes::from_static(b"x"))),
    ]);
    result
        .rows
        .push(vec![None, Some(Value::Text(Bytes::new()))]);
    let batch = ColumnBatch {
        timestamps: vec![1, 2, 3],
        columns: vec![
            WireColumn::new("root.sg.d1.s1", TypedColumn::Int64(vec![1, 2, 3])),
            WireColumn::new("root.sg.d1.s2", TypedColumn::Double(vec![0.5, 1.5, 2.5])),
        ],
    };
    let responses = [
        (
            Opcode::Handshake,
            Ok(ResponsePayload::Handshake(HandshakeAccepted {
                session_id: 1,
                data_node_id: 2,
                shard_id: 0,
                shard_count: 4,
                route_table_version: 9,
            })),
        ),
        (Opcode::Ping, Ok(ResponsePayload::Pong)),
        (Opcode::InsertTablets, Ok(ResponsePayload::Done)),
        (
            Opcode::InsertTablets,
            Err(Status::new(StatusCode::WRITE_PROCESS_REJECT, "overloaded")),
        ),
        (Opcode::QueryRaw, Ok(ResponsePayload::Batch(batch))),
        (
            Opcode::QueryLast,
            Ok(ResponsePayload::Last(vec![LastPoint {
                path: "root.sg.d1.s1".into(),
                timestamp: 5,
                value: Value::Int64(50),
            }])),
        ),
        (
            Opcode::FetchRouteTable,
            Ok(ResponsePayload::RouteTable(Some(sample_route_table()))),
        ),
        (Opcode::ExecuteSql, Ok(ResponsePayload::ResultSet(result))),
    ];
    responses
        .iter()
        .map(|(opcode, response)| (*opcode, encode_response(response).to_vec()))
        .collect()
}

fn opcode_of(index: usize) -> Opcode {
    Opcode::ALL[index % Opcode::ALL.len()]
}

/// Decodes every frame `bytes` holds, as a server reading a stream would.
fn decode_frames(bytes: &[u8]) {
    let mut buffer = BytesMut::from(bytes);
    while let Ok(Some(frame)) = decode_frame(&mut buffer, FRAME_BODY_BYTES_MAX) {
        if frame.verify_checksum().is_ok()
            && let Some(opcode) = Opcode::from_u8(frame.opcode & 0x7f)
        {
            let _ = Request::decode(opcode, frame.body.clone());
            let _ = decode_response(opcode, frame.body);
        }
    }
}

fn decode_internal(bytes: &[u8]) {
    let mut buffer = BytesMut::from(bytes);
    while let Ok(Some(_)) = decode_internal_frame(&mut buffer, 16 * 1024 * 1024) {}
}

#[test]
fn wire_decoders_survive_arbitrary_and_mutated_input() {
    let requests = sample_requests();
    let responses = sample_responses();

    // Frames: whole streams of valid frames, mutated (headers included).
    let frame_streams: Vec<Vec<u8>> = requests
        .iter()
        .enumerate()
        .map(|(index, (opcode, body))| {
            let mut out = BytesMut::new();
            Frame::new(*opcode as u8, 0, index as u64, Bytes::from(body.clone()))
                .encode_into(&mut out);
            Frame::new(Opcode::Ping as u8, 0, 99, Bytes::new()).encode_into(&mut out);
            out.to_vec()
        })
        .collect();
    fuzz("frames (arbitrary)", arbitrary_bytes(), |bytes| {
        decode_frames(&bytes)
    });
    fuzz(
        "frames (mutated)",
        mutated(frame_streams.clone()),
        |bytes| decode_frames(&bytes),
    );

    // Request bodies, each decoded as its own opcode and as a random one.
    let request_bodies: Vec<Vec<u8>> = requests.iter().map(|(_, body)| body.clone()).collect();
    fuzz(
        "request bodies (arbitrary)",
        (any::<usize>(), arbitrary_bytes()),
        |(opcode, body)| {
            let _ = Request::decode(opcode_of(opcode), Bytes::from(body));
        },
    );
    fuzz(
        "request bodies (mutated)",
        (any::<usize>(), mutated(request_bodies)),
        |(opcode, body)| {
            let body = Bytes::from(body);
            let _ = Request::decode(opcode_of(opcode), body.clone());
            for (opcode, _) in &requests {
                let _ = Request::decode(*opcode, body.clone());
            }
        },
    );

    // Response bodies.
    let response_bodies: Vec<Vec<u8>> = responses.iter().map(|(_, body)| body.clone()).collect();
    fuzz(
        "response bodies (arbitrary)",
        (any::<usize>(), arbitrary_bytes()),
        |(opcode, body)| {
            let _ = decode_response(opcode_of(opcode), Bytes::from(body));
        },
    );
    fuzz(
        "response bodies (mutated)",
        mutated(response_bodies),
        |body| {
            let body = Bytes::from(body);
            for (opcode, _) in &responses {
                let _ = decode_response(*opcode, body.clone());
            }
        },
    );

    // Tablet contents, aligned and not, and what a decoded view hands out.
    let mut contents = BytesMut::new();
    sample_tablet().encode_contents(&mut contents);
    let tablet_samples = vec![contents.to_vec()];
    let check_tablet = |bytes: Vec<u8>| {
        for aligned in [false, true] {
            if let Ok(view) = TabletView::decode(Bytes::from(bytes.clone()), aligned) {
                let _ = view.timestamps();
                for column in view.columns() {
                    for row in 0..view.row_count() {
                        let _ = column.is_null(row);
                    }
                    let _ = column.to_wire_column();
                }
                let _ = view.to_wire_tablet();
            }
        }
    };
    fuzz("tablets (arbitrary)", arbitrary_bytes(), check_tablet);
    fuzz("tablets (mutated)", mutated(tablet_samples), check_tablet);

    // Route tables.
    let mut table = BytesMut::new();
    sample_route_table().encode(&mut table);
    let check_table = |bytes: Vec<u8>| {
        let _ = RouteTable::decode(&mut WireReader::new(Bytes::from(bytes)));
    };
    fuzz("route tables (arbitrary)", arbitrary_bytes(), check_table);
    fuzz(
        "route tables (mutated)",
        mutated(vec![table.to_vec()]),
        check_table,
    );

    // Internal (node-to-node) frames.
    let internal: Vec<Vec<u8>> = (0..3u8)
        .map(|opcode| internal_frame(opcode + 1, 5, Bytes::from_static(b"opaque body")).to_vec())
        .collect();
    fuzz("internal frames (arbitrary)", arbitrary_bytes(), |bytes| {
        decode_internal(&bytes)
    });
    fuzz("internal frames (mutated)", mutated(internal), |bytes| {
        decode_internal(&bytes)
    });
}
