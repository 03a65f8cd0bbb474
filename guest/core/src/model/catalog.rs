//! The catalog: the XML file in every resource folder that lists the resource's files (`cat:Catalog`,
//! `cat:DCMCatalog`), read losslessly and written in XNAT's style (`catalog-refresh.md` §4).
//!
//! A catalog is kept as its element tree, so attributes, elements and namespace declarations that this
//! code does not know survive a rewrite untouched. Entries are addressed by [`EntryLoc`], which also
//! reaches entries inside nested `cat:sets/cat:entrySet` sub-catalogs.

use crate::xml::{self, AttributeOrder, Element, Indent, Node};

/// The catalog namespace.
pub const CAT_NS: &str = "http://nrg.wustl.edu/catalog";
/// The XML Schema instance namespace (`xsi:type`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Which root element a catalog has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    /// `cat:Catalog`
    Plain,
    /// `cat:DCMCatalog`, whose entries are usually `cat:dcmEntry`s with SOP instance UIDs.
    Dicom,
}

/// Why bytes are not a catalog.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("{0}")]
    Xml(#[from] xml::XmlError),
    #[error("the root element is <{0}>, not a cat:Catalog or cat:DCMCatalog in namespace {CAT_NS}")]
    NotACatalog(String),
}

/// Where an entry sits: the chain of `cat:entrySet` indices from the root, then its index among the
/// children of that catalog's `cat:entries`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryLoc {
    pub sets: Vec<usize>,
    pub index: usize,
}

/// A parsed catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    root: Element,
    /// `"cat:"`, or `""` when the catalog namespace is the default one.
    cat: String,
}

impl Catalog {
    /// Reads a catalog. An empty or truncated file is an error, never an empty catalog: XNAT's
    /// "regenerate it empty" loses every DICOM UID for good (XNAT-6083).
    pub fn parse(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        Catalog::from_root(xml::parse(bytes)?)
    }

    /// A catalog of a document already read; its root must be a catalog.
    pub(crate) fn from_root(root: Element) -> Result<Catalog, CatalogError> {
        let prefix = root.prefix().to_string();
        let local = root.local_name();
        if root.declared_namespace(&prefix) != Some(CAT_NS) || !matches!(local, "Catalog" | "DCMCatalog") {
            return Err(CatalogError::NotACatalog(root.name.clone()));
        }
        let cat = if prefix.is_empty() { String::new() } else { format!("{prefix}:") };
        Ok(Catalog { root, cat })
    }

    /// A new empty catalog as XNAT's catalog service writes it (`ID` = the resource label or scan id).
    pub fn new(kind: CatalogKind, id: &str) -> Catalog {
        let name = match kind {
            CatalogKind::Plain => "cat:Catalog",
            CatalogKind::Dicom => "cat:DCMCatalog",
        };
        let mut root = Element::new(name);
        root.attrs.push(("ID".into(), id.into()));
        root.attrs.push(("xmlns:cat".into(), CAT_NS.into()));
        root.attrs.push(("xmlns:xsi".into(), XSI_NS.into()));
        Catalog { root, cat: "cat:".into() }
    }

    /// The whole document as XNAT's refresh writer lays it out (attributes sorted, tabs, UTF-8).
    pub fn to_xml(&self) -> String {
        // Written without copying the tree (a copy of a million entries is a second catalog in memory).
        let cat = self.cat.as_str();
        xml::write_without(&self.root, AttributeOrder::Sorted, Indent::Flat, &|el| empty_container(el, cat))
    }

    pub fn kind(&self) -> CatalogKind {
        if self.root.local_name() == "DCMCatalog" { CatalogKind::Dicom } else { CatalogKind::Plain }
    }

    pub fn root(&self) -> &Element {
        &self.root
    }

    pub(crate) fn root_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// `"cat:"`, or `""` when the catalog namespace is the default one.
    pub(crate) fn cat(&self) -> &str {
        &self.cat
    }

    pub fn id(&self) -> Option<&str> {
        self.root.attr("ID")
    }

