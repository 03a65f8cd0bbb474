//! File digests as XNAT stores them in `cat:entry/@digest`: lowercase hex MD5 by default (D5), SHA-256
//! on request. Files are streamed through one reusable buffer, so memory does not grow with file size.

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

/// A reusable hashing buffer (one per worker).
pub struct Hasher {
    buf: Vec<u8>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher { buf: vec![0; BUFFER_SIZE] }
    }
}

impl Hasher {
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
