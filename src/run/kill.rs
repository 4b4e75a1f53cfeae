//! The kill plan: when each signal goes out. Pure (signals, grace, force -> schedule), so the
//! timing rules are unit-tested without processes; `task` carries the plan out against the run.
//!
//! Graceful: the stop signals go out in order, the grace split evenly between them (TERM alone
//! gets all of it; INT then TERM get half each), then KILL at the end of the grace. Forced: KILL at
//! once. After KILL the run must be seen empty within the KILL deadline, else survivors are
//! reported.
//!
//! [`next`] decides each step of the graceful phase from the plan and what happened so far
//! (stop signals sent, time, an open critical section, a forced kill arriving); `task` only
//! carries it out and checks between steps whether the run is empty. The property tests below
//! drive it with arbitrary event sequences: while the run is not empty, KILL always comes, no
//! later than the larger of the grace and the open critical section's grace, and at once on a
//! forced kill.
use std::time::Duration;

use nix::sys::signal::Signal;

/// One stop signal and when (after the kill began) it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub signal: Signal,
}

/// The schedule of one kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillPlan {
    /// Stop signals in order; empty when forced.
    pub stop: Vec<Step>,
    /// When KILL goes out if the run is not empty by then.
    pub kill_at: Duration,
    /// How long after KILL the run may take to be seen empty.
    pub kill_deadline: Duration,
}

/// Make the plan for a kill.
pub fn plan(
    stop_signals: &[Signal],
    grace: Duration,
    force: bool,
    kill_deadline: Duration,
) -> KillPlan {
    if force || stop_signals.is_empty() {
        return KillPlan {
            stop: Vec::new(),
            kill_at: Duration::ZERO,
            kill_deadline,
        };
    }
    let slice = grace / stop_signals.len() as u32;
    let stop = stop_signals
        .iter()
        .enumerate()
        .map(|(i, s)| Step {
            at: slice * i as u32,
            signal: *s,
        })
        .collect();
    KillPlan {
        stop,
        kill_at: grace,
        kill_deadline,
    }
}

/// The next step of a kill whose run is not empty yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this stop signal now (the next one in the plan).
    Signal(Signal),
    /// Send KILL now: the graceful phase is over.
    Kill,
    /// Nothing to do before this time (after the kill began), unless the run empties or a
    /// forced kill arrives first.
    WaitUntil(Duration),
}

/// When KILL goes out: at the end of the grace, or of the open critical section's grace if
/// that is longer (a forced kill does not wait: see [`next`]).
pub fn kill_at(plan: &KillPlan, critical_grace: Option<Duration>) -> Duration {
    plan.kill_at.max(critical_grace.unwrap_or(Duration::ZERO))
}

