//! The state of `wfctl top` and the one function that changes it, the Elm way: [`App`] is plain
//! data, [`update`] folds one [`Event`] into it and answers the [`Cmd`]s to carry out (API calls,
//! the log follower, quitting). Nothing here does I/O or reads the clock, so every key, every
//! answer and every refusal is unit-tested as data in, data out; `view.rs` renders an `App` and
//! `feed.rs` turns the daemon and the terminal into `Event`s on one channel.
use std::collections::BTreeMap;

use wf_supervisor::proto::{
    Alert, GetHealthResponse, GetQueueHealthResponse, Health, KillResponse, QueueHealth, Run,
    RunEvent, RunStatus,
};

use super::super::output;

/// The most log text the pane keeps (the tail of what the run printed).
pub const LOG_KEEP_BYTES: usize = 64 * 1024;

/// A key, as `top` understands keys (the terminal's events are mapped onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
    /// Ctrl-C: quit from anywhere.
    Interrupt,
}

/// Everything that reaches the app, on one channel.
#[derive(Debug, Clone)]
pub enum Event {
    Key(Key),
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
    /// The clock, once a second (Unix ms).
    Tick(i64),
    /// The daemon answers again (after a start or a loss).
    Connected,
    /// The connection to the daemon failed or was lost; the feed is reconnecting.
    Disconnected(String),
    /// A periodic poll: the runs, and the queues and health where the daemon answered them.
    Snapshot(Box<Snapshot>),
    /// One event of the Watch stream.
    Watch(Box<RunEvent>),
    /// A fresh Get of the run on screen (usage figures are fresh on Get).
    Run(Box<Run>),
    /// Output of the followed run.
    Log {
        run_id: String,
        data: Vec<u8>,
    },
    /// The log stream of the followed run ended (the run ended, or the call failed).
    LogEnded {
        run_id: String,
        error: Option<String>,
    },
    /// The answer to a [`Cmd`] that acted on a run.
    Done(Box<Outcome>),
}

/// One poll of the daemon's state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub runs: Vec<Run>,
    pub queues: Option<GetQueueHealthResponse>,
    pub health: Option<GetHealthResponse>,
}

/// What an action came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Killed(KillResponse),
    Restarted {
        old_run_id: String,
        run: Option<Run>,
        note: String,
    },
    Cancelled {
        run: Option<Run>,
        run_id: String,
        killed: bool,
    },
    /// The call failed: `what` was attempted (`kill run_x`), `why` in the API's words.
    Refused {
        what: String,
        why: String,
    },
}

/// What the app asks its runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Kill {
        run_id: String,
        force: bool,
    },
    Restart {
        run_id: String,
        resume: bool,
    },
    Cancel {
        run_id: String,
    },
    /// Follow this run's output (replacing any other follower).
    FollowLogs(String),
    StopLogs,
    /// Get this run afresh.
    GetRun(String),
    Quit,
}

/// An action that waits for the operator's `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Kill { run_id: String, force: bool },
    Restart { run_id: String, resume: bool },
    Cancel { run_id: String },
}

impl Action {
    /// The question the footer asks.
    pub fn question(&self) -> String {
        match self {
            Action::Kill {
                run_id,
                force: false,
            } => format!("Kill {run_id} (stop signals, grace, then KILL)? y/N"),
            Action::Kill {
                run_id,
                force: true,
            } => {
                format!("Force-kill {run_id} (KILL now, no grace)? y/N")
            }
            Action::Restart {
                run_id,
                resume: true,
            } => format!("Restart {run_id}, resuming its session? y/N"),
            Action::Restart { run_id, .. } => format!("Restart {run_id}? y/N"),
            Action::Cancel { run_id } => format!("Cancel queued run {run_id}? y/N"),
        }
    }

    fn into_cmd(self) -> Cmd {
        match self {
            Action::Kill { run_id, force } => Cmd::Kill { run_id, force },
            Action::Restart { run_id, resume } => Cmd::Restart { run_id, resume },
            Action::Cancel { run_id } => Cmd::Cancel { run_id },
        }
    }
}

/// Which screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    List,
    /// One run's detail and its live log.
    Detail(String),
}

/// What the keys do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter.
    Filter,
    Confirm(Action),
    /// A report over the screen (the kill report) until any key.
    Report {
        title: String,
        text: String,
    },
}

