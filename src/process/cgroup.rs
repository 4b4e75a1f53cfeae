//! Per-run cgroups (v2). A run's cgroup holds everything the run started, including setsid
//! escapees, so a kill of the cgroup ends the whole run (invariant 3). The child enters its
//! cgroup before it executes anything: cloned straight into it (`clone3` with
//! `CLONE_INTO_CGROUP`, through an fd on the cgroup's directory) where the kernel can, else by
//! writing to an fd on its `cgroup.procs` that the parent opened (see `vfork` for why the first
//! is faster after a pause).
//!
//! Where the v2 hierarchy has no memory controller but a v1 one is mounted (the hybrid layout),
//! each run cgroup carries a v1 memory cgroup beside it (see `cgroup_v1`): made, limited,
//! entered before exec and removed together with the v2 one.
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::config::{CgroupEntryMode, Config, ContainmentMode};
use crate::process::cgroup_v1::{MemoryController, MemoryV1Root, RunMemoryV1};
use crate::process::pidfd::PidFd;

/// The writable cgroup v2 directory under which run cgroups are made.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    path: PathBuf,
    entry: CgroupEntry,
    memory: MemoryController,
}

/// How a run's leader gets into its cgroup before exec; chosen once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupEntry {
    /// Created inside it: `clone3(CLONE_INTO_CGROUP)` (Linux 5.7+).
    Clone3,
    /// The child writes "0" to the cgroup's `cgroup.procs` before exec; `reason` says why
    /// clone3 is not used.
    ProcsWrite { reason: String },
}

impl CgroupEntry {
    /// Decide from the config's `containment.cgroup_entry` and what the kernel offers.
    pub fn detect(configured: CgroupEntryMode) -> CgroupEntry {
        if configured == CgroupEntryMode::ProcsWrite {
            return CgroupEntry::ProcsWrite {
                reason: "containment.cgroup_entry is \"procs-write\"".into(),
            };
        }
        match crate::process::vfork::clone_into_cgroup_support() {
            Ok(()) => CgroupEntry::Clone3,
            Err(reason) => CgroupEntry::ProcsWrite { reason },
        }
    }

    /// "clone3" or "procs-write", as GetHealth reports it.
    pub fn name(&self) -> &'static str {
        match self {
            CgroupEntry::Clone3 => "clone3",
            CgroupEntry::ProcsWrite { .. } => "procs-write",
        }
    }
}

/// What containment the daemon chose at start, and why.
#[derive(Debug, Clone)]
pub enum Containment {
    Cgroup(CgroupRoot),
    ProcessGroup { reason: String },
}

impl Containment {
    /// Decide from the config and what this machine offers. `Err` only when the config demands
    /// cgroups and none can be had.
    pub fn detect(config: &Config) -> Result<Containment, String> {
        if config.containment == ContainmentMode::ProcessGroup {
            return Ok(Containment::ProcessGroup {
                reason: "containment.mode is \"process-group\"".into(),
            });
        }
        match CgroupRoot::find(config.cgroup_root.as_deref()) {
            Ok(mut root) => {
                if config.cgroup_entry != CgroupEntryMode::Auto {
                    root.entry = CgroupEntry::detect(config.cgroup_entry);
                }
                Ok(Containment::Cgroup(root))
            }
            Err(reason) if config.containment == ContainmentMode::Auto => {
                Ok(Containment::ProcessGroup { reason })
            }
            Err(reason) => Err(format!("containment.mode is \"cgroup\" but {reason}")),
        }
    }

    /// "cgroup" or "process-group", as `Run.containment` reports it.
    pub fn name(&self) -> &'static str {
        match self {
            Containment::Cgroup(_) => "cgroup",
            Containment::ProcessGroup { .. } => "process-group",
        }
    }

    /// How run leaders enter their cgroups ("clone3", "procs-write"), or "" without cgroups.
    pub fn entry_name(&self) -> &'static str {
        match self {
            Containment::Cgroup(root) => root.entry.name(),
            Containment::ProcessGroup { .. } => "",
        }
    }

    /// Which memory controller run cgroups have ("cgroup v2", "cgroup v1"), or "none" (also
    /// without cgroups: memory figures then come from /proc and no limit applies).
    pub fn memory_controller_name(&self) -> &'static str {
        match self {
            Containment::Cgroup(root) => root.memory.name(),
            Containment::ProcessGroup { .. } => "none",
        }
    }
}

