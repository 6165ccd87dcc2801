//! Installed once, used from any shell: a new shell whose PATH holds only the system
//! directories and cargo's bin dir, with no doltctl variables, runs doltctl against the dolt
//! that `scripts/install-dolt.sh` left in `~/.local/bin`, and a library client auto-starts a
//! server through the doltctl `scripts/install.sh` left in `~/.cargo/bin`.
//!
//! The install is simulated, so the suite never depends on `cargo install` having run: a temp
//! HOME whose `.local/bin/dolt` links to the real dolt and whose `.cargo/bin/doltctl` is this
//! build's doltctl. One test in this binary, because its last step sets process-wide
//! environment variables (the library's auto-start reads them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use mysql_async::prelude::Queryable;

/// The system directories a login shell starts with, minus any that hold a dolt or doltctl
/// (so that finding them proves doltctl's own lookup, on any machine).
fn system_path() -> String {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .into_iter()
    .filter(|d| !Path::new(d).join("dolt").exists() && !Path::new(d).join("doltctl").exists())
    .collect::<Vec<_>>()
    .join(":")
}

/// A new shell: only PATH, HOME and the dolt root the tests give every dolt, nothing else
/// (no DOLT_BIN, DOLTCTL_BIN, DOLTCTL_CONFIG, CARGO_HOME).
struct Shell {
    path: String,
    home: PathBuf,
    cwd: PathBuf,
    root: PathBuf,
}

impl Shell {
    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("DOLT_ROOT_PATH", &self.root)
            .env("DOLT_DISABLE_EVENT_FLUSH", "1")
            .current_dir(&self.cwd)
            .args(args);
        c
    }

    /// `doltctl ARGS` as typed: found on PATH.
    fn doltctl(&self, args: &[&str]) -> Output {
        let out = assert_cmd::Command::from_std(self.cmd(Path::new("doltctl"), args))
            .timeout(std::time::Duration::from_secs(180))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "doltctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Puts this build's doltctl where `cargo install` would (a hard link when possible, as
/// `cargo install` leaves a file of its own, not a symlink into a target dir).
fn install_doltctl(bin_dir: &Path) -> PathBuf {
    std::fs::create_dir_all(bin_dir).unwrap();
    let dest = bin_dir.join("doltctl");
    let built = Path::new(env!("CARGO_BIN_EXE_doltctl"));
    if std::fs::hard_link(built, &dest).is_err() {
        std::fs::copy(built, &dest).unwrap();
    }
    dest
}

#[test]
fn a_new_shell_uses_the_installed_doltctl_and_dolt_without_any_variables() {
    // --- A server started the way scripts/dev-up did (DOLT_BIN set, doltctl called by
    // path), then stopped and started again from a new shell that has neither: dolt is
    // found through the path the first launch recorded.
    let dev = TestEnv::new();
    dev.start();
    let dev_shell = Shell {
        path: system_path(),
        home: dev.dir.path().join("home-without-dolt"),
        cwd: dev.dir.path().to_path_buf(),
        root: dev.root(),
    };
    std::fs::create_dir_all(&dev_shell.home).unwrap();
    let built = PathBuf::from(env!("CARGO_BIN_EXE_doltctl"));
    for args in [&["stop"][..], &["start"], &["stop"]] {
        let out = dev_shell
            .cmd(&built, &["--config", "doltctl.toml"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "doltctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // --- The install: dolt in ~/.local/bin (install-dolt.sh), doltctl in ~/.cargo/bin
    // (cargo install). The new shell has cargo's bin dir on PATH, as rustup sets it up.
    let env = TestEnv::new();
    let home = env.dir.path().join("home");
    let local_bin = home.join(".local/bin");
    std::fs::create_dir_all(&local_bin).unwrap();
    std::os::unix::fs::symlink(dolt_bin(), local_bin.join("dolt")).unwrap();
    let cargo_bin = home.join(".cargo/bin");
    let installed = install_doltctl(&cargo_bin);
    let sh = Shell {
        path: format!("{}:{}", system_path(), cargo_bin.display()),
        home: home.clone(),
        cwd: env.dir.path().to_path_buf(),
        root: env.root(),
    };
    // The project: its doltctl.toml is found from the current directory; init makes the data
    // dir (start would refuse a missing one).
    std::fs::remove_dir(&env.data_dir).unwrap();
    sh.doltctl(&["init", "--db", "app"]);

    let url = stdout(&sh.doltctl(&["start"]));
    assert_eq!(url.lines().last(), Some(env.url().as_str()));
    assert_eq!(stdout(&sh.doltctl(&["url"])), format!("{}\n", env.url()));
    sh.doltctl(&[
        "sql",
        "-d",
        "app",
        "-q",
        "CREATE TABLE t (i INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)",
    ]);
    let json = stdout(&sh.doltctl(&[
        "sql",
        "-d",
        "app",
        "--json",
        "-q",
        "SELECT COUNT(*) AS n FROM t",
    ]));
    assert_eq!(json.trim(), r#"[{"n":2}]"#);
    let state = env.state().unwrap();
    let sup = state.supervisor.clone().unwrap();
    assert_eq!(Path::new(&sup.cmdline[0]), installed, "{sup:?}");
    assert_eq!(
        Path::new(&state.server().unwrap().cmdline[0]),
        local_bin.join("dolt")
    );
    assert_eq!(stdout(&sh.doltctl(&["stop"])), "stopped\n");
    sh.doltctl(&["start"]);

    let doctor = stdout(&sh.doltctl(&["doctor"]));
    assert!(!doctor.contains("FAIL"), "{doctor}");
    assert!(
        doctor.contains(&format!(
            "OK    dolt binary: {}, version",
            local_bin.join("dolt").display()
        )),
        "{doctor}"
    );
    assert_eq!(stdout(&sh.doltctl(&["stop"])), "stopped\n");

    // --- A program using the library, started without cargo's bin dir on PATH (a service,
    // an IDE): its auto-start runs the supervisor from ~/.cargo/bin. Set for this process,
    // since auto-start spawns the supervisor with this process's environment.
    std::env::set_var("PATH", system_path());
    std::env::set_var("HOME", &home);
    std::env::set_var("DOLT_ROOT_PATH", env.root());
    std::env::set_var("DOLT_DISABLE_EVENT_FLUSH", "1");
    for var in [
        "CARGO_HOME",
        "CARGO_INSTALL_ROOT",
        "DOLTCTL_BIN",
        "DOLT_BIN",
        "DOLTCTL_CONFIG",
        "DOLTCTL_AUTOSTART",
    ] {
        std::env::remove_var(var);
    }
    assert_eq!(doltctl::control::supervisor_program().unwrap(), installed);
    let cfg = doltctl::Config::load(&env.config).unwrap();
    let n: Option<i64> = block_on(async {
        let client = doltctl::Client::from_config(cfg).database("app");
        assert!(client.running().unwrap().is_none());
        let mut conn = client.conn().await.unwrap();
        conn.query_first("SELECT COUNT(*) FROM t").await.unwrap()
    });
    assert_eq!(n, Some(2));
    let state = env.state().unwrap();
    let sup = state.supervisor.clone().unwrap();
    assert_eq!(Path::new(&sup.cmdline[0]), installed, "{sup:?}");
    assert_eq!(stdout(&sh.doltctl(&["stop"])), "stopped\n");
    assert_eq!(env.own_processes(), vec![]);
}
