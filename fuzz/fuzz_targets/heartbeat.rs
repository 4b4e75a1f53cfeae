//! The heartbeat pipe (fd 3, src/agent/heartbeat.rs): any line is a heartbeat, a JSON line may
//! carry progress, a message and a critical section. No input may make the tracker panic, and
//! what it keeps stays within its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wf_supervisor::agent::heartbeat::{parse_heartbeat, HeartbeatTracker};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        let hb = parse_heartbeat(line);
        if let Some(p) = hb.progress {
            assert!(p.is_finite(), "progress {p} kept");
        }
    }
    let mut t = HeartbeatTracker::new(256);
    let cut = data.first().map_or(1, |b| usize::from(*b % 13) + 1);
    let mut seen = 0;
    for (i, chunk) in data.chunks(cut).enumerate() {
        seen += t.feed(chunk, i as i64);
    }
    seen += t.finish(data.len() as i64);
    // Every line is one heartbeat, an oversized one too, and so is an unterminated tail.
    let newlines = data.iter().filter(|b| **b == b'\n').count();
    let tail = usize::from(data.last().is_some_and(|b| *b != b'\n'));
    assert_eq!(seen, newlines + tail, "heartbeats counted");
});
