//! `wfctl spawn`: start a run, in one of two forms told apart by `--`:
//! `wfctl spawn [OPTIONS] WORKFLOW PROMPT` starts a workflow template from the daemon's config
//! with a prompt (the daemon builds the Claude command line; --model, --max-turns,
//! --permission-mode, --allowed-tool and --append-system-prompt change the template for this run),
//! and `wfctl spawn [OPTIONS] -- CMD [ARGS]...` runs a command. Both take the working directory,
//! environment, labels, stop signals and grace, and the queue and policy options (--queue,
//! --priority, --after, --not-before, --timeout, --queue-timeout, --restart, --max-restarts,
//! --restart-backoff, --idempotency-key). Prints the new run id (a queued run's id too, with why it
//! waits on stderr) (or the whole response with
//! --json); a run whose program could not be started is reported on stderr with exit code 1. A
//! command line that is neither form is a usage error (exit 2), caught by [`SpawnArgs::target`]
//! before the daemon is contacted.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{RestartPolicy, RunStatus, SpawnOverrides, SpawnRequest};

use super::{api_error, output, Client};

const WORKFLOW_OPTIONS: &str = "Workflow options (WORKFLOW PROMPT form only)";
const QUEUE_OPTIONS: &str = "Queue and policy options";

#[derive(Debug, Args)]
#[command(override_usage = "wfctl spawn [OPTIONS] <WORKFLOW> <PROMPT>\n       \
                            wfctl spawn [OPTIONS] -- <CMD> [ARGS]...")]
pub struct SpawnArgs {
    /// Working directory of the run (relative paths are taken from here); default: the
    /// workflow's, else the daemon's.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// An environment variable for the run; repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = super::parse_key_val)]
    pub env: Vec<(String, String)>,

    /// A label on the run; repeatable.
    #[arg(long = "label", short = 'l', value_name = "K=V", value_parser = super::parse_key_val)]
    pub labels: Vec<(String, String)>,

    /// A signal sent at a graceful kill, in order; repeatable (default: the workflow's, INT then
    /// TERM, or the daemon's, TERM).
    #[arg(long = "stop-signal", value_name = "SIG", value_parser = super::parse_stop_signal)]
    pub stop_signals: Vec<String>,

    /// Grace between the first stop signal and KILL, e.g. 5s (default: the workflow's or the
    /// daemon's).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_grace)]
    pub grace: Option<u64>,

    /// The queue to wait in for a slot (default: the workflow's, else "default").
    #[arg(long, value_name = "QUEUE", help_heading = QUEUE_OPTIONS)]
    pub queue: Option<String>,

    /// Higher starts first (default 0); then the oldest.
    #[arg(long, value_name = "N", allow_negative_numbers = true, help_heading = QUEUE_OPTIONS)]
    pub priority: Option<i32>,

    /// Start only once this run has SUCCEEDED (if it fails, this run is cancelled); repeatable.
    #[arg(long, value_name = "ID", help_heading = QUEUE_OPTIONS)]
    pub after: Vec<String>,

    /// Do not start earlier: HH:MM[:SS] (UTC, the next such time), +DURATION, or Unix ms.
    #[arg(long, value_name = "WHEN", value_parser = parse_not_before, help_heading = QUEUE_OPTIONS)]
    pub not_before: Option<i64>,

    /// Wall-clock limit once running, e.g. 1h: then the run ends TIMED_OUT.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_age, help_heading = QUEUE_OPTIONS)]
    pub timeout: Option<u64>,

    /// The longest it may wait to start, e.g. 10m: then it ends CANCELLED, never started.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_age, help_heading = QUEUE_OPTIONS)]
    pub queue_timeout: Option<u64>,

    /// Restart on these ends as a new linked run after a backoff: on-failure (failed,
    /// timed_out and lost), or a comma list of failed, timed_out, lost.
    #[arg(long, value_name = "WHEN", value_parser = parse_restart_on, help_heading = QUEUE_OPTIONS)]
    pub restart: Option<RestartOn>,

    /// With --restart: at most this many restarts (default 3).
    #[arg(long, value_name = "N", requires = "restart", help_heading = QUEUE_OPTIONS)]
    pub max_restarts: Option<u32>,

    /// With --restart: the first backoff, doubled each time (default 10s, at most 5m).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_age, requires = "restart", help_heading = QUEUE_OPTIONS)]
    pub restart_backoff: Option<u64>,

    /// A retried spawn with the same key (within 24 hours) returns the first run instead.
    #[arg(long, value_name = "KEY", help_heading = QUEUE_OPTIONS)]
    pub idempotency_key: Option<String>,

