//! A [`Site`]: one state dir that daemons are started on, one after the other, and everything a
//! failing test could leave behind there.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::Endpoint;
use wf_supervisor::proto::supervisor_client::SupervisorClient;

use super::api::unix_connector;
use super::cgroup::{make_cgroup_root, remove_cgroup_tree};
use super::{
    describe, pids_with_env, toml_str, unique, wait_until, zombie_children_of, Api, Proc,
    DAEMON_BIN, POLL, TIMEOUT,
};

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

/// What a test wants of its daemon(s): the config a [`Site`] writes once, for every daemon
/// started on it.
#[derive(Clone, Debug)]
pub struct Options {
    pub containment: Containment,
    /// `[runs] grace_ms`.
    pub grace_ms: u64,
    /// `[daemon] shutdown_timeout_ms`.
    pub shutdown_timeout_ms: u64,
    /// More TOML appended to the config as is (e.g. `[workflows.NAME]` tables).
    pub extra_toml: String,
    /// More `key = value` lines inside `[runs]`.
    pub runs_toml: String,
    /// More `key = value` lines inside `[daemon]`.
    pub daemon_toml: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            containment: Containment::Auto,
            grace_ms: 5000,
            shutdown_timeout_ms: 30_000,
            extra_toml: String::new(),
            runs_toml: String::new(),
            daemon_toml: String::new(),
        }
    }
}

/// How a daemon's log filter is set: the variable, and its value unless the test's own
/// environment sets that variable.
#[derive(Clone, Copy, Debug)]
pub(super) struct LogFilter {
    var: &'static str,
    default: &'static str,
}

/// The daemons of a [`Site`]: the daemon's own debug lines, libraries at `info` (`WF_LOG`, which
/// the daemon reads first), so that the logs of many starts stay readable.
pub(super) const SITE_LOG: LogFilter = LogFilter {
    var: "WF_LOG",
    default: "info,wf_supervisor=debug",
};

/// A [`Daemon`](super::Daemon)'s: everything at debug (`RUST_LOG`; a `WF_LOG` in the test's
/// environment still wins).
pub(super) const DAEMON_LOG: LogFilter = LogFilter {
    var: "RUST_LOG",
    default: "debug",
};

/// One state dir that daemons are started on, one after the other; at most one runs at a time.
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
    pub(super) log_filter: LogFilter,
    /// More environment for the daemons started after (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
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
        // The tests run agents as root on purpose (they inspect them through /proc); the
        // access tests that want the agents_run_as_root alert say so in runs_toml.
        let root_agents = if options.runs_toml.contains("allow_root_agents")
            || options.runs_toml.contains("user =")
        {
            ""
        } else {
            "allow_root_agents = true\n"
        };
        let mut toml = format!(
            "[daemon]\nshutdown_timeout_ms = {}\n{}\n[runs]\ngrace_ms = {}\nkill_deadline_ms = 10000\n{}{}\n\
             [containment]\nmode = \"{mode}\"\n",
            options.shutdown_timeout_ms,
            options.daemon_toml,
            options.grace_ms,
            root_agents,
            options.runs_toml
        );
        if let Some(root) = &cgroup_root {
            toml.push_str(&format!(
                "cgroup_root = {}\n",
                toml_str(root.display().to_string())
            ));
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
            log_filter: SITE_LOG,
            env: Vec::new(),
            tag: unique("tag"),
            runs: Arc::default(),
            dir,
        })
    }

    /// Appends `toml` to the config, for tables that name paths inside [`Site::dir`]; it holds
    /// for the daemons started after.
    pub fn add_config(&self, toml: &str) {
        let mut text = fs::read_to_string(&self.config).expect("reading the config");
        text.push_str(toml);
        fs::write(&self.config, text).expect("writing the config");
    }

    /// Starts a daemon on this site and waits until it serves; returns a new client of it (see
    /// [`Site::client`]). Panics when a daemon is running here already, or when the new one
    /// exits during startup.
    pub async fn start(&mut self) -> Api {
        self.launch().await;
        self.client()
    }

    /// Starts a daemon and waits until its socket accepts connections.
    pub(super) async fn launch(&mut self) {
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
                self.log_filter.var,
                std::env::var(self.log_filter.var).unwrap_or(self.log_filter.default.into()),
            )
            .envs(self.env.iter().cloned())
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
    }

    /// A new client with its own connection. It reconnects by itself: the same client works
    /// with the next daemon started on this site, and calls fail fast while none serves.
    pub fn client(&self) -> Api {
        let channel = Endpoint::from_static("http://[::]:50051")
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(unix_connector(&self.socket));
        self.api_on(SupervisorClient::new(channel))
    }

    /// A client on `client` that tags and remembers runs for this site's cleanup.
    pub(super) fn api_on(&self, client: SupervisorClient<tonic::transport::Channel>) -> Api {
        Api::new(client, self.tag.clone(), self.runs.clone())
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

    /// SIGTERMs the daemon, waits until it has exited (it ends every live run first), and
    /// asserts that it exited 0.
    pub async fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "wf-supervisor exited with {status}");
    }

    /// Sends `signal` to the daemon now running.
    pub fn signal(&self, signal: Signal) {
        assert!(self.running(), "no daemon runs on this site");
        kill(Pid::from_raw(self.pid), signal).expect("signalling the daemon");
    }

    /// Waits for the daemon to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("no daemon runs on this site");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the daemon") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wf-supervisor did not exit within {timeout:?}; its log:\n{}",
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

    /// The daemon's resident set size, from /proc/PID/status.
    pub fn rss_kib(&self) -> Option<u64> {
        super::rss_kib(self.pid)
    }

    /// Proves that nothing of run `run_id` is left: no live process carries its WF_RUN_ID right
    /// now (a kill has verified the run empty before answering), none of `procs` lives, and soon
    /// neither those nor any zombie child of the daemon remains.
    pub async fn assert_run_gone(&self, run_id: &str, procs: &[Proc]) {
        super::assert_nothing_left(run_id, procs);
        self.assert_reaped(procs).await;
    }

    /// Waits until none of `procs` exists in any state and the daemon has no zombie children.
    pub async fn assert_reaped(&self, procs: &[Proc]) {
        wait_until(TIMEOUT, "every process is reaped", || {
            procs.iter().all(|p| !p.exists()) && self.zombies().is_empty()
        })
        .await;
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.state.join("wf-supervisor.db")
    }

    /// The status the store holds for `run_id` right now, as written (`RUNNING`, `STOPPING`...):
    /// what a daemon started after a crash would read. The API answers from memory, which runs a
    /// group commit ahead of the file.
    pub fn stored_status(&self, run_id: &str) -> Option<String> {
        let conn = rusqlite::Connection::open_with_flags(
            self.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.busy_timeout(Duration::from_secs(5)).ok()?;
        conn.query_row("SELECT status FROM runs WHERE run_id = ?1", [run_id], |r| {
            r.get(0)
        })
        .ok()
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

    /// Stops the daemon and ends whatever it left; used by `Drop`.
    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
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

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = match self.logs.len() {
                1 => self.current_log(),
                _ => self.log_text(),
            };
            let tail: Vec<&str> = text.lines().rev().take(400).collect();
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
