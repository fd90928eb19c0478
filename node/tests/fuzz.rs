//! Fuzzing the node's decoders: the ConfigNode/schema journal (snapshot and log files),
//! the SQL parser, the Thrift input protocols (binary and compact) with the generated
//! request structs they feed, and the Thrift tablet and record conversions. Inputs are
//! arbitrary bytes (or text) and mutations of valid encodings.
//!
//! Every decoder must return a typed error or a value, never panic, and never allocate
//! much more than it was given: the check watches the process's peak virtual size
//! (`VmPeak`), where a `Vec::with_capacity` of a declared gigabyte shows even if its pages
//! are never touched. The decoders run one after another in a single test so that no
//! other test's allocations blur the figure.
//!
//! `FUZZ_CASES=N` sets the cases per decoder (default [`CASES_DEFAULT`], sized for CI).

use std::path::Path;

use iotdb_node::confignode::journal::Journal;
use iotdb_node::confignode::{ConfigCommand, ConfigState};
use iotdb_node::rpc::thrift::generated::{
    TSExecuteStatementReq, TSInsertRecordReq, TSInsertTabletReq, TSOpenSessionReq,
    TSProtocolVersion,
};
use iotdb_node::rpc::thrift::input::{FrameInput, ThriftProtocol};
use iotdb_node::rpc::thrift::insert::{ThriftTablet, record, tablet, tablet_view};
use iotdb_node::sql::{parse, parse_script};
use proptest::prelude::*;

#[path = "../../testing/fuzz_harness.rs"]
mod fuzz_harness;
use fuzz_harness::{Endian, arbitrary_bytes, cases, fuzz, mutated_in};
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TInputProtocol, TMessageIdentifier,
    TMessageType, TOutputProtocol, TSerializable, TType,
};

/// Cases per decoder without `FUZZ_CASES`; the journal, which writes files per case,
/// takes a fifth of it.
const CASES_DEFAULT: u32 = 1000;
/// Node's inputs are spoiled with big-endian lying lengths (Thrift's order).
fn mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    mutated_in(samples, Endian::Big)
}

// ---- journal ----

/// A journal directory with a snapshot and records, as the ConfigNode leaves it.
fn sample_journal(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let (mut journal, _) =
        Journal::open::<serde_json::Value, serde_json::Value>(dir, "fuzz").expect("open");
    journal
        .append(&serde_json::json!({"CreateDatabase": {"name": "root.sg"}}))
        .expect("append");
    journal
        .write_snapshot(&serde_json::json!({"databases": ["root.sg"], "next_id": 3}))
        .expect("snapshot");
    for index in 0..3 {
        journal
            .append(&serde_json::json!({"record": index, "text": "x".repeat(index * 10)}))
            .expect("append");
    }
    drop(journal);
    (
        std::fs::read(dir.join("fuzz.snapshot")).expect("snapshot file"),
        std::fs::read(dir.join("fuzz.log")).expect("log file"),
    )
}

fn open_journal(dir: &Path, snapshot: &[u8], log: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("a directory");
    std::fs::write(dir.join("fuzz.snapshot"), snapshot).expect("write");
    std::fs::write(dir.join("fuzz.log"), log).expect("write");
    let _ = Journal::open::<serde_json::Value, serde_json::Value>(dir, "fuzz");
    let _ = Journal::open::<ConfigState, ConfigCommand>(dir, "fuzz");
}

// ---- thrift ----

fn thrift_message(
    protocol: ThriftProtocol,
    name: &str,
    args: &dyn Fn(&mut dyn TOutputProtocol),
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let write = |output: &mut dyn TOutputProtocol| {
            output
                .write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, 1))
                .expect("message begin");
            args(output);
            output.write_message_end().expect("message end");
            output.flush().expect("flush");
        };
        match protocol {
            ThriftProtocol::Binary => write(&mut TBinaryOutputProtocol::new(&mut out, true)),
            ThriftProtocol::Compact => write(&mut TCompactOutputProtocol::new(&mut out)),
        }
    }
    out
}

/// Writes `value` as field 1 of an arguments struct, as a generated client does.
fn as_args<T: TSerializable>(value: &T, output: &mut dyn TOutputProtocol) {
    use thrift::protocol::{TFieldIdentifier, TStructIdentifier};
    output
        .write_struct_begin(&TStructIdentifier::new("args"))
        .expect("struct");
    output
        .write_field_begin(&TFieldIdentifier::new("req", TType::Struct, 1))
        .expect("field");
    value.write_to_out_protocol(output).expect("value");
    output.write_field_end().expect("field end");
    output.write_field_stop().expect("stop");
    output.write_struct_end().expect("struct end");
}

