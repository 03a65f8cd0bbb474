//! Runs the `xnat:archive` WebAssembly component (XNAT's archive services) on wasmtime, with
//! capability-scoped directory grants and per-call limits.
//!
//! ```no_run
//! use xnat_archive::{Grant, Limits, NoProgress, RefreshMode, RefreshRequest, Runtime};
//!
//! fn main() -> anyhow::Result<()> {
//!     let runtime = Runtime::new()?; // the embedded component, compiled once per process
//!     let grants = [Grant::archive("/data/xnat/archive", false)]; // read-only is enough to verify
//!     let request = RefreshRequest {
//!         resources: vec!["/archive/projects/P/subjects/S/experiments/E".into()],
//!         mode: RefreshMode::Verify,
//!         ..RefreshRequest::default()
//!     };
//!     match runtime.refresh(&grants, &Limits::default(), request, NoProgress)? {
//!         Ok(reports) => println!("{}", serde_json::to_string_pretty(&reports)?),
//!         Err(e) => eprintln!("refused: {e}"),
//!     }
//!     Ok(())
//! }
//! ```

mod library;
pub mod serve;
mod testsite;
mod wasm;

pub use library::size::human_size;
pub use library::types::{
    ArchiveRequest, Archived, CreatedResource, DigestAlgorithm, DigestMismatch, Error, FileRow, ImportOutcome,
    LockPolicy, Overwrite, PrearchiveRow, Recovered, RefreshMode, RefreshOptions, RefreshRequest, RefusedFile,
    ResourceOutcome, ResourceReport, ResourceRow, ResourceSpec, ScanRow, SkippedItem, ValidationNotice,
};
pub use testsite::{demo, generator};
pub use wasm::engine::TICK;
pub use wasm::grant::{ARCHIVE, Grant, PREARCHIVE};
pub use wasm::limits::Limits;
pub use wasm::progress::{NoProgress, Progress, TerminalProgress};
pub use wasm::runtime::{
    COMPONENT, FAULT_POINT_VAR, HTTP_COMPONENT, OutOfMemory, PAUSE_MS_VAR, Runtime, TEST_SWITCHES,
};
