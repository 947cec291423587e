//! Data-conflict reports: the same attribute of the same entity compared
//! across departments, after normalization, naming the authoritative source.
//!
//! Each dataset is read with an ordinary audited query for its key field
//! and the attribute only. Values are compared after normalization:
//! full-width ASCII characters and the ideographic space become half-width,
//! and all whitespace is removed, so `佛山市１２号` and ` 佛山市 12 号 ` agree.
//! Keys present in only one source are counted, not reported as conflicts.

use std::collections::BTreeMap;

use crate::join::{JoinSpec, TableSpec};
use crate::{Client, ClientError, Result};

/// What to compare.
#[derive(Debug, Clone)]
pub struct ConflictQuery {
    /// person_id or org_code.
    pub key_type: String,
    /// The field name compared, the same in every dataset.
    pub attribute: String,
    /// Two or more datasets.
    pub datasets: Vec<String>,
    pub purpose: String,
}

/// One source of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictSource {
    pub dataset: String,
    pub department: String,
    pub key_field: String,
    pub rows: u64,
    /// The bureau declared this dataset authoritative for the attribute.
    pub authoritative: bool,
}

/// One entity whose normalized values differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub key: String,
    /// The value each source holds (as stored, not normalized), in source order.
    pub values: Vec<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct ConflictReport {
    pub key_type: String,
    pub attribute: String,
    pub sources: Vec<ConflictSource>,
    /// Keys held by at least two sources.
    pub compared: u64,
    /// Keys whose values differ only before normalization.
    pub cosmetic: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

/// Full-width to half-width, whitespace removed.
pub fn normalize(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            other => other,
        })
        .filter(|c| !c.is_whitespace())
        .collect()
}

impl Client {
    pub async fn conflicts(&self, query: &ConflictQuery) -> Result<ConflictReport> {
        if query.datasets.len() < 2 || query.datasets.len() > 8 {
            return Err(ClientError::Config(
                "compare 2 to 8 datasets (--datasets a/x,b/y)".into(),
            ));
        }
        if !matches!(query.key_type.as_str(), "person_id" | "org_code") {
            return Err(ClientError::Config(format!(
                "conflicts by {:?} are not supported: use org-code or person-id",
                query.key_type
            )));
        }
        let mut sources = Vec::new();
        let mut tables = Vec::new();
        for (i, id) in query.datasets.iter().enumerate() {
            let dataset = self.dataset(id).await?;
            if !dataset.fields.iter().any(|f| f.name == query.attribute) {
                return Err(ClientError::Config(format!(
                    "{id} has no field {:?}, so it cannot be compared on it (its fields: {})",
                    query.attribute,
                    dataset
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let key_field = dataset
                .fields
                .iter()
                .find(|f| f.key_type == query.key_type)
                .ok_or_else(|| {
                    ClientError::Config(format!(
                        "{id} has no {} field to match entities on",
                        query.key_type
                    ))
                })?
                .name
                .clone();
            if key_field == query.attribute {
                return Err(ClientError::Config(
                    "the attribute compared cannot be the key itself".into(),
                ));
            }
            sources.push(ConflictSource {
                dataset: id.clone(),
                department: dataset.department.clone(),
                key_field: key_field.clone(),
                rows: 0,
                authoritative: dataset.authoritative_for.contains(&query.attribute),
            });
            tables.push(TableSpec {
                name: format!("s{i}"),
                dataset: Some(id.clone()),
                file: None,
                fields: vec![key_field, query.attribute.clone()],
                filter: String::new(),
                matching: None,
            });
        }
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let answer = sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "SELECT {i} AS source, {} AS k, {} AS v FROM s{i}",
                    q(&s.key_field),
                    q(&query.attribute)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
            + " ORDER BY k, source";
        let spec = JoinSpec {
            purpose: query.purpose.clone(),
            answer,
            tables,
        };
        // The grant check of the join refuses before anything is read.
        let joined = self.join(&spec).await?;
        for (s, read) in sources.iter_mut().zip(&joined.reads) {
            s.rows = read.rows;
        }
        let mut report = ConflictReport {
            key_type: query.key_type.clone(),
            attribute: query.attribute.clone(),
            sources,
            compared: 0,
            cosmetic: Vec::new(),
            conflicts: Vec::new(),
        };
        let n = report.sources.len();
        let mut by_key: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for row in joined.rows {
            let source = row[0].as_u64().unwrap_or(0) as usize;
            let key = match &row[1] {
                serde_json::Value::String(s) => s.clone(),
                _ => continue,
            };
            let value = match &row[2] {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            let values = by_key.entry(key).or_insert_with(|| vec![None; n]);
            if source < n {
                values[source] = value;
            }
        }
        for (key, values) in by_key {
            let present: Vec<&String> = values.iter().flatten().collect();
            if present.len() < 2 {
                continue;
            }
            report.compared += 1;
            let normalized: Vec<String> = present.iter().map(|v| normalize(v)).collect();
            if normalized.iter().all(|v| v == &normalized[0]) {
                if present.iter().any(|v| *v != present[0]) {
                    report.cosmetic.push(key);
                }
                continue;
            }
            report.conflicts.push(Conflict { key, values });
        }
        Ok(report)
    }
}

impl ConflictReport {
    /// The report for people.
    pub fn render(&self) -> String {
        let authoritative = self.sources.iter().find(|s| s.authoritative);
        let mut s = format!(
            "Conflicts in {} by {}: {} entities held by two or more sources compared; {} conflict(s); {} cosmetic difference(s) (spacing, full-width characters) not reported.\n",
            self.attribute,
            self.key_type,
            self.compared,
            self.conflicts.len(),
            self.cosmetic.len()
        );
        for src in &self.sources {
            s.push_str(&format!(
                "  source {} ({}): {} row(s){}\n",
                src.dataset,
                src.department,
                src.rows,
                if src.authoritative {
                    ", AUTHORITATIVE"
                } else {
                    ""
                }
            ));
        }
        match authoritative {
            Some(a) => s.push_str(&format!(
                "  the bureau declared {} authoritative for {}: its value stands until the other source is corrected\n",
                a.dataset, self.attribute
            )),
            None => s.push_str(&format!(
                "  no authoritative source is declared for {} (coordinator config [authoritative])\n",
                self.attribute
            )),
        }
        for c in &self.conflicts {
            s.push_str(&format!("{}\n", c.key));
            for (src, v) in self.sources.iter().zip(&c.values) {
                s.push_str(&format!(
                    "    {:<32} {}{}\n",
                    src.dataset,
                    v.as_deref().unwrap_or("(none)"),
                    if src.authoritative {
                        "  ← authoritative"
                    } else {
                        ""
                    }
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalization_folds_width_and_spacing_only() {
        assert_eq!(normalize(" 佛山大道１２３ 号 "), "佛山大道123号");
        assert_eq!(normalize("ＡＢＣ\u{3000}路"), "ABC路");
        assert_ne!(normalize("季华路12号"), normalize("季华路21号"));
        assert_eq!(normalize(""), "");
    }
}