/// The order of the runs table; `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Live runs (newest first), then finished ones (most recently ended first).
    Live,
    /// Oldest first.
    Age,
    /// Most expensive first.
    Cost,
    /// Most memory first.
    Memory,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Sort::Live => "live first",
            Sort::Age => "oldest first",
            Sort::Cost => "cost",
            Sort::Memory => "memory",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::Live => Sort::Age,
            Sort::Age => Sort::Cost,
            Sort::Cost => Sort::Memory,
            Sort::Memory => Sort::Live,
        }
    }
}

/// The state of the connection to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Up,
    /// Lost at (Unix ms), with the error; the feed retries every second.
    Lost {
        since: i64,
        error: String,
    },
}

/// The footer's note after an action: what happened, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub error: bool,
    pub text: String,
}

/// The followed run's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPane {
    pub run_id: String,
    /// The tail of stdout and stderr as they arrived, at most [`LOG_KEEP_BYTES`].
    pub text: String,
    /// Why the stream ended, once it did.
    pub ended: Option<String>,
}

/// The last event the Watch stream told of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent {
    pub at: i64,
    pub kind: String,
    pub message: String,
}

/// Everything `top` shows.
#[derive(Debug, Clone)]
pub struct App {
    /// Where the daemon is, for the header.
    pub target: String,
    /// Unix ms, from the last tick.
    pub now: i64,
    /// Columns and rows of the terminal.
    pub size: (u16, u16),
    pub connection: Connection,
    pub runs: BTreeMap<String, Run>,
    pub last_events: BTreeMap<String, LastEvent>,
    pub queues: Vec<QueueHealth>,
    pub total: Option<QueueHealth>,
    pub queue_alerts: Vec<Alert>,
    pub health: Option<GetHealthResponse>,
    /// The selected run, by id so that it stays selected when the rows move.
    pub selected: Option<String>,
    pub view: View,
    pub mode: Mode,
    pub filter: String,
    pub sort: Sort,
    pub note: Option<Note>,
    pub log: LogPane,
    /// Kill reports this session received, by run.
    pub kill_reports: BTreeMap<String, KillResponse>,
    /// Whether the first snapshot arrived.
    pub loaded: bool,
}

impl App {
    pub fn new(target: impl Into<String>, now: i64, size: (u16, u16)) -> App {
        App {
            target: target.into(),
            now,
            size,
            connection: Connection::Connecting,
            runs: BTreeMap::new(),
            last_events: BTreeMap::new(),
            queues: Vec::new(),
            total: None,
            queue_alerts: Vec::new(),
            health: None,
            selected: None,
            view: View::List,
            mode: Mode::Normal,
            filter: String::new(),
            sort: Sort::Live,
            note: None,
            log: LogPane::default(),
            kill_reports: BTreeMap::new(),
            loaded: false,
        }
    }

