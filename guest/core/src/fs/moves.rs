//! Moving many files from one granted tree to another (or within one) without ever replacing a file: the
//! archive's moves of a session's files into an experiment (`import/journal.rs`).
//!
//! Inside the component, a host that renames (WIT `renames`, [`HostRenames`]) is lent the two trees'
//! preopened descriptors and moves a whole batch in one call, each file by one native rename that refuses to
//! replace anything. Otherwise each file's destination is looked at and the file is then renamed — two looks
//! and a rename through the runtime, and a file that appeared at the destination between the look and the
//! rename would be replaced: the window the host's rename closes.

use crate::error::Error;
use crate::fs::tree::{RelPath, Tree};

/// A file's path in the tree it leaves and its path in the tree it goes to, borrowed from the steps that name
/// them (a merge's 10,000 moves are not copied to be made).
pub type MovePair<'p> = (&'p RelPath, &'p RelPath);

/// Why a batch of moves stopped: the pair at `index` (counted from 0) was not moved; every pair before it
/// was, and none after it was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveStopped {
    pub index: usize,
    /// `Conflict`: something is already at the destination (nothing was replaced); `NotFound`: the file is
    /// not there to move (or its destination folder is not); anything else as the file system said.
    pub error: Error,
}

impl Tree {
    /// Moves each pair's first path in this tree to its second in `dest`, in order, never replacing
    /// anything; stops at the first pair that cannot be moved. The destination folders must exist.
    pub fn move_files_new(&self, dest: &Tree, pairs: &[MovePair]) -> std::result::Result<(), MoveStopped> {
        #[cfg(target_os = "wasi")]
        let pairs = match component::move_by_host(self, dest, pairs) {
            component::ByHost::Done(result) => return result,
            // The host moved the first `n` and cannot move the rest: they are moved here.
            component::ByHost::Declined(n) => {
                let n = n.min(pairs.len());
                return self.move_each(dest, &pairs[n..]).map_err(|s| MoveStopped { index: s.index + n, ..s });
            }
            component::ByHost::NotOffered => pairs,
        };
        self.move_each(dest, pairs)
    }

    /// Starts [`Tree::move_files_new`] of `pairs`: on the host's thread when it renames that way (WIT
    /// `start-renames`: the component goes on meanwhile), else when [`PendingMoves::finish`] is called. Moves
    /// started one after another run in that order; finish them in that order too.
    pub fn start_moves_new<'t>(&'t self, dest: &'t Tree, pairs: Vec<MovePair<'t>>) -> PendingMoves<'t> {
        #[cfg(target_os = "wasi")]
        if let Some(started) = component::start_by_host(self, dest, &pairs) {
            return PendingMoves { from: self, dest, pairs, started: Some(started) };
        }
        PendingMoves {
            from: self,
            dest,
            pairs,
            #[cfg(target_os = "wasi")]
            started: None,
        }
    }

    /// One pair at a time: a look at the file and at its destination, then a rename.
    fn move_each(&self, dest: &Tree, pairs: &[MovePair]) -> std::result::Result<(), MoveStopped> {
        for (index, (from, to)) in pairs.iter().enumerate() {
            let stop = |error| MoveStopped { index, error };
            // The file first, as the kernel's rename looks: a file already moved is missing, not in the way.
            if self.kind(from).map_err(stop)?.is_none() {
                return Err(stop(Error::NotFound(format!("{from} does not exist"))));
            }
            if dest.kind(to).map_err(stop)?.is_some() {
                return Err(stop(exists(to)));
            }
            self.rename_to(from, dest, to).map_err(stop)?;
        }
        Ok(())
    }
}

/// Moves started by [`Tree::start_moves_new`]. Dropped before it is finished, it waits for the host to finish
/// them, so that no file moves behind the component's back once it went on (to roll back, say).
pub struct PendingMoves<'t> {
    from: &'t Tree,
    dest: &'t Tree,
    pairs: Vec<MovePair<'t>>,
    /// The host's ticket; `None` when the moves are made by [`PendingMoves::finish`].
    #[cfg(target_os = "wasi")]
    started: Option<component::Started>,
}

impl<'t> PendingMoves<'t> {
    /// The pairs, as started.
    pub fn pairs(&self) -> &[MovePair<'t>] {
        &self.pairs
    }

