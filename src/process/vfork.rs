//! The fast spawn: `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does it, with the run's own
//! steps between clone and exec. A plain fork copies the page tables of the whole daemon and the
//! exec then tears that copy down again; with a shared address space and the parent suspended
//! until exec, neither happens, which halves the daemon's CPU per spawn.
//!
//! Everything the child needs is prepared by the parent beforehand (C strings, the resolved
//! program path, fds), because the child shares the parent's memory and may only make system
//! calls: no allocation, no locks, no Rust runtime. All signals are blocked around the clone and
//! the child resets every handled signal to its default before unblocking, so no handler of the
//! daemon ever runs in the child. A failing step stores its errno and step number in memory the
//! parent reads after the child has exited.
//!
//! Where the run has a cgroup and the kernel has `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7+),
//! the child is created inside the run's cgroup by the clone itself. The other route, the child
//! writing to the cgroup's `cgroup.procs` before exec, migrates a process: the kernel then takes
//! the cgroup threadgroup lock for writing, which waits for an RCU grace period when no other
//! migration happened in the last few milliseconds (8 ms median, up to 30 ms after a pause,
//! under 1 ms back to back). Born in the cgroup, the child skips that lock, so a spawn after a
//! pause is as fast as one in a burst. Either way the child is in its cgroup before it executes
//! anything of the run. `clone3` has no libc wrapper and its child starts on the new stack at
//! the syscall's return, so it is issued from a few lines of assembly (x86_64; other
//! architectures use the `cgroup.procs` route).
//!
//! The same clone, without a shared address space, also serves the fork spawn method
//! (`Mode::Fork`): the child then reports a failing step through a close-on-exec pipe.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::process::spawn::child;

/// Which step of the child failed.
const STEPS: [&str; 10] = [
    "",
    "setpgid",
    "entering the run's cgroup",
    "setting up fds 0-3",
    "dropping to the run user",
    "chdir",
    "no_new_privs and the open-file limit",
    "close_range",
    "exec",
    "setting the run's nice value",
];

/// Everything the child reads; built by the parent, immutable once the clone starts.
struct ChildPlan {
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    heartbeat: RawFd,
    cgroup_procs: RawFd,
    /// The v1 memory cgroup's `cgroup.procs` (hybrid hosts), or -1.
    cgroup_v1_procs: RawFd,
    /// A close-on-exec pipe for (step, errno) when the child does not share our memory, or -1.
    report: RawFd,
    uid_gid: Option<(libc::uid_t, libc::gid_t)>,
    /// The run's nice value (`runs.nice`).
    nice: i32,
    /// The parent's signal mask, restored in the child before exec.
    old_mask: libc::sigset_t,
    /// Written by the child on failure: (step, errno).
    failure: (i32, i32),
}

/// A started child and how it failed, if it did.
pub struct Cloned {
    pub pid: i32,
}

/// Why a vfork spawn failed.
pub struct Failed {
    pub step: &'static str,
    pub error: io::Error,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

/// Find `program` as execvp would, in the child's PATH. Errors like exec would report them.
pub fn resolve_program(program: &str, env: &BTreeMap<String, String>) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env
        .get("PATH")
        .map(|s| s.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut denied = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        let Ok(c) = cstring(candidate.as_os_str()) else {
            continue;
        };
        // Safety: access(2) with a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            if candidate.is_file() {
                return Ok(candidate);
            }
            // An executable directory: exec would say EACCES.
            denied = true;
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            _ => denied = true,
        }
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

/// The stack a vforked child runs on until exec: one per spawning thread, made once. Nothing
/// reads it before the child writes it, so it is never zeroed.
const CHILD_STACK_BYTES: usize = 128 * 1024;
thread_local! {
    static CHILD_STACK: std::cell::RefCell<Box<[std::mem::MaybeUninit<u8>]>> =
        std::cell::RefCell::new(Box::new_uninit_slice(CHILD_STACK_BYTES));
}