/// The next step, `elapsed` after the kill began, with `sent` of the plan's stop signals out,
/// `critical_grace` the grace of the critical section the agent has open (if any), and
/// `forced` once a forced kill arrived. A `WaitUntil` is always later than `elapsed`.
pub fn next(
    plan: &KillPlan,
    sent: usize,
    elapsed: Duration,
    critical_grace: Option<Duration>,
    forced: bool,
) -> Next {
    if forced {
        return Next::Kill;
    }
    if let Some(step) = plan.stop.get(sent) {
        if elapsed >= step.at {
            return Next::Signal(step.signal);
        }
    }
    let kill_at = kill_at(plan, critical_grace);
    if sent >= plan.stop.len() && elapsed >= kill_at {
        return Next::Kill;
    }
    let wake = match plan.stop.get(sent) {
        Some(step) => step.at.min(kill_at),
        None => kill_at,
    };
    Next::WaitUntil(wake)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Signal::*;

    /// One thing that can happen while a graceful kill waits.
    #[derive(Debug, Clone)]
    enum Event {
        /// Time passes (ms).
        Pass(u64),
        /// The agent opens a critical section with this grace (ms), or closes it (None).
        Critical(Option<u64>),
        /// A forced kill arrives.
        Force,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (0u64..3_000).prop_map(Event::Pass),
            2 => proptest::option::of(0u64..40_000).prop_map(Event::Critical),
            1 => Just(Event::Force),
        ]
    }

    fn signals() -> impl Strategy<Value = Vec<Signal>> {
        proptest::collection::vec(
            prop_oneof![Just(SIGTERM), Just(SIGINT), Just(SIGHUP), Just(SIGQUIT)],
            0..4,
        )
    }

    proptest! {
        /// No sequence of events skips KILL while a process of the run lives: the simulated
        /// run never empties, and KILL goes out after the stop signals in order, by the end
        /// of the longest grace that applied, or at once when forced.
        #[test]
        fn kill_always_comes_while_the_run_lives(
            stop in signals(),
            grace_ms in 0u64..20_000,
            force in any::<bool>(),
            events in proptest::collection::vec(event(), 0..40),
        ) {
            let p = plan(&stop, Duration::from_millis(grace_ms), force, D);
            let mut now = Duration::ZERO;
            let mut sent = Vec::new();
            let mut critical: Option<Duration> = None;
            let mut longest_critical = Duration::ZERO;
            let mut forced_at: Option<Duration> = if force { Some(now) } else { None };
            let mut events = events.into_iter();
            let mut pending: Option<Event> = None;
            let mut killed_at = None;
            for _ in 0..1_000 {
                match next(&p, sent.len(), now, critical, forced_at.is_some()) {
                    Next::Signal(sig) => {
                        prop_assert!(forced_at.is_none(), "a stop signal after a forced kill");
                        prop_assert_eq!(sig, p.stop[sent.len()].signal);
                        sent.push(sig);
                    }
                    Next::Kill => {
                        killed_at = Some(now);
                        break;
                    }
                    Next::WaitUntil(at) => {
                        prop_assert!(at > now, "a wait that does not advance: {:?} at {:?}", at, now);
                        // The next event, if it comes before the wake-up; else the wake-up.
                        let e = pending.take().or_else(|| events.next());
                        match e {
                            Some(Event::Pass(ms)) if now + Duration::from_millis(ms) < at => {
                                now += Duration::from_millis(ms);
                            }
                            Some(Event::Pass(ms)) => {
                                // Wake up first; the rest of the pause comes after.
                                let rest = (now + Duration::from_millis(ms)) - at;
                                now = at;
                                pending = Some(Event::Pass(rest.as_millis() as u64));
                            }
                            Some(Event::Critical(c)) => {
                                critical = c.map(Duration::from_millis);
                                if let Some(c) = critical {
                                    longest_critical = longest_critical.max(c);
                                }
                            }
                            Some(Event::Force) => forced_at = Some(now),
                            None => now = at,
                        }
                    }
                }
            }
            let killed_at = killed_at.expect("KILL never came");
            if let Some(f) = forced_at {
                prop_assert_eq!(killed_at, f, "KILL at once when forced");
            } else {
                prop_assert_eq!(&sent, &stop, "every stop signal, in order, before KILL");
                prop_assert!(killed_at >= p.kill_at, "KILL before the grace ended");
                prop_assert!(
                    killed_at <= p.kill_at.max(longest_critical),
                    "KILL at {:?}, later than the grace {:?} and every critical grace {:?}",
                    killed_at, p.kill_at, longest_critical
                );
            }
        }
    }

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn next_steps_through_the_plan() {
        let p = plan(&[SIGINT, SIGTERM], Duration::from_millis(4000), false, D);
        let ms = Duration::from_millis;
        assert_eq!(next(&p, 0, ms(0), None, false), Next::Signal(SIGINT));
        assert_eq!(next(&p, 1, ms(10), None, false), Next::WaitUntil(ms(2000)));
        assert_eq!(next(&p, 1, ms(2000), None, false), Next::Signal(SIGTERM));
        assert_eq!(
            next(&p, 2, ms(2001), None, false),
            Next::WaitUntil(ms(4000))
        );
        assert_eq!(next(&p, 2, ms(4000), None, false), Next::Kill);
        // An open git section (30 s) holds KILL off; a shorter one does not shorten the grace.
        assert_eq!(
            next(&p, 2, ms(4000), Some(ms(30_000)), false),
            Next::WaitUntil(ms(30_000))
        );
        assert_eq!(next(&p, 2, ms(4000), Some(ms(1000)), false), Next::Kill);
        assert_eq!(next(&p, 0, ms(0), Some(ms(30_000)), true), Next::Kill);
    }

    #[test]
    fn term_alone_gets_the_whole_grace() {
        let p = plan(&[SIGTERM], Duration::from_millis(5000), false, D);
        assert_eq!(
            p.stop,
            vec![Step {
                at: Duration::ZERO,
                signal: SIGTERM
            }]
        );
        assert_eq!(p.kill_at, Duration::from_millis(5000));
    }

    #[test]
    fn several_stop_signals_split_the_grace() {
        let p = plan(&[SIGINT, SIGTERM], Duration::from_millis(4000), false, D);
        assert_eq!(p.stop[0].at, Duration::ZERO);
        assert_eq!(p.stop[0].signal, SIGINT);
        assert_eq!(p.stop[1].at, Duration::from_millis(2000));
        assert_eq!(p.stop[1].signal, SIGTERM);
        assert_eq!(p.kill_at, Duration::from_millis(4000));
    }

    #[test]
    fn force_goes_straight_to_kill() {
        let p = plan(&[SIGTERM], Duration::from_millis(5000), true, D);
        assert!(p.stop.is_empty());
        assert_eq!(p.kill_at, Duration::ZERO);
        assert_eq!(p.kill_deadline, D);
    }

    #[test]
    fn zero_grace_sends_stop_then_kill_at_once() {
        let p = plan(&[SIGTERM], Duration::ZERO, false, D);
        assert_eq!(p.stop.len(), 1);
        assert_eq!(p.kill_at, Duration::ZERO);
    }
}
