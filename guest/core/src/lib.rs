//! XNAT's archive services as plain Rust: the catalog refresh service and the import service (prearchive →
//! archive), over the models of XNAT's files and the layout of its trees.
//!
//! Nothing here knows about WIT or wasmtime. The same code runs natively (unit tests, benchmarks) and inside
//! the `xnat:archive` components, where the WASI sandbox confines every path to the host's directory grants.
//!
//! Layers, each using only those below it (`ARCHITECTURE.md` draws them):
//!
//! * [`receive`] — the import service's front half (DICOM uploads into the prearchive), which archives
//!   through [`import`];
//! * [`refresh`], [`import`] — the two services; neither uses the other;
//! * [`site`] — where things live in XNAT's trees, the resource-URI grammar, the documents beside them;
//! * [`model`] — the files XNAT writes: catalogs, session documents, digests, audit stamps;
//! * [`fs`], [`xml`] — granted trees and lock files; bounded XML reading and writing;
//! * [`error`], [`progress`] — shared by all.

pub mod error;
pub mod fs;
pub mod import;
// Used by the components only (a native build has its C library's).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod memcmp;
pub mod model;
pub mod progress;
pub mod receive;
pub mod refresh;
pub mod site;
pub mod xml;
