//! `wfctl health`: the daemon's own condition: live and total runs, how it contains runs, and
//! every alert nobody has acknowledged yet. Exits 4 when there are such alerts, so that scripts
//! and monitoring can check it without parsing.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::GetHealthRequest;

use super::{api_error, output, Client, EXIT_UNACKNOWLEDGED_ALERTS};

#[derive(Debug, Args)]
pub struct HealthArgs {}

pub async fn run(client: &mut Client, _args: HealthArgs, json: bool) -> anyhow::Result<ExitCode> {
    let response = client
        .get_health(GetHealthRequest {})
        .await
        .map_err(api_error)
        .context("health")?
        .into_inner();
    if json {
        output::print_json(&output::health_json(&response), false)?;
    } else {
        output::print(&output::health_report(&response))?;
    }
    if response.alerts.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        if json {
            // The table already says so; with --json, keep stderr informative for scripts' logs.
            eprintln!(
                "wfctl: health: {} unacknowledged alert(s)",
                response.alerts.len()
            );
        }
        Ok(ExitCode::from(EXIT_UNACKNOWLEDGED_ALERTS))
    }
}
