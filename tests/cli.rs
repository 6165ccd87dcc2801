//! The command line's everyday conventions against the real dolt binary: closed output,
//! exec's shell exit codes, version, completions and man, quiet and no-wait starts, stop
//! timeouts, logs --since/--json, the connection handoff to a real mariadb client, and
//! interactive `sql` on a terminal.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `doltctl ARGS` with stdout a pipe whose reader is already gone, so its first write
/// fails. Returns the exit status and stderr.
fn with_closed_stdout(env: &TestEnv, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = env
        .doltctl_std()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status, text(&out.stderr))
}

/// The bits of a `SigIgn:`/`SigCgt:` line of /proc/PID/status.
fn signal_mask(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0)
}

#[test]
fn no_command_panics_when_its_output_is_closed() {
    let env = TestEnv::new();
    env.start();
    let csv = env.dir.path().join("t.csv");
    std::fs::write(&csv, "id\n1\n").unwrap();
    env.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)");
    let csv = csv.to_string_lossy().into_owned();
    let printing: Vec<Vec<&str>> = vec![
        vec!["start"],
        vec!["restart"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["url"],
        vec!["env"],
        vec!["env", "--format", "dotenv"],
        vec!["env", "--format", "json"],
        vec!["sql", "-q", "SELECT 1; SELECT 2"],
        vec!["sql", "--json", "-q", "SELECT 1"],
        vec!["import", &csv, "--db", "app"],
        vec!["logs"],
        vec!["logs", "--json"],
        vec!["logs", "-f"],
        vec!["logs", "-f", "--json", "--since", "1h"],
        vec!["doctor"],
        vec!["doctor", "--json"],
        vec!["init"],
        vec!["version"],
        vec!["version", "--json"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["--help"],
        vec!["exec", "--", "echo", "hi"],
        vec!["stop"],
    ];
    for args in &printing {
        let (status, stderr) = with_closed_stdout(&env, args);
        assert_ne!(status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        // Ended by SIGPIPE at its first write, as cat is; or (help, printed by the argument
        // parser, and exec's command, which is not doltctl) done without caring.
        let quiet = status.signal() == Some(Signal::SIGPIPE as i32)
            || status.success()
            || (args[0] == "exec" && status.code() == Some(128 + Signal::SIGPIPE as i32));
        assert!(quiet, "{args:?}: {status:?}: {stderr}");
    }
    assert!(env.dolt_servers().is_empty(), "stop did not run to its end");
}

#[test]
fn the_supervisor_still_ignores_sigpipe() {
    let env = TestEnv::new();
    env.start();
    let sup = env.state().unwrap().supervisor.unwrap();
    let pipe_bit = 1u64 << (Signal::SIGPIPE as i32 - 1);
    assert_ne!(
        signal_mask(sup.pid, "SigIgn:") & pipe_bit,
        0,
        "run must survive a closed terminal or log reader"
    );
    env.stop();
}

#[test]
fn exec_exits_127_when_not_found_and_126_when_not_executable() {
    let env = TestEnv::new();
    env.start();
    let out = env
        .doltctl()
        .args(["exec", "--", "doltctl-test-no-such-command"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("doltctl-test-no-such-command: command not found"),
        "{}",
        text(&out.stderr)
    );
    let plain = env.dir.path().join("not-executable.sh");
    std::fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    let out = env.doltctl().arg("exec").arg(&plain).output().unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot execute"));
    let out = env
        .doltctl()
        .arg("exec")
        .arg(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    env.stop();
}

#[test]
fn version_names_doltctl_dolt_and_the_pinned_dolt() {
    let env = TestEnv::new();
    let out = env.doltctl().arg("version").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], format!("doltctl {}", env!("CARGO_PKG_VERSION")));
    assert!(
        lines[1].starts_with(&format!("dolt    {} (", doltctl::PINNED_DOLT_VERSION))
            && lines[1].contains(&dolt_bin().canonicalize().unwrap().display().to_string()),
        "{got}"
    );
    assert_eq!(
        lines[2],
        format!("pinned  dolt {}", doltctl::PINNED_DOLT_VERSION)
    );
    let out = env.doltctl().args(["version", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["doltctl"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["dolt"]["version"], doltctl::PINNED_DOLT_VERSION);
    assert_eq!(v["pinned_dolt"], doltctl::PINNED_DOLT_VERSION);
    assert_eq!(v["dolt_matches_pinned"], true);
    // `dolt version` ran in a throwaway root: nothing appeared in the (empty) data dir.
    assert!(env.data_dir_is_empty());
}

#[test]
fn version_without_a_working_dolt_says_so_and_exits_1() {
    let env = TestEnv::new();
    let broken = env.dir.path().join("broken-dolt");
    std::fs::write(&broken, "#!/bin/sh\necho 'not today' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env
        .doltctl()
        .env("DOLT_BIN", &broken)
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let got = text(&out.stdout);
    assert!(got.starts_with("doltctl "), "{got}");
    assert!(got.contains("dolt    unusable ("), "{got}");
    assert!(
        text(&out.stderr).contains("printed no version"),
        "{}",
        text(&out.stderr)
    );

    // No dolt anywhere doltctl looks.
    let empty = env.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env
        .doltctl()
        .env("DOLT_BIN", empty.join("dolt"))
        .env("PATH", &empty)
        .env("HOME", &empty)
        .args(["version", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["doltctl"], env!("CARGO_PKG_VERSION"));
    assert!(v["dolt"]["version"].is_null(), "{v}");
    assert!(v["dolt"]["error"].is_string(), "{v}");
}

#[test]
fn completions_man_and_help_document_the_command_line() {
    let env = TestEnv::new();
    for (shell, marker) in [
        ("bash", "_doltctl()"),
        ("zsh", "#compdef doltctl"),
        ("fish", "complete -c doltctl"),
    ] {
        let out = env.doltctl().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let got = text(&out.stdout);
        assert!(got.contains(marker), "{shell}: {got}");
        assert!(
            got.contains("--since") && got.contains("completions"),
            "{shell}"
        );
    }
    let out = env.doltctl().arg("man").output().unwrap();
    assert!(out.status.success());
    let man = text(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH doltctl"),
        "{man}"
    );
    let out = env.doltctl().arg("--help").output().unwrap();
    let help = text(&out.stdout);
    for want in [
        "Examples:",
        "DOLTCTL_CONFIG",
        "DOLT_BIN",
        "DOLTCTL_AUTOSTART",
        "DOLTCTL_PASSWORD",
        "DOLTCTL_LOG",
        "NO_COLOR",
        "DOLTCTL_BIN",
        "Exit codes:",
        "orphaned",
        "127",
    ] {
        assert!(help.contains(want), "--help lacks {want}");
        assert!(man.contains(want), "man lacks {want}");
    }
    assert!(env.data_dir_is_empty());
}

#[test]
fn quiet_commands_print_nothing_and_still_work() {
    let env = TestEnv::new();
    let out = env
        .doltctl()
        .args(["init", "-q", "--db", "app", "--start"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(env.data_dir.join("app/.dolt").is_dir());
    env.doltctl().arg("status").assert().code(0);
    for args in [
        &["start", "-q"][..],
        &["restart", "--quiet"],
        &["stop", "-q"],
    ] {
        let out = env.doltctl().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
    env.doltctl().arg("status").assert().code(3);
    assert!(env.dolt_servers().is_empty());
}

#[test]
fn start_without_waiting_returns_once_the_supervisor_registered() {
    let env = TestEnv::new();
    let out = env
        .doltctl()
        .args(["start", "--wait=false"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    // Registered: the state file names a live supervisor right away (ready or not).
    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["supervisor_alive"], true, "{v}");
    assert!(
        matches!(out.status.code(), Some(0) | Some(4)),
        "{:?}",
        out.status
    );
    wait_until("the server to be ready", Duration::from_secs(60), || {
        env.doltctl().arg("status").output().unwrap().status.code() == Some(0)
    });
    env.stop();
}

#[test]
fn stop_timeout_kills_a_server_that_does_not_stop_in_time() {
    // stop_timeout is 10s in the test config; --timeout 1s must win.
    let env = TestEnv::new();
    env.start();
    let server = env.server();
    // A stopped process does not act on SIGTERM; only SIGKILL ends it.
    server.signal(Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    let out = env
        .doltctl()
        .args(["stop", "--timeout", "1s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "stopped\n");
    assert!(
        took < Duration::from_secs(8),
        "stop took {took:?}: the 10s stop_timeout, not --timeout 1s"
    );
    assert!(!server.is_running());
    assert!(env.own_processes().is_empty());
    let log = env.log();
    assert!(
        log.contains("killed by SIGKILL") || log.contains("SIGKILL"),
        "{log}"
    );
}

#[test]
fn logs_since_and_json_select_and_describe_lines() {
    let env = TestEnv::new();
    env.start();
    let out = env
        .doltctl()
        .args(["logs", "--json", "-n", "500"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 3);
    for l in &lines {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["time", "source", "text"]);
        assert!(l["source"] == "dolt" || l["source"] == "doltctl", "{l}");
        assert!(humantime::parse_rfc3339(l["time"].as_str().unwrap()).is_ok());
    }
    assert!(lines
        .iter()
        .any(|l| l["source"] == "doltctl" && l["text"].as_str().unwrap().contains("started for")));

    // Everything from before the restart is left out by --since a timestamp after it.
    let mark = doltctl::internals::now_rfc3339();
    wait_until("the clock to pass the mark", Duration::from_secs(5), || {
        doltctl::internals::now_rfc3339() > mark
    });
    env.doltctl().arg("restart").assert().success();
    let out = env
        .doltctl()
        .args(["logs", "--supervisor", "--since", &mark])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let since = text(&out.stdout);
    assert!(since.contains("ready on"), "{since}");
    assert!(!since.contains("started for"), "{since}");
    assert!(since
        .lines()
        .all(|l| l.split(' ').next().unwrap() >= mark.as_str()));
    // A duration: the whole life of this test's server is within the last hour.
    let hour = env
        .doltctl()
        .args(["logs", "--since", "1h"])
        .output()
        .unwrap();
    assert!(text(&hour.stdout).contains("started for"));
    let future = env
        .doltctl()
        .args(["logs", "--since", "2999-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert_eq!(text(&future.stdout), "");
    env.doltctl()
        .args(["logs", "--since", "last tuesday"])
        .assert()
        .code(2);

    // -f with --json and --since: the old lines, then new ones as they come.
    let mut follow = FollowGuard(
        env.doltctl_std()
            .args(["logs", "-f", "--json", "--supervisor", "--since", &mark])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(follow.0.stdout.take().unwrap());
    let first: serde_json::Value =
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(first["source"], "doltctl");
    env.doltctl().arg("stop").assert().success();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the stop never reached logs -f");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["text"].as_str().unwrap().contains("supervisor exiting") {
            break;
        }
    }
}

/// Kills a `logs -f` on drop.
struct FollowGuard(Child);

impl Drop for FollowGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a reader yields, through a channel (so a test can wait with a deadline).
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

const PASSWORD: &str = "pw-9f3k";

fn password_env() -> TestEnv {
    TestEnv::with_config(&format!("[client]\npassword = \"{PASSWORD}\"\n"))
}

#[test]
fn start_url_env_and_exec_hand_over_the_same_connection() {
    let env = password_env();
    let started = env.start();
    let url = text(&env.doltctl().arg("url").output().unwrap().stdout);
    assert_eq!(started, url.trim_end());
    assert_eq!(
        started,
        format!("mysql://root:{PASSWORD}@127.0.0.1:{}/", env.port)
    );
    let restarted = text(&env.doltctl().arg("restart").output().unwrap().stdout);
    assert_eq!(restarted.trim_end(), started);
    env.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (7)");

    let with_db = text(
        &env.doltctl()
            .args(["url", "--database", "app"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(with_db.trim_end(), format!("{started}app"));
    let out = env
        .doltctl()
        .args(["env", "-d", "app", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["env"]["DATABASE_URL"], format!("{started}app"));
    assert_eq!(v["env"]["MYSQL_DATABASE"], "app");
    assert_eq!(v["env"]["MYSQL_PWD"], PASSWORD);
    assert_eq!(v["database"], "app");

    // A real mariadb client, the password in no argv: `-D app` on the command line, the rest
    // from the environment doltctl sets.
    let out = env
        .doltctl()
        .args([
            "exec",
            "--",
            "mariadb",
            "-D",
            "app",
            "-N",
            "-e",
            "SELECT CONCAT(DATABASE(), ' ', CURRENT_USER(), ' ', (SELECT id FROM t))",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    assert!(
        got.starts_with("app root@") && got.trim_end().ends_with(" 7"),
        "{got}"
    );
    // exec --database: the mysql shell lands in it too.
    let out = env
        .doltctl()
        .args([
            "exec",
            "--database",
            "app",
            "--",
            "mariadb",
            "-N",
            "-e",
            "SELECT DATABASE()",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "app");
    // The password is really needed: the same client without doltctl's environment fails.
    let out = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &env.port.to_string(),
            "-u",
            "root",
            "-e",
            "SELECT 1",
        ])
        .env_remove("MYSQL_PWD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The option file exec hands over has the user, never the password.
    for entry in walk(&env.data_dir.join(".doltctl/mysql-client")) {
        let f = std::fs::read_to_string(&entry).unwrap();
        assert!(!f.contains(PASSWORD), "{}: {f}", entry.display());
    }

    // Another user: the clients default to the login name (root here), so only the option
    // file can make it the configured one.
    env.sql("CREATE USER 'reader'@'%' IDENTIFIED BY 'rpw'; GRANT SELECT ON app.* TO 'reader'@'%'");
    let other = env.dir.path().join("reader.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&env.config).unwrap().replace(
            &format!("password = \"{PASSWORD}\""),
            "user = \"reader\"\npassword = \"rpw\"",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("doltctl"))
        .current_dir(env.dir.path())
        .env("DOLT_BIN", dolt_bin())
        .env("DOLT_ROOT_PATH", env.root())
        .arg("--config")
        .arg(&other)
        .args(["exec", "--", "mariadb", "-N", "-e", "SELECT CURRENT_USER()"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "reader@%");
    env.stop();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `doltctl ARGS` with stdin the slave side of a new pseudo-terminal (so doltctl sees a
/// terminal), stdout and stderr piped. Returns the child and the master side.
fn on_a_terminal(
    env: &TestEnv,
    args: &[&str],
    path: Option<&std::path::Path>,
) -> (Child, std::fs::File) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = env.doltctl_std();
    cmd.args(args)
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    (cmd.spawn().unwrap(), std::fs::File::from(pty.master))
}

/// Kills a child on drop (and waits for it).
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn children_of(pid: i32) -> Vec<doltctl::ProcessIdentity> {
    procfs::process::all_processes()
        .unwrap()
        .flatten()
        .filter(|p| p.stat().is_ok_and(|s| s.ppid == pid))
        .filter_map(|p| doltctl::ProcessIdentity::of(p.pid()))
        .collect()
}

#[test]
fn sql_on_a_terminal_opens_a_mysql_client_with_the_password_in_no_argv() {
    let env = password_env();
    env.start();
    env.sql("CREATE DATABASE app");
    let (child, mut master) = on_a_terminal(&env, &["sql", "-d", "app"], None);
    let mut guard = ChildGuard(Some(child));
    let pid = guard.0.as_ref().unwrap().id() as i32;
    // The terminal's echo must be read, or a full pty buffer would stall the client.
    let mut echo = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while matches!(echo.read(&mut sink), Ok(n) if n > 0) {}
    });
    let mut client = None;
    wait_until("the interactive client", Duration::from_secs(60), || {
        client = children_of(pid).into_iter().find(|p| {
            p.cmdline
                .first()
                .is_some_and(|a| a.ends_with("mariadb") || a.ends_with("mysql"))
        });
        client.is_some()
    });
    let client = client.unwrap();
    assert!(
        !client.command().contains(PASSWORD),
        "password in argv: {}",
        client.command()
    );
    assert!(
        client.command().contains("--database=app"),
        "{}",
        client.command()
    );
    master
        .write_all(b"SELECT 40 + 2 AS answer, DATABASE() AS db;\nquit\n")
        .unwrap();
    let mut child = guard.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the interactive session did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(out.contains("42") && out.contains("app"), "{out}");
    env.stop();
}

#[test]
fn sql_on_a_terminal_without_a_client_names_what_to_install() {
    let env = TestEnv::new();
    let empty = env.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let (child, _master) = on_a_terminal(&env, &["sql"], Some(&empty));
    let mut guard = ChildGuard(Some(child));
    let mut child = guard.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "sql waited instead of failing");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("no MySQL client on PATH") && err.contains("mariadb-client"),
        "{err}"
    );
    // It failed before starting anything.
    assert!(!env.data_dir.join(".doltctl/state.json").exists());
}

#[test]
fn sql_with_piped_input_keeps_reading_stdin() {
    let env = TestEnv::new();
    let mut child = ChildGuard(Some(
        env.doltctl_std()
            .args(["sql", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut c = child.0.take().unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 41 + 1 AS n;")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"[{"n":42}]"#);
    env.stop();
}