    /// The runs table's rows: filtered, then in the chosen order.
    pub fn rows(&self) -> Vec<&Run> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Run> = self
            .runs
            .values()
            .filter(|r| needle.is_empty() || haystack(r).contains(&needle))
            .collect();
        match self.sort {
            Sort::Live => rows.sort_by(|a, b| {
                is_live(b.status)
                    .cmp(&is_live(a.status))
                    .then_with(|| {
                        if is_live(a.status) {
                            b.created_at.cmp(&a.created_at)
                        } else {
                            b.ended_at.cmp(&a.ended_at)
                        }
                    })
                    .then_with(|| b.run_id.cmp(&a.run_id))
            }),
            Sort::Age => rows.sort_by(|a, b| {
                a.created_at
                    .cmp(&b.created_at)
                    .then_with(|| a.run_id.cmp(&b.run_id))
            }),
            Sort::Cost => rows.sort_by(|a, b| {
                cost(b)
                    .total_cmp(&cost(a))
                    .then_with(|| b.created_at.cmp(&a.created_at))
            }),
            Sort::Memory => rows.sort_by(|a, b| {
                memory(b)
                    .cmp(&memory(a))
                    .then_with(|| b.created_at.cmp(&a.created_at))
            }),
        }
        rows
    }

    /// Index of the selected run among the rows.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.rows().iter().position(|r| r.run_id == id)
    }

    /// The run an action applies to: the one on screen in detail, else the selected row.
    pub fn target_run(&self) -> Option<&Run> {
        match &self.view {
            View::Detail(id) => self.runs.get(id),
            View::List => self.selected.as_deref().and_then(|id| self.runs.get(id)),
        }
    }

    /// Running, queued and stuck runs and firing alerts, for the header.
    pub fn counts(&self) -> Counts {
        let local = |st: &[RunStatus]| {
            self.runs
                .values()
                .filter(|r| st.iter().any(|s| *s as i32 == r.status))
                .count() as u32
        };
        let stuck_local = self.runs.values().filter(|r| is_stuck(r)).count() as u32;
        let (running, queued, stuck) = match &self.total {
            Some(t) => (t.running, t.queued, t.stuck.max(stuck_local)),
            None => (
                local(&[RunStatus::Starting, RunStatus::Running, RunStatus::Stopping]),
                local(&[RunStatus::Queued]),
                stuck_local,
            ),
        };
        let mut firing: Vec<(i64, &str)> = Vec::new();
        let alerts = self
            .health
            .iter()
            .flat_map(|h| h.alerts.iter())
            .chain(self.queue_alerts.iter());
        for a in alerts.filter(|a| a.resolved_at == 0) {
            if !firing.contains(&(a.id, a.kind.as_str())) {
                firing.push((a.id, a.kind.as_str()));
            }
        }
        Counts {
            running,
            queued,
            stuck,
            alerts: firing.len() as u32,
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let at = self
            .selected
            .as_deref()
            .and_then(|id| rows.iter().position(|r| r.run_id == id));
        let next = match at {
            None => 0,
            Some(i) => (i as isize + delta).clamp(0, rows.len() as isize - 1) as usize,
        };
        self.selected = Some(rows[next].run_id.clone());
    }

    /// Keeps a selection on a visible row: the first one when nothing (visible) is selected.
    fn keep_selection(&mut self) {
        let rows = self.rows();
        let visible = self
            .selected
            .as_deref()
            .is_some_and(|id| rows.iter().any(|r| r.run_id == id));
        if !visible {
            self.selected = rows.first().map(|r| r.run_id.clone());
        }
    }

    /// Puts a run into the table, keeping what a newer record already said: a terminal status
    /// is final (a poll answered before the kill does not bring the run back to life), and usage
    /// figures stay until fresher ones arrive.
    fn merge_run(&mut self, mut run: Run) {
        if let Some(old) = self.runs.get(&run.run_id) {
            if is_terminal(old.status) && !is_terminal(run.status) {
                return;
            }
            if run.usage.is_none() {
                run.usage = old.usage.clone();
            }
        }
        self.runs.insert(run.run_id.clone(), run);
    }

    fn page(&self) -> isize {
        (self.size.1 as isize - 10).max(1)
    }
}

/// The header's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub running: u32,
    pub queued: u32,
    pub stuck: u32,
    pub alerts: u32,
}

/// Whether a run is queued or live (not final).
pub fn is_live(status: i32) -> bool {
    !is_terminal(status) && status != RunStatus::Unspecified as i32
}

pub fn is_terminal(status: i32) -> bool {
    super::super::purge::FINISHED
        .iter()
        .any(|s| *s as i32 == status)
}

/// Whether a stuck rule fired for this live run.
pub fn is_stuck(r: &Run) -> bool {
    is_live(r.status)
        && r.agent
            .as_ref()
            .is_some_and(|a| a.health == Health::Stuck as i32)
}

fn cost(r: &Run) -> f64 {
    r.agent.as_ref().and_then(|a| a.cost_usd).unwrap_or(0.0)
}

fn memory(r: &Run) -> u64 {
    r.usage.as_ref().map(|u| u.memory_bytes).unwrap_or(0)
}

/// What `/` matches against, lowercase: id, status, workflow, command, queue, labels, reasons.
fn haystack(r: &Run) -> String {
    let mut s = format!(
        "{} {} {} {} {} {}",
        r.run_id,
        output::status_name(r.status),
        r.workflow,
        output::command_line(&r.argv),
        r.queue,
        r.end_reason
    );
    for (k, v) in &r.labels {
        s.push_str(&format!(" {k}={v}"));
    }
    if let Some(a) = &r.agent {
        s.push(' ');
        s.push_str(&a.health_reason);
    }
    s.to_lowercase()
}

