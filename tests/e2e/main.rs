//! The end-to-end suite: whole federations started in-process, one module
//! per area. They build as one test binary, so the whole stack is linked
//! once rather than once per file.

mod abuse;
mod audit;
mod browser;
mod console;
mod federation;
mod flight_sql;
mod grpc_cli;
mod lookup;
mod outage;
mod pyarrow;
mod python_package;
mod query;
mod reads;
mod replicas;
mod scenarios;
mod sources;
mod state_postgres;
mod typed_api;
