//! The host's answer to WIT `listings.watch-tree`: a mark of a folder and the folders beneath it down to a
//! depth, which changes whenever anything in them changes, from watches (Linux's `inotify`) the host keeps
//! between requests. A listing that finds the mark it last saw knows, without looking, that what it read is
//! still what is there.
//!
//! One `inotify` instance per watched tree, one watch per folder in it (folders named with a leading `.` are not
//! looked into: they are ours, and our own writes there must not count as changes), each watched before it is
//! read, so that whatever is made in it after it was read makes an event. A mark is the watch's own name (random,
//! drawn when the tree is watched: a mark of an earlier watch, or of an earlier run, never matches) and the
//! number of its changes so far: two marks are equal only when no event arrived between the two calls and the
//! same watches stood all along. A mark tells nothing of other trees (another tenant's changes move no number a
//! component can see). A folder made in the tree (or moved into it) is watched with its folders when the
//! event is read, before the mark is given; one moved out is no longer watched; whatever the watches may have
//! missed (a full event queue) counts as a change and has the whole tree looked at again.
//!
//! What this cannot see, and so where no mark is given: folders on a filesystem whose changes can come from
//! another machine (NFS, SMB, Lustre, GPFS, CephFS, FUSE mounts: only local filesystems are watched). What it
//! cannot see and gives a mark for all the same: changes made through a shared memory mapping (no event is made
//! for them), and a filesystem mounted over one of the watched folders while they are watched (the watch stays
//! on the folder beneath it; restart the server after mounting anything inside a prearchive). Trees of more than
//! [`MAX_FOLDERS`] folders are not watched either, nor beyond the system's limits on watches; a tree that could
//! not be watched is tried again [`RETRY_AFTER`] later, not on every request.
//!
//! The authority is the component's: the folder is resolved beneath the descriptor it lends, which must have
//! been opened for reading; a watch gives the component nothing but the mark.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// The most folders one tree may have to be watched.
pub(crate) const MAX_FOLDERS: usize = 65_536;

/// How long a tree that could not be watched is not tried again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The most trees watched at once (a server's tenants have one each; the system allows 128 `inotify`
/// instances a user by default); beyond, every tree is dropped and watched anew when asked.
const MAX_TREES: usize = 64;

/// The trees the host watches, for every instance of every tenant.
#[derive(Default)]
pub(crate) struct Watches {
    /// By the watched folder (device, inode) and depth.
    trees: Mutex<HashMap<(u64, u64, u32), Shared>>,
}

type Shared = Arc<Mutex<Slot>>;

/// A tree's watch, locked by the request asking for its mark.
#[derive(Default)]
struct Slot {
    /// `None` until it is watched, or when it could not be.
    watched: Option<Watched>,
    /// When it last could not be.
    refused_at: Option<Instant>,
}

#[cfg(target_os = "linux")]
type Watched = linux::Tree;
#[cfg(not(target_os = "linux"))]
type Watched = ();

impl Watches {
    /// The mark of `folder` (a folder the host may read, which the component lent) and of its folders down to
    /// `depth`; `None` when they cannot be watched (see the module's doc).
    #[cfg(target_os = "linux")]
    pub(crate) fn mark(&self, folder: std::os::fd::BorrowedFd<'_>, depth: u32) -> Option<String> {
        let stat = rustix::fs::fstat(folder).ok()?;
        let key = (stat.st_dev, stat.st_ino, depth);
        let slot = {
            let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
            if trees.len() >= MAX_TREES && !trees.contains_key(&key) {
                trees.clear();
            }
            trees.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.watched.is_none() {
            if slot.refused_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
                return None;
            }
            slot.watched = linux::Tree::watch(folder, depth);
        }
        let mark = slot.watched.as_mut().and_then(|t| t.catch_up());
        if mark.is_none() {
            *slot = Slot { watched: None, refused_at: Some(Instant::now()) };
        }
        mark
    }

