//! SQL queries over a seeded dataset compared with a model computed the simple way.
//!
//! The dataset has a device at database level (`root.mdl.d0` is both) and two devices in
//! another database, points in two time partitions, some in sealed files and some in
//! memtables, and random nulls. Each query (value filters of every shape, with time
//! filters, `ALIGN BY DEVICE`, `ORDER BY TIME DESC`, `LIMIT`, aggregates with `HAVING`)
//! is answered by the server and by the model, and the answers must be equal; so are
//! sliding windows, value-filtered aggregates, `GROUP BY LEVEL`, aggregates `ALIGN BY
//! DEVICE` and expressions in the select list.

use std::collections::BTreeMap;

use iotdb_net::{BlockingClient, ResultSet, Value};
use iotdb_tests::{TestServer, server_options};

const DEVICES: [&str; 3] = ["root.mdl.d0", "root.mdl2.d1", "root.mdl2.d2"];
/// One point an hour: 400 hours span three 7-day time partitions.
const STEP_MS: i64 = 3_600_000;
const ROWS: i64 = 400;

/// device → measurement → time → value.
type Model = BTreeMap<String, BTreeMap<&'static str, BTreeMap<i64, f64>>>;
/// device → time → value of the TEXT series `s3` (written only in rows that have s1 or s2,
/// so it adds no row of its own).
type Texts = BTreeMap<String, BTreeMap<i64, String>>;
/// The values of `s3`: some share prefixes and suffixes, one differs only in case, so
/// `LIKE` and `REGEXP` patterns split them.
const WORDS: [&str; 7] = [
    "alpha",
    "alpha7",
    "beta",
    "gamma",
    "gamma_ray",
    "delta",
    "Alpha",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn sql(client: &mut BlockingClient, statement: &str) -> ResultSet {
    client
        .execute_sql(statement)
        .unwrap_or_else(|error| panic!("{statement}: {error}"))
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Int32(v) => f64::from(*v),
        Value::Int64(v) => *v as f64,
        Value::Float(v) => f64::from(*v),
        Value::Double(v) => *v,
        other => panic!("not a number: {other:?}"),
    }
}

/// Rows as (time, cells as numbers), the device name first under ALIGN BY DEVICE.
fn rows_of(result: &ResultSet) -> Vec<(i64, Vec<Option<f64>>)> {
    result
        .rows
        .iter()
        .map(|row| {
            let Some(Value::Int64(time)) = &row[0] else {
                panic!("no time: {row:?}")
            };
            let cells = row[1..]
                .iter()
                .map(|cell| match cell {
                    Some(Value::Text(device)) => {
                        let index = DEVICES
                            .iter()
                            .position(|d| d.as_bytes() == device.as_ref())
                            .expect("a device name");
                        Some(index as f64)
                    }
                    Some(v) => Some(number(v)),
                    None => None,
                })
                .collect();
            (*time, cells)
        })
        .collect()
}

fn load(client: &mut BlockingClient) -> (Model, Texts) {
    sql(client, "CREATE DATABASE root.mdl.d0");
    sql(client, "CREATE DATABASE root.mdl2");
    let mut model: Model = BTreeMap::new();
    let mut texts: Texts = BTreeMap::new();
    let mut random = Lcg(7);
    let mut words = Lcg(11);
    for device in DEVICES {
        sql(
            client,
            &format!("CREATE TIMESERIES {device}.s1 WITH DATATYPE=DOUBLE, ENCODING=GORILLA"),
        );
        sql(
            client,
            &format!("CREATE TIMESERIES {device}.s2 WITH DATATYPE=INT64, ENCODING=TS_2DIFF"),
        );
        sql(
            client,
            &format!("CREATE TIMESERIES {device}.s3 WITH DATATYPE=TEXT, ENCODING=PLAIN"),
        );
        let series = model.entry(device.to_string()).or_default();
        let device_texts = texts.entry(device.to_string()).or_default();
        let mut values = Vec::new();
        for row in 0..ROWS {
            let time = row * STEP_MS;
            let has_s1 = !random.next().is_multiple_of(5);
            let s1 = has_s1.then(|| (random.next() % 2001) as f64 / 8.0 - 125.0);
            let has_s2 = !random.next().is_multiple_of(4);
            let s2 = has_s2.then(|| (random.next() % 100) as i64);
            if s1.is_none() && s2.is_none() {
                continue;
            }
            if let Some(v) = s1 {
                series.entry("s1").or_default().insert(time, v);
            }
            if let Some(v) = s2 {
                series.entry("s2").or_default().insert(time, v as f64);
            }
            let s3 = (!words.next().is_multiple_of(3)).then(|| WORDS[(words.next() % 7) as usize]);
            if let Some(word) = s3 {
                device_texts.insert(time, word.to_string());
            }
            let text = |v: Option<String>| v.unwrap_or_else(|| "null".to_string());
            values.push(format!(
                "({time}, {}, {}, {})",
                text(s1.map(|v| format!("{v:?}"))),
                text(s2.map(|v| v.to_string())),
                text(s3.map(|w| format!("'{w}'")))
            ));
        }
        // Half the rows sealed in files, half in memtables.
        let (sealed, fresh) = values.split_at(values.len() / 2);
        for part in [sealed, fresh] {
            sql(
                client,
                &format!(
                    "INSERT INTO {device}(time, s1, s2, s3) VALUES {}",
                    part.join(", ")
                ),
            );
            if part.as_ptr() == sealed.as_ptr() {
                sql(client, "FLUSH");
            }
        }
    }
    (model, texts)
}

/// The model's rows of `device` where `keep(time, s1, s2)` holds, as (time, [s1, s2]).
fn model_rows(
    model: &Model,
    device: &str,
    keep: &dyn Fn(i64, Option<f64>, Option<f64>) -> bool,
) -> Vec<(i64, Vec<Option<f64>>)> {
    let series = &model[device];
    let empty = BTreeMap::new();
    let (s1, s2) = (
        series.get("s1").unwrap_or(&empty),
        series.get("s2").unwrap_or(&empty),
    );
    let mut times: Vec<i64> = s1.keys().chain(s2.keys()).copied().collect();
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .map(|t| (t, s1.get(&t).copied(), s2.get(&t).copied()))
        .filter(|(t, a, b)| keep(*t, *a, *b))
        .map(|(t, a, b)| (t, vec![a, b]))
        .collect()
}

