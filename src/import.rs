//! `doltctl import`: loads a SQL, CSV or JSONL file into a database through the supervised
//! server (auto-started), in one transaction per import.
//!
//! - Values arrive exactly as written: CSV and JSONL values are sent as prepared-statement
//!   parameters (bytes, never re-formatted), the session time zone is UTC so temporal values
//!   are not converted, an empty unquoted CSV field and a JSON `null` are NULL while `""` is
//!   the empty string. CSV columns map by header name, JSONL columns by key.
//! - Rows go in multi-row INSERTs of `batch` rows. Any error rolls the whole import back; the
//!   error names the file, the 1-based line (the CSV header is line 1) and the server's
//!   message. A failed batch is replayed row by row inside the transaction to find the line.
//! - A transient error (a server restart underneath) abandons the attempt, whose transaction
//!   the server drops with the connection, and starts again from the first line on a new
//!   connection with the client's backoff, so no row arrives twice.
//! - SQL: statements that commit implicitly in Dolt as in MySQL (CREATE, ALTER, DROP, ...) end
//!   the transaction early. When the database had no uncommitted changes before the import, a
//!   failure resets it to the commit it was at (`DOLT_RESET('--hard', <hash>)`), so nothing
//!   remains in that case too; otherwise the error says what may remain.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use serde::Deserialize;

use crate::client::{classify, Client, ErrorKind};
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::sqlsplit::Statement;

/// Rows per INSERT unless told otherwise.
pub const DEFAULT_BATCH: usize = 1000;
/// MySQL's limit on placeholders in one prepared statement.
const MAX_PLACEHOLDERS: usize = 65_535;
/// A batch is sent early once its values reach this size, so large text values do not make
/// one enormous packet.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Read buffer for data files.
const READ_BUFFER: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Sql,
    Csv,
    Jsonl,
}

impl Format {
    /// From the file's extension: `.sql`, `.csv`, `.jsonl` or `.ndjson`.
    pub fn from_path(p: &Path) -> Option<Format> {
        let ext = p.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "sql" => Some(Format::Sql),
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "sql" => Ok(Format::Sql),
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(format!("unknown format {s:?}; use sql, csv or jsonl")),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Sql => "sql",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        })
    }
}

/// A Dolt commit made with the import, in the same transaction.
#[derive(Debug, Clone)]
pub struct CommitSpec {
    pub message: String,
    /// `Name <email>`.
    pub author: String,
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub path: PathBuf,
    pub db: String,
    /// CSV/JSONL: the table (default: the file name without its extension).
    pub table: Option<String>,
    /// Default: from the file's extension.
    pub format: Option<Format>,
    /// Rows per INSERT.
    pub batch: usize,
    pub commit: Option<CommitSpec>,
    /// Show progress on stderr (for a terminal).
    pub progress: bool,
}

impl ImportSpec {
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
    pub path: PathBuf,
    pub db: String,
    pub table: Option<String>,
    pub format: Format,
    /// Rows inserted (CSV/JSONL) or rows affected (SQL).
    pub rows: u64,
    /// Statements run from a SQL file.
    pub statements: u64,
    pub elapsed: Duration,
    /// Attempts; more than one after a transient error.
    pub attempts: u32,
    /// The Dolt commit, with `commit`.
    pub commit: Option<String>,
}

impl Summary {
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
                "imported {} row{} from {} into {}.{} in {secs:.2} s ({:.0} rows/s)",
                self.rows,
                if self.rows == 1 { "" } else { "s" },
                self.path.display(),
                self.db,
                t,
                self.rows_per_second()
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
            (None, crate::sqlsplit::split(&text))
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
        format: job.format,
        rows,
        statements,
        elapsed: Duration::ZERO,
        attempts: 0,
        commit,
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

/// Progress on stderr: only when asked (a terminal) and only for imports that take a while.
struct Progress {
    enabled: bool,
    total: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Progress {
        Progress {
            enabled,
            total,
            start: Instant::now(),
            last: None,
        }
    }

    fn tick(&mut self, rows: u64, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let elapsed = now - self.start;
        if elapsed < Duration::from_secs(1)
            || self
                .last
                .is_some_and(|l| now - l < Duration::from_millis(500))
        {
            return;
        }
        self.last = Some(now);
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let rate = rows as f64 / elapsed.as_secs_f64();
        eprint!("\r{pct:5.1}%  {rows} rows  {rate:.0} rows/s\x1b[K");
    }

