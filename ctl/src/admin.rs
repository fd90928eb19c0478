//! Cluster operations that take a while: `remove-datanode` and `migrate-region` start the
//! server's procedure and then follow it through `SHOW CLUSTER` / `SHOW REGIONS`, printing
//! progress, until it finished, failed (rolled back) or the wait timed out.

use std::io::Write;
use std::time::{Duration, Instant};

use iotdb_net::{ResultSet, Value};

use crate::session::{CtlError, Session};

/// How often progress is polled.
const POLL: Duration = Duration::from_secs(1);

/// The rows of a result set as column name → text.
fn rows(result: &ResultSet) -> Vec<std::collections::BTreeMap<String, String>> {
    result
        .rows
        .iter()
        .map(|row| {
            result
                .column_names
                .iter()
                .zip(row)
                .map(|(name, cell)| {
                    let text = match cell {
                        Some(Value::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                        Some(other) => format!("{other:?}"),
                        None => String::new(),
                    };
                    (name.clone(), text)
                })
                .collect()
        })
        .collect()
}

/// A failure of an operation that is not a server error: a name that matches no node, or
/// a wait that ran out.
fn failed(message: String) -> CtlError {
    CtlError::Server { code: 301, message }
}

/// The DataNode id named by `target`: an id, or the `rpc_address:rpc_port` (or internal
/// address and port) `SHOW DATANODES` lists.
pub fn resolve_data_node(session: &mut Session, target: &str) -> Result<u32, CtlError> {
    resolve_node(session, target, "DATANODES")
}

/// The node id named by `target` among `SHOW {view}`: an id, or an address and port it
/// lists (rpc or internal).
fn resolve_node(session: &mut Session, target: &str, view: &str) -> Result<u32, CtlError> {
    if let Ok(id) = target.parse::<u32>() {
        return Ok(id);
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(failed(format!(
            "'{target}' is neither a node id nor host:port"
        )));
    };
    let shown = session.execute(&format!("SHOW {view}"))?;
    let matches: Vec<u32> = rows(&shown)
        .iter()
        .filter(|row| {
            let rpc = row.get("RpcAddress").map(String::as_str) == Some(host)
                && row.get("RpcPort").map(String::as_str) == Some(port);
            let internal = row.get("InternalAddress").map(String::as_str) == Some(host)
                && row.get("InternalPort").map(String::as_str) == Some(port);
            rpc || internal
        })
        .filter_map(|row| row.get("NodeID")?.parse().ok())
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => Err(failed(format!(
            "no node at {target} (SHOW {view} lists their addresses)"
        ))),
        _ => Err(failed(format!(
            "several nodes at {target}: {matches:?}; give the id"
        ))),
    }
}

