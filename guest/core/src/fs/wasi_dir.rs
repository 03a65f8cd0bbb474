//! Folder listings inside the component, straight on `wasi:filesystem` descriptors.
//!
//! std's `read_dir` goes through wasi-libc, which asks the runtime for a metadata hash of every entry (to
//! make up `d_ino`), and `DirEntry::metadata` then stats each entry again by its whole path from the
//! preopen (an open beneath the preopen, a stat and a close in wasmtime). A listing here opens the folder
//! once, reads its entries with their types, and stats only regular files, by their bare name relative to
//! the folder's descriptor: one `stat-at` per file, which wasmtime answers with a single `statx`.
//!
//! A host that offers folder listings (WIT `listings`, [`HostListing`]) is lent the preopen's descriptor
//! instead and lists the folder in one call, from one native look at each entry; a name that is not UTF-8 is
//! then reported as such rather than ending the listing.
//!
//! Only trees below a preopened directory are listed this way; anything else (no preopen matches) is left
//! to std. The preopen a path is below is found here too when its descriptor is lent to the host (WIT `digests`).

#![cfg_attr(not(target_os = "wasi"), allow(dead_code))]

#[cfg(target_os = "wasi")]
pub(crate) use component::in_preopen;

/// The path of `rel` (relative to a tree's root) below the preopen holding that root, given the part of the
/// root below the preopen (`rest`, as [`in_preopen`] gives it): what the host resolves beneath the preopen's
/// descriptor when it is lent (WIT `digests`, `renames`).
pub(crate) fn below_preopen(rest: &str, rel: &str) -> String {
    match (rest.trim_matches('/'), rel) {
        ("", rel) => rel.to_string(),
        (rest, "") => rest.to_string(),
        (rest, rel) => format!("{rest}/{rel}"),
    }
}
#[cfg(target_os = "wasi")]
pub use component::{HostEntry, HostListing};
#[cfg(target_os = "wasi")]
pub(super) use component::{from_host, host_lists};
#[cfg(target_os = "wasi")]
pub(super) use component::{list, modified_ns, read_file};

/// Why a listing did not give the folder's entries.
pub(super) enum Failure {
    /// An entry went away while the runtime read the folder (wasmtime stats every entry as it reads and
    /// reports one that vanished as an error of the whole read): read it again.
    Vanished,
    /// The folder holds a name that is not UTF-8: the runtime cannot read past it.
    NotUtf8,
    /// Anything else, as std would report it.
    Io(std::io::Error),
}

/// The part of `path` below the preopen `name`, when `path` is inside it.
fn below<'p>(name: &str, path: &'p str) -> Option<&'p str> {
    let name = name.trim_end_matches('/');
    let rest = path.strip_prefix(name)?;
    if rest.is_empty() {
        return Some("");
    }
    // "/archive2" is not below "/archive"; every absolute path is below "/".
    if !name.is_empty() && !rest.starts_with('/') {
        return None;
    }
    Some(rest.trim_start_matches('/'))
}

#[cfg(target_os = "wasi")]
mod component {
    use super::{Failure, below};
    use crate::fs::tree::{FileStamp, Kind, Listed, Stamps};
    use std::cell::{Cell, OnceCell};
    use wasi::filesystem::preopens::get_directories;
    use wasi::filesystem::types::{
        Datetime, Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
    };

    /// The host's folder listings (WIT `listings`), as the component adapters bind them: whether it lists at
    /// all (asked once), the entries of the folder at a path beneath a descriptor the component lends, and
    /// walks of whole trees made in the background (see [`crate::fs::ahead`]): start one (a ticket), take its
    /// next folder (its path below the folder walked and its entries; `None` when it has no more), close it;
    /// and the mark of a folder and its folders down to a depth, which changes whenever anything in them does
    /// (`None`: the host does not watch them).
    #[derive(Debug, Clone, Copy)]
    pub struct HostListing {
        pub lists: fn() -> bool,
        pub list_folder: fn(&Descriptor, &str) -> Result<Vec<HostEntry>, ErrorCode>,
        pub walk_tree: fn(&Descriptor, &str) -> Result<u32, ErrorCode>,
        pub next_walked: fn(u32) -> Option<(String, Vec<HostEntry>)>,
        pub end_walk: fn(u32),
        pub watch_tree: fn(&Descriptor, &str, u32) -> Option<String>,
    }

    /// Whether the host lists folders (asked once).
    pub(in crate::fs) fn host_lists(host: &HostListing) -> bool {
        HOST_LISTS.with(|lists| *lists.get_or_init(host.lists))
    }

    /// One entry as the host saw it (WIT `listed-entry`).
    #[derive(Debug, Clone)]
    pub struct HostEntry {
        pub name: String,
        /// False when the name on disk is not UTF-8 (`name` is then a lossy rendering).
        pub utf8: bool,
        pub kind: DescriptorType,
        pub size: u64,
        pub modified: Option<Datetime>,
        pub changed: Option<Datetime>,
        pub identity: (u64, u64),
    }

