//! Stopping instances elsewhere on the machine to free what they hold: orphaned servers of
//! ours, and auto-started servers nobody uses. `doltctl gc` and a client's auto-start beyond
//! `[client] max_instances` share these rules; stops are graceful and identity-checked
//! ([`control::stop`]: SIGTERM to the supervisor, which stops its server; an orphan gets SIGTERM
//! to its process group, SIGKILL after `stop_timeout`). Nothing outside the user's registry is
//! ever considered, so foreign servers (a `dolt sql-server` started by hand, another user's)
//! are never touched.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Instance};
use crate::error::Result;
use crate::lifecycle::control::{self, Stopped};
use crate::lifecycle::registry::{self, Listed, Liveness};
use crate::lifecycle::state_file::Phase;

/// Why an instance is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its server runs without a supervisor: nothing restarts or health-checks it.
    Orphaned,
    /// Auto-started, and no client for this long.
    Idle(Duration),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Orphaned => f.write_str("orphaned: no supervisor"),
            Reason::Idle(d) => write!(
                f,
                "auto-started, no client for {}",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            ),
        }
    }
}

/// What the rules need to know about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub phase: Phase,
    pub auto_started: bool,
    /// `None`: unknown, which never counts as idle.
    pub idle: Option<Duration>,
    /// A dolt process of this instance runs (supervised or orphaned).
    pub serving: bool,
}

impl View {
    fn of(l: &Listed, now: SystemTime) -> View {
        View {
            phase: l.phase(),
            auto_started: l.auto_started(),
            idle: l.idle(now),
            serving: l.server().is_some(),
        }
    }
}

/// `gc`'s rule: orphans always; with `idle`, auto-started running servers without a client
/// for at least that long. Servers started by `start`/`run`, and any whose client count is
/// unknown, are left alone.
pub(crate) fn gc_reason(v: View, idle: Option<Duration>) -> Option<Reason> {
    if v.phase == Phase::Orphaned {
        return Some(Reason::Orphaned);
    }
    let limit = idle?;
    match v.idle {
        Some(d) if v.auto_started && v.phase == Phase::Running && d >= limit => {
            Some(Reason::Idle(d))
        }
        _ => None,
    }
}

/// For `[client] max_instances`: which of `views` to stop so that at most `max - 1` serve
/// (room for one more): the longest-idle auto-started running servers without clients, one at
/// a time. Fewer when not enough can be reclaimed (the cap is then exceeded, never enforced by
/// stopping a server that is in use or was started by hand).
pub(crate) fn pick_for_room(views: &[View], max: u32) -> Vec<usize> {
    let serving = views.iter().filter(|v| v.serving).count();
    let excess = (serving + 1).saturating_sub(max as usize);
    let mut idle: Vec<(usize, Duration)> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.serving && v.auto_started && v.phase == Phase::Running)
        .filter_map(|(i, v)| v.idle.filter(|d| !d.is_zero()).map(|d| (i, d)))
        .collect();
    idle.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    idle.into_iter().take(excess).map(|(i, _)| i).collect()
}

/// An instance `gc` would stop or stopped.
#[derive(Debug, Clone)]
pub struct Target {
    /// The instance.
    pub listed: Listed,
    /// Why.
    pub reason: Reason,
}

/// The instances `gc` stops, from a fresh scan of the registry (`scan` prunes it).
pub fn gc_targets(scan: &registry::Scan, idle: Option<Duration>) -> Vec<Target> {
    let now = SystemTime::now();
    scan.instances
        .iter()
        .filter_map(|l| {
            gc_reason(View::of(l, now), idle).map(|reason| Target {
                listed: l.clone(),
                reason,
            })
        })
        .collect()
}

