//! Process handles that cannot go stale: a pidfd refers to one process for as long as the handle
//! is open, whatever happens to its number. Invariant 1: a signal never goes to a number that
//! might have been reused; the daemon signals through these handles (or through a group whose
//! leader it still holds unreaped).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// It called exit with this code.
    Code(i32),
    /// A signal (this number) ended it.
    Signal(i32),
}

/// An open pidfd and the pid it was opened for (the pid is for logs and humans).
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
}

impl PidFd {
    /// Open a handle on `pid`. For the daemon's own unreaped children this cannot race with pid
    /// reuse; for other processes the caller verifies identity after opening.
    pub fn open(pid: i32) -> io::Result<PidFd> {
        if pid <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to open a pidfd for pid {pid}"),
            ));
        }
        // Safety: pidfd_open takes a pid and flags and returns a new fd or -1; pidfds are
        // always close-on-exec.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Safety: the kernel just gave us this fd and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
        Ok(PidFd { fd, pid })
    }

    /// The pid the handle was opened for.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Send `sig` to this process. `Ok(false)` when it has already exited (ESRCH is success).
    pub fn send_signal(&self, sig: Signal) -> io::Result<bool> {
        // Safety: pidfd_send_signal with a null siginfo and no flags acts like kill(2) on the
        // process the fd refers to.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(true)
    }

    /// For a child of the daemon: its exit status if it has exited, without reaping it.
    pub fn peek_exit(&self) -> io::Result<Option<ExitKind>> {
        self.waitid(libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    }

    /// For a child of the daemon: reap it if it has exited, returning its status.
    pub fn reap(&self) -> io::Result<Option<ExitKind>> {
        self.waitid(libc::WEXITED | libc::WNOHANG)
    }

    fn waitid(&self, flags: libc::c_int) -> io::Result<Option<ExitKind>> {
        // Safety: siginfo_t is plain data; zeroed is a valid "nothing happened" value, which
        // waitid leaves in place (si_pid 0) when WNOHANG finds nothing.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        loop {
            // Safety: P_PIDFD with our own open fd; info points to writable memory.
            let r = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.fd.as_raw_fd() as libc::id_t,
                    &mut info,
                    flags,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            break;
        }
        // Safety: after a successful waitid these union fields are the child-status ones.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => ExitKind::Code(status),
            _ => ExitKind::Signal(status),
        }))
    }

    /// Wait until the process has exited (the pidfd polls readable then). Registers the pidfd
    /// itself for the wait (no duplicate fd), so an idle run costs one fd for its handle.
    pub async fn exited(&self) -> io::Result<()> {
        // Safety: the AsyncFd lives inside this future, which borrows `self`, so the fd stays
        // open and refers to the same pidfd for the AsyncFd's whole life; dropping it only
        // removes the epoll registration.
        let afd = unsafe {
            AsyncFd::register_with_interest(
                Borrowed(self.fd.as_raw_fd()),
                tokio::io::Interest::READABLE,
            )
        }?;
        let _guard = afd.readable().await?;
        Ok(())
    }
}

/// A raw fd that some owner keeps open (see `PidFd::exited`).
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // reaped through the pidfd, which is what is tested
    async fn pidfd_sees_exit_and_peek_does_not_reap() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("spawn sh");
        let pfd = PidFd::open(child.id() as i32).expect("pidfd");
        pfd.exited().await.expect("exited");
        assert_eq!(pfd.peek_exit().expect("peek"), Some(ExitKind::Code(7)));
        assert_eq!(
            pfd.peek_exit().expect("peek again"),
            Some(ExitKind::Code(7))
        );
        assert_eq!(pfd.reap().expect("reap"), Some(ExitKind::Code(7)));
        assert!(
            pfd.reap().is_err(),
            "a reaped child cannot be waited for again"
        );
        assert!(!pfd.send_signal(Signal::SIGTERM).expect("signal"));
    }
}
