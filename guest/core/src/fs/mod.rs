//! The file layer: a granted directory tree addressed by checked relative paths, moves of many files between
//! trees, and the lock files with leases that services take in it. Not for: what the files mean (that is
//! [`crate::model`] and [`crate::site`]).

pub mod ahead;
pub mod instances;
pub mod lock;
pub mod moves;
pub mod tree;
mod wasi_dir;

#[cfg(target_os = "wasi")]
pub use moves::HostRenames;
#[cfg(target_os = "wasi")]
pub use wasi_dir::{HostEntry, HostListing};
#[cfg(target_os = "wasi")]
pub(crate) use wasi_dir::{below_preopen, in_preopen};