/// The child: only raw system calls on what the plan holds; never returns on success.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // Safety (whole function): `arg` is the parent's ChildPlan, alive and unchanged while the
    // parent is suspended (CLONE_VFORK); only async-signal-safe calls follow.
    unsafe {
        let plan = &mut *(arg as *mut ChildPlan);
        let fail = |plan: &mut ChildPlan, step: i32| -> libc::c_int {
            let errno = *libc::__errno_location();
            plan.failure = (step, errno);
            if plan.report >= 0 {
                let msg = [step, errno];
                libc::write(
                    plan.report,
                    msg.as_ptr().cast(),
                    std::mem::size_of_val(&msg),
                );
            }
            libc::_exit(127)
        };
        // No handler of the daemon may run here: back to defaults, then the old mask.
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_DFL || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &plan.old_mask, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            return fail(plan, 1);
        }
        if plan.cgroup_procs >= 0 && !child::enter_cgroup(plan.cgroup_procs) {
            return fail(plan, 2);
        }
        if plan.cgroup_v1_procs >= 0 && !child::enter_cgroup(plan.cgroup_v1_procs) {
            return fail(plan, 2);
        }
        for (from, to) in [(plan.stdin, 0), (plan.stdout, 1), (plan.stderr, 2)] {
            if libc::dup2(from, to) < 0 {
                return fail(plan, 3);
            }
        }
        if !child::install_heartbeat(plan.heartbeat) {
            return fail(plan, 3);
        }
        // The daemon's own priority (`daemon.nice`) is not the run's.
        if !child::set_nice(plan.nice) {
            return fail(plan, 9);
        }
        if let Some((uid, gid)) = plan.uid_gid {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return fail(plan, 4);
            }
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            return fail(plan, 5);
        }
        if !child::restore_nofile() || !child::no_new_privs() {
            return fail(plan, 6);
        }
        if !child::seal_fds() {
            return fail(plan, 7);
        }
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
        );
        fail(plan, 8)
    }
}

/// What to start, with fds the caller opened (all close-on-exec in the daemon).
pub struct Plan<'a> {
    pub program: &'a Path,
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub cwd: &'a Path,
    pub stdin: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    pub heartbeat: &'a OwnedFd,
    pub cgroup_procs: Option<RawFd>,
    /// An fd on the run's cgroup directory: the child is cloned into it (`CLONE_INTO_CGROUP`)
    /// and `cgroup_procs` is not used.
    pub cgroup_dir: Option<RawFd>,
    /// The v1 memory cgroup's `cgroup.procs`, written whichever way the v2 cgroup is entered
    /// (`CLONE_INTO_CGROUP` is v2 only).
    pub cgroup_v1_procs: Option<RawFd>,
    pub uid_gid: Option<(u32, u32)>,
    /// The nice value the run starts at.
    pub nice: i32,
}

/// How the child relates to the daemon until exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Shared address space, the daemon's thread suspended until exec (`CLONE_VM|CLONE_VFORK`).
    Vfork,
    /// A copy-on-write fork; the result of exec comes back through a pipe.
    Fork,
}

/// `struct clone_args` of clone3(2), up to the `cgroup` field (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Issue clone3 and run `f(arg)` in the child on the stack the args name; the child never
/// comes back from here (it execs or exits). Returns the child's pid or -errno.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_call(
    args: &CloneArgs,
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // Safety: the caller gives a valid clone_args with a stack the child may use. In the
    // child (rax == 0) only r12/r13, which the syscall leaves as they were, are read; it calls
    // `f` on the new, 16-byte-aligned stack and exits if `f` ever returns.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Whether runs can be cloned straight into their cgroups here: `Err` says why not.
