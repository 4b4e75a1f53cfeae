//! The raw baseline: the same work an orchestrator would do itself, without the daemon. fork and
//! exec into a new process group, stdin from /dev/null, stdout and stderr as pipes (or a file),
//! a heartbeat pipe at fd 3, a pidfd on the leader, killpg and pidfd signals to end it, and
//! waitpid once the group is empty. The daemon's overhead is measured against this.
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::{cleanup, sys};

/// Where a raw run's stdout goes.
pub enum Stdout {
    Pipe,
    File(File),
}

/// A raw run's leader and our ends of its pipes.
#[derive(Debug)]
pub struct RawRun {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// Our ends of stdout and stderr, held open for the run's life (the agents here print
    /// nothing; a closed pipe would turn a stray write into SIGPIPE).
    _stdout: Option<OwnedFd>,
    _stderr: Option<OwnedFd>,
    pub heartbeat: Option<OwnedFd>,
    reaped: bool,
}

/// The environment a raw run gets: the few variables the daemon also passes, fd 3 announced,
/// and the caller's.
fn child_env(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = wf_supervisor::process::spawn::base_env();
    env.insert("WF_HEARTBEAT_FD".into(), "3".into());
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Start `argv` as the leader of a new process group.
pub fn spawn(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    stdout: Stdout,
) -> io::Result<RawRun> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("empty argv"))?;
    let (hb_read, hb_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(child_env(env))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    match stdout {
        Stdout::Pipe => cmd.stdout(Stdio::piped()),
        Stdout::File(f) => cmd.stdout(Stdio::from(f)),
    };
    sys::pre_exec_heartbeat_fd(&mut cmd, hb_write.as_raw_fd());
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    cleanup::own(pid);
    drop(hb_write);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // Cannot hold it: end it now rather than leak it.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            cleanup::disown(pid);
            return Err(e);
        }
    };
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // Dropping std's handle neither waits nor kills: we reap the leader ourselves.
    drop(child);
    Ok(RawRun {
        pid,
        pidfd,
        _stdout: stdout,
        _stderr: stderr,
        heartbeat: Some(hb_read),
        reaped: false,
    })
}

impl RawRun {
    /// Signal the whole process group. Sound only while the leader is unreaped (the group id
    /// is still ours), which `RawRun` guarantees until `reap`.
    pub fn signal_group(&self, sig: Signal) {
        if !self.reaped && self.pid > 1 {
            let _ = killpg(Pid::from_raw(self.pid), sig);
        }
    }

    /// Our end of the run's stdout pipe, to read it (a `Stdout::Pipe` run only).
    pub fn take_stdout(&mut self) -> Option<OwnedFd> {
        self._stdout.take()
    }

    /// Wait for the leader's exit status (blocking). Call once the group is empty.
    pub fn reap(&mut self) -> Option<WaitStatus> {
        if self.reaped {
            return None;
        }
        let st = waitpid(Pid::from_raw(self.pid), None).ok();
        self.reaped = true;
        cleanup::disown(self.pid);
        st
    }
}

impl Drop for RawRun {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
            self.reap();
        }
    }
}