#[test]
fn value_filtered_and_device_aligned_queries_match_the_model() {
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    let mut client = server.client().expect("client");
    let (model, _) = load(&mut client);
    let gt = |v: Option<f64>, c: f64| v.is_some_and(|v| v > c);
    let lt = |v: Option<f64>, c: f64| v.is_some_and(|v| v < c);
    let partition_ms = 7 * 24 * STEP_MS;

    for device in DEVICES {
        for threshold in [-200.0, -50.0, 0.0, 60.5, 125.0] {
            // A pushed-down comparison, alone and with a time range across partitions.
            let got = sql(
                &mut client,
                &format!("SELECT s1, s2 FROM {device} WHERE s1 > {threshold}"),
            );
            let want = model_rows(&model, device, &|_, a, _| gt(a, threshold));
            if threshold == 0.0 {
                assert!(!want.is_empty(), "the dataset exercises the filter");
            }
            assert_eq!(rows_of(&got), want, "{device} s1 > {threshold}");
            let got = sql(
                &mut client,
                &format!(
                    "SELECT s1, s2 FROM {device} WHERE time >= {partition_ms} AND s1 <= {threshold} \
                     AND s2 IS NOT NULL"
                ),
            );
            let want = model_rows(&model, device, &|t, a, b| {
                t >= partition_ms && a.is_some_and(|a| a <= threshold) && b.is_some()
            });
            assert_eq!(rows_of(&got), want, "{device} time and s1 <= {threshold}");
        }
        // OR across series, NOT, IN, BETWEEN, arithmetic.
        let got = sql(
            &mut client,
            &format!("SELECT s1, s2 FROM {device} WHERE s1 < -100 OR s2 >= 95"),
        );
        let want = model_rows(&model, device, &|_, a, b| {
            lt(a, -100.0) || b.is_some_and(|b| b >= 95.0)
        });
        assert_eq!(rows_of(&got), want, "{device} OR");
        let got = sql(
            &mut client,
            &format!(
                "SELECT s1, s2 FROM {device} WHERE NOT s2 BETWEEN 10 AND 90 AND s2 NOT IN (0, 99)"
            ),
        );
        let want = model_rows(&model, device, &|_, _, b| {
            b.is_some_and(|b| !(10.0..=90.0).contains(&b) && b != 0.0 && b != 99.0)
        });
        assert_eq!(rows_of(&got), want, "{device} NOT BETWEEN, NOT IN");
        let got = sql(
            &mut client,
            &format!(
                "SELECT s1, s2 FROM {device} WHERE s1 * 2 + s2 > 100 ORDER BY TIME DESC LIMIT 7 OFFSET 2"
            ),
        );
        let mut want = model_rows(
            &model,
            device,
            &|_, a, b| matches!((a, b), (Some(a), Some(b)) if a * 2.0 + b > 100.0),
        );
        want.reverse();
        let want: Vec<_> = want.into_iter().skip(2).take(7).collect();
        assert_eq!(rows_of(&got), want, "{device} arithmetic, DESC, LIMIT");
    }

    // ALIGN BY DEVICE over every device, the database-level one included.
    let got = sql(
        &mut client,
        "SELECT s1, s2 FROM root.mdl.d0, root.mdl2.* WHERE s1 > 50 ALIGN BY DEVICE",
    );
    let mut want = Vec::new();
    for (index, device) in DEVICES.iter().enumerate() {
        for (t, cells) in model_rows(&model, device, &|_, a, _| gt(a, 50.0)) {
            let mut row = vec![Some(index as f64)];
            row.extend(cells);
            want.push((t, row));
        }
    }
    assert_eq!(rows_of(&got), want, "ALIGN BY DEVICE");

    // Aggregates of the database-level device, per window, with HAVING.
    let window = partition_ms;
    let got = sql(
        &mut client,
        &format!(
            "SELECT count(s1), min_time(s1), max_time(s1), extreme(s1) FROM root.mdl.d0 \
             GROUP BY ([0, {}), {window}ms) HAVING count(s1) > 0",
            ROWS * STEP_MS
        ),
    );
    let s1 = &model["root.mdl.d0"]["s1"];
    let mut want = Vec::new();
    let mut start = 0;
    while start < ROWS * STEP_MS {
        let points: Vec<(i64, f64)> = s1
            .range(start..(start + window).min(ROWS * STEP_MS))
            .map(|(t, v)| (*t, *v))
            .collect();
        if let (Some(first), Some(last)) = (points.first(), points.last()) {
            let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let extreme = if min.abs() > max.abs() { min } else { max };
            want.push((
                start,
                vec![
                    Some(points.len() as f64),
                    Some(first.0 as f64),
                    Some(last.0 as f64),
                    Some(extreme),
                ],
            ));
        }
        start += window;
    }
    assert!(!want.is_empty());
    assert_eq!(rows_of(&got), want, "windowed aggregates with HAVING");
}

/// Per window of `windows` ((start, end)): count of s1, sum of s2 (null without points) and
/// max of s1 (null without points) over the model's rows of `device` where `keep` holds.
fn model_aggregates(
    model: &Model,
    device: &str,
    windows: &[(i64, i64)],
    keep: &dyn Fn(Option<f64>, Option<f64>) -> bool,
) -> Vec<(i64, Vec<Option<f64>>)> {
    let rows = model_rows(model, device, &|_, a, b| keep(a, b));
    windows
        .iter()
        .map(|(start, end)| {
            let inside: Vec<&Vec<Option<f64>>> = rows
                .iter()
                .filter(|(t, _)| t >= start && t < end)
                .map(|(_, cells)| cells)
                .collect();
            let s1: Vec<f64> = inside.iter().filter_map(|c| c[0]).collect();
            let s2: Vec<f64> = inside.iter().filter_map(|c| c[1]).collect();
            let sum = (!s2.is_empty()).then(|| s2.iter().sum());
            let max = s1.iter().copied().reduce(f64::max);
            (*start, vec![Some(s1.len() as f64), sum, max])
        })
        .collect()
}

/// Windows of `interval` starting every `step` over the dataset's hours, clipped to its end.
fn windows(interval: i64, step: i64) -> Vec<(i64, i64)> {
    let end = ROWS * STEP_MS;
    (0..)
        .map(|k| k * step)
        .take_while(|start| *start < end)
        .map(|start| (start, (start + interval).min(end)))
        .collect()
}

