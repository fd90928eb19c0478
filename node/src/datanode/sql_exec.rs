//! SQL on the receiving shard: parse, then run data statements here (they need the data
//! path) and send administrative ones to the control shard.

use std::rc::Rc;

use iotdb_net::{ResultSet, Status, StatusCode};

use super::Shard;
use super::control::{ControlAnswer, ControlRequest};
use crate::sql::{self, Statement};

impl Shard {
    /// Executes one SQL statement.
    pub async fn execute_sql(self: &Rc<Self>, text: &str) -> Result<ResultSet, Status> {
        let statement = statement_of(text)?;
        match statement {
            Statement::Flush { .. } => {
                self.flush_all().await?;
                Ok(empty())
            }
            Statement::Insert(_) | Statement::Select(_) | Statement::DeleteData { .. } => {
                Err(Status::new(
                    StatusCode::UNSUPPORTED_OPERATION,
                    "INSERT, SELECT and DELETE FROM are not served over SQL yet: use the client SDK's insert and query requests",
                ))
            }
            Statement::ShowRegions { .. } => {
                let sizes = self.all_region_sizes().await;
                self.control(ControlRequest::ReportRegionSizes(sizes))
                    .await?;
                self.admin(statement).await
            }
            admin => self.admin(admin).await,
        }
    }

    async fn admin(self: &Rc<Self>, statement: Statement) -> Result<ResultSet, Status> {
        match self.control(ControlRequest::Statement(statement)).await? {
            ControlAnswer::ResultSet(result) => Ok(result),
            _ => Ok(empty()),
        }
    }
}

fn statement_of(text: &str) -> Result<Statement, Status> {
    sql::parse(text).map_err(|e| Status::new(StatusCode::SQL_PARSE_ERROR, e.to_string()))
}

/// The result of a statement that returns no rows.
fn empty() -> ResultSet {
    ResultSet {
        column_names: Vec::new(),
        column_types: Vec::new(),
        rows: Vec::new(),
    }
}
