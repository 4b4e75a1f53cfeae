//! cgroup v2: the mount, a fresh cgroup root per site, what is in a subtree, and its removal;
//! on hybrid hosts also the v1 memory cgroups the daemon makes beside it (`memory_v1_root`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{unique, POLL};

/// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// Makes a fresh cgroup root `<mount>/wf-test-<unique>` for one site, or says why not.
pub(super) fn make_cgroup_root() -> Result<PathBuf, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the tests do not run as root".into());
    }
    let mount = cgroup2_mount().ok_or("no cgroup2 mount in /proc/self/mountinfo")?;
    let root = mount.join(unique("wf-test"));
    fs::create_dir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    Ok(root)
}

/// Child cgroup directories of `dir`.
pub fn cgroup_children(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether any process lives in the cgroup subtree at `dir`.
pub fn cgroup_populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Kills everything in the subtree and removes it, deepest first.
pub(super) fn remove_cgroup_tree(root: &Path) {
    if !root.exists() {
        return;
    }
    if cgroup_populated(root) {
        eprintln!(
            "harness: cgroup {} still populated; killing it",
            root.display()
        );
        if let Ok(mut f) = fs::OpenOptions::new()
            .write(true)
            .open(root.join("cgroup.kill"))
        {
            let _ = f.write_all(b"1");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while cgroup_populated(root) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
    fn remove(dir: &Path) {
        for child in cgroup_children(dir) {
            remove(&child);
        }
        if let Err(e) = fs::remove_dir(dir) {
            eprintln!("harness: cannot remove cgroup {}: {e}", dir.display());
        }
    }
    remove(root);
    // The daemon's v1 memory root for this site, on hybrid hosts (its run cgroups are gone
    // with the runs; only empty directories are left to remove).
    if let Some(v1) = memory_v1_root(root) {
        if v1.exists() {
            remove(&v1);
        }
    }
}

/// Where the v1 memory hierarchy is mounted, if this host has one.
pub fn memory_v1_mount() -> Option<(PathBuf, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        (r.next()? == "cgroup" && r.nth(1)?.split(',').any(|o| o == "memory")).then_some(())?;
        let mut l = left.split_whitespace();
        let root = l.nth(3)?.to_string();
        Some((PathBuf::from(l.next()?), root))
    })
}

/// The v1 memory cgroup a daemon on the cgroup v2 root `v2_root` makes its runs' v1 memory
/// cgroups under: `<the test's own v1 memory cgroup>/<v2 root's name>` (a daemon the test starts
/// is in the test's cgroups). None where this host has no v1 memory hierarchy.
pub fn memory_v1_root(v2_root: &Path) -> Option<PathBuf> {
    let (mount, mount_root) = memory_v1_mount()?;
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            ctrl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })?;
    let rel = match own.strip_prefix(mount_root.as_str()) {
        Some(rest) if mount_root != "/" => rest.to_string(),
        _ => own,
    };
    Some(
        mount
            .join(rel.trim_start_matches('/'))
            .join(v2_root.file_name()?),
    )
}