    /// Waits for the moves (or makes them): what [`Tree::move_files_new`] would have answered. Pairs the host did
    /// not try (an earlier call stopped, or it cannot rename without replacing) are moved here.
    #[cfg_attr(not(target_os = "wasi"), allow(unused_mut))]
    pub fn finish(mut self) -> std::result::Result<(), MoveStopped> {
        #[cfg(target_os = "wasi")]
        if let Some(started) = self.started.take() {
            return match component::finish_by_host(started, &self.pairs) {
                component::ByHost::Done(result) => result,
                component::ByHost::Declined(n) => {
                    let n = n.min(self.pairs.len());
                    self.from
                        .move_files_new(self.dest, &self.pairs[n..])
                        .map_err(|s| MoveStopped { index: s.index + n, ..s })
                }
                component::ByHost::NotOffered => self.from.move_files_new(self.dest, &self.pairs),
            };
        }
        self.from.move_files_new(self.dest, &self.pairs)
    }
}

impl Drop for PendingMoves<'_> {
    fn drop(&mut self) {
        #[cfg(target_os = "wasi")]
        if let Some(started) = self.started.take() {
            let _ = component::finish_by_host(started, &self.pairs);
        }
    }
}

fn exists(to: &RelPath) -> Error {
    Error::Conflict(format!("{to} already exists; nothing was replaced"))
}

#[cfg(target_os = "wasi")]
pub use component::HostRenames;

#[cfg(target_os = "wasi")]
mod component {
    use super::MovePair;
    use super::{MoveStopped, exists};
    use crate::error::Error;
    use crate::fs::tree::{RelPath, Tree};
    use crate::fs::wasi_dir::{below_preopen, in_preopen};
    use std::cell::{Cell, OnceCell};
    use wasi::filesystem::types::{Descriptor, ErrorCode};

    /// The host's renames (WIT `renames`), as the component adapters bind them: whether it renames at all
    /// (asked once), and the batch call: `Err((index, code))` for the pair it stopped at.
    #[derive(Debug, Clone, Copy)]
    pub struct HostRenames {
        pub renames: fn() -> bool,
        pub rename_files: RenameFiles,
        pub start_renames: StartRenames,
        pub renamed: Renamed,
    }

    /// WIT `rename-files`: the pairs beneath the two lent folders, or the index of the pair it stopped at and why.
    pub type RenameFiles = fn(&Descriptor, &Descriptor, &[(String, String)]) -> Result<(), (u32, ErrorCode)>;

    /// WIT `start-renames`: `rename-files` on the host's thread; the ticket for WIT `renamed`.
    pub type StartRenames = fn(&Descriptor, &Descriptor, &[(String, String)]) -> Result<u32, ErrorCode>;

    /// WIT `renamed`: the answer of a call started, as [`RenameFiles`] answers.
    pub type Renamed = fn(u32) -> Result<(), (u32, ErrorCode)>;

    thread_local! {
        /// Whether the host renames, asked once.
        static HOST_RENAMES: OnceCell<bool> = const { OnceCell::new() };
        /// Set when the host said its file system cannot rename without replacing: moved here from then on.
        static DECLINED: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) enum ByHost {
        Done(std::result::Result<(), MoveStopped>),
        /// The host moved this many pairs and cannot move the rest.
        Declined(usize),
        NotOffered,
    }

    /// Moves started on the host's thread: its ticket, and how to ask for the answer.
    pub(super) struct Started {
        ticket: u32,
        renamed: Renamed,
    }

    /// The host's renames, when it offers them and has not declined.
    fn host_of(from: &Tree, to: &Tree) -> Option<HostRenames> {
        let host = to.renames().or(from.renames()).filter(|h| HOST_RENAMES.with(|r| *r.get_or_init(h.renames)))?;
        (!DECLINED.get()).then_some(host)
    }

    /// Calls `call` with the two lent folders and the pairs' paths beneath them; `None` when a tree is no
    /// preopened folder (or beneath one).
    fn lent<T>(
        from: &Tree,
        to: &Tree,
        pairs: &[MovePair],
        call: impl FnOnce(&Descriptor, &Descriptor, &[(String, String)]) -> T,
    ) -> Option<T> {
        let (from_root, to_root) = (from.root().to_str()?, to.root().to_str()?);
        in_preopen(from_root, |from_dir, from_rest| {
            in_preopen(to_root, |to_dir, to_rest| {
                let paths: Vec<(String, String)> = pairs
                    .iter()
                    .map(|(a, b)| (below_preopen(from_rest, a.as_str()), below_preopen(to_rest, b.as_str())))
                    .collect();
                call(from_dir, to_dir, &paths)
            })
        })
        .flatten()
    }

