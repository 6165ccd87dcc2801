//! The cluster checks' verdicts, row by row, from made-up answers (the real cluster is in
//! tests/cluster_doctor.rs).

use super::ask::StatusRow;
use super::*;
use crate::lifecycle::cluster::etcd::LeaderRecord;

fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[server]
port = 3306
[cluster]
name = "team"
node = "a"
etcd = ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
remotesapi_port = 50051
{extra}
[[cluster.peers]]
name = "b"
host = "127.0.0.1"
port = 3307
remotesapi_port = 50052
"#
    );
    Config::parse_str(&text, Path::new("/x/doltctl.toml")).unwrap()
}

fn cluster() -> ClusterConfig {
    config("").cluster.unwrap()
}

fn own_addr() -> NodeAddr {
    NodeAddr {
        name: "a".into(),
        host: "127.0.0.1".into(),
        port: 3306,
    }
}

fn answer(role: &str, epoch: u64) -> std::result::Result<NodeAnswer, String> {
    Ok(NodeAnswer {
        role: role.into(),
        epoch,
        replication: None,
    })
}

fn led_by(node: &str, epoch: u64) -> Observed {
    Observed {
        leader: Some(LeaderRecord {
            node: node.into(),
            epoch,
            lease: 7,
        }),
        epoch,
        ..Observed::default()
    }
}

/// This node's answer, etcd's view, the verdict, a phrase of its detail.
type Row = (
    Option<std::result::Result<NodeAnswer, String>>,
    Option<Observed>,
    Level,
    &'static str,
);

#[test]
fn role_is_judged_against_etcds_leader_row_by_row() {
    let c = cluster();
    let none = Observed::default();
    let cases: Vec<Row> = vec![
        (None, Some(led_by("b", 2)), Level::Ok, "not running"),
        (
            Some(Err("connection refused".into())),
            Some(led_by("b", 2)),
            Level::Warn,
            "did not answer",
        ),
        (
            Some(answer("primary", 2)),
            Some(led_by("a", 2)),
            Level::Ok,
            "holds the leader lease",
        ),
        (
            Some(answer("primary", 1)),
            Some(led_by("a", 2)),
            Level::Warn,
            "epoch 2",
        ),
        (
            Some(answer("primary", 2)),
            Some(led_by("b", 3)),
            Level::Fail,
            "etcd names b",
        ),
        (
            Some(answer("primary", 2)),
            Some(none.clone()),
            Level::Fail,
            "no node holds",
        ),
        (
            Some(answer("detected_broken_config", 2)),
            Some(led_by("a", 2)),
            Level::Fail,
            "two primaries",
        ),
        (
            Some(answer("", 0)),
            Some(led_by("a", 2)),
            Level::Fail,
            "not a cluster role",
        ),
        (
            Some(answer("standby", 2)),
            Some(led_by("b", 2)),
            Level::Ok,
            "following leader b",
        ),
        (
            Some(answer("standby", 1)),
            Some(led_by("b", 2)),
            Level::Warn,
            "older than leader b's epoch 2",
        ),
        (
            Some(answer("standby", 3)),
            Some(led_by("b", 2)),
            Level::Warn,
            "newer",
        ),
        (
            Some(answer("standby", 1)),
            Some(led_by("a", 2)),
            Level::Warn,
            "promotion under way",
        ),
        (
            Some(answer("standby", 10)),
            Some(led_by("a", 4)),
            Level::Fail,
            "no node takes writes",
        ),
        (
            Some(answer("standby", 2)),
            Some(none),
            Level::Warn,
            "no node holds the leader lease",
        ),
        (
            Some(answer("standby", 2)),
            None,
            Level::Warn,
            "etcd did not answer",
        ),
        (
            Some(answer("primary", 2)),
            None,
            Level::Warn,
            "fences itself",
        ),
    ];
    for (own, etcd, level, says) in cases {
        let got = role_check(&c, &own_addr(), own.as_ref(), etcd.as_ref());
        assert_eq!(got.status, level, "{own:?} / {etcd:?}: {}", got.detail);
        assert!(got.detail.contains(says), "{says:?} not in {}", got.detail);
        if level != Level::Ok {
            assert!(got.fix.is_some(), "{}: no next step", got.detail);
        }
    }
}

