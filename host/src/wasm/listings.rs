//! The host's answer to the component's WIT `listings`: every entry of a folder beneath a folder descriptor
//! the component lends for the call — a regular file from one native look (`statx` without following a link),
//! anything else by the type the reading of the folder gives (looked at only when it gives none) — on as many
//! threads as the machine has cores when the folder is large.
//!
//! Through `wasi:filesystem` alone the same listing costs the component a call per entry, and wasmtime looks
//! at every entry while reading the folder and the component then looks at each file again (`stat-at`).
//!
//! The authority is the component's: the folder is resolved beneath the lent descriptor (`openat2` with
//! `RESOLVE_BENEATH` on Linux, cap-std elsewhere or where the kernel lacks it; `..`, absolute paths and links
//! leading out are refused) and listed only when the descriptor was opened for reading. Nothing is opened but
//! the folder itself: on Linux one `openat2`, the reads of the folder, a `statx` per file and one `close`.

use crate::library::bindings::listings::{Datetime, DescriptorType, ErrorCode, ListedEntry};
use crate::wasm::lent::{error_code as code, readable_folder};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// Each thread looks at this many entries at least: folders of twice as many or more are split between threads.
/// A thread costs ~30 µs to start and join, a look ~1.5 µs: a folder of 256 files already gains from two.
const PARALLEL_FROM: usize = 128;

/// The threads that look at a folder's entries.
#[derive(Clone, Copy)]
pub(crate) enum Lookers<'a> {
    /// Up to this many from the start: a large folder is split between them.
    Split(usize),
    /// One; and when `idle` says the component waits for this listing (its core is free), what is left of a
    /// large folder split with a second.
    WhenIdle(&'a AtomicBool),
}

/// Every entry of the folder at `path` beneath the lent `folder`, in name order (bytes).
///
/// In name order, though the contract promises none: the component sorts every listing, and a sorted one
/// costs it one comparison an entry instead of twenty-odd. Names in an archive share long prefixes (DICOM
/// UIDs), and inside the component each comparison walks them byte by byte; here they are compared natively.
pub(crate) fn list_folder(
    table: &ResourceTable,
    folder: &Resource<Descriptor>,
    path: &str,
) -> Result<Vec<ListedEntry>, ErrorCode> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let lent = crate::wasm::lent::readable_descriptor(table, folder).map_err(|_| ErrorCode::BadDescriptor)?;
        if let Some(listed) = native::list(lent.as_fd(), path, Lookers::Split(threads())) {
            return listed;
        }
    }
    let lent = readable_folder(table, folder).map_err(|_| ErrorCode::BadDescriptor)?;
    list_with_cap_std(&lent, path, Lookers::Split(threads()))
}

/// [`list_folder`] beneath a folder the host holds (a duplicate of a lent one, kept for a walk), on one
/// thread while the component works beside it (splitting the folder would take the core the component works
/// on), on two from when `idle` says the component waits for it.
pub(crate) fn list_at(lent: &cap_std::fs::Dir, path: &str, idle: &AtomicBool) -> Result<Vec<ListedEntry>, ErrorCode> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        if let Some(listed) = native::list(lent.as_fd(), path, Lookers::WhenIdle(idle)) {
            return listed;
        }
    }
    list_with_cap_std(lent, path, Lookers::WhenIdle(idle))
}

/// [`list_folder`] through cap-std: what every system but Linux uses, and Linux before `openat2` (5.6).
fn list_with_cap_std(lent: &cap_std::fs::Dir, path: &str, lookers: Lookers) -> Result<Vec<ListedEntry>, ErrorCode> {
    let opened;
    let dir = if path.is_empty() || path == "." {
        lent
    } else {
        opened = lent.open_dir(path).map_err(code)?;
        &opened
    };
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(code)? {
        entries.push(entry.map_err(code)?);
    }
    entries.sort_by_cached_key(|e| e.file_name());
    look_at_each(&entries, lookers, |entry| match entry.metadata() {
        Ok(meta) => Ok(Some(listed(entry.file_name(), &meta))),
        // Gone between the read and the look: it is not there any more.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(code(e)),
    })
}

