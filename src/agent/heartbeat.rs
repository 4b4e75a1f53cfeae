//! The heartbeat protocol of fd 3 (`WF_HEARTBEAT_FD=3`) and the state it builds.
//!
//! Every line an agent writes to fd 3 is a heartbeat, whatever it says. A line that starts with
//! `{` is read as a JSON object that may carry:
//! - `"progress"`: a number (the agent's own measure, e.g. percent done);
//! - `"message"`: a string (what the agent is doing; truncated to 500 characters);
//! - `"critical"`: `"git"`, `"db"` or `"files"` to declare a critical section, `null` to leave it.
//!
//! A heartbeat whose JSON does not parse, is not an object, or has a field of the wrong type (or
//! an unknown critical section) is counted as malformed but is still a heartbeat; its well-formed
//! fields still apply. The critical section changes only when a JSON heartbeat has the
//! `critical` key: a plain line, or JSON without the key, leaves it as it was. While a section is
//! open, a kill waits longer before KILL (invariant 3): git 30 s, db 15 s, files 10 s.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lines::{Line, LineSplitter};
use super::truncate_text;

/// Default bound on one heartbeat line (64 KiB).
pub const DEFAULT_MAX_HEARTBEAT_BYTES: usize = 64 * 1024;
/// Longest heartbeat message kept, in characters.
pub const MESSAGE_CHARS: usize = 500;

/// A critical section an agent can declare, during which a kill waits longer before KILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriticalSection {
    /// Inside a git operation (a killed `git` can leave locks and a half-written index).
    Git,
    /// Inside a database transaction.
    Db,
    /// Writing files.
    Files,
}

impl CriticalSection {
    /// Grace between TERM and KILL while this section is open: git 30 s, db 15 s, files 10 s.
    pub fn default_grace(self) -> Duration {
        match self {
            CriticalSection::Git => Duration::from_secs(30),
            CriticalSection::Db => Duration::from_secs(15),
            CriticalSection::Files => Duration::from_secs(10),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CriticalSection::Git => "git",
            CriticalSection::Db => "db",
            CriticalSection::Files => "files",
        }
    }

    /// `"git"`, `"db"` or `"files"`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "git" => Some(CriticalSection::Git),
            "db" => Some(CriticalSection::Db),
            "files" => Some(CriticalSection::Files),
            _ => None,
        }
    }
}

impl std::fmt::Display for CriticalSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a heartbeat does to the critical section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CriticalUpdate {
    /// No (valid) `critical` key: the section stays as it was.
    #[default]
    Unchanged,
    /// `"critical": "git" | "db" | "files"`.
    Enter(CriticalSection),
    /// `"critical": null`.
    Leave,
}

/// One decoded heartbeat line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    pub progress: Option<f64>,
    pub message: Option<String>,
    pub critical: CriticalUpdate,
    /// The line looked like JSON but was not a valid heartbeat object (in whole or in part).
    pub malformed: bool,
}

/// Decode one heartbeat line (without its newline). Never fails: any line is a heartbeat.
pub fn parse_heartbeat(line: &[u8]) -> Heartbeat {
    let trimmed = line.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return Heartbeat::default();
    }
    let obj = match serde_json::from_slice::<Value>(trimmed) {
        Ok(Value::Object(obj)) => obj,
        _ => {
            return Heartbeat {
                malformed: true,
                ..Heartbeat::default()
            }
        }
    };
    let mut hb = Heartbeat::default();
    match obj.get("progress") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => hb.progress = n.as_f64().filter(|p| p.is_finite()),
        Some(_) => hb.malformed = true,
    }
    match obj.get("message") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => hb.message = Some(truncate_text(s, MESSAGE_CHARS)),
        Some(_) => hb.malformed = true,
    }
    match obj.get("critical") {
        None => {}
        Some(Value::Null) => hb.critical = CriticalUpdate::Leave,
        Some(Value::String(s)) => match CriticalSection::parse(s) {
            Some(c) => hb.critical = CriticalUpdate::Enter(c),
            None => hb.malformed = true,
        },
        Some(_) => hb.malformed = true,
    }
    hb
}

/// What the heartbeats of one run said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatState {
    /// Heartbeats (lines, oversized ones included).
    pub count: u64,
    pub first_at: Option<i64>,
    pub last_at: Option<i64>,
    /// Latest `progress` any heartbeat carried.
    pub last_progress: Option<f64>,
    /// Latest `message` any heartbeat carried.
    pub last_message: Option<String>,
    /// The open critical section, if any.
    pub critical: Option<CriticalSection>,
    /// When the open critical section was entered.
    pub critical_since: Option<i64>,
    /// Heartbeats that were malformed JSON or had a bad field (oversized ones included).
    pub malformed: u64,
    /// Heartbeat lines over the line bound.
    pub oversized: u64,
}

