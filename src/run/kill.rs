//! The kill plan: when each signal goes out. Pure (signals, grace, force -> schedule), so the
//! timing rules are unit-tested without processes; `task` carries the plan out against the run.
//!
//! Graceful: the stop signals go out in order, the grace split evenly between them (TERM alone
//! gets all of it; INT then TERM get half each), then KILL at the end of the grace. Forced: KILL at
//! once. After KILL the run must be seen empty within the KILL deadline, else survivors are
//! reported.
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

#[cfg(test)]
mod tests {
    use super::*;
    use Signal::*;

    const D: Duration = Duration::from_secs(10);

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
