//! Mistakes a user makes on the command line or in the config: each is a one-line error that
//! names the file and what to do, exits 1, and leaves everything as it was: no file or
//! directory created or changed, no process started.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;

use common::*;

/// Every path under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(String, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path().display().to_string(), m.len(), m.mtime_nsec()));
        }
    }
    out.sort();
    out
}

/// Runs `cmd`, asserts exit code 1 and a one-line message on stderr, and returns it.
fn fails(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("doltctl: "), "{err}");
    err
}

/// The mistake changed nothing under the test's dir and started nothing.
fn assert_untouched(env: &TestEnv, before: &[(String, u64, i64)]) {
    assert_eq!(snapshot(env.dir.path()), before, "files changed");
    assert_eq!(env.own_processes(), vec![], "processes started");
}

#[test]
fn a_data_dir_that_does_not_exist_is_refused_by_everything_that_starts_a_server() {
    let env = TestEnv::new();
    let typo = env.dir.path().join("dtaa");
    let before = snapshot(env.dir.path());
    let expected = format!(
        "doltctl: data dir {} does not exist; set it up with `doltctl init` (with the same \
         --config / --data-dir), or correct --data-dir / data_dir if it is misspelled\n",
        typo.display()
    );
    for args in [
        &["start"][..],
        &["run"],
        &["restart"],
        &["sql", "-q", "select 1"],
        &["url", "--ensure"],
        &["exec", "true"],
    ] {
        let err = fails(env.doltctl().arg("--data-dir").arg(&typo).args(args));
        assert_eq!(err, expected, "doltctl {args:?}");
        assert_untouched(&env, &before);
    }
    // The library's auto-start refuses it the same way.
    let err = block_on(async {
        doltctl::Client::for_data_dir(&typo)?
            .conn()
            .await
            .map(|_| ())
    })
    .unwrap_err();
    assert!(
        matches!(err, doltctl::Error::DataDirMissing { ref data_dir } if *data_dir == typo),
        "{err}"
    );
    assert_untouched(&env, &before);
    // Reading commands say nothing runs, as before.
    let out = env
        .doltctl()
        .arg("--data-dir")
        .arg(&typo)
        .arg("url")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_untouched(&env, &before);

    // What the message says to do works: init creates it, then start serves it.
    env.doltctl()
        .arg("--data-dir")
        .arg(&typo)
        .arg("init")
        .assert()
        .success();
    assert!(typo.is_dir());
    let out = env
        .doltctl()
        .arg("--data-dir")
        .arg(&typo)
        .arg("start")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.doltctl()
        .arg("--data-dir")
        .arg(&typo)
        .arg("stop")
        .assert()
        .success();
}

#[test]
fn a_data_dir_that_is_a_file_is_refused_by_every_command() {
    let env = TestEnv::new();
    let file = env.dir.path().join("notes.txt");
    std::fs::write(&file, "not a data dir\n").unwrap();
    let before = snapshot(env.dir.path());
    let expected = format!(
        "doltctl: data dir {} is not a directory; point --data-dir / data_dir at a directory \
         (`doltctl init` creates one)\n",
        file.display()
    );
    for args in [
        &["start"][..],
        &["status"],
        &["init"],
        &["sql", "-q", "select 1"],
    ] {
        let err = fails(env.doltctl().arg("--data-dir").arg(&file).args(args));
        assert_eq!(err, expected, "doltctl {args:?}");
        assert_untouched(&env, &before);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a data dir\n");
}

#[test]
fn a_config_file_that_does_not_exist_is_named_with_how_to_create_it() {
    let env = TestEnv::new();
    let before = snapshot(env.dir.path());
    let missing = env.dir.path().join("doltctl.tmol");
    let mut cmd = assert_cmd::Command::cargo_bin("doltctl").unwrap();
    cmd.current_dir(env.dir.path())
        .env_remove("DOLTCTL_CONFIG")
        .env("DOLT_BIN", dolt_bin())
        .env("DOLT_ROOT_PATH", env.root())
        .env("DOLT_DISABLE_EVENT_FLUSH", "1")
        .args(["--config", "doltctl.tmol", "start"]);
    let err = fails(&mut cmd);
    assert_eq!(
        err,
        format!(
            "doltctl: config file {0} (--config) does not exist; create it with \
             `doltctl --config {0} init`, or correct the path\n",
            missing.display()
        )
    );
    assert_untouched(&env, &before);

    let mut cmd = assert_cmd::Command::cargo_bin("doltctl").unwrap();
    cmd.current_dir(env.dir.path())
        .env("DOLTCTL_CONFIG", &missing)
        .env("DOLT_BIN", dolt_bin())
        .env("DOLT_ROOT_PATH", env.root())
        .args(["sql", "-q", "select 1"]);
    let err = fails(&mut cmd);
    assert!(
        err.contains(&format!(
            "config file {} ($DOLTCTL_CONFIG) does not exist",
            missing.display()
        )),
        "{err}"
    );
    assert_untouched(&env, &before);
}

#[test]
fn an_unreadable_config_file_is_named_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root reads any file: as root, run doltctl as nobody, who may pass the test's dir.
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let before = snapshot(env.dir.path());
    let mut std_cmd = env.doltctl_std();
    std_cmd.arg("start");
    if as_root {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a user nobody");
        std_cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        std_cmd.env("HOME", "/nonexistent");
    }
    let mut cmd = assert_cmd::Command::from_std(std_cmd);
    let err = fails(&mut cmd);
    assert!(
        err.starts_with(&format!(
            "doltctl: cannot read config file {}: Permission denied (os error 13); let ",
            env.config.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("read it and its directories (chmod / chown), or pass another --config"),
        "{err}"
    );
    assert_untouched(&env, &before);
}

#[test]
fn a_misspelled_config_key_names_the_line_and_the_key_meant() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(&env.config).unwrap();
    let line = text.lines().position(|l| l == "[server]").unwrap() + 2;
    env.write_config(&text.replace("[server]\n", "[server]\nready_timout = \"5s\"\n"));
    let before = snapshot(env.dir.path());
    for args in [&["start"][..], &["sql", "-q", "select 1"]] {
        let err = fails(env.doltctl().args(args));
        assert!(
            err.starts_with(&format!(
                "doltctl: config {}:{line}:1: server.ready_timout: unknown field `ready_timout` \
                 (did you mean `ready_timeout`?), expected one of `host`, `port`",
                env.config.display()
            )),
            "{err}"
        );
        assert_untouched(&env, &before);
    }
    // A section's key above every header.
    env.write_config(&format!("port = 3307\n{text}"));
    let before = snapshot(env.dir.path());
    let err = fails(env.doltctl().arg("start"));
    assert!(
        err.contains(":1:1: port: unknown field `port` (it belongs in [server])"),
        "{err}"
    );
    assert_untouched(&env, &before);
}
