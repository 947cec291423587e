//! One mapping from the kinds of refusal to gRPC status codes, for every
//! service (Flight and Flight SQL included), with a machine-readable reason.
//!
//! Each refusal's status carries a `google.rpc.ErrorInfo` in its details
//! (`grpc-status-details-bin`) with the reason code ([`Refusal::reason`])
//! and the domain [`ERROR_DOMAIN`], so a client branches on
//! `GRANT_MISSING` or `PURPOSE_REQUIRED` instead of parsing the message.
//! Messages speak the API's language (field names); the command line adds
//! its own hints.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `ErrorInfo` the exchange sends.
pub const ERROR_DOMAIN: &str = "exchange.v1";

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A query, lookup or request without its purpose.
    PurposeRequired,
    /// The caller holds no active grant on the dataset.
    GrantMissing,
    /// A field the dataset has but the caller's grant does not include.
    FieldNotGranted,
    /// A filter on a field the grant leaves masked that is not `=` or `IN`,
    /// or a masked field otherwise used in a way that could reveal it.
    FieldMasked,
    /// No such dataset in the catalog.
    DatasetUnknown,
    /// No such field in the dataset.
    FieldUnknown,
    /// The grant's daily row quota is used up.
    QuotaExhausted,
    /// The day's budget of values tested against masked fields is spent, or
    /// one value was tested too often.
    MaskedValueBudget,
    /// A malformed request: the message names the field and the fix.
    InvalidRequest,
    /// The grant a ticket was issued under was revoked (or expired) since:
    /// the message carries the owner's reason.
    GrantRevoked,
    /// The consumer's membership was revoked by the bureau.
    MemberRevoked,
    /// The certificate's role may not call this method at all.
    RoleNotAllowed,
}

impl Refusal {
    pub fn code(self) -> Code {
        match self {
            Refusal::PurposeRequired
            | Refusal::FieldMasked
            | Refusal::FieldUnknown
            | Refusal::InvalidRequest => Code::InvalidArgument,
            Refusal::GrantMissing
            | Refusal::FieldNotGranted
            | Refusal::GrantRevoked
            | Refusal::MemberRevoked
            | Refusal::RoleNotAllowed => Code::PermissionDenied,
            Refusal::DatasetUnknown => Code::NotFound,
            Refusal::QuotaExhausted | Refusal::MaskedValueBudget => Code::ResourceExhausted,
        }
    }

    /// The `ErrorInfo.reason` code: stable, UPPER_SNAKE_CASE.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::PurposeRequired => "PURPOSE_REQUIRED",
            Refusal::GrantMissing => "GRANT_MISSING",
            Refusal::FieldNotGranted => "FIELD_NOT_GRANTED",
            Refusal::FieldMasked => "FIELD_MASKED",
            Refusal::DatasetUnknown => "DATASET_UNKNOWN",
            Refusal::FieldUnknown => "FIELD_UNKNOWN",
            Refusal::QuotaExhausted => "QUOTA_EXHAUSTED",
            Refusal::MaskedValueBudget => "MASKED_VALUE_BUDGET",
            Refusal::InvalidRequest => "INVALID_REQUEST",
            Refusal::GrantRevoked => "GRANT_REVOKED",
            Refusal::MemberRevoked => "MEMBER_REVOKED",
            Refusal::RoleNotAllowed => "ROLE_NOT_ALLOWED",
        }
    }

    /// The status for this refusal, with `message` and an `ErrorInfo`.
    pub fn status(self, message: impl Into<String>) -> Status {
        let details = ErrorDetails::with_error_info(
            self.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        let mut status = Status::with_error_details(self.code(), message, details);
        if self.code() == Code::PermissionDenied {
            // Arrow Flight's C++ client (pyarrow, ADBC) hands the status
            // details to its caller (`FlightError.extra_info`) only beside
            // Arrow's own status trailer. 5 is Arrow's IOError, the status
            // it already makes of PERMISSION_DENIED, so nothing else about
            // the error changes. Other codes are left alone: with details
            // attached Arrow would raise them as internal errors.
            status.metadata_mut().insert(
                ARROW_STATUS_TRAILER,
                ARROW_IO_ERROR.parse().expect("ASCII digit"),
            );
        }
        status
    }
}

/// The trailer in which Arrow Flight servers send an Arrow status code.
const ARROW_STATUS_TRAILER: &str = "x-arrow-status";
const ARROW_IO_ERROR: &str = "5";

/// The `ErrorInfo.reason` a status carries, if any.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_its_reason_through_the_wire_form() {
        let status = Refusal::GrantMissing.status("no grant on tax/taxpayers");
        assert_eq!(status.code(), Code::PermissionDenied);
        // What a client receives: the status rebuilt from its headers.
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        let received = Status::from_header_map(&headers).unwrap();
        assert_eq!(reason_of(&received).as_deref(), Some("GRANT_MISSING"));
        assert_eq!(received.message(), "no grant on tax/taxpayers");
        assert_eq!(reason_of(&Status::internal("x")), None);
        // Arrow Flight clients read the details beside Arrow's status code,
        // sent only where it changes nothing else about the error.
        assert_eq!(headers.get(ARROW_STATUS_TRAILER).unwrap(), ARROW_IO_ERROR);
        let mut headers = http::HeaderMap::new();
        let invalid = Refusal::PurposeRequired.status("purpose");
        invalid.add_header(&mut headers).unwrap();
        assert!(headers.get(ARROW_STATUS_TRAILER).is_none());
    }
}
