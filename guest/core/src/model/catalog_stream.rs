//! A catalog read and written without ever holding its entries: what the refresh works on, so that its
//! memory grows by a few bytes per entry rather than by the entries' XML (issue 11, P5).
//!
//! [`StreamedCatalog::read`] reads the file once, checking it whole as [`Catalog::parse`] does, and keeps
//! the *frame* — everything but the entries, which runs of placeholders stand in for — and where each entry
//! lies in the file; each entry is shown to the caller once, as an [`EntryHead`]. [`StreamedCatalog::write`]
//! reads the file again, entry by entry, lets the caller edit or drop each, appends new ones, and streams
//! the catalog out: byte for byte what [`Catalog::to_xml`] writes after the same edits. If the file is no
//! longer what was read (its length and XXH3-128 fingerprint, taken over every byte in both passes), the
//! write fails with [`WriteError::Changed`].

use std::io::{self, BufRead, BufReader, Read, Write};

use xxhash_rust::xxh3::Xxh3;

use crate::model::catalog::{Catalog, CatalogError, CatalogKind, EntryMut, child_or_insert, empty_container_by};
use crate::xml::{self, AttributeOrder, Element, Indent, Node, Prune};

/// Stands in the frame for a run of entries (attribute `run`: its index). No element read from a file can
/// have this name (names never hold control characters).
const RUN: &str = "\u{0}run";
/// Stands in the frame for the entries [`StreamedCatalog::write`] appends.
const ADDED: &str = "\u{0}added";

/// A catalog's frame and the places of its entries.
#[derive(Debug, Clone)]
pub struct StreamedCatalog {
    frame: Catalog,
    /// Each run of entries: its first entry and one past its last.
    runs: Vec<(u32, u32)>,
    /// Where each entry lies in the file, in document order (the entry's index is its number here).
    spans: Vec<Span>,
    /// The file's length and fingerprint when it was read; `None` for a new catalog.
    read_from: Option<Fingerprint>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    len: u64,
}

/// A catalog file's length and XXH3-128 fingerprint over every byte.
pub type Fingerprint = (u64, u128);

/// Why a catalog could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the catalog file changed since it was read")]
    Changed,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What [`StreamedCatalog::write`] does with an entry the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Written as the file holds it: `edit` would leave it alone. An entry already as the writer writes it is
    /// copied byte for byte (no reading and writing again: most of a large merge's or refresh's rewrite).
    Kept,
    /// Given to `edit`, then written.
    Edited,
    /// Left out.
    Removed,
}

/// What the reader shows of one entry: its attributes, the text of its `SIZE` metaField as
/// [`EntryMut::set_meta_field`] would compare it, and its tags (`cat:tags/cat:tag`).
#[derive(Debug, Default)]
pub struct EntryHead {
    attrs: Vec<(String, String)>,
    n_attrs: usize,
    /// The `SIZE` metaField's text, when `has_size` (kept, like every buffer here, from entry to entry: the
    /// reader allocates nothing for an entry like the one before it).
    size: String,
    has_size: bool,
    tags: Vec<String>,
    n_tags: usize,
    in_tags: bool,
    in_tag: bool,
    // Where the reader is inside the entry.
    seen_fields: bool,
    in_fields: bool,
    candidate: bool,
    capturing: bool,
    has_elements: bool,
    piece: String,
    pieces: Vec<String>,
}

impl EntryHead {
    /// Its attributes, as read (values unescaped).
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs[..self.n_attrs].iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs[..self.n_attrs].iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `xsi:type="cat:dcmEntry"` ([`crate::model::catalog::Entry::is_dicom`]).
    pub fn is_dicom(&self) -> bool {
        self.attr("xsi:type").is_some_and(|t| xml::local(t) == "dcmEntry")
    }

    /// The text of the first `SIZE` metaField in the entry's first `metaFields`; `None` when there is none.
    pub fn size_field(&self) -> Option<&str> {
        self.has_size.then_some(self.size.as_str())
    }

