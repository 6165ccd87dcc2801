//! `doltctl init` against the real dolt binary: a config from the template, idempotence down to
//! the file, no HOME and no DOLT_ROOT_PATH, seeds applied once and committed, changed seeds
//! reported, databases created through a running server.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

/// Every file and directory under `dir` with its size, mtime, mode and inode.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, i64, i64, u32, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(
                e.path().display().to_string(),
                (m.len(), m.mtime(), m.mtime_nsec(), m.mode(), m.ino()),
            );
        }
    }
    out
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "doltctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn query(env: &TestEnv, db: &str, q: &str) -> String {
    stdout(
        &env.doltctl()
            .args(["sql", "-d", db, "--json", "-q", q])
            .output()
            .unwrap(),
    )
}

const SEEDS: &str = r#"
[bootstrap]
databases = ["app", "other"]
author_name = "Seed Author"
author_email = "seeds@example.com"
[[bootstrap.seed]]
db = "app"
file = "seeds/schema.sql"
[[bootstrap.seed]]
db = "app"
file = "seeds/users.csv"
[[bootstrap.seed]]
db = "app"
file = "seeds/events.data"
table = "events"
format = "jsonl"
"#;

fn write_seeds(env: &TestEnv) {
    let dir = env.dir.path().join("seeds");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("schema.sql"),
        "-- the schema; with a comment\nCREATE TABLE users (id int primary key, name text);\n\
         CREATE TABLE events (id int primary key, body json);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("users.csv"),
        "id,name\n1,\"Ann; Lee\"\n2,\n3,\"\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("events.data"),
        "{\"id\": 1, \"body\": {\"k\": [1, 2]}}\n",
    )
    .unwrap();
}

#[test]
fn seeds_are_applied_once_committed_and_a_change_is_reported() {
    let env = TestEnv::with_config(SEEDS);
    write_seeds(&env);
    let out = stdout(&env.doltctl().arg("init").output().unwrap());
    for line in [
        "created database app",
        "created database other",
        "applied seed seeds/schema.sql to app",
        "applied seed seeds/users.csv to app: 3 rows",
        "applied seed seeds/events.data to app: 1 row",
    ] {
        assert!(out.contains(line), "{line:?} missing in:\n{out}");
    }
    // The server ran only for the seeds.
    assert!(env.dolt_servers().is_empty(), "{:?}", env.dolt_servers());

    let log = query(
        &env,
        "app",
        "select message, committer, email from dolt_log order by date desc",
    );
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let messages: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "seed: seeds/events.data",
            "seed: seeds/users.csv",
            "seed: seeds/schema.sql",
            "Initialize data repository"
        ]
    );
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["committer"] == "Seed Author" && r["email"] == "seeds@example.com"));
    let users = query(&env, "app", "select id, name from users order by id");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&users).unwrap(),
        serde_json::json!([{"id": 1, "name": "Ann; Lee"}, {"id": 2, "name": null}, {"id": 3, "name": ""}])
    );
    env.stop();

    // Again: nothing to do, no seed applied twice.
    let out = stdout(&env.doltctl().arg("init").output().unwrap());
    assert!(out.contains("everything is already in place"), "{out}");
    assert!(out.contains("3 seeds applied"), "{out}");

    // A changed seed is reported and not applied again.
    std::fs::write(
        env.dir.path().join("seeds/users.csv"),
        "id,name\n1,\"Ann; Lee\"\n2,\n3,\"\"\n4,new\n",
    )
    .unwrap();
    let out = env.doltctl().arg("init").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("seed seeds/users.csv for app has changed") && err.contains("seeds.json"),
        "{err}"
    );
    assert_eq!(
        query(&env, "app", "select count(*) as n from users"),
        "[{\"n\":3}]\n"
    );
    assert_eq!(
        query(&env, "app", "select count(*) as n from dolt_log"),
        "[{\"n\":4}]\n"
    );

    // The record lost: the seeds' commits are found, nothing is applied twice.
    std::fs::remove_file(env.data_dir.join(".doltctl/seeds.json")).unwrap();
    let out = stdout(&env.doltctl().arg("init").output().unwrap());
    assert_eq!(out.matches("was already committed").count(), 3, "{out}");
    assert_eq!(
        query(&env, "app", "select count(*) as n from dolt_log"),
        "[{\"n\":4}]\n"
    );
    env.stop();
}

