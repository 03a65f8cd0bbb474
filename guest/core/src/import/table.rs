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
//! Beside the rows, the table keeps the last whole listing with the mark of a host that watches the prearchive
//! (WIT `listings.watch-tree`): a mark that changes whenever anything changes in the prearchive's root, its
//! projects, their timestamp folders or the sessions' folders, which hold everything a row is made of (a
//! session's document, lock, status file and journal, the folders' names, and for a session without a document
//! its folder's time, which moves when an entry of the folder does). While the host gives the same mark, the
//! listing is that one, and nothing is read but this file. Only a listing of every project is kept so. What a
//! host's watch cannot see, it gives no mark for (see `host/src/wasm/watches.rs`).
//!
//! The table is a cache: a file `.xnat-archive/prearchive-table` in the prearchive, written atomically when a
//! listing learned something, by listings that may write (`serve`'s tenants; the CLI's read-only listing reads
//! it only). A table that cannot be read or written is no error: the listing reads the documents, as it would
//! without it. Every listing reads it, so it is compact: a line naming the format, then the rows in `postcard`
//! (serde's binary encoding: the demo site's 7 rows decode in ~3.7 µs inside the component, against ~9.5 µs as
//! JSON lines). A file in any other form (the JSON lines of earlier versions, a damaged one) is an empty table,
//! written anew by the next listing that may.

use crate::fs::tree::{FileStamp, RelPath, Tree};
use crate::import::prearchive::Row;
use foldhash::HashMap;

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

/// The first line of the table's file: what follows is this version's encoding.
const MAGIC: &[u8] = b"xnat-archive prearchive table, postcard 2\n";

/// A whole listing, as it was when the host's watch of the prearchive gave `mark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing<'l> {
    pub mark: &'l str,
    pub rows: &'l [Row],
}

/// What a listing finds in the table's file.
pub enum Opened {
    /// The whole listing kept under the listing's own mark: the listing itself.
    Kept(Vec<Row>),
    /// Otherwise the table, for a listing that reads the prearchive.
    Table(Table),
}

/// A whole listing as the file keeps it: its mark, and its rows encoded (decoded only by a listing that finds
/// the mark, never merely to be written back).
#[derive(PartialEq, Eq)]
struct Kept {
    mark: String,
    rows: Vec<u8>,
}

/// One row of the table's file.
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

/// A remembered row: the document's stamp, what it showed, and whether this listing came across the session.
struct Remembered {
    key: Key,
    fields: DocFields,
    visited: bool,
}

/// The table, read at the start of a listing and written back at its end when it changed.
pub struct Table {
    rows: HashMap<String, Remembered>,
    changed: bool,
    /// When the listing began (ns since the epoch); `None` when the clock cannot tell (nothing is remembered).
    started_ns: Option<u64>,
    /// The last whole listing kept, with its mark.
    listing: Option<Kept>,
}

impl Table {
    /// The table's file read once: the whole listing kept under `mark` (the host's mark of the prearchive, when
    /// it watches it) if there is one — nothing else decoded —, otherwise the table as the prearchive holds it
    /// (empty when there is none, or it cannot be read or decoded).
    pub fn open(tree: &Tree, mark: Option<&str>) -> Opened {
        let bytes = RelPath::new(TABLE_FILE).ok().and_then(|path| tree.read(&path).ok());
        if let (Some(mark), Some(bytes)) = (mark, &bytes)
            && let Some((Some(kept), rows, _)) = split(bytes)
            && kept == mark
            && let Ok((rows, [])) = postcard::take_from_bytes::<Vec<Row>>(rows)
        {
            return Opened::Kept(rows);
        }
        Opened::Table(Table::decoded(bytes.as_deref()))
    }

    /// The table a file's content holds (empty without one, or when it is not this version's table, whole).
    fn decoded(bytes: Option<&[u8]>) -> Table {
        let started_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        let (listing, lines) = bytes.and_then(decode).unwrap_or_default();
        let rows = lines
            .into_iter()
            .map(|l| {
                let key = (l.len, l.modified_ns, l.changed_ns);
                (l.session, Remembered { key, fields: l.fields, visited: false })
            })
            .collect();
        Table { rows, changed: false, started_ns, listing }
    }

    /// The remembered fields of `session` when its document's stamp is still `stamp`.
    pub fn get(&mut self, session: &str, stamp: &FileStamp) -> Option<&DocFields> {
        let row = self.rows.get_mut(session)?;
        row.visited = true;
        Some(&row.fields).filter(|_| key_of(stamp) == Some(row.key))
    }

    /// Remembers what was read from `session`'s document, which the listing saw with `stamp`; unless the
    /// document changed too recently to be sure the stamp tells its content (see the module's doc).
    pub fn remember(&mut self, session: &str, stamp: &FileStamp, fields: &DocFields) {
        // Content is written with the modification time (a write within the same clock tick leaves it as
        // it was): that time, not the inode's change time (moved by metadata alone), must be old enough.
        let settled = key_of(stamp)
            .filter(|&(_, modified, _)| self.started_ns.is_some_and(|now| modified.saturating_add(SETTLING_NS) < now));
        match settled {
            Some(key) => match self.rows.get_mut(session) {
                Some(row) if row.key == key && row.fields == *fields => row.visited = true,
                _ => {
                    let row = Remembered { key, fields: fields.clone(), visited: true };
                    self.rows.insert(session.to_string(), row);
                    self.changed = true;
                }
            },
            None => self.forget(session),
        }
    }

