//! Running SQL text: [`Client::execute`] and the [`ResultSet`]s it returns.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::connection::ConnectionInfo;
use super::retry::{server_message, sql_error};
use super::sqlsplit::{is_read_only_statement, is_transaction_control};
use super::Client;
use crate::config::instance::Instance;
use crate::error::{Error, Result};

/// A result set: column names and rows, as the server sent them.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Column types, in the order of `columns`.
    pub column_types: Vec<mysql_async::consts::ColumnType>,
    /// The rows; each has one value per column.
    pub rows: Vec<Vec<mysql_async::Value>>,
    /// Rows the statement changed, as the server reported.
    pub affected_rows: u64,
}

/// What [`Client::execute_report`] returns: the result sets, and the statements a cluster's
/// primary acknowledged without replicating them (warning 3024).
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// The result sets, in order.
    pub sets: Vec<ResultSet>,
    /// `statement: warning` for each write acknowledged with warning 3024 (cluster only): it
    /// is committed on the primary, on no standby yet, so a failover now would lose it.
    pub unreplicated: Vec<String>,
}

impl Client {
    /// Runs SQL statements one at a time on one session; a statement that fails with a
    /// transient error is retried on a new connection (with the client's backoff). Stops at
    /// the first failing statement. Session state other than the database (variables, open
    /// transactions) does not survive such a reconnect.
    pub async fn execute(&self, statements: &[String]) -> Result<Vec<ResultSet>> {
        Ok(self.execute_report(statements).await?.sets)
    }

    /// [`Client::execute`], also reporting writes a cluster acknowledged without replication.
    pub async fn execute_report(&self, statements: &[String]) -> Result<Execution> {
        let mut out = Vec::new();
        let mut unreplicated = Vec::new();
        let mut conn: Option<(Conn, ConnectionInfo)> = None;
        for stmt in statements {
            let mut tries = self.retries();
            loop {
                tries.attempts += 1;
                let (c, info) = match conn.as_mut() {
                    Some(c) => c,
                    None => conn.insert(self.connect().await?),
                };
                let read_only = self.read_only_for(info);
                let result = if read_only && !is_transaction_control(stmt) {
                    run_read_only(c, stmt).await
                } else {
                    run_statement(c, stmt).await
                };
                let e = match result {
                    Ok(mut sets) => {
                        out.append(&mut sets);
                        if self.cfg.cluster.is_some() {
                            if let Ok(Some(w)) = super::unreplicated_warning(c).await {
                                unreplicated.push(format!("{}: {w}", stmt.trim()));
                            }
                        }
                        break;
                    }
                    Err(e) => e,
                };
                if info.read_only && is_read_only_refusal(&e) {
                    close(conn.take()).await;
                    return Err(Error::ServerReadOnly {
                        data_dir: Instance::new(&self.cfg.data_dir).data_dir().to_path_buf(),
                        detail: format!("the statement was refused: {}", server_message(&e)),
                    });
                }
                let kind = self.kind_of(&e);
                let info = info.clone();
                // Never reused after an error, and closed now, not whenever the runtime gets
                // to it: an open connection keeps the server from idling out.
                close(conn.take()).await;
                // Run it again only if it cannot have taken effect: the server refused it, or
                // it only reads. A connection lost after sending a write leaves its fate
                // unknown, and a second run could apply it twice.
                let safe = matches!(e, mysql_async::Error::Server(_))
                    || read_only
                    || is_read_only_statement(stmt);
                if !(safe && tries.again(kind).await) {
                    return Err(sql_error(&info, tries.attempts, kind, e));
                }
            }
        }
        close(conn).await;
        Ok(Execution {
            sets: out,
            unreplicated,
        })
    }
}

/// Closes a connection of [`Client::execute`] (politely: a `COM_QUIT`, within a second).
async fn close(conn: Option<(Conn, ConnectionInfo)>) {
    if let Some((c, _)) = conn {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), c.disconnect()).await;
    }
}

/// Dolt 2.2.0 records `SET SESSION TRANSACTION READ ONLY` but enforces it only inside an
/// explicit `START TRANSACTION READ ONLY`; so each statement of a read-only client runs in one.
async fn run_read_only(c: &mut Conn, sql: &str) -> Result<Vec<ResultSet>, mysql_async::Error> {
    c.query_drop("START TRANSACTION READ ONLY").await?;
    match run_statement(c, sql).await {
        Ok(sets) => {
            c.query_drop("COMMIT").await?;
            Ok(sets)
        }
        Err(e) => {
            let _ = c.query_drop("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn run_statement(c: &mut Conn, sql: &str) -> Result<Vec<ResultSet>, mysql_async::Error> {
    let mut result = c.query_iter(sql).await?;
    let mut sets = Vec::new();
    loop {
        let columns = result.columns();
        let affected = result.affected_rows();
        let rows: Vec<mysql_async::Row> = result.collect().await?;
        if let Some(cols) = columns.filter(|c| !c.is_empty()) {
            sets.push(ResultSet {
                columns: cols.iter().map(|c| c.name_str().into_owned()).collect(),
                column_types: cols.iter().map(|c| c.column_type()).collect(),
                rows: rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.as_ref(i).cloned().unwrap_or(mysql_async::Value::NULL))
                            .collect()
                    })
                    .collect(),
                affected_rows: affected,
            });
        }
        if result.is_empty() {
            break;
        }
    }
    Ok(sets)
}

fn is_read_only_refusal(e: &mysql_async::Error) -> bool {
    let m = server_message(e).to_ascii_lowercase();
    m.contains("read only") || m.contains("read-only")
}
