//! A small, lossless XML element tree: what catalogs and session documents are read into and written from.
//!
//! It keeps every element, attribute (namespace declarations included) and non-blank text in document
//! order. Comments, processing instructions and the XML declaration are not kept: XNAT writes none into
//! catalogs or documents. Writing follows XNAT's writer (`catalog-refresh.md` §4.4): a UTF-8 declaration,
//! every child element on its own line, tab indentation, empty elements self-closed, no trailing newline.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use std::io::BufRead;
use std::str::Utf8Error;

/// An XML element: its qualified name as written (`cat:entry`), its attributes in order, its children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    /// Character data that is not only whitespace, entities resolved.
    Text(String),
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct XmlError(pub String);

/// How attributes are ordered when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeOrder {
    /// As read (session documents).
    Kept,
    /// XNAT's catalog writer: sorted by name, `xsi:type` last.
    Sorted,
}

/// How the root's children are indented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indent {
    /// XNAT's refresh writer: root children at column 0, one tab per level below.
    Flat,
    /// XNAT's pretty writer: root children one tab in.
    Pretty,
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element { name: name.into(), ..Default::default() }
    }

    /// An element with these attributes, in this order, and these child elements (documents and catalogs
    /// being written).
    pub fn with(name: &str, attrs: &[(&str, &str)], children: Vec<Element>) -> Element {
        Element {
            name: name.into(),
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            children: children.into_iter().map(Node::Element).collect(),
        }
    }

    /// An element holding only `value` as text (nothing when it is empty).
    pub fn with_text(name: &str, value: &str) -> Element {
        let children = if value.is_empty() { Vec::new() } else { vec![Node::Text(value.into())] };
        Element { name: name.into(), attrs: Vec::new(), children }
    }

    /// The part of the name after the prefix.
    pub fn local_name(&self) -> &str {
        local(&self.name)
    }

    /// The prefix of the name, `""` when there is none.
    pub fn prefix(&self) -> &str {
        self.name.split_once(':').map_or("", |(p, _)| p)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, keeping its place when it exists. Returns true when the value changed.
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) -> bool {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) if *v == value => false,
            Some((_, v)) => {
                *v = value;
                true
            }
            None => {
                self.attrs.push((name.to_string(), value));
                true
            }
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(i).1)
    }

    /// The concatenated text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The same element with attributes sorted at every level: two documents with equal canonical
    /// forms carry the same information (attribute order has no meaning in XML).
    pub fn canonical(&self) -> Element {
        let mut attrs = self.attrs.clone();
        attrs.sort();
        let children = self
            .children
            .iter()
            .map(|n| match n {
                Node::Element(e) => Node::Element(e.canonical()),
                Node::Text(t) => Node::Text(t.clone()),
            })
            .collect();
        Element { name: self.name.clone(), attrs, children }
    }

    /// The namespace URI bound to `prefix` by a declaration on this element (`""` = default namespace).
    pub fn declared_namespace(&self, prefix: &str) -> Option<&str> {
        let key = if prefix.is_empty() { "xmlns".to_string() } else { format!("xmlns:{prefix}") };
        self.attr(&key)
    }

    /// The prefix this element declares for `uri`, if any (`Some("")` for a default namespace).
    pub fn prefix_for(&self, uri: &str) -> Option<&str> {
        self.attrs.iter().find_map(|(k, v)| {
            if v != uri {
                return None;
            }
            if k == "xmlns" { Some("") } else { k.strip_prefix("xmlns:") }
        })
    }
}

/// The part of a qualified name after its prefix.
pub fn local(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, l)| l)
}

/// The deepest element nesting a document may have. XNAT's catalogs and session documents nest about ten
/// levels; a limit keeps every recursive walk of the tree (and dropping it) far from the stack's end.
pub const MAX_DEPTH: usize = 256;

/// The longest attribute value or text node, in bytes. XNAT writes paths, UIDs, digests and short notes.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// Reads a whole document into its root element. A document nested deeper than [`MAX_DEPTH`] or with a
/// value longer than [`MAX_VALUE_BYTES`] is refused as malformed; DOCTYPE declarations are ignored and
/// entities other than XML's five predefined ones and character references are errors (nothing expands).
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    parse_pruned(bytes, &|_, _| true)
}

/// [`parse`], keeping only the elements `keep(depth, local name)` accepts (the root, at depth 0, always;
/// an element not kept is dropped with everything inside it). The whole document is still read and checked
/// as [`parse`] checks it — a document one refuses, the other refuses too — but what is dropped is never
/// built. For reading a few fields of a large document; what it returns must not be written back.
pub fn parse_pruned(bytes: &[u8], keep: &dyn Fn(usize, &str) -> bool) -> Result<Element, XmlError> {
    struct ByDepth<'k>(&'k dyn Fn(usize, &str) -> bool);
    impl Prune for ByDepth<'_> {
        fn keep(&mut self, open: &[Element], name: &str) -> bool {
            (self.0)(open.len(), local(name))
        }
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| XmlError(format!("not UTF-8 text ({e}); XNAT catalogs and documents are UTF-8")))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    build(&mut reader, &mut ByDepth(keep))
}

/// A document read from a stream, piece by piece (it is never whole in memory): [`parse`]'s checks and
/// result, with `prune` deciding which elements are built and seeing the ones that are not.
pub fn parse_stream<P: Prune + ?Sized>(source: impl BufRead, prune: &mut P) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(source);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    build(&mut Streamed { reader, buf: Vec::with_capacity(4096) }, prune)
}

