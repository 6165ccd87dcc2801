//! The fast path for CSV: `LOAD DATA LOCAL INFILE`, fed by doltctl itself, for files whose
//! every value provably goes in unchanged.
//!
//! Dolt's INSERT path is what limits an import (issue 10: 0.63x of `dolt table import` with
//! prepared multi-row INSERTs, ~1.1x with `LOAD DATA`). But `LOAD DATA` coerces silently, even
//! under `STRICT_TRANS_TABLES`: a too long string is cut, `2.25` becomes `2.3` in a
//! `DECIMAL(5,1)`, a missing field becomes NULL, a duplicate key row is dropped. So it is used
//! only when nothing can be coerced, checked three ways, and otherwise the import falls back to
//! the INSERT path, which reports the first bad line exactly:
//! 1. The table: every column the file fills has a type whose accepted text doltctl checks
//!    exactly (integers, DECIMAL, FLOAT/DOUBLE, CHAR/VARCHAR/TEXT in utf8mb4, DATE, DATETIME),
//!    and every NOT NULL column without a default is in the file.
//! 2. Each value, before it is sent: in range, within precision and length, a real date; NULL
//!    only where the column allows it. The first value that fails ends the stream.
//! 3. After the statement: rows affected equal rows sent (a dropped duplicate shows here) and
//!    the server raised no warning (Dolt notes every coercion it makes).
//!
//! The rows travel in `LOAD DATA`'s own escaped format (tab-separated, `\N` for NULL), built
//! from the CSV reader's fields, so the CSV rules stay doltctl's: an empty unquoted field is
//! NULL, `""` the empty string.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::mpsc;

use super::csv::{CsvError, Reader};

/// What the server says about one column of the table (`information_schema.COLUMNS`).
#[derive(Debug, Clone)]
pub(super) struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub nullable: bool,
    pub has_default: bool,
    pub extra: String,
    pub char_max: Option<u64>,
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    pub fsp: Option<u64>,
    pub charset: Option<String>,
}

impl ColumnInfo {
    pub(super) fn is_json(&self) -> bool {
        self.data_type.eq_ignore_ascii_case("json")
    }
}

/// The exact text a column takes without coercion.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    Int {
        min: i128,
        max: i128,
    },
    Decimal {
        int_digits: usize,
        frac_digits: usize,
    },
    Float,
    Text {
        max_chars: usize,
    },
    Date,
    DateTime {
        fsp: usize,
    },
}

/// One file column's check.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ColumnCheck {
    check: Check,
    nullable: bool,
}

/// The checks for the file's columns (`file` holds indices into `table`), or why the table
/// does not qualify.
pub(super) fn plan(table: &[ColumnInfo], file: &[usize]) -> Result<Vec<ColumnCheck>, String> {
    for (i, c) in table.iter().enumerate() {
        let filled = file.contains(&i);
        let generated = c.extra.to_ascii_lowercase().contains("auto_increment")
            || c.extra.to_ascii_lowercase().contains("generated");
        if !filled && !c.nullable && !c.has_default && !generated {
            return Err(format!(
                "NOT NULL column {} without a default is not in the file",
                c.name
            ));
        }
    }
    file.iter()
        .map(|&i| {
            let c = &table[i];
            check_for(c)
                .map(|check| ColumnCheck {
                    check,
                    nullable: c.nullable,
                })
                .ok_or_else(|| format!("column {} is {}", c.name, c.column_type))
        })
        .collect()
}

fn check_for(c: &ColumnInfo) -> Option<Check> {
    let unsigned = c.column_type.to_ascii_lowercase().contains("unsigned");
    let int = |bits: u32| {
        Some(if unsigned {
            Check::Int {
                min: 0,
                max: (1i128 << bits) - 1,
            }
        } else {
            Check::Int {
                min: -(1i128 << (bits - 1)),
                max: (1i128 << (bits - 1)) - 1,
            }
        })
    };
    let utf8mb4 = c
        .charset
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("utf8mb4"));
    match c.data_type.to_ascii_lowercase().as_str() {
        "tinyint" => int(8),
        "smallint" => int(16),
        "mediumint" => int(24),
        "int" | "integer" => int(32),
        "bigint" => int(64),
        "decimal" | "numeric" => {
            let (p, s) = (c.precision? as usize, c.scale? as usize);
            (p >= s).then_some(Check::Decimal {
                int_digits: p - s,
                frac_digits: s,
            })
        }
        // Unsigned floats are deprecated and clamp negatives: not vouched for.
        "float" | "double" | "real" if !unsigned => Some(Check::Float),
        // Text lengths are in characters; Dolt reports TEXT types' limit in characters too.
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" if utf8mb4 => {
            Some(Check::Text {
                max_chars: usize::try_from(c.char_max?).ok()?,
            })
        }
        "date" => Some(Check::Date),
        "datetime" => Some(Check::DateTime {
            fsp: c.fsp.unwrap_or(0) as usize,
        }),
        _ => None,
    }
}

