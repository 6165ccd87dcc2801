//! The formats of data files doltctl loads (imports and seeds).

use std::path::Path;

use serde::Deserialize;

/// A data file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SQL statements (`.sql`).
    Sql,
    /// Comma-separated values with a header row (`.csv`).
    Csv,
    /// One JSON object per line (`.jsonl` or `.ndjson`).
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
