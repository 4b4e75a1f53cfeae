//! `wf-fake-agent`: a stand-in for an agent CLI that the integration tests drive with flags.
//!
//! It can do everything a misbehaving agent does to a supervisor, one flag at a time and in any
//! combination: print a marker, ignore SIGTERM, start children that sleep forever, escape its
//! process group with a double fork and `setsid`, flood stdout, write heartbeats to fd 3, report
//! its open fds and environment, replay Claude stream-json, hang, and exit with any code.
//!
//! Steps run in a fixed order, so a test can rely on the order of the lines it reads back:
//! marker, signal setup, children, escapee, pidfile, fds/env, heartbeats, replay, flood, sleep,
//! hang, exit. Every stdout line is flushed as soon as it is written.
//!
//! Children are the same binary re-executed as `/proc/self/exe --child-sleep`; the escapee is a
//! plain fork of this (still single-threaded) process. Both inherit the TERM disposition.
//!
//! The flood is a reproducible byte stream: the prefix of length BYTES of the concatenation of
//! 64-byte lines `flood <line number, zero-padded to 57 digits>\n`, lines counted from 0. Tests
//! compute the expected tail of the output from that rule.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, setsid, ForkResult};

/// Size of one flood write and of the flood line unit.
const FLOOD_CHUNK: usize = 64 * 1024;
const FLOOD_LINE: usize = 64;

#[derive(Parser, Debug)]
#[command(about = "A fake agent for wf-supervisor's integration tests")]
struct Args {
    /// Print this line on stdout first thing.
    #[arg(long)]
    marker: Option<String>,
    /// Ignore SIGTERM, in this process and in every process it starts.
    #[arg(long)]
    ignore_term: bool,
    /// Start N children that sleep forever; print `children: PID...`.
    #[arg(long, default_value_t = 0)]
    children: usize,
    /// Double-fork a grandchild that calls setsid() and sleeps forever; print `escapee: PID`.
    #[arg(long)]
    escape_setsid: bool,
    /// Write every pid started (self, children, escapee) to this file, one per line.
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Write this many bytes to stdout in 64 KiB writes, then report the rate on stderr.
    #[arg(long)]
    flood: Option<u64>,
    /// Write N lines to the heartbeat fd named by WF_HEARTBEAT_FD.
    #[arg(long, default_value_t = 0)]
    heartbeats: u64,
    /// Pause between heartbeats.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval_ms: u64,
    /// Print `fds: ...` (the open fds) and `env: WF_RUN_ID=... WF_HEARTBEAT_FD=...`.
    #[arg(long)]
    print_fds: bool,
    /// Print the lines of this file (Claude stream-json) to stdout.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Pause between replayed lines.
    #[arg(long, default_value_t = 0)]
    replay_delay_ms: u64,
    /// Allocate this many MiB and touch every page (kept until exit); print `allocated: N`.
    #[arg(long, default_value_t = 0)]
    alloc_mib: u64,
    /// Spin on the CPU for this long (wall clock); print `burned: MS`.
    #[arg(long, default_value_t = 0)]
    burn_cpu_ms: u64,
    /// Sleep this long before exiting.
    #[arg(long)]
    sleep_ms: Option<u64>,
    /// Sleep forever.
    #[arg(long)]
    hang: bool,
    /// Exit code at the end.
    #[arg(long, default_value_t = 0)]
    exit: u8,
    /// This process exits promptly on TERM while the processes it starts ignore it.
    #[arg(long)]
    die_on_term: bool,
    /// Internal: the child mode, sleep forever.
    #[arg(long, hide = true)]
    child_sleep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wf-fake-agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    if args.child_sleep {
        if args.ignore_term {
            set_term(SigHandler::SigIgn)?;
        }
        sleep_forever();
    }
    if let Some(marker) = &args.marker {
        say(marker);
    }
    // Everything started below inherits the disposition in place at fork time.
    if args.ignore_term || args.die_on_term {
        set_term(SigHandler::SigIgn)?;
    }
    let mut pids = vec![std::process::id() as i32];
    if args.children > 0 {
        let children = start_children(args.children, args.ignore_term || args.die_on_term)?;
        say(&format!("children: {}", join(&children)));
        pids.extend(children);
    }
    if args.escape_setsid {
        let escapee = start_escapee()?;
        say(&format!("escapee: {escapee}"));
        pids.push(escapee);
    }
    if args.die_on_term && !args.ignore_term {
        set_term(SigHandler::SigDfl)?;
    }
    if let Some(path) = &args.pidfile {
        write_pidfile(path, &pids)?;
    }
    if args.print_fds {
        say(&format!("fds: {}", join(&open_fds()?)));
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "<unset>".into());
        say(&format!(
            "env: WF_RUN_ID={} WF_HEARTBEAT_FD={}",
            var("WF_RUN_ID"),
            var("WF_HEARTBEAT_FD")
        ));
    }
    if args.heartbeats > 0 {
        heartbeats(args.heartbeats, args.heartbeat_interval_ms)?;
    }
    if let Some(path) = &args.replay {
        replay(path, args.replay_delay_ms)?;
    }
    if let Some(bytes) = args.flood {
        flood(bytes)?;
    }
    // Kept alive to the end of `run`, so the memory stays in use through the sleep and hang.
    let mut held: Vec<u8> = Vec::new();
    if args.alloc_mib > 0 {
        let len = (args.alloc_mib as usize) << 20;
        held = vec![0u8; len];
        // calloc'd pages are not resident until written: touch one byte in each.
        for i in (0..len).step_by(4096) {
            held[i] = 1;
        }
        say(&format!(
            "allocated: {}",
            std::hint::black_box(&held).len() >> 20
        ));
    }
    if args.burn_cpu_ms > 0 {
        let until = Instant::now() + Duration::from_millis(args.burn_cpu_ms);
        let mut x: u64 = 1;
        while Instant::now() < until {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        say(&format!("burned: {}", args.burn_cpu_ms));
    }
    if let Some(ms) = args.sleep_ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if args.hang {
        sleep_forever();
    }
    drop(held);
    Ok(ExitCode::from(args.exit))
}

