//! Compiles `proto/` with protox, so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let file = format!("{root}/exchange/v1/control.proto");
    // Relative to this package, so that a target directory shared by two
    // checkouts (CI's clone and a developer's tree) watches the proto of
    // the checkout being built, not of the one built last.
    println!("cargo:rerun-if-changed=../../proto/exchange/v1/control.proto");
    println!("cargo:rerun-if-changed=../../proto/google/type/date.proto");
    let descriptors = protox::compile([file.as_str()], [root])?;
    // The encoded descriptors, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("exchange_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".google.type.Date", "crate::v1::typed::Date")
        .compile_fds(descriptors)?;
    Ok(())
}
