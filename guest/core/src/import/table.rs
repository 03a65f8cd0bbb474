//! The prearchive table: what the listing read from each session document, kept between listings.
//!
//! XNAT answers its prearchive listing from a database table (`xdat_search.prearchive`) that its receivers
//! keep up to date. We keep no database: every row is derived from disk. This table makes that cheap. It
//! remembers, per session, what the row shows from its document (date, time, subject, name, UID, visit,
//! protocol, and the status the document implies) together with the document's stamp (size, modification
//! time, status-change time — the ctime from the host's listings, the birth time from wasmtime's own
//! `stat` — as the listing of the timestamp folder saw them). A row is taken from the table only while the
//! document's stamp is exactly the remembered one; anything else reads the document again. The stamp comes
//! from the listing of the timestamp folder, which the listing reads anyway, so a remembered row costs no look
//! at the document at all.
//!
//! What it cannot see: a document rewritten in place with the same size whose modification time is then
//! set back to exactly the old one (nanoseconds), without changing its inode's times. A document changed
//! within two seconds before the listing began is never remembered (it may change again within the same
//! clock tick: the modification time would not move). The lock, the status file and the journal are looked at on every listing, as before.
//!
//! The table is a cache: a file `.xnat-archive/prearchive-table` in the prearchive (JSON lines), written
//! atomically when a listing learned something, by listings that may write (`serve`'s tenants; the CLI's
//! read-only listing reads it only). A table that cannot be read or written is no error: the listing reads
//! the documents, as it would without it.

use crate::fs::tree::{FileStamp, RelPath, Tree};
use std::collections::{HashMap, HashSet};

/// The table's file, in our folder at the prearchive's root (a name no project can have: project IDs have
/// no dot).
pub const TABLE_FILE: &str = ".xnat-archive/prearchive-table";

/// Documents whose times are this close to the listing's start are read, never remembered.
const SETTLING_NS: u64 = 2_000_000_000;

/// What a row shows from its session's document.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DocFields {
    /// The status the document implies (XNAT's rebuild: none → RECEIVING, unreadable → ERROR, an ID →
    /// ARCHIVING, else READY), used when no lock or status file says otherwise.
    pub status: String,
    pub scan_date: String,
    pub scan_time: String,
    pub subject: String,
    /// The session's label (or the patient's ID); `None`: the row names the folder.
    pub name: Option<String>,
    pub tag: String,
    pub visit: String,
    pub protocol: String,
}

/// One line of the table's file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    /// `PROJECT/TIMESTAMP/FOLDER`, or `TIMESTAMP/FOLDER` for an Unassigned session.
    session: String,
    len: u64,
    modified_ns: u64,
    changed_ns: u64,
    fields: DocFields,
}

/// The stamp a row is remembered under: all three parts must be known.
type Key = (u64, u64, u64);

fn key_of(stamp: &FileStamp) -> Option<Key> {
    Some((stamp.len, stamp.modified_ns?, stamp.changed_ns?))
}

/// The table, read at the start of a listing and written back at its end when it changed.
pub struct Table {
    rows: HashMap<String, (Key, DocFields)>,
    /// The sessions this listing came across.
    visited: HashSet<String>,
    changed: bool,
    /// When the listing began (ns since the epoch); `None` when the clock cannot tell (nothing is remembered).
    started_ns: Option<u64>,
}

