//! The memtable memory budget of one shard, shared by every region the shard owns.
//!
//! ```text
//!   region A ─┐ report(active, frozen) after every write and tick
//!   region B ─┼──────────────────────────────► MemoryBudget (shard k)
//!   region C ─┘                                 Σ active  ≥ flush_bytes → ask the largest
//!        ▲                                                  active memtable(s) to freeze
//!        │ take_freeze_request (same write, or next tick)   Σ all ≥ max_bytes → writes of
//!        └──────────────────────────────────────────────── every region wait, then 606
//! ```
//!
//! Memory is a property of the core, not of a region: a shard with one busy region and
//! three idle ones should give the busy one the room, and a shard with many moderately busy
//! regions must flush before their sum, not each one's size, exhausts memory. So:
//! - the **flush threshold** applies to the sum of the *active* memtables: when it is
//!   passed, the largest active memtables are asked to freeze (which hands them to a
//!   flush) until the rest is below the threshold. Frozen memtables do not count here, or
//!   a slow flush would make every later write freeze another tiny memtable;
//! - the **hard limit** applies to everything held (active and frozen, until the flush is
//!   installed): past it, every write of the shard is refused with `Overloaded`, or waits
//!   in [`crate::Region::write_waiting`] until a flush gives bytes back.
//!
//! A region opened without a shared budget gets a private one built from its own
//! `memtable_flush_bytes` / `memtable_bytes_max`, which is exactly the old per-region rule.
//!
//! A shard view: `Rc`, `!Send`, used only on the shard's core; no atomics, no locks.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::config::SHARD_FLUSH_FRACTION_DIVISOR;

/// The budget of one shard. Cheap to clone; clones are one budget.
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Rc<Inner>,
}

struct Inner {
    flush_bytes: usize,
    max_bytes: usize,
    accounts: RefCell<Vec<Rc<AccountCell>>>,
    /// Σ active bytes over all accounts.
    active_bytes: Cell<usize>,
    /// Σ active + frozen bytes over all accounts.
    total_bytes: Cell<usize>,
    /// Tasks waiting for the total to fall below `max_bytes`.
    waiters: RefCell<Vec<Waker>>,
    /// Freezes the budget asked for (for tests and metrics).
    freezes_requested: Cell<u64>,
}

/// One region's usage, as the budget sees it.
#[derive(Default)]
struct AccountCell {
    active_bytes: Cell<usize>,
    frozen_bytes: Cell<usize>,
    /// The budget asked this region to freeze its active memtable.
    freeze_requested: Cell<bool>,
}

/// A region's share of a budget. Dropping it (the region closes) gives its bytes back.
pub struct BudgetAccount {
    budget: MemoryBudget,
    cell: Rc<AccountCell>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MemoryBudget")
            .field("flush_bytes", &self.inner.flush_bytes)
            .field("max_bytes", &self.inner.max_bytes)
            .field("total_bytes", &self.inner.total_bytes.get())
            .finish()
    }
}

impl MemoryBudget {
    /// A budget that asks for flushes once the active memtables hold `flush_bytes` together
    /// and refuses writes once all memtables hold `max_bytes`.
    pub fn new(flush_bytes: usize, max_bytes: usize) -> MemoryBudget {
        MemoryBudget {
            inner: Rc::new(Inner {
                flush_bytes,
                max_bytes,
                accounts: RefCell::new(Vec::new()),
                active_bytes: Cell::new(0),
                total_bytes: Cell::new(0),
                waiters: RefCell::new(Vec::new()),
                freezes_requested: Cell::new(0),
            }),
        }
    }

    /// A shard's budget from its `shard_write_memory_bytes`: the hard limit, with flushes
    /// starting at a fixed fraction of it (`config::SHARD_FLUSH_FRACTION_DIVISOR`).
    pub fn for_shard(write_memory_bytes: usize) -> MemoryBudget {
        MemoryBudget::new(
            write_memory_bytes / SHARD_FLUSH_FRACTION_DIVISOR,
            write_memory_bytes,
        )
    }

    /// Opens an account for one region.
    pub fn account(&self) -> BudgetAccount {
        let cell = Rc::new(AccountCell::default());
        self.inner.accounts.borrow_mut().push(Rc::clone(&cell));
        BudgetAccount {
            budget: self.clone(),
            cell,
        }
    }

    pub fn flush_bytes(&self) -> usize {
        self.inner.flush_bytes
    }

    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// Bytes in active memtables, over every region of the budget.
    pub fn active_bytes(&self) -> usize {
        self.inner.active_bytes.get()
    }

    /// Bytes in all memtables (active and frozen), over every region of the budget.
    pub fn total_bytes(&self) -> usize {
        self.inner.total_bytes.get()
    }

    /// Freezes asked for so far.
    pub fn freezes_requested(&self) -> u64 {
        self.inner.freezes_requested.get()
    }

    /// Whether writes must be refused (or wait): the hard limit is reached.
    pub fn is_full(&self) -> bool {
        self.total_bytes() >= self.inner.max_bytes
    }

