//! The policy vocabulary a department uses in its manifest.

use std::fmt;
use std::str::FromStr;

/// Who may use a dataset, as the owner decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sharing {
    /// 无条件共享: every enrolled department, granted at once.
    Unconditional,
    /// 有条件共享: the owner approves each request.
    Conditional,
    /// 不予共享: not shared; a legal or policy basis must be stated.
    None,
}

/// How sensitive a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sensitivity {
    Public,
    Internal,
    Sensitive,
    /// Never leaves the node, whatever a grant says.
    Secret,
}

/// A field's value type, as published and as checked against the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    String,
    Integer,
    Float,
    Boolean,
    Date,
    Timestamp,
}

/// Masks applied at the owning node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    None,
    KeepFirst(u16),
    KeepLast(u16),
    /// Resident ID: keep the 6-digit region and the last 4 (`440604********1234`).
    IdNumber,
    /// Mobile number: keep the first 3 and last 4 (`138****1234`).
    Mobile,
    /// Keep the surname only (`张**`).
    Surname,
    /// Federation-wide keyed hash: masked keys still join across departments.
    Hash,
    /// Keep the year of a date.
    Year,
    Null,
}

/// Semantic key types: what real-world thing a field identifies. The
/// coordinator uses them to find every dataset that can answer "this person"
/// or "this company".
pub const KEY_TYPES: &[(&str, &str)] = &[
    ("person_id", "resident identity number (公民身份号码)"),
    ("org_code", "unified social credit code (统一社会信用代码)"),
    ("vehicle_plate", "vehicle number plate (号牌号码)"),
    (
        "property_id",
        "real-estate certificate number (不动产权证号)",
    ),
    ("household_id", "household number (户号)"),
    ("student_id", "student registration number (学籍号)"),
    ("account_id", "utility account number (用户编号)"),
    ("phone", "mobile number"),
];

macro_rules! names {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub const NAMES: &'static [&'static str] = &[$($text),*];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)*
                    _ => Err(format!("use one of {}", Self::NAMES.join(", "))),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

names!(Sharing { Unconditional => "unconditional", Conditional => "conditional", None => "none" });
names!(Sensitivity { Public => "public", Internal => "internal", Sensitive => "sensitive", Secret => "secret" });
names!(FieldType {
    String => "string", Integer => "integer", Float => "float",
    Boolean => "boolean", Date => "date", Timestamp => "timestamp",
});

impl Mask {
    pub const FORMS: &'static str =
        "none, keep_first:N, keep_last:N, id_number, mobile, surname, hash, year, null";

    /// Whether this mask makes sense on a field of `ty`.
    pub fn applies_to(self, ty: FieldType) -> bool {
        match self {
            Mask::None | Mask::Hash | Mask::Null => true,
            Mask::Year => matches!(ty, FieldType::Date | FieldType::Timestamp),
            Mask::KeepFirst(_)
            | Mask::KeepLast(_)
            | Mask::IdNumber
            | Mask::Mobile
            | Mask::Surname => ty == FieldType::String,
        }
    }
}

impl FromStr for Mask {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n = |rest: &str| -> Result<u16, String> {
            rest.parse::<u16>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("{s:?}: N must be a number from 1 to 64"))
        };
        Ok(match s {
            "none" => Mask::None,
            "id_number" => Mask::IdNumber,
            "mobile" => Mask::Mobile,
            "surname" => Mask::Surname,
            "hash" => Mask::Hash,
            "year" => Mask::Year,
            "null" => Mask::Null,
            _ => {
                if let Some(rest) = s.strip_prefix("keep_first:") {
                    Mask::KeepFirst(n(rest)?)
                } else if let Some(rest) = s.strip_prefix("keep_last:") {
                    Mask::KeepLast(n(rest)?)
                } else {
                    return Err(format!("use one of {}", Mask::FORMS));
                }
            }
        })
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::None => f.write_str("none"),
            Mask::KeepFirst(n) => write!(f, "keep_first:{n}"),
            Mask::KeepLast(n) => write!(f, "keep_last:{n}"),
            Mask::IdNumber => f.write_str("id_number"),
            Mask::Mobile => f.write_str("mobile"),
            Mask::Surname => f.write_str("surname"),
            Mask::Hash => f.write_str("hash"),
            Mask::Year => f.write_str("year"),
            Mask::Null => f.write_str("null"),
        }
    }
}

pub fn is_key_type(name: &str) -> bool {
    KEY_TYPES.iter().any(|(k, _)| *k == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_and_print() {
        for text in [
            "none",
            "keep_first:3",
            "keep_last:4",
            "id_number",
            "mobile",
            "surname",
            "hash",
            "year",
            "null",
        ] {
            assert_eq!(text.parse::<Mask>().unwrap().to_string(), text);
        }
        for bad in [
            "keep_last",
            "keep_last:0",
            "keep_last:99",
            "keep_last:-1",
            "md5",
            "",
        ] {
            assert!(bad.parse::<Mask>().is_err(), "{bad}");
        }
        assert!(Mask::Year.applies_to(FieldType::Date));
        assert!(!Mask::Year.applies_to(FieldType::String));
        assert!(!Mask::Surname.applies_to(FieldType::Integer));
    }

    #[test]
    fn enums_name_their_choices() {
        assert_eq!(
            "conditional".parse::<Sharing>().unwrap(),
            Sharing::Conditional
        );
        let err = "maybe".parse::<Sharing>().unwrap_err();
        assert!(err.contains("unconditional, conditional, none"), "{err}");
        assert!(Sensitivity::Secret > Sensitivity::Sensitive);
    }
}
