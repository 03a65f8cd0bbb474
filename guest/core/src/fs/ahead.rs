//! A walk of a whole folder tree that the host makes ahead of the component (WIT `listings`: `walk-tree`):
//! started before slow work (a refresh reads its catalog meanwhile), then taken folder by folder as the
//! component's own walk comes to each folder.
//!
//! Only the order of the work changes, never what the component sees: a folder is taken from the host's walk
//! when it is the very folder asked for next (the host walks in pre-order, in name order, as the component's
//! walks do), and is given exactly as [`Tree::list_with`] gives it. Where the host does not walk, or the two
//! walks part (a folder asked for out of that order, one the host could not list), the walk is closed and
//! every folder from then on is listed when asked, as without it. Outside the component nothing is walked
//! ahead.

use super::tree::{Listed, RelPath, Stamps, Tree};
use crate::error::Result;

/// A walk the host may be making ahead (see the module's doc); closed when dropped.
#[derive(Default)]
pub struct WalkAhead {
    #[cfg(target_os = "wasi")]
    open: Option<Open>,
}

/// A walk the host is making: its ticket, the folder walked, and the host's listings that make it.
#[cfg(target_os = "wasi")]
struct Open {
    ticket: u32,
    root: RelPath,
    host: super::HostListing,
}

impl Tree {
    /// Starts the host's walk of the folder at `rel` and everything beneath it, where the host walks; otherwise
    /// a walk that lists every folder when asked.
    pub fn walk_ahead(&self, rel: &RelPath) -> WalkAhead {
        #[cfg(target_os = "wasi")]
        {
            let Some(host) = self.listing().filter(super::wasi_dir::host_lists) else { return WalkAhead::default() };
            let ticket = self
                .path(rel)
                .to_str()
                .and_then(|path| super::in_preopen(path, |dir, below| (host.walk_tree)(dir, below).ok()))
                .flatten();
            WalkAhead { open: ticket.map(|ticket| Open { ticket, root: rel.clone(), host }) }
        }
        #[cfg(not(target_os = "wasi"))]
        {
            let _ = rel;
            WalkAhead::default()
        }
    }

    /// The entries of the folder at `rel`, exactly as [`Tree::list_with`] gives them: from `ahead` when the
    /// host's walk has that folder next, listed now otherwise.
    pub fn list_ahead(&self, ahead: &mut WalkAhead, rel: &RelPath, stamps: Stamps) -> Result<Vec<Listed>> {
        #[cfg(target_os = "wasi")]
        if let Some(open) = ahead.open.take() {
            let below = rel.strip_prefix(&open.root);
            match (open.host.next_walked)(open.ticket) {
                Some((path, entries)) if below == Some(path.as_str()) => {
                    let mut listed = super::wasi_dir::from_host(entries, stamps);
                    listed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    ahead.open = Some(open);
                    return Ok(listed);
                }
                // The walks parted, or the host's has no more: it is closed (dropped), and the folder listed
                // here.
                _ => drop(open),
            }
        }
        let _ = ahead;
        self.list_with(rel, stamps)
    }
}

#[cfg(target_os = "wasi")]
impl Drop for Open {
    fn drop(&mut self) {
        (self.host.end_walk)(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside the component the walk lists each folder when asked, as [`Tree::list_with`] does.
    #[test]
    fn without_the_host_every_folder_is_listed_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("res/b")).unwrap();
        std::fs::write(dir.path().join("res/b/f"), b"x").unwrap();
        std::fs::write(dir.path().join("res/a"), b"xy").unwrap();
        let tree = Tree::new(dir.path());
        let res = RelPath::new("res").unwrap();
        let mut ahead = tree.walk_ahead(&res);
        for rel in ["res", "res/b", "res"] {
            let rel = RelPath::new(rel).unwrap();
            assert_eq!(
                tree.list_ahead(&mut ahead, &rel, Stamps::Times).unwrap(),
                tree.list_with(&rel, Stamps::Times).unwrap()
            );
        }
    }
}
