//! The unchanged-data stamp: an opt-in fast path for re-checking resources whose files have not changed
//! (XNAT has nothing like it; `Request::trust_unchanged`).
//!
//! After a refresh that hashed a resource's files, the stamp records, for every file, what a listing tells
//! of it ([`FileStamp`]: size, modification time, status-change time, identity) and the digest that was
//! stored for it. The next refresh that trusts the stamp does not hash a file whose listing shows exactly
//! the same stamp *and* whose catalog entry still holds exactly the recorded digest; every other file is
//! hashed as usual. Never trusted across:
//!
//! * a content change that keeps the size and all three recorded facts: a rewrite in place whose tool sets
//!   the modification time back, on a runtime that reports no status-change time that moves with writes
//!   (wasmtime's own `stat` reports the birth time there, which is what a host without WIT `listings`
//!   gives; the host's listings and native code give the ctime, which no tool can set back);
//! * changes made within two seconds before the stamp was written (file systems with coarse timestamps
//!   could show them unchanged): such files are left out of the stamp and hashed next time;
//! * silent corruption of the storage itself (bit rot): only `verify`, which never trusts the stamp, reads
//!   every byte again.
//!
//! When the catalog's entries are exactly the stamped files (no entry without its file, no file without its
//! entry, nothing skipped), the header also records the catalog itself: its length and XXH3-128 fingerprint
//! over every byte, and its file count and size. A refresh that finds the catalog byte for byte as recorded
//! and every file listed exactly as stamped knows the outcome without reading a single entry: nothing
//! changes. The catalog is compared by content, not by its times, so any edit of it, in place or not, at any
//! moment, is seen.
//!
//! The stamp lives beside the catalog as `.~lock-<catalog>.stamp`: XNAT 1.8.3+ and this refresh leave
//! `.~lock-*` names out of catalogs, so the stamp is never cataloged by either. It is JSON Lines (a header,
//! then one line per file), written atomically; one that cannot be read is ignored and replaced.

use crate::error::Result;
use crate::fs::tree::{FileStamp, RelPath, Tree};
use foldhash::HashMap;
use serde::{Deserialize, Serialize};

/// Files changed this close before the stamp is written (in nanoseconds) are left out of it.
const SETTLE_NS: u64 = 2_000_000_000;

const FORMAT: &str = "xnat-archive unchanged-data stamp";
/// Version 2 added the catalog's mark; a version 1 stamp still reads (it has none).
const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(default)]
    catalog: Option<CatalogMark>,
}

/// The catalog as the stamp saw it, recorded only when its entries were exactly the stamped files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CatalogMark {
    /// The catalog file's length and XXH3-128 fingerprint (32 hex digits).
    pub len: u64,
    pub xxh3: String,
    /// Its entries' count and total size, as the refresh reports them.
    pub file_count: u64,
    pub file_size: u64,
}

impl CatalogMark {
    pub(super) fn new((len, xxh3): crate::model::catalog_stream::Fingerprint, file_count: u64, file_size: u64) -> Self {
        CatalogMark { len, xxh3: format!("{xxh3:032x}"), file_count, file_size }
    }

    /// Whether a catalog of this length and fingerprint is the one recorded.
    pub(super) fn is(&self, (len, xxh3): crate::model::catalog_stream::Fingerprint) -> bool {
        self.len == len && self.xxh3 == format!("{xxh3:032x}")
    }
}

/// One file's line: its path, the fields of its [`FileStamp`] side by side, and its digest. (Spelled out
/// rather than `#[serde(flatten)]`, which reads through a buffering map at several times the cost.)
#[derive(Serialize, Deserialize)]
struct Line {
    path: String,
    len: u64,
    modified_ns: Option<u64>,
    changed_ns: Option<u64>,
    identity: Option<(u64, u64)>,
    digest: String,
}

impl Line {
    fn new(path: &str, stamp: &FileStamp, digest: &str) -> Line {
        let FileStamp { len, modified_ns, changed_ns, identity } = *stamp;
        Line { path: path.into(), len, modified_ns, changed_ns, identity, digest: digest.into() }
    }

    fn stamp(&self) -> FileStamp {
        FileStamp { len: self.len, modified_ns: self.modified_ns, changed_ns: self.changed_ns, identity: self.identity }
    }
}

/// The stamp of one resource, as read.
#[derive(Default)]
pub(super) struct Stamps {
    by_path: HashMap<String, (FileStamp, String)>,
    catalog: Option<CatalogMark>,
}

/// Where the stamp of `catalog` lives.
pub(super) fn path(catalog: &RelPath) -> Result<RelPath> {
    catalog.parent().join(&format!(".~lock-{}.stamp", catalog.name()))
}

impl Stamps {
    /// The stamp beside `catalog`; empty when there is none or it cannot be read (then nothing is trusted).
    pub(super) fn read(tree: &Tree, catalog: &RelPath) -> Result<Stamps> {
        let Ok(bytes) = tree.read(&path(catalog)?) else { return Ok(Stamps::default()) };
        Ok(parse(&bytes).unwrap_or_default())
    }

    /// How many files the stamp records.
    pub(super) fn len(&self) -> usize {
        self.by_path.len()
    }

    /// The catalog as recorded, when it was.
    pub(super) fn catalog(&self) -> Option<&CatalogMark> {
        self.catalog.as_ref()
    }

    /// Whether `rel`, listed now as `now` and cataloged with digest `stored`, is the file the stamp recorded.
    pub(super) fn unchanged(&self, rel: &str, now: Option<&FileStamp>, stored: &str) -> bool {
        self.by_path.get(rel).is_some_and(|(_, digest)| digest == stored) && self.listed_as_stamped(rel, now)
    }

