//! [`TestServer`]: one `iotdb-server standalone` child process for a test.
//!
//! Each server gets its own temporary data directory and its own loopback address
//! (127.0.0.x, x from a per-process counter, port 0 so the kernel picks a free port), so
//! tests in one binary and several test binaries can run at once. Startup waits for the
//! ready line on stdout ([`iotdb_node::server::READY_LINE_PREFIX`]); stderr (the server's
//! log) goes to a file that is printed when the test panics. Dropping a server kills it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iotdb_net::{BlockingClient, ClientConfig};
use iotdb_node::cluster::confignode_service::CONFIGNODE_READY_PREFIX;
use iotdb_node::server::READY_LINE_PREFIX;

/// How long a server may take to print its ready line (a debug build opening many regions
/// on a loaded 2-core machine is slow; a hang still ends the test).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a clean shutdown (flush and close of every region) may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of the server log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 300;

/// Loopback hosts handed out so far in this process.
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

/// Builds [`server_options!`](crate::server_options)-style options; the binary path must
/// come from the integration test (`env!("CARGO_BIN_EXE_iotdb-server-under-test")`).
#[macro_export]
macro_rules! server_options {
    () => {
        $crate::ServerOptions::new(env!("CARGO_BIN_EXE_iotdb-server-under-test"))
    };
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub binary: PathBuf,
    /// Shards (`--cores`).
    pub cores: usize,
    /// `sync`, `async` or `off` (`--wal-mode`).
    pub wal_mode: String,
    /// Contents of a TOML file passed as `--config`, if any.
    pub config_toml: Option<String>,
    /// `--rpc-port 0` (the server picks the port) instead of a port the harness found
    /// free on the server's loopback host.
    pub kernel_port: bool,
    /// Extra environment variables of the process (e.g. `IOTDB_KILL_POINT`).
    pub env: Vec<(String, String)>,
    /// The data directory, when not `data/` in the server's temporary directory (a test
    /// that puts it on a small file system of its own).
    pub data_dir: Option<PathBuf>,
    /// `standalone`, `confignode` or `datanode`.
    pub role: Role,
    /// `--set KEY=VALUE` items, in order.
    pub sets: Vec<String>,
}

/// Which `iotdb-server` subcommand a test server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    ConfigNode,
    DataNode,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::ConfigNode => "confignode",
            Role::DataNode => "datanode",
        }
    }
}