    /// Forgets `session`.
    pub fn forget(&mut self, session: &str) {
        self.changed |= self.rows.remove(session).is_some();
    }

    /// Ends the listing: forgets the sessions within `listed` (the listing's scope) it did not come across
    /// (archived, moved, deleted), keeps `whole` (a whole listing and its mark) when there is one, and writes
    /// the table when it changed. A table that cannot be written (a read-only grant, a full disk) is left as
    /// it was. A listing kept earlier stays when there is no new one: it is only ever used with its own mark.
    pub fn finish(mut self, tree: &Tree, listed: impl Fn(&str) -> bool, whole: Option<Listing<'_>>) {
        let before = self.rows.len();
        self.rows.retain(|session, row| row.visited || !listed(session));
        if let Some(whole) = whole
            && let Ok(rows) = postcard::to_allocvec(whole.rows)
        {
            let kept = Kept { mark: whole.mark.to_string(), rows };
            if self.listing.as_ref() != Some(&kept) {
                self.listing = Some(kept);
                self.changed = true;
            }
        }
        if !self.changed && self.rows.len() == before {
            return;
        }
        let Ok(path) = RelPath::new(TABLE_FILE) else { return };
        if !tree.is_dir(&path.parent()).unwrap_or(false) {
            let _ = tree.create_dir_all(&path.parent());
        }
        let mut lines: Vec<Line> = self
            .rows
            .into_iter()
            .map(|(session, row)| {
                let (len, modified_ns, changed_ns) = row.key;
                Line { session, len, modified_ns, changed_ns, fields: row.fields }
            })
            .collect();
        lines.sort_unstable_by(|a, b| a.session.cmp(&b.session));
        if let Some(encoded) = encode(&self.listing, &lines) {
            // A cache, read whole and checked: it need not wait for the disk (an fsync would be most of what a
            // listing that learnt something costs).
            let _ = tree.write_cache(&path, &encoded);
        }
    }
}

/// A table file's content: the line naming the format; the whole listing kept, first (a listing decodes its
/// mark, then its rows only when the mark is its own): the mark (`None` when none is kept), the length of the
/// rows' encoding and that encoding; then the rows of the documents.
fn encode(listing: &Option<Kept>, lines: &[Line]) -> Option<Vec<u8>> {
    let mut bytes = postcard::to_extend(&listing.as_ref().map(|k| k.mark.as_str()), MAGIC.to_vec()).ok()?;
    let rows: &[u8] = listing.as_ref().map_or(&[], |k| &k.rows);
    bytes = postcard::to_extend(&(rows.len() as u64), bytes).ok()?;
    bytes.extend_from_slice(rows);
    postcard::to_extend(lines, bytes).ok()
}

/// A table file's parts, undecoded past the mark: the mark, the kept listing's rows (encoded), the rest.
fn split(bytes: &[u8]) -> Option<(Option<String>, &[u8], &[u8])> {
    let (mark, rest) = postcard::take_from_bytes::<Option<String>>(bytes.strip_prefix(MAGIC)?).ok()?;
    let (len, rest) = postcard::take_from_bytes::<u64>(rest).ok()?;
    let len = usize::try_from(len).ok().filter(|&len| len <= rest.len())?;
    let (rows, rest) = rest.split_at(len);
    Some((mark, rows, rest))
}

/// The whole listing and the rows of a table file's content; `None` unless it is this version's table, whole.
fn decode(bytes: &[u8]) -> Option<(Option<Kept>, Vec<Line>)> {
    let (mark, rows, rest) = split(bytes)?;
    match postcard::take_from_bytes::<Vec<Line>>(rest) {
        Ok((lines, [])) => Some((mark.map(|mark| Kept { mark, rows: rows.to_vec() }), lines)),
        _ => None,
    }
}

/// What the prearchive's table remembers, by session (for tests beyond this module).
#[cfg(test)]
pub(crate) fn remembered(tree: &Tree) -> Vec<(String, DocFields)> {
    let bytes = tree.read(&RelPath::new(TABLE_FILE).unwrap()).unwrap();
    decode(&bytes).expect("a table").1.into_iter().map(|l| (l.session, l.fields)).collect()
}