impl ColumnCheck {
    /// The value goes in exactly as written.
    pub(super) fn accepts(&self, v: Option<&str>) -> bool {
        let Some(v) = v else {
            return self.nullable;
        };
        match &self.check {
            Check::Int { min, max } => {
                let digits = v.strip_prefix('-').unwrap_or(v);
                !digits.is_empty()
                    && digits.len() <= 20
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && v.parse::<i128>().is_ok_and(|n| n >= *min && n <= *max)
            }
            Check::Decimal {
                int_digits,
                frac_digits,
            } => {
                let body = v.strip_prefix('-').unwrap_or(v);
                // `1.` and `.5` are left to the INSERT path.
                let (int, frac) = match body.split_once('.') {
                    Some((_, "")) => return false,
                    Some(parts) => parts,
                    None => (body, ""),
                };
                let significant = int.trim_start_matches('0').len();
                !int.is_empty()
                    && int.bytes().all(|b| b.is_ascii_digit())
                    && frac.bytes().all(|b| b.is_ascii_digit())
                    && significant <= *int_digits
                    && frac.len() <= *frac_digits
            }
            Check::Float => {
                let body = v.strip_prefix('-').unwrap_or(v);
                let (mant, exp) = match body.split_once(['e', 'E']) {
                    Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
                    None => (body, None),
                };
                let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
                !int.is_empty()
                    && int.bytes().all(|b| b.is_ascii_digit())
                    && frac.bytes().all(|b| b.is_ascii_digit())
                    && exp.is_none_or(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
                    && v.parse::<f64>().is_ok_and(f64::is_finite)
            }
            Check::Text { max_chars } => {
                // A byte count at most the limit needs no character count.
                v.len() <= *max_chars || v.chars().count() <= *max_chars
            }
            Check::Date => is_date(v),
            Check::DateTime { fsp } => match v.split_once(' ') {
                None => is_date(v),
                Some((d, t)) => is_date(d) && is_time(t, *fsp),
            },
        }
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`, a real calendar day in MySQL's supported range (1000-9999).
fn is_date(v: &str) -> bool {
    let mut p = v.split('-');
    let (Some(y), Some(m), Some(d), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1000..=9999).contains(&y) && (1..=days).contains(&d)
}

/// `HH:MM:SS` with at most `fsp` fraction digits (more would be rounded).
fn is_time(v: &str, fsp: usize) -> bool {
    let (hms, frac) = v.split_once('.').unwrap_or((v, ""));
    if v.contains('.') && (frac.is_empty() || frac.len() > fsp) {
        return false;
    }
    let mut p = hms.split(':');
    let (Some(h), Some(m), Some(s), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return false;
    };
    matches!((digits(h, 2), digits(m, 2), digits(s, 2)), (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60)
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Appends one row in `LOAD DATA`'s default format (fields by tab, rows by newline, `\`
/// escapes, `\N` for NULL).
pub(super) fn encode(fields: &[Option<String>], out: &mut Vec<u8>) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match f {
            None => out.extend_from_slice(b"\\N"),
            Some(s) => {
                for &b in s.as_bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        0 => out.extend_from_slice(b"\\0"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

/// How the fast path ended.
pub(super) enum Outcome {
    /// Every row is in (within the open transaction).
    Loaded(u64),
    /// The INSERT path must do it (after a rollback): the reason, for the debug log.
    Declined(String),
    /// The file itself is malformed: the same error the INSERT path would give.
    Csv(CsvError),
}

/// Why the producer stopped early.
enum Stop {
    Value { line: usize, column: usize },
    Csv(CsvError),
}

/// The rows as `LOAD DATA` reads them, from a channel filled by a blocking reader thread.
struct Rows(mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for Rows {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Chunks of about this size go to the server.
const CHUNK: usize = 256 << 10;

/// Counters the caller shows as progress while the statement runs.
#[derive(Default)]
pub(super) struct Counters {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

/// Loads every record after the header of `reader` with one `LOAD DATA` statement into
/// `table` (`columns`: the quoted names, in file order), checking each value with `checks`.
pub(super) async fn load<R: std::io::BufRead + Send + 'static>(
    conn: &mut Conn,
    mut reader: Reader<R>,
    table: &str,
    columns: &[String],
    checks: Vec<ColumnCheck>,
    counters: Arc<Counters>,
) -> Result<Outcome, mysql_async::Error> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let stop: Arc<Mutex<Option<Stop>>> = Arc::default();
    let (stop_w, counters_w) = (stop.clone(), counters.clone());
    let producer = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        // Ends the rows early. Not with an error in the stream: mysql_async then gives up on
        // the connection; the statement ends normally and the caller rolls it back.
        let halt = |why: Stop, _: &mpsc::Sender<_>| {
            if let Ok(mut g) = stop_w.lock() {
                *g = Some(why);
            }
        };
        loop {
            match reader.next_record() {
                Ok(Some(rec)) => {
                    if rec.fields.len() != checks.len() {
                        // The INSERT path reports the line with the header's width.
                        return halt(
                            Stop::Value {
                                line: rec.line,
                                column: rec.fields.len(),
                            },
                            &tx,
                        );
                    }
                    if let Some(col) = rec
                        .fields
                        .iter()
                        .zip(&checks)
                        .position(|(f, c)| !c.accepts(f.as_deref()))
                    {
                        return halt(
                            Stop::Value {
                                line: rec.line,
                                column: col + 1,
                            },
                            &tx,
                        );
                    }
                    encode(&rec.fields, &mut buf);
                    counters_w.rows.fetch_add(1, Ordering::Relaxed);
                    counters_w
                        .bytes
                        .store(reader.bytes_read(), Ordering::Relaxed);
                    if buf.len() >= CHUNK {
                        let chunk = Bytes::from(std::mem::replace(
                            &mut buf,
                            Vec::with_capacity(CHUNK + 4096),
                        ));
                        if tx.blocking_send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    if !buf.is_empty() {
                        let _ = tx.blocking_send(Ok(Bytes::from(buf)));
                    }
                    return;
                }
                Err(e) => return halt(Stop::Csv(e), &tx),
            }
        }
    });
    conn.set_infile_handler(async move { Ok(Box::pin(Rows(rx)) as mysql_async::InfileData) });
    let sql = format!(
        "LOAD DATA LOCAL INFILE 'doltctl-import' INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        super::quote_ident(table),
        columns.join(", ")
    );
    let result = conn.query_drop(sql).await;
    // A statement refused before it asked for the rows leaves our handler (and with it the
    // channel) in the connection: replace it, so the reader thread sees the channel closed.
    conn.set_infile_handler(async { Err(mysql_async::LocalInfileError::NoHandler.into()) });
    let _ = producer.await;
    let stopped = stop.lock().ok().and_then(|mut g| g.take());
    match (stopped, result) {
        (Some(Stop::Csv(e)), _) => Ok(Outcome::Csv(e)),
        (Some(Stop::Value { line, column }), _) => Ok(Outcome::Declined(format!(
            "line {line}, field {column} cannot go in unchanged"
        ))),
        (None, Err(e)) if super::classify(&e) == super::ErrorKind::Transient => Err(e),
        (None, Err(e)) => Ok(Outcome::Declined(format!("LOAD DATA failed: {e}"))),
        (None, Ok(())) => {
            let sent = counters.rows.load(Ordering::Relaxed);
            let (affected, warnings) = (conn.affected_rows(), conn.get_warnings());
            if affected != sent || warnings > 0 {
                Ok(Outcome::Declined(format!(
                    "LOAD DATA took {affected} of {sent} rows with {warnings} warnings"
                )))
            } else {
                Ok(Outcome::Loaded(sent))
            }
        }
    }
}

/// Whether the server takes `LOAD DATA LOCAL` (doltctl's generated config turns it on).
pub(super) async fn enabled(conn: &mut Conn) -> Result<bool, mysql_async::Error> {
    let on: Option<i64> = conn.query_first("SELECT @@global.local_infile").await?;
    Ok(on == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
            has_default: false,
            extra: String::new(),
            char_max: None,
            precision: None,
            scale: None,
            fsp: None,
            charset: None,
        }
    }

    fn check(c: ColumnInfo) -> ColumnCheck {
        plan(&[c], &[0]).expect("eligible").remove(0)
    }

    #[test]
    fn integers_in_range_only() {
        let t = check(col("tinyint", "tinyint"));
        for ok in ["0", "-128", "127", "007"] {
            assert!(t.accepts(Some(ok)), "{ok}");
        }
        for bad in ["128", "-129", "", "1.0", "+1", " 1", "1e2", "0x10", "-"] {
            assert!(!t.accepts(Some(bad)), "{bad}");
        }
        let u = check(col("bigint", "bigint unsigned"));
        assert!(u.accepts(Some("18446744073709551615")));
        assert!(!u.accepts(Some("18446744073709551616")));
        assert!(!u.accepts(Some("-1")));
    }

    #[test]
    fn decimals_that_need_no_rounding() {
        let d = check(ColumnInfo {
            precision: Some(5),
            scale: Some(1),
            ..col("decimal", "decimal(5,1)")
        });
        for ok in ["1.5", "-1234.5", "0001234", "0.0", "12"] {
            assert!(d.accepts(Some(ok)), "{ok}");
        }
        for bad in ["2.25", "12345", "1.", ".5", "1,5", "1e3", "", "--1"] {
            assert!(!d.accepts(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn texts_by_characters_and_charset() {
        let t = check(ColumnInfo {
            char_max: Some(3),
            charset: Some("utf8mb4".into()),
            ..col("varchar", "varchar(3)")
        });
        assert!(t.accepts(Some("äöü")));
        assert!(t.accepts(Some("")));
        assert!(!t.accepts(Some("abcd")));
        let latin1 = ColumnInfo {
            char_max: Some(3),
            charset: Some("latin1".into()),
            ..col("varchar", "varchar(3)")
        };
        assert!(plan(&[latin1], &[0]).is_err());
    }

    #[test]
    fn real_dates_and_times_within_their_precision() {
        let d = check(col("date", "date"));
        for ok in ["2024-02-29", "1000-01-01", "9999-12-31"] {
            assert!(d.accepts(Some(ok)), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "0000-00-00",
            "2024-01-01 00:00:00",
        ] {
            assert!(!d.accepts(Some(bad)), "{bad}");
        }
        let dt = check(ColumnInfo {
            fsp: Some(3),
            ..col("datetime", "datetime(3)")
        });
        for ok in [
            "2024-01-01 23:59:59",
            "2024-01-01 00:00:00.123",
            "2024-01-01",
        ] {
            assert!(dt.accepts(Some(ok)), "{ok}");
        }
        for bad in [
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:00.1234",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00.",
        ] {
            assert!(!dt.accepts(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn nulls_only_where_allowed_and_required_columns_present() {
        let not_null = ColumnInfo {
            nullable: false,
            ..col("int", "int")
        };
        assert!(!check(not_null.clone()).accepts(None));
        assert!(check(col("int", "int")).accepts(None));
        // A NOT NULL column without default missing from the file: LOAD DATA would fill 0.
        assert!(plan(&[col("int", "int"), not_null.clone()], &[0]).is_err());
        let with_default = ColumnInfo {
            has_default: true,
            ..not_null
        };
        assert!(plan(&[col("int", "int"), with_default], &[0]).is_ok());
    }

    #[test]
    fn other_types_are_left_to_inserts() {
        for (dt, ct) in [
            ("json", "json"),
            ("enum", "enum('a')"),
            ("timestamp", "timestamp"),
            ("blob", "blob"),
            ("float", "float unsigned"),
        ] {
            assert!(plan(&[col(dt, ct)], &[0]).is_err(), "{ct}");
        }
    }

    #[test]
    fn rows_are_escaped_for_load_data() {
        let mut out = Vec::new();
        encode(
            &[
                Some("a\tb\\c\nd\0".into()),
                None,
                Some(String::new()),
                Some("\\N".into()),
            ],
            &mut out,
        );
        assert_eq!(out, b"a\\tb\\\\c\\nd\\0\t\\N\t\t\\\\N\n");
    }

    #[test]
    fn floats_plain_or_scientific() {
        let f = check(col("double", "double"));
        for ok in ["1", "-1.5", "1e10", "2.5E-3", "0.0"] {
            assert!(f.accepts(Some(ok)), "{ok}");
        }
        for bad in ["", "nan", "inf", "1e", ".5", "1.2.3", "1e400"] {
            assert!(!f.accepts(Some(bad)), "{bad}");
        }
    }
}
