//! A directory grant: one host directory the component may see, at a fixed guest path, read-only or
//! read-write. Grants are the component's only access to the file system.
//!
//! Not for checking that a directory is the right one (callers do: the CLI's `--archive` messages, `serve`'s
//! configuration); a grant of a missing directory fails when the call starts.

use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The guest paths of the two trees (`wit/archive.wit`), as the components open them.
pub use xnat_core::site::mounts::{ARCHIVE, PREARCHIVE};

/// One host directory made visible to the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The directory on the host. It must exist.
    pub host: PathBuf,
    /// Where the component sees it, e.g. [`ARCHIVE`].
    pub guest: String,
    /// Whether the component may create, change, rename or delete anything under it.
    pub writable: bool,
}

impl Grant {
    /// A read-only grant: every write inside the guest fails.
    pub fn read_only(host: impl Into<PathBuf>, guest: impl Into<String>) -> Grant {
        Grant { host: host.into(), guest: guest.into(), writable: false }
    }

    /// A read-write grant.
    pub fn read_write(host: impl Into<PathBuf>, guest: impl Into<String>) -> Grant {
        Grant { host: host.into(), guest: guest.into(), writable: true }
    }

    /// The archive tree at [`ARCHIVE`].
    pub fn archive(host: impl Into<PathBuf>, writable: bool) -> Grant {
        Grant { host: host.into(), guest: ARCHIVE.to_owned(), writable }
    }

    /// The prearchive tree at [`PREARCHIVE`].
    pub fn prearchive(host: impl Into<PathBuf>, writable: bool) -> Grant {
        Grant { host: host.into(), guest: PREARCHIVE.to_owned(), writable }
    }

    /// Adds this grant as a WASI preopen. The only place where grants become wasmtime-wasi permissions.
    pub(crate) fn preopen(&self, wasi: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        let perms = if self.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        wasi.preopened_dir(&self.host, &self.guest, perms).map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "cannot grant {} to the component at {}: check that the directory exists and is readable",
                self.host.display(),
                self.guest
            ))
        })?;
        Ok(())
    }
}
