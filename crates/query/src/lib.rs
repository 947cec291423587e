//! The filter language of `exchange query --where`.
//!
//! ```text
//! owner_id = '440604198506121234'
//! owner_id IN ('440604198506121234', '44060519900101002X')
//! registered_on BETWEEN '2020-01-01' AND '2020-12-31' AND brand = '比亚迪'
//! plate_no LIKE '粤E%' OR (year >= 2024 AND kwh < 1000.5)
//! ```
//!
//! Comparisons (`=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`), `IN (...)`,
//! `BETWEEN ... AND ...`, prefix matches (`LIKE 'text%'`, with a single
//! trailing `%`), `AND`, `OR` and parentheses. Text values are single-quoted
//! (`''` for a quote); numbers and `true`/`false` are bare.
//!
//! [`parse`] builds a [`Filter`]; [`Filter::check`] then validates it against
//! a dataset's fields: every field must exist and be readable, every value
//! must fit the field's type, and a masked field may only be filtered with
//! `=` or `IN`, so its raw value cannot be probed with ranges or prefixes.
//! The filter never becomes SQL text: the source crate turns it into SQL
//! with bound parameters and identifiers taken from the manifest.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use exchange_policy::FieldType;

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 256 * 1024;
/// The most values one `IN` list may hold.
pub const MAX_IN_VALUES: usize = 10_000;
/// The deepest nesting of parentheses.
pub const MAX_DEPTH: usize = 32;
/// The longest single text value, in characters.
pub const MAX_VALUE_CHARS: usize = 1_024;
/// The longest number, in characters.
pub const MAX_NUMBER_CHARS: usize = 40;
/// The most values (each bound to one SQL parameter) a query's filters may
/// hold together, the consumer's and the owner's row filter: under every
/// supported database's limit on bound parameters (SQLite's is 32,766).
pub const MAX_TOTAL_VALUES: usize = 20_000;

