//! The documents we keep where XNAT keeps database rows: the experiment's session document
//! (`<P>/arc001/<E>.xml`) and the subject's (`<P>/subjects/<S>.xml`). Here: the resource statistics
//! (`file_count`/`file_size`) and new resource elements in them.
//!
//! Resource URIs in documents are relative to the owner's folder (D15); an absolute URI written by XNAT
//! (`/data/xnat/archive/P/arc001/E/SCANS/...`) is matched by its archive-relative tail.

use crate::error::Result;
use crate::fs::tree::{RelPath, Tree};
use crate::site::layout::{Owner, document_root};
use crate::xml::{self, AttributeOrder, Element, Indent, Node};

/// Whether a stored resource `URI` points at `catalog`.
fn points_at(uri: &str, owner: &Owner, catalog: &RelPath) -> bool {
    let uri = uri.replace('\\', "/");
    let uri = uri.trim_start_matches("./");
    catalog.strip_prefix(&owner.base) == Some(uri) || uri.ends_with(&format!("/{}", catalog.as_str()))
}

fn find_resource<'e>(el: &'e mut Element, owner: &Owner, catalog: &RelPath) -> Option<&'e mut Element> {
    if el.attr("URI").is_some_and(|u| points_at(u, owner, catalog)) {
        return Some(el);
    }
    el.elements_mut().find_map(|c| find_resource(c, owner, catalog))
}

/// Writes `file_count`/`file_size` on the owner's element for `catalog`. Returns whether the document
/// records this resource and its numbers differ (or were written, when `write`).
pub fn set_stats(tree: &Tree, owner: &Owner, catalog: &RelPath, count: u64, size: u64, write: bool) -> Result<bool> {
    let mut root = document_root(tree, &owner.document)?;
    let Some(el) = find_resource(&mut root, owner, catalog) else {
        return Ok(false);
    };
    let a = el.set_attr("file_count", count.to_string());
    let b = el.set_attr("file_size", size.to_string());
    if !(a || b) {
        return Ok(false);
    }
    if write {
        save(tree, &owner.document, &root)?;
    }
    Ok(true)
}

/// Writes a document atomically, keeping its attribute order.
pub fn save(tree: &Tree, doc: &RelPath, root: &Element) -> Result<()> {
    tree.write_atomic(doc, xml::write(root, AttributeOrder::Kept, Indent::Pretty).as_bytes())
}

/// The `xnat` prefix a document uses (`xnat` when it declares none).
pub fn xnat_prefix(root: &Element) -> String {
    root.prefix_for("http://nrg.wustl.edu/xnat").unwrap_or("xnat").to_string()
}

/// Inserts `child` into `parent` before the first element whose local name is in `before`, or at the end.
pub fn insert_before(parent: &mut Element, child: Element, before: &[&str]) {
    let at = parent
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(e) if before.contains(&e.local_name())))
        .unwrap_or(parent.children.len());
    parent.children.insert(at, Node::Element(child));
}
