//! The status page's HTML: whole pages for a plain GET (so the page works without JavaScript,
//! as a snapshot) and the fragments the event streams send to replace them live (the board of
//! `/`, the detail of `/runs/ID`). Every text that comes from a run (argv, labels, reasons, log
//! output, audit messages) goes through [`escape`] or [`escape_pre`] here, in one place; the
//! page's style sheet and script are separate files of the binary, so the pages can forbid
//! inline script by their Content-Security-Policy.
use std::fmt::Write as _;

use super::board::{Board, Column};
use super::detail::Detail;

/// `&`, `<`, `>`, `"` and `'` as entities; control characters as spaces. Safe in text and in
/// quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// As [`escape`], for the text of a `<pre>`: newlines and tabs are kept, carriage returns
/// dropped, other control characters (terminal escapes) shown as U+FFFD.
pub fn escape_pre(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push_str(&escape(c.encode_utf8(&mut [0u8; 4]))),
        }
    }
    out
}

/// The page frame: head (viewport for phones, the style sheet and script), the top bar, and
/// `main`. `events` is the event stream the script follows (none: a static page).
fn page(title: &str, events: Option<&str>, main: &str) -> String {
    let events = events
        .map(|e| format!(" data-events=\"{}\"", escape(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"/assets/status.css\">\n\
         <script src=\"/assets/status.js\" defer></script>\n</head>\n\
         <body{events}>\n\
         <header class=\"bar\"><a class=\"home\" href=\"/\">wf-supervisor</a>\
         <span id=\"conn\" class=\"conn snapshot\">snapshot</span></header>\n\
         <noscript><p class=\"note\">Without JavaScript this page is a snapshot: reload it for \
         fresh figures.</p></noscript>\n{main}</body>\n</html>\n",
        title = escape(title),
    )
}

/// `HH:MM:SS UTC` of a Unix-ms time.
fn clock(now: i64) -> String {
    super::detail::rfc3339(now)
        .and_then(|t| t.get(11..19).map(|c| format!("{c} UTC")))
        .unwrap_or_default()
}

/// The whole of `/`.
pub fn index_page(b: &Board) -> String {
    page(
        "wf-supervisor: runs",
        Some("/events"),
        &format!("<main id=\"board\">{}</main>\n", board(b)),
    )
}

/// Below which screen width (CSS px) a column of this priority is hidden; None: never.
fn hidden_below(priority: u8) -> Option<u16> {
    match priority {
        0 => None,
        1 => Some(420),
        2 | 3 => Some(700),
        4..=6 => Some(960),
        _ => Some(1200),
    }
}

/// The style sheet's rules that hide the table's columns by priority as the screen narrows (in
/// the order `wfctl top` drops them), made from [`Column::priority`] so they cannot disagree.
/// By position, so that the rows need no class per cell.
pub fn column_rules() -> String {
    let mut widths: Vec<u16> = Column::ALL
        .iter()
        .filter_map(|c| hidden_below(c.priority()))
        .collect();
    widths.sort_unstable_by(|a, b| b.cmp(a));
    widths.dedup();
    let mut css = String::from("/* Columns by priority (generated from the daemon's table). */\n");
    for w in widths {
        let cells: Vec<String> = Column::ALL
            .iter()
            .enumerate()
            .filter(|(_, c)| hidden_below(c.priority()).is_some_and(|h| h >= w))
            .map(|(i, _)| format!(".runs tr > :nth-child({})", i + 1))
            .collect();
        let _ = writeln!(
            css,
            "@media (max-width: {w}px) {{ {} {{ display: none; }} }}",
            cells.join(", ")
        );
    }
    css
}

/// The board fragment: the header's counts and queue lines, then the runs table. The header
/// cells carry the class `pN` of their column's priority; the style sheet hides columns by
/// position on narrow screens ([`column_rules`]).
pub fn board(b: &Board) -> String {
    let c = b.counts;
    let flag = |n: u32| if n > 0 { " bad" } else { "" };
    let mut s = format!(
        "<section class=\"summary\"><span class=\"count\">running <b>{}</b></span> \
         <span class=\"count\">queued <b>{}</b></span> \
         <span class=\"count{}\" id=\"stuck\">stuck <b>{}</b></span> \
         <span class=\"count{}\" id=\"alerts\">alerts <b>{}</b></span> \
         <span class=\"clock\">{}</span></section>\n",
        c.running,
        c.queued,
        flag(c.stuck),
        c.stuck,
        flag(c.alerts),
        c.alerts,
        clock(b.now)
    );
    if !b.queues.is_empty() {
        s.push_str("<ul class=\"queues\">");
        for q in &b.queues {
            let class = if q.stuck { " class=\"bad\"" } else { "" };
            let _ = write!(s, "<li{class}>{}</li>", escape(&q.text));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<table class=\"runs\">\n<thead><tr>");
    for col in Column::ALL {
        let _ = write!(
            s,
            "<th class=\"p{}\" scope=\"col\">{}</th>",
            col.priority(),
            col.title()
        );
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for row in &b.rows {
        let id = escape(&row.run_id);
        let status = row
            .cells
            .iter()
            .find(|(c, _)| *c == Column::Status)
            .map(|(_, t)| escape(t))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr class=\"{}\" data-run=\"{id}\" data-status=\"{status}\">",
            row.tone.class()
        );
        for (col, text) in &row.cells {
            let text = escape(text);
            let body = match col {
                Column::Id => format!("<a href=\"/runs/{id}\">{text}</a>"),
                Column::Status => format!(
                    "<span class=\"status s-{}\">{text}</span>",
                    text.to_lowercase()
                ),
                _ => text,
            };
            let _ = write!(s, "<td>{body}</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    if b.rows.is_empty() {
        s.push_str("<p class=\"empty\">no runs</p>\n");
    }
    s
}

/// The whole of `/runs/ID`: the detail, then the log tail.
pub fn run_page(d: &Detail, log: &str, log_note: &str) -> String {
    let id = escape(&d.run_id);
    let main = format!(
        "<main>\n<p class=\"back\"><a href=\"/\">← all runs</a></p>\n\
         <section id=\"run\">{}</section>\n\
         <section class=\"log\"><h2>log <span id=\"log-note\" class=\"note\">{}</span></h2>\
         <pre id=\"log\">{}</pre></section>\n</main>\n",
        run_detail(d),
        escape(log_note),
        escape_pre(log)
    );
    page(
        &format!("wf-supervisor: {}", d.run_id),
        Some(&format!("/runs/{id}/events")),
        &main,
    )
}

fn key_values(s: &mut String, lines: &[(&'static str, String)]) {
    s.push_str("<dl class=\"kv\">");
    for (k, v) in lines {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    }
    s.push_str("</dl>\n");
}

/// The detail fragment of a run's page.
pub fn run_detail(d: &Detail) -> String {
    let tone = if d.stuck {
        "stuck"
    } else if d.live {
        "live"
    } else {
        "finished"
    };
    let status = escape(&d.status);
    let mut s = format!(
        "<h1 class=\"{tone}\"><span class=\"runid\">{}</span> \
         <span class=\"status s-{}\" id=\"status\">{status}</span></h1>\n",
        escape(&d.run_id),
        status.to_lowercase()
    );
    key_values(&mut s, &d.fields);
    if !d.agent.is_empty() {
        s.push_str("<h2>agent progress</h2>\n");
        key_values(&mut s, &d.agent);
    }
    if !d.kill_report.is_empty() {
        s.push_str("<h2>kill report</h2>\n<ul class=\"report\">");
        for line in &d.kill_report {
            let _ = write!(s, "<li>{}</li>", escape(line));
        }
        s.push_str("</ul>\n");
    }
    s
}

/// A page for a refusal or an error: the status line as its title, and why.
pub fn error_page(status: axum::http::StatusCode, why: &str) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("error")
    );
    page(
        &title,
        None,
        &format!(
            "<main class=\"error\"><h1>{}</h1><p>{}</p><p><a href=\"/\">all runs</a></p></main>\n",
            escape(&title),
            escape(why)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::board::tests::{inputs, run, NOW};
    use super::super::board::{self, Inputs};
    use super::super::detail;
    use super::*;
    use crate::proto::RunStatus;

    const HOSTILE: &str = "<script>window.pwned=1</script>\"><img src=x onerror=alert(1)>'";

    #[test]
    fn a_run_whose_argv_and_labels_hold_script_is_rendered_inert() {
        let mut r = run("run_5fbae44ab6f0", RunStatus::Running, 10);
        r.argv = vec!["sh".into(), "-c".into(), HOSTILE.into()];
        r.labels.insert("team".into(), HOSTILE.into());
        r.end_reason = HOSTILE.into();
        r.workflow = String::new();
        let mut i = Inputs::default();
        i.runs.insert(r.run_id.clone(), r.clone());
        let page = index_page(&board::board(&i, NOW));
        let d = detail::detail(&r, &[], NOW);
        let run = run_page(&d, &format!("output {HOSTILE}\n"), HOSTILE);
        for html in [&page, &run] {
            // The only script element is the page's own, loaded from the binary.
            assert_eq!(html.matches("<script").count(), 1, "{html}");
            assert!(html.contains("<script src=\"/assets/status.js\" defer></script>"));
            assert!(!html.contains("<img"), "{html}");
            assert!(
                !html.contains("onerror=alert(1)>"),
                "an attribute was closed: {html}"
            );
        }
        assert!(
            page.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
            "{page}"
        );
        assert!(run.contains("team=&lt;script&gt;"), "{run}");
        assert!(run.contains("output &lt;script&gt;"), "{run}");
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(escape("a&b<c>\"d'e"), "a&amp;b&lt;c&gt;&quot;d&#39;e");
        assert_eq!(escape("a\nb\x1b"), "a b ");
        assert_eq!(escape_pre("l1\r\nl2\t<\x1b[0m"), "l1\nl2\t&lt;\u{fffd}[0m");
    }

    #[test]
    fn the_board_marks_stuck_runs_and_columns_by_priority() {
        let html = board(&board::board(&inputs(), NOW));
        assert!(html.contains(
            "<tr class=\"stuck\" data-run=\"run_0c1d2e3f4a5b\" data-status=\"RUNNING\">"
        ));
        assert!(html.contains("<a href=\"/runs/run_5fbae44ab6f0\">run_5fbae44ab6f0</a>"));
        assert!(html.contains("<th class=\"p8\" scope=\"col\">PHASE</th>"));
        assert!(html.contains("stuck <b>1</b>"));
        assert!(html.contains("15:00:00 UTC"));
        assert!(html.contains("<li class=\"bad\">queue default  running 2/8"));
    }

    #[test]
    fn narrow_screens_hide_columns_in_the_order_of_their_priority() {
        let css = column_rules();
        // PHASE (5th, priority 8) goes first, HEALTH (3rd, priority 1) last; RUN ID, STATUS and
        // WORKFLOW/COMMAND never.
        let at = |w: u16| {
            css.lines()
                .find(|l| l.starts_with(&format!("@media (max-width: {w}px)")))
                .unwrap_or_else(|| panic!("no rule for {w}px: {css}"))
                .to_string()
        };
        assert!(at(1200).contains(":nth-child(5)") && !at(1200).contains(":nth-child(10)"));
        assert!(at(700).contains(":nth-child(10)") && at(700).contains(":nth-child(5)"));
        assert!(at(420).contains(":nth-child(3)"));
        for always in [1, 2, 4] {
            assert!(!css.contains(&format!(":nth-child({always})")), "{css}");
        }
    }

    #[test]
    fn pages_are_for_phones_and_name_their_event_stream() {
        let html = index_page(&board::board(&Inputs::default(), NOW));
        assert!(html.contains("name=\"viewport\" content=\"width=device-width"));
        assert!(html.contains("<body data-events=\"/events\">"));
        assert!(html.contains("<p class=\"empty\">no runs</p>"));
        assert!(html.contains("<noscript>"));
        let e = error_page(axum::http::StatusCode::NOT_FOUND, "no run run_000000000000");
        assert!(
            e.contains("<h1>404 Not Found</h1>") && !e.contains("data-events"),
            "{e}"
        );
    }
}