    /// A catalog-level metaField (`AUDIT`, `PROJECT`, ...).
    pub fn meta_field(&self, name: &str) -> Option<String> {
        meta_field(&self.root, &self.cat, name)
    }

    /// Sets a catalog-level metaField; returns true when it changed.
    pub fn set_meta_field(&mut self, name: &str, value: &str) -> bool {
        let cat = self.cat.clone();
        set_meta_field(&mut self.root, &cat, name, value)
    }

    /// Every entry, nested sets included, in document order.
    pub fn entry_locs(&self) -> Vec<EntryLoc> {
        let mut out = Vec::new();
        collect_locs(&self.root, &self.cat, &mut Vec::new(), &mut out);
        out
    }

    pub fn entry(&self, loc: &EntryLoc) -> Entry<'_> {
        let container = container(&self.root, &self.cat, &loc.sets).expect("entry location from this catalog");
        match &container.children[loc.index] {
            Node::Element(e) => Entry { el: e, cat: &self.cat },
            Node::Text(_) => unreachable!("entry locations point at elements"),
        }
    }

    pub fn entry_mut(&mut self, loc: &EntryLoc) -> EntryMut<'_> {
        let cat = self.cat.as_str();
        let container = container_mut(&mut self.root, cat, &loc.sets).expect("entry location from this catalog");
        match &mut container.children[loc.index] {
            Node::Element(e) => EntryMut { el: e, cat },
            Node::Text(_) => unreachable!("entry locations point at elements"),
        }
    }

    /// Removes entries; locations of other entries stay valid only until the next structural change.
    pub fn remove_entries(&mut self, locs: &[EntryLoc]) {
        let mut locs = locs.to_vec();
        locs.sort();
        let cat = self.cat.clone();
        for loc in locs.iter().rev() {
            if let Some(c) = container_mut(&mut self.root, &cat, &loc.sets) {
                c.children.remove(loc.index);
            }
        }
    }

    /// A new `cat:entry` element in this catalog's prefix, for [`Catalog::push_entry`].
    pub fn new_entry(&self, uri: &str) -> Element {
        let mut e = Element::new(format!("{}entry", self.cat));
        e.attrs.push(("URI".into(), uri.into()));
        e
    }

    /// Appends an entry to the top-level `cat:entries`, creating it in its schema place if needed.
    pub fn push_entry(&mut self, entry: Element) {
        let name = format!("{}entries", self.cat);
        let entries = child_or_insert(&mut self.root, &self.cat, "entries", &name);
        entries.children.push(Node::Element(entry));
    }
}

/// A read-only view of one entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    el: &'a Element,
    cat: &'a str,
}

impl<'a> Entry<'a> {
    pub fn element(&self) -> &'a Element {
        self.el
    }
    pub fn attr(&self, name: &str) -> Option<&'a str> {
        self.el.attr(name)
    }
    pub fn uri(&self) -> Option<&'a str> {
        self.el.attr("URI")
    }
    /// `xsi:type="cat:dcmEntry"`: a DICOM instance with `UID` and `instanceNumber`.
    pub fn is_dicom(&self) -> bool {
        self.el.attr("xsi:type").is_some_and(|t| xml::local(t) == "dcmEntry")
    }
    pub fn meta_field(&self, name: &str) -> Option<String> {
        meta_field(self.el, self.cat, name)
    }
    /// Its tags (`cat:tags/cat:tag`, trimmed), in document order.
    pub fn tags(&self) -> Vec<String> {
        self.el
            .elements()
            .filter(|e| e.local_name() == "tags")
            .flat_map(|tags| tags.elements().filter(|t| t.local_name() == "tag").map(|t| t.text().trim().to_string()))
            .collect()
    }
}

/// A mutable view of one entry.
pub struct EntryMut<'a> {
    el: &'a mut Element,
    cat: &'a str,
}

