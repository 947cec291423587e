//! The department's catalog manifest: parsing, validation and the check
//! against the source database's real columns.
//!
//! A manifest is TOML with `deny_unknown_fields`. Every problem found is
//! reported at once, each naming the file, the dataset, the key and the fix.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use exchange_proto::v1 as pb;
use serde::Deserialize;

use crate::policy::{is_key_type, FieldType, Mask, Sensitivity, Sharing, KEY_TYPES};

pub const UPDATE_CYCLES: &[&str] = &[
    "realtime",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
    "irregular",
];
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 4000;
const MAX_FIELDS: usize = 500;

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    pub dataset: Option<String>,
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(ds) = &self.dataset {
            write!(f, "dataset {ds:?}: ")?;
        }
        write!(f, "{}: {}", self.key, self.problem)?;
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the catalog manifest has {} problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    department: String,
    #[serde(default)]
    databases: BTreeMap<String, RawDatabase>,
    #[serde(default)]
    datasets: Vec<RawDataset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    kind: String,
    path: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    max_connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    id: String,
    title: String,
    title_en: Option<String>,
    #[serde(default)]
    description: String,
    update_cycle: String,
    sharing: String,
    basis: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    source: RawSource,
    #[serde(default)]
    fields: Vec<RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    database: String,
    table: String,
    #[serde(default)]
    key_columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    column: Option<String>,
    #[serde(rename = "type")]
    field_type: String,
    #[serde(default)]
    description: String,
    sensitivity: String,
    mask: Option<String>,
    key_type: Option<String>,
}

/// Which kind of database serves a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Sqlite,
    Postgres,
    Mysql,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Sqlite => "sqlite",
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
        }
    }
}

/// A configured source database. `location` is a file path (SQLite) or a
/// connection URL; it may hold a password and is never logged or published.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub name: String,
    pub kind: SourceKind,
    pub location: String,
    pub max_connections: u32,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    /// The source column; identifiers come only from here, never from requests.
    pub column: String,
    pub field_type: FieldType,
    pub description: String,
    pub sensitivity: Sensitivity,
    pub mask: Mask,
    pub key_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub id: String,
    pub title: String,
    pub title_en: String,
    pub description: String,
    pub update_cycle: String,
    pub sharing: Sharing,
    pub basis: String,
    pub tags: Vec<String>,
    pub database: String,
    pub table: String,
    pub key_columns: Vec<String>,
    pub fields: Vec<FieldSpec>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub path: PathBuf,
    pub department: String,
    pub databases: BTreeMap<String, DatabaseConfig>,
    pub datasets: Vec<DatasetSpec>,
    /// SHA-256 of the file's bytes; a changed digest is a new catalog version.
    pub digest: String,
}

/// The broad class of a source column's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    Text,
    Integer,
    Real,
    Numeric,
    Boolean,
    Date,
    Timestamp,
    Blob,
    Other,
}

/// A column as the source database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub name: String,
    pub declared_type: String,
    pub class: ColumnClass,
}

