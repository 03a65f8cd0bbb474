//! The catalog's entries by the relative path each stands for (D9), built while the catalog is read: for
//! each entry only its number, whether the walk saw its file, and the few facts an update compares
//! ([`Facts`]) — never the entry itself, so that a refresh of a million entries fits in a small memory.

use crate::fs::tree::{Kind, RelPath};
use crate::model::catalog_stream::EntryHead;
use crate::refresh::Skipped;
use crate::xml;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;
use std::hash::BuildHasher;

/// The entries by key, and what reading them found wrong.
#[derive(Default)]
pub(super) struct Index {
    /// Each key's entry (its place in `indexed`), found by the key's hash. The table holds only numbers and the
    /// keys lie end to end in `text`: a million entries cost a few megabytes of table and no allocation each.
    table: HashTable<u32>,
    /// One key per catalog entry (up to millions): foldhash, seeded per index, instead of SipHash.
    hasher: RandomState,
    text: String,
    indexed: Vec<Indexed>,
    /// Entries listed twice or naming nothing: reported, left as they are.
    pub skipped: Vec<Skipped>,
    entries: u32,
}

/// One entry: its number in the catalog, where its key starts in the index's text (it ends where the next
/// entry's starts: keys are added in the order of `indexed`), whether the walk saw its file, what an update
/// compares.
pub(super) struct Indexed {
    pub entry: u32,
    key: usize,
    pub seen: Seen,
    pub facts: Facts,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    No,
    File(u64),
    /// A symbolic link or something else that is neither updated nor removed.
    Untouchable,
}

/// What an entry holds of what a refresh sets (`update::update_entry`), relative to its key: enough to tell
/// exactly whether an update would change it without keeping the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Facts {
    flags: u8,
    /// The `SIZE` metaField's value, when it is written as the refresh writes one.
    size: Option<u64>,
    /// The `digest` attribute as written.
    pub digest: Option<Box<str>>,
}

impl Facts {
    pub const CREATED_BY: u8 = 1;
    pub const CREATED_TIME: u8 = 2;
    pub const CREATED_EVENT: u8 = 4;
    pub const ID_IS_KEY: u8 = 8;
    pub const CACHE_PATH_IS_KEY: u8 = 16;
    pub const NAME_IS_KEYS_NAME: u8 = 32;
    pub const FORMAT_DICOM: u8 = 64;
    pub const DICOM: u8 = 128;

    pub fn of(head: &EntryHead, key: &str) -> Facts {
        let filled = |v: &str| !v.trim().is_empty();
        let name = key.rfind('/').map_or(key, |i| &key[i + 1..]);
        let mut facts = Facts::default();
        // One pass over the attributes (this runs for every entry of every catalog refreshed).
        for (k, v) in head.attrs() {
            let flag = match k {
                "createdBy" if filled(v) => Facts::CREATED_BY,
                "createdTime" if filled(v) => Facts::CREATED_TIME,
                "createdEventId" if filled(v) => Facts::CREATED_EVENT,
                "ID" if v == key => Facts::ID_IS_KEY,
                "cachePath" if v == key => Facts::CACHE_PATH_IS_KEY,
                "name" if v == name => Facts::NAME_IS_KEYS_NAME,
                "format" if v == "DICOM" => Facts::FORMAT_DICOM,
                "xsi:type" if xml::local(v) == "dcmEntry" => Facts::DICOM,
                "digest" => {
                    facts.digest = Some(v.into());
                    0
                }
                _ => 0,
            };
            facts.flags |= flag;
        }
        facts.size = head.size_field().filter(|s| canonical(s)).and_then(|s| s.parse::<u64>().ok());
        facts
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether the `SIZE` metaField reads `value` exactly.
    pub fn size_is(&self, value: &str) -> bool {
        self.size.is_some_and(|n| canonical(value) && value.parse::<u64>() == Ok(n))
    }

    /// Whether the `SIZE` metaField reads `len` as `u64::to_string` writes it (as [`Facts::size_is`] of that).
    pub fn size_is_len(&self, len: u64) -> bool {
        self.size == Some(len)
    }
}

/// A number as `u64::to_string` writes it, if it is one: no sign, no leading zero.
fn canonical(s: &str) -> bool {
    s == "0" || !s.starts_with(['0', '+'])
}

impl Index {
    /// Adds the next entry of the catalog in `folder` (called for each, in order, as it is read).
    pub fn add(&mut self, head: &EntryHead, folder: &RelPath) {
        let entry = self.entries;
        self.entries += 1;
        let Some(key) = entry_key(&|name| head.attr(name), folder) else {
            self.skipped.push(Skipped {
                path: head.attr("ID").unwrap_or("").to_string(),
                reason: "catalog entry without URI, cachePath or ID; left as it is".into(),
            });
            return;
        };
        let facts = Facts::of(head, &key);
        let (text, indexed) = (&self.text, &self.indexed);
        let key_of = |place: &u32| key_at(text, indexed, *place);
        let hasher = &self.hasher;
        match self.table.entry(hasher.hash_one(key.as_str()), |p| key_of(p) == key, |p| hasher.hash_one(key_of(p))) {
            Entry::Occupied(o) => {
                let place = *o.get() as usize;
                let stored = &mut self.indexed[place];
                (stored.entry, stored.facts) = (entry, facts);
                self.skipped.push(Skipped {
                    path: key,
                    reason: "listed twice in the catalog; the last entry is used, the earlier one left as it is".into(),
                });
            }
            Entry::Vacant(v) => {
                v.insert(self.indexed.len() as u32);
                self.indexed.push(Indexed { entry, key: self.text.len(), seen: Seen::No, facts });
                self.text.push_str(&key);
            }
        }
    }