    /// Whether `rel`, listed now as `now`, is the file the stamp recorded (its digest then being the one the
    /// stamp holds).
    pub(super) fn listed_as_stamped(&self, rel: &str, now: Option<&FileStamp>) -> bool {
        let (Some(now), Some((then, _))) = (now, self.by_path.get(rel)) else { return false };
        now.modified_ns.is_some() && now.identity.is_some() && now == then
    }

    /// Writes the stamp of `files` (path, what the listing showed, the digest now stored), leaving out files
    /// changed less than two seconds before `now_ns` or whose listing lacks a time or an identity; with the
    /// catalog's `mark` only when no file was left out.
    pub(super) fn write<'a>(
        tree: &Tree,
        catalog: &RelPath,
        now_ns: u64,
        files: impl Iterator<Item = (&'a str, &'a FileStamp, &'a str)>,
        mark: Option<CatalogMark>,
    ) -> Result<()> {
        let settled = |t: Option<u64>| t.is_some_and(|t| t.saturating_add(SETTLE_NS) <= now_ns);
        let (mut lines, mut left_out) = (String::new(), false);
        for (path, stamp, digest) in files {
            if settled(stamp.modified_ns)
                && stamp.changed_ns.is_none_or(|c| settled(Some(c)))
                && stamp.identity.is_some()
            {
                lines.push_str(&line(&Line::new(path, stamp, digest)));
            } else {
                left_out = true;
            }
        }
        let header = Header { format: FORMAT.into(), version: VERSION, catalog: mark.filter(|_| !left_out) };
        let mut out = line(&header);
        out.push_str(&lines);
        tree.write_atomic(&path(catalog)?, out.as_bytes())
    }
}

fn line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).expect("plain data serialises");
    s.push('\n');
    s
}

/// A stamp's lines; `None` for anything but a whole stamp of this version.
fn parse(bytes: &[u8]) -> Option<Stamps> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next()?).ok()?;
    if header.format != FORMAT || !(1..=VERSION).contains(&header.version) || !text.ends_with('\n') {
        return None;
    }
    let mut by_path = HashMap::default();
    for l in lines {
        let line: Line = serde_json::from_str(l).ok()?;
        let stamp = line.stamp();
        by_path.insert(line.path, (stamp, line.digest));
    }
    Some(Stamps { by_path, catalog: header.catalog })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_written_by_earlier_builds_still_read() {
        // A stamp as the first version wrote it (its FileStamp was flattened into the line).
        let text = "{\"format\":\"xnat-archive unchanged-data stamp\",\"version\":1}\n\
            {\"path\":\"d0/f0000.dcm\",\"len\":107374,\"modified_ns\":1796167000761795358,\
            \"changed_ns\":1796167000758328530,\"identity\":[11684807431426316786,16294559499971638506],\
            \"digest\":\"39f4493653f75c4c6dd8124a105cefc5\"}\n";
        let stamps = parse(text.as_bytes()).expect("a whole stamp");
        let (stamp, digest) = &stamps.by_path["d0/f0000.dcm"];
        assert_eq!(digest, "39f4493653f75c4c6dd8124a105cefc5");
        assert_eq!(
            *stamp,
            FileStamp {
                len: 107374,
                modified_ns: Some(1796167000761795358),
                changed_ns: Some(1796167000758328530),
                identity: Some((11684807431426316786, 16294559499971638506)),
            }
        );
        // And a line written now reads back the same.
        let again = line(&Line::new("d0/f0000.dcm", stamp, digest));
        assert_eq!(again.trim_end(), text.lines().nth(1).unwrap());
    }

    fn stamp(len: u64, modified: u64) -> FileStamp {
        FileStamp { len, modified_ns: Some(modified), changed_ns: Some(modified), identity: Some((1, 2)) }
    }

    #[test]
    fn trusted_only_when_every_fact_and_the_digest_agree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        let cat = RelPath::new("R_catalog.xml").unwrap();
        let now = 100 * SETTLE_NS;
        let (old, fresh) = (stamp(5, SETTLE_NS), stamp(5, now - 1));
        let files = [("a", &old, "d1"), ("b c/ü\nx", &old, "d2"), ("new", &fresh, "d3")];
        Stamps::write(&tree, &cat, now, files.into_iter(), None).unwrap();
        let s = Stamps::read(&tree, &cat).unwrap();
        assert!(s.unchanged("a", Some(&old), "d1"));
        assert!(s.unchanged("b c/ü\nx", Some(&old), "d2"));
        // Just written: left out, hashed next time.
        assert!(!s.unchanged("new", Some(&fresh), "d3"));
        // Another size, time or identity, another digest in the catalog, no listing: hashed.
        assert!(!s.unchanged("a", Some(&stamp(6, SETTLE_NS)), "d1"));
        assert!(!s.unchanged("a", Some(&stamp(5, SETTLE_NS + 1)), "d1"));
        assert!(!s.unchanged("a", Some(&FileStamp { identity: Some((1, 3)), ..old }), "d1"));
        assert!(!s.unchanged("a", Some(&old), "D1"));
        assert!(!s.unchanged("a", None, "d1"));
        // A damaged stamp trusts nothing.
        let p = path(&cat).unwrap();
        assert_eq!(p.as_str(), ".~lock-R_catalog.xml.stamp");
        let bytes = tree.read(&p).unwrap();
        tree.write_atomic(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(!Stamps::read(&tree, &cat).unwrap().unchanged("a", Some(&old), "d1"));
    }
}
