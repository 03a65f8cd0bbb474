//! A granted directory tree, addressed only by checked relative paths.
//!
//! This is the authority the logic works with: every function that touches files takes a [`Tree`], and
//! every path it takes is a [`RelPath`] that cannot name anything outside the tree (`..`, absolute paths
//! and empty segments are refused when the path is built). Inside the component the WASI sandbox enforces
//! the same boundary again; natively (tests, benchmarks) the tree is a plain directory.
//!
//! (cap-std, which would carry this authority as a directory handle, does not build for
//! `wasm32-wasip2` on stable Rust: its `io-lifetimes` dependency needs the unstable `wasip2` std feature.)

use crate::error::{Error, Result};
use crate::fs::instances::Instances;
use crate::fs::wasi_dir::Failure;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A directory the host granted, e.g. the archive at `/archive` inside the component.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    /// What the host knows about the instances that take locks in this tree, when it says.
    instances: Option<Instances>,
    /// The host's folder listings, when it offers them.
    #[cfg(target_os = "wasi")]
    listing: Option<super::HostListing>,
    /// The host's renames, when it offers them.
    #[cfg(target_os = "wasi")]
    renames: Option<super::HostRenames>,
}

/// A relative path inside a [`Tree`]: `/`-separated, no `.`, `..` or empty segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(String);

/// A map keyed by paths is looked up by their text: the derived `Hash` and `Eq` are the `String`'s, so the
/// same as `str`'s.
impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl RelPath {
    /// The tree's root itself.
    pub fn root() -> RelPath {
        RelPath(String::new())
    }

    /// Checks a path. Refuses anything that could leave the tree.
    pub fn new(path: &str) -> Result<RelPath> {
        RelPath::root().join_path(path)
    }

    /// One more segment, which must be a plain file or folder name.
    pub fn join(&self, segment: &str) -> Result<RelPath> {
        check_segment(segment)?;
        Ok(self.joined(segment))
    }

    /// Several segments (`a/b/c`), each checked.
    pub fn join_path(&self, rel: &str) -> Result<RelPath> {
        rel.split('/').try_for_each(check_segment)?;
        Ok(self.joined(rel))
    }

    /// `rel`, whose names are checked, after this path.
    fn joined(&self, rel: &str) -> RelPath {
        let mut path = String::with_capacity(self.0.len() + 1 + rel.len());
        path.push_str(&self.0);
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(rel);
        RelPath(path)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The text of the folder it is in (empty at the root) and its name, without a path made for the folder.
    pub fn split_name(&self) -> (&str, &str) {
        self.0.rsplit_once('/').unwrap_or(("", &self.0))
    }

    pub fn parent(&self) -> RelPath {
        RelPath(self.0.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_string()))
    }

    /// The part of `self` below `base`, if `self` is inside it.
    pub fn strip_prefix(&self, base: &RelPath) -> Option<&str> {
        if base.is_root() {
            return Some(&self.0);
        }
        let rest = self.0.strip_prefix(&base.0)?;
        if rest.is_empty() { Some("") } else { rest.strip_prefix('/') }
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "." } else { &self.0 })
    }
}

/// `name` below the `/`-separated relative path `prefix` (empty: `name` itself), as walks build the paths of
/// the files they meet (without `format!`: this runs for every file of a tree).
pub fn path_below(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        return name.to_string();
    }
    let mut path = String::with_capacity(prefix.len() + 1 + name.len());
    path.push_str(prefix);
    path.push('/');
    path.push_str(name);
    path
}

/// A plain name: not empty, not `.` or `..`, no separators or NUL.
pub fn check_segment(segment: &str) -> Result<()> {
    // `memchr3`: this runs for every path a plan or a journal makes (a merge of 10,000 files: 20,000 names).
    let separator = memchr::memchr3(b'/', b'\\', 0, segment.as_bytes()).is_some();
    if segment.is_empty() || segment == "." || segment == ".." || separator {
        return Err(Error::BadRequest(format!(
            "{segment:?} is not a plain file or folder name; paths must stay inside the granted directory"
        )));
    }
    if segment.len() > NAME_MAX {
        return Err(Error::BadRequest(format!(
            "a name of {} bytes ({}...) is longer than a file or folder name can be ({NAME_MAX} bytes)",
            segment.len(),
            segment.chars().take(32).collect::<String>()
        )));
    }
    Ok(())
}

