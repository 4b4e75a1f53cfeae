//! The integration-test harness: a real `wf-supervisor` daemon per test, a client on its real
//! unix socket, the fake agent, deadline-based waiting, and the `/proc` evidence every kill test
//! ends with.
//!
//! Each [`Daemon`] lives in its own temporary directory (config, socket, state, stderr log) and,
//! where this machine has a writable cgroup v2 mount and the tests run as root, its own cgroup
//! root `<cgroup2 mount>/wf-test-<unique>`. Every run the harness spawns carries the env var
//! `WF_TEST_TAG=<unique>`, and its id is remembered, so that `Drop` can end whatever a failing test
//! left behind: it stops the daemon (SIGTERM, then SIGKILL), kills every process that carries the
//! tag or one of the run ids, empties and removes the cgroup root, and prints the daemon's log when
//! the test panicked.
//!
//! Tests wait for conditions with [`wait_until`] / [`wait_for`] against generous deadlines and
//! never assert timings.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::{
    AuditRecord, ForceCompleteRequest, GetRequest, KillRequest, KillResponse, ListAuditRequest,
    LogStream, LogsRequest, RestartRequest, RestartResponse, Run, RunStatus, SpawnRequest,
};

/// The daemon under test.
pub const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_wf-supervisor");
/// The fake agent the tests drive.
pub const FAKE_AGENT: &str = env!("CARGO_BIN_EXE_wf-fake-agent");
/// A generous deadline for anything that should happen "soon".
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(25);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `cond` until it holds; panics naming `what` when `timeout` passes first.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the async `probe` until it yields a value; panics naming `what` when `timeout` passes.
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

// ---------------------------------------------------------------------------------------------
// Daemon

/// How the daemon holds runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containment {
    /// cgroups where the harness could make a cgroup root, else the process-group fallback.
    Auto,
    /// Require cgroups (tests skip when the machine has none to give).
    Cgroup,
    /// Never use cgroups.
    ProcessGroup,
}

/// What a test wants of its daemon.
#[derive(Clone, Debug)]
pub struct Options {
    pub containment: Containment,
    /// `[runs] grace_ms`.
    pub grace_ms: u64,
    /// `[daemon] shutdown_timeout_ms`.
    pub shutdown_timeout_ms: u64,
    /// More TOML appended to the config as is.
    pub extra_toml: String,
    /// More `key = value` lines inside `[runs]`.
    pub runs_toml: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            containment: Containment::Auto,
            grace_ms: 5000,
            shutdown_timeout_ms: 30_000,
            extra_toml: String::new(),
            runs_toml: String::new(),
        }
    }
}

/// A running daemon with its own directory, socket and cgroup root.
pub struct Daemon {
    child: Option<Child>,
    pub pid: i32,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub cgroup_root: Option<PathBuf>,
    log: PathBuf,
    api: Api,
}

impl Daemon {
    /// Starts a daemon with the default options.
    pub async fn start() -> Daemon {
        Daemon::start_with(Options::default()).await
    }