/// What a reader builds, and what it shows of the elements it does not build. Positions are byte offsets
/// in the document; `level` 0 is the element not built, 1 its children, and so on.
pub trait Prune {
    /// Whether to build `name` (as written), a child of the last of `open` (the open elements, root first).
    fn keep(&mut self, open: &[Element], name: &str) -> bool;
    /// An element not built begins at byte `at`; `parent` is the element it is a child of.
    fn begin(&mut self, _parent: &mut Element, _at: u64) {}
    /// A start tag inside it, then each of its attributes (value unescaped).
    fn start(&mut self, _level: usize, _name: &str) {}
    fn attr(&mut self, _level: usize, _key: &str, _value: &str) {}
    /// Text directly inside the element at `level` (a part of one text node, entities resolved).
    fn text(&mut self, _level: usize, _text: &str) {}
    fn end(&mut self, _level: usize) {}
    /// The element not built has ended, at byte `end` (just after it).
    fn finish(&mut self, _end: u64) {}
}

/// Where [`build`] reads its events from: a document in memory or a stream.
trait Events {
    /// The next event, and the byte position just after it.
    fn next(&mut self) -> (quick_xml::Result<Event<'_>>, u64);
    fn position(&self) -> u64;
}

impl Events for Reader<&[u8]> {
    fn next(&mut self) -> (quick_xml::Result<Event<'_>>, u64) {
        let event = self.read_event();
        (event, self.buffer_position())
    }
    fn position(&self) -> u64 {
        self.buffer_position()
    }
}

struct Streamed<R> {
    reader: Reader<R>,
    buf: Vec<u8>,
}

impl<R: BufRead> Events for Streamed<R> {
    fn next(&mut self) -> (quick_xml::Result<Event<'_>>, u64) {
        self.buf.clear();
        let event = self.reader.read_event_into(&mut self.buf);
        (event, self.reader.buffer_position())
    }
    fn position(&self) -> u64 {
        self.reader.buffer_position()
    }
}

/// Generic rather than on trait objects: each event costs the reader a handful of calls into `events` and
/// `prune`, and a catalog has millions of events; made for the types used, those calls are inlined.
fn build<E: Events + ?Sized, P: Prune + ?Sized>(events: &mut E, prune: &mut P) -> Result<Element, XmlError> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    // How deep inside an element that is not kept the reader is (0: not inside one), and the length of the
    // text read there since the last tag (one text node, as `push_text` counts it).
    let mut dropped = 0usize;
    let mut run = 0usize;
    let err = |at: u64, e: &dyn std::fmt::Display| XmlError(format!("malformed XML at byte {at}: {e}"));
    loop {
        let before = events.position();
        let (event, at) = events.next();
        let event = event.map_err(|e| err(at, &e))?;
        if matches!(event, Event::Start(_) | Event::Empty(_) | Event::End(_)) {
            run = 0;
        }
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                // Checked whether kept or not: the same names, attributes and characters are refused.
                if root.is_some() && stack.is_empty() {
                    return Err(err(at, &"content after the root element"));
                }
                let empty = matches!(event, Event::Empty(_));
                let depth = stack.len() + dropped;
                if !empty && depth >= MAX_DEPTH {
                    return Err(err(at, &format!("elements nested deeper than {MAX_DEPTH} levels")));
                }
                let tag = plain_tag(start);
                let name = tag_name(start, tag).map_err(|e| err(at, &e))?;
                if dropped == 0 && !stack.is_empty() && !prune.keep(&stack, name) {
                    prune.begin(stack.last_mut().expect("inside the root"), before);
                } else if dropped == 0 {
                    let el = open(start, tag, at)?;
                    stack.push(el);
                    if empty {
                        close(&mut stack, &mut root);
                    }
                    continue;
                }
                // An element that is not built is checked and shown to `prune`.
                let level = dropped;
                prune.start(level, name);
                checked_start(start, tag, at, |k, v| prune.attr(level, k, v))?;
                if empty {
                    prune.end(level);
                    if level == 0 {
                        prune.finish(at);
                    }
                } else {
                    dropped += 1;
                }
            }
            Event::End(_) if dropped > 0 => {
                dropped -= 1;
                prune.end(dropped);
                if dropped == 0 {
                    prune.finish(at);
                }
            }
            Event::End(_) => close(&mut stack, &mut root),
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| err(at, &e))?;
                text_at(&mut stack, (dropped, &mut run), &s, at, prune)?;
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| err(at, &e))?;
                text_at(&mut stack, (dropped, &mut run), &s, at, prune)?;
            }
            Event::GeneralRef(r) => {
                let s = reference(&r).map_err(|e| err(at, &e))?;
                text_at(&mut stack, (dropped, &mut run), &s, at, prune)?;
            }
            Event::Eof => break,
            // Not kept, but never anything but UTF-8 (a document in memory was checked whole).
            Event::Comment(b) | Event::DocType(b) => {
                std::str::from_utf8(&b).map_err(|e| err(at, &e))?;
            }
            Event::PI(b) => {
                std::str::from_utf8(&b).map_err(|e| err(at, &e))?;
            }
            Event::Decl(d) => {
                std::str::from_utf8(&d).map_err(|e| err(at, &e))?;
            }
        }
    }
    if !stack.is_empty() {
        return Err(XmlError(format!("truncated document: <{}> is never closed", stack[0].name)));
    }
    root.ok_or_else(|| XmlError("empty document: no root element".into()))
}

/// The root element's start tag alone (no children), from the first bytes of a document; `None` when they do
/// not hold the whole start tag or it is malformed (then read the document whole). For finding one document
/// among thousands by an attribute of its root; nothing it returns may be written back.
pub fn root_start(head: &[u8]) -> Option<Element> {
    // The head may end inside a character: read up to the last whole one.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            Event::Start(ref start) | Event::Empty(ref start) => {
                return open(start, plain_tag(start), reader.buffer_position()).ok();
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            _ => return None,
        }
    }
}

/// Text read `dropped` levels inside an element that is not kept is checked, shown to `prune` and forgotten
/// (`run`: the length of its text node so far); other text is added to the open element.
fn text_at<P: Prune + ?Sized>(
    stack: &mut [Element],
    (dropped, run): (usize, &mut usize),
    s: &str,
    at: u64,
    prune: &mut P,
) -> Result<(), XmlError> {
    if dropped == 0 {
        return push_text(stack, s, at);
    }
    *run += s.len();
    check_text(s, *run, at)?;
    prune.text(dropped - 1, s);
    Ok(())
}

