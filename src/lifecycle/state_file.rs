//! The state file (`<runtime>/state.json`): what the supervisor tells everyone else.
//! Written atomically (temp file + rename, 0600) so readers never see half a file; reading it
//! has no side effects.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::atomic::write_atomic;
use crate::sys::process::ProcessIdentity;

/// A phase of the server's life, by name (see the state machine in ARCHITECTURE.md), as
/// `status` reports it. All but [`Phase::Orphaned`] are phases of the supervisor's state
/// machine and are what the state file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Launching, or waiting for the server to answer `SELECT 1`.
    Starting,
    /// Ready for clients.
    Running,
    /// Waiting before the next launch after a failure.
    Backoff,
    /// Stopping the server.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Too many failures; `doltctl restart` tries again.
    Failed,
    /// Stopped by the supervisor after `idle_timeout` without clients.
    Idle,
    /// A server of ours runs without a supervisor (its supervisor was killed, or its state
    /// file lost): nothing restarts or health-checks it. Never recorded in the state file and
    /// not a phase of the supervisor's state machine: only
    /// [`control::Status::phase`](crate::control::Status::phase) derives it, from the state
    /// file and the processes alive. `doltctl stop` stops such a server; `doltctl start`
    /// replaces it with a supervised one.
    Orphaned,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Backoff => "backoff",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::Idle => "idle",
            Phase::Orphaned => "orphaned",
        };
        f.write_str(s)
    }
}

/// The phase as the state file records it, with the data that belongs to it: only a starting,
/// running or stopping phase has a server process, and only a running one a ready time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PhaseRecord {
    /// Launching, or waiting for the launched server to answer.
    Starting {
        /// The launched server, once there is one.
        #[serde(default)]
        server: Option<ProcessIdentity>,
    },
    /// Ready.
    Running {
        /// The server process.
        server: ProcessIdentity,
        /// When it became ready (RFC 3339).
        started_at: String,
    },
    /// Waiting before the next launch after a failure.
    Backoff,
    /// Stopping the server.
    Stopping {
        /// The server being stopped.
        #[serde(default)]
        server: Option<ProcessIdentity>,
    },
    /// Stopped on request.
    Stopped,
    /// Too many failures; `doltctl restart` tries again.
    Failed,
    /// Stopped after `idle_timeout` without clients.
    Idle,
}

impl PhaseRecord {
    /// The phase's name.
    pub fn kind(&self) -> Phase {
        match self {
            PhaseRecord::Starting { .. } => Phase::Starting,
            PhaseRecord::Running { .. } => Phase::Running,
            PhaseRecord::Backoff => Phase::Backoff,
            PhaseRecord::Stopping { .. } => Phase::Stopping,
            PhaseRecord::Stopped => Phase::Stopped,
            PhaseRecord::Failed => Phase::Failed,
            PhaseRecord::Idle => Phase::Idle,
        }
    }

    /// The server process of this phase, if it has one.
    pub fn server(&self) -> Option<&ProcessIdentity> {
        match self {
            PhaseRecord::Running { server, .. } => Some(server),
            PhaseRecord::Starting { server } | PhaseRecord::Stopping { server } => server.as_ref(),
            _ => None,
        }
    }
}

/// What the supervisor tells everyone else about its instance (`<runtime>/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The phase and its data (`state`, and `server`/`started_at` where they apply).
    #[serde(flatten)]
    pub phase: PhaseRecord,
    /// The supervisor process.
    pub supervisor: Option<ProcessIdentity>,
    /// The host the server listens on.
    pub host: String,
    /// Its TCP port (0 before the first launch).
    pub port: u16,
    /// Its unix socket.
    pub socket: Option<PathBuf>,
    /// The connection URL, without password.
    pub url: Option<String>,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The server was started read-only.
    pub read_only: bool,
    /// Unplanned server exits and failed starts since the supervisor started.
    pub restarts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Last lines of the server log when the last error happened.
    #[serde(default)]
    pub log_tail: Vec<String>,
    /// What `dolt version` said.
    pub dolt_version: Option<String>,
    /// When this file was written (RFC 3339).
    pub updated_at: String,
    /// Client connections the supervisor last counted (its own probe not included); `null`
    /// while no server runs or before the first count.
    #[serde(default)]
    pub clients: Option<u64>,
    /// When a client was last seen connected (RFC 3339): updated when the count changes from
    /// or to zero, so while clients are connected it is when the first came; the server's
    /// first ready time if no client came yet. Idle time is "now minus this" while `clients`
    /// is 0.
    #[serde(default)]
    pub last_client_at: Option<String>,
    /// The supervisor was started by a client's auto-start (`Client`, `url --ensure`, ...),
    /// not by `start` or `run`: `doltctl gc --idle` and `[client] max_instances` may stop it.
    #[serde(default)]
    pub auto_started: bool,
    /// A cluster node's role, epoch and leader (`[cluster]`); absent for a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::lifecycle::cluster::ClusterView>,
}

/// The one definition of "ready": the phase is running and both the supervisor and the server
/// it recorded are still those processes.
pub(crate) fn is_ready(phase: Phase, supervisor_alive: bool, server_alive: bool) -> bool {
    phase == Phase::Running && supervisor_alive && server_alive
}