    /// The entry's tags (`cat:tags/cat:tag`, trimmed), in document order.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags[..self.n_tags].iter().map(|t| t.trim())
    }

    fn reset(&mut self) {
        self.n_attrs = 0;
        self.n_tags = 0;
        (self.in_tags, self.in_tag) = (false, false);
        self.has_size = false;
        (self.seen_fields, self.in_fields, self.candidate, self.capturing) = (false, false, false, false);
    }

    fn push_attr(&mut self, key: &str, value: &str) {
        if let Some((k, v)) = self.attrs.get_mut(self.n_attrs) {
            k.clear();
            k.push_str(key);
            v.clear();
            v.push_str(value);
        } else {
            self.attrs.push((key.to_string(), value.to_string()));
        }
        self.n_attrs += 1;
    }

    /// The metaField's text as `Element::text` has it: whitespace-only pieces between child elements go.
    fn end_size(&mut self) {
        if self.has_elements {
            self.pieces.push(std::mem::take(&mut self.piece));
            self.size.clear();
            for piece in self.pieces.iter().filter(|p| !p.trim().is_empty()) {
                self.size.push_str(piece);
            }
            self.pieces.clear();
        } else {
            std::mem::swap(&mut self.size, &mut self.piece);
        }
        self.piece.clear();
        self.has_size = true;
        self.capturing = false;
    }
}

/// The [`Prune`] that leaves the entries out of the frame.
struct Reading<'e> {
    /// Bytes before what the XML reader counts from (a byte-order mark, which it skips without counting).
    base: u64,
    prefix: Option<String>,
    runs: Vec<(u32, u32)>,
    spans: Vec<Span>,
    start: u64,
    head: EntryHead,
    each: &'e mut dyn FnMut(&EntryHead),
}

/// Whether a qualified `name` is `prefix:local` (`local` alone for the default namespace).
fn is_named(name: &str, prefix: &str, local: &str) -> bool {
    if prefix.is_empty() {
        return name == local;
    }
    name.len() == prefix.len() + 1 + local.len()
        && name.starts_with(prefix)
        && name.as_bytes()[prefix.len()] == b':'
        && name.ends_with(local)
}

impl Prune for Reading<'_> {
    /// Every element but the entries [`Catalog::entry_locs`] finds: `entry` children of the first `entries`
    /// of the root or of an `entrySet` in a `sets` (at any depth of sets).
    fn keep(&mut self, open: &[Element], name: &str) -> bool {
        let prefix = self.prefix.get_or_insert_with(|| open[0].prefix().to_string()).as_str();
        let is = |n: &str, local: &str| is_named(n, prefix, local);
        let Some((entries, up)) = open.split_last() else { return true };
        if up.is_empty() || !is(name, "entry") || !is(&entries.name, "entries") {
            return true;
        }
        let chain = &up[1..];
        let in_catalog =
            chain.len() % 2 == 0 && chain.chunks(2).all(|p| is(&p[0].name, "sets") && is(&p[1].name, "entrySet"));
        let first_entries = !up[up.len() - 1].elements().any(|c| is(&c.name, "entries"));
        !(in_catalog && first_entries)
    }

    fn begin(&mut self, parent: &mut Element, at: u64) {
        self.start = self.base + at;
        let entry = self.spans.len() as u32;
        // A run goes on while only layout (whitespace, which the reader drops beside elements) lies between.
        let n = parent.children.len();
        let blank = |node: &Node| matches!(node, Node::Text(t) if t.trim().is_empty());
        let run_at = |i: usize| matches!(parent.children.get(i), Some(Node::Element(e)) if e.name == RUN);
        let goes_on = (n >= 1 && run_at(n - 1)) || (n >= 2 && blank(&parent.children[n - 1]) && run_at(n - 2));
        if goes_on {
            if !run_at(n - 1) {
                parent.children.pop();
            }
            return;
        }
        let mut run = Element::new(RUN);
        run.attrs.push(("run".into(), self.runs.len().to_string()));
        parent.children.push(Node::Element(run));
        self.runs.push((entry, entry));
    }

    fn start(&mut self, level: usize, name: &str) {
        let head = &mut self.head;
        let prefix = self.prefix.as_deref().unwrap_or("");
        match level {
            0 => head.reset(),
            1 if is_named(name, prefix, "tags") => head.in_tags = true,
            2 if head.in_tags && is_named(name, prefix, "tag") => {
                head.in_tag = true;
                if let Some(t) = head.tags.get_mut(head.n_tags) {
                    t.clear();
                } else {
                    head.tags.push(String::new());
                }
                head.n_tags += 1;
            }
            1 if !head.seen_fields && is_named(name, self.prefix.as_deref().unwrap_or(""), "metaFields") => {
                head.seen_fields = true;
                head.in_fields = true;
            }
            2 => {
                head.candidate = head.in_fields
                    && !head.has_size
                    && !head.capturing
                    && is_named(name, self.prefix.as_deref().unwrap_or(""), "metaField");
            }
            3 if head.capturing => {
                let piece = std::mem::take(&mut head.piece);
                head.pieces.push(piece);
                head.has_elements = true;
            }
            _ => {}
        }
    }

    fn attr(&mut self, level: usize, key: &str, value: &str) {
        let head = &mut self.head;
        match level {
            0 => head.push_attr(key, value),
            2 if head.candidate && key == "name" && value == "SIZE" => {
                head.candidate = false;
                head.capturing = true;
                head.has_elements = false;
                head.piece.clear();
                head.pieces.clear();
            }
            _ => {}
        }
    }

    fn text(&mut self, level: usize, text: &str) {
        if level == 2 && self.head.capturing {
            self.head.piece.push_str(text);
        }
        if level == 2 && self.head.in_tag {
            let n = self.head.n_tags;
            self.head.tags[n - 1].push_str(text);
        }
    }

    fn end(&mut self, level: usize) {
        let head = &mut self.head;
        match level {
            3 if head.capturing => {
                let piece = std::mem::take(&mut head.piece);
                head.pieces.push(piece);
            }
            2 if head.capturing => head.end_size(),
            2 => {
                head.candidate = false;
                head.in_tag = false;
            }
            1 => {
                head.in_fields = false;
                head.in_tags = false;
            }
            _ => {}
        }
    }

    fn finish(&mut self, end: u64) {
        self.spans.push(Span { start: self.start, len: self.base + end - self.start });
        if let Some(run) = self.runs.last_mut() {
            run.1 += 1;
        }
        (self.each)(&self.head);
    }
}

