//! WAL behaviour tests: roundtrip on real files, rollover, torn tails at every offset,
//! corruption, group commit counts, failures, modes, retention, and a crash property.

use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use super::format::{RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES, record_bytes};
use super::recovery::segment_file_name;
use super::*;
use crate::config::WalMode;
use crate::error::StorageError;

/// Runs `future` on a monoio runtime: io_uring with a small ring (locked memory is
/// 8 MiB), epoll where io_uring is missing.
fn block_on<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(256)
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(future)
}

fn options(mode: WalMode, segment_bytes: u64) -> WalOptions {
    WalOptions {
        mode,
        async_fsync: Duration::from_millis(5),
        segment_bytes,
        direct_io: true,
    }
}

fn payload(index: u64) -> Vec<u8> {
    let len = (index as usize * 37) % 300;
    (0..len).map(|byte| (byte as u64 ^ index) as u8).collect()
}

fn expected(indexes: impl IntoIterator<Item = u64>) -> Vec<WalRecord> {
    indexes
        .into_iter()
        .map(|index| WalRecord {
            index,
            kind: (index % 7) as u8,
            payload: payload(index).into(),
        })
        .collect()
}

fn memory_dir() -> PathBuf {
    PathBuf::from("/wal")
}

fn open_memory(
    storage: &MemoryStorage,
    options: WalOptions,
) -> crate::error::Result<(Wal, Vec<WalRecord>)> {
    Wal::open_with_storage(&memory_dir(), options, Rc::new(storage.clone()))
}

/// Appends `indexes` (payload and kind derived from the index) and waits for the last.
async fn append_all(wal: &Wal, indexes: impl IntoIterator<Item = u64>) {
    let mut last = None;
    for index in indexes {
        wal.append(index, (index % 7) as u8, &payload(index))
            .unwrap();
        last = Some(index);
    }
    if let Some(last) = last {
        wal.wait_durable(last).await.unwrap();
    }
}

#[test]
fn io_uring_is_reported() {
    // Not an assertion: the machine may lack io_uring, and the runtime then falls back.
    eprintln!("io_uring available: {}", monoio::utils::detect_uring());
}

#[test]
fn roundtrip_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("region-1").join("wal");
    block_on(async {
        let (wal, records) = Wal::open(&wal_dir, options(WalMode::Sync, 4096)).unwrap();
        assert!(records.is_empty());
        assert_eq!(wal.last_index(), 0);
        append_all(&wal, 1..=100).await;
        assert_eq!(wal.durable_index(), 100);
        assert!(wal.segment_count() > 1);
        wal.close().await.unwrap();
        let sizes = || -> Vec<u64> {
            let mut sizes: Vec<(String, u64)> = std::fs::read_dir(&wal_dir)
                .unwrap()
                .map(|entry| {
                    let entry = entry.unwrap();
                    let name = entry.file_name().into_string().unwrap();
                    (name, entry.metadata().unwrap().len())
                })
                .collect();
            sizes.sort();
            sizes.into_iter().map(|(_, len)| len).collect()
        };
        // Direct writes: every segment is whole blocks, its last one zero-padded; zeros
        // are written ahead no further than the segment size (4096 bytes here, which
        // these records never cross).
        let written = sizes();
        assert!(
            written
                .iter()
                .all(|len| len % format::BLOCK_BYTES as u64 == 0),
            "{written:?}"
        );
        assert!(
            written.iter().all(|&len| len <= 4096),
            "zeros past the segment size: {written:?}"
        );

        let (wal, records) = Wal::open(&wal_dir, options(WalMode::Sync, 4096)).unwrap();
        assert_eq!(records, expected(1..=100));
        assert_eq!(wal.last_index(), 100);
        // Opening cut the active segment's padding and zeros ahead; the others keep
        // theirs (zeros written ahead, at most as many bytes as the segment held, and a
        // block), which the log does not count.
        let on_disk = sizes();
        let padding = on_disk.iter().sum::<u64>() - wal.disk_bytes();
        assert!(
            padding <= wal.disk_bytes() + format::BLOCK_BYTES as u64 * on_disk.len() as u64,
            "{padding} bytes past the records in {on_disk:?}"
        );
        // The next write starts inside the active segment's last block: the bytes before
        // it there are read back and written again unchanged.
        append_all(&wal, 101..=120).await;
        wal.append_parts(121, 0, &[b"two ", b"parts"]).unwrap();
        wal.wait_durable(121).await.unwrap();
        wal.close().await.unwrap();

        let (_wal, records) = Wal::open(&wal_dir, options(WalMode::Sync, 4096)).unwrap();
        assert_eq!(records.len(), 121);
        assert_eq!(&records[..120], &expected(1..=120)[..]);
        assert_eq!(&records[120].payload[..], b"two parts");
    });
}

