//! What to do after one delivery attempt: done on 2xx; retry with exponential backoff on a
//! connection error, a timeout, a 5xx, 408 or 429; give up at once on any other answer (a 4xx
//! means the receiver refuses this request, and sending it again will not change that), and
//! after `max_attempts` attempts.
use std::time::Duration;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this HTTP status.
    Status(u16),
    /// No answer: connection refused or reset, TLS failure, timeout.
    NoAnswer(String),
}

/// The policy: `[alerts] retry_initial_ms`, `retry_max_ms`, `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_attempts: 10,
        }
    }
}

/// What the delivery task does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again after this long.
    Retry(Duration),
    /// Stop: the reason, for the failure alert.
    GiveUp(String),
}

/// The wait before attempt `n + 1` after `n` failed attempts: initial * 2^(n-1), at most max.
pub fn backoff(policy: &RetryPolicy, failed: u32) -> Duration {
    let exp = failed.saturating_sub(1).min(30);
    policy.initial.saturating_mul(1u32 << exp).min(policy.max)
}

/// Decide after attempt number `attempts` (1 for the first) ended as `outcome`.
pub fn next(policy: &RetryPolicy, attempts: u32, outcome: &Attempt) -> Next {
    let retryable = match outcome {
        Attempt::Status(s) if (200..300).contains(s) => return Next::Delivered,
        Attempt::Status(s) => *s >= 500 || *s == 408 || *s == 429,
        Attempt::NoAnswer(_) => true,
    };
    let what = match outcome {
        Attempt::Status(s) => format!("HTTP {s}"),
        Attempt::NoAnswer(e) => e.clone(),
    };
    if !retryable {
        return Next::GiveUp(format!("answered {what}; not retried"));
    }
    if attempts >= policy.max_attempts {
        return Next::GiveUp(format!("{what} after {attempts} attempts; gave up"));
    }
    Next::Retry(backoff(policy, attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            max_attempts: 5,
        }
    }

    #[test]
    fn success_ends_it() {
        assert_eq!(next(&policy(), 1, &Attempt::Status(200)), Next::Delivered);
        assert_eq!(next(&policy(), 3, &Attempt::Status(204)), Next::Delivered);
    }

    #[test]
    fn server_errors_and_no_answer_back_off_exponentially() {
        let p = policy();
        assert_eq!(
            next(&p, 1, &Attempt::Status(500)),
            Next::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            next(&p, 2, &Attempt::Status(503)),
            Next::Retry(Duration::from_millis(200))
        );
        assert_eq!(
            next(&p, 3, &Attempt::NoAnswer("connection refused".into())),
            Next::Retry(Duration::from_millis(400))
        );
        assert_eq!(
            next(&p, 4, &Attempt::Status(429)),
            Next::Retry(Duration::from_millis(800))
        );
        assert_eq!(backoff(&p, 10), Duration::from_millis(1000));
        assert_eq!(backoff(&p, u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn other_client_errors_are_not_retried() {
        for s in [400, 401, 403, 404, 410] {
            match next(&policy(), 1, &Attempt::Status(s)) {
                Next::GiveUp(why) => assert!(why.contains(&format!("HTTP {s}")), "{why}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn retries_end() {
        match next(&policy(), 5, &Attempt::Status(502)) {
            Next::GiveUp(why) => assert!(why.contains("after 5 attempts"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
