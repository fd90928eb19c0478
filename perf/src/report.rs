//! Figures: latency percentiles, CPU time from /proc, and the printed and JSON reports
//! (iot-benchmark's Result and Latency matrices).

use std::time::Duration;

use serde::Serialize;

/// Latencies of one operation, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    micros: Vec<u64>,
}

impl Latencies {
    pub fn record(&mut self, elapsed: Duration) {
        self.micros.push(elapsed.as_micros() as u64);
    }

    /// avg, p50, p90, p99, p999, max in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let pick = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1000.0
        };
        LatencySummary {
            count: sorted.len(),
            avg_ms: if sorted.is_empty() {
                0.0
            } else {
                sorted.iter().sum::<u64>() as f64 / sorted.len() as f64 / 1000.0
            },
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            p999_ms: pick(0.999),
            max_ms: sorted.last().map_or(0.0, |&m| m as f64 / 1000.0),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// CPU seconds process `pid` has used, every thread's (`runtime::process_cpu_time`: the
/// process's CPU clock in nanoseconds, /proc's 10 ms ticks where that cannot be read).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    iotdb_runtime::process_cpu_time(pid)
        .ok()
        .map(|time| time.as_secs_f64())
}

/// The write phase's figures, ingest only and through the flush.
#[derive(Clone, Debug, Serialize)]
pub struct WriteResult {
    pub points: u64,
    pub requests: u64,
    pub errors: u64,
    /// Until the last write was acknowledged (the data in WAL and memtables).
    pub ingest: Phase,
    /// Until every point was in sealed files: the ingest plus the final flush (sealing,
    /// encoding, file fsyncs). The figure to compare with stores that compress as they
    /// ingest.
    pub with_flush: Phase,
    pub latency: LatencySummary,
    /// Each device's first write (which creates its series and data partitions) apart
    /// from the rest; `None` where the run does not time it (the storage mode).
    pub first_round: Option<FirstRound>,
}

/// The first round of the writes: the first request of each device in sending order.
/// Against a fresh server each creates its device's series (and, for a new series slot,
/// its data partition) through the control plane, whose journals are synced before the
/// write is answered; later requests find them.
#[derive(Clone, Debug, Serialize)]
pub struct FirstRound {
    pub requests: u64,
    /// From the first request sent until every first-round request was acknowledged.
    pub seconds: f64,
    /// The other requests' points over the rest of the ingest (from the end of the first
    /// round to the last acknowledgement; later requests sent before the first round
    /// ended count here too).
    pub later_points_per_second: f64,
}

/// Wall time and server CPU of one stretch of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub seconds: f64,
    pub points_per_second: f64,
    pub server_cpu_seconds: Option<f64>,
    /// `None` without a CPU reading, or with a reading of 0 (a run too short for the CPU
    /// clock read, 10 ms where only /proc's ticks could be).
    pub points_per_server_cpu_second: Option<f64>,
}

impl Phase {
    pub fn new(points: u64, elapsed: Duration, cpu: Option<f64>) -> Phase {
        let seconds = elapsed.as_secs_f64();
        Phase {
            seconds,
            points_per_second: points as f64 / seconds.max(1e-9),
            server_cpu_seconds: cpu,
            // A reading of zero is a run shorter than the clock CPU time is counted in
            // (10 ms ticks where only /proc could be read), not an infinite rate: no figure.
            points_per_server_cpu_second: cpu.filter(|c| *c > 0.0).map(|c| points as f64 / c),
        }
    }
}

impl WriteResult {
    pub fn new(
        points: u64,
        requests: u64,
        errors: u64,
        ingest: Phase,
        with_flush: Phase,
        latency: &Latencies,
    ) -> WriteResult {
        WriteResult {
            points,
            requests,
            errors,
            ingest,
            with_flush,
            latency: latency.summary(),
            first_round: None,
        }
    }
}

