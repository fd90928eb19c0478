//! Raw `SELECT`s of any size are answered a page at a time: the server reads a bounded
//! number of points per page (`RawCursor`) and streams result frames of at most
//! `SQL_PAGE_CELLS` cells; the client takes them as they come
//! (`BlockingClient::execute_sql_pages`). Checked against a model of what was written,
//! cell by cell, for series of different densities (so pages end at different times per
//! column), with a value filter, `LIMIT`/`OFFSET` across pages, `FILL(PREVIOUS)` carried
//! across pages, descending order, `ALIGN BY DEVICE`, expressions, and more rows than the
//! 1,000,000 a gathered answer allows.

use std::collections::BTreeMap;

use iotdb_net::{
    BlockingClient, CreateDatabase, DataType, ResultSet, TypedColumn, Value, WireColumn, WireTablet,
};
use iotdb_tests::{TestServer, server_options};

/// Rows of the dense series; the answer to `SELECT *` spans several result frames.
const ROWS: i64 = 150_000;
/// Rows of the one series of the large database (more than a gathered answer's limit).
const LARGE_ROWS: i64 = 1_050_000;
/// Cells of a streamed frame (the server's `SQL_PAGE_CELLS`).
const PAGE_CELLS: usize = 1 << 19;

type Row = Vec<Option<Value>>;

