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
//!
//! The same renames can run on a thread of the host's (`start-renames`, `renamed`: [`Renaming`]) while the
//! component goes on; that thread holds duplicates of the two lent descriptors for the call, makes the calls in
//! the order started, and renames nothing more once the instance ends.

use crate::library::bindings::renames::{ErrorCode, RenameFailure};
use crate::wasm::lent::{error_code, writable_folder};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// Whether this host can rename without replacing (the component then asks it to).
pub(crate) const RENAMES: bool = cfg!(target_os = "linux");

/// Pairs started (`start-renames`) and not answered yet, at most, per instance (~150 bytes each in the host);
/// beyond it a start is refused (`busy`) until an answer is taken.
pub(crate) const STARTED_AT_MOST: usize = 1 << 17;

/// Renames every pair in order, stopping at the first that fails.
pub(crate) fn rename_files(
    table: &ResourceTable,
    source: &Resource<Descriptor>,
    destination: &Resource<Descriptor>,
    pairs: &[(String, String)],
) -> Result<(), RenameFailure> {
    if pairs.is_empty() {
        return Ok(());
    }
    let lent = |d| writable_folder(table, d).map_err(|_| at(0, ErrorCode::NotPermitted));
    rename_all(lent(source)?, lent(destination)?, pairs, &AtomicBool::new(false))
}

/// The pair at `index` and why it stopped there.
fn at(index: usize, code: ErrorCode) -> RenameFailure {
    RenameFailure { index: u32::try_from(index).unwrap_or(u32::MAX), code }
}

/// Renames every pair in order beneath the two folders, stopping at the first that fails, or (`interrupted`)
/// before the first pair once `ended` is set.
fn rename_all(
    source: cap_std::fs::Dir,
    destination: cap_std::fs::Dir,
    pairs: &[(String, String)],
    ended: &AtomicBool,
) -> Result<(), RenameFailure> {
    let (mut from, mut to) = (Folders::new(source), Folders::new(destination));
    for (i, (a, b)) in pairs.iter().enumerate() {
        if ended.load(Ordering::Relaxed) {
            return Err(at(i, ErrorCode::Interrupted));
        }
        let (a_folder, a_name) = split(a).map_err(|code| at(i, code))?;
        let (b_folder, b_name) = split(b).map_err(|code| at(i, code))?;
        let a_dir = from.open(a_folder).map_err(|code| at(i, code))?;
        let b_dir = to.open(b_folder).map_err(|code| at(i, code))?;
        rename_no_replace(a_dir, a_name, b_dir, b_name).map_err(|code| at(i, code))?;
    }
    Ok(())
}

/// The renames an instance started and has not taken the answers of yet (WIT `start-renames`, `renamed`),
/// made one call after another on one thread of the host's, started with the first call.
#[derive(Default)]
pub(crate) struct Renaming {
    last: u32,
    shared: Arc<Shared>,
    worker: Option<(mpsc::Sender<Call>, std::thread::JoinHandle<()>)>,
}

/// A call started: the ticket it answers under, the two lent folders (duplicates) and the pairs.
struct Call {
    ticket: u32,
    source: cap_std::fs::Dir,
    destination: cap_std::fs::Dir,
    pairs: Vec<(String, String)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<Calls>,
    answered: Condvar,
    /// The instance ended: the thread renames nothing more.
    ended: AtomicBool,
}

#[derive(Default)]
struct Calls {
    /// Ticket → its answer, once the thread has made the call.
    open: HashMap<u32, Option<Result<(), RenameFailure>>>,
    /// Pairs started and not answered yet.
    started: usize,
    /// A call stopped at a pair: the calls after it rename nothing.
    stopped: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, Calls> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread's work: each call in the order started.
    fn make(&self, calls: mpsc::Receiver<Call>) {
        for call in calls {
            let stopped = self.state().stopped;
            let answer = if stopped {
                Err(at(0, ErrorCode::Interrupted))
            } else {
                rename_all(call.source, call.destination, &call.pairs, &self.ended)
            };
            let mut state = self.state();
            state.stopped |= answer.is_err();
            state.started -= call.pairs.len();
            state.open.insert(call.ticket, Some(answer));
            self.answered.notify_all();
        }
    }
}

