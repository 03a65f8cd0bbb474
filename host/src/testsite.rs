//! Sites to run on: [`generator`] writes deterministic XNAT prearchive sessions and archive projects,
//! [`demo`] the sites `xnat-archive demo`, `serve` without a configuration and the tests use.
//!
//! Not for production data: nothing here reads a site, it only writes new ones.

pub mod demo;
pub mod generator;
