//! The heartbeat agent: this binary, re-executed as `wf-bench --hb-agent`. It waits for one
//! byte on the benchmark's "go" FIFO, then writes `HB_RATE` lines per second for `HB_SECS`
//! seconds to the fd named by `WF_HEARTBEAT_FD`, on an absolute schedule (line k is due at
//! start + k/rate; a late agent catches up rather than drifting). Just before each write it
//! reads CLOCK_MONOTONIC, puts the time in the line (`hb <k> <ns>`) and keeps it; at the end it
//! writes all its write times, little-endian u64 nanoseconds, to `HB_OUT`. The benchmark
//! shares the clock, so it can tell when each line was written and when it became visible.
use std::io::Read;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::sys;

/// The first argument that selects agent mode.
pub const FLAG: &str = "--hb-agent";

pub fn main() -> ExitCode {
    match agent() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wf-bench agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn num(name: &str) -> Result<u64, String> {
    var(name)?
        .parse()
        .map_err(|e| format!("{name} is not a number: {e}"))
}

fn agent() -> Result<(), String> {
    let fdno = num("WF_HEARTBEAT_FD")? as i32;
    let fd = sys::inherited_fd(fdno).map_err(|e| format!("fd {fdno}: {e}"))?;
    let rate = num("HB_RATE")?.max(1);
    let secs = num("HB_SECS")?;
    let out = var("HB_OUT")?;
    let go = var("BENCH_GO")?;
    {
        // Read-write: the open never blocks, and the byte may have been written already.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&go)
            .map_err(|e| format!("{go}: {e}"))?;
        let mut b = [0u8; 1];
        f.read_exact(&mut b).map_err(|e| format!("{go}: {e}"))?;
    }
    let n = (rate * secs) as usize;
    let period = 1_000_000_000 / rate;
    let start = sys::mono_ns();
    let mut times = Vec::with_capacity(n);
    let mut line = Vec::with_capacity(64);
    for k in 0..n as u64 {
        let due = start + k * period;
        let now = sys::mono_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let t = sys::mono_ns();
        line.clear();
        let _ = writeln!(line, "hb {k} {t}");
        let mut done = 0;
        while done < line.len() {
            match nix::unistd::write(fd, &line[done..]) {
                Ok(w) => done += w,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("heartbeat write {k}: {e}")),
            }
        }
        times.push(t);
    }
    let bytes: Vec<u8> = times.iter().flat_map(|t| t.to_le_bytes()).collect();
    std::fs::write(&out, bytes).map_err(|e| format!("{out}: {e}"))
}
