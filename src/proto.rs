//! The generated API types and service stubs of `wf.supervisor.v1`, and the file descriptor set
//! that server reflection serves.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("wf.supervisor.v1");

/// The encoded descriptor set of the API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("wf_supervisor_v1_descriptor");
