//! Bringing a rejoined standby up to date (placeholder).

use std::sync::Arc;

use mysql_async::Opts;

use crate::config::ClusterConfig;
use crate::server::log::ServerLog;

/// What the primary knows of its peers.
pub(crate) struct Rejoin {}

impl Rejoin {
    pub(crate) fn new(_c: &ClusterConfig) -> Rejoin {
        Rejoin {}
    }

    pub(crate) async fn check(&mut self, _own: &Opts, _epoch: u64, _log: &Arc<ServerLog>) {}
}
