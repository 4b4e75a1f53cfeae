//! Rendering of `wfctl top`: [`draw`] turns an [`App`] into a frame and changes nothing. The
//! screen is a header (host counts, one line per queue), the runs table or one run's detail with
//! its live log, and a footer (keys, the last action's note, the filter or a y/N question); a
//! banner on top while the daemon is unreachable, and the kill report over everything until a
//! key is pressed. Table columns have priorities: as the terminal narrows, the least important
//! ones are dropped first ([`columns_for`]). ratatui redraws only the cells that changed, so a
//! refresh does not flicker.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use wf_supervisor::proto::{Health, Run, RunStatus};

use super::super::output;
use super::app::{is_live, is_stuck, App, Connection, Mode, Sort, View};

/// The most queue lines the header shows (the rest are summed up in one line).
const MAX_QUEUE_LINES: usize = 4;

/// A column of the runs table.
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
    /// Left to right.
    const ALL: [Column; 11] = [
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

    fn title(self) -> &'static str {
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

    /// Lower is kept longer; 0 is always shown.
    fn priority(self) -> u8 {
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

    /// Width in cells; the flexible columns' least width.
    fn width(self) -> u16 {
        match self {
            Column::Id => 16,
            Column::Status => 9,
            Column::Health => 7,
            Column::Name => 14,
            Column::Phase => 12,
            Column::Turns => 5,
            Column::Cost => 8,
            Column::Cpu => 7,
            Column::Mem => 9,
            Column::Age => 7,
            Column::LastEvent => 20,
        }
    }
}

/// How wide HEALTH grows (to carry its reason) when the terminal has room.
const WIDE_HEALTH: u16 = 32;

/// The columns that fit in `width` cells, left to right, with their widths: the most important
/// first, the rest in order of priority until one does not fit; the spare room goes to WORKFLOW/COMMAND and LAST EVENT, and
/// HEALTH grows to show its reason when there is room for that too.
pub fn columns_for(width: u16) -> Vec<(Column, u16)> {
    let mut by_priority = Column::ALL.to_vec();
    by_priority.sort_by_key(|c| c.priority());
    let mut chosen: Vec<Column> = Vec::new();
    let mut used: u16 = 0;
    for c in by_priority {
        let need = c.width() + u16::from(!chosen.is_empty());
        if c.priority() > 0 && used + need > width {
            // Strictly by priority: a less important column never takes the place of one that
            // did not fit.
            break;
        }
        chosen.push(c);
        used += need;
    }
    let mut spare = width.saturating_sub(used);
    let mut widths: Vec<(Column, u16)> = Column::ALL
        .iter()
        .filter(|c| chosen.contains(c))
        .map(|c| (*c, c.width()))
        .collect();
    if spare >= WIDE_HEALTH - Column::Health.width() + 8 {
        if let Some(h) = widths.iter_mut().find(|(c, _)| *c == Column::Health) {
            h.1 = WIDE_HEALTH;
            spare -= WIDE_HEALTH - Column::Health.width();
        }
    }
    let flex: Vec<usize> = widths
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| matches!(c, Column::Name | Column::LastEvent))
        .map(|(i, _)| i)
        .collect();
    let n = flex.len() as u16;
    for (k, i) in flex.iter().enumerate() {
        let share = spare / n + u16::from((k as u16) < spare % n);
        widths[*i].1 += share;
    }
    widths
}

