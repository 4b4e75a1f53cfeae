//! The queue's indexes, so that a dispatch costs what changed, not the length of the queue.
//! Queued runs are kept by where they stand: runs that may start as far as their dependencies
//! and `not_before` go sit in their queue's ready set, in start order (priority, then age);
//! runs waiting for a time sit in a time-ordered set, and runs waiting for a dependency sit
//! under that dependency, apart from both. A freed slot then looks only at the head of each
//! queue's ready set ([`Index::starts`]); a time passing or a dependency ending hands exactly the
//! runs it concerns back to the caller to be classified again ([`classify`](super::classify)).
//!
//! Pure data, no I/O, no clock: the core owns one and keeps it in step with its run table. The
//! decision it gives is the one [`plan`](super::plan) gives over every queued run (a property
//! test below holds the two to it); `plan` stays the reference.
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Occupancy, QueueLimits};

/// A queued run's place in the start order: priority first (higher first), then age (its
/// spawn order). Unique per run.
pub type Key = (Reverse<i32>, u64);

/// Where a queued run waits, as [`classify`](super::classify) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Its dependencies succeeded and its time has come: it starts when its queue has room.
    Ready,
    /// Not before this Unix ms.
    Timed(i64),
    /// For this dependency (the first still pending) to end.
    Dep(String),
}

#[derive(Debug, Clone)]
struct Place {
    queue: Arc<str>,
    class: Class,
    /// Unix ms when its queue_timeout passes (0: never).
    expires_at: i64,
}

/// The indexes over the queued runs; see the module doc.
#[derive(Debug, Default)]
pub struct Index {
    places: HashMap<Key, Place>,
    /// Per queue: the ready runs, in start order.
    ready: BTreeMap<Arc<str>, BTreeSet<Key>>,
    /// Per queue: every run in it (ready or not), by age, for its depth and longest wait.
    members: BTreeMap<Arc<str>, BTreeSet<(u64, Reverse<i32>)>>,
    timed: BTreeSet<(i64, Key)>,
    expiry: BTreeSet<(i64, Key)>,
    /// Dependency run id -> the runs waiting for it.
    on_dep: HashMap<String, BTreeSet<Key>>,
}

impl Index {
    /// Put a run in its place (replacing any earlier one).
    pub fn admit(&mut self, key: Key, queue: &str, expires_at: i64, class: Class) {
        self.remove(key);
        let queue = self.intern(queue);
        match &class {
            Class::Ready => {
                self.ready.entry(queue.clone()).or_default().insert(key);
            }
            Class::Timed(at) => {
                self.timed.insert((*at, key));
            }
            Class::Dep(id) => {
                self.on_dep.entry(id.clone()).or_default().insert(key);
            }
        }
        if expires_at > 0 {
            self.expiry.insert((expires_at, key));
        }
        self.members
            .entry(queue.clone())
            .or_default()
            .insert((key.1, key.0));
        self.places.insert(
            key,
            Place {
                queue,
                class,
                expires_at,
            },
        );
    }

