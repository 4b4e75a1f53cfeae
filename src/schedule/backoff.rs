//! The restart policy's decision, apart from I/O: given how a run ended, its policy and how many
//! restarts its chain has had, restart it (when, as which step of the backoff) or give up. An
//! operator's Kill, Cancel or ForceComplete never restarts a run; the core passes those as
//! `by_operator` and gets [`Decision::No`].
use super::{RestartOn, RestartPolicy};

/// What to do with a run that just ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy applies.
    No,
    /// Start a linked run, queued until `not_before`; it is restart number `streak` of its chain.
    Restart {
        not_before: i64,
        delay_ms: u64,
        streak: u32,
    },
    /// The policy applies but its restarts are used up.
    GaveUp { restarts: u32 },
}

/// How the run ended, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    pub status: Option<RestartOn>,
    pub by_operator: bool,
    /// How long the run lived (started to ended; 0 if it never started).
    pub lived_ms: i64,
    /// Restarts by policy before this run (0 for the first run of a chain).
    pub streak: u32,
    pub now: i64,
}

/// Decide whether and when to restart.
pub fn decide(policy: Option<&RestartPolicy>, e: Ending) -> Decision {
    let (Some(p), Some(status)) = (policy, e.status) else {
        return Decision::No;
    };
    if e.by_operator || !p.on.contains(&status) {
        return Decision::No;
    }
    // A run that lived long enough was healthy for a while: the count starts again.
    let streak = if p.reset_after_ms > 0 && e.lived_ms >= p.reset_after_ms as i64 {
        0
    } else {
        e.streak
    };
    if streak >= p.max_restarts {
        return Decision::GaveUp { restarts: streak };
    }
    let delay_ms = delay(p, streak);
    Decision::Restart {
        not_before: e.now.saturating_add(delay_ms as i64),
        delay_ms,
        streak: streak + 1,
    }
}

/// backoff * 2^streak, capped at max_backoff.
pub fn delay(p: &RestartPolicy, streak: u32) -> u64 {
    let cap = p.max_backoff_ms.max(p.backoff_ms);
    let factor = 1u64.checked_shl(streak.min(62)).unwrap_or(u64::MAX);
    p.backoff_ms.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            on: vec![RestartOn::Failed, RestartOn::Lost],
            max_restarts: 3,
            backoff_ms: 10_000,
            max_backoff_ms: 30_000,
            reset_after_ms: 600_000,
        }
    }

    fn ending(status: RestartOn, streak: u32) -> Ending {
        Ending {
            status: Some(status),
            by_operator: false,
            lived_ms: 1_000,
            streak,
            now: 1_000_000,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let p = policy();
        let steps: Vec<Decision> = (0..4)
            .map(|s| decide(Some(&p), ending(RestartOn::Failed, s)))
            .collect();
        assert_eq!(
            steps,
            vec![
                Decision::Restart {
                    not_before: 1_010_000,
                    delay_ms: 10_000,
                    streak: 1
                },
                Decision::Restart {
                    not_before: 1_020_000,
                    delay_ms: 20_000,
                    streak: 2
                },
                Decision::Restart {
                    not_before: 1_030_000,
                    delay_ms: 30_000,
                    streak: 3
                },
                Decision::GaveUp { restarts: 3 },
            ]
        );
    }

    #[test]
    fn only_the_listed_statuses_and_never_an_operators_end() {
        let p = policy();
        assert_eq!(
            decide(Some(&p), ending(RestartOn::TimedOut, 0)),
            Decision::No
        );
        let mut e = ending(RestartOn::Failed, 0);
        e.by_operator = true;
        assert_eq!(decide(Some(&p), e), Decision::No);
        assert_eq!(decide(None, ending(RestartOn::Failed, 0)), Decision::No);
        let mut e = ending(RestartOn::Failed, 0);
        e.status = None;
        assert_eq!(decide(Some(&p), e), Decision::No);
    }

    #[test]
    fn a_long_life_resets_the_count() {
        let p = policy();
        let mut e = ending(RestartOn::Lost, 3);
        e.lived_ms = 600_000;
        assert_eq!(
            decide(Some(&p), e),
            Decision::Restart {
                not_before: 1_010_000,
                delay_ms: 10_000,
                streak: 1
            }
        );
    }

    #[test]
    fn huge_streaks_do_not_overflow() {
        let mut p = policy();
        p.max_backoff_ms = u64::MAX;
        assert_eq!(delay(&p, 200), u64::MAX);
    }
}
