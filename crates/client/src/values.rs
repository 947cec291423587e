//! Arrow cells as text or JSON, shared by the command line's writers, batch
//! lookups and local joins.

pub use arrow_array::Array;
use serde_json::Value;

/// One cell of an Arrow column as text (`None` for null), in arrow-rs's own
/// display form (arrow-cast): dates `2024-02-29`, timestamps
/// `2024-02-29T08:30:00`, floats with their fraction (`3.0`). For many cells
/// of one column, [`cells`] builds the formatter once.
pub fn cell(array: &dyn Array, i: usize) -> Option<String> {
    cells(array).get(i)
}

/// A column's cells as text, its formatter built once.
pub fn cells(array: &dyn Array) -> Cells<'_> {
    let strings = array.as_any().downcast_ref::<arrow_array::StringArray>();
    let formatter = match strings {
        Some(_) => None,
        None => {
            let options = arrow_cast::display::FormatOptions::default();
            arrow_cast::display::ArrayFormatter::try_new(array, &options).ok()
        }
    };
    Cells {
        array,
        strings,
        formatter,
    }
}

/// See [`cells`].
pub struct Cells<'a> {
    array: &'a dyn Array,
    /// Text columns, the common case, are read directly.
    strings: Option<&'a arrow_array::StringArray>,
    formatter: Option<arrow_cast::display::ArrayFormatter<'a>>,
}

impl Cells<'_> {
    /// Row `i` as text, `None` for null.
    pub fn get(&self, i: usize) -> Option<String> {
        if self.array.is_null(i) {
            return None;
        }
        Some(match (self.strings, &self.formatter) {
            (Some(s), _) => s.value(i).to_string(),
            (None, Some(f)) => f.value(i).to_string(),
            (None, None) => format!("<{}>", self.array.data_type()),
        })
    }
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
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        Value::String(a.value(i).to_string())
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