/// What device `d` holds: s1 (DOUBLE) at every time, s2 (INT64) at every third, s3
/// (DOUBLE) at every 997th; device 2 has s1 only.
fn points(d: i64) -> [(&'static str, Vec<(i64, Value)>); 3] {
    let s1 = (0..ROWS).map(|t| (t, Value::Double(t as f64 * 0.5 + d as f64)));
    let s2 = (0..ROWS).step_by(3).map(|t| (t, Value::Int64(t * 10 + d)));
    let s3 = (0..ROWS)
        .step_by(997)
        .map(|t| (t, Value::Double(-(t as f64))));
    let keep = |all: Vec<(i64, Value)>| if d == 2 { Vec::new() } else { all };
    [
        ("s1", s1.collect()),
        ("s2", keep(s2.collect())),
        ("s3", keep(s3.collect())),
    ]
}

fn write_all(client: &mut BlockingClient) {
    client
        .create_database(CreateDatabase {
            name: "root.st".into(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
    for d in 0..3 {
        for (measurement, points) in points(d) {
            for chunk in points.chunks(20_000) {
                let (times, values): (Vec<i64>, Vec<Value>) = chunk.iter().cloned().unzip();
                let column = match measurement {
                    "s2" => TypedColumn::Int64(values.iter().map(int).collect()),
                    _ => TypedColumn::Double(values.iter().map(double).collect()),
                };
                let tablet = WireTablet {
                    device: format!("root.st.d{d}"),
                    is_aligned: false,
                    timestamps: times,
                    columns: vec![WireColumn::new(measurement, column)],
                };
                client.insert_tablets(&[tablet]).expect("write");
            }
        }
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int64(v) => *v,
        other => panic!("not an INT64: {other:?}"),
    }
}

fn double(value: &Value) -> f64 {
    match value {
        Value::Double(v) => *v,
        Value::Int64(v) => *v as f64,
        other => panic!("not a number: {other:?}"),
    }
}

/// The model's rows of `series` (device, measurement) aligned by time: `Time`, then one
/// cell per series.
fn aligned(series: &[(i64, &str)]) -> Vec<Row> {
    let mut rows: BTreeMap<i64, Row> = BTreeMap::new();
    for (column, (d, measurement)) in series.iter().enumerate() {
        let all = points(*d);
        let (_, points) = all.iter().find(|(m, _)| m == measurement).expect("series");
        for (t, value) in points {
            rows.entry(*t).or_insert_with(|| vec![None; series.len()])[column] =
                Some(value.clone());
        }
    }
    rows.into_iter()
        .map(|(t, cells)| {
            let mut row = vec![Some(Value::Int64(t))];
            row.extend(cells);
            row
        })
        .collect()
}

/// Runs `sql` through the streamed API: the pages' rows together, and how many pages came.
fn paged(client: &mut BlockingClient, sql: &str) -> (ResultSet, usize) {
    let mut whole: Option<ResultSet> = None;
    let mut pages = 0;
    client
        .execute_sql_pages(sql, |page| {
            pages += 1;
            let width = page.column_names.len().max(1);
            assert!(
                page.rows.len() <= (PAGE_CELLS / width).max(1),
                "{sql}: a page of {} rows × {width} columns",
                page.rows.len()
            );
            match &mut whole {
                None => whole = Some(page),
                Some(so_far) => {
                    assert_eq!(so_far.column_names, page.column_names, "{sql}: header");
                    so_far.rows.extend(page.rows);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (whole.expect("at least one page"), pages)
}

/// Asserts `got` equals `expected` row by row (the first difference is shown, not 150,000
/// rows).
fn assert_rows(sql: &str, got: &[Row], expected: &[Row]) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "{sql}: row {i}");
    }
    assert_eq!(got.len(), expected.len(), "{sql}: row count");
}

#[test]
fn raw_selects_of_any_size_stream_in_pages_that_match_the_model() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    write_all(&mut client);

    // Every series, aligned by time: several frames, every cell as written.
    let sql = "SELECT * FROM root.st.**";
    let (result, pages) = paged(&mut client, sql);
    let all_series = [
        (0, "s1"),
        (0, "s2"),
        (0, "s3"),
        (1, "s1"),
        (1, "s2"),
        (1, "s3"),
        (2, "s1"),
    ];
    let expected = aligned(&all_series);
    let names: Vec<String> = all_series
        .iter()
        .map(|(d, m)| format!("root.st.d{d}.{m}"))
        .collect();
    assert_eq!(result.column_names[1..], names[..]);
    assert_rows(sql, &result.rows, &expected);
    assert!(
        pages >= 3,
        "{sql}: {pages} pages for {} rows",
        expected.len()
    );
    // The gathering call (the client concatenates the frames) answers the same.
    let gathered = client.execute_sql(sql).expect("gathered");
    assert_rows(sql, &gathered.rows, &expected);

    // LIMIT/OFFSET across pages, after the merge.
    let sql = "SELECT * FROM root.st.** LIMIT 7 OFFSET 149990";
    let (result, _) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &expected[149_990..149_997]);

    // A value filter: pages end where the filtered column's points end.
    let sql = "SELECT s1, s2 FROM root.st.d0 WHERE s2 >= 1000000";
    let (result, _) = paged(&mut client, sql);
    let filtered: Vec<Row> = aligned(&[(0, "s1"), (0, "s2")])
        .into_iter()
        .filter(|row| row[2].as_ref().is_some_and(|v| int(v) >= 1_000_000))
        .collect();
    assert!(!filtered.is_empty());
    assert_rows(sql, &result.rows, &filtered);

    // FILL(PREVIOUS) carries each column's latest value across pages.
    let sql = "SELECT s2, s3 FROM root.st.d1 FILL(PREVIOUS)";
    let (result, _) = paged(&mut client, sql);
    let mut filled = aligned(&[(1, "s2"), (1, "s3")]);
    let mut latest: [Option<Value>; 3] = [None, None, None];
    for row in &mut filled {
        for (column, cell) in row.iter_mut().enumerate().skip(1) {
            match cell {
                Some(value) => latest[column] = Some(value.clone()),
                None => cell.clone_from(&latest[column]),
            }
        }
    }
    assert_rows(sql, &result.rows, &filled);

    // Descending order: the newest rows first, windows read from the end of the range.
    let sql = "SELECT * FROM root.st.** ORDER BY TIME DESC";
    let (result, pages) = paged(&mut client, sql);
    let mut newest = expected.clone();
    newest.reverse();
    assert_rows(sql, &result.rows, &newest);
    assert!(pages >= 3, "{sql}: {pages} pages");
    let sql = "SELECT s1, s3 FROM root.st.d0 WHERE time >= 1000 AND time < 140000 ORDER BY TIME DESC LIMIT 5 OFFSET 2";
    let (result, _) = paged(&mut client, sql);
    let mut newest = aligned(&[(0, "s1"), (0, "s3")]);
    newest.retain(|row| matches!(row[0], Some(Value::Int64(t)) if (1000..140_000).contains(&t)));
    newest.reverse();
    assert_rows(sql, &result.rows, &newest[2..7]);
    let sql = "SELECT s1, s2 FROM root.st.d0 WHERE s2 >= 1000000 ORDER BY TIME DESC";
    let (result, _) = paged(&mut client, sql);
    let mut newest = filtered.clone();
    newest.reverse();
    assert_rows(sql, &result.rows, &newest);

    // ALIGN BY DEVICE: each device's rows in turn, the Device column second.
    let sql = "SELECT s1, s2 FROM root.st.** ALIGN BY DEVICE";
    let (result, _) = paged(&mut client, sql);
    assert_eq!(result.column_names, ["Time", "Device", "s1", "s2"]);
    let mut by_device = Vec::new();
    for d in 0..3 {
        for row in aligned(&[(d, "s1"), (d, "s2")]) {
            let device = Some(Value::Text(format!("root.st.d{d}").into()));
            by_device.push(vec![row[0].clone(), device, row[1].clone(), row[2].clone()]);
        }
    }
    assert_rows(sql, &result.rows, &by_device);
    // ... and in descending order within each device.
    let sql = "SELECT s1, s2 FROM root.st.** ORDER BY TIME DESC ALIGN BY DEVICE";
    let (result, _) = paged(&mut client, sql);
    let descending: Vec<Row> = by_device
        .chunks(ROWS as usize)
        .flat_map(|device| device.iter().rev().cloned())
        .collect();
    assert_rows(sql, &result.rows, &descending);

    // An expression of two series, null where either has no point.
    let sql = "SELECT s1 + s2 FROM root.st.d0";
    let (result, _) = paged(&mut client, sql);
    let sums: Vec<Row> = aligned(&[(0, "s1"), (0, "s2")])
        .into_iter()
        .map(|row| {
            let sum = match (&row[1], &row[2]) {
                (Some(a), Some(b)) => Some(Value::Double(double(a) + double(b))),
                _ => None,
            };
            vec![row[0].clone(), sum]
        })
        .collect();
    assert_rows(sql, &result.rows, &sums);
}

/// Aggregates of many `GROUP BY` windows are answered a page of windows at a time:
/// every window's values, `LIMIT`/`OFFSET` and `FILL(PREVIOUS)` across pages, newest first.
#[test]
fn many_group_by_windows_stream_in_pages_of_windows() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    write_all(&mut client);
    const WIDTH: i64 = 5;
    let windows = ROWS / WIDTH;
    // Window k: count(s1) = 5, max_value(s2) the largest s2 in it (s2 every third time).
    let window_row = |k: i64| -> Row {
        let start = k * WIDTH;
        let max_s2 = (start..start + WIDTH)
            .filter(|t| t % 3 == 0)
            .max()
            .map(|t| Value::Int64(t * 10));
        vec![Some(Value::Int64(start)), Some(Value::Int64(WIDTH)), max_s2]
    };
    let sql = format!(
        "SELECT count(s1), max_value(s2) FROM root.st.d0 GROUP BY ([0, {ROWS}), {WIDTH}ms)"
    );
    let (result, pages) = paged(&mut client, &sql);
    assert_eq!(
        result.column_names,
        ["Time", "count(root.st.d0.s1)", "max_value(root.st.d0.s2)"]
    );
    let expected: Vec<Row> = (0..windows).map(window_row).collect();
    assert_rows(&sql, &result.rows, &expected);
    assert!(pages >= 1, "{sql}");
    // LIMIT/OFFSET across a page boundary (10,000 windows a page).
    let sql = format!("{sql} LIMIT 4 OFFSET 9998");
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &expected[9998..10_002]);
    // Newest window first.
    let sql = format!(
        "SELECT count(s1), max_value(s2) FROM root.st.d0 GROUP BY ([0, {ROWS}), {WIDTH}ms) ORDER BY TIME DESC"
    );
    let (result, _) = paged(&mut client, &sql);
    let newest: Vec<Row> = expected.iter().rev().cloned().collect();
    assert_rows(&sql, &result.rows, &newest);
    // FILL(PREVIOUS) carries the sparse series' latest value across pages (s3 every 997).
    let sql = format!(
        "SELECT last_value(s3) FROM root.st.d0 GROUP BY ([0, {ROWS}), {WIDTH}ms) FILL(PREVIOUS)"
    );
    let (result, _) = paged(&mut client, &sql);
    let filled: Vec<Row> = (0..windows)
        .map(|k| {
            let end = k * WIDTH + WIDTH;
            let latest = (end - 1) / 997 * 997;
            vec![
                Some(Value::Int64(k * WIDTH)),
                Some(Value::Double(-(latest as f64))),
            ]
        })
        .collect();
    assert_rows(&sql, &result.rows, &filled);
}

#[test]
fn a_result_beyond_the_gathered_limit_is_streamed_whole() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    client
        .create_database(CreateDatabase {
            name: "root.large".into(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
    for start in (0..LARGE_ROWS).step_by(250_000) {
        let end = (start + 250_000).min(LARGE_ROWS);
        let tablet = WireTablet {
            device: "root.large.d0".into(),
            is_aligned: false,
            timestamps: (start..end).collect(),
            columns: vec![WireColumn::new(
                "v",
                TypedColumn::Int64((start..end).collect()),
            )],
        };
        client.insert_tablets(&[tablet]).expect("write");
    }
    let sql = "SELECT v FROM root.large.d0";
    let mut rows = 0i64;
    let mut pages = 0;
    client
        .execute_sql_pages(sql, |page| {
            assert_eq!(page.column_types, [DataType::Int64, DataType::Int64]);
            for row in &page.rows {
                // Every row in order, its value its time.
                assert_eq!(row[0], Some(Value::Int64(rows)), "row {rows}");
                assert_eq!(row[1], Some(Value::Int64(rows)), "row {rows}");
                rows += 1;
            }
            pages += 1;
            Ok(())
        })
        .expect("streamed");
    assert_eq!(rows, LARGE_ROWS);
    assert!(pages >= 4, "{pages} pages");
    // A caller stopping early gets its own error, and the connection stays usable.
    let mut seen = 0;
    let stopped = client.execute_sql_pages(sql, |_| {
        seen += 1;
        Err(iotdb_net::ClientError::Protocol("enough".into()))
    });
    assert!(stopped.is_err());
    assert_eq!(seen, 1, "no page after the caller's error");
    let count = client
        .execute_sql("SELECT count(v) FROM root.large.d0")
        .expect("count");
    assert_eq!(count.rows, vec![vec![Some(Value::Int64(LARGE_ROWS))]]);
}

/// The same paging through a DataNode that holds no replica of the data: every page's
/// points come from the other DataNode (remote reads, themselves paged by bytes), and the
/// answer is the model's, in both orders.
#[test]
fn a_data_node_without_the_data_streams_a_large_result_from_its_holder() {
    const BINARY: &str = env!("CARGO_BIN_EXE_iotdb-server-under-test");
    let cluster = iotdb_tests::TestCluster::start_configured(
        BINARY,
        1,
        2,
        1,
        &[
            ("data_region_group_extension_policy", "CUSTOM"),
            ("default_data_region_group_num_per_database", "1"),
        ],
    )
    .expect("start 1C2D");
    cluster
        .wait_for_cluster(
            0,
            std::time::Duration::from_secs(30),
            "every node Running",
            |rows| rows.len() == 3 && rows.iter().all(|row| row.status == "Running"),
        )
        .unwrap();
    let mut writer = cluster.client(0).unwrap();
    write_all(&mut writer);
    let regions =
        iotdb_tests::cluster::text_rows(&writer.execute_sql("SHOW DATA REGIONS").unwrap());
    assert_eq!(regions.len(), 1, "one data region: {regions:?}");
    let holder: u32 = regions[0]["DataNodeId"].parse().unwrap();
    let holder_index = cluster.data_node_index(holder, 0);
    let mut reader = cluster.client(1 - holder_index).unwrap();

    let sql = "SELECT s1, s2, s3 FROM root.st.d0, root.st.d1";
    let (result, pages) = paged(&mut reader, sql);
    let series = [
        (0, "s1"),
        (0, "s2"),
        (0, "s3"),
        (1, "s1"),
        (1, "s2"),
        (1, "s3"),
    ];
    let expected = aligned(&series);
    assert_rows(sql, &result.rows, &expected);
    assert!(pages >= 2, "{sql}: {pages} pages");
    let sql =
        "SELECT s1, s2, s3 FROM root.st.d0, root.st.d1 ORDER BY TIME DESC LIMIT 100000 OFFSET 3";
    let (result, _) = paged(&mut reader, sql);
    let mut newest = expected.clone();
    newest.reverse();
    assert_rows(sql, &result.rows, &newest[3..100_003]);
}
