//! The daemon under test: started from its own binary on a fresh state dir, socket and config
//! in the benchmark's temp dir, in a process group of its own (so a Ctrl-C at the terminal
//! reaches the benchmark only, which then stops the daemon in order), with its log in a file.
//! Reached through its gRPC socket exactly as an orchestrator would; stopped with SIGTERM, and
//! with SIGKILL only when it does not exit in time. Each measure gets a fresh daemon, so one
//! measure's leftovers (memory, run records) do not colour the next.
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use tonic::transport::{Channel, Endpoint};

use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::{self, KillRequest, Run, SpawnRequest};

use super::procs::{self, Held, Usage};
use super::{cleanup, sys, Ctx};

/// A connection to the daemon.
pub type Client = SupervisorClient<Channel>;

/// How long the daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running daemon.
pub struct Daemon {
    pub pid: i32,
    pidfd: Option<Held>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    log: PathBuf,
    tag_needle: Vec<u8>,
    stopped: Option<StopReport>,
}

/// How the daemon stopped, and what its log says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StopReport {
    pub shutdown_ms: f64,
    pub exit: String,
    pub killed: bool,
    pub log_warnings: usize,
    pub log_errors: usize,
    /// The first few WARN/ERROR lines of the daemon's log.
    pub log_samples: Vec<String>,
    /// Processes of the benchmark's runs still alive after the daemon exited.
    pub leftovers: usize,
}

impl Daemon {
    /// Start a daemon for the measure `name` and wait until its socket accepts.
    pub async fn start(ctx: &Ctx, name: &str) -> anyhow::Result<Daemon> {
        Daemon::start_with(ctx, name, "").await
    }

