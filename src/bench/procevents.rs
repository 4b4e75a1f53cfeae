//! The kernel's process events (the netlink proc connector): when a process exec'd and when it
//! exited, stamped by the kernel itself (CLOCK_MONOTONIC, ns). The dispatch measure uses them to
//! time "a slot frees -> the next run's process exists" without counting the wake-up of the
//! benchmark or the start-up of the next run's program. Needs root (CAP_NET_ADMIN).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// sizeof(struct nlmsghdr) and sizeof(struct cn_msg).
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    fork_ns: Option<u64>,
    exec_ns: Option<u64>,
    exit_ns: Option<u64>,
}

/// A listener on the proc connector; stops when dropped.
pub struct ProcEvents {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<i32, Seen>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ProcEvents {
    /// Subscribe. Fails without the privilege or without CONFIG_PROC_EVENTS.
    pub fn start() -> io::Result<ProcEvents> {
        // Safety: socket(2), bind(2), setsockopt(2), send(2) with valid buffers of the sizes given.
        let sock = unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let sock = OwnedFd::from_raw_fd(fd);
            let buf: libc::c_int = 4 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&buf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            // The reader looks at its stop flag this often.
            let tick = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tick as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            addr.nl_groups = CN_IDX_PROC;
            if libc::bind(
                fd,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let mut msg = Vec::with_capacity(NLMSG_HDR + CN_MSG_HDR + 4);
            let total = (NLMSG_HDR + CN_MSG_HDR + 4) as u32;
            msg.extend_from_slice(&total.to_ne_bytes());
            msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
            msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
            msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
            msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
            msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
            msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
            msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
            msg.extend_from_slice(&4u16.to_ne_bytes()); // len
            msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
            msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
            if libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) != msg.len() as isize {
                return Err(io::Error::last_os_error());
            }
            sock
        };
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<HashMap<i32, Seen>>> = Arc::default();
        let (st, m) = (stop.clone(), seen.clone());
        let reader = std::thread::Builder::new()
            .name("proc-events".into())
            .spawn(move || read_events(&sock, &m, &st))?;
        Ok(ProcEvents {
            stop,
            seen,
            reader: Some(reader),
        })
    }

    fn wait_for(&self, pid: i32, pick: fn(&Seen) -> Option<u64>, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(ns) = self.seen.lock().ok()?.get(&pid).and_then(pick) {
                return Some(ns);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// When `pid` was created (kernel ns), waiting up to `within` for the event.
    pub fn fork_ns(&self, pid: i32, within: Duration) -> Option<u64> {
        self.wait_for(pid, |s| s.fork_ns, within)
    }

    /// When `pid` first exec'd (kernel ns), waiting up to `within` for the event.
    pub fn exec_ns(&self, pid: i32, within: Duration) -> Option<u64> {
        self.wait_for(pid, |s| s.exec_ns, within)
    }

    /// When `pid` exited (kernel ns), waiting up to `within` for the event.
    pub fn exit_ns(&self, pid: i32, within: Duration) -> Option<u64> {
        self.wait_for(pid, |s| s.exit_ns, within)
    }

    /// Forget what was seen of `pid` (before its number can come round again).
    pub fn forget(&self, pid: i32) {
        if let Ok(mut m) = self.seen.lock() {
            m.remove(&pid);
        }
    }
}

impl Drop for ProcEvents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Record exec and exit events of thread-group leaders until the socket is shut down.
fn read_events(sock: &OwnedFd, seen: &Mutex<HashMap<i32, Seen>>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        // Safety: recv(2) into our buffer of its own length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 0 {
            return;
        }
        if n < 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Events were dropped under load: keep reading (a trial missing one says so).
                Some(libc::ENOBUFS) | Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => return,
            }
        }
        // struct proc_event: what, cpu, timestamp_ns, then for exec and exit the pid and tgid.
        let Some(ev) = buf.get(NLMSG_HDR + CN_MSG_HDR..n as usize) else {
            continue;
        };
        let (Some(what), Some(ts), Some(pid), Some(tgid)) =
            (u32_at(ev, 0), u64_at(ev, 8), u32_at(ev, 16), u32_at(ev, 20))
        else {
            continue;
        };
        if what == PROC_EVENT_FORK {
            // fork_proc_event: parent pid and tgid, then the child's pid and tgid.
            let (Some(child), Some(child_tgid)) = (u32_at(ev, 24), u32_at(ev, 28)) else {
                continue;
            };
            if child == child_tgid {
                if let Ok(mut m) = seen.lock() {
                    m.entry(child as i32).or_default().fork_ns = Some(ts);
                }
            }
            continue;
        }
        if pid != tgid || (what != PROC_EVENT_EXEC && what != PROC_EVENT_EXIT) {
            continue;
        }
        if let Ok(mut m) = seen.lock() {
            let s = m.entry(pid as i32).or_default();
            if what == PROC_EVENT_EXEC {
                // The first exec is the run's program starting; a later one is the program's own.
                s.exec_ns.get_or_insert(ts);
            } else {
                s.exit_ns = Some(ts);
            }
        }
    }
}
