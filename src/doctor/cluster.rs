//! Checks of a cluster node (`[cluster]`): etcd's endpoints, this node's role against etcd's
//! leader record, the peers, the primary's replication, the replication port.
//!
//! Read-only, with or without `--fix`: etcd is only read (nothing in a cluster is a safe
//! repair), no server is started, and each check's I/O is bounded by [`DEADLINE`] and runs
//! beside the others, so a blackholed etcd or peer costs doctor about that once.

mod ask;
#[cfg(test)]
mod tests;

use super::*;
use crate::config::ClusterConfig;
use crate::lifecycle::cluster::discover::NodeAddr;
use crate::lifecycle::cluster::etcd::Observed;
use ask::{ask_etcd, ask_node, ask_peers, EndpointAnswer, NodeAnswer, PeerAnswer, DEADLINE};

/// Replication lag above this is worth a WARN (a healthy standby trails by milliseconds).
const MAX_LAG_MS: u64 = 5000;

/// The cluster checks, in order; none when the config has no `[cluster]`.
pub(super) async fn cluster_checks(
    cfg: &Config,
    st: &Option<InstanceStatus>,
    orphans: &[ProcessIdentity],
) -> Vec<Check> {
    let Some(c) = &cfg.cluster else {
        return vec![];
    };
    // Only a server that runs is asked: doctor never starts one.
    let running = st.as_ref().is_some_and(|s| s.server_alive) || !orphans.is_empty();
    let own_addr = own_addr(cfg, c);
    let (endpoints, own, peers) = tokio::join!(
        ask_etcd(c),
        async {
            match running {
                true => Some(ask_node(cfg, &own_addr, true).await),
                false => None,
            }
        },
        ask_peers(cfg, c),
    );
    let observed = endpoints.iter().find_map(|e| e.result.as_ref().ok());
    vec![
        etcd_check(c, &endpoints),
        role_check(c, &own_addr, own.as_ref(), observed),
        peers_check(c, &peers, observed),
        replication_check(own.as_ref()),
        ports_check(cfg, c, st, orphans),
    ]
}

fn own_addr(cfg: &Config, c: &ClusterConfig) -> NodeAddr {
    NodeAddr {
        name: c.node.clone(),
        host: cfg.server.host.clone(),
        port: match cfg.server.port {
            PortSetting::Fixed(p) => p,
            // Refused by validation for a cluster; 0 makes the connect fail, not hang.
            PortSetting::Auto => 0,
        },
    }
}

/// `cluster etcd`: which endpoints answered a read of the cluster's keys.
fn etcd_check(c: &ClusterConfig, answers: &[EndpointAnswer]) -> Check {
    const NAME: &str = "cluster etcd";
    let down: Vec<String> = answers
        .iter()
        .filter_map(|a| {
            a.result
                .as_ref()
                .err()
                .map(|e| format!("{} ({e})", a.endpoint))
        })
        .collect();
    let seen = answers.iter().find_map(|a| a.result.as_ref().ok());
    let Some(o) = seen else {
        return check(
            NAME,
            Level::Fail,
            format!(
                "no etcd endpoint answered (each given {DEADLINE:?}): {}. Without etcd no standby is \
                 promoted and the primary fences itself within lease_ttl/2 ({:?}): the cluster \
                 refuses writes until etcd answers again (reads keep working)",
                down.join("; "),
                c.lease_ttl / 2
            ),
        )
        .fix(format!(
            "start etcd or restore the network to {}; if the endpoints are wrong, correct \
             [cluster] etcd",
            c.etcd.join(", ")
        ));
    };
    let leader = match &o.leader {
        Some(l) => format!("leader {} at epoch {}", l.node, l.epoch),
        None => "no leader".into(),
    };
    let answered = answers.len() - down.len();
    let summary = format!(
        "{answered} of {} endpoint(s) answered under {}: {leader} (highest epoch taken: {})",
        c.etcd.len(),
        c.prefix(),
        o.epoch
    );
    if down.is_empty() {
        check(NAME, Level::Ok, summary)
    } else {
        check(
            NAME,
            Level::Warn,
            format!("{summary}; not answering: {}", down.join("; ")),
        )
        .fix("restart those etcd members or restore the network to them; while a quorum answers the cluster works, one more loss makes it read-only")
    }
}