    /// The model instead of the template's.
    #[arg(long, value_name = "MODEL", help_heading = WORKFLOW_OPTIONS)]
    pub model: Option<String>,

    /// At most this many turns instead of the template's limit.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = WORKFLOW_OPTIONS
    )]
    pub max_turns: Option<u32>,

    /// The permission mode instead of the template's, e.g. acceptEdits, plan.
    #[arg(long, value_name = "MODE", help_heading = WORKFLOW_OPTIONS)]
    pub permission_mode: Option<String>,

    /// An allowed tool, e.g. Read or 'Bash(git diff:*)'; repeatable. The tools given replace the
    /// template's list.
    #[arg(long = "allowed-tool", value_name = "TOOL", help_heading = WORKFLOW_OPTIONS)]
    pub allowed_tools: Vec<String>,

    /// Text appended to the system prompt instead of the template's.
    #[arg(long, value_name = "TEXT", help_heading = WORKFLOW_OPTIONS)]
    pub append_system_prompt: Option<String>,

    /// A workflow from the daemon's config (see `wfctl workflows`) and the prompt for it, as two
    /// arguments (quote the prompt).
    #[arg(value_name = "WORKFLOW PROMPT")]
    pub words: Vec<String>,

    /// The program and its arguments, after `--`.
    #[arg(value_name = "CMD", last = true)]
    pub argv: Vec<String>,
}

/// What a spawn starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-- CMD [ARGS]...`
    Command(Vec<String>),
    /// `WORKFLOW PROMPT`
    Workflow { name: String, prompt: String },
}

impl Target {
    /// How errors name the spawn: the workflow or the program.
    pub fn label(&self) -> &str {
        match self {
            Target::Command(argv) => argv.first().map(String::as_str).unwrap_or_default(),
            Target::Workflow { name, .. } => name,
        }
    }
}

impl SpawnArgs {
    /// The workflow-only options given on the command line, as flags.
    fn workflow_options_given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.model.is_some() {
            given.push("--model");
        }
        if self.max_turns.is_some() {
            given.push("--max-turns");
        }
        if self.permission_mode.is_some() {
            given.push("--permission-mode");
        }
        if !self.allowed_tools.is_empty() {
            given.push("--allowed-tool");
        }
        if self.append_system_prompt.is_some() {
            given.push("--append-system-prompt");
        }
        given
    }

    /// Which form this is: a command after `--`, or exactly WORKFLOW PROMPT without `--`. Anything
    /// else is a usage error, returned as its message (with the likely intended command line).
    pub fn target(&self) -> Result<Target, String> {
        if !self.argv.is_empty() {
            if !self.words.is_empty() {
                return Err(format!(
                    "give WORKFLOW PROMPT or `-- CMD [ARGS]...`, not both (before `--`: {})",
                    output::command_line(&self.words)
                ));
            }
            let given = self.workflow_options_given();
            if !given.is_empty() {
                return Err(format!(
                    "{} {} only to a workflow spawn (WORKFLOW PROMPT), not to a command after `--`",
                    given.join(", "),
                    if given.len() == 1 { "applies" } else { "apply" }
                ));
            }
            return Ok(Target::Command(self.argv.clone()));
        }
        match self.words.as_slice() {
            [] => Err(
                "nothing to start: give WORKFLOW PROMPT (see `wfctl workflows`), or a \
                       command after `--`"
                    .to_string(),
            ),
            [one] => Err(format!(
                "workflow {} needs a PROMPT: wfctl spawn {} \"PROMPT\" (to run a command, put it \
                 after `--`: wfctl spawn -- {})",
                output::shell_quote(one),
                output::shell_quote(one),
                output::shell_quote(one)
            )),
            [name, prompt] => {
                if name.trim().is_empty() {
                    Err("the WORKFLOW name is empty".to_string())
                } else if prompt.trim().is_empty() {
                    Err(format!(
                        "the PROMPT for workflow {} is empty",
                        output::shell_quote(name)
                    ))
                } else {
                    Ok(Target::Workflow {
                        name: name.clone(),
                        prompt: prompt.clone(),
                    })
                }
            }
            [name, rest @ ..] => Err(format!(
                "a workflow spawn takes exactly WORKFLOW PROMPT, not {} words: quote the prompt \
                 (wfctl spawn {} {}), or put a command after `--` (wfctl spawn -- {})",
                self.words.len(),
                output::shell_quote(name),
                output::shell_quote(&rest.join(" ")),
                output::command_line(&self.words)
            )),
        }
    }

    /// The template changes for a workflow spawn; None when no workflow option was given.
    pub fn overrides(&self) -> Option<SpawnOverrides> {
        if self.workflow_options_given().is_empty() {
            return None;
        }
        Some(SpawnOverrides {
            model: self.model.clone(),
            max_turns: self.max_turns,
            permission_mode: self.permission_mode.clone(),
            allowed_tools: self.allowed_tools.clone(),
            replace_allowed_tools: !self.allowed_tools.is_empty(),
            append_system_prompt: self.append_system_prompt.clone(),
        })
    }
}

