//! Finding a working Claude Code CLI on this machine, or the reason there is none.
//!
//! Looked for, in order: `$WF_TEST_CLAUDE_BIN`; `claude` on `PATH`; the npm install that
//! `.ci/run` makes under `target/claude-cli`; the global npm root (`npm root -g`), both the
//! package's `bin/claude.exe` (which its postinstall script replaces with the native binary) and
//! the platform package's own binary (`@anthropic-ai/claude-code-linux-*/claude`, there even when
//! install scripts were not allowed to run); `~/.local/bin/claude`. A candidate counts only if
//! `--version` answers within a deadline.
//!
//! A CLI named by `WF_TEST_CLAUDE_BIN` that does not work is an error; none found is a skip,
//! unless `WF_TEST_CLAUDE_REQUIRED=1` asks for an error instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A CLI that answered `--version`.
#[derive(Clone, Debug)]
pub struct ClaudeCli {
    pub path: PathBuf,
    /// As printed, e.g. `2.1.197 (Claude Code)`.
    pub version_line: String,
}

impl ClaudeCli {
    /// The bare version, e.g. `2.1.197`.
    pub fn version(&self) -> &str {
        self.version_line
            .split_whitespace()
            .next()
            .unwrap_or_default()
    }
}

/// The CLI to test, or `None` after printing why the test skips.
pub async fn claude_or_skip(test: &str) -> Option<ClaudeCli> {
    if let Ok(explicit) = std::env::var("WF_TEST_CLAUDE_BIN") {
        if !explicit.is_empty() {
            return match probe(Path::new(&explicit)).await {
                Ok(cli) => Some(cli),
                Err(e) => panic!("WF_TEST_CLAUDE_BIN={explicit} does not work: {e}"),
            };
        }
    }
    let mut tried = Vec::new();
    for candidate in candidates() {
        match probe(&candidate).await {
            Ok(cli) => return Some(cli),
            Err(e) => tried.push(format!("{}: {e}", candidate.display())),
        }
    }
    let reason = if tried.is_empty() {
        "no `claude` on PATH, under target/claude-cli, in the global npm root or ~/.local/bin; \
         install it with `npm install -g @anthropic-ai/claude-code` or set WF_TEST_CLAUDE_BIN"
            .to_string()
    } else {
        format!("no candidate works: {}", tried.join("; "))
    };
    if std::env::var("WF_TEST_CLAUDE_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("the Claude Code CLI is required (WF_TEST_CLAUDE_REQUIRED=1): {reason}");
    }
    eprintln!("SKIP: {test}: the Claude Code CLI is not installed ({reason})");
    None
}

/// Existing files that may be the CLI, best first, without duplicates.
fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|d| d.join("claude")));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    out.push(manifest.join("target/claude-cli/node_modules/.bin/claude"));
    out.extend(platform_binaries(
        &manifest.join("target/claude-cli/node_modules"),
    ));
    if let Some(root) = npm_root_global() {
        out.push(root.join("@anthropic-ai/claude-code/bin/claude.exe"));
        out.push(root.join("@anthropic-ai/claude-code/cli.js"));
        out.extend(platform_binaries(&root));
    }
    if let Some(home) = std::env::var_os("HOME") {
        out.push(PathBuf::from(&home).join(".local/bin/claude"));
        out.push(PathBuf::from(&home).join(".claude/local/claude"));
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        let keep = p.is_file() && !seen.contains(p);
        seen.push(p.clone());
        keep
    });
    out
}

/// `@anthropic-ai/claude-code-linux-*/claude` under a `node_modules` folder.
fn platform_binaries(node_modules: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(node_modules.join("@anthropic-ai")) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("claude-code-linux-"))
        })
        .map(|e| e.path().join("claude"))
        .collect();
    found.sort();
    found
}

fn npm_root_global() -> Option<PathBuf> {
    let out = std::process::Command::new("npm")
        .args(["root", "-g"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let root = String::from_utf8(out.stdout).ok()?;
    let root = root.trim();
    (out.status.success() && !root.is_empty()).then(|| PathBuf::from(root))
}

/// Runs `PATH --version` with a fresh HOME and a deadline.
async fn probe(path: &Path) -> Result<ClaudeCli, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || probe_blocking(&path))
        .await
        .map_err(|e| format!("the probe panicked: {e}"))?
}

fn probe_blocking(path: &Path) -> Result<ClaudeCli, String> {
    let home = tempfile::Builder::new()
        .prefix("wf-claude-probe-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let child = std::process::Command::new(path)
        .arg("--version")
        .env("HOME", home.path())
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.map_err(|e| format!("waiting for `--version`: {e}"))?,
        Err(_) => {
            // The waiting thread reaps it once it is gone.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err("`--version` did not answer within 60 s".to_string());
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !stdout.contains("Claude Code") {
        return Err(format!(
            "`--version` said {stdout:?} / {:?} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ));
    }
    Ok(ClaudeCli {
        path: path.to_path_buf(),
        version_line: stdout,
    })
}