    /// The place of the entry for `key`, if the catalog has one.
    fn place(&self, key: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |p| self.key(*p) == key).copied()
    }

    fn key(&self, place: u32) -> &str {
        key_at(&self.text, &self.indexed, place)
    }

    /// The entry at a place [`Index::mark_seen`] gave.
    pub fn at(&self, place: u32) -> &Indexed {
        &self.indexed[place as usize]
    }

    /// Every key with its entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Indexed)> {
        self.indexed.iter().enumerate().map(|(place, ix)| (self.key(place as u32), ix))
    }

    /// Marks the entries whose files the walk found. Entries below something the walk could not enter (a
    /// symbolic link to a folder, a name that is not UTF-8, a special file) cannot be checked: they are
    /// kept and reported, never deleted. Returns each file's entry's place ([`Index::at`]; `None`: the catalog
    /// has no entry for it), so that a file's key is looked up once.
    pub fn mark_seen(&mut self, files: &[(String, Kind)], skipped: &mut Vec<Skipped>) -> Vec<Option<u32>> {
        let places: Vec<Option<u32>> = files
            .iter()
            .map(|(rel, kind)| {
                let place = self.place(rel);
                if let Some(i) = place {
                    self.indexed[i as usize].seen = match kind {
                        Kind::File { len } => Seen::File(*len),
                        _ => Seen::Untouchable,
                    };
                }
                place
            })
            .collect();
        let blocked: Vec<&str> =
            files.iter().filter(|(_, k)| !matches!(k, Kind::File { .. })).map(|(r, _)| r.as_str()).collect();
        if blocked.is_empty() {
            return places;
        }
        let mut below: Vec<(String, u32)> = (0..self.indexed.len() as u32)
            .map(|i| (self.key(i), i))
            .filter(|(key, i)| {
                self.indexed[*i as usize].seen == Seen::No
                    && blocked.iter().any(|b| key.strip_prefix(b).is_some_and(|rest| rest.starts_with('/')))
            })
            .map(|(key, i)| (key.to_string(), i))
            .collect();
        below.sort_unstable();
        for (key, i) in below {
            self.indexed[i as usize].seen = Seen::Untouchable;
            skipped.push(Skipped {
                path: key,
                reason: "cataloged below a symbolic link or an entry that cannot be read; kept, not checked".into(),
            });
        }
        places
    }
}

/// The key of the entry at `place`: from where it starts to where the next one starts (or the text's end).
fn key_at<'t>(text: &'t str, indexed: &[Indexed], place: u32) -> &'t str {
    let place = place as usize;
    let end = indexed.get(place + 1).map_or(text.len(), |next| next.key);
    &text[indexed[place].key..end]
}

