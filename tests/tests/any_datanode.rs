//! Any DataNode serves any request, across real processes: a 1C3D cluster with
//! `data_replication_factor=2` (`in_sync`) and six data region groups, so each DataNode
//! leads some of them.
//!
//! 1. A plain client of DataNode 1 writes the end-to-end dataset (mixed types, nulls,
//!    overwrites, three time partitions): groups led by the other two are forwarded.
//! 2. A plain client of DataNode 3 reads every point back — raw with `LIMIT`/`OFFSET`,
//!    every aggregate, windows, `LAST` — exactly as the model says; a tablet larger than
//!    an internal frame is forwarded in parts.
//! 3. Schema statements through DataNodes that do not hold the SchemaRegion:
//!    `CREATE [ALIGNED] TIMESERIES`, then `DELETE TIMESERIES`, seen by every DataNode.
//! 4. Golden: SQL queries that need all three DataNodes answer exactly what a standalone
//!    server holding the same data answers (raw, value filters with LIKE/REGEXP/IS NULL,
//!    FILL raw and windowed, tumbling, sliding, left-open and calendar windows, ORDER BY
//!    TIME DESC, SLIMIT, HAVING, GROUP BY LEVEL, LAST, ALIGN BY DEVICE).
//! 5. A plain client of DataNode 1 keeps writing while DataNode 2, a leader of groups it
//!    writes to, is killed: no error reaches the caller (the receiving DataNode sends a
//!    forwarded write again once another replica leads), and every acknowledged point
//!    reads back through DataNode 3.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use iotdb_net::{BlockingClient, CreateDatabase, DataType, StatusCode, Value, WireTablet};
use iotdb_tests::cluster::text_rows;
use iotdb_tests::dataset::{Rng, STEP_MS, T0, WEEK_MS, device_plan, tablet_of, verify};
use iotdb_tests::{Model, TestCluster, TestServer, server_options};

const BINARY: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
/// Ends a hung wait on a loaded 2-core machine running debug builds.
const PATIENCE: Duration = Duration::from_secs(30);
const DATABASE: &str = "root.any";
const DEVICES: usize = 6;
/// Region groups of the database: two led by each DataNode.
const GROUPS: u32 = 6;

fn device(index: usize) -> String {
    format!("{DATABASE}.d{index}")
}

fn create_database(client: &mut BlockingClient) {
    client
        .create_database(CreateDatabase {
            name: DATABASE.to_owned(),
            ttl_ms: None,
            data_region_group_num: Some(GROUPS),
        })
        .expect("create the database");
}

/// Writes every tablet through `client`, one request each; returns what was acknowledged.
fn write_all(client: &mut BlockingClient, plans: &[Vec<WireTablet>]) -> Model {
    let mut model = Model::new();
    for tablet in plans.iter().flatten() {
        client
            .insert_tablets(std::slice::from_ref(tablet))
            .unwrap_or_else(|e| panic!("insert into {}: {e}", tablet.device));
        model.apply(tablet);
    }
    model
}

/// The DataNodes leading a group of the database that holds data (SHOW DATA REGIONS).
fn leaders_holding_data(client: &mut BlockingClient) -> BTreeSet<u32> {
    let result = client
        .execute_sql("SHOW DATA REGIONS")
        .expect("show regions");
    text_rows(&result)
        .iter()
        .filter(|row| {
            row["Database"] == DATABASE
                && row["Role"] == "Leader"
                && row["TimeSlotNum"].parse::<u64>().unwrap_or(0) > 0
        })
        .map(|row| row["DataNodeId"].parse().expect("a node id"))
        .collect()
}

fn data_node_id(client: &BlockingClient) -> u32 {
    client.accepted().data_node_id
}

/// `statement` through `client`, expecting the status `code`.
fn refused(client: &mut BlockingClient, statement: &str, code: StatusCode) {
    match client.execute_sql(statement) {
        Err(error) => assert_eq!(error.status_code(), Some(code), "{statement}: {error}"),
        Ok(result) => panic!("{statement} succeeded: {result:?}"),
    }
}

