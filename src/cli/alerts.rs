//! `wfctl alerts [--kind KIND]`: the alerts firing and not yet acknowledged, with their kind,
//! labels and summary, oldest first; `wfctl ack ID` acknowledges one. The daemon delivers the
//! same alerts to its webhooks.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{Alert, GetHealthRequest};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Only alerts of these kinds (repeatable or comma-separated), e.g. stuck_run.
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,
}

pub async fn run(client: &mut Client, args: AlertsArgs, json: bool) -> anyhow::Result<ExitCode> {
    let health = client
        .get_health(GetHealthRequest {})
        .await
        .map_err(api_error)
        .context("alerts")?
        .into_inner();
    let alerts: Vec<Alert> = health
        .alerts
        .into_iter()
        .filter(|a| args.kind.is_empty() || args.kind.contains(&a.kind))
        .collect();
    if json {
        let list: Vec<_> = alerts.iter().map(output::alert_json).collect();
        output::print_json(&serde_json::json!({ "alerts": list }), false)?;
    } else {
        output::print(&table(&alerts))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// ID, SINCE, KIND, LABELS, SUMMARY; or a line saying there are none.
pub fn table(alerts: &[Alert]) -> String {
    if alerts.is_empty() {
        return "no unacknowledged alerts\n".to_string();
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                if a.id > 0 {
                    a.id.to_string()
                } else {
                    "-".to_string()
                },
                output::rfc3339(a.at).unwrap_or_else(|| "-".to_string()),
                a.kind.clone(),
                if labels.is_empty() {
                    "-".to_string()
                } else {
                    labels.join(",")
                },
                output::one_line(&a.message),
            ]
        })
        .collect();
    output::table(&["ID", "SINCE", "KIND", "LABELS", "SUMMARY"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_kind_labels_and_summary() {
        let mut a = Alert {
            id: 3,
            at: 1_700_000_000_000,
            kind: "stuck_run".into(),
            message: "run run_0123456789ab is stuck:\nno first turn".into(),
            dedup_key: "stuck:run_0123456789ab:init_timeout".into(),
            ..Default::default()
        };
        a.labels.insert("workflow".into(), "builder".into());
        a.labels.insert("run_id".into(), "run_0123456789ab".into());
        let text = table(&[a]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[1].contains("stuck_run"), "{text}");
        assert!(
            lines[1].contains("run_id=run_0123456789ab,workflow=builder"),
            "{text}"
        );
        assert!(lines[1].contains("2023-11-14T22:13:20.000Z"), "{text}");
        assert_eq!(lines.len(), 2, "the summary stays on one line: {text}");
        assert_eq!(table(&[]), "no unacknowledged alerts\n");
    }
}