    pub(super) fn move_by_host(from: &Tree, to: &Tree, pairs: &[MovePair]) -> ByHost {
        let Some(host) = host_of(from, to) else { return ByHost::NotOffered };
        match lent(from, to, pairs, host.rename_files) {
            None => ByHost::NotOffered,
            Some(answer) => answered(answer, pairs),
        }
    }

    /// Starts the moves on the host's thread; `None` when it does not move that way (or would not start them).
    pub(super) fn start_by_host(from: &Tree, to: &Tree, pairs: &[MovePair]) -> Option<Started> {
        let host = host_of(from, to)?;
        let ticket = lent(from, to, pairs, host.start_renames)?.ok()?;
        Some(Started { ticket, renamed: host.renamed })
    }

    /// Waits for moves started on the host's thread. Pairs it did not try (`interrupted`: an earlier call
    /// stopped, or the instance is ending) are `Declined`: the caller moves them.
    pub(super) fn finish_by_host(started: Started, pairs: &[MovePair]) -> ByHost {
        match (started.renamed)(started.ticket) {
            Err((index, ErrorCode::Interrupted)) => ByHost::Declined(index as usize),
            answer => answered(answer, pairs),
        }
    }

    /// What the host's answer means for the moves of `pairs`.
    fn answered(answer: Result<(), (u32, ErrorCode)>, pairs: &[MovePair]) -> ByHost {
        match answer {
            Ok(()) => ByHost::Done(Ok(())),
            Err((index, ErrorCode::Unsupported)) => {
                DECLINED.set(true);
                ByHost::Declined(index as usize)
            }
            Err((index, code)) => {
                let index = index as usize;
                let Some((a, b)) = pairs.get(index) else {
                    return ByHost::Done(Err(MoveStopped {
                        index,
                        error: Error::Io(format!("the host stopped at pair {index} of {}", pairs.len())),
                    }));
                };
                ByHost::Done(Err(MoveStopped { index, error: error_of(code, a, b) }))
            }
        }
    }

    fn error_of(code: ErrorCode, from: &RelPath, to: &RelPath) -> Error {
        match code {
            ErrorCode::Exist | ErrorCode::NotEmpty => exists(to),
            ErrorCode::NoEntry => Error::NotFound(format!("{from} (or the folder of {to}) does not exist")),
            ErrorCode::Access | ErrorCode::NotPermitted | ErrorCode::ReadOnly => Error::Forbidden(format!(
                "cannot move {from} to {to}: permission denied ({code}); grant the archive and prearchive read-write"
            )),
            code => Error::Io(format!("moving {from} to {to}: {code}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn files_move_in_order_until_one_cannot_and_nothing_is_replaced() {
        let (pre, arc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (p, a) = (Tree::new(pre.path()), Tree::new(arc.path()));
        fs::create_dir_all(pre.path().join("S/1")).unwrap();
        fs::create_dir_all(arc.path().join("E/1")).unwrap();
        for n in ["a", "b", "c", "d"] {
            fs::write(pre.path().join("S/1").join(n), n).unwrap();
        }
        fs::write(arc.path().join("E/1/c"), "archived").unwrap();
        let path = |s: &str| RelPath::new(s).unwrap();
        let paths: Vec<_> =
            ["a", "b", "c", "d"].iter().map(|n| (path(&format!("S/1/{n}")), path(&format!("E/1/{n}")))).collect();
        let pairs: Vec<MovePair> = paths.iter().map(|(from, to)| (from, to)).collect();

        let stopped = p.move_files_new(&a, &pairs).unwrap_err();
        assert_eq!(stopped.index, 2);
        assert!(matches!(stopped.error, Error::Conflict(_)), "{stopped:?}");
        assert_eq!(fs::read_to_string(arc.path().join("E/1/c")).unwrap(), "archived", "nothing replaced");
        assert_eq!(fs::read_to_string(arc.path().join("E/1/b")).unwrap(), "b", "the pairs before it moved");
        assert!(pre.path().join("S/1/d").exists(), "the pairs after it were not tried");

        // A file already moved is missing, not in the way (a journal run again after a crash relies on it).
        let stopped = p.move_files_new(&a, &pairs[..1]).unwrap_err();
        assert_eq!(stopped.index, 0);
        assert!(matches!(stopped.error, Error::NotFound(_)), "{stopped:?}");
        assert_eq!(p.move_files_new(&a, &pairs[3..]), Ok(()));
        assert_eq!(fs::read_to_string(arc.path().join("E/1/d")).unwrap(), "d");
        assert_eq!(p.move_files_new(&a, &[]), Ok(()));
    }
}