impl<'a> EntryMut<'a> {
    /// A mutable view of an entry element of a catalog whose prefix is `cat` ([`Catalog::cat`]).
    pub(crate) fn new(el: &'a mut Element, cat: &'a str) -> EntryMut<'a> {
        EntryMut { el, cat }
    }
    #[cfg(test)]
    pub(crate) fn element_mut(&mut self) -> &mut Element {
        self.el
    }
    /// Moves the entry's element out, leaving an empty element in its place: for a catalog that is taken
    /// apart (a merge moves the entries it adds into the other catalog, instead of copying each).
    pub(crate) fn take(self) -> Element {
        std::mem::take(self.el)
    }
    /// Sets an attribute; true when the value changed.
    pub fn set_attr(&mut self, name: &str, value: &str) -> bool {
        self.el.set_attr(name, value)
    }
    /// Sets an attribute only when it is missing or blank; true when it was set.
    pub fn fill_attr(&mut self, name: &str, value: &str) -> bool {
        if self.el.attr(name).is_some_and(|v| !v.trim().is_empty()) {
            return false;
        }
        self.el.set_attr(name, value)
    }
    pub fn set_meta_field(&mut self, name: &str, value: &str) -> bool {
        set_meta_field(self.el, self.cat, name, value)
    }
}

pub(crate) fn is(el: &Element, cat: &str, local: &str) -> bool {
    el.name.strip_prefix(cat) == Some(local)
}

fn meta_field(el: &Element, cat: &str, name: &str) -> Option<String> {
    el.elements()
        .filter(|c| is(c, cat, "metaFields"))
        .flat_map(|c| c.elements())
        .find(|m| is(m, cat, "metaField") && m.attr("name") == Some(name))
        .map(|m| m.text())
}

fn set_meta_field(el: &mut Element, cat: &str, name: &str, value: &str) -> bool {
    let wrapper = format!("{cat}metaFields");
    let fields = child_or_insert(el, cat, "metaFields", &wrapper);
    if let Some(m) = fields.elements_mut().find(|m| is(m, cat, "metaField") && m.attr("name") == Some(name)) {
        if m.text() == value {
            return false;
        }
        m.children = vec![Node::Text(value.to_string())];
        return true;
    }
    let mut m = Element::new(format!("{cat}metaField"));
    m.attrs.push(("name".into(), name.into()));
    m.children.push(Node::Text(value.into()));
    fields.children.push(Node::Element(m));
    true
}

/// Schema order of a catalog's (and an entry's) children; unknown elements sort after them.
const ORDER: [&str; 7] = ["metaFields", "tags", "sets", "entries", "dimensions", "voxelRes", "orientation"];

fn rank(el: &Element, cat: &str) -> usize {
    ORDER.iter().position(|l| is(el, cat, l)).unwrap_or(ORDER.len())
}

/// The child `<cat:local>`, inserted before the first child that the schema puts after it.
pub(crate) fn child_or_insert<'e>(el: &'e mut Element, cat: &str, local: &str, name: &str) -> &'e mut Element {
    let pos = el.children.iter().position(|n| matches!(n, Node::Element(c) if is(c, cat, local)));
    let pos = match pos {
        Some(p) => p,
        None => {
            let my_rank = ORDER.iter().position(|l| *l == local).unwrap_or(ORDER.len());
            let at = el
                .children
                .iter()
                .position(|n| matches!(n, Node::Element(c) if rank(c, cat) > my_rank))
                .unwrap_or(el.children.len());
            el.children.insert(at, Node::Element(Element::new(name)));
            at
        }
    };
    match &mut el.children[pos] {
        Node::Element(e) => e,
        Node::Text(_) => unreachable!(),
    }
}

fn collect_locs(cat_el: &Element, cat: &str, sets: &mut Vec<usize>, out: &mut Vec<EntryLoc>) {
    for child in cat_el.elements() {
        if is(child, cat, "sets") {
            for (i, set) in child.children.iter().enumerate() {
                if let Node::Element(s) = set
                    && is(s, cat, "entrySet")
                {
                    sets.push(i);
                    collect_locs(s, cat, sets, out);
                    sets.pop();
                }
            }
        }
    }
    if let Some(entries) = cat_el.elements().find(|c| is(c, cat, "entries")) {
        for (i, n) in entries.children.iter().enumerate() {
            if let Node::Element(e) = n
                && is(e, cat, "entry")
            {
                out.push(EntryLoc { sets: sets.clone(), index: i });
            }
        }
    }
}

