//! Where a host grants the two trees inside the component: the file-system half of the contract in
//! `wit/archive.wit`, shared by the components (which open them) and the host (which grants them). Not for
//! what lies inside the trees (`layout.rs`).

/// The guest path of the archive tree.
pub const ARCHIVE: &str = "/archive";
/// The guest path of the prearchive tree.
pub const PREARCHIVE: &str = "/prearchive";
/// The guest path of the folder holding a file to import (granted read-only, to the library's import only).
pub const UPLOAD: &str = "/upload";
