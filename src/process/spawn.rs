//! Starting a run's leader: its own process group, its cgroup (entered before exec), stdin from
//! /dev/null, stdout and stderr as pipes, the heartbeat pipe as fd 3, a clean environment, no new
//! privileges, and no other fd of the daemon (every fd above 3 is close-on-exec in the child).
//!
//! process-wrap (the maintained successor of command-group) builds the command and makes the
//! child a group leader; our own wrapper adds the pre-exec steps. The daemon never uses
//! process-wrap's wait or kill: it owns reaping (see `reaper`) and signals through pidfds.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use process_wrap::std::{CommandWrap, CommandWrapper, ProcessGroup};

use crate::process::pidfd::PidFd;
use crate::process::reaper::Reaper;

/// The fd number the heartbeat pipe has in the child.
pub const HEARTBEAT_FD: RawFd = 3;

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The child's whole environment (the daemon's own is not inherited).
    pub env: BTreeMap<String, String>,
    /// An open `cgroup.procs` fd of the run's cgroup to enter before exec.
    pub cgroup_procs_fd: Option<RawFd>,
    /// Run as this uid/gid (when the daemon is privileged and a user is configured).
    pub uid_gid: Option<(u32, u32)>,
}

/// A started leader and the parent's ends of its pipes.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub pidfd: PidFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub heartbeat: OwnedFd,
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create pipes: {0}")]
    Pipes(io::Error),
    #[error("cannot execute {program:?} in {cwd}: {source}")]
    Exec {
        program: String,
        cwd: String,
        source: io::Error,
    },
    #[error("cannot open a pidfd for pid {pid}: {source}")]
    PidFd { pid: i32, source: io::Error },
}

/// The pre-exec steps of a run, as a process-wrap wrapper.
#[derive(Debug)]
struct RunSetup {
    heartbeat_write: RawFd,
    cgroup_procs: Option<RawFd>,
}

impl CommandWrapper for RunSetup {
    fn pre_spawn(&mut self, command: &mut Command, _core: &CommandWrap) -> io::Result<()> {
        let hb = self.heartbeat_write;
        let cg = self.cgroup_procs;
        // Safety: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls on integers; it neither allocates nor locks.
        unsafe {
            command.pre_exec(move || child_setup(hb, cg));
        }
        Ok(())
    }
}

/// In the child, between fork and exec. Only raw system calls: see the Safety note above.
fn child_setup(hb: RawFd, cgroup_procs: Option<RawFd>) -> io::Result<()> {
    // Safety (whole function): plain system calls on fds the parent prepared.
    unsafe {
        if let Some(fd) = cgroup_procs {
            // "0" means the writing process itself: enter the run's cgroup before exec, so
            // everything the agent starts is born inside it.
            let one = b"0";
            if libc::write(fd, one.as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        if hb == HEARTBEAT_FD {
            let flags = libc::fcntl(hb, libc::F_GETFD);
            if flags < 0 || libc::fcntl(hb, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
        } else if libc::dup2(hb, HEARTBEAT_FD) < 0 {
            // dup2 clears close-on-exec on the new fd.
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Every fd above 3 closes at exec. (Marking rather than closing keeps std's own
        // exec-error pipe working, so a failed exec is still reported.)
        if libc::syscall(
            libc::SYS_close_range,
            (HEARTBEAT_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Start a leader. The reaper's lock is held from fork until the leader is registered.
pub fn spawn(spec: &SpawnSpec, reaper: &Reaper) -> Result<Spawned, SpawnError> {
    let (hb_read, hb_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SpawnError::Pipes(e.into()))?;
    let program = spec.argv[0].clone();
    let mut cmd = CommandWrap::with_new(&program, |c| {
        c.args(&spec.argv[1..])
            .env_clear()
            .envs(&spec.env)
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = spec.uid_gid {
            c.uid(uid).gid(gid);
        }
    });
    cmd.wrap(ProcessGroup::leader());
    cmd.wrap(RunSetup {
        heartbeat_write: hb_write.as_raw_fd(),
        cgroup_procs: spec.cgroup_procs_fd,
    });

    let mut guard = reaper.spawn_guard();
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        program: program.clone(),
        cwd: spec.cwd.display().to_string(),
        source,
    })?;
    let pid = child.id() as i32;
    guard.register(pid);
    drop(guard);
    // The parent's copy of the write end goes now: the heartbeat pipe sees EOF when the run's
    // last writer is gone.
    drop(hb_write);

    let pidfd = PidFd::open(pid).map_err(|source| SpawnError::PidFd { pid, source })?;
    let stdout = child
        .stdout()
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| SpawnError::Pipes(io::Error::other("stdout pipe missing")))?;
    let stderr = child
        .stderr()
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| SpawnError::Pipes(io::Error::other("stderr pipe missing")))?;
    // Dropping the wrapper neither waits for nor kills the child: the run task owns it now.
    drop(child);
    Ok(Spawned {
        pid,
        pidfd,
        stdout,
        stderr,
        heartbeat: hb_read,
    })
}
