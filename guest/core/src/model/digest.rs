//! File digests as XNAT stores them in `cat:entry/@digest`: lowercase hex MD5 by default (D5), SHA-256
//! on request. Files are streamed through one reusable buffer, so memory does not grow with file size.
//!
//! Inside the component, a host that offers it (WIT `digests`) computes a batch of digests natively and in
//! parallel over files beneath a folder descriptor the component lends ([`HostDigests`]); with a host that
//! does not, for a tree outside the preopens and in native code, files are hashed here, one after another.

use crate::error::{Error, Result};
use crate::fs::tree::{RelPath, Tree};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::io::Read;

/// The buffer size for hashing: large reads amortise the per-call cost of the WASI boundary.
pub const BUFFER_SIZE: usize = 1 << 20;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// XNAT's digest (32 hex digits).
    #[default]
    Md5,
    /// 64 hex digits.
    Sha256,
}

impl Algorithm {
    /// The algorithm a stored digest was made with, told by its length; `None` if it is not hex of either length.
    pub fn of_stored(digest: &str) -> Option<Algorithm> {
        if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match digest.len() {
            32 => Some(Algorithm::Md5),
            64 => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

/// Files of at most this many bytes in all, and at most [`BATCH_FILES`], are hashed in one batch: a batch
/// is long enough to keep every core of a host busy and short enough to renew a lock between batches.
pub const BATCH_BYTES: u64 = 64 << 20;
/// See [`BATCH_BYTES`].
pub const BATCH_FILES: usize = 64;

/// The host's digests (WIT `digests`), as the adapter binds them: whether it computes digests at all, and the
/// digests of files below a folder descriptor the component lends (paths relative to it), in order.
#[cfg(target_os = "wasi")]
#[derive(Debug, Clone, Copy)]
pub struct HostDigests {
    pub computes: fn() -> bool,
    pub digest_files: fn(&wasi::filesystem::types::Descriptor, &[String], Algorithm) -> Vec<HostDigest>,
}

/// One file's digest from the host, or why it could not read the file.
#[cfg(target_os = "wasi")]
pub type HostDigest = std::result::Result<String, String>;

/// Hashes files: one reusable buffer, and the host's digests when it offers them.
pub struct Hasher {
    buf: Vec<u8>,
    /// The host's digests, when it computes them.
    #[cfg(target_os = "wasi")]
    host: Option<HostDigests>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            buf: vec![0; BUFFER_SIZE],
            #[cfg(target_os = "wasi")]
            host: None,
        }
    }
}

impl Hasher {
    /// A hasher that leaves the hashing to the host when it computes digests (asked here, once; the
    /// component adapters bind `host` to their WIT import).
    #[cfg(target_os = "wasi")]
    pub fn with_host(host: HostDigests) -> Hasher {
        Hasher { host: (host.computes)().then_some(host), ..Hasher::default() }
    }

    /// The digests of a batch of files, in order (see [`BATCH_BYTES`] for a good batch). The first file
    /// that cannot be read fails the batch.
    pub fn files(&mut self, tree: &Tree, files: &[(RelPath, Algorithm)]) -> Result<Vec<String>> {
        #[cfg(target_os = "wasi")]
        if let Some(digests) = self.on_host(tree, files) {
            return digests;
        }
        files.iter().map(|(rel, alg)| self.file(tree, rel, *alg, &mut |_| {})).collect()
    }

