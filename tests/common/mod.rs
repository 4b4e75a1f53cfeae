//! The integration-test harness, shared by every test binary: a real `wf-supervisor` daemon on a
//! real unix socket, a client of it, the fake agent, deadline-based waiting, and the `/proc`
//! evidence every kill test ends with.
//!
//! - [`Site`] (`site.rs`): one temporary directory (config, socket, state dir, one stderr log per
//!   daemon start) and, where this machine has a writable cgroup v2 mount and the tests run as
//!   root, one cgroup root `<cgroup2 mount>/wf-test-<unique>`. Daemons are started on it one
//!   after the other: stopped (SIGTERM) or crashed (SIGKILL) and started again on the same
//!   config, socket, state dir and cgroup root, for the tests that need what one daemon wrote to
//!   be read by the next. Its `Drop` ends whatever a failing test left behind: it stops the daemon
//!   (SIGTERM, then SIGKILL), kills every process that carries the site's test tag or one of its
//!   run ids, empties and removes the cgroup root, and prints the daemons' logs when the test
//!   panicked.
//! - [`Daemon`] (`daemon.rs`): a site with one daemon started once (the common case), with a
//!   client connected as soon as the socket serves. It derefs to its [`Site`].
//! - [`Api`] (`api.rs`): a client of a site's daemon. Every run spawned through it carries the env
//!   var `WF_TEST_TAG=<unique>` and its id is remembered, for that cleanup.
//! - `procfs.rs` and `cgroup.rs`: the `/proc` and cgroup evidence.
//! - `users.rs`: throwaway users and groups, and connections made as them (access tests).
//!
//! Tests wait for conditions with [`wait_until`] / [`wait_for`] against generous deadlines and
//! never assert timings.
#![allow(dead_code)]

mod api;
mod cgroup;
mod daemon;
mod procfs;
mod site;
mod users;

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use {api::*, cgroup::*, daemon::*, procfs::*, site::*, users::*};

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::{Code, Status};
use wf_supervisor::proto::RunStatus;

/// The daemon under test.
pub const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_wf-supervisor");
/// The fake agent the tests drive.
pub const FAKE_AGENT: &str = env!("CARGO_BIN_EXE_wf-fake-agent");
/// A generous deadline for anything that should happen "soon".
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(25);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
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
// Small things

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

/// `s` as a TOML string literal.
pub fn toml_str(s: impl AsRef<str>) -> String {
    toml::Value::String(s.as_ref().to_string()).to_string()
}

/// Asserts that a call failed with `code`.
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(s) => assert_eq!(s.code(), code, "{what}: unexpected status {s:?}"),
    }
}

/// Label counts, for messages.
pub fn count_by<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

/// A loopback TCP port nobody listens on now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts a daemon on `site` expecting it to refuse; returns its stderr.
pub fn start_refused(site: &Site) -> String {
    let mut child = std::process::Command::new(DAEMON_BIN)
        .arg("--config")
        .arg(&site.config)
        .arg("--socket")
        .arg(&site.socket)
        .arg("--state-dir")
        .arg(&site.state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start wf-supervisor");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(!status.success(), "the daemon should refuse to start");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("read stderr");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not refuse to start");
        }
        std::thread::sleep(POLL);
    }
}