/// One cell of one run, as text.
pub fn cell(app: &App, r: &Run, column: Column, width: u16) -> String {
    let agent = r.agent.as_ref();
    let text = match column {
        Column::Id => r.run_id.clone(),
        Column::Status => output::status_name(r.status).to_uppercase(),
        Column::Health => match agent {
            None => String::new(),
            Some(a) if a.health == Health::Unspecified as i32 => "-".to_string(),
            Some(a) => {
                let name = output::health_name(a.health);
                if width > Column::Health.width() && !a.health_reason.is_empty() {
                    format!("{name}: {}", output::one_line(&a.health_reason))
                } else {
                    name
                }
            }
        },
        Column::Name => {
            if r.workflow.is_empty() {
                output::command_line(&r.argv)
            } else {
                match agent.map(|a| a.prompt.as_str()).filter(|p| !p.is_empty()) {
                    Some(p) => format!("{} {}", r.workflow, output::one_line(p)),
                    None => r.workflow.clone(),
                }
            }
        }
        Column::Phase => match agent {
            None if r.status == RunStatus::Queued as i32 => "waiting".to_string(),
            None => String::new(),
            Some(a) => {
                let phase = output::agent_phase_name(a.phase);
                if a.current_tool.is_empty() || !is_live(r.status) {
                    phase
                } else {
                    format!("{phase} {}", a.current_tool)
                }
            }
        },
        Column::Turns => agent.map(|a| a.turns.to_string()).unwrap_or_default(),
        Column::Cost => match agent {
            None => String::new(),
            Some(a) => a
                .cost_usd
                .map(output::fmt_usd)
                .unwrap_or_else(|| "-".to_string()),
        },
        Column::Cpu => match &r.usage {
            Some(u) if u.sampled_at > 0 => {
                output::fmt_duration_ms(u.cpu_user_ms.saturating_add(u.cpu_system_ms))
            }
            _ => "-".to_string(),
        },
        Column::Mem => match &r.usage {
            Some(u) if u.sampled_at > 0 => {
                if is_live(r.status) {
                    output::fmt_bytes(u.memory_bytes)
                } else {
                    output::fmt_bytes(u.memory_peak_bytes)
                }
            }
            _ => "-".to_string(),
        },
        Column::Age => {
            if r.created_at > 0 {
                output::fmt_duration_ms(app.now.saturating_sub(r.created_at).max(0).unsigned_abs())
            } else {
                "-".to_string()
            }
        }
        Column::LastEvent => last_event(app, r),
    };
    output::truncate(&text, width as usize)
}

/// What last happened to a run: the Watch stream's last event, else its last output or
/// heartbeat, else why it waits.
fn last_event(app: &App, r: &Run) -> String {
    if r.status == RunStatus::Queued as i32 && !r.waiting_reason.is_empty() {
        return output::one_line(&r.waiting_reason);
    }
    if let Some(e) = app.last_events.get(&r.run_id) {
        let mut s = format!("{} {}", output::fmt_ago(app.now, e.at), e.kind);
        if !e.message.is_empty() {
            s.push_str(": ");
            s.push_str(&e.message);
        }
        return s;
    }
    let agent_at = r.agent.as_ref().map(|a| a.last_event_at).unwrap_or(0);
    let (at, what) = if agent_at >= r.last_heartbeat_at {
        (agent_at, "agent event")
    } else {
        (r.last_heartbeat_at, "heartbeat")
    };
    if at > 0 && is_live(r.status) {
        return format!("{} {what}", output::fmt_ago(app.now, at));
    }
    if r.ended_at > 0 {
        let mut s = format!("{} ended", output::fmt_ago(app.now, r.ended_at));
        let why = if r.end_reason.is_empty() {
            &r.error
        } else {
            &r.end_reason
        };
        if !why.is_empty() {
            s.push_str(": ");
            s.push_str(&output::one_line(why));
        }
        return s;
    }
    "-".to_string()
}

