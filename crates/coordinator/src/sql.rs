//! The SQL that Flight SQL clients (ADBC, JDBC, DBeaver) send, translated
//! into the exchange's own query: one dataset, chosen fields, a filter in
//! the filter language, a row limit.
//!
//! ```sql
//! SELECT plate_no, owner_id FROM "vehicle-admin"."vehicles"
//!  WHERE owner_id = '440604198506121234' LIMIT 10
//! ```
//!
//! The text is parsed by `sqlparser` into a syntax tree, never matched as
//! strings, and the tree is rebuilt as an [`exchange_query::Filter`], whose
//! canonical text quotes every literal itself: what a client writes cannot
//! reach any database as SQL. Everything the exchange does not do (writes,
//! DDL, joins, aggregates, sorting, sub-queries, functions) is refused with
//! the alternative named.

use exchange_query::{CompareOp, Filter, Value};
use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, LimitClause, ObjectName, Query, Select, SelectItem, SetExpr,
    Statement, TableFactor, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use tonic::Status;

/// The longest SQL text accepted, in bytes: a filter's own limit and room
/// for the rest of a statement.
pub const MAX_SQL_BYTES: usize = exchange_query::MAX_FILTER_BYTES + 16 * 1024;
/// The catalog every dataset appears in.
pub const CATALOG: &str = "exchange";

/// One `SELECT` as the exchange runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Select1 {
    /// `department/local-name`.
    pub dataset: String,
    /// Empty for `*`: every field of the caller's grant.
    pub fields: Vec<String>,
    /// Canonical filter-language text; empty for none.
    pub filter: String,
    pub limit: Option<u64>,
}

fn unsupported(what: &str, instead: &str) -> Status {
    Status::unimplemented(format!("{what} is not supported: {instead}"))
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

/// Parses one `SELECT` statement.
pub fn translate(sql: &str) -> Result<Select1, Status> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(invalid(format!(
            "the SQL text is {} bytes; at most {MAX_SQL_BYTES} are accepted",
            sql.len()
        )));
    }
    let statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| invalid(format!("the SQL could not be parsed: {e}")))?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return Err(invalid("the SQL text holds no statement")),
        _ => {
            return Err(invalid(format!(
                "the SQL text holds {} statements; send one SELECT at a time",
                statements.len()
            )))
        }
    };
    let Statement::Query(query) = statement else {
        return Err(unsupported(
            "anything but SELECT (writes, DDL, SET, transactions)",
            "the exchange only reads; each department changes its own data in its own systems",
        ));
    };
    select_of(query)
}

fn select_of(query: &Query) -> Result<Select1, Status> {
    if query.with.is_some() {
        return Err(unsupported("WITH", "select from one dataset directly"));
    }
    if query.order_by.is_some() {
        return Err(unsupported(
            "ORDER BY",
            "sort the answer in your client (for example pandas' sort_values)",
        ));
    }
    if query.fetch.is_some()
        || !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return Err(unsupported(
            "this clause",
            "use SELECT fields FROM dept.dataset WHERE ... LIMIT n",
        ));
    }
    let limit = limit_of(query.limit_clause.as_ref())?;
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { .. } => {
            return Err(unsupported(
                "UNION, INTERSECT and EXCEPT",
                "run one query per dataset, or `exchange join` for a join on a key",
            ))
        }
        _ => {
            return Err(unsupported(
                "this statement",
                "use SELECT fields FROM dept.dataset",
            ))
        }
    };
    check_plain(select)?;
    let dataset = dataset_of(select)?;
    let fields = fields_of(&select.projection)?;
    let filter = match &select.selection {
        None => String::new(),
        Some(e) => filter_of(e)?
            .canonical()
            .map_err(|e| invalid(format!("the WHERE clause: {}", e.message)))?,
    };
    Ok(Select1 {
        dataset,
        fields,
        filter,
        limit,
    })
}

/// Refuses the parts of a SELECT the exchange does not do.
fn check_plain(s: &Select) -> Result<(), Status> {
    if s.distinct.is_some() || s.top.is_some() {
        return Err(unsupported(
            "DISTINCT and TOP",
            "use LIMIT, and deduplicate in your client",
        ));
    }
    let grouped = match &s.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
    };
    if grouped || s.having.is_some() {
        return Err(unsupported(
            "GROUP BY and HAVING",
            "the exchange returns rows; aggregate them in your client",
        ));
    }
    if s.into.is_some()
        || s.exclude.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || !s.named_window.is_empty()
        || s.qualify.is_some()
        || s.connect_by.is_some()
        || s.value_table_mode.is_some()
    {
        return Err(unsupported(
            "this clause",
            "use SELECT fields FROM dept.dataset WHERE ... LIMIT n",
        ));
    }
    Ok(())
}

