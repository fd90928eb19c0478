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

    // Descending order: the newest rows first.
    let sql = "SELECT s1, s3 FROM root.st.d0 ORDER BY TIME DESC LIMIT 5 OFFSET 2";
    let (result, _) = paged(&mut client, sql);
    let mut newest = aligned(&[(0, "s1"), (0, "s3")]);
    newest.reverse();
    assert_rows(sql, &result.rows, &newest[2..7]);

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
