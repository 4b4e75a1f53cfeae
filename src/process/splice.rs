//! Moving output from a pipe to a log file inside the kernel (`splice(2)`), so that a flooding
//! agent's bytes are never copied through the daemon, and growing a busy pipe's buffer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Move up to `len` bytes from the pipe `from` (non-blocking) to the regular file `to` at its
/// current offset. `Ok(0)` means end of file on the pipe; `WouldBlock` means the pipe is empty.
pub fn splice_to_file(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
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

/// How many bytes wait in the pipe (`FIONREAD`).
pub fn available(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: FIONREAD writes one int to the pointer we pass.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
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
        let n = splice_to_file(r.as_raw_fd(), file.as_raw_fd(), 1 << 20).expect("splice");
        assert_eq!(n, 10);
        let e = splice_to_file(r.as_raw_fd(), file.as_raw_fd(), 1 << 20).expect_err("empty");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(wf);
        assert_eq!(
            splice_to_file(r.as_raw_fd(), file.as_raw_fd(), 1 << 20).expect("eof"),
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
