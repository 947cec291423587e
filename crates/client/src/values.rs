//! Arrow cells as text or JSON, shared by the command line's writers, batch
//! lookups and local joins.

pub use arrow_array::Array;
use serde_json::Value;

/// One cell of an Arrow column as text (`None` for null).
pub fn cell(array: &dyn Array, i: usize) -> Option<String> {
    use arrow_array::*;
    if array.is_null(i) {
        return None;
    }
    let any = array.as_any();
    Some(if let Some(a) = any.downcast_ref::<StringArray>() {
        a.value(i).to_string()
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        a.value(i).to_string()
    } else if let Some(a) = any.downcast_ref::<Int32Array>() {
        a.value(i).to_string()
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        a.value(i).to_string()
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        a.value(i).to_string()
    } else if let Some(a) = any.downcast_ref::<Date32Array>() {
        a.value_as_date(i)
            .map(|d| d.to_string())
            .unwrap_or_default()
    } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
        a.value_as_datetime(i)
            .map(|d| d.to_string())
            .unwrap_or_default()
    } else {
        // Any other Arrow type, in arrow-rs's own display form.
        let options = arrow_cast::display::FormatOptions::default();
        match arrow_cast::display::ArrayFormatter::try_new(array, &options) {
            Ok(formatter) => formatter.value(i).to_string(),
            Err(_) => format!("<{}>", array.data_type()),
        }
    })
}

/// Whether a column's cells are numbers (or booleans) in JSON.
pub fn is_number(array: &dyn Array) -> bool {
    matches!(
        array.data_type(),
        arrow_schema::DataType::Int64
            | arrow_schema::DataType::Int32
            | arrow_schema::DataType::Float64
            | arrow_schema::DataType::Boolean
    )
}

/// One cell as a JSON value: numbers stay numbers and booleans booleans,
/// read from the array as such (never through text); the rest is text.
pub fn json_cell(array: &dyn Array, i: usize) -> Value {
    use arrow_array::*;
    if array.is_null(i) {
        return Value::Null;
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        Value::from(a.value(i))
    } else if let Some(a) = any.downcast_ref::<Int32Array>() {
        Value::from(a.value(i))
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        // NaN and infinities have no JSON number: null, as JSON writers do.
        serde_json::Number::from_f64(a.value(i)).map_or(Value::Null, Value::Number)
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        Value::Bool(a.value(i))
    } else {
        cell(array, i).map_or(Value::Null, Value::String)
    }
}

/// One row of a batch as a JSON object keyed by column name.
pub fn row_json(batch: &arrow_array::RecordBatch, row: usize) -> serde_json::Map<String, Value> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), json_cell(c.as_ref(), row)))
        .collect()
}