/// `cluster role`: this node's dolt (`None`: not running) against etcd's leader record
/// (`None`: etcd did not answer).
fn role_check(
    c: &ClusterConfig,
    own_addr: &NodeAddr,
    own: Option<&std::result::Result<NodeAnswer, String>>,
    etcd: Option<&Observed>,
) -> Check {
    const NAME: &str = "cluster role";
    let node = &c.node;
    let at = format!("{}:{}", own_addr.host, own_addr.port);
    let Some(own) = own else {
        return check(
            NAME,
            Level::Ok,
            format!("skipped: node {node}'s server is not running (doctor never starts one)"),
        );
    };
    let a = match own {
        Ok(a) => a,
        Err(e) => {
            return check(
                NAME,
                Level::Warn,
                format!("node {node}'s dolt did not answer on {at}: {e}"),
            )
            .fix("see the `connection` check and `doltctl logs`; `doltctl restart` if it stays so")
        }
    };
    let me = format!("node {node}'s dolt says {}@{}", a.role, a.epoch);
    let restart_fix =
        "`doltctl restart` on this node: doltctl removes Dolt's persisted role before every \
                       launch, so it comes back as a standby at etcd's epoch";
    match a.role.as_str() {
        "detected_broken_config" => {
            return check(
                NAME,
                Level::Fail,
                format!(
                    "{me}: Dolt saw two primaries at one epoch and made itself read-only"
                ),
            )
            .fix(format!(
                "{restart_fix}; if it recurs, two nodes share a Dolt root or an epoch (see `doltctl cluster status`)"
            ))
        }
        "primary" | "standby" => {}
        other => {
            return check(
                NAME,
                Level::Fail,
                format!("{me}: {other:?} is not a cluster role; this dolt does not run as a cluster node"),
            )
            .fix(format!("check what listens on {at} (see the `port` check)"))
        }
    }
    let Some(o) = etcd else {
        return check(
            NAME,
            Level::Warn,
            format!(
                "{me}; etcd did not answer, so it cannot be compared (a primary without etcd \
                 fences itself within {:?}; no standby is promoted)",
                c.lease_ttl / 2
            ),
        )
        .fix("bring etcd back (see `cluster etcd`)");
    };
    let primary = a.role == "primary";
    match (&o.leader, primary) {
        (Some(l), true) if l.node == *node && l.epoch == a.epoch => check(
            NAME,
            Level::Ok,
            format!("{me} and holds the leader lease in etcd (epoch {})", l.epoch),
        ),
        (Some(l), true) if l.node == *node => check(
            NAME,
            Level::Warn,
            format!(
                "{me}; it holds the leader lease, but etcd's leader record has epoch {}",
                l.epoch
            ),
        )
        .fix("run doctor again in a few seconds (a promotion under way); `doltctl logs` if it stays so"),
        (Some(l), true) => check(
            NAME,
            Level::Fail,
            format!(
                "{me}, but etcd names {} (epoch {}) as the leader: two nodes may take writes, \
                 and this node's will be overwritten",
                l.node, l.epoch
            ),
        )
        .fix(format!(
            "its controller fences it (kills and relaunches its dolt as a standby) within {:?}; \
             if it stays so, {restart_fix}",
            c.lease_ttl / 2
        )),
        (None, true) => check(
            NAME,
            Level::Fail,
            format!("{me}, but no node holds the leader lease in etcd: it takes writes nobody elected it for"),
        )
        .fix(format!(
            "its controller fences it within {:?}; if it stays so, {restart_fix}",
            c.lease_ttl / 2
        )),
        // A promotion goes to a newer epoch than the dolt has; at or past the leader's epoch
        // (a rogue primary's higher epoch demoted it) it cannot be promoted (seen on 2.2.0).
        (Some(l), false) if l.node == *node && a.epoch >= l.epoch => check(
            NAME,
            Level::Fail,
            format!(
                "{me}, but etcd names this node the leader (epoch {}): its dolt cannot be \
                 promoted at an epoch it is already past, so no node takes writes",
                l.epoch
            ),
        )
        .fix(format!(
            "its controller gives the lease up within seconds for a new election; if it stays \
             so, {}",
            restart_fix.replace("a standby at etcd's epoch", "the primary etcd names it")
        )),
        (Some(l), false) if l.node == *node => check(
            NAME,
            Level::Warn,
            format!("{me}, but etcd names this node the leader (epoch {}): a promotion under way or failed", l.epoch),
        )
        .fix("run doctor again in a few seconds; if it stays so, read `doltctl logs` (the controller's promotion) and `doltctl restart`"),
        (Some(l), false) if a.epoch == l.epoch => check(
            NAME,
            Level::Ok,
            format!("{me}, following leader {} at the same epoch", l.node),
        ),
        (Some(l), false) if a.epoch < l.epoch => check(
            NAME,
            Level::Warn,
            format!(
                "{me}, older than leader {}'s epoch {}: it has not heard from the primary since it was elected",
                l.node, l.epoch
            ),
        )
        .fix(format!(
            "check that {} reaches this node's replication port {} (`doltctl doctor` there, `cluster peers`); the primary's next write to it brings the epoch",
            l.node, c.remotesapi_port
        )),
        (Some(l), false) => check(
            NAME,
            Level::Warn,
            format!("{me}, newer than leader {}'s epoch {}: a switchover under way?", l.node, l.epoch),
        )
        .fix("run doctor again in a few seconds; `doltctl cluster status` shows every node"),
        (None, false) => check(
            NAME,
            Level::Warn,
            format!(
                "{me}, and no node holds the leader lease{}: the cluster takes no writes until one is elected",
                if o.handover.is_some() { " (a switchover is handing over)" } else { "" }
            ),
        )
        .fix("run doctor again after lease_ttl; if it lasts, `doltctl cluster status` and `doltctl logs` on the nodes (a standby campaigns only once its dolt is ready)"),
    }
}