#[test]
fn sliding_filtered_grouped_and_computed_queries_match_the_model() {
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    let mut client = server.client().expect("client");
    let (model, _) = load(&mut client);
    let end = ROWS * STEP_MS;
    let hour = STEP_MS;
    let all = |_: Option<f64>, _: Option<f64>| true;

    for device in DEVICES {
        // Sliding windows: a day every six hours.
        let got = sql(
            &mut client,
            &format!(
                "SELECT count(s1), sum(s2), max_value(s1) FROM {device} \
                 GROUP BY ([0, {end}), 24h, 6h)"
            ),
        );
        let want = model_aggregates(&model, device, &windows(24 * hour, 6 * hour), &all);
        assert_eq!(rows_of(&got), want, "{device} sliding windows");
        // Aggregates of the rows a value filter keeps, in windows of two days.
        let got = sql(
            &mut client,
            &format!(
                "SELECT count(s1), sum(s2), max_value(s1) FROM {device} WHERE s2 > 50 \
                 GROUP BY ([0, {end}), 48h)"
            ),
        );
        let want = model_aggregates(&model, device, &windows(48 * hour, 48 * hour), &|_, b| {
            b.is_some_and(|b| b > 50.0)
        });
        assert_eq!(rows_of(&got), want, "{device} value-filtered aggregates");
        // Expressions in the select list, row by row.
        let got = sql(
            &mut client,
            &format!("SELECT s1 * 2 + s2, abs(s1) FROM {device}"),
        );
        let want: Vec<(i64, Vec<Option<f64>>)> = model_rows(&model, device, &|_, _, _| true)
            .into_iter()
            .map(|(t, cells)| {
                let combined = match (cells[0], cells[1]) {
                    (Some(a), Some(b)) => Some(a * 2.0 + b),
                    _ => None,
                };
                (t, vec![combined, cells[0].map(f64::abs)])
            })
            .collect();
        assert_eq!(rows_of(&got), want, "{device} select-list expressions");
    }

    // GROUP BY LEVEL: both devices of root.mdl2 in one column per aggregate.
    let got = sql(
        &mut client,
        &format!(
            "SELECT count(s1), sum(s2), max_value(s1) FROM root.mdl2.* \
             GROUP BY ([0, {end}), 100h), LEVEL = 1"
        ),
    );
    let spans = windows(100 * hour, 100 * hour);
    let (a, b) = (
        model_aggregates(&model, DEVICES[1], &spans, &all),
        model_aggregates(&model, DEVICES[2], &spans, &all),
    );
    let want: Vec<(i64, Vec<Option<f64>>)> = a
        .into_iter()
        .zip(b)
        .map(|((t, x), (_, y))| {
            let add = |p: Option<f64>, q: Option<f64>| match (p, q) {
                (Some(p), Some(q)) => Some(p + q),
                (p, q) => p.or(q),
            };
            let max = |p: Option<f64>, q: Option<f64>| match (p, q) {
                (Some(p), Some(q)) => Some(p.max(q)),
                (p, q) => p.or(q),
            };
            (t, vec![add(x[0], y[0]), add(x[1], y[1]), max(x[2], y[2])])
        })
        .collect();
    assert_eq!(rows_of(&got), want, "GROUP BY LEVEL");
    assert_eq!(want.len(), 4, "four windows of 100 hours");

    // Aggregates ALIGN BY DEVICE, the database-level device first.
    let got = sql(
        &mut client,
        &format!(
            "SELECT count(s1), sum(s2), max_value(s1) FROM root.mdl.d0, root.mdl2.* \
             GROUP BY ([0, {end}), 200h) ALIGN BY DEVICE"
        ),
    );
    let spans = windows(200 * hour, 200 * hour);
    let mut want = Vec::new();
    for (index, device) in DEVICES.iter().enumerate() {
        for (t, cells) in model_aggregates(&model, device, &spans, &all) {
            let mut row = vec![Some(index as f64)];
            row.extend(cells);
            want.push((t, row));
        }
    }
    assert_eq!(rows_of(&got), want, "aggregates ALIGN BY DEVICE");
}

/// Aggregates over more devices than the server asks the regions about at once, with
/// points in two time partitions, some sealed and some in memtables: every series' count,
/// sum, first and last value (which depend on folding the partitions in time order) match
/// the model, with and without time windows.
#[test]
fn aggregates_over_hundreds_of_devices_match_the_model() {
    const MANY: i64 = 600;
    let day_ms = 24 * STEP_MS;
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    let mut client = server.client().expect("client");
    sql(&mut client, "CREATE DATABASE root.many");
    // The first point before the flush, two later ones after it in a time partition (7
    // days each) not adjacent to the first one's: each device is read in two parts.
    let value = |d: i64, t: i64| (d * 31 + t / day_ms * 7) as f64 / 4.0;
    let times = [0, 15 * day_ms, 16 * day_ms];
    for (phase, phase_times) in [&times[..1], &times[1..]].into_iter().enumerate() {
        for d in 0..MANY {
            let rows: Vec<String> = phase_times
                .iter()
                .map(|&t| format!("({t}, {:?})", value(d, t)))
                .collect();
            sql(
                &mut client,
                &format!(
                    "INSERT INTO root.many.d{d}(time, s1) VALUES {}",
                    rows.join(", ")
                ),
            );
        }
        if phase == 0 {
            sql(&mut client, "FLUSH");
        }
    }
    let cells = |result: &ResultSet, row: usize| -> BTreeMap<String, f64> {
        result
            .column_names
            .iter()
            .zip(&result.rows[row])
            .filter_map(|(name, cell)| Some((name.clone(), number(cell.as_ref()?))))
            .collect()
    };
    let want = |d: i64, times: &[i64]| -> Vec<(String, f64)> {
        let values: Vec<f64> = times.iter().map(|&t| value(d, t)).collect();
        let path = format!("root.many.d{d}.s1");
        vec![
            (format!("count({path})"), values.len() as f64),
            (format!("sum({path})"), values.iter().sum()),
            (format!("first_value({path})"), values[0]),
            (format!("last_value({path})"), *values.last().unwrap()),
        ]
    };
    let functions = "count(s1), sum(s1), first_value(s1), last_value(s1)";
    let whole = sql(
        &mut client,
        &format!("SELECT {functions} FROM root.many.**"),
    );
    assert_eq!(whole.rows.len(), 1);
    let got = cells(&whole, 0);
    assert_eq!(got.len(), 4 * MANY as usize);
    for d in 0..MANY {
        for (name, expected) in want(d, &times) {
            assert_eq!(got.get(&name), Some(&expected), "{name}");
        }
    }
    // The newest point of each device is in the later partition (another region read).
    let last = sql(&mut client, "SELECT LAST s1 FROM root.many.**");
    let text = |cell: &Option<Value>| match cell {
        Some(Value::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("not text: {other:?}"),
    };
    let got: BTreeMap<String, (i64, String)> = last
        .rows
        .iter()
        .map(|row| {
            let Some(Value::Int64(time)) = &row[0] else {
                panic!("no time: {row:?}")
            };
            (text(&row[1]), (*time, text(&row[2])))
        })
        .collect();
    assert_eq!(got.len(), MANY as usize);
    for d in 0..MANY {
        let t = times[2];
        assert_eq!(
            got.get(&format!("root.many.d{d}.s1")),
            Some(&(t, format!("{:?}", value(d, t)))),
            "LAST of d{d}"
        );
    }
    // Two windows of 10 days: the first point, then the two later ones.
    let windowed = sql(
        &mut client,
        &format!(
            "SELECT {functions} FROM root.many.** GROUP BY ([0, {}), 10d)",
            20 * day_ms
        ),
    );
    assert_eq!(windowed.rows.len(), 2);
    for (row, window_times) in [&times[..1], &times[1..]].into_iter().enumerate() {
        let got = cells(&windowed, row);
        for d in 0..MANY {
            for (name, expected) in want(d, window_times) {
                assert_eq!(got.get(&name), Some(&expected), "window {row}: {name}");
            }
        }
    }
}

/// A cell of an answer, numbers compared to a relative 1e-9 (functions such as `sin` may
/// round differently); `Near` (only in expected rows) holds any number within its bound.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Num(f64),
    Near(f64, f64),
    Text(String),
    Bool(bool),
}

