//! The `wfctl` command line: the clap definition of the global options and the subcommand list,
//! the value parsers the subcommands share (KEY=VALUE, durations, statuses, byte sizes), the
//! dispatch to one module per subcommand, and the mapping of failures to one line on stderr and an
//! exit code (0 ok, 1 API or connection error, 2 usage error, 3 kill left survivors).
mod complete;
mod connect;
mod get;
mod kill;
mod logs;
mod output;
mod ps;
mod restart;
mod spawn;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wf_supervisor::proto::RunStatus;

/// The client every subcommand talks through.
pub type Client =
    wf_supervisor::proto::supervisor_client::SupervisorClient<tonic::transport::Channel>;

/// Exit code when a kill ran but did not leave the run empty (`success: false`).
pub const EXIT_KILL_INCOMPLETE: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "wfctl",
    version,
    about = "Control a wf-supervisor daemon: spawn, list, inspect, kill, restart and watch agent runs.",
    after_help = "The socket is, in order: --socket, $WF_SUPERVISOR_SOCKET, \
                  $RUNTIME_DIRECTORY/wf.sock, /run/wf-supervisor/wf.sock (as root), \
                  $XDG_RUNTIME_DIR/wf-supervisor/wf.sock."
)]
pub struct Cli {
    /// Unix socket of the daemon (default: $WF_SUPERVISOR_SOCKET, else the daemon's default).
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "addr")]
    pub socket: Option<PathBuf>,

    /// Reach the daemon's TCP listener instead of the socket, e.g. http://127.0.0.1:7443.
    #[arg(long, global = true, value_name = "URL")]
    pub addr: Option<String>,

    /// Print machine-readable JSON (one object per response; one per line for streams).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a run: wfctl spawn [OPTIONS] -- CMD [ARGS]...
    Spawn(spawn::SpawnArgs),
    /// List runs, newest first.
    Ps(ps::PsArgs),
    /// Show one run in detail.
    Get(get::GetArgs),
    /// End a live run: stop signals, grace, KILL, verify, cleanup.
    Kill(kill::KillArgs),
    /// End a run if live and start a new run with the same spec.
    Restart(restart::RestartArgs),
    /// Mark a run succeeded or failed by an operator's word (a live run is force-killed first).
    Complete(complete::CompleteArgs),
    /// Print a run's output: stdout to stdout, stderr to stderr, as raw bytes.
    Logs(logs::LogsArgs),
    /// Print one line per state change of one run, or of every run.
    Watch(watch::WatchArgs),
}

/// Parse the command line (usage errors exit 2 through clap), run the subcommand, and turn any
/// failure into `wfctl: <what>: <why>` on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let target = connect::resolve_target(cli.socket, cli.addr)?;
    let mut client = connect::connect(&target).await?;
    let json = cli.json;
    match cli.command {
        Command::Spawn(a) => spawn::run(&mut client, a, json).await,
        Command::Ps(a) => ps::run(&mut client, a, json).await,
        Command::Get(a) => get::run(&mut client, a, json).await,
        Command::Kill(a) => kill::run(&mut client, a, json).await,
        Command::Restart(a) => restart::run(&mut client, a, json).await,
        Command::Complete(a) => complete::run(&mut client, a, json).await,
        Command::Logs(a) => logs::run(&mut client, a, json).await,
        Command::Watch(a) => watch::run(&mut client, a, json).await,
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
    fn spawn_takes_everything_after_the_command_as_its_arguments() {
        let cli = Cli::try_parse_from([
            "wfctl", "spawn", "--env", "A=1", "--", "sh", "-c", "echo hi", "--json",
        ])
        .expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert_eq!(a.argv, ["sh", "-c", "echo hi", "--json"]);
        assert!(!cli.json);
        let cli = Cli::try_parse_from(["wfctl", "--json", "spawn", "sleep", "30"]).expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert_eq!(a.argv, ["sleep", "30"]);
        assert!(cli.json);
        assert!(Cli::try_parse_from(["wfctl", "spawn"]).is_err());
        let cli = Cli::try_parse_from(["wfctl", "spawn", "--cwd", "/tmp", "ls", "-l", "--all"])
            .expect("parses");
        let Command::Spawn(a) = cli.command else {
            panic!("not spawn")
        };
        assert_eq!(a.argv, ["ls", "-l", "--all"]);
        assert_eq!(a.cwd.as_deref(), Some(std::path::Path::new("/tmp")));
        // An unknown option before the command is a usage error, not a program name.
        assert!(Cli::try_parse_from(["wfctl", "spawn", "--bogus", "sleep"]).is_err());
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
