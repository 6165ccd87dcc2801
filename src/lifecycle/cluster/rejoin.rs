//! Bringing a rejoined standby up to date. Dolt pushes to a standby only when a database's
//! working set or refs change (on commit, or when a primary starts or changes role): a standby
//! wiped or restarted behind stays empty or stale until the next write to each database, while
//! the primary reports lag 0 (dolt-cluster-notes §3).
//!
//! The primary's controller compares, every few ticks, `dolt_hashof_db()` of each of its
//! databases with each reachable peer's. A database missing on a peer, or different on two
//! checks in a row (one difference is normal replication lag), gets a push.
//!
//! The same comparison says which standbys are caught up (every database equal): the
//! controller marks those electable in etcd and unmarks the ones behind, or not answering on
//! two checks in a row (one slow answer is a loaded host: unmarking on it made a caught-up
//! standby unelectable for a few seconds under a 2-core CI run). A standby that died keeps its
//! mark that much longer, harmlessly: a dead node does not campaign, and its next dolt is a
//! new launch, which the mark does not name (see `decide.rs`).
//!
//! The trigger: creating and deleting a branch (`dolt_branch`) in that database. Measured on
//! dolt 2.2.0: the wiped standby had every row 171 ms after the call; it changes no table and
//! no working set a user sees (only a branch that lives for a moment), unlike an empty commit
//! (history) or a scratch table (visible in `dolt_status`). `dolt_assume_cluster_role` at the
//! same role and epoch was tried first: it created the database on the standby but sent no
//! table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::config::Config;
use crate::server::health::with_known_settings;
use crate::server::log::ServerLog;

/// The branch created and deleted to make the primary push a database.
const PROBE_BRANCH: &str = "doltctl_rejoin_push";

/// How many primary ticks between two comparisons.
const EVERY: u32 = 3;

/// What one comparison found.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Peers with every database equal to the primary's.
    pub caught_up: Vec<String>,
    /// Peers missing a database, different on two checks in a row, or not answering on two
    /// checks in a row; with why.
    pub behind: Vec<(String, String)>,
    /// The primary's databases.
    pub databases: Vec<String>,
}

/// What the primary knows of its peers' databases.
pub(crate) struct Rejoin {
    peers: Vec<(String, Opts)>,
    /// (peer, database) found different at the last comparison.
    behind: HashSet<(String, String)>,
    /// Peers that did not answer at the last comparison.
    unanswered: HashSet<String>,
    ticks: u32,
}

impl Rejoin {
    pub(crate) fn new(cfg: &Config) -> Rejoin {
        let peers = cfg
            .cluster
            .iter()
            .flat_map(|c| c.peers.iter())
            .map(|p| {
                let opts = OptsBuilder::default()
                    .ip_or_hostname(p.host.clone())
                    .tcp_port(p.port)
                    .user(Some(cfg.client.user.clone()))
                    .pass((!cfg.client.password.is_empty()).then(|| cfg.client.password.clone()));
                (p.name.clone(), with_known_settings(opts).into())
            })
            .collect();
        Rejoin {
            peers,
            behind: HashSet::new(),
            unanswered: HashSet::new(),
            ticks: 0,
        }
    }

