//! The `iotdb-ctl` command line (shared by the binary and the test harness's copy).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use crate::format::OutputFormat;
use crate::session::{CtlError, DEFAULT_ADDRESS, Session};
use crate::shell::{self, History, ShellOptions};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "iotdb-ctl",
    version,
    about = "iotdb-ctl: SQL and cluster administration",
    disable_help_flag = true
)]
struct Cli {
    /// Server address, host:port; several DataNodes of a cluster separated by commas
    /// (`a:6667,b:6667,c:6667`): the first that answers, and the next when one fails.
    #[arg(short = 'h', long = "host", default_value = DEFAULT_ADDRESS, global = true)]
    host: String,
    /// User name.
    #[arg(short = 'u', long = "user", default_value = "root", global = true)]
    user: String,
    /// Password.
    #[arg(short = 'p', long = "password", default_value = "root", global = true)]
    password: String,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table", global = true)]
    format: OutputFormat,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help, global = true)]
    help: Option<bool>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Executes one SQL statement and prints its result.
    Sql {
        /// The statement.
        statement: String,
    },
    /// An interactive SQL shell (reads piped stdin too).
    Cli,
    /// Cluster views: cluster [details], regions, datanodes, databases.
    Show {
        /// What to show.
        #[arg(num_args = 1..=2, required = true)]
        what: Vec<String>,
    },
    /// Removes a DataNode: its region replicas move to other DataNodes, then it leaves the
    /// cluster and stops itself. Waits for the end, printing progress.
    RemoveDatanode {
        /// The DataNode: its id, or host:port as SHOW DATANODES lists it.
        node: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Removes a ConfigNode (not the last; the leader hands leadership over first): it
    /// leaves the ConfigNode group and stops itself.
    RemoveConfignode {
        /// The ConfigNode: its id, or host:port as SHOW CONFIGNODES lists it.
        node: String,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Moves a DataRegion or SchemaRegion replica from one DataNode to another (MIGRATE
    /// REGION). Waits for the end, printing progress.
    MigrateRegion {
        /// The region id (SHOW REGIONS).
        region: u32,
        /// The DataNode giving its replica up: id or host:port.
        from: String,
        /// The DataNode taking it: id or host:port.
        to: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// How long a cluster operation's command follows the operation (which goes on in the
/// cluster whatever the command does).
#[derive(clap::Args, Debug)]
struct WaitArgs {
    /// Longest wait, in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Start the operation and return at once.
    #[arg(long)]
    no_wait: bool,
}

/// Connects and runs one cluster operation that follows its progress on stdout.
fn follow(
    cli: &Cli,
    wait: &WaitArgs,
    operation: impl FnOnce(
        &mut Session,
        Option<std::time::Duration>,
        &mut dyn Write,
    ) -> Result<(), CtlError>,
) -> Result<ExitCode, CtlError> {
    let mut session = Session::connect(&cli.host, &cli.user, &cli.password)?;
    let wait = (!wait.no_wait).then(|| std::time::Duration::from_secs(wait.timeout));
    operation(&mut session, wait, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

/// Parses the process arguments and runs the command; the exit code follows the result.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{error}");
            match error {
                CtlError::Server { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, CtlError> {
    let statement = match &cli.command {
        Command::Sql { statement } => Some(statement.clone()),
        Command::Show { what } => {
            let words: Vec<String> = what.iter().map(|w| w.to_ascii_lowercase()).collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let statement = match words.as_slice() {
                ["cluster"] => "show cluster",
                ["cluster", "details"] => "show cluster details",
                ["regions"] => "show regions",
                ["datanodes"] => "show datanodes",
                ["databases"] => "show databases",
                _ => {
                    eprintln!(
                        "unknown view '{}': use cluster [details], regions, datanodes or databases",
                        what.join(" ")
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            Some(statement.to_string())
        }
        Command::Cli => None,
        Command::RemoveDatanode { node, wait } => {
            return follow(&cli, wait, |session, wait, out| {
                crate::admin::remove_data_node(session, node, wait, out)
            });
        }
        Command::RemoveConfignode {
            node,
            timeout,
            no_wait,
        } => {
            let wait = WaitArgs {
                timeout: *timeout,
                no_wait: *no_wait,
            };
            return follow(&cli, &wait, |session, wait, out| {
                crate::admin::remove_config_node(session, node, wait, out)
            });
        }
        Command::MigrateRegion {
            region,
            from,
            to,
            wait,
        } => {
            return follow(&cli, wait, |session, wait, out| {
                crate::admin::migrate_region(session, *region, from, to, wait, out)
            });
        }
    };
    let mut session = Session::connect(&cli.host, &cli.user, &cli.password)?;
    let stdout = std::io::stdout();
    match statement {
        Some(statement) => {
            let mut out = stdout.lock();
            session.run(&statement, cli.format, true, &mut out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            let options = ShellOptions {
                format: cli.format,
                prompt: interactive,
                timing: true,
            };
            let mut history = History::with_home_file();
            let failures = shell::run(
                &mut session,
                stdin.lock(),
                &mut stdout.lock(),
                &mut std::io::stderr().lock(),
                options,
                &mut history,
            )?;
            Ok(if failures > 0 && !interactive {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