impl CgroupRoot {
    /// Find (and create) the root: the configured one, else `runs/` inside the daemon's own
    /// cgroup when systemd delegated it, else `<cgroup2 mount>/wf-supervisor`.
    pub fn find(configured: Option<&Path>) -> Result<CgroupRoot, String> {
        let path = match configured {
            Some(p) => p.to_path_buf(),
            None => {
                let mount = cgroup2_mount()
                    .ok_or_else(|| "no cgroup2 file system is mounted".to_string())?;
                let own = own_cgroup2_path().unwrap_or_else(|| "/".to_string());
                if std::env::var_os("INVOCATION_ID").is_some() && own.ends_with(".service") {
                    let svc = mount.join(own.trim_start_matches('/'));
                    delegate_setup(&svc);
                    svc.join("runs")
                } else {
                    mount.join("wf-supervisor")
                }
            }
        };
        fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create cgroup root {}: {e}", path.display()))?;
        if !path.join("cgroup.procs").exists() {
            return Err(format!("{} is not a cgroup v2 directory", path.display()));
        }
        // Probe: can we make and remove a child here?
        let probe = path.join(format!("probe-{}", std::process::id()));
        fs::create_dir(&probe)
            .map_err(|e| format!("cannot create cgroups under {}: {e}", path.display()))?;
        let _ = fs::remove_dir(&probe);
        // Let run cgroups have memory and pids limits where those controllers are available.
        enable_controllers(&path);
        let memory = MemoryController::detect(&path);
        Ok(CgroupRoot {
            path,
            entry: CgroupEntry::detect(CgroupEntryMode::Auto),
            memory,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entry(&self) -> &CgroupEntry {
        &self.entry
    }

    /// Which memory controller run cgroups have.
    pub fn memory(&self) -> &MemoryController {
        &self.memory
    }

    /// Remove the v1 memory cgroups of runs not in `live` (at start, after reconciliation);
    /// nothing to do where memory is in v2.
    pub fn sweep_memory_v1(&self, live: &dyn Fn(&str) -> bool) -> crate::process::cgroup_v1::Sweep {
        match &self.memory {
            MemoryController::V1(v1) => v1.sweep(live),
            _ => Default::default(),
        }
    }

    /// Make the run's cgroup and open what the child enters it through: its directory (to be
    /// cloned into) or its `cgroup.procs` (to write to before exec). The v1 memory cgroup, where
    /// memory is on v1, comes with a memory limit (`apply_limits`).
    pub fn create_run(&self, run_id: &str) -> io::Result<RunCgroup> {
        let path = make_dir_under(&self.path, run_id)?;
        if self.entry == CgroupEntry::Clone3 {
            // std opens with O_CLOEXEC; O_DIRECTORY through the custom flags.
            let dir = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY)
                .open(&path)?;
            return Ok(RunCgroup {
                path,
                procs: None,
                dir: Some(OwnedFd::from(dir)),
                memory_v1: None,
                memory_v1_root: self.memory_v1_root(),
            });
        }
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))?;
        Ok(RunCgroup {
            path,
            procs: Some(OwnedFd::from(procs)),
            dir: None,
            memory_v1: None,
            memory_v1_root: self.memory_v1_root(),
        })
    }

    /// The run cgroup of `run_id` if it exists (for recovery), with its v1 memory cgroup if
    /// that exists too.
    pub fn existing_run(&self, run_id: &str) -> Option<RunCgroup> {
        let path = self.path.join(run_id);
        path.is_dir().then(|| RunCgroup {
            path,
            procs: None,
            dir: None,
            memory_v1: match &self.memory {
                MemoryController::V1(v1) => v1.existing_run(run_id),
                _ => None,
            },
            memory_v1_root: None,
        })
    }

    fn memory_v1_root(&self) -> Option<MemoryV1Root> {
        match &self.memory {
            MemoryController::V1(v1) => Some(v1.clone()),
            _ => None,
        }
    }
}

