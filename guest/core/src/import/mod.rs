//! The import service's back half: the prearchive (sessions waiting), and validating and archiving a
//! session into the archive (`POST /data/services/validate-archive`, `POST /data/services/archive`) —
//! resolved into a plan, checked, carried out through a journal that survives a crash.
//!
//! Flow: [`request`] (what the caller asks) → [`prearchive`] (the session) → [`plan`] (resolution and
//! [`checks`], over [`incoming`]) → [`journal`] (every move, recoverable) → [`archive`] (the public entry points).
//! [`contents`] reads a prearchive session's scans, resources and files for the listings.

pub mod archive;
pub mod checks;
pub mod contents;
pub mod incoming;
pub mod journal;
pub mod merge;
pub mod plan;
pub mod prearchive;
pub mod request;
pub mod table;
