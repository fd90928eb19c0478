//! The `iotdb-server` command line (shared by the binary and the test harness's copy).

use std::path::PathBuf;

use crate::config::ServerConfig;
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "iotdb-server: ConfigNode and DataNode roles")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// A ConfigNode and a DataNode in one process.
    Standalone(Flags),
    /// A ConfigNode: founds a cluster (cn_seed_config_node = its own address) and serves
    /// DataNodes on cn_internal_port.
    Confignode(Flags),
    /// A DataNode: joins the cluster of dn_seed_config_node and serves clients.
    Datanode(Flags),
}

#[derive(clap::Args, Debug)]
struct Flags {
    /// TOML configuration file (IoTDB's key names).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address clients connect to (dn_rpc_address).
    #[arg(long)]
    rpc_address: Option<String>,
    /// Client port (dn_rpc_port).
    #[arg(long)]
    rpc_port: Option<u16>,
    /// Shards (cores); default: every available core.
    #[arg(long)]
    cores: Option<usize>,
    /// sync | async | off
    #[arg(long)]
    wal_mode: Option<String>,
    /// Overrides any configuration key (IoTDB's names), after the file: `--set
    /// dn_rpc_port=6668 --set cluster_name=c1`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Parses the process arguments and runs the chosen role until it stops.
pub fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(iotdb_runtime::log_colours())
        .init();
    let (name, flags) = match Cli::parse().role {
        Role::Standalone(flags) => ("standalone", flags),
        Role::Confignode(flags) => ("confignode", flags),
        Role::Datanode(flags) => ("datanode", flags),
    };
    let mut config = ServerConfig::load_with_overrides(flags.config.as_deref(), &flags.set)?;
    if let Some(v) = flags.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = flags.rpc_address {
        config.dn_rpc_address = v;
    }
    if let Some(v) = flags.rpc_port {
        config.dn_rpc_port = v;
    }
    if let Some(v) = flags.cores {
        config.dn_cores = v;
    }
    if let Some(v) = flags.wal_mode {
        config.wal_mode = v;
    }
    let run = match name {
        "confignode" => crate::cluster::confignode_service::run_confignode,
        "datanode" => crate::server::run_datanode,
        _ => crate::server::run_standalone,
    };
    run(config).with_context(|| format!("iotdb-server {name}"))
}
