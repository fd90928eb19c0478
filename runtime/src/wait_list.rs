//! A list of tasks waiting for a condition that another thread makes true.
//!
//! This is the wake-up half of the mesh: a shard that finds its inbox empty (or a queue full)
//! registers its task's waker here, and the shard that changes the queue calls
//! [`WaitList::notify_all`]. The waker is monoio's: with monoio's `sync` feature, waking a
//! task owned by another thread sends the waker to that thread and unparks its driver (an
//! eventfd the io_uring or epoll loop watches), so a parked shard wakes up within one
//! syscall.
//!
//! The fast path of `notify_all`, when nobody waits, is one fence and one atomic load; the
//! mutex is touched only when a task actually waits, which on the data path means an idle
//! receiver or a sender under back-pressure.
//!
//! Lost wake-ups are excluded with the classic store-fence-load pairing: the waiter publishes
//! `waiting = true`, fences, then re-checks its condition; the notifier makes the condition
//! true, fences, then loads `waiting`. With both fences sequentially consistent, at least one
//! side sees the other's store.

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

/// Tasks (of any thread) waiting for one condition. Shared by the waiting shard and the
/// shards that notify it; safe to touch from any core.
#[derive(Default)]
pub(crate) struct WaitList {
    waiting: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl WaitList {
    /// Registers `waker` to be woken by the next `notify_all`.
    ///
    /// The caller must re-check its condition after this returns and before it returns
    /// `Poll::Pending`; that re-check is what closes the race with a concurrent notifier.
    pub(crate) fn register(&self, waker: &Waker) {
        {
            let mut wakers = self.lock();
            // A task polled again while still waiting must not be queued twice; the list
            // stays bounded by the number of distinct waiting tasks.
            if !wakers.iter().any(|registered| registered.will_wake(waker)) {
                wakers.push(waker.clone());
            }
            self.waiting.store(true, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
    }

    /// Wakes every registered task. The caller must have made the condition true before.
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if !self.waiting.load(Ordering::Relaxed) {
            return;
        }
        let wakers = {
            let mut wakers = self.lock();
            self.waiting.store(false, Ordering::Relaxed);
            std::mem::take(&mut *wakers)
        };
        // Wake outside the lock: a remote wake sends to another thread and writes an eventfd.
        for waker in wakers {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        // The critical sections only push, take or compare wakers, none of which leaves the
        // vector half-updated, so a poisoned lock still guards a consistent list.
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn registered_count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct CountingWake(AtomicUsize);

    impl Wake for CountingWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn notify_wakes_each_registered_task_once_and_clears_the_list() {
        let list = WaitList::default();
        let first = Arc::new(CountingWake(AtomicUsize::new(0)));
        let second = Arc::new(CountingWake(AtomicUsize::new(0)));
        let first_waker = Waker::from(first.clone());
        list.register(&first_waker);
        list.register(&first_waker);
        list.register(&Waker::from(second.clone()));
        assert_eq!(list.registered_count(), 2);
        list.notify_all();
        list.notify_all();
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(list.registered_count(), 0);
    }

    #[test]
    fn notify_without_waiters_does_nothing() {
        let list = WaitList::default();
        list.notify_all();
        assert_eq!(list.registered_count(), 0);
    }
}
