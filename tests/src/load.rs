//! [`Writer`]: a background client that writes rounds of points while a test changes the
//! cluster under it (migrations, removals), and [`check_rounds`], which reads every
//! acknowledged round back.
//!
//! Round `r` is one point per device: `{database}.d{i}.s1` at time `r` with the value
//! `r * 100 + i`, so a read-back knows exactly what each acknowledged point must hold.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iotdb_net::BlockingClient;

use crate::cluster::time_values;

/// Devices a round writes to.
pub const DEVICES: usize = 8;

/// Device `index` of `database`.
pub fn device(database: &str, index: usize) -> String {
    format!("{database}.d{index}")
}

/// The value round `round` writes to device `index`.
pub fn round_value(round: i64, index: usize) -> i64 {
    round * 100 + index as i64
}

/// A client that writes rounds through one DataNode until stopped, retrying a refused
/// round (a leader moving refuses writes for a moment) for at most `patience`; it keeps
/// the rounds it saw acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts writing rounds `first`, `first + 1`, ... to `database` through `address`.
    pub fn start(address: SocketAddr, database: &str, first: i64, patience: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            let database = database.to_string();
            std::thread::spawn(move || {
                write_rounds(address, &database, first, patience, &stop, &acked)
            })
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// How many rounds were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the writer and returns the acknowledged rounds (it panics when a round
    /// stayed refused for longer than its patience).
    pub fn finish(mut self) -> BTreeSet<i64> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the writer panicked");
        self.acked.lock().unwrap().clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn write_rounds(
    address: SocketAddr,
    database: &str,
    first: i64,
    patience: Duration,
    stop: &AtomicBool,
    acked: &Mutex<BTreeSet<i64>>,
) {
    let mut round = first;
    let mut client: Option<BlockingClient> = None;
    let mut refused_since: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        let statements: Vec<String> = (0..DEVICES)
            .map(|index| {
                format!(
                    "INSERT INTO {}(time, s1) VALUES ({round}, {})",
                    device(database, index),
                    round_value(round, index)
                )
            })
            .collect();
        let outcome = (|| -> anyhow::Result<()> {
            if client.is_none() {
                client = Some(BlockingClient::connect(
                    address,
                    &iotdb_net::ClientConfig::default(),
                )?);
            }
            let c = client.as_mut().expect("connected");
            for statement in &statements {
                c.execute_sql(statement)?;
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                acked.lock().unwrap().insert(round);
                round += 1;
                refused_since = None;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                let since = *refused_since.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < patience,
                    "round {round} refused for {patience:?}: {error}"
                );
                client = None;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Every acknowledged round of every device of `database` reads back through `client`
/// with its exact value (a round being written when the writer stopped may be partly
/// there too); a query refused for a moment (a leader moving) is asked again for at most
/// `patience`. Returns how many points were checked.
pub fn check_rounds(
    client: &mut BlockingClient,
    database: &str,
    acked: &BTreeSet<i64>,
    patience: Duration,
) -> usize {
    let mut checked = 0;
    for index in 0..DEVICES {
        let statement = format!("SELECT s1 FROM {}", device(database, index));
        let started = Instant::now();
        let result = loop {
            match client.execute_sql(&statement) {
                Ok(result) => break result,
                Err(error) => assert!(
                    started.elapsed() < patience,
                    "{statement}: refused for {patience:?}: {error}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let points = time_values(&result);
        for round in acked {
            assert_eq!(
                points.get(round),
                Some(&round_value(*round, index)),
                "{statement}: acknowledged round {round} is missing or wrong"
            );
            checked += 1;
        }
    }
    checked
}