#[test]
fn segments_roll_over_and_are_removed_below_an_index() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1000)).unwrap();
        for index in 1..=50 {
            wal.append(index, 1, &[index as u8; 100]).unwrap();
            wal.wait_durable(index).await.unwrap();
        }
        // 120-byte records, 16-byte header: 8 records per 1000-byte segment.
        let names = storage.file_names(&memory_dir());
        assert_eq!(names.len(), 7);
        assert_eq!(names[0], segment_file_name(1));
        assert_eq!(names[1], segment_file_name(9));
        assert_eq!(
            wal.disk_bytes(),
            (SEGMENT_HEADER_BYTES * 7 + record_bytes(100) * 50) as u64
        );

        assert_eq!(
            wal.remove_segments_below(9).unwrap(),
            1,
            "segment 1..=8 goes"
        );
        assert_eq!(wal.remove_segments_below(9).unwrap(), 0);
        assert_eq!(
            wal.remove_segments_below(20).unwrap(),
            1,
            "9..=16 goes, 17..=24 holds 20"
        );
        assert_eq!(
            wal.remove_segments_below(50).unwrap(),
            4,
            "the active one holds 50 and stays"
        );
        assert_eq!(
            storage.file_names(&memory_dir()),
            vec![segment_file_name(49)]
        );
        wal.close().await.unwrap();

        let (wal, records) = open_memory(&storage, options(WalMode::Sync, 1000)).unwrap();
        assert_eq!(
            records
                .iter()
                .map(|record| record.index)
                .collect::<Vec<_>>(),
            vec![49, 50]
        );
        assert_eq!(wal.last_index(), 50);

        // Everything flushed and durable: the idle active segment goes too, and the next
        // append starts a new one.
        assert_eq!(wal.remove_segments_below(51).unwrap(), 1);
        assert!(storage.file_names(&memory_dir()).is_empty());
        assert_eq!(wal.disk_bytes(), 0);
        wal.append(51, 1, b"after").unwrap();
        wal.wait_durable(51).await.unwrap();
        assert_eq!(
            storage.file_names(&memory_dir()),
            vec![segment_file_name(51)]
        );
        wal.close().await.unwrap();
        let (_, records) = open_memory(&storage, options(WalMode::Sync, 1000)).unwrap();
        assert_eq!(
            records.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![51]
        );
    });
}

#[test]
fn torn_tail_at_every_offset_recovers_a_prefix() {
    let storage = MemoryStorage::new();
    let segment_bytes = 2000;
    let last_index = 24;
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, segment_bytes)).unwrap();
        append_all(&wal, 1..=last_index).await;
        wal.close().await.unwrap();
    });
    let names = storage.file_names(&memory_dir());
    assert!(names.len() >= 2, "the tail segment follows a full one");
    let last_path = memory_dir().join(names.last().unwrap());
    let last_first_index: u64 = recovery::parse_segment_file_name(names.last().unwrap()).unwrap();
    let intact = storage.contents(&last_path).unwrap();
    // Record end offsets in the last segment, to know which records a cut keeps.
    let mut ends = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    for index in last_first_index..=last_index {
        offset += record_bytes(payload(index).len());
        ends.push((index, offset));
    }
    assert_eq!(offset, intact.len());

    for cut in 0..intact.len() {
        let storage = storage_with_files(&storage, &names);
        storage.set_contents(&last_path, intact[..cut].to_vec());
        let kept_last = ends
            .iter()
            .take_while(|(_, end)| *end <= cut)
            .last()
            .map_or(last_first_index - 1, |(index, _)| *index);
        block_on(async {
            let (wal, records) = open_memory(&storage, options(WalMode::Sync, segment_bytes))
                .unwrap_or_else(|error| panic!("cut at {cut}: {error}"));
            assert_eq!(records, expected(1..=kept_last), "cut at {cut}");
            assert_eq!(wal.last_index(), kept_last, "cut at {cut}");
            // The log goes on from the cut.
            append_all(&wal, kept_last + 1..=kept_last + 2).await;
            wal.close().await.unwrap();
            let (_, records) =
                open_memory(&storage, options(WalMode::Sync, segment_bytes)).unwrap();
            assert_eq!(
                records,
                expected(1..=kept_last + 2),
                "cut at {cut}, reopened"
            );
        });
    }
}