    /// One name per queue, shared by its runs.
    fn intern(&self, queue: &str) -> Arc<str> {
        self.members
            .get_key_value(queue)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(queue))
    }

    /// Take a run out (it started, ended or is to be classified again). False if it was not in.
    pub fn remove(&mut self, key: Key) -> bool {
        let Some(p) = self.places.remove(&key) else {
            return false;
        };
        match &p.class {
            Class::Ready => {
                if let Some(set) = self.ready.get_mut(&p.queue) {
                    set.remove(&key);
                }
            }
            Class::Timed(at) => {
                self.timed.remove(&(*at, key));
            }
            Class::Dep(id) => {
                if let Some(set) = self.on_dep.get_mut(id) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.on_dep.remove(id);
                    }
                }
            }
        }
        if p.expires_at > 0 {
            self.expiry.remove(&(p.expires_at, key));
        }
        if let Some(m) = self.members.get_mut(&p.queue) {
            m.remove(&(key.1, key.0));
        }
        true
    }

    /// Whether the run is in.
    pub fn contains(&self, key: Key) -> bool {
        self.places.contains_key(&key)
    }

    /// The runs waiting for dependency `run_id`, taken out to be classified again (it ended,
    /// or is gone).
    pub fn take_dependents(&mut self, run_id: &str) -> Vec<Key> {
        let keys: Vec<Key> = self
            .on_dep
            .get(run_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for k in &keys {
            self.remove(*k);
        }
        keys
    }

    /// The runs whose `not_before` or queue deadline has come by `now`, taken out to be
    /// classified again.
    pub fn take_due(&mut self, now: i64) -> Vec<Key> {
        let mut keys: BTreeSet<Key> = BTreeSet::new();
        keys.extend(
            self.timed
                .iter()
                .take_while(|(at, _)| *at <= now)
                .map(|x| x.1),
        );
        keys.extend(
            self.expiry
                .iter()
                .take_while(|(at, _)| *at <= now)
                .map(|x| x.1),
        );
        for k in &keys {
            self.remove(*k);
        }
        keys.into_iter().collect()
    }

    /// When something time-based is next due (a `not_before` or a queue deadline).
    pub fn wake_at(&self) -> Option<i64> {
        let t = self.timed.first().map(|x| x.0);
        let e = self.expiry.first().map(|x| x.0);
        t.into_iter().chain(e).min()
    }

    /// What starts now, in order: the heads of the ready sets of the queues with room, highest
    /// priority then oldest across queues, while the host-wide ceiling has room. Looks at one
    /// run per start and one per queue, whatever the number waiting.
    pub fn starts(
        &self,
        queues: &BTreeMap<String, QueueLimits>,
        occupancy: &Occupancy,
    ) -> Vec<Key> {
        let mut heads: Vec<(std::collections::btree_set::Iter<'_, Key>, usize)> = Vec::new();
        for (name, set) in &self.ready {
            let Some(limits) = queues.get(&**name) else {
                continue;
            };
            if limits.paused || set.is_empty() {
                continue;
            }
            let busy = occupancy.running.get(&**name).copied().unwrap_or(0);
            let room = limits.max_concurrent.saturating_sub(busy);
            if room > 0 {
                heads.push((set.iter(), room));
            }
        }
        let mut next: Vec<Option<Key>> =
            heads.iter_mut().map(|(it, _)| it.next().copied()).collect();
        let mut out = Vec::new();
        let mut host_live = occupancy.host_live;
        while host_live < occupancy.host_max {
            let Some(q) = (0..next.len())
                .filter(|q| next[*q].is_some())
                .min_by_key(|q| next[*q])
            else {
                break;
            };
            let Some(key) = next[q] else {
                break;
            };
            out.push(key);
            host_live += 1;
            heads[q].1 -= 1;
            next[q] = if heads[q].1 > 0 {
                heads[q].0.next().copied()
            } else {
                None
            };
        }
        out
    }

    /// Runs in `queue` (ready or waiting for anything).
    pub fn depth(&self, queue: &str) -> usize {
        self.members.get(queue).map_or(0, |m| m.len())
    }

    /// The oldest run in `queue`.
    pub fn oldest(&self, queue: &str) -> Option<Key> {
        let (seq, prio) = self.members.get(queue)?.first()?;
        Some((*prio, *seq))
    }

    /// Queues with runs in them.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, _)| &**k)
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Forget everything (the caller classifies every queued run again).
    pub fn clear(&mut self) {
        *self = Index::default();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{classify, plan, Dep, Verdict, Waiting};
    use super::*;
    use proptest::prelude::*;

    fn key(priority: i32, seq: u64) -> Key {
        (Reverse(priority), seq)
    }

    fn limits(list: &[(&str, usize, bool)]) -> BTreeMap<String, QueueLimits> {
        list.iter()
            .map(|(n, m, p)| {
                (
                    n.to_string(),
                    QueueLimits {
                        max_concurrent: *m,
                        paused: *p,
                    },
                )
            })
            .collect()
    }

    fn occ(running: &[(&str, usize)], host_max: usize) -> Occupancy {
        Occupancy {
            running: running.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            host_live: running.iter().map(|(_, v)| v).sum(),
            host_max,
        }
    }

    #[test]
    fn a_freed_slot_takes_the_head_of_its_queue() {
        let mut ix = Index::default();
        ix.admit(key(0, 1), "a", 0, Class::Ready);
        ix.admit(key(5, 2), "a", 0, Class::Ready);
        ix.admit(key(9, 3), "a", 0, Class::Timed(100));
        ix.admit(key(9, 4), "a", 0, Class::Dep("run_x".into()));
        ix.admit(key(1, 5), "b", 0, Class::Ready);
        let q = limits(&[("a", 1, false), ("b", 1, false)]);
        assert_eq!(
            ix.starts(&q, &occ(&[], 10)),
            vec![key(5, 2), key(1, 5)],
            "the best head of each queue with room; blocked runs are not looked at"
        );
        assert_eq!(ix.starts(&q, &occ(&[("a", 1)], 10)), vec![key(1, 5)]);
        assert_eq!(
            ix.starts(&q, &occ(&[], 1)),
            vec![key(5, 2)],
            "the host ceiling"
        );
        assert_eq!((ix.depth("a"), ix.depth("b"), ix.len()), (4, 1, 5));
        assert_eq!(ix.oldest("a"), Some(key(0, 1)));
        assert_eq!(ix.wake_at(), Some(100));
        assert_eq!(ix.take_due(99), vec![]);
        assert_eq!(ix.take_due(100), vec![key(9, 3)]);
        assert_eq!(ix.take_dependents("run_x"), vec![key(9, 4)]);
        assert_eq!(ix.take_dependents("run_x"), vec![]);
        assert!(ix.remove(key(0, 1)));
        assert!(!ix.remove(key(0, 1)));
        assert_eq!((ix.depth("a"), ix.wake_at()), (1, None));
    }

    #[test]
    fn paused_full_and_unconfigured_queues_start_nothing() {
        let mut ix = Index::default();
        for (i, q) in ["p", "f", "gone"].iter().enumerate() {
            ix.admit(key(0, i as u64), q, 0, Class::Ready);
        }
        let q = limits(&[("p", 4, true), ("f", 2, false)]);
        assert!(ix.starts(&q, &occ(&[("f", 2)], 10)).is_empty());
    }

    #[test]
    fn deadlines_are_due_wherever_the_run_waits() {
        let mut ix = Index::default();
        ix.admit(key(0, 1), "a", 50, Class::Dep("d".into()));
        ix.admit(key(0, 2), "a", 70, Class::Ready);
        assert_eq!(ix.wake_at(), Some(50));
        assert_eq!(ix.take_due(60), vec![key(0, 1)]);
        assert!(ix.take_dependents("d").is_empty());
        assert_eq!(ix.take_due(70), vec![key(0, 2)]);
        assert!(ix.is_empty());
    }

    const NOW: i64 = 1_000_000;

    fn arb_dep() -> impl Strategy<Value = Dep> {
        prop_oneof![
            4 => Just(Dep::Succeeded),
            2 => (0..3u8).prop_map(|i| Dep::Pending { run_id: format!("p{i}") }),
            1 => Just(Dep::Failed { run_id: "f".into(), status: "FAILED".into() }),
            1 => Just(Dep::Missing { run_id: "m".into() }),
        ]
    }

    type Raw = (usize, i32, i64, i64, Vec<Dep>);

    fn arb_run() -> impl Strategy<Value = Raw> {
        (
            0..4usize,
            -2..3i32,
            prop_oneof![Just(0i64), Just(NOW - 5), Just(NOW), Just(NOW + 10)],
            prop_oneof![3 => Just(0i64), 1 => Just(NOW), 1 => Just(NOW + 5)],
            proptest::collection::vec(arb_dep(), 0..3),
        )
    }

    const NAMES: [&str; 4] = ["a", "b", "c", "unconfigured"];

    proptest! {
        /// The indexed decision is the full scan's: the same runs start in the same order, the
        /// same are cancelled for the same reasons, each of the others waits for the same reason
        /// (as read from the state after the starts), and the next wake-up is the same.
        #[test]
        fn the_indexed_decision_is_the_full_scan_decision(
            raw in proptest::collection::vec(arb_run(), 0..40),
            order in any::<u64>(),
            maxes in proptest::collection::vec(0..4usize, 3),
            paused in proptest::collection::vec(proptest::bool::weighted(0.2), 3),
            busy in proptest::collection::vec(0..3usize, 3),
            host_max in 0..10usize,
        ) {
            let queues: BTreeMap<String, QueueLimits> = (0..3)
                .map(|i| (NAMES[i].to_string(), QueueLimits { max_concurrent: maxes[i], paused: paused[i] }))
                .collect();
            let occupancy = occ(&[("a", busy[0]), ("b", busy[1]), ("c", busy[2])], host_max);
            // Spawn order apart from input order: seqs are a permutation.
            let n = raw.len() as u64;
            let waiting: Vec<Waiting<'static>> = raw
                .iter()
                .enumerate()
                .map(|(i, (q, p, nb, exp, deps))| Waiting {
                    queue: NAMES[*q],
                    priority: *p,
                    seq: ((i as u64).wrapping_mul(7).wrapping_add(order) % n.max(1)) * 1000 + i as u64,
                    not_before: *nb,
                    expires_at: *exp,
                    queue_timeout_ms: 1000,
                    deps: deps.clone(),
                })
                .collect();
            let full = plan(NOW, &queues, &occupancy, &waiting);

            let mut ix = Index::default();
            let mut cancel = Vec::new();
            let by_key: HashMap<Key, usize> =
                waiting.iter().enumerate().map(|(i, w)| (key(w.priority, w.seq), i)).collect();
            for (i, w) in waiting.iter().enumerate() {
                let k = key(w.priority, w.seq);
                match classify(NOW, w) {
                    Verdict::Cancel(reason) => cancel.push((i, reason)),
                    Verdict::Deps(p) => ix.admit(k, w.queue, w.expires_at, Class::Dep(p[0].clone())),
                    Verdict::NotBefore(at) => ix.admit(k, w.queue, w.expires_at, Class::Timed(at)),
                    Verdict::Eligible => ix.admit(k, w.queue, w.expires_at, Class::Ready),
                }
            }
            let start: Vec<usize> = ix.starts(&queues, &occupancy).iter().map(|k| by_key[k]).collect();
            prop_assert_eq!(&start, &full.start);
            let mut want = full.cancel.clone();
            want.sort();
            cancel.sort();
            prop_assert_eq!(cancel, want);
            prop_assert_eq!(ix.wake_at(), full.wake_at);
            // Why the rest wait, from the state after the starts.
            let mut after = occupancy.clone();
            for i in &start {
                *after.running.entry(waiting[*i].queue.to_string()).or_default() += 1;
                after.host_live += 1;
            }
            for (i, w) in waiting.iter().enumerate() {
                if full.waiting[i].is_none() {
                    continue;
                }
                let why = super::super::wait_reason(NOW, w, &queues, &after);
                prop_assert_eq!(Some(why), full.waiting[i].clone(), "run {}", i);
            }
        }
    }
}
