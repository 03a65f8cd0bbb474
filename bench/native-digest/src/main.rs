//! `native-digest md5|sha256 FILE`: prints the lowercase hex digest of FILE, as `md5sum` does (digest,
//! two spaces, path). Streams through one reused 1 MiB buffer, like the component's `Hasher`.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::fs::File;
use std::io::{self, Read};
use std::process::ExitCode;

const BUFFER_SIZE: usize = 1 << 20;

fn stream(path: &str, update: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn digest(alg: &str, path: &str) -> io::Result<Option<String>> {
    Ok(Some(match alg {
        "md5" => {
            let mut h = Md5::new();
            stream(path, &mut |b| h.update(b))?;
            hex::encode(h.finalize())
        }
        "sha256" => {
            let mut h = Sha256::new();
            stream(path, &mut |b| h.update(b))?;
            hex::encode(h.finalize())
        }
        _ => return Ok(None),
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [alg, path] = args.as_slice() else {
        eprintln!("usage: native-digest md5|sha256 FILE");
        return ExitCode::from(2);
    };
    match digest(alg, path) {
        Ok(Some(hex)) => {
            println!("{hex}  {path}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("unknown algorithm {alg:?}: use md5 or sha256");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::from(1)
        }
    }
}