fn limit_of(clause: Option<&LimitClause>) -> Result<Option<u64>, Status> {
    let expr = match clause {
        None => return Ok(None),
        Some(LimitClause::LimitOffset {
            limit: None,
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => return Ok(None),
        Some(LimitClause::LimitOffset {
            limit: Some(e),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => e,
        Some(_) => {
            return Err(unsupported(
                "OFFSET and LIMIT BY",
                "narrow the WHERE clause instead of paging by offset",
            ))
        }
    };
    match literal(expr)? {
        Value::Integer(n) if n > 0 => Ok(Some(n as u64)),
        _ => Err(invalid("LIMIT takes a whole number of rows, at least 1")),
    }
}

/// `"dept"."dataset"`, `exchange."dept"."dataset"` or `"dept/dataset"`.
fn dataset_of(s: &Select) -> Result<String, Status> {
    let table = match s.from.as_slice() {
        [one] if one.joins.is_empty() => &one.relation,
        [] => return Err(invalid("FROM is missing: name a dataset, as FROM \"tax\".\"taxpayers\"")),
        _ => {
            return Err(unsupported(
                "a join or a list of tables",
                "query one dataset at a time, or use `exchange join` (or the Rust client's join) to join datasets on a key",
            ))
        }
    };
    let TableFactor::Table {
        name,
        alias: _,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
    } = table
    else {
        return Err(unsupported(
            "a sub-query or table function in FROM",
            "name a dataset, as FROM \"tax\".\"taxpayers\"",
        ));
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return Err(unsupported("table hints", "name the dataset alone"));
    }
    dataset_name(name)
}

fn dataset_name(name: &ObjectName) -> Result<String, Status> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("the table name must be plain identifiers"))?;
    match parts.as_slice() {
        [one] if one.contains('/') => Ok(one.to_string()),
        [dept, table] => Ok(format!("{dept}/{table}")),
        [catalog, dept, table] if catalog.eq_ignore_ascii_case(CATALOG) => {
            Ok(format!("{dept}/{table}"))
        }
        _ => Err(invalid(format!(
            "name a dataset as \"department\".\"dataset\" (for example \"tax\".\"taxpayers\"), not {name}"
        ))),
    }
}

fn fields_of(items: &[SelectItem]) -> Result<Vec<String>, Status> {
    let mut fields = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) if items.len() == 1 => {
                return Ok(Vec::new())
            }
            SelectItem::UnnamedExpr(e) => fields.push(column(e)?),
            SelectItem::ExprWithAlias { .. } => {
                return Err(unsupported(
                    "column aliases (AS)",
                    "rename columns in your client",
                ))
            }
            _ => return Err(invalid("use * alone, or a list of field names")),
        }
    }
    Ok(fields)
}

/// A column reference: `name` or `table.name`.
fn column(e: &Expr) -> Result<String, Status> {
    match e {
        Expr::Identifier(i) => Ok(i.value.clone()),
        Expr::CompoundIdentifier(parts) if !parts.is_empty() => {
            Ok(parts[parts.len() - 1].value.clone())
        }
        Expr::Function(_) => Err(unsupported(
            "functions and aggregates",
            "select plain fields and compute in your client",
        )),
        other => Err(unsupported(
            &format!("the expression `{}`", clip(&other.to_string())),
            "select plain fields, and compare them with literals in WHERE",
        )),
    }
}

fn clip(text: &str) -> String {
    let mut s: String = text.chars().take(80).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

fn literal(e: &Expr) -> Result<Value, Status> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(t) => Ok(Value::Text(t.clone())),
            SqlValue::Number(n, _) => number(n, false),
            SqlValue::Boolean(b) => Ok(Value::Bool(*b)),
            SqlValue::Null => Err(unsupported(
                "NULL comparisons",
                "the filter language compares with values only",
            )),
            other => Err(invalid(format!(
                "{} is not a value the exchange reads: use 'text', numbers, true or false",
                clip(&other.to_string())
            ))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => number(n, true),
                _ => Err(invalid("only numbers can be negative")),
            },
            _ => Err(invalid("only numbers can be negative")),
        },
        other => Err(invalid(format!(
            "expected a value such as 'text' or 42, found `{}`",
            clip(&other.to_string())
        ))),
    }
}

