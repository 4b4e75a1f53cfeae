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

/// The few variables a clean child environment keeps from the daemon's.
pub fn base_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for k in [
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
    ] {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.to_string(), v);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env
}

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
    /// An fd on the run's cgroup directory, when the child is to be cloned straight into it
    /// (`CLONE_INTO_CGROUP`); then `cgroup_procs_fd` is not written.
    pub cgroup_dir_fd: Option<RawFd>,
    /// An open `cgroup.procs` fd of the run's v1 memory cgroup (hybrid hosts), written before
    /// exec whichever way the child entered its v2 cgroup.
    pub cgroup_v1_procs_fd: Option<RawFd>,
    /// Run as this uid/gid (when the daemon is privileged and a user is configured).
    pub uid_gid: Option<(u32, u32)>,
    /// The nice value the run starts at (`runs.nice`), whatever the daemon's own is.
    pub nice: i32,
    /// How to start the child.
    pub method: SpawnMethod,
}

/// How children are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnMethod {
    /// `clone(CLONE_VM | CLONE_VFORK)` with the run's own steps before exec (the default).
    Vfork,
    /// fork + pre-exec through process-wrap and std (a fallback operators can choose).
    Fork,
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
    #[error("cannot execute {program:?} in {cwd}: {step} failed: {source}")]
    Step {
        program: String,
        cwd: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("cannot open a pidfd for pid {pid}: {source}")]
    PidFd { pid: i32, source: io::Error },
}

/// The pre-exec steps of a run, as a process-wrap wrapper.
#[derive(Debug)]
struct RunSetup {
    heartbeat_write: RawFd,
    nice: i32,
    cgroup_procs: Option<RawFd>,
    cgroup_v1_procs: Option<RawFd>,
}

impl CommandWrapper for RunSetup {
    fn pre_spawn(&mut self, command: &mut Command, _core: &CommandWrap) -> io::Result<()> {
        let hb = self.heartbeat_write;
        let cg = self.cgroup_procs;
        let v1 = self.cgroup_v1_procs;
        let nice = self.nice;
        // Safety: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls on integers; it neither allocates nor locks.
        unsafe {
            command.pre_exec(move || child_setup(hb, cg, v1, nice));
        }
        Ok(())
    }
}

/// In the child, between fork and exec. Only raw system calls: see the Safety note above.
fn child_setup(
    hb: RawFd,
    cgroup_procs: Option<RawFd>,
    v1_procs: Option<RawFd>,
    nice: i32,
) -> io::Result<()> {
    // std has dropped to the run user by now: raising the nice value from the daemon's needs
    // no privilege, which is why `runs.nice` is never below 0.
    let ok = cgroup_procs.is_none_or(child::enter_cgroup)
        && v1_procs.is_none_or(child::enter_cgroup)
        && child::set_nice(nice)
        && child::install_heartbeat(hb)
        && child::restore_nofile()
        && child::no_new_privs()
        && child::seal_fds();
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The steps both spawn paths take in the child, between clone/fork and exec. Only raw system
/// calls on integers: no allocation, no locks. Each returns false with errno set on failure.
pub(crate) mod child {
    #![allow(unsafe_code)]
    use super::{RawFd, HEARTBEAT_FD};

    /// Write "0" (the writing process itself) to the run cgroup's `cgroup.procs` (v2, or the
    /// v1 memory cgroup's): everything the agent starts is then born inside it.
    pub fn enter_cgroup(procs: RawFd) -> bool {
        // Safety: write(2) of a static byte to an fd the parent prepared.
        unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) == 1 }
    }

    /// Make `hb` the heartbeat fd 3, open across exec.
    pub fn install_heartbeat(hb: RawFd) -> bool {
        // Safety: fcntl/dup2 on fds the parent prepared; dup2 clears close-on-exec.
        unsafe {
            if hb == HEARTBEAT_FD {
                let flags = libc::fcntl(hb, libc::F_GETFD);
                flags >= 0 && libc::fcntl(hb, libc::F_SETFD, flags & !libc::FD_CLOEXEC) >= 0
            } else {
                libc::dup2(hb, HEARTBEAT_FD) >= 0
            }
        }
    }

    /// Give the child the soft open-file limit the daemon started with (it raised its own).
    pub fn restore_nofile() -> bool {
        let Some(soft) = crate::process::limits::child_nofile() else {
            return true;
        };
        // Safety: getrlimit/setrlimit on a local struct.
        unsafe {
            let mut l: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                return false;
            }
            l.rlim_cur = soft.min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0
        }
    }

    /// Set the calling process's nice value (Linux: this thread, the child's only one).
    pub fn set_nice(nice: libc::c_int) -> bool {
        // Safety: setpriority(2) with integer arguments.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
    }

    /// No privileges can be gained through exec from here on.
    pub fn no_new_privs() -> bool {
        // Safety: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 }
    }

    /// Every fd above 3 closes at exec. (Marking rather than closing keeps an exec-error pipe
    /// working until exec, so a failed exec is still reported.)
    pub fn seal_fds() -> bool {
        // Safety: close_range with the CLOEXEC flag only changes fd flags.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                (HEARTBEAT_FD + 1) as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) == 0
        }
    }
}

