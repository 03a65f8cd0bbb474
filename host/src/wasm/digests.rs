//! The host's answer to the component's WIT `digests`: MD5 or SHA-256 of files beneath a folder the component
//! lends for the call, computed natively (MD5 with AWS-LC's assembly, SHA-256 with the processor's SHA
//! instructions where it has them) on as many threads as the machine has cores, one file per thread at a time.
//!
//! The authority is the component's: the host opens files only beneath the folder descriptor it was lent
//! (cap-std; `..`, absolute paths and links leading out are refused, a link at the end is not followed), only
//! for reading and only when the folder was opened for reading, and hashes regular files only.

use crate::wasm::lent::readable_folder;
use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;

/// The digest algorithms of the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Sha256,
}

/// Bytes read at a time by each thread.
const BUFFER: usize = 1 << 20;

/// The lowercase hex digest of each file at `paths` beneath the lent `folder`, in order, or why it could not
/// be read.
pub(crate) fn digest_files(
    table: &ResourceTable,
    folder: &Resource<Descriptor>,
    paths: &[String],
    algorithm: Algorithm,
) -> Vec<Result<String, String>> {
    let dir = match readable_folder(table, folder) {
        Ok(dir) => dir,
        Err(why) => return vec![Err(why); paths.len()],
    };
    let one = |path: &String, buf: &mut [u8]| open(&dir, path).and_then(|f| digest(&f, algorithm, buf));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(paths.len());
    if threads <= 1 {
        let mut buf = vec![0; BUFFER];
        return paths.iter().map(|p| one(p, &mut buf)).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<Result<String, String>> = vec![Ok(String::new()); paths.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0; BUFFER];
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { return done };
                        done.push((i, one(path, &mut buf)));
                    }
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => done.into_iter().for_each(|(i, r)| out[i] = r),
                // Only hashing itself could panic; then no digest of the batch is trusted.
                Err(_) => {
                    return out.iter_mut().for_each(|r| *r = Err("the host's hashing thread failed".into()));
                }
            }
        }
    });
    out
}

/// A regular file beneath `dir`, opened for reading (without waiting on a FIFO, without following a link).
fn open(dir: &cap_std::fs::Dir, path: &str) -> Result<std::fs::File, String> {
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    #[cfg(unix)]
    cap_std::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = dir.open_with(path, &options).map_err(|e| e.to_string())?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file.into_std()),
        Ok(_) => Err("not a regular file".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn digest(file: &std::fs::File, algorithm: Algorithm, buf: &mut [u8]) -> Result<String, String> {
    match algorithm {
        Algorithm::Md5 => {
            let mut md5 = Md5::new();
            read_all(file, buf, |bytes| md5.update(bytes))?;
            Ok(hex::encode(md5.finish()))
        }
        Algorithm::Sha256 => {
            let mut sha = Sha256::new();
            read_all(file, buf, |bytes| sha.update(bytes))?;
            Ok(hex::encode(sha.finalize()))
        }
    }
}

/// Feeds the whole file to `update`, through `buf`, with positioned reads.
fn read_all(file: &std::fs::File, buf: &mut [u8], mut update: impl FnMut(&[u8])) -> Result<(), String> {
    let mut at = 0u64;
    loop {
        match read_at(file, buf, at) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// AWS-LC's MD5 (`MD5_Init`, `MD5_Update`, `MD5_Final` of its OpenSSL-compatible API).
struct Md5(aws_lc_sys::MD5_CTX);

impl Md5 {
    fn new() -> Md5 {
        // SAFETY: MD5_CTX is plain data (integers and a byte array) that MD5_Init sets in full; it never fails.
        unsafe {
            let mut ctx: aws_lc_sys::MD5_CTX = std::mem::zeroed();
            aws_lc_sys::MD5_Init(&mut ctx);
            Md5(ctx)
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        // SAFETY: the context was initialised by MD5_Init; the pointer and length describe `bytes`.
        unsafe { aws_lc_sys::MD5_Update(&mut self.0, bytes.as_ptr().cast(), bytes.len()) };
    }

    fn finish(mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: `out` has the 16 bytes MD5_Final writes; the context was initialised by MD5_Init.
        unsafe { aws_lc_sys::MD5_Final(out.as_mut_ptr(), &mut self.0) };
        out
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, at)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::{FsPerms, OpenMode};

    fn lend(table: &mut ResourceTable, dir: &std::path::Path, mode: OpenMode) -> Resource<Descriptor> {
        let dir = std::fs::File::open(dir).unwrap();
        table.push(Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(dir, FsPerms::ReadOnly, mode, true))).unwrap()
    }

    #[test]
    fn digests_in_order_on_every_thread_and_errors_in_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ResourceTable::new();
        let folder = lend(&mut table, dir.path(), OpenMode::READ);
        let (mut paths, mut expected) = (Vec::new(), Vec::new());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for i in 0..9usize {
            let bytes = vec![i as u8; i * 300_001];
            std::fs::write(dir.path().join(format!("sub/f{i}")), &bytes).unwrap();
            paths.push(format!("sub/f{i}"));
            expected.push(Ok(hex::encode(Sha256::digest(&bytes))));
        }
        let got = digest_files(&table, &folder, &paths, Algorithm::Sha256);
        assert_eq!(got, expected);
        let md5 = digest_files(&table, &folder, &paths, Algorithm::Md5);
        let native: Vec<_> =
            (0..9usize).map(|i| Ok(hex::encode(md5::Md5::digest(vec![i as u8; i * 300_001])))).collect();
        assert_eq!(md5, native);

        // Nothing outside the folder, no link at the end, no folder, no FIFO; each in its own place.
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("sub/f1", dir.path().join("in")).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let odd: Vec<String> =
            ["../x", "/etc/passwd", "out", "in", "sub", "fifo", "missing", "sub/f1"].map(String::from).to_vec();
        let got = digest_files(&table, &folder, &odd, Algorithm::Md5);
        assert!(got[..7].iter().all(Result::is_err), "{got:?}");
        assert_eq!(got[4], Err("not a regular file".to_string()));
        assert_eq!(got[7], Ok(hex::encode(md5::Md5::digest(vec![1u8; 300_001]))));

        // A folder lent without read access is refused for every file.
        let blind = lend(&mut table, dir.path(), OpenMode::WRITE);
        let got = digest_files(&table, &blind, &paths[..2], Algorithm::Md5);
        assert_eq!(got, vec![Err("the folder was not opened for reading".to_string()); 2]);
    }
}
