//! `wfctl queue`: a table of the queues with their health figures (running, queued, limits,
//! paused, outcomes of the last hour, oldest run, longest wait, stuck) and the queue alerts;
//! `wfctl queue pause Q` / `resume Q` hold back or release new starts (running runs go on);
//! `wfctl queue limit Q N` changes max_concurrent until the next reload.
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use wf_supervisor::proto::{GetQueueHealthRequest, QueueHealth, UpdateQueueRequest};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: Option<QueueAction>,
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Hold back new starts of a queue (running runs go on).
    Pause { queue: String },
    /// Let a paused queue start runs again.
    Resume { queue: String },
    /// Set a queue's max_concurrent until the next reload (lowering it kills nothing).
    Limit {
        queue: String,
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        max_concurrent: u32,
    },
}

fn ended_cell(m: &std::collections::BTreeMap<String, u32>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{} {v}", k.to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The queue table, with the total last.
pub fn queues_table(queues: &[QueueHealth], total: Option<&QueueHealth>) -> String {
    let row = |q: &QueueHealth, name: &str| {
        vec![
            name.to_string(),
            q.running.to_string(),
            q.queued.to_string(),
            q.max_concurrent.to_string(),
            q.max_queued.to_string(),
            if q.paused { "yes" } else { "no" }.to_string(),
            ended_cell(&q.ended_last_hour),
            if q.oldest_running_ms > 0 {
                output::fmt_duration_ms(q.oldest_running_ms)
            } else {
                "-".into()
            },
            if q.longest_queued_wait_ms > 0 {
                output::fmt_duration_ms(q.longest_queued_wait_ms)
            } else {
                "-".into()
            },
            q.stuck.to_string(),
        ]
    };
    let mut rows: Vec<Vec<String>> = queues.iter().map(|q| row(q, &q.name)).collect();
    if let Some(t) = total {
        rows.push(row(t, "(total)"));
    }
    output::table(
        &[
            "QUEUE",
            "RUNNING",
            "QUEUED",
            "MAX",
            "MAX QUEUED",
            "PAUSED",
            "LAST HOUR",
            "OLDEST",
            "LONGEST WAIT",
            "STUCK",
        ],
        &rows,
    )
}

fn queue_json(q: &QueueHealth) -> serde_json::Value {
    serde_json::json!({
        "name": q.name, "running": q.running, "queued": q.queued,
        "max_concurrent": q.max_concurrent, "max_queued": q.max_queued, "paused": q.paused,
        "ended_last_hour": q.ended_last_hour, "ended_last_day": q.ended_last_day,
        "oldest_running_ms": q.oldest_running_ms,
        "longest_queued_wait_ms": q.longest_queued_wait_ms, "stuck": q.stuck,
    })
}

pub async fn run(client: &mut Client, args: QueueArgs, json: bool) -> anyhow::Result<ExitCode> {
    let update = match &args.action {
        None => None,
        Some(QueueAction::Pause { queue }) => Some((queue.clone(), Some(true), None)),
        Some(QueueAction::Resume { queue }) => Some((queue.clone(), Some(false), None)),
        Some(QueueAction::Limit {
            queue,
            max_concurrent,
        }) => Some((queue.clone(), None, Some(*max_concurrent))),
    };
    if let Some((queue, paused, max_concurrent)) = update {
        let q = client
            .update_queue(UpdateQueueRequest {
                queue: queue.clone(),
                paused,
                max_concurrent,
            })
            .await
            .map_err(api_error)
            .with_context(|| format!("queue {queue}"))?
            .into_inner();
        if json {
            output::print_json(&queue_json(&q), false)?;
        } else {
            output::print(&queues_table(&[q], None))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let h = client
        .get_queue_health(GetQueueHealthRequest {})
        .await
        .map_err(api_error)
        .context("queue")?
        .into_inner();
    if json {
        output::print_json(
            &serde_json::json!({
                "queues": h.queues.iter().map(queue_json).collect::<Vec<_>>(),
                "total": h.total.as_ref().map(queue_json),
                "alerts": h.alerts.iter().map(output::alert_json).collect::<Vec<_>>(),
            }),
            false,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = queues_table(&h.queues, h.total.as_ref());
    if !h.alerts.is_empty() {
        let rows: Vec<Vec<String>> = h
            .alerts
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    if a.resolved_at > 0 {
                        "resolved".into()
                    } else {
                        "FIRING".into()
                    },
                    a.kind.clone(),
                    output::one_line(&a.message),
                ]
            })
            .collect();
        text.push_str("\n\n");
        text.push_str(&output::table(&["ID", "STATE", "KIND", "MESSAGE"], &rows));
    }
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_queue_and_the_total() {
        let q = QueueHealth {
            name: "agents".into(),
            running: 2,
            queued: 5,
            max_concurrent: 2,
            max_queued: 10_000,
            paused: true,
            ended_last_hour: [("SUCCEEDED".to_string(), 3)].into(),
            longest_queued_wait_ms: 90_000,
            ..Default::default()
        };
        let text = queues_table(std::slice::from_ref(&q), Some(&q));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("QUEUE"), "{text}");
        assert!(lines[1].starts_with("agents"), "{text}");
        assert!(lines[1].contains("succeeded 3"), "{text}");
        assert!(lines[1].contains("yes"), "{text}");
        assert!(lines[1].contains("1m 30s"), "{text}");
        assert!(lines[2].starts_with("(total)"), "{text}");
    }
}
