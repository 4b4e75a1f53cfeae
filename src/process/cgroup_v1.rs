//! The memory controller on a cgroup v1 hierarchy, for hosts with the hybrid layout (cgroup v2
//! mounted beside v1 hierarchies, with the memory controller bound to v1, so v2 has no
//! `memory.max`, `memory.peak` or `memory.events`). There each run with a memory limit
//! (`runs.memory_max_bytes`) also gets a v1 memory cgroup, named after the run, under a root
//! named after the v2 one inside the daemon's own v1 memory cgroup (from `/proc/self/cgroup`,
//! line `N:memory:/...`). `memory.limit_in_bytes` carries the limit, `memory.max_usage_in_bytes`
//! the run's peak and `memory.oom_control`'s `oom_kill` (Linux 4.13+) its OOM kills. Runs without
//! a limit get none: entering a v1 cgroup is a migration, which costs a spawn after a pause an
//! RCU grace period that the clone into the v2 cgroup avoids (see `vfork`); their memory figures
//! come from /proc, as on hosts with no memory controller.
//!
//! The invariant is the v2 one: the leader enters the run's v1 memory cgroup before it executes
//! anything, by writing "0" to an fd on its `cgroup.procs` that the parent opened (the clone into
//! a cgroup is v2 only), so everything of the run is charged to it; the directory is removed once
//! the run is empty, and leftovers of earlier daemons are swept at start. v2 stays the
//! containment (kill, membership); v1 only accounts and limits memory.
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Which memory controller run cgroups have, as GetHealth and the start-up log say it.
#[derive(Debug, Clone)]
pub enum MemoryController {
    /// In the cgroup v2 hierarchy, beside the run's other controllers.
    V2,
    /// On a cgroup v1 hierarchy: each run also gets a cgroup under this root.
    V1(MemoryV1Root),
    /// None the daemon can use; `reason` says why (memory figures then come from /proc).
    Unavailable { reason: String },
}

impl MemoryController {
    /// Decide for run cgroups under the v2 root `v2_root`: v2 when its `cgroup.controllers` has
    /// memory, else a v1 memory hierarchy where one is mounted and writable.
    pub fn detect(v2_root: &Path) -> MemoryController {
        let controllers =
            fs::read_to_string(v2_root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return MemoryController::V2;
        }
        let name = v2_root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "wf-supervisor".into());
        match MemoryV1Root::find(&name) {
            Ok(root) => MemoryController::V1(root),
            Err(reason) => MemoryController::Unavailable {
                reason: format!("the cgroup v2 hierarchy has no memory controller and {reason}"),
            },
        }
    }

    /// "cgroup v2", "cgroup v1" or "none".
    pub fn name(&self) -> &'static str {
        match self {
            MemoryController::V2 => "cgroup v2",
            MemoryController::V1(_) => "cgroup v1",
            MemoryController::Unavailable { .. } => "none",
        }
    }
}

/// The writable v1 memory cgroup under which runs' v1 memory cgroups are made.
#[derive(Debug, Clone)]
pub struct MemoryV1Root {
    path: PathBuf,
}

