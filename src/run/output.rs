//! Output drains: each pipe of a run is read from the moment of spawn, in its own task, in bounded
//! chunks, whatever the agent prints (a pipe nobody drains blocks the agent at 64 KiB). stdout and
//! stderr go to the run's log files; heartbeat lines on fd 3 are counted and reported to the core,
//! coalesced so that a chatty agent cannot flood the core's queue.
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::supervisor::Msg;

const CHUNK: usize = 64 * 1024;

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

/// Copy a pipe into a log file until EOF. Returns the bytes copied.
pub async fn drain_to_file(
    fd: OwnedFd,
    mut file: File,
    stream: Stream,
    progress: watch::Sender<OutputProgress>,
) -> u64 {
    let mut rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            warn!(error = %e, ?stream, "cannot watch output pipe");
            return 0;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut write_failed = false;
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!(error = %e, ?stream, "output pipe read failed");
                break;
            }
        };
        // Keep draining even when the disk refuses: the agent must never block on us.
        if !write_failed {
            if let Err(e) = file.write_all(&buf[..n]) {
                warn!(error = %e, ?stream, "log write failed; output from here on is dropped");
                write_failed = true;
            }
        }
        total += n as u64;
        progress.send_modify(|p| match stream {
            Stream::Stdout => p.stdout = total,
            Stream::Stderr => p.stderr = total,
        });
    }
    let _ = file.flush();
    total
}

/// Count heartbeat lines on fd 3 until EOF, reporting them to the core at most every 20 ms per
/// run when the core is busy. Returns the number of lines.
pub async fn drain_heartbeats(fd: OwnedFd, run_id: String, core: mpsc::Sender<Msg>) -> u64 {
    let mut rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            warn!(run_id, error = %e, "cannot watch heartbeat pipe");
            return 0;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    let mut pending = 0u64;
    loop {
        let read = if pending > 0 {
            match tokio::time::timeout(Duration::from_millis(20), rx.read(&mut buf)).await {
                Ok(r) => Some(r),
                Err(_) => None,
            }
        } else {
            Some(rx.read(&mut buf).await)
        };
        match read {
            Some(Ok(0)) => break,
            Some(Ok(n)) => {
                let lines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                pending += lines;
                total += lines;
            }
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Some(Err(e)) => {
                warn!(run_id, error = %e, "heartbeat pipe read failed");
                break;
            }
            None => {}
        }
        if pending > 0 {
            let msg = Msg::Heartbeat {
                run_id: run_id.clone(),
                count: pending,
                at: crate::time::now_ms(),
            };
            match core.try_send(msg) {
                Ok(()) => pending = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    }
    if pending > 0 {
        let _ = core
            .send(Msg::Heartbeat {
                run_id,
                count: pending,
                at: crate::time::now_ms(),
            })
            .await;
    }
    total
}