/// The paths `SHOW TIMESERIES pattern` lists through `client`.
fn timeseries(client: &mut BlockingClient, pattern: &str) -> Vec<String> {
    let result = client
        .execute_sql(&format!("SHOW TIMESERIES {pattern}"))
        .expect("show timeseries");
    text_rows(&result)
        .iter()
        .map(|row| row["Timeseries"].clone())
        .collect()
}

/// Schema statements through DataNodes that do not hold the schema: every DataNode sees
/// what one created or deleted.
fn schema_statements_anywhere(cluster: &TestCluster) {
    let mut clients: Vec<BlockingClient> = (0..3).map(|i| cluster.client(i).unwrap()).collect();
    let pattern = format!("{DATABASE}.made.**");
    for (index, client) in clients.iter_mut().enumerate() {
        client
            .execute_sql(&format!(
                "CREATE TIMESERIES {DATABASE}.made.d{index}.s WITH DATATYPE=INT64, ENCODING=RLE"
            ))
            .unwrap_or_else(|e| panic!("CREATE TIMESERIES through DataNode {index}: {e}"));
    }
    clients[1]
        .execute_sql(&format!(
            "CREATE ALIGNED TIMESERIES {DATABASE}.made.v(lat FLOAT, lon FLOAT)"
        ))
        .expect("CREATE ALIGNED TIMESERIES");
    let expected: Vec<String> = vec![
        format!("{DATABASE}.made.d0.s"),
        format!("{DATABASE}.made.d1.s"),
        format!("{DATABASE}.made.d2.s"),
        format!("{DATABASE}.made.v.lat"),
        format!("{DATABASE}.made.v.lon"),
    ];
    for client in &mut clients {
        assert_eq!(timeseries(client, &pattern), expected);
    }
    for (index, client) in clients.iter_mut().enumerate() {
        refused(
            client,
            &format!(
                "CREATE TIMESERIES {DATABASE}.made.d{}.s INT64",
                (index + 1) % 3
            ),
            StatusCode::TIMESERIES_ALREADY_EXIST,
        );
    }
    clients[2]
        .execute_sql(&format!("DELETE TIMESERIES {DATABASE}.made.d1.*"))
        .expect("DELETE TIMESERIES");
    refused(
        &mut clients[0],
        &format!("DELETE TIMESERIES {DATABASE}.made.d1.*"),
        StatusCode::PATH_NOT_EXIST,
    );
    for client in &mut clients {
        let listed = timeseries(client, &pattern);
        assert!(
            !listed.contains(&format!("{DATABASE}.made.d1.s")),
            "{listed:?}"
        );
        assert_eq!(listed.len(), 4, "{listed:?}");
    }
    clients[0]
        .execute_sql(&format!("DELETE TIMESERIES {pattern}"))
        .expect("DELETE TIMESERIES of the rest");
}

