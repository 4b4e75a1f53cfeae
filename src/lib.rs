//! wf-supervisor: a per-host daemon that runs AI-agent workflows as its own children and gives
//! orchestrators and operators complete lifecycle control over them through gRPC.
//!
//! The module tree follows the architecture: `supervisor` is the one core task that owns the run
//! table; `run` holds one task per run and the kill plan; `process` is the only place that talks to
//! the kernel with unsafe code (spawn, pidfds, reaping, cgroups, /proc); `grpc` turns requests into
//! messages for the core and errors into statuses in one place.
#![deny(unsafe_code)]

pub mod access;
pub mod agent;
pub mod alerts;
pub mod config;
pub mod daemon;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod present;
pub mod process;
pub mod proto;
pub mod run;
pub mod schedule;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod time;
pub mod usage;
