//! End to end through real server processes: concurrent ingest from blocking clients and
//! the shard-aware async client (mixed types, nulls, out-of-order rows, overwrites, several
//! devices, two time partitions), every answer compared with the in-test [`Model`]; then a
//! clean restart (SIGTERM) and a crash (SIGKILL during ingest) with recovery checks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use iotdb_net::{
    AggregateQuery, Aggregation, BlockingClient, ClientConfig, CreateDatabase, DataType,
    GroupByWindow, RawQuery, SeriesSelection, ShardAwareClient, Value, WireTablet,
};
use iotdb_tests::model::rows_of;
use iotdb_tests::{Model, TestServer, server_options};

const DATABASE: &str = "root.e2e";
/// IoTDB's default time_partition_interval: 7 days in milliseconds.
const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// The start of a time partition, so partition 0 and partition 1 (a week later) are
/// distinct time slots.
const T0: i64 = 2812 * WEEK_MS;
/// Time partitions written per device. Three, so that with two region groups one group
/// can hold partitions on both sides of another's (a read must not fold them out of order).
const PARTITIONS: i64 = 3;
const ROWS_PER_PARTITION: i64 = 160;
const STEP_MS: i64 = 1000;
const ROWS_PER_TABLET: usize = 40;
/// Rows rewritten (same timestamps, new values) per device.
const OVERWRITES_PER_DEVICE: usize = 60;
const SCHEMA: [(&str, DataType); 6] = [
    ("b", DataType::Boolean),
    ("i", DataType::Int32),
    ("l", DataType::Int64),
    ("f", DataType::Float),
    ("d", DataType::Double),
    ("t", DataType::Text),
];
const NUMERIC: [&str; 4] = ["i", "l", "f", "d"];

/// splitmix64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A cell of `data_type`, null one time in ten. Floats are small multiples of powers of
/// two, so sums are exact in f64 whatever order the server adds them in.
fn cell(rng: &mut Rng, data_type: DataType, version: u32) -> Option<Value> {
    if rng.below(10) == 0 {
        return None;
    }
    let k = rng.below(8001) as i64 - 4000;
    Some(match data_type {
        DataType::Boolean => Value::Boolean(k % 2 == 0),
        DataType::Int32 => Value::Int32(k as i32),
        DataType::Int64 => Value::Int64(k * 1_000_003),
        DataType::Float => Value::Float(k as f32 * 0.25),
        DataType::Double => Value::Double(k as f64 * 0.125),
        DataType::Text => Value::Text(Bytes::from(format!("v{version}-{k}"))),
    })
}

fn tablet_of(device: &str, rng: &mut Rng, timestamps: &[i64], version: u32) -> WireTablet {
    let mut tablet = WireTablet::new(device, &SCHEMA);
    for t in timestamps {
        let cells: Vec<Option<Value>> = SCHEMA
            .iter()
            .map(|(_, data_type)| cell(rng, *data_type, version))
            .collect();
        tablet.push_row(*t, &cells).expect("cells match the schema");
    }
    tablet
}

/// The inserts of one device, in the order they must be sent (later ones overwrite):
/// the base rows of every partition in tablets sent out of order (one of them with its
/// rows in descending time), then overwrites of random timestamps, one tablet straddling
/// the two partitions.
fn device_plan(device: &str, seed: u64, first_row: i64) -> Vec<WireTablet> {
    let mut rng = Rng(seed);
    let mut timestamps = Vec::new();
    for partition in 0..PARTITIONS {
        for row in 0..ROWS_PER_PARTITION {
            timestamps.push(T0 + partition * WEEK_MS + (first_row + row) * STEP_MS);
        }
    }
    let mut chunks: Vec<Vec<i64>> = timestamps
        .chunks(ROWS_PER_TABLET)
        .map(<[i64]>::to_vec)
        .collect();
    rng.shuffle(&mut chunks);
    chunks[0].reverse();
    let mut plan: Vec<WireTablet> = chunks
        .iter()
        .map(|chunk| tablet_of(device, &mut rng, chunk, 0))
        .collect();
    let mut rewritten = timestamps.clone();
    rng.shuffle(&mut rewritten);
    rewritten.truncate(OVERWRITES_PER_DEVICE);
    for (index, chunk) in rewritten.chunks(OVERWRITES_PER_DEVICE / 3).enumerate() {
        plan.push(tablet_of(device, &mut rng, chunk, 1 + index as u32));
    }
    // Straddles the partition boundary: the server splits it.
    let straddling = [
        T0 + (first_row + 3) * STEP_MS,
        T0 + WEEK_MS + (first_row + 4) * STEP_MS,
        T0 + (first_row + 5) * STEP_MS,
    ];
    plan.push(tablet_of(device, &mut rng, &straddling, 9));
    plan
}

