//! Output drains: each pipe of a run is read from the moment of spawn, in its own task, in bounded
//! chunks, whatever the agent prints (a pipe nobody drains blocks the agent at 64 KiB). stdout and
//! stderr go to the run's log files (heartbeat pipes: see `beats`).
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::agent::progress::StdoutTracker;
use crate::run::agent::AgentState;
use crate::supervisor::Msg;

const CHUNK: usize = 64 * 1024;
/// A flooding agent's pipe, and the drain's relay pipe, grow to this (the default
/// `/proc/sys/fs/pipe-max-size`).
const FLOOD_PIPE: usize = 1 << 20;
/// How long a log file, the relay and the read buffer stay after output stops, so that an agent
/// printing a line at a time does not reopen and reallocate them per line, while an idle run
/// holds none of them.
const LINGER: Duration = Duration::from_millis(500);

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn file_name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout.log",
            Stream::Stderr => "stderr.log",
        }
    }
}

/// Bytes written so far to each log file, and whether the drains have finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputProgress {
    pub stdout: u64,
    pub stderr: u64,
    pub done: bool,
    /// Output went over the cap and its oldest part was dropped.
    pub truncated: bool,
}

/// A log file capped at `cap` bytes in two segments: `NAME` (current) and `NAME.1` (older).
/// When the current segment reaches half the cap it becomes `NAME.1`, replacing (dropping) the
/// previous older segment. So between cap/2 and cap bytes of the newest output are kept.
pub struct CappedLog {
    path: std::path::PathBuf,
    /// Open only while output flows, so an idle run holds no log fd.
    file: Option<File>,
    written: u64,
    segment: u64,
    /// An older segment was dropped.
    pub truncated: bool,
}

impl CappedLog {
    /// A log at `path`; the file (and its folder) is made on the first write.
    pub fn create(path: std::path::PathBuf, cap: u64) -> std::io::Result<CappedLog> {
        Ok(CappedLog {
            path,
            file: None,
            written: 0,
            segment: (cap / 2).max(1),
            truncated: false,
        })
    }

    /// The older segment's path.
    pub fn older(path: &std::path::Path) -> std::path::PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        std::path::PathBuf::from(p)
    }

    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let room = (self.segment - self.written.min(self.segment)) as usize;
            if room == 0 {
                self.rotate()?;
                continue;
            }
            let n = room.min(data.len());
            if self.file.is_none() {
                self.file = Some(self.open()?);
            }
            if let Some(f) = self.file.as_mut() {
                f.write_all(&data[..n])?;
            }
            self.written += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Close the file until more output comes.
    pub fn release(&mut self) {
        self.file = None;
    }

    fn open(&self) -> std::io::Result<File> {
        // Not O_APPEND (splice refuses such files): the daemon is the only writer, so it
        // positions at the end itself.
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&self.path)
        };
        let mut f = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open()?
            }
            r => r?,
        };
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0))?;
        Ok(f)
    }

    /// Whether the current segment's file is open.
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Move exactly `n` bytes, which wait in the pipe `from`, into the log without copying them
    /// through user space, rotating segments as they fill.
    pub fn splice_all_from(&mut self, from: RawFd, mut n: usize) -> std::io::Result<()> {
        while n > 0 {
            if self.written >= self.segment {
                self.rotate()?;
            }
            if self.file.is_none() {
                self.file = Some(self.open()?);
            }
            let room = (self.segment - self.written) as usize;
            let to = match self.file.as_ref() {
                Some(f) => f.as_raw_fd(),
                None => return Err(std::io::Error::other("log file not open")),
            };
            match crate::process::splice::splice(from, to, room.min(n)) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "relay pipe ran dry",
                    ))
                }
                Ok(m) => {
                    self.written += m as u64;
                    n -= m;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let older = Self::older(&self.path);
        if let Ok(doomed) = File::open(&older) {
            self.truncated = true;
            // Unlinking a file that is still open only drops its name; freeing its pages and
            // blocks, which takes a while for a large segment, waits for the last close, and
            // that happens off the drain's path. (Renaming the current segment onto an existing
            // `NAME.1` instead would make ext4 write the segment to disk first: auto_da_alloc.)
            std::fs::remove_file(&older)?;
            reclaim(doomed);
        }
        self.file = None;
        std::fs::rename(&self.path, &older)?;
        self.written = 0;
        Ok(())
    }
}

/// Dropped segments waiting for their last close, at most: beyond that the drain closes them
/// itself (slower, but the disk is freed at the pace the agent fills it).
const MAX_PENDING_RECLAIMS: usize = 4;

