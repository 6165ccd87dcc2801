//! The cluster controller: a task beside the supervisor loop that gathers the facts every
//! tick (lease renewal, etcd's keys, the own dolt's phase and role), asks
//! [`decide`](super::decide::decide) and performs the decision: fence (SIGKILL dolt's group;
//! the supervisor relaunches it as a standby, reading the role from [`SharedStartRole`]),
//! campaign and promote, follow, hand over.
//!
//! The supervisor's machine knows nothing of roles: a fence is a dolt exit to it, and a
//! promotion happens inside the running dolt (`dolt_assume_cluster_role`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::decide::{decide, electable, Decision, Situation};
use super::etcd::{Etcd, LeaderRecord, Observed};
use super::rejoin::{Rejoin, Verdict};

/// The planned hand-over (`doltctl cluster switchover`), a part of the controller.
#[path = "handover.rs"]
mod handover;
use super::ClusterView;
use crate::config::{ClusterConfig, Config, PortSetting};
use crate::error::{Error, Result};
use crate::lifecycle::state_file::{PhaseRecord, State};
use crate::server::cluster::{Role, SharedStartRole, StartRole};
use crate::server::log::ServerLog;
use crate::sys::process::ProcessIdentity;

/// One node's controller.
pub(crate) struct Controller {
    cluster: ClusterConfig,
    /// This node's own dolt (SQL).
    own: Opts,
    etcd: Etcd,
    log: Arc<ServerLog>,
    start_role: SharedStartRole,
    /// The leader record this node holds, while it is the primary.
    holding: Option<LeaderRecord>,
    /// Send time of the last successful renewal.
    last_renewal: Instant,
    /// A lease this node held when it fenced itself: revoked once etcd answers, so the others
    /// can campaign without waiting for it to expire.
    stale_lease: Option<i64>,
    view: watch::Sender<ClusterView>,
    last_note: String,
    /// The rejoin checker, while no check runs (a check runs as a task of its own, so it never
    /// delays a renewal).
    rejoin: Option<Rejoin>,
    rejoin_task: Option<tokio::task::JoinHandle<(Rejoin, Option<Verdict>)>>,
    /// The peers' launch revisions when the running check started: a peer is marked caught
    /// up only for the launch that was compared.
    rejoin_launches: std::collections::BTreeMap<String, i64>,
    /// The own dolt's launch and, once recorded in etcd, the revision naming it.
    launch: Option<(ProcessIdentity, Option<i64>)>,
    /// The own dolt as the supervisor last published it.
    server: Option<ProcessIdentity>,
    /// Ticks since the own dolt's role was last asked (a standby asks about once a second).
    role_check: u32,
}

/// How often a primary renews its lease: four times per TTL.
pub(crate) fn renew_every(ttl: Duration) -> Duration {
    ttl / 4
}

/// When a primary without a successful renewal fences itself: half the TTL after the last
/// renewal's send time, so it has stopped writing well before etcd can let the lease expire.
pub(crate) fn fence_after(ttl: Duration) -> Duration {
    ttl / 2
}