/// A copy of `storage`'s segment files in a fresh storage.
fn storage_with_files(storage: &MemoryStorage, names: &[String]) -> MemoryStorage {
    let copy = MemoryStorage::new();
    for name in names {
        let path = memory_dir().join(name);
        copy.set_contents(&path, storage.contents(&path).unwrap());
    }
    copy
}

/// A memory storage holding one segment with records 1..=10.
fn ten_records() -> MemoryStorage {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        append_all(&wal, 1..=10).await;
        wal.close().await.unwrap();
    });
    storage
}

/// The bytes of a segment holding one record, index 11, after `ten_records`'.
fn segment_of_record_11() -> Vec<u8> {
    let mut segment = Vec::new();
    format::encode_segment_header(&mut segment, format::SEGMENT_FLAG_ZEROS_AHEAD);
    format::encode_record(&mut segment, 11, 0, &[b"x"]);
    segment
}

/// `segment` with its header's flags replaced by `flags` (the header's checksum redone).
fn with_segment_flags(mut segment: Vec<u8>, flags: u16) -> Vec<u8> {
    let mut header = Vec::new();
    format::encode_segment_header(&mut header, flags);
    segment[..SEGMENT_HEADER_BYTES].copy_from_slice(&header);
    segment
}

#[test]
fn a_flipped_bit_before_a_valid_record_is_corruption() {
    let storage = ten_records();
    let path = memory_dir().join(segment_file_name(1));
    let intact = storage.contents(&path).unwrap();
    let record_5_offset = SEGMENT_HEADER_BYTES
        + (1..5)
            .map(|index| record_bytes(payload(index).len()))
            .sum::<usize>();
    let record_5_bytes = record_bytes(payload(5).len());
    for bit in 0..record_5_bytes * 8 {
        let mut damaged = intact.clone();
        damaged[record_5_offset + bit / 8] ^= 1 << (bit % 8);
        storage.set_contents(&path, damaged);
        match open_memory(&storage, options(WalMode::Sync, 1 << 20)) {
            Err(StorageError::Corruption {
                path: at, offset, ..
            }) => {
                assert_eq!(at, path);
                assert_eq!(offset, record_5_offset as u64, "bit {bit}");
            }
            Err(other) => panic!("bit {bit}: {other}"),
            Ok(_) => panic!("bit {bit}: damage not detected"),
        }
    }
    // Damage anywhere in a segment that is not the last is corruption too, even its tail.
    storage.set_contents(&path, intact[..intact.len() - 1].to_vec());
    storage.set_contents(
        &memory_dir().join(segment_file_name(11)),
        segment_of_record_11(),
    );
    assert!(matches!(
        open_memory(&storage, options(WalMode::Sync, 1 << 20)),
        Err(StorageError::Corruption { .. })
    ));
}

