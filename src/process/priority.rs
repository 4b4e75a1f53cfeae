//! The daemon's own CPU priority (`daemon.nice`). On Linux a nice value belongs to a thread, and
//! a new thread or child starts with its creator's; so the daemon sets it on every thread it has
//! (at start, before the async runtime exists, that is the main thread alone), and each run's
//! child sets `runs.nice` for itself before exec (see `spawn::child::set_nice`).
#![allow(unsafe_code)]

use std::io;

/// The nice value of thread `tid` (0: the calling thread).
pub fn nice_of(tid: i32) -> io::Result<i32> {
    // getpriority(2) can return -1 as a value: errno tells an error from it.
    // Safety: errno is thread-local; getpriority takes integer arguments.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        match *libc::__errno_location() {
            0 => Ok(v),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Set `nice` on every thread of this process. Returns how many threads were set; the first
/// error stops it (EACCES without CAP_SYS_NICE when lowering the value).
pub fn set_own_nice(nice: i32) -> io::Result<usize> {
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::id_t>().ok())
        else {
            continue;
        };
        // Safety: setpriority(2) with integer arguments.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            let e = io::Error::last_os_error();
            // A thread that ended since the listing is not an error.
            if e.raw_os_error() == Some(libc::ESRCH) {
                continue;
            }
            return Err(e);
        }
        set += 1;
    }
    Ok(set)
}
