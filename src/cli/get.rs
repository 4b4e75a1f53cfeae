//! `wfctl get ID`: one run in detail, as `key: value` lines or as JSON. A workflow run also shows
//! its agent's progress: phase, health, turns, session, model, tool, critical section, heartbeat
//! progress, API retries, cost, the result and the prompt (long texts cut unless --no-trunc).
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::GetRequest;

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The run id, e.g. run_0123456789ab.
    #[arg(value_name = "ID")]
    pub run_id: String,

    /// Show a workflow run's whole prompt and result text instead of cutting them at 160
    /// characters.
    #[arg(long)]
    pub no_trunc: bool,
}

pub async fn run(client: &mut Client, args: GetArgs, json: bool) -> anyhow::Result<ExitCode> {
    let run = client
        .get(GetRequest {
            run_id: args.run_id.clone(),
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("get {}", args.run_id))?
        .into_inner();
    if json {
        output::print_json(&output::run_json(&run), false)?;
    } else {
        output::print(&output::run_detail(
            &run,
            wf_supervisor::time::now_ms(),
            args.no_trunc,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
