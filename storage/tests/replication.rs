//! The storage seam of region replication: a follower applying the leader's WAL records
//! at the same indexes ends with the same data; refused entries change nothing; the WAL
//! reads back by index (files and pending batches, within a budget); a retention floor
//! keeps flushed WAL for followers within a cap; a snapshot streamed as chunks, installed
//! and followed by the WAL tail reproduces the leader.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iotdb_storage::transfer::{Chunk, SnapshotReader, SnapshotWriter};
use iotdb_storage::{
    LogEntry, LogRead, Region, RegionConfig, ReplicationError, SeriesKey, StorageError, Tablet,
    TabletColumn, TimeRange, Values,
};

mod support;
use support::block_on;

/// Small segments so a few dozen writes span several of them.
fn config() -> RegionConfig {
    RegionConfig {
        wal_segment_bytes: 1024,
        ..RegionConfig::default()
    }
}

fn tablet(device: usize, first: i64, rows: i64) -> Tablet {
    Tablet {
        device: Arc::from(format!("root.rep.d{device}")),
        timestamps: (first..first + rows).collect(),
        columns: vec![
            TabletColumn {
                measurement: Arc::from("s0"),
                values: Values::Int64((first..first + rows).map(|t| t * 10).collect()),
                nulls: None,
            },
            TabletColumn {
                measurement: Arc::from("s1"),
                values: Values::Double((first..first + rows).map(|t| t as f64 / 2.0).collect()),
                nulls: None,
            },
        ],
    }
}

/// Every series of `region` with all its points, for comparing replicas.
fn contents(region: &Region) -> Vec<(SeriesKey, Vec<i64>, Vec<String>)> {
    region
        .series()
        .into_iter()
        .map(|(key, _)| {
            let points = region.scan(&key, TimeRange::ALL).unwrap().unwrap();
            let values = (0..points.len())
                .map(|i| format!("{:?}", points.values.get(i)))
                .collect();
            (key, points.timestamps, values)
        })
        .collect()
}

/// Whether an error is the one expected.
type ErrorCheck = fn(&StorageError) -> bool;

fn entries(read: LogRead) -> Vec<LogEntry> {
    match read {
        LogRead::Entries(entries) => entries,
        LogRead::Gone { first_kept } => panic!("gone, first kept {first_kept}"),
    }
}

#[test]
fn a_follower_applying_every_shipped_entry_matches_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let follower_dir = dir.path().join("follower");
    block_on(async {
        let leader = Region::open(&dir.path().join("leader"), config()).unwrap();
        let follower = Region::open(&follower_dir, config()).unwrap();
        let mut shipped = Vec::new();
        for i in 0..30i64 {
            let (ack, entry) = leader
                .write_for_replication(&tablet((i % 3) as usize, (i * 7) % 50, 5))
                .unwrap();
            assert_eq!(entry.index, ack.index());
            shipped.push(entry);
            if i == 12 {
                leader.flush().await.unwrap();
            }
            if i == 20 {
                let keys = [SeriesKey::new("root.rep.d1", "s0")];
                let (_, entry) = leader
                    .delete_for_replication(&keys, TimeRange::new(10, 30))
                    .unwrap();
                shipped.push(entry);
            }
        }
        for (n, entry) in shipped.iter().enumerate() {
            let ack = follower.apply_replicated(entry).unwrap();
            assert_eq!(ack.index(), entry.index);
            if n == 17 {
                follower.flush().await.unwrap();
            }
        }
        let last = follower
            .apply_replicated_waiting(
                &leader
                    .write_for_replication(&tablet(2, 100, 3))
                    .map(|(_, entry)| entry)
                    .unwrap(),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        last.durable().await.unwrap();
        assert_eq!(contents(&leader), contents(&follower));
        assert_eq!(leader.info().last_index, follower.info().last_index);
        assert!(!contents(&leader).is_empty());

        // The follower's WAL holds the leader's indexes: a restart keeps its position.
        let expected = contents(&leader);
        let last_index = leader.info().last_index;
        follower.close(false).await.unwrap();
        let follower = Region::open(&follower_dir, config()).unwrap();
        assert_eq!(follower.info().last_index, last_index);
        assert_eq!(contents(&follower), expected);
        follower.close(false).await.unwrap();
        leader.close(false).await.unwrap();
    });
}

