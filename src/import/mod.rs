//! `doltctl import`: loads a SQL, CSV or JSONL file into a database through the supervised
//! server (auto-started), in one transaction per import.
//!
//! - Values arrive exactly as written: CSV and JSONL values are sent as prepared-statement
//!   parameters (bytes, never re-formatted), the session time zone is UTC so temporal values
//!   are not converted, an empty unquoted CSV field and a JSON `null` are NULL while `""` is
//!   the empty string. CSV columns map by header name, JSONL columns by key.
//! - Rows go in multi-row INSERTs of `batch` rows (CSV: or one `LOAD DATA`, see below). Any
//!   error rolls the whole import back; the error names the file, the 1-based line (the CSV
//!   header is line 1) and the server's message. A failed batch is replayed row by row
//!   inside the transaction to find the line.
//! - A transient error (a server restart underneath) abandons the attempt, whose transaction
//!   the server drops with the connection, and starts again from the first line on a new
//!   connection with the client's backoff, so no row arrives twice.
//! - SQL: statements that commit implicitly in Dolt as in MySQL (CREATE, ALTER, DROP, ...) end
//!   the transaction early. When the database had no uncommitted changes before the import, a
//!   failure resets it to the commit it was at (`DOLT_RESET('--hard', <hash>)`), so nothing
//!   remains in that case too; otherwise the error says what may remain.
//!
//! CSV goes through `LOAD DATA LOCAL` when every value provably goes in unchanged, and through
//! the INSERTs above otherwise (see `load_data`): Dolt's INSERT path is the bottleneck (doltctl
//! spends ~0.15 s of CPU on a 100,000-row CSV that takes ~3 s), and `LOAD DATA` is about 1.5x
//! faster, but coerces silently.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use crate::client::sqlsplit::Statement;
use crate::client::{classify, Client, ErrorKind};
use crate::config::Config;
pub use crate::config::Format;
use crate::error::{Error, IoContext, Result};

/// Rows per INSERT unless told otherwise.
pub const DEFAULT_BATCH: usize = 1000;
/// Placeholders in one prepared statement. MySQL's limit is 65,535, but Dolt 2.2.0 closes the
/// connection on statements just below it (65,532 placeholders was seen to fail, 60,000 to
/// work), and a closed connection is retried as transient: stay well clear.
const MAX_PLACEHOLDERS: usize = 60_000;
/// A batch is sent early once its values reach this size, so large text values do not make
/// one enormous packet.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Read buffer for data files.
const READ_BUFFER: usize = 256 << 10;

/// A Dolt commit made with the import, in the same transaction.
#[derive(Debug, Clone)]
pub struct CommitSpec {
    /// The commit message.
    pub message: String,
    /// `Name <email>`.
    pub author: String,
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// The data file.
    pub path: PathBuf,
    /// The database it goes into.
    pub db: String,
    /// CSV/JSONL: the table (default: the file name without its extension).
    pub table: Option<String>,
    /// Default: from the file's extension.
    pub format: Option<Format>,
    /// Rows per INSERT.
    pub batch: usize,
    /// Commit the import with this message and author.
    pub commit: Option<CommitSpec>,
    /// Show progress on stderr (for a terminal).
    pub progress: bool,
}