/// Folds one event into the app; answers what to do about it.
pub fn update(app: &mut App, event: Event) -> Vec<Cmd> {
    match event {
        Event::Key(key) => return on_key(app, key),
        Event::Resize(w, h) => app.size = (w, h),
        Event::Tick(now) => {
            app.now = now;
            if let View::Detail(id) = &app.view {
                if app.connection == Connection::Up {
                    return vec![Cmd::GetRun(id.clone())];
                }
            }
        }
        Event::Connected => {
            let was_lost = matches!(app.connection, Connection::Lost { .. });
            app.connection = Connection::Up;
            if was_lost {
                if let View::Detail(id) = &app.view {
                    // The follower died with the connection: follow again from the tail.
                    app.log = LogPane {
                        run_id: id.clone(),
                        ..LogPane::default()
                    };
                    return vec![Cmd::FollowLogs(id.clone())];
                }
            }
        }
        Event::Disconnected(error) => {
            let since = match &app.connection {
                Connection::Lost { since, .. } => *since,
                _ => app.now,
            };
            app.connection = Connection::Lost { since, error };
        }
        Event::Snapshot(snap) => {
            let Snapshot {
                runs,
                queues,
                health,
            } = *snap;
            let polled: BTreeMap<String, Run> =
                runs.into_iter().map(|r| (r.run_id.clone(), r)).collect();
            // Runs the poll no longer lists (purged, or past the finished-run limit) go; those
            // on screen in detail stay.
            let keep = match &app.view {
                View::Detail(id) => Some(id.clone()),
                View::List => None,
            };
            app.runs
                .retain(|id, _| polled.contains_key(id) || keep.as_deref() == Some(id.as_str()));
            for run in polled.into_values() {
                app.merge_run(run);
            }
            app.last_events.retain(|id, _| app.runs.contains_key(id));
            if let Some(q) = queues {
                app.queues = q.queues;
                app.total = q.total;
                app.queue_alerts = q.alerts;
            }
            if health.is_some() {
                app.health = health;
            }
            app.loaded = true;
            app.keep_selection();
        }
        Event::Watch(ev) => {
            let ev = *ev;
            if ev.kind != "heartbeat" || !app.last_events.contains_key(&ev.run_id) {
                app.last_events.insert(
                    ev.run_id.clone(),
                    LastEvent {
                        at: ev.at,
                        kind: ev.kind.clone(),
                        message: output::one_line(&ev.message),
                    },
                );
            } else if let Some(last) = app.last_events.get_mut(&ev.run_id) {
                // Heartbeats refresh the time of the last event but not what it was.
                if last.kind == "heartbeat" {
                    last.at = ev.at;
                }
            }
            match ev.run {
                // A heartbeat event's run is partial (id, status, heartbeat fields): only those
                // fields move; a run not seen yet waits for the next List.
                Some(run) if ev.kind == "heartbeat" => {
                    if let Some(r) = app.runs.get_mut(&ev.run_id) {
                        if !is_terminal(r.status) {
                            r.status = run.status;
                            r.last_heartbeat_at = run.last_heartbeat_at;
                            r.heartbeats = run.heartbeats;
                        }
                    }
                }
                Some(run) => app.merge_run(run),
                None => {
                    if let Some(r) = app.runs.get_mut(&ev.run_id) {
                        if !is_terminal(r.status) {
                            r.status = ev.status;
                        }
                    }
                }
            }
            app.keep_selection();
        }
        Event::Run(run) => app.merge_run(*run),
        Event::Log { run_id, data } => {
            if app.log.run_id == run_id {
                app.log.text.push_str(&String::from_utf8_lossy(&data));
                if app.log.text.len() > LOG_KEEP_BYTES {
                    let mut cut = app.log.text.len() - LOG_KEEP_BYTES;
                    while !app.log.text.is_char_boundary(cut) {
                        cut += 1;
                    }
                    app.log.text.drain(..cut);
                }
            }
        }
        Event::LogEnded { run_id, error } => {
            if app.log.run_id == run_id {
                app.log.ended = Some(error.unwrap_or_else(|| "the run ended".to_string()));
            }
        }
        Event::Done(outcome) => on_outcome(app, *outcome),
    }
    Vec::new()
}

