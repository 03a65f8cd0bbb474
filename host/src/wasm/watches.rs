//! The host's answer to WIT `listings.watch-tree`: a mark of a folder and the folders beneath it down to a
//! depth, which changes whenever anything in them changes, from watches (Linux's `inotify`) the host keeps
//! between requests. A listing that finds the mark it last saw knows, without looking, that what it read is
//! still what is there.
//!
//! One `inotify` instance per watched tree, one watch per folder in it (folders named with a leading `.` are not
//! looked into: they are ours, and our own writes there must not count as changes). A mark is the host's epoch
//! (random, per process: a mark of an earlier run never matches) and the number of the last change counted:
//! changes are counted from one sequence across every tree, so two marks are equal only when no event arrived
//! between the two calls and the same watches stood all along. Whatever the watches may have missed counts as
//! a change: a full event queue, a watched folder removed or moved, a folder created, removed or moved in one
//! (the tree's folders are looked at again, each watched before it is read).
//!
//! What this cannot see, and so where no mark is given: folders on a filesystem whose changes can come from
//! another machine (NFS, SMB, Lustre, GPFS, CephFS, FUSE mounts: only local filesystems are watched), and
//! changes made through a shared memory mapping (no event is made for them). Trees of more than
//! [`MAX_FOLDERS`] folders are not watched either.
//!
//! The authority is the component's: the folder is resolved beneath the descriptor it lends, which must have
//! been opened for reading; a watch gives the component nothing but the mark.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// The most folders one tree may have to be watched.
pub(crate) const MAX_FOLDERS: usize = 65_536;

/// The most trees watched at once (a server's tenants have one or two each); beyond, every tree is dropped
/// and watched anew when asked.
const MAX_TREES: usize = 256;

/// The trees the host watches, for every instance of every tenant.
pub(crate) struct Watches {
    /// Makes this process's marks its own.
    epoch: u64,
    /// The number of the last change counted, in any tree.
    counted: AtomicU64,
    /// By the watched folder (device, inode) and depth.
    trees: Mutex<HashMap<(u64, u64, u32), Slot>>,
}

/// A tree's watch (`None` until it is watched, or when it cannot be), locked by the request asking for its mark.
type Slot = Arc<Mutex<Option<Watched>>>;

#[cfg(target_os = "linux")]
type Watched = linux::Tree;
#[cfg(not(target_os = "linux"))]
type Watched = ();

impl Default for Watches {
    fn default() -> Self {
        Watches { epoch: rand::random(), counted: AtomicU64::new(0), trees: Mutex::default() }
    }
}

