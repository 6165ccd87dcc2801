//! What a cluster node does next: a pure function of what it knows (does it hold the lease,
//! how long since its last renewal, what etcd showed, is its dolt ready). No I/O, no clock;
//! the controller gathers the facts and performs the decision.
//!
//! | this node        | situation                                              | decision  |
//! |------------------|--------------------------------------------------------|-----------|
//! | leader (primary) | no successful renewal for `fence_after` (< lease TTL)  | fence     |
//! | leader           | etcd says the lease is gone, or `leader` is another's  | fence     |
//! | leader           | its dolt says standby (demoted outside doltctl)        | fence     |
//! | leader           | a switchover was asked for                             | hand over |
//! | leader           | otherwise                                              | hold      |
//! | standby          | its dolt says it is primary (a launch raced a fence)   | fence     |
//! | standby          | etcd unreachable                                       | wait (never promote) |
//! | standby          | its dolt's epoch is past the leader's (set by hand)    | fence     |
//! | standby          | a leader holds the lease                               | follow it |
//! | standby          | no leader, not electable (below)                       | wait      |
//! | standby          | no leader, its dolt not ready                          | wait      |
//! | standby          | no leader, electable, its dolt ready                   | campaign  |
//!
//! Electable (no leader holds the lease), first match wins:
//!
//! | situation                                                          | electable |
//! |--------------------------------------------------------------------|-----------|
//! | a switchover or `cluster failover` names this node                  | yes       |
//! | a switchover without `--to`, and this node is not the one leaving   | yes       |
//! | a switchover or `cluster failover` names another node, or any other | no        |
//! | no election ever happened (epoch 0)                                 | yes       |
//! | the last leader found this very launch caught up (`synced`)         | yes       |
//! | this node won the last campaign and has every database it recorded | yes       |
//! | otherwise (relaunched, wiped or behind since the leader checked)    | no        |
//!
//! So a standby that rejoined empty, or was down while the primary took writes, never wins
//! an election before the leader has seen it caught up: its acknowledged writes would be
//! overwritten by its emptier state. The last leader itself may come back after a whole
//! cluster was down (nobody's launch is marked then), unless it lost its databases.
//!
//! Fence: kill dolt's process group and relaunch it as a standby, before the lease can
//! expire in etcd (the lease expires at least `lease_ttl` after the last renewal was sent;
//! `fence_after` is `lease_ttl / 2` from that send). Campaign: one etcd transaction takes
//! `leader` and bumps `epoch`; only its winner promotes its dolt.

use std::time::Duration;

use super::etcd::{LeaderRecord, Observed};

/// What the node knows on one tick.
#[derive(Debug, Clone)]
pub(crate) struct Situation<'a> {
    /// This node's name.
    pub node: &'a str,
    /// The leader record this node holds (it is the primary), if any.
    pub holding: Option<&'a LeaderRecord>,
    /// Since the send time of the last successful renewal (while holding).
    pub since_renewal: Duration,
    /// The deadline after which a holder without renewal fences itself.
    pub fence_after: Duration,
    /// etcd answered that the held lease no longer exists.
    pub lease_gone: bool,
    /// What etcd showed this tick; `None` when it did not answer.
    pub observed: Option<&'a Observed>,
    /// This node's dolt answers (running phase).
    pub dolt_ready: bool,
    /// This node's dolt answered `@@dolt_cluster_role` = primary.
    pub dolt_says_primary: bool,
    /// This node's dolt answered `@@dolt_cluster_role` = standby (asked while leading).
    pub dolt_says_standby: bool,
    /// The epoch this node's dolt answered (asked while not leading, now and then).
    pub dolt_epoch: Option<u64>,
    /// The etcd revision naming this node's current dolt launch, once recorded.
    pub launch: Option<i64>,
    /// This node's dolt has every database the last leader recorded (asked only when this
    /// node was the last leader).
    pub data_intact: bool,
}

/// The next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Stay primary.
    Hold,
    /// Stop taking writes now: kill dolt, relaunch it as a standby.
    Fence(String),
    /// Hand over to `to` (any standby when `None`): demote gracefully, then release the lease.
    HandOver(Option<String>),
    /// Stay standby; the leader is this one.
    Follow(LeaderRecord),
    /// Try to take the lease.
    Campaign,
    /// Stay standby, nothing to do (why, for the log when it changes).
    Wait(&'static str),
}