/// Start a leader. The reaper's lock is held from the clone until the leader is registered.
pub fn spawn(spec: &SpawnSpec, reaper: &Reaper) -> Result<Spawned, SpawnError> {
    start(spec, prepare(spec)?, reaper)
}

/// The part of a spawn that starts nothing: the program found on the child's `PATH`, its
/// pipes, `/dev/null` for stdin. A run task makes it while its STARTING record is being
/// written, so that only the clone waits for the store; dropped unused, it closes its fds.
#[derive(Debug)]
pub struct Prepared(PreparedHow);

#[derive(Debug)]
enum PreparedHow {
    /// Our own clone: everything but the clone itself is ready.
    Clone(CloneParts),
    /// process-wrap's fork makes its own pipes when it starts.
    Wrap,
}

#[derive(Debug)]
struct CloneParts {
    mode: crate::process::vfork::Mode,
    path: PathBuf,
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
    heartbeat: (OwnedFd, OwnedFd),
    null: OwnedFd,
}

/// Prepare the spawn of `spec` (see [`Prepared`]). Its error is what the spawn would report.
pub fn prepare(spec: &SpawnSpec) -> Result<Prepared, SpawnError> {
    let mode = match spec.method {
        SpawnMethod::Vfork => crate::process::vfork::Mode::Vfork,
        // std forks with fork(2), which cannot create the child inside a cgroup: a run that is
        // to be born in its cgroup is forked by our own clone3 (copy-on-write, as fork does)
        // with the same steps before exec; process-wrap forks every other run.
        SpawnMethod::Fork if spec.cgroup_dir_fd.is_some() => crate::process::vfork::Mode::Fork,
        SpawnMethod::Fork => return Ok(Prepared(PreparedHow::Wrap)),
    };
    let program = &spec.argv[0];
    let path = crate::process::vfork::resolve_program(program, &spec.env).map_err(|source| {
        SpawnError::Exec {
            program: program.clone(),
            cwd: spec.cwd.display().to_string(),
            source,
        }
    })?;
    let stdout = pipe()?;
    let stderr = pipe()?;
    let heartbeat = pipe()?;
    let null = OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .open("/dev/null")
            .map_err(SpawnError::Pipes)?,
    );
    Ok(Prepared(PreparedHow::Clone(CloneParts {
        mode,
        path,
        stdout,
        stderr,
        heartbeat,
        null,
    })))
}

/// Start the leader of `spec` from what [`prepare`] made of the same spec.
pub fn start(spec: &SpawnSpec, ready: Prepared, reaper: &Reaper) -> Result<Spawned, SpawnError> {
    match ready.0 {
        PreparedHow::Clone(parts) => spawn_clone(spec, parts, reaper),
        PreparedHow::Wrap => spawn_fork(spec, reaper),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipes(e.into()))
}