/// Under systemd with `Delegate=yes` the daemon starts in the service's cgroup. cgroup v2 lets a
/// cgroup hand controllers to its children only when it has no processes of its own, so the
/// daemon moves itself into a `supervisor` leaf and enables memory and pids for the service's
/// children (`runs/` among them). Failures are logged: runs then just have no limits.
fn delegate_setup(svc: &Path) {
    let leaf = svc.join("supervisor");
    let moved = fs::create_dir_all(&leaf).and_then(|()| fs::write(leaf.join("cgroup.procs"), b"0"));
    match moved {
        Ok(()) => enable_controllers(svc),
        Err(e) => tracing::warn!(
            cgroup = %svc.display(),
            error = %e,
            "cannot move the daemon into its own leaf cgroup; runs get no memory/pids limits"
        ),
    }
}

/// Enable the memory and pids controllers for the children of `dir`, where available.
fn enable_controllers(dir: &Path) {
    let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for c in ["memory", "pids"] {
        if available.split_whitespace().any(|a| a == c) {
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
                tracing::debug!(cgroup = %dir.display(), controller = c, error = %e, "cannot enable controller");
            }
        }
    }
}

/// One run's cgroup.
#[derive(Debug)]
pub struct RunCgroup {
    path: PathBuf,
    procs: Option<OwnedFd>,
    dir: Option<OwnedFd>,
    /// The run's v1 memory cgroup, where memory is on a v1 hierarchy and the run has a limit.
    memory_v1: Option<RunMemoryV1>,
    /// Where that is made, where memory is on v1.
    memory_v1_root: Option<MemoryV1Root>,
}

impl RunCgroup {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fd the child writes "0" to before exec (close-on-exec, so it never reaches the agent).
    pub fn procs_fd(&self) -> Option<RawFd> {
        self.procs.as_ref().map(|f| f.as_raw_fd())
    }

    /// The fd on the cgroup's directory the child is cloned into (close-on-exec too).
    pub fn dir_fd(&self) -> Option<RawFd> {
        self.dir.as_ref().map(|f| f.as_raw_fd())
    }

    /// The fd on the v1 memory cgroup's `cgroup.procs` the child writes "0" to before exec
    /// (as well as entering the v2 cgroup), where memory is on v1.
    pub fn memory_v1_procs_fd(&self) -> Option<RawFd> {
        self.memory_v1.as_ref().and_then(|m| m.procs_fd())
    }

    /// The directory of the run's v1 memory cgroup, where memory is on v1.
    pub fn memory_v1_path(&self) -> Option<&Path> {
        self.memory_v1.as_ref().map(|m| m.path())
    }

    /// Apply the run's limits (`memory.max`; `pids.max`). Returns what could not be applied.
    ///
    /// Where memory is on v1, a memory limit makes the run's v1 memory cgroup, with
    /// `memory.limit_in_bytes`, for the child to enter before exec. Only then: entering it is a
    /// cgroup migration, which after a pause costs the spawn an RCU grace period (milliseconds;
    /// see `vfork`), so a run without a limit keeps the fast spawn and its memory figures come
    /// from /proc.
    pub fn apply_limits(&mut self, memory_max: Option<u64>, pids_max: Option<u64>) -> Vec<String> {
        let mut missed = Vec::new();
        let mut v2_memory = memory_max;
        if let (Some(root), Some(m)) = (&self.memory_v1_root, memory_max) {
            v2_memory = None;
            let run_id = self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = root.path().join(&run_id);
            match root.create_run(&run_id) {
                Ok(v1) => match v1.set_limit(m) {
                    Ok(()) => self.memory_v1 = Some(v1),
                    Err(e) => {
                        missed.push(format!(
                            "{}: {e}",
                            dir.join("memory.limit_in_bytes").display()
                        ));
                        let _ = v1.remove();
                    }
                },
                Err(e) => missed.push(format!("{}: {e}", dir.display())),
            }
        }
        for (file, value) in [("memory.max", v2_memory), ("pids.max", pids_max)] {
            let Some(v) = value else { continue };
            if let Err(e) = fs::write(self.path.join(file), v.to_string()) {
                missed.push(format!("{file}: {e}"));
            }
        }
        missed
    }