impl PartialEq for Cell {
    fn eq(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Num(a), Cell::Num(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (Cell::Num(a), Cell::Near(b, bound)) | (Cell::Near(b, bound), Cell::Num(a)) => {
                (a - b).abs() <= *bound
            }
            (Cell::Text(a), Cell::Text(b)) => a == b,
            (Cell::Bool(a), Cell::Bool(b)) => a == b,
            _ => false,
        }
    }
}

fn cell_of(value: &Option<Value>) -> Cell {
    match value {
        None => Cell::Null,
        Some(Value::Text(bytes)) => Cell::Text(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::Boolean(b)) => Cell::Bool(*b),
        Some(v) => Cell::Num(number(v)),
    }
}

fn num(value: Option<f64>) -> Cell {
    value.map_or(Cell::Null, Cell::Num)
}

fn text(value: Option<&String>) -> Cell {
    value.map_or(Cell::Null, |v| Cell::Text(v.clone()))
}

/// `statement`'s answer through `client` must have the columns `columns` (unchecked when
/// empty) and the rows `want`, cell by cell; the model's answer must not be empty.
fn expect(client: &mut BlockingClient, statement: &str, columns: &[&str], want: &[Vec<Cell>]) {
    assert!(!want.is_empty(), "{statement}: the model's answer is empty");
    let got = sql(client, statement);
    if !columns.is_empty() {
        assert_eq!(got.column_names, columns, "{statement}: columns");
    }
    let rows: Vec<Vec<Cell>> = got
        .rows
        .iter()
        .map(|row| row.iter().map(cell_of).collect())
        .collect();
    assert_eq!(
        rows.len(),
        want.len(),
        "{statement}: row count\n got {rows:?}\nwant {want:?}"
    );
    for (index, (got, want)) in rows.iter().zip(want).enumerate() {
        assert_eq!(got, want, "{statement}: row {index}");
    }
}

/// One row of a device in the model: its time and s1, s2, s3.
#[derive(Debug, Clone)]
struct Row {
    time: i64,
    s1: Option<f64>,
    s2: Option<f64>,
    s3: Option<String>,
}

/// Every row of `device` (a time where s1 or s2 has a point), in time order.
fn device_rows(model: &Model, texts: &Texts, device: &str) -> Vec<Row> {
    model_rows(model, device, &|_, _, _| true)
        .into_iter()
        .map(|(time, cells)| Row {
            time,
            s1: cells[0],
            s2: cells[1],
            s3: texts[device].get(&time).cloned(),
        })
        .collect()
}

/// Count of s1, sum of s2 (null without points) and max of s1 over `rows` inside `span`.
fn fold(rows: &[Row], inside: impl Fn(i64) -> bool) -> [Cell; 3] {
    let kept: Vec<&Row> = rows.iter().filter(|row| inside(row.time)).collect();
    let s1: Vec<f64> = kept.iter().filter_map(|row| row.s1).collect();
    let s2: Vec<f64> = kept.iter().filter_map(|row| row.s2).collect();
    [
        Cell::Num(s1.len() as f64),
        num((!s2.is_empty()).then(|| s2.iter().sum())),
        num(s1.iter().copied().reduce(f64::max)),
    ]
}

/// `FILL(PREVIOUS)` of one column of `cells` (time order): a null takes the last value above.
fn fill_previous(cells: &mut [Cell]) {
    let mut last = Cell::Null;
    for cell in cells.iter_mut() {
        if *cell == Cell::Null {
            *cell = last.clone();
        } else {
            last = cell.clone();
        }
    }
}

/// `FILL(LINEAR)` of a numeric column at `times`: a null between two values takes the value
/// on the line through them; nulls before the first or after the last value stay. `near`:
/// the tolerance of a filled value (an INT64 column's filled value is an integer, and
/// whether IoTDB truncates or rounds is not checked here).
fn fill_linear(times: &[i64], cells: &mut [Cell], near: Option<f64>) {
    let known: Vec<(usize, f64)> = cells
        .iter()
        .enumerate()
        .filter_map(|(i, cell)| match cell {
            Cell::Num(v) => Some((i, *v)),
            _ => None,
        })
        .collect();
    for pair in known.windows(2) {
        let ((i1, v1), (i2, v2)) = (pair[0], pair[1]);
        let (t1, t2) = (times[i1] as f64, times[i2] as f64);
        for i in i1 + 1..i2 {
            let v = v1 + (v2 - v1) * (times[i] as f64 - t1) / (t2 - t1);
            cells[i] = match near {
                Some(bound) => Cell::Near(v, bound),
                None => Cell::Num(v),
            };
        }
    }
}

/// Rows of `columns` (each a column of cells) with `times` in front.
fn zip_columns(times: &[i64], columns: &[Vec<Cell>]) -> Vec<Vec<Cell>> {
    times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            std::iter::once(Cell::Num(*t as f64))
                .chain(columns.iter().map(|column| column[i].clone()))
                .collect()
        })
        .collect()
}

/// Milliseconds from 1970-01-01 to the first day of month `month` (0-based) of 1970.
fn month_start_1970(month: usize) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    DAYS[..month].iter().sum::<i64>() * 24 * STEP_MS
}

const D0: &str = "root.mdl.d0";

