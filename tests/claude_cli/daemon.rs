//! A real `wf-supervisor` for the real-CLI tests, shaped like the shared harness but on its own:
//! a temporary directory (config, socket, state, the daemon's stderr), a per-daemon cgroup root
//! `<cgroup2 mount>/wf-test-claude-<unique>` where this machine has one to give, a client on the
//! unix socket, and a `Drop` that stops the daemon, kills whatever carries one of this daemon's
//! run ids, and removes the cgroup root (printing the daemon's log when the test panicked).
#![allow(dead_code)]

use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};
use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::{GetRequest, LogStream, LogsRequest, Run, RunStatus, SpawnRequest};

pub const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_wf-supervisor");
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);
/// A generous deadline for the daemon's own steps.
pub const TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `s` as a TOML string literal.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Polls the async `probe` until it yields a value; panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub struct Daemon {
    child: Option<Child>,
    pub pid: i32,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub cgroup_root: Option<PathBuf>,
    log: PathBuf,
    pub client: SupervisorClient<Channel>,
    runs: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// A fresh temporary directory for a daemon (and whatever else the test keeps there).
    pub fn tempdir() -> TempDir {
        tempfile::Builder::new()
            .prefix("wf-test-claude-")
            .tempdir()
            .expect("tempdir")
    }

    /// Starts a daemon in `dir` whose config is the harness's base plus `extra_toml`.
    pub async fn start(dir: TempDir, extra_toml: &str) -> Daemon {
        let cgroup_root = match make_cgroup_root() {
            Ok(root) => Some(root),
            Err(reason) => {
                eprintln!("note: process-group containment, cgroups unavailable: {reason}");
                None
            }
        };
        let socket = dir.path().join("wf.sock");
        let state = dir.path().join("state");
        let log = dir.path().join("daemon.log");
        let config = dir.path().join("config.toml");
        let mut text = String::from(
            "[daemon]\nshutdown_timeout_ms = 30000\n\n[runs]\ngrace_ms = 5000\n\
             kill_deadline_ms = 10000\n\n[containment]\n",
        );
        match &cgroup_root {
            Some(root) => text.push_str(&format!(
                "mode = \"auto\"\ncgroup_root = {}\n",
                toml_str(&root.display().to_string())
            )),
            None => text.push_str("mode = \"process-group\"\n"),
        }
        text.push('\n');
        text.push_str(extra_toml);
        fs::write(&config, text).expect("writing the config");
        let stderr = fs::File::create(&log).expect("creating the daemon log");
        let child = Command::new(DAEMON_BIN)
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting wf-supervisor");
        let pid = child.id() as i32;
        let mut daemon = Daemon {
            child: Some(child),
            pid,
            dir,
            socket,
            cgroup_root,
            log,
            client: SupervisorClient::new(
                Endpoint::from_static("http://[::]:50051").connect_lazy(),
            ),
            runs: Arc::default(),
        };
        daemon.client = SupervisorClient::new(daemon.connect().await);
        daemon
    }

    async fn connect(&mut self) -> Channel {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "wf-supervisor exited during startup with {status}; its log:\n{}",
                    self.log_text()
                );
            }
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "wf-supervisor did not accept connections within {TIMEOUT:?}; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(POLL).await;
        }
        let path = self.socket.clone();
        Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .expect("connecting to the daemon's socket")
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// Remembers a run so that `Drop` ends whatever it leaves.
    pub fn remember(&self, run: &Run) {
        self.runs
            .lock()
            .expect("runs lock")
            .push(run.run_id.clone());
    }

    pub async fn spawn(&self, request: SpawnRequest) -> Run {
        let run = self
            .client
            .clone()
            .spawn(request.clone())
            .await
            .unwrap_or_else(|s| panic!("Spawn {request:?} failed: {s:?}"))
            .into_inner()
            .run
            .expect("SpawnResponse without a run");
        self.remember(&run);
        run
    }

    pub async fn get(&self, run_id: &str) -> Run {
        self.client
            .clone()
            .get(GetRequest {
                run_id: run_id.to_string(),
            })
            .await
            .unwrap_or_else(|s| panic!("Get {run_id} failed: {s:?}"))
            .into_inner()
    }

    /// Waits until the run reaches a terminal status.
    pub async fn wait_terminal(&self, run_id: &str, timeout: Duration) -> Run {
        wait_for(timeout, &format!("{run_id} to end"), || async {
            let run = self.get(run_id).await;
            is_terminal(run.status()).then_some(run)
        })
        .await
    }

    /// The run's stdout and stderr (the last MiB of each).
    pub async fn logs(&self, run_id: &str) -> (String, String) {
        let mut stream = self
            .client
            .clone()
            .logs(LogsRequest {
                run_id: run_id.to_string(),
                follow: false,
                tail_bytes: 1 << 20,
            })
            .await
            .unwrap_or_else(|s| panic!("Logs {run_id} failed: {s:?}"))
            .into_inner();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(chunk) = stream
            .message()
            .await
            .unwrap_or_else(|s| panic!("Logs {run_id} stream failed: {s:?}"))
        {
            match chunk.stream() {
                LogStream::Stdout => out.extend_from_slice(&chunk.data),
                LogStream::Stderr => err.extend_from_slice(&chunk.data),
                LogStream::Unspecified => panic!("a log chunk without a stream"),
            }
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    /// Zombie children of the daemon.
    pub fn zombies(&self) -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == self.pid && s.state == 'Z'))
            .collect()
    }

    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("claude_cli: wf-supervisor ignored SIGTERM for 15 s; sending SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let runs = self.runs.lock().expect("runs lock").clone();
        for round in 0..50 {
            let left: Vec<i32> = runs
                .iter()
                .flat_map(|id| pids_with_env(&format!("WF_RUN_ID={id}")))
                .collect();
            if left.is_empty() {
                break;
            }
            if round == 0 {
                eprintln!("claude_cli: killing leftovers {}", describe(&left));
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(POLL);
        }
        if let Some(root) = &self.cgroup_root {
            remove_cgroup_tree(root);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "---- wf-supervisor log (last {} lines) ----\n{}\n----",
                tail.len(),
                tail.join("\n")
            );
        }
        self.cleanup();
    }
}

