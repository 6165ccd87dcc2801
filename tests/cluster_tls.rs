//! A cluster whose etcd speaks only TLS and checks client certificates (`--client-cert-auth`):
//! the election, a failover and `cluster status` work through it, and each way of getting the
//! TLS keys wrong is refused with a message naming the key. Real etcd, real dolt, certificates
//! made by openssl (`tests/common/pki.rs`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{wait_marked, ClusterNode, Etcd, Pki};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn tls_lines(ca: &std::path::Path, client: Option<&Pki>) -> String {
    let mut s = format!("etcd_ca = {:?}\n", ca.display().to_string());
    if let Some(p) = client {
        s.push_str(&format!(
            "etcd_cert = {:?}\netcd_key = {:?}\n",
            p.client_cert().display().to_string(),
            p.client_key().display().to_string()
        ));
    }
    s
}

#[test]
fn a_cluster_elects_and_fails_over_through_an_etcd_that_requires_client_certificates() {
    let pki = Pki::new();
    let etcd = Etcd::start_tls(&pki);
    let (a, b) = (ClusterNode::new("a"), ClusterNode::new("b"));
    let tls = tls_lines(&pki.ca(), Some(&pki));
    a.write_config_with(&etcd.endpoint(), &[b.at()], &tls);
    b.write_config_with(&etcd.endpoint(), &[a.at()], &tls);
    a.start();
    block_on(a.wait_role("primary", Duration::from_secs(60)));
    b.start();
    block_on(async {
        b.wait_role("standby", Duration::from_secs(60)).await;
        // a (the leader) marks b caught up through etcd: only then may b be promoted.
        wait_marked(&[&b], true, Duration::from_secs(30)).await;
        let v = b.status_json();
        assert_eq!(v["leader"], "a", "{v}");
        assert_eq!(v["etcd_reachable"], true, "{v}");
        assert!(
            etcd.get("/doltctl/t/leader")
                .is_some_and(|l| l.contains("\"a\"")),
            "etcdctl over TLS sees a's leader record"
        );
        // Host loss of the primary: b takes the lease through TLS.
        a.kill_host();
        let took = b.wait_role("primary", Duration::from_secs(3 + 10)).await;
        println!(
            "failover over TLS: b primary {} ms after a's host loss",
            took.as_millis()
        );
    });
}

#[test]
fn wrong_tls_settings_for_etcd_are_refused_naming_what_to_fix() {
    let pki = Pki::new();
    let etcd = Etcd::start_tls(&pki);
    let node = ClusterNode::new("c");
    let peer = ClusterNode::new("d");
    let missing = node.dir.path().join("missing-ca.pem");
    // (endpoint, [cluster] TLS lines, what stderr must name)
    let cases: Vec<(String, String, &str)> = vec![
        // etcd's certificate is signed by another CA.
        (
            etcd.endpoint(),
            tls_lines(&pki.other_ca(), Some(&pki)),
            "etcd_ca",
        ),
        // etcd checks client certificates; none is set.
        (
            etcd.endpoint(),
            tls_lines(&pki.ca(), None),
            "etcd_cert and etcd_key",
        ),
        // Plain HTTP to etcd's TLS port.
        (
            etcd.endpoint().replace("https://", "http://"),
            String::new(),
            "https://",
        ),
        // A TLS file that is not there: a config error, before any connection.
        (
            etcd.endpoint(),
            tls_lines(&missing, Some(&pki)),
            "missing-ca.pem",
        ),
    ];
    for (endpoint, lines, want) in cases {
        node.write_config_with(&endpoint, &[peer.at()], &lines);
        for args in [&["cluster", "status"][..], &["start"][..]] {
            let out = node.doltctl().args(args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            println!(
                "{args:?} {endpoint} {lines:?}: exit {:?}: {err}",
                out.status.code()
            );
            assert!(!out.status.success(), "{args:?} {lines}: {err}");
            assert!(err.contains(want), "{args:?} {lines}: {err}");
        }
        // A refused start may leave its supervisor retrying (state failed); the next case
        // starts afresh.
        node.stop();
    }
}

/// Copies `from` over `to` as a rotation tool would: a new file renamed into place.
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn a_running_supervisor_takes_renewed_certificates_without_a_restart() {
    let old = Pki::new();
    let mut etcd = Etcd::start_tls(&old);
    let (a, b) = (ClusterNode::new("a"), ClusterNode::new("b"));
    // The node's own copies, relative to its config file, as an operator would lay them out.
    let files = [
        (old.ca(), "etcd-ca.pem"),
        (old.client_cert(), "etcd-client.pem"),
        (old.client_key(), "etcd-client-key.pem"),
    ];
    for (from, name) in &files {
        replace_file(from, &a.dir.path().join(name));
    }
    a.write_config_with(
        &etcd.endpoint(),
        &[b.at()],
        "etcd_ca = \"etcd-ca.pem\"\netcd_cert = \"etcd-client.pem\"\netcd_key = \"etcd-client-key.pem\"\n",
    );
    a.start();
    block_on(a.wait_role("primary", Duration::from_secs(60)));
    let supervisor = a.state().unwrap().supervisor.unwrap().pid;
    // A new CA everywhere: the node's files first, then etcd. The certificates a's supervisor
    // read at its start are now worthless to this etcd.
    let new = Pki::new();
    let renewed = [new.ca(), new.client_cert(), new.client_key()];
    for (from, (_, name)) in renewed.iter().zip(&files) {
        replace_file(from, &a.dir.path().join(name));
    }
    etcd.restart_with_new_certificates(&new);
    // Same supervisor, back on etcd: it leads again (it was the last leader and has its data).
    let start = Instant::now();
    loop {
        let leader = etcd.get("/doltctl/t/leader").unwrap_or_default();
        let epoch: u64 = etcd
            .get("/doltctl/t/epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        let role = block_on(a.role());
        if leader.contains("\"a\"")
            && role
                .as_ref()
                .is_some_and(|r| r.0 == "primary" && r.1 == epoch)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a is not back as the primary: leader {leader:?} epoch {epoch}, dolt {role:?}\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "a led again {} ms after etcd came back with the new certificates",
        start.elapsed().as_millis()
    );
    assert_eq!(
        a.state().unwrap().supervisor.unwrap().pid,
        supervisor,
        "no supervisor restart"
    );
    assert!(
        a.log().contains("etcd TLS files changed; reconnected"),
        "{}",
        a.log()
    );
}