#[test]
fn refused_entries_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let leader = Region::open(&dir.path().join("leader"), config()).unwrap();
        let follower = Region::open(&dir.path().join("follower"), config()).unwrap();
        for i in 0..2 {
            let (_, entry) = leader.write_for_replication(&tablet(0, i * 5, 5)).unwrap();
            follower
                .apply_replicated(&entry)
                .unwrap()
                .durable()
                .await
                .unwrap();
        }
        let (_, next) = leader.write_for_replication(&tablet(0, 10, 5)).unwrap();
        assert_eq!(next.index, 3);
        let before = (follower.info(), contents(&follower));

        let duplicate = LogEntry {
            index: 2,
            ..next.clone()
        };
        let gap = LogEntry {
            index: 5,
            ..next.clone()
        };
        let garbage = LogEntry {
            payload: Bytes::from_static(b"\x05\x00abc"),
            ..next.clone()
        };
        let unknown_kind = LogEntry {
            kind: 77,
            ..next.clone()
        };
        let mut wrong_type = tablet(0, 20, 2);
        wrong_type.columns[0].values = Values::Int32(vec![1, 2]);
        let mut wrong_type_payload = Vec::new();
        iotdb_storage::region::wal_entry::encode(&wrong_type.as_ref(), &mut wrong_type_payload);
        // In the record kind of a WAL written before data format 3, which a follower
        // still decodes: refused for its type, not its kind.
        let wrong_type = LogEntry {
            kind: iotdb_storage::region::wal_entry::KIND_TABLET,
            payload: Bytes::from(wrong_type_payload),
            ..next.clone()
        };
        let checks: [(&LogEntry, ErrorCheck); 5] = [
            (&duplicate, |e| {
                matches!(
                    e,
                    StorageError::Replication(ReplicationError::Duplicate {
                        index: 2,
                        next_index: 3
                    })
                )
            }),
            (&gap, |e| {
                matches!(
                    e,
                    StorageError::Replication(ReplicationError::Gap {
                        index: 5,
                        next_index: 3
                    })
                )
            }),
            (&garbage, |e| {
                matches!(
                    e,
                    StorageError::Replication(ReplicationError::InvalidEntry { index: 3, .. })
                )
            }),
            (&unknown_kind, |e| {
                matches!(
                    e,
                    StorageError::Replication(ReplicationError::InvalidEntry { index: 3, .. })
                )
            }),
            (&wrong_type, |e| {
                matches!(e, StorageError::TypeMismatch { .. })
            }),
        ];
        for (entry, expected) in checks {
            let error = follower.apply_replicated(entry).err().expect("refused");
            assert!(expected(&error), "{error}");
            assert_eq!((follower.info(), contents(&follower)), before);
        }
        // The right entry still applies at that index.
        follower
            .apply_replicated(&next)
            .unwrap()
            .durable()
            .await
            .unwrap();
        assert_eq!(follower.info().last_index, 3);
        // An entry of the earlier tablet kind applies as well.
        let mut earlier = Vec::new();
        iotdb_storage::region::wal_entry::encode(&tablet(0, 30, 2).as_ref(), &mut earlier);
        let earlier = LogEntry {
            index: 4,
            kind: iotdb_storage::region::wal_entry::KIND_TABLET,
            payload: Bytes::from(earlier),
        };
        follower
            .apply_replicated(&earlier)
            .unwrap()
            .durable()
            .await
            .unwrap();
        assert_eq!(follower.info().last_index, 4);
        let points = |region: &Region| contents(region).iter().map(|s| s.1.len()).sum::<usize>();
        let before_earlier = points(&leader);
        assert_eq!(points(&follower), before_earlier + 4);
        leader.close(false).await.unwrap();
        follower.close(false).await.unwrap();
    });
}