/// Stops one instance gracefully: its supervisor (which stops its server), or its orphaned
/// server; identity-checked throughout.
pub async fn stop(listed: &Listed) -> Result<Stopped> {
    if listed.liveness == Liveness::Gone {
        return Ok(Stopped::NotRunning);
    }
    let mut cfg = Config {
        data_dir: listed.entry.data_dir.clone(),
        ..Config::default()
    };
    if let Some(t) = listed.stop_timeout() {
        cfg.server.stop_timeout = t;
    }
    // stop() reads the instance afresh and signals only what is still the recorded process.
    control::stop(&cfg).await
}

/// Before an auto-start of `cfg`'s data dir under `[client] max_instances = max`: stops the
/// longest-idle auto-started instances (other data dirs) until the new one fits, as far as
/// there are such instances. Reads the registry without pruning it. Returns the data dirs
/// whose servers it stopped.
pub async fn make_room(cfg: &Config, max: u32) -> Result<Vec<PathBuf>> {
    let own = Instance::new(&cfg.data_dir);
    let scan = registry::scan(false);
    let others: Vec<&Listed> = scan
        .instances
        .iter()
        .filter(|l| l.entry.data_dir != own.data_dir())
        .collect();
    let now = SystemTime::now();
    let views: Vec<View> = others.iter().map(|l| View::of(l, now)).collect();
    let mut out = vec![];
    for i in pick_for_room(&views, max) {
        let l = others[i];
        let idle = views[i].idle.unwrap_or_default();
        tracing::info!(
            "[client] max_instances = {max}: stopping the auto-started server of {} (no client \
             for {:?}) to start one for {}",
            l.entry.data_dir.display(),
            idle,
            own.data_dir().display()
        );
        stop(l).await?;
        out.push(l.entry.data_dir.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(phase: Phase, auto: bool, idle: Option<u64>) -> View {
        View {
            phase,
            auto_started: auto,
            idle: idle.map(Duration::from_secs),
            serving: matches!(phase, Phase::Running | Phase::Orphaned | Phase::Starting),
        }
    }

    #[test]
    fn gc_stops_orphans_and_auto_started_servers_idle_long_enough() {
        let d = Some(Duration::from_secs(60));
        // Orphans always, even without --idle.
        assert_eq!(
            gc_reason(v(Phase::Orphaned, false, None), None),
            Some(Reason::Orphaned)
        );
        assert_eq!(
            gc_reason(v(Phase::Running, true, Some(61)), d),
            Some(Reason::Idle(Duration::from_secs(61)))
        );
        // Not idle long enough, busy, started by hand, unknown, not running, no --idle.
        assert_eq!(gc_reason(v(Phase::Running, true, Some(59)), d), None);
        assert_eq!(gc_reason(v(Phase::Running, true, Some(0)), d), None);
        assert_eq!(gc_reason(v(Phase::Running, false, Some(600)), d), None);
        assert_eq!(gc_reason(v(Phase::Running, true, None), d), None);
        assert_eq!(gc_reason(v(Phase::Backoff, true, Some(600)), d), None);
        assert_eq!(gc_reason(v(Phase::Running, true, Some(600)), None), None);
    }

    #[test]
    fn room_is_made_by_stopping_the_longest_idle_auto_started_servers() {
        let views = [
            v(Phase::Running, true, Some(10)),
            v(Phase::Running, true, Some(300)),
            v(Phase::Running, false, Some(900)), // started by hand
            v(Phase::Running, true, Some(0)),    // a client is connected
            v(Phase::Orphaned, false, None),
            v(Phase::Failed, true, None), // no server: does not count
        ];
        // Five serve. A cap of 6 has room for one more; 5 needs one stopped: the longest idle.
        assert_eq!(pick_for_room(&views, 6), Vec::<usize>::new());
        assert_eq!(pick_for_room(&views, 5), vec![1]);
        assert_eq!(pick_for_room(&views, 4), vec![1, 0]);
        // Never more than the idle auto-started ones, whatever the cap.
        assert_eq!(pick_for_room(&views, 1), vec![1, 0]);
        assert_eq!(pick_for_room(&[], 1), Vec::<usize>::new());
    }
}
