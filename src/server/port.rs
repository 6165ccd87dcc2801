//! Port choice and checks. Dolt's listener sets SO_REUSEPORT, so it happily starts on a port
//! another server already serves: doltctl checks that a port is free itself before a launch.

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};

use procfs::net::{TcpNetEntry, TcpState};

use crate::config::instance::Instance;
use crate::config::PortSetting;
use crate::error::{Error, Result};
use crate::sys::process as procinfo;

/// Range for `auto` ports: below the usual ephemeral range (32768+), above most well-known
/// services.
const AUTO_BASE: u16 = 20000;
const AUTO_SPAN: u16 = 10000;

fn addr(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.next()
}

/// True if nothing listens on host:port (checked by binding it without SO_REUSEPORT, which a
/// Dolt listener would need us to have to share it).
pub fn is_free(host: &str, port: u16) -> bool {
    match addr(host, port) {
        Some(a) => TcpListener::bind(a).is_ok(),
        None => false,
    }
}

/// The stable preferred `auto` port of a data dir.
pub fn preferred_port(instance: &Instance) -> u16 {
    AUTO_BASE + (instance.hash() % u64::from(AUTO_SPAN)) as u16
}

/// A port the OS says is free now.
pub fn os_free_port(host: &str) -> Result<u16> {
    let a = addr(host, 0).ok_or_else(|| Error::Resolve { host: host.into() })?;
    let l = TcpListener::bind(a).map_err(|e| Error::io(format!("bind {host}:0"), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io(format!("bind {host}:0"), e))
}

/// Picks the port for the next launch. `auto`: the previous port if still free (clients keep
/// their URL across restarts), else the data dir's preferred port, else any free port.
pub fn choose(
    setting: PortSetting,
    host: &str,
    instance: &Instance,
    previous: Option<u16>,
) -> Result<u16> {
    match setting {
        PortSetting::Fixed(p) => {
            if is_free(host, p) {
                Ok(p)
            } else {
                Err(Error::PortInUse {
                    host: host.into(),
                    port: p,
                    holder: holder(p),
                })
            }
        }
        PortSetting::Auto => {
            for p in previous.into_iter().chain([preferred_port(instance)]) {
                if p != 0 && is_free(host, p) {
                    return Ok(p);
                }
            }
            os_free_port(host)
        }
    }
}

/// Who listens on a TCP port: (pid, command line), found through the socket's inode in
/// `/proc/net/tcp{,6}` and the processes' fd tables. `None` if it cannot be seen.
pub fn holder(port: u16) -> Option<(i32, String)> {
    let inodes: Vec<u64> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for p in procfs::process::all_processes().ok()?.flatten() {
        let Ok(fds) = p.fd() else { continue };
        let listens = fds.flatten().any(|fd| {
            matches!(fd.target, procfs::process::FDTarget::Socket(ino) if inodes.contains(&ino))
        });
        if listens {
            return Some((p.pid(), procinfo::describe(p.pid())));
        }
    }
    None
}

/// A local process's TCP connection to a server's port (see [`peers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The process holding the client end, when `/proc` lets us see it (other users'
    /// processes may not).
    pub pid: Option<i32>,
    /// Its command line.
    pub command: Option<String>,
    /// The client end's address (`127.0.0.1:54321`).
    pub client: SocketAddr,
    /// Since the last data in either direction, from the kernel; `None` when it cannot be
    /// asked.
    pub idle: Option<std::time::Duration>,
}

/// Every established TCP connection from a process of this host to the server listening on
/// `port`, with the process holding it (found as `holder` finds a listener: the client
/// end's inode in `/proc/net/tcp{,6}`, then the processes' fd tables) and how long it has been
/// quiet (from the kernel, `sys::tcp_diag`). Sorted by pid.
pub fn peers(port: u16) -> Vec<Peer> {
    let entries: Vec<TcpNetEntry> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.state == TcpState::Established)
        .collect();
    let ends = client_ends(&entries, port);
    if ends.is_empty() {
        return vec![];
    }
    let quiet = crate::sys::tcp_diag::established();
    let owners = socket_owners(&ends.iter().map(|e| e.inode).collect::<Vec<_>>());
    let mut out: Vec<Peer> = ends
        .iter()
        .map(|e| {
            let pid = owners.get(&e.inode).copied();
            Peer {
                pid,
                command: pid.map(procinfo::describe),
                client: e.local_address,
                idle: quiet
                    .as_ref()
                    .and_then(|q| q.get(&(e.local_address, e.remote_address)))
                    .map(|q| q.idle()),
            }
        })
        .collect();
    out.sort_by_key(|p| (p.pid, p.client));
    out
}