impl State {
    /// Reads the state file; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::StateFile {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Writes the state file atomically.
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::StateFile {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &json)
    }

    /// True if the supervisor recorded here is still that process.
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor.as_ref().is_some_and(|p| p.is_running())
    }

    /// True if the server recorded here is still that process.
    pub fn server_alive(&self) -> bool {
        self.server().is_some_and(|p| p.is_running())
    }

    /// Running and ready: the supervisor and the server it recorded are both alive.
    pub fn is_ready(&self) -> bool {
        is_ready(self.kind(), self.supervisor_alive(), self.server_alive())
    }

    /// The phase's name.
    pub fn kind(&self) -> Phase {
        self.phase.kind()
    }

    /// The server process, in the phases that have one.
    pub fn server(&self) -> Option<&ProcessIdentity> {
        self.phase.server()
    }

    /// When the running server became ready (RFC 3339).
    pub fn started_at(&self) -> Option<&str> {
        match &self.phase {
            PhaseRecord::Running { started_at, .. } => Some(started_at),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(super) fn sample() -> State {
        State {
            phase: PhaseRecord::Running {
                server: ProcessIdentity {
                    pid: 12,
                    start_time: 34,
                    cmdline: vec!["dolt".into(), "sql-server".into()],
                },
                started_at: "2026-11-28T21:00:00.000Z".into(),
            },
            supervisor: ProcessIdentity::current(),
            host: "127.0.0.1".into(),
            port: 1234,
            socket: None,
            url: Some("mysql://root@127.0.0.1:1234/".into()),
            data_dir: "/x".into(),
            read_only: false,
            restarts: 0,
            last_error: None,
            log_tail: vec![],
            dolt_version: Some("2.3.1".into()),
            updated_at: "2026-11-28T21:00:01.000Z".into(),
            clients: Some(2),
            last_client_at: Some("2026-11-28T21:00:00.500Z".into()),
            auto_started: true,
            cluster: None,
        }
    }

    #[test]
    fn round_trip_atomic_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        sample().write(&p).unwrap();
        assert_eq!(State::read(&p).unwrap().unwrap(), sample());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_phase_and_its_data_are_flat_fields_as_before() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["server"]["pid"], 12);
        assert_eq!(v["started_at"], "2026-11-28T21:00:00.000Z");
        let stopped = State {
            phase: PhaseRecord::Stopped,
            ..sample()
        };
        let v = serde_json::to_value(stopped).unwrap();
        assert_eq!(v["state"], "stopped");
        assert!(v.get("server").is_none() && v.get("started_at").is_none());
    }

    #[test]
    fn files_of_the_previous_format_still_read() {
        // Written by doltctl before phases carried their data: nulls for fields that did
        // not apply.
        let old = r#"{"state":"stopped","supervisor":null,"server":null,"host":"127.0.0.1",
            "port":1,"socket":null,"url":null,"data_dir":"/x","read_only":false,"restarts":0,
            "last_error":null,"log_tail":[],"dolt_version":null,"started_at":null,
            "updated_at":"t"}"#;
        let s: State = serde_json::from_str(old).unwrap();
        assert_eq!(s.kind(), Phase::Stopped);
        assert!(s.server().is_none());
        // Written before client counts and auto-start were recorded: unknown, not auto-started.
        assert_eq!((s.clients, s.last_client_at.as_deref()), (None, None));
        assert!(!s.auto_started);
        let old = old.replace(r#""state":"stopped""#, r#""state":"starting""#);
        let s: State = serde_json::from_str(&old).unwrap();
        assert_eq!(s.phase, PhaseRecord::Starting { server: None });
    }

    #[test]
    fn readiness_needs_the_running_phase_and_both_processes() {
        assert!(is_ready(Phase::Running, true, true));
        assert!(!is_ready(Phase::Running, true, false));
        assert!(!is_ready(Phase::Running, false, true));
        assert!(!is_ready(Phase::Starting, true, true));
    }

    #[test]
    fn malformed_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::fs::write(&p, "{not json").unwrap();
        let msg = State::read(&p).unwrap_err().to_string();
        assert!(msg.contains("state.json"), "{msg}");
        assert!(msg.contains("not valid"), "{msg}");
        // Reading changed nothing.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{not json");
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::read(&dir.path().join("nope.json"))
            .unwrap()
            .is_none());
    }
}

/// Property tests: whatever bytes the state file holds (a torn write, another program's
/// file), reading it returns a state or an error, never a panic.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("\"phase\":".to_string()),
            Just("\"running\"".to_string()),
            Just("\"server\":{\"pid\":".to_string()),
            Just("\"start_time\":".to_string()),
            Just("\"cmdline\":[\"dolt\"]".to_string()),
            Just(",".to_string()),
            Just("-1".to_string()),
            Just("99999999999999999999".to_string()),
            Just("null".to_string()),
            "[a-z_\"]{0,8}",
        ];
        prop::collection::vec(piece, 0..24).prop_map(|p| p.concat().into_bytes())
    }

    fn read_bytes(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("state.json");
        std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match State::read(&path) {
            Ok(Some(s)) => {
                let _ = (s.kind(), s.server(), s.started_at(), s.is_ready());
            }
            Ok(None) => prop_assert!(false, "the file exists"),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            read_bytes(&bytes)?;
        }

        #[test]
        fn json_shaped_bytes_never_panic(bytes in json_like()) {
            read_bytes(&bytes)?;
        }

        #[test]
        fn a_written_state_truncated_anywhere_never_panics(cut in 0usize..2000) {
            let full = serde_json::to_vec_pretty(&super::tests::sample()).unwrap();
            read_bytes(&full[..cut.min(full.len())])?;
        }
    }
}
