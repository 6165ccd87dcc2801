//! The Prometheus text exposition format (version 0.0.4) of a [`Snapshot`]: a pure function,
//! so every line is unit-tested without a server.

use std::fmt::Write;
use std::time::Instant;

use super::{ExitReason, Snapshot};
use crate::lifecycle::state_file::Phase;

/// The `Content-Type` of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The phases a supervisor can be in; `orphaned` is derived by `status`, never a
/// supervisor's own phase, so it is not listed.
const PHASES: [Phase; 7] = [
    Phase::Starting,
    Phase::Running,
    Phase::Backoff,
    Phase::Stopping,
    Phase::Failed,
    Phase::Stopped,
    Phase::Idle,
];

/// The metrics as of `now`. Every metric has its `# HELP` and `# TYPE`; a gauge with no value
/// yet (no start finished, clients not counted) has no sample rather than a made-up 0.
pub(crate) fn render(s: &Snapshot, now: Instant) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {}", number(*v));
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    metric(
        "doltctl_info",
        "gauge",
        "The supervised data dir and versions; always 1.",
        &[(
            labels(&[
                ("data_dir", &s.data_dir),
                ("dolt_version", s.dolt_version.as_deref().unwrap_or("")),
                ("version", crate::cli::VERSION),
            ]),
            1.0,
        )],
    );
    metric(
        "doltctl_up",
        "gauge",
        "The supervisor is up (it answers this scrape); always 1.",
        &one(1.0),
    );
    metric(
        "doltctl_ready",
        "gauge",
        "1 when dolt sql-server is running and answered SELECT 1, else 0.",
        &one(bool_value(s.phase == Phase::Running)),
    );
    let phases: Vec<_> = PHASES
        .iter()
        .map(|p| {
            (
                labels(&[("phase", &p.to_string())]),
                bool_value(*p == s.phase),
            )
        })
        .collect();
    metric(
        "doltctl_phase",
        "gauge",
        "The supervisor's phase: 1 for the current one, 0 for the others.",
        &phases,
    );
    metric(
        "doltctl_restarts_total",
        "counter",
        "Unplanned exits and failed starts of dolt since the supervisor started.",
        &one(f64::from(s.restarts)),
    );
    let start: Vec<_> = s.last_start.map(|d| d.as_secs_f64()).into_iter().collect();
    metric(
        "doltctl_last_start_duration_seconds",
        "gauge",
        "From launch to the first answered SELECT 1, for the last start that became ready.",
        &start
            .into_iter()
            .map(|v| (String::new(), v))
            .collect::<Vec<_>>(),
    );
    let mut reasons = vec![(
        labels(&[("reason", "none")]),
        bool_value(s.last_exit.is_none()),
    )];
    reasons.extend(ExitReason::ALL.iter().map(|r| {
        (
            labels(&[("reason", r.label())]),
            bool_value(s.last_exit == Some(*r)),
        )
    }));
    metric(
        "doltctl_last_exit_reason",
        "gauge",
        "Why the last dolt server ended (or is ending): 1 for that reason, 0 for the others; \
         none: no server has ended yet.",
        &reasons,
    );
    metric(
        "doltctl_uptime_seconds",
        "gauge",
        "How long dolt sql-server has been ready; 0 when it is not.",
        &one(s
            .ready_since
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64())),
    );
    metric(
        "doltctl_supervisor_uptime_seconds",
        "gauge",
        "How long the supervisor has run.",
        &one(now
            .saturating_duration_since(s.supervisor_started)
            .as_secs_f64()),
    );
    let clients: Vec<_> = s
        .clients
        .map(|n| (String::new(), n as f64))
        .into_iter()
        .collect();
    metric(
        "doltctl_client_connections",
        "gauge",
        "Client connections to dolt, besides the supervisor's probe, at the last health check.",
        &clients,
    );
    out
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A sample value: integers without a fraction, others with millisecond precision.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// `{a="x",b="y"}` with the format's escapes (backslash, double quote, newline).
fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn snapshot(now: Instant) -> Snapshot {
        Snapshot {
            phase: Phase::Running,
            restarts: 2,
            last_start: Some(Duration::from_millis(1234)),
            last_exit: Some(ExitReason::Crashed),
            ready_since: Some(now - Duration::from_secs(90)),
            supervisor_started: now - Duration::from_secs(100),
            clients: Some(3),
            data_dir: "/srv/data \"x\"\\y".into(),
            dolt_version: Some("2.2.0".into()),
        }
    }

    /// The value of the sample line that starts with `series` (name and labels).
    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn a_running_server_renders_every_metric_with_help_and_type() {
        let now = Instant::now();
        let text = render(&snapshot(now), now);
        for (series, value) in [
            ("doltctl_up", "1"),
            ("doltctl_ready", "1"),
            ("doltctl_phase{phase=\"running\"}", "1"),
            ("doltctl_phase{phase=\"starting\"}", "0"),
            ("doltctl_phase{phase=\"idle\"}", "0"),
            ("doltctl_restarts_total", "2"),
            ("doltctl_last_start_duration_seconds", "1.234"),
            ("doltctl_last_exit_reason{reason=\"crashed\"}", "1"),
            ("doltctl_last_exit_reason{reason=\"none\"}", "0"),
            ("doltctl_last_exit_reason{reason=\"wedged\"}", "0"),
            ("doltctl_uptime_seconds", "90"),
            ("doltctl_supervisor_uptime_seconds", "100"),
            ("doltctl_client_connections", "3"),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        // Every metric name has HELP and TYPE lines, before its samples.
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();
        for name in names {
            let help = text.find(&format!("# HELP {name} ")).expect(name);
            let kind = text.find(&format!("# TYPE {name} ")).expect(name);
            let first = text.find(&format!("\n{name}")).expect(name);
            assert!(help < kind && kind < first, "{name}");
        }
        assert_eq!(text.matches("doltctl_phase{").count(), 7);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn labels_are_escaped() {
        let now = Instant::now();
        let text = render(&snapshot(now), now);
        assert!(
            text.contains(r#"doltctl_info{data_dir="/srv/data \"x\"\\y",dolt_version="2.2.0","#),
            "{text}"
        );
        assert_eq!(labels(&[("a", "x\ny")]), "{a=\"x\\ny\"}");
    }

    #[test]
    fn before_the_first_ready_there_is_no_made_up_value() {
        let now = Instant::now();
        let s = Snapshot {
            phase: Phase::Starting,
            restarts: 0,
            last_start: None,
            last_exit: None,
            ready_since: None,
            clients: None,
            dolt_version: None,
            ..snapshot(now)
        };
        let text = render(&s, now);
        assert_eq!(sample(&text, "doltctl_ready"), Some("0"));
        assert_eq!(
            sample(&text, "doltctl_phase{phase=\"starting\"}"),
            Some("1")
        );
        assert_eq!(sample(&text, "doltctl_uptime_seconds"), Some("0"));
        assert_eq!(
            sample(&text, "doltctl_last_exit_reason{reason=\"none\"}"),
            Some("1")
        );
        assert!(text.contains("# TYPE doltctl_last_start_duration_seconds gauge\n# HELP"));
        assert!(!text.contains("\ndoltctl_client_connections "), "{text}");
    }
}