/// The relative path an entry stands for (D9), from its attributes: its `URI` when relative, with `\`, `./`
/// and percent-encoding normalised; for absolute URIs and URLs its `cachePath`, else its `ID`, else the
/// part of the path below the resource folder.
pub(crate) fn entry_key<'a>(attr: &dyn Fn(&str) -> Option<&'a str>, folder: &RelPath) -> Option<String> {
    let uri = attr("URI");
    // Nearly every entry's URI is already a key (the refresh writes them so): told in one pass over its bytes.
    if let Some(u) = uri
        && is_key(u)
    {
        return Some(u.to_string());
    }
    let slashed = |v: &'a str| if v.contains('\\') { Cow::Owned(v.replace('\\', "/")) } else { Cow::Borrowed(v) };
    let uri = uri.map(slashed).filter(|u| !u.is_empty());
    let absolute = |u: &str| u.starts_with('/') || u.contains("://");
    match uri {
        Some(u) if !absolute(&u) => Some(normalise(&u)),
        other => {
            let from_attr = ["cachePath", "ID"]
                .iter()
                .filter_map(|a| attr(a))
                .map(slashed)
                .find(|v| !v.is_empty() && !absolute(v))
                .map(|v| normalise(&v));
            from_attr.or_else(|| {
                let u = other?;
                let path = u.strip_prefix("file://").unwrap_or(&u);
                let marker = format!("/{}/", folder.as_str());
                // Outside the folder: a key no walked file has, so delete removes it as XNAT does.
                Some(path.find(&marker).map_or_else(|| u.to_string(), |i| normalise(&path[i + marker.len()..])))
            })
        }
    }
}

/// Whether `path` is a relative path that [`entry_key`] takes as it is: not empty, not starting with `/`, no
/// empty or `.` segment, and none of `\\`, `%` and `:` (which a backslash path, percent-encoding or a URL need).
fn is_key(path: &str) -> bool {
    // (segment length so far, whether the segment is `.` so far): a segment ends at each `/` and at the end.
    let mut segment = (0usize, false);
    for &b in path.as_bytes() {
        match b {
            b'/' if segment.0 == 0 || (segment.0 == 1 && segment.1) => return false,
            b'/' => segment = (0, false),
            b'\\' | b'%' | b':' => return false,
            _ => segment = (segment.0 + 1, segment.0 == 0 && b == b'.'),
        }
    }
    segment.0 > 1 || (segment.0 == 1 && !segment.1)
}

