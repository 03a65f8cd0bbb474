//! An XNAT site's archive as a tree: the resource-URI grammar of the REST API, where projects, subjects,
//! experiments, scans and resources live on disk, the documents we keep beside them, and XNAT's names
//! (identifiers, the URIs inside session documents). Not for: changing catalogs (the services do that).

pub mod browse;
pub mod document;
pub mod layout;
pub mod mounts;
pub mod names;
pub mod uri;
