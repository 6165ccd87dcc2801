//! System access: processes (their identity and cost), file locks, atomic files, the clock,
//! install locations. Depends on nothing else in the crate but [`crate::error`].

pub(crate) mod atomic;
pub(crate) mod clock;
pub(crate) mod init;
pub(crate) mod install;
pub(crate) mod locks;
pub(crate) mod notify;
pub(crate) mod process;
pub(crate) mod tcp_diag;
pub(crate) mod usage;