    /// Resolves once the total is below the hard limit (at once if it is).
    pub async fn wait_for_room(&self) {
        poll_fn(|context| {
            if !self.is_full() {
                return Poll::Ready(());
            }
            self.inner
                .waiters
                .borrow_mut()
                .push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Applies one account's new usage, wakes the waiters if there is room now, and asks
    /// the largest active memtables to freeze while the active sum is over the threshold.
    fn update(&self, cell: &AccountCell, active_bytes: usize, frozen_bytes: usize) {
        let inner = &self.inner;
        let (old_active, old_frozen) = (cell.active_bytes.get(), cell.frozen_bytes.get());
        cell.active_bytes.set(active_bytes);
        cell.frozen_bytes.set(frozen_bytes);
        inner
            .active_bytes
            .set(inner.active_bytes.get() - old_active + active_bytes);
        inner
            .total_bytes
            .set(inner.total_bytes.get() - old_active - old_frozen + active_bytes + frozen_bytes);
        self.check_invariants();
        if !self.is_full() {
            let waiters = std::mem::take(&mut *inner.waiters.borrow_mut());
            waiters.into_iter().for_each(Waker::wake);
        }
        self.request_freezes();
    }

    /// While the active bytes not already asked to freeze reach the threshold, asks the
    /// largest such memtable to freeze.
    fn request_freezes(&self) {
        let inner = &self.inner;
        let accounts = inner.accounts.borrow();
        let mut unrequested: usize = accounts
            .iter()
            .filter(|account| !account.freeze_requested.get())
            .map(|account| account.active_bytes.get())
            .sum();
        while unrequested >= inner.flush_bytes && unrequested > 0 {
            let Some(largest) = accounts
                .iter()
                .filter(|account| !account.freeze_requested.get())
                .max_by_key(|account| account.active_bytes.get())
            else {
                break;
            };
            largest.freeze_requested.set(true);
            inner
                .freezes_requested
                .set(inner.freezes_requested.get() + 1);
            unrequested -= largest.active_bytes.get();
        }
    }

    fn check_invariants(&self) {
        debug_assert_eq!(
            self.inner.total_bytes.get(),
            self.inner
                .accounts
                .borrow()
                .iter()
                .map(|account| account.active_bytes.get() + account.frozen_bytes.get())
                .sum::<usize>(),
            "the budget's total is the sum of its accounts"
        );
    }
}

impl BudgetAccount {
    /// Tells the budget what the region holds now.
    pub fn report(&self, active_bytes: usize, frozen_bytes: usize) {
        self.budget.update(&self.cell, active_bytes, frozen_bytes);
    }

    /// Whether the budget asked this region to freeze its active memtable; clears the ask.
    pub fn take_freeze_request(&self) -> bool {
        self.cell.freeze_requested.replace(false)
    }

    /// The budget this account draws on.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

impl Drop for BudgetAccount {
    fn drop(&mut self) {
        self.budget.update(&self.cell, 0, 0);
        self.budget
            .inner
            .accounts
            .borrow_mut()
            .retain(|account| !Rc::ptr_eq(account, &self.cell));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_active_memtables_are_asked_to_freeze_once_the_sum_passes_the_threshold() {
        let budget = MemoryBudget::new(100, 1000);
        let (a, b, c) = (budget.account(), budget.account(), budget.account());
        a.report(40, 0);
        b.report(50, 0);
        assert!(
            !a.take_freeze_request() && !b.take_freeze_request(),
            "90 < 100"
        );
        c.report(30, 0);
        // 120 ≥ 100: b (50) goes; 70 left, below the threshold.
        assert!(b.take_freeze_request());
        assert!(!a.take_freeze_request() && !c.take_freeze_request());
        assert_eq!(budget.freezes_requested(), 1);
        // b froze: its bytes move to frozen, the total stays.
        b.report(0, 50);
        assert_eq!((budget.active_bytes(), budget.total_bytes()), (70, 120));
    }

    #[test]
    fn bytes_come_back_when_a_flush_is_installed_or_a_region_closes() {
        let budget = MemoryBudget::new(1000, 100);
        let a = budget.account();
        let b = budget.account();
        a.report(30, 70);
        b.report(10, 0);
        assert!(budget.is_full());
        a.report(30, 0);
        assert_eq!(budget.total_bytes(), 40);
        assert!(!budget.is_full());
        drop(a);
        assert_eq!(budget.total_bytes(), 10);
        drop(b);
        assert_eq!((budget.active_bytes(), budget.total_bytes()), (0, 0));
    }

    #[test]
    fn for_shard_flushes_at_a_fraction_of_the_limit() {
        let budget = MemoryBudget::for_shard(3 << 20);
        assert_eq!(budget.max_bytes(), 3 << 20);
        assert_eq!(
            budget.flush_bytes(),
            (3 << 20) / SHARD_FLUSH_FRACTION_DIVISOR
        );
    }
}