fn is_identifier(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_dataset_id(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_field_name(s: &str) -> bool {
    is_identifier(s, 63)
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| !c.is_ascii_uppercase())
}

struct Collector {
    file: String,
    errors: Vec<ManifestError>,
}

impl Collector {
    fn push(
        &mut self,
        dataset: Option<&str>,
        key: String,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.errors.push(ManifestError {
            file: self.file.clone(),
            dataset: dataset.map(str::to_string),
            key,
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

impl Manifest {
    /// Reads and validates a manifest file. Relative SQLite paths are resolved
    /// against the manifest's directory.
    pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
        let bytes = std::fs::read(path).map_err(|e| {
            ManifestErrors(vec![ManifestError {
                file: path.display().to_string(),
                dataset: None,
                key: "(file)".into(),
                problem: format!("cannot read: {e}"),
                fix: "check the path given as --manifest or in the node config".into(),
            }])
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ManifestErrors(vec![ManifestError {
                file: path.display().to_string(),
                dataset: None,
                key: "(file)".into(),
                problem: "not valid UTF-8".into(),
                fix: "save the manifest as UTF-8".into(),
            }])
        })?;
        Manifest::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses and validates manifest text. `path` names the file in errors and
    /// anchors relative paths; `env` resolves `url_env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Manifest, ManifestErrors> {
        let file = path.display().to_string();
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| {
                    let line = text.bytes().take(s.start).filter(|b| *b == b'\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(file)".into());
            ManifestErrors(vec![ManifestError {
                file: file.clone(),
                dataset: None,
                key: span,
                problem: e.message().trim().to_string(),
                fix: "see deploy/examples/catalog.toml for the manifest format".into(),
            }])
        })?;
        let mut c = Collector {
            file,
            errors: Vec::new(),
        };
        let base = path.parent().unwrap_or(Path::new("."));

        if exchange_member_id(&raw.department).is_err() {
            c.push(
                None,
                "department".into(),
                format!("{:?} is not a valid member id", raw.department),
                "use the member id the bureau registered, e.g. \"vehicle-admin\"",
            );
        }

        let mut databases = BTreeMap::new();
        for (name, db) in &raw.databases {
            let key = format!("databases.{name}");
            if !is_identifier(name, 63) {
                c.push(
                    None,
                    key.clone(),
                    "invalid database name",
                    "use letters, digits and _",
                );
            }
            let kind = match db.kind.as_str() {
                "sqlite" => SourceKind::Sqlite,
                "postgres" | "postgresql" => SourceKind::Postgres,
                "mysql" | "mariadb" => SourceKind::Mysql,
                other => {
                    c.push(
                        None,
                        format!("{key}.kind"),
                        format!("unknown kind {other:?}"),
                        "use sqlite, postgres or mysql",
                    );
                    continue;
                }
            };
            let location = match (kind, &db.path, &db.url, &db.url_env) {
                (SourceKind::Sqlite, Some(p), None, None) => {
                    let p = Path::new(p);
                    if p.is_absolute() {
                        p.to_path_buf()
                    } else {
                        base.join(p)
                    }
                    .display()
                    .to_string()
                }
                (SourceKind::Sqlite, _, _, _) => {
                    c.push(
                        None,
                        format!("{key}.path"),
                        "a sqlite database needs `path` (and no url)",
                        "set path = \"department.db\"",
                    );
                    continue;
                }
                (_, None, Some(url), None) => url.clone(),
                (_, None, None, Some(var)) => match env(var) {
                    Some(url) => url,
                    None => {
                        c.push(
                            None,
                            format!("{key}.url_env"),
                            format!("environment variable {var} is not set"),
                            format!("export {var}=<connection url> before starting the node"),
                        );
                        continue;
                    }
                },
                _ => {
                    c.push(
                        None,
                        key.to_string(),
                        "a server database needs exactly one of `url` or `url_env`",
                        "prefer url_env, so the password stays out of the file",
                    );
                    continue;
                }
            };
            let max_connections = db.max_connections.unwrap_or(8);
            if max_connections == 0 || max_connections > 256 {
                c.push(
                    None,
                    format!("{key}.max_connections"),
                    "must be 1 to 256",
                    "set max_connections = 8",
                );
            }
            databases.insert(
                name.clone(),
                DatabaseConfig {
                    name: name.clone(),
                    kind,
                    location,
                    max_connections,
                },
            );
        }

        let mut datasets = Vec::new();
        let mut seen_ids = HashSet::new();
        for (i, d) in raw.datasets.iter().enumerate() {
            if let Some(ds) = validate_dataset(&mut c, i, d, &raw.databases) {
                if !seen_ids.insert(ds.id.clone()) {
                    c.push(
                        Some(&d.id),
                        format!("datasets[{i}].id"),
                        "duplicate dataset id",
                        "give every dataset its own id",
                    );
                }
                datasets.push(ds);
            }
        }
        if datasets.is_empty() && c.errors.is_empty() {
            c.push(
                None,
                "datasets".into(),
                "the manifest declares no datasets",
                "add at least one [[datasets]] table",
            );
        }
        if !c.errors.is_empty() {
            return Err(ManifestErrors(c.errors));
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            department: raw.department,
            databases,
            datasets,
            digest: hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes())),
        })
    }

    /// Checks one dataset against the columns its source table really has
    /// (empty when the table does not exist). Returns every mismatch.
    /// Warnings for fields that carry a semantic key but whose column leads
    /// no index of the table (`indexed`, lower-cased): lookups and joins by
    /// that key would read the whole table. Not errors: the dataset still
    /// serves, more slowly.
    pub fn unindexed_keys(&self, dataset: &DatasetSpec, indexed: &BTreeSet<String>) -> Vec<String> {
        dataset
            .fields
            .iter()
            .filter_map(|f| {
                let key_type = f.key_type.as_deref()?;
                if indexed.contains(&f.column.to_lowercase()) {
                    return None;
                }
                Some(format!(
                    "{}: dataset {}: field {} carries {key_type} keys, but no index of {} starts with column {}; every lookup by {key_type} reads the whole table (fix: CREATE INDEX ON {} ({}))",
                    self.path.display(),
                    dataset.id,
                    f.name,
                    dataset.table,
                    f.column,
                    dataset.table,
                    f.column
                ))
            })
            .collect()
    }

    pub fn check_columns(
        &self,
        dataset: &DatasetSpec,
        columns: &[SourceColumn],
    ) -> Vec<ManifestError> {
        let mut c = Collector {
            file: self.path.display().to_string(),
            errors: Vec::new(),
        };
        let ds = Some(dataset.id.as_str());
        if columns.is_empty() {
            c.push(
                ds,
                "source.table".into(),
                format!(
                    "table or view {:?} not found in database {:?}",
                    dataset.table, dataset.database
                ),
                "create it, or point source.table at an existing table or view",
            );
            return c.errors;
        }
        for (i, f) in dataset.fields.iter().enumerate() {
            let key = format!("fields[{i}] ({})", f.name);
            match columns
                .iter()
                .find(|col| col.name.eq_ignore_ascii_case(&f.column))
            {
                None => {
                    let names: Vec<&str> =
                        columns.iter().take(30).map(|c| c.name.as_str()).collect();
                    c.push(
                        ds,
                        format!("{key}.column"),
                        format!(
                            "column {:?} does not exist in {:?}",
                            f.column, dataset.table
                        ),
                        format!("use one of: {}", names.join(", ")),
                    );
                }
                Some(col) if !compatible(f.field_type, col.class) => {
                    c.push(
                        ds,
                        format!("{key}.type"),
                        format!(
                            "the manifest says {} but column {:?} is {} in the database",
                            f.field_type, col.name, col.declared_type
                        ),
                        format!("set type = \"{}\"", suggest(col.class)),
                    );
                }
                Some(_) => {}
            }
        }
        c.errors
    }

    /// The catalog as published to the coordinator. Connection details stay
    /// here; the coordinator fills in the department from our certificate.
    pub fn to_published(&self) -> Vec<pb::Dataset> {
        self.datasets
            .iter()
            .map(|d| pb::Dataset {
                id: d.id.clone(),
                department: String::new(),
                department_name: String::new(),
                title: d.title.clone(),
                title_en: d.title_en.clone(),
                description: d.description.clone(),
                update_cycle: d.update_cycle.clone(),
                sharing: d.sharing.to_string(),
                basis: d.basis.clone(),
                key_columns: d.key_columns.clone(),
                fields: d
                    .fields
                    .iter()
                    .map(|f| pb::Field {
                        name: f.name.clone(),
                        r#type: f.field_type.to_string(),
                        description: f.description.clone(),
                        sensitivity: f.sensitivity.to_string(),
                        mask: f.mask.to_string(),
                        key_type: f.key_type.clone().unwrap_or_default(),
                    })
                    .collect(),
                source_kind: self
                    .databases
                    .get(&d.database)
                    .map(|db| db.kind.as_str().to_string())
                    .unwrap_or_default(),
                catalog_version: 0,
                tags: d.tags.clone(),
                authoritative_for: vec![],
            })
            .collect()
    }
}

fn exchange_member_id(id: &str) -> Result<(), ()> {
    // Same rule as exchange_pki::validate_member_id, kept here so the catalog
    // does not depend on the PKI crate.
    let ok = (2..=40).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

fn validate_dataset(
    c: &mut Collector,
    i: usize,
    d: &RawDataset,
    databases: &BTreeMap<String, RawDatabase>,
) -> Option<DatasetSpec> {
    let before = c.errors.len();
    let (sharing, basis) = check_dataset_header(c, i, d);
    check_dataset_source(c, i, d, databases);
    let mut names = HashSet::new();
    let fields: Vec<FieldSpec> = (0..d.fields.len())
        .filter_map(|j| validate_field(c, Some(d.id.as_str()), (i, j), &d.fields[j], &mut names))
        .collect();
    check_key_columns(c, i, d);
    if c.errors.len() > before {
        return None;
    }
    Some(DatasetSpec {
        id: d.id.clone(),
        title: d.title.trim().to_string(),
        title_en: d.title_en.clone().unwrap_or_default(),
        description: d.description.trim().to_string(),
        update_cycle: d.update_cycle.clone(),
        sharing: sharing?,
        basis,
        tags: d.tags.clone(),
        database: d.source.database.clone(),
        table: d.source.table.clone(),
        key_columns: d.source.key_columns.clone(),
        fields,
    })
}

/// The dataset's own settings: id, title, description, update cycle,
/// sharing class and its basis. Returns the sharing class and basis when
/// they are valid.
fn check_dataset_header(c: &mut Collector, i: usize, d: &RawDataset) -> (Option<Sharing>, String) {
    let ds = Some(d.id.as_str());
    let k = |rest: &str| format!("datasets[{i}].{rest}");
    if !is_dataset_id(&d.id) {
        c.push(
            ds,
            k("id"),
            "invalid dataset id",
            "use 2-64 lowercase letters, digits, '-' or '_', starting with a letter",
        );
    }
    if d.title.trim().is_empty() || d.title.chars().count() > MAX_TITLE {
        c.push(
            ds,
            k("title"),
            "title must be 1 to 200 characters",
            "give the dataset a human title, e.g. \"机动车登记信息\"",
        );
    }
    if d.description.chars().count() > MAX_DESCRIPTION {
        c.push(
            ds,
            k("description"),
            "description longer than 4000 characters",
            "shorten it",
        );
    }
    if !UPDATE_CYCLES.contains(&d.update_cycle.as_str()) {
        c.push(
            ds,
            k("update_cycle"),
            format!("unknown update cycle {:?}", d.update_cycle),
            format!("use one of {}", UPDATE_CYCLES.join(", ")),
        );
    }
    let sharing = match d.sharing.parse::<Sharing>() {
        Ok(s) => Some(s),
        Err(fix) => {
            c.push(
                ds,
                k("sharing"),
                format!("unknown sharing class {:?}", d.sharing),
                fix,
            );
            None
        }
    };
    let basis = d.basis.clone().unwrap_or_default();
    if sharing == Some(Sharing::None) && basis.trim().is_empty() {
        c.push(
            ds,
            k("basis"),
            "sharing = \"none\" requires the legal or policy basis for not sharing",
            "add basis = \"<law, regulation or policy and article>\"",
        );
    }
    (sharing, basis)
}

/// Where the dataset's rows come from, and how many fields it has.
fn check_dataset_source(
    c: &mut Collector,
    i: usize,
    d: &RawDataset,
    databases: &BTreeMap<String, RawDatabase>,
) {
    let ds = Some(d.id.as_str());
    let k = |rest: &str| format!("datasets[{i}].{rest}");
    if !databases.contains_key(&d.source.database) {
        let known: Vec<&str> = databases.keys().map(String::as_str).collect();
        c.push(
            ds,
            k("source.database"),
            format!("no database named {:?}", d.source.database),
            if known.is_empty() {
                "declare it under [databases.<name>]".to_string()
            } else {
                format!("use one of: {}", known.join(", "))
            },
        );
    }
    let table_ok = !d.source.table.is_empty()
        && d.source.table.split('.').count() <= 2
        && d.source.table.split('.').all(|p| is_identifier(p, 63));
    if !table_ok {
        c.push(
            ds,
            k("source.table"),
            format!("{:?} is not a plain table name", d.source.table),
            "use table or schema.table with letters, digits and _",
        );
    }
    if d.fields.is_empty() || d.fields.len() > MAX_FIELDS {
        c.push(
            ds,
            k("fields"),
            "a dataset needs 1 to 500 fields",
            "add [[datasets.fields]] entries",
        );
    }
}

/// One field: its name (unique within the dataset), column, type,
/// sensitivity, mask and key type. Returns it when every part is valid.
fn validate_field(
    c: &mut Collector,
    ds: Option<&str>,
    (i, j): (usize, usize),
    f: &RawField,
    names: &mut HashSet<String>,
) -> Option<FieldSpec> {
    let fk = |rest: &str| format!("datasets[{i}].fields[{j}].{rest}");
    if !is_field_name(&f.name) {
        c.push(
            ds,
            fk("name"),
            format!("{:?} is not a valid field name", f.name),
            "use lowercase letters, digits and _, starting with a letter",
        );
    } else if !names.insert(f.name.clone()) {
        c.push(
            ds,
            fk("name"),
            format!("duplicate field {:?}", f.name),
            "give every field its own name",
        );
    }
    let column = f.column.clone().unwrap_or_else(|| f.name.clone());
    if f.column.is_some() && !is_identifier(&column, 63) {
        c.push(
            ds,
            fk("column"),
            format!("{column:?} is not a plain column name"),
            "use letters, digits and _",
        );
    }
    let field_type = f
        .field_type
        .parse::<FieldType>()
        .map_err(|fix| {
            c.push(
                ds,
                fk("type"),
                format!("unknown type {:?}", f.field_type),
                fix,
            )
        })
        .ok();
    let sensitivity = f
        .sensitivity
        .parse::<Sensitivity>()
        .map_err(|fix| {
            c.push(
                ds,
                fk("sensitivity"),
                format!("unknown sensitivity {:?}", f.sensitivity),
                fix,
            )
        })
        .ok();
    let mask = f
        .mask
        .as_deref()
        .unwrap_or("none")
        .parse::<Mask>()
        .map_err(|fix| {
            c.push(
                ds,
                fk("mask"),
                format!("unknown mask {:?}", f.mask.as_deref().unwrap_or("")),
                fix,
            )
        })
        .ok();
    if let (Some(t), Some(m)) = (field_type, mask) {
        if !m.applies_to(t) {
            c.push(
                ds,
                fk("mask"),
                format!("mask {m} does not apply to a {t} field"),
                "use hash or null, or a mask made for this type",
            );
        }
    }
    if sensitivity == Some(Sensitivity::Sensitive) && mask == Some(Mask::None) {
        c.push(ds, fk("mask"), "a sensitive field needs a default mask", "set mask = \"hash\" (or id_number, mobile, surname, keep_last:N ...); grants can unmask it explicitly");
    }
    if let Some(kt) = &f.key_type {
        if !is_key_type(kt) {
            let known: Vec<&str> = KEY_TYPES.iter().map(|(k, _)| *k).collect();
            c.push(
                ds,
                fk("key_type"),
                format!("unknown key type {kt:?}"),
                format!("use one of {}", known.join(", ")),
            );
        }
        if field_type.is_some_and(|t| t != FieldType::String) {
            c.push(
                ds,
                fk("key_type"),
                "key fields must have type string",
                "set type = \"string\"",
            );
        }
    }
    Some(FieldSpec {
        name: f.name.clone(),
        column,
        field_type: field_type?,
        description: f.description.clone(),
        sensitivity: sensitivity?,
        mask: mask?,
        key_type: f.key_type.clone(),
    })
}

/// Every key column must be one of the dataset's fields.
fn check_key_columns(c: &mut Collector, i: usize, d: &RawDataset) {
    let ds = Some(d.id.as_str());
    for (j, kc) in d.source.key_columns.iter().enumerate() {
        if !d
            .fields
            .iter()
            .any(|f| f.column.as_deref().unwrap_or(&f.name) == kc)
        {
            c.push(
                ds,
                format!("datasets[{i}].source.key_columns[{j}]"),
                format!("key column {kc:?} is not one of the dataset's fields"),
                "list key columns among the fields",
            );
        }
    }
}

fn compatible(t: FieldType, class: ColumnClass) -> bool {
    use ColumnClass as C;
    match t {
        FieldType::String => matches!(class, C::Text | C::Other),
        FieldType::Integer => matches!(class, C::Integer),
        FieldType::Float => matches!(class, C::Real | C::Numeric | C::Integer),
        FieldType::Boolean => matches!(class, C::Boolean | C::Integer),
        FieldType::Date => matches!(class, C::Date | C::Text),
        FieldType::Timestamp => matches!(class, C::Timestamp | C::Text),
    }
}

fn suggest(class: ColumnClass) -> &'static str {
    match class {
        ColumnClass::Integer => "integer",
        ColumnClass::Real | ColumnClass::Numeric => "float",
        ColumnClass::Boolean => "boolean",
        ColumnClass::Date => "date",
        ColumnClass::Timestamp => "timestamp",
        _ => "string",
    }
}

#[cfg(test)]
mod tests;
