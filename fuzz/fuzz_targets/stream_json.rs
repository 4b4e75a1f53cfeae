//! An agent's stdout: the bounded line splitter (src/agent/lines.rs) and the stream-json
//! decoder and progress model (src/agent/stream_json.rs, progress.rs), on whatever the agent
//! prints. No input may make them panic; the splitter agrees with a plain reading of the
//! bytes (split at `\n`, drop a trailing `\r`, skip lines over the bound) whatever the reads
//! are, and never holds more than its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wf_supervisor::agent::lines::{Line, LineSplitter};
use wf_supervisor::agent::progress::Progress;
use wf_supervisor::agent::stream_json::parse_line;

/// A small bound, so the fuzzer reaches oversized lines easily.
const MAX: usize = 64;

/// What the splitter should hand out: (complete lines, oversized count).
fn reference(data: &[u8]) -> (Vec<Vec<u8>>, u64) {
    let mut lines = Vec::new();
    let mut oversized = 0;
    let mut pieces: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let tail = pieces.pop().unwrap_or_default();
    for p in pieces {
        if p.len() > MAX {
            oversized += 1;
        } else {
            lines.push(p.strip_suffix(b"\r").unwrap_or(p).to_vec());
        }
    }
    if tail.len() > MAX {
        oversized += 1;
    } else if !tail.is_empty() {
        lines.push(tail.strip_suffix(b"\r").unwrap_or(tail).to_vec());
    }
    (lines, oversized)
}

fn split(data: &[u8], cut_every: usize) -> (Vec<Vec<u8>>, u64) {
    let mut s = LineSplitter::new(MAX);
    let mut lines = Vec::new();
    for chunk in data.chunks(cut_every.max(1)) {
        s.push_each(chunk, |l| {
            if let Line::Complete(l) = l {
                lines.push(l.to_vec());
            }
        });
        assert!(s.buffered() <= MAX && s.buffer_capacity() <= MAX, "held past the bound");
    }
    lines.extend(s.finish());
    (lines, s.oversized())
}

fuzz_target!(|data: &[u8]| {
    let want = reference(data);
    let cut = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
    for every in [data.len().max(1), cut, 1] {
        assert_eq!(split(data, every), want, "reads of {every} bytes");
    }
    let mut progress = Progress::new();
    for (i, line) in want.0.iter().enumerate() {
        let event = parse_line(line);
        progress.observe(&event, i as i64);
    }
    // Whatever was read, the summary is computable.
    let _ = progress.final_outcome();
    let _ = progress.reported_turns();
});
