//! A session's files as its catalogs list them and as they are on disk: the catalogs below a folder, a
//! catalog's entries, the files below a folder. Shared by the checks and the merge plan; reads only.

use crate::error::Result;
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::model::catalog::Catalog;
use std::collections::HashMap;

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
    let mut found = Vec::new();
    entries_below(tree, folder, prefix, &mut found)?;
    out.extend(found.into_iter().map(|(rel, _)| rel));
    Ok(())
}

/// Everything below `folder` but folders, as paths relative to it with what each is (one listing per
/// folder: a regular file is stat-ed once, nothing is opened).
pub fn entries_below(tree: &Tree, folder: &RelPath, prefix: &str, out: &mut Vec<(String, Kind)>) -> Result<()> {
    if !tree.is_dir(folder)? {
        return Ok(());
    }
    for (name, kind) in tree.list(folder)? {
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        match kind {
            Kind::Dir => entries_below(tree, &folder.join(&name)?, &rel, out)?,
            _ => out.push((rel, kind)),
        }
    }
    Ok(())
}

/// The regular files below a catalog's folder with their sizes, from one listing of each folder, for
/// checking a catalog's entries without a look at each entry's file.
pub struct FilesBelow {
    folder: RelPath,
    sizes: HashMap<String, u64>,
}

impl FilesBelow {
    pub fn list(tree: &Tree, folder: &RelPath) -> Result<FilesBelow> {
        let mut found = Vec::new();
        entries_below(tree, folder, "", &mut found)?;
        let sizes = found
            .into_iter()
            .filter_map(|(rel, kind)| match kind {
                Kind::File { len } => Some((rel, len)),
                _ => None,
            })
            .collect();
        Ok(FilesBelow { folder: folder.clone(), sizes })
    }

    /// The size of the regular file an entry's URI (relative to the folder, `./` removed) names; `None` when
    /// it names none or leaves the folder. A file the listing did not show is looked at on its own (one
    /// behind a linked folder, which the listing does not enter).
    pub fn file_len(&self, tree: &Tree, uri: &str) -> Result<Option<u64>> {
        let Ok(path) = self.folder.join_path(uri) else { return Ok(None) };
        if let Some(len) = self.sizes.get(uri) {
            return Ok(Some(*len));
        }
        Ok(match tree.kind(&path)? {
            Some(Kind::File { len }) => Some(len),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_below_answer_from_one_listing_and_look_at_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let res = dir.path().join("R");
        std::fs::create_dir_all(res.join("sub")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::fs::write(res.join("a.dcm"), b"abc").unwrap();
        std::fs::write(res.join("sub/b.dcm"), b"bb").unwrap();
        std::fs::write(dir.path().join("elsewhere/c.dcm"), b"c").unwrap();
        std::fs::write(dir.path().join("outside.dcm"), b"o").unwrap();
        std::os::unix::fs::symlink("../elsewhere", res.join("linked")).unwrap();
        std::os::unix::fs::symlink("a.dcm", res.join("alias.dcm")).unwrap();
        let tree = Tree::new(dir.path());
        let files = FilesBelow::list(&tree, &RelPath::new("R").unwrap()).unwrap();
        assert_eq!(files.file_len(&tree, "a.dcm").unwrap(), Some(3));
        assert_eq!(files.file_len(&tree, "sub/b.dcm").unwrap(), Some(2));
        // Behind a linked folder: not in the listing, found by its own look (as before the listing).
        assert_eq!(files.file_len(&tree, "linked/c.dcm").unwrap(), Some(1));
        // A link is not a regular file; nothing missing, outside or malformed is one.
        for uri in ["alias.dcm", "missing.dcm", "sub", "../outside.dcm", "sub//b.dcm", "/etc/passwd"] {
            assert_eq!(files.file_len(&tree, uri).unwrap(), None, "{uri}");
        }
    }
}
