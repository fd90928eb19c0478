//! The largest writes the protocol allows are taken whole: a tablet of about 24 MiB (more
//! than one WAL group-commit batch, less than the 64 MiB frame limit) is acknowledged and
//! read back exactly, also after a crash (its one WAL record is replayed). It used to get
//! status 303 because a WAL record held less than 16 MiB.

use iotdb_net::{
    AggregateQuery, Aggregation, CreateDatabase, DataType, SeriesSelection, TypedColumn, Value,
    WireColumn, WireTablet,
};
use iotdb_tests::{TestServer, server_options};

const ROWS: i64 = 1_000_000;

fn count_and_sum(server: &TestServer) -> (Option<Value>, Option<Value>) {
    let mut client = server.client().expect("connect");
    let batches = client
        .query_aggregate(AggregateQuery {
            series: vec![SeriesSelection {
                device: "root.big.d0".into(),
                measurements: vec!["s0".into()],
            }],
            start_time: i64::MIN,
            end_time: i64::MAX,
            aggregations: vec![Aggregation::Count, Aggregation::Sum],
            group_by: None,
        })
        .expect("aggregate");
    let batch = batches.first().expect("one batch");
    (
        batch.columns[0].values.get(0),
        batch.columns[1].values.get(0),
    )
}

#[test]
fn a_tablet_larger_than_a_wal_batch_is_written_whole() {
    let mut server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    client
        .create_database(CreateDatabase {
            name: "root.big".into(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
    let tablet = WireTablet {
        device: "root.big.d0".into(),
        is_aligned: false,
        timestamps: (0..ROWS).collect(),
        columns: vec![
            WireColumn::new(
                "s0",
                TypedColumn::Double((0..ROWS).map(|v| v as f64).collect()),
            ),
            WireColumn::new("s1", TypedColumn::Int64((0..ROWS).collect())),
        ],
    };
    assert_eq!(tablet.columns[0].values.data_type(), DataType::Double);
    client
        .insert_tablets(&[tablet])
        .expect("the large tablet is accepted");
    let expected = (
        Some(Value::Int64(ROWS)),
        Some(Value::Double((0..ROWS).map(|v| v as f64).sum())),
    );
    assert_eq!(count_and_sum(&server), expected);
    drop(client);
    server.kill().expect("kill");
    server.restart().expect("restart");
    assert_eq!(count_and_sum(&server), expected, "after WAL replay");
}