fn create_database(client: &mut BlockingClient) {
    client
        .create_database(CreateDatabase {
            name: DATABASE.to_owned(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
}

/// Ingests `plans` (device → its inserts) concurrently: one blocking client thread per
/// device for `blocking`, and one shard-aware async client for the rest (its insert calls
/// carry one tablet of each of its devices). Returns the model of what was acknowledged.
fn ingest(
    server: &TestServer,
    blocking: Vec<Vec<WireTablet>>,
    shard_aware: Vec<Vec<WireTablet>>,
) -> Model {
    let address = server.address();
    let mut threads = Vec::new();
    for plan in blocking {
        threads.push(std::thread::spawn(move || {
            let mut client =
                BlockingClient::connect(address, &ClientConfig::default()).expect("connect");
            let mut model = Model::new();
            for tablet in plan {
                client
                    .insert_tablets(std::slice::from_ref(&tablet))
                    .expect("insert");
                model.apply(&tablet);
            }
            model
        }));
    }
    threads.push(std::thread::spawn(move || {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("monoio runtime");
        runtime.block_on(async move {
            let mut client = ShardAwareClient::connect(&[address], ClientConfig::default())
                .await
                .expect("shard-aware connect");
            let mut model = Model::new();
            let longest = shard_aware.iter().map(Vec::len).max().unwrap_or(0);
            for step in 0..longest {
                let batch: Vec<WireTablet> = shard_aware
                    .iter()
                    .filter_map(|plan| plan.get(step).cloned())
                    .collect();
                client
                    .insert_tablets(&batch)
                    .await
                    .expect("shard-aware insert");
                batch.iter().for_each(|tablet| model.apply(tablet));
                if step == 0 {
                    // The first inserts created data partitions; the client learns of them
                    // only by refetching (it does not refresh on its own after a success).
                    client
                        .refresh_route_table()
                        .await
                        .expect("refresh the route table");
                }
            }
            // The route table named this database's regions, so some tablets went
            // straight to a shard's connection.
            assert!(
                client.shard_connection_count() >= 1,
                "the shard-aware client opened no shard connection"
            );
            model
        })
    }));
    let mut model = Model::new();
    for thread in threads {
        model.absorb(thread.join().expect("an ingest thread panicked"));
    }
    model
}

fn selection(device: &str, measurements: &[&str]) -> SeriesSelection {
    SeriesSelection {
        device: device.to_owned(),
        measurements: measurements.iter().map(|m| (*m).to_owned()).collect(),
    }
}

fn check_raw(
    client: &mut BlockingClient,
    model: &Model,
    series: Vec<SeriesSelection>,
    range: (i64, i64),
    offset: u64,
    limit: Option<u64>,
) {
    let what = format!(
        "raw {series:?} [{}, {}) offset {offset} limit {limit:?}",
        range.0, range.1
    );
    let batches = client
        .query_raw(RawQuery {
            series: series.clone(),
            start_time: range.0,
            end_time: range.1,
            limit,
            offset,
        })
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let (names, rows) = rows_of(&batches).unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_eq!(names, Model::raw_columns(&series), "{what}: column names");
    let expected = model.raw(&series, range.0, range.1, offset, limit);
    assert_eq!(rows.len(), expected.len(), "{what}: row count");
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want, "{what}: first differing row");
    }
}

fn check_aggregate(
    client: &mut BlockingClient,
    model: &Model,
    series: Vec<SeriesSelection>,
    range: (i64, i64),
    aggregations: &[Aggregation],
    group_by: Option<GroupByWindow>,
) {
    let what = format!(
        "aggregate {aggregations:?} of {series:?} [{}, {}) by {group_by:?}",
        range.0, range.1
    );
    let batches = client
        .query_aggregate(AggregateQuery {
            series: series.clone(),
            start_time: range.0,
            end_time: range.1,
            aggregations: aggregations.to_vec(),
            group_by,
        })
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let (names, rows) = rows_of(&batches).unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_eq!(
        names,
        Model::aggregate_columns(&series, aggregations),
        "{what}: column names"
    );
    let expected = model.aggregate(&series, range.0, range.1, aggregations, group_by);
    assert_eq!(rows.len(), expected.len(), "{what}: row count");
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want, "{what}: first differing row");
    }
}

