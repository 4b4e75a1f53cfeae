//! The status page's model of the host, the same header and runs table as `wfctl top`: counts
//! (running, queued, stuck, alerts firing), one line per queue, and the runs, live first (newest
//! first) then the most recently finished, each with run id, workflow or command, status, health
//! with its reason, phase, turns, cost, CPU, memory, age and last event. Pure: [`board`] is a
//! function of the runs, the queue figures, the alert count, the last Watch event of each run
//! and the time, so the page is unit-tested without a daemon. Works on the API's own types
//! (`proto::Run`, as List answers them), so the page and the API's clients say the same things.
use std::collections::BTreeMap;

use crate::proto::{self, Health, Run, RunStatus};

/// How many finished runs the table shows besides the live ones (as `wfctl top`).
pub const FINISHED_SHOWN: usize = 50;

/// At most this many characters of a cell (the command of a huge argv, a long reason).
const CELL_CHARS: usize = 240;

/// A column of the runs table, left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    Status,
    Health,
    Name,
    Phase,
    Turns,
    Cost,
    Cpu,
    Mem,
    Age,
    LastEvent,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Id,
        Column::Status,
        Column::Health,
        Column::Name,
        Column::Phase,
        Column::Turns,
        Column::Cost,
        Column::Cpu,
        Column::Mem,
        Column::Age,
        Column::LastEvent,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "RUN ID",
            Column::Status => "STATUS",
            Column::Health => "HEALTH",
            Column::Name => "WORKFLOW/COMMAND",
            Column::Phase => "PHASE",
            Column::Turns => "TURNS",
            Column::Cost => "COST",
            Column::Cpu => "CPU",
            Column::Mem => "MEM",
            Column::Age => "AGE",
            Column::LastEvent => "LAST EVENT",
        }
    }

    /// Lower is kept longer as the screen narrows; 0 is always shown (the order `wfctl top`
    /// drops its columns in). The page's style sheet hides columns by this number.
    pub fn priority(self) -> u8 {
        match self {
            Column::Id | Column::Status | Column::Name => 0,
            Column::Health => 1,
            Column::Age => 2,
            Column::Cost => 3,
            Column::Cpu => 4,
            Column::Mem => 5,
            Column::Turns => 6,
            Column::LastEvent => 7,
            Column::Phase => 8,
        }
    }
}

/// The last Watch event seen of a run (heartbeats included only when nothing else was seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent {
    pub at: i64,
    pub kind: String,
    pub message: String,
}

/// The header's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub running: u32,
    pub queued: u32,
    pub stuck: u32,
    pub alerts: u32,
}

/// How a row stands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A stuck rule fired for this live run.
    Stuck,
    /// Live, but its health is slow.
    Slow,
    Live,
    Finished,
}

impl Tone {
    pub fn class(self) -> &'static str {
        match self {
            Tone::Stuck => "stuck",
            Tone::Slow => "slow",
            Tone::Live => "live",
            Tone::Finished => "finished",
        }
    }
}

/// One row of the runs table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub run_id: String,
    pub tone: Tone,
    /// One text per column of [`Column::ALL`].
    pub cells: Vec<(Column, String)>,
}

/// One queue's line in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLine {
    pub text: String,
    pub stuck: bool,
}

/// Everything `/` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub now: i64,
    pub counts: Counts,
    pub queues: Vec<QueueLine>,
    pub rows: Vec<Row>,
}

/// What the board is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub runs: BTreeMap<String, Run>,
    /// The configured queues (GetQueueHealth's figures).
    pub queues: Vec<proto::QueueHealth>,
    /// Distinct alerts firing.
    pub alerts: u32,
    pub last_events: BTreeMap<String, LastEvent>,
}

/// The board of `inputs` at `now` (Unix ms).
pub fn board(inputs: &Inputs, now: i64) -> Board {
    let rows = ordered(&inputs.runs)
        .into_iter()
        .map(|r| Row {
            run_id: r.run_id.clone(),
            tone: tone(r),
            cells: Column::ALL
                .iter()
                .map(|c| (*c, cell(r, *c, inputs.last_events.get(&r.run_id), now)))
                .collect(),
        })
        .collect();
    Board {
        now,
        counts: counts(inputs),
        queues: inputs.queues.iter().map(queue_line).collect(),
        rows,
    }
}

