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
/// answer is the model's, in both orders, with a value filter and `ALIGN BY DEVICE`.
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
    // A value filter read remotely: s1 >= 10000 from time 20000 on.
    let sql = "SELECT s1, s2, s3 FROM root.st.d0 WHERE s1 >= 10000";
    let (result, _) = paged(&mut reader, sql);
    let expected: Vec<Row> = aligned(&[(0, "s1"), (0, "s2"), (0, "s3")])
        .into_iter()
        .filter(|row| time(row) >= 20_000)
        .collect();
    assert!(expected.len() > 100_000);
    assert_rows(sql, &result.rows, &expected);
    // ALIGN BY DEVICE read remotely: device after device, d2 lacking s2.
    let sql = "SELECT s1, s2 FROM root.st.d0, root.st.d2 WHERE time >= 60000 ALIGN BY DEVICE";
    let (result, _) = paged(&mut reader, sql);
    assert_eq!(result.column_names, ["Time", "Device", "s1", "s2"], "{sql}");
    let expected: Vec<Row> = [0, 2]
        .into_iter()
        .flat_map(|d| {
            aligned(&[(d, "s1"), (d, "s2")])
                .into_iter()
                .filter(|row| time(row) >= 60_000)
                .map(move |mut row| {
                    row.insert(1, device(d));
                    row
                })
        })
        .collect();
    assert_rows(sql, &result.rows, &expected);
}

/// `FILL(PREVIOUS)` of `rows` (time order) in columns `first..`, as IoTDB fills.
fn fill_previous(rows: &mut [Row], first: usize) {
    let mut latest: Vec<Option<Value>> = vec![None; rows.first().map_or(0, Vec::len)];
    for row in rows {
        for (column, cell) in row.iter_mut().enumerate().skip(first) {
            match cell {
                Some(value) => latest[column] = Some(value.clone()),
                None => cell.clone_from(&latest[column]),
            }
        }
    }
}

/// `FILL(LINEAR)` of `rows` (time order) in columns `first..`: between the earlier and the
/// later value of the column, integers truncated.
fn fill_linear(rows: &mut [Row], first: usize) {
    let width = rows.first().map_or(0, Vec::len);
    for column in first..width {
        let known: Vec<(usize, i64, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| Some((i, time(row), double(row[column].as_ref()?))))
            .collect();
        for pair in known.windows(2) {
            let ((i1, t1, v1), (i2, t2, v2)) = (pair[0], pair[1]);
            let integer = matches!(rows[i1][column], Some(Value::Int64(_)));
            for row in &mut rows[i1 + 1..i2] {
                let v = v1 + (v2 - v1) * ((time(row) - t1) as f64) / ((t2 - t1) as f64);
                row[column] = Some(if integer {
                    Value::Int64(v as i64)
                } else {
                    Value::Double(v)
                });
            }
        }
    }
}

fn time(row: &Row) -> i64 {
    match row[0] {
        Some(Value::Int64(t)) => t,
        ref other => panic!("not a time: {other:?}"),
    }
}

fn device(d: i64) -> Option<Value> {
    Some(Value::Text(format!("root.st.d{d}").into()))
}

/// `FILL(LINEAR)`, and `FILL` in descending order, stream too: only the rows waiting for a
/// later value are held back. Checked against the model filled whole, across pages, with
/// `LIMIT`/`OFFSET` across a page, and per device (no fill from one device to the next).
#[test]
fn linear_and_descending_fills_stream_in_pages() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    write_all(&mut client);
    // Three columns: a page reads about 21,845 points of each, so 7 pages; the gaps of s3
    // (997 rows) cross pages.
    let series = [(1, "s1"), (1, "s2"), (1, "s3")];
    let mut linear = aligned(&series);
    fill_linear(&mut linear, 1);
    let sql = "SELECT s1, s2, s3 FROM root.st.d1 FILL(LINEAR)";
    let (result, pages) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &linear);
    assert!(pages >= 2, "{sql}: {pages} frames");
    let sql = "SELECT s1, s2, s3 FROM root.st.d1 FILL(LINEAR) LIMIT 5 OFFSET 21843";
    let (result, _) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &linear[21_843..21_848]);

    let newest = |rows: &[Row]| -> Vec<Row> { rows.iter().rev().cloned().collect() };
    let sql = "SELECT s1, s2, s3 FROM root.st.d1 FILL(LINEAR) ORDER BY TIME DESC";
    let (result, _) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &newest(&linear));
    let mut previous = aligned(&series);
    fill_previous(&mut previous, 1);
    let sql = "SELECT s1, s2, s3 FROM root.st.d1 FILL(PREVIOUS) ORDER BY TIME DESC";
    let (result, _) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &newest(&previous));
    let sql =
        "SELECT s1, s2, s3 FROM root.st.d1 FILL(PREVIOUS) ORDER BY TIME DESC LIMIT 6 OFFSET 65534";
    let (result, _) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &newest(&previous)[65_534..65_540]);

    // ALIGN BY DEVICE: d2 has no s3, and gets none of d1's.
    let mut by_device = Vec::new();
    for d in 0..3 {
        let mut rows = aligned(&[(d, "s1"), (d, "s3")]);
        fill_previous(&mut rows, 1);
        by_device.extend(rows.into_iter().rev().map(|row| {
            let mut with_device = vec![row[0].clone(), device(d)];
            with_device.extend(row[1..].iter().cloned());
            with_device
        }));
    }
    let sql = "SELECT s1, s3 FROM root.st.** FILL(PREVIOUS) ORDER BY TIME DESC ALIGN BY DEVICE";
    let (result, _) = paged(&mut client, sql);
    assert_rows(sql, &result.rows, &by_device);
}

