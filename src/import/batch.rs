//! Multi-row INSERT batches with a row-by-row replay that names the failing line.

use super::*;

/// Builds and sends multi-row INSERTs for one table.
pub(super) struct Batcher<'a> {
    job: &'a Job,
    sh: &'a Shared,
    table: String,
    /// The columns of the current batch, quoted.
    columns: Vec<String>,
    max_rows: usize,
    params: Vec<Value>,
    lines: Vec<usize>,
    bytes: usize,
    pub(super) rows: u64,
}

impl<'a> Batcher<'a> {
    pub(super) fn new(job: &'a Job, sh: &'a Shared, table: &str) -> Batcher<'a> {
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
    pub(super) async fn push(
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

    pub(super) fn statement(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.columns.len()].join(","));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.columns.join(","),
            vec![one.as_str(); rows].join(",")
        )
    }

    pub(super) async fn flush(&mut self, conn: &mut Conn) -> std::result::Result<(), Failure> {
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