impl HeartbeatState {
    pub fn new() -> Self {
        HeartbeatState::default()
    }

    /// Fold one decoded heartbeat into the state.
    pub fn observe(&mut self, hb: &Heartbeat, now_ms: i64) {
        self.beat(now_ms);
        if hb.malformed {
            self.malformed += 1;
        }
        if let Some(p) = hb.progress {
            self.last_progress = Some(p);
        }
        if let Some(m) = &hb.message {
            self.last_message = Some(m.clone());
        }
        match hb.critical {
            CriticalUpdate::Unchanged => {}
            CriticalUpdate::Enter(c) => {
                if self.critical != Some(c) {
                    self.critical = Some(c);
                    self.critical_since = Some(now_ms);
                }
            }
            CriticalUpdate::Leave => {
                self.critical = None;
                self.critical_since = None;
            }
        }
    }

    /// Decode a line and fold it in; returns what it said.
    pub fn observe_line(&mut self, line: &[u8], now_ms: i64) -> Heartbeat {
        let hb = parse_heartbeat(line);
        self.observe(&hb, now_ms);
        hb
    }

    /// A heartbeat line over the bound: still a heartbeat, and malformed.
    pub fn note_oversized(&mut self, now_ms: i64) {
        self.beat(now_ms);
        self.oversized += 1;
        self.malformed += 1;
    }

    /// The grace between TERM and KILL now: the open critical section's, if longer than `default`.
    pub fn kill_grace(&self, default: Duration) -> Duration {
        self.critical
            .map_or(default, |c| c.default_grace().max(default))
    }

    fn beat(&mut self, now_ms: i64) {
        self.count += 1;
        self.first_at.get_or_insert(now_ms);
        self.last_at = Some(now_ms);
    }
}

/// The heartbeat fd, from bytes to state: bounded lines, decoded heartbeats, the state.
#[derive(Debug)]
pub struct HeartbeatTracker {
    splitter: LineSplitter,
    state: HeartbeatState,
}

impl Default for HeartbeatTracker {
    fn default() -> Self {
        HeartbeatTracker::new(DEFAULT_MAX_HEARTBEAT_BYTES)
    }
}

impl HeartbeatTracker {
    pub fn new(max_line_bytes: usize) -> Self {
        HeartbeatTracker {
            splitter: LineSplitter::new(max_line_bytes),
            state: HeartbeatState::new(),
        }
    }

    /// Feed bytes read from the heartbeat fd at `now_ms`; returns the heartbeats they completed.
    pub fn feed(&mut self, data: &[u8], now_ms: i64) -> usize {
        let state = &mut self.state;
        let mut beats = 0;
        self.splitter.push_each(data, |line| {
            beats += 1;
            match line {
                Line::Complete(l) => {
                    state.observe_line(l, now_ms);
                }
                Line::Oversized => state.note_oversized(now_ms),
            }
        });
        beats
    }

    /// End of the heartbeat fd: a trailing line without a newline is a heartbeat too.
    pub fn finish(&mut self, now_ms: i64) -> usize {
        match self.splitter.finish() {
            Some(line) => {
                self.state.observe_line(&line, now_ms);
                1
            }
            None => 0,
        }
    }

    pub fn state(&self) -> &HeartbeatState {
        &self.state
    }

    pub fn splitter(&self) -> &LineSplitter {
        &self.splitter
    }