/// The longest file or folder name common file systems hold, in bytes.
pub const NAME_MAX: usize = 255;

/// What a directory walk saw at one path (symbolic links are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File {
        len: u64,
    },
    Dir,
    Symlink,
    Other,
    /// An entry whose name is not UTF-8 (shown lossily): it cannot be addressed, read or cataloged.
    NotUtf8,
}

/// What a listing can tell of a regular file to show, next time, that it has not changed: its size, its
/// modification time, its status-change time as the runtime reports it (natively and from the host's listings
/// the inode's ctime, which no tool can set back; wasmtime's own `stat` reports the birth time there) and its
/// identity (device and inode, or the runtime's hash of them). `None` where the platform gives nothing: such a
/// file is never taken as unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub len: u64,
    pub modified_ns: Option<u64>,
    pub changed_ns: Option<u64>,
    pub identity: Option<(u64, u64)>,
}

/// One entry of a folder: its name, what it is and, when asked for, a regular file's stamp.
pub type Listed = (String, Kind, Option<FileStamp>);

/// How much of each regular file's [`FileStamp`] a listing takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamps {
    /// None: the listing gives names, kinds and sizes.
    None,
    /// Size and times from the one look a listing takes at each file anyway; the identity only where it
    /// comes with them (natively), never at the price of a second look inside the component.
    Times,
    /// Everything, the identity included (inside the component, one more look at each file).
    Full,
}

impl Tree {
    pub fn new(root: impl Into<PathBuf>) -> Tree {
        Tree {
            root: root.into(),
            instances: None,
            #[cfg(target_os = "wasi")]
            listing: None,
            #[cfg(target_os = "wasi")]
            renames: None,
        }
    }

    /// The same tree, listed by the host where it offers that (WIT `listings`; see [`super::HostListing`]).
    #[cfg(target_os = "wasi")]
    pub fn with_listing(self, listing: super::HostListing) -> Tree {
        Tree { listing: Some(listing), ..self }
    }

    /// The host's listings, if it offers them.
    #[cfg(target_os = "wasi")]
    pub(super) fn listing(&self) -> Option<super::HostListing> {
        self.listing
    }

    /// A mark of the folder `rel` and of its folders down to `depth` (those whose names begin with `.` left
    /// out) which changes whenever anything in them is created, removed, renamed, written or has its
    /// attributes set: equal marks from two calls mean nothing there changed in between. `None` unless the
    /// host watches them (WIT `listings.watch-tree`; never outside the component).
    pub fn watch(&self, rel: &RelPath, depth: u32) -> Option<String> {
        #[cfg(target_os = "wasi")]
        {
            let host = self.listing.filter(super::wasi_dir::host_lists)?;
            let path = self.path(rel);
            super::wasi_dir::in_preopen(path.to_str()?, |folder, rest| (host.watch_tree)(folder, rest, depth))?
        }
        #[cfg(not(target_os = "wasi"))]
        {
            let _ = (rel, depth);
            None
        }
    }

    /// The same tree, its files moved by the host where it offers that (WIT `renames`; see
    /// [`super::HostRenames`]).
    #[cfg(target_os = "wasi")]
    pub fn with_renames(self, renames: super::HostRenames) -> Tree {
        Tree { renames: Some(renames), ..self }
    }

    /// The host's renames, if it offers them.
    #[cfg(target_os = "wasi")]
    pub(crate) fn renames(&self) -> Option<super::HostRenames> {
        self.renames
    }

    /// The same tree, with the host's knowledge of instances for the locks taken in it.
    pub fn with_instances(self, instances: Instances) -> Tree {
        Tree { instances: Some(instances), ..self }
    }

    /// The host's knowledge of instances, if it gave any.
    pub fn instances(&self) -> Option<Instances> {
        self.instances
    }