/// Prints one line on stdout and flushes it; a closed stdout is not this program's problem.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn join(items: &[i32]) -> String {
    items
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn set_term(handler: SigHandler) -> Result<(), String> {
    // Safety: SigIgn and SigDfl install no Rust code as a handler.
    unsafe { signal(Signal::SIGTERM, handler) }
        .map(drop)
        .map_err(|e| format!("setting the SIGTERM disposition: {e}"))
}

fn start_children(n: usize, ignore_term: bool) -> Result<Vec<i32>, String> {
    (0..n)
        .map(|_| {
            let mut cmd = Command::new("/proc/self/exe");
            cmd.arg("--child-sleep").stdin(Stdio::null());
            if ignore_term {
                cmd.arg("--ignore-term");
            }
            // The Child handle is dropped without waiting: the child outlives it on purpose.
            cmd.spawn()
                .map(|child| child.id() as i32)
                .map_err(|e| format!("starting a child: {e}"))
        })
        .collect()
}

/// Forks a middle process that forks the escapee and exits at once; the escapee calls setsid(),
/// so it is in neither this process group nor this session, and reports its pid through a pipe.
fn start_escapee() -> Result<i32, String> {
    let (read_end, write_end) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // Safety: this process is single-threaded here (children were started with fork+exec by std,
    // which leaves no threads behind), so the forked copies may run arbitrary code.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            // Safety: as above, the middle process is single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let _ = setsid();
                    let mut w = File::from(write_end);
                    let _ = writeln!(w, "{}", std::process::id());
                    drop(w);
                    sleep_forever();
                }
                // Safety: _exit skips atexit handlers and buffers that belong to the parent.
                Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            waitpid(child, None).map_err(|e| format!("waiting for the middle process: {e}"))?;
            let mut line = String::new();
            BufReader::new(File::from(read_end))
                .read_line(&mut line)
                .map_err(|e| format!("reading the escapee's pid: {e}"))?;
            line.trim()
                .parse()
                .map_err(|_| format!("the escapee reported no pid: {line:?}"))
        }
    }
}

fn write_pidfile(path: &PathBuf, pids: &[i32]) -> Result<(), String> {
    let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The open fds, from /proc/self/fd. The directory's own fd is closed again when the listing is
/// done, so it is the one entry whose /proc/self/fd link no longer exists.
fn open_fds() -> Result<Vec<i32>, String> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("reading /proc/self/fd: {e}"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut fds: Vec<i32> = listed
        .into_iter()
        .filter(|fd| std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

fn heartbeats(n: u64, interval_ms: u64) -> Result<(), String> {
    let var = std::env::var("WF_HEARTBEAT_FD")
        .map_err(|_| "--heartbeats needs WF_HEARTBEAT_FD in the environment".to_string())?;
    let fd: i32 = var
        .parse()
        .map_err(|_| format!("WF_HEARTBEAT_FD is not an fd number: {var:?}"))?;
    if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(format!("WF_HEARTBEAT_FD={fd} is not an open fd"));
    }
    // Safety: the fd was checked to be open, was inherited for this purpose, and nothing else in
    // this process uses it; the File owns it from here on.
    let mut out = unsafe { File::from_raw_fd(fd) };
    for i in 1..=n {
        writeln!(out, "heartbeat {i}").map_err(|e| format!("writing heartbeat {i}: {e}"))?;
        if i < n {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
    }
    Ok(())
}

fn replay(path: &PathBuf, delay_ms: u64) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("reading {}: {e}", path.display()))?;
        if i > 0 && delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        say(&line);
    }
    Ok(())
}

/// Writes the flood stream (see the module doc) and reports the rate on stderr.
fn flood(total: u64) -> Result<(), String> {
    let start = Instant::now();
    // Straight to fd 1, bypassing std's line buffering, so each write(2) is one whole chunk.
    let out = io::stdout();
    let mut buf = vec![0u8; FLOOD_CHUNK];
    let mut written = 0u64;
    while written < total {
        let len = FLOOD_CHUNK.min((total - written) as usize);
        fill_flood(&mut buf[..len], written);
        let mut done = 0;
        while done < len {
            done += nix::unistd::write(out.as_fd(), &buf[done..len])
                .map_err(|e| format!("flood write at byte {}: {e}", written + done as u64))?;
        }
        written += len as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "flood: {total} bytes in {secs:.3} s ({:.1} MB/s)",
        total as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}

/// Fills `buf` with the flood stream starting at byte `offset`.
fn fill_flood(buf: &mut [u8], offset: u64) {
    let mut line = [0u8; FLOOD_LINE];
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let number = pos / FLOOD_LINE as u64;
        let within = (pos % FLOOD_LINE as u64) as usize;
        flood_line(number, &mut line);
        let n = (FLOOD_LINE - within).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&line[within..within + n]);
        i += n;
        pos += n as u64;
    }
}

/// Line `number` of the flood: `flood ` + 57 zero-padded digits + `\n`.
fn flood_line(number: u64, line: &mut [u8; FLOOD_LINE]) {
    line[..6].copy_from_slice(b"flood ");
    let mut n = number;
    for digit in line[6..FLOOD_LINE - 1].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    line[FLOOD_LINE - 1] = b'\n';
}
