//! The controller's planned hand-over (`doltctl cluster switchover`).

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{fence_after, renew_every, Controller};
use crate::server::cluster::{Role, StartRole};

impl Controller {
    /// A planned hand-over: bump the epoch and name the target in etcd, demote gracefully
    /// (dolt waits until every standby has caught up, up to 10 s; it stays primary if not),
    /// then revoke the lease so the target campaigns. The lease is renewed meanwhile.
    pub(super) async fn hand_over(&mut self, to: Option<String>) {
        let Some(held) = self.holding.clone() else {
            return;
        };
        if let Some(t) = &to {
            if self.cluster.peer(t).is_none() {
                self.log.event(&format!(
                    "cluster: switchover to {t:?} refused: not a peer of this node; request dropped"
                ));
                let _ = self.etcd.clear_switchover().await;
                return;
            }
        }
        let epoch = match self
            .etcd
            .prepare_handover(&held, to.as_deref(), self.cluster.lease_ttl * 3)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.log
                    .event(&format!("cluster: switchover not started: {e}"));
                return;
            }
        };
        self.log.event(&format!(
            "cluster: SWITCHOVER: demoting to standby at epoch {epoch} once the standbys caught up (to {})",
            to.as_deref().unwrap_or("any standby")
        ));
        self.start_role.set(StartRole {
            role: Role::Standby,
            epoch,
        });
        let own = self.own.clone();
        let demote = async move {
            let mut conn = Conn::new(own).await.map_err(|e| e.to_string())?;
            let r = conn
                .query_drop(format!("CALL dolt_assume_cluster_role('standby', {epoch})"))
                .await
                .map_err(|e| e.to_string());
            let _ = conn.disconnect().await;
            r
        };
        tokio::pin!(demote);
        let result = loop {
            tokio::select! {
                r = &mut demote => break r,
                _ = tokio::time::sleep(renew_every(self.cluster.lease_ttl)) => {
                    let sent = Instant::now();
                    if let Ok(ttl) = self.etcd.keep_alive(held.lease).await {
                        if ttl > 0 { self.last_renewal = sent; }
                    }
                    if self.last_renewal.elapsed() >= fence_after(self.cluster.lease_ttl) {
                        break Err("the lease could not be renewed during the switchover".into());
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                let _ = self.etcd.revoke(held.lease).await;
                self.holding = None;
                self.view.send_modify(|v| {
                    v.role = Role::Standby;
                    v.epoch = epoch;
                    v.leader = None;
                });
                self.log.event(&format!(
                    "cluster: SWITCHOVER: this node is standby at epoch {epoch}; released the lease"
                ));
                self.last_note.clear();
            }
            Err(e) => {
                let _ = self.etcd.clear_handover().await;
                // Still primary at the old epoch (Dolt keeps the role when the standbys did
                // not catch up); the next campaign takes a higher epoch anyway.
                self.start_role.set(StartRole {
                    role: Role::Primary,
                    epoch: held.epoch,
                });
                self.log.event(&format!(
                    "cluster: switchover failed, staying primary at epoch {}: {e}",
                    held.epoch
                ));
            }
        }
    }
}