/// A query, as any Flight client sends it: the JSON body of the
/// `FlightDescriptor` command given to `GetFlightInfo` on the coordinator.
///
/// ```json
/// {"dataset": "vehicle-admin/vehicles", "fields": ["plate_no", "owner_id"],
///  "where": "owner_id = '440604198506121234'", "purpose": "低保家庭财产核查",
///  "user": "王小明", "limit": 100}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryCommand {
    pub dataset: String,
    /// Empty: every field of the grant.
    #[serde(default)]
    pub fields: Vec<String>,
    /// A filter in this crate's language; empty for none.
    #[serde(default, rename = "where")]
    pub filter: String,
    /// Required: why the data is needed.
    pub purpose: String,
    /// The person asking, vouched for by the department.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// A problem in a filter, with the character position where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter error at character {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
    /// The filter used a field masked for the caller in a way only raw
    /// values allow (anything but `=` and `IN`).
    pub field_masked: bool,
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        field_masked: false,
        message: message.into(),
    })
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
            Value::Integer(i) => write!(f, "{i}"),
            // Positional notation, never an exponent (which the filter
            // language does not read), and always with a point, so the
            // text parses back to the same float: Rust prints the shortest
            // digits that round-trip.
            Value::Float(x) if x.fract() == 0.0 => write!(f, "{x}.0"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn sql(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        field: String,
        op: CompareOp,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
    },
    Between {
        field: String,
        low: Value,
        high: Value,
    },
    Prefix {
        field: String,
        prefix: String,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// What a filter may know about one field of the dataset it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    pub field_type: FieldType,
    /// Whether the consumer sees this field masked.
    pub masked: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Text(String),
    Number(String),
    LParen,
    RParen,
    Comma,
    Op(CompareOp),
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((start, Token::LParen));
                i += 1;
            }
            ')' => {
                out.push((start, Token::RParen));
                i += 1;
            }
            ',' => {
                out.push((start, Token::Comma));
                i += 1;
            }
            '=' => {
                out.push((start, Token::Op(CompareOp::Eq)));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push((start, Token::Op(CompareOp::Ne)));
                i += 2;
            }
            '<' => {
                let (op, len) = match chars.get(i + 1) {
                    Some('=') => (CompareOp::Le, 2),
                    Some('>') => (CompareOp::Ne, 2),
                    _ => (CompareOp::Lt, 1),
                };
                out.push((start, Token::Op(op)));
                i += len;
            }
            '>' => {
                let (op, len) = if chars.get(i + 1) == Some(&'=') {
                    (CompareOp::Ge, 2)
                } else {
                    (CompareOp::Gt, 1)
                };
                out.push((start, Token::Op(op)));
                i += len;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return err(start, "unterminated text value: close it with '"),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            if ch.is_control() {
                                return err(i, "control characters are not allowed in values");
                            }
                            value.push(ch);
                            i += 1;
                        }
                    }
                }
                if value.chars().count() > MAX_VALUE_CHARS {
                    return err(
                        start,
                        format!("text value longer than {MAX_VALUE_CHARS} characters"),
                    );
                }
                out.push((start, Token::Text(value)));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let mut n = String::from(c);
                i += 1;
                while let Some(&d) = chars.get(i) {
                    if d.is_ascii_digit() || d == '.' {
                        n.push(d);
                        i += 1;
                    } else {
                        break;
                    }
                }
                if n.len() > MAX_NUMBER_CHARS {
                    return err(
                        start,
                        format!("number longer than {MAX_NUMBER_CHARS} characters"),
                    );
                }
                if n.ends_with('.') {
                    return err(
                        start,
                        format!("{n} ends with a point: write {} or {n}0", &n[..n.len() - 1]),
                    );
                }
                out.push((start, Token::Number(n)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut id = String::new();
                while let Some(&d) = chars.get(i) {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        id.push(d);
                        i += 1;
                    } else {
                        break;
                    }
                }
                if id.len() > 63 {
                    return err(start, "name longer than 63 characters");
                }
                out.push((start, Token::Ident(id)));
            }
            '"' | '`' | '[' => {
                return err(
                    start,
                    "quoted names are not allowed: write field names bare, e.g. owner_id = '...'",
                )
            }
            ';' => return err(start, "';' is not part of the filter language"),
            '-' if chars.get(i + 1) == Some(&'-') => {
                return err(start, "comments are not part of the filter language")
            }
            _ => {
                return err(
                    start,
                    format!("unexpected character {c:?}: quote text values with single quotes"),
                )
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|(p, _)| *p)
            .unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(id)) if id.eq_ignore_ascii_case(word))
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), FilterError> {
        if self.keyword(word) {
            self.pos += 1;
            Ok(())
        } else {
            err(self.at(), format!("expected {word}"))
        }
    }

    fn or_expr(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.and_expr()?];
        while self.keyword("OR") {
            self.pos += 1;
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.atom()?];
        while self.keyword("AND") {
            self.pos += 1;
            parts.push(self.atom()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::And(parts)
        })
    }

    fn value(&mut self) -> Result<Value, FilterError> {
        let at = self.at();
        match self.next() {
            Some(Token::Text(t)) => Ok(Value::Text(t)),
            Some(Token::Number(n)) => {
                if n.contains('.') {
                    match n.parse::<f64>() {
                        Ok(x) if x.is_finite() => Ok(Value::Float(x)),
                        _ => err(at, format!("{n} is not a number")),
                    }
                } else {
                    n.parse::<i64>()
                        .map(Value::Integer)
                        .or_else(|_| err(at, format!("{n} is out of range")))
                }
            }
            Some(Token::Ident(id)) if id.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Some(Token::Ident(id)) if id.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            Some(Token::Ident(id)) => err(
                at,
                format!("expected a value, found the name {id}: quote text values, e.g. '{id}'"),
            ),
            _ => err(at, "expected a value"),
        }
    }

    fn atom(&mut self) -> Result<Filter, FilterError> {
        let at = self.at();
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return err(at, format!("parentheses nested deeper than {MAX_DEPTH}"));
            }
            let inner = self.or_expr()?;
            if self.next() != Some(Token::RParen) {
                return err(self.at(), "expected )");
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let field = match self.next() {
            Some(Token::Ident(id))
                if !["AND", "OR", "IN", "BETWEEN", "LIKE"]
                    .iter()
                    .any(|k| id.eq_ignore_ascii_case(k)) =>
            {
                id
            }
            _ => return err(at, "expected a field name"),
        };
        let at = self.at();
        if self.keyword("IN") {
            self.pos += 1;
            if self.next() != Some(Token::LParen) {
                return err(self.at(), "expected ( after IN");
            }
            let mut values = vec![self.value()?];
            loop {
                match self.next() {
                    Some(Token::Comma) => {
                        values.push(self.value()?);
                        if values.len() > MAX_IN_VALUES {
                            return err(at, format!("IN lists hold at most {MAX_IN_VALUES} values; split the list, or use a batch lookup"));
                        }
                    }
                    Some(Token::RParen) => break,
                    _ => return err(self.at(), "expected , or ) in the IN list"),
                }
            }
            return Ok(Filter::In { field, values });
        }
        if self.keyword("BETWEEN") {
            self.pos += 1;
            let low = self.value()?;
            self.expect_keyword("AND")?;
            let high = self.value()?;
            return Ok(Filter::Between { field, low, high });
        }
        if self.keyword("LIKE") {
            self.pos += 1;
            let at = self.at();
            let pattern = match self.next() {
                Some(Token::Text(t)) => t,
                _ => {
                    return err(
                        at,
                        "LIKE takes a quoted prefix ending in %, e.g. LIKE '440604%'",
                    )
                }
            };
            let Some(prefix) = pattern.strip_suffix('%') else {
                return err(
                    at,
                    "only prefix matches are supported: end the pattern with %",
                );
            };
            if prefix.is_empty() || prefix.contains('%') {
                return err(
                    at,
                    "a prefix match needs a non-empty prefix and a single trailing %",
                );
            }
            return Ok(Filter::Prefix {
                field,
                prefix: prefix.to_string(),
            });
        }
        match self.next() {
            Some(Token::Op(op)) => Ok(Filter::Compare {
                field,
                op,
                value: self.value()?,
            }),
            _ => err(
                at,
                "expected =, !=, <, <=, >, >=, IN, BETWEEN or LIKE after the field name",
            ),
        }
    }
}