/// The statuses `--restart` names (API words: failed, timed_out, lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOn(pub Vec<String>);

/// `--restart`: `on-failure` or a comma list of failed, timed_out, lost (`never`: none).
pub fn parse_restart_on(s: &str) -> Result<RestartOn, String> {
    restart_words(s).map(RestartOn)
}

fn restart_words(s: &str) -> Result<Vec<String>, String> {
    let norm = s.trim().to_ascii_lowercase().replace('-', "_");
    match norm.as_str() {
        "on_failure" | "always" => {
            return Ok(vec!["failed".into(), "timed_out".into(), "lost".into()])
        }
        "never" | "no" => return Ok(Vec::new()),
        _ => {}
    }
    let mut on = Vec::new();
    for part in norm.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let word = part.strip_prefix("on_").unwrap_or(part);
        match word {
            "failed" | "failure" => on.push("failed".to_string()),
            "timed_out" | "timeout" => on.push("timed_out".to_string()),
            "lost" => on.push("lost".to_string()),
            _ => {
                return Err(format!(
                    "{s:?}: {part:?} is not on-failure or one of failed, timed_out, lost"
                ))
            }
        }
    }
    if on.is_empty() {
        return Err(format!("{s:?} names no status to restart on"));
    }
    Ok(on)
}

/// `--not-before` with the time now: `HH:MM[:SS]` (UTC; today, or tomorrow if that passed),
/// `+DURATION`, or Unix milliseconds.
pub fn not_before_at(s: &str, now_ms: i64) -> Result<i64, String> {
    let t = s.trim();
    if let Some(d) = t.strip_prefix('+') {
        return super::parse_age(d).map(|ms| now_ms + ms as i64);
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return t.parse().map_err(|_| format!("{s:?} is too large"));
    }
    let parts: Vec<&str> = t.split(':').collect();
    let nums: Option<Vec<i64>> = parts.iter().map(|p| p.parse().ok()).collect();
    match (parts.len(), nums) {
        (2 | 3, Some(n)) if n[0] < 24 && n[1] < 60 && n.get(2).is_none_or(|s| *s < 60) => {
            let secs = n[0] * 3600 + n[1] * 60 + n.get(2).copied().unwrap_or(0);
            let day = now_ms.div_euclid(86_400_000) * 86_400_000;
            let mut at = day + secs * 1000;
            if at <= now_ms {
                at += 86_400_000;
            }
            Ok(at)
        }
        _ => Err(format!(
            "{s:?} is not HH:MM (UTC), +DURATION (e.g. +10m) or Unix milliseconds"
        )),
    }
}

fn parse_not_before(s: &str) -> Result<i64, String> {
    not_before_at(s, wf_supervisor::time::now_ms())
}

/// The Spawn request for these arguments and an already resolved cwd (empty: the default).
pub fn request(args: &SpawnArgs, target: Target, cwd: String) -> SpawnRequest {
    let mut request = SpawnRequest {
        cwd,
        env: args.env.iter().cloned().collect::<BTreeMap<_, _>>(),
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        stop_signals: args.stop_signals.clone(),
        grace_ms: args.grace.unwrap_or(0),
        queue: args.queue.clone().unwrap_or_default(),
        priority: args.priority.unwrap_or(0),
        after: args.after.clone(),
        not_before: args.not_before.unwrap_or(0),
        timeout_ms: args.timeout.unwrap_or(0),
        queue_timeout_ms: args.queue_timeout.unwrap_or(0),
        restart: args.restart.as_ref().map(|on| RestartPolicy {
            on: on.0.clone(),
            max_restarts: args.max_restarts.unwrap_or(0),
            backoff_ms: args.restart_backoff.unwrap_or(0),
            ..Default::default()
        }),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        ..Default::default()
    };
    match target {
        Target::Command(argv) => request.argv = argv,
        Target::Workflow { name, prompt } => {
            request.workflow = name;
            request.prompt = prompt;
            request.overrides = args.overrides();
        }
    }
    request
}

