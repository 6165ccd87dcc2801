//! The server's life: the state machine, the supervisor that performs its actions, the state
//! file it writes, the start lock, and the operations other processes use (start, stop,
//! restart, status).

pub mod control;
pub(crate) mod control_socket;
pub(crate) mod driver;
pub mod exclusive;
pub(crate) mod machine;
pub(crate) mod metrics;
pub(crate) mod start_lock;
pub(crate) mod state_file;
pub(crate) mod supervisor;
