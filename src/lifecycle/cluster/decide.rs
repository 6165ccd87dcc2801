//! What a cluster node does next: a pure function of what it knows (does it hold the lease,
//! how long since its last renewal, what etcd showed, is its dolt ready). No I/O, no clock;
//! the controller gathers the facts and performs the decision.
//!
//! | this node        | situation                                              | decision  |
//! |------------------|--------------------------------------------------------|-----------|
//! | leader (primary) | no successful renewal for `fence_after` (< lease TTL)  | fence     |
//! | leader           | etcd says the lease is gone, or `leader` is another's  | fence     |
//! | leader           | a switchover was asked for                             | hand over |
//! | leader           | otherwise                                              | hold      |
//! | standby          | its dolt says it is primary (a launch raced a fence)   | fence     |
//! | standby          | etcd unreachable                                       | wait (never promote) |
//! | standby          | a leader holds the lease                               | follow it |
//! | standby          | no leader, a hand-over names another node              | wait      |
//! | standby          | no leader, its dolt not ready                          | wait      |
//! | standby          | no leader, its dolt ready                              | campaign  |
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
        return Decision::Hold;
    }
    if s.dolt_says_primary {
        return Decision::Fence("this node's dolt is primary without the leader lease".into());
    }
    let Some(o) = s.observed else {
        return Decision::Wait("etcd is unreachable: no promotion until it answers");
    };
    if let Some(l) = &o.leader {
        return Decision::Follow(l.clone());
    }
    if o.handover
        .as_deref()
        .is_some_and(|to| !to.is_empty() && to != s.node)
    {
        return Decision::Wait("a switchover hands over to another node");
    }
    if !s.dolt_ready {
        return Decision::Wait("no leader, but this node's dolt is not ready");
    }
    Decision::Campaign
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
        let mut s = situation(None, Some(&empty));
        s.dolt_ready = false;
        assert!(matches!(decide(&s), Decision::Wait(_)));
        let handover = Observed {
            handover: Some("c".into()),
            ..Default::default()
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
        // A primary dolt without the lease is fenced, etcd or not.
        let mut s = situation(None, None);
        s.dolt_says_primary = true;
        assert!(matches!(decide(&s), Decision::Fence(_)));
    }
}