pub async fn run(client: &mut Client, args: SpawnArgs, json: bool) -> anyhow::Result<ExitCode> {
    // Checked at parse time already (exit 2); this only keeps `run` honest on its own.
    let target = args.target().map_err(|e| anyhow::anyhow!("spawn: {e}"))?;
    let label = target.label().to_string();
    let cwd = match &args.cwd {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("spawn: cannot resolve --cwd {}", dir.display()))?
            .to_str()
            .with_context(|| format!("spawn: --cwd {} is not UTF-8", dir.display()))?
            .to_string(),
        None => String::new(),
    };
    let response = client
        .spawn(request(&args, target, cwd))
        .await
        .map_err(api_error)
        .with_context(|| format!("spawn {label}"))?
        .into_inner();
    if json {
        output::print_json(&output::spawned_json(&response.run), false)?;
    }
    let Some(run) = response.run else {
        anyhow::bail!("spawn {label}: the daemon answered without a run");
    };
    if !json {
        output::print(&run.run_id)?;
        if run.status == RunStatus::Queued as i32 {
            eprintln!("wfctl: {} is queued: {}", run.run_id, run.waiting_reason);
        }
    }
    if run.status == RunStatus::Failed as i32 {
        let why = if run.error.is_empty() {
            "the run failed at start".to_string()
        } else {
            run.error.clone()
        };
        eprintln!("wfctl: spawn {label}: run {} failed: {why}", run.run_id);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{try_parse_from, Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["wfctl", "spawn"];
        argv.extend_from_slice(args);
        try_parse_from(argv)
    }

    fn spawn_args(args: &[&str]) -> SpawnArgs {
        match parse(args).expect("parses").command {
            Command::Spawn(a) => *a,
            other => panic!("not spawn: {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        let e = parse(args).expect_err(&format!("{args:?} should be refused"));
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        e.to_string()
    }

    #[test]
    fn a_command_goes_after_the_double_dash() {
        let a = spawn_args(&[
            "--cwd",
            "/tmp",
            "-e",
            "A=1",
            "--",
            "sh",
            "-c",
            "echo --model",
        ]);
        assert_eq!(
            a.target(),
            Ok(Target::Command(vec![
                "sh".into(),
                "-c".into(),
                "echo --model".into()
            ]))
        );
        let r = request(&a, a.target().unwrap(), "/tmp".into());
        assert_eq!(r.argv, ["sh", "-c", "echo --model"]);
        assert_eq!(r.workflow, "");
        assert_eq!(r.overrides, None);
        assert_eq!(r.env.get("A").map(String::as_str), Some("1"));
        // Even two words after `--` are a command, not a workflow.
        let a = spawn_args(&["--", "sleep", "10"]);
        assert_eq!(
            a.target(),
            Ok(Target::Command(vec!["sleep".into(), "10".into()]))
        );
    }

    #[test]
    fn two_words_without_double_dash_are_a_workflow_and_its_prompt() {
        let a = spawn_args(&[
            "builder",
            "fix the tests",
            "--model",
            "claude-opus-4",
            "--max-turns",
            "20",
            "--permission-mode",
            "plan",
            "--allowed-tool",
            "Read",
            "--allowed-tool",
            "Bash(git diff:*)",
            "--append-system-prompt",
            "Be brief.",
            "--env",
            "K=V",
            "--label",
            "team=infra",
            "--grace",
            "5s",
            "--stop-signal",
            "INT",
            "--stop-signal",
            "term",
        ]);
        let target = a.target().expect("a workflow");
        assert_eq!(
            target,
            Target::Workflow {
                name: "builder".into(),
                prompt: "fix the tests".into()
            }
        );
        let r = request(&a, target, String::new());
        assert_eq!(r.workflow, "builder");
        assert_eq!(r.prompt, "fix the tests");
        assert!(r.argv.is_empty());
        assert_eq!(r.grace_ms, 5000);
        assert_eq!(r.stop_signals, ["SIGINT", "SIGTERM"]);
        assert_eq!(r.labels.get("team").map(String::as_str), Some("infra"));
        let o = r.overrides.expect("overrides");
        assert_eq!(o.model.as_deref(), Some("claude-opus-4"));
        assert_eq!(o.max_turns, Some(20));
        assert_eq!(o.permission_mode.as_deref(), Some("plan"));
        assert_eq!(o.allowed_tools, ["Read", "Bash(git diff:*)"]);
        assert!(o.replace_allowed_tools);
        assert_eq!(o.append_system_prompt.as_deref(), Some("Be brief."));
    }

    #[test]
    fn a_workflow_without_options_keeps_the_template() {
        let a = spawn_args(&["builder", "do it"]);
        let r = request(&a, a.target().unwrap(), String::new());
        assert_eq!(r.overrides, None);
        let a = spawn_args(&["builder", "do it", "--model", "m"]);
        let o = a.overrides().expect("overrides");
        assert!(!o.replace_allowed_tools, "the template's tools stay");
        assert!(o.allowed_tools.is_empty());
        assert_eq!(o.max_turns, None);
    }

    #[test]
    fn queue_and_policy_options_fill_the_request() {
        let a = spawn_args(&[
            "--queue",
            "agents",
            "--priority",
            "-3",
            "--after",
            "run_0123456789ab",
            "--after",
            "run_ba9876543210",
            "--not-before",
            "1700000000000",
            "--timeout",
            "1h",
            "--queue-timeout",
            "10m",
            "--restart",
            "on-failure",
            "--max-restarts",
            "5",
            "--restart-backoff",
            "2s",
            "--idempotency-key",
            "task-1",
            "--",
            "true",
        ]);
        let r = request(&a, a.target().unwrap(), String::new());
        assert_eq!(r.queue, "agents");
        assert_eq!(r.priority, -3);
        assert_eq!(r.after, ["run_0123456789ab", "run_ba9876543210"]);
        assert_eq!(r.not_before, 1_700_000_000_000);
        assert_eq!((r.timeout_ms, r.queue_timeout_ms), (3_600_000, 600_000));
        let p = r.restart.expect("policy");
        assert_eq!(p.on, ["failed", "timed_out", "lost"]);
        assert_eq!((p.max_restarts, p.backoff_ms), (5, 2000));
        assert_eq!(r.idempotency_key, "task-1");
        assert_eq!(
            parse_restart_on("failed,lost"),
            Ok(RestartOn(vec!["failed".into(), "lost".into()]))
        );
        assert!(parse_restart_on("sometimes").is_err());
        usage_error(&["--max-restarts", "2", "--", "true"]);
    }

    #[test]
    fn not_before_takes_a_clock_time_a_delay_or_unix_ms() {
        // 2023-11-14 22:13:20 UTC.
        let now = 1_700_000_000_000;
        let day = now / 86_400_000 * 86_400_000;
        assert_eq!(not_before_at("23:00", now), Ok(day + 23 * 3_600_000));
        // 14:05 has passed today: tomorrow.
        assert_eq!(
            not_before_at("14:05:30", now),
            Ok(day + 86_400_000 + (14 * 3600 + 5 * 60 + 30) * 1000)
        );
        assert_eq!(not_before_at("+10m", now), Ok(now + 600_000));
        assert_eq!(not_before_at("1700000123456", now), Ok(1_700_000_123_456));
        assert!(not_before_at("25:00", now).is_err());
        assert!(not_before_at("soon", now).is_err());
    }

    #[test]
    fn anything_else_is_a_usage_error() {
        let e = usage_error(&[]);
        assert!(e.contains("nothing to start"), "{e}");
        let e = usage_error(&["--"]);
        assert!(e.contains("nothing to start"), "{e}");
        let e = usage_error(&["sleep"]);
        assert!(e.contains("wfctl spawn -- sleep"), "{e}");
        let e = usage_error(&["sleep", "10", "20"]);
        assert!(e.contains("not 3 words"), "{e}");
        assert!(e.contains("wfctl spawn sleep '10 20'"), "{e}");
        assert!(e.contains("wfctl spawn -- sleep 10 20"), "{e}");
        let e = usage_error(&["builder", "do it", "--", "sleep", "1"]);
        assert!(e.contains("not both"), "{e}");
        let e = usage_error(&["--model", "m", "--allowed-tool", "Read", "--", "sleep", "1"]);
        assert!(
            e.contains("--model, --allowed-tool apply only to a workflow spawn"),
            "{e}"
        );
        let e = usage_error(&["builder", "  "]);
        assert!(e.contains("PROMPT for workflow builder is empty"), "{e}");
        let e = usage_error(&["", "do it"]);
        assert!(e.contains("WORKFLOW name is empty"), "{e}");
        usage_error(&["builder", "do it", "--max-turns", "0"]);
        usage_error(&["builder", "do it", "--max-turns", "many"]);
        usage_error(&["builder", "do it", "--grace", "0s"]);
        // The message names the form to use, on the usage of spawn.
        assert!(
            e.contains("wfctl spawn [OPTIONS] -- <CMD> [ARGS]..."),
            "{e}"
        );
    }
}