/// A reader that takes the length and fingerprint of everything read through it.
struct Fingerprinting<R> {
    inner: R,
    hasher: Xxh3,
    len: u64,
}

impl<R: Read> Fingerprinting<R> {
    fn new(inner: R) -> Self {
        Fingerprinting { inner, hasher: Xxh3::new(), len: 0 }
    }
    fn fingerprint(&self) -> Fingerprint {
        (self.len, self.hasher.digest128())
    }
}

impl<R: Read> Read for Fingerprinting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A writer that takes the length and fingerprint of everything written through it.
struct FingerprintingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Xxh3,
    len: u64,
}

impl Write for FingerprintingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The length and fingerprint of everything `file` holds, read to its end.
pub fn fingerprint_of(file: impl Read) -> io::Result<Fingerprint> {
    let mut reader = Fingerprinting::new(file);
    // Large reads: each one is a call across the WASI boundary.
    let mut buf = vec![0u8; 1 << 20];
    while reader.read(&mut buf)? > 0 {}
    Ok(reader.fingerprint())
}

impl StreamedCatalog {
    /// Reads a catalog from `file`, showing each entry to `each` in document order (the n-th call is entry
    /// n). Refuses what [`Catalog::parse`] refuses: an empty or truncated file is an error, never an empty
    /// catalog.
    pub fn read(file: impl Read, each: &mut dyn FnMut(&EntryHead)) -> Result<StreamedCatalog, CatalogError> {
        let mut source = BufReader::with_capacity(1 << 16, Fingerprinting::new(file));
        let bom = source.fill_buf().map_err(|e| xml::XmlError(e.to_string()))?.starts_with(b"\xEF\xBB\xBF");
        let base = if bom { 3 } else { 0 };
        let mut reading = Reading {
            base,
            prefix: None,
            runs: Vec::new(),
            spans: Vec::new(),
            start: 0,
            head: EntryHead::default(),
            each,
        };
        let root = xml::parse_stream(&mut source, &mut reading)?;
        let frame = Catalog::from_root(root)?;
        // Whatever follows the root was read to its end by the reader (trailing whitespace, comments).
        io::copy(&mut source, &mut io::sink()).map_err(|e| xml::XmlError(e.to_string()))?;
        let read_from = Some(source.get_ref().fingerprint());
        Ok(StreamedCatalog { frame, runs: reading.runs, spans: reading.spans, read_from })
    }