#[test]
fn etcd_fails_when_none_answers_and_warns_naming_the_ones_that_do_not() {
    let c = cluster();
    let ok = |e: &str| EndpointAnswer {
        endpoint: e.into(),
        result: Ok(led_by("a", 4)),
    };
    let down = |e: &str| EndpointAnswer {
        endpoint: e.into(),
        result: Err("connection refused".into()),
    };
    let (e1, e2) = ("http://127.0.0.1:2379", "http://127.0.0.1:2380");

    let all = etcd_check(&c, &[ok(e1), ok(e2)]);
    assert_eq!(all.status, Level::Ok, "{}", all.detail);
    assert!(all.detail.contains("2 of 2") && all.detail.contains("leader a at epoch 4"));

    let some = etcd_check(&c, &[ok(e1), down(e2)]);
    assert_eq!(some.status, Level::Warn, "{}", some.detail);
    assert!(some.detail.contains(&format!("{e2} (connection refused)")));
    assert!(!some.detail.contains(&format!("{e1} (")));

    let none = etcd_check(&c, &[down(e1), down(e2)]);
    assert_eq!(none.status, Level::Fail, "{}", none.detail);
    assert!(none.detail.contains(e1) && none.detail.contains(e2));
    assert!(none.detail.contains("refuses writes"), "{}", none.detail);
    assert!(none.fix.unwrap().contains("start etcd"));
}

fn peer(sql: std::result::Result<NodeAnswer, String>, rep: bool) -> PeerAnswer {
    PeerAnswer {
        addr: NodeAddr {
            name: "b".into(),
            host: "127.0.0.1".into(),
            port: 3307,
        },
        remotesapi_port: 50052,
        sql,
        replication_port: if rep {
            Ok(())
        } else {
            Err("connection refused".into())
        },
    }
}

#[test]
fn peers_warn_naming_host_port_and_the_fix() {
    let c = cluster();
    let leader = led_by("a", 2);
    let good = peers_check(&c, &[peer(answer("standby", 2), true)], Some(&leader));
    assert_eq!(good.status, Level::Ok, "{}", good.detail);
    assert!(good.detail.contains("standby@2") && good.detail.contains("127.0.0.1:50052 accepts"));

    let gone = peers_check(
        &c,
        &[peer(Err("connection refused".into()), false)],
        Some(&leader),
    );
    assert_eq!(gone.status, Level::Warn);
    assert!(
        gone.detail
            .contains("b: SQL 127.0.0.1:3307 does not answer (connection refused)")
            && gone
                .detail
                .contains("replication 127.0.0.1:50052 does not accept"),
        "{}",
        gone.detail
    );
    assert!(gone.fix.unwrap().contains("`doltctl start`"));

    // A peer that says primary while etcd names this node is a second writer.
    let rogue = peers_check(&c, &[peer(answer("primary", 2), true)], Some(&leader));
    assert_eq!(rogue.status, Level::Warn);
    assert!(
        rogue
            .detail
            .contains("says primary, but etcd names a the leader"),
        "{}",
        rogue.detail
    );

    // A peer etcd names the leader whose dolt stayed standby: nobody takes writes.
    let unpromoted = peers_check(
        &c,
        &[peer(answer("standby", 3), true)],
        Some(&led_by("b", 3)),
    );
    assert_eq!(unpromoted.status, Level::Warn);
    assert!(
        unpromoted.detail.contains("no node takes writes"),
        "{}",
        unpromoted.detail
    );
}

#[test]
fn replication_warns_on_errors_and_lag_only_on_a_primary() {
    let row = |db: &str, lag: Option<u64>, error: Option<&str>| StatusRow {
        database: db.into(),
        standby: "b".into(),
        lag_ms: lag,
        error: error.map(str::to_string),
    };
    let primary = |rows| {
        Ok(NodeAnswer {
            role: "primary".into(),
            epoch: 2,
            replication: Some(Ok(rows)),
        })
    };
    let fine = replication_check(Some(&primary(vec![row("app", Some(3), None)])));
    assert_eq!(fine.status, Level::Ok, "{}", fine.detail);

    let bad = replication_check(Some(&primary(vec![
        row("app", Some(3), None),
        row("orders", Some(9000), None),
        row("users", Some(0), Some("connection refused")),
    ])));
    assert_eq!(bad.status, Level::Warn);
    assert!(
        bad.detail.contains("orders to b: 9000 ms behind"),
        "{}",
        bad.detail
    );
    assert!(
        bad.detail
            .contains("users to b: last error: connection refused"),
        "{}",
        bad.detail
    );
    assert!(!bad.detail.contains("app to b"), "{}", bad.detail);

    let standby = replication_check(Some(&answer("standby", 2)));
    assert_eq!(standby.status, Level::Ok);
    assert!(standby.detail.contains("skipped"));
    assert_eq!(replication_check(None).status, Level::Ok);
}

/// A foreign holder of the replication port (this test process) is named with its pid.
#[test]
fn a_replication_port_held_by_another_process_fails_naming_it() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("");
    cfg.data_dir = dir.path().to_path_buf();
    let mut c = cfg.cluster.clone().unwrap();
    c.remotesapi_port = port;
    let got = ports_check(&cfg, &c, &None, &[]);
    assert_eq!(got.status, Level::Fail, "{}", got.detail);
    assert!(
        got.detail
            .contains(&format!("held by pid {}", std::process::id())),
        "{}",
        got.detail
    );
    drop(l);
}
