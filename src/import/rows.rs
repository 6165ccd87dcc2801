//! CSV and JSONL rows: columns by header name or key, values exactly as written.

use super::*;

/// Matches file column names to the table's (case-insensitively, as MySQL does).
fn match_column<'c>(table_cols: &'c [(String, bool)], name: &str) -> Option<&'c (String, bool)> {
    table_cols
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(name))
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
