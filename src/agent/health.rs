//! Stuck rules: telling slow from stuck, as a pure function of what was observed and the time.
//!
//! Three rules, each optional and each with an [`Action`] (invariant 4):
//! - `init_timeout` (default 30 min): no first turn since the run started. It governs the run
//!   while it initializes: until the first turn (or the result) arrives, only this rule and
//!   `max_runtime` apply, so a slow start is not cut short by the idle rule.
//! - `idle_timeout` (default 10 min): no heartbeat and no stdout output for that long, counted
//!   from the latest of the run's start, its last stdout line and its last heartbeat. It applies
//!   once the run is past initialization, or from the start when `init_timeout` is off (agents
//!   that have no turns).
//! - `max_runtime` (default 1 h): the run has been running that long.
//!
//! A rule fires when `now >= deadline` (the deadline itself counts). When several have fired,
//! the one whose deadline came first is reported (ties: init, idle, max runtime). A run past
//! initialization that has run longer than `slow_after` (default 10 min) without a rule firing is
//! [`Health::Slow`]: slow, not stuck. [`next_deadline`] says when the earliest rule that has not
//! fired yet could fire if nothing else happens, so the caller arms one timer and recomputes after
//! every event instead of polling.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::heartbeat::HeartbeatState;
use super::progress::Progress;

/// What to do when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Record and report it; leave the run alone.
    Alert,
    /// Kill the run.
    Kill,
    /// Kill the run and start a new attempt.
    Restart,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Kill => "kill",
            Action::Restart => "restart",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    InitTimeout,
    IdleTimeout,
    MaxRuntime,
}

impl RuleKind {
    /// The rule's name as in the configuration: `init_timeout`, `idle_timeout`, `max_runtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::InitTimeout => "init_timeout",
            RuleKind::IdleTimeout => "idle_timeout",
            RuleKind::MaxRuntime => "max_runtime",
        }
    }
}

impl std::fmt::Display for RuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: how long, and what to do then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub after: Duration,
    pub action: Action,
}

impl Rule {
    pub fn new(after: Duration, action: Action) -> Self {
        Rule { after, action }
    }
}

/// The stuck rules of a workflow; `None` turns a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckRules {
    pub init_timeout: Option<Rule>,
    pub idle_timeout: Option<Rule>,
    pub max_runtime: Option<Rule>,
    /// A run past initialization and older than this is reported as slow.
    pub slow_after: Duration,
}

impl Default for StuckRules {
    fn default() -> Self {
        StuckRules {
            init_timeout: Some(Rule::new(Duration::from_secs(30 * 60), Action::Kill)),
            idle_timeout: Some(Rule::new(Duration::from_secs(10 * 60), Action::Kill)),
            max_runtime: Some(Rule::new(Duration::from_secs(60 * 60), Action::Kill)),
            slow_after: Duration::from_secs(10 * 60),
        }
    }
}

/// What the rules look at. Times are Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthInput {
    pub started_at_ms: i64,
    pub now_ms: i64,
    /// Turns seen so far.
    pub turns: u32,
    /// A turn or the result arrived: initialization is over.
    pub past_init: bool,
    /// Last stdout line (any line, JSON or not).
    pub last_output_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    /// For the reasons only.
    pub api_retries: u32,
    /// For the reasons only: MCP servers `init` reported as pending.
    pub pending_mcp_servers: Vec<String>,
}

impl HealthInput {
    /// Gather the inputs from a run's progress and heartbeat state.
    pub fn new(
        started_at_ms: i64,
        progress: &Progress,
        heartbeats: Option<&HeartbeatState>,
        now_ms: i64,
    ) -> Self {
        HealthInput {
            started_at_ms,
            now_ms,
            turns: progress.turns,
            past_init: progress.started_turns(),
            last_output_at: progress.last_output_at,
            last_heartbeat_at: heartbeats.and_then(|h| h.last_at),
            api_retries: progress.api_retries,
            pending_mcp_servers: progress.pending_mcp_servers.clone(),
        }
    }

    /// The latest sign of life: start, last stdout line, last heartbeat.
    pub fn last_activity_ms(&self) -> i64 {
        [self.last_output_at, self.last_heartbeat_at]
            .into_iter()
            .flatten()
            .fold(self.started_at_ms, i64::max)
    }
}

/// The verdict on a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Running long, but turns keep coming.
    Slow {
        reason: String,
    },
    /// A rule fired.
    Stuck {
        rule: RuleKind,
        action: Action,
        reason: String,
    },
}