fn number(text: &str, negative: bool) -> Result<Value, Status> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if let Ok(i) = signed.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    match signed.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Value::Float(x)),
        _ => Err(invalid(format!(
            "{} is not a number the exchange reads",
            clip(&signed)
        ))),
    }
}

fn compare_op(op: &BinaryOperator) -> Option<CompareOp> {
    Some(match op {
        BinaryOperator::Eq => CompareOp::Eq,
        BinaryOperator::NotEq => CompareOp::Ne,
        BinaryOperator::Lt => CompareOp::Lt,
        BinaryOperator::LtEq => CompareOp::Le,
        BinaryOperator::Gt => CompareOp::Gt,
        BinaryOperator::GtEq => CompareOp::Ge,
        _ => return None,
    })
}

/// `5 < x` reads as `x > 5`.
fn flipped(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::Le => CompareOp::Ge,
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::Ge => CompareOp::Le,
        same => same,
    }
}

fn is_column(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

/// A WHERE clause as a filter of the filter language.
fn filter_of(e: &Expr) -> Result<Filter, Status> {
    match e {
        Expr::Nested(inner) => filter_of(inner),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => Ok(Filter::And(vec![filter_of(left)?, filter_of(right)?])),
            BinaryOperator::Or => Ok(Filter::Or(vec![filter_of(left)?, filter_of(right)?])),
            _ => {
                let op = compare_op(op).ok_or_else(|| {
                    unsupported(
                        &format!("the operator {op}"),
                        "compare with =, <>, <, <=, >, >=, IN, BETWEEN or LIKE 'prefix%'",
                    )
                })?;
                if is_column(left) {
                    Ok(Filter::Compare {
                        field: column(left)?,
                        op,
                        value: literal(right)?,
                    })
                } else if is_column(right) {
                    Ok(Filter::Compare {
                        field: column(right)?,
                        op: flipped(op),
                        value: literal(left)?,
                    })
                } else {
                    Err(invalid(
                        "a comparison needs a field on one side and a value on the other",
                    ))
                }
            }
        },
        Expr::InList {
            expr,
            list,
            negated: false,
        } => Ok(Filter::In {
            field: column(expr)?,
            values: list.iter().map(literal).collect::<Result<_, _>>()?,
        }),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => Ok(Filter::Between {
            field: column(expr)?,
            low: literal(low)?,
            high: literal(high)?,
        }),
        Expr::Like {
            negated: false,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => like(expr, pattern),
        Expr::InList { negated: true, .. }
        | Expr::Between { negated: true, .. }
        | Expr::Like { negated: true, .. }
        | Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => Err(unsupported(
            "NOT",
            "write the condition positively, for example with <>",
        )),
        Expr::IsNull(_) | Expr::IsNotNull(_) => Err(unsupported(
            "IS NULL",
            "the filter language compares with values only",
        )),
        Expr::InSubquery { .. } | Expr::Subquery(_) | Expr::Exists { .. } => Err(unsupported(
            "sub-queries",
            "query each dataset, or use `exchange join` to join on a key",
        )),
        other => Err(unsupported(
            &format!("the condition `{}`", clip(&other.to_string())),
            "compare fields with values using =, <>, <, <=, >, >=, IN, BETWEEN or LIKE 'prefix%'",
        )),
    }
}

/// `LIKE 'prefix%'`: the one pattern the filter language reads.
fn like(expr: &Expr, pattern: &Expr) -> Result<Filter, Status> {
    let Value::Text(p) = literal(pattern)? else {
        return Err(invalid("LIKE takes a quoted pattern such as '粤E%'"));
    };
    match p.strip_suffix('%') {
        Some(prefix) if !prefix.contains(['%', '_']) => Ok(Filter::Prefix {
            field: column(expr)?,
            prefix: prefix.to_string(),
        }),
        _ => Err(unsupported(
            &format!("the pattern {:?}", clip(&p)),
            "LIKE takes a prefix with one trailing %, as '粤E%'",
        )),
    }
}

#[cfg(test)]
mod tests;
