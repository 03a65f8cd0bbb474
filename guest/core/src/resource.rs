//! Creating a resource: its folder and an empty catalog (`PUT /data/archive/.../resources/LABEL`).

use crate::error::{Error, Result};
use crate::tree::Tree;

#[derive(Debug, Clone, Default)]
pub struct ResourceSpec {
    pub resource: String,
    pub format: Option<String>,
    pub content: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub resource: String,
    pub folder: String,
    pub catalog: String,
}

pub fn create_resource(archive: &Tree, spec: &ResourceSpec) -> Result<Created> {
    let _ = (archive, spec);
    Err(Error::Io("create is being written".into()))
}