/// How much the clients kept in flight.
#[derive(Clone, Debug, Serialize)]
pub struct Concurrency {
    pub clients: usize,
    /// Connections each client holds (one per shard of the server).
    pub connections_per_client: usize,
    /// Requests each client keeps in flight over its connections.
    pub pipeline: usize,
    /// `clients × pipeline`: write requests in flight at once.
    pub requests_in_flight: usize,
}

/// How the clients reached the servers, and how many writes that sent straight to the
/// leader of their region group.
#[derive(Clone, Debug, Serialize)]
pub struct Routing {
    /// `one`, `spread` or `shard-aware` (`--route`).
    pub route: String,
    /// What the route means, for the summary.
    pub description: String,
    /// Write requests whose first send went to the DataNode and core leading their region
    /// group (by the client's route table); the others were forwarded to the leading
    /// DataNode, or handed to its core, by the server that received them.
    pub direct_requests: u64,
    pub requests: u64,
}

/// A data directory's bytes by kind of file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskBytes {
    /// Sealed files (`*.tsf`).
    pub sealed: u64,
    /// WAL segments (files under a `wal/` directory).
    pub wal: u64,
    /// Everything else: schema and ConfigNode journals and snapshots, manifests, MODS,
    /// format stamps.
    pub other: u64,
}

impl DiskBytes {
    /// Every byte.
    pub fn total(&self) -> u64 {
        self.sealed + self.wal + self.other
    }
}

/// Everything one run measured, for `--json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    pub routing: Option<Routing>,
    /// CPU seconds of each server process from the start of the writes through the
    /// flush (and a cluster's catch-up), by name (`ConfigNode 1`, `DataNode 2`).
    pub server_cpu_by_process: Vec<(String, f64)>,
    pub workload: serde_json::Value,
    /// The headline: points per second through the flush to sealed files.
    pub points_per_second: Option<f64>,
    /// The headline: points per server CPU-second through the flush to sealed files.
    pub points_per_server_cpu_second: Option<f64>,
    pub write: Option<WriteResult>,
    pub concurrency: Option<Concurrency>,
    /// Points whose series matched the generator (count, time range, value checksum)
    /// after the flush.
    pub verified_points: Option<u64>,
    /// The same after a restart of the server (or a reopen of the region).
    pub verified_after_restart: Option<u64>,
    /// Every byte of the data directory right after the final flush.
    pub disk_bytes: Option<u64>,
    /// The same by kind of file.
    pub disk_bytes_by_kind: Option<DiskBytes>,
    pub bytes_per_point: Option<f64>,
    /// The same once compaction has settled (every time partition in one file).
    pub disk_bytes_compacted: Option<u64>,
    pub bytes_per_point_compacted: Option<f64>,
    /// How long the wait for compaction took; `None` with figures above means the wait hit
    /// its bound and the compacted figure is what the directory held then.
    pub compaction_settle_seconds: Option<f64>,
    pub queries: Vec<(String, LatencySummary)>,
}