#[test]
fn the_wal_reads_back_by_index_across_segments_and_pending_batches() {
    let dir = tempfile::tempdir().unwrap();
    let region_dir = dir.path().join("region");
    block_on(async {
        let region = Region::open(&region_dir, config()).unwrap();
        let mut shipped = Vec::new();
        for i in 0..40 {
            let (ack, entry) = region.write_for_replication(&tablet(0, i * 4, 4)).unwrap();
            shipped.push(entry);
            if i % 10 == 9 {
                ack.durable().await.unwrap();
            }
        }
        // The last writes may still be pending: read before anything else runs.
        let all = entries(region.read_log(1, usize::MAX).await.unwrap());
        assert_eq!(all, shipped);
        let segments = std::fs::read_dir(region_dir.join("wal")).unwrap().count();
        assert!(segments > 3, "{segments} segments");

        region.write_durable(&tablet(1, 0, 1)).await.unwrap();
        let (_, pending) = region.write_for_replication(&tablet(1, 1, 1)).unwrap();
        let tail = entries(region.read_log(pending.index, 1).await.unwrap());
        assert_eq!(tail, vec![pending.clone()], "read from the pending batch");

        // A budget smaller than one record still yields one; a few records' worth stops there.
        let one = entries(region.read_log(17, 1).await.unwrap());
        assert_eq!(one, shipped[16..17]);
        let record_bytes = 20 + shipped[16].payload.len();
        let three = entries(region.read_log(17, 3 * record_bytes).await.unwrap());
        assert_eq!(three, shipped[16..19]);
        let past = entries(region.read_log(pending.index + 1, 1000).await.unwrap());
        assert!(past.is_empty());

        // Without a floor, a flush drops the WAL: the old indexes are gone.
        region.flush().await.unwrap();
        let next = region.write_durable(&tablet(2, 0, 1)).await.unwrap();
        assert_eq!(
            region.read_log(1, 1000).await.unwrap(),
            LogRead::Gone { first_kept: next }
        );
        assert_eq!(region.info().wal_first_index, Some(next));
        region.close(false).await.unwrap();

        // Records recovered at open read back the same way.
        let region = Region::open(&region_dir, config()).unwrap();
        let back = entries(region.read_log(next, 1000).await.unwrap());
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].index, next);

        // A damaged record is an error, never skipped.
        let segment = std::fs::read_dir(region_dir.join("wal"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = 16 + 20 + 3;
        bytes[at] ^= 0x40;
        std::fs::write(&segment, &bytes).unwrap();
        let error = region.read_log(next, 1000).await.expect_err("refused");
        assert!(matches!(error, StorageError::Corruption { .. }), "{error}");
        region.close(false).await.unwrap();
    });
}

#[test]
fn a_retention_floor_keeps_flushed_wal_within_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let region = Region::open(&dir.path().join("kept"), config()).unwrap();
        region.set_retention_floor(Some(1));
        for i in 0..40 {
            region.write(&tablet(0, i * 4, 4)).unwrap();
        }
        region.flush().await.unwrap();
        let info = region.info();
        assert_eq!(info.flushed_index, 40);
        assert_eq!(info.wal_first_index, Some(1));
        assert!(info.wal_retained_bytes > 0 && info.wal_retained_bytes == info.wal_bytes);
        assert_eq!(entries(region.read_log(1, 1).await.unwrap())[0].index, 1);

        // Raising the floor drops what it no longer keeps, and only that.
        region.set_retention_floor(Some(25));
        let first = region.info().wal_first_index.unwrap();
        assert!(first > 1 && first <= 25, "{first}");
        assert!(matches!(
            region.read_log(1, 1).await.unwrap(),
            LogRead::Gone { first_kept } if first_kept == first
        ));
        assert_eq!(entries(region.read_log(25, 1).await.unwrap())[0].index, 25);

        // No floor: today's behaviour, everything flushed goes. The active segment goes once
        // the WAL writer is idle, which a loaded machine may delay past the flush: the
        // region's tick retries.
        region.set_retention_floor(None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while region.info().wal_bytes > 0 && std::time::Instant::now() < deadline {
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(region.info().wal_bytes, 0);
        region.close(false).await.unwrap();

        // Past the cap, flushed segments go despite the floor.
        let cap = 3 * 1024;
        let capped = Region::open(
            &dir.path().join("capped"),
            RegionConfig {
                wal_retention_bytes_max: cap,
                ..config()
            },
        )
        .unwrap();
        capped.set_retention_floor(Some(1));
        for i in 0..40 {
            capped.write(&tablet(0, i * 4, 4)).unwrap();
        }
        capped.flush().await.unwrap();
        // Segments whose writes were still in flight at the flush go at a later tick.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while capped.info().wal_bytes > cap && std::time::Instant::now() < deadline {
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let info = capped.info();
        assert!(info.wal_bytes <= cap, "{info:?}");
        assert!(matches!(
            capped.read_log(1, 1).await.unwrap(),
            LogRead::Gone { first_kept } if first_kept > 1
        ));
        capped.close(false).await.unwrap();
    });
}