/// Close a dropped (unlinked) log segment, freeing its pages and blocks, on a thread that runs
/// only on otherwise idle CPU time, so that a flood's drain and agent keep the CPUs.
fn reclaim(doomed: File) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, OnceLock};
    static PENDING: AtomicUsize = AtomicUsize::new(0);
    static QUEUE: OnceLock<mpsc::Sender<File>> = OnceLock::new();
    if PENDING.load(Ordering::Relaxed) >= MAX_PENDING_RECLAIMS {
        drop(doomed);
        return;
    }
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<File>();
        let started = std::thread::Builder::new()
            .name("wf-reclaim".into())
            .spawn(move || {
                if let Err(e) = crate::process::splice::make_thread_idle() {
                    warn!(error = %e, "the log reclaimer runs at normal priority");
                }
                for f in rx {
                    drop(f);
                    PENDING.fetch_sub(1, Ordering::Relaxed);
                }
            });
        if let Err(e) = started {
            warn!(error = %e, "no log reclaimer thread; dropped segments are freed inline");
        }
        tx
    });
    PENDING.fetch_add(1, Ordering::Relaxed);
    if let Err(mpsc::SendError(f)) = queue.send(doomed) {
        // No reclaimer: free it here.
        PENDING.fetch_sub(1, Ordering::Relaxed);
        drop(f);
    }
}

/// The drain's private pipe between the agent's pipe and the log file (see `process::splice`).
struct Relay {
    r: OwnedFd,
    w: OwnedFd,
    grown: bool,
}

