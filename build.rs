//! Compiles the API definition. protoc comes from a crate so that a machine with only the Rust
//! toolchain can build the project.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Safety of set_var: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Ordered maps: no hashing on the hot List path, and stable output.
        .btree_map(".")
        .file_descriptor_set_path(out.join("wf_supervisor_v1_descriptor.bin"))
        .compile_protos(&["proto/wf/supervisor/v1/supervisor.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
