//! One `dolt sql-server`: finding and launching the binary, the checks before a launch, the
//! port, health probes, the server log, and whether its disk is full. Knows nothing of
//! restarts or the state file.

pub(crate) mod cluster;
pub(crate) mod disk;
pub(crate) mod dolt;
pub(crate) mod health;
pub(crate) mod log;
pub(crate) mod port;
pub(crate) mod preflight;
pub(crate) mod version;