/// The client ends of connections to `port`: entries whose peer is a server end listed here
/// too (so the connection goes to this host's server, not to the same port elsewhere).
fn client_ends(entries: &[TcpNetEntry], port: u16) -> Vec<&TcpNetEntry> {
    let server_ends: std::collections::HashSet<(SocketAddr, SocketAddr)> = entries
        .iter()
        .filter(|e| e.local_address.port() == port)
        .map(|e| (e.local_address, e.remote_address))
        .collect();
    entries
        .iter()
        .filter(|e| e.remote_address.port() == port && e.local_address.port() != port)
        .filter(|e| server_ends.contains(&(e.remote_address, e.local_address)))
        .collect()
}

/// The pid holding each of these socket inodes, for the processes whose fds we may read.
fn socket_owners(inodes: &[u64]) -> std::collections::HashMap<u64, i32> {
    let mut out = std::collections::HashMap::new();
    let Ok(all) = procfs::process::all_processes() else {
        return out;
    };
    for p in all.flatten() {
        let Ok(fds) = p.fd() else { continue };
        for fd in fds.flatten() {
            if let procfs::process::FDTarget::Socket(ino) = fd.target {
                if inodes.contains(&ino) {
                    out.insert(ino, p.pid());
                }
            }
        }
        if out.len() == inodes.len() {
            break;
        }
    }
    out
}

/// Inodes of sockets in state LISTEN on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &[TcpNetEntry], port: u16) -> Vec<u64> {
    table
        .iter()
        .filter(|e| e.local_address.port() == port && e.state == TcpState::Listen)
        .map(|e| e.inode)
        .collect()
}

/// True for `localhost` and loopback addresses (the hosts doltctl may start a server for).
pub fn is_local_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_is_found_with_its_pid() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!is_free("127.0.0.1", port));
        let (pid, _) = holder(port).expect("holder");
        assert_eq!(pid, std::process::id() as i32);
        // (No check that the port is free after drop: a parallel test may take it at once.)
        drop(l);
    }

    #[test]
    fn finds_listening_inodes_in_proc_net_tcp() {
        use procfs::FromBufReadSI;
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                 0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55555 1\n\
                 1: 0100007F:1F90 0100007F:AAAA 01 00000000:00000000 00:00000000 00000000     0        0 66666 1\n\
                 2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77777 1\n";
        let table =
            procfs::net::TcpNetEntries::from_buf_read(t.as_bytes(), procfs::current_system_info())
                .unwrap()
                .0;
        assert_eq!(listening_inodes(&table, 8080), vec![55555]);
    }

    /// A connection from this process to a local listener is found with this pid, its
    /// client address and a quiet time; the listener's own (server) end is not a peer.
    #[test]
    fn peers_are_the_client_ends_with_their_process() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_s, _) = l.accept().unwrap();
        let peers = peers(port);
        assert_eq!(peers.len(), 1, "{peers:?}");
        assert_eq!(peers[0].pid, Some(std::process::id() as i32));
        assert_eq!(peers[0].client, c.local_addr().unwrap());
        assert!(peers[0].idle.is_some(), "{peers:?}");
    }

    #[test]
    fn client_ends_need_a_matching_server_end() {
        use procfs::FromBufReadSI;
        // 8080 <-> 43690 is local both ways; 8080 <-> 43691 has no server end here (a
        // connection to port 8080 of another host).
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                 0: 0100007F:1F90 0100007F:AAAA 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
                 1: 0100007F:AAAA 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
                 2: 0100007F:AAAB 0200000A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        let table =
            procfs::net::TcpNetEntries::from_buf_read(t.as_bytes(), procfs::current_system_info())
                .unwrap()
                .0;
        let ends: Vec<u64> = client_ends(&table, 8080).iter().map(|e| e.inode).collect();
        assert_eq!(ends, vec![2]);
    }

    /// Clients keep a data dir's URL across doltctl versions only if its preferred port
    /// stays the same.
    #[test]
    fn preferred_port_is_pinned() {
        let inst = Instance::new(std::path::Path::new("/nonexistent/doltctl/db"));
        assert_eq!(preferred_port(&inst), 28955);
    }

    #[test]
    fn fixed_port_in_use_names_holder() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let inst = Instance::new(std::path::Path::new("/nonexistent/x"));
        let err = choose(PortSetting::Fixed(port), "127.0.0.1", &inst, None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // auto moves on to another port.
        let p = choose(PortSetting::Auto, "127.0.0.1", &inst, Some(port)).unwrap();
        assert_ne!(p, port);
    }
}