impl ServerOptions {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            cores: 1,
            wal_mode: "sync".to_owned(),
            config_toml: None,
            kernel_port: false,
            env: Vec::new(),
            data_dir: None,
            role: Role::Standalone,
            sets: Vec::new(),
        }
    }

    /// Runs `role` instead of `standalone`.
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Adds `--set key=value`.
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.sets.push(format!("{key}={value}"));
        self
    }

    /// Puts the data directory at `dir` instead of inside the server's temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Starts with `--rpc-port 0`: the server picks the port and reports it.
    pub fn kernel_port(mut self) -> Self {
        self.kernel_port = true;
        self
    }

    pub fn cores(mut self, cores: usize) -> Self {
        self.cores = cores;
        self
    }

    pub fn wal_mode(mut self, wal_mode: &str) -> Self {
        self.wal_mode = wal_mode.to_owned();
        self
    }

    pub fn config_toml(mut self, toml: &str) -> Self {
        self.config_toml = Some(toml.to_owned());
        self
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running (or stopped) server process and the directory it owns.
pub struct TestServer {
    options: ServerOptions,
    /// Holds `data/`, `server.toml` and `server.stderr.log`; removed on drop.
    root: tempfile::TempDir,
    ip: Ipv4Addr,
    /// The bound address; restarts reuse its port so route tables stay valid.
    address: SocketAddr,
    shard_count: usize,
    child: Option<Child>,
    /// Between [`TestServer::launch_on`] and [`TestServer::wait_ready`]: the ready lines
    /// the stdout reader forwards, and the port asked for.
    starting: Option<(mpsc::Receiver<String>, u16)>,
}

impl TestServer {
    /// Starts a server on a fresh data directory and waits until it accepts clients.
    pub fn start(options: ServerOptions) -> anyhow::Result<TestServer> {
        Self::start_on(next_loopback_host(), options)
    }

    /// [`TestServer::start`] on a given loopback host (a cluster node whose internal
    /// address was chosen before it starts).
    pub fn start_on(ip: Ipv4Addr, options: ServerOptions) -> anyhow::Result<TestServer> {
        let mut server = Self::launch_on(ip, options)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts the process as [`TestServer::start_on`] does but returns at once (a DataNode
    /// started before its seed ConfigNode); [`TestServer::wait_ready`] waits for it.
    pub fn launch_on(ip: Ipv4Addr, options: ServerOptions) -> anyhow::Result<TestServer> {
        let root = tempfile::Builder::new()
            .prefix("iotdb-test-")
            .tempdir()
            .context("creating the server's temporary directory")?;
        let mut server = TestServer {
            options,
            root,
            ip,
            address: SocketAddr::new(IpAddr::V4(ip), 0),
            shard_count: 0,
            child: None,
            starting: None,
        };
        let port = if server.options.kernel_port {
            0
        } else {
            free_port(ip)?
        };
        server.launch(port)?;
        Ok(server)
    }

    /// The client address (`127.0.0.x:port`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Shards the server reported on its ready line.
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    pub fn data_dir(&self) -> PathBuf {
        self.options
            .data_dir
            .clone()
            .unwrap_or_else(|| self.root.path().join("data"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.stderr.log")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// A blocking client authenticated as root/root.
    pub fn client(&self) -> anyhow::Result<BlockingClient> {
        self.client_with(&ClientConfig::default())
    }

    pub fn client_with(&self, config: &ClientConfig) -> anyhow::Result<BlockingClient> {
        BlockingClient::connect(self.address, config)
            .with_context(|| format!("connecting to {}", self.address))
    }

    /// Resident memory of the process (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("the server is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading /proc/<pid>/status")?;
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .context("no VmRSS line")?;
        let kib: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .context("parsing VmRSS")?;
        Ok(kib * 1024)
    }

    /// Clean shutdown: SIGTERM, then waits for the process and requires exit status 0.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the server is not running")?;
        let pid = child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill -TERM")?;
        if !signalled.success() {
            bail!("kill -TERM {pid} failed: {signalled}");
        }
        let status = wait_with_deadline(&mut child, STOP_TIMEOUT)?;
        if !status.success() {
            bail!(
                "the server exited with {status} after SIGTERM; log tail:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// SIGKILL: the process dies at once, without flushing anything.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the server is not running")?;
        child.kill().context("sending SIGKILL")?;
        child.wait().context("waiting for the killed server")?;
        Ok(())
    }

    /// The options later restarts use (e.g. to drop an environment variable).
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.options
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("the server is not running")?;
        wait_with_deadline(&mut child, timeout)
    }

    /// Starts the process again on the same data directory, address and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("restart while the server still runs: stop or kill it first");
        }
        self.child = None;
        self.launch(self.address.port())?;
        self.wait_ready()
    }

    /// The last [`LOG_TAIL_LINES`] lines of the server log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            // The tail of a large log is all we print; reading 1 MiB from the end suffices.
            let length = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(length.saturating_sub(1 << 20)));
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn launch(&mut self, port: u16) -> anyhow::Result<()> {
        let data_dir = self.data_dir();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the server log")?;
        let mut command = Command::new(&self.options.binary);
        command
            .arg(self.options.role.subcommand())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--rpc-address", &self.ip.to_string()])
            .args(["--rpc-port", &port.to_string()])
            .args(["--cores", &self.options.cores.to_string()])
            .args(["--wal-mode", &self.options.wal_mode])
            .env("NO_COLOR", "1")
            .envs(self.options.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for item in &self.options.sets {
            command.args(["--set", item]);
        }
        if let Some(toml) = &self.options.config_toml {
            let path = self.root.path().join("server.toml");
            std::fs::write(&path, toml).context("writing the server configuration")?;
            command.arg("--config").arg(path);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.options.binary.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (sender, receiver) = mpsc::channel();
        // Reads stdout to its end so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(READY_LINE_PREFIX) || line.starts_with(CONFIGNODE_READY_PREFIX)
                {
                    let _ = sender.send(line);
                }
            }
        });
        self.child = Some(child);
        self.starting = Some((receiver, port));
        Ok(())
    }

    /// Waits (at most [`READY_TIMEOUT`]) for the ready line of the process launched last.
    pub fn wait_ready(&mut self) -> anyhow::Result<()> {
        let (receiver, port) = self.starting.take().context("no start is under way")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let line = loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if !self.is_running() {
                        bail!(
                            "the server exited before it was ready; log tail:\n{}",
                            self.log_tail()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed without a ready line: the process is exiting.
                    if let Some(child) = self.child.as_mut() {
                        let _ = wait_with_deadline(child, STOP_TIMEOUT);
                    }
                    bail!(
                        "the server exited before it was ready; log tail:\n{}",
                        self.log_tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "the server printed no ready line within {READY_TIMEOUT:?}; log tail:\n{}",
                        self.log_tail()
                    )
                }
            }
        };
        if let Some(rest) = line.strip_prefix(CONFIGNODE_READY_PREFIX) {
            // `node <id> on <address>`: a ConfigNode serves no clients.
            let address = rest
                .split_once(" on ")
                .and_then(|(_, address)| address.parse::<SocketAddr>().ok())
                .with_context(|| format!("malformed ConfigNode ready line {line:?}"))?;
            self.address = address;
            self.shard_count = 0;
            return Ok(());
        }
        let (address, shards) = parse_ready_line(&line)?;
        if address.ip() != IpAddr::V4(self.ip) || (port != 0 && address.port() != port) {
            bail!("asked for {}:{port}, the server bound {address}", self.ip);
        }
        if shards != self.options.cores {
            bail!(
                "asked for {} cores, the server runs {shards} shards",
                self.options.cores
            );
        }
        self.address = address;
        self.shard_count = shards;
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- server log ({}) ----\n{}\n---- end of server log ----",
                self.log_path().display(),
                self.log_tail()
            );
        }
    }
}

