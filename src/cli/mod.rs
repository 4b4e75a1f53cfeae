//! The `wfctl` command line: the clap definition of the global options and the subcommand list,
//! the value parsers the subcommands share (KEY=VALUE, durations, statuses, byte sizes), the
//! dispatch to one module per subcommand, and the mapping of failures to one line on stderr and an
//! exit code (0 ok, 1 API or connection error, 2 usage error, 3 kill left survivors, 4 `health`
//! found alerts nobody has acknowledged yet).
mod ack;
mod alerts;
mod audit;
mod cancel;
mod complete;
mod completions;
mod connect;
#[cfg(test)]
mod docs;
mod get;
mod health;
mod kill;
mod logs;
mod mcp;
mod mcp_view;
mod output;
mod ps;
mod purge;
mod queue;
mod restart;
mod spawn;
mod token;
mod top;
mod wait;
mod watch;
mod workflows;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use wf_supervisor::proto::RunStatus;

/// The client every subcommand talks through.
pub type Client = wf_supervisor::proto::supervisor_client::SupervisorClient<
    tonic::codegen::InterceptedService<tonic::transport::Channel, connect::Bearer>,
>;

/// Exit code when a kill ran but did not leave the run empty (`success: false`).
pub const EXIT_KILL_INCOMPLETE: u8 = 3;

/// Exit code of `health` when the daemon has alerts nobody has acknowledged yet.
pub const EXIT_UNACKNOWLEDGED_ALERTS: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "wfctl",
    version,
    about = "Control a wf-supervisor daemon: spawn, list, inspect, kill, restart, watch and purge \
             agent runs; read the audit trail; check the daemon's health.",
    after_help = "The socket is, in order: --socket, $WF_SUPERVISOR_SOCKET, \
                  $RUNTIME_DIRECTORY/wf.sock, /run/wf-supervisor/wf.sock (as root), \
                  $XDG_RUNTIME_DIR/wf-supervisor/wf.sock. On TCP (--addr) the daemon wants \
                  a token (--token-file, $WF_SUPERVISOR_TOKEN) or, over https:// (with --ca), a \
                  client certificate (--cert/--key).\n\
                  Exit codes: 0 ok, 1 API or connection error, 2 usage error, 3 kill left \
                  survivors, 4 health found unacknowledged alerts; `wait`: 5 timeout, 10 FAILED, \
                  11 KILLED, 12 CANCELLED, 13 TIMED_OUT, 14 LOST."
)]
pub struct Cli {
    /// Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon's default).
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "addr")]
    pub socket: Option<PathBuf>,

    /// Reach the daemon's TCP listener instead of the socket, e.g. https://host:7443.
    #[arg(long, global = true, value_name = "URL")]
    pub addr: Option<String>,

    /// On TCP: a file whose first line is the token (default: $WF_SUPERVISOR_TOKEN).
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// With an https:// --addr: the CA certificate (PEM) that signed the daemon's certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// With an https:// --addr: a client certificate (PEM) for mTLS, with --key.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Print machine-readable JSON (one object per response; one per line for streams).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a run: wfctl spawn [OPTIONS] WORKFLOW PROMPT, or wfctl spawn [OPTIONS] -- CMD [ARGS]...
    Spawn(Box<spawn::SpawnArgs>),
    /// List runs, newest first.
    Ps(ps::PsArgs),
    /// Show one run in detail.
    Get(get::GetArgs),
    /// End a live run: stop signals, grace, KILL, verify, cleanup.
    Kill(kill::KillArgs),
    /// End a run if live and start a new run with the same spec (--resume: its Claude session).
    Restart(restart::RestartArgs),
    /// Mark a run succeeded or failed by an operator's word (a live run is force-killed first).
    Complete(complete::CompleteArgs),
    /// Print a run's output: stdout to stdout, stderr to stderr, as raw bytes.
    Logs(logs::LogsArgs),
    /// Print one line per state change of one run, or of every run.
    Watch(watch::WatchArgs),
    /// Remove finished runs and their logs: one by id, or all of one status (audit kept).
    Purge(purge::PurgeArgs),
    /// Show the audit trail, newest first: every mutating call and automatic action.
    Audit(audit::AuditArgs),
    /// Show live and total runs, containment, and unacknowledged alerts (exit 4 if any).
    Health(health::HealthArgs),
    /// Acknowledge an alert so that `health` no longer reports it.
    Ack(ack::AckArgs),
    /// List the alerts firing and not yet acknowledged (the ones webhooks are sent).
    Alerts(alerts::AlertsArgs),
    /// List the workflow templates the daemon's config defines.
    Workflows(workflows::WorkflowsArgs),
    /// End queued or live work: one run, or every run a selector matches (--yes to do it).
    Cancel(cancel::CancelArgs),
    /// Show the queues and their health; pause, resume or limit one.
    Queue(queue::QueueArgs),
    /// Block until runs have ended; exit 0 if all SUCCEEDED (else see `wfctl wait --help`).
    Wait(wait::WaitArgs),
    /// Make a token for TCP callers: wfctl token create NAME --role ROLE.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(completions::CompletionsArgs),
    /// Serve MCP on stdin/stdout for an orchestrating agent (`claude mcp add wf -- wfctl mcp`).
    Mcp(mcp::McpArgs),
    /// A full-screen live view of runs and queues, with keys to kill, restart and cancel.
    Top(top::TopArgs),
}