/// Text of characters XML 1.0 allows, in a text node of `node_len` bytes with it, at most [`MAX_VALUE_BYTES`].
fn check_text(s: &str, node_len: usize, at: u64) -> Result<(), XmlError> {
    if let Some(c) = disallowed(s) {
        return Err(XmlError(format!(
            "malformed XML at byte {at}: U+{:04X} is a character XML 1.0 does not allow",
            c as u32
        )));
    }
    if node_len > MAX_VALUE_BYTES {
        return Err(XmlError(format!(
            "malformed XML at byte {at}: a text node longer than {} MiB",
            MAX_VALUE_BYTES >> 20
        )));
    }
    Ok(())
}

/// The text of a character reference (`&#233;`) or one of XML's five predefined entities (`&amp;`); any
/// other entity is an error (documents may not define their own).
fn reference(r: &quick_xml::events::BytesRef) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    resolve_predefined_entity(&name).map(str::to_string).ok_or_else(|| format!("unknown entity &{name};"))
}

fn open(start: &quick_xml::events::BytesStart, tag: Option<&str>, at: u64) -> Result<Element, XmlError> {
    let mut attrs = Vec::new();
    let name = checked_start(start, tag, at, |k, v| attrs.push((k.to_string(), v.to_string())))?;
    Ok(Element { name: name.to_string(), attrs, children: Vec::new() })
}

/// A start tag as text, when it is text of characters XML allows (nearly every tag of a catalog, checked in
/// one pass): its name, attribute names and reference-free values (`&…;`-free) are then pieces of it, neither
/// decoded nor checked again.
fn plain_tag<'s>(start: &'s quick_xml::events::BytesStart) -> Option<&'s str> {
    let tag: &'s [u8] = start;
    std::str::from_utf8(tag).ok().filter(|t| disallowed(t).is_none())
}

/// A start tag's element name: a piece of `text` ([`plain_tag`] of it) when there is one, else checked UTF-8.
fn tag_name<'s>(start: &'s quick_xml::events::BytesStart, text: Option<&'s str>) -> Result<&'s str, Utf8Error> {
    let name = start.name().into_inner();
    match text.and_then(|t| within(t, name)) {
        Some(name) => Ok(name),
        None => std::str::from_utf8(name),
    }
}

/// Checks a start tag (`text`: [`plain_tag`] of it) — an element name, attribute names XML allows (never one
/// twice), values within [`MAX_VALUE_BYTES`] and of characters XML 1.0 allows — and hands each attribute
/// (value unescaped) to `each`; returns the element's name.
fn checked_start<'s>(
    start: &'s quick_xml::events::BytesStart,
    text: Option<&'s str>,
    at: u64,
    mut each: impl FnMut(&str, &str),
) -> Result<&'s str, XmlError> {
    let err = |e: &dyn std::fmt::Display| XmlError(format!("malformed XML at byte {at}: {e}"));
    let piece = |part: &[u8]| text.and_then(|t| within(t, part));
    let name = tag_name(start, text).map_err(|e| err(&e))?;
    if !is_name(name) {
        return Err(err(&format!("{name:?} is not an element name")));
    }
    // The tag's text begins with its name.
    if let Some(text) = text
        && let Some((found, n)) = simple_attributes(text, name.len())
    {
        for (key, value) in &found[..n] {
            each(key, value);
        }
        return Ok(name);
    }
    // quick-xml refuses an attribute given twice (its checks are on by default).
    for attr in start.attributes() {
        let attr = attr.map_err(|e| err(&e))?;
        let key = match piece(attr.key.as_ref()) {
            Some(key) => key,
            None => std::str::from_utf8(attr.key.as_ref()).map_err(|e| err(&e))?,
        };
        if !is_name(key) {
            return Err(err(&format!("{key:?} is not an attribute name")));
        }
        if attr.value.len() > MAX_VALUE_BYTES {
            return Err(err(&format!("attribute {key} is longer than {} MiB", MAX_VALUE_BYTES >> 20)));
        }
        if let Some(value) = piece(&attr.value)
            && !value.contains('&')
        {
            each(key, value);
            continue;
        }
        let value = attr.unescape_value().map_err(|e| err(&e))?;
        if let Some(c) = disallowed(&value) {
            return Err(err(&format!("attribute {key} holds U+{:04X}, a character XML 1.0 does not allow", c as u32)));
        }
        each(key, &value);
    }
    Ok(name)
}

/// The most attributes [`simple_attributes`] takes apart; a tag with more is left to quick-xml.
const SIMPLE_AT_MOST: usize = 32;

/// The attributes of a start tag (`text`: [`plain_tag`] of it; they begin at byte `from`, after its name)
/// when every one has the shape writers give it — white space, a name [`is_name`] allows, `=`, a value in
/// quotes without a reference (`&`) and within [`MAX_VALUE_BYTES`] — and none is given twice; `None` for any
/// other tag, which quick-xml's attribute reader then reads (and refuses when it is malformed).
///
/// What it gives for a tag is what quick-xml's reader gives (`simple_attributes_are_quick_xml_s` compares
/// them on generated tags). It exists for speed alone: quick-xml's reader steps through a tag a byte at a
/// time, which inside the component was 40 % of the time a catalog took to read (7 of 18 ms for 10,000
/// entries); here `memchr` finds each `=` and closing quote.
fn simple_attributes(text: &str, from: usize) -> Option<([(&str, &str); SIMPLE_AT_MOST], usize)> {
    let bytes = text.as_bytes();
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut found = [("", ""); SIMPLE_AT_MOST];
    let mut n = 0;
    let mut at = from;
    loop {
        let spaces = bytes.get(at..)?.iter().take_while(|b| space(b)).count();
        if at + spaces == bytes.len() {
            return Some((found, n));
        }
        // `a="1"b="2"`, or anything but white space after a name.
        if spaces == 0 || n == SIMPLE_AT_MOST {
            return None;
        }
        at += spaces;
        let eq = at + memchr::memchr(b'=', &bytes[at..])?;
        let quote = *bytes.get(eq + 1).filter(|q| matches!(q, b'"' | b'\''))?;
        let close = eq + 2 + memchr::memchr(quote, &bytes[eq + 2..])?;
        let (key, value) = (&text[at..eq], &text[eq + 2..close]);
        if !is_name(key)
            || value.len() > MAX_VALUE_BYTES
            || memchr::memchr(b'&', value.as_bytes()).is_some()
            || found[..n].iter().any(|(k, _)| *k == key)
        {
            return None;
        }
        found[n] = (key, value);
        n += 1;
        at = close + 1;
    }
}