    /// The host-side path (inside the component: the guest path) of `rel`.
    pub fn path(&self, rel: &RelPath) -> PathBuf {
        if rel.is_root() { self.root.clone() } else { self.root.join(&rel.0) }
    }

    /// What is at `rel`, without following a link; `None` when nothing is.
    pub fn kind(&self, rel: &RelPath) -> Result<Option<Kind>> {
        match fs::symlink_metadata(self.path(rel)) {
            Ok(m) => Ok(Some(kind_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(rel.as_str(), &e)),
        }
    }

    pub fn is_dir(&self, rel: &RelPath) -> Result<bool> {
        Ok(matches!(self.kind(rel)?, Some(Kind::Dir)))
    }

    /// The entries of a folder, sorted by name, with what each is.
    pub fn list(&self, rel: &RelPath) -> Result<Vec<(String, Kind)>> {
        Ok(self.list_with(rel, Stamps::None)?.into_iter().map(|(name, kind, _)| (name, kind)).collect())
    }

    /// [`Tree::list`], with every regular file's [`FileStamp`] as far as `stamps` asks.
    pub fn list_with(&self, rel: &RelPath, stamps: Stamps) -> Result<Vec<Listed>> {
        // Other processes add and remove files here while we list (locks, temporary files). An entry that
        // went between the listing and its stat is skipped; a listing the runtime itself breaks off because
        // an entry vanished (wasmtime stats every entry as it reads the directory, and reports one that
        // went as an error of the whole read) is started again, a bounded number of times.
        let mut restarts = 10;
        loop {
            let failure = match self.list_once(rel, stamps) {
                Ok(mut out) => {
                    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    return Ok(out);
                }
                Err(Failure::Vanished) if restarts > 0 => {
                    restarts -= 1;
                    continue;
                }
                Err(failure) => failure,
            };
            return Err(match failure {
                // Inside the component the runtime cannot hand over a name that is not UTF-8 (WASI names are
                // strings): it reports EILSEQ and ends the listing there, so what follows is unknown. A
                // partial listing must never pass for a whole one (refresh would delete entries).
                Failure::NotUtf8 => Error::Io(format!(
                    "cannot list {rel}: a name in it is not valid UTF-8, and the WebAssembly runtime cannot \
                     list the folder past it; rename that file (nothing was changed)"
                )),
                Failure::Vanished => {
                    Error::Io(format!("cannot list {rel}: its entries kept changing while it was read; try again"))
                }
                Failure::Io(e) => Error::io(rel.as_str(), &e),
            });
        }
    }

    /// One reading of a folder's entries, unsorted: inside the component from the host's listing or straight
    /// from the runtime (see [`super::wasi_dir`]), elsewhere through std.
    fn list_once(&self, rel: &RelPath, stamps: Stamps) -> std::result::Result<Vec<Listed>, Failure> {
        #[cfg(target_os = "wasi")]
        if let Some(listed) = self.path(rel).to_str().and_then(|p| super::wasi_dir::list(p, stamps, self.listing)) {
            return listed;
        }
        let rd = fs::read_dir(self.path(rel)).map_err(Failure::Io)?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Failure::Vanished),
                Err(e) if is_illegal_byte_sequence(&e) => return Err(Failure::NotUtf8),
                Err(e) => return Err(Failure::Io(e)),
            };
            let name = match entry.file_name().into_string() {
                Ok(name) => name,
                // Listed (so that walks can report it), never addressable: no RelPath names it.
                Err(raw) => {
                    out.push((raw.to_string_lossy().into_owned(), Kind::NotUtf8, None));
                    continue;
                }
            };
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Failure::Io(e)),
            };
            let (kind, stamp) = if kind.is_symlink() {
                (Kind::Symlink, None)
            } else if kind.is_dir() {
                (Kind::Dir, None)
            } else if kind.is_file() {
                match entry.metadata() {
                    Ok(m) => (Kind::File { len: m.len() }, (stamps != Stamps::None).then(|| native_stamp(&m))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Failure::Io(e)),
                }
            } else {
                (Kind::Other, None)
            };
            out.push((name, kind, stamp));
        }
        Ok(out)
    }

    /// The whole content of a regular file; a FIFO, socket or device is refused (`not_special`).
    /// Inside the component a regular file is read straight on its preopen's descriptor (`wasi_dir::read_file`).
    pub fn read(&self, rel: &RelPath) -> Result<Vec<u8>> {
        #[cfg(target_os = "wasi")]
        if let Some((bytes, _)) = self.path(rel).to_str().and_then(super::wasi_dir::read_file) {
            return Ok(bytes);
        }
        let _ = self.not_special(rel)?;
        fs::read(self.path(rel)).map_err(|e| Error::io(rel.as_str(), &e))
    }

    /// [`Tree::read`], with the file's modification time (milliseconds since 1970) from the same look at it.
    pub fn read_stamped(&self, rel: &RelPath) -> Result<(Vec<u8>, Option<i64>)> {
        #[cfg(target_os = "wasi")]
        if let Some((bytes, modified)) = self.path(rel).to_str().and_then(super::wasi_dir::read_file) {
            return Ok((bytes, modified.map(|ns| (ns / 1_000_000) as i64)));
        }
        let modified = self
            .not_special(rel)?
            .and_then(|m| m.modified().ok())
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64));
        Ok((fs::read(self.path(rel)).map_err(|e| Error::io(rel.as_str(), &e))?, modified))
    }

    /// Opens a file for streaming reads.
    pub fn open(&self, rel: &RelPath) -> Result<fs::File> {
        let _ = self.not_special(rel)?;
        fs::File::open(self.path(rel)).map_err(|e| Error::io(rel.as_str(), &e))
    }

    /// A FIFO, socket or device where a file is read is refused: opening a FIFO blocks until a writer comes
    /// (forever: one planted in place of a session document hung the whole prearchive listing), and a
    /// device never ends. A missing entry or a folder is left to the open, which reports it as before.
    /// What it found, when it found something.
    fn not_special(&self, rel: &RelPath) -> Result<Option<fs::Metadata>> {
        match fs::metadata(self.path(rel)) {
            Ok(m) if !m.is_file() && !m.is_dir() => {
                Err(Error::Io(format!("{rel} is not a regular file (a FIFO, socket or device); it was not read")))
            }
            found => Ok(found.ok()),
        }
    }

    /// Creates a folder and its missing parents. Other processes may be creating the same folders at the same
    /// moment (concurrent archives into one project): each level is made or found as it is, never judged
    /// by a second look, and a level that is missing after all is walked again (a few times) before the
    /// error is reported. std's version failed that way under the component (CI: "DEMO/subjects does not
    /// exist" with eight archives at once).
    pub fn create_dir_all(&self, rel: &RelPath) -> Result<()> {
        let mut retries = 5;
        'walk: loop {
            let mut path = self.root.clone();
            for segment in rel.0.split('/').filter(|s| !s.is_empty()) {
                path.push(segment);
                match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                            return Err(Error::Conflict(format!(
                                "{rel} cannot be created: {} is in the way and is not a folder; move it aside",
                                path.strip_prefix(&self.root).unwrap_or(&path).display()
                            )));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound && retries > 0 => {
                        retries -= 1;
                        continue 'walk;
                    }
                    Err(e) => return Err(Error::io(rel.as_str(), &e)),
                }
            }
            return Ok(());
        }
    }

    /// Creates a folder that must not exist yet; `Conflict` if it does.
    pub fn create_dir_new(&self, rel: &RelPath) -> Result<()> {
        match fs::create_dir(self.path(rel)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Conflict(format!("{rel} already exists"))),
            Err(e) => Err(Error::io(rel.as_str(), &e)),
        }
    }

    /// Writes a whole file atomically: a temporary file beside it, flushed to disk, renamed over it.
    /// Readers see the old or the new content, never a part; the original is never truncated.
    pub fn write_atomic(&self, rel: &RelPath, bytes: &[u8]) -> Result<()> {
        self.write_atomic_with(rel, &mut |f| f.write_all(bytes).map_err(|e| Error::io(rel.as_str(), &e)))
    }

    /// A whole file replaced as [`Tree::write_atomic`] replaces it, without waiting for it to reach the disk
    /// (no `fsync`): for a cache whose readers check all they read. After a crash of the machine it may hold
    /// the old content, or be empty or damaged, which its readers must take for no cache at all.
    pub fn write_cache(&self, rel: &RelPath, bytes: &[u8]) -> Result<()> {
        let write = &mut |f: &mut dyn Write| f.write_all(bytes).map_err(|e| Error::io(rel.as_str(), &e));
        self.replacement(rel, Durable::No, write)?.put_in_place()
    }

    /// [`Tree::write_atomic`] of what `write` writes into the temporary file, piece by piece (a large catalog
    /// is never whole in memory). When `write` fails, the temporary file is removed and the file is untouched.
    pub fn write_atomic_with(&self, rel: &RelPath, write: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<()> {
        self.write_beside(rel, write)?.put_in_place()
    }

    /// The first half of [`Tree::write_atomic_with`]: what `write` writes, whole in a temporary file beside
    /// `rel` and flushed to disk, to be put in place later ([`Replacement::put_in_place`]) — or removed, when it
    /// is dropped. When `write` fails, nothing is left behind.
    pub fn write_beside(
        &self,
        rel: &RelPath,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<Replacement<'_>> {
        self.replacement(rel, Durable::Yes, write)
    }

    /// What `write` writes, whole in a temporary file beside `rel` (flushed to disk when `durable`), to be put
    /// in place or removed when dropped.
    fn replacement(
        &self,
        rel: &RelPath,
        durable: Durable,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<Replacement<'_>> {
        let tmp = self.temp_beside(rel)?;
        let replacement = Replacement { tree: self, tmp, rel: rel.clone(), placed: false };
        self.write_temp(&replacement.tmp, rel, durable, write)?;
        Ok(replacement)
    }

    /// Creates a file that must not exist (O_EXCL); false when it already exists.
    pub fn create_new(&self, rel: &RelPath, bytes: &[u8]) -> Result<bool> {
        match fs::OpenOptions::new().write(true).create_new(true).open(self.path(rel)) {
            Ok(mut f) => {
                f.write_all(bytes).map_err(|e| Error::io(rel.as_str(), &e))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(rel.as_str(), &e)),
        }
    }

    /// Moves `from` in this tree to `to` in `dest` (the same tree or another grant) by one rename.
    /// Fails with `Io` if the two lie on different file systems; nothing is moved then.
    pub fn rename_to(&self, from: &RelPath, dest: &Tree, to: &RelPath) -> Result<()> {
        fs::rename(self.path(from), dest.path(to)).map_err(|e| Error::io(&format!("moving {from} to {to}"), &e))
    }

    /// Removes a folder and everything in it.
    pub fn remove_dir_all(&self, rel: &RelPath) -> Result<()> {
        fs::remove_dir_all(self.path(rel)).map_err(|e| Error::io(rel.as_str(), &e))
    }

    /// Removes a folder if it is empty; true when it was removed.
    pub fn remove_dir_if_empty(&self, rel: &RelPath) -> Result<bool> {
        if rel.is_root() {
            return Ok(false);
        }
        match fs::remove_dir(self.path(rel)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
            // WASI's ENOTEMPTY (errno 55) is not mapped to `DirectoryNotEmpty` by std on wasm32-wasip2.
            Err(_) if fs::read_dir(self.path(rel)).is_ok_and(|mut d| d.next().is_some()) => Ok(false),
            Err(e) => Err(Error::io(rel.as_str(), &e)),
        }
    }

    /// When `rel` was last modified (seconds and milliseconds since the epoch), without following links.
    pub fn modified_millis(&self, rel: &RelPath) -> Result<i64> {
        #[cfg(target_os = "wasi")]
        if let Some(ns) = self.path(rel).to_str().and_then(super::wasi_dir::modified_ns) {
            return Ok((ns / 1_000_000) as i64);
        }
        let m = fs::symlink_metadata(self.path(rel)).map_err(|e| Error::io(rel.as_str(), &e))?;
        let t = m.modified().map_err(|e| Error::io(rel.as_str(), &e))?;
        Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
    }

    /// Creates a file that must not exist, with its whole content at once: written to a temporary file
    /// first (flushed to disk when `durable`), then hard-linked into place (which fails if the name exists).
    /// Readers never see it partly written. False when it already exists.
    pub fn create_new_complete(&self, rel: &RelPath, bytes: &[u8], durable: Durable) -> Result<bool> {
        let tmp = self.temp_beside(rel)?;
        let result = self
            .write_temp(&tmp, rel, durable, &mut |f| f.write_all(bytes).map_err(|e| Error::io(rel.as_str(), &e)))
            .and_then(|()| match fs::hard_link(self.path(&tmp), self.path(rel)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io(rel.as_str(), &e)),
            });
        let _ = fs::remove_file(self.path(&tmp));
        result
    }

    /// A unique temporary name beside `rel` (hidden, so listings and refresh skip it), naming the instance
    /// that writes it when the host names one (and the name stays short enough), so that a temporary file
    /// left by an instance that died mid-write can be told from one still being written ([`temp_writer`]).
    fn temp_beside(&self, rel: &RelPath) -> Result<RelPath> {
        let writer = self.instances.map(|i| i.this_name()).unwrap_or_default();
        let writer = if rel.name().len() + writer.len() > 180 { String::new() } else { writer };
        rel.parent().join(&format!("{TEMP_PREFIX}{}.{writer}.{}", rel.name(), unique()))
    }

    /// Removes the temporary files in `dir` among `names` that were to become `target` and whose writing
    /// instance the host knows is gone (it died mid-write: nobody will finish them). How many it removed.
    pub fn remove_orphaned_temps<'n>(
        &self,
        dir: &RelPath,
        target: &str,
        names: impl Iterator<Item = &'n str>,
    ) -> usize {
        let Some(instances) = self.instances else { return 0 };
        let mut removed = 0;
        for name in names {
            if let Some((of, writer)) = temp_writer(name)
                && of == target
                && instances.is_gone(writer)
                && let Ok(path) = dir.join(name)
                && fs::remove_file(self.path(&path)).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Writes a new temporary file whole, and flushes it to disk when `durable`.
    /// (What `write` writes, buffered; errors name `rel`, the file it is for.)
    fn write_temp(
        &self,
        tmp: &RelPath,
        rel: &RelPath,
        durable: Durable,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let io_error = |e: io::Error| Error::io(rel.as_str(), &e);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(self.path(tmp)).map_err(io_error)?;
        let mut buffered = io::BufWriter::with_capacity(1 << 16, &mut f);
        write(&mut buffered)?;
        buffered.flush().map_err(io_error)?;
        drop(buffered);
        match durable {
            Durable::Yes => f.sync_all().map_err(io_error),
            Durable::No => Ok(()),
        }
    }

    /// Links an existing file under a second name that must not exist yet (false when it does).
    pub fn hard_link(&self, existing: &RelPath, new: &RelPath) -> Result<bool> {
        match fs::hard_link(self.path(existing), self.path(new)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(new.as_str(), &e)),
        }
    }

    pub fn remove_file(&self, rel: &RelPath) -> Result<()> {
        fs::remove_file(self.path(rel)).map_err(|e| Error::io(rel.as_str(), &e))
    }

    /// The root as given (for messages only).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A file written whole beside the one it is to replace ([`Tree::write_beside`]), not in place yet. Dropped
/// before [`Replacement::put_in_place`], it is removed.
pub struct Replacement<'t> {
    tree: &'t Tree,
    tmp: RelPath,
    rel: RelPath,
    placed: bool,
}

