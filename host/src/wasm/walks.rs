//! The host's walks of whole trees for the component (WIT `listings`: `walk-tree`, `next-walked`, `end-walk`):
//! a folder and every folder beneath it, listed on a thread of the host's while the component goes on (a
//! refresh reads its catalog meanwhile), and handed over folder by folder as the component asks.
//!
//! The authority is the component's: the walk keeps a duplicate of the folder descriptor it lent (readable, or
//! the walk is refused) and lists beneath it only, each folder as `list-folder` lists it; a symbolic link is
//! never entered. What a walk may cost is bounded: [`OPEN_AT_MOST`] walks per instance, and at most
//! [`AHEAD_AT_MOST`] entries listed and not yet taken (the walk waits for the component beyond that). A walk the
//! component closes, or leaves open when its instance ends, stops at the next folder.

use crate::library::bindings::listings::{DescriptorType, ErrorCode, WalkedFolder};
use crate::wasm::lent::readable_folder;
use crate::wasm::listings::list_at;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// Walks open at once in one instance; one more is refused (`busy`), and the component lists folder by folder.
pub(crate) const OPEN_AT_MOST: usize = 4;

/// Entries a walk lists ahead of the component at most (about 130 bytes each in the host: ~17 MiB). A folder
/// larger than this is still listed whole, once the component has taken everything before it.
pub(crate) const AHEAD_AT_MOST: usize = 1 << 17;

/// The walks an instance has open, by ticket.
pub(crate) struct Walks {
    last: u32,
    open: HashMap<u32, Arc<Walk>>,
    /// [`AHEAD_AT_MOST`] (smaller in tests).
    ahead_at_most: usize,
}

impl Default for Walks {
    fn default() -> Walks {
        Walks { last: 0, open: HashMap::new(), ahead_at_most: AHEAD_AT_MOST }
    }
}

impl Walks {
    /// Starts walking the folder at `path` beneath the lent `folder`; the ticket for [`Walks::next`].
    pub(crate) fn start(
        &mut self,
        table: &ResourceTable,
        folder: &Resource<Descriptor>,
        path: &str,
    ) -> Result<u32, ErrorCode> {
        if self.open.len() >= OPEN_AT_MOST {
            return Err(ErrorCode::Busy);
        }
        let lent = readable_folder(table, folder).map_err(|_| ErrorCode::BadDescriptor)?;
        let walk = Arc::new(Walk { ahead_at_most: self.ahead_at_most, ..Walk::default() });
        let walker = Arc::clone(&walk);
        let root = path.trim_matches('/').to_string();
        std::thread::Builder::new()
            .name("xnat-walk".into())
            .spawn(move || walker.make(&lent, &root))
            .map_err(|_| ErrorCode::Busy)?;
        self.last = self.last.wrapping_add(1);
        while self.open.contains_key(&self.last) {
            self.last = self.last.wrapping_add(1);
        }
        self.open.insert(self.last, walk);
        Ok(self.last)
    }

    /// The walk's next folder, once listed; `None` (and the ticket closed) when it has no more.
    pub(crate) fn next(&mut self, ticket: u32) -> Option<WalkedFolder> {
        let next = self.open.get(&ticket)?.take();
        if next.is_none() {
            self.end(ticket);
        }
        next
    }

    /// Closes the walk: it stops at the next folder.
    pub(crate) fn end(&mut self, ticket: u32) {
        if let Some(walk) = self.open.remove(&ticket) {
            walk.stop();
        }
    }
}

impl Drop for Walks {
    fn drop(&mut self) {
        for walk in self.open.values() {
            walk.stop();
        }
    }
}

/// One walk, shared by the thread that makes it and the instance that takes it.
#[derive(Default)]
struct Walk {
    ahead_at_most: usize,
    state: Mutex<Ahead>,
    changed: Condvar,
    /// The component waits for the next folder: its core is free, and the folder being listed is split with a
    /// second thread (see [`list_at`]).
    waited_for: AtomicBool,
}

/// What the walk has listed and the component not yet taken, and whether either side is done.
#[derive(Default)]
struct Ahead {
    folders: VecDeque<WalkedFolder>,
    entries: usize,
    /// Every folder was listed, or one could not be.
    finished: bool,
    /// The component closed the walk, or its instance ended.
    stopped: bool,
}

impl Walk {
    fn state(&self) -> MutexGuard<'_, Ahead> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, guard: MutexGuard<'g, Ahead>) -> MutexGuard<'g, Ahead> {
        self.changed.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread's work: pre-order, each folder's subfolders in the order of its entries (name order), the
    /// same order a walk that lists each folder and enters its subfolders one after another takes.
    fn make(&self, lent: &cap_std::fs::Dir, root: &str) {
        let mut pending = vec![String::new()];
        while let Some(rel) = pending.pop() {
            let path = below(root, &rel);
            // A folder that cannot be listed ends the walk here: the component lists it itself and learns why.
            let Ok(entries) = list_at(lent, &path, &self.waited_for) else { break };
            for entry in entries.iter().rev() {
                if entry.type_ == DescriptorType::Directory && entry.utf8 {
                    pending.push(below(&rel, &entry.name));
                }
            }
            if !self.put(WalkedFolder { path: rel, entries }) {
                return;
            }
        }
        let mut state = self.state();
        state.finished = true;
        self.changed.notify_all();
    }

    /// Hands a folder over, waiting while too much is listed ahead; false when the walk was stopped.
    fn put(&self, folder: WalkedFolder) -> bool {
        let mut state = self.state();
        while !state.stopped && !state.folders.is_empty() && state.entries + folder.entries.len() > self.ahead_at_most {
            state = self.wait(state);
        }
        if state.stopped {
            return false;
        }
        state.entries += folder.entries.len();
        state.folders.push_back(folder);
        self.changed.notify_all();
        true
    }

    /// The next folder, waiting for it; `None` when the walk has no more.
    fn take(&self) -> Option<WalkedFolder> {
        let mut state = self.state();
        loop {
            if let Some(folder) = state.folders.pop_front() {
                state.entries -= folder.entries.len();
                self.changed.notify_all();
                return Some(folder);
            }
            if state.finished || state.stopped {
                return None;
            }
            self.waited_for.store(true, Ordering::Release);
            state = self.wait(state);
            self.waited_for.store(false, Ordering::Release);
        }
    }

    fn stop(&self) {
        let mut state = self.state();
        state.stopped = true;
        state.folders.clear();
        state.entries = 0;
        self.changed.notify_all();
    }
}

