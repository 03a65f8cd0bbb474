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

/// The catalog as the stamp saw it, recorded only when its entries were exactly the stamped files, with a
/// fingerprint of those files' listing: a refresh compares the catalog and the listing with this header alone,
/// without reading the stamp's lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CatalogMark {
    /// The catalog file's length and XXH3-128 fingerprint (32 hex digits).
    pub len: u64,
    pub xxh3: String,
    /// Its entries' count and total size, as the refresh reports them.
    pub file_count: u64,
    pub file_size: u64,
    /// [`listing_fingerprint`] of the stamped files (32 hex digits).
    pub listing: String,
}

/// What a refresh knew of the catalog when it wrote the stamp: its length and fingerprint, its entries' count
/// and total size.
pub(super) type CatalogFacts = (crate::model::catalog_stream::Fingerprint, u64, u64);

impl CatalogMark {
    /// Whether a catalog of this length and fingerprint, with files listed as `listing`, is the one recorded.
    pub(super) fn is(&self, fingerprint: crate::model::catalog_stream::Fingerprint, listing: u128) -> bool {
        self.records(&(fingerprint, self.file_count, self.file_size)) && self.listing == format!("{listing:032x}")
    }

    /// Whether this mark records a catalog with these facts (the listing aside).
    pub(super) fn records(&self, &((len, xxh3), file_count, file_size): &CatalogFacts) -> bool {
        (self.len, self.file_count, self.file_size) == (len, file_count, file_size)
            && self.xxh3 == format!("{xxh3:032x}")
    }
}

/// One number for a set of files as a listing showed them, in any order: the wrapping sum of each file's
/// XXH3-128 over its path and every fact of its stamp. `None` when a file lacks a fact the stamp needs (a
/// time or its identity): such a listing is never taken as unchanged.
pub(super) fn listing_fingerprint<'a>(files: impl Iterator<Item = (&'a str, &'a FileStamp)>) -> Option<u128> {
    let mut sum = 0u128;
    for (path, stamp) in files {
        let (Some(modified), Some(identity)) = (stamp.modified_ns, stamp.identity) else { return None };
        let mut bytes = Vec::with_capacity(path.len() + 48);
        bytes.extend_from_slice(path.as_bytes());
        bytes.push(0);
        for n in [stamp.len, modified, stamp.changed_ns.unwrap_or(u64::MAX), identity.0, identity.1] {
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(&bytes));
    }
    Some(sum)
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

    /// The catalog as the stamp beside `catalog` recorded it, from the stamp's first line alone; `None` when
    /// there is no stamp, it cannot be read or it recorded no catalog.
    pub(super) fn read_mark(tree: &Tree, catalog: &RelPath) -> Option<CatalogMark> {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(tree.open(&path(catalog).ok()?).ok()?).read_line(&mut first).ok()?;
        let header: Header = serde_json::from_str(first.trim_end()).ok()?;
        (header.format == FORMAT && header.version == VERSION).then_some(header.catalog).flatten()
    }

    /// Whether `rel`, listed now as `now` and cataloged with digest `stored`, is the file the stamp recorded.
    pub(super) fn unchanged(&self, rel: &str, now: Option<&FileStamp>, stored: &str) -> bool {
        let (Some(now), Some((then, digest))) = (now, self.by_path.get(rel)) else { return false };
        now.modified_ns.is_some() && now.identity.is_some() && now == then && digest == stored
    }

    /// Writes the stamp of `files` (path, what the listing showed, the digest now stored), leaving out files
    /// changed less than two seconds before `now_ns` or whose listing lacks a time or an identity; with the
    /// catalog's mark (from `catalog`, when the caller found its entries to be exactly `files`) only when no
    /// file was left out.
    pub(super) fn write<'a>(
        tree: &Tree,
        catalog: &RelPath,
        now_ns: u64,
        files: impl Iterator<Item = (&'a str, &'a FileStamp, &'a str)>,
        facts: Option<CatalogFacts>,
    ) -> Result<()> {
        let settled = |t: Option<u64>| t.is_some_and(|t| t.saturating_add(SETTLE_NS) <= now_ns);
        let (mut lines, mut left_out, mut stamped) = (String::new(), false, Vec::new());
        for (path, stamp, digest) in files {
            if settled(stamp.modified_ns)
                && stamp.changed_ns.is_none_or(|c| settled(Some(c)))
                && stamp.identity.is_some()
            {
                lines.push_str(&line(&Line::new(path, stamp, digest)));
                stamped.push((path, stamp));
            } else {
                left_out = true;
            }
        }
        let mark = facts.filter(|_| !left_out).and_then(|((len, xxh3), file_count, file_size)| {
            let listing = listing_fingerprint(stamped.into_iter())?;
            Some(CatalogMark {
                len,
                xxh3: format!("{xxh3:032x}"),
                file_count,
                file_size,
                listing: format!("{listing:032x}"),
            })
        });
        let header = Header { format: FORMAT.into(), version: VERSION, catalog: mark };
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