    fn clear(&mut self) {
        if self.last.is_some() {
            eprint!("\r\x1b[K");
            self.last = None;
        }
    }
}

/// A table's columns: (name, is JSON), in table order.
async fn table_columns(
    conn: &mut Conn,
    job: &Job,
    table: &str,
) -> std::result::Result<Vec<(String, bool)>, Failure> {
    let cols: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND LOWER(TABLE_NAME) = LOWER(?) \
             ORDER BY ORDINAL_POSITION",
            (table,),
        )
        .await?;
    if cols.is_empty() {
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
    Ok(cols
        .into_iter()
        .map(|(n, t)| (n, t.eq_ignore_ascii_case("json")))
        .collect())
}

/// Builds and sends multi-row INSERTs for one table.
struct Batcher<'a> {
    job: &'a Job,
    sh: &'a Shared,
    table: String,
    /// The columns of the current batch, quoted.
    columns: Vec<String>,
    max_rows: usize,
    params: Vec<Value>,
    lines: Vec<usize>,
    bytes: usize,
    rows: u64,
}

impl<'a> Batcher<'a> {
    fn new(job: &'a Job, sh: &'a Shared, table: &str) -> Batcher<'a> {
        Batcher {
            job,
            sh,
            table: quote_ident(table),
            columns: Vec::new(),
            max_rows: job.spec.batch,
            params: Vec::new(),
            lines: Vec::new(),
            bytes: 0,
            rows: 0,
        }
    }

    /// Adds a row for these columns; a different column list sends the batch first.
    async fn push(
        &mut self,
        conn: &mut Conn,
        line: usize,
        columns: &[String],
        values: Vec<Value>,
    ) -> std::result::Result<(), Failure> {
        if self.columns.as_slice() != columns {
            self.flush(conn).await?;
            self.columns = columns.to_vec();
            self.max_rows = self
                .job
                .spec
                .batch
                .min(MAX_PLACEHOLDERS / columns.len().max(1))
                .max(1);
        }
        self.bytes += values.iter().map(value_len).sum::<usize>();
        self.params.extend(values);
        self.lines.push(line);
        if self.lines.len() >= self.max_rows || self.bytes >= MAX_BATCH_BYTES {
            self.flush(conn).await?;
        }
        Ok(())
    }

    fn statement(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.columns.len()].join(","));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.columns.join(","),
            vec![one.as_str(); rows].join(",")
        )
    }

    async fn flush(&mut self, conn: &mut Conn) -> std::result::Result<(), Failure> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let rows = self.lines.len();
        let params = std::mem::take(&mut self.params);
        let lines = std::mem::take(&mut self.lines);
        self.bytes = 0;
        self.sh.set_line(lines.first().copied());
        let sql = self.statement(rows);
        match conn.exec_drop(sql, params.clone()).await {
            Ok(()) => {
                self.rows += rows as u64;
                Ok(())
            }
            Err(e) if rows > 1 && classify(&e) == ErrorKind::Permanent => {
                // Which row? Dolt undoes a failed statement as a whole, so the rows can be
                // replayed one by one in the same transaction (it is rolled back anyway).
                let single = self.statement(1);
                let width = self.columns.len();
                for (i, line) in lines.iter().enumerate() {
                    self.sh.set_line(Some(*line));
                    let row = params[i * width..(i + 1) * width].to_vec();
                    conn.exec_drop(single.as_str(), row).await?;
                }
                self.sh.set_line(lines.first().copied());
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Bytes(b) => b.len() + 4,
        _ => 9,
    }
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

/// Matches file column names to the table's (case-insensitively, as MySQL does).
fn match_column<'c>(table_cols: &'c [(String, bool)], name: &str) -> Option<&'c (String, bool)> {
    table_cols
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(name))
}

