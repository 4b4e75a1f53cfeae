//! What one Watch stream has yet to send: the daemon's events in their order, except that a
//! run's heartbeat event still waiting is brought up to date in place by the run's next one.
//!
//! A watcher that reads slower than events come (a client starved of CPU on a busy host, a
//! slow network) used to get every event in order, each one older than the last, until the
//! daemon's broadcast overflowed and it was told it had missed some. A heartbeat event says
//! only "the run's count is now N, its last beat at T"; a later one for the same run says all
//! an older one does. So while a stream cannot take more, the heartbeats of each run merge
//! into one slot that always carries the newest count, and the watcher catches up with the
//! present instead of replaying the past. State changes are never merged or reordered: a
//! heartbeat that comes after a state change of its run is queued after it.
//!
//! Only what cannot be merged is bounded: past `cap` waiting events the rest are counted and
//! the watcher is told at that place in the stream how many it missed, so it can re-list.
use std::collections::{HashMap, VecDeque};

use crate::supervisor::RunEvent;

/// One thing to send.
#[derive(Debug, Clone)]
pub enum Item {
    Event(RunEvent),
    /// This many events were not kept here.
    Skipped(u64),
}

#[derive(Debug)]
pub struct WatchQueue {
    items: VecDeque<Item>,
    /// The position (counted from the first item ever queued) of each run's heartbeat slot
    /// that may still be brought up to date.
    beat_slot: HashMap<String, u64>,
    /// The position of `items[0]`.
    base: u64,
    cap: usize,
    /// Events among `items` (the rest are gaps).
    events: usize,
    /// Heartbeat events merged into a waiting one, over the queue's life.
    merged: u64,
}