fn sample_insert_tablet() -> TSInsertTabletReq {
    let rows = 3i32;
    let mut values = Vec::new();
    for row in 0..rows {
        values.extend_from_slice(&i64::from(row * 10).to_be_bytes());
    }
    for row in 0..rows {
        values.extend_from_slice(&(row as f64 * 0.5).to_be_bytes());
    }
    let mut timestamps = Vec::new();
    for row in 0..rows {
        timestamps.extend_from_slice(&i64::from(row).to_be_bytes());
    }
    TSInsertTabletReq::new(
        1,
        "root.sg.d1".to_owned(),
        vec!["s1".to_owned(), "s2".to_owned()],
        values,
        timestamps,
        vec![2, 4],
        rows,
        false,
        None,
        None,
        None,
        None,
        None,
    )
}

fn thrift_samples(protocol: ThriftProtocol) -> Vec<Vec<u8>> {
    let open = TSOpenSessionReq::new(
        TSProtocolVersion(2),
        "UTC".to_owned(),
        "root".to_owned(),
        Some("root".to_owned()),
        Some(
            [("sql_dialect".to_owned(), "tree".to_owned())]
                .into_iter()
                .collect(),
        ),
    );
    let statement = TSExecuteStatementReq::new(
        1,
        "SELECT s1 FROM root.sg.d1".to_owned(),
        2,
        Some(5000),
        None,
        None,
        None,
    );
    let insert = sample_insert_tablet();
    let record = TSInsertRecordReq::new(
        1,
        "root.sg.d1".to_owned(),
        vec!["s1".to_owned()],
        {
            let mut values = vec![2u8];
            values.extend_from_slice(&7i64.to_be_bytes());
            values
        },
        5,
        None,
        None,
        None,
    );
    vec![
        thrift_message(protocol, "openSession", &|output| as_args(&open, output)),
        thrift_message(protocol, "executeStatementV2", &|output| {
            as_args(&statement, output)
        }),
        thrift_message(protocol, "insertTablet", &|output| as_args(&insert, output)),
        thrift_message(protocol, "insertRecord", &|output| as_args(&record, output)),
    ]
}

/// Reads a message and its arguments as each request type, and as a skipped struct.
fn read_thrift(protocol: ThriftProtocol, bytes: &[u8]) {
    fn read_args<T: TSerializable + std::fmt::Debug>(protocol: ThriftProtocol, bytes: &[u8]) {
        let mut input = FrameInput::new(protocol, bytes);
        if input.read_message_begin().is_err() || input.read_struct_begin().is_err() {
            return;
        }
        if let Ok(field) = input.read_field_begin()
            && field.field_type == TType::Struct
            && let Ok(request) = T::read_from_in_protocol(&mut input)
        {
            let _ = format!("{request:?}").len();
        }
    }
    read_args::<TSOpenSessionReq>(protocol, bytes);
    read_args::<TSExecuteStatementReq>(protocol, bytes);
    read_args::<TSInsertRecordReq>(protocol, bytes);
    read_args::<TSInsertTabletReq>(protocol, bytes);
    let mut input = FrameInput::new(protocol, bytes);
    if input.read_message_begin().is_ok() {
        let _ = input.skip(TType::Struct);
    }
}

fn convert_tablet(request: &TSInsertTabletReq) {
    for is_aligned in [false, true] {
        let thrift = ThriftTablet::of_request(request, is_aligned);
        let _ = tablet(&thrift);
        let _ = tablet_view(&thrift);
    }
}