/// The decision table in the module docs.
pub(crate) fn decide(s: &Situation) -> Decision {
    if let Some(held) = s.holding {
        if s.since_renewal >= s.fence_after {
            return Decision::Fence(format!(
                "the leader lease was not renewed for {:?} (fencing deadline {:?}, before it can \
                 expire in etcd)",
                s.since_renewal, s.fence_after
            ));
        }
        if s.lease_gone {
            return Decision::Fence("etcd says the leader lease is gone".into());
        }
        if let Some(o) = s.observed {
            match &o.leader {
                Some(l) if l.lease == held.lease => {}
                Some(l) => {
                    return Decision::Fence(format!(
                        "etcd names {} (epoch {}) as the leader",
                        l.node, l.epoch
                    ))
                }
                None => return Decision::Fence("etcd has no leader key any more".into()),
            }
            if let Some(req) = &o.switchover {
                return Decision::HandOver(req.to.clone());
            }
        }
        if s.dolt_says_standby {
            // Releasing the lease (the fence revokes it) lets an election pick a primary
            // again; this dolt is relaunched as a standby at the recorded epoch.
            return Decision::Fence(
                "this node holds the leader lease but its dolt says standby (demoted outside \
                 doltctl?); giving the lease up for a new election"
                    .into(),
            );
        }
        return Decision::Hold;
    }
    if s.dolt_says_primary {
        return Decision::Fence("this node's dolt is primary without the leader lease".into());
    }
    let Some(o) = s.observed else {
        return Decision::Wait("etcd is unreachable: no promotion until it answers");
    };
    if let Some(l) = &o.leader {
        if let Some(e) = s.dolt_epoch.filter(|e| *e > l.epoch) {
            // Such a standby refuses the leader's epoch: relaunched at it, it follows again.
            return Decision::Fence(format!(
                "this node's dolt is at epoch {e}, past the leader's {} (set outside doltctl?)",
                l.epoch
            ));
        }
        return Decision::Follow(l.clone());
    }
    if let Err(why) = electable(s.node, o, s.launch, s.data_intact) {
        return Decision::Wait(why);
    }
    if !s.dolt_ready {
        return Decision::Wait("no leader, but this node's dolt is not ready");
    }
    Decision::Campaign
}

