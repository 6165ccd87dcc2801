//! The server's life as one explicit state machine: a pure transition function
//! `(phase, event) -> (phase, actions)`. It does no I/O and reads no clock (the time comes in
//! with each step), so every transition is unit-tested; the supervisor loop only reports
//! events and performs the actions.
//!
//! | from                  | event                        | to                                         | actions             |
//! |-----------------------|------------------------------|--------------------------------------------|---------------------|
//! | starting (launching)  | launched                     | starting (server)                          |                     |
//! | starting (launching)  | launch failed, first, fatal  | failed (retry in `max_backoff`)            | wait                |
//! | starting (launching)  | launch failed                | backoff, or failed after too many failures | wait / -            |
//! | starting (server)     | ready                        | running                                    |                     |
//! | starting (server)     | exited                       | backoff / failed                           | wait / -            |
//! | starting (server)     | not ready in time            | stopping (then: failure)                   | kill                |
//! | running               | exited                       | backoff / failed                           | wait / -            |
//! | starting (server), running | replaced (a fence)      | starting (launching), no failure counted   | log, launch         |
//! | running               | wedged                       | stopping (then: failure)                   | kill                |
//! | running               | idle                         | stopping (then: idle)                      | terminate           |
//! | starting (server), running | lost (data dir gone)    | stopping (then: failure)                   | terminate           |
//! | starting, running     | stop                         | stopping (then: stopped)                   | terminate           |
//! | starting, running     | restart                      | stopping (then: relaunch)                  | terminate           |
//! | stopping              | server stopped               | stopped / idle (exit), starting (relaunch), backoff / failed | exit / launch / wait |
//! | stopping              | stop                         | stopping (then: stopped)                   |                     |
//! | stopping              | restart                      | stopping (then: relaunch)                  |                     |
//! | backoff, failed       | backoff elapsed              | starting (launching)                       | launch              |
//! | backoff, failed       | restart                      | starting (launching), failures forgotten   | launch              |
//! | backoff, failed       | stop                         | stopped                                    | exit                |
//! | starting (launching)  | stop                         | stopped                                    | exit                |
//!
//! "backoff / failed": the failure is counted; after `max_failures` within `failure_window`
//! the phase is `failed`; otherwise backoff waits 0 for the first failure of a server that had
//! been ready (a streak of quick failures ends when a server stays up `stable_after`), then
//! `initial_backoff`, doubling up to `max_backoff`. `failed` still retries by itself every
//! `max_backoff` (as Kubernetes' CrashLoopBackOff does): a port, a disk or a binary that comes
//! back brings the server back.
//! Nothing but a stop or an idle stop ends the supervisor.
//!
//! Everything else is refused ([`Refused`]); stopped and idle are final.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::RestartConfig;
use crate::lifecycle::state_file::Phase;
use crate::sys::process::ProcessIdentity;

/// A launched server process as the machine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Launch {
    pub identity: ProcessIdentity,
    pub launched_at: Instant,
}

/// What happens once a stopping server is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Then {
    /// The supervisor exits; the server stays stopped.
    Stopped,
    /// The supervisor exits after an idle stop; the next client access starts it again.
    Idle,
    /// Launch again at once (a restart was asked for).
    Relaunch,
    /// The server failed (wedged, never ready): count the failure, then back off or give up.
    Fail(String),
}

/// The phase with the data that only makes sense in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerPhase {
    /// Launching (`None`) or waiting for the launched server to answer `SELECT 1`.
    Starting(Option<Launch>),
    /// Ready since `ready_at` (wall clock, for the state file).
    Running {
        launch: Launch,
        ready_at: std::time::SystemTime,
    },
    /// Waiting `wait` before the next launch.
    Backoff { wait: Duration },
    /// Stopping the server; `then` says what follows.
    Stopping { launch: Launch, then: Then },
    /// Too many failures; waits for a restart or a stop.
    Failed,
    /// Final: stopped on request.
    Stopped,
    /// Final: stopped after `idle_timeout` without clients.
    Idle,
}