/// Direct writes leave a segment's last block zero-padded: that is a clean end in any
/// segment, with nothing cut; zeros that do not end on a block boundary, or (in a segment
/// without the zeros-ahead flag) a block of them, are still damage.
#[test]
fn zero_padding_to_a_block_boundary_is_a_clean_segment_end() {
    let storage = ten_records();
    let first = memory_dir().join(segment_file_name(1));
    let second = memory_dir().join(segment_file_name(11));
    let intact = storage.contents(&first).unwrap();
    let padded = |mut bytes: Vec<u8>| {
        bytes.resize(bytes.len().next_multiple_of(format::BLOCK_BYTES), 0);
        bytes
    };
    let next = segment_of_record_11();
    storage.set_contents(&first, padded(intact.clone()));
    storage.set_contents(&second, padded(next.clone()));
    let recovered = recovery::recover(&storage, &memory_dir()).unwrap();
    assert_eq!(recovered.records.len(), 11);
    assert_eq!(recovered.truncated_bytes, 0);
    assert_eq!(recovered.segments[0].bytes, intact.len() as u64);
    assert_eq!(recovered.segments[1].bytes, next.len() as u64);

    // Zeros ending off a block boundary in a segment that is not the last: corruption.
    let mut short = intact.clone();
    short.resize(intact.len() + 7, 0);
    storage.set_contents(&first, short);
    assert!(matches!(
        recovery::recover(&storage, &memory_dir()),
        Err(StorageError::Corruption { .. })
    ));
    // A whole block of zeros after the last record is not padding either, in a segment
    // written without zeros ahead (as before the flag existed).
    let mut long = padded(with_segment_flags(intact, 0));
    long.resize(long.len() + format::BLOCK_BYTES, 0);
    storage.set_contents(&first, long);
    assert!(matches!(
        recovery::recover(&storage, &memory_dir()),
        Err(StorageError::Corruption { .. })
    ));
}

/// A segment with the zeros-ahead flag may end in any number of zero blocks after its
/// last record: a clean end, with nothing cut and nothing lost, in any segment. A record
/// after such zeros is still damage, and unknown flags are refused.
#[test]
fn zeros_written_ahead_are_a_clean_segment_end() {
    let storage = ten_records();
    let first = memory_dir().join(segment_file_name(1));
    let second = memory_dir().join(segment_file_name(11));
    let intact = storage.contents(&first).unwrap();
    let ahead = |bytes: &[u8], blocks: usize| {
        let mut bytes = bytes.to_vec();
        let len = bytes.len().next_multiple_of(format::BLOCK_BYTES) + blocks * format::BLOCK_BYTES;
        bytes.resize(len, 0);
        bytes
    };
    let next = segment_of_record_11();
    storage.set_contents(&first, ahead(&intact, 2048));
    storage.set_contents(&second, ahead(&next, 3));
    let recovered = recovery::recover(&storage, &memory_dir()).unwrap();
    assert_eq!(recovered.records.len(), 11);
    assert_eq!(recovered.truncated_bytes, 0);
    assert_eq!(recovered.segments[0].bytes, intact.len() as u64);
    assert_eq!(recovered.segments[1].bytes, next.len() as u64);

    // A record after the zeros, in a segment that is not the last: corruption.
    let mut record_after = ahead(&intact, 2);
    format::encode_record(&mut record_after, 11, 0, &[b"x"]);
    record_after.resize(record_after.len().next_multiple_of(format::BLOCK_BYTES), 0);
    storage.set_contents(&first, record_after);
    assert!(matches!(
        recovery::recover(&storage, &memory_dir()),
        Err(StorageError::Corruption { .. })
    ));

    // A flag this code does not know: the header is refused.
    storage.set_contents(&first, with_segment_flags(intact, 0x8001));
    assert!(matches!(
        recovery::recover(&storage, &memory_dir()),
        Err(StorageError::Corruption { .. })
    ));
}

#[test]
fn indexes_must_increase_across_the_log() {
    let storage = MemoryStorage::new();
    let mut bytes = Vec::new();
    format::encode_segment_header(&mut bytes, format::SEGMENT_FLAG_ZEROS_AHEAD);
    format::encode_record(&mut bytes, 5, 0, &[b"a"]);
    format::encode_record(&mut bytes, 5, 0, &[b"b"]);
    storage.set_contents(&memory_dir().join(segment_file_name(5)), bytes);
    assert!(matches!(
        open_memory(&storage, options(WalMode::Sync, 1 << 20)),
        Err(StorageError::Corruption { .. })
    ));

    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        assert!(matches!(
            wal.append(0, 0, b""),
            Err(StorageError::InvalidArgument(_))
        ));
        wal.append(3, 0, b"").unwrap();
        assert!(matches!(
            wal.append(3, 0, b""),
            Err(StorageError::InvalidArgument(_))
        ));
        let too_big = vec![0; RECORD_PAYLOAD_BYTES_MAX + 1];
        assert!(matches!(
            wal.append(4, 0, &too_big),
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(matches!(
            wal.wait_durable(9).await,
            Err(StorageError::InvalidArgument(_))
        ));
        wal.wait_durable(3).await.unwrap();
        wal.close().await.unwrap();
    });
}

