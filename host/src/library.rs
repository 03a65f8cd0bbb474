//! The embedding API's values: the Rust types of the `xnat:archive` WIT contract that callers pass to and
//! get from [`crate::Runtime`] ([`types`]), the wasmtime bindings of the WIT world and the conversions
//! between the two (`bindings`), and the byte sizes messages show ([`size`]).
//!
//! Not for running anything: engines, stores and instances are in `crate::wasm`.

pub(crate) mod bindings;
pub mod size;
pub mod types;