    /// The same, with `extra` appended to the config (e.g. a `[metrics]` table).
    pub async fn start_with(ctx: &Ctx, name: &str, extra: &str) -> anyhow::Result<Daemon> {
        let dir = ctx.tmp().join(format!("daemon-{name}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let socket = dir.join("wf.sock");
        if socket.as_os_str().len() > 100 {
            bail!(
                "the socket path {} is too long for a unix socket; set TMPDIR to a shorter dir",
                socket.display()
            );
        }
        let state_dir = dir.join("state");
        let config = dir.join("config.toml");
        let log = dir.join("daemon.log");
        std::fs::write(&config, config_text(ctx) + extra)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log_file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let log_err = log_file.try_clone()?;
        let mut cmd = Command::new(&ctx.daemon_bin);
        cmd.arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        sys::pre_exec_parent_death_signal(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the daemon {}", ctx.daemon_bin.display()))?;
        let pid = child.id() as i32;
        cleanup::own(pid);
        drop(child);
        let pidfd = sys::pidfd_open(pid).ok().map(|fd| Held { pid, fd });
        let mut d = Daemon {
            pid,
            pidfd,
            socket,
            state_dir,
            log,
            tag_needle: ctx.tag_needle(),
            stopped: None,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if d.pidfd.as_ref().is_some_and(procs::has_exited) {
                let tail = d.log_tail(20);
                d.stop();
                bail!("the daemon exited at start; its log ends:\n{tail}");
            }
            if tokio::net::UnixStream::connect(&d.socket).await.is_ok() {
                return Ok(d);
            }
            if Instant::now() >= deadline {
                let tail = d.log_tail(20);
                d.stop();
                bail!("the daemon's socket did not accept within 15 s; its log ends:\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A new connection to the daemon.
    pub async fn client(&self) -> anyhow::Result<Client> {
        self.client_with_window(None).await
    }

    /// A new connection that advertises `window` bytes as its HTTP/2 stream window (how much
    /// the daemon may send ahead of what this client has read); None: tonic's default.
    pub async fn client_with_window(&self, window: Option<u32>) -> anyhow::Result<Client> {
        let path = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")?
            .initial_stream_window_size(window)
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .with_context(|| format!("cannot connect to {}", self.socket.display()))?;
        Ok(SupervisorClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// `n` connections.
    pub async fn clients(&self, n: usize) -> anyhow::Result<Vec<Client>> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.client().await?);
        }
        Ok(v)
    }

    /// The daemon's memory, fds and CPU time now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        procs::usage(self.pid).with_context(|| format!("cannot read /proc/{}", self.pid))
    }

    /// The directory the daemon keeps a run's log files in.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.state_dir.join("runs").join(run_id)
    }

    fn log_tail(&self, n: usize) -> String {
        let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stop the daemon (SIGTERM, then SIGKILL after `STOP_TIMEOUT`), reap it, sweep anything
    /// of its runs it left, and read its log for warnings. Idempotent.
    pub fn stop(&mut self) -> StopReport {
        if let Some(r) = &self.stopped {
            return r.clone();
        }
        let t0 = Instant::now();
        let mut killed = false;
        if let Some(h) = &self.pidfd {
            let _ = sys::pidfd_signal(h.fd.as_fd(), libc::SIGTERM);
            let exits = procs::wait_all_exited(std::slice::from_ref(h), t0 + STOP_TIMEOUT);
            if !exits.alive.is_empty() {
                killed = true;
                let _ = sys::pidfd_signal(h.fd.as_fd(), libc::SIGKILL);
            }
        } else {
            // No pidfd (cannot happen on a kernel with pidfds): the daemon is our unreaped
            // child, so its number is still its own.
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), nix::sys::signal::SIGKILL);
            killed = true;
        }
        let exit = match waitpid(Pid::from_raw(self.pid), None) {
            Ok(st) => format!("{st:?}"),
            Err(e) => format!("waitpid: {e}"),
        };
        cleanup::disown(self.pid);
        let shutdown_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let leftovers = cleanup::sweep(&self.tag_needle);
        let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let warn: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
        let err: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
        let log_samples = err
            .iter()
            .chain(warn.iter())
            .take(5)
            .map(|l| l.chars().take(300).collect())
            .collect();
        let r = StopReport {
            shutdown_ms,
            exit,
            killed,
            log_warnings: warn.len(),
            log_errors: err.len(),
            log_samples,
            leftovers,
        };
        self.stopped = Some(r.clone());
        r
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The text without ANSI colour sequences (`ESC [ ... letter`), which the daemon's text log
/// may carry even when it goes to a file.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The config the benchmark runs the daemon on.
fn config_text(ctx: &Ctx) -> String {
    format!(
        "# Written by wf-bench.\n\
         [daemon]\nshutdown_timeout_ms = 15000\nnice = {}\n\n\
         [runs]\nmax_live_runs = {}\n\n\
         [containment]\nmode = \"{}\"\ncgroup_entry = \"{}\"\n",
        ctx.daemon_nice,
        ctx.plan.max_live_runs(),
        ctx.containment,
        ctx.cgroup_entry
    )
}

/// Spawn a run with the session tag and `env`; the answer is the run as recorded.
pub async fn spawn(
    client: &mut Client,
    ctx: &Ctx,
    argv: &[&str],
    env: &[(&str, String)],
) -> anyhow::Result<Run> {
    let mut e: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let (k, v) = ctx.tag_env();
    e.insert(k, v);
    let req = SpawnRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: e.into_iter().collect(),
        ..Default::default()
    };
    let resp = tokio::time::timeout(Duration::from_secs(30), client.spawn(req))
        .await
        .context("Spawn did not answer within 30 s")?
        .context("Spawn failed")?;
    let run = resp
        .into_inner()
        .run
        .context("the Spawn answer carries no run")?;
    if run.status == proto::RunStatus::Failed as i32 {
        bail!("the run failed to start: {}", run.error);
    }
    Ok(run)
}

/// Kill a run; `grace_ms` 0 means the run's own grace.
pub async fn kill(
    client: &mut Client,
    run_id: &str,
    grace_ms: u64,
    force: bool,
) -> anyhow::Result<proto::KillResponse> {
    let req = KillRequest {
        run_id: run_id.to_string(),
        force,
        grace_ms,
        reason: "wf-bench".into(),
        ..Default::default()
    };
    let resp = tokio::time::timeout(Duration::from_secs(60), client.kill(req))
        .await
        .context("Kill did not answer within 60 s")?
        .with_context(|| format!("Kill {run_id} failed"))?;
    Ok(resp.into_inner())
}

/// Whether a status is terminal.
pub fn is_terminal(status: i32) -> bool {
    use proto::RunStatus as S;
    [
        S::Succeeded,
        S::Failed,
        S::Killed,
        S::Cancelled,
        S::TimedOut,
        S::Lost,
    ]
    .iter()
    .any(|s| *s as i32 == status)
}

/// Poll Get until the run is terminal; the run as recorded then.
pub async fn wait_terminal(
    client: &mut Client,
    run_id: &str,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let deadline = Instant::now() + timeout;
    loop {
        let run = client
            .get(proto::GetRequest {
                run_id: run_id.to_string(),
            })
            .await
            .with_context(|| format!("Get {run_id}"))?
            .into_inner();
        if is_terminal(run.status) {
            return Ok(run);
        }
        if Instant::now() >= deadline {
            bail!(
                "run {run_id} did not end within {timeout:?} (status {})",
                run.status
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Remove a file or directory the daemon made under its state dir (e.g. a 1 GiB log file
/// once the flood measure has read its size), keeping the disk free during the benchmark.
pub fn remove_quietly(p: &Path) {
    let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
}

#[cfg(test)]
mod tests {
    #[test]
    fn strip_ansi_keeps_the_text() {
        let line = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x: y";
        assert_eq!(super::strip_ansi(line), "2026-01-01T00:00:00Z  WARN x: y");
    }
}
