//! `doltctl gc [--idle D] [--dry-run]`: stops the orphaned servers of this user and, with
//! `--idle`, the auto-started servers without a client for at least D, anywhere on the
//! machine. The rules are [`crate::lifecycle::reclaim`]'s; this runs them over the registry and
//! says what happened to each instance.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::Error;
use crate::lifecycle::control::Stopped;
use crate::lifecycle::reclaim::{self, Reason};
use crate::lifecycle::registry;

/// What `gc` did to one instance.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The data dir.
    pub data_dir: PathBuf,
    /// `orphaned` or `idle`.
    pub reason: &'static str,
    /// The reason in words.
    pub why: String,
    /// How long it had no client (idle ones).
    pub idle_ms: Option<u64>,
    /// The supervisor that was (or would be) stopped.
    pub supervisor_pid: Option<i32>,
    /// The dolt server that was (or would be) stopped.
    pub server_pid: Option<i32>,
    /// `would stop` (dry run), `stopped`, `already stopped` or `failed`.
    pub action: &'static str,
    /// Why the stop failed.
    pub error: Option<String>,
}

/// What `gc` found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// One per instance stopped (or to stop).
    pub outcomes: Vec<Outcome>,
    /// Instances left running.
    pub kept: usize,
    /// Unreadable registry or state files, each named.
    pub problems: Vec<Error>,
    /// Data dirs whose stale registry entries were removed.
    pub pruned: Vec<PathBuf>,
}

impl Report {
    /// True when a stop failed.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.error.is_some())
    }
}

/// Runs `gc`: stops (or with `dry_run` only names) the orphaned instances and, with `idle`, the
/// auto-started ones idle at least that long, one after the other.
pub async fn gc(idle: Option<Duration>, dry_run: bool) -> Report {
    let scan = registry::scan(!dry_run);
    let targets = reclaim::gc_targets(&scan, idle);
    let mut report = Report {
        kept: scan.instances.len() - targets.len(),
        problems: scan.problems,
        pruned: scan.pruned,
        outcomes: vec![],
    };
    for t in targets {
        let (reason, idle_ms) = match t.reason {
            Reason::Orphaned => ("orphaned", None),
            Reason::Idle(d) => ("idle", Some(d.as_millis().try_into().unwrap_or(u64::MAX))),
        };
        let mut o = Outcome {
            data_dir: t.listed.entry.data_dir.clone(),
            reason,
            why: t.reason.to_string(),
            idle_ms,
            supervisor_pid: t.listed.supervisor().map(|p| p.pid),
            server_pid: t.listed.server().map(|p| p.pid),
            action: "would stop",
            error: None,
        };
        if !dry_run {
            match reclaim::stop(&t.listed).await {
                Ok(Stopped::NotRunning) => o.action = "already stopped",
                Ok(_) => o.action = "stopped",
                Err(e) => {
                    o.action = "failed";
                    o.error = Some(e.to_string());
                }
            }
        }
        report.outcomes.push(o);
    }
    report
}

/// One line per outcome, e.g. `stopped /srv/a (orphaned (no supervisor); dolt pid 12)`; a
/// summary line when nothing was to stop.
pub fn lines(report: &Report) -> String {
    let mut out = String::new();
    for d in &report.pruned {
        out.push_str(&format!(
            "forgot {} (registered, but nothing of it runs any more)\n",
            d.display()
        ));
    }
    for o in &report.outcomes {
        let mut pids = vec![];
        if let Some(p) = o.supervisor_pid {
            pids.push(format!("supervisor pid {p}"));
        }
        if let Some(p) = o.server_pid {
            pids.push(format!("dolt pid {p}"));
        }
        let err = o
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {} ({}; {}){err}\n",
            o.action,
            o.data_dir.display(),
            o.why,
            pids.join(", ")
        ));
    }
    if report.outcomes.is_empty() {
        out.push_str(&format!(
            "nothing to stop ({} instance{} running)\n",
            report.kept,
            if report.kept == 1 { "" } else { "s" }
        ));
    } else if report.kept > 0 {
        out.push_str(&format!("{} left running\n", report.kept));
    }
    out
}