fn on_outcome(app: &mut App, outcome: Outcome) {
    match outcome {
        Outcome::Killed(report) => {
            let status = report
                .run
                .as_ref()
                .map(|r| output::status_name(r.status).to_uppercase())
                .unwrap_or_else(|| "KILL".to_string());
            let title = if report.success {
                format!("{status} {}", report.run_id)
            } else {
                format!("{status} {}: NOT COMPLETE", report.run_id)
            };
            app.note = Some(Note {
                error: !report.success,
                text: format!(
                    "{}: {}",
                    report.run_id,
                    if report.success {
                        "killed, nothing of the run remains"
                    } else {
                        "kill NOT complete: the run was not seen empty"
                    }
                ),
            });
            if let Some(run) = report.run.clone() {
                app.merge_run(run);
            }
            app.mode = Mode::Report {
                title,
                text: output::kill_report(&report),
            };
            app.kill_reports.insert(report.run_id.clone(), report);
        }
        Outcome::Restarted {
            old_run_id,
            run,
            note,
        } => {
            let text = match &run {
                Some(r) => {
                    let mut t = format!("restarted {old_run_id} as {}", r.run_id);
                    if !note.is_empty() {
                        t.push_str(&format!(" ({})", output::one_line(&note)));
                    }
                    t
                }
                None => format!("restarted {old_run_id}"),
            };
            app.note = Some(Note { error: false, text });
            if let Some(r) = run {
                app.selected = Some(r.run_id.clone());
                app.merge_run(r);
            }
        }
        Outcome::Cancelled {
            run,
            run_id,
            killed,
        } => {
            let status = run
                .as_ref()
                .map(|r| output::status_name(r.status))
                .unwrap_or_default();
            let how = if killed {
                "its process was ended"
            } else {
                "it never started"
            };
            app.note = Some(Note {
                error: false,
                text: format!("{run_id}: {status} ({how})"),
            });
            if let Some(r) = run {
                app.merge_run(r);
            }
        }
        Outcome::Refused { what, why } => {
            app.note = Some(Note {
                error: true,
                text: format!("{what}: {why}"),
            });
        }
    }
}

fn on_key(app: &mut App, key: Key) -> Vec<Cmd> {
    if key == Key::Interrupt {
        return vec![Cmd::Quit];
    }
    match app.mode.clone() {
        Mode::Report { .. } => {
            app.mode = Mode::Normal;
            Vec::new()
        }
        Mode::Confirm(action) => {
            app.mode = Mode::Normal;
            if matches!(key, Key::Char('y') | Key::Char('Y')) {
                app.note = Some(Note {
                    error: false,
                    text: match &action {
                        Action::Kill { run_id, .. } => format!("killing {run_id}…"),
                        Action::Restart { run_id, .. } => format!("restarting {run_id}…"),
                        Action::Cancel { run_id } => format!("cancelling {run_id}…"),
                    },
                });
                vec![action.into_cmd()]
            } else {
                app.note = Some(Note {
                    error: false,
                    text: "nothing done".to_string(),
                });
                Vec::new()
            }
        }
        Mode::Filter => {
            match key {
                Key::Enter => app.mode = Mode::Normal,
                Key::Esc => {
                    app.filter.clear();
                    app.mode = Mode::Normal;
                }
                Key::Backspace => {
                    app.filter.pop();
                }
                Key::Char(c) if !c.is_control() => app.filter.push(c),
                _ => {}
            }
            app.keep_selection();
            Vec::new()
        }
        Mode::Normal => on_normal_key(app, key),
    }
}

