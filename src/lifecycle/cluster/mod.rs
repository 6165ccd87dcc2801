//! A replicated cluster's node (`[cluster]`): the election and fencing through etcd
//! (`controller.rs`, performing the pure decisions of `decide.rs` with the etcd I/O of
//! `etcd.rs`), bringing rejoined standbys up to date (`rejoin.rs`), and finding the primary
//! for clients and `doltctl cluster` (`discover.rs`), `cluster status` and `switchover` (`status.rs`),
//! TLS to etcd (`tls.rs`).

pub(crate) mod controller;
pub(crate) mod decide;
pub mod discover;
pub mod etcd;
pub(crate) mod rejoin;
pub mod status;
pub(crate) mod tls;

use serde::{Deserialize, Serialize};

pub use crate::server::cluster::Role;

/// A cluster node's part of the state file: what its controller last decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// The role its dolt has (or is launched in next).
    pub role: Role,
    /// The epoch of that role.
    pub epoch: u64,
    /// The node holding the leader lease, when known.
    pub leader: Option<String>,
    /// Whether etcd answered the last request.
    pub etcd_reachable: bool,
}
