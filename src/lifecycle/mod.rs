//! The server's life: the state machine, the supervisor that performs its actions, the state
//! file it writes, the start lock, the operations other processes use (start, stop,
//! restart, status), and the per-user registry of instances with the rules for stopping them
//! from elsewhere (`ps`, `gc`, `[client] max_instances`).

pub mod cluster;
pub mod control;
pub(crate) mod control_socket;
pub(crate) mod driver;
pub mod exclusive;
pub(crate) mod machine;
pub(crate) mod metrics;
pub mod reclaim;
pub mod registry;
pub(crate) mod service_notify;
pub(crate) mod start_lock;
pub(crate) mod state_file;
pub(crate) mod supervisor;