/// Windowed aggregates `ALIGN BY DEVICE` are answered device after device, a page of
/// windows at a time (several whole devices a page when they have few windows).
#[test]
fn windows_aligned_by_device_stream_device_after_device() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    write_all(&mut client);
    // count(s1) and last_value(s3) of window [start, start + width) of device d.
    let window_row = |d: i64, start: i64, width: i64| -> Row {
        let last_s3 = (start..start + width)
            .filter(|t| t % 997 == 0 && d != 2)
            .max()
            .map(|t| Value::Double(-(t as f64)));
        vec![
            Some(Value::Int64(start)),
            device(d),
            Some(Value::Int64(width)),
            last_s3,
        ]
    };
    let model = |width: i64, fill: bool| -> Vec<Vec<Row>> {
        (0..3)
            .map(|d| {
                let mut rows: Vec<Row> = (0..ROWS / width)
                    .map(|k| window_row(d, k * width, width))
                    .collect();
                if fill {
                    fill_previous(&mut rows, 2);
                }
                rows
            })
            .collect()
    };
    // 15,000 windows a device: two pages each.
    let sql = format!(
        "SELECT count(s1), last_value(s3) FROM root.st.** GROUP BY ([0, {ROWS}), 10ms) ALIGN BY DEVICE"
    );
    let (result, _) = paged(&mut client, &sql);
    assert_eq!(
        result.column_names,
        ["Time", "Device", "count(s1)", "last_value(s3)"]
    );
    let expected: Vec<Row> = model(10, false).concat();
    assert_rows(&sql, &result.rows, &expected);
    for (offset, limit) in [(9998, 4), (14_998, 4)] {
        let sql = format!("{sql} LIMIT {limit} OFFSET {offset}");
        let (result, _) = paged(&mut client, &sql);
        assert_rows(&sql, &result.rows, &expected[offset..offset + limit]);
    }
    let sql = format!(
        "SELECT count(s1), last_value(s3) FROM root.st.** GROUP BY ([0, {ROWS}), 10ms) FILL(PREVIOUS) ORDER BY TIME DESC ALIGN BY DEVICE"
    );
    let (result, _) = paged(&mut client, &sql);
    let newest: Vec<Row> = model(10, true)
        .into_iter()
        .flat_map(|rows| rows.into_iter().rev())
        .collect();
    assert_rows(&sql, &result.rows, &newest);
    // Expressions of aggregates with HAVING (on an aggregate outside the select list),
    // left-open windows labelled with their right ends.
    let sql = format!(
        "SELECT count(s1) + 1 FROM root.st.** GROUP BY ((-1, {}], 10ms) HAVING last_value(s3) < 0 ALIGN BY DEVICE",
        ROWS - 1
    );
    let (result, _) = paged(&mut client, &sql);
    assert_eq!(result.column_names, ["Time", "Device", "count(s1) + 1"]);
    let having: Vec<Row> = (0..2)
        .flat_map(|d| {
            (0..ROWS / 10)
                .filter(|k| (k * 10..k * 10 + 10).any(|t| t > 0 && t % 997 == 0))
                .map(move |k| {
                    vec![
                        Some(Value::Int64(k * 10 + 9)),
                        device(d),
                        Some(Value::Double(11.0)),
                    ]
                })
        })
        .collect();
    assert_rows(&sql, &result.rows, &having);
    // 300 windows a device: every device in one page, the fill still per device.
    let sql = format!(
        "SELECT count(s1), last_value(s3) FROM root.st.** GROUP BY ([0, {ROWS}), 500ms) FILL(PREVIOUS) ALIGN BY DEVICE"
    );
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &model(500, true).concat());
}