/// `cluster peers`: every peer's SQL and replication port.
fn peers_check(c: &ClusterConfig, peers: &[PeerAnswer], etcd: Option<&Observed>) -> Check {
    const NAME: &str = "cluster peers";
    if c.peers.is_empty() {
        return check(
            NAME,
            Level::Warn,
            "no [[cluster.peers]]: nothing replicates this node's data",
        )
        .fix("list the other nodes under [[cluster.peers]] (name, host, port, remotesapi_port)");
    }
    let leader = etcd.and_then(|o| o.leader.as_ref());
    // Each peer's evidence on one line; the troubled ones first.
    let (mut bad, mut good) = (Vec::new(), Vec::new());
    let mut fixes = Vec::new();
    for p in peers {
        let name = &p.addr.name;
        let sql_at = format!("{}:{}", p.addr.host, p.addr.port);
        let rep_at = format!("{}:{}", p.addr.host, p.remotesapi_port);
        let sql = match &p.sql {
            Ok(a) => format!("{}@{} on {sql_at}", a.role, a.epoch),
            Err(e) => format!("SQL {sql_at} does not answer ({e})"),
        };
        let rep = match &p.replication_port {
            Ok(()) => format!("replication {rep_at} accepts"),
            Err(e) => format!("replication {rep_at} does not accept ({e})"),
        };
        let mut line = format!("{name}: {sql}, {rep}");
        let role = p.sql.as_ref().map(|a| a.role.as_str()).unwrap_or("");
        let rogue = leader.filter(|l| role == "primary" && l.node != *name);
        let unpromoted = leader.is_some_and(|l| role == "standby" && l.node == *name);
        if unpromoted {
            line.push_str(
                " (etcd names it the leader, but its dolt is standby: no node takes writes)",
            );
            fixes.push(format!(
                "run doctor again in a few seconds (a promotion under way); if it stays so, `doltctl restart` on {name}"
            ));
        }
        if let Some(l) = rogue {
            line.push_str(&format!(
                " (says primary, but etcd names {} the leader)",
                l.node
            ));
            fixes.push(format!(
                "{name}'s controller fences it; if it stays so, `doltctl restart` on {name}"
            ));
        } else if role == "detected_broken_config" {
            fixes.push(format!("`doltctl restart` on {name}"));
        }
        if p.sql.is_err() || p.replication_port.is_err() {
            fixes.push(format!(
                "start {name} (`doltctl start` on its host) or correct its host/port/remotesapi_port under [[cluster.peers]]; check the network to {}",
                p.addr.host
            ));
        }
        let troubled = p.sql.is_err()
            || p.replication_port.is_err()
            || rogue.is_some()
            || unpromoted
            || role == "detected_broken_config";
        if troubled {
            bad.push(line);
        } else {
            good.push(line);
        }
    }
    let level = if bad.is_empty() {
        Level::Ok
    } else {
        Level::Warn
    };
    bad.append(&mut good);
    let c = check(NAME, level, bad.join("; "));
    if fixes.is_empty() {
        c
    } else {
        c.fix(fixes.join("; "))
    }
}