/// SQL answers that need every DataNode, compared with a standalone server's.
fn golden(cluster: &TestCluster, standalone: &TestServer) {
    let week = WEEK_MS;
    let statements = [
        format!("SELECT * FROM {DATABASE}.d0"),
        format!("SELECT * FROM {DATABASE}.** LIMIT 300 OFFSET 170"),
        // A LIMIT pushed down to every region (remote pages stop at each series' first
        // points), across time partitions.
        format!("SELECT d, i FROM {DATABASE}.** LIMIT 7 OFFSET 150"),
        format!("SELECT d + i FROM {DATABASE}.* LIMIT 5 OFFSET 40 ALIGN BY DEVICE"),
        format!("SELECT count(d) + 1, sum(i) / count(i) FROM {DATABASE}.**"),
        format!("SELECT count(d) * 2 FROM {DATABASE}.* WHERE d > 100 ALIGN BY DEVICE"),
        format!(
            "SELECT i, t FROM {DATABASE}.** WHERE time >= {} AND time < {}",
            T0 + week,
            T0 + 2 * week + 90_000
        ),
        format!(
            "SELECT count(d), sum(i), avg(l), max_value(f), min_value(d), first_value(t), \
             last_value(b), min_time(i), max_time(d), extreme(l) FROM {DATABASE}.**"
        ),
        format!(
            "SELECT count(i), max_value(d), last_value(t) FROM {DATABASE}.** \
             GROUP BY ([{T0}, {}), 1d)",
            T0 + 3 * week
        ),
        format!(
            "SELECT count(d), first_value(t), extreme(i) FROM {DATABASE}.** \
             GROUP BY ([{T0}, {}), 1d, 6h)",
            T0 + 3 * week
        ),
        format!(
            "SELECT count(d), first_value(t), last_value(b) FROM {DATABASE}.** GROUP BY LEVEL = 1"
        ),
        format!("SELECT LAST * FROM {DATABASE}.**"),
        // FILL on raw rows and on windows (most days of the range have no point).
        format!(
            "SELECT d, i, t FROM {DATABASE}.d1 WHERE time < {} FILL(PREVIOUS)",
            T0 + 90_000
        ),
        format!("SELECT d, l FROM {DATABASE}.d2 FILL(LINEAR)"),
        format!(
            "SELECT d, i FROM {DATABASE}.d3 WHERE time < {} FILL(7)",
            T0 + 90_000
        ),
        format!(
            "SELECT max_value(d), sum(i) FROM {DATABASE}.* GROUP BY ([{T0}, {}), 2d) FILL(PREVIOUS)",
            T0 + 3 * week
        ),
        format!(
            "SELECT max_value(d), sum(i) FROM {DATABASE}.d5 GROUP BY ([{T0}, {}), 1d) FILL(LINEAR)",
            T0 + 3 * week
        ),
        // Left-open, calendar and left-open calendar windows.
        format!(
            "SELECT count(d), sum(i), last_value(t) FROM {DATABASE}.** GROUP BY (({T0}, {}], 1d)",
            T0 + 3 * week
        ),
        format!(
            "SELECT count(d), max_value(l) FROM {DATABASE}.** GROUP BY ([{}, {}), 1mo)",
            T0 - 4 * week,
            T0 + 8 * week
        ),
        format!(
            "SELECT count(d), min_value(l) FROM {DATABASE}.d0 GROUP BY (({}, {}], 1mo, 2mo)",
            T0 - 4 * week,
            T0 + 12 * week
        ),
        // ORDER BY TIME DESC, raw and windowed; SLIMIT and SOFFSET.
        format!("SELECT * FROM {DATABASE}.d0 ORDER BY TIME DESC LIMIT 50 OFFSET 10"),
        format!(
            "SELECT count(i), first_value(d) FROM {DATABASE}.** GROUP BY ([{T0}, {}), 1d) \
             ORDER BY TIME DESC",
            T0 + 3 * week
        ),
        format!("SELECT * FROM {DATABASE}.** LIMIT 40 SLIMIT 5 SOFFSET 3"),
        format!("SELECT count(*) FROM {DATABASE}.** SLIMIT 4 SOFFSET 7"),
        // HAVING.
        format!(
            "SELECT count(d), sum(i) FROM {DATABASE}.d3 GROUP BY ([{T0}, {}), 1d) HAVING count(d) > 10",
            T0 + 3 * week
        ),
        // LIKE / REGEXP on the text series, IS NULL, per device too.
        format!("SELECT t, d FROM {DATABASE}.d1 WHERE t LIKE 'v%-1%'"),
        format!("SELECT t FROM {DATABASE}.d2 WHERE t REGEXP '^v[0-9]+-[0-9]{{2}}$'"),
        format!("SELECT t FROM {DATABASE}.* WHERE t LIKE '%-3%' ALIGN BY DEVICE"),
        format!("SELECT d, t FROM {DATABASE}.d4 WHERE d IS NULL"),
        // Windowed GROUP BY LEVEL, at level 1 and at root.
        format!(
            "SELECT count(d), sum(i) FROM {DATABASE}.** GROUP BY ([{T0}, {}), 1d), LEVEL = 1",
            T0 + 3 * week
        ),
        format!("SELECT count(*), max_value(d) FROM {DATABASE}.** GROUP BY LEVEL = 0"),
        // Raw ALIGN BY DEVICE with a value filter.
        format!("SELECT * FROM {DATABASE}.* WHERE d > 0 ALIGN BY DEVICE"),
        format!("SELECT d FROM {DATABASE}.d4 WHERE d > 100"),
        format!("SELECT count(d), avg(d), max_value(i) FROM {DATABASE}.d4 WHERE d > 100"),
        format!("COUNT TIMESERIES {DATABASE}.**"),
        format!("SHOW DEVICES {DATABASE}.**"),
        format!("SHOW TIMESERIES {DATABASE}.d2.*"),
    ];
    let mut theirs = standalone
        .client()
        .expect("connect to the standalone server");
    let mut ours = cluster.client(1).expect("connect to DataNode 2");
    for statement in &statements {
        let want = theirs
            .execute_sql(statement)
            .unwrap_or_else(|e| panic!("standalone: {statement}: {e}"));
        assert!(
            !want.rows.is_empty(),
            "{statement}: the standalone answer is empty"
        );
        let got = ours
            .execute_sql(statement)
            .unwrap_or_else(|e| panic!("cluster: {statement}: {e}"));
        assert_eq!(got.column_names, want.column_names, "{statement}: columns");
        assert_eq!(got.rows.len(), want.rows.len(), "{statement}: row count");
        for (index, (got, want)) in got.rows.iter().zip(&want.rows).enumerate() {
            assert_eq!(got, want, "{statement}: row {index}");
        }
    }
}

