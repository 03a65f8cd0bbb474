//! What a refresh sets on an entry whose file it found, and on a new one (`catalog-refresh.md` §3.2): written
//! once, applied both to a real entry (when the catalog is written) and to the [`Facts`] kept of it (to tell,
//! while nothing is written, whether it would change — which `dry-run` and `verify` report).

use crate::model::audit::Stamp;
use crate::model::catalog::{Catalog, EntryMut};
use crate::refresh::index::Facts;
use crate::xml::{Element, Node};

/// The three ways the refresh changes an entry.
pub(super) trait EntryFields {
    /// Sets an attribute; true when the value changed.
    fn set_attr(&mut self, name: &str, value: &str) -> bool;
    /// Sets an attribute only when it is missing or blank; true when it was set.
    fn fill_attr(&mut self, name: &str, value: &str) -> bool;
    fn set_meta_field(&mut self, name: &str, value: &str) -> bool;
    /// Sets the `SIZE` metaField to `len` as `u64::to_string` writes it; true when the value changed.
    fn set_size(&mut self, len: u64) -> bool {
        self.set_meta_field("SIZE", &len.to_string())
    }
}

impl EntryFields for EntryMut<'_> {
    fn set_attr(&mut self, name: &str, value: &str) -> bool {
        EntryMut::set_attr(self, name, value)
    }
    fn fill_attr(&mut self, name: &str, value: &str) -> bool {
        EntryMut::fill_attr(self, name, value)
    }
    fn set_meta_field(&mut self, name: &str, value: &str) -> bool {
        EntryMut::set_meta_field(self, name, value)
    }
}

/// An entry seen through its [`Facts`] (its key is `key`): answers as the entry would, changes nothing.
pub(super) struct Probe<'a> {
    pub facts: &'a Facts,
    pub key: &'a str,
}

impl EntryFields for Probe<'_> {
    fn set_attr(&mut self, name: &str, value: &str) -> bool {
        let f = self.facts;
        let same = match name {
            "ID" => f.has(Facts::ID_IS_KEY) && value == self.key,
            "cachePath" => f.has(Facts::CACHE_PATH_IS_KEY) && value == self.key,
            "name" => f.has(Facts::NAME_IS_KEYS_NAME) && Some(value) == self.key.rsplit('/').next(),
            "format" => f.has(Facts::FORMAT_DICOM) && value == "DICOM",
            "digest" => f.digest.as_deref() == Some(value),
            // Set only after a change (modifiedBy, ...): whatever they hold, the entry changed already.
            _ => false,
        };
        !same
    }
    fn fill_attr(&mut self, name: &str, _value: &str) -> bool {
        let flag = match name {
            "createdBy" => Facts::CREATED_BY,
            "createdTime" => Facts::CREATED_TIME,
            "createdEventId" => Facts::CREATED_EVENT,
            _ => return true,
        };
        !self.facts.has(flag)
    }
    fn set_meta_field(&mut self, name: &str, value: &str) -> bool {
        !(name == "SIZE" && self.facts.size_is(value))
    }
    // Without writing the number out: the probe runs for every entry of every refresh.
    fn set_size(&mut self, len: u64) -> bool {
        !self.facts.size_is_len(len)
    }
}

/// Brings an entry in line with its file (`rel`, `len` bytes, `digest` when checksummed); whether it changed.
pub(super) fn update_entry(
    e: &mut dyn EntryFields,
    stamp: &Stamp,
    (rel, len, digest): (&str, u64, Option<&str>),
    is_dicom: bool,
) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let mut changed = false;
    if let Some(user) = &stamp.user {
        changed |= e.fill_attr("createdBy", user);
    }
    changed |= e.fill_attr("createdTime", stamp.entry_time());
    changed |= e.fill_attr("createdEventId", stamp.event());
    changed |= e.set_attr("ID", rel);
    changed |= e.set_attr("cachePath", rel);
    changed |= e.set_attr("name", name);
    changed |= e.set_size(len);
    if is_dicom {
        changed |= e.set_attr("format", "DICOM");
    }
    if let Some(d) = digest {
        changed |= e.set_attr("digest", d);
    }
    if changed {
        if let Some(user) = &stamp.user {
            e.set_attr("modifiedBy", user);
        }
        e.set_attr("modifiedTime", stamp.entry_time());
        e.set_attr("modifiedEventId", stamp.event());
    }
    changed
}