/// Spawns `count` tasks that each append the next index and wait for it.
fn spawn_appenders(
    wal: &Wal,
    next_index: &Rc<Cell<u64>>,
    count: usize,
) -> Vec<monoio::task::JoinHandle<crate::error::Result<()>>> {
    (0..count)
        .map(|_| {
            let wal = wal.clone();
            let next_index = next_index.clone();
            monoio::spawn(async move {
                let index = next_index.get() + 1;
                next_index.set(index);
                wal.append(index, 0, &[7; 9000])?;
                wal.wait_durable(index).await
            })
        })
        .collect()
}

#[test]
fn one_tick_of_appends_is_one_write_and_one_fsync() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 64 << 20)).unwrap();
        let next_index = Rc::new(Cell::new(0));
        for appender in spawn_appenders(&wal, &next_index, 64) {
            appender.await.unwrap();
        }
        assert_eq!((storage.writes(), storage.syncs()), (1, 1));
        assert_eq!(wal.durable_index(), 64);

        // I/O that takes a few ticks: appends arriving while a batch is in flight gather in
        // the next one, so two waves make two batches.
        storage.set_io_delay_ticks(3);
        let first = spawn_appenders(&wal, &next_index, 10);
        monoio::spawn(async {}).await; // let the first wave append and its batch leave
        let second = spawn_appenders(&wal, &next_index, 10);
        for appender in first.into_iter().chain(second) {
            appender.await.unwrap();
        }
        assert_eq!((storage.writes(), storage.syncs()), (3, 3));
        assert_eq!(wal.durable_index(), 84);
        wal.close().await.unwrap();
    });
}

#[test]
fn synchronous_writes_need_no_fsync_and_survive_a_power_loss() {
    let storage = MemoryStorage::new();
    storage.set_durable_writes(true);
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        let next_index = Rc::new(Cell::new(0));
        for appender in spawn_appenders(&wal, &next_index, 16) {
            appender.await.unwrap();
        }
        assert_eq!((storage.writes(), storage.syncs()), (1, 0));
        assert_eq!(wal.durable_index(), 16);
        drop(wal);
    });
    storage.crash();
    block_on(async {
        let (wal, records) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        assert_eq!(records.len(), 16);
        assert_eq!(wal.last_index(), 16);
        // A synchronous write whose flush fails: its bytes reached the file but the log
        // does not count them durable, and turns read-only.
        storage.inject(Fault::SyncError);
        wal.append(17, 0, b"lost").unwrap();
        let error = wal.wait_durable(17).await.unwrap_err();
        assert!(matches!(error, StorageError::ReadOnly(_)), "{error:?}");
        assert_eq!(wal.durable_index(), 16);
    });
    storage.crash();
    block_on(async {
        let (_wal, records) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        assert_eq!(
            records.len(),
            16,
            "the unflushed write was lost in the power loss"
        );
    });
}

/// Whether the file system holding `dir` takes direct I/O at all (tmpfs may not).
fn direct_io_works(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.join("direct-io-probe"))
        .is_ok()
}

#[test]
fn direct_segments_opened_for_synchronous_writes_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let direct_works = direct_io_works(dir.path());
    block_on(async {
        for (index, (direct_io, synchronous_writes)) in
            [(true, true), (true, false), (false, true), (false, false)]
                .into_iter()
                .enumerate()
        {
            let storage = MonoioStorage {
                direct_io,
                synchronous_writes,
                ..MonoioStorage::default()
            };
            let path = dir.path().join(format!("segment-{index}"));
            let file = storage.open_file(&path).await.unwrap();
            assert_eq!(
                file.writes_are_durable(),
                direct_io && synchronous_writes && direct_works,
                "direct {direct_io}, synchronous {synchronous_writes}"
            );
        }
    });
}

