//! `wfctl get ID`: one run in detail, as `key: value` lines or as JSON.
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
        output::print(&output::run_detail(&run, wf_supervisor::time::now_ms()))?;
    }
    Ok(ExitCode::SUCCESS)
}