impl Report {
    /// Records the write figures and copies the through-the-flush ones to the headline.
    pub fn set_write(&mut self, write: WriteResult) {
        self.points_per_second = Some(write.with_flush.points_per_second);
        self.points_per_server_cpu_second = write.with_flush.points_per_server_cpu_second;
        self.write = Some(write);
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

impl Report {
    /// Prints the Result and Latency matrices, ending with `points/s: N`.
    pub fn print(&self) {
        println!();
        println!(
            "---------------------------------------- Result Matrix ----------------------------------------"
        );
        println!(
            "{:<12} {:>14} {:>12} {:>10} {:>12} {:>16} {:>18}",
            "operation",
            "points",
            "requests",
            "errors",
            "seconds",
            "points/s",
            "points/server-cpu-s"
        );
        if let Some(w) = &self.write {
            for (name, phase) in [("write", &w.ingest), ("write+flush", &w.with_flush)] {
                println!(
                    "{:<12} {:>14} {:>12} {:>10} {:>12.3} {:>16} {:>18}",
                    name,
                    w.points,
                    w.requests,
                    w.errors,
                    phase.seconds,
                    fmt_rate(phase.points_per_second),
                    phase
                        .points_per_server_cpu_second
                        .map_or("-".into(), fmt_rate)
                );
            }
        }
        println!(
            "---------------------------------------- Latency Matrix (ms) -----------------------------------"
        );
        println!(
            "{:<28} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "count", "avg", "p50", "p90", "p99", "p999", "max"
        );
        let mut rows: Vec<(&str, &LatencySummary)> = Vec::new();
        if let Some(w) = &self.write {
            rows.push(("write", &w.latency));
        }
        rows.extend(self.queries.iter().map(|(n, l)| (n.as_str(), l)));
        for (name, l) in rows {
            println!(
                "{:<28} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name, l.count, l.avg_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        println!(
            "------------------------------------------------------------------------------------------------"
        );
        println!("target: {}", self.mode);
        if let Some(r) = &self.routing {
            println!(
                "route: {} ({}); writes sent straight to the leading DataNode and core: {} of {}",
                r.route, r.description, r.direct_requests, r.requests
            );
        }
        if let Some(c) = &self.concurrency {
            println!(
                "concurrency: {} clients x {} connections (one per core written to), {} requests in flight per client = {} write requests in flight",
                c.clients, c.connections_per_client, c.pipeline, c.requests_in_flight
            );
            if c.pipeline == 1 {
                println!(
                    "synchronous clients: `iotdb-perf floor` with the same workload options shows what this machine allows them (a server that only makes each request durable)"
                );
            }
        }
        if !self.server_cpu_by_process.is_empty() {
            let shares: Vec<String> = self
                .server_cpu_by_process
                .iter()
                .map(|(name, seconds)| format!("{name} {seconds:.3} s"))
                .collect();
            println!("server cpu with flush by process: {}", shares.join(", "));
        }
        if let Some(v) = self.verified_points {
            println!(
                "verified points: {v} (count, time range and value checksum of every series, after the flush)"
            );
        }
        if let Some(v) = self.verified_after_restart {
            println!("verified points after a restart: {v}");
        }
        if let (Some(bytes), Some(per_point)) = (self.disk_bytes, self.bytes_per_point) {
            println!("bytes on disk after flush: {bytes} ({per_point:.3} bytes/point)");
        }
        if let Some(DiskBytes { sealed, wal, other }) = self.disk_bytes_by_kind {
            println!(
                "bytes on disk after flush by kind: sealed files {sealed}, WAL {wal}, \
                 other {other} (schema and ConfigNode journals, manifests, MODS)"
            );
        }
        if let (Some(bytes), Some(per_point)) =
            (self.disk_bytes_compacted, self.bytes_per_point_compacted)
        {
            match self.compaction_settle_seconds {
                Some(seconds) => println!(
                    "bytes on disk after compaction: {bytes} ({per_point:.3} bytes/point, settled in {seconds:.1} s)"
                ),
                None => println!(
                    "bytes on disk after compaction: {bytes} ({per_point:.3} bytes/point, NOT settled: the wait hit its bound)"
                ),
            }
        }
        if let Some(w) = &self.write {
            if let (Some(cpu), Some(per_cpu)) = (
                w.ingest.server_cpu_seconds,
                w.ingest.points_per_server_cpu_second,
            ) {
                println!(
                    "server cpu, ingest only: {cpu:.3} s ({per_cpu:.0} points per server CPU-second)"
                );
            }
            println!("points/s ingest only: {:.0}", w.ingest.points_per_second);
            if let Some(f) = &w.first_round {
                println!(
                    "first round (each device's first write, which creates its series on a \
                     fresh server): {} requests in {:.3} s; later writes at {:.0} points/s",
                    f.requests, f.seconds, f.later_points_per_second
                );
            }
            if let Some(cpu) = w.with_flush.server_cpu_seconds {
                println!("server cpu with flush: {cpu:.3} s");
            }
            if let Some(per_cpu) = w.with_flush.points_per_server_cpu_second {
                println!("points per server CPU-second with flush: {per_cpu:.0}");
            }
            println!("points/s: {:.0}", w.with_flush.points_per_second);
        }
    }
}

/// One headline figure over several runs: the median (the mean of the middle two for an
/// even count), the lowest and the highest, and every run's value in run order.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

impl Spread {
    /// `None` when no run measured the figure.
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
        let runs: Vec<f64> = values.into_iter().flatten().collect();
        if runs.is_empty() {
            return None;
        }
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            runs,
        })
    }
}