fn on_normal_key(app: &mut App, key: Key) -> Vec<Cmd> {
    let in_detail = matches!(app.view, View::Detail(_));
    match key {
        Key::Char('q') | Key::Esc if in_detail => {
            app.view = View::List;
            app.log = LogPane::default();
            return vec![Cmd::StopLogs];
        }
        Key::Char('q') => return vec![Cmd::Quit],
        Key::Esc => {
            app.note = None;
        }
        Key::Down | Key::Char('j') if !in_detail => app.move_selection(1),
        Key::Up | Key::Char('k') if !in_detail => app.move_selection(-1),
        Key::PageDown if !in_detail => app.move_selection(app.page()),
        Key::PageUp if !in_detail => app.move_selection(-app.page()),
        Key::Home if !in_detail => app.move_selection(isize::MIN / 2),
        Key::End if !in_detail => app.move_selection(isize::MAX / 2),
        Key::Enter if !in_detail => {
            if let Some(id) = app.selected.clone() {
                app.view = View::Detail(id.clone());
                app.log = LogPane {
                    run_id: id.clone(),
                    ..LogPane::default()
                };
                return vec![Cmd::FollowLogs(id.clone()), Cmd::GetRun(id)];
            }
        }
        Key::Char('/') if !in_detail => {
            app.mode = Mode::Filter;
        }
        Key::Char('s') if !in_detail => {
            app.sort = app.sort.next();
            app.keep_selection();
        }
        Key::Char(c @ ('K' | 'F' | 'R' | 'C')) => {
            let Some(run) = app.target_run() else {
                app.note = Some(Note {
                    error: true,
                    text: "no run selected".to_string(),
                });
                return Vec::new();
            };
            let run_id = run.run_id.clone();
            let action = match c {
                'K' => Action::Kill {
                    run_id,
                    force: false,
                },
                'F' => Action::Kill {
                    run_id,
                    force: true,
                },
                'R' => Action::Restart {
                    run_id,
                    resume: !run.workflow.is_empty(),
                },
                _ => {
                    if run.status != RunStatus::Queued as i32 {
                        app.note = Some(Note {
                            error: true,
                            text: format!(
                                "{run_id} is {}: C cancels a queued run (K kills a live one)",
                                output::status_name(run.status)
                            ),
                        });
                        return Vec::new();
                    }
                    Action::Cancel { run_id }
                }
            };
            app.mode = Mode::Confirm(action);
        }
        _ => {}
    }
    Vec::new()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wf_supervisor::proto::{AgentProgress, KillPhase};

    pub fn run(id: &str, status: RunStatus, created_at: i64) -> Run {
        Run {
            run_id: id.to_string(),
            status: status as i32,
            argv: vec!["/bin/sleep".into(), "1000".into()],
            created_at,
            started_at: created_at,
            ended_at: if is_terminal(status as i32) {
                created_at + 1000
            } else {
                0
            },
            ..Run::default()
        }
    }

    fn loaded(runs: Vec<Run>) -> App {
        let mut app = App::new("/run/wf.sock", 10_000, (80, 24));
        update(&mut app, Event::Connected);
        update(
            &mut app,
            Event::Snapshot(Box::new(Snapshot {
                runs,
                ..Snapshot::default()
            })),
        );
        app
    }

    fn keys(app: &mut App, keys: &[Key]) -> Vec<Cmd> {
        keys.iter()
            .flat_map(|k| update(app, Event::Key(*k)))
            .collect()
    }

    #[test]
    fn live_runs_come_first_newest_first_then_the_latest_finished() {
        let app = loaded(vec![
            run("run_000000000001", RunStatus::Succeeded, 1000),
            run("run_000000000002", RunStatus::Running, 2000),
            run("run_000000000003", RunStatus::Killed, 3000),
            run("run_000000000004", RunStatus::Queued, 4000),
        ]);
        let ids: Vec<&str> = app.rows().iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "run_000000000004",
                "run_000000000002",
                "run_000000000003",
                "run_000000000001"
            ]
        );
        assert_eq!(app.selected.as_deref(), Some("run_000000000004"));
    }

    #[test]
    fn a_heartbeat_event_moves_only_the_heartbeat_fields() {
        let mut full = run("run_000000000001", RunStatus::Running, 1000);
        full.workflow = "review".into();
        full.heartbeats = 3;
        let mut app = loaded(vec![full]);
        let partial = Run {
            run_id: "run_000000000001".into(),
            status: RunStatus::Running as i32,
            last_heartbeat_at: 5000,
            heartbeats: 9,
            ..Run::default()
        };
        update(
            &mut app,
            Event::Watch(Box::new(wf_supervisor::proto::RunEvent {
                run_id: "run_000000000001".into(),
                at: 5000,
                kind: "heartbeat".into(),
                status: RunStatus::Running as i32,
                message: String::new(),
                run: Some(partial),
            })),
        );
        let r = &app.runs["run_000000000001"];
        assert_eq!((r.heartbeats, r.last_heartbeat_at), (9, 5000));
        assert_eq!(r.workflow, "review", "the rest of the row stays");
        assert_eq!(r.created_at, 1000);
    }

    #[test]
    fn keys_move_the_selection_within_the_rows() {
        let mut app = loaded(vec![
            run("run_000000000001", RunStatus::Running, 1000),
            run("run_000000000002", RunStatus::Running, 2000),
        ]);
        keys(&mut app, &[Key::Char('j'), Key::Down, Key::Down]);
        assert_eq!(app.selected.as_deref(), Some("run_000000000001"));
        keys(&mut app, &[Key::Char('k')]);
        assert_eq!(app.selected.as_deref(), Some("run_000000000002"));
        keys(&mut app, &[Key::End]);
        assert_eq!(app.selected_index(), Some(1));
    }

    #[test]
    fn kill_asks_first_and_only_y_sends_it() {
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000)]);
        assert!(keys(&mut app, &[Key::Char('K')]).is_empty());
        assert!(matches!(app.mode, Mode::Confirm(_)));
        assert!(keys(&mut app, &[Key::Char('n')]).is_empty());
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(
            keys(&mut app, &[Key::Char('K'), Key::Char('y')]),
            [Cmd::Kill {
                run_id: "run_000000000001".into(),
                force: false
            }]
        );
        assert_eq!(
            keys(&mut app, &[Key::Char('F'), Key::Char('Y')]),
            [Cmd::Kill {
                run_id: "run_000000000001".into(),
                force: true
            }]
        );
    }

    #[test]
    fn the_kill_report_is_shown_and_the_run_is_killed_on_screen() {
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000)]);
        let mut killed = run("run_000000000001", RunStatus::Killed, 1000);
        killed.signal = "SIGKILL".into();
        update(
            &mut app,
            Event::Done(Box::new(Outcome::Killed(KillResponse {
                success: true,
                run_id: "run_000000000001".into(),
                phase: KillPhase::Kill as i32,
                signals_sent: vec!["SIGTERM".into(), "SIGKILL".into()],
                run: Some(killed),
                ..KillResponse::default()
            }))),
        );
        match &app.mode {
            Mode::Report { title, text } => {
                assert_eq!(title, "KILLED run_000000000001");
                assert!(text.contains("SIGTERM, SIGKILL"), "{text}");
            }
            other => panic!("expected the kill report, got {other:?}"),
        }
        assert_eq!(
            app.runs["run_000000000001"].status,
            RunStatus::Killed as i32
        );
        // Any key closes the report; a later poll that still says RUNNING does not undo it.
        keys(&mut app, &[Key::Esc]);
        assert_eq!(app.mode, Mode::Normal);
        update(
            &mut app,
            Event::Snapshot(Box::new(Snapshot {
                runs: vec![run("run_000000000001", RunStatus::Running, 1000)],
                ..Snapshot::default()
            })),
        );
        assert_eq!(
            app.runs["run_000000000001"].status,
            RunStatus::Killed as i32
        );
    }

    #[test]
    fn a_refusal_is_a_note_not_a_failure() {
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000)]);
        update(
            &mut app,
            Event::Done(Box::new(Outcome::Refused {
                what: "kill run_000000000001".into(),
                why: "permission denied: viewer may not Kill".into(),
            })),
        );
        let note = app.note.clone().expect("a note");
        assert!(note.error);
        assert!(note.text.contains("permission denied"), "{}", note.text);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn cancel_is_for_queued_runs_and_restart_resumes_workflow_runs() {
        let mut wf = run("run_000000000002", RunStatus::Failed, 2000);
        wf.workflow = "builder".into();
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000), wf]);
        app.selected = Some("run_000000000001".into());
        assert!(keys(&mut app, &[Key::Char('C')]).is_empty());
        assert_eq!(app.mode, Mode::Normal);
        assert!(app.note.as_ref().is_some_and(|n| n.error));
        app.selected = Some("run_000000000002".into());
        assert_eq!(
            keys(&mut app, &[Key::Char('R'), Key::Char('y')]),
            [Cmd::Restart {
                run_id: "run_000000000002".into(),
                resume: true
            }]
        );
        let mut queued = loaded(vec![run("run_000000000003", RunStatus::Queued, 1000)]);
        assert_eq!(
            keys(&mut queued, &[Key::Char('C'), Key::Char('y')]),
            [Cmd::Cancel {
                run_id: "run_000000000003".into()
            }]
        );
    }

    #[test]
    fn the_filter_narrows_the_rows_as_it_is_typed_and_esc_clears_it() {
        let mut b = run("run_000000000002", RunStatus::Running, 2000);
        b.workflow = "Builder".into();
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000), b]);
        keys(
            &mut app,
            &[
                Key::Char('/'),
                Key::Char('b'),
                Key::Char('u'),
                Key::Char('i'),
            ],
        );
        assert_eq!(app.rows().len(), 1);
        assert_eq!(app.selected.as_deref(), Some("run_000000000002"));
        // While typing, q is text, not quit.
        assert!(keys(&mut app, &[Key::Char('q')]).is_empty());
        assert_eq!(app.filter, "buiq");
        keys(&mut app, &[Key::Backspace, Key::Enter]);
        assert_eq!(app.rows().len(), 1);
        keys(&mut app, &[Key::Char('/'), Key::Esc]);
        assert_eq!(app.rows().len(), 2);
    }

    #[test]
    fn enter_follows_the_log_and_leaving_the_detail_stops_it() {
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000)]);
        assert_eq!(
            keys(&mut app, &[Key::Enter]),
            [
                Cmd::FollowLogs("run_000000000001".into()),
                Cmd::GetRun("run_000000000001".into())
            ]
        );
        update(
            &mut app,
            Event::Log {
                run_id: "run_000000000001".into(),
                data: b"hello\n".to_vec(),
            },
        );
        assert_eq!(app.log.text, "hello\n");
        assert_eq!(
            update(&mut app, Event::Tick(11_000)),
            [Cmd::GetRun("run_000000000001".into())]
        );
        assert_eq!(keys(&mut app, &[Key::Char('q')]), [Cmd::StopLogs]);
        assert_eq!(app.view, View::List);
        assert_eq!(keys(&mut app, &[Key::Char('q')]), [Cmd::Quit]);
    }

    #[test]
    fn the_log_pane_keeps_a_bounded_tail() {
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000)]);
        keys(&mut app, &[Key::Enter]);
        for _ in 0..3 {
            update(
                &mut app,
                Event::Log {
                    run_id: "run_000000000001".into(),
                    data: "é".repeat(LOG_KEEP_BYTES / 2).into_bytes(),
                },
            );
        }
        assert!(app.log.text.len() <= LOG_KEEP_BYTES);
        assert!(app.log.text.starts_with('é'));
    }

    #[test]
    fn a_lost_connection_is_remembered_until_it_is_back_and_the_log_follows_again() {
        let mut app = loaded(vec![run("run_000000000001", RunStatus::Running, 1000)]);
        keys(&mut app, &[Key::Enter]);
        update(&mut app, Event::Disconnected("connection refused".into()));
        update(&mut app, Event::Tick(20_000));
        update(&mut app, Event::Disconnected("still refused".into()));
        assert_eq!(
            app.connection,
            Connection::Lost {
                since: 10_000,
                error: "still refused".into()
            }
        );
        assert_eq!(
            update(&mut app, Event::Connected),
            [Cmd::FollowLogs("run_000000000001".into())]
        );
        assert_eq!(app.connection, Connection::Up);
    }

    #[test]
    fn header_counts_prefer_the_queue_totals_and_count_firing_alerts_once() {
        let mut stuck = run("run_000000000001", RunStatus::Running, 1000);
        stuck.agent = Some(AgentProgress {
            health: Health::Stuck as i32,
            ..AgentProgress::default()
        });
        let mut app = loaded(vec![
            stuck,
            run("run_000000000002", RunStatus::Queued, 2000),
        ]);
        assert_eq!(
            app.counts(),
            Counts {
                running: 1,
                queued: 1,
                stuck: 1,
                alerts: 0
            }
        );
        let alert = Alert {
            id: 7,
            kind: "run_stuck".into(),
            ..Alert::default()
        };
        let runs = app.runs.values().cloned().collect();
        update(
            &mut app,
            Event::Snapshot(Box::new(Snapshot {
                runs,
                queues: Some(GetQueueHealthResponse {
                    queues: vec![],
                    total: Some(QueueHealth {
                        running: 3,
                        queued: 2,
                        ..QueueHealth::default()
                    }),
                    alerts: vec![alert.clone()],
                }),
                health: Some(GetHealthResponse {
                    alerts: vec![alert],
                    ..GetHealthResponse::default()
                }),
            })),
        );
        assert_eq!(
            app.counts(),
            Counts {
                running: 3,
                queued: 2,
                stuck: 1,
                alerts: 1
            }
        );
    }

    #[test]
    fn sort_cycles_through_its_orders() {
        let mut app = loaded(vec![
            run("run_000000000001", RunStatus::Running, 1000),
            run("run_000000000002", RunStatus::Running, 2000),
        ]);
        assert_eq!(app.rows()[0].run_id, "run_000000000002");
        keys(&mut app, &[Key::Char('s')]);
        assert_eq!(app.sort, Sort::Age);
        assert_eq!(app.rows()[0].run_id, "run_000000000001");
        keys(&mut app, &[Key::Char('s'), Key::Char('s'), Key::Char('s')]);
        assert_eq!(app.sort, Sort::Live);
    }
}