/// `part` as the piece of `text` it lies in, when it is one (a slice of the same bytes).
#[inline]
fn within<'t>(text: &'t str, part: &[u8]) -> Option<&'t str> {
    let offset = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let piece = text.get(offset..offset.checked_add(part.len())?)?;
    (piece.as_ptr() == part.as_ptr()).then_some(piece)
}

fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) {
    if let Some(mut done) = stack.pop() {
        // Whitespace between child elements is layout, not content.
        if done.children.iter().any(|n| matches!(n, Node::Element(_))) {
            done.children.retain(|n| !matches!(n, Node::Text(t) if t.trim().is_empty()));
        }
        match stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(done)),
            None => *root = Some(done),
        }
    }
}

/// Whether `name` can be written back as an element or attribute name: not empty, none of the characters
/// that end or quote a name, no white space or control characters (a looser check than XML's `Name`).
fn is_name(name: &str) -> bool {
    // Names are almost always ASCII and nothing else is looked at then: one pass over the bytes.
    let plain = |b: u8| {
        (b.wrapping_sub(0x21) < 0x5e)
            & (b != b'"')
            & (b != b'\'')
            & (b != b'<')
            & (b != b'>')
            & (b != b'=')
            & (b != b'&')
            & (b != b'/')
    };
    if every_byte(name.as_bytes(), plain) {
        return !name.is_empty();
    }
    let bad = |c: char| matches!(c, '"' | '\'' | '<' | '>' | '=' | '&' | '/') || c.is_whitespace() || c.is_control();
    !name.chars().any(bad)
}

/// Whether every byte of `bytes` is printable ASCII, a tab, a line feed or a carriage return.
fn is_plain(bytes: &[u8]) -> bool {
    // Bitwise, not short-circuiting: branch-free, so that it runs 16 bytes a step.
    every_byte(bytes, |b| (b.wrapping_sub(0x20) < 0x5f) | (b == b'\t') | (b == b'\n') | (b == b'\r'))
}

/// Whether `test` holds for every byte: block by block, without an early exit inside a block, a loop the
/// compiler makes vector instructions of (these scans run over every tag and value read or written).
#[inline(always)]
fn every_byte(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    let mut blocks = bytes.chunks_exact(32);
    blocks.all(|block| block.iter().fold(true, |ok, &b| ok & test(b))) && blocks.remainder().iter().all(|&b| test(b))
}

/// The first character of `s` that XML 1.0 does not allow ([`allowed`]), if any.
fn disallowed(s: &str) -> Option<char> {
    // Printable ASCII and tab, line feed, carriage return are allowed: most values are nothing else.
    if is_plain(s.as_bytes()) {
        return None;
    }
    s.chars().find(|c| !allowed(*c))
}

/// Characters XML 1.0 allows in a document (`Char`): a value holding another is refused when read, since
/// the writer could not write it back (XNAT's writer drops them).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

fn push_text(stack: &mut [Element], s: &str, at: u64) -> Result<(), XmlError> {
    // Outside the root only whitespace may stand (checked below), whatever its length.
    let node_len = stack.last().map_or(0, |el| match el.children.last() {
        Some(Node::Text(prev)) => prev.len() + s.len(),
        _ => s.len(),
    });
    check_text(s, node_len, at)?;
    match stack.last_mut() {
        Some(el) => {
            if let Some(Node::Text(prev)) = el.children.last_mut() {
                prev.push_str(s);
            } else {
                el.children.push(Node::Text(s.to_string()));
            }
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(XmlError(format!("malformed XML at byte {at}: text outside the root element"))),
    }
}

/// Writes a document: the XML declaration, then the root element.
pub fn write(root: &Element, order: AttributeOrder, indent: Indent) -> String {
    write_without(root, order, indent, &|_| false)
}

/// [`write`], leaving out every element below the root that `skip` names (with what it holds), as if it were
/// not there: an element whose children are all left out is written empty.
pub fn write_without(root: &Element, order: AttributeOrder, indent: Indent, skip: &dyn Fn(&Element) -> bool) -> String {
    let mut out = String::with_capacity(4096);
    write_into(&mut out, root, order, indent, skip, &mut |_, _, _, _| false);
    out
}

/// [`write_without`] into `out`, where `replace(out, element, depth, own_line)` may write an element below
/// the root itself instead (it returns true when it did; [`write_element`] writes one in the same style).
/// `replace` may also drain `out` into a file, so that a large document is never whole in memory.
pub fn write_into(
    out: &mut String,
    root: &Element,
    order: AttributeOrder,
    indent: Indent,
    skip: &dyn Fn(&Element) -> bool,
    replace: &mut dyn FnMut(&mut String, &Element, usize, bool) -> bool,
) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let mut style = Style { order, indent, skip, replace };
    write_element_at(out, root, 0, &mut style, true);
}

/// One element at `depth` below the root (on a line of its own when `own_line`), as [`write_into`] writes
/// it there with the same `order`, `indent` and `skip`.
pub fn write_element(
    out: &mut String,
    el: &Element,
    (depth, own_line): (usize, bool),
    order: AttributeOrder,
    indent: Indent,
    skip: &dyn Fn(&Element) -> bool,
) {
    let mut style = Style { order, indent, skip, replace: &mut |_, _, _, _| false };
    write_element_at(out, el, depth, &mut style, own_line);
}

