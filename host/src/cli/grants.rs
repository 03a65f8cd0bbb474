//! The directories named on the command line, as grants: a directory that does not exist is a not-found
//! answer that names the option, before any component runs.
//!
//! Not for what a grant allows inside the component (`xnat_archive::Grant`).

use std::path::Path;

use xnat_archive::{Error, Grant};

/// The archive grant, or a not-found error when the directory does not exist.
pub fn archive(archive: &Path, writable: bool) -> Result<Grant, Error> {
    if archive.is_dir() {
        Ok(Grant::archive(archive, writable))
    } else {
        Err(Error::NotFound(format!(
            "the archive directory {} does not exist: pass the archive root (the folder holding the project \
             folders) with --archive",
            archive.display()
        )))
    }
}

/// The prearchive grant, or a not-found error when the directory does not exist.
pub fn prearchive(prearchive: &Path, writable: bool) -> Result<Grant, Error> {
    if prearchive.is_dir() {
        Ok(Grant::prearchive(prearchive, writable))
    } else {
        Err(Error::NotFound(format!(
            "the prearchive directory {} does not exist: pass the prearchive root (the folder holding the \
             project and timestamp folders) with --prearchive",
            prearchive.display()
        )))
    }
}

/// The prearchive and archive grants of validate (read-only), archive and recover (read-write).
pub fn both(prearchive_dir: &Path, archive_dir: &Path, writable: bool) -> Result<[Grant; 2], Error> {
    Ok([prearchive(prearchive_dir, writable)?, archive(archive_dir, writable)?])
}
