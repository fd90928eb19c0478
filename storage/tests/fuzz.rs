//! Fuzzing what storage reads back from disk: WAL segment headers and records, WAL
//! recovery over whole damaged segment files, the WAL payloads (tablets, deletions),
//! sealed files (header, index, chunks, blocks) and the column codecs. Inputs are
//! arbitrary bytes and mutations of valid encodings (bytes flipped, cut short, length and
//! count fields replaced by huge values).
//!
//! Every decoder must return a typed error or a value, never panic, and never allocate
//! much more than it was given: the check watches the process's peak virtual size
//! (`VmPeak`), where a `Vec::with_capacity` of a declared gigabyte shows even if its pages
//! are never touched. The decoders run one after another in a single test so that no
//! other test's allocations blur the figure.
//!
//! `FUZZ_CASES=N` sets the cases per decoder (default [`CASES_DEFAULT`], sized for CI).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use iotdb_storage::codec::{decode_timestamps, decode_values, encode_timestamps, encode_values};
use iotdb_storage::region::{deletion, wal_entry};
use iotdb_storage::sealed::{SealedFile, SealedFileWriter, WriterOptions};
use iotdb_storage::wal::MonoioStorage;
use iotdb_storage::wal::format::{
    SEGMENT_FLAG_ZEROS_AHEAD, SEGMENT_HEADER_BYTES, decode_record, decode_segment_header,
    encode_record, encode_segment_header,
};
use iotdb_storage::wal::recovery::{recover, segment_file_name};
use iotdb_storage::{
    Compression, DataType, NullBitmap, PointColumn, SeriesKey, Tablet, TabletColumn, TimeRange,
    Values,
};
use proptest::prelude::*;

#[path = "../../testing/fuzz_harness.rs"]
mod fuzz_harness;
use fuzz_harness::{arbitrary_bytes, cases, fuzz, mutated};

/// Cases per decoder without `FUZZ_CASES`; the file-based ones (recovery, sealed files)
/// take a fifth of it, since each case writes files.
const CASES_DEFAULT: u32 = 1000;

fn sample_values(data_type: DataType, rows: usize) -> Values {
    match data_type {
        DataType::Boolean => Values::Boolean((0..rows).map(|row| row % 3 == 0).collect()),
        DataType::Int32 => Values::Int32((0..rows).map(|row| row as i32 * 7 - 20).collect()),
        DataType::Int64 => Values::Int64((0..rows).map(|row| row as i64 * 1000).collect()),
        DataType::Float => Values::Float((0..rows).map(|row| row as f32 / 4.0).collect()),
        DataType::Double => Values::Double((0..rows).map(|row| row as f64 * 0.1).collect()),
        DataType::Text => Values::Text(
            (0..rows)
                .map(|row| Bytes::from(format!("v{}", row % 5)))
                .collect(),
        ),
    }
}

fn sample_tablet() -> Tablet {
    let rows = 6;
    let mut nulls = NullBitmap::new(rows);
    nulls.set_null(2);
    Tablet {
        device: Arc::from("root.sg.d1"),
        timestamps: (0..rows as i64).map(|t| t * 10).collect(),
        columns: DataType::ALL
            .into_iter()
            .enumerate()
            .map(|(index, data_type)| TabletColumn {
                measurement: Arc::from(format!("s{index}").as_str()),
                values: sample_values(data_type, rows),
                nulls: (index % 2 == 0).then(|| nulls.clone()),
            })
            .collect(),
    }
}

/// A tablet the compact record keeps in its shortest forms: evenly stepped timestamps and
/// decimals as 16-bit and 32-bit digits.
fn decimal_tablet() -> Tablet {
    let rows = 8;
    let column = |name: &str, scale: f64| TabletColumn {
        measurement: Arc::from(name),
        values: Values::Double((0..rows).map(|i| (i as f64 * scale) / 100.0).collect()),
        nulls: None,
    };
    Tablet {
        device: Arc::from("root.sg.d2"),
        timestamps: (0..rows as i64).map(|t| 1_000 + t * 10).collect(),
        columns: vec![column("narrow", 123.0), column("wide", 1_234_567.0)],
    }
}

