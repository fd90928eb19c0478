//! Time as state machines see it: a monotonic millisecond count and named one-shot timers.

use std::collections::BTreeMap;
use std::time::Instant;

use super::TimerId;

/// Monotonic time and timers.
///
/// `now_ms` counts from an arbitrary origin (the simulation's start, the process's start)
/// and never goes back; it is not wall-clock time and must not be persisted as such.
pub trait Clock {
    /// Milliseconds since the clock's origin.
    fn now_ms(&self) -> u64;
    /// Arms `timer` to fire `after_ms` from now, replacing an earlier setting of it.
    fn set_timer(&mut self, timer: TimerId, after_ms: u64);
    /// Disarms `timer`; nothing happens if it is not armed.
    fn cancel_timer(&mut self, timer: TimerId);
}

/// The real clock: `Instant` since construction, and a timer table the driver polls.
///
/// Owned by the loop (shard) that drives the node; the driver calls [`SystemClock::expired`]
/// each tick and delivers the timers it returns.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    /// Armed timers and the `now_ms` at which each fires.
    timers: BTreeMap<TimerId, u64>,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
            timers: BTreeMap::new(),
        }
    }

    /// Disarms and returns the timers due at `now_ms()`, earliest first.
    pub fn expired(&mut self) -> Vec<TimerId> {
        let now_ms = self.now_ms();
        let mut due: Vec<(u64, TimerId)> = self
            .timers
            .iter()
            .filter(|&(_, &at_ms)| at_ms <= now_ms)
            .map(|(&timer, &at_ms)| (at_ms, timer))
            .collect();
        due.sort();
        for (_, timer) in &due {
            self.timers.remove(timer);
        }
        due.into_iter().map(|(_, timer)| timer).collect()
    }

    /// The earliest armed deadline, for the driver to sleep until.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.timers.values().copied().min()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set_timer(&mut self, timer: TimerId, after_ms: u64) {
        let at_ms = self.now_ms().saturating_add(after_ms);
        self.timers.insert(timer, at_ms);
    }

    fn cancel_timer(&mut self, timer: TimerId) {
        self.timers.remove(&timer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_timers_fire_once_and_in_order() {
        let mut clock = SystemClock::new();
        clock.set_timer(TimerId(2), 0);
        clock.set_timer(TimerId(1), 0);
        clock.set_timer(TimerId(3), 3_600_000);
        clock.cancel_timer(TimerId(1));
        assert_eq!(clock.expired(), vec![TimerId(2)]);
        assert!(clock.expired().is_empty());
        assert!(clock.next_deadline_ms().is_some());
        let first = clock.now_ms();
        assert!(clock.now_ms() >= first);
    }
}
