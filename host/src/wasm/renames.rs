//! The host's answer to the component's WIT `renames`: many files moved in one call, each by one native rename
//! that never replaces anything (Linux `renameat2` with `RENAME_NOREPLACE`), beneath two folder descriptors the
//! component lends for the call.
//!
//! Through `wasi:filesystem` the archive's move of a file that must not replace one costs three path
//! resolutions in wasmtime (is the file still there, is the destination free, the rename) and still leaves a
//! window in which a file appearing at the destination would be replaced. Here the kernel checks and renames
//! at once, and the folders of consecutive pairs (a scan's files all move between the same two folders) are
//! opened once.
//!
//! The authority is the component's: each path's folders are resolved beneath the lent descriptor (cap-std;
//! `..`, absolute paths and links leading out are refused), the last segment is renamed as it is (a link is
//! moved, never followed), and only descriptors the component may write through are used, as wasmtime's own
//! `rename-at` requires.

use crate::library::bindings::renames::{ErrorCode, RenameFailure};
use crate::wasm::lent::{error_code, writable_folder};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// Whether this host can rename without replacing (the component then asks it to).
pub(crate) const RENAMES: bool = cfg!(target_os = "linux");

/// Renames every pair in order, stopping at the first that fails.
pub(crate) fn rename_files(
    table: &ResourceTable,
    source: &Resource<Descriptor>,
    destination: &Resource<Descriptor>,
    pairs: &[(String, String)],
) -> Result<(), RenameFailure> {
    let at = |index: usize, code: ErrorCode| RenameFailure { index: u32::try_from(index).unwrap_or(u32::MAX), code };
    if pairs.is_empty() {
        return Ok(());
    }
    let lent = |d| writable_folder(table, d).map_err(|_| at(0, ErrorCode::NotPermitted));
    let (mut from, mut to) = (Folders::new(lent(source)?), Folders::new(lent(destination)?));
    for (i, (a, b)) in pairs.iter().enumerate() {
        let (a_folder, a_name) = split(a).map_err(|code| at(i, code))?;
        let (b_folder, b_name) = split(b).map_err(|code| at(i, code))?;
        let a_dir = from.open(a_folder).map_err(|code| at(i, code))?;
        let b_dir = to.open(b_folder).map_err(|code| at(i, code))?;
        rename_no_replace(a_dir, a_name, b_dir, b_name).map_err(|code| at(i, code))?;
    }
    Ok(())
}

/// A path's folder (empty for the lent folder itself) and its last segment, which must be a name.
fn split(path: &str) -> Result<(&str, &str), ErrorCode> {
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    if name.is_empty() || name == "." || name == ".." {
        return Err(ErrorCode::Invalid);
    }
    Ok((folder, name))
}

/// The folders beneath a lent one, the last one opened kept for the pairs that follow in it.
struct Folders {
    lent: cap_std::fs::Dir,
    last: Option<(String, cap_std::fs::Dir)>,
}

impl Folders {
    fn new(lent: cap_std::fs::Dir) -> Folders {
        Folders { lent, last: None }
    }

    fn open(&mut self, path: &str) -> Result<&cap_std::fs::Dir, ErrorCode> {
        if path.is_empty() {
            return Ok(&self.lent);
        }
        if self.last.as_ref().is_none_or(|(p, _)| p != path) {
            let dir = self.lent.open_dir(path).map_err(error_code)?;
            self.last = Some((path.to_string(), dir));
        }
        Ok(&self.last.as_ref().expect("just opened").1)
    }
}