/// A tablet larger than one internal frame (16 MiB), written through `writer` for a group
/// another DataNode leads, is forwarded in parts and reads back whole through `reader`.
fn large_tablet_forwarded(writer: &mut BlockingClient, reader: &mut BlockingClient) {
    const ROWS: i64 = 1_300_000;
    const BIG: &str = "root.big";
    let writer_id = data_node_id(writer);
    writer
        .create_database(CreateDatabase {
            name: BIG.to_owned(),
            ttl_ms: None,
            data_region_group_num: Some(GROUPS),
        })
        .expect("create root.big");
    // A device whose partition another DataNode leads: made by one point, then looked up.
    let device = (0..32)
        .map(|index| format!("{BIG}.d{index}"))
        .find(|device| {
            let mut first = WireTablet::new(device.clone(), &[("s", DataType::Int64)]);
            first.push_row(T0, &[Some(Value::Int64(0))]).unwrap();
            writer.insert_tablets(&[first]).expect("a first point");
            let table = writer.fetch_route_table(0).unwrap().expect("a route table");
            let leader = table.route_for(device, T0).expect("a route").data_node_id;
            leader != writer_id
        })
        .expect("a device led by another DataNode");
    let mut tablet = WireTablet::new(device.clone(), &[("s", DataType::Int64)]);
    for row in 0..ROWS {
        tablet
            .push_row(T0 + row, &[Some(Value::Int64(row))])
            .unwrap();
    }
    writer
        .insert_tablets(&[tablet])
        .expect("a tablet larger than an internal frame, forwarded");
    let answer = reader
        .execute_sql(&format!("SELECT count(s), sum(s) FROM {device}"))
        .expect("count and sum");
    let expected_sum = (ROWS * (ROWS - 1) / 2) as f64;
    assert_eq!(
        answer.rows,
        vec![vec![
            Some(Value::Int64(ROWS)),
            Some(Value::Double(expected_sum))
        ]],
        "{device}"
    );
}

