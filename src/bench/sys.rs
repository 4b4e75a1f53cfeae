//! The benchmark's only unsafe code: the few system calls that neither std nor nix (with the
//! features this crate enables) wrap: pidfds, the raw monotonic clock, file limits, the pre-exec
//! steps of a raw spawn, and borrowing the heartbeat fd an agent inherited. Each block says why
//! it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Open a pidfd on `pid` (close-on-exec, as every pidfd is).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // Safety: pidfd_open takes two integers and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Send `sig` through a pidfd. ESRCH (the process has exited) is success.
pub fn pidfd_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Safety: integers only; a null siginfo means "as kill(2) would send it".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds: the one clock an agent process and the benchmark share.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: clock_gettime writes one timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Clock ticks per second, the unit of utime and stime in /proc/PID/stat.
pub fn clock_ticks_per_sec() -> u64 {
    // Safety: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Raise the soft limit on open files to the hard limit (1000 live runs need thousands of fds
/// in the daemon, which inherits this limit, and a thousand pidfds here). Returns the new limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit/setrlimit read and write one rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// In the child of a raw spawn: put `hb_write` at fd 3, as the daemon does for its runs.
pub fn pre_exec_heartbeat_fd(cmd: &mut Command, hb_write: RawFd) {
    // Safety: the closure runs between fork and exec and only makes async-signal-safe system
    // calls on integers; it neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            if hb_write == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(hb_write, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// In the daemon's child: SIGTERM it if the benchmark dies, so that a killed benchmark does not
/// leave a daemon behind. The daemon is forked from the main thread, which lives as long as the
/// benchmark, so the signal is not sent early when some pooled thread retires.
pub fn pre_exec_parent_death_signal(cmd: &mut Command) {
    // Safety: prctl on integers only, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The heartbeat fd an agent inherited, borrowed for the agent's whole life.
pub fn inherited_fd(fd: RawFd) -> io::Result<BorrowedFd<'static>> {
    // Safety: fcntl(F_GETFD) only asks whether the fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: the fd is open (checked above), was inherited at exec, and nothing in the agent
    // closes it; the agent exits while still borrowing it.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Empty the pipe `from` into /dev/null until its writers are gone, the cheapest reader a pipe
/// can have (the kernel only releases the buffers). The pipe is grown to 1 MiB first, as the
/// daemon grows a flooding run's pipe. Returns the bytes discarded.
pub fn discard_pipe(from: OwnedFd) -> io::Result<u64> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // Safety: fcntl and splice on fds we own; no memory is passed to the kernel.
    unsafe { libc::fcntl(from.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    let mut total = 0u64;
    loop {
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                null.as_raw_fd(),
                std::ptr::null_mut(),
                1 << 20,
                0,
            )
        };
        match n {
            0 => return Ok(total),
            n if n > 0 => total += n as u64,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