/// `rel` beneath `base` (either may be empty).
fn below(base: &str, rel: &str) -> String {
    match (base, rel) {
        ("", rel) => rel.to_string(),
        (base, "") => base.to_string(),
        (base, rel) => format!("{base}/{rel}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::listings::list_folder;
    use wasmtime_wasi::{FsPerms, OpenMode};

    fn lend(table: &mut ResourceTable, dir: &std::path::Path, mode: OpenMode) -> Resource<Descriptor> {
        let dir = std::fs::File::open(dir).unwrap();
        table.push(Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(dir, FsPerms::ReadOnly, mode, true))).unwrap()
    }

    /// The folders a walk gives, in its order, each as `list-folder` lists it.
    fn walked(walks: &mut Walks, ticket: u32) -> Vec<(String, Vec<String>)> {
        std::iter::from_fn(|| walks.next(ticket))
            .map(|f| (f.path, f.entries.into_iter().map(|e| e.name).collect()))
            .collect()
    }

    #[test]
    fn every_folder_in_pre_order_as_listed_and_links_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let res = dir.path().join("res");
        for folder in ["b/x", "b/y", "a.d", "c", "b/x/deep"] {
            std::fs::create_dir_all(res.join(folder)).unwrap();
        }
        for file in ["f1", "b/x/f2", "b/x/deep/f3", "c/f4"] {
            std::fs::write(res.join(file), b"data").unwrap();
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), res.join("out")).unwrap();
        std::os::unix::fs::symlink("b", res.join("b-again")).unwrap();
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let mut walks = Walks::default();
        let ticket = walks.start(&table, &folder, "res").unwrap();
        let got = walked(&mut walks, ticket);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["", "a.d", "b", "b/x", "b/x/deep", "b/y", "c"]);
        for (path, names) in &got {
            let listed = list_folder(&table, &folder, &below("res", path)).unwrap();
            assert_eq!(names, &listed.into_iter().map(|e| e.name).collect::<Vec<_>>(), "{path}");
        }
        assert!(walks.next(ticket).is_none(), "a ticket is closed after its last folder");
        assert!(walks.open.is_empty());
    }

    #[test]
    fn a_walk_is_only_beneath_a_readable_folder_and_ends_where_a_folder_cannot_be_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ResourceTable::new();
        let mut walks = Walks::default();
        let write_only = lend(&mut table, dir.path(), OpenMode::WRITE);
        assert_eq!(walks.start(&table, &write_only, "").unwrap_err(), ErrorCode::BadDescriptor);
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        for outside in ["..", "/etc", "missing"] {
            let ticket = walks.start(&table, &folder, outside).unwrap();
            assert!(walks.next(ticket).is_none(), "{outside} was walked");
        }
        assert!(walks.next(12345).is_none(), "an unknown ticket");
        walks.end(12345);
    }

    #[test]
    fn open_walks_are_bounded_and_a_closed_walk_stops() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::create_dir_all(dir.path().join(format!("d{i:02}/sub"))).unwrap();
        }
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let mut walks = Walks::default();
        let tickets: Vec<u32> = (0..OPEN_AT_MOST).map(|_| walks.start(&table, &folder, "").unwrap()).collect();
        assert_eq!(walks.start(&table, &folder, "").unwrap_err(), ErrorCode::Busy);
        assert_eq!(walks.next(tickets[0]).unwrap().path, "");
        walks.end(tickets[0]);
        assert!(walks.next(tickets[0]).is_none(), "closed");
        let again = walks.start(&table, &folder, "").unwrap();
        assert_eq!(walked(&mut walks, again).len(), 101, "the root and 50 folders of one subfolder each");
        drop(walks);
    }

    #[test]
    fn a_walk_waits_when_far_ahead_and_gives_everything_in_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut walks = Walks::default();
        walks.ahead_at_most = 100;
        let per = 26;
        for d in 0..6 {
            let folder = dir.path().join(format!("d{d}"));
            std::fs::create_dir(&folder).unwrap();
            for i in 0..per {
                std::fs::File::create(folder.join(i.to_string())).unwrap();
            }
        }
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let ticket = walks.start(&table, &folder, "").unwrap();
        let walk = Arc::clone(&walks.open[&ticket]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // The thread lists the root and three folders, then waits: a fourth would put it past the bound.
        while walk.state().folders.len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(walk.state().folders.len(), 4, "the root and three folders ahead, no more");
        assert_eq!(walk.state().entries, 6 + 3 * per);
        let got = walked(&mut walks, ticket);
        assert_eq!(got.len(), 7);
        assert!(got[1..].iter().all(|(_, names)| names.len() == per));
    }
}
