//! Deterministic synthetic data for the nine demo departments.
//!
//! [`generate`] writes one SQLite database and one catalog manifest per
//! department into a directory. The same seed and size always produce the
//! same rows. Persons and companies are consistent across departments: the
//! person registered by public security is the one who owns the vehicle, pays
//! the tax and appears in social insurance.
//!
//! Identifiers are realistic: resident identity numbers with correct ISO 7064
//! check characters and unified social credit codes with correct GB 32100 and
//! GB 11714 check characters (see [`ids`]). Names and addresses are Chinese.
//!
//! # Planted cases
//!
//! The mission's scenarios need known answers. [`Planted`] records them, and
//! `planted.json` is written beside the databases. At the default 100,000
//! persons (5,000 companies):
//!
//! - **Poverty relief** (civil affairs): 200 applicant households
//!   (`persons / 500`, at least 20); exactly 37 of them (`18.5%`) have a
//!   member who owns a vehicle or real estate. No member of any other
//!   applicant household owns either.
//! - **Social-insurance arrears** (human resources and social security):
//!   12 companies (`companies / 400`, at least 3) are in
//!   `contribution_arrears`; no other company is.
//! - **Tax versus electricity**: 50 companies (`companies / 100`, at least 2)
//!   declared 2025 tax below 0.03 yuan per kWh; every other company declared
//!   at least 0.30 yuan per kWh in every year. At the default size the
//!   planted set is exactly the bottom 1%.
//! - **Integrity check**: one official (aged 40 to 60) made exactly 40 round
//!   trips to Macau (澳门) in 2025, 80 exit/entry records, and owns 3
//!   properties and 2 vehicles. Nobody else made more than 3 trips.
//! - **Data conflicts**: 15 companies (`companies / 333`, at least 3) have a
//!   different registered address at the tax bureau than at market
//!   regulation; 10 more (`companies / 500`, at least 2) differ only in
//!   full-width digits and spacing, which normalization must not report.
//! - **Paperless enrolment**: application `EA-2026-0001` for a child whose
//!   first guardian owns the family home and whose second guardian has an
//!   active social-insurance record, all in one registered household; and
//!   `EA-2026-0002`, whose guardian rents (a lease at the real-estate
//!   registry) instead of owning.

mod generate;
pub use exchange_policy::ids;
mod rng;

pub use generate::{generate, Options, Planted, DEPARTMENTS};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot write demo data into {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("SQLite error while writing {db}: {source}")]
    Sqlite { db: String, source: sqlx::Error },
    #[error("invalid option: {0}")]
    Options(String),
}