impl MemoryV1Root {
    /// Find the v1 memory hierarchy and make `<daemon's own v1 memory cgroup>/<name>` in it,
    /// probing that a child can be made there. `Err` says why not.
    pub fn find(name: &str) -> Result<MemoryV1Root, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let (mount_point, mount_root) = v1_mount(&mountinfo, "memory")
            .ok_or_else(|| "no cgroup v1 memory hierarchy is mounted".to_string())?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| own_v1_path(&t, "memory"))
            .ok_or_else(|| "/proc/self/cgroup names no v1 memory cgroup".to_string())?;
        let path = v1_dir(&mount_point, &mount_root, &own).join(name);
        MemoryV1Root::at(path)
    }

    /// Use (and create) `path` as the root, probing that a child can be made there.
    pub fn at(path: PathBuf) -> Result<MemoryV1Root, String> {
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        if !path.join("memory.limit_in_bytes").exists() {
            return Err(format!("{} is not a v1 memory cgroup", path.display()));
        }
        let probe = path.join(format!("probe-{}", std::process::id()));
        fs::create_dir(&probe)
            .map_err(|e| format!("cannot create cgroups under {}: {e}", path.display()))?;
        let _ = fs::remove_dir(&probe);
        Ok(MemoryV1Root { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make the run's v1 memory cgroup and open its `cgroup.procs` for the child to write to.
    pub fn create_run(&self, run_id: &str) -> io::Result<RunMemoryV1> {
        let path = crate::process::cgroup::make_dir_under(&self.path, run_id)?;
        // std opens with O_CLOEXEC: the fd never reaches the agent.
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))?;
        Ok(RunMemoryV1 {
            path,
            procs: Some(OwnedFd::from(procs)),
        })
    }

    /// The v1 memory cgroup of `run_id` if it exists (for recovery).
    pub fn existing_run(&self, run_id: &str) -> Option<RunMemoryV1> {
        let path = self.path.join(run_id);
        path.is_dir().then_some(RunMemoryV1 { path, procs: None })
    }

    /// Remove the run cgroups under the root whose runs are not in `live` (at start: the ones
    /// an earlier daemon left behind, such as after a crash between a run's end and its
    /// cleanup). A directory that still holds processes is kept and named in the result.
    pub fn sweep(&self, live: &dyn Fn(&str) -> bool) -> Sweep {
        let mut out = Sweep::default();
        let Ok(dir) = fs::read_dir(&self.path) else {
            return out;
        };
        for e in dir.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !crate::ids::is_run_id(&name) || live(&name) {
                continue;
            }
            let cg = RunMemoryV1 {
                path: e.path(),
                procs: None,
            };
            match cg.remove() {
                Ok(()) => out.removed.push(name),
                Err(err) => out.kept.push(format!("{}: {err}", cg.path.display())),
            }
        }
        out
    }
}

/// What a start-up sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Run ids whose leftover v1 memory cgroups were removed.
    pub removed: Vec<String>,
    /// Leftovers that could not be removed, with why (a process is still in one).
    pub kept: Vec<String>,
}

/// One run's v1 memory cgroup.
#[derive(Debug)]
pub struct RunMemoryV1 {
    path: PathBuf,
    procs: Option<OwnedFd>,
}

/// What a run's v1 memory cgroup says now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryV1Reading {
    pub usage_bytes: Option<u64>,
    pub max_usage_bytes: Option<u64>,
    /// `memory.oom_control`'s `oom_kill` (Linux 4.13+), None on older kernels.
    pub oom_kills: Option<u64>,
}

impl RunMemoryV1 {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fd the child writes "0" to before exec (close-on-exec).
    pub fn procs_fd(&self) -> Option<RawFd> {
        self.procs.as_ref().map(|f| f.as_raw_fd())
    }

    /// Close the parent's copy once the child is spawned.
    pub fn close_procs_fd(&mut self) {
        self.procs = None;
    }

    /// Set `memory.limit_in_bytes`.
    pub fn set_limit(&self, bytes: u64) -> io::Result<()> {
        fs::write(self.path.join("memory.limit_in_bytes"), bytes.to_string())
    }

    /// Read the accounting files of the run's v1 memory cgroup directory `dir`.
    pub fn read(dir: &Path) -> MemoryV1Reading {
        let read = |f: &str| fs::read_to_string(dir.join(f)).ok();
        let number = |f: &str| read(f).and_then(|t| t.trim().parse().ok());
        MemoryV1Reading {
            usage_bytes: number("memory.usage_in_bytes"),
            max_usage_bytes: number("memory.max_usage_in_bytes"),
            oom_kills: read("memory.oom_control").and_then(|t| parse_oom_control(&t)),
        }
    }