/// `REMOVE DATANODE id`, then waits until the node left `SHOW CLUSTER`, printing how many
/// region replicas it still holds.
pub fn remove_data_node(
    session: &mut Session,
    target: &str,
    wait: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let id = resolve_data_node(session, target)?;
    move_off_data_node(session, id, out)?;
    session.execute(&format!("REMOVE DATANODE {id}"))?;
    writeln!(
        out,
        "removing DataNode {id}: its region replicas move to other DataNodes"
    )?;
    let Some(wait) = wait else {
        writeln!(out, "follow it with SHOW CLUSTER and SHOW REGIONS")?;
        return Ok(());
    };
    let started = Instant::now();
    let mut last = None;
    loop {
        let cluster = session.execute("SHOW CLUSTER")?;
        let listed = rows(&cluster)
            .iter()
            .any(|row| row.get("NodeID").map(String::as_str) == Some(&id.to_string()));
        if !listed {
            writeln!(
                out,
                "DataNode {id} removed in {:.1} s; it stops itself",
                started.elapsed().as_secs_f64()
            )?;
            return Ok(());
        }
        let regions = session.execute(&format!("SHOW REGIONS ON NODEID {id}"))?;
        let held = regions.rows.len();
        if last != Some(held) {
            writeln!(out, "DataNode {id} still holds {held} region replicas")?;
            last = Some(held);
        }
        if started.elapsed() > wait {
            return Err(failed(format!(
                "DataNode {id} is still being removed after {wait:?} ({held} replicas left); \
                 it goes on in the cluster: follow it with SHOW CLUSTER and SHOW REGIONS"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// A removed DataNode stops itself, and the answer to the statement that removed it (or
/// to a later progress poll) may go down with it, as when `remove-datanode.sh` runs on the
/// machine it removes (the seed's way) and asks that machine's DataNode. So a session that
/// talks to DataNode `id` moves first to another Running DataNode that answers; with
/// none, it stays (the server refuses what cannot be done).
fn move_off_data_node(session: &mut Session, id: u32, out: &mut dyn Write) -> Result<(), CtlError> {
    let shown = rows(&session.execute("SHOW DATANODES")?);
    let address = |row: &std::collections::BTreeMap<String, String>| {
        format!(
            "{}:{}",
            row.get("RpcAddress").map_or("", String::as_str),
            row.get("RpcPort").map_or("", String::as_str)
        )
    };
    let id_text = id.to_string();
    let Some(removed) = shown.iter().find(|row| row.get("NodeID") == Some(&id_text)) else {
        return Ok(());
    };
    if !session.talks_to(&address(removed)) {
        return Ok(());
    }
    let others = shown.iter().filter(|row| {
        row.get("NodeID") != Some(&id_text)
            && row.get("Status").map(String::as_str) == Some("Running")
    });
    for row in others {
        let other = address(row);
        if session.reconnect(&other).is_ok() {
            writeln!(
                out,
                "asking DataNode {} at {other}: DataNode {id} stops itself once removed",
                row.get("NodeID").map_or("?", String::as_str)
            )?;
            return Ok(());
        }
    }
    Ok(())
}

/// `REMOVE CONFIGNODE id`, then waits until it left `SHOW CONFIGNODES`.
pub fn remove_config_node(
    session: &mut Session,
    target: &str,
    wait: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let id = resolve_node(session, target, "CONFIGNODES")?;
    session.execute(&format!("REMOVE CONFIGNODE {id}"))?;
    writeln!(out, "removing ConfigNode {id}")?;
    let Some(wait) = wait else {
        return Ok(());
    };
    let started = Instant::now();
    loop {
        let shown = session.execute("SHOW CONFIGNODES")?;
        let listed = rows(&shown)
            .iter()
            .any(|row| row.get("NodeID").map(String::as_str) == Some(&id.to_string()));
        if !listed {
            writeln!(out, "ConfigNode {id} removed; it stops itself")?;
            return Ok(());
        }
        if started.elapsed() > wait {
            return Err(failed(format!(
                "ConfigNode {id} is still listed after {wait:?}: see SHOW CONFIGNODES"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// `MIGRATE REGION region FROM from TO to` (a DataRegion or a SchemaRegion: region ids
/// are one sequence), then waits until `SHOW REGIONS` lists the region on `to` and not on
/// `from`, with no replica `Adding` or `Removing`; a migration that rolled back (the region
/// back on `from` only, after the new replica or a `Removing` old one was seen) is an
/// error.
pub fn migrate_region(
    session: &mut Session,
    region: u32,
    from: &str,
    to: &str,
    wait: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let from = resolve_data_node(session, from)?;
    let to = resolve_data_node(session, to)?;
    session.execute(&format!("MIGRATE REGION {region} FROM {from} TO {to}"))?;
    writeln!(
        out,
        "migrating region {region} from DataNode {from} to DataNode {to}"
    )?;
    let Some(wait) = wait else {
        writeln!(out, "follow it with SHOW REGIONS")?;
        return Ok(());
    };
    let started = Instant::now();
    let mut seen_new = false;
    let mut last_states = String::new();
    loop {
        let shown = session.execute("SHOW REGIONS")?;
        let replicas: Vec<(String, String)> = rows(&shown)
            .into_iter()
            .filter(|row| row.get("RegionId").map(String::as_str) == Some(&region.to_string()))
            .map(|row| {
                (
                    row.get("DataNodeId").cloned().unwrap_or_default(),
                    row.get("Status").cloned().unwrap_or_default(),
                )
            })
            .collect();
        let on = |node: u32| replicas.iter().any(|(n, _)| *n == node.to_string());
        let settled = replicas
            .iter()
            .all(|(_, status)| status != "Adding" && status != "Removing");
        // A single-replica SchemaRegion never lists its new replica before the move; its
        // old one shows `Removing` while it is copied.
        seen_new |= on(to)
            || replicas
                .iter()
                .any(|(n, status)| *n == from.to_string() && status == "Removing");
        if on(to) && !on(from) && settled {
            writeln!(
                out,
                "region {region} migrated in {:.1} s",
                started.elapsed().as_secs_f64()
            )?;
            return Ok(());
        }
        if seen_new && !on(to) && on(from) && settled {
            return Err(failed(format!(
                "the migration of region {region} was rolled back (the new replica did not \
                 catch up, or a SchemaRegion was not copied in time; see the ConfigNode's \
                 log)"
            )));
        }
        let states = replicas
            .iter()
            .map(|(node, status)| format!("DataNode {node}: {status}"))
            .collect::<Vec<_>>()
            .join(", ");
        if states != last_states {
            writeln!(out, "region {region}: {states}")?;
            last_states = states;
        }
        if started.elapsed() > wait {
            return Err(failed(format!(
                "region {region} is still migrating after {wait:?}; it goes on in the \
                 cluster: follow it with SHOW REGIONS"
            )));
        }
        std::thread::sleep(POLL);
    }
}