#[test]
fn init_twice_the_second_run_changes_no_file() {
    let env = TestEnv::with_config(SEEDS);
    write_seeds(&env);
    stdout(&env.doltctl().arg("init").output().unwrap());
    let before = snapshot(env.dir.path());
    let out = stdout(&env.doltctl().arg("init").output().unwrap());
    assert!(out.contains("everything is already in place"), "{out}");
    assert!(out.contains("databases app, other"), "{out}");
    let after = snapshot(env.dir.path());
    assert_eq!(before, after, "the second init changed files");
    assert!(env.own_processes().is_empty());
}

#[test]
fn init_writes_a_config_from_the_template_and_never_rewrites_it() {
    let dir = tempfile::Builder::new()
        .prefix("doltctl-t")
        .tempdir()
        .unwrap();
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("doltctl")
            .unwrap()
            .current_dir(dir.path())
            .env_remove("DOLTCTL_CONFIG")
            .env("DOLT_BIN", dolt_bin())
            .env_remove("DOLT_ROOT_PATH")
            .env("HOME", "/nonexistent")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("DOLT_DISABLE_EVENT_FLUSH", "1")
            .args(args)
            .output()
            .unwrap()
    };
    // No HOME, no DOLT_ROOT_PATH, no git identity: dolt gets doltctl's root and identity.
    let out = stdout(&run(&[
        "init",
        "--data-dir",
        "dev data",
        "--db",
        "app",
        "--db",
        "b_2",
    ]));
    let cfg_path = dir.path().join("doltctl.toml");
    assert!(
        out.contains(&format!("wrote {}", cfg_path.display())),
        "{out}"
    );
    assert!(out.contains("created database app") && out.contains("created database b_2"));
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(text.contains("\ndata_dir = \"dev data\"\n"), "{text}");
    assert!(
        text.contains("\ndatabases = [\"app\", \"b_2\"]\n"),
        "{text}"
    );
    assert!(
        text.contains("# [[bootstrap.seed]]"),
        "the template's comments are kept"
    );
    let data = dir.path().join("dev data");
    assert!(data.join("app/.dolt").is_dir() && data.join("b_2/.dolt").is_dir());
    assert!(data
        .join(".doltctl/dolt-root/.dolt/config_global.json")
        .is_file());
    let log = std::process::Command::new(dolt_bin())
        .args(["log", "-n", "1"])
        .current_dir(data.join("app"))
        .env("DOLT_ROOT_PATH", data.join(".doltctl/dolt-root"))
        .env("DOLT_DISABLE_EVENT_FLUSH", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("doltctl <doltctl@localhost>"), "{log}");

    // A second run reads that config (no --data-dir needed) and keeps it as it is.
    // (The section header only: comments mention `[server] port` too.)
    std::fs::write(
        &cfg_path,
        text.replacen("\n[server]\n", "\n# edited\n[server]\n", 1),
    )
    .unwrap();
    let edited = std::fs::read_to_string(&cfg_path).unwrap();
    let out = stdout(&run(&["init"]));
    assert!(out.contains("everything is already in place"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), edited);

    // Bad names are refused before anything is written.
    let other = dir.path().join("sub");
    std::fs::create_dir(&other).unwrap();
    let out = assert_cmd::Command::cargo_bin("doltctl")
        .unwrap()
        .current_dir(&other)
        .env_remove("DOLTCTL_CONFIG")
        .args(["--config", "new.toml", "init", "--db", "my-db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"my-db\"") && err.contains("letters, digits and _"),
        "{err}"
    );
    assert!(!other.join("new.toml").exists());
}