/// Parse the command line (usage errors exit 2 through clap), run the subcommand, and turn any
/// failure into `wfctl: <what>: <why>` on stderr.
pub fn main() -> ExitCode {
    let cli = try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wfctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wfctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Making a token or printing completions needs no daemon.
    if let Command::Token(t) = cli.command {
        return token::run(t);
    }
    if let Command::Completions(a) = cli.command {
        return completions::run(a);
    }
    let target = connect::resolve_target(cli.socket, cli.addr)?;
    let creds = connect::Credentials {
        token_file: cli.token_file,
        ca: cli.ca,
        cert: cli.cert,
        key: cli.key,
    };
    // The MCP server connects (and reconnects) by itself, as this caller.
    if let Command::Mcp(a) = cli.command {
        return mcp::run(target, creds, a).await;
    }
    if let Command::Top(a) = cli.command {
        return top::run(target, creds, a).await;
    }
    let mut client = connect::connect_with(&target, &creds).await?;
    let json = cli.json;
    match cli.command {
        Command::Spawn(a) => spawn::run(&mut client, *a, json).await,
        Command::Ps(a) => ps::run(&mut client, a, json).await,
        Command::Get(a) => get::run(&mut client, a, json).await,
        Command::Kill(a) => kill::run(&mut client, a, json).await,
        Command::Restart(a) => restart::run(&mut client, a, json).await,
        Command::Complete(a) => complete::run(&mut client, a, json).await,
        Command::Logs(a) => logs::run(&mut client, a, json).await,
        Command::Watch(a) => watch::run(&mut client, a, json).await,
        Command::Purge(a) => purge::run(&mut client, a, json).await,
        Command::Audit(a) => audit::run(&mut client, a, json).await,
        Command::Health(a) => health::run(&mut client, a, json).await,
        Command::Ack(a) => ack::run(&mut client, a, json).await,
        Command::Alerts(a) => alerts::run(&mut client, a, json).await,
        Command::Workflows(a) => workflows::run(&mut client, a, json).await,
        Command::Cancel(a) => cancel::run(&mut client, a, json).await,
        Command::Queue(a) => queue::run(&mut client, a, json).await,
        Command::Wait(a) => wait::run(&mut client, a, json).await,
        Command::Token(_) | Command::Completions(_) | Command::Mcp(_) | Command::Top(_) => {
            unreachable!("handled before connecting")
        }
    }
}

/// Parse the command line: clap's checks, then those clap cannot express (which of its two forms
/// a spawn is), so that every usage error exits 2 before the daemon is contacted.
pub fn try_parse_from<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(argv)?;
    if let Command::Spawn(a) = &cli.command {
        if let Err(msg) = a.target() {
            return Err(usage_error("spawn", msg));
        }
    }
    Ok(cli)
}