/// The headline figures of several runs of one command (`--runs`).
#[derive(Clone, Debug, Serialize)]
pub struct Medians {
    pub runs: usize,
    pub ingest_seconds: Option<Spread>,
    pub with_flush_seconds: Option<Spread>,
    pub points_per_second_ingest: Option<Spread>,
    /// Through the flush: the headline.
    pub points_per_second: Option<Spread>,
    pub server_cpu_seconds_ingest: Option<Spread>,
    pub server_cpu_seconds_with_flush: Option<Spread>,
    pub points_per_server_cpu_second_ingest: Option<Spread>,
    /// Through the flush: the headline.
    pub points_per_server_cpu_second: Option<Spread>,
    pub write_latency_p50_ms: Option<Spread>,
    pub write_latency_p90_ms: Option<Spread>,
    pub write_latency_p99_ms: Option<Spread>,
    pub bytes_per_point: Option<Spread>,
    pub first_round_seconds: Option<Spread>,
    pub later_points_per_second: Option<Spread>,
}

impl Medians {
    pub fn of(reports: &[Report]) -> Medians {
        let writes: Vec<&WriteResult> = reports.iter().filter_map(|r| r.write.as_ref()).collect();
        let figure =
            |f: &dyn Fn(&WriteResult) -> Option<f64>| Spread::of(writes.iter().map(|w| f(w)));
        Medians {
            runs: reports.len(),
            ingest_seconds: figure(&|w| Some(w.ingest.seconds)),
            with_flush_seconds: figure(&|w| Some(w.with_flush.seconds)),
            points_per_second_ingest: figure(&|w| Some(w.ingest.points_per_second)),
            points_per_second: figure(&|w| Some(w.with_flush.points_per_second)),
            server_cpu_seconds_ingest: figure(&|w| w.ingest.server_cpu_seconds),
            server_cpu_seconds_with_flush: figure(&|w| w.with_flush.server_cpu_seconds),
            points_per_server_cpu_second_ingest: figure(&|w| w.ingest.points_per_server_cpu_second),
            points_per_server_cpu_second: figure(&|w| w.with_flush.points_per_server_cpu_second),
            write_latency_p50_ms: figure(&|w| Some(w.latency.p50_ms)),
            write_latency_p90_ms: figure(&|w| Some(w.latency.p90_ms)),
            write_latency_p99_ms: figure(&|w| Some(w.latency.p99_ms)),
            bytes_per_point: Spread::of(reports.iter().map(|r| r.bytes_per_point)),
            first_round_seconds: figure(&|w| w.first_round.as_ref().map(|f| f.seconds)),
            later_points_per_second: figure(&|w| {
                w.first_round.as_ref().map(|f| f.later_points_per_second)
            }),
        }
    }