/// The style of a row: stuck runs in bold red, finished ones dimmed.
fn row_style(r: &Run) -> Style {
    if is_stuck(r) {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else if !is_live(r.status) {
        Style::default().fg(Color::DarkGray)
    } else if r
        .agent
        .as_ref()
        .is_some_and(|a| a.health == Health::Slow as i32)
    {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default()
    }
}

/// Renders the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let banner = u16::from(matches!(app.connection, Connection::Lost { .. }));
    let queue_lines = header_queue_lines(app);
    let header_height = 1 + queue_lines.len() as u16;
    let [banner_area, header_area, body_area, footer_area] = Layout::vertical([
        Constraint::Length(banner),
        Constraint::Length(header_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    if banner > 0 {
        draw_banner(frame, app, banner_area);
    }
    let mut lines = vec![summary_line(app)];
    lines.extend(queue_lines);
    frame.render_widget(Paragraph::new(lines), header_area);
    match &app.view {
        View::List => draw_table(frame, app, body_area),
        View::Detail(id) => draw_detail(frame, app, id, body_area),
    }
    draw_footer(frame, app, footer_area);
    if let Mode::Report { title, text } = &app.mode {
        draw_report(frame, title, text, area);
    }
}

fn draw_banner(frame: &mut Frame, app: &App, area: Rect) {
    if let Connection::Lost { since, error } = &app.connection {
        let text = format!(
            " DAEMON CONNECTION LOST {} ({}): {} (reconnecting; figures below are from before)",
            output::fmt_ago(app.now, *since),
            app.target,
            output::one_line(error)
        );
        frame.render_widget(
            Paragraph::new(output::truncate(&text, area.width as usize)).style(
                Style::default()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            ),
            area,
        );
    }
}

fn clock(now: i64) -> String {
    output::rfc3339(now)
        .and_then(|t| t.get(11..19).map(str::to_string))
        .unwrap_or_default()
}

fn summary_line(app: &App) -> Line<'static> {
    let c = app.counts();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut spans = vec![
        Span::styled("wf-supervisor", bold),
        Span::raw(format!("  running {}  queued {}  ", c.running, c.queued)),
        Span::styled(
            format!("stuck {}", c.stuck),
            if c.stuck > 0 {
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            },
        ),
        Span::raw("  "),
        Span::styled(
            format!("alerts {}", c.alerts),
            if c.alerts > 0 {
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            },
        ),
    ];
    if app.sort != Sort::Live {
        spans.push(Span::raw(format!("  sort: {}", app.sort.name())));
    }
    if !app.filter.is_empty() {
        spans.push(Span::raw(format!("  filter: {}", app.filter)));
    }
    spans.push(Span::raw(format!("  {} UTC", clock(app.now))));
    if app.connection == Connection::Connecting {
        spans.push(Span::raw("  connecting…"));
    }
    Line::from(spans)
}

fn header_queue_lines(app: &App) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = app
        .queues
        .iter()
        .take(MAX_QUEUE_LINES)
        .map(|q| {
            let mut s = format!(
                "  queue {:<10} running {}/{}  queued {}",
                q.name, q.running, q.max_concurrent, q.queued
            );
            if q.max_queued > 0 {
                s.push_str(&format!("/{}", q.max_queued));
            }
            s.push_str(&format!("  stuck {}", q.stuck));
            if q.oldest_running_ms > 0 {
                s.push_str(&format!(
                    "  oldest {}",
                    output::fmt_duration_ms(q.oldest_running_ms)
                ));
            }
            if q.longest_queued_wait_ms > 0 {
                s.push_str(&format!(
                    "  longest wait {}",
                    output::fmt_duration_ms(q.longest_queued_wait_ms)
                ));
            }
            if q.paused {
                s.push_str("  PAUSED");
            }
            let style = if q.stuck > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            Line::styled(s, style)
        })
        .collect();
    if app.queues.len() > MAX_QUEUE_LINES {
        lines.push(Line::raw(format!(
            "  … and {} more queue(s) (wfctl queue)",
            app.queues.len() - MAX_QUEUE_LINES
        )));
    }
    lines
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let columns = columns_for(area.width);
    let rows = app.rows();
    let header = Row::new(
        columns
            .iter()
            .map(|(c, _)| Cell::from(c.title()))
            .collect::<Vec<_>>(),
    )
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            Row::new(
                columns
                    .iter()
                    .map(|(c, w)| Cell::from(cell(app, r, *c, *w)))
                    .collect::<Vec<_>>(),
            )
            .style(row_style(r))
        })
        .collect();
    let empty = body.is_empty();
    let table = Table::new(body, columns.iter().map(|(_, w)| Constraint::Length(*w)))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let visible = area.height.saturating_sub(1).max(1) as usize;
    let selected = app.selected_index();
    let offset = selected.map_or(0, |i| (i + 1).saturating_sub(visible));
    let mut state = TableState::default()
        .with_offset(offset)
        .with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
    if empty && area.height > 2 {
        let text = if !app.loaded {
            "waiting for the daemon…"
        } else if app.filter.is_empty() {
            "no runs"
        } else {
            "no run matches the filter"
        };
        let inner = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(
            Paragraph::new(format!("  {text}")).style(Style::default().fg(Color::DarkGray)),
            inner,
        );
    }
}

