//! cgroup v2: the mount, a fresh cgroup root per site, what is in a subtree, and its removal.

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
}