/// One small tablet per device at round `round` (row times after the dataset's).
fn round_tablets(round: i64) -> Vec<WireTablet> {
    let mut rng = Rng(9_000 + round as u64);
    (0..DEVICES)
        .map(|index| {
            let t = T0 + (10_000 + round) * STEP_MS;
            tablet_of(&device(index), &mut rng, &[t], 20 + round as u32)
        })
        .collect()
}

#[test]
fn every_data_node_serves_every_write_and_query_and_rides_over_a_kill() {
    let started = Instant::now();
    let mut cluster = TestCluster::start_configured(
        BINARY,
        1,
        3,
        1,
        &[
            ("data_replication_factor", "2"),
            ("data_replication_ack", "in_sync"),
            ("heartbeat_interval_in_ms", "500"),
        ],
    )
    .expect("start 1C3D");
    cluster
        .wait_for_cluster(0, PATIENCE, "every node Running", |rows| {
            rows.len() == 4 && rows.iter().all(|row| row.status == "Running")
        })
        .unwrap();

    // 1. Everything through DataNode 1.
    let mut writer = cluster.client(0).expect("connect to DataNode 1");
    create_database(&mut writer);
    let plans: Vec<Vec<WireTablet>> = (0..DEVICES)
        .map(|index| device_plan(&device(index), 500 + index as u64, 0))
        .collect();
    let mut model = write_all(&mut writer, &plans);
    let others: BTreeSet<u32> = (1..3)
        .map(|i| data_node_id(&cluster.client(i).unwrap()))
        .collect();
    let leaders = leaders_holding_data(&mut writer);
    assert!(
        others.is_subset(&leaders),
        "the other DataNodes {others:?} lead no group holding data (leaders: {leaders:?}): \
         nothing was forwarded"
    );
    eprintln!(
        "{} points written through DataNode {} ({:?} in)",
        model.point_count(),
        data_node_id(&writer),
        started.elapsed()
    );

    // 2. Every query kind through DataNode 3.
    verify(
        &mut cluster.client(2).expect("connect to DataNode 3"),
        &model,
    );
    eprintln!("verified through DataNode 3 ({:?} in)", started.elapsed());
    large_tablet_forwarded(&mut writer, &mut cluster.client(2).unwrap());
    eprintln!(
        "a 20 MiB tablet forwarded in parts ({:?} in)",
        started.elapsed()
    );

    // 3. Schema statements anywhere.
    schema_statements_anywhere(&cluster);

    // 4. Golden comparison with a standalone server holding the same data.
    let mut standalone = TestServer::start(server_options!().cores(2)).expect("standalone");
    let mut client = standalone.client().expect("connect");
    create_database(&mut client);
    write_all(&mut client, &plans);
    golden(&cluster, &standalone);
    standalone.stop().expect("stop the standalone server");
    eprintln!("golden comparison passed ({:?} in)", started.elapsed());

    // 5. DataNode 2 dies while DataNode 1's plain client writes.
    let victim = 1;
    let victim_id = data_node_id(&cluster.client(victim).unwrap());
    assert!(leaders_holding_data(&mut writer).contains(&victim_id));
    let mut killed = None;
    for round in 0..8 {
        if round == 2 {
            cluster.data_nodes[victim].kill().expect("SIGKILL");
            killed = Some(Instant::now());
        }
        let tablets = round_tablets(round);
        let sent = Instant::now();
        writer
            .insert_tablets(&tablets)
            .unwrap_or_else(|e| panic!("round {round}: an error reached the caller: {e}"));
        if sent.elapsed() > Duration::from_millis(500) {
            eprintln!("round {round} took {:?}", sent.elapsed());
        }
        tablets.iter().for_each(|tablet| model.apply(tablet));
    }
    eprintln!(
        "DataNode {victim_id} killed: six rounds acknowledged {:?} after the kill",
        killed.expect("killed").elapsed()
    );
    verify(
        &mut cluster.client(2).expect("connect to DataNode 3"),
        &model,
    );
    eprintln!(
        "every acknowledged point read back ({:?} in)",
        started.elapsed()
    );
}
