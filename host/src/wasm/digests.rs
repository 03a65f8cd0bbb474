//! The host's answer to the component's WIT `digests.digest-files`: MD5 or SHA-256 of files the component
//! opened and lends for the call, computed natively (SHA-256 with the processor's SHA instructions where it
//! has them) on as many threads as the machine has cores, one file per thread at a time.
//!
//! The host opens nothing: it reads the very descriptors the component opened under its own grant, with
//! positioned reads (the descriptors' own positions are untouched), and only those opened for reading.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::Descriptor;

/// The digest algorithms of the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Sha256,
}

/// Bytes read at a time by each thread.
const BUFFER: usize = 1 << 20;

/// The lowercase hex digest of each lent file, in order, or why it could not be read.
pub(crate) fn digest_files(
    table: &ResourceTable,
    files: &[Resource<Descriptor>],
    algorithm: Algorithm,
) -> Vec<Result<String, String>> {
    let opened: Vec<Result<Arc<std::fs::File>, String>> = files.iter().map(|f| readable(table, f)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(opened.len());
    if threads <= 1 {
        let mut buf = vec![0; BUFFER];
        return opened.iter().map(|f| digest(f.as_ref()?, algorithm, &mut buf)).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<Result<String, String>> = vec![Ok(String::new()); opened.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0; BUFFER];
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = opened.get(i) else { return done };
                        done.push((
                            i,
                            file.as_ref().map_err(Clone::clone).and_then(|f| digest(f, algorithm, &mut buf)),
                        ));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A worker only panics if hashing itself does; the files it had are reported, not lost.
            match worker.join() {
                Ok(done) => done.into_iter().for_each(|(i, r)| out[i] = r),
                Err(_) => {
                    return out.iter_mut().for_each(|r| *r = Err("the host's hashing thread failed".into()));
                }
            }
        }
    });
    out
}

/// The open file behind a lent descriptor, if it was opened for reading.
fn readable(table: &ResourceTable, file: &Resource<Descriptor>) -> Result<Arc<std::fs::File>, String> {
    match table.get(file) {
        Ok(Descriptor::File(f)) if f.open_mode.contains(OpenMode::READ) => Ok(Arc::clone(&f.file)),
        Ok(Descriptor::File(_)) => Err("the file was not opened for reading".into()),
        Ok(Descriptor::Dir(_)) => Err("a folder has no digest".into()),
        Err(e) => Err(format!("not a descriptor of this instance ({e})")),
    }
}

fn digest(file: &std::fs::File, algorithm: Algorithm, buf: &mut [u8]) -> Result<String, String> {
    match algorithm {
        Algorithm::Md5 => hash::<Md5>(file, buf),
        Algorithm::Sha256 => hash::<Sha256>(file, buf),
    }
}

fn hash<D: Digest>(file: &std::fs::File, buf: &mut [u8]) -> Result<String, String> {
    let mut d = D::new();
    let mut at = 0u64;
    loop {
        match read_at(file, buf, at) {
            Ok(0) => return Ok(hex::encode(d.finalize())),
            Ok(n) => {
                d.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
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
    use wasmtime_wasi::FsPerms;

    fn lend(table: &mut ResourceTable, path: &std::path::Path, mode: OpenMode) -> Resource<Descriptor> {
        let file = std::fs::File::open(path).unwrap();
        let d = wasmtime_wasi::filesystem::File::new(file, FsPerms::ReadWrite, mode, true);
        table.push(Descriptor::File(d)).unwrap()
    }

    #[test]
    fn digests_in_order_on_every_thread_and_errors_in_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ResourceTable::new();
        let mut files = Vec::new();
        let mut expected = Vec::new();
        for i in 0..9usize {
            let bytes = vec![i as u8; i * 300_001];
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, &bytes).unwrap();
            files.push(lend(&mut table, &path, OpenMode::READ));
            expected.push(Ok(hex::encode(Sha256::digest(&bytes))));
        }
        files.push(lend(&mut table, &dir.path().join("f1"), OpenMode::WRITE));
        expected.push(Err("the file was not opened for reading".to_string()));
        assert_eq!(digest_files(&table, &files, Algorithm::Sha256), expected);
        let md5 = digest_files(&table, &files[2..3], Algorithm::Md5);
        assert_eq!(md5, [Ok(hex::encode(Md5::digest(vec![2u8; 600_002])))]);
    }
}
