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
    waiters: Mutex<Waiters>,
}

/// The registered wakers. A waiting future owns one slot, named by its [`WaitKey`], and
/// frees it when it completes or is dropped, so futures that are created and dropped in a
/// loop (a `select!` over a receive and a stop signal) leave nothing behind.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free_slots: Vec<usize>,
    /// Bumped by every `notify_all`, which empties the list; a key from an older generation
    /// names a slot that was already woken and cleared.
    generation: u64,
}

/// A future's registration in a [`WaitList`].
#[derive(Debug)]
pub(crate) struct WaitKey {
    slot: usize,
    generation: u64,
}

impl WaitList {
    /// Registers `waker` to be woken by the next `notify_all`, in the slot `key` names if it
    /// is still registered, in a new slot otherwise.
    ///
    /// The caller must re-check its condition after this returns and before it returns
    /// `Poll::Pending`; that re-check is what closes the race with a concurrent notifier.
    pub(crate) fn register(&self, key: &mut Option<WaitKey>, waker: &Waker) {
        {
            let mut waiters = self.lock();
            let generation = waiters.generation;
            match key {
                Some(registered) if registered.generation == generation => {
                    let slot = &mut waiters.slots[registered.slot];
                    if !slot
                        .as_ref()
                        .is_some_and(|existing| existing.will_wake(waker))
                    {
                        *slot = Some(waker.clone());
                    }
                }
                _ => {
                    let slot = match waiters.free_slots.pop() {
                        Some(slot) => {
                            waiters.slots[slot] = Some(waker.clone());
                            slot
                        }
                        None => {
                            waiters.slots.push(Some(waker.clone()));
                            waiters.slots.len() - 1
                        }
                    };
                    *key = Some(WaitKey { slot, generation });
                }
            }
            self.waiting.store(true, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
    }

    /// Frees the slot `key` names, if it was not already woken. Called by a future that
    /// completes or is dropped.
    pub(crate) fn deregister(&self, key: &mut Option<WaitKey>) {
        let Some(registered) = key.take() else { return };
        let mut waiters = self.lock();
        if registered.generation == waiters.generation {
            assert!(
                waiters.slots[registered.slot].is_some(),
                "wait slot freed twice"
            );
            waiters.slots[registered.slot] = None;
            waiters.free_slots.push(registered.slot);
        }
    }

    /// Wakes every registered task. The caller must have made the condition true before.
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if !self.waiting.load(Ordering::Relaxed) {
            return;
        }
        let slots = {
            let mut waiters = self.lock();
            self.waiting.store(false, Ordering::Relaxed);
            waiters.generation += 1;
            waiters.free_slots.clear();
            std::mem::take(&mut waiters.slots)
        };
        // Wake outside the lock: a remote wake sends to another thread and writes an eventfd.
        for waker in slots.into_iter().flatten() {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // The critical sections leave the slots consistent at every step that can panic (none
        // but the double-free assert), so a poisoned lock still guards a usable list.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn registered_count(&self) -> usize {
        self.lock().slots.iter().flatten().count()
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
        let (mut first_key, mut second_key) = (None, None);
        let first_waker = Waker::from(first.clone());
        list.register(&mut first_key, &first_waker);
        list.register(&mut first_key, &first_waker);
        list.register(&mut second_key, &Waker::from(second.clone()));
        assert_eq!(list.registered_count(), 2);
        list.notify_all();
        list.notify_all();
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(list.registered_count(), 0);
        // Keys from before the notification are stale: deregistering them is a no-op, and
        // registering again takes a fresh slot.
        list.deregister(&mut first_key);
        list.register(&mut second_key, &Waker::from(second.clone()));
        assert_eq!(list.registered_count(), 1);
    }

    #[test]
    fn futures_created_and_dropped_in_a_loop_leave_no_waker_behind() {
        let list = WaitList::default();
        let wake = Arc::new(CountingWake(AtomicUsize::new(0)));
        let waker = Waker::from(wake.clone());
        for _ in 0..1000 {
            let mut key = None;
            list.register(&mut key, &waker);
            list.deregister(&mut key);
        }
        assert_eq!(list.registered_count(), 0);
        list.notify_all();
        assert_eq!(wake.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn notify_without_waiters_does_nothing() {
        let list = WaitList::default();
        list.notify_all();
        assert_eq!(list.registered_count(), 0);
    }
}
