//! Unit tests of the record log on a reliable simulated disk and on the real file system.

use super::format::{FILE_HEADER_BYTES, encode_record, record_bytes};
use super::*;
use crate::io::{Disk, StdDisk};
use crate::sim::{DiskConfig, SimDisk, SimRng};

const NAME: &str = "log";

fn reliable_disk() -> SimDisk {
    SimDisk::new(DiskConfig::reliable(), SimRng::new(0))
}

fn payloads(opened: &Opened<impl Disk>) -> Vec<Vec<u8>> {
    opened
        .records
        .iter()
        .map(|record| record.payload.clone())
        .collect()
}

fn roundtrip(disk: impl Disk, reopen: impl FnOnce() -> Box<dyn FnOnce() -> Vec<Vec<u8>>>) {
    let mut opened = RecordLog::open(disk, NAME).expect("opens");
    assert!(opened.records.is_empty());
    let log = &mut opened.log;
    assert_eq!(log.append(b"one").unwrap(), 1);
    assert_eq!(log.append(b"").unwrap(), 2);
    assert_eq!(log.durable_index(), 0);
    assert_eq!(log.commit().unwrap(), 2);
    assert_eq!(log.append(b"three").unwrap(), 3);
    assert_eq!(log.commit().unwrap(), 3);
    assert_eq!(log.commit().unwrap(), 3, "an empty commit changes nothing");
    drop(opened);
    let records = reopen()();
    assert_eq!(
        records,
        vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]
    );
}

#[test]
fn records_roundtrip_on_the_simulated_disk() {
    let disk = reliable_disk();
    let again = disk.handle();
    roundtrip(disk, move || {
        Box::new(move || payloads(&RecordLog::open(again, NAME).expect("reopens")))
    });
}

#[test]
fn records_roundtrip_on_the_real_file_system() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    roundtrip(StdDisk::new(&path), move || {
        Box::new(move || {
            let opened = RecordLog::open(StdDisk::new(&path), NAME).expect("reopens");
            payloads(&opened)
        })
    });
}

/// A log file holding records 1..=count with payload `[index; 3]`.
fn file_with(count: u64) -> Vec<u8> {
    let mut data = Vec::new();
    format::encode_file_header(&mut data);
    for index in 1..=count {
        encode_record(&mut data, index, &[index as u8; 3]);
    }
    data
}

fn disk_with(data: &[u8]) -> SimDisk {
    let mut disk = reliable_disk();
    disk.create(NAME).unwrap();
    disk.append(NAME, data).unwrap();
    disk.sync(NAME).unwrap();
    disk.sync_dir().unwrap();
    disk
}

#[test]
fn every_torn_tail_is_cut_and_the_log_goes_on() {
    let full = file_with(3);
    let last_start = FILE_HEADER_BYTES + 2 * record_bytes(3);
    for cut in last_start..full.len() {
        let disk = disk_with(&full[..cut]);
        let mut opened = RecordLog::open(disk.handle(), NAME).expect("a torn tail is repaired");
        assert_eq!(opened.records.len(), 2, "cut at {cut}");
        assert_eq!(opened.truncated_bytes, (cut - last_start) as u64);
        assert_eq!(opened.log.append(b"next").unwrap(), 3);
        opened.log.commit().unwrap();
        drop(opened);
        let reopened = RecordLog::open(disk.handle(), NAME).expect("reopens");
        assert_eq!(reopened.records.last().unwrap().payload, b"next");
    }
}

#[test]
fn a_torn_or_missing_header_starts_a_fresh_log() {
    let full = file_with(0);
    for cut in 0..FILE_HEADER_BYTES {
        let disk = disk_with(&full[..cut]);
        let opened = RecordLog::open(disk.handle(), NAME).expect("fresh");
        assert!(opened.records.is_empty());
        assert_eq!(disk.durable_contents(NAME).unwrap(), full);
    }
}