///
/// Asks the kernel with an fd that is not a cgroup: a kernel without clone3 (or a seccomp
/// filter that hides it) says ENOSYS, one without `CLONE_INTO_CGROUP` EINVAL, and one with it
/// EBADF; no process is created.
pub fn clone_into_cgroup_support() -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the clone3 spawn is built for x86_64 only".into());
    }
    let null =
        std::fs::File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: null.as_raw_fd() as u64,
        ..Default::default()
    };
    // Safety: clone3 with a valid clone_args; if it ever created a child (it cannot with a
    // non-cgroup fd), that child exits at once and the parent reaps it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // Safety: in the (impossible) child: leave at once.
        unsafe { libc::_exit(0) };
    }
    if ret > 0 {
        // Safety: reap our own child.
        unsafe { libc::waitpid(ret as i32, std::ptr::null_mut(), 0) };
        return Ok(());
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EBADF) => Ok(()),
        Some(libc::ENOSYS) => {
            Err("the kernel has no clone3 (Linux 5.3+), or a seccomp filter hides it".into())
        }
        Some(libc::EINVAL) | Some(libc::E2BIG) => {
            Err("the kernel has no CLONE_INTO_CGROUP (Linux 5.7+)".into())
        }
        _ => Err(format!("clone3 probe: {}", io::Error::last_os_error())),
    }
}

/// Set once the kernel has refused the real-time wait (no CAP_SYS_NICE, or a unit with
/// `RestrictRealtime=yes`): spawns then wait at normal priority without asking again.
static URGENT_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The calling thread at real-time priority for the wait on a vfork child, back to normal
/// scheduling when dropped.
///
/// The thread sleeps in the kernel until the child has exec'd, and the child's exit from
/// vfork wakes it on the child's own CPU, behind the new program's start-up: on an idle
/// machine the Spawn then waits milliseconds for a CPU while the other one sits idle. As a
/// real-time thread (lowest priority, round-robin) it runs as soon as it wakes and goes back to
/// normal scheduling at once; it never computes while raised, it sleeps until the child has
/// exec'd. `SCHED_RESET_ON_FORK` makes the child start with normal scheduling.
struct UrgentWait {
    raised: bool,
}

impl UrgentWait {
    fn raise() -> UrgentWait {
        use std::sync::atomic::Ordering;
        if URGENT_REFUSED.load(Ordering::Relaxed) {
            return UrgentWait { raised: false };
        }
        const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;
        let raised = set_scheduler(libc::SCHED_RR | SCHED_RESET_ON_FORK, 1);
        if !raised {
            URGENT_REFUSED.store(true, Ordering::Relaxed);
            tracing::info!(
                error = %io::Error::last_os_error(),
                "spawns wait for exec at normal priority (real-time scheduling refused)"
            );
        }
        UrgentWait { raised }
    }
}

impl Drop for UrgentWait {
    fn drop(&mut self) {
        if self.raised {
            set_scheduler(libc::SCHED_OTHER, 0);
        }
    }
}

