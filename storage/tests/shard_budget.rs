//! One memtable budget shared by the regions of a shard (`budget::MemoryBudget`): the
//! sum of their memtables, not each one's size, decides when the largest is flushed and
//! when writes wait; a flush gives its bytes back.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use iotdb_storage::{
    MemoryBudget, Region, RegionConfig, StorageError, Tablet, TabletColumn, Values,
};

mod support;
use support::block_on;

/// `rows` points of one int64 series starting at `start`.
fn tablet(start: i64, rows: i64) -> Tablet {
    Tablet {
        device: Arc::from("root.budget.d0"),
        timestamps: (start..start + rows).collect(),
        columns: vec![TabletColumn {
            measurement: Arc::from("s0"),
            values: Values::Int64((start..start + rows).collect()),
            nulls: None,
        }],
    }
}

/// Ticks the region until `done` holds (bounded: a hang fails the test).
async fn tick_until(region: &Region, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        region.tick();
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the condition never held");
}

#[test]
fn regions_sharing_a_budget_flush_when_their_sum_passes_the_threshold() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Memtable columns grow by doubling, so sizes move in powers of two: A stops at
    // 256 KiB, B at 128 KiB, and only their sum reaches 384 KiB.
    const FLUSH_BYTES: usize = 384 << 10;
    let budget = MemoryBudget::new(FLUSH_BYTES, usize::MAX);
    block_on(async {
        let a = Region::open_with_budget(dirs.0.path(), RegionConfig::default(), &budget).unwrap();
        let b = Region::open_with_budget(dirs.1.path(), RegionConfig::default(), &budget).unwrap();
        let mut next = 0;
        // A alone fills more than half the threshold: no flush.
        while a.info().memtable_bytes < FLUSH_BYTES / 2 {
            a.write_durable(&tablet(next, 1000)).await.unwrap();
            next += 1000;
            assert_eq!(
                budget.freezes_requested(),
                0,
                "A alone stays below the threshold"
            );
        }
        let a_bytes = a.info().memtable_bytes;
        assert!(a_bytes < FLUSH_BYTES);
        assert_eq!(a.info().frozen_memtables + a.info().flushes as usize, 0);
        // B adds less than A holds; the sum passes the threshold, though neither alone does.
        let mut b_next = 0;
        while budget.freezes_requested() == 0 {
            b.write_durable(&tablet(b_next, 1000)).await.unwrap();
            b_next += 1000;
            assert!(b.info().memtable_bytes < FLUSH_BYTES);
        }
        assert!(
            b.info().memtable_bytes < a_bytes,
            "B stayed the smaller one"
        );
        // The largest (A) was asked to freeze, and froze in B's write or on its own tick.
        tick_until(&a, || a.info().flushes == 1).await;
        assert_eq!(b.info().flushes + b.info().frozen_memtables as u64, 0);
        // A's flush gave its bytes back: only B's memtable is left in the budget.
        assert_eq!(budget.total_bytes(), b.info().memtable_bytes);
        assert_eq!(a.info().memtable_bytes, 0);
        a.close(false).await.unwrap();
        b.close(false).await.unwrap();
    });
}

#[test]
fn writes_wait_while_the_shard_is_full_and_proceed_after_a_flush() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    const MAX_BYTES: usize = 128 << 10;
    // Never flushes by itself: only the explicit flush below gives bytes back.
    let budget = MemoryBudget::new(usize::MAX, MAX_BYTES);
    block_on(async {
        let a = Region::open_with_budget(dirs.0.path(), RegionConfig::default(), &budget).unwrap();
        let b = Region::open_with_budget(dirs.1.path(), RegionConfig::default(), &budget).unwrap();
        let mut next = 0;
        loop {
            match a.write(&tablet(next, 1000)) {
                Ok(ack) => ack.durable().await.map(|_| ()).unwrap(),
                Err(StorageError::Overloaded { limit_bytes, .. }) => {
                    assert_eq!(limit_bytes, MAX_BYTES);
                    break;
                }
                Err(error) => panic!("{error}"),
            }
            next += 1000;
        }
        // The limit is the shard's: B, empty, is refused too.
        assert_eq!(b.info().memtable_bytes, 0);
        assert!(matches!(
            b.write(&tablet(0, 10)),
            Err(StorageError::Overloaded { .. })
        ));
        // A waiting write does not fail: it waits until A's flush gives bytes back.
        let done = Rc::new(Cell::new(false));
        let waiting = {
            let (b, done) = (b.clone(), done.clone());
            monoio::spawn(async move {
                let ack = b
                    .write_waiting(&tablet(0, 10), Duration::from_secs(60))
                    .await;
                done.set(true);
                ack.map(|ack| ack.index())
            })
        };
        for _ in 0..20 {
            monoio::time::sleep(Duration::from_millis(1)).await;
            a.tick();
        }
        assert!(!done.get(), "the write waits while the shard is full");
        let before = budget.total_bytes();
        a.flush().await.unwrap();
        assert!(
            budget.total_bytes() < before,
            "the flush gave its bytes back"
        );
        assert!(waiting.await.is_ok(), "the write proceeded");
        assert!(b.info().memtable_bytes > 0);
        // Without room it gives up after its wait with the same error as `write`.
        while !budget.is_full() {
            b.write_durable(&tablet(next, 1000)).await.unwrap();
            next += 1000;
        }
        assert!(matches!(
            b.write_waiting(&tablet(0, 10), Duration::from_millis(5))
                .await,
            Err(StorageError::Overloaded { .. })
        ));
        a.close(false).await.unwrap();
        b.close(false).await.unwrap();
    });
}

#[test]
fn closing_a_region_returns_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::new(usize::MAX, usize::MAX);
    block_on(async {
        let region =
            Region::open_with_budget(dir.path(), RegionConfig::default(), &budget).unwrap();
        region.write_durable(&tablet(0, 1000)).await.unwrap();
        assert!(budget.total_bytes() > 0);
        region.close(false).await.unwrap();
    });
    assert_eq!(budget.total_bytes(), 0);
}
