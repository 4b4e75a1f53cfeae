//! `wfctl spawn`: start a run from a command line, with its working directory, environment,
//! labels, stop signals and grace. Prints the new run id (or the whole response with --json);
//! a run whose program could not be started is reported on stderr with exit code 1.
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{RunStatus, SpawnRequest};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
#[command(override_usage = "wfctl spawn [OPTIONS] [--] <CMD> [ARGS]...")]
pub struct SpawnArgs {
    /// Working directory of the run (relative paths are taken from here); default: the daemon's.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// An environment variable for the run; repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = super::parse_key_val)]
    pub env: Vec<(String, String)>,

    /// A label on the run; repeatable.
    #[arg(long = "label", short = 'l', value_name = "K=V", value_parser = super::parse_key_val)]
    pub labels: Vec<(String, String)>,

    /// A signal sent at a graceful kill, in order; repeatable (default: the daemon's, TERM).
    #[arg(long = "stop-signal", value_name = "SIG", value_parser = super::parse_stop_signal)]
    pub stop_signals: Vec<String>,

    /// Grace between the first stop signal and KILL, e.g. 5s (default: the daemon's).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_grace)]
    pub grace: Option<u64>,

    /// The program and its arguments; put them after `--`.
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub argv: Vec<String>,
}

pub async fn run(client: &mut Client, args: SpawnArgs, json: bool) -> anyhow::Result<ExitCode> {
    let cwd = match &args.cwd {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("spawn: cannot resolve --cwd {}", dir.display()))?
            .to_str()
            .with_context(|| format!("spawn: --cwd {} is not UTF-8", dir.display()))?
            .to_string(),
        None => String::new(),
    };
    let program = args.argv.first().cloned().unwrap_or_default();
    let request = SpawnRequest {
        argv: args.argv,
        cwd,
        env: args.env.into_iter().collect::<HashMap<_, _>>(),
        labels: args.labels.into_iter().collect::<HashMap<_, _>>(),
        stop_signals: args.stop_signals,
        grace_ms: args.grace.unwrap_or(0),
    };
    let response = client
        .spawn(request)
        .await
        .map_err(api_error)
        .with_context(|| format!("spawn {program}"))?
        .into_inner();
    if json {
        output::print_json(&output::spawned_json(None, &response.run), false)?;
    }
    let Some(run) = response.run else {
        anyhow::bail!("spawn {program}: the daemon answered without a run");
    };
    if !json {
        output::print(&run.run_id)?;
    }
    if run.status == RunStatus::Failed as i32 {
        let why = if run.error.is_empty() {
            "the run failed at start".to_string()
        } else {
            run.error.clone()
        };
        eprintln!("wfctl: spawn {program}: run {} failed: {why}", run.run_id);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
