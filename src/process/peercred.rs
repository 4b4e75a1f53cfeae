//! Who is on the other end of a unix socket, as the kernel recorded it when the peer called
//! connect(): SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS (the peer's supplementary groups at
//! that moment). Both come from the socket, not from /proc, so a peer that exits or changes its
//! credentials after connecting cannot change what the daemon sees.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The peer's credentials at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (may or may not repeat the primary one).
    pub groups: Vec<u32>,
}

/// Read SO_PEERCRED and SO_PEERGROUPS of a connected unix socket.
pub fn peer_cred(sock: &impl AsFd) -> io::Result<PeerCred> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(sock, PeerCredentials).map_err(io::Error::from)?;
    let groups = peer_groups(sock)?;
    Ok(PeerCred {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: (cred.pid() > 0).then_some(cred.pid()),
        groups,
    })
}

/// SO_PEERGROUPS: asks with room for 64 groups, and again with the size the kernel reports when
/// that was too little (ERANGE).
fn peer_groups(sock: &impl AsFd) -> io::Result<Vec<u32>> {
    let fd = sock.as_fd().as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // Safety: the buffer is valid for `len` bytes and the kernel writes at most `len` bytes,
        // storing the size it wrote (or, on ERANGE, the size it needs) back into `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_reports_our_own_credentials_and_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let c = peer_cred(&a).expect("peer cred");
        assert_eq!(c.uid, nix::unistd::getuid().as_raw());
        assert_eq!(c.gid, nix::unistd::getgid().as_raw());
        assert_eq!(c.pid, Some(std::process::id() as i32));
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .expect("getgroups")
            .iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = c.groups.clone();
        ours.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, ours);
    }
}