impl ServerPhase {
    /// The phase's name, as the state file and `status` show it.
    pub(crate) fn kind(&self) -> Phase {
        match self {
            ServerPhase::Starting(_) => Phase::Starting,
            ServerPhase::Running { .. } => Phase::Running,
            ServerPhase::Backoff { .. } => Phase::Backoff,
            ServerPhase::Stopping { .. } => Phase::Stopping,
            ServerPhase::Failed => Phase::Failed,
            ServerPhase::Stopped => Phase::Stopped,
            ServerPhase::Idle => Phase::Idle,
        }
    }

    /// The server process this phase has, if any.
    pub(crate) fn server(&self) -> Option<&ProcessIdentity> {
        match self {
            ServerPhase::Starting(Some(l))
            | ServerPhase::Running { launch: l, .. }
            | ServerPhase::Stopping { launch: l, .. } => Some(&l.identity),
            _ => None,
        }
    }
}

/// What the supervisor loop reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The server process was spawned.
    Launched(Launch),
    /// No server process could be launched. `fatal`: retrying soon cannot help (a foreign
    /// lock holder, no dolt binary, a fixed port taken); on the very first launch the phase
    /// goes straight to failed, so `start` reports it at once, and retries every `max_backoff`.
    LaunchFailed { error: String, fatal: bool },
    /// The server answered `SELECT 1`.
    Ready { at: std::time::SystemTime },
    /// The server did not answer within `ready_timeout`.
    NotReady(String),
    /// The server process exited on its own (already reaped).
    Exited(String),
    /// The server process was killed on purpose to relaunch it in another role (a cluster
    /// node's fence; already reaped): relaunched at once, not counted as a failure.
    Replaced(String),
    /// `max_missed` health probes in a row failed.
    Wedged(String),
    /// The server can no longer serve correctly (its data dir was removed): stop it.
    Lost(String),
    /// No client for `idle_timeout` (the start lock is already held).
    IdleTimeout,
    /// The stopping server is gone (reaped).
    ServerStopped,
    /// The backoff wait is over.
    BackoffElapsed,
    /// Stop the server and exit (SIGTERM, SIGINT).
    Stop,
    /// Restart the server now and forget past failures (SIGUSR1, `doltctl restart`).
    Restart,
}

/// What the supervisor loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Preflight and spawn a server; report `Launched` or `LaunchFailed`.
    Launch,
    /// SIGTERM to the server's group, SIGKILL after `stop_timeout`; report `ServerStopped`.
    Terminate,
    /// SIGKILL to the server's group; report `ServerStopped`.
    Kill,
    /// Report `BackoffElapsed` after this long.
    Wait(Duration),
    /// Write this event to the server log.
    Log(String),
    /// Leave the loop: the supervisor is done (stopped or idle).
    Exit,
}

/// An event the phase has no transition for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub phase: Phase,
    pub event: Event,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event {:?} is not allowed in phase {}",
            self.event, self.phase
        )
    }
}

/// The machine: the phase, plus the failure history that decides between backoff and failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Machine {
    pub phase: ServerPhase,
    policy: RestartPolicy,
    /// When recent failures happened (within `failure_window`).
    failures: VecDeque<Instant>,
    /// The next backoff wait.
    backoff: Duration,
    /// Failures in a row since the supervisor started, a restart, or a server that stayed up
    /// `stable_after`: the first of a streak, if its server had been ready, relaunches at once.
    streak: u32,
    /// Whether the current launch answered `SELECT 1` (set on ready, cleared on launch).
    was_ready: bool,
    /// Unplanned exits and failed starts since the supervisor started.
    pub restarts: u32,
    /// The last failure, for `status`.
    pub last_error: Option<String>,
    /// False until the first launch produced a process: a fatal error before that ends the
    /// supervisor instead of retrying.
    launched_once: bool,
}

/// The restart rules, from `[restart]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestartPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub stable_after: Duration,
    pub max_failures: u32,
    pub failure_window: Duration,
}

impl From<&RestartConfig> for RestartPolicy {
    fn from(c: &RestartConfig) -> Self {
        RestartPolicy {
            initial_backoff: c.initial_backoff,
            max_backoff: c.max_backoff,
            stable_after: c.stable_after,
            max_failures: c.max_failures,
            failure_window: c.failure_window,
        }
    }
}

