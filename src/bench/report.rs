//! Results: one row per metric (a distribution or a single value, the raw baseline beside it,
//! their ratio, the target and PASS/MISS), printed as a table for humans and written with every
//! raw sample as JSON, together with what machine produced them.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::daemon::StopReport;
use super::stats::Summary;

/// One metric of one measure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub measure: &'static str,
    pub metric: String,
    pub unit: &'static str,
    /// A distribution over trials...
    pub dist: Option<Summary>,
    /// ...or a single value.
    pub value: Option<f64>,
    pub raw: Option<Summary>,
    pub raw_value: Option<f64>,
    /// Daemon over raw: p50 over p50 for distributions, value over value otherwise.
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub pass: Option<bool>,
}

impl Row {
    fn new(measure: &'static str, metric: &str, unit: &'static str) -> Row {
        Row {
            measure,
            metric: metric.to_string(),
            unit,
            dist: None,
            value: None,
            raw: None,
            raw_value: None,
            ratio: None,
            target: None,
            pass: None,
        }
    }

    /// A distribution row.
    pub fn dist(measure: &'static str, metric: &str, unit: &'static str, samples: &[f64]) -> Row {
        Row {
            dist: Summary::of(samples),
            ..Row::new(measure, metric, unit)
        }
    }

    /// A single-value row.
    pub fn value(measure: &'static str, metric: &str, unit: &'static str, v: f64) -> Row {
        Row {
            value: Some(v),
            ..Row::new(measure, metric, unit)
        }
    }

    /// The raw baseline's samples of the same metric.
    pub fn raw_dist(mut self, samples: &[f64]) -> Row {
        self.raw = Summary::of(samples);
        self.ratio = match (self.dist, self.raw) {
            (Some(d), Some(r)) if r.p50 > 0.0 => Some(d.p50 / r.p50),
            _ => None,
        };
        self
    }

    /// The raw baseline's value of the same metric.
    pub fn raw_value(mut self, v: f64) -> Row {
        self.raw_value = Some(v);
        self.ratio = self.value.filter(|_| v > 0.0).map(|x| x / v);
        self
    }

    /// The target in words and whether it was met.
    pub fn target(mut self, text: impl Into<String>, pass: bool) -> Row {
        self.target = Some(text.into());
        self.pass = Some(pass);
        self
    }
}

/// What one measure produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub measure: &'static str,
    pub rows: Vec<Row>,
    /// Sentences for the reader: method, oddities seen.
    pub notes: Vec<String>,
    /// Every raw sample and answer, for the JSON.
    pub data: serde_json::Value,
    /// How each daemon of this measure stopped.
    pub daemons: Vec<StopReport>,
    pub error: Option<String>,
    pub seconds: f64,
}

impl Report {
    pub fn new(measure: &'static str) -> Report {
        Report {
            measure,
            rows: Vec::new(),
            notes: Vec::new(),
            data: serde_json::Value::Null,
            daemons: Vec::new(),
            error: None,
            seconds: 0.0,
        }
    }

    /// Note anything odd in how a daemon stopped.
    pub fn daemon_stopped(&mut self, s: StopReport) {
        if s.killed {
            self.notes
                .push("the daemon did not exit within 20 s of SIGTERM and was killed".to_string());
        }
        if s.leftovers > 0 {
            self.notes.push(format!(
                "{} process(es) of this measure's runs were still alive after the daemon exited; \
                 the benchmark killed them",
                s.leftovers
            ));
        }
        if s.log_errors + s.log_warnings > 0 {
            self.notes.push(format!(
                "the daemon logged {} ERROR and {} WARN line(s), e.g. {}",
                s.log_errors,
                s.log_warnings,
                s.log_samples.first().map(String::as_str).unwrap_or("")
            ));
        }
        self.daemons.push(s);
    }
}