/// `look` at each entry (`None`: gone, left out), in order, by the `lookers`.
fn look_at_each<T: Sync>(
    entries: &[T],
    lookers: Lookers,
    look: impl Fn(&T) -> Result<Option<ListedEntry>, ErrorCode> + Sync,
) -> Result<Vec<ListedEntry>, ErrorCode> {
    let idle = match lookers {
        Lookers::Split(threads) => return look_split(entries, threads, &look),
        Lookers::WhenIdle(idle) => idle,
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut rest = entries;
    while !rest.is_empty() {
        if rest.len() >= 2 * PARALLEL_FROM && idle.load(Ordering::Acquire) {
            out.extend(look_split(rest, 2, &look)?);
            break;
        }
        let (now, later) = rest.split_at(rest.len().min(PARALLEL_FROM));
        out.extend(look_split(now, 1, &look)?);
        rest = later;
    }
    Ok(out)
}

/// `look` at each entry, in order; a large folder is split between up to `threads` threads.
fn look_split<T: Sync>(
    entries: &[T],
    threads: usize,
    look: &(impl Fn(&T) -> Result<Option<ListedEntry>, ErrorCode> + Sync),
) -> Result<Vec<ListedEntry>, ErrorCode> {
    let threads = threads.min(entries.len() / PARALLEL_FROM).max(1);
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

/// The listing with Linux's own calls: the folder opened beneath the lent one by one `openat2`
/// (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, as cap-std resolves it), read with `getdents64`, and only what
/// the reading does not say is a folder, a link or another kind of entry looked at (`statx`).
#[cfg(target_os = "linux")]
pub(crate) mod native {
    use super::*;
    use rustix::fd::{BorrowedFd, OwnedFd};
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, ResolveFlags, StatxFlags};
    use rustix::io::Errno;
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::OsStrExt;

    /// `None` when this system refuses `openat2` (a kernel before 5.6, or a sandbox that forbids it): list
    /// through cap-std instead.
    pub(super) fn list(
        lent: BorrowedFd<'_>,
        path: &str,
        lookers: Lookers,
    ) -> Option<Result<Vec<ListedEntry>, ErrorCode>> {
        let dir = match open_beneath(lent, if path.is_empty() { "." } else { path })? {
            Ok(dir) => dir,
            Err(e) => return Some(Err(e)),
        };
        Some(read(&dir, lookers))
    }

    /// The folder at `path` beneath `lent`, opened for reading, as cap-std opens it (`EAGAIN`, a rename
    /// somewhere during the resolution, is tried again a few times; `EXDEV` is a path that leads out).
    pub(crate) fn open_beneath(lent: BorrowedFd<'_>, path: &str) -> Option<Result<OwnedFd, ErrorCode>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        for _ in 0..4 {
            match rustix::fs::openat2(
                lent,
                path,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(dir) => return Some(Ok(dir)),
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS | Errno::PERM) => return None,
                Err(Errno::XDEV) => {
                    let out =
                        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "a path led outside of the folder");
                    return Some(Err(code(out)));
                }
                Err(e) => return Some(Err(code(e.into()))),
            }
        }
        None
    }

    fn read(dir: &OwnedFd, lookers: Lookers) -> Result<Vec<ListedEntry>, ErrorCode> {
        let mut names: Vec<(CString, FileType)> = Vec::new();
        let mut buf = Vec::with_capacity(32 << 10);
        let mut reading = RawDir::new(dir, buf.spare_capacity_mut());
        while let Some(entry) = reading.next() {
            let entry = entry.map_err(|e| code(e.into()))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push((name.to_owned(), entry.file_type()));
            }
        }
        names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        look_at_each(&names, lookers, |(name, kind)| {
            let as_os = || OsStr::from_bytes(name.as_bytes()).to_os_string();
            if !matches!(kind, FileType::RegularFile | FileType::Unknown) {
                return Ok(Some(not_a_file(as_os(), descriptor_type(*kind))));
            }
            match rustix::fs::statx(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
                Ok(st) => Ok(Some(from_statx(as_os(), &st))),
                // Gone between the read and the look: it is not there any more.
                Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(code(e.into())),
            }
        })
    }

    fn descriptor_type(kind: FileType) -> DescriptorType {
        match kind {
            FileType::RegularFile => DescriptorType::RegularFile,
            FileType::Directory => DescriptorType::Directory,
            FileType::Symlink => DescriptorType::SymbolicLink,
            FileType::Fifo => DescriptorType::Fifo,
            FileType::Socket => DescriptorType::Socket,
            FileType::CharacterDevice => DescriptorType::CharacterDevice,
            FileType::BlockDevice => DescriptorType::BlockDevice,
            FileType::Unknown => DescriptorType::Unknown,
        }
    }

    fn from_statx(name: std::ffi::OsString, st: &rustix::fs::Statx) -> ListedEntry {
        let type_ = descriptor_type(FileType::from_raw_mode(st.stx_mode.into()));
        if type_ != DescriptorType::RegularFile {
            return not_a_file(name, type_);
        }
        let at = |t: rustix::fs::StatxTimestamp| {
            Some(Datetime { seconds: u64::try_from(t.tv_sec).ok()?, nanoseconds: t.tv_nsec })
        };
        let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
        let (name, utf8) = utf8_name(name);
        ListedEntry {
            name,
            utf8,
            type_,
            size: st.stx_size,
            modified: at(st.stx_mtime),
            changed: at(st.stx_ctime),
            identity: metadata_hash((dev, st.stx_ino)),
        }
    }
}

