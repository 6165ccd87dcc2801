//! Shared by the measurement programs: a sandbox with its own dolt root and one database,
//! a config, doltctl invocations and the statistics they print.
#![allow(dead_code)]

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

/// A free port for a server, from 10000-19999: below the kernel's ephemeral range (32768+),
/// where outgoing connections could take it, and below doltctl's `auto` range (20000-29999).
///
/// The same scheme as `free_port` in tests/common (examples cannot import it): each port is
/// reserved by an flock on `$TMPDIR/doltctl-test-ports-UID/PORT`, held until this process
/// exits, and only then checked free by binding it. So no concurrent test or measurement takes
/// it between this check and the server's bind, which binding port 0 and releasing it allowed.
pub fn free_port() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use std::sync::Mutex;
    static HELD: Mutex<Vec<Flock<std::fs::File>>> = Mutex::new(Vec::new());
    let dir = port_reservations();
    std::fs::create_dir_all(&dir).expect("port reservations dir");
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    // Start somewhere else in each process, so concurrent processes rarely probe one port.
    let start = std::process::id().wrapping_mul(7919) as usize;
    for k in 0..10_000 {
        let port = 10_000 + ((start + k) % 10_000) as u16;
        let path = dir.join(port.to_string());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("port reservation file");
        // A port this process holds conflicts too: flock locks belong to the open file.
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => panic!("flock {}: {e}", path.display()),
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(lock);
            return port;
        }
    }
    panic!(
        "no free port left in 10000-19999 (reservations in {})",
        dir.display()
    );
}

/// The directory of [`free_port`]'s per-port lock files, shared with the tests.
pub fn port_reservations() -> PathBuf {
    std::env::temp_dir().join(format!("doltctl-test-ports-{}", nix::unistd::getuid()))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}