/// Each enabled rule that applies now, with the time it fires (earliest first on ties by the
/// order init, idle, max runtime).
fn deadlines(rules: &StuckRules, input: &HealthInput) -> Vec<(RuleKind, Rule, i64)> {
    let mut out = Vec::with_capacity(3);
    let initializing = !input.past_init && rules.init_timeout.is_some();
    if let Some(rule) = rules.init_timeout {
        if !input.past_init {
            out.push((
                RuleKind::InitTimeout,
                rule,
                add_ms(input.started_at_ms, rule.after),
            ));
        }
    }
    if let Some(rule) = rules.idle_timeout {
        if !initializing {
            out.push((
                RuleKind::IdleTimeout,
                rule,
                add_ms(input.last_activity_ms(), rule.after),
            ));
        }
    }
    if let Some(rule) = rules.max_runtime {
        out.push((
            RuleKind::MaxRuntime,
            rule,
            add_ms(input.started_at_ms, rule.after),
        ));
    }
    out
}

/// "1 turn", "0 turns", "12 turns".
fn turns(n: u32) -> String {
    if n == 1 {
        "1 turn".to_string()
    } else {
        format!("{n} turns")
    }
}

/// Judge a run now.
pub fn assess(rules: &StuckRules, input: &HealthInput) -> Health {
    let now = input.now_ms;
    let fired = deadlines(rules, input)
        .into_iter()
        .filter(|&(_, _, at)| at <= now)
        .min_by_key(|&(_, _, at)| at);
    if let Some((kind, rule, _)) = fired {
        return Health::Stuck {
            rule: kind,
            action: rule.action,
            reason: reason(kind, rule, input),
        };
    }
    let running = now - input.started_at_ms;
    if input.past_init && running >= duration_ms(rules.slow_after) {
        return Health::Slow {
            reason: format!(
                "slow but progressing: running for {} (over {}) with {}, last stdout {}",
                fmt_ms(running),
                fmt_duration(rules.slow_after),
                turns(input.turns),
                ago(input.last_output_at, now),
            ),
        };
    }
    Health::Ok
}

/// When the earliest rule that has not fired yet would fire if nothing else happened; `None`
/// when no rule is pending. Rules that already fired are left to [`assess`].
pub fn next_deadline(rules: &StuckRules, input: &HealthInput) -> Option<i64> {
    deadlines(rules, input)
        .into_iter()
        .map(|(_, _, at)| at)
        .filter(|&at| at > input.now_ms)
        .min()
}

