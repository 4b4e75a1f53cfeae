//! `wfctl ack ALERT_ID [--note TEXT]`: acknowledge one of the daemon's alerts (see `wfctl
//! health`), so that it is no longer reported; prints the alert as acknowledged.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::AckAlertRequest;

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct AckArgs {
    /// The alert id, as `wfctl health` shows it.
    #[arg(value_name = "ALERT_ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub alert_id: i64,

    /// What was done about it, for the record.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

pub async fn run(client: &mut Client, args: AckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let alert = client
        .ack_alert(AckAlertRequest {
            id: args.alert_id,
            note: args.note.unwrap_or_default(),
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("ack {}", args.alert_id))?
        .into_inner();
    if json {
        output::print_json(&output::alert_json(&alert), false)?;
    } else {
        output::print(&output::alert_detail(&alert, wf_supervisor::time::now_ms()))?;
    }
    Ok(ExitCode::SUCCESS)
}
