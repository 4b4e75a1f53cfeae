//! The unit files under systemd/ pass `systemd-analyze verify`, run against a root tree that holds
//! the daemon binary where ExecStart expects it and the host's own systemd units. The tool exits 0
//! even on some parse errors, so any output at all is a failure.
use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        let ft = e.file_type().expect("file type");
        if ft.is_dir() {
            copy_dir(&p, &dest);
        } else if ft.is_symlink() {
            if let Ok(target) = std::fs::read_link(&p) {
                let _ = std::os::unix::fs::symlink(target, &dest);
            }
        } else {
            let _ = std::fs::copy(&p, &dest);
        }
    }
}

#[test]
fn unit_files_verify_cleanly() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists());
    let Some(host_units) = host_units else {
        eprintln!("SKIP: no systemd unit directory with sysinit.target on this host");
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    copy_dir(host_units, &r.join("usr/lib/systemd/system"));
    std::fs::create_dir_all(r.join("usr/local/bin")).expect("mkdir");
    std::fs::copy(
        env!("CARGO_BIN_EXE_wf-supervisor"),
        r.join("usr/local/bin/wf-supervisor"),
    )
    .expect("copy daemon");
    std::fs::create_dir_all(r.join("bin")).expect("mkdir");
    std::fs::copy("/bin/kill", r.join("bin/kill")).expect("copy kill");
    let units = r.join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for f in ["wf-supervisor.service", "wf-supervisor.socket"] {
        std::fs::copy(here.join(f), units.join(f)).expect("copy unit");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("/etc/systemd/system/wf-supervisor.service")
        .arg("/etc/systemd/system/wf-supervisor.socket")
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify complained (exit {:?}):\n{text}",
        out.status.code()
    );
}