/// `wal_file_size_threshold_in_byte` has no upper bound: a segment size too large to round
/// to a block is no limit on the zeros ahead, not an overflow.
#[test]
fn a_segment_size_too_large_to_round_limits_no_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment");
    let storage = MonoioStorage {
        zeros_ahead_limit: u64::MAX,
        ..MonoioStorage::default()
    };
    let len = block_on(async {
        let file = storage.open_file(&path).await.unwrap();
        let (result, _) = file.write_all_at(vec![b'a'; 100], 0, 0).await;
        result.unwrap();
        file.settle().await;
        std::fs::metadata(&path).unwrap().len()
    });
    if direct_io_works(dir.path()) {
        // The block written and as many zeros after it.
        assert_eq!(len, 2 * format::BLOCK_BYTES as u64);
    }
}

#[test]
fn direct_writes_in_place_and_through_the_staging_copy_land_alike() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment");
    let storage = MonoioStorage::default();
    let contents = block_on(async {
        let file = storage.open_file(&path).await.unwrap();
        // A plain buffer, mid-block at its end: the staging copy.
        let (result, _) = file.write_all_at(vec![b'a'; 100], 0, 0).await;
        result.unwrap();
        // A batch buffer as the log makes it: the block's first 100 bytes go into its
        // room and it is written where it lies (when the file takes direct I/O).
        let (mut batch, start) = super::log::batch_buffer(Vec::new(), 100);
        batch.extend_from_slice(&[b'b'; 5000]);
        let (result, returned) = file.write_all_at(batch, start, 100).await;
        result.unwrap();
        assert_eq!(
            returned.len(),
            start + 5000,
            "the batch comes back as it went"
        );
        if file.writes_are_durable() {
            assert_eq!(
                &returned[start - 100..start],
                &[b'a'; 100][..],
                "not in place"
            );
        }
        // A buffer with no room before the data: the staging copy again.
        let (result, _) = file.write_all_at(b"xxccc".to_vec(), 2, 5100).await;
        result.unwrap();
        std::fs::read(&path).unwrap()
    });
    let mut expected = vec![b'a'; 100];
    expected.extend_from_slice(&[b'b'; 5000]);
    expected.extend_from_slice(b"ccc");
    assert_eq!(&contents[..expected.len()], &expected[..]);
    // Zeros after the data (to the block's end, and written ahead).
    assert!(contents[expected.len()..].iter().all(|&byte| byte == 0));
}

/// Zeros are written ahead of a direct segment's end by a task beside the commits, in
/// steps of up to 8 MiB. Records of up to 700 KiB, some committed alone and most in bursts
/// of batches, outrun the steps: whatever the interleaving, no zero
/// lands on a record (all read back after a reopen), and once the log closes the file holds
/// zeros, and only zeros, past its last record.
#[test]
fn zeros_written_beside_the_log_never_cover_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let record = |index: u64| -> Vec<u8> {
        let len = 3000 + (index as usize * 7919) % (700 << 10);
        (0..len)
            .map(|byte| (byte as u64 * 31 + index) as u8)
            .collect()
    };
    let count = 80;
    let (data_end, file_len, contents) = block_on(async {
        let (wal, _) = Wal::open(&wal_dir, options(WalMode::Sync, 1 << 30)).unwrap();
        for index in 1..=count {
            wal.append(index, 0, &record(index)).unwrap();
            // The first records wait for their commits one by one, while the steps are
            // small; the rest go in bursts of batches written back to back, racing the
            // steps of zeros.
            if index < 20 || index % 20 == 0 {
                wal.wait_durable(index).await.unwrap();
            }
        }
        wal.wait_durable(count).await.unwrap();
        let segments = wal.segment_spans();
        assert_eq!(segments.len(), 1);
        wal.close().await.unwrap();
        let path = wal_dir.join(segment_file_name(1));
        let contents = std::fs::read(&path).unwrap();
        (segments[0].bytes, contents.len() as u64, contents)
    });
    assert!(data_end > 24 << 20, "the records span several steps");
    assert!(file_len >= data_end);
    assert!(
        contents[data_end as usize..].iter().all(|&byte| byte == 0),
        "only zeros after the last record"
    );
    if direct_io_works(dir.path()) {
        // Half a step at least (4 MiB, past 8 MiB of records) was left ahead when the
        // last write ended.
        assert!(
            file_len - data_end >= 4 << 20,
            "{} bytes of zeros ahead",
            file_len - data_end
        );
    }
    block_on(async {
        let (_wal, records) = Wal::open(&wal_dir, options(WalMode::Sync, 1 << 30)).unwrap();
        assert_eq!(records.len(), count as usize);
        for (position, read) in records.iter().enumerate() {
            let index = position as u64 + 1;
            assert_eq!(read.index, index);
            assert!(
                read.payload[..] == record(index)[..],
                "record {index} changed"
            );
        }
    });
}