/// Sliding and calendar-month windows are paged too: a page's `GROUP BY` range covers its
/// windows whole, and only the windows starting in the page are answered.
#[test]
fn sliding_and_calendar_windows_stream_in_pages() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    write_all(&mut client);
    // Window k: [4k, 4k + 10) clipped to ROWS: 37,500 windows, four pages.
    let sliding = |label: &dyn Fn(i64, i64) -> i64| -> Vec<Row> {
        (0..ROWS / 4)
            .map(|k| {
                let (start, end) = (4 * k, (4 * k + 10).min(ROWS));
                let max_s2 = (start..end)
                    .filter(|t| t % 3 == 0)
                    .max()
                    .map(|t| Value::Int64(t * 10));
                vec![
                    Some(Value::Int64(label(start, end))),
                    Some(Value::Int64(end - start)),
                    max_s2,
                ]
            })
            .collect()
    };
    let expected = sliding(&|start, _| start);
    let sql = format!(
        "SELECT count(s1), max_value(s2) FROM root.st.d0 GROUP BY ([0, {ROWS}), 10ms, 4ms)"
    );
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &expected);
    let sql = format!("{sql} LIMIT 5 OFFSET 9997");
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &expected[9997..10_002]);
    let sql = format!(
        "SELECT count(s1), max_value(s2) FROM root.st.d0 GROUP BY ([0, {ROWS}), 10ms, 4ms) ORDER BY TIME DESC"
    );
    let (result, _) = paged(&mut client, &sql);
    let newest: Vec<Row> = expected.iter().rev().cloned().collect();
    assert_rows(&sql, &result.rows, &newest);
    // Left-open: (4k, 4k + 10] (the data from time 1), each row labelled with its right end.
    let sql = format!(
        "SELECT count(s1), max_value(s2) FROM root.st.d0 GROUP BY ((-1, {}], 10ms, 4ms)",
        ROWS - 1
    );
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &sliding(&|_, end| end - 1));

    // FILL(LINEAR) and a descending FILL(PREVIOUS) over pages of windows: s3's last value
    // in the windows of 5 ms that hold one (every 997 ms), the others filled.
    let windows = |fill_rows: fn(&mut [Row], usize)| -> Vec<Row> {
        let mut rows: Vec<Row> = (0..ROWS / 5)
            .map(|k| {
                let last = (k * 5..k * 5 + 5)
                    .find(|t| t % 997 == 0)
                    .map(|t| Value::Double(-(t as f64)));
                vec![Some(Value::Int64(k * 5)), last]
            })
            .collect();
        fill_rows(&mut rows, 1);
        rows
    };
    let sql =
        format!("SELECT last_value(s3) FROM root.st.d0 GROUP BY ([0, {ROWS}), 5ms) FILL(LINEAR)");
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &windows(fill_linear));
    let sql = format!(
        "SELECT last_value(s3) FROM root.st.d0 GROUP BY ([0, {ROWS}), 5ms) FILL(PREVIOUS) ORDER BY TIME DESC LIMIT 5 OFFSET 9998"
    );
    let (result, _) = paged(&mut client, &sql);
    let newest: Vec<Row> = windows(fill_previous)
        .into_iter()
        .rev()
        .skip(9998)
        .take(5)
        .collect();
    assert_rows(&sql, &result.rows, &newest);

    // Calendar months from a 31st (months clamp: Feb 28, Mar 31): 11,172 windows, paged;
    // the same windows answered whole in two ranges that meet at a 31st.
    let (from, middle, to) = (
        "1969-12-31T00:00:00",
        "2719-12-31T00:00:00",
        "2900-12-31T00:00:00",
    );
    let calendar = |a: &str, b: &str| {
        format!("SELECT count(s1), min_time(s1) FROM root.st.d0 GROUP BY ([{a}, {b}), 1mo)")
    };
    let mut whole = client.execute_sql(&calendar(from, middle)).expect("first");
    let rest = client.execute_sql(&calendar(middle, to)).expect("rest");
    whole.rows.extend(rest.rows);
    assert_eq!(whole.rows.len(), 11_172);
    let sql = calendar(from, to);
    let (result, _) = paged(&mut client, &sql);
    assert_rows(&sql, &result.rows, &whole.rows);
    // Descending pages: windows [1172, 11172) (1172 months on is a 31st), then the rest.
    let sql = format!(
        "{} ORDER BY TIME DESC LIMIT 4 OFFSET 9998",
        calendar(from, to)
    );
    let (result, _) = paged(&mut client, &sql);
    let newest: Vec<Row> = whole
        .rows
        .iter()
        .rev()
        .skip(9998)
        .take(4)
        .cloned()
        .collect();
    assert_rows(&sql, &result.rows, &newest);
}