#[test]
fn damage_followed_by_a_valid_record_is_corruption() {
    let full = file_with(3);
    let second_start = FILE_HEADER_BYTES + record_bytes(3);
    for byte in second_start..second_start + record_bytes(3) {
        let mut damaged = full.clone();
        damaged[byte] ^= 0x40;
        let error = RecordLog::open(disk_with(&damaged), NAME).expect_err("corrupt");
        match error {
            LogError::Corrupt { offset, .. } => assert_eq!(offset, second_start as u64),
            other => panic!("expected corruption, got {other}"),
        }
    }
    // A damaged header with valid records after it is corruption too, not a fresh log.
    let mut damaged = full.clone();
    damaged[0] ^= 1;
    assert!(matches!(
        RecordLog::open(disk_with(&damaged), NAME),
        Err(LogError::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn an_index_gap_is_corruption() {
    let mut data = file_with(1);
    encode_record(&mut data, 3, b"skip");
    assert!(matches!(
        RecordLog::open(disk_with(&data), NAME),
        Err(LogError::Corrupt { .. })
    ));
}

#[test]
fn a_failed_fsync_never_acknowledges_and_makes_the_log_read_only() {
    let disk = reliable_disk();
    let mut opened = RecordLog::open(disk.handle(), NAME).unwrap();
    opened.log.append(b"a").unwrap();
    opened.log.commit().unwrap();
    opened.log.append(b"b").unwrap();
    let mut failing = DiskConfig::reliable();
    failing.sync_failure_probability = 1.0;
    disk.set_config(failing);
    assert!(matches!(opened.log.commit(), Err(LogError::Disk { .. })));
    assert_eq!(opened.log.durable_index(), 1);
    assert!(opened.log.is_read_only());
    disk.set_config(DiskConfig::reliable());
    assert!(matches!(
        opened.log.append(b"c"),
        Err(LogError::ReadOnly { .. })
    ));
    assert!(matches!(
        opened.log.commit(),
        Err(LogError::ReadOnly { .. })
    ));
    assert_eq!(opened.log.durable_index(), 1);
}

#[test]
fn no_space_makes_the_log_read_only() {
    let disk = reliable_disk();
    let mut opened = RecordLog::open(disk.handle(), NAME).unwrap();
    let mut full = DiskConfig::reliable();
    full.capacity_bytes = 32;
    disk.set_config(full);
    opened.log.append(&[7; 64]).unwrap();
    let error = opened.log.commit().unwrap_err();
    assert!(
        matches!(
            &error,
            LogError::Disk {
                source: crate::io::DiskError::NoSpace { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(opened.log.is_read_only());
    assert_eq!(opened.log.durable_index(), 0);
}

#[test]
fn oversized_records_and_batches_are_refused() {
    let mut opened = RecordLog::open(reliable_disk(), NAME).unwrap();
    let log = &mut opened.log;
    assert!(matches!(
        log.append(&vec![0; LOG_RECORD_PAYLOAD_BYTES_MAX + 1]),
        Err(LogError::PayloadTooLarge { .. })
    ));
    let big = vec![1; LOG_RECORD_PAYLOAD_BYTES_MAX];
    let fit = LOG_BATCH_BYTES_MAX / record_bytes(big.len());
    for _ in 0..fit {
        log.append(&big).unwrap();
    }
    assert!(matches!(log.append(&big), Err(LogError::BatchFull { .. })));
    log.commit().unwrap();
    log.append(&big).expect("room again after a commit");
    assert_eq!(log.last_index(), fit as u64 + 1);
}

/// Known limitation, pinned so it is not forgotten: with page-granular writeback in any
/// order (what kernels and drive caches may do to an unsynced write), one unsynced batch
/// larger than a page can reach the disk as "damaged record, then a valid one". The
/// recovery rule shared with `storage/src/wal/recovery.rs` calls that corruption and
/// refuses to open, although no acknowledged record is damaged: an availability problem,
/// not a durability one. A refinement (e.g. treat damage as a torn tail when everything
/// after it lies within one batch of the end, as only the last batch can be unsynced, or
/// keep a small synced header ring as TigerBeetle does) belongs to the WAL's owner. When
/// it lands, this test flips to asserting that every such crash recovers.
#[test]
fn known_limitation_out_of_order_page_writeback_is_refused_as_corruption() {
    let mut refused = 0;
    for seed in 0..200 {
        let mut config = DiskConfig::reliable();
        config.writeback = crate::sim::Writeback::PagesAnyOrder;
        config.writeback_probability = 0.5;
        let disk = SimDisk::new(config, SimRng::new(seed));
        let mut opened = RecordLog::open(disk.handle(), NAME).unwrap();
        opened.log.append(b"acknowledged").unwrap();
        assert_eq!(opened.log.commit().unwrap(), 1);
        for index in 0..6u8 {
            opened.log.append(&[index; 1500]).unwrap();
        }
        opened.log.write().unwrap();
        drop(opened);
        disk.crash();
        match RecordLog::open(disk.handle(), NAME) {
            Ok(reopened) => assert_eq!(reopened.records[0].payload, b"acknowledged"),
            Err(LogError::Corrupt { .. }) => refused += 1,
            Err(other) => panic!("seed {seed}: {other}"),
        }
    }
    assert!(refused > 0, "the limitation is gone: flip this test");
}
