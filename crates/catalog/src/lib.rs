//! Catalog manifests and the federation catalog index.
//!
//! - [`manifest`]: the TOML manifest a department keeps beside its node
//!   (modelled on GB/T 21063 core metadata), its parsing and validation, and
//!   the check of that manifest against the real columns of the source
//!   database ([`manifest::check_columns`]).
//! - [`policy`]: re-exported from `exchange-policy`: sharing classes,
//!   sensitivities, masks and semantic key types.
//! - [`search`]: the coordinator's in-memory full-text index over every
//!   published dataset, with CJK bigram tokenization so that Chinese, which
//!   has no spaces between words, is searchable.

pub mod manifest;
pub use exchange_policy as policy;
pub mod search;

pub use manifest::{ColumnClass, Manifest, ManifestError, SourceColumn};
pub use search::{SearchIndex, SearchQuery};