#[cfg(target_os = "linux")]
fn rename_no_replace(
    from: &cap_std::fs::Dir,
    from_name: &str,
    to: &cap_std::fs::Dir,
    to_name: &str,
) -> Result<(), ErrorCode> {
    use rustix::fs::{RenameFlags, renameat_with};
    renameat_with(from, from_name, to, to_name, RenameFlags::NOREPLACE).map_err(|e| match e {
        // The file system has no rename that refuses to replace (e.g. some network file systems).
        rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS => ErrorCode::Unsupported,
        e => error_code(e.into()),
    })
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(_: &cap_std::fs::Dir, _: &str, _: &cap_std::fs::Dir, _: &str) -> Result<(), ErrorCode> {
    Err(ErrorCode::Unsupported)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs;
    use wasmtime_wasi::{FsPerms, OpenMode};

    fn lend(table: &mut ResourceTable, dir: &std::path::Path, perms: FsPerms) -> Resource<Descriptor> {
        let mode = if perms == FsPerms::ReadWrite { OpenMode::READ | OpenMode::WRITE } else { OpenMode::READ };
        let dir = fs::File::open(dir).unwrap();
        table.push(Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(dir, perms, mode, true))).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn files_move_in_order_and_nothing_is_ever_replaced() {
        let (pre, arc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(pre.path().join("S/SCANS/1")).unwrap();
        fs::create_dir_all(arc.path().join("E/SCANS/1")).unwrap();
        for n in ["a", "b", "c", "d"] {
            fs::write(pre.path().join("S/SCANS/1").join(n), n).unwrap();
        }
        fs::write(arc.path().join("E/SCANS/1/c"), "archived").unwrap();
        let mut table = ResourceTable::new();
        let (p, a) =
            (lend(&mut table, pre.path(), FsPerms::ReadWrite), lend(&mut table, arc.path(), FsPerms::ReadWrite));
        let list = pairs(&[
            ("S/SCANS/1/a", "E/SCANS/1/a"),
            ("S/SCANS/1/b", "E/SCANS/1/b"),
            ("S/SCANS/1/c", "E/SCANS/1/c"),
            ("S/SCANS/1/d", "E/SCANS/1/d"),
        ]);
        let failure = rename_files(&table, &p, &a, &list).unwrap_err();
        assert_eq!((failure.index, failure.code), (2, ErrorCode::Exist), "the third would replace a file");
        assert_eq!(fs::read_to_string(arc.path().join("E/SCANS/1/c")).unwrap(), "archived", "nothing replaced");
        assert_eq!(fs::read_to_string(arc.path().join("E/SCANS/1/b")).unwrap(), "b", "the pairs before it moved");
        assert!(pre.path().join("S/SCANS/1/c").exists() && pre.path().join("S/SCANS/1/d").exists(), "the rest did not");
        // The rest, after the clash is resolved; a pair whose file is gone says so.
        rename_files(&table, &p, &a, &list[3..]).unwrap();
        assert_eq!(fs::read_to_string(arc.path().join("E/SCANS/1/d")).unwrap(), "d");
        let failure = rename_files(&table, &p, &a, &list[..1]).unwrap_err();
        assert_eq!((failure.index, failure.code), (0, ErrorCode::NoEntry), "a file already moved");
        assert!(rename_files(&table, &p, &a, &[]).is_ok());
    }

    #[test]
    fn nothing_outside_the_lent_folders_and_only_for_writers() {
        let (pre, arc, outside) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(pre.path().join("f"), "f").unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), arc.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), pre.path().join("link")).unwrap();
        let mut table = ResourceTable::new();
        let (p, a) =
            (lend(&mut table, pre.path(), FsPerms::ReadWrite), lend(&mut table, arc.path(), FsPerms::ReadWrite));
        for (to, why) in [("../f", "a parent"), ("/tmp/f", "an absolute path"), ("out/f", "a link leading out")] {
            let failure = rename_files(&table, &p, &a, &pairs(&[("f", to)])).unwrap_err();
            assert_eq!(failure.index, 0, "{why}");
            assert!(pre.path().join("f").exists(), "{why}: not moved");
        }
        for name in ["", ".", "..", "x/"] {
            assert_eq!(rename_files(&table, &p, &a, &pairs(&[("f", name)])).unwrap_err().code, ErrorCode::Invalid);
        }
        // A link is moved as a link: what it points at stays where it is.
        rename_files(&table, &p, &a, &pairs(&[("link", "moved-link")])).unwrap();
        assert!(fs::symlink_metadata(arc.path().join("moved-link")).unwrap().file_type().is_symlink());
        assert!(outside.path().join("secret").exists());
        // A read-only grant lends nothing to rename with.
        let ro = lend(&mut table, arc.path(), FsPerms::ReadOnly);
        let failure = rename_files(&table, &p, &ro, &pairs(&[("f", "g")])).unwrap_err();
        assert_eq!((failure.index, failure.code), (0, ErrorCode::NotPermitted));
        assert!(pre.path().join("f").exists());
    }
}
