//! The host's answer to the component's WIT `listings`: every entry of a folder beneath a folder descriptor
//! the component lends for the call, each from one native look (`statx` without following a link), on as many
//! threads as the machine has cores when the folder is large.
//!
//! Through `wasi:filesystem` alone the same listing costs the component a call per entry, and wasmtime looks
//! at every entry while reading the folder and the component then looks at each file again (`stat-at`).
//!
//! The authority is the component's: the folder is resolved beneath the lent descriptor (cap-std; `..`,
//! absolute paths and links leading out are refused) and listed only when the descriptor was opened for
//! reading. Nothing is opened but the folder itself.

use crate::library::bindings::listings::{Datetime, DescriptorType, ErrorCode, ListedEntry};
use crate::wasm::lent::{error_code as code, readable_folder};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// Each thread looks at this many entries at least: folders of twice as many or more are split between threads.
const PARALLEL_FROM: usize = 512;

/// Every entry of the folder at `path` beneath the lent `folder`, in the order the file system gives them.
pub(crate) fn list_folder(
    table: &ResourceTable,
    folder: &Resource<Descriptor>,
    path: &str,
) -> Result<Vec<ListedEntry>, ErrorCode> {
    let lent = readable_folder(table, folder).map_err(|_| ErrorCode::BadDescriptor)?;
    let dir = if path.is_empty() || path == "." { lent } else { lent.open_dir(path).map_err(code)? };
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(code)? {
        entries.push(entry.map_err(code)?);
    }
    // In name order, though the contract promises none: the component sorts every listing, and a sorted one
    // costs it one comparison an entry instead of twenty-odd. Names in an archive share long prefixes (DICOM
    // UIDs), and inside the component each comparison walks them byte by byte; here they are compared natively.
    entries.sort_by_cached_key(|e| e.file_name());
    let look = |entry: &cap_std::fs::DirEntry| -> Result<Option<ListedEntry>, ErrorCode> {
        match entry.metadata() {
            Ok(meta) => Ok(Some(listed(entry.file_name(), &meta))),
            // Gone between the read and the look: it is not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(code(e)),
        }
    };
    let threads = threads().min(entries.len() / PARALLEL_FROM).max(1);
    if threads == 1 {
        return entries.iter().filter_map(|e| look(e).transpose()).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().filter_map(|e| look(e).transpose()).collect::<Result<Vec<_>, _>>())
            })
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for worker in workers {
            out.extend(worker.join().map_err(|_| ErrorCode::Io)??);
        }
        Ok(out)
    })
}

/// The cores this host may use, asked once (the answer reads the process's cgroup files).
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn listed(name: std::ffi::OsString, meta: &cap_std::fs::Metadata) -> ListedEntry {
    let (name, utf8) = match name.into_string() {
        Ok(name) => (name, true),
        Err(raw) => (raw.to_string_lossy().into_owned(), false),
    };
    let kind = meta.file_type();
    let type_ = if kind.is_file() {
        DescriptorType::RegularFile
    } else if kind.is_dir() {
        DescriptorType::Directory
    } else if kind.is_symlink() {
        DescriptorType::SymbolicLink
    } else {
        other_type(&kind)
    };
    if type_ != DescriptorType::RegularFile {
        return ListedEntry { name, utf8, type_, size: 0, modified: None, changed: None, identity: (0, 0) };
    }
    let (modified, changed, identity) = times_and_identity(meta);
    ListedEntry { name, utf8, type_, size: meta.len(), modified, changed, identity }
}

#[cfg(unix)]
fn other_type(kind: &cap_std::fs::FileType) -> DescriptorType {
    use cap_std::fs::FileTypeExt;
    if kind.is_fifo() {
        DescriptorType::Fifo
    } else if kind.is_socket() {
        DescriptorType::Socket
    } else if kind.is_block_device() {
        DescriptorType::BlockDevice
    } else if kind.is_char_device() {
        DescriptorType::CharacterDevice
    } else {
        DescriptorType::Unknown
    }
}

#[cfg(not(unix))]
fn other_type(_: &cap_std::fs::FileType) -> DescriptorType {
    DescriptorType::Unknown
}

/// Modification and status-change times, and the identity as `metadata-hash-at` gives it.
#[cfg(unix)]
fn times_and_identity(meta: &cap_std::fs::Metadata) -> (Option<Datetime>, Option<Datetime>, (u64, u64)) {
    use cap_std::fs::MetadataExt;
    let at = |seconds: i64, nanoseconds: i64| {
        Some(Datetime { seconds: u64::try_from(seconds).ok()?, nanoseconds: u32::try_from(nanoseconds).ok()? })
    };
    (at(meta.mtime(), meta.mtime_nsec()), at(meta.ctime(), meta.ctime_nsec()), metadata_hash((meta.dev(), meta.ino())))
}

