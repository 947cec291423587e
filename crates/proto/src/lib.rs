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

        /// `google.type.Date` (`proto/google/type/date.proto`): a calendar
        /// day without a time zone. `build.rs` maps the proto type here
        /// rather than generating it, since the generated `exchange.v1`
        /// code sits at `v1`, not `exchange::v1`.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
        pub struct Date {
            #[prost(int32, tag = "1")]
            pub year: i32,
            #[prost(int32, tag = "2")]
            pub month: i32,
            #[prost(int32, tag = "3")]
            pub day: i32,
        }

        /// A `YYYY-MM-DD` text as a Date; `None` for empty or other text.
        pub fn date(text: &str) -> Option<Date> {
            let mut parts = text.trim().splitn(3, '-').map(str::parse::<i32>);
            let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day))) =
                (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            let date = Date { year, month, day };
            is_calendar_date(&date).then_some(date)
        }

        /// A state enum's value name as v1's text, for display:
        /// `GRANT_STATE_ACTIVE` gives `active`.
        pub fn state_text(value_name: &str) -> String {
            value_name
                .split_once("_STATE_")
                .map_or(String::new(), |(_, v)| v.to_ascii_lowercase())
        }

        /// An optional Date as `YYYY-MM-DD`, empty for none.
        pub fn day(date: Option<Date>) -> String {
            date.as_ref().map(date_text).unwrap_or_default()
        }

        /// A Date as `YYYY-MM-DD`.
        pub fn date_text(date: &Date) -> String {
            format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
        }

        fn is_calendar_date(d: &Date) -> bool {
            let leap = d.year % 4 == 0 && (d.year % 100 != 0 || d.year % 400 == 0);
            let last = match d.month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                1..=12 => 31,
                _ => return false,
            };
            (1..=9999).contains(&d.year) && (1..=last).contains(&d.day)
        }

        /// Settles a request's date given as text (`field`), as a Date
        /// (`field_date`), or both: the text afterwards holds the day. Both
        /// forms naming different days, or a Date that is no calendar day,
        /// is an error naming the fields.
        pub fn settle_date(
            text: &mut String,
            typed: Option<&Date>,
            field: &str,
        ) -> Result<(), String> {
            let Some(typed) = typed else { return Ok(()) };
            let day = date_text(typed);
            if !is_calendar_date(typed) {
                return Err(format!(
                    "{field}_date is not a calendar day ({day}): year 1-9999, month 1-12, a day within the month"
                ));
            }
            if text.trim().is_empty() {
                *text = day;
            } else if text.trim() != day {
                return Err(format!(
                    "{field} ({}) and {field}_date ({day}) name different days: give one of them",
                    text.trim()
                ));
            }
            Ok(())
        }

        /// As [`settle_date`], for a time given as `*_unix` seconds and as a
        /// Timestamp (whose nanoseconds are dropped).
        pub fn settle_seconds(
            unix: &mut i64,
            typed: Option<&Timestamp>,
            field: &str,
        ) -> Result<(), String> {
            let Some(typed) = typed else { return Ok(()) };
            if typed.seconds < 0 {
                return Err(format!("{field} must not be before 1970"));
            }
            if *unix == 0 {
                *unix = typed.seconds;
            } else if *unix != typed.seconds {
                return Err(format!(
                    "{field}_unix ({unix}) and {field} ({}) name different times: give one of them",
                    typed.seconds
                ));
            }
            Ok(())
        }

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

#[cfg(test)]
mod tests {
    use super::v1::typed::*;

    #[test]
    fn dates_are_calendar_days() {
        let leap = date("2028-02-29").unwrap();
        assert_eq!((leap.year, leap.month, leap.day), (2028, 2, 29));
        assert_eq!(date_text(&leap), "2028-02-29");
        for bad in [
            "2027-02-29",
            "2100-02-29",
            "2027-13-01",
            "2027-04-31",
            "0-01-01",
            "",
            "soon",
        ] {
            assert_eq!(date(bad), None, "{bad}");
        }
        assert_eq!(day(date("2000-02-29")), "2000-02-29");
        assert_eq!(day(None), "");
    }

    #[test]
    fn a_field_given_in_both_forms_must_agree() {
        let mut text = String::new();
        settle_date(&mut text, date("2027-06-30").as_ref(), "until").unwrap();
        assert_eq!(text, "2027-06-30");
        settle_date(&mut text, date("2027-06-30").as_ref(), "until").unwrap();
        let other = settle_date(&mut text, date("2027-07-01").as_ref(), "until").unwrap_err();
        assert!(
            other.contains("until (2027-06-30) and until_date (2027-07-01)"),
            "{other}"
        );
        let bogus = Date {
            year: 2027,
            month: 2,
            day: 29,
        };
        let err = settle_date(&mut String::new(), Some(&bogus), "until").unwrap_err();
        assert!(err.contains("not a calendar day (2027-02-29)"), "{err}");

        let mut unix = 0;
        let at = Timestamp {
            seconds: 1_800_000_000,
            nanos: 5,
        };
        settle_seconds(&mut unix, Some(&at), "since").unwrap();
        assert_eq!(unix, 1_800_000_000);
        let mut unix = 1;
        assert!(settle_seconds(&mut unix, Some(&at), "since").is_err());
        let before = Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert!(settle_seconds(&mut 0, Some(&before), "since").is_err());
    }

    #[test]
    fn states_read_as_v1_text() {
        assert_eq!(
            state_text(super::v1::GrantState::Active.as_str_name()),
            "active"
        );
        assert_eq!(
            state_text(super::v1::RequestState::Refused.as_str_name()),
            "refused"
        );
    }
}