/// `cluster replication`: on the primary, standbys in error or behind.
fn replication_check(own: Option<&std::result::Result<NodeAnswer, String>>) -> Check {
    const NAME: &str = "cluster replication";
    let Some(Ok(a)) = own else {
        return check(
            NAME,
            Level::Ok,
            "skipped: this node's dolt is not running or did not answer",
        );
    };
    let Some(rows) = &a.replication else {
        return check(
            NAME,
            Level::Ok,
            format!("skipped: this node is {} (the primary reports replication; `doltctl cluster status` shows it)", a.role),
        );
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            return check(
                NAME,
                Level::Warn,
                format!("dolt_cluster.dolt_cluster_status could not be read: {e}"),
            )
            .fix("`doltctl cluster status`; `doltctl logs` for the server's side")
        }
    };
    if rows.is_empty() {
        return check(NAME, Level::Ok, "no database to replicate yet");
    }
    let bad: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let why = match (&r.error, r.lag_ms) {
                (Some(e), _) => format!("last error: {e}"),
                (None, Some(ms)) if ms > MAX_LAG_MS => format!("{ms} ms behind"),
                _ => return None,
            };
            Some(format!("{} to {}: {why}", r.database, r.standby))
        })
        .collect();
    let worst = rows.iter().filter_map(|r| r.lag_ms).max().unwrap_or(0);
    if bad.is_empty() {
        return check(
            NAME,
            Level::Ok,
            format!(
                "{} database/standby pair(s), no error, lag at most {worst} ms",
                rows.len()
            ),
        );
    }
    check(NAME, Level::Warn, bad.join("; ")).fix(
        "start or reach the standby named (see `cluster peers`); until it catches up, commits carry warning 3024 and a failover now would lose them",
    )
}

/// `cluster ports`: the replication port is this node's dolt's or free.
fn ports_check(
    cfg: &Config,
    c: &ClusterConfig,
    st: &Option<InstanceStatus>,
    orphans: &[ProcessIdentity],
) -> Check {
    const NAME: &str = "cluster ports";
    let host = &cfg.server.host;
    let rport = c.remotesapi_port;
    let mut ports = vec![
        format!("SQL {}", cfg.server.port),
        format!("replication {rport}"),
    ];
    ports.extend(
        c.peers
            .iter()
            .map(|p| format!("{} {}:{}/{}", p.name, p.host, p.port, p.remotesapi_port)),
    );
    let layout = format!("distinct ({})", ports.join(", "));
    let running = st.as_ref().is_some_and(|s| s.server_alive) || !orphans.is_empty();
    // The supervisor may relaunch its dolt while doctor looks (a fence): any dolt running this
    // data dir's generated config is this node's, whatever pid the state file recorded.
    let instance = Instance::new(&cfg.data_dir);
    let is_ours = |pid: i32| {
        ProcessIdentity::of(pid)
            .is_some_and(|p| crate::server::preflight::is_own_server(&p, &instance))
    };
    match port::holder(rport) {
        Some((pid, _)) if is_ours(pid) => check(
            NAME,
            Level::Ok,
            format!("{layout}; {host}:{rport} bound by this node's dolt pid {pid}"),
        ),
        Some((pid, cmd)) => check(
            NAME,
            Level::Fail,
            format!("{host}:{rport} ([cluster] remotesapi_port) is held by pid {pid} ({cmd}), not this node's dolt: its dolt cannot start (Dolt exits on a taken replication port)"),
        )
        .fix("stop that process, or choose another [cluster] remotesapi_port and update it in every peer's [[cluster.peers]]"),
        None if running => check(
            NAME,
            Level::Warn,
            format!("{layout}; nothing visible listens on {host}:{rport} although this node's dolt runs"),
        )
        .fix("`doltctl restart`; `doltctl logs` for Dolt's remotesapi errors"),
        None if port::is_free(host, rport) => check(
            NAME,
            Level::Ok,
            format!("{layout}; {host}:{rport} is free"),
        ),
        None => check(
            NAME,
            Level::Fail,
            format!("{host}:{rport} ([cluster] remotesapi_port) is in use by a process not visible here"),
        )
        .fix("find and stop it (`ss -ltnp`), or choose another [cluster] remotesapi_port and update every peer"),
    }
}