impl WatchQueue {
    /// A queue that holds at most `cap` events that cannot be merged (at least one).
    pub fn new(cap: usize) -> Self {
        WatchQueue {
            items: VecDeque::new(),
            beat_slot: HashMap::new(),
            base: 0,
            cap: cap.max(1),
            events: 0,
            merged: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Heartbeat events that were merged into a waiting one.
    pub fn merged(&self) -> u64 {
        self.merged
    }

    pub fn push(&mut self, ev: RunEvent) {
        // A heartbeat event is the one that carries `heartbeat` (as the status page reads it).
        let heartbeat = ev.heartbeat.is_some();
        if heartbeat {
            if let Some(&pos) = self.beat_slot.get(&ev.run_id) {
                if let Some(Item::Event(waiting)) = self.items.get_mut((pos - self.base) as usize) {
                    *waiting = ev;
                    self.merged += 1;
                    return;
                }
            }
        } else {
            // Heartbeats after this change go after it.
            self.beat_slot.remove(&ev.run_id);
        }
        if self.events >= self.cap {
            self.skipped(1);
            return;
        }
        if heartbeat {
            let pos = self.base + self.items.len() as u64;
            self.beat_slot.insert(ev.run_id.clone(), pos);
        }
        self.items.push_back(Item::Event(ev));
        self.events += 1;
    }

    /// `n` events never reached this queue (or did not fit): the watcher hears it here.
    pub fn skipped(&mut self, n: u64) {
        if let Some(Item::Skipped(m)) = self.items.back_mut() {
            *m += n;
            return;
        }
        self.items.push_back(Item::Skipped(n));
        // Nothing may merge across the gap: the watcher will re-list after it.
        self.beat_slot.clear();
    }

    pub fn pop(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        let pos = self.base;
        self.base += 1;
        if let Item::Event(e) = &item {
            self.events -= 1;
            if self.beat_slot.get(&e.run_id) == Some(&pos) {
                self.beat_slot.remove(&e.run_id);
            }
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunStatus;

    fn beat(run: &str, count: u64) -> RunEvent {
        RunEvent {
            run_id: run.into(),
            at: count as i64,
            kind: "heartbeat",
            message: String::new(),
            status: RunStatus::Running,
            run: None,
            heartbeat: Some((count as i64, count)),
        }
    }

    fn change(run: &str, kind: &'static str) -> RunEvent {
        RunEvent {
            run_id: run.into(),
            at: 0,
            kind,
            message: String::new(),
            status: RunStatus::Running,
            run: None,
            heartbeat: None,
        }
    }

    fn drain(q: &mut WatchQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|i| match i {
                Item::Event(e) => match e.heartbeat {
                    Some((_, n)) => format!("{}:{n}", e.run_id),
                    None => format!("{}:{}", e.run_id, e.kind),
                },
                Item::Skipped(n) => format!("skipped {n}"),
            })
            .collect()
    }

    #[test]
    fn a_waiting_heartbeat_takes_the_runs_newest_count_in_its_place() {
        let mut q = WatchQueue::new(100);
        q.push(beat("a", 1));
        q.push(beat("b", 1));
        q.push(beat("a", 2));
        q.push(beat("a", 3));
        q.push(beat("b", 2));
        assert_eq!(drain(&mut q), ["a:3", "b:2"]);
        assert_eq!(q.merged(), 3);
    }

    #[test]
    fn a_heartbeat_after_a_state_change_of_its_run_stays_after_it() {
        let mut q = WatchQueue::new(100);
        q.push(beat("a", 1));
        q.push(change("a", "stopping"));
        q.push(beat("a", 2));
        q.push(beat("a", 3));
        q.push(change("b", "started"));
        q.push(beat("a", 4));
        assert_eq!(drain(&mut q), ["a:1", "a:stopping", "a:4", "b:started"]);
    }

    #[test]
    fn a_heartbeat_already_sent_is_not_merged_into() {
        let mut q = WatchQueue::new(100);
        q.push(beat("a", 1));
        assert_eq!(drain(&mut q), ["a:1"]);
        q.push(beat("a", 2));
        q.push(beat("a", 3));
        assert_eq!(drain(&mut q), ["a:3"]);
        assert_eq!(q.merged(), 1);
    }

    #[test]
    fn state_changes_are_bounded_and_the_gap_is_told_where_it_is() {
        let mut q = WatchQueue::new(2);
        q.push(change("a", "spawned"));
        q.push(change("b", "spawned"));
        q.push(change("c", "spawned"));
        q.push(change("d", "spawned"));
        // A heartbeat of a run with no waiting slot does not fit either.
        q.push(beat("a", 1));
        assert_eq!(q.len(), 3);
        assert!(matches!(q.pop(), Some(Item::Event(e)) if e.run_id == "a"));
        // Room again: new events go after the gap, not before it.
        q.push(change("e", "spawned"));
        assert_eq!(drain(&mut q), ["b:spawned", "skipped 3", "e:spawned"]);
    }

    #[test]
    fn a_full_queue_still_brings_waiting_heartbeats_up_to_date() {
        let mut q = WatchQueue::new(2);
        q.push(beat("a", 1));
        q.push(beat("b", 1));
        for n in 2..1000 {
            q.push(beat("a", n));
            q.push(beat("b", n));
        }
        assert_eq!(drain(&mut q), ["a:999", "b:999"]);
    }

    #[test]
    fn nothing_merges_across_a_gap() {
        let mut q = WatchQueue::new(100);
        q.push(beat("a", 1));
        q.skipped(7);
        q.push(beat("a", 2));
        q.skipped(1);
        assert_eq!(drain(&mut q), ["a:1", "skipped 7", "a:2", "skipped 1"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Beat(usize),
            Change(usize),
            Pop(usize),
            Skip(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0usize..3).prop_map(Op::Beat),
                2 => (0usize..3).prop_map(Op::Change),
                3 => (0usize..6).prop_map(Op::Pop),
                1 => (1u64..4).prop_map(Op::Skip),
            ]
        }

        /// A state change's kind carries its order among its run's changes, as "c<N>".
        const KINDS: [&str; 8] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];

        proptest! {
            /// For any events, reads and gaps: each run's heartbeat counts only go up; its
            /// state changes arrive in order, all of them unless a gap was told; a heartbeat
            /// never crosses a state change of its run; the newest count of every run arrives
            /// unless a gap was told; and no more than `cap` events ever wait.
            #[test]
            fn merging_loses_and_reorders_nothing_a_watcher_relies_on(
                cap in 1usize..8,
                ops in proptest::collection::vec(op(), 0..120),
            ) {
                let runs = ["a", "b", "c"];
                let mut q = WatchQueue::new(cap);
                let (mut beats, mut changes) = ([0u64; 3], [0usize; 3]);
                // Per run: (heartbeat count, changes pushed before it) as pushed.
                let mut pushed_beats: Vec<Vec<(u64, usize)>> = vec![Vec::new(); 3];
                let mut out = Vec::new();
                let mut gaps = false;
                for op in ops {
                    match op {
                        Op::Beat(r) => {
                            beats[r] += 1;
                            pushed_beats[r].push((beats[r], changes[r]));
                            q.push(beat(runs[r], beats[r]));
                        }
                        Op::Change(r) if changes[r] < KINDS.len() => {
                            q.push(change(runs[r], KINDS[changes[r]]));
                            changes[r] += 1;
                        }
                        Op::Change(_) => {}
                        Op::Pop(n) => out.extend((0..n).map_while(|_| q.pop())),
                        Op::Skip(n) => {
                            gaps = true;
                            q.skipped(n);
                        }
                    }
                    prop_assert!(q.events <= cap, "{} events wait, cap {cap}", q.events);
                }
                out.extend(std::iter::from_fn(|| q.pop()));
                gaps |= out.iter().any(|i| matches!(i, Item::Skipped(_)));

                for (r, run) in runs.iter().enumerate() {
                    let mut seen_changes = Vec::new();
                    let mut last_beat = 0;
                    for item in &out {
                        let Item::Event(e) = item else { continue };
                        if e.run_id != *run {
                            continue;
                        }
                        match e.heartbeat {
                            Some((_, n)) => {
                                prop_assert!(n > last_beat, "{run}: count {n} after {last_beat}");
                                last_beat = n;
                                let before = pushed_beats[r]
                                    .iter()
                                    .find(|(c, _)| *c == n)
                                    .map(|(_, k)| *k);
                                if !gaps {
                                    prop_assert_eq!(
                                        before, Some(seen_changes.len()),
                                        "{}: heartbeat {} crossed a state change", run, n
                                    );
                                }
                            }
                            None => seen_changes.push(e.kind),
                        }
                    }
                    let all = &KINDS[..changes[r]];
                    // In order, whether or not some were skipped.
                    let mut rest = all.iter();
                    for k in &seen_changes {
                        prop_assert!(rest.any(|x| x == k), "{run}: {seen_changes:?} not in order");
                    }
                    if !gaps {
                        prop_assert_eq!(&seen_changes[..], all, "{}: a state change lost", run);
                        prop_assert_eq!(last_beat, beats[r], "{}: the newest count lost", run);
                    }
                }
            }
        }
    }
}
