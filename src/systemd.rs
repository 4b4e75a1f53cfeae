//! systemd integration: readiness and status notifications (`Type=notify`), the watchdog, and
//! socket activation. Every function is a no-op when the daemon is not run by systemd (no
//! `NOTIFY_SOCKET`, no `LISTEN_FDS`), so the daemon behaves the same by hand and under a unit.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "sd_notify failed");
    }
}

/// `READY=1` with a status line: the socket is bound and the store reconciled.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `READY=1` after a reload, leaving the status line as it is.
pub fn ready_again() {
    send(&[NotifyState::Ready]);
}

/// `STATUS=...`: what `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC`, as `Type=notify-reload` expects; `ready` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Half the watchdog interval systemd asked for (`WATCHDOG_USEC`), if it asked.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// The listening socket systemd passed (`LISTEN_FDS`/`LISTEN_PID`), if any: the first one.
pub fn activated_listener() -> Option<std::os::unix::net::UnixListener> {
    let mut fds = match sd_notify::listen_fds() {
        Ok(fds) => fds,
        Err(e) => {
            warn!(error = %e, "ignoring malformed LISTEN_FDS");
            return None;
        }
    };
    let fd = fds.next()?;
    // Safety: systemd passed this fd to us for this purpose (LISTEN_PID is our pid); nothing
    // else in the daemon owns it, and listen_fds() made it close-on-exec.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::os::unix::net::UnixListener::from(owned);
    if let Err(e) = listener.set_nonblocking(true) {
        warn!(error = %e, "cannot use the socket systemd passed");
        return None;
    }
    Some(listener)
}

/// Whether stderr is connected to the journal (`JOURNAL_STREAM` names stderr's device:inode).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// All notify tests share NOTIFY_SOCKET, so they run as one test.
    #[test]
    fn notifications_reach_the_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Safety of set_var: this is the only test touching these variables.
        unsafe {
            std::env::set_var("NOTIFY_SOCKET", &path);
            std::env::set_var("WATCHDOG_USEC", "2000000");
            std::env::remove_var("WATCHDOG_PID");
        }
        let mut buf = [0u8; 512];
        let mut recv = || {
            let n = sock.recv(&mut buf).expect("datagram");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        ready("1 running, 0 queued, 0 stuck");
        assert_eq!(recv(), "READY=1\nSTATUS=1 running, 0 queued, 0 stuck\n");
        status("2 running");
        assert_eq!(recv(), "STATUS=2 running\n");
        watchdog();
        assert_eq!(recv(), "WATCHDOG=1\n");
        reloading();
        let r = recv();
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r}");
        stopping("stopping: ending 2 runs");
        assert_eq!(recv(), "STOPPING=1\nSTATUS=stopping: ending 2 runs\n");
        assert_eq!(watchdog_period(), Some(Duration::from_secs(1)));
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
        }
    }
}