/// sched_setscheduler on the calling thread.
fn set_scheduler(policy: libc::c_int, priority: libc::c_int) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // Safety: sched_setscheduler on the calling thread (0) with a valid param.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// Start the child. The caller holds the reaper's lock; on failure the child is already reaped.
pub fn spawn(p: &Plan<'_>, mode: Mode) -> Result<Cloned, Failed> {
    let bad = |step: &'static str, error: io::Error| Failed { step, error };
    let program = cstring(p.program.as_os_str()).map_err(|e| bad("exec", e))?;
    let argv_c: Vec<CString> = p
        .argv
        .iter()
        .map(|a| cstring(OsStr::new(a)))
        .collect::<io::Result<_>>()
        .map_err(|e| bad("exec", e))?;
    let env_c: Vec<CString> = p
        .env
        .iter()
        .map(|(k, v)| cstring(OsStr::new(&format!("{k}={v}"))))
        .collect::<io::Result<_>>()
        .map_err(|e| bad("exec", e))?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cwd = cstring(p.cwd.as_os_str()).map_err(|e| bad("chdir", e))?;
    // A forked child reports a failing step here; exec closes its end.
    let report = match mode {
        Mode::Fork => Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| bad("clone", e.into()))?,
        ),
        Mode::Vfork => None,
    };

    // Safety: sigset_t is plain data; sigfillset/pthread_sigmask fill and apply it.
    let (all, mut old) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        (all, std::mem::zeroed::<libc::sigset_t>())
    };
    let mut plan = Box::new(ChildPlan {
        program,
        argv,
        envp,
        cwd,
        stdin: p.stdin.as_raw_fd(),
        stdout: p.stdout.as_raw_fd(),
        stderr: p.stderr.as_raw_fd(),
        heartbeat: p.heartbeat.as_raw_fd(),
        cgroup_procs: if cfg!(target_arch = "x86_64") && p.cgroup_dir.is_some() {
            -1
        } else {
            p.cgroup_procs.unwrap_or(-1)
        },
        cgroup_v1_procs: p.cgroup_v1_procs.unwrap_or(-1),
        report: report.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        uid_gid: p.uid_gid,
        nice: p.nice,
        old_mask: unsafe { std::mem::zeroed() },
        failure: (0, 0),
    });
    let shared = match mode {
        Mode::Vfork => (libc::CLONE_VM | libc::CLONE_VFORK) as u64,
        Mode::Fork => 0,
    };
    // Raised until the child has exec'd (or failed): see `UrgentWait`.
    let urgent = UrgentWait::raise();
    // Safety: the stack grows down from its 16-byte-aligned top; with CLONE_VM the child runs
    // on it only while this function waits (CLONE_VFORK), so the thread's stack and `plan`
    // outlive it; a forked child has its own copy of both. Signals are blocked across the
    // clone and restored right after.
    let pid = CHILD_STACK.with(|stack| unsafe {
        let mut stack = stack.borrow_mut();
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        plan.old_mask = old;
        let base = stack.as_mut_ptr().cast::<u8>();
        let top = base.add(stack.len());
        let top = (top as usize & !0xf) as *mut libc::c_void;
        let arg = (&mut *plan as *mut ChildPlan).cast();
        let (pid, err) = match p.cgroup_dir {
            #[cfg(target_arch = "x86_64")]
            Some(dir) => {
                let args = CloneArgs {
                    flags: shared | CLONE_INTO_CGROUP,
                    exit_signal: libc::SIGCHLD as u64,
                    stack: base as u64,
                    stack_size: (top as usize - base as usize) as u64,
                    cgroup: dir as u64,
                    ..Default::default()
                };
                let ret = clone3_call(&args, child_main, arg);
                if ret < 0 {
                    (-1, io::Error::from_raw_os_error(-ret as i32))
                } else {
                    (ret as i32, io::Error::from_raw_os_error(0))
                }
            }
            _ => {
                let pid = libc::clone(child_main, top, shared as i32 | libc::SIGCHLD, arg);
                (pid, io::Error::last_os_error())
            }
        };
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(bad("clone", err));
        }
        Ok(pid)
    })?;
    if let Some((r, w)) = report {
        // Our copy of the write end goes, so the read sees EOF once the child has exec'd.
        drop(w);
        let mut msg = [0i32; 2];
        let n = loop {
            // Safety: read(2) into a local buffer of the right size.
            let n = unsafe {
                libc::read(
                    r.as_raw_fd(),
                    msg.as_mut_ptr().cast(),
                    std::mem::size_of_val(&msg),
                )
            };
            if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n == std::mem::size_of_val(&msg) as isize {
            plan.failure = (msg[0], msg[1]);
        }
    }
    drop(urgent);
    let (step, errno) = plan.failure;
    if step != 0 {
        // The child has exited already (exec failure or an earlier step): reap it here.
        let mut status = 0;
        // Safety: waitpid on our own child, which nobody else reaps (the caller holds the lock).
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(Failed {
            step: STEPS.get(step as usize).copied().unwrap_or("spawn"),
            error: io::Error::from_raw_os_error(errno),
        });
    }
    Ok(Cloned { pid })
}