impl Watches {
    /// The mark of `folder` (a folder the host may read, which the component lent) and of its folders down to
    /// `depth`; `None` when they cannot be watched (see the module's doc).
    #[cfg(target_os = "linux")]
    pub(crate) fn mark(&self, folder: std::os::fd::BorrowedFd<'_>, depth: u32) -> Option<String> {
        let stat = rustix::fs::fstat(folder).ok()?;
        let key = (stat.st_dev, stat.st_ino, depth);
        let tree = {
            let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
            if trees.len() >= MAX_TREES && !trees.contains_key(&key) {
                trees.clear();
            }
            trees.entry(key).or_default().clone()
        };
        let mut tree = tree.lock().unwrap_or_else(PoisonError::into_inner);
        let next = || self.counted.fetch_add(1, Ordering::Relaxed) + 1;
        if tree.is_none() {
            *tree = linux::Tree::watch(folder, depth, next());
        }
        let counted = tree.as_mut().and_then(|t| t.catch_up(next));
        if counted.is_none() {
            // Not watchable now: asked again, it is tried again from the start.
            *tree = None;
        }
        counted.map(|n| format!("{:016x}.{n}", self.epoch))
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
            let _ = (table, folder, path, depth, &self.trees, &self.counted, self.epoch);
            None
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{HashSet, MAX_FOLDERS};
    use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::fs::{FileType, Mode, OFlags, RawDir};
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

    /// One watched tree.
    pub(super) struct Tree {
        inotify: OwnedFd,
        /// The tree's folder (kept open, never read: its folders are looked at again from it).
        root: OwnedFd,
        depth: u32,
        /// The watch of each of its folders.
        watched: HashSet<i32>,
        /// The number of its last change.
        counted: u64,
        /// Its folders must be looked at again before the next mark.
        stale: bool,
    }

    impl Tree {
        /// Watches `folder` and its folders down to `depth`; `None` when it cannot.
        pub(super) fn watch(folder: BorrowedFd<'_>, depth: u32, counted: u64) -> Option<Tree> {
            let inotify = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
            let root = rustix::io::fcntl_dupfd_cloexec(folder, 0).ok()?;
            Some(Tree { inotify, root, depth, watched: HashSet::new(), counted, stale: true })
        }

        /// Counts what happened since the last call; the number of the tree's last change, or `None` when it
        /// can no longer be watched.
        pub(super) fn catch_up(&mut self, mut next: impl FnMut() -> u64) -> Option<u64> {
            let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
            let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
            let mut changed = false;
            loop {
                match reader.next() {
                    Ok(event) => {
                        let flags = event.events();
                        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                            (changed, self.stale) = (true, true);
                            continue;
                        }
                        if !self.watched.contains(&event.wd()) {
                            // A watch this tree removed, its last events.
                            continue;
                        }
                        changed = true;
                        if flags.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
                            || flags.contains(ReadFlags::ISDIR)
                                && flags.intersects(
                                    ReadFlags::CREATE | ReadFlags::DELETE | ReadFlags::MOVED_FROM | ReadFlags::MOVED_TO,
                                )
                        {
                            self.stale = true;
                        }
                        if flags.contains(ReadFlags::IGNORED) {
                            self.watched.remove(&event.wd());
                        }
                    }
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => continue,
                    Err(_) => return None,
                }
            }
            if self.stale {
                self.rewatch()?;
                (changed, self.stale) = (true, false);
            }
            if changed {
                self.counted = next();
            }
            Some(self.counted)
        }

        /// Watches every folder of the tree (each before it is read, so that whatever is made in it after it
        /// was read makes an event), and stops watching folders no longer in it.
        fn rewatch(&mut self) -> Option<()> {
            let mut watched = HashSet::new();
            // Opened anew, not duplicated: a duplicate would share the position of the last reading.
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let root = rustix::fs::openat(&self.root, c".", flags, Mode::empty()).ok()?;
            let mut folders = vec![(root, 0u32)];
            while let Some((folder, level)) = folders.pop() {
                // `f_type`'s type differs between platforms.
                #[allow(clippy::unnecessary_cast)]
                let local = rustix::fs::fstatfs(&folder).ok().is_some_and(|fs| LOCAL.contains(&(fs.f_type as i64)));
                if !local || watched.len() >= MAX_FOLDERS {
                    return None;
                }
                let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&folder));
                watched.insert(inotify::add_watch(&self.inotify, path.as_str(), events()).ok()?);
                if level < self.depth {
                    for sub in subfolders(folder.as_fd())? {
                        folders.push((sub, level + 1));
                    }
                }
            }
            for gone in self.watched.difference(&watched) {
                // Already gone with its folder, or removed now.
                let _ = inotify::remove_watch(&self.inotify, *gone);
            }
            self.watched = watched;
            Some(())
        }
    }

    /// The folders in `folder` whose names do not begin with `.`, opened (a link is not followed; an entry
    /// gone or replaced by something else meanwhile is left out: its removal made an event).
    fn subfolders(folder: BorrowedFd<'_>) -> Option<Vec<OwnedFd>> {
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(16 << 10);
        let mut reading = RawDir::new(folder, buf.spare_capacity_mut());
        while let Some(entry) = reading.next() {
            let entry = entry.ok()?;
            let name = entry.file_name();
            if name.to_bytes().starts_with(b".")
                || !matches!(entry.file_type(), FileType::Directory | FileType::Unknown)
            {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(folder, name, flags, Mode::empty()) {
                Ok(sub) => out.push(sub),
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {}
                Err(_) => return None,
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
        assert_eq!(mark(&watches, dir.path()), Some(now));
    }

    #[test]
    fn marks_are_the_process_s_own_and_every_tree_s_own() {
        let (a, b) = (tree(), tree());
        let watches = Watches::default();
        let Some(ma) = mark(&watches, a.path()) else { return };
        let mb = mark(&watches, b.path()).unwrap();
        assert_ne!(ma, mb);
        assert_ne!(mark(&Watches::default(), a.path()).unwrap(), ma, "another run's mark");
    }
}