impl Relay {
    fn new() -> std::io::Result<Relay> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(std::io::Error::from)?;
        Ok(Relay { r, w, grown: false })
    }

    /// Copy whatever waits in the relay into the log through user space (when the log's file
    /// system cannot splice).
    fn copy_out(&self, log: &mut CappedLog) -> std::io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match nix::unistd::read(&self.r, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Ok(n) => log.write(&buf[..n])?,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Publish how many bytes of `stream` are in the log (and whether any were dropped).
fn report_bytes(
    progress: &watch::Sender<OutputProgress>,
    stream: Stream,
    total: u64,
    truncated: bool,
) {
    progress.send_modify(|p| {
        match stream {
            Stream::Stdout => p.stdout = total,
            Stream::Stderr => p.stderr = total,
        }
        p.truncated |= truncated;
    });
}

/// Where an agent run's stdout progress goes: the tracker decodes stream-json, the core hears of
/// each change (coalesced when it is busy).
pub struct StdoutWatch {
    pub tracker: StdoutTracker,
    pub run_id: String,
    pub core: mpsc::Sender<Msg>,
}

impl StdoutWatch {
    fn report(&self, pending: &mut bool) {
        let mut state = AgentState::default();
        state.apply_progress(self.tracker.progress());
        let msg = Msg::Agent {
            run_id: self.run_id.clone(),
            state: Box::new(state),
        };
        *pending = matches!(
            self.core.try_send(msg),
            Err(mpsc::error::TrySendError::Full(_))
        );
    }
}

/// Copy a pipe into a capped log until EOF, decoding agent progress on the way when `agent` is
/// given. Returns the bytes copied.
pub async fn drain_to_file(
    fd: OwnedFd,
    mut log: CappedLog,
    stream: Stream,
    progress: watch::Sender<OutputProgress>,
    mut agent: Option<StdoutWatch>,
) -> u64 {
    let rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            warn!(error = %e, ?stream, "cannot watch output pipe");
            return 0;
        }
    };
    let mut total = 0u64;
    let mut write_failed = false;
    let mut pending = false;
    // The buffer, the relay and the log file exist only while output flows: an idle run holds
    // none of them.
    let mut buf: Vec<u8> = Vec::new();
    let mut relay: Option<Relay> = None;
    let mut eof = false;
    let mut grown = false;
    // Set when splice is not possible here: copy through a buffer instead.
    let mut copy_instead = false;
    while !eof {
        let ready = if pending {
            match tokio::time::timeout(Duration::from_millis(20), rx.readable()).await {
                Ok(r) => r,
                Err(_) => {
                    if let Some(a) = &agent {
                        a.report(&mut pending);
                    }
                    continue;
                }
            }
        } else if log.is_open() || relay.is_some() || !buf.is_empty() {
            match tokio::time::timeout(LINGER, rx.readable()).await {
                Ok(r) => r,
                Err(_) => {
                    log.release();
                    relay = None;
                    buf = Vec::new();
                    continue;
                }
            }
        } else {
            rx.readable().await
        };
        if let Err(e) = ready {
            warn!(error = %e, ?stream, "output pipe poll failed");
            break;
        }
        if agent.is_none() && !write_failed && !copy_instead {
            // Plain output: from the pipe into the relay, from the relay into the log file, all
            // inside the kernel. The relay also tells end of file from data without making the
            // log file, so runs that print nothing cost no inode.
            loop {
                if relay.is_none() {
                    match Relay::new() {
                        Ok(r) => relay = Some(r),
                        Err(e) => {
                            warn!(error = %e, ?stream, "no relay pipe; copying output through the daemon");
                            copy_instead = true;
                            break;
                        }
                    }
                }
                let Some(rl) = relay.as_mut() else { break };
                let moved = rx.try_io(|| {
                    crate::process::splice::splice(rx.as_raw_fd(), rl.w.as_raw_fd(), FLOOD_PIPE)
                });
                let n = match moved {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!(error = %e, ?stream, "output pipe read failed");
                        eof = true;
                        break;
                    }
                };
                if n >= CHUNK && !grown {
                    // A flooding agent: bigger pipes mean fewer wakeups and calls per byte.
                    grown = true;
                    let _ = crate::process::splice::grow_pipe(rx.as_raw_fd(), FLOOD_PIPE);
                }
                if grown && !rl.grown {
                    rl.grown = true;
                    let _ = crate::process::splice::grow_pipe(rl.w.as_raw_fd(), FLOOD_PIPE);
                }
                total += n as u64;
                match log.splice_all_from(rl.r.as_raw_fd(), n) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        // This file system cannot splice: copy through user space from here on.
                        warn!(?stream, "splice refused; copying output through the daemon");
                        copy_instead = true;
                        if let Err(e) = rl.copy_out(&mut log) {
                            warn!(error = %e, ?stream, "log write failed; output from here on is dropped");
                            write_failed = true;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, ?stream, "log write failed; output from here on is dropped");
                        write_failed = true;
                    }
                }
                report_bytes(&progress, stream, total, log.truncated);
                if copy_instead || write_failed {
                    relay = None;
                    break;
                }
            }
            if !copy_instead {
                continue;
            }
        }
        if buf.is_empty() {
            buf = vec![0u8; CHUNK];
        }
        let mut lines = 0;
        loop {
            let n = match rx.try_read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, ?stream, "output pipe read failed");
                    eof = true;
                    break;
                }
            };
            if let Some(a) = agent.as_mut() {
                lines += a.tracker.feed(&buf[..n], crate::time::now_ms());
            }
            // Keep draining even when the disk refuses: the agent must never block on us.
            if !write_failed {
                if let Err(e) = log.write(&buf[..n]) {
                    warn!(error = %e, ?stream, "log write failed; output from here on is dropped");
                    write_failed = true;
                }
            }
            total += n as u64;
            report_bytes(&progress, stream, total, log.truncated);
        }
        if let Some(a) = &agent {
            if lines > 0 || pending {
                a.report(&mut pending);
            }
        }
    }
    log.release();
    if let Some(mut a) = agent {
        a.tracker.finish(crate::time::now_ms());
        let mut state = AgentState::default();
        state.apply_progress(a.tracker.progress());
        let _ = a
            .core
            .send(Msg::Agent {
                run_id: a.run_id.clone(),
                state: Box::new(state),
            })
            .await;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_log_keeps_the_newest_output_within_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        let mut log = CappedLog::create(path.clone(), 100).expect("create");
        let data: Vec<u8> = (0..250u32).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(7) {
            log.write(chunk).expect("write");
        }
        let older = std::fs::read(CappedLog::older(&path)).expect("older");
        let current = std::fs::read(&path).expect("current");
        assert!(log.truncated, "the oldest part was dropped");
        assert!(older.len() + current.len() <= 100);
        let mut kept = older.clone();
        kept.extend_from_slice(&current);
        assert_eq!(
            &kept[..],
            &data[data.len() - kept.len()..],
            "the newest bytes, in order"
        );
        // Dropped segments leave no name behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["stdout.log", "stdout.log.1"]);
    }

    #[test]
    fn under_the_cap_nothing_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        let mut log = CappedLog::create(path.clone(), 1000).expect("create");
        log.write(b"hello").expect("write");
        assert!(!log.truncated);
        assert_eq!(std::fs::read(&path).expect("read"), b"hello");
    }
}