/// Sends `snapshot` through encoded chunks of at most `chunk_bytes` into `staging`.
async fn transfer(snapshot: &std::path::Path, staging: &std::path::Path, chunk_bytes: usize) {
    let mut reader = SnapshotReader::open(snapshot).unwrap();
    let mut writer = SnapshotWriter::new(staging).unwrap();
    let mut chunks = 0;
    while let Some(chunk) = reader.next_chunk(chunk_bytes).await.unwrap() {
        let mut wire = Vec::new();
        chunk.encode(&mut wire);
        assert_eq!(wire.len(), chunk.encoded_len());
        let received = Chunk::decode(&Bytes::from(wire)).unwrap();
        assert_eq!(received, chunk);
        writer.accept(received).await.unwrap();
        chunks += 1;
    }
    assert!(chunks > 3, "{chunks} chunks");
    writer.finish().await.unwrap();
}

#[test]
fn a_snapshot_sent_in_chunks_installs_and_the_wal_tail_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let follower_dir = dir.path().join("follower");
    let snapshot_dir = dir.path().join("snapshot");
    let staging_dir = dir.path().join("staging");
    block_on(async {
        // The follower holds stale data of its own, which the install replaces.
        let stale = Region::open(&follower_dir, config()).unwrap();
        stale.write_durable(&tablet(9, 0, 10)).await.unwrap();
        stale.flush().await.unwrap();
        stale.write_durable(&tablet(9, 10, 10)).await.unwrap();
        stale.close(false).await.unwrap();

        let leader = Region::open(&dir.path().join("leader"), config()).unwrap();
        leader.set_retention_floor(Some(1));
        for i in 0..20 {
            leader.write(&tablet((i % 2) as usize, i * 3, 6)).unwrap();
        }
        leader
            .delete(
                &[SeriesKey::new("root.rep.d0", "s1")],
                TimeRange::new(0, 20),
            )
            .unwrap();
        leader.flush().await.unwrap();
        for i in 20..30 {
            leader.write(&tablet((i % 3) as usize, i * 3, 6)).unwrap();
        }
        let snapshot = leader.snapshot(&snapshot_dir).unwrap();
        // The deletion froze the memtable at 20: the flush covers up to there, and the
        // deletion (21) comes again with the tail, harmlessly.
        assert_eq!(snapshot.wal_index, 20);
        leader
            .delete(
                &[SeriesKey::new("root.rep.d1", "s0")],
                TimeRange::new(0, 70),
            )
            .unwrap();
        leader.write_durable(&tablet(0, 500, 5)).await.unwrap();

        transfer(&snapshot_dir, &staging_dir, 64).await;
        Region::install_snapshot(&follower_dir, &staging_dir).unwrap();
        let follower = Region::open(&follower_dir, config()).unwrap();
        assert_eq!(follower.info().last_index, snapshot.wal_index);
        let tail = entries(
            leader
                .read_log(snapshot.wal_index + 1, usize::MAX)
                .await
                .unwrap(),
        );
        assert_eq!(tail.first().map(|e| e.index), Some(snapshot.wal_index + 1));
        for entry in &tail {
            follower.apply_replicated(entry).unwrap();
        }
        assert_eq!(follower.info().last_index, leader.info().last_index);
        assert_eq!(contents(&follower), contents(&leader));
        assert!(
            follower
                .series_type(&SeriesKey::new("root.rep.d9", "s0"))
                .is_none()
        );
        follower.close(true).await.unwrap();
        let follower = Region::open(&follower_dir, config()).unwrap();
        assert_eq!(contents(&follower), contents(&leader));
        follower.close(false).await.unwrap();
        leader.close(false).await.unwrap();
    });
}

fn refused_chunk(error: StorageError) -> bool {
    matches!(
        error,
        StorageError::Replication(ReplicationError::InvalidChunk(_))
    )
}