    /// A new catalog without entries ([`Catalog::new`]).
    pub fn new(kind: CatalogKind, id: &str) -> StreamedCatalog {
        StreamedCatalog { frame: Catalog::new(kind, id), runs: Vec::new(), spans: Vec::new(), read_from: None }
    }

    /// How many entries the file holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The catalog without its entries: its kind, prefix and catalog-level metaFields.
    pub fn frame(&self) -> &Catalog {
        &self.frame
    }

    pub fn frame_mut(&mut self) -> &mut Catalog {
        &mut self.frame
    }

    /// The length and fingerprint of the catalog file as it was read or, after [`StreamedCatalog::write`],
    /// as it was written; `None` for a new catalog not written yet.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.read_from
    }

    /// Writes the catalog into `sink`, reading each entry again from `file` (the catalog file it was read
    /// from; `None` for a new catalog): each entry as its [`Fate`] says (an `Edited` one given to `edit`), and
    /// `added` new entries made by `new_entry` appended to the top-level entries. Once written,
    /// [`StreamedCatalog::fingerprint`] is that of what `sink` received.
    pub fn write(
        &mut self,
        file: Option<&mut dyn Read>,
        fate: &dyn Fn(u32) -> Fate,
        edit: &mut dyn FnMut(u32, &mut EntryMut),
        added: usize,
        new_entry: &mut dyn FnMut(usize, &Catalog) -> Element,
        sink: &mut dyn Write,
    ) -> Result<(), WriteError> {
        if self.read_from.is_some() != file.is_some() {
            return Err(WriteError::Changed);
        }
        let mut written = FingerprintingWriter { inner: sink, hasher: Xxh3::new(), len: 0 };
        let sink: &mut dyn Write = &mut written;
        if added > 0 {
            let cat = self.frame.cat().to_string();
            let name = format!("{cat}entries");
            child_or_insert(self.frame.root_mut(), &cat, "entries", &name)
                .children
                .push(Node::Element(Element::new(ADDED)));
        }
        let removed = |e: u32| fate(e) == Fate::Removed;
        let (frame, runs, spans) = (&self.frame, &self.runs, &self.spans);
        let cat = frame.cat();
        let run_of =
            |el: &Element| el.attrs.first().and_then(|(_, i)| i.parse::<usize>().ok()).and_then(|i| runs.get(i));
        let empty = |el: &Element| {
            empty_container_by(el, cat, &|e: &Element| match e.name.as_str() {
                RUN => Some(run_of(e).is_none_or(|&(a, b)| (a..b).all(removed))),
                ADDED => Some(false),
                _ => None,
            })
        };
        let mut source = file.map(|f| BufReader::with_capacity(1 << 16, Fingerprinting::new(f)));
        let mut pos = 0u64;
        let mut buf = Vec::new();
        let mut failure: Option<WriteError> = None;
        let mut replace = |out: &mut String, el: &Element, depth: usize, own_line: bool| -> bool {
            let write = |out: &mut String, e: &Element| {
                xml::write_element(out, e, (depth, own_line), AttributeOrder::Sorted, Indent::Flat, &empty);
            };
            match el.name.as_str() {
                RUN => {
                    let Some(&(first, end)) = run_of(el) else { return true };
                    for entry in first..end {
                        if failure.is_some() {
                            break;
                        }
                        let fate = fate(entry);
                        if fate == Fate::Removed {
                            continue;
                        }
                        let read = match source.as_mut() {
                            Some(src) => read_span(src, &mut pos, spans[entry as usize], &mut buf),
                            None => Err(WriteError::Changed),
                        };
                        // (Copied before the file's fingerprint is checked at the end: a file changed since it
                        // was read fails the whole write, and nothing written is kept.)
                        let as_is = match (&read, fate) {
                            (Ok(()), Fate::Kept) => std::str::from_utf8(&buf).ok().filter(|raw| {
                                xml::written_as_is(raw, AttributeOrder::Sorted, (depth, own_line), Indent::Flat)
                            }),
                            _ => None,
                        };
                        match (read, as_is) {
                            (Ok(()), Some(raw)) => {
                                xml::write_verbatim(out, raw, (depth, own_line), Indent::Flat);
                                drain(out, sink, &mut failure);
                            }
                            (Ok(()), None) => match xml::parse(&buf) {
                                Ok(mut e) => {
                                    if fate == Fate::Edited {
                                        edit(entry, &mut EntryMut::new(&mut e, cat));
                                    }
                                    write(out, &e);
                                    drain(out, sink, &mut failure);
                                }
                                Err(_) => failure = Some(WriteError::Changed),
                            },
                            (Err(e), _) => failure = Some(e),
                        }
                    }
                    true
                }
                ADDED => {
                    for i in 0..added {
                        if failure.is_some() {
                            break;
                        }
                        write(out, &new_entry(i, frame));
                        drain(out, sink, &mut failure);
                    }
                    true
                }
                _ => false,
            }
        };
        let mut out = String::with_capacity(1 << 16);
        xml::write_into(&mut out, frame.root(), AttributeOrder::Sorted, Indent::Flat, &|el| empty(el), &mut replace);
        if let Some(failure) = failure {
            return Err(failure);
        }
        if let Some(mut src) = source {
            io::copy(&mut src, &mut io::sink())?;
            if Some(src.get_ref().fingerprint()) != self.read_from {
                return Err(WriteError::Changed);
            }
        }
        sink.write_all(out.as_bytes())?;
        self.read_from = Some((written.len, written.hasher.digest128()));
        Ok(())
    }
}

