//! The HTTP/2 `:authority` rewriter on the unix socket (src/grpc/uds_authority.rs) reads every
//! byte a local client sends before the HTTP/2 library does. No input may make it panic, and
//! how the bytes are split into reads must not change what comes out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wf_supervisor::grpc::rewrite_bytes;

fuzz_target!(|data: &[u8]| {
    // The input names its own read boundaries: every byte whose low bits are 0 ends a read
    // (about one in eight), so every split the fuzzer can think of is reachable.
    let whole = rewrite_bytes(data, &[]);
    let cuts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i] & 7 == 0)
        .map(|i| i + 1)
        .collect();
    assert_eq!(rewrite_bytes(data, &cuts), whole, "the split of the reads changed the output");
    let singles: Vec<usize> = (1..data.len()).collect();
    assert_eq!(rewrite_bytes(data, &singles), whole, "one-byte reads changed the output");
    // Rewriting what was rewritten changes nothing more: the replacement is final.
    assert_eq!(rewrite_bytes(&whole, &[]), whole, "the rewrite is not idempotent");
});
