//! An upload on its way in: the body written to a staging folder of the prearchive
//! (`<prearchive>/.xnat-archive/uploads/<id>/`), then taken apart one file at a time — a zip entry by
//! entry, a single file as it is — each file copied into the staging folder with its size and MD5 counted,
//! for [`crate::receive::session`] to place.
//!
//! A zip is checked whole before any of it is taken: names that leave the folder (`../`, absolute paths,
//! drive letters) or are encrypted refuse the upload, as does a declared expansion beyond the bound; then,
//! as each entry is copied, its real size must be the declared one (a lying header is a zip bomb) and its
//! CRC must match. Nothing is placed from a zip that fails these checks.

use crate::error::{Error, Result};
use crate::fs::tree::{RelPath, Tree};
use md5::{Digest, Md5};
use std::io::{BufReader, Read, Write};

/// The folder of uploads in progress, under the prearchive.
pub const UPLOADS: &str = ".xnat-archive/uploads";

/// How far a zip may expand: to `ratio` times its own size or `floor` bytes, whichever is more, and never
/// more than `entries` files.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub ratio: u64,
    pub floor: u64,
    pub entries: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        // DICOM compresses 2–4× (pixel data) and up to ~50× (blank images); deflate's own ceiling is ~1,030×.
        Bounds { ratio: 100, floor: 1 << 30, entries: 1_000_000 }
    }
}

impl Bounds {
    fn limit(&self, zip_len: u64) -> u64 {
        zip_len.saturating_mul(self.ratio).max(self.floor)
    }
}

/// One file of the upload, copied into the staging folder.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Where it is now (in the staging folder).
    pub path: RelPath,
    /// Its name in the upload (the zip entry's path, or the single file's name).
    pub source: String,
    pub size: u64,
    pub md5: String,
}

/// A staging folder of its own for one upload: `<prearchive>/.xnat-archive/uploads/<id>`. Removed by
/// [`Staging::remove`] (or, after a crash, by a later upload: see [`Staging::unique`]).
pub struct Staging<'a> {
    tree: &'a Tree,
    dir: RelPath,
    next: usize,
}

impl<'a> Staging<'a> {
    pub fn new(tree: &'a Tree, id: &str) -> Result<Staging<'a>> {
        let dir = RelPath::new(UPLOADS)?.join(id)?;
        tree.create_dir_all(&dir.parent())?;
        tree.create_dir_new(&dir)?;
        Ok(Staging { tree, dir, next: 0 })
    }

    /// A staging folder with a name no other upload has (the time in nanoseconds, then a counter). Staging
    /// folders untouched for a day (left by an import that was killed) are removed first.
    pub fn unique(tree: &'a Tree) -> Result<Staging<'a>> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        remove_abandoned(tree, now.as_millis() as i64 - ABANDONED_MILLIS);
        let stamp = now.as_nanos();
        for n in 0..1000 {
            match Staging::new(tree, &format!("{stamp}-{n}")) {
                Err(Error::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(Error::Conflict("no free staging folder for the upload; try again".into()))
    }

    pub fn dir(&self) -> &RelPath {
        &self.dir
    }

    /// Where the upload's body goes.
    pub fn body(&self) -> RelPath {
        self.dir.join("body").expect("a plain name")
    }

    /// Copies `reader` into a new staging file (at most `limit` bytes: more is an error), counting its size
    /// and MD5.
    pub fn copy(&mut self, source: &str, reader: &mut dyn Read, limit: u64) -> Result<Staged> {
        self.next += 1;
        let path = self.dir.join(&format!("file-{}", self.next))?;
        let (size, md5) = write_counted(self.tree, &path, reader, limit)?;
        Ok(Staged { path, source: source.to_string(), size, md5 })
    }

    pub fn remove(self) {
        let _ = self.tree.remove_dir_all(&self.dir);
    }
}

/// A staging folder not modified for this long belongs to an import that was killed.
const ABANDONED_MILLIS: i64 = 24 * 3600 * 1000;

/// Removes the staging folders last modified before `before` (milliseconds since the epoch). Best effort:
/// what cannot be listed or removed now is left for the next upload.
fn remove_abandoned(tree: &Tree, before: i64) {
    let Ok(uploads) = RelPath::new(UPLOADS) else { return };
    let Ok(listed) = tree.list(&uploads) else { return };
    for (name, kind) in listed {
        let Ok(dir) = uploads.join(&name) else { continue };
        if kind == crate::fs::tree::Kind::Dir && tree.modified_millis(&dir).is_ok_and(|m| m < before) {
            let _ = tree.remove_dir_all(&dir);
        }
    }
}

/// Writes what `reader` gives into `path` (a new file), at most `limit` bytes; returns the size and MD5.
pub fn write_counted(tree: &Tree, path: &RelPath, reader: &mut dyn Read, limit: u64) -> Result<(u64, String)> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tree.path(path))
        .map_err(|e| Error::io(path.as_str(), &e))?;
    let mut md5 = Md5::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::BadRequest(format!("the upload cannot be read: {e}"))),
        };
        size += n as u64;
        if size > limit {
            return Err(Error::BadRequest(format!(
                "the upload expands beyond its bound ({limit} bytes); a zip bomb is refused — split the upload"
            )));
        }
        md5.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| Error::io(path.as_str(), &e))?;
    }
    file.flush().map_err(|e| Error::io(path.as_str(), &e))?;
    Ok((size, hex::encode(md5.finalize())))
}

