//! Shared by the measurement programs: a sandbox with its own dolt root and one database,
//! a config, doltctl invocations and the statistics they print.
#![allow(dead_code)]

#[path = "../../tests/common/ports.rs"]
mod ports;
#[allow(unused_imports)] // each test binary uses a part of the harness
pub use ports::{free_port, port_reservations};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    /// Every child gets this environment: no metrics, a root path of its own, our dolt.
    pub env: Vec<(&'static str, String)>,
    pub data: PathBuf,
}

impl Sandbox {
    /// A temp dir with `data/app` created by `dolt init`, so servers open real storage.
    pub fn new(dolt: &Path) -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).expect("root");
        let env = vec![
            ("DOLT_ROOT_PATH", root.to_string_lossy().into_owned()),
            ("DOLT_DISABLE_EVENT_FLUSH", "1".to_string()),
            ("DOLT_BIN", dolt.to_string_lossy().into_owned()),
            // Supervisors killed on purpose leave registry entries: never in the user's own.
            (
                "DOLTCTL_REGISTRY_DIR",
                tmp.path().join("registry").to_string_lossy().into_owned(),
            ),
        ];
        let data = tmp.path().join("data");
        let app = data.join("app");
        std::fs::create_dir_all(&app).expect("data");
        let ok = Command::new(dolt)
            .args(["init", "--name", "m", "--email", "m@example.com"])
            .current_dir(&app)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .status()
            .expect("dolt init");
        assert!(ok.success(), "dolt init failed");
        Sandbox { tmp, env, data }
    }

    /// Writes `doltctl.toml` for the data dir on a fixed port.
    pub fn config(&self, port: u16) -> PathBuf {
        let p = self.tmp.path().join("doltctl.toml");
        std::fs::write(
            &p,
            format!(
                "data_dir = {:?}\n[server]\nport = {port}\n",
                self.data.to_string_lossy()
            ),
        )
        .expect("config");
        p
    }

    /// Runs `doltctl --config CFG ARGS...` and asserts it succeeded.
    pub fn doltctl(&self, doltctl: &Path, cfg: &Path, args: &[&str]) {
        let out = Command::new(doltctl)
            .arg("--config")
            .arg(cfg)
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .expect("doltctl");
        assert!(
            out.status.success(),
            "doltctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The resident set of a live process in KiB (`VmRSS`); `None` when it is gone.
pub fn rss_kib(pid: i32) -> Option<u64> {
    procfs::process::Process::new(pid)
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmrss)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}