fn set_at<'e>(el: &'e Element, cat: &str, i: usize) -> Option<&'e Element> {
    let sets = el.elements().find(|c| is(c, cat, "sets"))?;
    match sets.children.get(i)? {
        Node::Element(s) => Some(s),
        Node::Text(_) => None,
    }
}

fn container<'e>(root: &'e Element, cat: &str, sets: &[usize]) -> Option<&'e Element> {
    let mut cur = root;
    for &i in sets {
        cur = set_at(cur, cat, i)?;
    }
    cur.elements().find(|c| is(c, cat, "entries"))
}

fn container_mut<'e>(root: &'e mut Element, cat: &str, sets: &[usize]) -> Option<&'e mut Element> {
    let mut cur = root;
    for &i in sets {
        let s = cur.elements_mut().find(|c| is(c, cat, "sets"))?;
        cur = match s.children.get_mut(i)? {
            Node::Element(e) => e,
            Node::Text(_) => return None,
        };
    }
    cur.elements_mut().find(|c| is(c, cat, "entries"))
}

/// XNAT omits empty `metaFields`, `tags`, `sets` and `entries` wrappers. Children first, so a wrapper that
/// held only empty wrappers goes too (and the next read and write leaves the document as it is).
/// A container XNAT does not write when it holds nothing (`metaFields`, `tags`, `sets`, `entries` without
/// attributes whose children are all such empty containers).
fn empty_container(el: &Element, cat: &str) -> bool {
    empty_container_by(el, cat, &|_| None)
}

