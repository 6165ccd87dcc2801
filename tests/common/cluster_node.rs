//! One node of a test cluster: its own temp dir, data dir, config and OS-given ports, driven
//! through the built `doltctl`; its supervisor and dolt are killed on drop (on panic too).
//! Shared by tests/cluster.rs and tests/cluster_doctor.rs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use doltctl::State;
use mysql_async::prelude::Queryable;

use super::{dolt_bin, free_port, processes_mentioning, query_i64};

/// Where another node is, as a `[[cluster.peers]]` entry says.
#[derive(Clone, Copy)]
pub struct PeerAt<'a> {
    /// Its node name.
    pub name: &'a str,
    /// Its SQL port.
    pub port: u16,
    /// The port replication to it is pushed to.
    pub rport: u16,
}

pub struct Node {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub rport: u16,
}

impl Node {
    pub fn new(name: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("doltctl-cl-{name}"))
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        Node {
            name: name.into(),
            dir,
            port: free_port(),
            rport: free_port(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("doltctl.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where this node is, as a peer's `[[cluster.peers]]` entry says.
    pub fn at(&self) -> PeerAt<'_> {
        self.at_via(self.rport)
    }

    /// As [`Node::at`], with replication pushed to `rport` (a proxy in front of this node's).
    pub fn at_via(&self, rport: u16) -> PeerAt<'_> {
        PeerAt {
            name: &self.name,
            port: self.port,
            rport,
        }
    }

    /// Writes this node's config (`lease_ttl` 3s, quick restarts) with these peers.
    pub fn write_config(&self, etcd: &str, peers: &[PeerAt]) {
        self.write_config_with(etcd, peers, "");
    }

    /// As [`Node::write_config`], with `cluster_lines` added to `[cluster]` (TLS keys, say).
    pub fn write_config_with(&self, etcd: &str, peers: &[PeerAt], cluster_lines: &str) {
        let mut text = format!(
            r#"data_dir = "data"
[server]
port = {}
ready_timeout = "60s"
stop_timeout = "10s"
[restart]
initial_backoff = "100ms"
max_backoff = "1s"
max_failures = 10
failure_window = "60s"
[health]
interval = "300ms"
timeout = "2s"
max_missed = 5
[cluster]
name = "t"
node = "{}"
etcd = ["{etcd}"]
remotesapi_port = {}
lease_ttl = "3s"
ack_writes_timeout = "2s"
{cluster_lines}"#,
            self.port, self.name, self.rport
        );
        for p in peers {
            text.push_str(&format!(
                "[[cluster.peers]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\nremotesapi_port = {}\n",
                p.name, p.port, p.rport
            ));
        }
        std::fs::write(self.config(), text).unwrap();
    }

    pub fn doltctl(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("doltctl"));
        c.current_dir(self.dir.path())
            .env_remove("DOLTCTL_CONFIG")
            .env("DOLT_BIN", dolt_bin())
            // Shared on purpose: a cluster node must ignore it and use its own root.
            .env(
                "DOLT_ROOT_PATH",
                std::env::temp_dir().join("doltctl-cluster-shared-root"),
            )
            .env("DOLT_DISABLE_EVENT_FLUSH", "1")
            .arg("--config")
            .arg(self.config());
        c
    }

    pub fn start(&self) {
        let out = self.doltctl().arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "start {}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    pub fn stop(&self) {
        let _ = self.doltctl().arg("stop").output();
    }

    pub fn state(&self) -> Option<State> {
        let text = std::fs::read_to_string(self.data_dir().join(".doltctl/state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join(".doltctl/server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }

    /// `(role, epoch)` as the node's dolt says, or None when it does not answer.
    pub async fn role(&self) -> Option<(String, u64)> {
        let fut = async {
            let mut c = mysql_async::Conn::from_url(self.url()).await.ok()?;
            let r = c
                .query_first("SELECT @@dolt_cluster_role, @@dolt_cluster_role_epoch")
                .await
                .ok()?;
            let _ = c.disconnect().await;
            r
        };
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .ok()
            .flatten()
    }

    /// `doltctl cluster status --json` through this node's config (`Null` if it printed none).
    pub fn status_json(&self) -> serde_json::Value {
        let out = self
            .doltctl()
            .args(["cluster", "status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// This node's `caught_up` in its own `cluster status`.
    pub fn caught_up(&self) -> Option<bool> {
        self.status_json()["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == self.name.as_str()).cloned())
            .and_then(|n| n["caught_up"].as_bool())
    }

    /// Waits until this node's dolt says `role` (panics with its log after `timeout`); how
    /// long that took.
    pub async fn wait_role(&self, role: &str, timeout: Duration) -> Duration {
        let t = std::time::Instant::now();
        while self.role().await.is_none_or(|r| r.0 != role) {
            assert!(
                t.elapsed() < timeout,
                "{} not {role} within {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        t.elapsed()
    }

    /// The host is lost: SIGKILL to its supervisor and its dolt.
    pub fn kill_host(&self) {
        let s = self.state().expect("state file");
        for p in [s.supervisor.clone(), s.server().cloned()]
            .into_iter()
            .flatten()
        {
            let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
        }
    }

    pub async fn count(&self, sql: &str) -> Option<i64> {
        query_i64(&self.url(), sql).await.ok()?.first().copied()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.state() {
            for p in [s.supervisor.clone(), s.server().cloned()]
                .into_iter()
                .flatten()
            {
                let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
        for p in processes_mentioning(self.dir.path()) {
            let _ = p.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!("--- log of node {} ---\n{}", self.name, self.log());
        }
    }
}

/// Waits until the leader has marked each of `nodes` caught up (or, with `want` false, not
/// caught up); how long that took.
pub async fn wait_marked(nodes: &[&Node], want: bool, timeout: Duration) -> Duration {
    let t = std::time::Instant::now();
    loop {
        if nodes.iter().all(|n| n.caught_up() == Some(want)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "{:?} not marked caught_up = {want} within {timeout:?}: {:#}",
            nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            nodes[0].status_json()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
