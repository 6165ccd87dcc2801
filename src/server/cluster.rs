//! One cluster node's dolt: the `cluster:` block of its generated config, its own Dolt root,
//! and the start role forced before every launch.
//!
//! Dolt persists the role a node last had in its root's `.dolt/config_global.json`, and the
//! persisted role beats `bootstrap_role` (dolt-cluster-notes §2). The role a node starts in is
//! the election's decision, not dolt's memory, so both keys are removed before each launch.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::{ClusterConfig, Config, Instance};
use crate::error::{Error, Result};
use crate::sys::atomic::write_atomic;

/// The role dolt is launched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes writes and replicates them to every peer.
    Primary,
    /// Read-only; takes the primary's replication.
    Standby,
}

impl Role {
    /// Dolt's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role and epoch of one launch, chosen by the cluster controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRole {
    /// Primary only while this node holds the leader lease.
    pub role: Role,
    /// The epoch recorded in etcd.
    pub epoch: u64,
}

/// The start role the controller keeps current and the launcher reads before each launch; also
/// the dolt pid the controller killed on purpose (a fence), so the supervisor relaunches it
/// without counting a failure.
#[derive(Debug, Clone)]
pub struct SharedStartRole(std::sync::Arc<std::sync::Mutex<RoleCell>>);

#[derive(Debug)]
struct RoleCell {
    start: StartRole,
    fenced_pid: Option<i32>,
}

impl SharedStartRole {
    /// A role cell starting at `start`.
    pub fn new(start: StartRole) -> SharedStartRole {
        SharedStartRole(std::sync::Arc::new(std::sync::Mutex::new(RoleCell {
            start,
            fenced_pid: None,
        })))
    }

    fn cell(&self) -> std::sync::MutexGuard<'_, RoleCell> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The role the next launch uses.
    pub fn get(&self) -> StartRole {
        self.cell().start
    }

    /// Sets the role the next launch uses.
    pub fn set(&self, start: StartRole) {
        self.cell().start = start;
    }

    /// Records that dolt `pid` is being killed on purpose, to relaunch it in the current role.
    pub fn mark_fenced(&self, pid: i32) {
        self.cell().fenced_pid = Some(pid);
    }

    /// Whether the exit of dolt `pid` was a fence (and forgets it).
    pub fn take_fenced(&self, pid: i32) -> bool {
        let mut c = self.cell();
        if c.fenced_pid == Some(pid) {
            c.fenced_pid = None;
            true
        } else {
            false
        }
    }
}

/// The persisted keys that would override `bootstrap_role`/`bootstrap_epoch`.
const PERSISTED: [&str; 2] = [
    "sqlserver.cluster.dolt_cluster_role",
    "sqlserver.cluster.dolt_cluster_role_epoch",
];

/// The `cluster:` block and the `system_variables:` of a node's generated config.
pub fn config_blocks(c: &ClusterConfig, host: &str, start: StartRole) -> (Value, Value) {
    let remotes: Vec<Value> = c
        .peers
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "remote_url_template": format!("http://{}:{}/{{database}}", p.host, p.remotesapi_port),
            })
        })
        .collect();
    let cluster = json!({
        "standby_remotes": remotes,
        "bootstrap_role": start.role.as_str(),
        "bootstrap_epoch": start.epoch,
        "remotesapi": { "address": host, "port": c.remotesapi_port },
    });
    let vars = json!({
        "dolt_cluster_ack_writes_timeout_secs": c.ack_writes_timeout.as_secs(),
    });
    (cluster, vars)
}

/// Removes the persisted role from `root`'s global dolt config (atomically; other keys kept),
/// so the next launch starts in its bootstrap role. Returns whether anything was removed.
pub fn forget_persisted_role(root: &Path) -> Result<bool> {
    let global = root.join(".dolt").join("config_global.json");
    let bytes = match std::fs::read(&global) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(&global, e)),
    };
    let mut doc: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| Error::io(&global, e.into()))?;
    let removed = PERSISTED
        .iter()
        .filter(|k| doc.remove(**k).is_some())
        .count();
    if removed > 0 {
        let text = serde_json::to_vec(&doc).map_err(|e| Error::io(&global, e.into()))?;
        write_atomic(&global, &text)?;
    }
    Ok(removed > 0)
}

/// The Dolt root of a cluster node: always the instance's own. A shared `DOLT_ROOT_PATH` would
/// make nodes read each other's persisted role (notes §2: both went `detected_broken_config`).
pub fn node_root(cfg: &Config, instance: &Instance) -> Option<std::path::PathBuf> {
    cfg.cluster.as_ref().map(|_| instance.dolt_root())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_persisted_role_is_removed_and_other_keys_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!forget_persisted_role(dir.path()).unwrap());
        std::fs::create_dir(dir.path().join(".dolt")).unwrap();
        let g = dir.path().join(".dolt/config_global.json");
        std::fs::write(
            &g,
            r#"{"metrics.disabled":"true","sqlserver.cluster.dolt_cluster_role":"primary","sqlserver.cluster.dolt_cluster_role_epoch":"3"}"#,
        )
        .unwrap();
        assert!(forget_persisted_role(dir.path()).unwrap());
        let v: Value = serde_json::from_slice(&std::fs::read(&g).unwrap()).unwrap();
        assert_eq!(v, json!({"metrics.disabled": "true"}));
        assert!(!forget_persisted_role(dir.path()).unwrap());
    }

    #[test]
    fn every_peer_is_a_standby_remote() {
        let c: ClusterConfig = toml::from_str(
            r#"name = "t"
node = "a"
etcd = ["http://127.0.0.1:2379"]
remotesapi_port = 50051
[[peers]]
name = "b"
host = "10.0.0.2"
port = 3306
remotesapi_port = 50052
"#,
        )
        .unwrap();
        let (cluster, vars) = config_blocks(
            &c,
            "127.0.0.1",
            StartRole {
                role: Role::Standby,
                epoch: 4,
            },
        );
        assert_eq!(
            cluster["standby_remotes"][0]["remote_url_template"],
            "http://10.0.0.2:50052/{database}"
        );
        assert_eq!(cluster["bootstrap_role"], "standby");
        assert_eq!(cluster["bootstrap_epoch"], 4);
        assert_eq!(cluster["remotesapi"]["port"], 50051);
        assert_eq!(vars["dolt_cluster_ack_writes_timeout_secs"], 5);
    }
}