impl Controller {
    /// Connects to etcd and decides the first start role: primary if this node wins the
    /// lease now (no leader), else standby at the recorded epoch. etcd must answer: a node
    /// that cannot reach it refuses to start rather than guess a role.
    pub(crate) async fn prepare(
        cfg: &Config,
        log: Arc<ServerLog>,
        start_role: SharedStartRole,
    ) -> Result<(Controller, watch::Receiver<ClusterView>)> {
        let Some(cluster) = cfg.cluster.clone() else {
            return Err(Error::ConfigValue("no [cluster] section".into()));
        };
        let port = match cfg.server.port {
            PortSetting::Fixed(p) => p,
            PortSetting::Auto => 0,
        };
        let own = crate::server::health::probe_opts(cfg, port);
        let mut etcd = Etcd::connect(&cluster, renew_every(cluster.lease_ttl)).await?;
        let observed = etcd.observe().await?;
        let start = StartRole {
            role: Role::Standby,
            epoch: observed.leader.as_ref().map_or(observed.epoch, |l| l.epoch),
        };
        start_role.set(start);
        let (view, view_rx) = watch::channel(ClusterView {
            node: cluster.node.clone(),
            role: Role::Standby,
            epoch: start.epoch,
            leader: observed.leader.as_ref().map(|l| l.node.clone()),
            etcd_reachable: true,
        });
        let mut c = Controller {
            own,
            etcd,
            log,
            start_role,
            holding: None,
            last_renewal: Instant::now(),
            stale_lease: None,
            view,
            last_note: String::new(),
            rejoin: Some(Rejoin::new(cfg)),
            rejoin_task: None,
            rejoin_launches: Default::default(),
            launch: None,
            server: None,
            role_check: 0,
            cluster,
        };
        // A lease this node held in an earlier life (its supervisor was killed): released, so
        // the election below starts from a clean slate rather than waiting for the TTL.
        let mut observed = observed;
        if let Some(l) = observed.leader.clone().filter(|l| l.node == c.cluster.node) {
            c.etcd.revoke(l.lease).await?;
            c.log.event(&format!(
                "cluster: released the lease this node held before its supervisor restarted (epoch {})",
                l.epoch
            ));
            observed = c.etcd.observe().await?;
        }
        // Before dolt runs, only the first election or a node named by a switchover or failover
        // starts as primary; any other node starts as a standby and may campaign once its
        // dolt runs and is known to be caught up (`decide.rs`).
        if observed.leader.is_none() && electable(&c.cluster.node, &observed, None, false).is_ok() {
            let sent = Instant::now();
            if let Some(rec) = c
                .etcd
                .campaign(&c.cluster.node, c.cluster.lease_ttl, &observed)
                .await?
            {
                c.log.event(&format!(
                    "cluster {}: node {} took the leader lease at epoch {}; starting dolt as primary",
                    c.cluster.name, c.cluster.node, rec.epoch
                ));
                c.take_leadership(rec, sent);
            }
        }
        if c.holding.is_none() {
            c.log.event(&format!(
                "cluster {}: node {} starts dolt as standby at epoch {} (leader: {})",
                c.cluster.name,
                c.cluster.node,
                start.epoch,
                observed.leader.as_ref().map_or("none", |l| l.node.as_str())
            ));
        }
        Ok((c, view_rx))
    }

    fn take_leadership(&mut self, rec: LeaderRecord, sent: Instant) {
        self.start_role.set(StartRole {
            role: Role::Primary,
            epoch: rec.epoch,
        });
        self.last_renewal = sent;
        self.view.send_modify(|v| {
            v.role = Role::Primary;
            v.epoch = rec.epoch;
            v.leader = Some(rec.node.clone());
            v.etcd_reachable = true;
        });
        self.holding = Some(rec);
    }

    /// Runs until the supervisor ends (`stop` fires, or the state channel closes); a primary
    /// then releases its lease, so a standby takes over at once instead of after the TTL (its
    /// dolt is already stopped: the supervisor's loop has ended).
    pub(crate) async fn run(
        mut self,
        mut state: watch::Receiver<Option<State>>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        loop {
            let tick = if self.holding.is_some() {
                renew_every(self.cluster.lease_ttl)
            } else {
                renew_every(self.cluster.lease_ttl).min(Duration::from_millis(250))
            };
            tokio::select! {
                changed = state.changed() => if changed.is_err() { break },
                _ = &mut stop => break,
                _ = tokio::time::sleep(tick) => {}
            }
            let snapshot = state.borrow_and_update().clone();
            self.step(snapshot.as_ref()).await;
        }
        if let Some(h) = self.holding.take() {
            match self.etcd.revoke(h.lease).await {
                Ok(()) => self
                    .log
                    .event("cluster: released the leader lease (this node stops)"),
                Err(e) => self.log.event(&format!(
                    "cluster: could not release the leader lease ({e}); it expires after lease_ttl"
                )),
            }
        }
    }