/// Every query kind over everything in the model.
fn verify(server: &TestServer, model: &Model) {
    let mut client = server.client().expect("connect");
    let (start, end) = model.time_bounds();
    let devices = model.devices();
    for device in &devices {
        let all = model.selection(device);
        check_raw(&mut client, model, vec![all.clone()], (start, end), 0, None);
        check_raw(
            &mut client,
            model,
            vec![all.clone()],
            (start, end),
            37,
            Some(50),
        );
        check_raw(
            &mut client,
            model,
            vec![all.clone()],
            (start, end),
            0,
            Some(0),
        );
        // One series over every partition: each point once, in time order.
        check_raw(
            &mut client,
            model,
            vec![selection(device, &["i"])],
            (start, end),
            0,
            None,
        );
        check_raw(
            &mut client,
            model,
            vec![selection(device, &["t"])],
            (start, end),
            100,
            Some(200),
        );
        // The second partition on, one series at a time.
        for (measurement, _) in SCHEMA {
            check_raw(
                &mut client,
                model,
                vec![selection(device, &[measurement])],
                (T0 + WEEK_MS, end),
                5,
                None,
            );
        }
        check_aggregate(
            &mut client,
            model,
            vec![selection(device, &NUMERIC)],
            (start, end),
            &Aggregation::ALL,
            None,
        );
        let any_type = [Aggregation::Count, Aggregation::First, Aggregation::Last];
        check_aggregate(
            &mut client,
            model,
            vec![selection(device, &["b", "t"])],
            (start, end),
            &any_type,
            None,
        );
        // Daily windows over every partition: most are empty.
        let daily = GroupByWindow {
            start_time: T0,
            end_time: T0 + (PARTITIONS - 1) * WEEK_MS + 86_400_000,
            interval_ms: 86_400_000,
        };
        check_aggregate(
            &mut client,
            model,
            vec![selection(device, &NUMERIC)],
            (start, end),
            &Aggregation::ALL,
            Some(daily),
        );
        // Fine windows clipped by a narrower query range, starting before the data.
        let fine = GroupByWindow {
            start_time: T0 - 5_000,
            end_time: T0 + (ROWS_PER_PARTITION + 20) * STEP_MS,
            interval_ms: 37_000,
        };
        check_aggregate(
            &mut client,
            model,
            vec![selection(device, &["i", "d", "b"])],
            (T0 + 3_000, T0 + 200_000),
            &any_type,
            Some(fine),
        );
        check_aggregate(
            &mut client,
            model,
            vec![selection(device, &["f", "l"])],
            (T0 + 3_000, T0 + 200_000),
            &Aggregation::ALL,
            Some(fine),
        );
        let last = client.query_last(vec![all.clone()]).expect("last");
        assert_eq!(last, model.last(&[all]), "last of {device}");
    }
    // Several devices in one request.
    if devices.len() >= 2 {
        let pair = vec![
            selection(&devices[0], &["b", "i"]),
            selection(&devices[devices.len() - 1], &["t", "d"]),
        ];
        check_raw(
            &mut client,
            model,
            pair.clone(),
            (start, end),
            11,
            Some(300),
        );
        check_aggregate(
            &mut client,
            model,
            pair.clone(),
            (start, end),
            &[Aggregation::Count, Aggregation::Last],
            None,
        );
        assert_eq!(
            client.query_last(pair.clone()).expect("last"),
            model.last(&pair)
        );
    }
}