/// Changes what the prearchive's table remembers, keeping the stamps (for tests beyond this module).
#[cfg(test)]
pub(crate) fn edit(tree: &Tree, change: impl Fn(&mut DocFields)) {
    let path = RelPath::new(TABLE_FILE).unwrap();
    let (listing, mut lines) = decode(&tree.read(&path).unwrap()).expect("a table");
    lines.iter_mut().for_each(|l| change(&mut l.fields));
    tree.write_atomic(&path, &encode(&listing, &lines).unwrap()).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as a listing without a kept listing of its own finds it.
    fn read(tree: &Tree) -> Table {
        match Table::open(tree, None) {
            Opened::Table(table) => table,
            Opened::Kept(_) => unreachable!("without a mark nothing kept is given"),
        }
    }

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
        let mut table = read(&tree);
        let now = table.started_ns.unwrap();
        let old = now - 10 * SETTLING_NS;
        table.remember("P/20240101_000000/S1", &stamp(100, old), &fields("one"));
        table.remember("P/20240101_000000/S2", &stamp(100, now - SETTLING_NS / 2), &fields("fresh"));
        table.remember("20240101_000000/U", &stamp(7, old), &fields("unassigned"));
        table.finish(&tree, |_| true, None);

        let mut table = read(&tree);
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
        table.finish(&tree, |s| s.starts_with("P/"), None);
        let mut table = read(&tree);
        assert_eq!(table.rows.len(), 2);
        assert!(table.get("20240101_000000/U", &stamp(7, old)).is_some());
        table.finish(&tree, |s| s.starts_with("P/"), None);
        let table = read(&tree);
        assert_eq!(table.rows.keys().collect::<Vec<_>>(), ["20240101_000000/U"]);
    }

    /// The whole listing a listing under `mark` finds kept.
    fn kept(tree: &Tree, mark: &str) -> Option<Vec<Row>> {
        match Table::open(tree, Some(mark)) {
            Opened::Kept(rows) => Some(rows),
            Opened::Table(_) => None,
        }
    }

    #[test]
    fn a_whole_listing_is_kept_with_its_mark_and_given_for_that_mark_only() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        assert_eq!(kept(&tree, "m1"), None, "no table");
        let row = |name: &str| Row { project: "P".into(), name: name.into(), ..Row::default() };
        let mut table = read(&tree);
        let old = table.started_ns.unwrap() - 10 * SETTLING_NS;
        table.remember("P/20240101_000000/S1", &stamp(1, old), &fields("one"));
        let rows = vec![row("one"), row("two")];
        table.finish(&tree, |_| true, Some(Listing { mark: "m1", rows: &rows }));
        assert_eq!(kept(&tree, "m1"), Some(rows.clone()));
        assert_eq!(kept(&tree, "m2"), None, "another mark");
        assert_eq!(kept(&tree, "m"), None);
        // The rows are still there beside it, and a listing under another mark is given them.
        let Opened::Table(mut table) = Table::open(&tree, Some("m2")) else { panic!("another mark's listing") };
        assert_eq!(table.get("P/20240101_000000/S1", &stamp(1, old)), Some(&fields("one")));
        // A listing without a whole one to keep (one project's, a host that does not watch) leaves it.
        table.finish(&tree, |_| true, None);
        assert_eq!(kept(&tree, "m1"), Some(rows));
        // A new one replaces it.
        let table = read(&tree);
        table.finish(&tree, |_| true, Some(Listing { mark: "m2", rows: &[row("three")] }));
        assert_eq!(kept(&tree, "m1"), None);
        assert_eq!(kept(&tree, "m2"), Some(vec![row("three")]));
        // A damaged file keeps nothing.
        let file = d.path().join(TABLE_FILE);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..MAGIC.len() + 4]).unwrap();
        assert_eq!(kept(&tree, "m2"), None);
    }

    #[test]
    fn a_table_in_any_other_form_is_an_empty_one_and_is_written_anew() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let mut table = read(&tree);
        let old = table.started_ns.unwrap() - 10 * SETTLING_NS;
        table.remember("P/20240101_000000/S1", &stamp(1, old), &fields("one"));
        table.remember("P/20240101_000000/S2", &stamp(2, old), &fields("two"));
        table.finish(&tree, |_| true, None);
        let file = d.path().join(TABLE_FILE);
        let whole = std::fs::read(&file).unwrap();
        assert!(whole.starts_with(MAGIC));
        // Version 1: the rows of the documents alone (here: no mark, no kept rows, two bytes).
        let version_1 = [&b"xnat-archive prearchive table, postcard 1\n"[..], &whole[MAGIC.len() + 2..]].concat();
        let json_lines = br#"{"session":"P/20240101_000000/S1","len":1,"modified_ns":1,"changed_ns":1,"fields":{"status":"READY","scan_date":"","scan_time":"","subject":"","name":"one","tag":"","visit":"","protocol":""}}"#;
        let others =
            [&whole[..whole.len() - 3], &whole[MAGIC.len()..], &version_1, &json_lines[..], &[0xff, 0xfe, 0][..]];
        for other in others {
            std::fs::write(&file, other).unwrap();
            assert!(read(&tree).rows.is_empty(), "{other:?}");
        }
        // The next listing that learns something writes it whole again.
        let mut table = read(&tree);
        table.remember("P/20240101_000000/S1", &stamp(1, old), &fields("one"));
        table.finish(&tree, |_| true, None);
        let mut table = read(&tree);
        assert_eq!(table.get("P/20240101_000000/S1", &stamp(1, old)), Some(&fields("one")));
        assert_eq!(table.rows.len(), 1);
    }
}