/// An entry that is not a regular file: its name and type alone.
fn not_a_file(name: std::ffi::OsString, type_: DescriptorType) -> ListedEntry {
    let (name, utf8) = utf8_name(name);
    ListedEntry { name, utf8, type_, size: 0, modified: None, changed: None, identity: (0, 0) }
}

/// The name as the contract gives it: itself, or a lossy rendering and `false` when it is not UTF-8.
fn utf8_name(name: std::ffi::OsString) -> (String, bool) {
    match name.into_string() {
        Ok(name) => (name, true),
        Err(raw) => (raw.to_string_lossy().into_owned(), false),
    }
}

/// The cores this host may use, asked once (the answer reads the process's cgroup files).
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn listed(name: std::ffi::OsString, meta: &cap_std::fs::Metadata) -> ListedEntry {
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
        return not_a_file(name, type_);
    }
    let (modified, changed, identity) = times_and_identity(meta);
    let (name, utf8) = utf8_name(name);
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

    /// Linux's own calls and cap-std's give the same listing: names, order, types, sizes, times and identities
    /// (a folder, a link, a FIFO, a name that is not UTF-8, and enough files to be split between threads).
    #[test]
    fn the_listing_is_the_same_through_either_path() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let many = dir.path().join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..2 * PARALLEL_FROM + 3 {
            std::fs::write(many.join(format!("1.2.840.{}.{i}.dcm", 7 * i % 1000)), vec![1u8; i % 5]).unwrap();
        }
        assert!(std::fs::read_dir(&many).unwrap().count() >= 2 * PARALLEL_FROM, "split between threads");
        std::fs::create_dir(many.join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", many.join("link")).unwrap();
        std::fs::write(many.join(std::ffi::OsStr::from_bytes(b"not\xfeutf8")), b"x").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            many.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        for path in ["", "many", "many/sub", "many/link"] {
            let native = list_folder(&table, &folder, path).unwrap();
            let lent = readable_folder(&table, &folder).unwrap();
            let through_cap_std = list_with_cap_std(&lent, path, Lookers::Split(threads())).unwrap();
            assert_eq!(format!("{native:?}"), format!("{through_cap_std:?}"), "{path}");
            // A walk's listing, on one thread or split with a second once the component waits for it.
            for idle in [false, true] {
                let walked = list_at(&lent, path, &AtomicBool::new(idle)).unwrap();
                assert_eq!(format!("{native:?}"), format!("{walked:?}"), "{path}, idle {idle}");
            }
            assert_eq!(native.is_empty(), path.starts_with("many/"), "{path}");
            let mut names: Vec<&str> = native.iter().map(|e| e.name.as_str()).collect();
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            assert_eq!(native.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), names, "in name order");
        }
        let native = list_folder(&table, &folder, "many").unwrap();
        let kind = |name: &str| native.iter().find(|e| e.name == name).unwrap().type_;
        assert_eq!(
            (kind("sub"), kind("link"), kind("fifo"), kind("not\u{fffd}utf8")),
            (
                DescriptorType::Directory,
                DescriptorType::SymbolicLink,
                DescriptorType::Fifo,
                DescriptorType::RegularFile
            )
        );
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
