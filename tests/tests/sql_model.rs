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

fn load(client: &mut BlockingClient) -> Model {
    sql(client, "CREATE DATABASE root.mdl.d0");
    sql(client, "CREATE DATABASE root.mdl2");
    let mut model: Model = BTreeMap::new();
    let mut random = Lcg(7);
    for device in DEVICES {
        sql(
            client,
            &format!("CREATE TIMESERIES {device}.s1 WITH DATATYPE=DOUBLE, ENCODING=GORILLA"),
        );
        sql(
            client,
            &format!("CREATE TIMESERIES {device}.s2 WITH DATATYPE=INT64, ENCODING=TS_2DIFF"),
        );
        let series = model.entry(device.to_string()).or_default();
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
            let text = |v: Option<String>| v.unwrap_or_else(|| "null".to_string());
            values.push(format!(
                "({time}, {}, {})",
                text(s1.map(|v| format!("{v:?}"))),
                text(s2.map(|v| v.to_string()))
            ));
        }
        // Half the rows sealed in files, half in memtables.
        let (sealed, fresh) = values.split_at(values.len() / 2);
        for part in [sealed, fresh] {
            sql(
                client,
                &format!(
                    "INSERT INTO {device}(time, s1, s2) VALUES {}",
                    part.join(", ")
                ),
            );
            if part.as_ptr() == sealed.as_ptr() {
                sql(client, "FLUSH");
            }
        }
    }
    model
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
    let model = load(&mut client);
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
    let model = load(&mut client);
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
