//! Moving output from a pipe to a log file inside the kernel (`splice(2)`), so that a flooding
//! agent's bytes are never copied through the daemon, and growing a busy pipe's buffer.
//!
//! A splice from a pipe into a file holds that pipe's lock for the whole copy into the page
//! cache, which would stall the agent's writes meanwhile. So the drain first moves the agent's
//! buffers into a private relay pipe (a pipe-to-pipe splice only hands over page references,
//! under the lock for microseconds) and writes the file from the relay, whose lock nobody else
//! wants.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Move up to `len` bytes from the pipe `from` (non-blocking) to `to`: a regular file (at its
/// current offset) or another pipe. `Ok(0)` means end of file on `from`; `WouldBlock` means
/// `from` is empty (or the pipe `to` is full).
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // Safety: splice on two fds the caller owns, with null offsets (use the file position);
    // no memory is passed to the kernel.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Ask for a bigger pipe buffer (`F_SETPIPE_SZ`); the kernel may grant less. Returns the size.
pub fn grow_pipe(fd: RawFd, bytes: usize) -> io::Result<usize> {
    // Safety: fcntl on an fd the caller owns, with an integer argument.
    let r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes as libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Lower the calling thread to `SCHED_IDLE`: it runs only on CPU time nobody else wants.
pub fn make_thread_idle() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // Safety: sched_setscheduler on the calling thread (0) with a valid parameter block.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn splice_moves_pipe_bytes_into_a_file() {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .expect("pipe");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).expect("file");
        let mut wf = std::fs::File::from(w);
        wf.write_all(b"hello, log").expect("write");
        let (relay_r, relay_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .expect("relay");
        let n = splice(r.as_raw_fd(), relay_w.as_raw_fd(), 1 << 20).expect("to relay");
        assert_eq!(n, 10);
        let e = splice(r.as_raw_fd(), relay_w.as_raw_fd(), 1 << 20).expect_err("empty");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let n = splice(relay_r.as_raw_fd(), file.as_raw_fd(), 1 << 20).expect("to file");
        assert_eq!(n, 10);
        drop(wf);
        assert_eq!(
            splice(r.as_raw_fd(), relay_w.as_raw_fd(), 1 << 20).expect("eof"),
            0
        );
        let mut got = String::new();
        std::fs::File::open(&path)
            .expect("open")
            .read_to_string(&mut got)
            .expect("read");
        assert_eq!(got, "hello, log");
        assert!(grow_pipe(r.as_raw_fd(), 1 << 20).expect("grow") >= 1 << 16);
    }
}
