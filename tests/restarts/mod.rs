//! A daemon that can be stopped (SIGTERM), crashed (SIGKILL) and started again on the same
//! state dir, socket and cgroup root, for the tests that need what one daemon wrote to be read
//! by the next one: durability, recovery after a crash, quarantine of a corrupt store, the crash
//! storm.
//!
//! A [`Site`] is one temporary directory (config, socket, state dir, one stderr log per daemon
//! start) and, where the tests run as root on a machine with a cgroup v2 mount, one cgroup root
//! `<cgroup2 mount>/wf-test-<unique>`, written into the config the same way the shared harness
//! (`tests/common`) does. At most one daemon runs on a site at a time. Every run spawned through
//! a [`Client`] of the site carries `WF_TEST_TAG=<unique>` and is remembered, so that `Drop` can
//! end whatever a failing test left behind: it stops the daemon (SIGTERM, then SIGKILL), kills
//! every process that carries the tag or a remembered run id, empties and removes the cgroup
//! root, and prints the daemons' logs when the test panicked.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
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
use tonic::Status;
use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::{
    AckAlertRequest, Alert, AuditRecord, GetHealthRequest, GetHealthResponse, GetRequest,
    KillRequest, KillResponse, ListAuditRequest, ListRequest, LogStream, LogsRequest, PurgeRequest,
    PurgeResponse, Run, RunStatus, SpawnRequest,
};

use crate::common::{
    cgroup2_mount, cgroup_children, cgroup_populated, describe, is_terminal, pids_with_env,
    wait_for, zombie_children_of, Containment, Options, Proc, DAEMON_BIN, POLL, TIMEOUT,
};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-r{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One state dir that daemons are started on, one after the other.
pub struct Site {
    pub dir: TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub cgroup_root: Option<PathBuf>,
    /// The daemon now running, if one is.
    child: Option<Child>,
    /// The pid of the daemon now running (or of the last one).
    pub pid: i32,
    /// The stderr log of each daemon started here, in order.
    logs: Vec<PathBuf>,
    tag: String,
    runs: Arc<Mutex<BTreeSet<String>>>,
}

impl Site {
    /// Makes the directories and the config; `None` when the options ask for cgroups and the
    /// machine has none to give (the reason is printed). No daemon runs yet.
    pub fn new(options: Options) -> Option<Site> {
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
        let mut toml = format!(
            "[daemon]\nshutdown_timeout_ms = {}\n\n[runs]\ngrace_ms = {}\nkill_deadline_ms = 10000\n\n\
             [containment]\nmode = \"{mode}\"\n",
            options.shutdown_timeout_ms, options.grace_ms
        );
        if let Some(root) = &cgroup_root {
            toml.push_str(&format!("cgroup_root = \"{}\"\n", root.display()));
        }
        toml.push('\n');
        toml.push_str(&options.extra_toml);
        let config = dir.path().join("config.toml");
        fs::write(&config, toml).expect("writing the config");
        Some(Site {
            config,
            socket: dir.path().join("wf.sock"),
            state: dir.path().join("state"),
            cgroup_root,
            child: None,
            pid: 0,
            logs: Vec::new(),
            tag: unique("tag"),
            runs: Arc::default(),
            dir,
        })
    }

    /// Starts a daemon on this site and waits until it serves; returns a client of it. Panics
    /// when a daemon is running here already, or when the new one exits during startup.
    pub async fn start(&mut self) -> Client {
        assert!(
            self.child.is_none(),
            "a daemon is already running on this site"
        );
        let log = self
            .dir
            .path()
            .join(format!("daemon-{}.log", self.logs.len()));
        let stderr = fs::File::create(&log).expect("creating the daemon log");
        self.logs.push(log);
        let child = Command::new(DAEMON_BIN)
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .env(
                "WF_LOG",
                std::env::var("WF_LOG").unwrap_or("info,wf_supervisor=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting wf-supervisor");
        self.pid = child.id() as i32;
        self.child = Some(child);
        // The daemon binds its socket only after it has reconciled what an earlier daemon left,
        // so a connection means that recovery is over. (An earlier daemon is always waited for
        // before the next starts, so nobody else answers on this socket.)
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "wf-supervisor exited during startup with {status}; its log:\n{}",
                    self.current_log()
                );
            }
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "wf-supervisor did not accept connections on {} within {TIMEOUT:?}; its log:\n{}",
                self.socket.display(),
                self.current_log()
            );
            tokio::time::sleep(POLL).await;
        }
        self.client()
    }

    /// A new client with its own connection. It reconnects by itself: the same client works
    /// with the next daemon started on this site, and calls fail fast while none serves.
    pub fn client(&self) -> Client {
        let path = self.socket.clone();
        let channel = Endpoint::from_static("http://[::]:50051")
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        Client {
            client: SupervisorClient::new(channel),
            tag: self.tag.clone(),
            runs: self.runs.clone(),
        }
    }

    /// Whether a daemon runs on this site now.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs the daemon and reaps it: a crash, nothing of it runs any more.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("no daemon runs on this site");
        child.kill().expect("SIGKILL to the daemon");
        child.wait().expect("reaping the daemon");
    }

    /// SIGTERMs the daemon and waits until it has exited (it ends every live run first).
    pub async fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("no daemon runs on this site");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM to the daemon");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the daemon") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wf-supervisor did not exit within 60 s of SIGTERM; its log:\n{}",
                self.current_log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Zombie children of the daemon now running.
    pub fn zombies(&self) -> Vec<i32> {
        assert!(self.running(), "no daemon runs on this site");
        zombie_children_of(self.pid)
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.state.join("wf-supervisor.db")
    }

    /// The log folder of a run.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.state.join("runs").join(run_id)
    }

    /// The stderr of the daemon started last.
    pub fn current_log(&self) -> String {
        self.logs
            .last()
            .map(|p| fs::read_to_string(p).unwrap_or_else(|e| format!("<no log: {e}>")))
            .unwrap_or_default()
    }

    /// The stderr of every daemon started here, each under a heading.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "==== daemon start #{i} ====\n{}",
                    fs::read_to_string(p).unwrap_or_else(|e| format!("<no log: {e}>"))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every run id a client of this site was told of.
    pub fn known_runs(&self) -> BTreeSet<String> {
        self.runs.lock().expect("runs lock").clone()
    }

    /// Processes that carry this site's test tag, i.e. any process of any run spawned here,
    /// acknowledged or not.
    pub fn tagged_pids(&self) -> Vec<i32> {
        pids_with_env(&format!("WF_TEST_TAG={}", self.tag))
    }

    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("restarts: wf-supervisor ignored SIGTERM for 15 s; sending SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let mut needles: Vec<String> = self
            .known_runs()
            .iter()
            .map(|id| format!("WF_RUN_ID={id}"))
            .collect();
        needles.push(format!("WF_TEST_TAG={}", self.tag));
        for round in 0.. {
            let left: Vec<i32> = needles.iter().flat_map(|n| pids_with_env(n)).collect();
            if left.is_empty() || round == 50 {
                break;
            }
            if round == 0 {
                eprintln!("restarts: killing leftovers {}", describe(&left));
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

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(400).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "---- wf-supervisor logs (last {} lines) ----\n{}\n----",
                tail.len(),
                tail.join("\n")
            );
        }
        self.cleanup();
    }
}

