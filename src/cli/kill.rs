//! `wfctl kill ID`: end a live run through the daemon's kill state machine and print what
//! happened: phase, signals, duration, survivors, cleanup steps and message. Exits 3 when the
//! daemon reports the run was not seen empty (`success: false`).
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::KillRequest;

use super::{api_error, output, Client, EXIT_KILL_INCOMPLETE};

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The run id.
    #[arg(value_name = "ID")]
    pub run_id: String,

    /// Straight to KILL, no stop signals and no grace.
    #[arg(long, short = 'f', conflicts_with = "grace")]
    pub force: bool,

    /// Grace for this kill, e.g. 5s (default: the run's own grace).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_grace)]
    pub grace: Option<u64>,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

pub async fn run(client: &mut Client, args: KillArgs, json: bool) -> anyhow::Result<ExitCode> {
    let response = client
        .kill(KillRequest {
            run_id: args.run_id.clone(),
            force: args.force,
            grace_ms: args.grace.unwrap_or(0),
            reason: args.reason.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("kill {}", args.run_id))?
        .into_inner();
    if json {
        output::print_json(&output::kill_json(&response), false)?;
    } else {
        output::print(&output::kill_report(&response))?;
    }
    if response.success {
        Ok(ExitCode::SUCCESS)
    } else {
        if json {
            // The table already says so; with --json, keep stderr informative for scripts' logs.
            eprintln!(
                "wfctl: kill {}: not complete: {}",
                args.run_id,
                if response.message.is_empty() {
                    "the run was not seen empty"
                } else {
                    &response.message
                }
            );
        }
        Ok(ExitCode::from(EXIT_KILL_INCOMPLETE))
    }
}