impl Machine {
    /// A new supervisor's machine: starting, about to launch (the first action is `Launch`).
    pub(crate) fn new(policy: RestartPolicy) -> Machine {
        Machine {
            phase: ServerPhase::Starting(None),
            backoff: policy.initial_backoff,
            streak: 0,
            was_ready: false,
            policy,
            failures: VecDeque::new(),
            restarts: 0,
            last_error: None,
            launched_once: false,
        }
    }

    /// Applies an event: the new machine and the actions to perform, or `Refused`.
    pub(crate) fn step(&mut self, event: Event, now: Instant) -> Result<Vec<Action>, Refused> {
        let (next, actions) = transition(self, event, now)?;
        *self = next;
        Ok(actions)
    }
}

/// The transition function: pure, the table in the module docs.
pub(crate) fn transition(
    m: &Machine,
    event: Event,
    now: Instant,
) -> Result<(Machine, Vec<Action>), Refused> {
    use Event as E;
    use ServerPhase as P;
    let mut m = m.clone();
    let refused = |m: &Machine, event: Event| Refused {
        phase: m.phase.kind(),
        event,
    };
    let actions = match (&m.phase, event) {
        (P::Starting(None), E::Launched(launch)) => {
            m.launched_once = true;
            m.was_ready = false;
            m.phase = P::Starting(Some(launch));
            vec![]
        }
        (P::Starting(None), E::LaunchFailed { error, fatal }) => {
            if fatal && !m.launched_once {
                m.restarts += 1;
                m.last_error = Some(error.clone());
                m.phase = P::Failed;
                let retry = m.policy.max_backoff;
                vec![
                    Action::Log(format!(
                        "cannot launch: {}; retrying every {retry:?} (`doltctl restart` retries now)",
                        summary(&error)
                    )),
                    Action::Wait(retry),
                ]
            } else {
                m.launched_once = true;
                fail(&mut m, error, None, now)
            }
        }
        (P::Starting(None), E::Stop) => {
            m.phase = P::Stopped;
            vec![Action::Exit]
        }
        (P::Starting(Some(launch)), E::Ready { at }) => {
            m.was_ready = true;
            m.phase = P::Running {
                launch: launch.clone(),
                ready_at: at,
            };
            vec![]
        }
        (P::Starting(Some(_)), E::Exited(why)) => fail(&mut m, why, None, now),
        (P::Starting(Some(launch)), E::NotReady(why)) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Fail(why),
            };
            vec![Action::Kill]
        }
        (P::Running { launch, .. }, E::Exited(why)) => {
            let ran = now.saturating_duration_since(launch.launched_at);
            fail(&mut m, why, Some(ran), now)
        }
        (P::Starting(Some(_)) | P::Running { .. }, E::Replaced(why)) => {
            // Planned: neither a failure nor one of the unplanned `restarts`.
            m.was_ready = false;
            m.phase = P::Starting(None);
            vec![
                Action::Log(format!("{why}; relaunching it now")),
                Action::Launch,
            ]
        }
        (P::Running { launch, .. }, E::Wedged(why)) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Fail(why),
            };
            vec![Action::Kill]
        }
        (P::Starting(Some(launch)) | P::Running { launch, .. }, E::Lost(why)) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Fail(why),
            };
            vec![Action::Terminate]
        }
        (P::Running { launch, .. }, E::IdleTimeout) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Idle,
            };
            vec![Action::Terminate]
        }
        (P::Starting(Some(launch)) | P::Running { launch, .. }, E::Stop) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Stopped,
            };
            vec![Action::Terminate]
        }
        (P::Starting(Some(launch)) | P::Running { launch, .. }, E::Restart) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Relaunch,
            };
            forget_failures(&mut m);
            vec![Action::Terminate]
        }
        (P::Stopping { then, launch }, E::ServerStopped) => {
            let ran = now.saturating_duration_since(launch.launched_at);
            match then.clone() {
                Then::Stopped => {
                    m.phase = P::Stopped;
                    vec![Action::Exit]
                }
                Then::Idle => {
                    m.phase = P::Idle;
                    vec![
                        Action::Log(
                            "idle stop complete; the next client access starts the server again"
                                .into(),
                        ),
                        Action::Exit,
                    ]
                }
                Then::Relaunch => {
                    m.phase = P::Starting(None);
                    vec![Action::Launch]
                }
                Then::Fail(why) => fail(&mut m, why, Some(ran), now),
            }
        }
        // A stop during any stopping wins over what was planned after it.
        (P::Stopping { launch, .. }, E::Stop) => {
            m.phase = P::Stopping {
                launch: launch.clone(),
                then: Then::Stopped,
            };
            vec![]
        }
        (P::Stopping { launch, then }, E::Restart) => {
            if !matches!(then, Then::Stopped | Then::Idle) {
                m.phase = P::Stopping {
                    launch: launch.clone(),
                    then: Then::Relaunch,
                };
                forget_failures(&mut m);
            }
            vec![]
        }
        (P::Backoff { .. } | P::Failed, E::BackoffElapsed) => {
            m.phase = P::Starting(None);
            vec![Action::Launch]
        }
        (P::Backoff { .. } | P::Failed, E::Restart) => {
            forget_failures(&mut m);
            m.phase = P::Starting(None);
            vec![Action::Launch]
        }
        (P::Backoff { .. } | P::Failed, E::Stop) => {
            m.phase = P::Stopped;
            vec![Action::Exit]
        }
        (_, event) => return Err(refused(&m, event)),
    };
    Ok((m, actions))
}

