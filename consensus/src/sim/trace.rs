//! The event trace of a run, folded into a hash so that two runs can be compared cheaply.
//!
//! Every event the scheduler processes and every fault it decides is recorded as a few
//! words. Same seed and same code ⇒ the same hash; `SIM_TRACE=1` also prints each event
//! to stderr, to read a failing seed's run.

/// The running trace of one simulation.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    events: u64,
    print: bool,
}

/// Environment variable that prints every traced event to stderr.
pub const TRACE_ENV: &str = "SIM_TRACE";

impl Trace {
    pub fn new() -> Trace {
        Trace {
            hash: 0xCBF2_9CE4_8422_2325,
            events: 0,
            print: std::env::var_os(TRACE_ENV).is_some_and(|value| value != "0"),
        }
    }

    /// Folds one event into the hash; `describe` is only called when printing.
    pub fn record(&mut self, words: &[u64], describe: impl FnOnce() -> String) {
        for &word in words {
            self.hash = (self.hash ^ word).wrapping_mul(0x0000_0100_0000_01B3);
            self.hash ^= self.hash >> 29;
        }
        self.events += 1;
        if self.print {
            eprintln!("sim #{:<7} {}", self.events, describe());
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Events recorded so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}