/// How [`write_into`] writes.
struct Style<'s> {
    order: AttributeOrder,
    indent: Indent,
    skip: &'s dyn Fn(&Element) -> bool,
    replace: &'s mut dyn FnMut(&mut String, &Element, usize, bool) -> bool,
}

/// How many tabs a line at `depth` starts with.
fn tabs_at(depth: usize, indent: Indent) -> usize {
    match indent {
        Indent::Flat => depth.saturating_sub(1),
        Indent::Pretty => depth,
    }
}

/// Whether `raw`, an element as a file holds it, is byte for byte what the writer writes for the element it
/// reads as, at `(depth, own_line)` with `indent`: each attribute after one space, its value in double quotes
/// holding nothing the writer escapes, the attributes in `order`; inside, nothing (`/>`), or text the writer
/// leaves as it is, or child elements of the same kind, each on the line the writer gives it. Such an element
/// can be copied as it is ([`write_verbatim`]) instead of being read and written again. (Only what the writer
/// would keep: a child with neither attributes nor content, which may be an empty container the writer
/// leaves out, is not taken as it is.)
pub fn written_as_is(raw: &str, order: AttributeOrder, (depth, own_line): (usize, bool), indent: Indent) -> bool {
    let mut at = AsIs { s: raw.as_bytes(), i: 0, order, indent };
    at.element(depth, own_line, true) && at.i == at.s.len()
}

/// A reading of an element's bytes as the writer writes them ([`written_as_is`]).
struct AsIs<'a> {
    s: &'a [u8],
    i: usize,
    order: AttributeOrder,
    indent: Indent,
}

impl<'a> AsIs<'a> {
    fn eat(&mut self, bytes: &[u8]) -> bool {
        let found = self.s[self.i..].starts_with(bytes);
        if found {
            self.i += bytes.len();
        }
        found
    }

    /// A line break and the tabs of a line at `depth`.
    fn eat_line(&mut self, depth: usize) -> bool {
        let tabs = tabs_at(depth, self.indent);
        let line = &self.s[self.i..];
        let found = line.first() == Some(&b'\n')
            && line.len() > tabs
            && line[1..=tabs].iter().all(|&b| b == b'\t')
            && line.get(tabs + 1) != Some(&b'\t');
        if found {
            self.i += 1 + tabs;
        }
        found
    }

    /// The longest run of bytes from here that `test` accepts.
    fn run(&mut self, test: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.i < self.s.len() && test(self.s[self.i]) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// The bytes from here to the next `end`, if they are all [`plain_byte`]s.
    fn plain_until(&mut self, end: u8) -> Option<&'a [u8]> {
        let rest = &self.s[self.i..];
        let run = &rest[..memchr::memchr(end, rest)?];
        every_byte(run, plain_byte).then(|| {
            self.i += run.len();
            run
        })
    }

    /// A name: ASCII letters, digits and `_:-.` (not first: a digit, `-` or `.`), or any non-ASCII byte (the
    /// file was read whole, so those are characters XML allows in names); where it lies.
    fn name(&mut self) -> Option<std::ops::Range<usize>> {
        let first = self.s.get(self.i).copied()?;
        if !(first.is_ascii_alphabetic() || first == b'_' || first == b':' || first >= 0x80) {
            return None;
        }
        let start = self.i;
        self.run(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.') || b >= 0x80);
        Some(start..self.i)
    }

    fn element(&mut self, depth: usize, own_line: bool, top: bool) -> bool {
        if !self.eat(b"<") {
            return false;
        }
        let Some(name) = self.name() else { return false };
        let s = self.s;
        let rank = |k: &std::ops::Range<usize>| (&s[k.clone()] == b"xsi:type", &s[k.clone()]);
        let mut last: Option<std::ops::Range<usize>> = None;
        while self.eat(b" ") {
            let Some(key) = self.name() else { return false };
            if !self.eat(b"=\"") || self.plain_until(b'"').is_none() || !self.eat(b"\"") {
                return false;
            }
            if self.order == AttributeOrder::Sorted && last.as_ref().is_some_and(|l| rank(l) >= rank(&key)) {
                return false;
            }
            last = Some(key);
        }
        if self.eat(b"/>") {
            return top || last.is_some();
        }
        if !self.eat(b">") {
            return false;
        }
        if self.s[self.i..].starts_with(b"</") {
            return false;
        }
        let children = if own_line { self.s[self.i..].starts_with(b"\n") } else { self.s[self.i..].starts_with(b"<") };
        if children {
            loop {
                if own_line && !self.eat_line(depth + 1) {
                    return false;
                }
                if !self.element(depth + 1, own_line, false) {
                    return false;
                }
                // Another child, or the end of this element.
                let save = self.i;
                if (!own_line || self.eat_line(depth)) && self.s[self.i..].starts_with(b"</") {
                    break;
                }
                self.i = save;
            }
        } else {
            match self.plain_until(b'<') {
                Some(text) if !text.iter().all(|&b| b == b' ') => {}
                _ => return false,
            }
        }
        self.eat(b"</") && self.eat(&s[name]) && self.eat(b">")
    }
}

/// A byte the writer writes as it is in text and attribute values: printable ASCII but `&<>"'`.
fn plain_byte(b: u8) -> bool {
    (b.wrapping_sub(0x20) < 0x5f) & (b != b'&') & (b != b'<') & (b != b'>') & (b != b'"') & (b != b'\'')
}

/// Writes `raw`, an element for which [`written_as_is`] holds, where and as [`write_element`] writes it.
pub fn write_verbatim(out: &mut String, raw: &str, (depth, own_line): (usize, bool), indent: Indent) {
    if own_line {
        out.push('\n');
        out.extend(std::iter::repeat_n('\t', tabs_at(depth, indent)));
    }
    out.push_str(raw);
}

/// Writes `el`, on a line of its own when `own_line` (not inside mixed content, where any added line break
/// would become part of the text).
fn write_element_at(out: &mut String, el: &Element, depth: usize, style: &mut Style, own_line: bool) {
    let tabs = tabs_at(depth, style.indent);
    if own_line {
        out.push('\n');
        out.extend(std::iter::repeat_n('\t', tabs));
    }
    out.push('<');
    out.push_str(&el.name);
    let mut attrs: Vec<&(String, String)> = el.attrs.iter().collect();
    if style.order == AttributeOrder::Sorted {
        // Java's String.compareTo orders by UTF-16 code units; attribute names are ASCII.
        attrs.sort_by(|a, b| (a.0 == "xsi:type", &a.0).cmp(&(b.0 == "xsi:type", &b.0)));
    }
    for (k, v) in attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, v, true);
        out.push('"');
    }
    let kept = |n: &&Node| match n {
        Node::Element(c) => !(style.skip)(c),
        Node::Text(_) => true,
    };
    if !el.children.iter().any(|n| kept(&n)) {
        out.push_str("/>");
        return;
    }
    out.push('>');
    let has_elements = el.children.iter().filter(kept).any(|n| matches!(n, Node::Element(_)));
    // Text beside child elements (mixed content, which XNAT never writes): children inline, so that a
    // rewrite adds no whitespace to the text.
    let mixed = has_elements && el.children.iter().any(|n| matches!(n, Node::Text(_)));
    for child in &el.children {
        match child {
            Node::Element(c) if (style.skip)(c) => {}
            Node::Element(c) => {
                let line = own_line && !mixed;
                if !(style.replace)(out, c, depth + 1, line) {
                    write_element_at(out, c, depth + 1, style, line);
                }
            }
            Node::Text(t) => escape_into(out, t, false),
        }
    }
    if has_elements && own_line && !mixed {
        out.push('\n');
        out.extend(std::iter::repeat_n('\t', tabs));
    }
    out.push_str("</");
    out.push_str(&el.name);
    out.push('>');
}