    /// Close the parent's copies of the fds the child entered through once it is spawned.
    pub fn close_procs_fd(&mut self) {
        self.procs = None;
        self.dir = None;
        if let Some(m) = self.memory_v1.as_mut() {
            m.close_procs_fd();
        }
    }

    /// The pids in the cgroup now.
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        let text = fs::read_to_string(self.path.join("cgroup.procs"))?;
        Ok(text
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect())
    }

    /// Whether no live process is in the cgroup (zombies have left it already).
    pub fn is_empty(&self) -> bool {
        match fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(text) => text.lines().any(|l| l.trim() == "populated 0"),
            Err(_) => self.pids().map(|p| p.is_empty()).unwrap_or(true),
        }
    }

    /// Signal every process in the cgroup through a pidfd, checking after opening the handle that
    /// the process is still a member (so a reused number is never hit). Returns how many.
    ///
    /// Members of process group `skip_pgid` are left out: the caller signalled that group already
    /// (one `killpg`), and a second copy of INT is, to an agent CLI, "quit now".
    pub fn signal_all(&self, sig: Signal, skip_pgid: Option<i32>) -> io::Result<usize> {
        let rel = self.relative_path();
        let mut n = 0;
        for pid in self.pids()? {
            let Ok(pfd) = PidFd::open(pid) else { continue };
            if !rel.as_ref().is_some_and(|r| pid_in_cgroup(pid, r)) {
                continue;
            }
            if skip_pgid.is_some()
                && crate::process::procscan::stat(pid).map(|s| s.pgid) == skip_pgid
            {
                continue;
            }
            if pfd.send_signal(sig).unwrap_or(false) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// KILL everything in the cgroup at once through `cgroup.kill` (Linux 5.14+), else by pidfd.
    pub fn kill(&self) -> io::Result<()> {
        let kill_file = self.path.join("cgroup.kill");
        if kill_file.exists() {
            let mut f = fs::OpenOptions::new().write(true).open(&kill_file)?;
            f.write_all(b"1")?;
            return Ok(());
        }
        self.signal_all(Signal::SIGKILL, None).map(|_| ())
    }

    /// Remove the (empty) cgroup directory, then the v1 memory cgroup's. Removing both again
    /// after a failure is fine: a directory already gone counts as removed.
    pub fn remove(&self) -> io::Result<()> {
        remove_dir(&self.path)?;
        match &self.memory_v1 {
            Some(m) => m.remove(),
            None => Ok(()),
        }
    }

    /// The cgroup's path as /proc/PID/cgroup shows it ("/wf-supervisor/run_…").
    fn relative_path(&self) -> Option<String> {
        let mount = cgroup2_mount()?;
        let rel = self.path.strip_prefix(&mount).ok()?;
        Some(format!("/{}", rel.display()))
    }
}

/// Make the cgroup `root/name` and return its path; one that exists already is fine, and so is
/// a root removed under us (an operator's cleanup): it is made again.
pub(crate) fn make_dir_under(root: &Path, name: &str) -> io::Result<PathBuf> {
    let path = root.join(name);
    let mut made = fs::create_dir(&path);
    if matches!(&made, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        // The root went (an operator's cleanup): make it again, once.
        fs::create_dir_all(root)?;
        made = fs::create_dir(&path);
    }
    match made {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(path),
        Err(e) => Err(e),
    }
}

/// Remove an (empty) cgroup directory; one already gone counts as removed.
pub(crate) fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether /proc/PID/cgroup puts `pid` in the v2 cgroup `rel`.
fn pid_in_cgroup(pid: i32, rel: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|t| t.lines().any(|l| l.strip_prefix("0::") == Some(rel)))
        .unwrap_or(false)
}

/// Where the cgroup2 file system is mounted, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in text.lines() {
        // ... mount_point ... - fstype source options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            return left.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

/// The daemon's own cgroup v2 path from /proc/self/cgroup ("0::/path").
pub fn own_cgroup2_path() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::").map(|s| s.to_string()))
}
