//! The wasmtime side of the host, in one place: the engine (configuration, compiled-code cache, epoch
//! ticker, how a stopped call is explained), directory grants, limits, progress, instance names, and the
//! library component's [`runtime::Runtime`].
//!
//! Not for the values callers exchange with the component (`crate::library`) nor for HTTP (`crate::serve`,
//! which builds its engine with [`engine`] too).

pub(crate) mod compiled;
pub(crate) mod digests;
pub(crate) mod engine;
pub mod grant;
pub(crate) mod instances;
pub(crate) mod lent;
pub mod limits;
pub(crate) mod listings;
pub mod progress;
pub(crate) mod renames;
pub mod runtime;
pub(crate) mod walks;
pub(crate) mod watches;