#[cfg(not(unix))]
fn times_and_identity(meta: &cap_std::fs::Metadata) -> (Option<Datetime>, Option<Datetime>, (u64, u64)) {
    let modified = meta.modified().ok().and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok());
    (modified.map(|d| Datetime { seconds: d.as_secs(), nanoseconds: d.subsec_nanos() }), None, (0, 0))
}

/// The value wasmtime-wasi's `metadata-hash-at` gives for a file of this identity (std's `DefaultHasher` of
/// the device and inode numbers, the upper half xor'ed with a constant; wasmtime-wasi 48
/// `filesystem::MetadataHashValue::new`), so that stamps taken through either path agree. Were the two ever to
/// differ, a file would only be taken as changed and looked at again.
fn metadata_hash(identity: (u64, u64)) -> (u64, u64) {
    let mut hasher = DefaultHasher::new();
    identity.hash(&mut hasher);
    let lower = hasher.finish();
    (lower, lower ^ 4614256656552045848u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::{FsPerms, OpenMode};

    fn lend(table: &mut ResourceTable, dir: &std::path::Path, mode: OpenMode) -> Resource<Descriptor> {
        let dir = std::fs::File::open(dir).unwrap();
        table.push(Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(dir, FsPerms::ReadOnly, mode, true))).unwrap()
    }

    fn sorted(mut entries: Vec<ListedEntry>) -> Vec<ListedEntry> {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    #[test]
    fn every_entry_with_one_look_small_and_large_folders_alike() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let big = dir.path().join("big");
        std::fs::create_dir(&big).unwrap();
        for i in 0..3 * PARALLEL_FROM {
            std::fs::write(big.join(format!("f{i:05}")), vec![0u8; i % 7]).unwrap();
        }
        std::fs::create_dir(big.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", big.join("link")).unwrap();
        let got = sorted(list_folder(&table, &folder, "big").unwrap());
        assert_eq!(got.len(), 3 * PARALLEL_FROM + 2);
        for (i, e) in got.iter().take(3 * PARALLEL_FROM).enumerate() {
            let meta = std::fs::symlink_metadata(big.join(&e.name)).unwrap();
            assert_eq!(
                (e.name.as_str(), e.type_, e.size, e.utf8),
                (format!("f{i:05}").as_str(), DescriptorType::RegularFile, (i % 7) as u64, true)
            );
            assert_eq!(
                e.modified.map(|d| (d.seconds as i64, d.nanoseconds as i64)),
                Some((meta.mtime(), meta.mtime_nsec()))
            );
            assert_eq!(
                e.changed.map(|d| (d.seconds as i64, d.nanoseconds as i64)),
                Some((meta.ctime(), meta.ctime_nsec()))
            );
            assert_eq!(e.identity, metadata_hash((meta.dev(), meta.ino())));
        }
        let link = got.iter().find(|e| e.name == "link").unwrap();
        assert_eq!(
            (link.type_, link.size, link.identity),
            (DescriptorType::SymbolicLink, 0, (0, 0)),
            "a link is not followed"
        );
        assert_eq!(got.iter().find(|e| e.name == "sub").unwrap().type_, DescriptorType::Directory);

        let root = sorted(list_folder(&table, &folder, "").unwrap());
        assert_eq!(root.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["big"]);
    }

    #[test]
    fn names_that_are_not_utf8_are_reported_not_hidden() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
        std::fs::write(dir.path().join("good"), b"x").unwrap();
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let got = sorted(list_folder(&table, &folder, "").unwrap());
        assert_eq!(
            got.iter().map(|e| (e.name.as_str(), e.utf8)).collect::<Vec<_>>(),
            [("bad\u{fffd}name", false), ("good", true)]
        );
    }

    #[test]
    fn nothing_outside_the_lent_folder_and_only_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("in", dir.path().join("inside-link")).unwrap();
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        for escape in ["..", "../..", "/", "/etc", "out", "in/../.."] {
            assert!(list_folder(&table, &folder, escape).is_err(), "{escape} was listed");
        }
        assert!(list_folder(&table, &folder, "inside-link").unwrap().is_empty(), "a link inside is followed");
        assert_eq!(list_folder(&table, &folder, "missing").unwrap_err(), ErrorCode::NoEntry);
        let write_only = lend(&mut table, dir.path(), OpenMode::WRITE);
        assert_eq!(list_folder(&table, &write_only, "").unwrap_err(), ErrorCode::BadDescriptor);
    }
}