    /// Prints a line per figure (median, lowest, highest), ending with the medians'
    /// `points per server CPU-second with flush: N` and `points/s: N`, as one run's
    /// summary ends.
    pub fn print(&self) {
        println!();
        println!(
            "---------------------------------- Medians of {} runs ----------------------------------",
            self.runs
        );
        let rows: [(&str, &Option<Spread>, u8); 14] = [
            ("write seconds, ingest only", &self.ingest_seconds, 3),
            (
                "write seconds, through the flush",
                &self.with_flush_seconds,
                3,
            ),
            ("points/s, ingest only", &self.points_per_second_ingest, 0),
            ("points/s, through the flush", &self.points_per_second, 0),
            (
                "server cpu seconds, ingest only",
                &self.server_cpu_seconds_ingest,
                3,
            ),
            (
                "server cpu seconds with flush",
                &self.server_cpu_seconds_with_flush,
                3,
            ),
            (
                "points per server CPU-second, ingest only",
                &self.points_per_server_cpu_second_ingest,
                0,
            ),
            (
                "points per server CPU-second with flush",
                &self.points_per_server_cpu_second,
                0,
            ),
            ("write latency p50 ms", &self.write_latency_p50_ms, 3),
            ("write latency p90 ms", &self.write_latency_p90_ms, 3),
            ("write latency p99 ms", &self.write_latency_p99_ms, 3),
            (
                "bytes on disk per point after flush",
                &self.bytes_per_point,
                3,
            ),
            (
                "write seconds, first round (new devices)",
                &self.first_round_seconds,
                3,
            ),
            (
                "points/s after the first round",
                &self.later_points_per_second,
                0,
            ),
        ];
        println!(
            "{:<44} {:>14} {:>14} {:>14}",
            "figure", "median", "lowest", "highest"
        );
        for (name, spread, decimals) in rows {
            if let Some(s) = spread {
                let d = usize::from(decimals);
                println!(
                    "{name:<44} {:>14.d$} {:>14.d$} {:>14.d$}",
                    s.median, s.min, s.max
                );
            }
        }
        println!(
            "------------------------------------------------------------------------------------------------"
        );
        if let Some(s) = &self.points_per_server_cpu_second {
            println!("points per server CPU-second with flush: {:.0}", s.median);
        }
        if let Some(s) = &self.points_per_second {
            println!("points/s: {:.0}", s.median);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.avg_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn a_spread_takes_the_middle_value_or_the_middle_two() {
        let odd = Spread::of([Some(3.0), None, Some(1.0), Some(2.0)]).expect("values");
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(
            odd.runs,
            [3.0, 1.0, 2.0],
            "in run order, the missing one left out"
        );
        let even = Spread::of([Some(4.0), Some(1.0), Some(3.0), Some(2.0)]).expect("values");
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert!(Spread::of([None, None]).is_none());
    }

    fn report_of(seconds: f64, cpu: Option<f64>) -> Report {
        let points = 1_000_000;
        let mut latencies = Latencies::default();
        latencies.record(Duration::from_secs_f64(seconds / 100.0));
        let mut report = Report::default();
        report.set_write(WriteResult::new(
            points,
            100,
            0,
            Phase::new(
                points,
                Duration::from_secs_f64(seconds * 0.8),
                cpu.map(|c| c * 0.8),
            ),
            Phase::new(points, Duration::from_secs_f64(seconds), cpu),
            &latencies,
        ));
        report.bytes_per_point = Some(seconds);
        report
    }

    #[test]
    fn medians_are_taken_figure_by_figure() {
        let reports = [
            report_of(0.5, Some(0.4)),
            report_of(0.25, None),
            report_of(1.0, Some(0.8)),
        ];
        let medians = Medians::of(&reports);
        assert_eq!(medians.runs, 3);
        let through = medians.with_flush_seconds.expect("every run wrote");
        assert_eq!((through.median, through.min, through.max), (0.5, 0.25, 1.0));
        assert_eq!(
            medians.points_per_second.expect("rates").median,
            2_000_000.0
        );
        // CPU where two of three runs read it: the mean of those two.
        let cpu = medians.server_cpu_seconds_with_flush.expect("two runs");
        assert_eq!(cpu.runs, [0.4, 0.8]);
        assert!((cpu.median - 0.6).abs() < 1e-12);
        assert_eq!(medians.bytes_per_point.expect("bytes").median, 0.5);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }
}
