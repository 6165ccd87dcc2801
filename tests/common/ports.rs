//! Ports for tests' and measurements' servers, reserved across processes. Shared by
//! `tests/common` and `examples/common` (included by path), so both hand out from one pool.

use std::net::TcpListener;
use std::path::PathBuf;

/// A free port for a test's server, from 10000-19999: below the kernel's ephemeral range
/// (32768+), where outgoing connections could take it, and below doltctl's `auto` range
/// (20000-29999).
///
/// Each port is handed out once across all test processes of this user (test binaries, and
/// other checkouts testing at the same time): it is reserved by an flock on
/// `$TMPDIR/doltctl-test-ports-UID/PORT`, held until this process exits, and only then checked
/// free by binding it. So no other test can take it between this check and the server's bind.
pub fn free_port() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use std::sync::Mutex;
    static HELD: Mutex<Vec<Flock<std::fs::File>>> = Mutex::new(Vec::new());
    let dir = port_reservations();
    std::fs::create_dir_all(&dir).unwrap();
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    // Start somewhere else in each process, so concurrent processes rarely probe one port.
    let start = std::process::id().wrapping_mul(7919) as usize;
    for k in 0..10_000 {
        let port = 10_000 + ((start + k) % 10_000) as u16;
        let path = dir.join(port.to_string());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap();
        // A port this process holds conflicts too: flock locks belong to the open file.
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => panic!("flock {}: {e}", path.display()),
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(lock);
            return port;
        }
    }
    panic!(
        "no free port left in 10000-19999 (reservations in {})",
        dir.display()
    );
}

/// The directory of [`free_port`]'s per-port lock files.
pub fn port_reservations() -> PathBuf {
    std::env::temp_dir().join(format!("doltctl-test-ports-{}", nix::unistd::getuid()))
}
