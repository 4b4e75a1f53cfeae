//! wf-bench: the benchmark of wf-supervisor. Starts a real daemon next to this executable and
//! drives it through its gRPC socket; see `bench/mod.rs` for the theory of operation, and
//! `wf-bench --help` for the flags.
#![deny(unsafe_code)]

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