    /// Remove the (empty) directory; a missing one is fine.
    pub fn remove(&self) -> io::Result<()> {
        crate::process::cgroup::remove_dir(&self.path)
    }
}

/// `oom_kill N` from the text of `memory.oom_control` (absent before Linux 4.13).
pub fn parse_oom_control(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == "oom_kill").then(|| it.next()?.parse().ok())?
    })
}

/// The mount point and mount root of the v1 hierarchy that has `controller`, from the text of
/// /proc/self/mountinfo (`id parent dev root mount_point opts - cgroup source super_opts`).
pub fn v1_mount(mountinfo: &str, controller: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next()? != "cgroup" {
            return None;
        }
        let super_opts = r.nth(1)?;
        if !super_opts.split(',').any(|o| o == controller) {
            return None;
        }
        let mut l = left.split_whitespace();
        let root = l.nth(3)?.to_string();
        let mount_point = PathBuf::from(l.next()?);
        Some((mount_point, root))
    })
}

/// The daemon's own cgroup path on the v1 hierarchy of `controller`, from the text of
/// /proc/self/cgroup (`N:memory:/path`; a hierarchy may bind several, `N:cpu,cpuacct:/path`).
pub fn own_v1_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let _id = it.next()?;
        let controllers = it.next()?;
        let path = it.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// The directory of cgroup `own` on a hierarchy mounted at `mount_point` whose mount shows the
/// hierarchy from `mount_root` on (a container's mount often starts below the top).
pub fn v1_dir(mount_point: &Path, mount_root: &str, own: &str) -> PathBuf {
    let rel = match own.strip_prefix(mount_root) {
        Some(rest) if mount_root != "/" => rest,
        _ => own,
    };
    mount_point.join(rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/memory-like rw,relatime - cgroup cgroup rw,memory_recursiveprot
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_memory_hierarchy_is_found_by_its_super_options() {
        assert_eq!(
            v1_mount(MOUNTINFO, "memory"),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), "/docker/abc".into()))
        );
        assert_eq!(
            v1_mount(MOUNTINFO, "cpuacct").map(|m| m.0),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(v1_mount(MOUNTINFO, "pids"), None);
        // cgroup2 is never a v1 hierarchy, whatever its options say.
        assert_eq!(
            v1_mount("41 31 0:38 / /u rw - cgroup2 cgroup2 rw,memory\n", "memory"),
            None
        );
    }

    #[test]
    fn the_own_cgroup_is_read_from_its_controller_line() {
        let text = "9:name=systemd:/\n4:memory:/process_api/eb2d\n2:cpu,cpuacct:/a\n0::/\n";
        assert_eq!(
            own_v1_path(text, "memory").as_deref(),
            Some("/process_api/eb2d")
        );
        assert_eq!(own_v1_path(text, "cpuacct").as_deref(), Some("/a"));
        assert_eq!(own_v1_path(text, "pids"), None);
        assert_eq!(own_v1_path("0::/x\n", "memory"), None);
    }

    #[test]
    fn the_directory_accounts_for_the_mount_root() {
        let m = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            v1_dir(m, "/", "/a/b"),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
        assert_eq!(
            v1_dir(m, "/docker/abc", "/docker/abc/x"),
            PathBuf::from("/sys/fs/cgroup/memory/x")
        );
        assert_eq!(v1_dir(m, "/", "/"), PathBuf::from("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn oom_control_gives_the_kill_count_where_the_kernel_has_it() {
        assert_eq!(
            parse_oom_control("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        // Before Linux 4.13 there is no oom_kill line.
        assert_eq!(parse_oom_control("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn a_plain_directory_is_no_memory_controller() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = MemoryV1Root::at(dir.path().join("root")).expect_err("not a cgroup");
        assert!(err.contains("not a v1 memory cgroup"), "{err}");
        assert_eq!(RunMemoryV1::read(dir.path()), MemoryV1Reading::default());
    }
}