/// Numbers with about three significant digits.
fn num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// The human table.
pub fn table(reports: &[Report]) -> String {
    let header = [
        "measure",
        "metric",
        "unit",
        "n",
        "min",
        "p50|value",
        "p95",
        "p99",
        "max",
        "raw p50",
        "raw p99",
        "ratio",
        "target",
        "result",
    ];
    let mut lines: Vec<Vec<String>> = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            let mut cells = vec![r.measure.to_string(), format!("ERROR: {e}")];
            cells.resize(header.len(), String::new());
            cells[13] = "ERROR".into();
            lines.push(cells);
        }
        for row in &r.rows {
            let mut c = vec![
                row.measure.to_string(),
                row.metric.clone(),
                row.unit.to_string(),
            ];
            match (row.dist, row.value) {
                (Some(d), _) => c.extend([
                    d.n.to_string(),
                    num(d.min),
                    num(d.p50),
                    num(d.p95),
                    num(d.p99),
                    num(d.max),
                ]),
                (None, Some(v)) => c.extend([
                    String::new(),
                    String::new(),
                    num(v),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
                (None, None) => c.extend(std::iter::repeat_n("-".to_string(), 6)),
            }
            match (row.raw, row.raw_value) {
                (Some(r), _) => c.extend([num(r.p50), num(r.p99)]),
                (None, Some(v)) => c.extend([num(v), String::new()]),
                (None, None) => c.extend([String::new(), String::new()]),
            }
            c.push(
                row.ratio
                    .map(|x| format!("x{}", num(x)))
                    .unwrap_or_default(),
            );
            c.push(row.target.clone().unwrap_or_default());
            c.push(match row.pass {
                Some(true) => "PASS".into(),
                Some(false) => "MISS".into(),
                None => String::new(),
            });
            lines.push(c);
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for l in &lines {
        for (i, cell) in l.iter().enumerate() {
            // The error message may be long: it does not widen the metric column.
            if !(i == 1 && cell.starts_with("ERROR: ")) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let numeric = |i: usize| (3..=11).contains(&i);
    let fmt_line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if numeric(i) {
                let _ = write!(s, "{cell:>w$}", w = widths[i]);
            } else {
                let _ = write!(s, "{cell:<w$}", w = widths[i]);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    out.push_str(&fmt_line(&head));
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    let mut last = String::new();
    for l in &lines {
        if !last.is_empty() && l[0] != last {
            out.push('\n');
        }
        last = l[0].clone();
        out.push_str(&fmt_line(l));
        out.push('\n');
    }
    out
}

/// The notes under the table.
pub fn notes(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        for n in &r.notes {
            let _ = writeln!(out, "- {}: {n}", r.measure);
        }
    }
    out
}

/// What machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub mem_total_kib: u64,
    pub cpu_model: String,
    pub date: String,
    pub unix_time: u64,
    pub loadavg_start: String,
    pub nofile_limit: u64,
}

impl Machine {
    pub fn probe(nofile_limit: u64) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let mem_total_kib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let now = std::time::SystemTime::now();
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            mem_total_kib,
            cpu_model,
            date: humantime::format_rfc3339_seconds(now).to_string(),
            unix_time: now
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            loadavg_start: read("/proc/loadavg").trim().to_string(),
            nofile_limit,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} cpu(s) ({}), {} MiB, kernel {}, {}, load {}",
            self.nproc,
            if self.cpu_model.is_empty() {
                "unknown model"
            } else {
                &self.cpu_model
            },
            self.mem_total_kib / 1024,
            self.kernel,
            self.date,
            self.loadavg_start
        )
    }
}

/// Write the JSON document to `dir/bench-<unix time>.json`.
pub fn write_json(dir: &Path, unix_time: u64, doc: &serde_json::Value) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut path = dir.join(format!("bench-{unix_time}.json"));
    let mut i = 1;
    while path.exists() {
        path = dir.join(format!("bench-{unix_time}-{i}.json"));
        i += 1;
    }
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