/// Text escaped for an XML element's content, as the writer escapes it.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, false);
    out
}

/// commons-lang `escapeXml10`: the five entities, characters XML 1.0 forbids dropped, NUL as a space.
/// In attribute values tabs and line breaks are written as character references so they survive
/// attribute-value normalisation on the next read.
fn escape_into(out: &mut String, s: &str, attribute: bool) {
    // Most values (paths, digests, numbers) are printable ASCII with nothing to escape: copied whole.
    if every_byte(s.as_bytes(), plain_byte) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\0' => out.push(' '),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start tags of every shape the pieces below make — writers' and others: white space around `=`, none
    /// between attributes, single quotes, references, a name given twice, no value, names that are no names —
    /// read by [`simple_attributes`] and by quick-xml's attribute reader: where the first takes a tag apart,
    /// it gives what the second gives; it takes apart the shapes writers give.
    #[test]
    fn simple_attributes_are_quick_xml_s() {
        let keys = ["URI", "xsi:type", "ID", "a b", "", "x=", "URI", "\"k\""];
        let eqs = ["=", " =", "= ", "\n=\t"];
        let values = ["1.dcm", "", "a&amp;b", "x>y", "it's", "a\"b", "tab\there", "1.3.12.2.1107.5.2"];
        let gaps = [" ", "\n\t", "", "   "];
        let ends = ["", " ", "\n", "/"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut pick = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut taken, mut tags) = (0, 0);
        for _ in 0..20_000 {
            let mut tag = String::from("<cat:entry");
            for _ in 0..pick(5) {
                let quote = ['"', '\''][pick(2)];
                let gap = if pick(4) == 0 { gaps[pick(gaps.len())] } else { " " };
                let eq = if pick(4) == 0 { eqs[pick(eqs.len())] } else { "=" };
                let value = values[pick(values.len())];
                let value = if quote == '"' { value.replace('"', "'") } else { value.replace('\'', "\"") };
                let among = if pick(3) == 0 { keys.len() } else { 3 };
                let key = keys[pick(among)];
                if pick(20) == 0 {
                    tag.push_str(&format!("{gap}{key}"));
                } else {
                    tag.push_str(&format!("{gap}{key}{eq}{quote}{value}{quote}"));
                }
            }
            tag.push_str(ends[pick(ends.len())]);
            tag.push('>');
            let mut reader = Reader::from_str(&tag);
            let Ok(Event::Start(start) | Event::Empty(start)) = reader.read_event() else { continue };
            tags += 1;
            let Some(text) = plain_tag(&start) else { continue };
            let name_end = start.name().into_inner().len();
            let Some((found, n)) = simple_attributes(text, name_end) else { continue };
            taken += 1;
            let by_quick_xml: Result<Vec<(String, String)>, String> = start
                .attributes()
                .map(|a| {
                    let a = a.map_err(|e| e.to_string())?;
                    let value = a.unescape_value().map_err(|e| e.to_string())?;
                    Ok((String::from_utf8(a.key.as_ref().to_vec()).unwrap(), value.into_owned()))
                })
                .collect();
            let ours: Vec<(String, String)> = found[..n].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(Ok(ours), by_quick_xml, "{tag}");
        }
        assert!(tags > 15_000 && taken > tags / 4 && taken < tags, "{taken} of {tags} tags taken apart");
        // The shape of every catalog entry XNAT writes.
        let entry = r#"<cat:entry URI="1.dcm" ID="1" xsi:type="cat:dcmEntry" digest="0cc1"/>"#;
        let Ok(Event::Empty(start)) = Reader::from_str(entry).read_event() else { panic!() };
        let (found, n) = simple_attributes(plain_tag(&start).unwrap(), 9).expect("taken apart");
        assert_eq!(&found[..n], [("URI", "1.dcm"), ("ID", "1"), ("xsi:type", "cat:dcmEntry"), ("digest", "0cc1")]);
    }

    /// Values read without decoding (a plain tag, no reference) and those decoded give what decoding gives, and
    /// a reference to a character XML does not allow is refused either way.
    #[test]
    fn attribute_values_plain_or_not_read_alike() {
        let root = parse(
            "<a p=\"x y\ttab\" r=\"1 &amp; 2 &#233;\" u=\"\u{e9}t\u{e9}\" q='&quot;' s=\"\"><b v=\"&lt;&gt;\" w=\"plain\"/></a>"
                .as_bytes(),
        )
        .unwrap();
        let b = root.elements().next().unwrap();
        assert_eq!(
            [root.attr("p"), root.attr("r"), root.attr("u"), root.attr("q"), root.attr("s"), b.attr("v"), b.attr("w")],
            [
                Some("x y\ttab"),
                Some("1 & 2 \u{e9}"),
                Some("\u{e9}t\u{e9}"),
                Some("\""),
                Some(""),
                Some("<>"),
                Some("plain")
            ]
        );
        // A tag of characters XML allows, not all ASCII, without a reference: its pieces taken as they are.
        let root = parse("<n\u{e9} k\u{fc}=\"\u{e9}t\u{e9}\" z=\"plain\"/>".as_bytes()).unwrap();
        assert_eq!(
            (root.name.as_str(), root.attr("k\u{fc}"), root.attr("z")),
            ("n\u{e9}", Some("\u{e9}t\u{e9}"), Some("plain"))
        );
        for bad in [
            "<a v=\"&#1;\"/>",
            "<a w=\"x\" v=\"&#x1F;\"/>",
            "<a v=\"\u{1}\"/>",
            "<a v=\"\u{FFFE}\"/>",
            "<a b\u{a0}c=\"1\"/>",
            "<a\u{85}b/>",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} was read");
        }
    }

    /// An element is copied as it is only when writing what it reads as gives the same bytes; the common shape
    /// of a catalog entry is recognised, and every variation the writer would change is not.
    #[test]
    fn only_elements_the_writer_would_write_the_same_are_copied_as_they_are() {
        use AttributeOrder::{Kept, Sorted};
        let cases = [
            (r#"<cat:entry ID="a.dcm" URI="a.dcm" digest="d0" format="DICOM" xsi:type="cat:dcmEntry"/>"#, true, true),
            ("<cat:entry/>", true, true),
            (r#"<e b="1" a="2"/>"#, false, true),
            (r#"<e xsi:type="t" a="1"/>"#, false, true),
            (r#"<e a="" b="x y"/>"#, true, true),
            (r#"<e a='1'/>"#, false, false),
            (r#"<e a="1" />"#, false, false),
            (r#"<e  a="1"/>"#, false, false),
            (r#"<e a = "1"/>"#, false, false),
            (r#"<e a="1"b="2"/>"#, false, false),
            (r#"<e a="x&amp;y"/>"#, false, false),
            (r#"<e a="x&#9;y"/>"#, false, false),
            ("<e a=\"x\ty\"/>", false, false),
            ("<e a=\"\u{e9}\"/>", false, false),
            (r#"<e a="it's"/>"#, false, false),
            (r#"<e a="1"></e>"#, false, false),
            (r#"<e a="1"><c/></e>"#, false, false),
            ("<e\ta=\"1\"/>", false, false),
        ];
        for (raw, sorted, kept) in cases {
            let as_is = |order| written_as_is(raw, order, (1, false), Indent::Flat);
            assert_eq!((as_is(Sorted), as_is(Kept)), (sorted, kept), "{raw}");
            for order in [Sorted, Kept] {
                if as_is(order) {
                    let mut written = String::new();
                    write_element(
                        &mut written,
                        &parse(raw.as_bytes()).unwrap(),
                        (1, false),
                        order,
                        Indent::Flat,
                        &|_| false,
                    );
                    assert_eq!(written, raw, "{order:?}");
                    let (mut verbatim, mut whole) = (String::new(), String::new());
                    write_verbatim(&mut verbatim, raw, (3, true), Indent::Flat);
                    write_element(&mut whole, &parse(raw.as_bytes()).unwrap(), (3, true), order, Indent::Flat, &|_| {
                        false
                    });
                    assert_eq!(verbatim, whole);
                }
            }
        }
    }

    #[test]
    fn an_attribute_given_twice_is_refused_whether_its_element_is_kept_or_not() {
        let doc = b"<r><a x=\"1\" y=\"2\" x=\"3\"/></r>";
        assert!(parse(doc).is_err());
        assert!(parse_pruned(doc, &|_, _| false).is_err());
        assert!(parse_pruned(b"<r><a x=\"1\" y=\"&lt;\"/></r>", &|_, _| false).is_ok());
        assert!(parse_pruned(b"<r><a x=\"\x01\"/></r>", &|_, _| false).is_err());
    }

    #[test]
    fn the_root_start_tag_from_the_first_bytes() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- c -->\n<xnat:MRSession xmlns:xnat=\"x\" ID=\"XNAT_E00001\" label=\"é\"><xnat:scans>";
        let root = root_start(doc.as_bytes()).unwrap();
        assert_eq!((root.attr("ID"), root.attr("label"), root.children.len()), (Some("XNAT_E00001"), Some("é"), 0));
        // Cut inside the start tag, inside a character, or malformed: read it whole instead.
        let cut = doc.find("label").unwrap();
        assert!(root_start(&doc.as_bytes()[..cut]).is_none());
        assert!(root_start(&doc.as_bytes()[..doc.find('é').unwrap() + 1]).is_none());
        assert!(root_start(b"<a ID=\"1\" ID=\"2\">").is_none());
        assert!(root_start(b"text<a ID=\"1\"/>").is_none());
        assert_eq!(root_start(b"<a ID=\"1\"/>").unwrap().attr("ID"), Some("1"));
    }

    #[test]
    fn a_pruned_parse_keeps_what_it_is_asked_for_and_refuses_what_parse_refuses() {
        let src = "<x:S xmlns:x=\"urn:x\" ID=\"E1\"><x:date>2024-01-02</x:date><x:scans><x:scan ID=\"1\">\
                   <x:file URI=\"a &amp; b\"/>text</x:scan></x:scans><x:subject_ID>S1</x:subject_ID></x:S>";
        let pruned = parse_pruned(src.as_bytes(), &|depth, name| depth == 1 && name != "scans").unwrap();
        let names: Vec<&str> = pruned.elements().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["x:date", "x:subject_ID"]);
        assert_eq!(pruned.attr("ID"), Some("E1"));
        let full = parse(src.as_bytes()).unwrap();
        assert_eq!(full.elements().count(), 3);
        // Whatever is inside a dropped element, a malformed document is refused by both.
        let deep = format!("<r><scans>{}{}</scans></r>", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        let long = format!("<r><scans><a>{}&amp;{}</a></scans></r>", "x".repeat(MAX_VALUE_BYTES), "y");
        for bad in [
            "<r><scans><a></b></scans></r>".to_string(),
            "<r><scans><a k=\"1\" k=\"2\"/></scans></r>".to_string(),
            "<r><scans>&unknown;</scans></r>".to_string(),
            "<r><scans>\u{1}</scans></r>".to_string(),
            "<r><scans><a></scans></r>".to_string(),
            "<r><scans></scans></r><r/>".to_string(),
            "<r><scans>".to_string(),
            deep,
            long,
        ] {
            let keep_root_only = |_: usize, _: &str| false;
            assert!(parse(bad.as_bytes()).is_err(), "parse accepts {:.60}", bad);
            assert!(parse_pruned(bad.as_bytes(), &keep_root_only).is_err(), "pruned accepts {:.60}", bad);
        }
    }

    #[test]
    fn round_trip_keeps_attributes_text_and_entities() {
        let src = "<?xml version=\"1.0\"?>\n<a:r xmlns:a=\"urn:a\" z=\"1\" b=\"x &amp; &lt;y&gt; &#233;\">\n  <a:c k=\"v\"/>\n  <a:t>caf\u{e9} &amp; more</a:t>\n</a:r>";
        let el = parse(src.as_bytes()).unwrap();
        assert_eq!(el.attr("b"), Some("x & <y> é"));
        assert_eq!(el.elements().count(), 2);
        let out = write(&el, AttributeOrder::Sorted, Indent::Flat);
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a:r b=\"x &amp; &lt;y&gt; é\" xmlns:a=\"urn:a\" z=\"1\">\n<a:c k=\"v\"/>\n<a:t>café &amp; more</a:t>\n</a:r>"
        );
        assert_eq!(parse(out.as_bytes()).unwrap().canonical(), el.canonical());
    }

    #[test]
    fn xsi_type_goes_last_and_newlines_survive() {
        let mut el = Element::new("e");
        el.attrs.push(("xsi:type".into(), "cat:dcmEntry".into()));
        el.attrs.push(("zeta".into(), "a\nb\tc".into()));
        el.attrs.push(("ID".into(), "1".into()));
        let out = write(&el, AttributeOrder::Sorted, Indent::Flat);
        assert!(out.ends_with("<e ID=\"1\" zeta=\"a&#10;b&#9;c\" xsi:type=\"cat:dcmEntry\"/>"), "{out}");
        assert_eq!(parse(out.as_bytes()).unwrap().attr("zeta"), Some("a\nb\tc"));
    }

    #[test]
    fn deep_nesting_and_huge_values_are_refused_not_crashed_on() {
        let deep = "<a>".repeat(200_000) + &"</a>".repeat(200_000);
        assert!(parse(deep.as_bytes()).unwrap_err().0.contains("nested deeper"));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let huge = format!("<a b=\"{}\"/>", "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(parse(huge.as_bytes()).unwrap_err().0.contains("longer than"));
        let text = format!("<a>{}&amp;{}</a>", "x".repeat(MAX_VALUE_BYTES / 2), "y".repeat(MAX_VALUE_BYTES / 2));
        assert!(parse(text.as_bytes()).unwrap_err().0.contains("longer than"));
        // A DOCTYPE with an entity that would expand: nothing expands, the unknown entity is an error.
        let bomb = "<!DOCTYPE a [<!ENTITY x \"xxxxxxxx\"><!ENTITY y \"&x;&x;&x;&x;\">]><a>&y;</a>";
        assert!(parse(bomb.as_bytes()).unwrap_err().0.contains("unknown entity"));
    }

    /// Found by the catalog and session fuzz targets: each was read, then written differently.
    #[test]
    fn what_is_read_is_written_back_the_same() {
        let stable = |src: &str| {
            let once = write(&parse(src.as_bytes()).unwrap(), AttributeOrder::Sorted, Indent::Flat);
            let back = parse(once.as_bytes()).unwrap_or_else(|e| panic!("{src:?} was written as {once:?}: {e}"));
            assert_eq!(write(&back, AttributeOrder::Sorted, Indent::Flat), once, "{src:?}");
        };
        stable("<a>x<b/></a>");
        stable("<r><a> x <b><c/></b>y</a><d><e/></d></r>");
        for forbidden in ["<a>\u{1b}</a>", "<a>&#1;</a>", "<a b=\"&#8;\"/>", "<a>\u{FFFE}</a>"] {
            assert!(parse(forbidden.as_bytes()).unwrap_err().0.contains("does not allow"), "{forbidden:?}");
        }
        assert!(parse(b"<\t/>").is_err(), "an element without a name");
        assert!(parse(br#"<r><o y"="">"=""/></r>"#).is_err(), "attribute names must be names");
    }

    #[test]
    fn broken_documents_are_errors() {
        for bad in ["", "   ", "<a>", "<a></b>", "<a/><b/>", "<a x='1' x='2'/>", "<a>&bogus;</a>"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} parsed");
        }
        assert!(parse(&[0x3c, 0x61, 0xff, 0x2f, 0x3e]).is_err());
    }
}