async fn load_csv(
    conn: &mut Conn,
    job: &Job,
    sh: &Shared,
    progress: &mut Progress,
) -> std::result::Result<(u64, u64), Failure> {
    let table = job.table.as_deref().unwrap_or_default();
    let table_cols = table_columns(conn, job, table).await?;
    let mut reader = crate::csv::Reader::new(open(job)?);
    let csv_err = |e: crate::csv::CsvError| file_error(job, e.line, e.message);
    let Some(header) = reader.next_record().map_err(csv_err)? else {
        return Ok((0, 0));
    };
    let mut columns = Vec::new();
    for (i, f) in header.fields.iter().enumerate() {
        let name = f.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(file_error(
                job,
                header.line,
                format!("column {} of the header has no name", i + 1),
            ));
        }
        let Some((col, _)) = match_column(&table_cols, name) else {
            return Err(file_error(
                job,
                header.line,
                format!(
                    "the header names column {name:?}, which table {table:?} does not have \
                     (its columns: {})",
                    table_cols
                        .iter()
                        .map(|(c, _)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let q = quote_ident(col);
        if columns.contains(&q) {
            return Err(file_error(
                job,
                header.line,
                format!("the header names column {name:?} twice"),
            ));
        }
        columns.push(q);
    }
    let width = columns.len();
    let mut batch = Batcher::new(job, sh, table);
    while let Some(rec) = reader.next_record().map_err(csv_err)? {
        if rec.fields.len() != width {
            return Err(file_error(
                job,
                rec.line,
                format!(
                    "{} fields, but the header (line {}) has {width}",
                    rec.fields.len(),
                    header.line
                ),
            ));
        }
        let values = rec
            .fields
            .into_iter()
            .map(|f| f.map_or(Value::NULL, |s| Value::Bytes(s.into_bytes())))
            .collect();
        batch.push(conn, rec.line, &columns, values).await?;
        progress.tick(batch.rows, reader.bytes_read());
    }
    batch.flush(conn).await?;
    Ok((batch.rows, 0))
}

async fn load_jsonl(
    conn: &mut Conn,
    job: &Job,
    sh: &Shared,
    progress: &mut Progress,
) -> std::result::Result<(u64, u64), Failure> {
    use serde_json::value::RawValue;
    let table = job.table.as_deref().unwrap_or_default();
    let table_cols = table_columns(conn, job, table).await?;
    let mut reader = open(job)?;
    let mut batch = Batcher::new(job, sh, table);
    let mut buf = Vec::new();
    let mut line = 0usize;
    let mut bytes = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .at(&job.spec.path)
            .map_err(Failure::File)?;
        if n == 0 {
            break;
        }
        line += 1;
        bytes += n as u64;
        let mut text = std::str::from_utf8(&buf).map_err(|e| {
            file_error(
                job,
                line,
                format!("not valid UTF-8 ({e}); convert the file to UTF-8"),
            )
        })?;
        if line == 1 {
            text = text.trim_start_matches('\u{feff}');
        }
        if text.trim().is_empty() {
            continue;
        }
        let obj: BTreeMap<String, &RawValue> = serde_json::from_str(text)
            .map_err(|e| file_error(job, line, format!("not a JSON object: {e}")))?;
        let mut columns = Vec::with_capacity(obj.len());
        let mut values = Vec::with_capacity(obj.len());
        for (key, raw) in obj {
            let Some((col, is_json)) = match_column(&table_cols, &key) else {
                return Err(file_error(
                    job,
                    line,
                    format!("key {key:?} is not a column of table {table:?}"),
                ));
            };
            columns.push(quote_ident(col));
            values.push(json_value(raw.get(), *is_json).map_err(|m| file_error(job, line, m))?);
        }
        if columns.is_empty() {
            return Err(file_error(job, line, "an empty object: no columns".into()));
        }
        batch.push(conn, line, &columns, values).await?;
        progress.tick(batch.rows, bytes);
    }
    batch.flush(conn).await?;
    Ok((batch.rows, 0))
}

/// A JSON value as a column value: `null` is NULL; into a JSON column every other value goes
/// as its JSON text; elsewhere a string is its contents, a number its text as written,
/// `true`/`false` are 1/0, and arrays and objects their JSON text.
fn json_value(raw: &str, json_column: bool) -> std::result::Result<Value, String> {
    let raw = raw.trim();
    if raw == "null" {
        return Ok(Value::NULL);
    }
    if json_column {
        return Ok(Value::Bytes(raw.as_bytes().to_vec()));
    }
    Ok(match raw.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(raw).map_err(|e| format!("bad string: {e}"))?;
            Value::Bytes(s.into_bytes())
        }
        Some(b't') => Value::Bytes(b"1".to_vec()),
        Some(b'f') => Value::Bytes(b"0".to_vec()),
        _ => Value::Bytes(raw.as_bytes().to_vec()),
    })
}

/// Statements that end a transaction on their own (as in MySQL), or call Dolt procedures
/// that commit.
fn commits_implicitly(stmt: &str) -> bool {
    let w = first_words(stmt);
    let first = w.first().map(String::as_str).unwrap_or_default();
    matches!(
        first,
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" | "GRANT" | "REVOKE"
    ) || (first == "CALL" && w.get(1).is_some_and(|p| p.starts_with("DOLT_")))
}

/// Statements that would end or reopen the import's transaction; they are skipped.
fn is_transaction_control(stmt: &str) -> bool {
    let w = first_words(stmt);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["BEGIN"] | ["BEGIN", "WORK", ..] | ["START", "TRANSACTION", ..] | ["COMMIT", ..] => true,
        ["ROLLBACK", rest @ ..] => !rest.contains(&"TO"),
        ["SET", rest @ ..] => rest
            .iter()
            .take(2)
            .any(|x| x.trim_start_matches("@@").trim_start_matches("SESSION.") == "AUTOCOMMIT"),
        _ => false,
    }
}

