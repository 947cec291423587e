//! The Arrow type a field has on the wire once its mask is applied. The
//! owning node builds its batches with these types and the coordinator
//! announces them before any row is read (`GetSchema`, `FlightInfo`,
//! Flight SQL's `GetTables`), so both ends agree by construction.

use arrow_schema::{DataType, TimeUnit};

use crate::{FieldType, Mask};

/// The Arrow type of a field's values without a mask.
pub fn native_type(t: FieldType) -> DataType {
    match t {
        FieldType::String => DataType::Utf8,
        FieldType::Integer => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date => DataType::Date32,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The Arrow type a field has after its mask: the native type unmasked or
/// nulled, a year as `int32`, every other mask as text.
pub fn output_type(field_type: FieldType, mask: Mask) -> DataType {
    match (mask, field_type) {
        (Mask::None | Mask::Null, t) => native_type(t),
        (Mask::Year, _) => DataType::Int32,
        _ => DataType::Utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_change_the_type_the_consumer_receives() {
        assert_eq!(output_type(FieldType::Date, Mask::None), DataType::Date32);
        assert_eq!(output_type(FieldType::Date, Mask::Year), DataType::Int32);
        assert_eq!(output_type(FieldType::Integer, Mask::Null), DataType::Int64);
        assert_eq!(
            output_type(FieldType::String, Mask::IdNumber),
            DataType::Utf8
        );
    }
}