/// Both spawn methods when the run's child is cloned into its cgroup, and the vfork method
/// always: our own clone with the run's steps before exec.
fn spawn_clone(
    spec: &SpawnSpec,
    parts: CloneParts,
    reaper: &Reaper,
) -> Result<Spawned, SpawnError> {
    let CloneParts {
        mode,
        path,
        stdout: (out_r, out_w),
        stderr: (err_r, err_w),
        heartbeat: (hb_r, hb_w),
        null,
    } = parts;
    let program = spec.argv[0].clone();
    let cwd = spec.cwd.display().to_string();
    let plan = crate::process::vfork::Plan {
        program: &path,
        argv: &spec.argv,
        env: &spec.env,
        cwd: &spec.cwd,
        stdin: &null,
        stdout: &out_w,
        stderr: &err_w,
        heartbeat: &hb_w,
        cgroup_procs: spec.cgroup_procs_fd,
        cgroup_dir: spec.cgroup_dir_fd,
        cgroup_v1_procs: spec.cgroup_v1_procs_fd,
        uid_gid: spec.uid_gid,
        nice: spec.nice,
    };
    let mut guard = reaper.spawn_guard();
    let pid = match crate::process::vfork::spawn(&plan, mode) {
        Ok(c) => c.pid,
        Err(f) => {
            return Err(if f.step == "exec" {
                SpawnError::Exec {
                    program,
                    cwd,
                    source: f.error,
                }
            } else {
                SpawnError::Step {
                    program,
                    cwd,
                    step: f.step,
                    source: f.error,
                }
            })
        }
    };
    guard.register(pid);
    drop(guard);
    // The parent's copies of the child's ends go now: each pipe sees EOF when the run's last
    // writer is gone.
    drop((out_w, err_w, hb_w, null));
    let pidfd = PidFd::open(pid).map_err(|source| SpawnError::PidFd { pid, source })?;
    Ok(Spawned {
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
        heartbeat: hb_r,
    })
}

/// The fork method without a cgroup to be born in: process-wrap forks.
fn spawn_fork(spec: &SpawnSpec, reaper: &Reaper) -> Result<Spawned, SpawnError> {
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
        nice: spec.nice,
        cgroup_procs: spec.cgroup_procs_fd,
        cgroup_v1_procs: spec.cgroup_v1_procs_fd,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn spec(argv: &[&str], method: SpawnMethod) -> SpawnSpec {
        SpawnSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: PathBuf::from("/"),
            env: base_env(),
            cgroup_procs_fd: None,
            cgroup_dir_fd: None,
            cgroup_v1_procs_fd: None,
            uid_gid: None,
            nice: 0,
            method,
        }
    }

    /// A program that is not there fails at `prepare`, naming it, and `start` hands that
    /// error back without cloning anything.
    #[test]
    fn a_missing_program_fails_in_prepare_and_start_reports_it() {
        let s = spec(&["wf-no-such-program-here"], SpawnMethod::Vfork);
        let ready = prepare(&s);
        assert!(
            matches!(&ready, Err(SpawnError::Exec { program, .. }) if program == "wf-no-such-program-here")
        );
        let e = ready
            .and_then(|p| start(&s, p, &Reaper::new()))
            .expect_err("nothing to start");
        assert!(e.to_string().contains("wf-no-such-program-here"), "{e}");
    }

    /// A prepared spawn that is never started (its run was not recorded) closes its pipes:
    /// a reader on a copy of its stdout sees end of file, not a writer that lingers.
    #[test]
    fn a_prepared_spawn_dropped_unused_closes_its_pipes() {
        let s = spec(&["sh", "-c", "true"], SpawnMethod::Vfork);
        let ready = prepare(&s).expect("prepared");
        let PreparedHow::Clone(parts) = &ready.0 else {
            panic!("the vfork method clones");
        };
        let mut reader = std::fs::File::from(parts.stdout.0.try_clone().expect("dup"));
        nix::fcntl::fcntl(
            &reader,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("nonblocking");
        let mut buf = [0u8; 8];
        let open = reader.read(&mut buf).expect_err("a writer is still open");
        assert_eq!(open.kind(), io::ErrorKind::WouldBlock);
        drop(ready);
        assert_eq!(reader.read(&mut buf).expect("end of file"), 0);
    }

    /// What `prepare` made is what the child gets: its stdout pipe carries the child's output,
    /// and the fork method without a cgroup leaves the pipes to process-wrap.
    #[test]
    fn a_prepared_spawn_starts_on_its_own_pipes() {
        let fork = spec(&["sh", "-c", "true"], SpawnMethod::Fork);
        assert!(matches!(prepare(&fork), Ok(Prepared(PreparedHow::Wrap))));
        let s = spec(&["sh", "-c", "echo started"], SpawnMethod::Vfork);
        let reaper = Reaper::new();
        let ready = prepare(&s).expect("prepared");
        let spawned = start(&s, ready, &reaper).expect("started");
        let mut out = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut out)
            .expect("stdout");
        assert_eq!(out, "started\n");
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
    }
}