#[test]
fn a_record_larger_than_a_batch_is_written_whole_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    // Larger than a group-commit batch, as a 20 MiB tablet (a legal frame) is.
    let huge: Vec<u8> = (0..crate::config::WAL_BATCH_BYTES_MAX + (4 << 20))
        .map(|i| (i % 251) as u8)
        .collect();
    block_on(async {
        let (wal, _) = Wal::open(&wal_dir, options(WalMode::Sync, 64 << 20)).unwrap();
        wal.append(1, 0, b"before").unwrap();
        wal.append(2, 0, &huge).unwrap();
        wal.append(3, 0, b"after").unwrap();
        wal.wait_durable(3).await.unwrap();
        wal.close().await.unwrap();

        let (_wal, records) = Wal::open(&wal_dir, options(WalMode::Sync, 64 << 20)).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(&records[0].payload[..], b"before");
        assert!(
            records[1].payload[..] == huge[..],
            "the huge record changed"
        );
        assert_eq!(&records[2].payload[..], b"after");
    });
}

#[test]
fn a_batch_is_capped_at_the_batch_limit() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 30)).unwrap();
        let payload = vec![1; 1 << 20];
        let count = 2 * crate::config::WAL_BATCH_BYTES_MAX / payload.len();
        for index in 1..=count as u64 {
            wal.append(index, 0, &payload).unwrap();
        }
        wal.wait_durable(count as u64).await.unwrap();
        assert!(storage.writes() >= 3, "{} writes", storage.writes());
        wal.close().await.unwrap();
    });
}

#[test]
fn an_fsync_error_makes_the_log_read_only() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        append_all(&wal, 1..=3).await;
        storage.inject(Fault::SyncError);
        let next_index = Rc::new(Cell::new(3));
        for appender in spawn_appenders(&wal, &next_index, 8) {
            let error = appender.await.unwrap_err();
            assert!(
                matches!(&error, StorageError::ReadOnly(reason) if reason.contains("fdatasync")),
                "{error}"
            );
        }
        assert!(matches!(
            wal.append(100, 0, b"late"),
            Err(StorageError::ReadOnly(_))
        ));
        // What was durable before the failure stays acknowledged.
        wal.wait_durable(3).await.unwrap();
        assert!(matches!(
            wal.wait_durable(5).await,
            Err(StorageError::ReadOnly(_))
        ));
        assert!(wal.failure().is_some());
        assert!(matches!(wal.close().await, Err(StorageError::ReadOnly(_))));
    });
}

#[test]
fn a_torn_write_makes_the_log_read_only_and_recovery_cuts_it() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        append_all(&wal, 1..=3).await;
        storage.inject(Fault::TornWrite { bytes: 50 });
        wal.append(4, 4, &payload(4)).unwrap();
        wal.append(5, 5, &payload(5)).unwrap();
        assert!(matches!(
            wal.wait_durable(5).await,
            Err(StorageError::ReadOnly(_))
        ));
        assert!(matches!(
            wal.append(6, 0, b""),
            Err(StorageError::ReadOnly(_))
        ));
        assert!(wal.close().await.is_err());

        let (wal, records) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        assert_eq!(records, expected(1..=3));
        append_all(&wal, 4..=5).await;
        wal.close().await.unwrap();
    });
}