impl Renaming {
    /// Starts renaming `pairs` (as [`rename_files`]) on the host's thread; the ticket for [`Renaming::answer`].
    pub(crate) fn start(
        &mut self,
        table: &ResourceTable,
        source: &Resource<Descriptor>,
        destination: &Resource<Descriptor>,
        pairs: Vec<(String, String)>,
    ) -> Result<u32, ErrorCode> {
        let lent = |d| writable_folder(table, d).map_err(|_| ErrorCode::NotPermitted);
        let (source, destination) = (lent(source)?, lent(destination)?);
        {
            let state = self.shared.state();
            if state.started > 0 && state.started + pairs.len() > STARTED_AT_MOST {
                return Err(ErrorCode::Busy);
            }
        }
        if self.worker.is_none() {
            let (send, receive) = mpsc::channel();
            let shared = Arc::clone(&self.shared);
            let thread = std::thread::Builder::new()
                .name("xnat-renames".into())
                .spawn(move || shared.make(receive))
                .map_err(|_| ErrorCode::Busy)?;
            self.worker = Some((send, thread));
        }
        let mut state = self.shared.state();
        self.last = self.last.wrapping_add(1);
        while state.open.contains_key(&self.last) {
            self.last = self.last.wrapping_add(1);
        }
        let ticket = self.last;
        let Some((send, _)) = &self.worker else { return Err(ErrorCode::Busy) };
        let n = pairs.len();
        send.send(Call { ticket, source, destination, pairs }).map_err(|_| ErrorCode::Busy)?;
        state.started += n;
        state.open.insert(ticket, None);
        Ok(ticket)
    }

    /// The answer of the call started with `ticket`, waiting for it; the ticket is then closed.
    pub(crate) fn answer(&mut self, ticket: u32) -> Result<(), RenameFailure> {
        let mut state = self.shared.state();
        loop {
            match state.open.get(&ticket) {
                None => return Err(at(0, ErrorCode::Invalid)),
                Some(Some(_)) => return state.open.remove(&ticket).flatten().expect("answered"),
                Some(None) => state = self.shared.answered.wait(state).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }
}

impl Drop for Renaming {
    /// The instance ended: the thread stops before its next rename, and is waited for, so that nothing is
    /// renamed once the instance is gone.
    fn drop(&mut self) {
        self.shared.ended.store(true, Ordering::Relaxed);
        if let Some((send, thread)) = self.worker.take() {
            drop(send);
            let _ = thread.join();
        }
    }
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
    fn started_calls_run_in_order_and_none_after_one_that_stopped() {
        let (pre, arc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(pre.path().join("S")).unwrap();
        fs::create_dir_all(arc.path().join("E")).unwrap();
        for n in ["a", "b", "c", "d", "e"] {
            fs::write(pre.path().join("S").join(n), n).unwrap();
        }
        fs::write(arc.path().join("E/c"), "archived").unwrap();
        let mut table = ResourceTable::new();
        let (p, a) =
            (lend(&mut table, pre.path(), FsPerms::ReadWrite), lend(&mut table, arc.path(), FsPerms::ReadWrite));
        let mut renaming = Renaming::default();
        let mut start = |list: &[(&str, &str)]| renaming.start(&table, &p, &a, pairs(list)).unwrap();
        let first = start(&[("S/a", "E/a"), ("S/b", "E/b")]);
        let clash = start(&[("S/c", "E/c")]);
        let after = start(&[("S/d", "E/d")]);
        // Answers may be taken in any order; each is what `rename-files` would have answered.
        let failure = renaming.answer(clash).unwrap_err();
        assert_eq!((failure.index, failure.code), (0, ErrorCode::Exist));
        let failure = renaming.answer(after).unwrap_err();
        assert_eq!((failure.index, failure.code), (0, ErrorCode::Interrupted), "not tried after a stop");
        assert!(pre.path().join("S/d").exists());
        renaming.answer(first).unwrap();
        assert_eq!(fs::read_to_string(arc.path().join("E/b")).unwrap(), "b");
        assert_eq!(fs::read_to_string(arc.path().join("E/c")).unwrap(), "archived", "nothing replaced");
        let failure = renaming.answer(first).unwrap_err();
        assert_eq!((failure.index, failure.code), (0, ErrorCode::Invalid), "a ticket answers once");
        // Only beneath folders the component may write in: nothing is started.
        let ro = lend(&mut table, arc.path(), FsPerms::ReadOnly);
        assert_eq!(renaming.start(&table, &p, &ro, pairs(&[("S/e", "E/e")])).unwrap_err(), ErrorCode::NotPermitted);
        assert!(pre.path().join("S/e").exists());
    }

    #[test]
    fn nothing_is_renamed_once_the_instance_ended() {
        let (pre, arc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let names: Vec<String> = (0..20_000).map(|i| format!("f{i}")).collect();
        for n in &names {
            fs::File::create(pre.path().join(n)).unwrap();
        }
        let mut table = ResourceTable::new();
        let (p, a) =
            (lend(&mut table, pre.path(), FsPerms::ReadWrite), lend(&mut table, arc.path(), FsPerms::ReadWrite));
        let mut renaming = Renaming::default();
        let list: Vec<(String, String)> = names.iter().map(|n| (n.clone(), n.clone())).collect();
        renaming.start(&table, &p, &a, list).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(renaming);
        let moved = fs::read_dir(arc.path()).unwrap().count();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(fs::read_dir(arc.path()).unwrap().count(), moved, "renamed after the instance ended");
        assert_eq!(moved + fs::read_dir(pre.path()).unwrap().count(), names.len(), "every file is in one place");
        assert!(moved < names.len(), "the renames stopped when the instance ended ({moved} moved)");
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