impl Replacement<'_> {
    /// Renames the file over the one it replaces, at once: readers see the old content or the new.
    pub fn put_in_place(mut self) -> Result<()> {
        fs::rename(self.tree.path(&self.tmp), self.tree.path(&self.rel))
            .map_err(|e| Error::io(self.rel.as_str(), &e))?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for Replacement<'_> {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(self.tree.path(&self.tmp));
        }
    }
}

/// Whether a file written whole must reach the disk before it is put in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durable {
    Yes,
    /// A file nothing needs after a crash of the machine, whose readers take a damaged one for none: a
    /// cache, a lock.
    No,
}

/// EILSEQ: 84 on Linux, 25 in WASI (wasi-libc's numbering).
fn is_illegal_byte_sequence(e: &io::Error) -> bool {
    let code = if cfg!(target_os = "wasi") { 25 } else { 84 };
    e.raw_os_error() == Some(code)
}

/// Names starting with this are our own temporary files; walks never catalog them.
pub const TEMP_PREFIX: &str = ".~xnat-tmp-";

/// A file's stamp from std's metadata (on Unix with the inode's ctime and identity).
fn native_stamp(m: &fs::Metadata) -> FileStamp {
    let ns = |t: io::Result<std::time::SystemTime>| {
        t.ok()?.duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_nanos()).ok())
    };
    #[cfg(unix)]
    let (changed_ns, identity) = {
        use std::os::unix::fs::MetadataExt;
        let ctime = u64::try_from(m.ctime()).ok().map(|s| s * 1_000_000_000 + m.ctime_nsec() as u64);
        (ctime, Some((m.dev(), m.ino())))
    };
    #[cfg(not(unix))]
    let (changed_ns, identity) = (None, None);
    FileStamp { len: m.len(), modified_ns: ns(m.modified()), changed_ns, identity }
}