/// The table's runs: the live ones, newest first, then at most [`FINISHED_SHOWN`] finished ones,
/// the most recently ended first.
pub fn ordered(runs: &BTreeMap<String, Run>) -> Vec<&Run> {
    let (mut live, mut done): (Vec<&Run>, Vec<&Run>) = runs.values().partition(|r| is_live(r));
    live.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    done.sort_by(|a, b| {
        b.ended_at
            .cmp(&a.ended_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    done.truncate(FINISHED_SHOWN);
    live.extend(done);
    live
}

/// Whether a run is queued or live (not finished).
pub fn is_live(r: &Run) -> bool {
    matches!(
        RunStatus::try_from(r.status),
        Ok(RunStatus::Queued | RunStatus::Starting | RunStatus::Running | RunStatus::Stopping)
    )
}

/// Whether a stuck rule fired for this live run.
pub fn is_stuck(r: &Run) -> bool {
    is_live(r)
        && r.agent
            .as_ref()
            .is_some_and(|a| a.health == Health::Stuck as i32)
}

fn tone(r: &Run) -> Tone {
    if is_stuck(r) {
        Tone::Stuck
    } else if !is_live(r) {
        Tone::Finished
    } else if r
        .agent
        .as_ref()
        .is_some_and(|a| a.health == Health::Slow as i32)
    {
        Tone::Slow
    } else {
        Tone::Live
    }
}

/// The header's counts: the queues' figures where there are any (they count every run, not only
/// the ones in the table), else the runs at hand; stuck is never less than the table shows.
fn counts(inputs: &Inputs) -> Counts {
    let local = |want: &[RunStatus]| {
        inputs
            .runs
            .values()
            .filter(|r| want.iter().any(|s| *s as i32 == r.status))
            .count() as u32
    };
    let stuck_here = inputs.runs.values().filter(|r| is_stuck(r)).count() as u32;
    let (running, queued, stuck) = if inputs.queues.is_empty() {
        (
            local(&[RunStatus::Starting, RunStatus::Running, RunStatus::Stopping]),
            local(&[RunStatus::Queued]),
            stuck_here,
        )
    } else {
        let sum = |f: fn(&proto::QueueHealth) -> u32| inputs.queues.iter().map(f).sum::<u32>();
        (
            sum(|q| q.running),
            sum(|q| q.queued),
            sum(|q| q.stuck).max(stuck_here),
        )
    };
    Counts {
        running,
        queued,
        stuck,
        alerts: inputs.alerts,
    }
}

fn queue_line(q: &proto::QueueHealth) -> QueueLine {
    let mut s = format!(
        "queue {}  running {}/{}  queued {}",
        q.name, q.running, q.max_concurrent, q.queued
    );
    if q.max_queued > 0 {
        s.push_str(&format!("/{}", q.max_queued));
    }
    s.push_str(&format!("  stuck {}", q.stuck));
    if q.oldest_running_ms > 0 {
        s.push_str(&format!("  oldest {}", duration(q.oldest_running_ms)));
    }
    if q.longest_queued_wait_ms > 0 {
        s.push_str(&format!(
            "  longest wait {}",
            duration(q.longest_queued_wait_ms)
        ));
    }
    if q.paused {
        s.push_str("  PAUSED");
    }
    QueueLine {
        text: s,
        stuck: q.stuck > 0,
    }
}

/// One cell of one run, as text (not yet escaped).
pub fn cell(r: &Run, column: Column, last: Option<&LastEvent>, now: i64) -> String {
    let agent = r.agent.as_ref();
    let live = is_live(r);
    let text = match column {
        Column::Id => r.run_id.clone(),
        Column::Status => status_name(r.status).to_uppercase(),
        Column::Health => match agent {
            None => String::new(),
            Some(a) if a.health == Health::Unspecified as i32 => "-".into(),
            Some(a) if a.health_reason.is_empty() => health_name(a.health),
            Some(a) => format!("{}: {}", health_name(a.health), a.health_reason),
        },
        Column::Name => {
            if r.workflow.is_empty() {
                command_line(&r.argv)
            } else {
                match agent.map(|a| a.prompt.as_str()).filter(|p| !p.is_empty()) {
                    Some(p) => format!("{} {p}", r.workflow),
                    None => r.workflow.clone(),
                }
            }
        }
        Column::Phase => match agent {
            None if r.status == RunStatus::Queued as i32 => "waiting".into(),
            None => String::new(),
            Some(a) if a.current_tool.is_empty() || !live => phase_name(a.phase),
            Some(a) => format!("{} {}", phase_name(a.phase), a.current_tool),
        },
        Column::Turns => agent.map(|a| a.turns.to_string()).unwrap_or_default(),
        Column::Cost => match agent {
            None => String::new(),
            Some(a) => a.cost_usd.map(usd).unwrap_or_else(|| "-".into()),
        },
        Column::Cpu => match &r.usage {
            Some(u) if u.sampled_at > 0 => duration(u.cpu_user_ms.saturating_add(u.cpu_system_ms)),
            _ => "-".into(),
        },
        Column::Mem => match &r.usage {
            Some(u) if u.sampled_at > 0 && live => bytes(u.memory_bytes),
            Some(u) if u.sampled_at > 0 => bytes(u.memory_peak_bytes),
            _ => "-".into(),
        },
        Column::Age if r.created_at > 0 => {
            duration(now.saturating_sub(r.created_at).max(0).unsigned_abs())
        }
        Column::Age => "-".into(),
        Column::LastEvent => last_event(r, last, now),
    };
    clip(&one_line(&text), CELL_CHARS)
}

/// What last happened to a run: why it waits, else the last Watch event, else its last agent
/// event or heartbeat, else how it ended.
fn last_event(r: &Run, last: Option<&LastEvent>, now: i64) -> String {
    if r.status == RunStatus::Queued as i32 && !r.waiting_reason.is_empty() {
        return r.waiting_reason.clone();
    }
    if let Some(e) = last {
        let mut s = format!("{} {}", ago(now, e.at), e.kind);
        if !e.message.is_empty() {
            s.push_str(": ");
            s.push_str(&e.message);
        }
        return s;
    }
    let agent_at = r.agent.as_ref().map_or(0, |a| a.last_event_at);
    let (at, what) = if agent_at >= r.last_heartbeat_at {
        (agent_at, "agent event")
    } else {
        (r.last_heartbeat_at, "heartbeat")
    };
    if at > 0 && is_live(r) {
        return format!("{} {what}", ago(now, at));
    }
    if r.ended_at > 0 {
        let why = if r.end_reason.is_empty() {
            &r.error
        } else {
            &r.end_reason
        };
        let mut s = format!("{} ended", ago(now, r.ended_at));
        if !why.is_empty() {
            s.push_str(": ");
            s.push_str(why);
        }
        return s;
    }
    "-".into()
}

// ---------------------------------------------------------------------------------------------
// Words for figures (as the CLI writes them)

/// Lowercase name of a prost enum value after its prefix, or `unknown(N)`.
// The shared wording (`crate::present`), under the names the page's modules use.
pub use crate::present::{
    agent_phase_name as phase_name, command_line, fmt_ago as ago, fmt_bytes as bytes,
    fmt_duration_ms as duration, fmt_usd as usd, health_name, one_line, status_name,
    truncate as clip,
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::{AgentPhase, AgentProgress, RunUsage};

    /// 2026-12-01T15:00:00Z.
    pub const NOW: i64 = 1_796_137_200_000;

    pub fn run(id: &str, status: RunStatus, age_s: i64) -> Run {
        Run {
            run_id: id.to_string(),
            status: status as i32,
            argv: vec!["/usr/bin/make".into(), "-C".into(), "/srv/site".into()],
            created_at: NOW - age_s * 1000,
            started_at: NOW - age_s * 1000,
            queue: "default".into(),
            ..Run::default()
        }
    }

    /// A host like `wfctl top`'s rendering tests: a busy agent, a stuck one, a queued run, a
    /// plain command, a killed run and a finished agent.
    pub fn inputs() -> Inputs {
        let mut builder = run("run_5fbae44ab6f0", RunStatus::Running, 754);
        builder.workflow = "builder".into();
        builder.agent = Some(AgentProgress {
            phase: AgentPhase::Active as i32,
            turns: 12,
            cost_usd: Some(0.4213),
            health: Health::Ok as i32,
            current_tool: "Bash".into(),
            prompt: "fix the flaky test".into(),
            last_event_at: NOW - 4000,
            ..AgentProgress::default()
        });
        builder.usage = Some(RunUsage {
            cpu_user_ms: 83_000,
            cpu_system_ms: 9_000,
            memory_bytes: 412 * 1024 * 1024,
            sampled_at: NOW - 500,
            ..RunUsage::default()
        });
        let mut stuck = run("run_0c1d2e3f4a5b", RunStatus::Running, 2_460);
        stuck.workflow = "reviewer".into();
        stuck.agent = Some(AgentProgress {
            phase: AgentPhase::Initializing as i32,
            health: Health::Stuck as i32,
            health_reason: "no first turn within 30m".into(),
            ..AgentProgress::default()
        });
        let mut queued = run("run_9a8b7c6d5e4f", RunStatus::Queued, 42);
        queued.started_at = 0;
        queued.waiting_reason = "queue heavy full: 2/2 running".into();
        let mut killed = run("run_aaaabbbbcccc", RunStatus::Killed, 3_600);
        killed.ended_at = NOW - 1_800_000;
        killed.end_reason = "killed by uid=0: runaway".into();
        let mut done = run("run_ddddeeeeffff", RunStatus::Succeeded, 7_200);
        done.ended_at = NOW - 3_000_000;
        let runs = [builder, stuck, queued, killed, done]
            .into_iter()
            .map(|r| (r.run_id.clone(), r))
            .collect();
        Inputs {
            runs,
            queues: vec![proto::QueueHealth {
                name: "default".into(),
                running: 2,
                queued: 1,
                max_concurrent: 8,
                stuck: 1,
                oldest_running_ms: 2_460_000,
                ..proto::QueueHealth::default()
            }],
            alerts: 1,
            last_events: BTreeMap::new(),
        }
    }

    fn texts(row: &Row) -> Vec<&str> {
        row.cells.iter().map(|(_, t)| t.as_str()).collect()
    }

    #[test]
    fn live_runs_come_first_newest_first_then_the_latest_finished() {
        let b = board(&inputs(), NOW);
        let ids: Vec<&str> = b.rows.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "run_9a8b7c6d5e4f",
                "run_5fbae44ab6f0",
                "run_0c1d2e3f4a5b",
                "run_aaaabbbbcccc",
                "run_ddddeeeeffff"
            ]
        );
    }

    #[test]
    fn the_header_counts_come_from_the_queues() {
        let b = board(&inputs(), NOW);
        assert_eq!(
            b.counts,
            Counts {
                running: 2,
                queued: 1,
                stuck: 1,
                alerts: 1
            }
        );
        assert_eq!(
            b.queues[0].text,
            "queue default  running 2/8  queued 1  stuck 1  oldest 41m"
        );
        assert!(b.queues[0].stuck);
        let mut none = inputs();
        none.queues.clear();
        let c = board(&none, NOW).counts;
        assert_eq!((c.running, c.queued, c.stuck), (2, 1, 1));
    }

    #[test]
    fn cells_say_what_wfctl_top_says() {
        let b = board(&inputs(), NOW);
        let builder = b
            .rows
            .iter()
            .find(|r| r.run_id == "run_5fbae44ab6f0")
            .expect("row");
        assert_eq!(
            texts(builder),
            [
                "run_5fbae44ab6f0",
                "RUNNING",
                "ok",
                "builder fix the flaky test",
                "active Bash",
                "12",
                "$0.4213",
                "1m 32s",
                "412.0 MiB",
                "12m 34s",
                "4s ago agent event"
            ]
        );
        let stuck = &b.rows[2];
        assert_eq!(stuck.tone, Tone::Stuck);
        assert_eq!(stuck.cells[2].1, "stuck: no first turn within 30m");
        let queued = &b.rows[0];
        assert_eq!(queued.cells[10].1, "queue heavy full: 2/2 running");
        assert_eq!(queued.cells[1].1, "QUEUED");
        let killed = &b.rows[3];
        assert_eq!(killed.tone, Tone::Finished);
        assert_eq!(
            killed.cells[10].1,
            "30m ago ended: killed by uid=0: runaway"
        );
    }

    #[test]
    fn the_last_watch_event_wins_over_the_run_s_own_times() {
        let mut i = inputs();
        i.last_events.insert(
            "run_5fbae44ab6f0".into(),
            LastEvent {
                at: NOW - 2000,
                kind: "stopping".into(),
                message: "kill by token ci".into(),
            },
        );
        let b = board(&i, NOW);
        assert_eq!(b.rows[1].cells[10].1, "2s ago stopping: kill by token ci");
    }

    #[test]
    fn only_the_latest_finished_runs_are_kept() {
        let mut i = Inputs::default();
        for n in 0..(FINISHED_SHOWN as i64 + 10) {
            let mut r = run(&format!("run_{n:012x}"), RunStatus::Succeeded, 100);
            r.ended_at = NOW - 1000 * n;
            i.runs.insert(r.run_id.clone(), r);
        }
        let b = board(&i, NOW);
        assert_eq!(b.rows.len(), FINISHED_SHOWN);
        assert_eq!(b.rows[0].run_id, "run_000000000000");
    }

    #[test]
    fn control_characters_and_huge_cells_are_tamed() {
        let mut r = run("run_111122223333", RunStatus::Running, 1);
        r.argv = vec![
            "sh".into(),
            "-c".into(),
            format!("echo a\nb\x1b[2J{}", "x".repeat(500)),
        ];
        let text = cell(&r, Column::Name, None, NOW);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(text.chars().count(), CELL_CHARS);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn figures_read_as_the_cli_writes_them() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(4_200), "4.2s");
        assert_eq!(duration(303_000), "5m 3s");
        assert_eq!(duration(7_500_000), "2h 5m");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(ago(NOW, NOW - 300), "just now");
        assert_eq!(ago(NOW, 0), "-");
        assert_eq!(
            command_line(&["echo".into(), "it's".into(), "a b".into()]),
            r"echo 'it'\''s' 'a b'"
        );
    }
}