/// Takes the zip at `body` apart: checks every entry's name and the declared expansion first, then copies
/// the files one at a time into `staging` and hands each to `take` (which places it and may refuse it).
/// Folders are skipped, as are the resource forks macOS adds (`__MACOSX/`, `._*`, `.DS_Store`).
pub fn each_zip_entry(
    tree: &Tree,
    body: &RelPath,
    staging: &mut Staging<'_>,
    bounds: Bounds,
    take: &mut dyn FnMut(Staged) -> Result<()>,
) -> Result<()> {
    let file = tree.open(body)?;
    let zip_len = file.metadata().map_err(|e| Error::io(body.as_str(), &e))?.len();
    let mut zip = zip::ZipArchive::new(BufReader::with_capacity(64 * 1024, file))
        .map_err(|e| Error::BadRequest(format!("the upload is not a readable zip ({e}); send a zip of DICOM files")))?;
    if zip.len() > bounds.entries {
        return Err(Error::BadRequest(format!(
            "the zip holds {} entries, more than the {} one upload may hold; split it",
            zip.len(),
            bounds.entries
        )));
    }
    let limit = bounds.limit(zip_len);
    let mut declared = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| Error::BadRequest(format!("zip entry {i} cannot be read: {e}")))?;
        let name =
            entry.name().map_or_else(|_| String::from_utf8_lossy(entry.name_raw()).into_owned(), |n| n.into_owned());
        if entry.enclosed_name().is_none() || name.starts_with('/') || name.starts_with('\\') || name.contains(":\\") {
            return Err(Error::BadRequest(format!(
                "zip entry {name:?} names a path outside the upload (absolute, or through '..'); nothing was imported"
            )));
        }
        if entry.encrypted() {
            return Err(Error::BadRequest(format!(
                "zip entry {name:?} is encrypted; upload an unencrypted zip. Nothing was imported"
            )));
        }
        declared = declared.saturating_add(entry.size());
    }
    if declared > limit {
        return Err(Error::BadRequest(format!(
            "the zip declares {declared} bytes of contents from {zip_len} bytes, beyond the bound of {limit} \
             ({}× its size, or {} bytes); a zip bomb is refused. Nothing was imported",
            bounds.ratio, bounds.floor
        )));
    }
    let mut taken = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Error::BadRequest(format!("zip entry {i} cannot be read ({e}); the zip is damaged")))?;
        let name =
            entry.name().map_or_else(|_| String::from_utf8_lossy(entry.name_raw()).into_owned(), |n| n.into_owned());
        if entry.is_dir() || skipped(&name) {
            continue;
        }
        let want = entry.size();
        let staged = staging.copy(&name, &mut entry, want.min(limit.saturating_sub(taken))).map_err(|e| match e {
            Error::BadRequest(why) => Error::BadRequest(format!("zip entry {name:?}: {why}")),
            other => other,
        })?;
        if staged.size != want {
            return Err(Error::BadRequest(format!(
                "zip entry {name:?} holds {} bytes but declares {want}; the zip is damaged or forged",
                staged.size
            )));
        }
        taken += staged.size;
        drop(entry);
        take(staged)?;
    }
    Ok(())
}

/// Entries no DICOM sender means: macOS's resource forks and folder settings.
fn skipped(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    name.starts_with("__MACOSX/") || last.starts_with("._") || last == ".DS_Store"
}

/// Whether bytes start like a zip (a local file header, or an empty zip's end record).
pub fn looks_like_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_staging_folders_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        let old = Staging::new(&tree, "old").unwrap();
        let old_dir = tree.path(old.dir());
        std::fs::write(old_dir.join("body"), b"x").unwrap();
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(25 * 3600);
        std::fs::File::open(&old_dir).unwrap().set_modified(day_ago).unwrap();
        let live = Staging::new(&tree, "live").unwrap();
        let fresh = Staging::unique(&tree).unwrap();
        assert!(!old_dir.exists(), "a folder untouched for a day is removed");
        assert!(tree.path(live.dir()).exists() && tree.path(fresh.dir()).exists());
    }
}