/// Aggregates under a value filter fold the filtered rows page by page as they are read
/// (all select items in one pass), over more rows than one page reads: whole, in windows,
/// in sliding windows and per device, against the model.
#[test]
fn value_filtered_aggregates_fold_the_pages_as_they_come() {
    let server = TestServer::start(server_options!()).expect("server");
    let mut client = server.client().expect("connect");
    write_all(&mut client);
    // `s2 >= 1000000` keeps the times of d0's s2 from 100,000 on: every third time.
    let kept: Vec<i64> = (0..ROWS)
        .filter(|t| t % 3 == 0 && t * 10 >= 1_000_000)
        .collect();
    let s1 = |t: i64| t as f64 * 0.5;
    let sql = "SELECT count(s1), sum(s1), min_value(s2), max_value(s2), first_value(s1), \
               last_value(s2), avg(s2), count(s3) FROM root.st.d0 WHERE s2 >= 1000000";
    let result = client.execute_sql(sql).expect(sql);
    let n = kept.len() as i64;
    let sum_s2: i64 = kept.iter().map(|t| t * 10).sum();
    let expected = vec![
        Some(Value::Int64(n)),
        Some(Value::Double(kept.iter().map(|&t| s1(t)).sum())),
        Some(Value::Int64(kept[0] * 10)),
        Some(Value::Int64(kept[kept.len() - 1] * 10)),
        Some(Value::Double(s1(kept[0]))),
        Some(Value::Int64(kept[kept.len() - 1] * 10)),
        Some(Value::Double(sum_s2 as f64 / n as f64)),
        Some(Value::Int64(
            kept.iter().filter(|t| *t % 997 == 0).count() as i64
        )),
    ];
    assert_rows(sql, &result.rows, &[expected]);

    // Windows of 10 s, and sliding windows of 20 s every 10 s: the count and sum of each.
    let window = |start: i64, end: i64| -> Row {
        let inside: Vec<i64> = kept
            .iter()
            .copied()
            .filter(|t| (start..end).contains(t))
            .collect();
        let sum = (!inside.is_empty())
            .then(|| Value::Double(inside.iter().map(|t| (t * 10) as f64).sum()));
        vec![
            Some(Value::Int64(start)),
            Some(Value::Int64(inside.len() as i64)),
            sum,
        ]
    };
    let sql = format!(
        "SELECT count(s1), sum(s2) FROM root.st.d0 WHERE s2 >= 1000000 GROUP BY ([0, {ROWS}), 10000ms)"
    );
    let result = client.execute_sql(&sql).expect("windows");
    let windows: Vec<Row> = (0..ROWS / 10_000)
        .map(|k| window(k * 10_000, k * 10_000 + 10_000))
        .collect();
    assert_rows(&sql, &result.rows, &windows);
    let sql = format!(
        "SELECT count(s1), sum(s2) FROM root.st.d0 WHERE s2 >= 1000000 GROUP BY ([0, {ROWS}), 20000ms, 10000ms)"
    );
    let result = client.execute_sql(&sql).expect("sliding");
    let sliding: Vec<Row> = (0..ROWS / 10_000)
        .map(|k| window(k * 10_000, (k * 10_000 + 20_000).min(ROWS)))
        .collect();
    assert_rows(&sql, &result.rows, &sliding);

    // Per device, each device's own s1: s1 = t/2 + d > 74000 keeps t > 148000 - 2d.
    let sql = "SELECT count(s1), max_value(s1) FROM root.st.** WHERE s1 > 74000 ALIGN BY DEVICE";
    let result = client.execute_sql(sql).expect(sql);
    assert_eq!(
        result.column_names,
        ["Device", "count(s1)", "max_value(s1)"]
    );
    let by_device: Vec<Row> = (0..3)
        .map(|d| {
            vec![
                device(d),
                Some(Value::Int64(ROWS - (148_001 - 2 * d))),
                Some(Value::Double(s1(ROWS - 1) + d as f64)),
            ]
        })
        .collect();
    assert_rows(sql, &result.rows, &by_device);
}