/// [`empty_container`], where `stand_in` says whether an element that stands for others (in a
/// [`crate::model::catalog_stream::StreamedCatalog`]'s frame) counts as empty; `None` for real elements.
pub(crate) fn empty_container_by(el: &Element, cat: &str, stand_in: &dyn Fn(&Element) -> Option<bool>) -> bool {
    if let Some(empty) = stand_in(el) {
        return empty;
    }
    ["metaFields", "tags", "sets", "entries"].iter().any(|l| is(el, cat, l))
        && el.attrs.is_empty()
        && el.children.iter().all(|n| matches!(n, Node::Element(c) if empty_container_by(c, cat, stand_in)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCAN_4: &[u8] = include_bytes!("../../../../tests/fixtures/scan_4_catalog.xml");

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        std::fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn both_fixtures_round_trip_without_loss() {
        for name in ["scan_4_catalog.xml", "DEBUG_OUTPUT_catalog.xml"] {
            let bytes = fixture(name);
            let cat = Catalog::parse(&bytes).unwrap();
            let written = cat.to_xml();
            let again = Catalog::parse(written.as_bytes()).unwrap();
            assert_eq!(again.root().canonical(), xml::parse(&bytes).unwrap().canonical(), "{name}");
            // XNAT's writer is deterministic: writing again gives the same bytes.
            assert_eq!(again.to_xml(), written);
        }
    }

    #[test]
    fn fixture_facts_are_read() {
        let cat = Catalog::parse(SCAN_4).unwrap();
        assert_eq!(cat.kind(), CatalogKind::Dicom);
        let locs = cat.entry_locs();
        assert_eq!(locs.len(), 176);
        let e = cat.entry(&locs[0]);
        assert!(e.is_dicom());
        assert_eq!(e.attr("instanceNumber"), Some("53"));
        assert_eq!(e.meta_field("size_in_bytes").as_deref(), Some("192046"));
        assert_eq!(cat.meta_field("AUDIT").as_deref(), Some("14:Wed Jan 09 18:05:57 GMT 2019=Added:176"));
        let debug = Catalog::parse(&fixture("DEBUG_OUTPUT_catalog.xml")).unwrap();
        assert_eq!(debug.entry_locs().len(), 8201);
        assert_eq!(debug.id(), Some("DEBUG_OUTPUT"));
    }

    #[test]
    fn written_like_xnat() {
        let mut cat = Catalog::new(CatalogKind::Plain, "NIFTI");
        cat.set_meta_field("PROJECT", "DEMO");
        let mut e = cat.new_entry("t1.nii.gz");
        e.attrs.push(("name".into(), "t1.nii.gz".into()));
        e.attrs.push(("ID".into(), "t1.nii.gz".into()));
        cat.push_entry(e);
        let loc = cat.entry_locs()[0].clone();
        cat.entry_mut(&loc).set_meta_field("SIZE", "10");
        assert_eq!(
            cat.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <cat:Catalog ID=\"NIFTI\" xmlns:cat=\"http://nrg.wustl.edu/catalog\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n\
             <cat:metaFields>\n\t<cat:metaField name=\"PROJECT\">DEMO</cat:metaField>\n</cat:metaFields>\n\
             <cat:entries>\n\t<cat:entry ID=\"t1.nii.gz\" URI=\"t1.nii.gz\" name=\"t1.nii.gz\">\n\
             \t\t<cat:metaFields>\n\t\t\t<cat:metaField name=\"SIZE\">10</cat:metaField>\n\t\t</cat:metaFields>\n\
             \t</cat:entry>\n</cat:entries>\n</cat:Catalog>"
        );
    }

    #[test]
    fn nested_sets_unknown_parts_and_default_namespace_survive() {
        let src = r#"<Catalog xmlns="http://nrg.wustl.edu/catalog" xmlns:x="urn:x" ID="c" x:extra="1">
            <entries><entry URI="a" x:flag="y"><x:note>keep</x:note></entry></entries>
            <sets><entrySet ID="s"><entries><entry URI="sub/b"/></entries></entrySet></sets>
            <x:unknown>text</x:unknown></Catalog>"#;
        let mut cat = Catalog::parse(src.as_bytes()).unwrap();
        let locs = cat.entry_locs();
        let uris: Vec<_> = locs.iter().map(|l| cat.entry(l).uri().unwrap().to_string()).collect();
        assert_eq!(uris, ["sub/b", "a"]);
        cat.push_entry(cat.new_entry("new"));
        let out = cat.to_xml();
        let back = Catalog::parse(out.as_bytes()).unwrap();
        assert_eq!(back.entry_locs().len(), 3);
        assert!(out.contains("<x:note>keep</x:note>") && out.contains("x:flag=\"y\"") && out.contains("x:extra=\"1\""));
        assert!(out.contains("<x:unknown>text</x:unknown>"));
        cat.remove_entries(&locs);
        assert_eq!(cat.entry_locs().len(), 1);
        assert!(!cat.to_xml().contains("<sets>") || cat.to_xml().contains("<entrySet"));
    }

    /// Found by the catalog fuzz target: a wrapper that held only an empty wrapper was written empty, and
    /// pruned only by the next write.
    #[test]
    fn nested_empty_wrappers_are_pruned_in_one_write() {
        let src =
            r#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:sets><cat:sets/></cat:sets></cat:Catalog>"#;
        let out = Catalog::parse(src.as_bytes()).unwrap().to_xml();
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cat:Catalog xmlns:cat=\"http://nrg.wustl.edu/catalog\"/>"
        );
        assert_eq!(Catalog::parse(out.as_bytes()).unwrap().to_xml(), out);
    }

    #[test]
    fn not_catalogs_are_refused() {
        assert!(Catalog::parse(b"").is_err());
        assert!(Catalog::parse(b"<cat:Catalog xmlns:cat=\"urn:other\"/>").is_err());
        assert!(Catalog::parse(b"<xnat:MRSession xmlns:xnat=\"http://nrg.wustl.edu/xnat\"/>").is_err());
        assert!(Catalog::parse(&SCAN_4[..SCAN_4.len() / 2]).is_err());
    }
}
