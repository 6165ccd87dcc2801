//! `doltctl cluster status` and `doltctl cluster switchover`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::error::{IoContext, Result};
use crate::lifecycle::cluster::status;

/// `doltctl cluster status [--json]`: exit 0 when exactly one reachable node is primary and
/// it holds the lease, else 4.
pub fn cluster_status(cfg: &Config, json: bool) -> Result<ExitCode> {
    let st = super::runtime(false)?.block_on(status::status(cfg))?;
    let primaries: Vec<&str> = st
        .nodes
        .iter()
        .filter(|n| n.role.as_deref() == Some("primary"))
        .map(|n| n.name.as_str())
        .collect();
    let healthy = primaries.len() == 1 && st.leader.as_deref() == primaries.first().copied();
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::to_value(&st).unwrap_or_default();
        writeln!(out, "{v:#}").at("stdout")?;
    } else {
        writeln!(
            out,
            "cluster {}: etcd {}, leader {}{}{}",
            st.cluster,
            if st.etcd_reachable {
                "reachable"
            } else {
                "UNREACHABLE (read-only until it returns)"
            },
            match (&st.leader, &st.last_leader) {
                (Some(l), _) => l.clone(),
                (None, Some(last)) => format!("none (last: {last})"),
                (None, None) => "none".into(),
            },
            st.epoch.map(|e| format!(", epoch {e}")).unwrap_or_default(),
            st.lease_expires_at
                .as_deref()
                .map(|t| format!(", lease until {t} unless renewed"))
                .unwrap_or_default()
        )
        .at("stdout")?;
        for n in &st.nodes {
            let mut role = match (&n.role, n.epoch) {
                (Some(r), Some(e)) => format!("{r} at epoch {e}"),
                _ => "unreachable".into(),
            };
            match n.caught_up {
                Some(true) => role.push_str(", caught up"),
                Some(false) => role.push_str(", NOT caught up (not promoted on a failover)"),
                None => {}
            }
            writeln!(out, "  {:<10} {:<22} {role}", n.name, n.address).at("stdout")?;
            for l in &n.replication {
                writeln!(
                    out,
                    "    {:<20} lag {}{}",
                    l.database,
                    l.lag_ms.map_or("unknown".into(), |ms| format!("{ms} ms")),
                    l.error
                        .as_deref()
                        .map(|e| format!(" (error: {e})"))
                        .unwrap_or_default()
                )
                .at("stdout")?;
            }
        }
    }
    if let Some(why) = &st.etcd_error {
        // Why, on stderr: a diagnostic, not part of the status a script parses.
        errln!("doltctl: etcd at {}: {why}", st.etcd_endpoints);
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_NOT_READY)
    })
}

/// `doltctl cluster failover --to NODE`: promotes a node while none leads; prints it.
pub fn cluster_failover(cfg: &Config, to: &str, wait: Duration) -> Result<ExitCode> {
    let node = super::runtime(false)?.block_on(status::failover(cfg, to, wait))?;
    outln!("{node} is the primary");
    Ok(ExitCode::SUCCESS)
}

/// `doltctl cluster switchover [--to NODE]`: prints the new primary.
pub fn cluster_switchover(cfg: &Config, to: Option<&str>, wait: Duration) -> Result<ExitCode> {
    let node = super::runtime(false)?.block_on(status::switchover(cfg, to, wait))?;
    outln!("{node} is the primary");
    Ok(ExitCode::SUCCESS)
}
