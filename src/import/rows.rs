//! CSV and JSONL rows: columns by header name or key, values exactly as written.

use super::*;

/// Matches a file column name to the table's (case-insensitively, as MySQL does): its index.
fn match_column(table_cols: &[ColumnInfo], name: &str) -> Option<usize> {
    table_cols
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
}

pub(super) async fn load_csv(
    conn: &mut Conn,
    job: &Job,
    sh: &Shared,
    progress: &mut Progress,
) -> std::result::Result<(u64, u64), Failure> {
    let table = job.table.as_deref().unwrap_or_default();
    let table_cols = table_columns(conn, job, table).await?;
    let mut reader = crate::import::csv::Reader::new(open(job)?);
    let csv_err = |e: crate::import::csv::CsvError| file_error(job, e.line, e.message);
    let Some(header) = reader.next_record().map_err(csv_err)? else {
        return Ok((0, 0));
    };
    let mut columns = Vec::new();
    let mut indices = Vec::new();
    for (i, f) in header.fields.iter().enumerate() {
        let name = f.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(file_error(
                job,
                header.line,
                format!("column {} of the header has no name", i + 1),
            ));
        }
        let Some(index) = match_column(&table_cols, name) else {
            return Err(file_error(
                job,
                header.line,
                format!(
                    "the header names column {name:?}, which table {table:?} does not have \
                     (its columns: {})",
                    table_cols
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let q = quote_ident(&table_cols[index].name);
        if columns.contains(&q) {
            return Err(file_error(
                job,
                header.line,
                format!("the header names column {name:?} twice"),
            ));
        }
        columns.push(q);
        indices.push(index);
    }
    match fast_path(conn, job, table, &table_cols, &columns, &indices, progress).await? {
        Some(rows) => {
            sh.load_data.store(true, Ordering::SeqCst);
            return Ok((rows, 0));
        }
        None => reader = reopen_after_header(job)?,
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

/// The CSV's rows through `LOAD DATA` when every value provably goes in unchanged (see
/// `load_data`): the rows loaded, or `None` when the INSERT path must load them (after a
/// rollback of anything the attempt loaded).
async fn fast_path(
    conn: &mut Conn,
    job: &Job,
    table: &str,
    table_cols: &[ColumnInfo],
    columns: &[String],
    indices: &[usize],
    progress: &mut Progress,
) -> std::result::Result<Option<u64>, Failure> {
    let checks = match load_data::plan(table_cols, indices) {
        Ok(c) => c,
        Err(why) => {
            tracing::debug!("import: INSERTs, not LOAD DATA: {why}");
            return Ok(None);
        }
    };
    if !load_data::enabled(conn).await? {
        tracing::debug!("import: INSERTs, not LOAD DATA: the server has local_infile off");
        return Ok(None);
    }
    let reader = reopen_after_header(job)?;
    let counters = Arc::new(load_data::Counters::default());
    let outcome = {
        let load = load_data::load(conn, reader, table, columns, checks, counters.clone());
        tokio::pin!(load);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut load => break r?,
                _ = tick.tick() => progress.tick(
                    counters.rows.load(Ordering::Relaxed),
                    counters.bytes.load(Ordering::Relaxed),
                ),
            }
        }
    };
    match outcome {
        load_data::Outcome::Loaded(rows) => Ok(Some(rows)),
        load_data::Outcome::Csv(e) => Err(file_error(job, e.line, e.message)),
        load_data::Outcome::Declined(why) => {
            tracing::debug!("import: LOAD DATA declined ({why}); loading with INSERTs");
            conn.query_drop("ROLLBACK").await?;
            Ok(None)
        }
    }
}

/// The CSV file again, positioned after its header record.
fn reopen_after_header(
    job: &Job,
) -> std::result::Result<crate::import::csv::Reader<BufReader<std::fs::File>>, Failure> {
    let mut reader = crate::import::csv::Reader::new(open(job)?);
    reader
        .next_record()
        .map_err(|e| file_error(job, e.line, e.message))?;
    Ok(reader)
}

pub(super) async fn load_jsonl(
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
            let Some(index) = match_column(&table_cols, &key) else {
                return Err(file_error(
                    job,
                    line,
                    format!("key {key:?} is not a column of table {table:?}"),
                ));
            };
            let col = &table_cols[index];
            columns.push(quote_ident(&col.name));
            values
                .push(json_value(raw.get(), col.is_json()).map_err(|m| file_error(job, line, m))?);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