#[test]
fn node_decoders_survive_arbitrary_and_mutated_input() {
    let cases = cases(CASES_DEFAULT);
    let dir = tempfile::tempdir().expect("a temporary directory");

    // The journal: a snapshot file and a log file, each damaged or arbitrary.
    let (snapshot, log) = sample_journal(&dir.path().join("sample"));
    let journal_dir = dir.path().join("journal");
    let (_, recovered) =
        Journal::open::<serde_json::Value, serde_json::Value>(&dir.path().join("sample"), "fuzz")
            .expect("the sample journal opens");
    assert!(recovered.snapshot.is_some());
    assert_eq!(recovered.records.len(), 3);
    fuzz(
        "journal (mutated)",
        (cases / 5).max(1),
        (
            mutated(vec![snapshot.clone()]),
            mutated(vec![log.clone()]),
            0..3u8,
        ),
        |(bad_snapshot, bad_log, which)| match which {
            0 => open_journal(&journal_dir, &bad_snapshot, &log),
            1 => open_journal(&journal_dir, &snapshot, &bad_log),
            _ => open_journal(&journal_dir, &bad_snapshot, &bad_log),
        },
    );
    fuzz(
        "journal (arbitrary records)",
        (cases / 5).max(1),
        arbitrary_bytes(),
        |tail| {
            let mut bad_log = log[..8].to_vec();
            bad_log.extend_from_slice(&tail);
            open_journal(&journal_dir, &snapshot, &bad_log);
        },
    );

    // SQL: arbitrary text, SQL-ish token soup, and damaged valid statements.
    let statements: Vec<Vec<u8>> = [
        "CREATE DATABASE root.sg",
        "INSERT INTO root.sg.d1(time, s1, s2) VALUES (1, 2.5, 'x'), (2, -3, \"y\")",
        "SELECT count(s1), avg(s2) FROM root.sg.d1 WHERE time >= 2024-01-01T00:00:00 GROUP BY ([0, 100), 10ms) LIMIT 5 OFFSET 1",
        "SELECT s1 FROM root.sg.** WHERE s1 > 3 AND time < 10",
        "SELECT LAST s1 FROM root.sg.d1 WHERE time > 0",
        "DELETE FROM root.sg.d1.s1 WHERE time < 100",
        "SHOW TIMESERIES root.sg.**; SHOW DATABASES; FLUSH",
        "SET TTL TO root.sg 3600000",
        "SELECT s1 FROM root.sg.d1 WHERE ((s1 + 1) * 2 - 3) / 4 > 0 OR NOT s1 < 2 ALIGN BY DEVICE",
    ]
    .iter()
    .map(|statement| statement.as_bytes().to_vec())
    .collect();
    for statement in &statements {
        let text = String::from_utf8_lossy(statement);
        if let Err(error) = parse_script(&text) {
            panic!("the sample {text:?} does not parse: {error}");
        }
    }
    let check_sql = |text: String| {
        let _ = parse(&text);
        let _ = parse_script(&text);
    };
    fuzz("sql (arbitrary)", cases, ".{0,300}", check_sql);
    fuzz(
        "sql (tokens)",
        cases,
        prop::collection::vec(
            prop_oneof![
                Just("SELECT "),
                Just("FROM "),
                Just("WHERE "),
                Just("root"),
                Just("."),
                Just("**"),
                Just("*"),
                Just("("),
                Just(")"),
                Just(","),
                Just("'"),
                Just("\""),
                Just("`"),
                Just("1"),
                Just("-"),
                Just("9223372036854775808"),
                Just("1e999"),
                Just("time"),
                Just(">="),
                Just("AND "),
                Just("OR "),
                Just("NOT "),
                Just("GROUP BY "),
                Just("["),
                Just(")"),
                Just("10ms"),
                Just("LIMIT "),
                Just(";"),
                Just("INSERT INTO "),
                Just("VALUES "),
                Just("count"),
                Just(" "),
                Just("2024-01-01T00:00:00"),
                Just("\\"),
                Just("\n"),
                Just("--"),
            ],
            0..60,
        )
        .prop_map(|tokens| tokens.concat()),
        check_sql,
    );
    fuzz("sql (mutated)", cases, mutated(statements), |bytes| {
        check_sql(String::from_utf8_lossy(&bytes).into_owned())
    });

    // Thrift: both protocols, arbitrary and damaged valid calls.
    for protocol in [ThriftProtocol::Binary, ThriftProtocol::Compact] {
        // The unspoiled insertTablet call decodes and converts: fuzzing starts from it.
        let insert = &thrift_samples(protocol)[2];
        let mut input = FrameInput::new(protocol, insert);
        input.read_message_begin().expect("message");
        input.read_struct_begin().expect("args");
        input.read_field_begin().expect("field");
        let request = TSInsertTabletReq::read_from_in_protocol(&mut input).expect("request");
        assert_eq!(request, sample_insert_tablet());
        fuzz(
            &format!("thrift {protocol:?} (arbitrary)"),
            cases,
            arbitrary_bytes(),
            |bytes| read_thrift(protocol, &bytes),
        );
        fuzz(
            &format!("thrift {protocol:?} (mutated)"),
            cases,
            mutated(thrift_samples(protocol)),
            |bytes| read_thrift(protocol, &bytes),
        );
    }

    // Thrift tablets and records: the value and timestamp buffers are decoded by hand.
    let sample = sample_insert_tablet();
    fuzz(
        "thrift tablets (mutated buffers)",
        cases,
        (
            mutated(vec![sample.values.clone()]),
            mutated(vec![sample.timestamps.clone()]),
            prop::collection::vec(-2..14i32, 0..4),
            prop_oneof![Just(3), -1..10i32, any::<i32>()],
        ),
        |(values, timestamps, types, size)| {
            let mut request = sample.clone();
            request.values = values;
            request.timestamps = timestamps;
            request.measurements = (0..types.len()).map(|index| format!("s{index}")).collect();
            request.types = types;
            request.size = size;
            convert_tablet(&request);
        },
    );
    fuzz(
        "thrift records (arbitrary values)",
        cases,
        (arbitrary_bytes(), 0..4usize),
        |(values, measurements)| {
            let names: Vec<String> = (0..measurements).map(|index| format!("s{index}")).collect();
            let _ = record("root.sg.d1", &names, &values, 1, false);
        },
    );
}
