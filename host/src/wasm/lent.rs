//! A folder the component lends the host for one call (WIT `digests`, `listings`, `renames`): its descriptor,
//! looked up in the instance's own resource table, becomes a capability of the host's for that call only.

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::{Descriptor, Dir};
use wasmtime_wasi::p2::bindings::sync::filesystem::types::ErrorCode;

/// The lent folder as a capability of its own (a duplicate of its descriptor), if it was opened for reading.
pub(crate) fn readable_folder(
    table: &ResourceTable,
    folder: &Resource<Descriptor>,
) -> Result<cap_std::fs::Dir, String> {
    lent_folder(table, folder, |d| d.open_mode.contains(OpenMode::READ).then_some(()).ok_or("not opened for reading"))
}

/// The lent folder as a capability of its own, if the component may change what is in it (a grant that is not
/// read-only), as wasmtime's own `rename-at` requires of both its folders.
pub(crate) fn writable_folder(
    table: &ResourceTable,
    folder: &Resource<Descriptor>,
) -> Result<cap_std::fs::Dir, String> {
    lent_folder(table, folder, |d| (!d.perms.write_not_permitted()).then_some(()).ok_or("granted read-only"))
}

/// The lent folder's own descriptor, borrowed for the call (nothing duplicated), if it was opened for reading.
/// For system calls relative to it only: nothing may read it as a folder, which would move its position.
#[cfg(target_os = "linux")]
pub(crate) fn readable_descriptor<'t>(
    table: &'t ResourceTable,
    folder: &Resource<Descriptor>,
) -> Result<&'t std::fs::File, String> {
    lent_dir(table, folder, |d| d.open_mode.contains(OpenMode::READ).then_some(()).ok_or("not opened for reading"))
        .map(|d| &*d.dir)
}

/// A duplicate of the lent folder's descriptor, if it is a folder of this instance that `usable` accepts.
fn lent_folder(
    table: &ResourceTable,
    folder: &Resource<Descriptor>,
    usable: impl Fn(&Dir) -> Result<(), &'static str>,
) -> Result<cap_std::fs::Dir, String> {
    lent_dir(table, folder, usable)?
        .dir
        .try_clone()
        .map(cap_std::fs::Dir::from_std_file)
        .map_err(|e| format!("the folder cannot be used: {e}"))
}

/// The lent folder, if it is a folder of this instance that `usable` accepts.
fn lent_dir<'t>(
    table: &'t ResourceTable,
    folder: &Resource<Descriptor>,
    usable: impl Fn(&Dir) -> Result<(), &'static str>,
) -> Result<&'t Dir, String> {
    match table.get(folder) {
        Ok(Descriptor::Dir(d)) => {
            usable(d).map_err(|why| format!("the folder was {why}"))?;
            Ok(d)
        }
        Ok(Descriptor::File(_)) => Err("the descriptor lent as the folder is a file".into()),
        Err(e) => Err(format!("not a descriptor of this instance ({e})")),
    }
}

/// The error as wasmtime-wasi reports the same error of its own filesystem calls.
pub(crate) fn error_code(e: std::io::Error) -> ErrorCode {
    ErrorCode::from(wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode::from(e))
}