    pub fn into_state(self) -> HeartbeatState {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_heartbeats() {
        for line in [&b""[..], b".", b"alive", b"42", b"[1,2]", b"  \"x\""] {
            assert_eq!(parse_heartbeat(line), Heartbeat::default(), "{line:?}");
        }
    }

    #[test]
    fn full_json_heartbeat() {
        let hb = parse_heartbeat(
            br#" {"progress": 42.5, "message": "running tests", "critical": "git"} "#,
        );
        assert_eq!(
            hb,
            Heartbeat {
                progress: Some(42.5),
                message: Some("running tests".into()),
                critical: CriticalUpdate::Enter(CriticalSection::Git),
                malformed: false
            }
        );
    }

    #[test]
    fn critical_key_semantics() {
        assert_eq!(
            parse_heartbeat(br#"{}"#).critical,
            CriticalUpdate::Unchanged
        );
        assert_eq!(
            parse_heartbeat(br#"{"critical":null}"#).critical,
            CriticalUpdate::Leave
        );
        assert_eq!(
            parse_heartbeat(br#"{"critical":"DB"}"#).critical,
            CriticalUpdate::Enter(CriticalSection::Db)
        );
        assert_eq!(
            parse_heartbeat(br#"{"critical":"files"}"#).critical,
            CriticalUpdate::Enter(CriticalSection::Files)
        );
        let unknown = parse_heartbeat(br#"{"critical":"network"}"#);
        assert_eq!(unknown.critical, CriticalUpdate::Unchanged);
        assert!(unknown.malformed);
        let wrong_type = parse_heartbeat(br#"{"critical":true}"#);
        assert_eq!(wrong_type.critical, CriticalUpdate::Unchanged);
        assert!(wrong_type.malformed);
    }

    #[test]
    fn malformed_json_is_still_a_heartbeat() {
        let mut st = HeartbeatState::new();
        for (i, line) in [
            &br#"{"progress": 1"#[..],
            br#"{not json}"#,
            br#"{"progress":"50%"}"#,
            br#"{"message":7}"#,
        ]
        .iter()
        .enumerate()
        {
            let hb = st.observe_line(line, i as i64);
            assert!(hb.malformed, "{line:?}");
        }
        assert_eq!(st.count, 4);
        assert_eq!(st.malformed, 4);
        assert_eq!(st.last_at, Some(3));
        assert_eq!(st.last_progress, None);
        assert_eq!(st.last_message, None);
    }

    #[test]
    fn good_fields_of_a_malformed_heartbeat_still_apply() {
        let hb = parse_heartbeat(br#"{"progress":"half","message":"committing","critical":"git"}"#);
        assert!(hb.malformed);
        assert_eq!(hb.progress, None);
        assert_eq!(hb.message.as_deref(), Some("committing"));
        assert_eq!(hb.critical, CriticalUpdate::Enter(CriticalSection::Git));
    }

    #[test]
    fn state_tracks_the_critical_section() {
        let mut st = HeartbeatState::new();
        st.observe_line(br#"{"critical":"git","message":"git commit"}"#, 100);
        assert_eq!(st.critical, Some(CriticalSection::Git));
        assert_eq!(st.critical_since, Some(100));
        // Plain lines and JSON without the key leave it open.
        st.observe_line(b"tick", 200);
        st.observe_line(br#"{"progress":3}"#, 300);
        st.observe_line(br#"{"critical":"git"}"#, 350);
        assert_eq!(st.critical, Some(CriticalSection::Git));
        assert_eq!(st.critical_since, Some(100));
        assert_eq!(
            st.kill_grace(Duration::from_secs(5)),
            Duration::from_secs(30)
        );
        // A longer configured default wins.
        assert_eq!(
            st.kill_grace(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        st.observe_line(br#"{"critical":"db"}"#, 400);
        assert_eq!(st.critical_since, Some(400));
        assert_eq!(
            st.kill_grace(Duration::from_secs(5)),
            Duration::from_secs(15)
        );
        st.observe_line(br#"{"critical":null}"#, 500);
        assert_eq!(st.critical, None);
        assert_eq!(st.critical_since, None);
        assert_eq!(
            st.kill_grace(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(st.count, 6);
        assert_eq!(st.last_progress, Some(3.0));
        assert_eq!(st.last_message.as_deref(), Some("git commit"));
        assert_eq!(st.malformed, 0);
    }

    #[test]
    fn default_graces() {
        assert_eq!(
            CriticalSection::Git.default_grace(),
            Duration::from_secs(30)
        );
        assert_eq!(CriticalSection::Db.default_grace(), Duration::from_secs(15));
        assert_eq!(
            CriticalSection::Files.default_grace(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn message_is_truncated() {
        let line = format!(r#"{{"message":"{}"}}"#, "m".repeat(2000));
        let hb = parse_heartbeat(line.as_bytes());
        assert_eq!(
            hb.message.map(|m| m.chars().count()),
            Some(MESSAGE_CHARS + 1)
        );
    }

    #[test]
    fn tracker_splits_chunks_and_bounds_lines() {
        let data = b"tick\r\n{\"critical\":\"files\"}\n\n{\"progress\":0.5}\nlast";
        for chunk in 1..=data.len() {
            let mut t = HeartbeatTracker::new(64);
            let mut now = 0;
            for c in data.chunks(chunk) {
                t.feed(c, now);
                now += 1;
            }
            assert_eq!(t.finish(now), 1);
            let st = t.state();
            assert_eq!(st.count, 5, "chunk {chunk}");
            assert_eq!(st.critical, Some(CriticalSection::Files));
            assert_eq!(st.last_progress, Some(0.5));
            assert_eq!(st.malformed, 0);
        }
        let mut t = HeartbeatTracker::new(32);
        t.feed(&[b'x'; 1000], 1);
        t.feed(b"\n{\"critical\":\"git\"}\n", 2);
        assert_eq!(t.state().count, 2);
        assert_eq!(t.state().oversized, 1);
        assert_eq!(t.state().malformed, 1);
        assert_eq!(t.state().critical, Some(CriticalSection::Git));
        assert!(t.splitter().buffer_capacity() <= 32);
    }
}
