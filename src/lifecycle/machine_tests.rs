//! Unit tests of the state machine: the whole transition table (every allowed transition
//! goes where the table says, every other one is refused), backoff and the failure window,
//! restart and stop in their corner cases. No process runs, and each step gets its time from
//! the test.

use super::*;

fn policy() -> RestartPolicy {
    RestartPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        stable_after: Duration::from_secs(10),
        max_failures: 3,
        failure_window: Duration::from_secs(60),
    }
}

fn launch(t: Instant) -> Launch {
    Launch {
        identity: ProcessIdentity {
            pid: 4242,
            start_time: 7,
            cmdline: vec!["dolt".into(), "sql-server".into()],
        },
        launched_at: t,
    }
}

/// Steps `m` through a launch and its readiness at `t`.
fn launch_and_ready(m: &mut Machine, t: Instant) {
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(
        Event::Ready {
            at: std::time::UNIX_EPOCH,
        },
        t,
    )
    .unwrap();
}

fn at(p: ServerPhase) -> Machine {
    Machine {
        phase: p,
        launched_once: true,
        ..Machine::new(policy())
    }
}

/// One machine in each phase (and sub-phase) the table distinguishes.
fn every_phase(t: Instant) -> Vec<Machine> {
    let l = launch(t);
    vec![
        Machine::new(policy()),
        at(ServerPhase::Starting(Some(l.clone()))),
        at(ServerPhase::Running {
            launch: l.clone(),
            ready_at: std::time::UNIX_EPOCH,
        }),
        at(ServerPhase::Backoff {
            wait: Duration::from_millis(100),
        }),
        at(ServerPhase::Stopping {
            launch: l.clone(),
            then: Then::Stopped,
        }),
        at(ServerPhase::Stopping {
            launch: l.clone(),
            then: Then::Idle,
        }),
        at(ServerPhase::Stopping {
            launch: l.clone(),
            then: Then::Relaunch,
        }),
        at(ServerPhase::Stopping {
            launch: l,
            then: Then::Fail("x".into()),
        }),
        at(ServerPhase::Failed),
        at(ServerPhase::Stopped),
        at(ServerPhase::Idle),
    ]
}

fn every_event(t: Instant) -> Vec<Event> {
    vec![
        Event::Launched(launch(t)),
        Event::LaunchFailed {
            error: "e".into(),
            fatal: false,
        },
        Event::LaunchFailed {
            error: "e".into(),
            fatal: true,
        },
        Event::Ready {
            at: std::time::UNIX_EPOCH,
        },
        Event::NotReady("slow".into()),
        Event::Exited("exit code 2".into()),
        Event::Replaced("fenced".into()),
        Event::Wedged("no answer".into()),
        Event::Lost("data dir removed".into()),
        Event::IdleTimeout,
        Event::ServerStopped,
        Event::BackoffElapsed,
        Event::Stop,
        Event::Restart,
    ]
}

fn name(m: &Machine) -> String {
    match &m.phase {
        ServerPhase::Starting(None) => "starting(launching)".into(),
        ServerPhase::Starting(Some(_)) => "starting(server)".into(),
        ServerPhase::Stopping { then, .. } => format!(
            "stopping({})",
            match then {
                Then::Stopped => "stopped",
                Then::Idle => "idle",
                Then::Relaunch => "relaunch",
                Then::Fail(_) => "fail",
            }
        ),
        p => p.kind().to_string(),
    }
}

fn ev(e: &Event) -> &'static str {
    match e {
        Event::Launched(_) => "launched",
        Event::LaunchFailed { fatal: false, .. } => "launch_failed",
        Event::LaunchFailed { fatal: true, .. } => "launch_failed_fatal",
        Event::Ready { .. } => "ready",
        Event::NotReady(_) => "not_ready",
        Event::Exited(_) => "exited",
        Event::Replaced(_) => "replaced",
        Event::Wedged(_) => "wedged",
        Event::Lost(_) => "lost",
        Event::IdleTimeout => "idle",
        Event::ServerStopped => "server_stopped",
        Event::BackoffElapsed => "backoff_elapsed",
        Event::Stop => "stop",
        Event::Restart => "restart",
    }
}

