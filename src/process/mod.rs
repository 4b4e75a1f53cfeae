//! The kernel seam: spawn, pidfds, the reaper, signals, cgroups and /proc scans.
pub mod signals;