fn forget_failures(m: &mut Machine) {
    m.failures.clear();
    m.backoff = m.policy.initial_backoff;
    m.streak = 0;
}

/// A failed launch or a server that died: relaunch at once, back off, or give up into `failed`
/// after `max_failures` within `failure_window`.
///
/// A server that ran at least `stable_after` ends the streak of quick failures (and resets the
/// backoff). The first failure of a streak relaunches at once (`Wait(0)`) when its server had
/// been ready: one crash of a working server is not a crash loop, and every millisecond of
/// backoff is downtime. Later failures of the streak, and servers that never became ready,
/// wait `initial_backoff`, doubling up to `max_backoff`.
fn fail(m: &mut Machine, why: String, ran: Option<Duration>, now: Instant) -> Vec<Action> {
    if ran.is_some_and(|r| r >= m.policy.stable_after) {
        m.backoff = m.policy.initial_backoff;
        m.streak = 0;
    }
    let at_once = m.streak == 0 && m.was_ready;
    m.streak = m.streak.saturating_add(1);
    m.was_ready = false;
    m.failures.push_back(now);
    while m
        .failures
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > m.policy.failure_window)
    {
        m.failures.pop_front();
    }
    m.restarts += 1;
    m.last_error = Some(why.clone());
    if m.failures.len() as u32 >= m.policy.max_failures {
        m.phase = ServerPhase::Failed;
        let retry = m.policy.max_backoff;
        return vec![
            Action::Log(format!(
                "failed {} times within {:?}: {}; retrying every {retry:?} \
                 (`doltctl restart` retries now)",
                m.failures.len(),
                m.policy.failure_window,
                summary(&why)
            )),
            Action::Wait(retry),
        ];
    }
    if at_once {
        m.phase = ServerPhase::Backoff {
            wait: Duration::ZERO,
        };
        return vec![
            Action::Log(format!(
                "server failed: {}; restarting now (it had been ready; the next failure \
                 within {:?} backs off)",
                summary(&why),
                m.policy.stable_after
            )),
            Action::Wait(Duration::ZERO),
        ];
    }
    let wait = m.backoff;
    m.backoff = (m.backoff * 2).min(m.policy.max_backoff);
    m.phase = ServerPhase::Backoff { wait };
    vec![
        Action::Log(format!(
            "server failed: {}; restarting in {wait:?}",
            summary(&why)
        )),
        Action::Wait(wait),
    ]
}

/// The first line of a failure, for the log: the full text (with its own log excerpt) is in
/// the state, and logging it whole would nest excerpts in the next excerpt.
fn summary(why: &str) -> &str {
    why.lines().next().unwrap_or(why)
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
