//! The state file (`<runtime>/state.json`): what the supervisor tells everyone else.
//! Written atomically (temp file + rename, 0600) so readers never see half a file; reading it
//! has no side effects.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::atomic::write_atomic;
use crate::sys::process::ProcessIdentity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Failed,
    /// Stopped by the supervisor after `idle_timeout` without clients.
    Idle,
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
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub state: Phase,
    pub supervisor: Option<ProcessIdentity>,
    pub server: Option<ProcessIdentity>,
    pub host: String,
    pub port: u16,
    pub socket: Option<PathBuf>,
    pub url: Option<String>,
    pub data_dir: PathBuf,
    pub read_only: bool,
    /// Unplanned server exits and failed starts since the supervisor started.
    pub restarts: u32,
    pub last_error: Option<String>,
    /// Last lines of the server log when the last error happened.
    #[serde(default)]
    pub log_tail: Vec<String>,
    pub dolt_version: Option<String>,
    /// When the current server became ready (RFC 3339).
    pub started_at: Option<String>,
    pub updated_at: String,
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
            .map_err(|e| Error::StateFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// Writes the state file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::StateFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomic(path, &json)
    }

    /// True if the supervisor recorded here is still that process.
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor.as_ref().is_some_and(|p| p.is_running())
    }

    /// True if the server recorded here is still that process.
    pub fn server_alive(&self) -> bool {
        self.server.as_ref().is_some_and(|p| p.is_running())
    }

    /// Running and ready: the supervisor and the server it recorded are both alive.
    pub fn is_ready(&self) -> bool {
        self.state == Phase::Running && self.supervisor_alive() && self.server_alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clock::now_rfc3339;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> State {
        State {
            state: Phase::Running,
            supervisor: ProcessIdentity::current(),
            server: None,
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
            started_at: Some(now_rfc3339()),
            updated_at: now_rfc3339(),
        }
    }

    #[test]
    fn round_trip_atomic_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        sample().write(&p).unwrap();
        assert_eq!(State::read(&p).unwrap().unwrap(), sample_with_times(&p));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn sample_with_times(p: &Path) -> State {
        // Times differ between calls; compare everything else.
        let read = State::read(p).unwrap().unwrap();
        State {
            started_at: read.started_at.clone(),
            updated_at: read.updated_at.clone(),
            ..sample()
        }
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