    /// WIT `watch-tree`: the mark of the folder at `path` beneath the lent `folder`, if it was opened for
    /// reading.
    pub(crate) fn watch_tree(
        &self,
        table: &ResourceTable,
        folder: &Resource<Descriptor>,
        path: &str,
        depth: u32,
    ) -> Option<String> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            let lent = crate::wasm::lent::readable_descriptor(table, folder).ok()?;
            if path.is_empty() {
                return self.mark(lent.as_fd(), depth);
            }
            let opened = crate::wasm::listings::native::open_beneath(lent.as_fd(), path)?.ok()?;
            self.mark(opened.as_fd(), depth)
        }
        // No watches where there is no `inotify`.
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (table, folder, path, depth, &self.trees);
            None
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{HashMap, MAX_FOLDERS};
    use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::fs::{FileType, Mode, OFlags, RawDir, ResolveFlags};
    use rustix::io::Errno;
    use std::mem::MaybeUninit;

    /// Filesystems whose every change is made by this machine's kernel, which tells `inotify` of it:
    /// ext2/3/4, XFS, Btrfs, tmpfs, ZFS, F2FS.
    const LOCAL: [i64; 6] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x2FC1_2FC1, 0xF2F5_2010];

    /// What makes an event: an entry of a watched folder created, removed, moved in or out, written,
    /// truncated, or its attributes or times set; the folder itself removed or moved.
    fn events() -> WatchFlags {
        WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR
    }

    /// A watched folder: its path below the tree's folder (empty for that one) and its level (0 for it).
    struct Folder {
        path: String,
        level: u32,
    }

    /// One watched tree.
    pub(super) struct Tree {
        inotify: OwnedFd,
        /// The tree's folder (kept open, never read: its folders are opened from it).
        root: OwnedFd,
        depth: u32,
        /// Its folders, by their watches.
        folders: HashMap<i32, Folder>,
        /// The watch's name, drawn when it began.
        name: u64,
        /// Its changes so far.
        counted: u64,
    }

    impl Tree {
        /// Watches `folder` and its folders down to `depth`; `None` when it cannot.
        pub(super) fn watch(folder: BorrowedFd<'_>, depth: u32) -> Option<Tree> {
            let inotify = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
            let root = rustix::io::fcntl_dupfd_cloexec(folder, 0).ok()?;
            let mut tree = Tree { inotify, root, depth, folders: HashMap::new(), name: rand::random(), counted: 0 };
            tree.add(String::new(), 0)?;
            Some(tree)
        }

        /// Counts what happened since the last call and watches what was made meanwhile; the tree's mark, or
        /// `None` when it can no longer be watched.
        pub(super) fn catch_up(&mut self) -> Option<String> {
            let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
            let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
            let (mut changed, mut missed) = (false, false);
            // Folders made or moved into the tree (path, level), and the paths of those moved out.
            let (mut made, mut gone) = (Vec::new(), Vec::new());
            loop {
                let event = match reader.next() {
                    Ok(event) => event,
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => continue,
                    Err(_) => return None,
                };
                let flags = event.events();
                if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                    (changed, missed) = (true, true);
                    continue;
                }
                // Not a folder of the tree: the last events of a watch it removed.
                let Some(folder) = self.folders.get(&event.wd()) else { continue };
                changed = true;
                if flags.contains(ReadFlags::IGNORED) {
                    // The folder is gone (its removal was an event of its own folder too).
                    if folder.level == 0 {
                        return None;
                    }
                    self.folders.remove(&event.wd());
                    continue;
                }
                if flags.contains(ReadFlags::MOVE_SELF) && folder.level == 0 {
                    return None;
                }
                let name = event.file_name().and_then(|n| n.to_str().ok()).unwrap_or_default();
                if !flags.contains(ReadFlags::ISDIR) || name.is_empty() || name.starts_with('.') {
                    continue;
                }
                let path = if folder.path.is_empty() { name.to_string() } else { format!("{}/{name}", folder.path) };
                if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) && folder.level < self.depth {
                    made.push((path, folder.level + 1));
                } else if flags.contains(ReadFlags::MOVED_FROM) {
                    gone.push(path);
                }
            }
            for path in gone {
                self.forget(&path);
            }
            if missed {
                let kept: Vec<i32> = self.folders.keys().copied().collect();
                for wd in kept {
                    let _ = inotify::remove_watch(&self.inotify, wd);
                }
                self.folders.clear();
                self.add(String::new(), 0)?;
            } else {
                for (path, level) in made {
                    self.add(path, level)?;
                }
            }
            if changed {
                self.counted += 1;
            }
            Some(format!("{:016x}.{}", self.name, self.counted))
        }

        /// Watches the folder at `path` (at `level`) and its folders down to the tree's depth, each before it
        /// is read, one open at a time (a large prearchive has thousands). A folder gone or replaced by something
        /// else meanwhile is left out (its removal made an event); `None` when one cannot be watched.
        fn add(&mut self, path: String, level: u32) -> Option<()> {
            let mut folders = vec![(path, level)];
            while let Some((path, level)) = folders.pop() {
                let Some(folder) = self.open(&path)? else { continue };
                // `f_type`'s type differs between platforms.
                #[allow(clippy::unnecessary_cast)]
                let local = rustix::fs::fstatfs(&folder).ok().is_some_and(|fs| LOCAL.contains(&(fs.f_type as i64)));
                if !local || self.folders.len() >= MAX_FOLDERS {
                    return None;
                }
                let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&folder));
                let wd = inotify::add_watch(&self.inotify, proc_path.as_str(), events()).ok()?;
                if level < self.depth {
                    for name in subfolders(folder.as_fd())? {
                        let sub_path = if path.is_empty() { name } else { format!("{path}/{name}") };
                        folders.push((sub_path, level + 1));
                    }
                }
                self.folders.insert(wd, Folder { path, level });
            }
            Some(())
        }

        /// The folder at `path` in the tree, opened (no link followed on the way); `Some(None)` when it is gone
        /// or is no folder now, `None` when it cannot be opened (the tree's own folder included).
        fn open(&self, path: &str) -> Option<Option<OwnedFd>> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            let at = if path.is_empty() { "." } else { path };
            match rustix::fs::openat2(&self.root, at, flags, Mode::empty(), resolve) {
                Ok(opened) => Some(Some(opened)),
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) if !path.is_empty() => Some(None),
                Err(_) => None,
            }
        }

        /// Stops watching the folder at `path` and those below it (moved out of where it was).
        fn forget(&mut self, path: &str) {
            let below = |p: &str| p == path || p.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'));
            let gone: Vec<i32> = self.folders.iter().filter(|(_, f)| below(&f.path)).map(|(wd, _)| *wd).collect();
            for wd in gone {
                self.folders.remove(&wd);
                let _ = inotify::remove_watch(&self.inotify, wd);
            }
        }
    }

    /// The names of the folders in `folder` (entries the reading says are folders, or does not say what they
    /// are) that are UTF-8 and do not begin with `.`.
    fn subfolders(folder: BorrowedFd<'_>) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(16 << 10);
        let mut reading = RawDir::new(folder, buf.spare_capacity_mut());
        while let Some(entry) = reading.next() {
            let entry = entry.ok()?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if !name.starts_with('.') && matches!(entry.file_type(), FileType::Directory | FileType::Unknown) {
                out.push(name.to_string());
            }
        }
        Some(out)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::path::Path;

    fn mark(watches: &Watches, dir: &Path) -> Option<String> {
        let folder = std::fs::File::open(dir).unwrap();
        watches.mark(folder.as_fd(), 2)
    }

    /// A prearchive-like tree: `P/TS/F` and `P/TS/F.xml`, `.ours/table`.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("P/TS/F/scans")).unwrap();
        std::fs::write(dir.path().join("P/TS/F.xml"), "<a/>").unwrap();
        std::fs::create_dir_all(dir.path().join(".ours")).unwrap();
        dir
    }

    #[test]
    fn a_mark_stays_while_nothing_changes_and_moves_with_every_change_within_the_depth() {
        let dir = tree();
        let watches = Watches::default();
        let Some(first) = mark(&watches, dir.path()) else {
            // Not a local filesystem (or no /proc): nothing to show here.
            eprintln!("no watches on this filesystem");
            return;
        };
        assert_eq!(mark(&watches, dir.path()).as_ref(), Some(&first), "nothing changed");
        let p = dir.path();
        type Change<'p> = (&'static str, Box<dyn Fn() + 'p>);
        let changes: Vec<Change> = vec![
            ("a document rewritten, same size", Box::new(|| std::fs::write(p.join("P/TS/F.xml"), "<b/>").unwrap())),
            (
                "its time set",
                Box::new(|| {
                    let f = std::fs::File::options().write(true).open(p.join("P/TS/F.xml")).unwrap();
                    f.set_modified(std::time::UNIX_EPOCH).unwrap();
                }),
            ),
            ("a lock made", Box::new(|| std::fs::write(p.join("P/TS/.F.lock"), "x").unwrap())),
            ("a lock removed", Box::new(|| std::fs::remove_file(p.join("P/TS/.F.lock")).unwrap())),
            ("a timestamp folder made", Box::new(|| std::fs::create_dir(p.join("P/TS2")).unwrap())),
            ("a document in the new folder", Box::new(|| std::fs::write(p.join("P/TS2/G.xml"), "<c/>").unwrap())),
            ("a project renamed", Box::new(|| std::fs::rename(p.join("P"), p.join("Q")).unwrap())),
            ("a document in the renamed one", Box::new(|| std::fs::write(p.join("Q/TS/F.xml"), "<d/>").unwrap())),
            ("a session folder removed", Box::new(|| std::fs::remove_dir_all(p.join("Q/TS/F")).unwrap())),
        ];
        let mut last = first;
        for (what, change) in changes {
            change();
            let now = mark(&watches, dir.path()).expect("still watched");
            assert_ne!(now, last, "{what}");
            assert_eq!(mark(&watches, dir.path()).as_ref(), Some(&now), "nothing more after: {what}");
            last = now;
        }
        // Below the depth and in our own folder nothing counts.
        std::fs::create_dir_all(p.join("Q/TS2/H/scans")).unwrap();
        let now = mark(&watches, dir.path()).unwrap();
        std::fs::write(p.join("Q/TS2/H/scans/file.dcm"), "x").unwrap();
        std::fs::write(p.join(".ours/table"), "t").unwrap();
        assert_eq!(mark(&watches, dir.path()), Some(now.clone()));
        // A folder moved out of the tree is no longer watched; moved back in, it is again.
        let outside = tempfile::tempdir_in(dir.path().parent().unwrap()).unwrap();
        std::fs::rename(p.join("Q/TS2"), outside.path().join("TS2")).unwrap();
        let moved_out = mark(&watches, dir.path()).unwrap();
        assert_ne!(moved_out, now);
        std::fs::write(outside.path().join("TS2/G.xml"), "<e/>").unwrap();
        assert_eq!(mark(&watches, dir.path()).as_ref(), Some(&moved_out), "a change outside the tree");
        std::fs::rename(outside.path().join("TS2"), p.join("Q/TS3")).unwrap();
        let moved_in = mark(&watches, dir.path()).unwrap();
        assert_ne!(moved_in, moved_out);
        std::fs::write(p.join("Q/TS3/H.xml"), "<f/>").unwrap();
        assert_ne!(mark(&watches, dir.path()).unwrap(), moved_in, "a change in a folder moved in");
        // The tree's own folder removed: no mark.
        std::fs::remove_dir_all(dir.path()).unwrap();
        std::fs::create_dir(dir.path()).unwrap();
        assert_ne!(mark(&watches, dir.path()), Some(moved_in));
    }

    #[test]
    fn marks_are_every_watch_s_own_and_tell_nothing_of_other_trees() {
        let (a, b) = (tree(), tree());
        let watches = Watches::default();
        let Some(ma) = mark(&watches, a.path()) else { return };
        let mb = mark(&watches, b.path()).unwrap();
        assert_ne!(ma, mb);
        std::fs::write(b.path().join("P/TS/F.xml"), "<z/>").unwrap();
        assert_ne!(mark(&watches, b.path()).unwrap(), mb);
        assert_eq!(mark(&watches, a.path()).unwrap(), ma, "another tree's change");
        assert_ne!(mark(&Watches::default(), a.path()).unwrap(), ma, "another run's mark");
    }
}