/// Every kind of WAL payload: the two tablet records (the compact one twice: every form
/// of it, and one with nulls and every type), a deletion.
fn wal_payloads() -> Vec<(u8, Vec<u8>)> {
    let mut tablet = Vec::new();
    wal_entry::encode(&sample_tablet().as_ref(), &mut tablet);
    let compact = |source: Tablet| {
        let mut record = wal_entry::TabletRecord::default();
        record.prepare(&source.as_ref());
        let mut payload = Vec::new();
        record.encode(&source.as_ref(), &mut payload);
        payload
    };
    let mut deletion = Vec::new();
    deletion::encode_record(
        &[
            SeriesKey::new("root.sg.d1", "s1"),
            SeriesKey::new("root.sg.d2", "s2"),
        ],
        TimeRange::new(0, 100),
        &mut deletion,
    );
    vec![
        (wal_entry::KIND_TABLET, tablet),
        (wal_entry::KIND_TABLET_COMPACT, compact(sample_tablet())),
        (wal_entry::KIND_TABLET_COMPACT, compact(decimal_tablet())),
        (deletion::KIND_DELETE, deletion),
    ]
}

/// Every decoder of a WAL payload.
fn decode_payload(payload: &[u8]) {
    let _ = wal_entry::decode(payload);
    let _ = wal_entry::decode_compact(payload);
    let _ = deletion::decode_record(payload);
}

fn valid_segment() -> Vec<u8> {
    let mut segment = Vec::new();
    encode_segment_header(&mut segment, SEGMENT_FLAG_ZEROS_AHEAD);
    for (index, (kind, payload)) in wal_payloads().iter().enumerate() {
        encode_record(&mut segment, index as u64 + 1, *kind, &[payload]);
    }
    segment
}

fn decode_segment(bytes: &[u8]) {
    if decode_segment_header(bytes).is_err() {
        return;
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok(record) = decode_record(bytes, offset) {
        decode_payload(&bytes[record.payload_start..record.end()]);
        offset = record.end();
    }
}

/// Recovery over a directory holding a valid first segment and a damaged second one
/// (when `two`), or just the damaged one.
fn recover_from(dir: &Path, damaged: &[u8], two: bool) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("a directory");
    if two {
        std::fs::write(dir.join(segment_file_name(0)), valid_segment()).expect("write");
        std::fs::write(dir.join(segment_file_name(100)), damaged).expect("write");
    } else {
        std::fs::write(dir.join(segment_file_name(1)), damaged).expect("write");
    }
    if let Ok(recovered) = recover(&MonoioStorage::default(), dir) {
        for record in &recovered.records {
            decode_payload(&record.payload);
        }
    }
}

fn sample_sealed_file(path: &Path, compression: Compression) -> Vec<u8> {
    let mut writer = SealedFileWriter::create(
        path,
        WriterOptions {
            compression,
            chunk_points_max: 16,
        },
    )
    .expect("create");
    for (index, data_type) in DataType::ALL.into_iter().enumerate() {
        let rows = 40;
        let points = PointColumn {
            timestamps: (0..rows as i64).map(|t| t * 3).collect(),
            values: sample_values(data_type, rows),
        };
        writer
            .write_series(&SeriesKey::new("root.sg.d1", &format!("s{index}")), &points)
            .expect("write");
    }
    writer.finish().expect("finish");
    std::fs::read(path).expect("read back")
}

fn read_sealed(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).expect("write");
    let Ok(file) = SealedFile::open(path) else {
        return;
    };
    let series: Vec<_> = file.series().cloned().collect();
    for meta in &series {
        let _ = file.read_series_meta(meta, TimeRange::ALL);
    }
}