/// A connection naming each shard in its handshake is served by that shard.
fn check_shard_handshakes(server: &TestServer) {
    let shards = server.shard_count() as u32;
    for shard in 0..shards {
        let config = ClientConfig {
            target_shard: Some(shard),
            ..ClientConfig::default()
        };
        let mut client = server.client_with(&config).expect("connect to a shard");
        let accepted = *client.accepted();
        assert_eq!(accepted.shard_id, shard, "handshake naming shard {shard}");
        assert_eq!(accepted.shard_count, shards);
        // The moved connection keeps working.
        client.ping().expect("ping on a moved connection");
        client
            .execute_sql("SHOW DATABASES")
            .expect("SQL on a moved connection");
    }
}

fn scenario(cores: usize) {
    let mut server = TestServer::start(server_options!().cores(cores)).expect("start");
    assert_eq!(server.shard_count(), cores);
    check_shard_handshakes(&server);
    create_database(&mut server.client().expect("connect"));
    let devices: Vec<String> = (0..5).map(|d| format!("{DATABASE}.d{d}")).collect();
    let plans: Vec<Vec<WireTablet>> = devices
        .iter()
        .enumerate()
        .map(|(index, device)| device_plan(device, 1000 * cores as u64 + index as u64, 0))
        .collect();
    let (blocking, shard_aware) = {
        let mut plans = plans;
        let shard_aware = plans.split_off(3);
        (plans, shard_aware)
    };
    let mut model = ingest(&server, blocking, shard_aware);
    assert_eq!(model.devices(), devices);
    verify(&server, &model);

    // Clean restart: everything is still there.
    server.stop().expect("clean stop");
    server.restart().expect("restart");
    check_shard_handshakes(&server);
    verify(&server, &model);

    // Overwrite flushed data after the restart: the newest write still wins.
    let again: Vec<Vec<WireTablet>> = devices
        .iter()
        .enumerate()
        .map(|(index, device)| {
            let mut plan = device_plan(device, 7 + index as u64, ROWS_PER_PARTITION / 2);
            plan.truncate(6);
            plan
        })
        .collect();
    let (blocking, shard_aware) = {
        let mut again = again;
        let shard_aware = again.split_off(2);
        (again, shard_aware)
    };
    model.absorb(ingest(&server, blocking, shard_aware));
    verify(&server, &model);
    server.stop().expect("clean stop");
}

#[test]
fn one_shard_ingest_query_restart() {
    scenario(1);
}

#[test]
fn two_shards_ingest_query_restart() {
    scenario(2);
}