/// The allowed transitions: (from, event, to). Every other pair must be refused.
const TABLE: &[(&str, &str, &str)] = &[
    ("starting(launching)", "launched", "starting(server)"),
    ("starting(launching)", "launch_failed", "backoff"),
    ("starting(launching)", "launch_failed_fatal", "failed"),
    ("starting(launching)", "stop", "stopped"),
    ("starting(server)", "ready", "running"),
    ("starting(server)", "exited", "backoff"),
    ("starting(server)", "not_ready", "stopping(fail)"),
    ("starting(server)", "stop", "stopping(stopped)"),
    ("starting(server)", "restart", "stopping(relaunch)"),
    ("running", "exited", "backoff"),
    ("running", "replaced", "starting(launching)"),
    ("starting(server)", "replaced", "starting(launching)"),
    ("running", "wedged", "stopping(fail)"),
    ("running", "idle", "stopping(idle)"),
    ("running", "stop", "stopping(stopped)"),
    ("running", "restart", "stopping(relaunch)"),
    ("stopping(stopped)", "server_stopped", "stopped"),
    ("stopping(idle)", "server_stopped", "idle"),
    (
        "stopping(relaunch)",
        "server_stopped",
        "starting(launching)",
    ),
    ("stopping(fail)", "server_stopped", "backoff"),
    ("stopping(stopped)", "stop", "stopping(stopped)"),
    ("stopping(idle)", "stop", "stopping(stopped)"),
    ("stopping(relaunch)", "stop", "stopping(stopped)"),
    ("stopping(fail)", "stop", "stopping(stopped)"),
    ("stopping(stopped)", "restart", "stopping(stopped)"),
    ("stopping(idle)", "restart", "stopping(idle)"),
    ("stopping(relaunch)", "restart", "stopping(relaunch)"),
    ("stopping(fail)", "restart", "stopping(relaunch)"),
    ("backoff", "backoff_elapsed", "starting(launching)"),
    ("failed", "backoff_elapsed", "starting(launching)"),
    ("starting(server)", "lost", "stopping(fail)"),
    ("running", "lost", "stopping(fail)"),
    ("backoff", "restart", "starting(launching)"),
    ("backoff", "stop", "stopped"),
    ("failed", "restart", "starting(launching)"),
    ("failed", "stop", "stopped"),
];

#[test]
fn every_allowed_transition_goes_where_the_table_says_and_all_others_are_refused() {
    let t = Instant::now();
    let mut seen = 0;
    for m in every_phase(t) {
        for e in every_event(t) {
            let from = name(&m);
            let expected = TABLE
                .iter()
                .find(|(f, x, _)| *f == from && *x == ev(&e))
                .map(|(_, _, to)| *to);
            match (transition(&m, e.clone(), t), expected) {
                (Ok((next, _)), Some(to)) => {
                    seen += 1;
                    assert_eq!(name(&next), to, "{from} --{}-->", ev(&e));
                }
                (Err(r), None) => {
                    assert_eq!(r.phase, m.phase.kind());
                    assert_eq!(r.event, e);
                }
                (Ok((next, _)), None) => {
                    panic!("{from} --{}--> {} is not in the table", ev(&e), name(&next))
                }
                (Err(r), Some(to)) => panic!("{from} --{}--> {to} refused: {r}", ev(&e)),
            }
        }
    }
    assert_eq!(seen, TABLE.len(), "every table row was exercised once");
}

#[test]
fn a_fatal_error_before_any_launch_fails_at_once_and_retries_every_max_backoff() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    let fatal = Event::LaunchFailed {
        error: "locked by pid 9".into(),
        fatal: true,
    };
    assert_eq!(
        m.clone().step(fatal.clone(), t).unwrap()[1..],
        [Action::Wait(Duration::from_millis(400))]
    );
    let mut first = m.clone();
    first.step(fatal.clone(), t).unwrap();
    assert_eq!(first.phase, ServerPhase::Failed);
    assert_eq!(first.last_error.as_deref(), Some("locked by pid 9"));
    assert_eq!(
        first.step(Event::BackoffElapsed, t).unwrap(),
        vec![Action::Launch]
    );
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(Event::Exited("exit code 1".into()), t).unwrap();
    m.step(Event::BackoffElapsed, t).unwrap();
    let actions = m.step(fatal, t).unwrap();
    assert!(matches!(m.phase, ServerPhase::Backoff { .. }), "{m:?}");
    assert!(actions.contains(&Action::Wait(Duration::from_millis(200))));
}