/// A usage error of one subcommand, printed by clap with that subcommand's usage (exit 2).
fn usage_error(subcommand: &str, msg: String) -> clap::Error {
    let mut cmd = Cli::command();
    cmd.build();
    match cmd.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(clap::error::ErrorKind::ValueValidation, msg),
        None => cmd.error(clap::error::ErrorKind::ValueValidation, msg),
    }
}

/// Whether the failure is only that our reader went away (`wfctl ps | head`): not worth a word.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An API error as one phrase: the status code in words, then the daemon's message, e.g.
/// `not found: no run run_0123456789ab`. Callers add what was attempted with `.context()`.
pub fn api_error(status: tonic::Status) -> anyhow::Error {
    let code = code_words(status.code());
    if status.message().is_empty() {
        anyhow::anyhow!("{code}")
    } else {
        anyhow::anyhow!("{code}: {}", status.message())
    }
}

/// A gRPC status code as lowercase words, e.g. `failed precondition`.
pub fn code_words(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// `KEY=VALUE` for --env and --label. The key must be non-empty; the value may be empty and may
/// itself contain `=`.
pub fn parse_key_val(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        Some(_) => Err(format!("{s:?} has an empty key (expected KEY=VALUE)")),
        None => Err(format!("{s:?} has no '=' (expected KEY=VALUE)")),
    }
}

/// A grace such as `5s`, `500ms` or `1m` for --grace, as whole milliseconds. Zero is refused
/// because the API reads 0 as "the default".
pub fn parse_grace(s: &str) -> Result<u64, String> {
    let d: Duration = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 5s, 500ms or 1m: {e}"))?;
    let ms = u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))?;
    if ms == 0 {
        return Err(format!(
            "{s:?} is less than 1ms (leave --grace out for the default; `kill --force` skips the grace)"
        ));
    }
    Ok(ms)
}

/// A run status as operators write it: `running`, `timed_out`, `timed-out`, `RUN_STATUS_LOST`.
pub fn parse_status(s: &str) -> Result<RunStatus, String> {
    let norm = s.trim().to_ascii_uppercase().replace('-', "_");
    let full = if norm.starts_with("RUN_STATUS_") {
        norm
    } else {
        format!("RUN_STATUS_{norm}")
    };
    match RunStatus::from_str_name(&full) {
        Some(RunStatus::Unspecified) | None => Err(format!(
            "{s:?} is not a run status (one of: {})",
            output::STATUS_NAMES.join(", ")
        )),
        Some(st) => Ok(st),
    }
}

/// How far back, for --older-than and --since: `7d`, `12h`, `30m`, `1h 30m`, as whole
/// milliseconds. A unit is required; zero is refused because the API reads 0 as "no limit" (leave
/// the option out for that).
pub fn parse_age(s: &str) -> Result<u64, String> {
    let d: Duration = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 7d, 12h or 30m: {e}"))?;
    let ms = u64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(|| format!("{s:?} is too long"))?;
    if ms == 0 {
        return Err(format!(
            "{s:?} is less than 1ms (leave the option out for no limit)"
        ));
    }
    Ok(ms)
}

/// A signal name or number for --stop-signal, normalised to its canonical name (`SIGTERM`).
pub fn parse_stop_signal(s: &str) -> Result<String, String> {
    wf_supervisor::process::signals::parse_signal(s)
        .map(wf_supervisor::process::signals::signal_name)
}

