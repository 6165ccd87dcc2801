//! `doltctl ps` and `doltctl gc`: every instance of this user, from any directory, without a
//! config.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::fleet::{gc as gcs, ps as pss};

/// `doltctl ps [--json]`: exit 0, also when nothing runs. Unreadable registry or state files
/// are warnings on stderr, naming the file; the other instances are listed all the same.
pub fn ps(json: bool) -> Result<ExitCode> {
    let report = pss::ps();
    for p in &report.problems {
        errln!("doltctl: warning: {p}");
    }
    for d in &report.pruned {
        tracing::info!("forgot {}: nothing of it runs any more", d.display());
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{:#}", serde_json::json!(report.rows)).at("stdout")?;
    } else {
        write!(out, "{}", pss::table(&report.rows)).at("stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The options of `doltctl gc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcArgs {
    /// Also stop auto-started servers without a client for at least this long.
    pub idle: Option<Duration>,
    /// Only say what would be stopped.
    pub dry_run: bool,
    /// One JSON array of outcomes.
    pub json: bool,
}

/// `doltctl gc [--idle D] [--dry-run] [--json]`: exit 0, or 1 when a stop failed.
pub fn gc(args: GcArgs) -> Result<ExitCode> {
    let report = super::runtime(false)?.block_on(gcs::gc(args.idle, args.dry_run));
    for p in &report.problems {
        errln!("doltctl: warning: {p}");
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{:#}", serde_json::json!(report.outcomes)).at("stdout")?;
    } else {
        write!(out, "{}", gcs::lines(&report)).at("stdout")?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
