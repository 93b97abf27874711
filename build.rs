//! Generates the KServe v2 / Triton gRPC client (src/offload) from the
//! vendored protocol definitions, with a protoc shipped as a crate so that
//! no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["src/offload/proto/grpc_service.proto", "src/offload/proto/model_config.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // SAFETY: the build script is single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&protos, &["src/offload/proto"])?;
    Ok(())
}