    /// Starts a daemon; `None` when the options ask for cgroups and the machine has none to
    /// give (the reason is printed).
    pub async fn try_start_with(options: Options) -> Option<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("wf-test-")
            .tempdir()
            .expect("tempdir");
        let cgroup_root = match options.containment {
            Containment::ProcessGroup => None,
            Containment::Auto | Containment::Cgroup => match make_cgroup_root() {
                Ok(root) => Some(root),
                Err(reason) if options.containment == Containment::Cgroup => {
                    eprintln!("skipping: cgroups are unavailable: {reason}");
                    return None;
                }
                Err(reason) => {
                    eprintln!("note: process-group containment, cgroups unavailable: {reason}");
                    None
                }
            },
        };
        let mode = match (options.containment, &cgroup_root) {
            (Containment::Cgroup, _) => "cgroup",
            (Containment::Auto, Some(_)) => "auto",
            _ => "process-group",
        };
        let socket = dir.path().join("wf.sock");
        let state = dir.path().join("state");
        let log = dir.path().join("daemon.log");
        let config = dir.path().join("config.toml");
        let mut toml = format!(
            "[daemon]\nshutdown_timeout_ms = {}\n\n[runs]\ngrace_ms = {}\nkill_deadline_ms = 10000\n{}\n\
             [containment]\nmode = \"{mode}\"\n",
            options.shutdown_timeout_ms, options.grace_ms, options.runs_toml
        );
        if let Some(root) = &cgroup_root {
            toml.push_str(&format!("cgroup_root = \"{}\"\n", root.display()));
        }
        toml.push('\n');
        toml.push_str(&options.extra_toml);
        fs::write(&config, toml).expect("writing the config");

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
            socket: socket.clone(),
            cgroup_root,
            log,
            // A placeholder client until the socket serves: the Daemon exists from here on so that
            // its Drop cleans up even when startup fails.
            api: Api {
                client: SupervisorClient::new(
                    Endpoint::from_static("http://[::]:50051").connect_lazy(),
                ),
                tag: unique("tag"),
                runs: Arc::default(),
            },
            dir,
        };
        let channel = daemon.connect().await;
        daemon.api.client = SupervisorClient::new(channel);
        Some(daemon)
    }

    /// Starts a daemon; panics where [`Daemon::try_start_with`] would skip.
    pub async fn start_with(options: Options) -> Daemon {
        Daemon::try_start_with(options)
            .await
            .expect("the daemon needs cgroups here")
    }

    /// Waits until the socket accepts connections, then connects the channel over it.
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
                "wf-supervisor did not accept connections on {} within {TIMEOUT:?}; its log:\n{}",
                self.socket.display(),
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

    /// A client handle; cheap to clone and `'static`, for use from spawned tasks.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// The daemon's stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// The daemon's resident set size, from /proc/PID/status.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Zombie children of the daemon.
    pub fn zombies(&self) -> Vec<i32> {
        zombie_children_of(self.pid)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).expect("signalling the daemon");
    }

    /// Waits for the daemon to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self
            .child
            .as_mut()
            .expect("the daemon was already waited for");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the daemon") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wf-supervisor did not exit within {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Proves that nothing of run `run_id` is left: no live process carries its WF_RUN_ID right
    /// now (a kill has verified the run empty before answering), none of `procs` lives, and soon
    /// neither those nor any zombie child of the daemon remains.
    pub async fn assert_run_gone(&self, run_id: &str, procs: &[Proc]) {
        let carriers = pids_with_env(&format!("WF_RUN_ID={run_id}"));
        assert!(
            carriers.is_empty(),
            "processes of {run_id} still live: {}",
            describe(&carriers)
        );
        let live: Vec<&Proc> = procs.iter().filter(|p| p.is_live()).collect();
        assert!(
            live.is_empty(),
            "processes of {run_id} still live: {live:?}"
        );
        self.assert_reaped(procs).await;
    }

    /// Waits until none of `procs` exists in any state and the daemon has no zombie children.
    pub async fn assert_reaped(&self, procs: &[Proc]) {
        wait_until(TIMEOUT, "every process is reaped", || {
            procs.iter().all(|p| !p.exists()) && self.zombies().is_empty()
        })
        .await;
    }

    /// Stops the daemon and ends whatever it left; also used by `Drop`.
    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(self.pid);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("harness: wf-supervisor ignored SIGTERM for 15 s; sending SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let runs = self.api.runs.lock().expect("runs lock").clone();
        let mut needles: Vec<String> = runs.iter().map(|id| format!("WF_RUN_ID={id}")).collect();
        needles.push(format!("WF_TEST_TAG={}", self.api.tag));
        for round in 0.. {
            let left: Vec<i32> = needles.iter().flat_map(|n| pids_with_env(n)).collect();
            if left.is_empty() || round == 50 {
                break;
            }
            if round == 0 {
                eprintln!("harness: killing leftovers {}", describe(&left));
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
            let tail: Vec<&str> = text.lines().rev().take(300).collect();
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

// ---------------------------------------------------------------------------------------------
// API

/// A client of one daemon. Every run it spawns is tagged and remembered for cleanup.
#[derive(Clone)]
pub struct Api {
    pub client: SupervisorClient<Channel>,
    tag: String,
    runs: Arc<Mutex<Vec<String>>>,
}

impl Api {
    fn remember(&self, run: &Run) {
        self.runs
            .lock()
            .expect("runs lock")
            .push(run.run_id.clone());
    }

    /// Spawns with the request as given (plus the cleanup tag).
    pub async fn try_spawn(&self, mut request: SpawnRequest) -> Result<Run, Status> {
        request
            .env
            .insert("WF_TEST_TAG".to_string(), self.tag.clone());
        let run = self
            .client
            .clone()
            .spawn(request)
            .await?
            .into_inner()
            .run
            .ok_or_else(|| Status::internal("SpawnResponse without a run"))?;
        self.remember(&run);
        Ok(run)
    }

    /// Spawns `argv`; panics on error.
    pub async fn spawn(&self, argv: &[String]) -> Run {
        self.spawn_req(SpawnRequest {
            argv: argv.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Spawns; panics on error.
    pub async fn spawn_req(&self, request: SpawnRequest) -> Run {
        let argv = request.argv.clone();
        self.try_spawn(request)
            .await
            .unwrap_or_else(|s| panic!("Spawn {argv:?} failed: {s:?}"))
    }

    pub async fn try_get(&self, run_id: &str) -> Result<Run, Status> {
        Ok(self
            .client
            .clone()
            .get(GetRequest {
                run_id: run_id.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn get(&self, run_id: &str) -> Run {
        self.try_get(run_id)
            .await
            .unwrap_or_else(|s| panic!("Get {run_id} failed: {s:?}"))
    }

    /// Waits until the run reaches a terminal status.
    pub async fn wait_terminal(&self, run_id: &str, timeout: Duration) -> Run {
        wait_for(timeout, &format!("{run_id} to end"), || async {
            let run = self.get(run_id).await;
            is_terminal(run.status()).then_some(run)
        })
        .await
    }

    /// Waits until the run is RUNNING.
    pub async fn wait_running(&self, run_id: &str) -> Run {
        wait_for(TIMEOUT, &format!("{run_id} to be RUNNING"), || async {
            let run = self.get(run_id).await;
            assert!(
                !is_terminal(run.status()),
                "{run_id} ended before it was seen RUNNING: {run:?}"
            );
            (run.status() == RunStatus::Running).then_some(run)
        })
        .await
    }

    pub async fn try_kill(&self, request: KillRequest) -> Result<KillResponse, Status> {
        Ok(self.client.clone().kill(request).await?.into_inner())
    }

    /// Graceful kill with the run's own grace.
    pub async fn kill(&self, run_id: &str) -> KillResponse {
        self.try_kill(KillRequest {
            run_id: run_id.to_string(),
            reason: "integration test".to_string(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("Kill {run_id} failed: {s:?}"))
    }

    pub async fn try_restart(&self, run_id: &str) -> Result<RestartResponse, Status> {
        let response = self
            .client
            .clone()
            .restart(RestartRequest {
                run_id: run_id.to_string(),
                reason: "integration test".to_string(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if let Some(run) = &response.run {
            self.remember(run);
        }
        Ok(response)
    }

    pub async fn try_force_complete(&self, request: ForceCompleteRequest) -> Result<Run, Status> {
        Ok(self
            .client
            .clone()
            .force_complete(request)
            .await?
            .into_inner())
    }

    /// The audit records of one run, newest first.
    pub async fn audit(&self, run_id: &str) -> Vec<AuditRecord> {
        self.client
            .clone()
            .list_audit(ListAuditRequest {
                run_id: run_id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("ListAudit {run_id} failed: {s:?}"))
            .into_inner()
            .records
    }

    /// Asserts that the trail holds a record of `action` on the run with `outcome` ("ok",
    /// "refused", "failed") made by this test process's user over the unix socket.
    pub async fn assert_audited(&self, run_id: &str, action: &str, outcome: &str) {
        let records = self.audit(run_id).await;
        let uid = nix::unistd::geteuid().as_raw();
        assert!(
            records.iter().any(|r| r.action == action
                && r.outcome == outcome
                && r.run_id == run_id
                && r.uid == Some(uid)),
            "no audit record {action}/{outcome} by uid {uid} for {run_id}: {records:#?}"
        );
    }

    /// The last `tail_bytes` of stdout and of stderr (Logs without follow).
    pub async fn logs(&self, run_id: &str, tail_bytes: u64) -> (Vec<u8>, Vec<u8>) {
        let mut stream = self
            .client
            .clone()
            .logs(LogsRequest {
                run_id: run_id.to_string(),
                follow: false,
                tail_bytes,
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
        (out, err)
    }

    /// Stdout as text (the last MiB).
    pub async fn stdout(&self, run_id: &str) -> String {
        String::from_utf8_lossy(&self.logs(run_id, 1 << 20).await.0).into_owned()
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub async fn wait_line(&self, run_id: &str, prefix: &str) -> String {
        wait_for(
            TIMEOUT,
            &format!("a line {prefix:?} on the stdout of {run_id}"),
            || async {
                let out = self.stdout(run_id).await;
                out.lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .map(str::to_string)
            },
        )
        .await
    }

    /// Waits for the fake agent's `children:` and/or `escapee:` lines and captures the reported
    /// processes, together with the run's leader, while they are alive.
    pub async fn fake_agent_procs(&self, run: &Run, children: bool, escapee: bool) -> Vec<Proc> {
        let mut pids = vec![run.pid];
        if children {
            let line = self.wait_line(&run.run_id, "children: ").await;
            pids.extend(
                line.split_whitespace()
                    .map(|p| p.parse::<i32>().expect("a pid")),
            );
        }
        if escapee {
            let line = self.wait_line(&run.run_id, "escapee: ").await;
            pids.push(line.trim().parse().expect("a pid"));
        }
        pids.into_iter()
            .map(|pid| {
                let proc = Proc::capture(pid)
                    .unwrap_or_else(|| panic!("process {pid} of {} is not alive", run.run_id));
                assert!(
                    proc.is_live(),
                    "process {pid} of {} is not alive: {proc:?}",
                    run.run_id
                );
                proc
            })
            .collect()
    }
}

/// Whether a status is final.
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

/// The fake agent's argv with `args`.
pub fn fake(args: &[&str]) -> Vec<String> {
    std::iter::once(FAKE_AGENT)
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect()
}

/// `sh -c script`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Asserts that a call failed with `code`.
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(s) => assert_eq!(s.code(), code, "{what}: unexpected status {s:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// One process, identified by pid and start time so that a reused pid is not mistaken for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

/// The fields of /proc/PID/stat the tests use.
#[derive(Clone, Debug)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub session: i32,
    pub start: u64,
}

/// Reads /proc/PID/stat; `None` once the process is gone (reaped).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        // Field 22 of the whole line is the 20th after the state.
        start: fields.get(19)?.parse().ok()?,
    })
}

impl Proc {
    /// Captures a process that exists now.
    pub fn capture(pid: i32) -> Option<Proc> {
        stat(pid).map(|s| Proc {
            pid,
            start: s.start,
        })
    }

    /// This very process exists in some state (a zombie included).
    pub fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }

    /// This very process exists and is not a zombie (or dead).
    pub fn is_live(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && !matches!(s.state, 'Z' | 'X'))
    }
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment holds exactly the entry `entry` (e.g. `WF_RUN_ID=run_...`).
/// Zombies have no readable environment and vanished pids are skipped.
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

/// Zombie processes whose parent is `parent`.
pub fn zombie_children_of(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent && s.state == 'Z'))
        .collect()
}

/// `pid (comm) state` for each pid, for messages.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let state = stat(*pid).map(|s| s.state).unwrap_or('?');
            format!("{pid} ({}) {state}", comm.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until every process carrying `WF_RUN_ID=<run_id>` is gone.
pub async fn wait_no_env(run_id: &str) {
    let entry = format!("WF_RUN_ID={run_id}");
    wait_until(TIMEOUT, &format!("no process carries {entry}"), || {
        pids_with_env(&entry).is_empty()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// cgroups

/// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// Makes a fresh cgroup root for one daemon, or says why not.
fn make_cgroup_root() -> Result<PathBuf, String> {
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
fn remove_cgroup_tree(root: &Path) {
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

/// Label counts, for messages.
pub fn count_by<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}