/// Makes a fresh cgroup root for one site, or says why not.
fn make_cgroup_root() -> Result<PathBuf, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the tests do not run as root".into());
    }
    let mount = cgroup2_mount().ok_or("no cgroup2 mount in /proc/self/mountinfo")?;
    let root = mount.join(unique("wf-test"));
    fs::create_dir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    Ok(root)
}

/// Kills everything in the subtree and removes it, deepest first.
fn remove_cgroup_tree(root: &Path) {
    if !root.exists() {
        return;
    }
    if cgroup_populated(root) {
        eprintln!(
            "restarts: cgroup {} still populated; killing it",
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
            eprintln!("restarts: cannot remove cgroup {}: {e}", dir.display());
        }
    }
    remove(root);
}

/// A client of whichever daemon serves a site. Every run it spawns is tagged and remembered.
#[derive(Clone)]
pub struct Client {
    pub client: SupervisorClient<Channel>,
    tag: String,
    runs: Arc<Mutex<BTreeSet<String>>>,
}

impl Client {
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
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run.run_id.clone());
        Ok(run)
    }

    /// Spawns `argv`; panics on error.
    pub async fn spawn(&self, argv: &[String]) -> Run {
        self.try_spawn(SpawnRequest {
            argv: argv.to_vec(),
            ..Default::default()
        })
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

    /// Every run, newest first.
    pub async fn list(&self) -> Vec<Run> {
        self.list_req(ListRequest::default()).await
    }

    pub async fn list_req(&self, request: ListRequest) -> Vec<Run> {
        self.client
            .clone()
            .list(request)
            .await
            .unwrap_or_else(|s| panic!("List failed: {s:?}"))
            .into_inner()
            .runs
    }

    /// Waits until the run reaches a terminal status.
    pub async fn wait_terminal(&self, run_id: &str) -> Run {
        wait_for(TIMEOUT, &format!("{run_id} to end"), || async {
            let run = self.get(run_id).await;
            is_terminal(run.status()).then_some(run)
        })
        .await
    }

    /// Waits until the run has the status `status`.
    pub async fn wait_status(&self, run_id: &str, status: RunStatus) -> Run {
        wait_for(TIMEOUT, &format!("{run_id} to be {status:?}"), || async {
            let run = self.get(run_id).await;
            assert!(
                !is_terminal(run.status()) || is_terminal(status),
                "{run_id} ended before it was seen {status:?}: {run:?}"
            );
            (run.status() == status).then_some(run)
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

    pub async fn purge(&self, request: PurgeRequest) -> Result<PurgeResponse, Status> {
        Ok(self.client.clone().purge(request).await?.into_inner())
    }

    /// The audit records of one run (all records for ""), newest first.
    pub async fn audit(&self, run_id: &str) -> Vec<AuditRecord> {
        self.audit_req(ListAuditRequest {
            run_id: run_id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn audit_req(&self, request: ListAuditRequest) -> Vec<AuditRecord> {
        self.client
            .clone()
            .list_audit(request)
            .await
            .unwrap_or_else(|s| panic!("ListAudit failed: {s:?}"))
            .into_inner()
            .records
    }

    pub async fn health(&self) -> GetHealthResponse {
        self.client
            .clone()
            .get_health(GetHealthRequest {})
            .await
            .unwrap_or_else(|s| panic!("GetHealth failed: {s:?}"))
            .into_inner()
    }

    pub async fn ack_alert(&self, id: i64, note: &str) -> Result<Alert, Status> {
        Ok(self
            .client
            .clone()
            .ack_alert(AckAlertRequest {
                id,
                note: note.to_string(),
            })
            .await?
            .into_inner())
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

/// Asserts that no live process carries `WF_RUN_ID=<run_id>` and none of `procs` is alive. For
/// processes orphaned by a crashed daemon (their parent is then init, not a daemon of the test),
/// only "not alive" is asserted: reaping them is init's business.
pub fn assert_nothing_left(run_id: &str, procs: &[Proc]) {
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
}
