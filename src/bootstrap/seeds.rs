//! Seeds: each `[[bootstrap.seed]]` file is applied once, through the server like `doltctl
//! import` (one transaction) and committed as `seed: <file>`. `<runtime>/seeds.json` records
//! each applied seed with the SHA-256 of its content.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::author::Author;
use super::{Action, InitOptions, InitReport};
use crate::config::instance::Instance;
use crate::config::{Config, SeedConfig};
use crate::error::{Error, Result};
use crate::import::{self, CommitSpec, ImportSpec};
use crate::sys::atomic::write_atomic;
use crate::sys::clock::now_rfc3339;

/// `<runtime>/seeds.json`.
pub fn seeds_file(instance: &Instance) -> PathBuf {
    instance.runtime_dir().join("seeds.json")
}

/// The record of applied seeds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedLog {
    /// One entry per applied seed, in the order applied.
    pub applied: Vec<AppliedSeed>,
}

/// One seed that was applied (or found committed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedSeed {
    /// The seed's database.
    pub db: String,
    /// The seed's `file` as written in the config.
    pub file: String,
    /// SHA-256 of the file's content then, in hex.
    pub sha256: String,
    /// When it was applied or recorded (RFC 3339).
    pub applied_at: String,
    /// The Dolt commit that applied it, when known.
    pub commit: Option<String>,
}

impl SeedLog {
    /// Reads the record at `path`; no file is an empty record.
    pub fn read(path: &Path) -> Result<SeedLog> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SeedLog::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_str(&text).map_err(|e| Error::Import {
            path: path.to_path_buf(),
            line: Some(e.line()),
            message: format!(
                "not a valid seed record ({e}); fix it, or remove it to have every seed \
                 applied again"
            ),
        })
    }

    fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Import {
            path: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        write_atomic(path, &json)
    }

    pub(super) fn find(&self, db: &str, file: &str) -> Option<&AppliedSeed> {
        self.applied.iter().find(|s| s.db == db && s.file == file)
    }
}

/// A seed of the config, with its content's hash.
pub(super) struct Seed {
    pub(super) cfg: SeedConfig,
    /// As written in the config.
    pub(super) name: String,
    path: PathBuf,
    pub(super) sha256: String,
}

pub(super) fn read_seeds(cfg: &Config) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    for s in &cfg.bootstrap.seed {
        let path = cfg.resolve(&s.file);
        let bytes = std::fs::read(&path).map_err(|e| Error::Import {
            path: path.clone(),
            line: None,
            message: format!(
                "cannot read this seed file ([[bootstrap.seed]] file = {:?} in {}): {e}",
                s.file.display(),
                cfg.source
                    .as_deref()
                    .map_or("the config".into(), |p| p.display().to_string())
            ),
        })?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push(Seed {
            cfg: s.clone(),
            name: s.file.to_string_lossy().into_owned(),
            path,
            sha256,
        });
    }
    Ok(out)
}

pub(super) async fn apply_seeds(
    cfg: &Config,
    opts: &InitOptions,
    author: &Author,
    pending: &[&Seed],
    log: &mut SeedLog,
    log_path: &Path,
    report: &mut InitReport,
) -> Result<()> {
    for s in pending {
        let message = format!("seed: {}", s.name);
        let mut record = AppliedSeed {
            db: s.cfg.db.clone(),
            file: s.name.clone(),
            sha256: s.sha256.clone(),
            applied_at: now_rfc3339(),
            commit: None,
        };
        if let Some(commit) = seed_commit(cfg, &s.cfg.db, &message).await? {
            report.actions.push(Action::RecordedSeed {
                db: s.cfg.db.clone(),
                file: s.name.clone(),
                commit: commit.clone(),
            });
            record.commit = Some(commit);
        } else {
            let spec = ImportSpec {
                table: s.cfg.table.clone(),
                format: s.cfg.format,
                commit: Some(CommitSpec {
                    message,
                    author: author.to_string(),
                }),
                progress: opts.progress,
                ..ImportSpec::new(&s.path, &s.cfg.db)
            };
            let summary = import::run(cfg, &spec).await?;
            report.actions.push(Action::AppliedSeed {
                db: s.cfg.db.clone(),
                file: s.name.clone(),
                rows: summary.rows,
                commit: summary.commit.clone(),
            });
            record.commit = summary.commit;
        }
        log.applied.push(record);
        log.write(log_path)?;
        report.seeds_applied += 1;
    }
    Ok(())
}

/// The commit a seed made, if the database has one with its message (the record was lost).
async fn seed_commit(cfg: &Config, db: &str, message: &str) -> Result<Option<String>> {
    use mysql_async::prelude::Queryable;
    let client = crate::Client::from_config(cfg.clone()).database(db);
    let message = message.to_string();
    client
        .with_retry(move |conn| {
            let message = message.clone();
            Box::pin(async move {
                conn.exec_first::<String, _, _>(
                    "SELECT commit_hash FROM dolt_log WHERE message = ? LIMIT 1",
                    (message,),
                )
                .await
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bootstrap::author;

    #[test]
    fn seeds_parse_and_resolve_relative_to_the_config() {
        let cfg = Config::parse_str(
            r#"
[bootstrap]
author_name = "A"
author_email = "a@example.com"
[[bootstrap.seed]]
db = "app"
file = "seeds/schema.sql"
[[bootstrap.seed]]
db = "app"
file = "seeds/u.data"
table = "users"
format = "csv"
"#,
            Path::new("/p/doltctl.toml"),
        )
        .unwrap();
        let mut cfg = cfg;
        cfg.source = Some(PathBuf::from("/p/doltctl.toml"));
        assert_eq!(cfg.bootstrap.seed.len(), 2);
        assert_eq!(
            cfg.resolve(&cfg.bootstrap.seed[0].file),
            PathBuf::from("/p/seeds/schema.sql")
        );
        assert_eq!(cfg.bootstrap.seed[1].format, Some(import::Format::Csv));
        assert_eq!(
            author(&cfg),
            Author {
                name: "A".into(),
                email: "a@example.com".into()
            }
        );
        let bad = Config::parse_str(
            "[[bootstrap.seed]]\ndb = \"app\"\nfile = \"x.sql\"\nformat = \"xml\"\n",
            Path::new("/p/doltctl.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("bootstrap.seed[0].format"), "{bad}");
    }
}
