//! `wfctl workflows`: the workflow templates the daemon's config defines, one row each (program,
//! model, stop signals and grace, the stuck rules with their actions, where runs may start), or
//! `{"workflows": [...]}` with --json.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::ListWorkflowsRequest;

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct WorkflowsArgs {}

pub async fn run(
    client: &mut Client,
    _args: WorkflowsArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut workflows = client
        .list_workflows(ListWorkflowsRequest {})
        .await
        .map_err(api_error)
        .context("workflows")?
        .into_inner()
        .workflows;
    workflows.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        let list: Vec<_> = workflows.iter().map(output::workflow_json).collect();
        output::print_json(&serde_json::json!({ "workflows": list }), false)?;
    } else {
        output::print(&output::workflows_table(&workflows))?;
    }
    Ok(ExitCode::SUCCESS)
}
