//! Progress of a long phase: a bar redrawn in place on a terminal, a plain line every few
//! seconds otherwise (logs, CI). The final line's rate uses the phase's own elapsed time,
//! handed over by [`Progress::finish`], not the time the reporter happened to wake up.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the reporter looks at the counter (and notices the end).
const TICK: Duration = Duration::from_millis(20);
/// How often the bar is redrawn on a terminal.
const TERMINAL_PERIOD: Duration = Duration::from_millis(200);
/// How often a plain line is printed when stderr is not a terminal.
const PLAIN_PERIOD: Duration = Duration::from_secs(5);
const BAR_WIDTH: usize = 40;

/// A running progress reporter; the work adds to [`Progress::counter`].
pub struct Progress {
    done: Rc<Cell<u64>>,
    finished: Rc<Cell<Option<Duration>>>,
    task: monoio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts reporting `label` towards `total` (run inside the monoio runtime).
    pub fn start(label: &'static str, total: u64) -> Progress {
        let done = Rc::new(Cell::new(0));
        let finished = Rc::new(Cell::new(None));
        let task = monoio::spawn(report(label, done.clone(), finished.clone(), total));
        Progress {
            done,
            finished,
            task,
        }
    }

    /// The counter the work adds its progress to.
    pub fn counter(&self) -> Rc<Cell<u64>> {
        self.done.clone()
    }

    /// Ends the phase, which took `elapsed`, and waits for the final line.
    pub async fn finish(self, elapsed: Duration) {
        self.finished.set(Some(elapsed));
        self.task.await;
    }
}

async fn report(
    label: &'static str,
    done: Rc<Cell<u64>>,
    finished: Rc<Cell<Option<Duration>>>,
    total: u64,
) {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let period = if terminal {
        TERMINAL_PERIOD
    } else {
        PLAIN_PERIOD
    };
    let mut last_line = started;
    loop {
        monoio::time::sleep(TICK).await;
        let end = finished.get();
        if end.is_none() && last_line.elapsed() < period {
            continue;
        }
        last_line = Instant::now();
        let now = done.get().min(total);
        let elapsed = end.unwrap_or_else(|| started.elapsed());
        let fraction = if total == 0 {
            1.0
        } else {
            now as f64 / total as f64
        };
        let rate = now as f64 / elapsed.as_secs_f64().max(1e-9);
        if terminal {
            let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
            eprint!(
                "\r{label} [{}{}] {:5.1}% {:.2} M/s",
                "#".repeat(filled),
                " ".repeat(BAR_WIDTH - filled),
                fraction * 100.0,
                rate / 1e6
            );
            let _ = std::io::stderr().flush();
        } else {
            eprintln!(
                "{label}: {now} of {total} ({:.1}%), {:.2} M/s",
                fraction * 100.0,
                rate / 1e6
            );
        }
        if end.is_some() {
            if terminal {
                eprintln!();
            }
            return;
        }
    }
}
