//! XNAT's archive services as plain Rust: catalogs, resource URIs, the archive tree and the catalog refresh.
//!
//! Nothing here knows about WIT or wasmtime. The same code runs natively (unit tests, benchmarks) and inside
//! the `xnat:archive` component, where the WASI sandbox confines every path to the host's directory grants.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod contents;
pub mod digest;
pub mod document;
pub mod error;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod plan;
pub mod prearchive;
pub mod refresh;
pub mod resource;
pub mod session;
pub mod tree;
pub mod uri;
pub mod xml;