#[test]
fn damaged_misnamed_and_out_of_order_chunks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let chunk = Chunk::new(
            "sealed/0-seq-1-L0.tsf".into(),
            0,
            Bytes::from_static(b"abcdef"),
            false,
        );
        let mut wire = Vec::new();
        chunk.encode(&mut wire);
        for bit in 0..wire.len() * 8 {
            let mut damaged = wire.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let error = Chunk::decode(&Bytes::from(damaged)).expect_err("refused");
            assert!(refused_chunk(error), "bit {bit}");
        }
        for cut in 0..wire.len() {
            assert!(refused_chunk(
                Chunk::decode(&Bytes::copy_from_slice(&wire[..cut]))
                    .err()
                    .unwrap()
            ));
        }

        let mut writer = SnapshotWriter::new(&dir.path().join("staging")).unwrap();
        for name in [
            "../MANIFEST",
            "sealed/../../x",
            "/etc/passwd",
            "sealed/",
            "sealed/.hidden",
            "other",
        ] {
            let error = writer
                .accept(Chunk::new(name.into(), 0, Bytes::new(), true))
                .await
                .expect_err("refused");
            assert!(refused_chunk(error), "{name}");
        }
        let mut bad_checksum = chunk.clone();
        bad_checksum.data = Bytes::from_static(b"abcdeF");
        assert!(refused_chunk(
            writer.accept(bad_checksum).await.err().unwrap()
        ));
        let oversize = Chunk::new(
            "sealed/big".into(),
            64 << 30,
            Bytes::from_static(b"x"),
            true,
        );
        assert!(refused_chunk(writer.accept(oversize).await.err().unwrap()));
        let late_start = Chunk::new("MODS".into(), 10, Bytes::from_static(b"x"), true);
        assert!(refused_chunk(
            writer.accept(late_start).await.err().unwrap()
        ));

        writer.accept(chunk.clone()).await.unwrap();
        let skipped = Chunk::new(chunk.file.clone(), 100, Bytes::from_static(b"x"), true);
        assert!(refused_chunk(writer.accept(skipped).await.err().unwrap()));
        let other_file = Chunk::new("MODS".into(), 0, Bytes::from_static(b"x"), true);
        assert!(refused_chunk(
            writer.accept(other_file).await.err().unwrap()
        ));
        writer
            .accept(Chunk::new(
                chunk.file.clone(),
                6,
                Bytes::from_static(b"g"),
                true,
            ))
            .await
            .unwrap();
        let again = Chunk::new(chunk.file.clone(), 0, Bytes::from_static(b"x"), true);
        assert!(refused_chunk(writer.accept(again).await.err().unwrap()));
        // No MANIFEST: not a snapshot.
        assert!(matches!(
            writer.finish().await,
            Err(StorageError::Replication(
                ReplicationError::InvalidSnapshot(_)
            ))
        ));
    });
}

