//! The metrics endpoint of a real server: every line of `/metrics` parses as Prometheus
//! text (a strict parser below: `# HELP`, `# TYPE`, `name{labels} value`, each sample
//! under its family's TYPE), and the counters match what the test did — points written,
//! write and query requests, an error by its status code, WAL fdatasyncs, flushed bytes —
//! while the gauges show the node running and its region replicas, and a compaction
//! counts its bytes. In a 1C3D cluster the ConfigNode reports its status and cluster
//! gauges that agree with `SHOW CLUSTER` and `SHOW REGIONS`, the DataNodes their
//! SchemaRegion replicas, and the leaders of replicated region groups their lag.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use iotdb_net::{CreateDatabase, DataType, RawQuery, SeriesSelection, Value, WireTablet};
use iotdb_tests::cluster::text_rows;
use iotdb_tests::server::{free_port, next_loopback_host};
use iotdb_tests::{TestCluster, TestServer, server_options};

/// Rows per tablet and tablets written: 3 tablets of 100 rows and 2 columns.
const ROWS: i64 = 100;
const TABLETS: usize = 3;
const COLUMNS: usize = 2;

/// One sample's identity: its name and its labels, sorted.
type Key = (String, BTreeMap<String, String>);

/// A scrape, parsed: every sample's value, and every family's type.
struct Scrape {
    samples: HashMap<Key, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    fn counter(&self, name: &str) -> f64 {
        assert_eq!(
            self.types.get(name).map(String::as_str),
            Some("counter"),
            "{name}"
        );
        self.value(name, &[])
            .unwrap_or_else(|| panic!("{name} missing"))
    }
}

/// Parses Prometheus text format 0.0.4 strictly; panics naming the first bad line.
fn parse(text: &str) -> Scrape {
    let mut samples = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut family: Option<(String, String)> = None;
    assert!(text.ends_with('\n'), "the text must end with a newline");
    for (number, line) in text.lines().enumerate() {
        let bad = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", number + 1) };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest
                .split_once(' ')
                .unwrap_or_else(|| bad("HELP without text"));
            if !valid_name(name) || !helped.insert(name.to_string()) {
                bad("bad or repeated HELP name");
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| bad("TYPE without type"));
            if !valid_name(name) || types.contains_key(name) {
                bad("bad or repeated TYPE name");
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                bad("unknown type");
            }
            if !helped.contains(name) {
                bad("TYPE before its HELP");
            }
            types.insert(name.to_string(), kind.to_string());
            family = Some((name.to_string(), kind.to_string()));
        } else if line.starts_with('#') || line.is_empty() {
            bad("unexpected comment or blank line");
        } else {
            let (key, value) = parse_sample(line).unwrap_or_else(|why| bad(&why));
            let Some((family, kind)) = &family else {
                bad("sample before any TYPE")
            };
            let belongs = key.0 == *family
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| key.0 == format!("{family}{suffix}")));
            if !belongs {
                bad("sample outside its family");
            }
            if kind == "counter" && (value.is_nan() || value < 0.0) {
                bad("a counter below zero or not a number");
            }
            if samples.insert(key, value).is_some() {
                bad("repeated sample");
            }
        }
    }
    Scrape { samples, types }
}

/// `name{a="x",b="y"} value` (labels optional; `\\`, `\"`, `\n` escapes in values).
fn parse_sample(line: &str) -> Result<(Key, f64), String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "no value".to_string())?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inner.split_once("=\"").ok_or("label without =\"")?;
            if !valid_name(label) {
                return Err("bad label name".into());
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => return Err("bad escape".into()),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            };
            if labels.insert(label.to_string(), value).is_some() {
                return Err("repeated label".into());
            }
            inner = &after[end + 1..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(((name.to_string(), labels), value))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, written apart from the server's check on purpose.
fn valid_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && name.chars().all(allowed)
}

/// `GET path` over a fresh connection: (status line, content type, body).
fn get(address: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a header block");
    let status = head.lines().next().unwrap_or_default().to_string();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_string();
    (status, content_type, body.to_string())
}

fn scrape(address: SocketAddr) -> Scrape {
    let (status, content_type, body) = get(address, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&body)
}

/// Scrapes until `check` holds (gauges are published once a second), or panics after 10 s.
fn scrape_until(address: SocketAddr, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = scrape(address);
        if check(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "{what} never held");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The samples of family `name` as (value of `label`, value of `status`) → value.
fn by_status(scrape: &Scrape, name: &str, label: &str) -> BTreeMap<(String, String), f64> {
    scrape
        .samples
        .iter()
        .filter(|((family, _), _)| family == name)
        .map(|((_, labels), value)| ((labels[label].clone(), labels["status"].clone()), *value))
        .collect()
}

/// Rows of an admin view counted by (`column`, `Status`).
fn tally(rows: &[BTreeMap<String, String>], column: &str) -> BTreeMap<(String, String), f64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts
            .entry((row[column].clone(), row["Status"].clone()))
            .or_default() += 1.0;
    }
    counts
}

