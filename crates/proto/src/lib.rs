//! Generated protobuf messages and tonic stubs for the Exchange control plane.
//!
//! The source of truth is `proto/exchange/v1/control.proto` at the repository
//! root; `build.rs` compiles it with protox, so building needs no `protoc`.
//! Besides generated code, [`v1::typed`] converts between the v1 text and
//! `*_unix` fields and their typed forms (enums, `google.protobuf.Timestamp`).
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

    /// The typed forms of v1's text and `*_unix` fields, which the server
    /// fills beside them.
    pub mod typed {
        use super::{DisputeState, GrantState, RequestState};

        pub use prost_types::Timestamp;

        /// Seconds since the epoch as a Timestamp; `None` for 0 (not yet).
        pub fn timestamp(unix_secs: i64) -> Option<Timestamp> {
            (unix_secs != 0).then_some(Timestamp {
                seconds: unix_secs,
                nanos: 0,
            })
        }

        /// Milliseconds since the epoch as a Timestamp.
        pub fn timestamp_ms(unix_ms: i64) -> Option<Timestamp> {
            Some(Timestamp {
                seconds: unix_ms.div_euclid(1000),
                nanos: (unix_ms.rem_euclid(1000) * 1_000_000) as i32,
            })
        }

        pub fn request_state(status: &str) -> RequestState {
            match status {
                "pending" => RequestState::Pending,
                "granted" => RequestState::Granted,
                "refused" => RequestState::Refused,
                _ => RequestState::Unspecified,
            }
        }

        pub fn grant_state(status: &str) -> GrantState {
            match status {
                "active" => GrantState::Active,
                "expired" => GrantState::Expired,
                "revoked" => GrantState::Revoked,
                _ => GrantState::Unspecified,
            }
        }

        pub fn dispute_state(status: &str) -> DisputeState {
            match status {
                "open" => DisputeState::Open,
                "resolved" => DisputeState::Resolved,
                "rejected" => DisputeState::Rejected,
                _ => DisputeState::Unspecified,
            }
        }
    }
}