#[test]
fn async_mode_acknowledges_writes_and_syncs_on_a_timer() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Async, 1 << 20)).unwrap();
        wal.append(1, 0, b"one").unwrap();
        wal.wait_durable(1).await.unwrap();
        assert_eq!(wal.written_index(), 1);
        assert_eq!(storage.writes(), 1);
        // The timer fires every 5 ms; wait (boundedly) for it rather than assume timing.
        for _ in 0..10_000 {
            if wal.durable_index() == 1 {
                break;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(wal.durable_index(), 1);
        assert!(storage.syncs() >= 1);
        wal.append(2, 0, b"two").unwrap();
        wal.close().await.unwrap();
        // Close writes and syncs what is pending.
        let path = memory_dir().join(segment_file_name(1));
        storage.crash();
        assert_eq!(
            storage.contents(&path).unwrap().len(),
            SEGMENT_HEADER_BYTES + record_bytes(3) * 2
        );
    });
}

#[test]
fn off_mode_writes_nothing() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Off, 1 << 20)).unwrap();
        for index in 1..=10 {
            wal.append(index, 0, b"payload").unwrap();
        }
        wal.wait_durable(10).await.unwrap();
        assert_eq!(wal.durable_index(), 10);
        assert_eq!(wal.disk_bytes(), 0);
        wal.close().await.unwrap();
    });
    assert_eq!((storage.writes(), storage.syncs()), (0, 0));
    assert!(storage.file_names(&memory_dir()).is_empty());
}

#[test]
fn dropping_the_log_still_writes_what_is_pending() {
    let storage = MemoryStorage::new();
    block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
        append_all(&wal, 1..=2).await;
        wal.append(3, 3, &payload(3)).unwrap();
        drop(wal);
        for _ in 0..10 {
            monoio::spawn(async {}).await;
        }
    });
    storage.crash();
    let (_, records) = open_memory(&storage, options(WalMode::Sync, 1 << 20)).unwrap();
    assert_eq!(records, expected(1..=3));
}

fn check_crash(segment_bytes: u64, payload_sizes: &[usize], fault: Option<(usize, Fault)>) {
    let storage = MemoryStorage::new();
    let acknowledged = block_on(async {
        let (wal, _) = open_memory(&storage, options(WalMode::Sync, segment_bytes)).unwrap();
        let mut acknowledged = 0;
        for (position, size) in payload_sizes.iter().enumerate() {
            if let Some((at, fault)) = fault
                && at == position
            {
                storage.inject(fault);
            }
            let index = position as u64 + 1;
            if wal.append(index, 0, &vec![index as u8; *size]).is_err() {
                break;
            }
            if position % 3 == 2 || position + 1 == payload_sizes.len() {
                if wal.wait_durable(index).await.is_err() {
                    break;
                }
                acknowledged = index;
            }
        }
        acknowledged
    });
    storage.crash();
    let (_, records) = open_memory(&storage, options(WalMode::Sync, segment_bytes)).unwrap();
    // Recovery returns a gap-free prefix of what was appended, holding everything
    // acknowledged.
    for (position, record) in records.iter().enumerate() {
        let index = position as u64 + 1;
        assert_eq!(record.index, index);
        assert_eq!(record.payload.len(), payload_sizes[position]);
        assert!(record.payload.iter().all(|byte| *byte == index as u8));
    }
    assert!(
        records.len() as u64 >= acknowledged,
        "lost acknowledged records"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn crashes_keep_acknowledged_records(
        segment_bytes in 64u64..2000,
        payload_sizes in proptest::collection::vec(0usize..400, 1..40),
        fault_at in 0usize..40,
        fault_kind in 0u8..3,
        torn_bytes in 0usize..500,
    ) {
        let fault = match fault_kind {
            0 => Fault::WriteError,
            1 => Fault::TornWrite { bytes: torn_bytes },
            _ => Fault::SyncError,
        };
        check_crash(segment_bytes, &payload_sizes, Some((fault_at, fault)));
        check_crash(segment_bytes, &payload_sizes, None);
    }
}

#[test]
fn paths_are_inside_the_directory() {
    assert_eq!(
        memory_dir().join(segment_file_name(1)).parent(),
        Some(Path::new("/wal"))
    );
}

#[test]
fn an_aligned_position_puts_its_block_on_an_aligned_address() {
    for address in [0, 1, 17, 4095, 4096, 4097, 123_456] {
        for in_block in [0, 1, 100, 4095] {
            let position = format::aligned_position(address, in_block);
            assert!(position >= in_block && position < in_block + format::BLOCK_BYTES);
            assert_eq!((address + position - in_block) % format::BLOCK_BYTES, 0);
        }
    }
}