    thread_local! {
        /// Whether the host lists folders, asked once.
        static HOST_LISTS: OnceCell<bool> = const { OnceCell::new() };
        /// The preopened directories and their guest paths, asked for once.
        static PREOPENS: OnceCell<Vec<(Descriptor, String)>> = const { OnceCell::new() };
        /// Set when the runtime did not answer as wasmtime does (jco's preview2 shim answered
        /// `bad-descriptor`): every listing goes through std from then on.
        static UNUSABLE: Cell<bool> = const { Cell::new(false) };
    }

    /// The entries of the folder at guest path `path` (unsorted), with regular files' stamps as `stamps` asks
    /// (`Full`: one more `metadata-hash-at` per file, for its identity), or `None` when no preopen holds it
    /// or the runtime cannot list this way (then std lists it).
    pub(in crate::fs) fn list(
        path: &str,
        stamps: Stamps,
        host: Option<HostListing>,
    ) -> Option<Result<Vec<Listed>, Failure>> {
        let host = host.filter(host_lists);
        let listed = in_preopen(path, |dir, rest| {
            if let Some(host) = host {
                match (host.list_folder)(dir, rest) {
                    Ok(entries) => return Ok(from_host(entries, stamps)),
                    // This folder is the host's to decline: list it here.
                    Err(ErrorCode::Unsupported) => {}
                    Err(e) => return Err(Failure::Io(io_error(e))),
                }
            }
            list_below(dir, rest, stamps)
        })?;
        // An error std would classify (missing, not a folder, no permission) is the folder's answer; any other
        // says more about the runtime than about the folder.
        if let Err(Failure::Io(e)) = &listed
            && e.kind() == std::io::ErrorKind::Other
        {
            UNUSABLE.set(true);
            return None;
        }
        Some(listed)
    }

    /// `f` of the innermost preopen holding guest path `path` and the path below it; `None` when none does
    /// or the runtime cannot be used this way.
    pub(crate) fn in_preopen<R>(path: &str, f: impl FnOnce(&Descriptor, &str) -> R) -> Option<R> {
        if UNUSABLE.get() {
            return None;
        }
        PREOPENS.with(|cell| {
            let preopens = cell.get_or_init(get_directories);
            let (dir, rest) = preopens
                .iter()
                .filter_map(|(d, name)| below(name, path).map(|rest| (d, rest)))
                .min_by_key(|(_, rest)| rest.len())?;
            Some(f(dir, rest))
        })
    }

    /// The whole content of the regular file at guest path `path` (a link followed, as std's `fs::read`
    /// follows it) and its modification time (nanoseconds since 1970, where the runtime gives it), from one
    /// look at the file, one open and (for a file under the runtime's largest read, 64 KiB in wasmtime) one
    /// read: in wasmtime 7 system calls, where std's look for a FIFO and `fs::read` make 13.
    ///
    /// `None` when no preopen holds it, when it is anything but a regular file (a folder, a FIFO: std's path
    /// refuses or reports it), and on any error: std's path then reads it or reports the error as it always did.
    pub(in crate::fs) fn read_file(path: &str) -> Option<(Vec<u8>, Option<u64>)> {
        in_preopen(path, |dir, rest| {
            let stat = dir.stat_at(PathFlags::SYMLINK_FOLLOW, rest).ok()?;
            if stat.type_ != DescriptorType::RegularFile {
                return None;
            }
            let file = dir.open_at(PathFlags::SYMLINK_FOLLOW, rest, OpenFlags::empty(), DescriptorFlags::READ).ok()?;
            let modified = stat.data_modification_timestamp.and_then(nanos);
            // One byte more than the look saw, so that a file of that size needs one read (and the runtime
            // makes a buffer of that size, not of its largest read); a read shorter than asked ends the file only
            // once the size seen is reached (the runtime may cap each read). A file that grew is read on in 64 KiB.
            let mut bytes: Vec<u8> = Vec::new();
            loop {
                let want = match (stat.size + 1).saturating_sub(bytes.len() as u64) {
                    0 => 1 << 16,
                    left => left,
                };
                let (chunk, end) = file.read(want, bytes.len() as u64).ok()?;
                let short = (chunk.len() as u64) < want;
                if bytes.is_empty() {
                    bytes = chunk;
                } else {
                    bytes.extend_from_slice(&chunk);
                }
                if end || (short && bytes.len() as u64 >= stat.size) {
                    return Some((bytes, modified));
                }
            }
        })
        .flatten()
    }

    /// The last data modification (nanoseconds since 1970) of the entry at guest path `path`, a link itself
    /// (not followed), from one `stat-at`: std's `symlink_metadata` asks the runtime for the entry's metadata
    /// hash as well (to make up an inode number), a second lookup of the path. `None` when no preopen holds it
    /// below itself, the runtime does not tell, or on any error: std's path answers then.
    pub(in crate::fs) fn modified_ns(path: &str) -> Option<u64> {
        in_preopen(path, |dir, rest| match rest {
            "" | "." => None,
            rest => dir.stat_at(PathFlags::empty(), rest).ok()?.data_modification_timestamp.and_then(nanos),
        })
        .flatten()
    }

