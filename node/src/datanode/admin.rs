//! Administrative SQL on the control thread: databases, schema, TTL and the cluster views,
//! with IoTDB's output columns.

use iotdb_net::{Status, StatusCode};

use super::control::{
    ControlAnswer, ControlPlane, config_status, engine_type, schema_status, table_result,
};
use crate::cluster::protocol::SchemaRequest;
use crate::confignode::{ConfigRequest, NodeId, RegionGroupId, ShowRequest, Table};
use crate::schema::{MeasurementSchema, StoredSchema};
use crate::sql::{MeasurementSpec, Path, PathNode, PathPattern, Statement, Ttl};

fn done() -> Result<ControlAnswer, Status> {
    Ok(ControlAnswer::Done)
}

fn table(columns: &[&'static str], rows: Vec<Vec<Option<String>>>) -> ControlAnswer {
    ControlAnswer::ResultSet(table_result(Table {
        columns: columns.iter().map(|name| name.to_string()).collect(),
        rows,
    }))
}

fn count(column: &'static str, n: u64) -> ControlAnswer {
    table(&[column], vec![vec![Some(n.to_string())]])
}

/// `root.**`: everything.
fn all() -> PathPattern {
    PathPattern::new(vec![PathNode::Name("root".into()), PathNode::MultiLevel])
}

fn status(code: StatusCode, message: impl Into<String>) -> Status {
    Status::new(code, message)
}

/// Executes `statement`; data statements (INSERT, SELECT, DELETE FROM, FLUSH) are served by
/// the shard that received them and never come here.
pub fn execute(plane: &mut ControlPlane, statement: Statement) -> Result<ControlAnswer, Status> {
    match statement {
        Statement::CreateDatabase {
            database,
            attributes,
        } => {
            plane.config(ConfigRequest::CreateDatabase {
                name: database.to_string(),
                attributes,
            })?;
            done()
        }
        Statement::AlterDatabase {
            database,
            attributes,
        } => {
            let name = database.to_string();
            plane.config(ConfigRequest::AlterDatabase {
                name: name.clone(),
                attributes: attributes.clone(),
            })?;
            match attributes.ttl {
                Some(ttl) => Ok(ttl_changed(name, ttl)),
                None => done(),
            }
        }
        Statement::ShowDatabases { details, pattern } => Ok(ControlAnswer::ResultSet(
            table_result(plane.show(ShowRequest::Databases { details, pattern })?),
        )),
        Statement::DeleteDatabases { patterns } => {
            let (_, data_groups) =
                plane.config_with_drops(ConfigRequest::DeleteDatabases { patterns })?;
            Ok(ControlAnswer::RegionsDropped { data_groups })
        }
        Statement::CountDatabases { pattern } => {
            let shown = plane.show(ShowRequest::Databases {
                details: false,
                pattern,
            })?;
            Ok(count("count", shown.rows.len() as u64))
        }
        Statement::ShowTimeseries { pattern } => {
            let pattern = pattern.unwrap_or_else(all);
            let snapshot = plane.route_snapshot();
            let mut entries: Vec<_> = plane
                .schemas()
                .flat_map(|s| s.timeseries(&pattern))
                .collect();
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            let rows = entries
                .into_iter()
                .map(|e| {
                    let database = snapshot
                        .database_of_device(&e.device)
                        .map(|(n, _)| n.to_string());
                    vec![
                        Some(e.path),
                        None,
                        database,
                        Some(e.schema.data_type.as_str().to_string()),
                        Some(e.schema.encoding.as_str().to_string()),
                        Some(e.schema.compressor.as_str().to_string()),
                        None,
                        None,
                        None,
                        None,
                        Some("BASE".to_string()),
                    ]
                })
                .collect();
            Ok(table(
                &[
                    "Timeseries",
                    "Alias",
                    "Database",
                    "DataType",
                    "Encoding",
                    "Compression",
                    "Tags",
                    "Attributes",
                    "Deadband",
                    "DeadbandParameters",
                    "ViewType",
                ],
                rows,
            ))
        }
        Statement::ShowDevices { pattern } => {
            let pattern = pattern.unwrap_or_else(all);
            let snapshot = plane.route_snapshot();
            let mut entries: Vec<_> = plane.schemas().flat_map(|s| s.devices(&pattern)).collect();
            entries.sort_by(|a, b| a.device.cmp(&b.device));
            let rows = entries
                .into_iter()
                .map(|e| {
                    let ttl = snapshot
                        .database_of_device(&e.device)
                        .and_then(|(_, d)| d.settings.ttl_ms)
                        .map_or("INF".to_string(), |t| t.to_string());
                    vec![Some(e.device), Some(e.aligned.to_string()), None, Some(ttl)]
                })
                .collect();
            Ok(table(&["Device", "IsAligned", "Template", "TTL(ms)"], rows))
        }
        Statement::CountTimeseries { pattern } => {
            let pattern = pattern.unwrap_or_else(all);
            Ok(count(
                "count(timeseries)",
                plane.schemas().map(|s| s.count_timeseries(&pattern)).sum(),
            ))
        }
        Statement::CountDevices { pattern } => {
            let pattern = pattern.unwrap_or_else(all);
            Ok(count(
                "count(devices)",
                plane.schemas().map(|s| s.count_devices(&pattern)).sum(),
            ))
        }
        Statement::SetTtl { path, ttl } => {
            let name = database_name(&path)?;
            let ttl_ms = match ttl {
                Ttl::Millis(ms) => Some(ms),
                Ttl::Infinite => None,
            };
            plane.config(ConfigRequest::SetTtl {
                name: name.clone(),
                ttl_ms,
            })?;
            Ok(ttl_changed(name, ttl))
        }
        Statement::UnsetTtl { path } => {
            let name = database_name(&path)?;
            plane.config(ConfigRequest::SetTtl {
                name: name.clone(),
                ttl_ms: None,
            })?;
            Ok(ttl_changed(name, Ttl::Infinite))
        }
        Statement::ShowAllTtl => Ok(ControlAnswer::ResultSet(table_result(
            plane.show(ShowRequest::AllTtl)?,
        ))),
        Statement::ShowTtlOn { patterns } => {
            let shown = plane.show(ShowRequest::AllTtl)?;
            let rows = shown
                .rows
                .into_iter()
                .filter(|row| {
                    row.first()
                        .and_then(Option::as_deref)
                        .is_some_and(|device| {
                            patterns
                                .iter()
                                .any(|p| p.matches(device) || p.matches(&format!("{device}.x")))
                        })
                })
                .collect();
            Ok(ControlAnswer::ResultSet(table_result(Table {
                columns: shown.columns,
                rows,
            })))
        }
        Statement::ShowCluster { details } => Ok(ControlAnswer::ResultSet(table_result(
            plane.show(ShowRequest::Cluster { details })?,
        ))),
        Statement::ShowRegions {
            kind,
            databases,
            node_ids,
        } => {
            let sizes = plane.region_sizes().into_iter().collect();
            let shown = plane.show(ShowRequest::Regions {
                kind,
                databases,
                node_ids,
                sizes,
            })?;
            Ok(ControlAnswer::ResultSet(table_result(shown)))
        }
        Statement::MigrateRegion { region, from, to } => {
            let id = plane
                .config(ConfigRequest::MigrateRegion {
                    group: RegionGroupId(region),
                    from: NodeId(from),
                    to: NodeId(to),
                })?
                .into_procedure()
                .map_err(config_status)?;
            Ok(procedures_started(&[id]))
        }
        Statement::RemoveDataNode { node_ids } => {
            let mut ids = Vec::with_capacity(node_ids.len());
            for node_id in node_ids {
                ids.push(
                    plane
                        .config(ConfigRequest::RemoveDataNode {
                            node_id: NodeId(node_id),
                        })?
                        .into_procedure()
                        .map_err(config_status)?,
                );
            }
            Ok(procedures_started(&ids))
        }
        Statement::RemoveConfigNode { node_id } => {
            plane.config(ConfigRequest::RemoveConfigNode {
                node_id: NodeId(node_id),
            })?;
            Ok(ControlAnswer::Done)
        }
        Statement::ShowDataNodes => Ok(ControlAnswer::ResultSet(table_result(
            plane.show(ShowRequest::DataNodes)?,
        ))),
        Statement::ShowConfigNodes => Ok(ControlAnswer::ResultSet(table_result(
            plane.show(ShowRequest::ConfigNodes)?,
        ))),
        Statement::ShowVariables => Ok(ControlAnswer::ResultSet(table_result(
            plane.show(ShowRequest::Variables)?,
        ))),
        Statement::ShowVersion => Ok(table(
            &["Version", "BuildInfo"],
            vec![vec![
                Some(env!("CARGO_PKG_VERSION").to_string()),
                Some("iotdb-rs".to_string()),
            ]],
        )),
        Statement::Insert(_)
        | Statement::Select(_)
        | Statement::DeleteData { .. }
        | Statement::Flush { .. } => Err(Status::internal(
            "data statements are executed by the receiving shard",
        )),
        Statement::CreateTimeseries { .. }
        | Statement::CreateAlignedTimeseries { .. }
        | Statement::DeleteTimeseries { .. } => Err(Status::internal(
            "schema changes are sent as schema requests (admin::schema_change)",
        )),
    }
}

/// The answer to a statement that started procedures: their ids (`ProcedureId`); `SHOW
/// REGIONS` and `SHOW CLUSTER` follow their progress.
fn procedures_started(ids: &[u64]) -> ControlAnswer {
    table(
        &["ProcedureId"],
        ids.iter().map(|id| vec![Some(id.to_string())]).collect(),
    )
}

/// The schema request of a schema-changing statement (`CREATE [ALIGNED] TIMESERIES`,
/// `DELETE TIMESERIES`), checked here, before it goes to the node serving the
/// SchemaRegion (`None`: not such a statement).
pub fn schema_change(statement: &Statement) -> Option<Result<SchemaRequest, Status>> {
    Some(match statement {
        Statement::CreateTimeseries { path, spec } => create_timeseries(path, spec),
        Statement::CreateAlignedTimeseries {
            device,
            measurements,
        } => measurements
            .iter()
            .map(|(name, spec)| Ok((name.clone(), stored_schema(spec)?)))
            .collect::<Result<Vec<_>, Status>>()
            .map(|measurements| SchemaRequest::CreateSeries {
                device: device.to_string(),
                aligned: true,
                measurements,
            }),
        Statement::DeleteTimeseries { patterns } => Ok(SchemaRequest::DeleteSeries {
            patterns: patterns.clone(),
        }),
        _ => return None,
    })
}

/// `CREATE TIMESERIES path spec`: one series of a non-aligned device.
fn create_timeseries(path: &Path, spec: &MeasurementSpec) -> Result<SchemaRequest, Status> {
    let measurement = path
        .last()
        .map(str::to_string)
        .ok_or_else(|| status(StatusCode::ILLEGAL_PATH, "empty path"))?;
    let device = path
        .parent()
        .ok_or_else(|| status(StatusCode::ILLEGAL_PATH, format!("{path} has no device")))?
        .to_string();
    Ok(SchemaRequest::CreateSeries {
        device,
        aligned: false,
        measurements: vec![(measurement, stored_schema(spec)?)],
    })
}

/// A statement's measurement spec, defaults filled in, as it travels and is logged.
fn stored_schema(spec: &MeasurementSpec) -> Result<StoredSchema, Status> {
    engine_type(spec.data_type)?;
    let schema = MeasurementSchema::from_spec(spec).map_err(schema_status)?;
    Ok(StoredSchema::from(schema))
}

fn ttl_changed(database: String, ttl: Ttl) -> ControlAnswer {
    ControlAnswer::TtlChanged {
        database,
        ttl_ms: match ttl {
            Ttl::Millis(ms) => Some(ms.min(i64::MAX as u64) as i64),
            Ttl::Infinite => None,
        },
    }
}

/// The database a TTL statement names (`root.db` or `root.db.**`).
fn database_name(path: &PathPattern) -> Result<String, Status> {
    let text = path.to_string();
    let name = text.strip_suffix(".**").unwrap_or(&text).to_string();
    if name.contains('*') {
        return Err(status(
            StatusCode::ILLEGAL_PARAMETER,
            format!("TTL is set per database in this server: {text} is not a database path"),
        ));
    }
    Ok(name)
}
