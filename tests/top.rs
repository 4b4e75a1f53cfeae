//! `wfctl top` end to end: the real binary in a real terminal (a detached tmux session from
//! Debian's tmux) against a real daemon. The operator selects a run whose processes all ignore
//! TERM, presses K and y, and reads the kill report and then KILLED in the table; /proc shows
//! that nothing of the run is left, the audit trail has the kill, and a second kill of the now
//! finished run is refused on screen without ending `top`. A daemon that goes away shows the
//! banner, and `top` reconnects by itself when the daemon is back.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use wf_supervisor::proto::{RunStatus, SpawnRequest};

const WFCTL: &str = env!("CARGO_BIN_EXE_wfctl");

/// A tmux server of its own (its socket in a directory of its own) with one session running
/// `wfctl top`; the server is killed and the directory removed on drop.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `wfctl --socket SOCKET top` in a detached `cols`x`rows` terminal.
    fn start(socket: &Path, cols: u16, rows: u16) -> Tmux {
        let which = Command::new("tmux").arg("-V").output();
        assert!(
            which.is_ok_and(|o| o.status.success()),
            "tmux is needed for this test (.ci/run installs it: apt-get install tmux)"
        );
        let tmux = Tmux {
            dir: tempfile::Builder::new()
                .prefix("wf-top-tmux-")
                .tempdir()
                .expect("a directory for the tmux socket"),
        };
        let command = format!(
            "{} --socket {} top",
            shell_word(WFCTL),
            shell_word(&socket.to_string_lossy())
        );
        let size = (cols.to_string(), rows.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &size.0,
            "-y",
            &size.1,
            &command,
        ]);
        // Keep the pane after wfctl exits, so that a crash leaves its last words to read.
        tmux.run(&["set-option", "-t", "top", "remain-on-exit", "on"]);
        tmux
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("tmux.sock")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .args(["-f", "/dev/null"])
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Presses keys by tmux's names (`K`, `y`, `Enter`, `Escape`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "top", "-l", text]);
    }

    /// Waits until the screen satisfies `cond`; panics with the screen when it does not in time.
    async fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether wfctl in the pane has exited.
    fn pane_dead(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "top", "#{pane_dead}"])
            .trim()
            == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .arg("kill-server")
            .output();
    }
}

fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The screen line that shows `run_id` in the table.
fn row<'a>(screen: &'a str, run_id: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.starts_with(run_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_kills_the_selected_term_ignoring_run_and_shows_it_killed() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    // A decoy, so that the test must select the right run.
    let decoy = api.spawn(&fake(&["--hang"])).await;
    let run = api
        .spawn_req(SpawnRequest {
            argv: fake(&["--ignore-term", "--children", "3", "--hang"]),
            grace_ms: 500,
            ..Default::default()
        })
        .await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, false).await;
    assert_eq!(procs.len(), 4);
    let id = run.run_id.as_str();

    let tmux = Tmux::start(&daemon.socket, 160, 50);
    tmux.wait_screen("both runs are listed as RUNNING", |s| {
        row(s, id).is_some_and(|l| l.contains("RUNNING"))
            && row(s, &decoy.run_id).is_some_and(|l| l.contains("RUNNING"))
    })
    .await;

    // Select the run by filtering on its id, then kill it.
    tmux.type_text("/");
    tmux.type_text(id);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the filter leaves only the run", |s| {
        row(s, id).is_some() && row(s, &decoy.run_id).is_none()
    })
    .await;
    tmux.keys(&["K"]);
    tmux.wait_screen("top asks before killing", |s| {
        s.contains(&format!("Kill {id} (stop signals, grace, then KILL)? y/N"))
    })
    .await;
    tmux.keys(&["y"]);
    let report = tmux
        .wait_screen("the kill report is shown", |s| {
            s.contains(&format!("KILLED {id}"))
        })
        .await;
    assert!(report.contains("SIGTERM, SIGKILL"), "{report}");
    assert!(
        report.contains("killed: nothing of the run remains"),
        "{report}"
    );

    // Nothing of the run is left, and the kill is on record as the user who ran top.
    daemon.assert_run_gone(id, &procs).await;
    assert_eq!(api.get(id).await.status(), RunStatus::Killed);
    api.assert_audited(id, "kill", "ok").await;

    // Any key closes the report; the table shows the run KILLED.
    tmux.keys(&["Escape"]);
    let screen = tmux
        .wait_screen("the table shows the run KILLED", |s| {
            !s.contains("any key closes") && row(s, id).is_some_and(|l| l.contains("KILLED"))
        })
        .await;
    println!("{screen}");

    // Killing it again is refused by the daemon; top shows why and goes on.
    tmux.keys(&["K"]);
    tmux.wait_screen("top asks again", |s| s.contains("y/N"))
        .await;
    tmux.keys(&["y"]);
    tmux.wait_screen("the refusal is shown", |s| {
        s.contains(&format!("kill {id}: failed precondition"))
    })
    .await;
    assert!(!tmux.pane_dead(), "top ended after a refusal");
    assert_eq!(api.get(&decoy.run_id).await.status(), RunStatus::Running);

    tmux.keys(&["q"]);
    wait_until(TIMEOUT, "top quits on q", || tmux.pane_dead()).await;
    api.kill(&decoy.run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_banner_while_the_daemon_is_gone_and_reconnects() {
    let mut site = Site::new(Options::default()).expect("a site");
    let api = site.start().await;
    let run = api.spawn(&fake(&["--hang"])).await;
    let id = run.run_id.clone();
    let tmux = Tmux::start(&site.socket, 100, 30);
    tmux.wait_screen("the run is listed", |s| row(s, &id).is_some())
        .await;

    site.stop().await;
    let screen = tmux
        .wait_screen("the banner says the connection is lost", |s| {
            s.contains("DAEMON CONNECTION LOST")
        })
        .await;
    assert!(
        row(&screen, &id).is_some(),
        "the last figures stay: {screen}"
    );
    assert!(!tmux.pane_dead(), "top ended when the daemon went away");

    let api = site.start().await;
    tmux.wait_screen("the banner is gone and the run is back", |s| {
        !s.contains("DAEMON CONNECTION LOST") && row(s, &id).is_some()
    })
    .await;
    tmux.keys(&["q"]);
    wait_until(TIMEOUT, "top quits on q", || tmux.pane_dead()).await;
    let _ = api.try_get(&id).await;
}