/// A byte count for --tail: `4096`, `64K`, `64KiB`, `1M`, `1MiB`, `1G`. Zero is refused because
/// the API reads 0 as "the default (64 KiB)".
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count like 4096, 64K or 1M"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit (use K, M or G)")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err("the tail must be at least 1 byte (leave --tail out for 64 KiB)".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_val("A=b"), Ok(("A".into(), "b".into())));
        assert_eq!(parse_key_val("A="), Ok(("A".into(), "".into())));
        assert_eq!(parse_key_val("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_val("=b").is_err());
        assert!(parse_key_val("AB").is_err());
    }

    #[test]
    fn graces() {
        assert_eq!(parse_grace("5s"), Ok(5000));
        assert_eq!(parse_grace("500ms"), Ok(500));
        assert_eq!(parse_grace("1m 30s"), Ok(90_000));
        assert!(parse_grace("0s").is_err());
        assert!(parse_grace("5").is_err());
        assert!(parse_grace("soon").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_status("running"), Ok(RunStatus::Running));
        assert_eq!(parse_status("Succeeded"), Ok(RunStatus::Succeeded));
        assert_eq!(parse_status("timed_out"), Ok(RunStatus::TimedOut));
        assert_eq!(parse_status("timed-out"), Ok(RunStatus::TimedOut));
        assert_eq!(parse_status("RUN_STATUS_LOST"), Ok(RunStatus::Lost));
        assert!(parse_status("unspecified").is_err());
        assert!(parse_status("done").is_err());
        for name in output::STATUS_NAMES {
            assert!(parse_status(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_age("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_age("1h 30m"), Ok(90 * 60_000));
        assert_eq!(parse_age(" 30m "), Ok(30 * 60_000));
        assert!(parse_age("0s").is_err());
        assert!(parse_age("7").is_err());
        assert!(parse_age("yesterday").is_err());
        assert!(parse_age("").is_err());
        assert!(parse_age("999999999999y").is_err());
    }

    #[test]
    fn purge_takes_one_run_or_one_finished_status() {
        let ok = |args: &[&str]| {
            let mut argv = vec!["wfctl", "purge"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
        };
        let cli = ok(&["run_0123456789ab", "--force", "--reason", "gone"]).expect("parses");
        let Command::Purge(a) = cli.command else {
            panic!("not purge")
        };
        assert_eq!(a.run_id.as_deref(), Some("run_0123456789ab"));
        assert!(a.force);
        assert_eq!(a.status, None);
        let cli = ok(&["--status", "timed-out", "--older-than", "7d"]).expect("parses");
        let Command::Purge(a) = cli.command else {
            panic!("not purge")
        };
        assert_eq!(a.status, Some(RunStatus::TimedOut));
        assert_eq!(a.older_than, Some(7 * 86_400_000));
        assert_eq!(a.run_id, None);
        // Neither, both, a live status, --force without an id, an age without a status.
        for bad in [
            &[][..],
            &["run_0123456789ab", "--status", "failed"],
            &["--status", "running"],
            &["--status", "failed", "--force"],
            &["run_0123456789ab", "--older-than", "7d"],
            &["--status", "failed", "--older-than", "0s"],
        ] {
            let e = ok(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn audit_ack_and_health_command_lines() {
        let cli = Cli::try_parse_from([
            "wfctl",
            "audit",
            "run_0123456789ab",
            "--since",
            "1h",
            "-n",
            "20",
        ])
        .expect("parses");
        let Command::Audit(a) = cli.command else {
            panic!("not audit")
        };
        assert_eq!(a.run_id.as_deref(), Some("run_0123456789ab"));
        assert_eq!(a.since, Some(3_600_000));
        assert_eq!(a.limit, Some(20));
        assert!(Cli::try_parse_from(["wfctl", "audit", "-n", "0"]).is_err());
        assert!(Cli::try_parse_from(["wfctl", "audit", "--since", "1"]).is_err());
        let cli = Cli::try_parse_from(["wfctl", "ack", "3", "--note", "restored"]).expect("parses");
        let Command::Ack(a) = cli.command else {
            panic!("not ack")
        };
        assert_eq!(a.alert_id, 3);
        assert_eq!(a.note.as_deref(), Some("restored"));
        assert!(Cli::try_parse_from(["wfctl", "ack"]).is_err());
        assert!(Cli::try_parse_from(["wfctl", "ack", "zero"]).is_err());
        assert!(Cli::try_parse_from(["wfctl", "ack", "0"]).is_err());
        assert!(Cli::try_parse_from(["wfctl", "--json", "health"]).is_ok());
        assert!(Cli::try_parse_from(["wfctl", "health", "extra"]).is_err());
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [0, 1, 2, EXIT_KILL_INCOMPLETE, EXIT_UNACKNOWLEDGED_ALERTS];
        for (i, a) in codes.iter().enumerate() {
            assert!(codes[i + 1..].iter().all(|b| a != b), "{codes:?}");
        }
    }

    #[test]
    fn stop_signals() {
        assert_eq!(parse_stop_signal("int"), Ok("SIGINT".to_string()));
        assert_eq!(parse_stop_signal("SIGTERM"), Ok("SIGTERM".to_string()));
        assert_eq!(parse_stop_signal("1"), Ok("SIGHUP".to_string()));
        assert!(parse_stop_signal("NOPE").is_err());
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("99999999999999999999G").is_err());
    }

    #[test]
    fn api_errors_read_as_one_phrase() {
        let e = api_error(tonic::Status::not_found("no run run_0123456789ab"))
            .context("kill run_0123456789ab");
        assert_eq!(
            format!("{e:#}"),
            "kill run_0123456789ab: not found: no run run_0123456789ab"
        );
        let e = api_error(tonic::Status::unavailable(""));
        assert_eq!(format!("{e:#}"), "unavailable");
    }

    #[test]
    fn spawn_takes_everything_after_the_double_dash_as_the_command() {
        let cli = try_parse_from([
            "wfctl", "spawn", "--env", "A=1", "--", "sh", "-c", "echo hi", "--json",
        ])
        .expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert_eq!(a.argv, ["sh", "-c", "echo hi", "--json"]);
        assert!(a.words.is_empty());
        assert!(!cli.json);
        let cli =
            try_parse_from(["wfctl", "--json", "spawn", "--", "sleep", "30"]).expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert_eq!(a.argv, ["sleep", "30"]);
        assert!(cli.json);
        assert!(try_parse_from(["wfctl", "spawn"]).is_err());
        let cli = try_parse_from(["wfctl", "spawn", "--cwd", "/tmp", "--", "ls", "-l", "--all"])
            .expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert_eq!(a.argv, ["ls", "-l", "--all"]);
        assert_eq!(a.cwd.as_deref(), Some(std::path::Path::new("/tmp")));
        // An unknown option before the command is a usage error, not a program name.
        assert!(try_parse_from(["wfctl", "spawn", "--bogus", "--", "sleep"]).is_err());
        // Without `--`, two words are WORKFLOW PROMPT, and options may follow them.
        let cli = try_parse_from(["wfctl", "spawn", "sleep", "30", "--json"]).expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert!(a.argv.is_empty());
        assert_eq!(a.words, ["sleep", "30"]);
        assert!(cli.json);
        // A command without `--` is refused (exit 2) before any daemon is contacted.
        for bad in [
            &["wfctl", "spawn", "true"][..],
            &["wfctl", "spawn", "--cwd", "/tmp", "ls", "-l", "--all"],
            &["wfctl", "spawn", "sleep", "10", "20"],
        ] {
            let e = try_parse_from(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn restart_and_workflows_command_lines() {
        let cli = try_parse_from([
            "wfctl",
            "restart",
            "run_0123456789ab",
            "--resume",
            "--reason",
            "stuck",
        ])
        .expect("parses");
        let Command::Restart(a) = cli.command else {
            panic!("not restart")
        };
        assert!(a.resume);
        assert_eq!(a.reason.as_deref(), Some("stuck"));
        let Command::Restart(a) = try_parse_from(["wfctl", "restart", "run_0123456789ab"])
            .expect("parses")
            .command
        else {
            panic!("not restart")
        };
        assert!(!a.resume);
        assert!(try_parse_from(["wfctl", "--json", "workflows"]).is_ok());
        assert!(try_parse_from(["wfctl", "workflows", "extra"]).is_err());
        let Command::Get(a) = try_parse_from(["wfctl", "get", "run_0123456789ab", "--no-trunc"])
            .expect("parses")
            .command
        else {
            panic!("not get")
        };
        assert!(a.no_trunc);
    }

    #[test]
    fn complete_needs_exactly_one_outcome() {
        assert!(Cli::try_parse_from(["wfctl", "complete", "run_0123456789ab"]).is_err());
        assert!(Cli::try_parse_from([
            "wfctl",
            "complete",
            "run_0123456789ab",
            "--succeeded",
            "--failed"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["wfctl", "complete", "run_0123456789ab", "--failed"]).is_ok());
    }
}