pub fn is_terminal(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::Killed
            | RunStatus::Cancelled
            | RunStatus::TimedOut
            | RunStatus::Lost
    )
}

// ---------------------------------------------------------------------------------------------
// /proc

/// The fields of /proc/PID/stat the tests use.
#[derive(Clone, Debug)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub session: i32,
    pub start: u64,
}

/// Reads /proc/PID/stat; `None` once the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// One process, identified by pid and start time so that a reused pid is not mistaken for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
    pub comm: String,
}

impl Proc {
    pub fn capture(pid: i32) -> Option<Proc> {
        let s = stat(pid)?;
        Some(Proc {
            pid,
            start: s.start,
            comm: comm(pid),
        })
    }

    /// This very process exists in some state (a zombie included).
    pub fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }
}

pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment holds exactly `entry` (zombies have none to read).
pub fn pids_with_env(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect()
}

/// `pid (comm) state` for each pid, for messages.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|&pid| {
            let state = stat(pid).map(|s| s.state).unwrap_or('?');
            format!("{pid} ({}) {state}", comm(pid))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// cgroups

fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

fn make_cgroup_root() -> Result<PathBuf, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the tests do not run as root".into());
    }
    let mount = cgroup2_mount().ok_or("no cgroup2 mount in /proc/self/mountinfo")?;
    let root = mount.join(unique("wf-test-claude"));
    fs::create_dir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    Ok(root)
}

fn cgroup_children(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn cgroup_populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

fn remove_cgroup_tree(root: &Path) {
    if !root.exists() {
        return;
    }
    if cgroup_populated(root) {
        eprintln!(
            "claude_cli: cgroup {} still populated; killing it",
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
            eprintln!("claude_cli: cannot remove cgroup {}: {e}", dir.display());
        }
    }
    remove(root);
}