#[test]
fn init_without_home_or_dolt_root_path_applies_seeds() {
    let env = TestEnv::with_config(
        "[bootstrap]\n[[bootstrap.seed]]\ndb = \"app\"\nfile = \"seed.sql\"\n",
    );
    std::fs::write(
        env.dir.path().join("seed.sql"),
        "CREATE TABLE t (i int primary key);\nINSERT INTO t VALUES (1), (2);\n",
    )
    .unwrap();
    let out = env
        .doltctl()
        .env_remove("DOLT_ROOT_PATH")
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["init", "--start"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("applied seed seed.sql to app: 2 rows"),
        "{text}"
    );
    assert_eq!(text.lines().last().unwrap(), env.url());
    assert_eq!(
        env.dolt_servers().len(),
        1,
        "--start leaves the server running"
    );
    // The server got doltctl's root path too.
    let server = env.server();
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid)).unwrap();
    let root = format!(
        "DOLT_ROOT_PATH={}",
        env.data_dir.join(".doltctl/dolt-root").display()
    );
    assert!(
        environ.split(|b| *b == 0).any(|v| v == root.as_bytes()),
        "server environment lacks {root}"
    );
    let log = query(&env, "app", "select committer from dolt_log limit 1");
    assert!(log.contains("doltctl"), "{log}");
    env.stop();
}

#[test]
fn init_creates_databases_through_a_running_server() {
    let env = TestEnv::new();
    let url = env.start();
    let out = stdout(
        &env.doltctl()
            .args(["init", "--db", "fresh", "--start"])
            .output()
            .unwrap(),
    );
    assert!(
        out.contains("created database fresh (through the running server)"),
        "{out}"
    );
    assert_eq!(out.lines().last().unwrap(), url);
    let dbs = query(&env, "fresh", "select database() as db");
    assert!(dbs.contains("fresh"), "{dbs}");
    assert!(env.data_dir.join("fresh/.dolt").is_dir());
    // A directory in the way that is not a database is left alone.
    std::fs::create_dir_all(env.data_dir.join("busy")).unwrap();
    std::fs::write(env.data_dir.join("busy/notes.txt"), "mine").unwrap();
    let out = env
        .doltctl()
        .args(["init", "--db", "busy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("busy") && err.contains("not a Dolt database"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(env.data_dir.join("busy/notes.txt")).unwrap(),
        "mine"
    );
    env.stop();
}

#[test]
fn a_failing_seed_names_its_line_leaves_nothing_and_is_not_recorded() {
    let env = TestEnv::with_config(
        "[bootstrap]\n[[bootstrap.seed]]\ndb = \"app\"\nfile = \"schema.sql\"\n\
         [[bootstrap.seed]]\ndb = \"app\"\nfile = \"t.csv\"\n",
    );
    std::fs::write(
        env.dir.path().join("schema.sql"),
        "CREATE TABLE t (i int primary key, at datetime);\n",
    )
    .unwrap();
    std::fs::write(
        env.dir.path().join("t.csv"),
        "i,at\n1,2024-01-01\n2,someday\n",
    )
    .unwrap();
    let out = env.doltctl().arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("t.csv:3:") && err.contains("someday"), "{err}");
    // The first seed stays applied; the failed one left no row and no record.
    assert!(
        env.dolt_servers().is_empty(),
        "the server started for the seeds was stopped"
    );
    let record = std::fs::read_to_string(env.data_dir.join(".doltctl/seeds.json")).unwrap();
    assert!(
        record.contains("schema.sql") && !record.contains("t.csv"),
        "{record}"
    );
    assert_eq!(
        query(&env, "app", "select count(*) as n from t"),
        "[{\"n\":0}]\n"
    );

    // Fixed, the next init applies just that one.
    std::fs::write(
        env.dir.path().join("t.csv"),
        "i,at\n1,2024-01-01\n2,2024-01-02\n",
    )
    .unwrap();
    env.stop();
    let out = stdout(&env.doltctl().arg("init").output().unwrap());
    assert!(
        out.contains("applied seed t.csv to app: 2 rows") && !out.contains("schema.sql"),
        "{out}"
    );
    env.stop();
}