/// Moves what was written so far into `sink` once it is large (at most ~1 MiB is ever held).
fn drain(out: &mut String, sink: &mut dyn Write, failure: &mut Option<WriteError>) {
    if out.len() >= 1 << 20 && failure.is_none() {
        if let Err(e) = sink.write_all(out.as_bytes()) {
            *failure = Some(e.into());
        }
        out.clear();
    }
}

/// The entry at `span`, read from `src` (at `pos`, which only moves forward) into `buf`.
fn read_span(src: &mut impl Read, pos: &mut u64, span: Span, buf: &mut Vec<u8>) -> Result<(), WriteError> {
    let gap = span.start.checked_sub(*pos).ok_or(WriteError::Changed)?;
    if io::copy(&mut src.take(gap), &mut io::sink())? != gap {
        return Err(WriteError::Changed);
    }
    buf.resize(usize::try_from(span.len).map_err(|_| WriteError::Changed)?, 0);
    src.read_exact(buf)
        .map_err(|e| if e.kind() == io::ErrorKind::UnexpectedEof { WriteError::Changed } else { e.into() })?;
    *pos = span.start + span.len;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::EntryLoc;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// Catalogs with what a frame must keep right: nested sets (entries before and after them), a second
    /// `entries`, unknown elements and text among entries, a default namespace, SIZE fields of every shape.
    const ODD: [&str; 3] = [
        r#"<Catalog xmlns="http://nrg.wustl.edu/catalog" xmlns:x="urn:x" ID="c" x:extra="1">
            <entries><entry URI="a" x:flag="y"><x:note>keep</x:note></entry>
            <x:among>t</x:among>
            <entry URI="b"><metaFields><metaField name="SIZE">7</metaField></metaFields></entry>
            text between<entry URI="c"/></entries>
            <sets><entrySet ID="s"><entries><entry URI="sub/b"/></entries></entrySet></sets>
            <entries><entry URI="not-an-entry"/></entries>
            <x:unknown>text</x:unknown></Catalog>"#,
        r#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:sets><cat:entrySet>
            <cat:sets><cat:entrySet><cat:entries><cat:entry URI="deep"/></cat:entries></cat:entrySet></cat:sets>
            <cat:entries><cat:entry URI="mid"/></cat:entries></cat:entrySet></cat:sets>
            <cat:entries>
              <cat:entry URI="s1"><cat:metaFields><cat:metaField name="SIZE"> 12 </cat:metaField></cat:metaFields></cat:entry>
              <cat:entry URI="s2"><cat:metaFields><cat:metaField name="other">1</cat:metaField><cat:metaField name="SIZE">1&#50;<b/> <c>9</c>3</cat:metaField><cat:metaField name="SIZE">99</cat:metaField></cat:metaFields></cat:entry>
              <cat:entry URI="s3"><cat:metaFields/><cat:metaFields><cat:metaField name="SIZE">5</cat:metaField></cat:metaFields></cat:entry>
              <cat:entry URI="s4"><cat:metaFields><cat:metaField name="SIZE"/></cat:metaFields></cat:entry>
            </cat:entries></cat:Catalog>"#,
        r#"<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="4"><cat:entries/></cat:DCMCatalog>"#,
    ];

    fn documents() -> Vec<Vec<u8>> {
        let mut docs = vec![fixture("scan_4_catalog.xml"), fixture("DEBUG_OUTPUT_catalog.xml")];
        docs.extend(ODD.iter().map(|d| d.as_bytes().to_vec()));
        // As the writer writes them: every entry copied as it is where nothing edits it.
        docs.extend(ODD.iter().map(|d| Catalog::parse(d.as_bytes()).unwrap().to_xml().into_bytes()));
        docs
    }

    /// The tree's entries in document order (the order `StreamedCatalog` numbers them in).
    fn tree_entries(cat: &Catalog, bytes: &[u8]) -> Vec<EntryLoc> {
        let mut locs = cat.entry_locs();
        let text = std::str::from_utf8(bytes).unwrap();
        let uri_at = |l: &EntryLoc| {
            let uri = cat.entry(l).uri().unwrap_or("");
            text.find(&format!("URI=\"{uri}\"")).unwrap()
        };
        locs.sort_by_key(uri_at);
        locs
    }

    fn size_of(e: &Element, cat: &str) -> Option<String> {
        let fields = e.elements().find(|c| crate::model::catalog::is(c, cat, "metaFields"))?;
        fields
            .elements()
            .find(|m| crate::model::catalog::is(m, cat, "metaField") && m.attr("name") == Some("SIZE"))
            .map(|m| m.text())
    }

    #[test]
    fn every_entry_is_seen_as_the_tree_has_it() {
        for bytes in documents() {
            let tree = Catalog::parse(&bytes).unwrap();
            let mut heads = Vec::new();
            let streamed = StreamedCatalog::read(&bytes[..], &mut |h| {
                heads.push((h.attrs[..h.n_attrs].to_vec(), h.size_field().map(str::to_string), h.is_dicom()))
            })
            .unwrap();
            let locs = tree_entries(&tree, &bytes);
            assert_eq!(streamed.len(), locs.len());
            for (loc, (attrs, size, dicom)) in locs.iter().zip(heads) {
                let e = tree.entry(loc);
                assert_eq!(&attrs, &e.element().attrs);
                assert_eq!(size, size_of(e.element(), tree.cat()), "{:?}", e.uri());
                assert_eq!(dicom, e.is_dicom());
            }
            assert_eq!(streamed.frame().meta_field("AUDIT"), tree.meta_field("AUDIT"));
            assert_eq!(streamed.frame().kind(), tree.kind());
        }
    }

    #[test]
    fn an_entrys_tags_are_read_as_the_tree_reads_them() {
        let doc = br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:entries>
<cat:entry URI="a.dcm"><cat:metaFields><cat:metaField name="SIZE">3</cat:metaField></cat:metaFields><cat:tags><cat:tag> t1 </cat:tag><cat:tag>t2</cat:tag></cat:tags></cat:entry>
<cat:entry URI="b.dcm"/>
<cat:entry URI="c.dcm"><cat:tags><cat:tag>only</cat:tag></cat:tags></cat:entry>
</cat:entries></cat:Catalog>"#;
        let mut streamed = Vec::new();
        StreamedCatalog::read(&doc[..], &mut |h| streamed.push(h.tags().map(str::to_string).collect::<Vec<_>>()))
            .unwrap();
        let tree = Catalog::parse(doc).unwrap();
        let from_tree: Vec<Vec<String>> = tree.entry_locs().iter().map(|l| tree.entry(l).tags()).collect();
        assert_eq!(streamed, [vec!["t1", "t2"], vec![], vec!["only"]]);
        assert_eq!(streamed, from_tree);
    }

    #[test]
    fn the_size_field_is_read_as_set_meta_field_compares_it() {
        let bytes = ODD[1].as_bytes();
        let mut sizes = Vec::new();
        StreamedCatalog::read(bytes, &mut |h| sizes.push(h.size_field().map(str::to_string))).unwrap();
        let sizes: Vec<Option<&str>> = sizes.iter().map(Option::as_deref).collect();
        assert_eq!(sizes, [None, None, Some(" 12 "), Some("123"), None, Some("")]);
    }

    /// Writes `bytes` through both models with the same edits; they must agree byte for byte.
    fn both_ways(bytes: &[u8], edits: bool) -> (String, String) {
        let mut tree = Catalog::parse(bytes).unwrap();
        let locs = tree_entries(&tree, bytes);
        let gone = |i: u32| edits && i % 3 == 1;
        let edit = |i: u32, e: &mut EntryMut| {
            if edits && i.is_multiple_of(5) {
                e.set_attr("digest", "0123");
                e.set_meta_field("SIZE", &i.to_string());
            }
        };
        let new = |i: usize, c: &Catalog| c.new_entry(&format!("new/{i}.dcm"));
        let added = if edits { 2 } else { 0 };
        // The tree.
        for (i, loc) in locs.iter().enumerate() {
            let cat = tree.cat().to_string();
            let mut el = tree.entry(loc).element().clone();
            edit(i as u32, &mut EntryMut::new(&mut el, &cat));
            *tree.entry_mut(loc).element_mut() = el;
        }
        let removed: Vec<EntryLoc> =
            locs.iter().enumerate().filter(|(i, _)| gone(*i as u32)).map(|(_, l)| l.clone()).collect();
        tree.remove_entries(&removed);
        for i in 0..added {
            let e = new(i, &tree);
            tree.push_entry(e);
        }
        if edits {
            tree.set_meta_field("PROJECT", "P");
        }
        // The stream.
        let mut streamed = StreamedCatalog::read(bytes, &mut |_| {}).unwrap();
        if edits {
            streamed.frame_mut().set_meta_field("PROJECT", "P");
        }
        let mut out = Vec::new();
        let mut edit = edit;
        let mut new = new;
        let fate = |i: u32| match (gone(i), edits && i.is_multiple_of(5)) {
            (true, _) => Fate::Removed,
            (false, true) => Fate::Edited,
            (false, false) => Fate::Kept,
        };
        streamed.write(Some(&mut &bytes[..]), &fate, &mut edit, added, &mut new, &mut out).unwrap();
        (tree.to_xml(), String::from_utf8(out).unwrap())
    }

    #[test]
    fn written_byte_for_byte_as_the_tree_writes_it() {
        for bytes in documents() {
            for edits in [false, true] {
                let (tree, streamed) = both_ways(&bytes, edits);
                assert_eq!(streamed, tree, "edits: {edits}");
            }
        }
    }

    /// The entries of a catalog XNAT wrote, and of one this writer wrote, are already as the writer writes
    /// them: a write copies them as they are.
    #[test]
    fn entries_xnat_wrote_are_copied_as_they_are() {
        let xnat = fixture("scan_4_catalog.xml");
        let ours = Catalog::parse(&fixture("DEBUG_OUTPUT_catalog.xml")).unwrap().to_xml().into_bytes();
        for bytes in [xnat, ours] {
            let streamed = StreamedCatalog::read(&bytes[..], &mut |_| {}).unwrap();
            assert!(streamed.len() > 100);
            for span in &streamed.spans {
                let raw = std::str::from_utf8(&bytes[span.start as usize..][..span.len as usize]).unwrap();
                assert!(xml::written_as_is(raw, AttributeOrder::Sorted, (2, true), Indent::Flat), "{raw}");
            }
        }
    }

    #[test]
    fn entries_removed_to_the_last_leave_no_empty_wrapper() {
        let bytes = br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:entries><cat:entry URI="a"/></cat:entries></cat:Catalog>"#;
        let mut streamed = StreamedCatalog::read(&bytes[..], &mut |_| {}).unwrap();
        let mut out = Vec::new();
        streamed
            .write(Some(&mut &bytes[..]), &|_| Fate::Removed, &mut |_, _| {}, 0, &mut |_, c| c.new_entry("x"), &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cat:Catalog xmlns:cat=\"http://nrg.wustl.edu/catalog\"/>"
        );
    }

    #[test]
    fn a_new_catalog_is_written_as_the_tree_writes_it() {
        let mut tree = Catalog::new(CatalogKind::Plain, "R");
        tree.push_entry(tree.new_entry("a"));
        let mut streamed = StreamedCatalog::new(CatalogKind::Plain, "R");
        let mut out = Vec::new();
        streamed.write(None, &|_| Fate::Kept, &mut |_, _| {}, 1, &mut |_, c| c.new_entry("a"), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), tree.to_xml());
    }

    #[test]
    fn a_file_changed_between_read_and_write_is_not_written_over() {
        let bytes = fixture("scan_4_catalog.xml");
        let mut streamed = StreamedCatalog::read(&bytes[..], &mut |_| {}).unwrap();
        let mut changed = bytes.clone();
        let at = changed.len() - 200;
        changed[at] = if changed[at] == b'1' { b'2' } else { b'1' };
        let shorter = &bytes[..bytes.len() - 10];
        for other in [&changed[..], shorter, &bytes[100..]] {
            let r = streamed.write(
                Some(&mut &other[..]),
                &|_| Fate::Kept,
                &mut |_, _| {},
                0,
                &mut |_, c| c.new_entry("x"),
                &mut Vec::new(),
            );
            assert!(matches!(r, Err(WriteError::Changed)), "{r:?}");
        }
        assert!(
            streamed
                .write(None, &|_| Fate::Kept, &mut |_, _| {}, 0, &mut |_, c| c.new_entry("x"), &mut Vec::new())
                .is_err()
        );
    }

    /// A byte-order mark, CRLF line ends, a DOCTYPE, comments and CDATA: read (or refused) as the tree reader
    /// reads them, and written back the same.
    #[test]
    fn what_parse_accepts_read_accepts_and_writes_the_same() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<!DOCTYPE x>\r\n<!-- c -->\r\n<cat:Catalog xmlns:cat=\"http://nrg.wustl.edu/catalog\" ID=\"R\">\r\n<cat:entries>\r\n\t<cat:entry URI=\"a&amp;b\" ID=\"x\"><cat:metaFields><cat:metaField name=\"SIZE\"><![CDATA[12]]></cat:metaField></cat:metaFields></cat:entry>\r\n</cat:entries>\r\n</cat:Catalog>\r\n<!-- after -->\r\n";
        for doc in [body.as_bytes().to_vec(), [&b"\xEF\xBB\xBF"[..], body.as_bytes()].concat()] {
            let tree = Catalog::parse(&doc);
            let mut sizes = Vec::new();
            let streamed = StreamedCatalog::read(&doc[..], &mut |h| sizes.push(h.size_field().map(str::to_string)));
            assert_eq!(tree.is_ok(), streamed.is_ok(), "{:?} / {:?}", tree.as_ref().err(), streamed.as_ref().err());
            if let (Ok(tree), Ok(mut streamed)) = (tree, streamed) {
                assert_eq!(sizes, [Some("12".to_string())]);
                let mut out = Vec::new();
                streamed
                    .write(
                        Some(&mut &doc[..]),
                        &|_| Fate::Kept,
                        &mut |_, _| {},
                        0,
                        &mut |_, c| c.new_entry("x"),
                        &mut out,
                    )
                    .unwrap_or_else(|e| panic!("{e}; byte-order mark: {}", doc[0] == 0xEF));
                assert_eq!(String::from_utf8(out).unwrap(), tree.to_xml());
            }
        }
    }

    #[test]
    fn what_parse_refuses_read_refuses() {
        let scan = fixture("scan_4_catalog.xml");
        for bad in [
            &b""[..],
            b"<cat:Catalog xmlns:cat=\"urn:other\"/>",
            &scan[..scan.len() / 2],
            b"<a>\xff</a>",
            b"<a/><!-- \xff -->",
        ] {
            assert!(
                StreamedCatalog::read(bad, &mut |_| {}).is_err(),
                "{:?}",
                String::from_utf8_lossy(&bad[..bad.len().min(40)])
            );
        }
    }
}