/// Whether `node` may campaign while no leader holds the lease (the second table in the
/// module docs): why it may, or why not.
pub(crate) fn electable(
    node: &str,
    o: &Observed,
    launch: Option<i64>,
    data_intact: bool,
) -> std::result::Result<&'static str, &'static str> {
    match o.handover.as_deref() {
        Some(to) if to == node => return Ok("a switchover or failover names this node"),
        // The node handing over is the last leader; were it to win again, the switchover
        // would have changed nothing (a 2-core CI run saw it do just that).
        Some("") if o.last_leader.as_deref() == Some(node) => {
            return Err("this node is handing over to any other node")
        }
        Some("") => return Ok("a switchover names any node but the one handing over"),
        Some(_) => return Err("a switchover or failover names another node"),
        None => {}
    }
    if o.epoch == 0 {
        return Ok("the first election");
    }
    if launch.is_some_and(|l| o.synced.get(node) == Some(&l)) {
        return Ok("the last leader found it caught up");
    }
    if o.last_leader.as_deref() == Some(node) && data_intact {
        return Ok("it was the last leader and has its databases");
    }
    Err(
        "no leader, and this node is not known to be caught up with the last one \
         (relaunched, wiped or behind since it was checked): it does not campaign; \
         `doltctl cluster failover --to NODE` promotes a node anyway",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::cluster::etcd::SwitchoverRequest;

    fn leader(node: &str, lease: i64) -> LeaderRecord {
        LeaderRecord {
            node: node.into(),
            epoch: 3,
            lease,
        }
    }

    fn situation<'a>(
        holding: Option<&'a LeaderRecord>,
        observed: Option<&'a Observed>,
    ) -> Situation<'a> {
        Situation {
            node: "a",
            holding,
            since_renewal: Duration::from_millis(100),
            fence_after: Duration::from_millis(1500),
            lease_gone: false,
            observed,
            dolt_ready: true,
            dolt_says_primary: false,
            dolt_says_standby: false,
            dolt_epoch: None,
            launch: Some(40),
            data_intact: false,
        }
    }

    /// After one election, with this node's launch 40 marked caught up.
    fn after_election() -> Observed {
        Observed {
            epoch: 3,
            launched: [("a".to_string(), 40)].into(),
            synced: [("a".to_string(), 40)].into(),
            last_leader: Some("b".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_leader_fences_itself_at_the_deadline_whatever_etcd_shows() {
        let me = leader("a", 7);
        let o = Observed {
            leader: Some(me.clone()),
            ..Default::default()
        };
        let mut s = situation(Some(&me), Some(&o));
        assert_eq!(decide(&s), Decision::Hold);
        s.since_renewal = Duration::from_millis(1500);
        assert!(matches!(decide(&s), Decision::Fence(_)));
        s.observed = None;
        assert!(matches!(decide(&s), Decision::Fence(_)));
        // etcd unreachable but the deadline not reached: still primary.
        s.since_renewal = Duration::from_millis(1000);
        assert_eq!(decide(&s), Decision::Hold);
        s.lease_gone = true;
        assert!(matches!(decide(&s), Decision::Fence(_)));
    }

    #[test]
    fn a_standby_whose_dolt_is_past_the_leaders_epoch_is_relaunched() {
        let led = Observed {
            leader: Some(leader("b", 3)),
            ..Default::default()
        };
        let mut s = situation(None, Some(&led));
        s.dolt_epoch = Some(3);
        assert_eq!(decide(&s), Decision::Follow(leader("b", 3)));
        s.dolt_epoch = Some(10);
        assert!(matches!(decide(&s), Decision::Fence(_)));
    }

    #[test]
    fn a_leader_whose_dolt_was_demoted_behind_its_back_gives_the_lease_up() {
        let me = leader("a", 7);
        let o = Observed {
            leader: Some(me.clone()),
            ..Default::default()
        };
        let mut s = situation(Some(&me), Some(&o));
        s.dolt_says_standby = true;
        assert!(matches!(decide(&s), Decision::Fence(_)));
    }

    #[test]
    fn a_leader_whose_key_is_gone_or_another_nodes_fences() {
        let me = leader("a", 7);
        let other = Observed {
            leader: Some(leader("b", 9)),
            ..Default::default()
        };
        assert!(matches!(
            decide(&situation(Some(&me), Some(&other))),
            Decision::Fence(_)
        ));
        let none = Observed::default();
        assert!(matches!(
            decide(&situation(Some(&me), Some(&none))),
            Decision::Fence(_)
        ));
    }

    #[test]
    fn a_leader_hands_over_when_asked() {
        let me = leader("a", 7);
        let o = Observed {
            leader: Some(me.clone()),
            switchover: Some(SwitchoverRequest {
                to: Some("b".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            decide(&situation(Some(&me), Some(&o))),
            Decision::HandOver(Some("b".into()))
        );
    }

    #[test]
    fn a_standby_never_campaigns_without_etcd_or_ready_dolt_or_while_a_leader_lives() {
        assert!(matches!(decide(&situation(None, None)), Decision::Wait(_)));
        let led = Observed {
            leader: Some(leader("b", 9)),
            ..Default::default()
        };
        assert_eq!(
            decide(&situation(None, Some(&led))),
            Decision::Follow(leader("b", 9))
        );
        let empty = Observed::default();
        assert_eq!(decide(&situation(None, Some(&empty))), Decision::Campaign);
        let caught_up = after_election();
        let mut s = situation(None, Some(&caught_up));
        assert_eq!(decide(&s), Decision::Campaign);
        s.dolt_ready = false;
        assert!(matches!(decide(&s), Decision::Wait(_)));
        let handover = Observed {
            handover: Some("c".into()),
            ..after_election()
        };
        assert!(matches!(
            decide(&situation(None, Some(&handover))),
            Decision::Wait(_)
        ));
        let to_me = Observed {
            handover: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(decide(&situation(None, Some(&to_me))), Decision::Campaign);
        let to_any = Observed {
            handover: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(decide(&situation(None, Some(&to_any))), Decision::Campaign);
        // ... but never the node that is handing over (the last leader).
        let from_me = Observed {
            handover: Some(String::new()),
            last_leader: Some("a".into()),
            ..Default::default()
        };
        assert!(matches!(
            decide(&situation(None, Some(&from_me))),
            Decision::Wait(_)
        ));
        let from_other = Observed {
            last_leader: Some("b".into()),
            ..from_me
        };
        assert_eq!(
            decide(&situation(None, Some(&from_other))),
            Decision::Campaign
        );
        // A primary dolt without the lease is fenced, etcd or not.
        let mut s = situation(None, None);
        s.dolt_says_primary = true;
        assert!(matches!(decide(&s), Decision::Fence(_)));
    }

    #[test]
    fn only_a_standby_known_to_be_caught_up_campaigns_after_the_first_election() {
        let o = after_election();
        let mut s = situation(None, Some(&o));
        assert_eq!(decide(&s), Decision::Campaign);
        // Relaunched since the leader checked it (wiped, or down while writes went on).
        s.launch = Some(41);
        assert!(matches!(decide(&s), Decision::Wait(_)));
        // Its launch not recorded yet.
        s.launch = None;
        assert!(matches!(decide(&s), Decision::Wait(_)));
        // Never marked at all.
        let unmarked = Observed {
            synced: Default::default(),
            ..after_election()
        };
        let s = situation(None, Some(&unmarked));
        assert!(matches!(decide(&s), Decision::Wait(_)));
    }

    #[test]
    fn the_last_leader_may_return_as_leader_only_with_its_databases() {
        let o = Observed {
            last_leader: Some("a".into()),
            synced: Default::default(),
            ..after_election()
        };
        let mut s = situation(None, Some(&o));
        assert!(matches!(decide(&s), Decision::Wait(_)));
        s.data_intact = true;
        assert_eq!(decide(&s), Decision::Campaign);
    }

    #[test]
    fn a_forced_failover_names_a_node_that_is_not_caught_up() {
        let o = Observed {
            synced: Default::default(),
            handover: Some("a".into()),
            ..after_election()
        };
        assert_eq!(decide(&situation(None, Some(&o))), Decision::Campaign);
        let other = Observed {
            handover: Some("b".into()),
            ..after_election()
        };
        // Even a caught-up node waits for the one named.
        assert!(matches!(
            decide(&situation(None, Some(&other))),
            Decision::Wait(_)
        ));
    }
}