/// Parses a filter. An empty or blank text is an error: omit the filter instead.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        return err(0, format!("filter longer than {MAX_FILTER_BYTES} bytes"));
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return err(0, "empty filter");
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: text.chars().count(),
        depth: 0,
    };
    let filter = parser.or_expr()?;
    if parser.pos < parser.tokens.len() {
        return err(
            parser.at(),
            "unexpected text after the filter: join conditions with AND or OR",
        );
    }
    Ok(filter)
}

fn is_date(t: &str) -> bool {
    let b = t.as_bytes();
    t.is_ascii()
        && b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&t[5..7].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&t[8..10].parse::<u8>().unwrap_or(0))
}

fn is_timestamp(t: &str) -> bool {
    if !t.is_ascii() {
        return false;
    }
    if t.len() == 10 {
        return is_date(t);
    }
    t.len() == 19
        && is_date(&t[..10])
        && matches!(t.as_bytes()[10], b' ' | b'T')
        && t.as_bytes()[11..].iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn coerce(field: &str, info: FieldInfo, value: &Value) -> Result<Value, String> {
    use FieldType as T;
    let wrong = |want: &str| Err(format!("{field} is a {} field: {want}", info.field_type));
    match (info.field_type, value) {
        (T::String, Value::Text(_)) => Ok(value.clone()),
        (T::String, _) => wrong("quote the value, e.g. '123'"),
        (T::Integer, Value::Integer(_)) => Ok(value.clone()),
        (T::Integer, _) => wrong("use a whole number"),
        (T::Float, Value::Integer(i)) => Ok(Value::Float(*i as f64)),
        (T::Float, Value::Float(_)) => Ok(value.clone()),
        (T::Float, _) => wrong("use a number"),
        (T::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (T::Boolean, _) => wrong("use true or false"),
        (T::Date, Value::Text(t)) if is_date(t) => Ok(value.clone()),
        (T::Date, _) => wrong("use 'YYYY-MM-DD'"),
        (T::Timestamp, Value::Text(t)) if is_timestamp(t) => Ok(value.clone()),
        (T::Timestamp, _) => wrong("use 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"),
    }
}

impl Filter {
    /// The field names the filter reads.
    pub fn fields(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match self {
            Filter::Compare { field, .. }
            | Filter::In { field, .. }
            | Filter::Between { field, .. }
            | Filter::Prefix { field, .. } => {
                out.insert(field);
            }
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().for_each(|p| p.collect_fields(out))
            }
        }
    }

    /// Validates the filter against the fields the consumer may read, and
    /// converts values to the fields' types. `lookup` answers `None` for a
    /// field that does not exist or is not readable.
    pub fn check(&self, lookup: &dyn Fn(&str) -> Option<FieldInfo>) -> Result<Filter, FilterError> {
        let field_info = |field: &str| {
            lookup(field).ok_or_else(|| FilterError {
                position: 0,
                field_masked: false,
                message: format!(
                    "no readable field {field:?} in this dataset (or it is outside your grant)"
                ),
            })
        };
        let bad = |message: String| FilterError {
            position: 0,
            field_masked: false,
            message,
        };
        let masked_only_equality = |field: &str, info: FieldInfo| {
            if info.masked {
                Err(FilterError {
                    field_masked: true,
                    ..bad(format!("{field} is masked for you: only = and IN may filter on it, so its raw value cannot be probed"))
                })
            } else {
                Ok(())
            }
        };
        Ok(match self {
            Filter::Compare { field, op, value } => {
                let info = field_info(field)?;
                if *op != CompareOp::Eq {
                    masked_only_equality(field, info)?;
                }
                Filter::Compare {
                    field: field.clone(),
                    op: *op,
                    value: coerce(field, info, value).map_err(bad)?,
                }
            }
            Filter::In { field, values } => {
                let info = field_info(field)?;
                let values = values
                    .iter()
                    .map(|v| coerce(field, info, v))
                    .collect::<Result<_, _>>()
                    .map_err(bad)?;
                Filter::In {
                    field: field.clone(),
                    values,
                }
            }
            Filter::Between { field, low, high } => {
                let info = field_info(field)?;
                masked_only_equality(field, info)?;
                Filter::Between {
                    field: field.clone(),
                    low: coerce(field, info, low).map_err(bad)?,
                    high: coerce(field, info, high).map_err(bad)?,
                }
            }
            Filter::Prefix { field, prefix } => {
                let info = field_info(field)?;
                masked_only_equality(field, info)?;
                if info.field_type != FieldType::String {
                    return Err(bad(format!(
                        "LIKE works on text fields; {field} is {}",
                        info.field_type
                    )));
                }
                Filter::Prefix {
                    field: field.clone(),
                    prefix: prefix.clone(),
                }
            }
            Filter::And(parts) => Filter::And(
                parts
                    .iter()
                    .map(|p| p.check(lookup))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Or(parts) => Filter::Or(
                parts
                    .iter()
                    .map(|p| p.check(lookup))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// The values the filter tests against the fields `chosen` accepts,
    /// with their fields (`=` gives one, `IN` one per value; ranges and
    /// prefixes give their bounds). For fields the consumer sees masked,
    /// each is a probe of a hidden value, counted against the grant's
    /// budget.
    pub fn values_on<'a>(&'a self, chosen: &dyn Fn(&str) -> bool) -> Vec<(&'a str, &'a Value)> {
        let mut out = Vec::new();
        self.collect_values(chosen, &mut out);
        out
    }

    fn collect_values<'a>(
        &'a self,
        chosen: &dyn Fn(&str) -> bool,
        out: &mut Vec<(&'a str, &'a Value)>,
    ) {
        match self {
            Filter::Compare { field, value, .. } if chosen(field) => out.push((field, value)),
            Filter::In { field, values } if chosen(field) => {
                out.extend(values.iter().map(|v| (field.as_str(), v)))
            }
            Filter::Between { field, low, high } if chosen(field) => {
                out.push((field, low));
                out.push((field, high));
            }
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().for_each(|p| p.collect_values(chosen, out))
            }
            _ => {}
        }
    }

    /// Total number of values, to bound the work a filter can ask for.
    pub fn value_count(&self) -> usize {
        match self {
            Filter::Compare { .. } | Filter::Prefix { .. } => 1,
            Filter::Between { .. } => 2,
            Filter::In { values, .. } => values.len(),
            Filter::And(parts) | Filter::Or(parts) => parts.iter().map(Filter::value_count).sum(),
        }
    }

    /// The canonical text, within the limits a node will hold it to: at
    /// most [`MAX_FILTER_BYTES`] and [`MAX_TOTAL_VALUES`]. The coordinator
    /// checks a filter here, once, on the text the node will read (which
    /// may be longer than what the user wrote: spacing is normalized), so
    /// a node never refuses what the coordinator let through.
    pub fn canonical(&self) -> Result<String, FilterError> {
        let values = self.value_count();
        if values > MAX_TOTAL_VALUES {
            return err(
                0,
                format!("the filter holds {values} values; at most {MAX_TOTAL_VALUES} are allowed in one query: split it, or use a batch lookup"),
            );
        }
        let text = self.to_string();
        if text.len() > MAX_FILTER_BYTES {
            return err(
                0,
                format!(
                    "the filter is {} bytes once written in canonical form; at most {MAX_FILTER_BYTES} are allowed: split it, or use a batch lookup",
                    text.len()
                ),
            );
        }
        Ok(text)
    }
}

impl fmt::Display for Filter {
    /// The canonical text: parses back to the same filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Filter], sep: &str| -> fmt::Result {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {sep} ")?;
                }
                if matches!(p, Filter::And(_) | Filter::Or(_)) {
                    write!(f, "({p})")?;
                } else {
                    write!(f, "{p}")?;
                }
            }
            Ok(())
        };
        match self {
            Filter::Compare { field, op, value } => write!(f, "{field} {} {value}", op.sql()),
            Filter::In { field, values } => {
                write!(f, "{field} IN (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Filter::Between { field, low, high } => write!(f, "{field} BETWEEN {low} AND {high}"),
            Filter::Prefix { field, prefix } => {
                write!(f, "{field} LIKE '{}%'", prefix.replace('\'', "''"))
            }
            Filter::And(parts) => join(f, parts, "AND"),
            Filter::Or(parts) => join(f, parts, "OR"),
        }
    }
}

#[cfg(test)]
mod tests;