fn draw_detail(frame: &mut Frame, app: &App, id: &str, area: Rect) {
    let [detail_area, log_area] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let mut text = match app.runs.get(id) {
        // The `get` view, usage included.
        Some(r) => output::run_detail(r, app.now, false),
        None => format!("{id}: not known to the daemon (purged?)\n"),
    };
    if let Some(k) = app.kill_reports.get(id) {
        text.push_str("\nkill report\n");
        text.push_str(&output::kill_report(k));
    }
    let style = app
        .runs
        .get(id)
        .map(row_style)
        .unwrap_or_default()
        .remove_modifier(Modifier::BOLD);
    frame.render_widget(
        Paragraph::new(text).style(style).block(
            Block::default()
                .borders(Borders::TOP)
                .title(format!(" {id} ")),
        ),
        detail_area,
    );
    let inner_height = log_area.height.saturating_sub(1) as usize;
    let width = log_area.width.max(1) as usize;
    let mut lines: Vec<String> = app
        .log
        .text
        .lines()
        .map(|l| output::truncate(&output::one_line(l), width))
        .collect();
    if let Some(why) = &app.log.ended {
        lines.push(format!("-- end of output ({why}) --"));
    }
    let start = lines.len().saturating_sub(inner_height);
    let title = if app.log.ended.is_some() {
        " log ".to_string()
    } else {
        " log (following) ".to_string()
    };
    frame.render_widget(
        Paragraph::new(lines[start..].join("\n"))
            .block(Block::default().borders(Borders::TOP).title(title)),
        log_area,
    );
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let (text, style) = match &app.mode {
        Mode::Filter => (
            format!("/{}▏ (Enter keep, Esc clear)", app.filter),
            Style::default().fg(Color::Cyan),
        ),
        Mode::Confirm(action) => (
            action.question(),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
        _ => match &app.note {
            Some(n) if n.error => (
                n.text.clone(),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Some(n) => (n.text.clone(), Style::default().fg(Color::Green)),
            None => (
                match app.view {
                    View::List => "j/k:move Enter:detail K:kill F:force R:restart C:cancel /:filter s:sort q:quit",
                    View::Detail(_) => "K:kill F:force kill R:restart C:cancel q/Esc:back",
                }
                .to_string(),
                Style::default().fg(Color::DarkGray),
            ),
        },
    };
    frame.render_widget(
        Paragraph::new(output::truncate(
            &output::one_line(&text),
            area.width as usize,
        ))
        .style(style),
        area,
    );
}

fn draw_report(frame: &mut Frame, title: &str, text: &str, area: Rect) {
    let lines = text.lines().count() as u16;
    let width = area.width.saturating_sub(4).min(100);
    let height = (lines + 3).min(area.height.saturating_sub(2));
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(format!("{text}(any key closes)"))
            .wrap(Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {title} "))
                    .title_style(Style::default().add_modifier(Modifier::BOLD)),
            ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::super::app::{update, App, Event, LastEvent, Snapshot};
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use wf_supervisor::proto::{
        AgentPhase, AgentProgress, GetQueueHealthResponse, QueueHealth, RunUsage,
    };

    /// 2026-12-01T15:00:00Z.
    const NOW: i64 = 1_796_137_200_000;

    fn base(id: &str, status: RunStatus, age_s: i64) -> Run {
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

    fn agent(phase: AgentPhase, turns: u32, cost: Option<f64>) -> AgentProgress {
        AgentProgress {
            phase: phase as i32,
            turns,
            cost_usd: cost,
            health: Health::Ok as i32,
            ..AgentProgress::default()
        }
    }

    /// The fixed set of runs the screens are drawn from.
    fn fixture_app(size: (u16, u16)) -> App {
        let mut app = App::new("/run/wf-supervisor/wf.sock", NOW, size);
        update(&mut app, Event::Connected);
        let mut builder = base("run_5fbae44ab6f0", RunStatus::Running, 754);
        builder.workflow = "builder".into();
        builder.argv = vec!["claude".into(), "-p".into()];
        builder.agent = Some(AgentProgress {
            current_tool: "Bash".into(),
            prompt: "fix the flaky test in tests/kill.rs".into(),
            last_event_at: NOW - 4000,
            ..agent(AgentPhase::Active, 12, Some(0.4213))
        });
        builder.usage = Some(RunUsage {
            cpu_user_ms: 83_000,
            cpu_system_ms: 9_000,
            memory_bytes: 412 * 1024 * 1024,
            memory_peak_bytes: 500 * 1024 * 1024,
            processes: 4,
            sampled_at: NOW - 500,
            source: "cgroup".into(),
            ..RunUsage::default()
        });
        let mut stuck = base("run_0c1d2e3f4a5b", RunStatus::Running, 2_460);
        stuck.workflow = "reviewer".into();
        stuck.argv = vec!["claude".into()];
        stuck.agent = Some(AgentProgress {
            health: Health::Stuck as i32,
            health_reason: "no first turn within 30m".into(),
            ..agent(AgentPhase::Initializing, 0, None)
        });
        let mut queued = base("run_9a8b7c6d5e4f", RunStatus::Queued, 42);
        queued.started_at = 0;
        queued.queue = "heavy".into();
        queued.waiting_reason = "queue heavy full: 2/2 running".into();
        let argv_run = base("run_111122223333", RunStatus::Running, 65);
        let mut killed = base("run_aaaabbbbcccc", RunStatus::Killed, 3_600);
        killed.ended_at = NOW - 1_800_000;
        killed.signal = "SIGKILL".into();
        killed.end_reason = "killed by uid=0: runaway".into();
        killed.argv = vec![
            "/usr/local/bin/wf-fake-agent".into(),
            "--ignore-term".into(),
            "--hang".into(),
        ];
        let mut done = base("run_ddddeeeeffff", RunStatus::Succeeded, 7_200);
        done.ended_at = NOW - 3_000_000;
        done.exit_code = Some(0);
        done.workflow = "builder".into();
        done.agent = Some(agent(AgentPhase::Finishing, 31, Some(1.25)));
        update(
            &mut app,
            Event::Snapshot(Box::new(Snapshot {
                runs: vec![builder, stuck, queued, argv_run, killed, done],
                queues: Some(GetQueueHealthResponse {
                    queues: vec![
                        QueueHealth {
                            name: "default".into(),
                            running: 3,
                            max_concurrent: 8,
                            stuck: 1,
                            oldest_running_ms: 2_460_000,
                            ..QueueHealth::default()
                        },
                        QueueHealth {
                            name: "heavy".into(),
                            running: 2,
                            queued: 1,
                            max_concurrent: 2,
                            longest_queued_wait_ms: 42_000,
                            ..QueueHealth::default()
                        },
                    ],
                    total: Some(QueueHealth {
                        running: 5,
                        queued: 1,
                        stuck: 1,
                        ..QueueHealth::default()
                    }),
                    alerts: vec![],
                }),
                health: None,
            })),
        );
        app.last_events.insert(
            "run_111122223333".into(),
            LastEvent {
                at: NOW - 65_000,
                kind: "started".into(),
                message: String::new(),
            },
        );
        app
    }

    /// The screen as text, one line per row, trailing blanks trimmed.
    fn screen(app: &App) -> String {
        let (w, h) = app.size;
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
        terminal.draw(|f| draw(f, app)).expect("drawing");
        let buf = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..h {
            let mut line = String::new();
            for x in 0..w {
                line.push_str(buf[(x, y)].symbol());
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Compares with the fixture file; `WF_UPDATE_FIXTURES=1` writes it instead.
    fn assert_screen(app: &App, fixture: &str) {
        let got = screen(app);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/top")
            .join(fixture);
        if std::env::var_os("WF_UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("fixture dir");
            std::fs::write(&path, &got).expect("writing the fixture");
            return;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(
            got == want,
            "the screen differs from {}:\n--- got ---\n{got}--- want ---\n{want}",
            path.display()
        );
    }

    #[test]
    fn the_runs_table_at_80x24() {
        assert_screen(&fixture_app((80, 24)), "runs-80x24.txt");
    }

    #[test]
    fn the_runs_table_at_160x50() {
        assert_screen(&fixture_app((160, 50)), "runs-160x50.txt");
    }

    #[test]
    fn the_detail_view_at_80x24() {
        let mut app = fixture_app((80, 24));
        app.selected = Some("run_5fbae44ab6f0".into());
        update(&mut app, Event::Key(super::super::app::Key::Enter));
        update(
            &mut app,
            Event::Log {
                run_id: "run_5fbae44ab6f0".into(),
                data:
                    b"{\"type\":\"assistant\",\"message\":{\"content\":[]}}\nrunning cargo test\n"
                        .to_vec(),
            },
        );
        assert_screen(&app, "detail-80x24.txt");
    }

    #[test]
    fn a_lost_connection_shows_a_banner_over_the_last_figures() {
        let mut app = fixture_app((80, 24));
        update(
            &mut app,
            Event::Disconnected(
                "cannot reach /run/wf-supervisor/wf.sock: connection refused".into(),
            ),
        );
        let s = screen(&app);
        assert!(s.starts_with(" DAEMON CONNECTION LOST"), "{s}");
        assert!(s.contains("run_5fbae44ab6f0"), "{s}");
    }

    #[test]
    fn stuck_runs_stand_out() {
        let app = fixture_app((160, 50));
        let (w, h) = app.size;
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
        terminal.draw(|f| draw(f, &app)).expect("drawing");
        let buf = terminal.backend().buffer();
        let row = (0..h)
            .find(|y| {
                (0..16u16)
                    .map(|x| buf[(x, *y)].symbol())
                    .collect::<String>()
                    == "run_0c1d2e3f4a5b"
            })
            .expect("the stuck run's row");
        assert_eq!(buf[(0, row)].fg, Color::Red);
        assert!(buf[(0, row)].modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn columns_drop_by_priority_as_the_terminal_narrows() {
        let names = |w| -> Vec<Column> { columns_for(w).into_iter().map(|(c, _)| c).collect() };
        assert_eq!(names(160).len(), Column::ALL.len());
        let narrow = names(80);
        assert!(narrow.contains(&Column::Cost) && narrow.contains(&Column::Age));
        assert!(!narrow.contains(&Column::Phase) && !narrow.contains(&Column::LastEvent));
        let tiny = names(40);
        assert_eq!(tiny, [Column::Id, Column::Status, Column::Name]);
        for w in [40u16, 60, 80, 100, 120, 160, 200] {
            let total: u16 = columns_for(w).iter().map(|(_, c)| c).sum::<u16>()
                + columns_for(w).len() as u16
                - 1;
            assert!(total <= w.max(43), "{w}: {total}");
        }
    }

    #[test]
    fn a_resize_redraws_at_the_new_size() {
        let mut app = fixture_app((160, 50));
        update(&mut app, Event::Resize(80, 24));
        assert_eq!(screen(&app).lines().count(), 24);
    }
}
