//! Progress of a long phase: a bar redrawn in place on a terminal, a plain line every few
//! seconds otherwise (logs, CI).

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the bar is redrawn on a terminal.
const TERMINAL_PERIOD: Duration = Duration::from_millis(200);
/// How often a plain line is printed when stderr is not a terminal.
const PLAIN_PERIOD: Duration = Duration::from_secs(5);
const BAR_WIDTH: usize = 40;

/// Prints the progress of `done` out of `total` until `done` reaches it; run as a task
/// beside the work.
pub async fn report(label: &'static str, done: Rc<Cell<u64>>, total: u64) {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let period = if terminal {
        TERMINAL_PERIOD
    } else {
        PLAIN_PERIOD
    };
    loop {
        monoio::time::sleep(period).await;
        let now = done.get().min(total);
        let fraction = if total == 0 {
            1.0
        } else {
            now as f64 / total as f64
        };
        let rate = now as f64 / started.elapsed().as_secs_f64().max(1e-9);
        if terminal {
            let filled = (fraction * BAR_WIDTH as f64) as usize;
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
        if now >= total {
            if terminal {
                eprintln!();
            }
            return;
        }
    }
}
