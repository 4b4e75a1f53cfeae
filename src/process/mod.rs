//! The kernel seam: spawn, pidfds, the reaper, signals, cgroups and /proc scans. This is the only
//! part of the daemon with unsafe code, each block with a `Safety:` note.
pub mod cgroup;
pub mod cgroup_v1;
pub mod limits;
pub mod peercred;
pub mod pidfd;
pub mod priority;
pub mod procscan;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod splice;
pub mod usage;
pub mod vfork;