/// `iotdb-server ready: clients on 127.0.0.5:40123 (2 shards)` → address and shard count.
pub fn parse_ready_line(line: &str) -> anyhow::Result<(SocketAddr, usize)> {
    let rest = line
        .strip_prefix(READY_LINE_PREFIX)
        .context("not a ready line")?;
    let (address, shards) = rest
        .split_once(" (")
        .with_context(|| format!("malformed ready line {line:?}"))?;
    let address: SocketAddr = address
        .parse()
        .with_context(|| format!("address in ready line {line:?}"))?;
    let shards: usize = shards
        .trim_end_matches(')')
        .trim_end_matches("shards")
        .trim()
        .parse()
        .with_context(|| format!("shard count in ready line {line:?}"))?;
    Ok((address, shards))
}

/// 127.0.0.x with x in 2..=251, spread by process id so concurrent test binaries rarely
/// share a host (sharing is harmless: ports are picked by the kernel).
/// A loopback host of its own for the next server of this process.
pub fn next_loopback_host() -> Ipv4Addr {
    let base = std::process::id().wrapping_mul(37);
    let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
    let x = 2 + (base.wrapping_add(n) % 250);
    Ipv4Addr::new(127, 0, 0, x as u8)
}

/// A port free on `ip` right now. The host is (almost always) this test's alone, so the
/// port stays free until the server binds it.
pub fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((ip, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the server")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server did not exit within {timeout:?} of SIGTERM (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_parses() {
        let line = format!("{READY_LINE_PREFIX}127.0.0.9:4567 (2 shards)");
        let (address, shards) = parse_ready_line(&line).unwrap();
        assert_eq!(address, "127.0.0.9:4567".parse().unwrap());
        assert_eq!(shards, 2);
        assert!(parse_ready_line("something else").is_err());
    }

    #[test]
    fn loopback_hosts_differ() {
        let a = next_loopback_host();
        let b = next_loopback_host();
        assert_ne!(a, b);
        assert_eq!(a.octets()[..3], [127, 0, 0]);
    }
}