fn reason(kind: RuleKind, rule: Rule, input: &HealthInput) -> String {
    let now = input.now_ms;
    let running = now - input.started_at_ms;
    match kind {
        RuleKind::InitTimeout => {
            let mut r = format!(
                "no first turn within {} (init_timeout); {} after {}",
                fmt_duration(rule.after),
                turns(input.turns),
                fmt_ms(running)
            );
            if input.api_retries > 0 {
                r.push_str(&format!("; {} API retries", input.api_retries));
            }
            if !input.pending_mcp_servers.is_empty() {
                r.push_str(&format!(
                    "; MCP servers pending at init: {}",
                    input.pending_mcp_servers.join(", ")
                ));
            }
            r
        }
        RuleKind::IdleTimeout => format!(
            "no heartbeat or stdout event within {} (idle_timeout); quiet for {}, {}, \
             last stdout {}, last heartbeat {}",
            fmt_duration(rule.after),
            fmt_ms(now - input.last_activity_ms()),
            turns(input.turns),
            ago(input.last_output_at, now),
            ago(input.last_heartbeat_at, now),
        ),
        RuleKind::MaxRuntime => format!(
            "runtime over {} (max_runtime); running for {}, {}",
            fmt_duration(rule.after),
            fmt_ms(running),
            turns(input.turns)
        ),
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn add_ms(at: i64, d: Duration) -> i64 {
    at.saturating_add(duration_ms(d))
}

fn ago(at: Option<i64>, now: i64) -> String {
    match at {
        Some(t) => format!("{} ago", fmt_ms(now - t)),
        None => "never".into(),
    }
}

fn fmt_duration(d: Duration) -> String {
    fmt_ms(duration_ms(d))
}

/// `31m 5s`, `1h`, `1h 0m 1s`, `0s`, `250ms`: whole units, no leading or trailing zero units.
pub fn fmt_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let secs = ms / 1000;
    let parts = [
        (secs / 3600, "h"),
        ((secs / 60) % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|&(n, _)| n > 0).unwrap_or(2);
    let last = parts.iter().rposition(|&(n, _)| n > 0).unwrap_or(2);
    parts[first..=last]
        .iter()
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod properties {
    //! The core arms one timer at `next_deadline` and asks `assess` when it fires or when
    //! something happens; these properties are what that relies on, for arbitrary rules and
    //! observations.
    use super::*;
    use proptest::prelude::*;

    const START: i64 = 1_700_000_000_000;

    fn rule() -> impl Strategy<Value = Option<Rule>> {
        proptest::option::of((1u64..100_000, 0u8..3).prop_map(|(ms, a)| {
            let action = [Action::Alert, Action::Kill, Action::Restart][usize::from(a)];
            Rule::new(Duration::from_millis(ms), action)
        }))
    }

    fn rules() -> impl Strategy<Value = StuckRules> {
        (rule(), rule(), rule(), 0u64..100_000).prop_map(|(i, d, m, slow)| StuckRules {
            init_timeout: i,
            idle_timeout: d,
            max_runtime: m,
            slow_after: Duration::from_millis(slow),
        })
    }

    /// Observations up to `now`, all at or after the start.
    fn input() -> impl Strategy<Value = HealthInput> {
        (
            0i64..200_000,
            0u32..5,
            any::<bool>(),
            proptest::option::of(0i64..200_000),
            proptest::option::of(0i64..200_000),
        )
            .prop_map(|(now, turns, past_init, out, hb)| HealthInput {
                started_at_ms: START,
                now_ms: START + now,
                turns,
                past_init: past_init || turns > 0,
                last_output_at: out.map(|o| START + o.min(now)),
                last_heartbeat_at: hb.map(|h| START + h.min(now)),
                ..HealthInput::default()
            })
    }

    fn at(input: &HealthInput, now: i64) -> HealthInput {
        HealthInput {
            now_ms: now,
            ..input.clone()
        }
    }

    fn stuck(h: &Health) -> Option<RuleKind> {
        match h {
            Health::Stuck { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    proptest! {
        /// One timer at `next_deadline` misses nothing: with nothing new observed, no rule
        /// fires before it, and at it one does.
        #[test]
        fn the_one_timer_misses_no_rule(rules in rules(), input in input(), step in 1i64..50_000) {
            let h = assess(&rules, &input);
            if stuck(&h).is_some() {
                return Ok(());
            }
            match next_deadline(&rules, &input) {
                None => {
                    let later = at(&input, input.now_ms + step);
                    prop_assert!(stuck(&assess(&rules, &later)).is_none(), "fired with no deadline armed");
                }
                Some(deadline) => {
                    prop_assert!(deadline > input.now_ms);
                    let before = at(&input, (input.now_ms + step).min(deadline - 1));
                    prop_assert!(stuck(&assess(&rules, &before)).is_none(), "fired before the timer");
                    prop_assert!(stuck(&assess(&rules, &at(&input, deadline))).is_some(), "the timer found nothing");
                }
            }
        }

        /// Once stuck, a run stays stuck while nothing new is observed, and the rule reported
        /// is the one whose deadline came first.
        #[test]
        fn stuck_stays_stuck_without_news(rules in rules(), input in input(), step in 0i64..100_000) {
            let Some(kind) = stuck(&assess(&rules, &input)) else { return Ok(()) };
            let later = assess(&rules, &at(&input, input.now_ms + step));
            prop_assert!(stuck(&later).is_some(), "no longer stuck with nothing new");
            let first = deadlines(&rules, &input)
                .into_iter()
                .filter(|&(_, _, due)| due <= input.now_ms)
                .map(|(_, _, due)| due)
                .min();
            let reported = deadlines(&rules, &input)
                .into_iter()
                .find(|&(k, _, _)| k == kind)
                .map(|(_, _, due)| due);
            prop_assert_eq!(reported, first);
        }

        /// Activity never brings a rule forward: a later stdout line or heartbeat leaves every
        /// deadline where it was or later, and max_runtime where it was.
        #[test]
        fn activity_never_brings_a_rule_forward(rules in rules(), input in input(), delay in 0i64..50_000) {
            let fresh = HealthInput {
                last_heartbeat_at: Some(input.now_ms),
                now_ms: input.now_ms + delay,
                ..input.clone()
            };
            let old = at(&input, input.now_ms + delay);
            let (a, b) = (assess(&rules, &old), assess(&rules, &fresh));
            if stuck(&a).is_none() {
                prop_assert!(stuck(&b).is_none(), "a heartbeat made the run stuck: {:?}", b);
            }
            if let (Some(m), true) = (rules.max_runtime, delay > 0) {
                let due = START + m.after.as_millis() as i64;
                if fresh.now_ms >= due {
                    prop_assert!(stuck(&b).is_some(), "max_runtime is not held off by activity");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::progress::StdoutTracker;

    const MIN: i64 = 60_000;
    const START: i64 = 1_700_000_000_000;

    fn input(now: i64) -> HealthInput {
        HealthInput {
            started_at_ms: START,
            now_ms: START + now,
            ..HealthInput::default()
        }
    }

    fn stuck_rule(h: &Health) -> Option<RuleKind> {
        match h {
            Health::Stuck { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(fmt_ms(0), "0s");
        assert_eq!(fmt_ms(-5), "0s");
        assert_eq!(fmt_ms(250), "250ms");
        assert_eq!(fmt_ms(45_900), "45s");
        assert_eq!(fmt_ms(30 * MIN), "30m");
        assert_eq!(fmt_ms(31 * MIN + 5_000), "31m 5s");
        assert_eq!(fmt_ms(60 * MIN), "1h");
        assert_eq!(fmt_ms(60 * MIN + 1_000), "1h 0m 1s");
        assert_eq!(fmt_ms(50 * 60 * MIN + 2 * MIN), "50h 2m");
    }

    #[test]
    fn init_timeout_fires_at_the_deadline_not_before() {
        let rules = StuckRules::default();
        let before = input(30 * MIN - 1);
        assert_eq!(assess(&rules, &before), Health::Ok);
        assert_eq!(next_deadline(&rules, &before), Some(START + 30 * MIN));
        let at = input(30 * MIN);
        assert_eq!(
            stuck_rule(&assess(&rules, &at)),
            Some(RuleKind::InitTimeout)
        );
        // Once init fired, the next pending rule is max_runtime.
        assert_eq!(next_deadline(&rules, &at), Some(START + 60 * MIN));
    }

    #[test]
    fn init_timeout_reason_names_the_rule_and_numbers() {
        let rules = StuckRules::default();
        let mut i = input(31 * MIN + 5_000);
        i.last_output_at = Some(START + 2_000);
        assert_eq!(
            assess(&rules, &i),
            Health::Stuck {
                rule: RuleKind::InitTimeout,
                action: Action::Kill,
                reason: "no first turn within 30m (init_timeout); 0 turns after 31m 5s".into()
            }
        );
        i.api_retries = 3;
        i.pending_mcp_servers = vec!["issue-tracker".into()];
        let Health::Stuck { reason, .. } = assess(&rules, &i) else {
            panic!("not stuck");
        };
        assert_eq!(
            reason,
            "no first turn within 30m (init_timeout); 0 turns after 31m 5s; 3 API retries; \
             MCP servers pending at init: issue-tracker"
        );
    }

    #[test]
    fn idle_does_not_cut_initialization_short() {
        let rules = StuckRules::default();
        // Initializing and silent for 20 minutes: still within init_timeout.
        let mut i = input(20 * MIN);
        i.last_output_at = Some(START + 1_000);
        assert_eq!(assess(&rules, &i), Health::Ok);
        assert_eq!(next_deadline(&rules, &i), Some(START + 30 * MIN));
    }

    #[test]
    fn idle_applies_from_the_start_when_init_timeout_is_off() {
        let rules = StuckRules {
            init_timeout: None,
            ..StuckRules::default()
        };
        let i = input(10 * MIN - 1);
        assert_eq!(assess(&rules, &i), Health::Ok);
        assert_eq!(next_deadline(&rules, &i), Some(START + 10 * MIN));
        let i = input(10 * MIN);
        assert_eq!(stuck_rule(&assess(&rules, &i)), Some(RuleKind::IdleTimeout));
    }

    #[test]
    fn idle_timeout_counts_from_the_latest_sign_of_life() {
        let rules = StuckRules {
            idle_timeout: Some(Rule::new(Duration::from_secs(600), Action::Restart)),
            ..StuckRules::default()
        };
        let mut i = input(25 * MIN);
        i.past_init = true;
        i.turns = 12;
        i.last_output_at = Some(START + 10 * MIN);
        i.last_heartbeat_at = Some(START + 15 * MIN);
        // 10 minutes after the last heartbeat, exactly.
        assert_eq!(
            assess(&rules, &i),
            Health::Stuck {
                rule: RuleKind::IdleTimeout,
                action: Action::Restart,
                reason: "no heartbeat or stdout event within 10m (idle_timeout); quiet for 10m, \
                         12 turns, last stdout 15m ago, last heartbeat 10m ago"
                    .into()
            }
        );
        i.now_ms -= 1;
        assert!(matches!(assess(&rules, &i), Health::Slow { .. }));
        assert_eq!(next_deadline(&rules, &i), Some(START + 25 * MIN));
        // A heartbeat pushes the deadline out.
        i.last_heartbeat_at = Some(i.now_ms);
        assert_eq!(next_deadline(&rules, &i), Some(i.now_ms + 10 * MIN));
    }

    #[test]
    fn never_heard_of_reads_never() {
        let rules = StuckRules {
            init_timeout: None,
            ..StuckRules::default()
        };
        let Health::Stuck { reason, .. } = assess(&rules, &input(10 * MIN)) else {
            panic!("not stuck");
        };
        assert!(
            reason.ends_with("last stdout never, last heartbeat never"),
            "{reason}"
        );
    }

    #[test]
    fn max_runtime_fires_even_with_steady_progress() {
        let rules = StuckRules::default();
        let mut i = input(60 * MIN - 1);
        i.past_init = true;
        i.turns = 37;
        i.last_output_at = Some(i.now_ms);
        i.last_heartbeat_at = Some(i.now_ms);
        assert!(matches!(assess(&rules, &i), Health::Slow { .. }));
        assert_eq!(next_deadline(&rules, &i), Some(START + 60 * MIN));
        i.now_ms += 1_001;
        i.last_output_at = Some(i.now_ms);
        assert_eq!(
            assess(&rules, &i),
            Health::Stuck {
                rule: RuleKind::MaxRuntime,
                action: Action::Kill,
                reason: "runtime over 1h (max_runtime); running for 1h 0m 1s, 37 turns".into()
            }
        );
        assert_eq!(next_deadline(&rules, &i), Some(i.now_ms + 10 * MIN));
    }

    #[test]
    fn the_rule_that_fired_first_is_reported() {
        let rules = StuckRules::default();
        // Never left init and now over max runtime too: init fired at 30m, first.
        let i = input(2 * 60 * MIN);
        assert_eq!(stuck_rule(&assess(&rules, &i)), Some(RuleKind::InitTimeout));
        assert_eq!(next_deadline(&rules, &i), None);
        // Past init, idle since 5m, over max runtime at 61m: idle fired at 15m, first.
        let mut i = input(61 * MIN);
        i.past_init = true;
        i.last_output_at = Some(START + 5 * MIN);
        assert_eq!(stuck_rule(&assess(&rules, &i)), Some(RuleKind::IdleTimeout));
    }

    #[test]
    fn slow_needs_turns_and_time() {
        let rules = StuckRules::default();
        let mut i = input(10 * MIN - 1);
        i.past_init = true;
        i.turns = 3;
        i.last_output_at = Some(i.now_ms - 2_000);
        assert_eq!(assess(&rules, &i), Health::Ok);
        i.now_ms += 1;
        assert_eq!(
            assess(&rules, &i),
            Health::Slow {
                reason: "slow but progressing: running for 10m (over 10m) with 3 turns, \
                         last stdout 2s ago"
                    .into()
            }
        );
    }

    #[test]
    fn all_rules_off() {
        let rules = StuckRules {
            init_timeout: None,
            idle_timeout: None,
            max_runtime: None,
            slow_after: Duration::from_secs(600),
        };
        let i = input(100 * 60 * MIN);
        assert_eq!(assess(&rules, &i), Health::Ok);
        assert_eq!(next_deadline(&rules, &i), None);
    }

    #[test]
    fn from_a_replayed_stuck_init() {
        let mut t = StdoutTracker::default();
        t.feed(
            include_bytes!("../../tests/fixtures/claude-stream-json/stuck_init.jsonl"),
            START + 4_000,
        );
        let hb = HeartbeatState::new();
        let i = HealthInput::new(START, t.progress(), Some(&hb), START + 31 * MIN + 5_000);
        assert_eq!(
            assess(&StuckRules::default(), &i),
            Health::Stuck {
                rule: RuleKind::InitTimeout,
                action: Action::Kill,
                reason: "no first turn within 30m (init_timeout); 0 turns after 31m 5s; \
                         MCP servers pending at init: issue-tracker"
                    .into()
            }
        );
    }

    #[test]
    fn from_a_replayed_success_turns_are_past_init() {
        let mut t = StdoutTracker::default();
        t.feed(
            include_bytes!("../../tests/fixtures/claude-stream-json/success.jsonl"),
            START + 5_000,
        );
        let i = HealthInput::new(START, t.progress(), None, START + 5_000);
        assert!(i.past_init);
        assert_eq!(i.turns, 4);
        // Past init: init_timeout is not pending; idle counts from the last output.
        assert_eq!(
            next_deadline(&StuckRules::default(), &i),
            Some(START + 5_000 + 10 * MIN)
        );
    }
}