impl ImportSpec {
    /// Imports `path` into `db`, with the defaults: format and table from the file name,
    /// [`DEFAULT_BATCH`] rows per INSERT, no commit, no progress.
    pub fn new(path: impl Into<PathBuf>, db: impl Into<String>) -> ImportSpec {
        ImportSpec {
            path: path.into(),
            db: db.into(),
            table: None,
            format: None,
            batch: DEFAULT_BATCH,
            commit: None,
            progress: false,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The data file.
    pub path: PathBuf,
    /// The database.
    pub db: String,
    /// CSV/JSONL: the table; `None` for SQL.
    pub table: Option<String>,
    /// Rows inserted (CSV/JSONL) or rows affected (SQL).
    pub rows: u64,
    /// Statements run from a SQL file.
    pub statements: u64,
    /// Wall time of the whole import, all attempts included.
    pub elapsed: Duration,
    /// Attempts; more than one after a transient error.
    pub attempts: u32,
    /// The Dolt commit, with `commit`.
    pub commit: Option<String>,
    /// CSV: the rows went in with one `LOAD DATA` (every value provably unchanged), not
    /// with INSERTs.
    pub load_data: bool,
}

impl Summary {
    /// Rows per second of wall time.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        match &self.table {
            Some(t) => write!(
                f,
                "imported {} row{} from {} into {}.{} in {secs:.2} s ({:.0} rows/s, {})",
                self.rows,
                if self.rows == 1 { "" } else { "s" },
                self.path.display(),
                self.db,
                t,
                self.rows_per_second(),
                if self.load_data {
                    "LOAD DATA"
                } else {
                    "INSERTs"
                }
            )?,
            None => write!(
                f,
                "ran {} statements ({} rows) from {} in {} in {secs:.2} s",
                self.statements,
                self.rows,
                self.path.display(),
                self.db
            )?,
        }
        if let Some(c) = &self.commit {
            write!(f, ", commit {c}")?;
        }
        if self.attempts > 1 {
            write!(f, " ({} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

/// Everything one attempt needs; shared by all attempts.
struct Job {
    spec: ImportSpec,
    format: Format,
    table: Option<String>,
    /// SQL: the statements, split once.
    statements: Vec<Statement>,
    size: u64,
}

/// What attempts leave for the next one and for the final error.
#[derive(Default)]
struct Shared {
    /// The line of the statement or row being loaded when the last error happened.
    line: Mutex<Option<usize>>,
    /// A statement that commits implicitly ran and its effect was not undone yet.
    implicit_commit: AtomicBool,
    /// Before the first attempt: (no uncommitted changes, HEAD's commit hash).
    start: Mutex<Option<(bool, String)>>,
    attempts: AtomicU32,
    last_transient: Mutex<Option<String>>,
    /// The last attempt loaded its rows with `LOAD DATA`.
    load_data: AtomicBool,
}

impl Shared {
    fn set_line(&self, l: Option<usize>) {
        if let Ok(mut g) = self.line.lock() {
            *g = l;
        }
    }
    fn line(&self) -> Option<usize> {
        self.line.lock().ok().and_then(|g| *g)
    }
    fn start(&self) -> Option<(bool, String)> {
        self.start.lock().ok().and_then(|g| g.clone())
    }
}

/// Imports one file; see the module docs.
pub async fn run(cfg: &Config, spec: &ImportSpec) -> Result<Summary> {
    let started = Instant::now();
    let path = &spec.path;
    let import_err = |line: Option<usize>, message: String| Error::Import {
        path: path.clone(),
        line,
        message,
    };
    let format = match spec.format.or_else(|| Format::from_path(path)) {
        Some(f) => f,
        None => {
            return Err(import_err(
                None,
                "cannot tell the format from the file name; pass --format sql, csv or jsonl".into(),
            ))
        }
    };
    if spec.batch == 0 {
        return Err(import_err(None, "the batch size must be at least 1".into()));
    }
    let size = std::fs::metadata(path).at(path)?.len();
    let (table, statements) = match format {
        Format::Sql => {
            let bytes = std::fs::read(path).at(path)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = ok.iter().filter(|b| **b == b'\n').count() + 1;
                import_err(
                    Some(line),
                    "not valid UTF-8; convert the file to UTF-8".into(),
                )
            })?;
            (None, crate::client::sqlsplit::split(&text))
        }
        Format::Csv | Format::Jsonl => {
            let t = match &spec.table {
                Some(t) => t.clone(),
                None => path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| import_err(None, "no table name; pass --table".into()))?,
            };
            (Some(t), Vec::new())
        }
    };
    let job = Arc::new(Job {
        spec: spec.clone(),
        format,
        table,
        statements,
        size,
    });
    let shared = Arc::new(Shared::default());
    let client = Client::from_config(cfg.clone()).database(spec.db.clone());
    let result = client
        .with_retry(|conn| {
            let job = job.clone();
            let shared = shared.clone();
            Box::pin(async move { attempt(conn, &job, &shared).await })
        })
        .await;
    let attempts = shared.attempts.load(Ordering::SeqCst);
    match result {
        Ok(Ok(mut s)) => {
            s.elapsed = started.elapsed();
            s.attempts = attempts;
            Ok(s)
        }
        Ok(Err(e)) => Err(e),
        // ER_BAD_DB_ERROR: the connection named a database that is not there.
        Err(Error::Sql {
            code: Some(1049), ..
        }) => Err(import_err(
            None,
            format!(
                "database {:?} does not exist; create it with `doltctl init --db {}` (or \
                 CREATE DATABASE)",
                spec.db, spec.db
            ),
        )),
        Err(Error::Sql {
            message, transient, ..
        }) => {
            let what = if transient {
                format!("gave up after {attempts} attempts on a transient error: {message}")
            } else {
                message
            };
            Err(import_err(
                shared.line(),
                format!("{what}; {}", outcome(&job, &shared)),
            ))
        }
        Err(e) => Err(e),
    }
}

/// What remains after a failed import, for the error message.
fn outcome(job: &Job, sh: &Shared) -> String {
    if !sh.implicit_commit.load(Ordering::SeqCst) {
        return "rolled back: nothing from this file was imported".into();
    }
    let db = &job.spec.db;
    match sh.start() {
        Some((true, head)) => format!(
            "statements that commit implicitly (CREATE, ALTER, DROP, ...) had run and could not be \
             undone because the server was unreachable; {db} had no uncommitted changes before, so \
             CALL DOLT_RESET('--hard', '{head}') and CALL DOLT_CLEAN() in {db} return it to that \
             state"
        ),
        _ => format!(
            "statements that commit implicitly (CREATE, ALTER, DROP, ...) had run, and {db} had \
             uncommitted changes before the import, so their effects were kept: see \
             SELECT * FROM dolt_status in {db}, and undo with CALL DOLT_CHECKOUT('<table>') or \
             CALL DOLT_RESET('--hard')"
        ),
    }
}

/// A failure inside an attempt: a server error (classified by the client's retry), or a
/// problem with the file, which is final.
enum Failure {
    Sql(mysql_async::Error),
    File(Error),
}

impl From<mysql_async::Error> for Failure {
    fn from(e: mysql_async::Error) -> Self {
        Failure::Sql(e)
    }
}

type Attempt = std::result::Result<Result<Summary>, mysql_async::Error>;

/// One attempt: a whole import on one connection and in one transaction.
async fn attempt(conn: &mut Conn, job: &Job, sh: &Shared) -> Attempt {
    let n = sh.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if n > 1 {
        let why = sh
            .last_transient
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_default();
        tracing::warn!(
            "import of {}: the server connection failed ({why}); the transaction was rolled back, \
             starting over from the beginning (attempt {n})",
            job.spec.path.display()
        );
    }
    sh.set_line(None);
    sh.load_data.store(false, Ordering::SeqCst);
    conn.query_drop("SET time_zone = '+00:00'").await?;
    if sh.implicit_commit.load(Ordering::SeqCst) {
        // An earlier attempt ran DDL before the connection failed: undo it first.
        match sh.start() {
            Some((true, head)) => {
                reset_to(conn, &job.spec.db, &head).await?;
                sh.implicit_commit.store(false, Ordering::SeqCst);
            }
            _ => {
                return Ok(Err(Error::Import {
                    path: job.spec.path.clone(),
                    line: None,
                    message: format!(
                        "the server connection failed ({}) and the import cannot be retried \
                         safely; {}",
                        sh.last_transient
                            .lock()
                            .ok()
                            .and_then(|g| g.clone())
                            .unwrap_or_default(),
                        outcome(job, sh)
                    ),
                }))
            }
        }
    }
    if job.format == Format::Sql && sh.start().is_none() {
        let dirty: Option<i64> = conn.query_first("SELECT COUNT(*) FROM dolt_status").await?;
        let head: Option<String> = conn.query_first("SELECT HASHOF('HEAD')").await?;
        if let Ok(mut g) = sh.start.lock() {
            *g = Some((dirty == Some(0), head.unwrap_or_default()));
        }
    }
    // One transaction: with autocommit off, every statement joins it until COMMIT (and after a
    // statement that commits implicitly, a new one begins).
    conn.query_drop("SET autocommit = 0").await?;
    let mut progress = Progress::new(job.spec.progress, job.size);
    let loaded = match job.format {
        Format::Csv => load_csv(conn, job, sh, &mut progress).await,
        Format::Jsonl => load_jsonl(conn, job, sh, &mut progress).await,
        Format::Sql => run_sql(conn, job, sh, &mut progress).await,
    };
    progress.clear();
    let (rows, statements) = match loaded {
        Ok(v) => v,
        Err(f) => {
            let transient = matches!(&f, Failure::Sql(e) if classify(e) == ErrorKind::Transient);
            if transient {
                // The connection is gone or going; the server drops the open transaction.
                if let (Failure::Sql(e), Ok(mut g)) = (&f, sh.last_transient.lock()) {
                    *g = Some(e.to_string());
                }
            } else {
                undo(conn, job, sh).await;
            }
            return match f {
                Failure::Sql(e) => Err(e),
                Failure::File(e) => Ok(Err(e)),
            };
        }
    };
    sh.set_line(None);
    let commit = match &job.spec.commit {
        Some(c) => conn
            .exec_first::<Option<String>, _, _>(
                "CALL DOLT_COMMIT('-Am', ?, '--allow-empty', '--author', ?)",
                (c.message.as_str(), c.author.as_str()),
            )
            .await
            .map(|h| h.flatten()),
        None => conn.query_drop("COMMIT").await.map(|_| None),
    };
    let commit = match commit {
        Ok(c) => c,
        Err(e) if classify(&e) == ErrorKind::Transient => {
            // The commit may or may not have happened: retrying could load everything twice.
            return Ok(Err(Error::Import {
                path: job.spec.path.clone(),
                line: None,
                message: format!(
                    "the server connection failed while committing ({e}); the import may or may \
                     not have been applied: check {} before importing again",
                    job.spec.db
                ),
            }));
        }
        Err(e) => {
            undo(conn, job, sh).await;
            return Ok(Err(Error::Import {
                path: job.spec.path.clone(),
                line: None,
                message: format!("committing failed: {e}; {}", outcome(job, sh)),
            }));
        }
    };
    let _ = conn.query_drop("SET autocommit = 1").await;
    Ok(Ok(Summary {
        path: job.spec.path.clone(),
        db: job.spec.db.clone(),
        table: job.table.clone(),
        rows,
        statements,
        elapsed: Duration::ZERO,
        attempts: 0,
        commit,
        load_data: sh.load_data.load(Ordering::SeqCst),
    }))
}

/// Rolls the transaction back and, when statements that commit implicitly ran on a database
/// that had no uncommitted changes, resets it to the commit it was at.
async fn undo(conn: &mut Conn, job: &Job, sh: &Shared) {
    let _ = conn.query_drop("ROLLBACK").await;
    if !sh.implicit_commit.load(Ordering::SeqCst) {
        return;
    }
    if let Some((true, head)) = sh.start() {
        match reset_to(conn, &job.spec.db, &head).await {
            Ok(()) => sh.implicit_commit.store(false, Ordering::SeqCst),
            Err(e) => tracing::warn!("resetting {} after the failed import: {e}", job.spec.db),
        }
    }
}

/// Returns a database that had no uncommitted changes to the commit it was at: tracked tables
/// by a hard reset, tables the import created (untracked, which a reset keeps) by a clean.
async fn reset_to(
    conn: &mut Conn,
    db: &str,
    head: &str,
) -> std::result::Result<(), mysql_async::Error> {
    // With autocommit off, the reset would only last until the session ends.
    conn.query_drop("SET autocommit = 1").await?;
    conn.query_drop(format!("USE {}", quote_ident(db))).await?;
    conn.exec_drop("CALL DOLT_RESET('--hard', ?)", (head,))
        .await?;
    conn.query_drop("CALL DOLT_CLEAN()").await
}

/// `name` as a MySQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A table's columns, in table order.
async fn table_columns(
    conn: &mut Conn,
    job: &Job,
    table: &str,
) -> std::result::Result<Vec<ColumnInfo>, Failure> {
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, \
             CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, \
             CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND LOWER(TABLE_NAME) = LOWER(?) \
             ORDER BY ORDINAL_POSITION",
            (table,),
        )
        .await?;
    if rows.is_empty() {
        return Err(Failure::File(Error::Import {
            path: job.spec.path.clone(),
            line: None,
            message: format!(
                "table {table:?} does not exist in database {:?}; create it first (for example \
                 with a SQL seed or `doltctl sql`), or name another with --table",
                job.spec.db
            ),
        }));
    }
    // Read by position; NULLs (no length, no precision, no default) are `None`.
    let text = |r: &mysql_async::Row, i: usize| r.get::<Option<String>, _>(i).flatten();
    let number = |r: &mysql_async::Row, i: usize| r.get::<Option<u64>, _>(i).flatten();
    Ok(rows
        .iter()
        .map(|r| ColumnInfo {
            name: text(r, 0).unwrap_or_default(),
            data_type: text(r, 1).unwrap_or_default(),
            column_type: text(r, 2).unwrap_or_default(),
            nullable: text(r, 3).is_some_and(|n| n.eq_ignore_ascii_case("yes")),
            has_default: text(r, 4).is_some(),
            extra: text(r, 5).unwrap_or_default(),
            char_max: number(r, 6),
            precision: number(r, 7),
            scale: number(r, 8),
            fsp: number(r, 9),
            charset: text(r, 10),
        })
        .collect())
}

fn file_error(job: &Job, line: usize, message: String) -> Failure {
    Failure::File(Error::Import {
        path: job.spec.path.clone(),
        line: Some(line),
        message: format!("{message}; rolled back: nothing from this file was imported"),
    })
}

fn open(job: &Job) -> std::result::Result<BufReader<std::fs::File>, Failure> {
    let f = std::fs::File::open(&job.spec.path)
        .at(&job.spec.path)
        .map_err(Failure::File)?;
    Ok(BufReader::with_capacity(READ_BUFFER, f))
}

mod batch;
pub(crate) mod csv;
mod load_data;
mod progress;
mod rows;
mod sql;

use crate::client::sqlsplit::{commits_implicitly, is_transaction_control};
use batch::Batcher;
use load_data::ColumnInfo;
use progress::Progress;
use rows::{load_csv, load_jsonl};
use sql::run_sql;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn formats_from_names() {
        assert_eq!(Format::from_path(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(
            Format::from_path(Path::new("x.ndjson")),
            Some(Format::Jsonl)
        );
        assert_eq!(Format::from_path(Path::new("dump.sql")), Some(Format::Sql));
        assert_eq!(Format::from_path(Path::new("data.txt")), None);
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