    /// One tick: renew (holding) or look (standby), decide, act. A holder's I/O races its
    /// fencing deadline, so a hanging etcd cannot delay the fence.
    async fn step(&mut self, state: Option<&State>) {
        let ready = state.is_some_and(|s| matches!(s.phase, PhaseRecord::Running { .. }));
        self.server = state.and_then(|s| s.server().cloned());
        // A stat of each TLS file per tick; a new client only when one changed.
        match self.etcd.reload_tls_if_changed().await {
            Ok(true) => self
                .log
                .event("cluster: the etcd TLS files changed; reconnected to etcd with them"),
            Ok(false) => {}
            Err(e) => self.note(&format!(
                "cluster: the etcd TLS files changed but cannot be used yet ({e}); still using \
                 the ones read before"
            )),
        }
        // Off the leader's path (its etcd I/O races the fencing deadline); a leader's dolt
        // needs no mark, and one demoted in place is recorded on its first standby tick.
        if self.holding.is_none() {
            self.record_launch().await;
        }
        let mut lease_gone = false;
        let mut observed = None;
        self.role_check += 1;
        let role_due = ready && self.role_check >= 4;
        if role_due {
            self.role_check = 0;
        }
        let mut says_standby = false;
        if let Some(held) = self.holding.clone() {
            let deadline = self.last_renewal + fence_after(self.cluster.lease_ttl);
            let own = self.own.clone();
            // The own dolt's role beside the renewal: a leader whose dolt was demoted outside
            // doltctl (a `dolt_assume_cluster_role` by hand elsewhere) would otherwise hold the
            // lease with no writable node anywhere.
            let io = async {
                let sent = Instant::now();
                let role = async {
                    if role_due {
                        own_role(&own).await
                    } else {
                        None
                    }
                };
                let etcd = async {
                    let renewed = self.etcd.keep_alive(held.lease).await;
                    (renewed, self.etcd.observe().await.ok())
                };
                let (role, (renewed, observed)) = tokio::join!(role, etcd);
                (sent, renewed, observed, role)
            };
            tokio::select! {
                (sent, renewed, o, role) = io => {
                    says_standby = role.is_some_and(|r| r.0 == Role::Standby);
                    match renewed {
                        Ok(ttl) if ttl > 0 => self.last_renewal = sent,
                        Ok(_) => lease_gone = true,
                        Err(e) => self.note(&format!("cluster: renewing the leader lease failed: {e}")),
                    }
                    observed = o;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        } else {
            observed = self.etcd.observe().await.ok();
            if let (Some(lease), Some(_)) = (self.stale_lease, &observed) {
                if self.etcd.revoke(lease).await.is_ok() {
                    self.log.event(&format!(
                        "cluster: released the lease this node held before it fenced itself ({lease:x})"
                    ));
                    self.stale_lease = None;
                    observed = self.etcd.observe().await.ok();
                }
            }
        }
        let standby_dolt = if self.holding.is_none() && role_due {
            own_role(&self.own).await
        } else {
            None
        };
        let data_intact = match &observed {
            Some(o)
                if self.holding.is_none()
                    && ready
                    && o.leader.is_none()
                    && o.last_leader.as_deref() == Some(self.cluster.node.as_str()) =>
            {
                self.has_databases(o.databases.as_deref()).await
            }
            _ => false,
        };
        let situation = Situation {
            node: &self.cluster.node,
            holding: self.holding.as_ref(),
            since_renewal: self.last_renewal.elapsed(),
            fence_after: fence_after(self.cluster.lease_ttl),
            lease_gone,
            observed: observed.as_ref(),
            dolt_ready: ready,
            dolt_says_primary: standby_dolt.is_some_and(|r| r.0 == Role::Primary),
            dolt_epoch: standby_dolt.map(|r| r.1),
            dolt_says_standby: says_standby,
            launch: self.launch.as_ref().and_then(|l| l.1),
            data_intact,
        };
        let decision = decide(&situation);
        self.view.send_if_modified(|v| {
            std::mem::replace(&mut v.etcd_reachable, observed.is_some()) != observed.is_some()
        });
        match decision {
            Decision::Hold => {
                if let Some(o) = &observed {
                    self.start_rejoin_check(o).await;
                }
            }
            Decision::Fence(why) => self.fence(&why, state),
            Decision::Campaign => {
                if let Some(o) = &observed {
                    self.campaign(o).await;
                }
            }
            Decision::Follow(leader) => {
                self.start_role.set(StartRole {
                    role: Role::Standby,
                    epoch: leader.epoch,
                });
                self.view.send_if_modified(|v| {
                    let new = (Role::Standby, leader.epoch, Some(leader.node.clone()));
                    let changed = (v.role, v.epoch, v.leader.clone()) != new;
                    (v.role, v.epoch, v.leader) = new;
                    changed
                });
                self.note(&format!(
                    "cluster: following {} (primary at epoch {})",
                    leader.node, leader.epoch
                ));
            }
            Decision::HandOver(to) => self.hand_over(to).await,
            Decision::Wait(why) => {
                self.view.send_if_modified(|v| {
                    let changed = v.leader.is_some() && observed.is_some();
                    if observed.is_some() {
                        v.leader = None;
                    }
                    changed
                });
                self.note(&format!("cluster: standby: {why}"));
            }
        }
    }

    /// Starts a rejoin comparison (`rejoin.rs`) unless one runs; the result of one that ended
    /// marks the standbys caught up, or not, in etcd.
    async fn start_rejoin_check(&mut self, observed: &Observed) {
        if let Some(t) = self.rejoin_task.take_if(|t| t.is_finished()) {
            match t.await {
                Ok((r, verdict)) => {
                    self.rejoin = Some(r);
                    if let Some(v) = verdict {
                        // Bounded: the next renewal must not wait on slow marks (they are
                        // written again after the next comparison).
                        let limit = renew_every(self.cluster.lease_ttl) / 2;
                        let _ = tokio::time::timeout(limit, self.mark_standbys(v, observed)).await;
                    }
                }
                Err(e) => self.log.event(&format!(
                    "cluster: the rejoin check failed ({e}); no more checks"
                )),
            }
        }
        if let Some(mut r) = self.rejoin.take() {
            let (own, log) = (self.own.clone(), self.log.clone());
            self.rejoin_launches = observed.launched.clone();
            self.rejoin_task = Some(tokio::spawn(async move {
                let verdict = r.check(&own, &log).await;
                (r, verdict)
            }));
        }
    }

    /// As the leader: records in etcd which standbys a comparison found caught up (for the
    /// launch it compared) and which not, and the databases; writes only what changed.
    async fn mark_standbys(&mut self, v: Verdict, observed: &Observed) {
        let Some(lease) = self.holding.as_ref().map(|h| h.lease) else {
            return;
        };
        for peer in v.caught_up {
            let Some(&launch) = self.rejoin_launches.get(&peer) else {
                continue;
            };
            if observed.synced.get(&peer) == Some(&launch) {
                continue;
            }
            match self.etcd.mark_synced(lease, &peer, launch).await {
                Ok(true) => self.log.event(&format!(
                    "cluster: standby {peer} is caught up (electable if this primary is lost)"
                )),
                Ok(false) => {}
                Err(e) => self.note(&format!("cluster: marking {peer} caught up failed: {e}")),
            }
        }
        for (peer, why) in v.behind {
            if observed.synced.contains_key(&peer) {
                match self.etcd.unmark_synced(&peer).await {
                    Ok(()) => self.log.event(&format!(
                        "cluster: standby {peer} {why}: not electable until it has caught up"
                    )),
                    Err(e) => self.note(&format!("cluster: unmarking {peer} failed: {e}")),
                }
            }
        }
        if observed.databases.as_ref() != Some(&v.databases) {
            if let Err(e) = self.etcd.record_databases(lease, &v.databases).await {
                self.note(&format!("cluster: recording the databases failed: {e}"));
            }
        }
    }

    /// Records a new dolt launch of this node in etcd (retried each tick until etcd takes
    /// it): until then, and until the leader has compared it, it is not electable.
    async fn record_launch(&mut self) {
        let Some(id) = self.server.clone() else {
            return;
        };
        if self.launch.as_ref().map(|l| &l.0) != Some(&id) {
            self.launch = Some((id.clone(), None));
        }
        if self.launch.as_ref().is_some_and(|l| l.1.is_none()) {
            let what = format!("dolt pid {} started {}", id.pid, id.start_time);
            if let Ok(rev) = self.etcd.record_launch(&self.cluster.node, &what).await {
                self.launch = Some((id, Some(rev)));
            }
        }
    }

    /// Whether the own dolt has every database in `recorded` (none recorded: nothing to lose).
    async fn has_databases(&self, recorded: Option<&[String]>) -> bool {
        let Some(recorded) = recorded else {
            return true;
        };
        let fut = async {
            let mut conn = Conn::new(self.own.clone()).await.ok()?;
            let dbs: Vec<String> = conn.query("SHOW DATABASES").await.ok()?;
            let _ = conn.disconnect().await;
            Some(dbs)
        };
        match tokio::time::timeout(Duration::from_secs(2), fut).await {
            Ok(Some(dbs)) => recorded.iter().all(|d| dbs.contains(d)),
            _ => false,
        }
    }

    /// Logs `line` when it differs from the last note (a state, not a tick).
    fn note(&mut self, line: &str) {
        if self.last_note != line {
            self.log.event(line);
            self.last_note = line.to_string();
        }
    }

    /// Stops taking writes now: the next launch is a standby; SIGKILL to dolt's group (a
    /// graceful demotion can wait 10 s and stays primary when no standby answers).
    fn fence(&mut self, why: &str, state: Option<&State>) {
        let epoch = self
            .holding
            .as_ref()
            .map_or(self.start_role.get().epoch, |h| h.epoch);
        self.start_role.set(StartRole {
            role: Role::Standby,
            epoch,
        });
        if let Some(h) = self.holding.take() {
            self.stale_lease = Some(h.lease);
        }
        let server = state.and_then(|s| s.server().cloned());
        let killed = self.kill_own();
        self.log.event(&format!(
            "cluster: FENCING: {why}; {} and relaunching it as standby at epoch {epoch}",
            if killed {
                format!(
                    "killed dolt pid {} (SIGKILL to its group)",
                    server.map_or(0, |s| s.pid)
                )
            } else {
                "no dolt was running".to_string()
            }
        ));
        self.last_note.clear();
        self.view.send_modify(|v| {
            v.role = Role::Standby;
            v.epoch = epoch;
            v.leader = None;
        });
    }

    /// Tries to take the lease; the winner promotes its running dolt at the new epoch.
    async fn campaign(&mut self, observed: &Observed) {
        let sent = Instant::now();
        match self
            .etcd
            .campaign(&self.cluster.node, self.cluster.lease_ttl, observed)
            .await
        {
            Ok(Some(rec)) => {
                let epoch = rec.epoch;
                self.take_leadership(rec, sent);
                match self.assume("primary", epoch).await {
                    Ok(()) => self.log.event(&format!(
                        "cluster: PROMOTED: node {} took the leader lease and is primary at epoch {epoch} ({} ms after the lease was granted)",
                        self.cluster.node,
                        sent.elapsed().as_millis()
                    )),
                    Err(e) => {
                        // The launch reads the role: a relaunch starts it as primary.
                        self.log.event(&format!(
                            "cluster: took the leader lease at epoch {epoch}, but promoting the running dolt failed ({e}); restarting it as primary"
                        ));
                        self.kill_own();
                    }
                }
                self.last_note.clear();
            }
            Ok(None) => self.note("cluster: another node won the campaign"),
            Err(e) => self.note(&format!("cluster: campaign failed: {e}")),
        }
    }

    /// SIGKILL to the own dolt's group (identity-checked); the supervisor relaunches it in
    /// the role [`SharedStartRole`] holds.
    fn kill_own(&self) -> bool {
        self.server.as_ref().is_some_and(|id| {
            // Marked first: the supervisor may reap it the moment the signal lands.
            self.start_role.mark_fenced(id.pid);
            id.signal_group(Signal::SIGKILL).is_ok()
        })
    }

    /// `CALL dolt_assume_cluster_role(role, epoch)` on the own dolt, on a fresh connection.
    async fn assume(&self, role: &str, epoch: u64) -> std::result::Result<(), String> {
        let fut = async {
            let mut conn = Conn::new(self.own.clone())
                .await
                .map_err(|e| e.to_string())?;
            let r = conn
                .query_drop(format!("CALL dolt_assume_cluster_role('{role}', {epoch})"))
                .await
                .map_err(|e| e.to_string());
            let _ = conn.disconnect().await;
            r
        };
        // A graceful demotion waits up to 10 s (Dolt's fixed limit) for the standbys.
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .unwrap_or_else(|_| Err("no answer within 20s".into()))
    }
}

/// A dolt's `@@dolt_cluster_role` and `@@dolt_cluster_role_epoch`, if it answers within 2 s.
pub(crate) async fn own_role(opts: &Opts) -> Option<(Role, u64)> {
    let fut = async {
        let mut conn = Conn::new(opts.clone()).await.ok()?;
        let r: Option<(String, u64)> = conn
            .query_first("SELECT @@dolt_cluster_role, @@dolt_cluster_role_epoch")
            .await
            .ok()?;
        let _ = conn.disconnect().await;
        let (role, epoch) = r?;
        match role.as_str() {
            "primary" => Some((Role::Primary, epoch)),
            "standby" => Some((Role::Standby, epoch)),
            _ => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}