/// The first few words, upper-cased, with a leading `/*!NNNNN` version comment opened.
fn first_words(stmt: &str) -> Vec<String> {
    let mut s = stmt.trim_start();
    if let Some(rest) = s.strip_prefix("/*!") {
        s = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    s.split(|c: char| c.is_whitespace() || c == '(' || c == '=' || c == ';')
        .filter(|w| !w.is_empty())
        .take(4)
        .map(|w| w.trim_end_matches("*/").to_ascii_uppercase())
        .collect()
}

async fn run_sql(
    conn: &mut Conn,
    job: &Job,
    sh: &Shared,
    progress: &mut Progress,
) -> std::result::Result<(u64, u64), Failure> {
    let total = job.statements.len() as u64;
    let mut rows = 0u64;
    let mut done = 0u64;
    for (i, st) in job.statements.iter().enumerate() {
        sh.set_line(Some(st.line));
        if is_transaction_control(&st.text) {
            if sh.attempts.load(Ordering::SeqCst) == 1 {
                tracing::warn!(
                    "{}:{}: skipped {:?}: the whole import runs in one transaction",
                    job.spec.path.display(),
                    st.line,
                    st.text
                );
            }
            continue;
        }
        if commits_implicitly(&st.text) {
            sh.implicit_commit.store(true, Ordering::SeqCst);
        }
        let result = conn.query_iter(st.text.as_str()).await?;
        rows += result.affected_rows();
        result.drop_result().await?;
        done += 1;
        progress.tick(rows, (i as u64 + 1) * job.size / total.max(1));
    }
    Ok((rows, done))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn transaction_control_is_recognised() {
        for s in [
            "BEGIN",
            "start transaction",
            "COMMIT",
            "commit work",
            "ROLLBACK",
            "SET autocommit=0",
            "SET @@session.autocommit = 1",
            "set AUTOCOMMIT = 1",
        ] {
            assert!(is_transaction_control(s), "{s}");
        }
        for s in [
            "ROLLBACK TO SAVEPOINT a",
            "SET NAMES utf8mb4",
            "/*!40101 SET NAMES utf8mb4 */",
            "INSERT INTO t VALUES ('COMMIT')",
            "BEGIN NOT ATOMIC SELECT 1; END",
        ] {
            assert!(!is_transaction_control(s), "{s}");
        }
    }

    #[test]
    fn implicit_commits_are_recognised() {
        assert!(commits_implicitly("CREATE TABLE t (i int)"));
        assert!(commits_implicitly(
            "/*!40000 ALTER TABLE `t` DISABLE KEYS */"
        ));
        assert!(commits_implicitly("drop table if exists t"));
        assert!(commits_implicitly("CALL dolt_commit('-am', 'x')"));
        assert!(!commits_implicitly("INSERT INTO created VALUES (1)"));
        assert!(!commits_implicitly("/*!40101 SET NAMES utf8mb4 */"));
        assert!(!commits_implicitly("CALL my_proc()"));
    }

    #[test]
    fn json_values_keep_their_text() {
        let b = |v: &Value| match v {
            Value::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            other => format!("{other:?}"),
        };
        assert_eq!(json_value("null", false).unwrap(), Value::NULL);
        assert_eq!(json_value("null", true).unwrap(), Value::NULL);
        assert_eq!(b(&json_value("\"a\\\"b\\n\"", false).unwrap()), "a\"b\n");
        assert_eq!(b(&json_value("\"a\"", true).unwrap()), "\"a\"");
        assert_eq!(
            b(&json_value("12345678901234567890.10", false).unwrap()),
            "12345678901234567890.10"
        );
        assert_eq!(b(&json_value("true", false).unwrap()), "1");
        assert_eq!(
            b(&json_value("{\"a\": [1]}", true).unwrap()),
            "{\"a\": [1]}"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
