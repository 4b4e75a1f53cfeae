//! Marker lines through a named pipe: the cheapest proof that an agent's process ran. The
//! benchmark makes the FIFO and opens it read-write (so opening never blocks, and lines written
//! before we read are kept in the pipe); the agent does `echo "ready $BENCH_TRIAL" > "$BENCH_FIFO"`.
//! Each line is timestamped when the read that completed it returned.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// One FIFO, read by the benchmark.
pub struct Fifo {
    path: PathBuf,
    rx: pipe::Receiver,
    buf: Vec<u8>,
    /// When the bytes now in `buf` arrived.
    at: Instant,
}

impl Fifo {
    /// Make the FIFO at `path` and open it.
    pub fn create(path: &Path) -> anyhow::Result<Fifo> {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot make FIFO {}", path.display()))?;
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .with_context(|| format!("cannot open FIFO {}", path.display()))?;
        Ok(Fifo {
            path: path.to_path_buf(),
            rx,
            buf: Vec::new(),
            at: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next line and when it arrived.
    pub async fn line(&mut self, timeout: Duration) -> anyhow::Result<(String, Instant)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                return Ok((text, self.at));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.rx.read(&mut chunk))
                .await
                .map_err(|_| {
                    anyhow!(
                        "no marker line in {} within {timeout:?}",
                        self.path.display()
                    )
                })?
                .context("reading the FIFO")?;
            self.at = Instant::now();
            if n == 0 {
                bail!("the FIFO {} closed", self.path.display());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Wait for the line `want`, skipping stale lines of earlier trials. Returns its arrival.
    pub async fn wait_line(&mut self, want: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (line, at) = self
                .line(left)
                .await
                .with_context(|| format!("waiting for {want:?}"))?;
            if line == want {
                return Ok(at);
            }
        }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