/// SIGKILL while clients write: after restart every acknowledged point is there, and
/// nothing that was never sent.
#[test]
fn acknowledged_writes_survive_sigkill() {
    const WRITERS: usize = 3;
    const ACKS_BEFORE_KILL: usize = 120;
    const ROWS: usize = 8;
    let mut server = TestServer::start(server_options!().cores(2).wal_mode("sync")).expect("start");
    create_database(&mut server.client().expect("connect"));
    let acknowledged = Arc::new(Mutex::new(Model::new()));
    let attempted = Arc::new(Mutex::new(Model::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let address = server.address();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (acknowledged, attempted, acks, stop) = (
                acknowledged.clone(),
                attempted.clone(),
                acks.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let device = format!("{DATABASE}.crash{writer}");
                let mut rng = Rng(writer as u64 + 77);
                let mut client =
                    BlockingClient::connect(address, &ClientConfig::default()).expect("connect");
                let mut batch = 0i64;
                // Bounded so a server that never dies cannot make the test spin forever.
                while !stop.load(Ordering::Relaxed) && batch < 100_000 {
                    // Alternate partitions so both see writes when the process dies.
                    let base = T0 + (batch % 2) * WEEK_MS + batch * ROWS as i64 * STEP_MS;
                    let timestamps: Vec<i64> =
                        (0..ROWS as i64).map(|row| base + row * STEP_MS).collect();
                    let tablet = tablet_of(&device, &mut rng, &timestamps, 0);
                    attempted.lock().unwrap().apply(&tablet);
                    if client
                        .insert_tablets(std::slice::from_ref(&tablet))
                        .is_err()
                    {
                        return;
                    }
                    acknowledged.lock().unwrap().apply(&tablet);
                    acks.fetch_add(1, Ordering::Relaxed);
                    batch += 1;
                }
            })
        })
        .collect();
    while acks.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
        assert!(
            writers.iter().any(|writer| !writer.is_finished()),
            "every writer stopped before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().expect("SIGKILL");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    server.restart().expect("restart after SIGKILL");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(acknowledged.point_count() > 0);
    let mut client = server.client().expect("connect");
    for id in attempted.series_ids() {
        let batches = client
            .query_raw(RawQuery {
                series: vec![selection(&id.device, &[id.measurement.as_str()])],
                start_time: i64::MIN,
                end_time: i64::MAX,
                limit: None,
                offset: 0,
            })
            .unwrap_or_else(|error| panic!("query {id:?} after recovery: {error}"));
        let (_, rows) = rows_of(&batches).expect("batches");
        let found: BTreeMap<i64, Value> = rows
            .into_iter()
            .filter_map(|(t, mut cells)| cells.pop().flatten().map(|v| (t, v)))
            .collect();
        for (t, value) in acknowledged.points(id) {
            assert_eq!(
                found.get(t),
                Some(value),
                "{} at {t}: an acknowledged point is lost or wrong after SIGKILL",
                id.path()
            );
        }
        let sent: BTreeMap<i64, Value> =
            attempted.points(id).map(|(t, v)| (*t, v.clone())).collect();
        for (t, value) in &found {
            assert_eq!(
                sent.get(t),
                Some(value),
                "{} at {t}: never written",
                id.path()
            );
        }
    }
    server.stop().expect("clean stop after recovery");
}

/// With `--rpc-port 0` the route table must name the port the server bound, or a
/// shard-aware client cannot reach any shard.
#[test]
fn shard_aware_client_with_a_kernel_chosen_port() {
    let server = TestServer::start(server_options!().cores(2).kernel_port()).expect("start");
    create_database(&mut server.client().expect("connect"));
    let address = server.address();
    let device = format!("{DATABASE}.kp");
    let mut rng = Rng(5);
    let first = tablet_of(&device, &mut rng, &[T0, T0 + STEP_MS], 0);
    let second = tablet_of(&device, &mut rng, &[T0 + 2 * STEP_MS, T0 + 3 * STEP_MS], 0);
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    runtime.block_on(async {
        let mut client = ShardAwareClient::connect(&[address], ClientConfig::default())
            .await
            .expect("shard-aware connect");
        client
            .insert_tablets(std::slice::from_ref(&first))
            .await
            .expect("first insert");
        client.refresh_route_table().await.expect("refresh");
        let endpoint = client
            .route_table()
            .route_for(&device, T0)
            .map(|target| target.rpc_endpoint.to_owned());
        assert_eq!(
            endpoint,
            Some(address.to_string()),
            "the route table's endpoint for {device}"
        );
        client
            .insert_tablets(std::slice::from_ref(&second))
            .await
            .expect("routed insert");
        assert!(client.shard_connection_count() >= 1);
    });
    let mut model = Model::new();
    model.apply(&first);
    model.apply(&second);
    verify(&server, &model);
}
