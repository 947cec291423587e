//! Generated protobuf messages and tonic stubs for the Exchange control plane.
//!
//! The source of truth is `proto/exchange/v1/control.proto` at the repository
//! root; `build.rs` compiles it with protox, so building needs no `protoc`.
//! Nothing but generated code lives here.
#![allow(
    clippy::doc_lazy_continuation,
    reason = "generated from proto comments we do not control line by line"
)]

/// Version 1 of the control-plane API.
pub mod v1 {
    tonic::include_proto!("exchange.v1");

    /// `control.proto` as an encoded `FileDescriptorSet`, for gRPC server
    /// reflection (`grpcurl` and friends work without the proto files).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/exchange_v1_descriptor.bin"));
}