fn tablet(device: &str, data_type: DataType) -> WireTablet {
    let mut tablet = WireTablet::new(device, &[("s1", data_type), ("s2", data_type)]);
    for t in 0..ROWS {
        let value = match data_type {
            DataType::Double => Value::Double(t as f64),
            _ => Value::Int64(t),
        };
        tablet
            .push_row(t, &[Some(value.clone()), Some(value)])
            .expect("row");
    }
    tablet
}

#[test]
fn standalone_metrics_count_what_was_written() {
    let ip: Ipv4Addr = next_loopback_host();
    let port = free_port(ip).unwrap();
    let options = server_options!()
        .cores(2)
        .set("dn_metric_reporter_list", "PROMETHEUS")
        .set("dn_metric_prometheus_reporter_port", port)
        .set("compaction_cold_delay_in_ms", 200);
    let server = TestServer::start_on(ip, options.clone()).unwrap();
    let metrics = SocketAddr::new(ip.into(), port);

    let before = scrape(metrics);
    assert_eq!(before.counter("iotdb_points_written_total"), 0.0);
    assert_eq!(
        before.value(
            "iotdb_node_status",
            &[("role", "DataNode"), ("status", "Running")]
        ),
        Some(1.0)
    );
    assert_eq!(
        before.value(
            "iotdb_node_status",
            &[("role", "ConfigNode"), ("status", "Running")]
        ),
        Some(1.0),
        "a standalone server reports both roles"
    );

    let mut client = server.client().unwrap();
    client
        .create_database(CreateDatabase {
            name: "root.m".into(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .unwrap();
    for i in 0..TABLETS {
        client
            .insert_tablets(&[tablet(&format!("root.m.d{i}"), DataType::Int64)])
            .unwrap();
    }
    // A deliberately failing write: DOUBLE points for INT64 series.
    let error = client
        .insert_tablets(&[tablet("root.m.d0", DataType::Double)])
        .unwrap_err();
    let code = error.status_code().expect("a status").code().to_string();
    client
        .query_raw(RawQuery {
            series: vec![SeriesSelection {
                device: "root.m.d0".into(),
                measurements: vec!["s1".into()],
            }],
            start_time: i64::MIN,
            end_time: i64::MAX,
            limit: None,
            offset: 0,
        })
        .unwrap();

    let written = scrape_until(
        metrics,
        "region replicas and memtable bytes published",
        |s| {
            s.value("iotdb_region_replicas", &[("kind", "DataRegion")])
                .is_some_and(|v| v >= 1.0)
                && s.value("iotdb_memtable_bytes", &[])
                    .is_some_and(|v| v > 0.0)
        },
    );
    assert_eq!(
        written.counter("iotdb_points_written_total"),
        (TABLETS * ROWS as usize * COLUMNS) as f64,
        "the failed write adds no points"
    );
    assert_eq!(
        written.counter("iotdb_write_requests_total"),
        (TABLETS + 1) as f64
    );
    assert_eq!(written.counter("iotdb_query_requests_total"), 1.0);
    assert_eq!(
        written.value("iotdb_request_errors_total", &[("status", code.as_str())]),
        Some(1.0),
        "the failed write is counted under its status {code}"
    );
    assert_eq!(
        written
            .types
            .get("iotdb_wal_fsync_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    let fsyncs = written.value("iotdb_wal_fsync_seconds_count", &[]).unwrap();
    assert!(
        fsyncs > 0.0,
        "sync WAL mode fdatasyncs every acknowledged write"
    );
    assert_eq!(
        written.value("iotdb_wal_fsync_seconds_bucket", &[("le", "+Inf")]),
        Some(fsyncs)
    );
    assert!(written.value("iotdb_wal_fsync_seconds_sum", &[]).unwrap() > 0.0);
    assert_eq!(written.counter("iotdb_flush_bytes_total"), 0.0);

    client.flush(Vec::new()).unwrap();
    let flushed = scrape(metrics);
    assert!(
        flushed.counter("iotdb_flush_bytes_total") > 0.0,
        "a FLUSH writes sealed files"
    );
    assert_eq!(
        flushed.counter("iotdb_points_written_total"),
        written.counter("iotdb_points_written_total")
    );

    // The same points again go to an unsequence file; with the sequence file of the first
    // flush the partition is compacted.
    assert_eq!(flushed.counter("iotdb_compaction_bytes_total"), 0.0);
    client
        .insert_tablets(&[tablet("root.m.d0", DataType::Int64)])
        .unwrap();
    client.flush(Vec::new()).unwrap();
    scrape_until(metrics, "a compaction counted its bytes", |s| {
        s.counter("iotdb_compaction_bytes_total") > 0.0
    });

    let (status, _, _) = get(metrics, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    // A second server on the same host and metrics port fails to start, naming the key.
    let refused = TestServer::start_on(ip, options.kernel_port())
        .err()
        .expect("a taken metrics port is a startup error")
        .to_string();
    assert!(
        refused.contains("dn_metric_prometheus_reporter_port"),
        "{refused}"
    );
}

/// A 1C3D cluster with replication factor 3 and metrics on every node (the default ports:
/// every node has a loopback host of its own): the ConfigNode reports itself Running, and
/// after a write the DataNodes report a replication lag gauge for every data region group
/// they lead, and together for every group written.
#[test]
fn cluster_nodes_report_status_and_replication_lag() {
    let cluster = TestCluster::start_configured(
        env!("CARGO_BIN_EXE_iotdb-server-under-test"),
        1,
        3,
        1,
        &[
            ("data_replication_factor", "3"),
            ("cn_metric_reporter_list", "PROMETHEUS"),
            ("dn_metric_reporter_list", "PROMETHEUS"),
        ],
    )
    .unwrap();
    let metrics_of = |server: &TestServer, port: u16| SocketAddr::new(server.address().ip(), port);
    let config_node = scrape(metrics_of(&cluster.config_nodes[0], 9091));
    assert_eq!(
        config_node.value(
            "iotdb_node_status",
            &[("role", "ConfigNode"), ("status", "Running")]
        ),
        Some(1.0)
    );
    assert!(
        config_node
            .value("iotdb_points_written_total", &[])
            .is_none(),
        "a ConfigNode serves no DataNode metrics"
    );

    let mut client = cluster.client(0).unwrap();
    client
        .create_database(CreateDatabase {
            name: "root.r".into(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .unwrap();
    client
        .insert_tablets(&[tablet("root.r.d0", DataType::Int64)])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut led = 0;
        let mut points = 0.0;
        for node in &cluster.data_nodes {
            let scrape = scrape(metrics_of(node, 9092));
            assert_eq!(
                scrape.value(
                    "iotdb_node_status",
                    &[("role", "DataNode"), ("status", "Running")]
                ),
                Some(1.0)
            );
            assert_eq!(
                scrape
                    .types
                    .get("iotdb_replication_lag_entries")
                    .map(String::as_str),
                Some("gauge")
            );
            led += scrape
                .samples
                .keys()
                .filter(|(name, _)| name == "iotdb_replication_lag_entries")
                .count();
            points += scrape.counter("iotdb_points_written_total");
        }
        assert_eq!(
            points,
            (ROWS as usize * COLUMNS) as f64,
            "counted once, where received"
        );
        if led >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no DataNode reported a led group's lag"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The ConfigNode's cluster gauges agree with SHOW CLUSTER and SHOW REGIONS, and the
    // DataNodes' SchemaRegion replicas with SHOW REGIONS (the write created a schema
    // region).
    let cluster_rows = text_rows(&client.execute_sql("SHOW CLUSTER").unwrap());
    let region_rows = text_rows(&client.execute_sql("SHOW REGIONS").unwrap());
    let nodes = tally(&cluster_rows, "NodeType");
    assert_eq!(nodes[&("DataNode".into(), "Running".into())], 3.0);
    let replicas = tally(&region_rows, "Type");
    let mut groups: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for row in &region_rows {
        groups
            .entry(row["Type"].clone())
            .or_default()
            .insert(row["RegionId"].clone());
    }
    let config_node = scrape_until(
        metrics_of(&cluster.config_nodes[0], 9091),
        "cluster gauges as SHOW CLUSTER and SHOW REGIONS",
        |s| {
            by_status(s, "iotdb_cluster_nodes", "type") == nodes
                && by_status(s, "iotdb_cluster_region_replicas", "kind") == replicas
        },
    );
    let running_groups: BTreeMap<(String, String), f64> = groups
        .iter()
        .map(|(kind, ids)| ((kind.clone(), "Running".to_string()), ids.len() as f64))
        .collect();
    assert_eq!(
        by_status(&config_node, "iotdb_cluster_region_groups", "kind"),
        running_groups
    );
    let schema_replicas = replicas
        .iter()
        .filter(|((kind, _), _)| kind == "SchemaRegion")
        .map(|(_, count)| count)
        .sum::<f64>();
    assert!(schema_replicas >= 1.0, "{region_rows:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: f64 = cluster
            .data_nodes
            .iter()
            .map(|node| {
                scrape(metrics_of(node, 9092))
                    .value("iotdb_region_replicas", &[("kind", "SchemaRegion")])
                    .unwrap_or(0.0)
            })
            .sum();
        if held == schema_replicas {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "DataNodes report {held} SchemaRegion replicas, SHOW REGIONS lists {schema_replicas}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