    /// The batch's digests from the host, one call per algorithm; `None` when the host does not compute
    /// them or the tree is not below a preopen.
    #[cfg(target_os = "wasi")]
    fn on_host(&self, tree: &Tree, files: &[(RelPath, Algorithm)]) -> Option<Result<Vec<String>>> {
        let host = self.host?;
        let root = tree.root().to_str()?;
        crate::fs::in_preopen(root, |folder, below| {
            let mut out = vec![String::new(); files.len()];
            for alg in [Algorithm::Md5, Algorithm::Sha256] {
                let picked: Vec<usize> = (0..files.len()).filter(|&i| files[i].1 == alg).collect();
                if picked.is_empty() {
                    continue;
                }
                let paths: Vec<String> =
                    picked.iter().map(|&i| crate::fs::below_preopen(below, files[i].0.as_str())).collect();
                let digests = (host.digest_files)(folder, &paths, alg);
                if digests.len() != picked.len() {
                    return Err(Error::Io(format!(
                        "the host answered {} digests for {} files; report this to whoever runs the host",
                        digests.len(),
                        picked.len()
                    )));
                }
                for (&i, digest) in picked.iter().zip(digests) {
                    out[i] = match digest {
                        Ok(d) if Algorithm::of_stored(&d) == Some(alg) => d.to_ascii_lowercase(),
                        Ok(d) => {
                            return Err(Error::Io(format!(
                                "the host answered {d:?} as the {alg:?} digest of {}, which is not one; report \
                                 this to whoever runs the host",
                                files[i].0
                            )));
                        }
                        Err(e) => return Err(Error::io(files[i].0.as_str(), &std::io::Error::other(e))),
                    };
                }
            }
            Ok(out)
        })
    }

    /// The lowercase hex digest of a file, read to its end. `on_bytes` hears how much was read.
    pub fn file(
        &mut self,
        tree: &Tree,
        rel: &RelPath,
        alg: Algorithm,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<String> {
        let mut f = tree.open(rel)?;
        let mut read = |update: &mut dyn FnMut(&[u8])| -> Result<()> {
            loop {
                let n = match f.read(&mut self.buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(rel.as_str(), &e)),
                };
                update(&self.buf[..n]);
                on_bytes(n as u64);
            }
        };
        Ok(match alg {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                read(&mut |b| h.update(b))?;
                hex::encode(h.finalize())
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                read(&mut |b| h.update(b))?;
                hex::encode(h.finalize())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_hashed_in_order_with_each_files_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        std::fs::write(dir.path().join("b"), b"b").unwrap();
        let tree = Tree::new(dir.path());
        let rel = |s| RelPath::new(s).unwrap();
        let got = Hasher::default()
            .files(&tree, &[(rel("a"), Algorithm::Sha256), (rel("b"), Algorithm::Md5), (rel("a"), Algorithm::Md5)])
            .unwrap();
        assert_eq!(
            got,
            [hex::encode(Sha256::digest(b"a")), hex::encode(Md5::digest(b"b")), hex::encode(Md5::digest(b"a"))]
        );
        let gone = Hasher::default().files(&tree, &[(rel("a"), Algorithm::Md5), (rel("c"), Algorithm::Md5)]);
        assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
    }

    #[test]
    fn known_digests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zeros"), vec![0u8; 4096]).unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; BUFFER_SIZE * 2 + 3]).unwrap();
        let tree = Tree::new(dir.path());
        let mut h = Hasher::default();
        let mut total = 0;
        let zeros = RelPath::new("zeros").unwrap();
        assert_eq!(
            h.file(&tree, &zeros, Algorithm::Md5, &mut |n| total += n).unwrap(),
            "620f0b67a91f7f74151bc5be745b7110"
        );
        assert_eq!(total, 4096);
        assert_eq!(
            h.file(&tree, &zeros, Algorithm::Sha256, &mut |_| {}).unwrap(),
            "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7"
        );
        let big = h.file(&tree, &RelPath::new("big").unwrap(), Algorithm::Md5, &mut |_| {}).unwrap();
        assert_eq!(big, hex::encode(Md5::digest(vec![7u8; BUFFER_SIZE * 2 + 3])));
        assert_eq!(Algorithm::of_stored("620f0b67a91f7f74151bc5be745b7110"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::of_stored(&"a".repeat(64)), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::of_stored("xyz"), None);
    }
}