fn kind_of(m: &fs::Metadata) -> Kind {
    let t = m.file_type();
    if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File { len: m.len() }
    } else {
        Kind::Other
    }
}

/// A name part unique within this process and very likely across processes.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", N.fetch_add(1, Ordering::Relaxed))
}

/// The file a temporary file (by its name) was written to become, and the instance that wrote it (empty when
/// unknown); `None` for any other name.
pub fn temp_writer(name: &str) -> Option<(&str, &str)> {
    let mut parts = name.strip_prefix(TEMP_PREFIX)?.rsplitn(3, '.');
    let (_unique, writer, target) = (parts.next()?, parts.next()?, parts.next()?);
    Some((target, writer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_a_prefix() {
        assert_eq!(path_below("", "a.dcm"), "a.dcm");
        assert_eq!(path_below("d/e", "a.dcm"), "d/e/a.dcm");
    }

    #[test]
    fn a_path_joins_plain_names_only() {
        let root = RelPath::root();
        let p = RelPath::new("P/arc001").unwrap();
        assert_eq!(root.join_path("a/b.dcm").unwrap().as_str(), "a/b.dcm");
        assert_eq!(p.join_path("SCANS/1/x y.dcm").unwrap().as_str(), "P/arc001/SCANS/1/x y.dcm");
        assert_eq!(p.join_path("SCANS/1").unwrap(), p.join("SCANS").unwrap().join("1").unwrap());
        for bad in ["", "a/../b", "..", "a//b", "a/", "/a", "./a", "a\\b", "a\0b", &"n".repeat(NAME_MAX + 1)] {
            assert!(matches!(p.join_path(bad), Err(Error::BadRequest(_))), "{bad:?} was joined");
        }
        // One name: a separator anywhere in it, in a short name or a long one, is refused.
        let long = "1.2.840.113619.2.55.3.604688119.969".repeat(2);
        for sep in ["/", "\\", "\0"] {
            for bad in
                [format!("a{sep}b"), format!("{long}{sep}"), format!("{sep}{long}"), format!("{long}{sep}{long}")]
            {
                assert!(matches!(p.join(&bad), Err(Error::BadRequest(_))), "{bad:?} was joined");
            }
        }
        assert_eq!(p.join(&long).unwrap().name(), long);
    }

    #[test]
    fn a_temporary_file_left_by_a_dead_writer_is_told_from_a_live_ones() {
        assert_eq!(temp_writer(".~xnat-tmp-a.b_catalog.xml.boot-1-2.ff01"), Some(("a.b_catalog.xml", "boot-1-2")));
        assert_eq!(temp_writer(".~xnat-tmp-x.xml..ff"), Some(("x.xml", "")));
        assert_eq!(temp_writer("x.xml"), None);
        let d = tempfile::tempdir().unwrap();
        let instances = Instances { this: || "me".into(), alive: |n| Some(n != "dead") };
        let tree = Tree::new(d.path()).with_instances(instances);
        let cat = RelPath::new("R_catalog.xml").unwrap();
        tree.write_atomic(&cat, b"x").unwrap();
        let names = [
            ".~xnat-tmp-R_catalog.xml.dead.1",
            ".~xnat-tmp-R_catalog.xml.me.2",
            ".~xnat-tmp-R_catalog.xml..3",
            ".~xnat-tmp-other.xml.dead.4",
        ];
        for n in names {
            fs::write(d.path().join(n), b"part").unwrap();
        }
        assert_eq!(tree.remove_orphaned_temps(&RelPath::root(), "R_catalog.xml", names.into_iter()), 1);
        assert!(!d.path().join(names[0]).exists());
        assert!(names[1..].iter().all(|n| d.path().join(n).exists()));
    }

    #[test]
    fn paths_cannot_leave_the_tree() {
        for bad in ["..", "a/../b", "/etc", "a//b", "./a", "a/", "a\\b", "a\0"] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
        }
        let p = RelPath::new("P/arc001/S 1/é").unwrap();
        assert_eq!(p.name(), "é");
        assert_eq!(p.parent().as_str(), "P/arc001/S 1");
        assert_eq!(p.strip_prefix(&RelPath::new("P/arc001").unwrap()), Some("S 1/é"));
        assert_eq!(p.strip_prefix(&RelPath::new("P/arc").unwrap()), None);
    }

    #[test]
    fn folders_made_by_many_at_once_and_files_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        let rel = RelPath::new("P/subjects/deep/er").unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| tree.create_dir_all(&rel).unwrap());
            }
        });
        assert!(tree.is_dir(&rel).unwrap());
        tree.create_dir_all(&rel).unwrap();
        fs::write(dir.path().join("P/file"), b"x").unwrap();
        let Err(Error::Conflict(m)) = tree.create_dir_all(&RelPath::new("P/file/x").unwrap()) else { panic!() };
        assert!(m.contains("P/file is in the way"), "{m}");
        assert!(tree.create_dir_all(&RelPath::root()).is_ok());
    }

    #[test]
    fn listing_skips_entries_that_vanish_meanwhile() {
        // Another process releasing locks while we list (the CI failure of concurrent archives): files come
        // and go; a listing must never fail because one of them went between read_dir and stat.
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (root, stop) = (dir.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for i in 0..64 {
                        let _ = fs::write(root.join(format!(".{i}.lock")), b"x");
                    }
                    for i in 0..64 {
                        let _ = fs::remove_file(root.join(format!(".{i}.lock")));
                    }
                }
            })
        };
        let result = (0..2000).try_for_each(|_| tree.list(&RelPath::root()).map(drop));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        result.unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        let f = RelPath::new("a.xml").unwrap();
        tree.write_atomic(&f, b"one").unwrap();
        tree.write_atomic(&f, b"two").unwrap();
        assert_eq!(tree.read(&f).unwrap(), b"two");
        assert_eq!(tree.list(&RelPath::root()).unwrap().len(), 1);
        assert!(tree.create_new(&RelPath::new("l").unwrap(), b"x").unwrap());
        assert!(tree.create_new_complete(&RelPath::new("c").unwrap(), b"whole", Durable::Yes).unwrap());
        assert!(!tree.create_new_complete(&RelPath::new("c").unwrap(), b"other", Durable::No).unwrap());
        assert_eq!(tree.read(&RelPath::new("c").unwrap()).unwrap(), b"whole");
        assert!(!tree.create_new(&RelPath::new("l").unwrap(), b"x").unwrap());
    }

    #[test]
    fn a_stamped_read_gives_the_modification_time_of_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        let f = RelPath::new("doc.xml").unwrap();
        tree.write_atomic(&f, b"<a/>").unwrap();
        let (bytes, modified) = tree.read_stamped(&f).unwrap();
        assert_eq!((bytes.as_slice(), modified), (&b"<a/>"[..], Some(tree.modified_millis(&f).unwrap())));
        assert!(matches!(tree.read_stamped(&RelPath::new("none").unwrap()), Err(Error::NotFound(_))));
    }
}