    fn list_below(preopen: &Descriptor, rest: &str, stamps: Stamps) -> Result<Vec<Listed>, Failure> {
        let opened;
        let dir = if rest.is_empty() || rest == "." {
            preopen
        } else {
            // Links are followed to the folder (as std's read_dir does); the runtime keeps them inside the grant.
            opened = preopen
                .open_at(PathFlags::SYMLINK_FOLLOW, rest, OpenFlags::DIRECTORY, DescriptorFlags::READ)
                .map_err(|e| Failure::Io(io_error(e)))?;
            &opened
        };
        let entries = dir.read_directory().map_err(|e| Failure::Io(io_error(e)))?;
        let mut out = Vec::new();
        loop {
            let entry = match entries.read_directory_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(out),
                Err(ErrorCode::NoEntry) => return Err(Failure::Vanished),
                Err(ErrorCode::IllegalByteSequence) => return Err(Failure::NotUtf8),
                Err(e) => return Err(Failure::Io(io_error(e))),
            };
            if entry.name == "." || entry.name == ".." {
                continue;
            }
            let kind = match entry.type_ {
                DescriptorType::Directory => Kind::Dir,
                DescriptorType::SymbolicLink => Kind::Symlink,
                DescriptorType::RegularFile | DescriptorType::Unknown => {
                    match dir.stat_at(PathFlags::empty(), &entry.name) {
                        Ok(stat) => match stat.type_ {
                            DescriptorType::RegularFile => {
                                let times = FileStamp {
                                    len: stat.size,
                                    modified_ns: stat.data_modification_timestamp.and_then(nanos),
                                    changed_ns: stat.status_change_timestamp.and_then(nanos),
                                    identity: None,
                                };
                                let stamp = match stamps {
                                    Stamps::None => None,
                                    Stamps::Times => Some(times),
                                    Stamps::Full => match dir.metadata_hash_at(PathFlags::empty(), &entry.name) {
                                        Ok(hash) => {
                                            Some(FileStamp { identity: Some((hash.lower, hash.upper)), ..times })
                                        }
                                        Err(ErrorCode::NoEntry) => continue,
                                        Err(e) => return Err(Failure::Io(io_error(e))),
                                    },
                                };
                                out.push((entry.name, Kind::File { len: stat.size }, stamp));
                                continue;
                            }
                            DescriptorType::Directory => Kind::Dir,
                            DescriptorType::SymbolicLink => Kind::Symlink,
                            _ => Kind::Other,
                        },
                        // Gone between the read and the stat: it is not there any more.
                        Err(ErrorCode::NoEntry) => continue,
                        Err(e) => return Err(Failure::Io(io_error(e))),
                    }
                }
                _ => Kind::Other,
            };
            out.push((entry.name, kind, None));
        }
    }

    /// The host's entries as a listing here gives them. The host's one look at a file gives its identity too,
    /// so `Times` carries it as `Full` does.
    pub(in crate::fs) fn from_host(entries: Vec<HostEntry>, stamps: Stamps) -> Vec<Listed> {
        entries
            .into_iter()
            .filter(|e| e.name != "." && e.name != "..")
            .map(|e| {
                let kind = match e.kind {
                    _ if !e.utf8 => Kind::NotUtf8,
                    DescriptorType::RegularFile => Kind::File { len: e.size },
                    DescriptorType::Directory => Kind::Dir,
                    DescriptorType::SymbolicLink => Kind::Symlink,
                    _ => Kind::Other,
                };
                let stamp = (matches!(kind, Kind::File { .. }) && stamps != Stamps::None).then(|| FileStamp {
                    len: e.size,
                    modified_ns: e.modified.and_then(nanos),
                    changed_ns: e.changed.and_then(nanos),
                    identity: Some(e.identity),
                });
                (e.name, kind, stamp)
            })
            .collect()
    }

    fn nanos(t: Datetime) -> Option<u64> {
        t.seconds.checked_mul(1_000_000_000)?.checked_add(u64::from(t.nanoseconds))
    }

    /// The runtime's error as the `std::io::Error` std would have made of it.
    fn io_error(e: ErrorCode) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match e {
            ErrorCode::NoEntry => ErrorKind::NotFound,
            ErrorCode::NotDirectory => ErrorKind::NotADirectory,
            ErrorCode::Access | ErrorCode::NotPermitted => ErrorKind::PermissionDenied,
            ErrorCode::ReadOnly => ErrorKind::ReadOnlyFilesystem,
            ErrorCode::Exist => ErrorKind::AlreadyExists,
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{below, below_preopen};

    #[test]
    fn paths_below_a_preopen() {
        assert_eq!(below("/archive", "/archive"), Some(""));
        assert_eq!(below("/archive/", "/archive/P/arc001"), Some("P/arc001"));
        assert_eq!(below("/archive", "/archive2/P"), None);
        assert_eq!(below("/", "/archive/P"), Some("archive/P"));
        assert_eq!(below("/prearchive", "/archive"), None);
        assert_eq!(below_preopen("", "P/arc001/E1"), "P/arc001/E1");
        assert_eq!(below_preopen("archive", "P/a"), "archive/P/a");
        assert_eq!(below_preopen("archive/", ""), "archive");
    }
}
