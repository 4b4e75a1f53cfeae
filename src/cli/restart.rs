//! `wfctl restart ID`: end the run if it is live and start a new run with the same spec. Prints
//! the new run id (or the whole response with --json).
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::RestartRequest;

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The run id.
    #[arg(value_name = "ID")]
    pub run_id: String,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

pub async fn run(client: &mut Client, args: RestartArgs, json: bool) -> anyhow::Result<ExitCode> {
    let response = client
        .restart(RestartRequest {
            run_id: args.run_id.clone(),
            reason: args.reason.unwrap_or_default(),
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("restart {}", args.run_id))?
        .into_inner();
    if json {
        output::print_json(
            &output::spawned_json(Some(&response.old_run_id), &response.run),
            false,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(run) = response.run else {
        anyhow::bail!(
            "restart {}: the daemon answered without a new run",
            args.run_id
        );
    };
    output::print(&run.run_id)?;
    Ok(ExitCode::SUCCESS)
}
