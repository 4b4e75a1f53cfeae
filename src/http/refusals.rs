//! How many refused HTTP requests go to the audit trail: one record per peer address per
//! [`WINDOW_MS`], the ones in between counted and reported by the peer's next record, so a
//! scanner hammering the listener costs the store one row a minute per address instead of one
//! per request. At most [`MAX_PEERS`] addresses are tracked; past that (after forgetting the
//! addresses whose minute is over) new addresses are only counted, and that count goes with the
//! next record written. Pure: a function of the address and the time, unit-tested.
use std::collections::HashMap;
use std::net::IpAddr;

/// One record per address per this many milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// The most addresses tracked at once.
pub const MAX_PEERS: usize = 4096;

/// Whether a refusal is written, and what it should say of the ones that were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it. `suppressed`: this address's refusals since its last record that were not
    /// written; `others`: refusals of addresses that could not be tracked.
    Record { suppressed: u64, others: u64 },
    /// Only counted.
    Suppress,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// When this address's last record was written (Unix ms).
    since: i64,
    suppressed: u64,
}

/// The limiter's state.
#[derive(Debug)]
pub struct Limiter {
    window_ms: i64,
    max_peers: usize,
    peers: HashMap<IpAddr, Window>,
    others: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(WINDOW_MS, MAX_PEERS)
    }
}

impl Limiter {
    pub fn new(window_ms: i64, max_peers: usize) -> Limiter {
        Limiter {
            window_ms,
            max_peers,
            peers: HashMap::new(),
            others: 0,
        }
    }

    /// A request from `peer` was refused at `now` (Unix ms).
    pub fn refused(&mut self, peer: IpAddr, now: i64) -> Verdict {
        if let Some(w) = self.peers.get_mut(&peer) {
            if now.saturating_sub(w.since) < self.window_ms {
                w.suppressed += 1;
                return Verdict::Suppress;
            }
            let suppressed = std::mem::take(&mut w.suppressed);
            w.since = now;
            return Verdict::Record {
                suppressed,
                others: std::mem::take(&mut self.others),
            };
        }
        if self.peers.len() >= self.max_peers {
            let window = self.window_ms;
            // Addresses whose minute is over are forgotten; what they had counted goes on in
            // `others`, so no refusal goes uncounted.
            let mut dropped = 0;
            self.peers.retain(|_, w| {
                let keep = now.saturating_sub(w.since) < window;
                if !keep {
                    dropped += w.suppressed;
                }
                keep
            });
            self.others += dropped;
        }
        if self.peers.len() >= self.max_peers {
            self.others += 1;
            return Verdict::Suppress;
        }
        self.peers.insert(
            peer,
            Window {
                since: now,
                suppressed: 0,
            },
        );
        Verdict::Record {
            suppressed: 0,
            others: std::mem::take(&mut self.others),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn one_record_per_address_per_minute_with_the_rest_counted() {
        let mut l = Limiter::default();
        let a = ip("192.0.2.7");
        assert_eq!(
            l.refused(a, 1_000),
            Verdict::Record {
                suppressed: 0,
                others: 0
            }
        );
        for t in 1..=500 {
            assert_eq!(l.refused(a, 1_000 + t * 100), Verdict::Suppress);
        }
        // Another address is not held back by the first.
        assert!(matches!(
            l.refused(ip("2001:db8::1"), 2_000),
            Verdict::Record { .. }
        ));
        // A minute after its record, the address is written again, with the count.
        assert_eq!(
            l.refused(a, 1_000 + WINDOW_MS),
            Verdict::Record {
                suppressed: 500,
                others: 0
            }
        );
        assert_eq!(l.refused(a, 1_001 + WINDOW_MS), Verdict::Suppress);
    }

    #[test]
    fn the_table_is_bounded_and_untracked_addresses_are_counted() {
        let mut l = Limiter::new(WINDOW_MS, 2);
        assert!(matches!(
            l.refused(ip("10.0.0.1"), 0),
            Verdict::Record { .. }
        ));
        assert!(matches!(
            l.refused(ip("10.0.0.2"), 0),
            Verdict::Record { .. }
        ));
        assert_eq!(l.refused(ip("10.0.0.3"), 10), Verdict::Suppress);
        assert_eq!(l.refused(ip("10.0.0.4"), 20), Verdict::Suppress);
        assert_eq!(l.refused(ip("10.0.0.1"), 30), Verdict::Suppress);
        // Once a minute is over, old addresses make room; the next record carries the counts
        // (the two untracked refusals and the one of the forgotten 10.0.0.1).
        assert_eq!(
            l.refused(ip("10.0.0.5"), WINDOW_MS + 1),
            Verdict::Record {
                suppressed: 0,
                others: 3
            }
        );
        assert_eq!(l.peers.len(), 1);
    }
}