/// Queries the database-level device `root.mdl.d0` every way IoTDB users do (text filters,
/// FILL, left-open, sliding and calendar windows, SLIMIT, LAST, COUNT(*), time aggregates,
/// HAVING, expressions, ORDER BY TIME DESC, ALIGN BY DEVICE, GROUP BY LEVEL, DELETE) through
/// `client`, each answer compared with the model cell by cell.
fn database_level_device_every_way(client: &mut BlockingClient, model: &Model, texts: &Texts) {
    let hour = STEP_MS;
    let end = ROWS * hour;
    let rows = device_rows(model, texts, D0);
    let path = |m: &str| format!("{D0}.{m}");
    let (p1, p2, p3) = (path("s1"), path("s2"), path("s3"));
    let raw = |rows: &[&Row], s1: bool, s2: bool, s3: bool| -> Vec<Vec<Cell>> {
        rows.iter()
            .map(|row| {
                let mut cells = vec![Cell::Num(row.time as f64)];
                if s1 {
                    cells.push(num(row.s1));
                }
                if s2 {
                    cells.push(num(row.s2));
                }
                if s3 {
                    cells.push(text(row.s3.as_ref()));
                }
                cells
            })
            .collect()
    };

    // LIKE and REGEXP on the TEXT series, alone, with a numeric filter, and IS NULL.
    let like_alpha: Vec<&Row> = rows
        .iter()
        .filter(|r| r.s3.as_ref().is_some_and(|w| w.starts_with("alpha")))
        .collect();
    expect(
        client,
        &format!("SELECT s3 FROM {D0} WHERE s3 LIKE 'alpha%'"),
        &["Time", &p3],
        &raw(&like_alpha, false, false, true),
    );
    let like_amma: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.s3.as_ref()
                .is_some_and(|w| w.len() >= 5 && w[1..].starts_with("amma"))
        })
        .collect();
    expect(
        client,
        &format!("SELECT s1, s3 FROM {D0} WHERE s3 LIKE '_amma%'"),
        &["Time", &p1, &p3],
        &raw(&like_amma, true, false, true),
    );
    let regexp: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.s3.as_ref().is_some_and(|w| {
                w.starts_with(|c: char| ('a'..='d').contains(&c)) && w.ends_with('a')
            })
        })
        .collect();
    expect(
        client,
        &format!("SELECT s1, s2 FROM {D0} WHERE s3 REGEXP '^[a-d].*a$'"),
        &["Time", &p1, &p2],
        &raw(&regexp, true, true, false),
    );
    let mixed: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.s3.as_ref().is_some_and(|w| w.ends_with('a')) && r.s1.is_some_and(|v| v > 0.0)
        })
        .collect();
    expect(
        client,
        &format!("SELECT s1, s3 FROM {D0} WHERE s3 LIKE '%a' AND s1 > 0"),
        &["Time", &p1, &p3],
        &raw(&mixed, true, false, true),
    );
    // Only times where a series the query reads (s2, s3) has a point are rows: a time
    // with s1 alone is not one.
    let no_text: Vec<&Row> = rows
        .iter()
        .filter(|r| r.s3.is_none() && r.s2.is_some() && r.time < 150 * hour)
        .collect();
    expect(
        client,
        &format!(
            "SELECT s2 FROM {D0} WHERE s3 IS NULL AND time < {}",
            150 * hour
        ),
        &["Time", &p2],
        &raw(&no_text, false, true, false),
    );

    // FILL on raw rows: PREVIOUS, LINEAR, constants (a DOUBLE constant leaves INT64 nulls).
    let (from, to) = (50 * hour, 150 * hour);
    let span: Vec<&Row> = rows
        .iter()
        .filter(|r| r.time >= from && r.time < to)
        .collect();
    let times: Vec<i64> = span.iter().map(|r| r.time).collect();
    let s1: Vec<Cell> = span.iter().map(|r| num(r.s1)).collect();
    let s2: Vec<Cell> = span.iter().map(|r| num(r.s2)).collect();
    let range = format!("time >= {from} AND time < {to}");
    let (mut a, mut b) = (s1.clone(), s2.clone());
    fill_previous(&mut a);
    fill_previous(&mut b);
    expect(
        client,
        &format!("SELECT s1, s2 FROM {D0} WHERE {range} FILL(PREVIOUS)"),
        &["Time", &p1, &p2],
        &zip_columns(&times, &[a, b]),
    );
    let (mut a, mut b) = (s1.clone(), s2.clone());
    fill_linear(&times, &mut a, None);
    fill_linear(&times, &mut b, Some(1.0));
    expect(
        client,
        &format!("SELECT s1, s2 FROM {D0} WHERE {range} FILL(LINEAR)"),
        &["Time", &p1, &p2],
        &zip_columns(&times, &[a, b]),
    );
    let constant = |cells: &[Cell], value: Option<f64>| -> Vec<Cell> {
        cells
            .iter()
            .map(|c| match (c, value) {
                (Cell::Null, Some(v)) => Cell::Num(v),
                (c, _) => c.clone(),
            })
            .collect()
    };
    expect(
        client,
        &format!("SELECT s1, s2 FROM {D0} WHERE {range} FILL(0)"),
        &["Time", &p1, &p2],
        &zip_columns(
            &times,
            &[constant(&s1, Some(0.0)), constant(&s2, Some(0.0))],
        ),
    );
    expect(
        client,
        &format!("SELECT s1, s2 FROM {D0} WHERE {range} FILL(2.5)"),
        &["Time", &p1, &p2],
        &zip_columns(&times, &[constant(&s1, Some(2.5)), s2.clone()]),
    );

    // FILL on windows of an hour (one point or none each): PREVIOUS and LINEAR.
    let windows_h: Vec<i64> = (0..60).map(|k| k * hour).collect();
    let max_s1: Vec<Cell> = windows_h
        .iter()
        .map(|t| fold(&rows, |x| x >= *t && x < t + hour)[2].clone())
        .collect();
    let sum_s2: Vec<Cell> = windows_h
        .iter()
        .map(|t| fold(&rows, |x| x >= *t && x < t + hour)[1].clone())
        .collect();
    let windowed = format!(
        "SELECT max_value(s1), sum(s2) FROM {D0} GROUP BY ([0, {}), 1h)",
        60 * hour
    );
    let columns = ["Time", &format!("max_value({p1})"), &format!("sum({p2})")];
    let (mut a, mut b) = (max_s1.clone(), sum_s2.clone());
    fill_previous(&mut a);
    fill_previous(&mut b);
    expect(
        client,
        &format!("{windowed} FILL(PREVIOUS)"),
        &columns,
        &zip_columns(&windows_h, &[a, b]),
    );
    let (mut a, mut b) = (max_s1, sum_s2);
    fill_linear(&windows_h, &mut a, None);
    fill_linear(&windows_h, &mut b, None);
    expect(
        client,
        &format!("{windowed} FILL(LINEAR)"),
        &columns,
        &zip_columns(&windows_h, &[a, b]),
    );

    // Windows: left-open (labelled by their right end), sliding with gaps, left-open
    // sliding, calendar months (clipped by the range, and empty months).
    let aggregates = format!("count(s1), sum(s2), max_value(s1) FROM {D0}");
    let aggregate_columns = [
        "Time",
        &format!("count({p1})"),
        &format!("sum({p2})"),
        &format!("max_value({p1})"),
    ];
    let left_open = |a: i64, b: i64, interval: i64, step: i64| -> Vec<Vec<Cell>> {
        (0..)
            .map(|k| a + k * step)
            .take_while(|start| *start < b)
            .map(|start| {
                let right = (start + interval).min(b);
                let mut row = vec![Cell::Num(right as f64)];
                row.extend(fold(&rows, |t| t > start && t <= right));
                row
            })
            .collect()
    };
    let closed_open = |spans: &[(i64, i64)]| -> Vec<Vec<Cell>> {
        spans
            .iter()
            .map(|(start, stop)| {
                let mut row = vec![Cell::Num(*start as f64)];
                row.extend(fold(&rows, |t| t >= *start && t < *stop));
                row
            })
            .collect()
    };
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ((0, {end}], 24h)"),
        &aggregate_columns,
        &left_open(0, end, 24 * hour, 24 * hour),
    );
    expect(
        client,
        &format!(
            "SELECT {aggregates} GROUP BY (({}, {}], 24h, 30h)",
            10 * hour,
            100 * hour
        ),
        &aggregate_columns,
        &left_open(10 * hour, 100 * hour, 24 * hour, 30 * hour),
    );
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ([0, {end}), 5h, 7h)"),
        &aggregate_columns,
        &closed_open(&windows(5 * hour, 7 * hour)),
    );
    // 1970-01-05T06:00 to 1970-01-12: one window, clipped at both ends of the data.
    let (a, b) = (4 * 24 * hour + 6 * hour, 11 * 24 * hour);
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ([{a}, {b}), 1mo)"),
        &aggregate_columns,
        &closed_open(&[(a, b)]),
    );
    // To 1970-03-31: windows start on the 5th of each month at 06:00.
    let b = month_start_1970(2) + 30 * 24 * hour;
    let starts: Vec<i64> = (0..3).map(|m| month_start_1970(m) + a).collect();
    let spans: Vec<(i64, i64)> = starts
        .iter()
        .enumerate()
        .map(|(m, s)| (*s, starts.get(m + 1).copied().unwrap_or(b)))
        .collect();
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ([{a}, {b}), 1mo)"),
        &aggregate_columns,
        &closed_open(&spans),
    );
    let want: Vec<Vec<Cell>> = spans
        .iter()
        .map(|(start, stop)| {
            let mut row = vec![Cell::Num(*stop as f64)];
            row.extend(fold(&rows, |t| t > *start && t <= *stop));
            row
        })
        .collect();
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY (({a}, {b}], 1mo)"),
        &aggregate_columns,
        &want,
    );

    // SLIMIT / SOFFSET: raw (a row only where a kept column has a value) and aggregates.
    let early: Vec<&Row> = rows.iter().filter(|r| r.time < 100 * hour).collect();
    let with_s2: Vec<&Row> = early.iter().copied().filter(|r| r.s2.is_some()).collect();
    expect(
        client,
        &format!(
            "SELECT s1, s2, s3 FROM {D0} WHERE time < {} SLIMIT 1 SOFFSET 1",
            100 * hour
        ),
        &["Time", &p2],
        &raw(&with_s2, false, true, false),
    );
    expect(
        client,
        &format!("SELECT * FROM {D0} WHERE time < {} SLIMIT 2", 100 * hour),
        &["Time", &p1, &p2],
        &raw(&early, true, true, false),
    );
    let count = |f: fn(&Row) -> bool| Cell::Num(rows.iter().filter(|r| f(r)).count() as f64);
    let counts = [
        count(|r| r.s1.is_some()),
        count(|r| r.s2.is_some()),
        count(|r| r.s3.is_some()),
    ];
    expect(
        client,
        &format!("SELECT count(*) FROM {D0} SLIMIT 2 SOFFSET 1"),
        &[&format!("count({p2})"), &format!("count({p3})")],
        &[counts[1..].to_vec()],
    );

    // COUNT(*), whole and in windows.
    expect(
        client,
        &format!("SELECT count(*) FROM {D0}"),
        &[
            &format!("count({p1})"),
            &format!("count({p2})"),
            &format!("count({p3})"),
        ],
        &[counts.to_vec()],
    );
    let want: Vec<Vec<Cell>> = windows(100 * hour, 100 * hour)
        .iter()
        .map(|(start, stop)| {
            let inside = |r: &&Row| r.time >= *start && r.time < *stop;
            vec![
                Cell::Num(*start as f64),
                Cell::Num(
                    rows.iter()
                        .filter(inside)
                        .filter(|r| r.s1.is_some())
                        .count() as f64,
                ),
                Cell::Num(
                    rows.iter()
                        .filter(inside)
                        .filter(|r| r.s2.is_some())
                        .count() as f64,
                ),
                Cell::Num(
                    rows.iter()
                        .filter(inside)
                        .filter(|r| r.s3.is_some())
                        .count() as f64,
                ),
            ]
        })
        .collect();
    expect(
        client,
        &format!("SELECT count(*) FROM {D0} GROUP BY ([0, {end}), 100h)"),
        &[],
        &want,
    );

    // MIN_TIME, MAX_TIME, EXTREME and the other aggregates over the whole device.
    let s1 = &model[D0]["s1"];
    let s2 = &model[D0]["s2"];
    let s3 = &texts[D0];
    let extreme = |values: Vec<f64>| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if min.abs() > max.abs() { min } else { max }
    };
    expect(
        client,
        &format!(
            "SELECT min_time(s2), max_time(s2), extreme(s2), extreme(s1), min_value(s1), \
             avg(s1), sum(s2), first_value(s3), last_value(s3), min_time(s3) FROM {D0}"
        ),
        &[],
        &[vec![
            Cell::Num(*s2.keys().next().unwrap() as f64),
            Cell::Num(*s2.keys().last().unwrap() as f64),
            Cell::Num(extreme(s2.values().copied().collect())),
            Cell::Num(extreme(s1.values().copied().collect())),
            Cell::Num(s1.values().copied().fold(f64::INFINITY, f64::min)),
            Cell::Num(s1.values().sum::<f64>() / s1.len() as f64),
            Cell::Num(s2.values().sum()),
            Cell::Text(s3.values().next().unwrap().clone()),
            Cell::Text(s3.values().last().unwrap().clone()),
            Cell::Num(*s3.keys().next().unwrap() as f64),
        ]],
    );

    // HAVING on windows.
    let want: Vec<Vec<Cell>> = closed_open(&windows(10 * hour, 10 * hour))
        .into_iter()
        .filter(|row| matches!(row[2], Cell::Num(sum) if sum > 300.0))
        .collect();
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ([0, {end}), 10h) HAVING sum(s2) > 300"),
        &aggregate_columns,
        &want,
    );

    // Expressions in the select list: arithmetic, functions, cast (within 1: truncated or
    // rounded), comparison.
    let first: Vec<&Row> = rows.iter().filter(|r| r.time < 120 * hour).collect();
    let both = |r: &Row, f: fn(f64, f64) -> f64| match (r.s1, r.s2) {
        (Some(a), Some(b)) => Cell::Num(f(a, b)),
        _ => Cell::Null,
    };
    let want: Vec<Vec<Cell>> = first
        .iter()
        .map(|r| {
            vec![
                Cell::Num(r.time as f64),
                both(r, |a, b| a + b),
                num(r.s1.map(|a| a * 2.0 - 1.0)),
                num(r.s2.map(|b| b / 4.0)),
                num(r.s2.map(|b| b % 7.0)),
                num(r.s1.map(|a| -a)),
                r.s1.map_or(Cell::Null, |a| Cell::Near(a, 1.0)),
                num(r.s2),
                num(r.s1.map(f64::sin)),
                num(r.s2.map(f64::cos)),
                num(r.s1.map(|a| a.abs().sqrt())),
                match (r.s1, r.s2) {
                    (Some(a), Some(b)) => Cell::Bool(a > b),
                    _ => Cell::Null,
                },
            ]
        })
        .collect();
    expect(
        client,
        &format!(
            "SELECT s1 + s2, s1 * 2 - 1, s2 / 4, s2 % 7, -s1, cast(s1 AS INT64), \
             cast(s2 AS DOUBLE), sin(s1), cos(s2), sqrt(abs(s1)), s1 > s2 FROM {D0} \
             WHERE time < {}",
            120 * hour
        ),
        &[],
        &want,
    );

    // ORDER BY TIME DESC: raw, with a text filter and LIMIT, and windows.
    let late: Vec<&Row> = rows.iter().rev().filter(|r| r.time >= 300 * hour).collect();
    expect(
        client,
        &format!(
            "SELECT s1, s2, s3 FROM {D0} WHERE time >= {} ORDER BY TIME DESC",
            300 * hour
        ),
        &["Time", &p1, &p2, &p3],
        &raw(&late, true, true, true),
    );
    let gammas: Vec<&Row> = rows
        .iter()
        .rev()
        .filter(|r| r.s3.as_ref().is_some_and(|w| w.starts_with("gamma")))
        .take(3)
        .collect();
    expect(
        client,
        &format!("SELECT s3 FROM {D0} WHERE s3 LIKE 'gamma%' ORDER BY TIME DESC LIMIT 3"),
        &["Time", &p3],
        &raw(&gammas, false, false, true),
    );
    let mut want = closed_open(&windows(50 * hour, 50 * hour));
    want.reverse();
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ([0, {end}), 50h) ORDER BY TIME DESC"),
        &aggregate_columns,
        &want,
    );

    // ALIGN BY DEVICE: raw, a value filter in descending order, aggregates.
    let device = Cell::Text(D0.to_string());
    let by_device = |cells: Vec<Vec<Cell>>| -> Vec<Vec<Cell>> {
        cells
            .into_iter()
            .map(|mut row| {
                row.insert(1, device.clone());
                row
            })
            .collect()
    };
    let head: Vec<&Row> = rows.iter().filter(|r| r.time < 50 * hour).collect();
    expect(
        client,
        &format!(
            "SELECT s1, s2, s3 FROM {D0} WHERE time < {} ALIGN BY DEVICE",
            50 * hour
        ),
        &["Time", "Device", "s1", "s2", "s3"],
        &by_device(raw(&head, true, true, true)),
    );
    let high: Vec<&Row> = rows
        .iter()
        .rev()
        .filter(|r| r.s2.is_some_and(|v| v > 90.0))
        .collect();
    expect(
        client,
        &format!("SELECT * FROM {D0} WHERE s2 > 90 ORDER BY TIME DESC ALIGN BY DEVICE"),
        &["Time", "Device", "s1", "s2", "s3"],
        &by_device(raw(&high, true, true, true)),
    );
    expect(
        client,
        &format!("SELECT {aggregates} GROUP BY ([0, {end}), 100h) ALIGN BY DEVICE"),
        &["Time", "Device", "count(s1)", "sum(s2)", "max_value(s1)"],
        &by_device(closed_open(&windows(100 * hour, 100 * hour))),
    );

    // GROUP BY LEVEL with the database-level device: alone at level 1 (root.mdl), with the
    // others at level 0, one column per device at level 2, in windows.
    let others: Vec<Vec<Row>> = DEVICES[1..]
        .iter()
        .map(|d| device_rows(model, texts, d))
        .collect();
    let all_rows: Vec<Row> = rows
        .iter()
        .chain(others.iter().flatten())
        .cloned()
        .collect();
    let whole = |rows: &[Row]| fold(rows, |_| true);
    let (mine, theirs) = (
        whole(&rows),
        whole(&others.iter().flatten().cloned().collect::<Vec<_>>()),
    );
    expect(
        client,
        "SELECT count(s1), sum(s2), max_value(s1) FROM root.** GROUP BY LEVEL = 1",
        &[
            "count(root.mdl.*.s1)",
            "count(root.mdl2.*.s1)",
            "sum(root.mdl.*.s2)",
            "sum(root.mdl2.*.s2)",
            "max_value(root.mdl.*.s1)",
            "max_value(root.mdl2.*.s1)",
        ],
        &[vec![
            mine[0].clone(),
            theirs[0].clone(),
            mine[1].clone(),
            theirs[1].clone(),
            mine[2].clone(),
            theirs[2].clone(),
        ]],
    );
    let texts_total = texts.values().map(BTreeMap::len).sum::<usize>();
    expect(
        client,
        "SELECT count(s1), count(s3) FROM root.** GROUP BY LEVEL = 0",
        &["count(root.*.*.s1)", "count(root.*.*.s3)"],
        &[vec![
            whole(&all_rows)[0].clone(),
            Cell::Num(texts_total as f64),
        ]],
    );
    let spans = windows(200 * hour, 200 * hour);
    let want: Vec<Vec<Cell>> = spans
        .iter()
        .map(|(start, stop)| {
            let mut row = vec![Cell::Num(*start as f64)];
            row.push(fold(&rows, |t| t >= *start && t < *stop)[0].clone());
            for other in &others {
                row.push(fold(other, |t| t >= *start && t < *stop)[0].clone());
            }
            row
        })
        .collect();
    expect(
        client,
        &format!("SELECT count(s1) FROM root.** GROUP BY ([0, {end}), 200h), LEVEL = 2"),
        &[
            "Time",
            "count(root.*.d0.s1)",
            "count(root.*.d1.s1)",
            "count(root.*.d2.s1)",
        ],
        &want,
    );

    // DELETE, then the same shapes again: a range of s1, then the newest hours of every
    // series (so LAST moves back).
    let last_answer = |client: &mut BlockingClient, statement: &str| {
        let result = sql(client, statement);
        result
            .rows
            .iter()
            .map(|row| row.iter().map(cell_of).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let last_model =
        |s1: &BTreeMap<i64, f64>, s2: &BTreeMap<i64, f64>, s3: &BTreeMap<i64, String>| {
            let mut want = Vec::new();
            for (name, entry, data_type) in [
                (
                    &p1,
                    s1.iter().next_back().map(|(t, v)| (*t, format!("{v:?}"))),
                    "DOUBLE",
                ),
                (
                    &p2,
                    s2.iter()
                        .next_back()
                        .map(|(t, v)| (*t, format!("{}", *v as i64))),
                    "INT64",
                ),
                (
                    &p3,
                    s3.iter().next_back().map(|(t, v)| (*t, v.clone())),
                    "TEXT",
                ),
            ] {
                let Some((time, value)) = entry else { continue };
                want.push(vec![
                    Cell::Num(time as f64),
                    Cell::Text(name.clone()),
                    Cell::Text(value),
                    Cell::Text(data_type.to_string()),
                ]);
            }
            want
        };
    // LAST: compared as a set of rows (their order is another concern).
    let sorted = |mut rows: Vec<Vec<Cell>>| {
        rows.sort_by_key(|row| format!("{:?}", row[1]));
        rows
    };
    assert_eq!(
        sorted(last_answer(
            client,
            &format!("SELECT LAST s1, s2, s3 FROM {D0}")
        )),
        sorted(last_model(s1, s2, s3)),
        "SELECT LAST"
    );
    // LAST with IoTDB's time filter (`time >= t`): a series without a point from t on has
    // no row. The times from the newest hours, so the series differ.
    for after in [395 * hour, 398 * hour, 399 * hour] {
        let from = |m: &BTreeMap<i64, f64>| -> BTreeMap<i64, f64> {
            m.range(after..).map(|(t, v)| (*t, *v)).collect()
        };
        let from_text: BTreeMap<i64, String> =
            s3.range(after..).map(|(t, v)| (*t, v.clone())).collect();
        assert_eq!(
            sorted(last_answer(
                client,
                &format!("SELECT LAST * FROM {D0} WHERE time >= {after}")
            )),
            sorted(last_model(&from(s1), &from(s2), &from_text)),
            "SELECT LAST with time >= {after}"
        );
    }

    sql(
        client,
        &format!(
            "DELETE FROM {D0}.s1 WHERE time >= {} AND time <= {}",
            100 * hour,
            200 * hour
        ),
    );
    let mut s1_left = s1.clone();
    s1_left.retain(|t, _| *t < 100 * hour || *t > 200 * hour);
    let kept: Vec<Row> = rows
        .iter()
        .filter(|r| r.time >= 90 * hour && r.time < 210 * hour)
        .map(|r| Row {
            s1: r.s1.filter(|_| s1_left.contains_key(&r.time)),
            ..r.clone()
        })
        .filter(|r| r.s1.is_some() || r.s2.is_some())
        .collect();
    let kept_refs: Vec<&Row> = kept.iter().collect();
    expect(
        client,
        &format!(
            "SELECT s1, s2 FROM {D0} WHERE time >= {} AND time < {}",
            90 * hour,
            210 * hour
        ),
        &["Time", &p1, &p2],
        &raw(&kept_refs, true, true, false),
    );
    expect(
        client,
        &format!("SELECT count(s1), sum(s1) FROM {D0}"),
        &[&format!("count({p1})"), &format!("sum({p1})")],
        &[vec![
            Cell::Num(s1_left.len() as f64),
            Cell::Num(s1_left.values().sum()),
        ]],
    );
    let newest = 390 * hour;
    sql(client, &format!("DELETE FROM {D0}.* WHERE time > {newest}"));
    let cut = |m: &BTreeMap<i64, f64>| -> BTreeMap<i64, f64> {
        m.range(..=newest).map(|(t, v)| (*t, *v)).collect()
    };
    let cut_text: BTreeMap<i64, String> =
        s3.range(..=newest).map(|(t, v)| (*t, v.clone())).collect();
    assert_eq!(
        sorted(last_answer(
            client,
            &format!("SELECT LAST s1, s2, s3 FROM {D0}")
        )),
        sorted(last_model(&cut(&s1_left), &cut(s2), &cut_text)),
        "SELECT LAST after DELETE"
    );
    let tail: Vec<&Row> = rows
        .iter()
        .filter(|r| r.time >= 380 * hour && r.time <= newest)
        .collect();
    expect(
        client,
        &format!("SELECT s1, s2, s3 FROM {D0} WHERE time >= {}", 380 * hour),
        &["Time", &p1, &p2, &p3],
        &raw(&tail, true, true, true),
    );
}

#[test]
fn database_level_device_is_queried_every_way_and_matches_the_model() {
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    let mut client = server.client().expect("client");
    let (model, texts) = load(&mut client);
    database_level_device_every_way(&mut client, &model, &texts);
}

/// The same queries through a DataNode of a 1C3D cluster that holds no region of the
/// database-level device's database: every answer is read from the other DataNodes.
#[test]
fn database_level_device_is_queried_every_way_through_a_data_node_without_it() {
    let binary = env!("CARGO_BIN_EXE_iotdb-server-under-test");
    // One data region group per database, so some DataNode holds none of root.mdl.d0.
    let cluster = iotdb_tests::TestCluster::start_configured(
        binary,
        1,
        3,
        1,
        &[
            ("data_region_group_extension_policy", "CUSTOM"),
            ("default_data_region_group_num_per_database", "1"),
        ],
    )
    .expect("start 1C3D");
    cluster
        .wait_for_cluster(
            0,
            std::time::Duration::from_secs(30),
            "every node Running",
            |rows| rows.len() == 4 && rows.iter().all(|row| row.status == "Running"),
        )
        .expect("the cluster runs");
    let mut writer = cluster.client(0).expect("connect to DataNode 1");
    let (model, texts) = load(&mut writer);
    let regions = sql(&mut writer, "SHOW DATA REGIONS");
    let holders: Vec<u32> = iotdb_tests::cluster::text_rows(&regions)
        .iter()
        .filter(|row| row["Database"] == D0)
        .map(|row| row["DataNodeId"].parse().expect("a node id"))
        .collect();
    assert!(!holders.is_empty(), "no region of {D0}");
    let reader = (0..3)
        .find(|&i| {
            let id = cluster.client(i).unwrap().accepted().data_node_id;
            !holders.contains(&id)
        })
        .expect("a DataNode without a region of the database");
    let mut client = cluster.client(reader).expect("connect to the reader");
    database_level_device_every_way(&mut client, &model, &texts);
}