#[test]
fn backoff_doubles_up_to_the_maximum_and_too_many_failures_end_in_failed() {
    let t = Instant::now();
    let mut m = Machine {
        policy: RestartPolicy {
            max_failures: 5,
            ..policy()
        },
        ..Machine::new(policy())
    };
    let mut waits = vec![];
    for _ in 0..4 {
        m.step(Event::Launched(launch(t)), t).unwrap();
        for a in m.step(Event::Exited("exit code 1".into()), t).unwrap() {
            if let Action::Wait(d) = a {
                waits.push(d.as_millis());
            }
        }
        m.step(Event::BackoffElapsed, t).unwrap();
    }
    assert_eq!(waits, vec![100, 200, 400, 400]);
    m.step(Event::Launched(launch(t)), t).unwrap();
    let actions = m.step(Event::Exited("exit code 1".into()), t).unwrap();
    assert_eq!(m.phase, ServerPhase::Failed);
    assert_eq!(m.restarts, 5);
    assert_eq!(m.last_error.as_deref(), Some("exit code 1"));
    assert!(
        matches!(&actions[..], [Action::Log(l), Action::Wait(w)]
            if l.contains("failed 5 times") && *w == Duration::from_millis(400)),
        "{actions:?}"
    );
    // Failed is not for good: after max_backoff it tries again.
    assert_eq!(
        m.step(Event::BackoffElapsed, t).unwrap(),
        vec![Action::Launch]
    );
}

#[test]
fn failures_outside_the_window_are_forgotten() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    for i in 0..5u64 {
        // A minute and a bit apart: never more than one failure in the window.
        let now = t + Duration::from_secs(61 * i);
        m.step(Event::Launched(launch(now)), now).unwrap();
        m.step(Event::Exited("exit code 1".into()), now).unwrap();
        assert!(matches!(m.phase, ServerPhase::Backoff { .. }), "{m:?}");
        m.step(Event::BackoffElapsed, now).unwrap();
    }
}

#[test]
fn a_server_that_stayed_up_resets_the_backoff() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(Event::Exited("x".into()), t).unwrap();
    m.step(Event::BackoffElapsed, t).unwrap();
    launch_and_ready(&mut m, t);
    let later = t + Duration::from_secs(11);
    // It stayed up: this crash starts a new streak, relaunched at once...
    let actions = m.step(Event::Exited("x".into()), later).unwrap();
    assert!(
        actions.contains(&Action::Wait(Duration::ZERO)),
        "{actions:?}"
    );
    // ...and the next quick crash waits initial_backoff again, not the 200 ms it had reached.
    // (Past the first failure's window, so max_failures is not the point here.)
    let quick = t + Duration::from_secs(62);
    m.step(Event::BackoffElapsed, quick).unwrap();
    m.step(Event::Launched(launch(quick)), quick).unwrap();
    let actions = m.step(Event::Exited("x".into()), quick).unwrap();
    assert!(
        actions.contains(&Action::Wait(Duration::from_millis(100))),
        "{actions:?}"
    );
}

/// The waits of a sequence of launches: `true` = the server became ready before it exited.
/// Every crash comes 1 s after its launch (well under `stable_after`).
fn waits_of(ready: &[bool], max_failures: u32) -> (Vec<u128>, Machine) {
    let t = Instant::now();
    let mut m = Machine {
        policy: RestartPolicy {
            max_failures,
            ..policy()
        },
        ..Machine::new(policy())
    };
    let mut waits = vec![];
    for (i, r) in ready.iter().enumerate() {
        let now = t + Duration::from_secs(2 * i as u64);
        m.step(Event::Launched(launch(now)), now).unwrap();
        let crash = now + Duration::from_secs(1);
        if *r {
            m.step(
                Event::Ready {
                    at: std::time::UNIX_EPOCH,
                },
                now,
            )
            .unwrap();
        }
        for a in m.step(Event::Exited("killed".into()), crash).unwrap() {
            if let Action::Wait(d) = a {
                waits.push(d.as_millis());
            }
        }
        if matches!(m.phase, ServerPhase::Backoff { .. }) {
            m.step(Event::BackoffElapsed, crash).unwrap();
        }
    }
    (waits, m)
}

#[test]
fn the_first_crash_of_a_ready_server_relaunches_at_once_then_backoff_grows() {
    let (waits, m) = waits_of(&[true, true, true, true, true], 10);
    assert_eq!(waits, vec![0, 100, 200, 400, 400]);
    assert_eq!(m.restarts, 5);
}

#[test]
fn the_at_once_relaunch_logs_why_and_stays_in_backoff_for_zero() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    launch_and_ready(&mut m, t);
    let actions = m.step(Event::Exited("signal 9".into()), t).unwrap();
    assert_eq!(
        m.phase,
        ServerPhase::Backoff {
            wait: Duration::ZERO
        }
    );
    assert!(
        matches!(&actions[..], [Action::Log(l), Action::Wait(w)]
            if l.contains("restarting now") && l.contains("signal 9") && w.is_zero()),
        "{actions:?}"
    );
    assert_eq!(
        m.step(Event::BackoffElapsed, t).unwrap(),
        vec![Action::Launch]
    );
}

