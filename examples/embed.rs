//! The library component embedded in a Rust program: the prearchive listing of one directory.
//!
//!     cargo run --release --example embed -- /data/xnat/prearchive [PROJECT]

use std::time::Duration;

use xnat_archive::{Grant, Limits, Runtime};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: embed PREARCHIVE_DIR [PROJECT]"))?;
    let project = args.next();

    let runtime = Runtime::new()?; // the component embedded in xnat-archive, compiled once per process
    let grants = [Grant::prearchive(dir, false)]; // seen at /prearchive, read-only: listing writes nothing
    let limits = Limits { memory_bytes: 256 << 20, timeout: Some(Duration::from_secs(30)) };

    // The outer `?`: the host failed (grant, trap, limit). The inner result: the component's answer.
    match runtime.prearchive_list(&grants, &limits, project.as_deref())? {
        Ok(rows) => {
            for row in rows {
                println!("{:<10} {}/{}/{}", row.status, row.project, row.timestamp, row.folder_name);
            }
        }
        Err(e) => anyhow::bail!("the component refused: {e} (HTTP {})", e.http_status()),
    }
    Ok(())
}
