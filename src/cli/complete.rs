//! `wfctl complete ID --succeeded|--failed`: record an operator's verdict on a run
//! (ForceComplete); the daemon force-kills a live run first. Prints the run's id and new status.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{ForceCompleteRequest, Outcome};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("outcome").required(true).args(["succeeded", "failed"]))]
pub struct CompleteArgs {
    /// The run id.
    #[arg(value_name = "ID")]
    pub run_id: String,

    /// Mark the run succeeded.
    #[arg(long)]
    pub succeeded: bool,

    /// Mark the run failed.
    #[arg(long)]
    pub failed: bool,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

pub async fn run(client: &mut Client, args: CompleteArgs, json: bool) -> anyhow::Result<ExitCode> {
    let outcome = if args.succeeded {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    let run = client
        .force_complete(ForceCompleteRequest {
            run_id: args.run_id.clone(),
            outcome: outcome as i32,
            reason: args.reason.unwrap_or_default(),
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("complete {}", args.run_id))?
        .into_inner();
    if json {
        output::print_json(&output::run_json(&run), false)?;
    } else {
        output::print(&format!(
            "{}  {}",
            run.run_id,
            output::status_name(run.status)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
