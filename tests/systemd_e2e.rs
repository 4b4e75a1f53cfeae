//! End to end under a real systemd: `tests/e2e/systemd-e2e.sh` boots a debootstrapped Debian tree
//! with `systemd-nspawn -b`, installs the daemon, wfctl and the unit files into it, and proves
//! start-on-READY, the STATUS line, runs in the delegated cgroup, reload, the watchdog restart of a
//! wedged core, a stop that leaves nothing, and structured journal events. Then, on the same boot,
//! the package route: this test builds the .deb twice with `cargo deb` from the binaries of this
//! build (revision 1, and revision 2 as the upgrade), and the script lints it, installs it with
//! apt, and checks the service, the shipped config's users and roles, the man pages, the upgrade's
//! restart, remove and purge. It leaves nothing on the host. Needs root, cargo-deb (`.ci/run`
//! installs it) and (on a cold cache) network to the Debian mirror; skipped without root, or when
//! `WF_E2E_SYSTEMD=0`. Its output is streamed so CI logs show each step as it passes.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a cold debootstrap on a slow mirror plus the test itself.
const DEADLINE: Duration = Duration::from_secs(20 * 60);

/// `cargo deb` of the binaries `cargo test` has built (target/debug; `--no-build --profile dev`),
/// with Debian revision `revision`, into `dir`; returns the package's path.
fn cargo_deb(dir: &Path, revision: u32) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--deb-revision",
        ])
        .arg(revision.to_string())
        .arg("--output")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo deb");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo deb failed ({}); is cargo-deb installed (`cargo install --locked cargo-deb \
         --version 3.8.0`, as .ci/run does)?\n{stdout}{stderr}",
        out.status
    );
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("cargo deb named no .deb:\n{stdout}{stderr}"));
    assert!(
        deb.is_file(),
        "cargo deb said {} but there is no such file",
        deb.display()
    );
    deb
}

#[test]
fn wf_supervisor_under_real_systemd() {
    if std::env::var("WF_E2E_SYSTEMD").as_deref() == Ok("0") {
        println!("SKIP: WF_E2E_SYSTEMD=0");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: the systemd end-to-end test needs root (systemd-nspawn, cgroups)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/systemd-e2e.sh");
    let started = Instant::now();
    let debs = tempfile::tempdir().expect("tempdir for the packages");
    let deb = cargo_deb(&debs.path().join("1"), 1);
    let deb_upgrade = cargo_deb(&debs.path().join("2"), 2);
    println!(
        "e2e: cargo deb: {} and {} in {:.1}s",
        deb.display(),
        deb_upgrade.display(),
        started.elapsed().as_secs_f64()
    );
    let mut child = Command::new("bash")
        .arg(&script)
        .arg("--daemon")
        .arg(env!("CARGO_BIN_EXE_wf-supervisor"))
        .arg("--wfctl")
        .arg(env!("CARGO_BIN_EXE_wfctl"))
        .arg("--deb")
        .arg(&deb)
        .arg("--deb-upgrade")
        .arg(&deb_upgrade)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash tests/e2e/systemd-e2e.sh");
    let pid = child.id();
    // Stream both outputs line by line as they come (println! goes through the test's capture,
    // shown at once with --nocapture and on failure otherwise).
    let stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("e2e! {line}");
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("e2e: {line}");
            // A check that waits on work not merged yet is reported even when the test passes
            // (straight to fd 2: the test harness captures println! and eprintln!).
            if line.contains("PENDING") {
                let _ = writeln!(std::io::stderr(), "systemd_e2e: {line}");
            }
        }
    });
    // A watchdog on the script: past the deadline it gets TERM, and its trap tears everything
    // down before it exits.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if done_rx.recv_timeout(DEADLINE).is_err() {
            eprintln!("e2e: deadline of {DEADLINE:?} passed; stopping the script");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    });
    let status = child.wait().expect("wait for the e2e script");
    let _ = done_tx.send(());
    let _ = guard.join();
    let _ = out_thread.join();
    let _ = err_thread.join();
    println!(
        "e2e: script ended with {status} after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "tests/e2e/systemd-e2e.sh failed ({status}); see its output above"
    );
}