/// A relative path without empty and `.` segments, percent-decoded.
fn normalise(path: &str) -> String {
    let decoded = if path.contains('%') {
        percent_decode_str(path).decode_utf8().unwrap_or(Cow::Borrowed(path))
    } else {
        Cow::Borrowed(path)
    };
    if !decoded.split('/').any(|s| s.is_empty() || s == ".") {
        return decoded.into_owned();
    }
    decoded.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys() {
        let folder = RelPath::new("P/arc001/E/SCANS/1/DICOM").unwrap();
        let e = |attrs: &[(&str, &str)]| {
            entry_key(&|name| attrs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v), &folder)
        };
        assert_eq!(e(&[("URI", "./x/./a.dcm")]).as_deref(), Some("x/a.dcm"));
        assert_eq!(e(&[("URI", "sub\\a%20b.dcm")]).as_deref(), Some("sub/a b.dcm"));
        assert_eq!(e(&[("URI", "/data/xnat/archive/P/arc001/E/SCANS/1/DICOM/a.dcm")]).as_deref(), Some("a.dcm"));
        assert_eq!(e(&[("URI", "/somewhere/a.dcm"), ("cachePath", "c.dcm")]).as_deref(), Some("c.dcm"));
        assert_eq!(e(&[("URI", "https://x/y"), ("ID", "i.dcm")]).as_deref(), Some("i.dcm"));
        assert_eq!(e(&[("URI", "/elsewhere/a.dcm")]).as_deref(), Some("/elsewhere/a.dcm"));
        assert_eq!(e(&[("URI", "a//b/")]).as_deref(), Some("a/b"));
        assert_eq!(e(&[]), None);
        assert_eq!(e(&[("URI", "./a.dcm")]).as_deref(), Some("a.dcm"));
        assert_eq!(e(&[("URI", "a/.")]).as_deref(), Some("a"));
        assert_eq!(e(&[("URI", "a/..b/.c")]).as_deref(), Some("a/..b/.c"));
        assert_eq!(e(&[("URI", "C:x"), ("ID", "i.dcm")]).as_deref(), Some("C:x"));
    }

    #[test]
    fn a_key_taken_as_it_is_is_what_normalising_it_gives() {
        for path in ["a", "a/b.dcm", ".a", "a/.b", "..", "a/../b", "x y/z"] {
            assert!(is_key(path), "{path}");
            assert_eq!(normalise(path), path);
        }
        for path in ["", "/a", "a/", "a//b", "./a", "a/./b", "a/.", ".", "a\\b", "a%20b", "http://x", "C:x"] {
            assert!(!is_key(path), "{path}");
        }
    }

    #[test]
    fn keys_kept_end_to_end_are_found_and_listed_once() {
        let bytes = br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:entries>
            <cat:entry URI="a/b.dcm"/><cat:entry URI="c.dcm"/><cat:entry URI="./a/b.dcm"/><cat:entry ID="x"/>
            <cat:entry URI="d.dcm"/></cat:entries></cat:Catalog>"#;
        let mut index = Index::default();
        crate::model::catalog_stream::StreamedCatalog::read(&bytes[..], &mut |h| index.add(h, &RelPath::root()))
            .unwrap();
        let mut keys: Vec<(&str, u32)> = index.iter().map(|(k, ix)| (k, ix.entry)).collect();
        keys.sort();
        // The entry listed twice keeps its key and takes the later entry's number.
        assert_eq!(keys, [("a/b.dcm", 2), ("c.dcm", 1), ("d.dcm", 4), ("x", 3)]);
        assert_eq!(index.skipped.len(), 1, "{:?}", index.skipped.iter().map(|s| &s.path).collect::<Vec<_>>());
        for (key, entry) in keys {
            assert_eq!(index.place(key).map(|p| index.at(p).entry), Some(entry), "{key}");
        }
        assert_eq!(index.place("a/b"), None);
        assert_eq!(index.place("a/b.dcm/"), None);
    }

    #[test]
    fn facts_tell_what_an_update_would_change() {
        let bytes = br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><cat:entries>
            <cat:entry URI="d/a.dcm" ID="d/a.dcm" cachePath="d/a.dcm" name="a.dcm" createdTime="t" createdEventId=" " format="DICOM" digest="AB" xsi:type="cat:dcmEntry"><cat:metaFields><cat:metaField name="SIZE">10</cat:metaField></cat:metaFields></cat:entry>
            <cat:entry URI="b" ID="x" createdBy="u"><cat:metaFields><cat:metaField name="SIZE">010</cat:metaField></cat:metaFields></cat:entry>
            </cat:entries></cat:Catalog>"#;
        let mut facts = Vec::new();
        crate::model::catalog_stream::StreamedCatalog::read(&bytes[..], &mut |h| {
            let key = entry_key(&|n| h.attr(n), &RelPath::root()).unwrap();
            facts.push(Facts::of(h, &key));
        })
        .unwrap();
        let a = &facts[0];
        for flag in [
            Facts::CREATED_TIME,
            Facts::ID_IS_KEY,
            Facts::CACHE_PATH_IS_KEY,
            Facts::NAME_IS_KEYS_NAME,
            Facts::FORMAT_DICOM,
            Facts::DICOM,
        ] {
            assert!(a.has(flag), "{flag}");
        }
        assert!(!a.has(Facts::CREATED_BY) && !a.has(Facts::CREATED_EVENT));
        assert!(a.size_is("10") && !a.size_is("010") && !a.size_is("11"));
        assert!(a.size_is_len(10) && !a.size_is_len(11));
        assert_eq!(a.digest.as_deref(), Some("AB"));
        let b = &facts[1];
        assert!(b.has(Facts::CREATED_BY) && !b.has(Facts::ID_IS_KEY) && !b.has(Facts::NAME_IS_KEYS_NAME));
        assert!(!b.size_is("10") && !b.size_is("010"), "a SIZE not written as the refresh writes it is rewritten");
        assert!(!b.size_is_len(10), "nor seen as the number it reads");
    }
}
