//! How long local TCP connections have been quiet, from the kernel (`NETLINK_SOCK_DIAG`, what
//! `ss -ti` shows as `lastsnd`/`lastrcv`). `/proc/net/tcp` lists connections but not their
//! last activity, and Dolt's process list does not say which TCP connection a session is
//! (its `Host` column is the account's host, `localhost`), so the kernel is the place to ask.
//! Unprivileged: any user may dump the sockets' `tcp_info`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IPPROTO_TCP: u8 = 6;
const TCP_ESTABLISHED: u32 = 1;
const INET_DIAG_INFO: u16 = 2;
/// `nlmsghdr`, `inet_diag_req_v2`, `inet_diag_msg`.
const NLMSG_HDR: usize = 16;
const DIAG_REQ: usize = 56;
const DIAG_MSG: usize = 72;
/// Offsets in `struct tcp_info` (linux/tcp.h) of `tcpi_last_data_sent` and
/// `tcpi_last_data_recv`, in milliseconds.
const LAST_DATA_SENT: usize = 44;
const LAST_DATA_RECV: usize = 52;

/// One established TCP connection as the kernel sees it from one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    /// The socket's inode (as in `/proc/PID/fd` links).
    pub inode: u64,
    /// Since this end last sent data.
    pub since_sent: Duration,
    /// Since this end last received data.
    pub since_received: Duration,
}

impl Quiet {
    /// Since the last data in either direction.
    pub fn idle(&self) -> Duration {
        self.since_sent.min(self.since_received)
    }
}

/// Every established TCP connection of this host (both ends of local ones), by (local,
/// remote) address. `None` when the kernel cannot be asked (no netlink, a sandbox).
pub fn established() -> Option<HashMap<(SocketAddr, SocketAddr), Quiet>> {
    let mut out = HashMap::new();
    for family in [libc_af(AddressFamily::Inet), libc_af(AddressFamily::Inet6)] {
        dump(family, &mut out)?;
    }
    Some(out)
}

fn libc_af(f: AddressFamily) -> u8 {
    f as i32 as u8
}

fn dump(family: u8, out: &mut HashMap<(SocketAddr, SocketAddr), Quiet>) -> Option<()> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    // The kernel answers a dump at once; never hang a caller on it.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0)).ok()?;
    sendto(
        fd.as_raw_fd(),
        &request(family),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
        if n == 0 {
            return None;
        }
        let mut msgs = &buf[..n];
        while msgs.len() >= NLMSG_HDR {
            let len = u32_at(msgs, 0)? as usize;
            let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
            if len < NLMSG_HDR || len > msgs.len() {
                return None;
            }
            match kind {
                NLMSG_DONE => return Some(()),
                NLMSG_ERROR => return None,
                _ => {
                    if let Some((k, v)) = parse_diag_msg(&msgs[NLMSG_HDR..len]) {
                        out.insert(k, v);
                    }
                }
            }
            msgs = &msgs[align4(len).min(msgs.len())..];
        }
    }
}

/// A dump request for `family`'s established TCP sockets, with their `tcp_info`.
fn request(family: u8) -> Vec<u8> {
    let len = (NLMSG_HDR + DIAG_REQ) as u32;
    let mut r = Vec::with_capacity(len as usize);
    r.extend_from_slice(&len.to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    r.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    r.push(family);
    r.push(IPPROTO_TCP);
    r.push(1 << (INET_DIAG_INFO - 1)); // extensions: tcp_info
    r.push(0);
    r.extend_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    r.resize(len as usize, 0); // inet_diag_sockid: all zero, no filter
    r
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One `inet_diag_msg` and its attributes: the connection's addresses and quiet times.
fn parse_diag_msg(m: &[u8]) -> Option<((SocketAddr, SocketAddr), Quiet)> {
    if m.len() < DIAG_MSG {
        return None;
    }
    let family = m[0];
    let sport = u16::from_be_bytes([m[4], m[5]]);
    let dport = u16::from_be_bytes([m[6], m[7]]);
    let ip = |at: usize| -> Option<IpAddr> {
        let raw: [u8; 16] = m.get(at..at + 16)?.try_into().ok()?;
        if family == libc_af(AddressFamily::Inet) {
            Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])))
        } else {
            Some(IpAddr::V6(Ipv6Addr::from(raw)))
        }
    };
    let local = SocketAddr::new(ip(8)?, sport);
    let remote = SocketAddr::new(ip(24)?, dport);
    let inode = u64::from(u32_at(m, 68)?);
    let mut attrs = &m[DIAG_MSG..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == INET_DIAG_INFO {
            let info = &attrs[4..len];
            let ms = |at| u32_at(info, at).map(|v| Duration::from_millis(v.into()));
            let quiet = Quiet {
                inode,
                since_sent: ms(LAST_DATA_SENT)?,
                since_received: ms(LAST_DATA_RECV)?,
            };
            return Some(((local, remote), quiet));
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A connection made here is found from both ends, with the time since its last data.
    #[test]
    fn a_local_connection_is_seen_from_both_ends_with_its_quiet_time() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let all = established().expect("sock_diag answers");
        let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
        let client_end = all.get(&(ca, sa)).expect("client end");
        let server_end = all.get(&(sa, ca)).expect("server end");
        assert!(client_end.inode > 0 && client_end.inode != server_end.inode);
        assert!(
            server_end.since_received >= Duration::from_millis(250),
            "{server_end:?}"
        );
        assert!(
            server_end.idle() < Duration::from_secs(60),
            "{server_end:?}"
        );
    }
}