impl Table {
    /// The table as the prearchive holds it now (empty when there is none, or it cannot be read). Lines
    /// that do not parse are dropped (a file cut short by a crash loses its last rows, nothing else).
    pub fn read(tree: &Tree) -> Table {
        let started_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        let mut rows = HashMap::new();
        if let Ok(path) = RelPath::new(TABLE_FILE)
            && let Ok(bytes) = tree.read(&path)
        {
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(l) = serde_json::from_slice::<Line>(line) {
                    rows.insert(l.session, ((l.len, l.modified_ns, l.changed_ns), l.fields));
                }
            }
        }
        Table { rows, visited: HashSet::new(), changed: false, started_ns }
    }

    /// The remembered fields of `session` when its document's stamp is still `stamp`.
    pub fn get(&mut self, session: &str, stamp: &FileStamp) -> Option<&DocFields> {
        self.visited.insert(session.to_string());
        let key = key_of(stamp)?;
        self.rows.get(session).filter(|(k, _)| *k == key).map(|(_, fields)| fields)
    }

    /// Remembers what was read from `session`'s document, which the listing saw with `stamp`; unless the
    /// document changed too recently to be sure the stamp tells its content (see the module's doc).
    pub fn remember(&mut self, session: &str, stamp: &FileStamp, fields: &DocFields) {
        self.visited.insert(session.to_string());
        // Content is written with the modification time (a write within the same clock tick leaves it as
        // it was): that time, not the inode's change time (moved by metadata alone), must be old enough.
        let settled = key_of(stamp)
            .filter(|&(_, modified, _)| self.started_ns.is_some_and(|now| modified.saturating_add(SETTLING_NS) < now));
        match settled {
            Some(key) => {
                if self.rows.get(session).is_none_or(|(k, f)| *k != key || f != fields) {
                    self.rows.insert(session.to_string(), (key, fields.clone()));
                    self.changed = true;
                }
            }
            None => self.forget(session),
        }
    }

    /// Forgets `session`.
    pub fn forget(&mut self, session: &str) {
        self.changed |= self.rows.remove(session).is_some();
    }

    /// Ends the listing: forgets the sessions within `listed` (the listing's scope) it did not come across
    /// (archived, moved, deleted), and writes the table when it changed. A table that cannot be written
    /// (a read-only grant, a full disk) is left as it was.
    pub fn finish(mut self, tree: &Tree, listed: impl Fn(&str) -> bool) {
        let gone: Vec<String> =
            self.rows.keys().filter(|s| listed(s) && !self.visited.contains(s.as_str())).cloned().collect();
        for session in gone {
            self.forget(&session);
        }
        if !self.changed {
            return;
        }
        let Ok(path) = RelPath::new(TABLE_FILE) else { return };
        if !tree.is_dir(&path.parent()).unwrap_or(false) {
            let _ = tree.create_dir_all(&path.parent());
        }
        let mut sessions: Vec<&String> = self.rows.keys().collect();
        sessions.sort_unstable();
        let _ = tree.write_atomic_with(&path, &mut |out| {
            for session in &sessions {
                let ((len, modified_ns, changed_ns), fields) = &self.rows[*session];
                let line = Line {
                    session: (*session).clone(),
                    len: *len,
                    modified_ns: *modified_ns,
                    changed_ns: *changed_ns,
                    fields: fields.clone(),
                };
                let io = |e: std::io::Error| crate::error::Error::io(TABLE_FILE, &e);
                serde_json::to_writer(&mut *out, &line).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64, modified_ns: u64) -> FileStamp {
        FileStamp { len, modified_ns: Some(modified_ns), changed_ns: Some(modified_ns), identity: None }
    }

    fn fields(name: &str) -> DocFields {
        DocFields { status: "READY".into(), name: Some(name.into()), ..DocFields::default() }
    }

    #[test]
    fn a_row_is_remembered_under_its_exact_stamp_and_only_once_settled() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let mut table = Table::read(&tree);
        let now = table.started_ns.unwrap();
        let old = now - 10 * SETTLING_NS;
        table.remember("P/20240101_000000/S1", &stamp(100, old), &fields("one"));
        table.remember("P/20240101_000000/S2", &stamp(100, now - SETTLING_NS / 2), &fields("fresh"));
        table.remember("20240101_000000/U", &stamp(7, old), &fields("unassigned"));
        table.finish(&tree, |_| true);

        let mut table = Table::read(&tree);
        assert_eq!(table.get("P/20240101_000000/S1", &stamp(100, old)), Some(&fields("one")));
        // Any change of the stamp reads the document again.
        assert_eq!(table.get("P/20240101_000000/S1", &stamp(101, old)), None);
        assert_eq!(table.get("P/20240101_000000/S1", &stamp(100, old + 1)), None);
        let other_birth = FileStamp { changed_ns: Some(old + 1), ..stamp(100, old) };
        assert_eq!(table.get("P/20240101_000000/S1", &other_birth), None);
        let unknown = FileStamp { changed_ns: None, ..stamp(100, old) };
        assert_eq!(table.get("P/20240101_000000/S1", &unknown), None);
        // Changed within the settling time: never remembered.
        assert_eq!(table.get("P/20240101_000000/S2", &stamp(100, now - SETTLING_NS / 2)), None);
        // A listing of project P forgets P's sessions it did not come across, and nobody else's.
        table.finish(&tree, |s| s.starts_with("P/"));
        let mut table = Table::read(&tree);
        assert_eq!(table.rows.len(), 2);
        assert!(table.get("20240101_000000/U", &stamp(7, old)).is_some());
        table.finish(&tree, |s| s.starts_with("P/"));
        let table = Table::read(&tree);
        assert_eq!(table.rows.keys().collect::<Vec<_>>(), ["20240101_000000/U"]);
    }

    #[test]
    fn a_damaged_table_loses_only_its_damaged_lines() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let mut table = Table::read(&tree);
        let old = table.started_ns.unwrap() - 10 * SETTLING_NS;
        table.remember("P/20240101_000000/S1", &stamp(1, old), &fields("one"));
        table.remember("P/20240101_000000/S2", &stamp(2, old), &fields("two"));
        table.finish(&tree, |_| true);
        let file = d.path().join(TABLE_FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        let cut = text.len() - 20; // a write cut short: the last line is incomplete
        std::fs::write(&file, format!("{}\nnot json\n", &text[..cut])).unwrap();
        let mut table = Table::read(&tree);
        assert_eq!(table.get("P/20240101_000000/S1", &stamp(1, old)), Some(&fields("one")));
        assert_eq!(table.get("P/20240101_000000/S2", &stamp(2, old)), None);
        std::fs::write(&file, [0xff, 0xfe, 0]).unwrap();
        assert!(Table::read(&tree).rows.is_empty());
    }
}
