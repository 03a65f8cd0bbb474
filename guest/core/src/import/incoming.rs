//! A session's files as its catalogs list them and as they are on disk: the catalogs below a folder, a
//! catalog's entries, the files below a folder. Shared by the checks and the merge plan; reads only.

use crate::error::Result;
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::model::catalog::Catalog;

/// Every catalog file (by name or content) directly in a resource folder or below it.
pub fn find_catalogs(tree: &Tree, folder: &RelPath) -> Result<Vec<RelPath>> {
    let mut out = Vec::new();
    if !tree.is_dir(folder)? {
        return Ok(out);
    }
    for (name, kind) in tree.list(folder)? {
        let p = folder.join(&name)?;
        match kind {
            Kind::Dir => out.extend(find_catalogs(tree, &p)?),
            Kind::File { .. } if name.ends_with("_catalog.xml") => out.push(p),
            _ => {}
        }
    }
    Ok(out)
}

/// A catalog's entries as (path relative to the catalog folder, SOP UID, is dcmEntry).
pub fn catalog_entries(cat: &Catalog) -> Vec<(String, Option<String>, bool)> {
    cat.entry_locs()
        .iter()
        .map(|l| {
            let e = cat.entry(l);
            (
                e.uri().unwrap_or("").trim_start_matches("./").to_string(),
                e.attr("UID").filter(|u| !u.is_empty()).map(str::to_string),
                e.is_dicom(),
            )
        })
        .collect()
}

/// Every file below `folder`, as paths relative to it.
pub fn files_below(tree: &Tree, folder: &RelPath, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    if !tree.is_dir(folder)? {
        return Ok(());
    }
    for (name, kind) in tree.list(folder)? {
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        match kind {
            Kind::Dir => files_below(tree, &folder.join(&name)?, &rel, out)?,
            _ => out.push(rel),
        }
    }
    Ok(())
}
