//! `wfctl cancel ID | --selector SEL [--yes]`: end queued or live work. A queued run is
//! CANCELLED at once and never starts; a live one is ended through the kill state machine and
//! ends CANCELLED. With a selector (`workflow=builder,status=running,team=infra`) it lists what
//! would be cancelled and changes nothing unless `--yes` is given; each run is then cancelled and
//! audited one by one. Also home of the selector syntax that `kill --selector` shares.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{CancelRequest, CancelResponse, Selector};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run id.
    #[arg(
        value_name = "ID",
        required_unless_present = "selector",
        conflicts_with = "selector"
    )]
    pub run_id: Option<String>,

    /// Every queued or live run that matches: comma-separated KEY=VALUE parts, all of which
    /// must match: workflow=NAME, queue=NAME, status=STATUS (repeatable), any other KEY a label.
    #[arg(long, value_name = "SEL", value_parser = parse_selector)]
    pub selector: Option<Selector>,

    /// With --selector: do it (without, the matching runs are only listed).
    #[arg(long, requires = "selector")]
    pub yes: bool,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `workflow=builder,status=running,team=infra`: workflow, queue and status parts, the rest
/// labels (`label.KEY=V` names a label that is called workflow, queue or status).
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut sel = Selector::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = super::parse_key_val(part)?;
        match k.as_str() {
            "workflow" => sel.workflow = v,
            "queue" => sel.queue = v,
            "status" => sel.statuses.push(super::parse_status(&v)? as i32),
            _ => {
                let key = k.strip_prefix("label.").unwrap_or(&k).to_string();
                sel.labels.insert(key, v);
            }
        }
    }
    if sel.workflow.is_empty()
        && sel.queue.is_empty()
        && sel.statuses.is_empty()
        && sel.labels.is_empty()
    {
        return Err(format!(
            "{s:?} selects nothing; give e.g. workflow=builder,status=running"
        ));
    }
    Ok(sel)
}

pub async fn run(client: &mut Client, args: CancelArgs, json: bool) -> anyhow::Result<ExitCode> {
    let bulk = args.selector.is_some();
    let what = args.run_id.clone().unwrap_or_else(|| "--selector".into());
    let response = client
        .cancel(CancelRequest {
            run_id: args.run_id.clone().unwrap_or_default(),
            reason: args.reason.unwrap_or_default(),
            selector: args.selector,
            dry_run: bulk && !args.yes,
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("cancel {what}"))?
        .into_inner();
    if json {
        output::print_json(&cancel_json(&response), false)?;
    } else if bulk {
        let runs: Vec<_> = response
            .results
            .iter()
            .filter_map(|r| r.run.clone())
            .collect();
        let now = wf_supervisor::time::now_ms();
        let head = if args.yes {
            format!("cancelled {} run(s):", runs.len())
        } else {
            format!(
                "would cancel {} run(s) (dry run; add --yes to cancel them):",
                runs.len()
            )
        };
        output::print(&format!(
            "{head}\n{}",
            output::runs_table(&runs, now, false)
        ))?;
    } else {
        let status = response
            .run
            .as_ref()
            .map(|r| output::status_name(r.status))
            .unwrap_or_default();
        let how = if response.killed {
            "its process was ended through the kill state machine"
        } else {
            "it was queued: no process ever existed"
        };
        output::print(&format!("{}: {status} ({how})", response.run_id))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cancel_json(c: &CancelResponse) -> serde_json::Value {
    serde_json::json!({
        "run_id": c.run_id,
        "killed": c.killed,
        "kill": c.kill.as_ref().map(output::kill_json),
        "run": c.run.as_ref().map(output::run_json),
        "results": c.results.iter().map(cancel_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wf_supervisor::proto::RunStatus;

    #[test]
    fn selectors_parse_into_their_parts() {
        let s = parse_selector("workflow=builder,status=running,team=infra,label.queue=x")
            .expect("valid");
        assert_eq!(s.workflow, "builder");
        assert_eq!(s.statuses, vec![RunStatus::Running as i32]);
        assert_eq!(s.labels.get("team").map(String::as_str), Some("infra"));
        assert_eq!(s.labels.get("queue").map(String::as_str), Some("x"));
        assert!(s.queue.is_empty());
        assert!(parse_selector("").is_err());
        assert!(parse_selector("status=sleepy").is_err());
        assert!(parse_selector("team").is_err());
    }
}