/// A leader's compact records with bytes replaced (digits that break the encoder's rules,
/// other exponents, forms and counts), as a damaged entry that passed its checks would
/// be: a follower refuses each with a typed error or applies it, never panics, and every
/// point it applied reads back as the double its record decodes to.
#[test]
fn damaged_compact_entries_never_panic_a_follower() {
    use iotdb_storage::region::wal_entry;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    block_on(async {
        let config = RegionConfig {
            wal_mode: iotdb_storage::WalMode::Off,
            ..config()
        };
        let leader = Region::open(leader_dir.path(), config.clone()).unwrap();
        let follower = Region::open(follower_dir.path(), config).unwrap();
        // Decimals of two places in 16 bits, of three in 32, at evenly stepped times.
        let decimals = |device: &str, first: i64| Tablet {
            device: Arc::from(device),
            timestamps: (first..first + 8).map(|t| t * 10).collect(),
            columns: vec![
                TabletColumn {
                    measurement: Arc::from("narrow"),
                    values: Values::Double((first..first + 8).map(|t| t as f64 / 4.0).collect()),
                    nulls: None,
                },
                TabletColumn {
                    measurement: Arc::from("wide"),
                    values: Values::Double(
                        (first..first + 8)
                            .map(|t| (t * 1_234_567) as f64 / 1000.0)
                            .collect(),
                    ),
                    nulls: None,
                },
            ],
        };
        // A leader's entry at the follower's next index.
        let next = |tablet: &Tablet| {
            let (_, entry) = leader.write_for_replication(tablet).unwrap();
            LogEntry {
                index: follower.info().last_index + 1,
                ..entry
            }
        };
        let valid = next(&decimals("root.rep.d9", 0));
        follower.apply_replicated(&valid).unwrap();
        let payload = valid.payload.to_vec();
        // A record written by hand for `device`: each column 16- or 32-bit digits at any
        // exponent, small ones (32-bit digits that fit 16 bits), any, and `i32::MIN` (past
        // what the encoder keeps), at evenly stepped times.
        type Column = (bool, u8, Vec<i32>);
        let by_hand = |device: &str, columns: Vec<Column>| {
            let mut record = Vec::new();
            record.extend_from_slice(&(device.len() as u16).to_le_bytes());
            record.extend_from_slice(device.as_bytes());
            record.extend_from_slice(&8u32.to_le_bytes());
            record.extend_from_slice(&2u16.to_le_bytes());
            record.push(1);
            record.extend_from_slice(&7_000i64.to_le_bytes());
            record.extend_from_slice(&10i64.to_le_bytes());
            for ((wide, exponent, digits), name) in columns.into_iter().zip(["narrow", "wide"]) {
                record.extend_from_slice(&(name.len() as u16).to_le_bytes());
                record.extend_from_slice(name.as_bytes());
                record.extend_from_slice(&[iotdb_storage::DataType::Double.code(), 0]);
                record.extend_from_slice(&[if wide { 2 } else { 1 }, exponent]);
                for d in digits {
                    if wide {
                        record.extend_from_slice(&d.to_le_bytes());
                    } else {
                        record.extend_from_slice(&(d as i16).to_le_bytes());
                    }
                }
            }
            record
        };
        let digits = prop_oneof![
            proptest::collection::vec(-50i32..50, 8),
            proptest::collection::vec(any::<i16>().prop_map(i32::from), 8),
            proptest::collection::vec(any::<i32>(), 8),
            proptest::collection::vec(prop_oneof![Just(i32::MIN), -50i32..50], 8),
        ];
        let column = (any::<bool>(), 0u8..10, digits);
        // Bytes of the leader's record replaced anywhere, or a record written by hand for
        // a device of its own whose series the leader's record made first (16-bit at
        // exponent 2, 32-bit at exponent 3).
        let damage = prop_oneof![
            proptest::collection::vec((0..payload.len(), any::<u8>()), 1..4).prop_map(Ok),
            proptest::collection::vec(column, 2).prop_map(Err),
        ];
        let cases = std::cell::Cell::new(0);
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&damage, |damage| {
                let damaged = match damage {
                    Ok(replacements) => {
                        let mut damaged = payload.clone();
                        for (at, byte) in replacements {
                            damaged[at] = byte;
                        }
                        damaged
                    }
                    Err(columns) => {
                        cases.set(cases.get() + 1);
                        let device = format!("root.rep.c{}", cases.get());
                        follower
                            .apply_replicated(&next(&decimals(&device, 0)))
                            .unwrap();
                        by_hand(&device, columns)
                    }
                };
                let entry = LogEntry {
                    index: follower.info().last_index + 1,
                    kind: wal_entry::KIND_TABLET_COMPACT,
                    payload: Bytes::from(damaged.clone()),
                };
                if follower.apply_replicated(&entry).is_ok() {
                    // What was applied reads back as what the record decodes to.
                    let tablet = wal_entry::decode_compact(&damaged).unwrap();
                    for column in &tablet.columns {
                        let Values::Double(written) = &column.values else {
                            continue;
                        };
                        // Each timestamp's last non-null value in the record (the newest
                        // write wins).
                        let mut expected = std::collections::BTreeMap::new();
                        for (row, (t, value)) in tablet.timestamps.iter().zip(written).enumerate() {
                            if !column.is_null(row) {
                                expected.insert(*t, value.to_bits());
                            }
                        }
                        let key = SeriesKey::new(&tablet.device, &column.measurement);
                        let range = TimeRange::new(i64::MIN, i64::MAX);
                        let Some(points) = follower.scan(&key, range).unwrap() else {
                            prop_assert!(expected.is_empty());
                            continue;
                        };
                        let Values::Double(read) = &points.values else {
                            panic!("a DOUBLE series reads back DOUBLEs");
                        };
                        for (t, bits) in expected {
                            let at = points.timestamps.binary_search(&t);
                            prop_assert!(at.is_ok(), "{} at {t} was applied", key);
                            prop_assert_eq!(read[at.unwrap()].to_bits(), bits);
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
        // The follower still takes a valid entry.
        follower
            .apply_replicated(&next(&decimals("root.rep.d9", 100)))
            .unwrap();
        leader.close(false).await.unwrap();
        follower.close(false).await.unwrap();
    });
}