/// A new entry for a file the catalog lacks, with its size.
pub(super) fn new_entry(catalog: &Catalog, stamp: &Stamp, (rel, len, digest): (&str, u64, Option<&str>)) -> Element {
    let mut e = catalog.new_entry(rel);
    e.attrs.push(("ID".into(), rel.to_owned()));
    e.attrs.push(("cachePath".into(), rel.to_owned()));
    e.attrs.push(("name".into(), rel.rsplit('/').next().unwrap_or(rel).to_owned()));
    e.attrs.push(("createdTime".into(), stamp.entry_time().to_owned()));
    e.attrs.push(("createdEventId".into(), stamp.event().to_owned()));
    if let Some(user) = &stamp.user {
        e.attrs.push(("createdBy".into(), user.clone()));
    }
    if let Some(d) = digest {
        e.attrs.push(("digest".into(), d.to_owned()));
    }
    e.children.push(Node::Element(size_meta_fields(catalog, len)));
    e
}

/// `<cat:metaFields><cat:metaField name="SIZE">len</cat:metaField></cat:metaFields>` in the catalog's prefix.
fn size_meta_fields(catalog: &Catalog, len: u64) -> Element {
    let cat = catalog.cat();
    let mut fields = Element::new(format!("{cat}metaFields"));
    let mut field = Element::new(format!("{cat}metaField"));
    field.attrs.push(("name".into(), "SIZE".into()));
    field.children.push(Node::Text(len.to_string()));
    fields.children.push(Node::Element(field));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::RelPath;
    use crate::model::catalog_stream::StreamedCatalog;
    use crate::refresh::index::entry_key;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// The probe and the real entry agree on every entry of real catalogs (and odd ones), for every update a
    /// refresh makes: same or other size, same, other or no digest, with and without a user.
    #[test]
    fn the_probe_answers_as_the_entry_would() {
        let odd = br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:entries>
            <cat:entry URI="a" ID="a" cachePath="a" name="a" createdTime="t" createdEventId="1" createdBy="u" digest="d"><cat:metaFields><cat:metaField name="SIZE">5</cat:metaField></cat:metaFields></cat:entry>
            <cat:entry URI="./x/b" ID="x/b" cachePath="x/b" name="b" createdTime=" " digest=" d "><cat:metaFields><cat:metaField name="SIZE">+5</cat:metaField></cat:metaFields></cat:entry>
            <cat:entry URI="c" format="DICOM" xsi:type="cat:dcmEntry" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>
            </cat:entries></cat:Catalog>"#;
        let users = [Stamp::now(Some(3), Some("admin".into())), Stamp::now(None, None)];
        let mut checked = 0;
        for bytes in [fixture("scan_4_catalog.xml"), fixture("DEBUG_OUTPUT_catalog.xml"), odd.to_vec()] {
            let tree = Catalog::parse(&bytes).unwrap();
            let mut facts = Vec::new();
            StreamedCatalog::read(&bytes[..], &mut |h| {
                let key = entry_key(&|n| h.attr(n), &RelPath::root()).unwrap();
                facts.push((Facts::of(h, &key), key));
            })
            .unwrap();
            // No sets in these: the tree's order is the document's.
            for (loc, (facts, key)) in tree.entry_locs().iter().zip(&facts).take(300) {
                let stored = facts.digest.as_deref();
                let size = tree.entry(loc).meta_field("SIZE").and_then(|s| s.parse().ok()).unwrap_or(5u64);
                for stamp in &users {
                    for len in [size, size + 1] {
                        for digest in [stored, Some("other"), None] {
                            let update = (key.as_str(), len, digest);
                            let dicom = facts.has(Facts::DICOM);
                            let mut el = tree.entry(loc).element().clone();
                            let real = update_entry(&mut EntryMut::new(&mut el, tree.cat()), stamp, update, dicom);
                            let probed = update_entry(&mut Probe { facts, key }, stamp, update, dicom);
                            assert_eq!(probed, real, "{key} {update:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 3000, "{checked}");
    }
}