#[test]
fn a_server_that_never_became_ready_never_relaunches_at_once() {
    let (waits, _) = waits_of(&[false, false, false], 10);
    assert_eq!(waits, vec![100, 200, 400]);
    // Ready only after a streak began: still the streak's backoff.
    let (waits, _) = waits_of(&[false, true, true], 10);
    assert_eq!(waits, vec![100, 200, 400]);
}

#[test]
fn a_wedged_ready_server_is_replaced_at_once_the_first_time() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    launch_and_ready(&mut m, t);
    m.step(Event::Wedged("no answer".into()), t).unwrap();
    let actions = m.step(Event::ServerStopped, t).unwrap();
    assert!(
        actions.contains(&Action::Wait(Duration::ZERO)),
        "{actions:?}"
    );
    // A server killed for never becoming ready backs off.
    m.step(Event::BackoffElapsed, t).unwrap();
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(Event::NotReady("slow".into()), t).unwrap();
    let actions = m.step(Event::ServerStopped, t).unwrap();
    assert!(
        actions.contains(&Action::Wait(Duration::from_millis(100))),
        "{actions:?}"
    );
}

#[test]
fn a_crash_loop_of_ready_servers_still_ends_in_failed() {
    let (waits, m) = waits_of(&[true, true, true], 3);
    assert_eq!(m.phase, ServerPhase::Failed);
    assert_eq!(
        waits,
        vec![0, 100, 400],
        "the third is failed's max_backoff retry"
    );
}

#[test]
fn restart_ends_the_streak_so_the_next_ready_crash_relaunches_at_once() {
    let t = Instant::now();
    let (_, mut m) = waits_of(&[true, true], 10);
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(Event::Restart, t).unwrap();
    m.step(Event::ServerStopped, t).unwrap();
    launch_and_ready(&mut m, t);
    let actions = m.step(Event::Exited("x".into()), t).unwrap();
    assert!(
        actions.contains(&Action::Wait(Duration::ZERO)),
        "{actions:?}"
    );
}

#[test]
fn restart_forgets_failures_and_relaunches_after_the_server_stopped() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(Event::Exited("x".into()), t).unwrap();
    m.step(Event::BackoffElapsed, t).unwrap();
    m.step(Event::Launched(launch(t)), t).unwrap();
    assert_eq!(m.step(Event::Restart, t).unwrap(), vec![Action::Terminate]);
    assert_eq!(
        m.step(Event::ServerStopped, t).unwrap(),
        vec![Action::Launch]
    );
    m.step(Event::Launched(launch(t)), t).unwrap();
    let actions = m.step(Event::Exited("x".into()), t).unwrap();
    assert!(actions.contains(&Action::Wait(Duration::from_millis(100))));
}

#[test]
fn a_stop_during_a_wedge_kill_exits_instead_of_restarting() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    launch_and_ready(&mut m, t);
    assert_eq!(
        m.step(Event::Wedged("w".into()), t).unwrap(),
        vec![Action::Kill]
    );
    assert_eq!(m.step(Event::Stop, t).unwrap(), vec![]);
    assert_eq!(m.step(Event::ServerStopped, t).unwrap(), vec![Action::Exit]);
    assert_eq!(m.phase, ServerPhase::Stopped);
}

#[test]
fn only_phases_with_a_process_report_one() {
    let t = Instant::now();
    for m in every_phase(t) {
        let has = matches!(
            m.phase,
            ServerPhase::Starting(Some(_))
                | ServerPhase::Running { .. }
                | ServerPhase::Stopping { .. }
        );
        assert_eq!(m.phase.server().is_some(), has, "{m:?}");
    }
}

#[test]
fn fences_relaunch_at_once_and_never_count_toward_failed() {
    let t = Instant::now();
    let mut m = Machine::new(policy());
    // Far more fences than max_failures, all within the failure window.
    for i in 0..(policy().max_failures * 3) {
        let now = t + Duration::from_millis(10 * i as u64);
        m.step(Event::Launched(launch(now)), now).unwrap();
        let actions = m.step(Event::Replaced("fenced".into()), now).unwrap();
        assert_eq!(m.phase, ServerPhase::Starting(None));
        assert!(actions.contains(&Action::Launch), "{actions:?}");
    }
    assert!(m.failures.is_empty());
    assert_eq!(m.restarts, 0);
    // A real crash afterwards is the first failure of a streak.
    m.step(Event::Launched(launch(t)), t).unwrap();
    m.step(Event::Exited("signal 9".into()), t).unwrap();
    assert_eq!(m.failures.len(), 1);
}
