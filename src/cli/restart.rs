//! `wfctl restart ID [--resume]`: end the run if it is live and start a new run with the same
//! spec; with --resume a workflow run continues its Claude session (`--resume SESSION_ID`, same
//! cwd and HOME). Prints the new run id on stdout, so that `$(wfctl restart ID)` is the id, and the
//! daemon's note on how the new run started (resumed which session, or fresh and why) on stderr;
//! --json prints the whole response. A new run that could not be started is exit code 1.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{RestartRequest, RunStatus};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The run id.
    #[arg(value_name = "ID")]
    pub run_id: String,

    /// For a workflow run: continue its Claude session instead of starting afresh (without a
    /// session id the new run starts fresh, and the note says so).
    #[arg(long)]
    pub resume: bool,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

pub async fn run(client: &mut Client, args: RestartArgs, json: bool) -> anyhow::Result<ExitCode> {
    let response = client
        .restart(RestartRequest {
            run_id: args.run_id.clone(),
            reason: args.reason.unwrap_or_default(),
            resume: args.resume,
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("restart {}", args.run_id))?
        .into_inner();
    if json {
        output::print_json(&output::restart_json(&response), false)?;
    }
    let Some(run) = &response.run else {
        anyhow::bail!(
            "restart {}: the daemon answered without a new run",
            args.run_id
        );
    };
    if !json {
        output::print(&run.run_id)?;
        if !response.note.is_empty() {
            eprintln!("note: {}", output::one_line(&response.note));
        }
    }
    if run.status == RunStatus::Failed as i32 {
        let why = if run.error.is_empty() {
            "the run failed at start".to_string()
        } else {
            run.error.clone()
        };
        eprintln!(
            "wfctl: restart {}: new run {} failed: {why}",
            args.run_id, run.run_id
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