#[test]
fn storage_decoders_survive_arbitrary_and_mutated_input() {
    let cases = cases(CASES_DEFAULT);
    let file_cases = (cases / 5).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");

    // WAL segments decoded record by record, payloads included.
    let segment = valid_segment();
    fuzz(
        "wal segments (arbitrary)",
        cases,
        arbitrary_bytes(),
        |bytes| decode_segment(&bytes),
    );
    let mut records = 0;
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok(record) = decode_record(&segment, offset) {
        records += 1;
        offset = record.end();
    }
    assert_eq!(
        (records, offset),
        (4, segment.len()),
        "the valid segment decodes whole"
    );
    let mut with_header = segment[..SEGMENT_HEADER_BYTES].to_vec();
    with_header.extend_from_slice(&[0; 64]);
    fuzz(
        "wal segments (mutated)",
        cases,
        mutated(vec![segment.clone(), with_header]),
        |bytes| decode_segment(&bytes),
    );

    // WAL payloads on their own.
    let payloads = wal_payloads()
        .into_iter()
        .map(|(_, payload)| payload)
        .collect();
    let check_payload = |bytes: Vec<u8>| decode_payload(&bytes);
    fuzz(
        "wal payloads (arbitrary)",
        cases,
        arbitrary_bytes(),
        check_payload,
    );
    fuzz(
        "wal payloads (mutated)",
        cases,
        mutated(payloads),
        check_payload,
    );

    // Recovery over damaged segment files.
    let wal_dir = dir.path().join("wal");
    fuzz(
        "wal recovery (mutated)",
        file_cases,
        (mutated(vec![segment.clone()]), any::<bool>()),
        |(bytes, two)| recover_from(&wal_dir, &bytes, two),
    );

    // Sealed files: opened, every series read.
    let sealed_path = dir.path().join("fuzz.sealed");
    let samples: Vec<Vec<u8>> = [Compression::None, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .enumerate()
        .map(|(index, compression)| {
            sample_sealed_file(
                &dir.path().join(format!("sample-{index}.sealed")),
                compression,
            )
        })
        .collect();
    // The unspoiled samples open and read: the fuzzing starts from real files.
    for sample in &samples {
        std::fs::write(&sealed_path, sample).expect("write");
        let file = SealedFile::open(&sealed_path).expect("a valid sealed file opens");
        let series: Vec<_> = file.series().cloned().collect();
        assert_eq!(series.len(), DataType::ALL.len());
        for meta in &series {
            let points = file.read_series_meta(meta, TimeRange::ALL).expect("reads");
            assert_eq!(points.timestamps.len(), 40);
        }
        drop(file);
        std::fs::remove_file(&sealed_path).expect("remove");
    }
    fuzz(
        "sealed files (mutated)",
        file_cases,
        mutated(samples.clone()),
        |bytes| read_sealed(&sealed_path, &bytes),
    );
    // A valid file with its tail (index and footer) replaced by arbitrary bytes.
    fuzz(
        "sealed files (arbitrary index)",
        file_cases,
        (0..samples.len(), arbitrary_bytes()),
        |(index, tail)| {
            let sample = &samples[index];
            let mut bytes = sample[..sample.len() / 2].to_vec();
            bytes.extend_from_slice(&tail);
            read_sealed(&sealed_path, &bytes);
        },
    );

    // Column codecs with any count a damaged index could claim.
    let mut columns = Vec::new();
    for data_type in DataType::ALL {
        let mut out = Vec::new();
        encode_values(&sample_values(data_type, 50), &mut out);
        columns.push(out);
    }
    let mut timestamps = Vec::new();
    encode_timestamps(
        &(0..50).map(|t| t * 1000).collect::<Vec<_>>(),
        &mut timestamps,
    );
    columns.push(timestamps);
    let check_column = |(bytes, count, type_index): (Vec<u8>, usize, usize)| {
        let _ = decode_timestamps(&bytes, count);
        let _ = decode_values(DataType::ALL[type_index % 6], &bytes, count);
    };
    // Counts past the column limit must be refused before anything is allocated. A count
    // within it may legitimately decode from a few bytes (a constant run), so a count at
    // the limit costs up to the limit's worth of values: that is the codecs' bound
    // (`COLUMN_VALUES_MAX` values a column), tried a few times only.
    let refused = prop_oneof![Just((1usize << 24) + 1), Just(usize::MAX), (1usize << 25)..];
    let count = prop_oneof![4 => 0..100usize, 2 => 100..70_000usize, 1 => refused];
    fuzz(
        "column codecs (arbitrary)",
        cases,
        (arbitrary_bytes(), count.clone(), any::<usize>()),
        check_column,
    );
    fuzz(
        "column codecs (mutated)",
        cases,
        (mutated(columns.clone()), count, any::<usize>()),
        check_column,
    );
    fuzz(
        "column codecs (count at the limit)",
        8,
        (mutated(columns), Just(1usize << 24), any::<usize>()),
        check_column,
    );
}