    /// On a primary tick: compares databases every few ticks (then returns what it found)
    /// and pushes the ones a peer lacks.
    pub(crate) async fn check(&mut self, own: &Opts, log: &Arc<ServerLog>) -> Option<Verdict> {
        self.ticks += 1;
        if self.ticks < EVERY {
            return None;
        }
        self.ticks = 0;
        let mine = hashes(own).await?;
        let mut verdict = Verdict {
            databases: mine.keys().cloned().collect(),
            ..Default::default()
        };
        verdict.databases.sort();
        let mut push: Vec<(String, String)> = Vec::new();
        let mut now_behind = HashSet::new();
        let mut now_unanswered = HashSet::new();
        for (peer, opts) in &self.peers {
            // Unreachable: nothing to compare; it is compared again when it answers.
            let Some(theirs) = hashes(opts).await else {
                if self.unanswered.contains(peer) {
                    let why = format!(
                        "did not answer on two checks in a row (within {HASHES_WITHIN:?} each)"
                    );
                    verdict.behind.push((peer.clone(), why));
                }
                now_unanswered.insert(peer.clone());
                continue;
            };
            let (mut equal, mut behind) = (true, None);
            for (db, hash) in &mine {
                let key = (peer.clone(), db.clone());
                match theirs.get(db) {
                    Some(h) if h == hash => {}
                    missing_or_different => {
                        equal = false;
                        if missing_or_different.is_none() {
                            behind = Some(format!("has no database {db}"));
                            push.push(key.clone());
                        } else if self.behind.contains(&key) {
                            behind =
                                Some(format!("differs on database {db} on two checks in a row"));
                            push.push(key.clone());
                        }
                        now_behind.insert(key);
                    }
                }
            }
            if equal {
                verdict.caught_up.push(peer.clone());
            } else if let Some(why) = behind {
                verdict.behind.push((peer.clone(), why));
            }
        }
        self.behind = now_behind;
        self.unanswered = now_unanswered;
        let mut pushed: Vec<String> = Vec::new();
        for (peer, db) in push {
            if !pushed.contains(&db) {
                match trigger_push(own, &db).await {
                    Ok(()) => log.event(&format!(
                        "cluster: standby {peer} is behind on database {db}; made the primary push it"
                    )),
                    Err(e) => log.event(&format!(
                        "cluster: standby {peer} is behind on database {db}; triggering a push failed: {e}"
                    )),
                }
                pushed.push(db.clone());
            }
            self.behind.remove(&(peer, db));
        }
        Some(verdict)
    }
}

/// How long a peer has to answer a comparison.
const HASHES_WITHIN: Duration = Duration::from_secs(2);

/// Each user database's `dolt_hashof_db()`, if the server answers within `HASHES_WITHIN`.
async fn hashes(opts: &Opts) -> Option<HashMap<String, String>> {
    let fut = async {
        let mut conn = Conn::new(opts.clone()).await.ok()?;
        let dbs: Vec<String> = conn.query("SHOW DATABASES").await.ok()?;
        let mut out = HashMap::new();
        for db in dbs {
            if matches!(
                db.as_str(),
                "information_schema" | "mysql" | "dolt_cluster" | "performance_schema"
            ) {
                continue;
            }
            conn.query_drop(format!("USE {}", quote(&db))).await.ok()?;
            if let Ok(Some(h)) = conn
                .query_first::<String, _>("SELECT dolt_hashof_db()")
                .await
            {
                out.insert(db, h);
            }
        }
        let _ = conn.disconnect().await;
        Some(out)
    };
    tokio::time::timeout(HASHES_WITHIN, fut)
        .await
        .ok()
        .flatten()
}

/// Creates and deletes a branch in `db` on the primary: dolt pushes the database to every
/// standby.
async fn trigger_push(own: &Opts, db: &str) -> std::result::Result<(), String> {
    let fut = async {
        let mut conn = Conn::new(own.clone()).await.map_err(|e| e.to_string())?;
        conn.query_drop(format!("USE {}", quote(db)))
            .await
            .map_err(|e| e.to_string())?;
        let r = async {
            conn.query_drop(format!("CALL dolt_branch('{PROBE_BRANCH}')"))
                .await?;
            conn.query_drop(format!("CALL dolt_branch('-D', '{PROBE_BRANCH}')"))
                .await
        }
        .await
        .map_err(|e| e.to_string());
        let _ = conn.disconnect().await;
        r
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| Err("no answer within 30s".into()))
}

/// A database name as a quoted identifier.
fn quote(db: &str) -> String {
    format!("`{}`", db.replace('`', "``"))
}
