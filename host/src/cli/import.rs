//! `xnat-archive import`: XNAT's POST /data/services/import from the command line — a zip of DICOM files
//! (or one file) sorted into prearchive sessions, archived with `--dest /archive/...` — and how its outcome
//! reads.
//!
//! Not for the prearchive's own commands (`prearchive.rs`) nor for exit codes (`exit.rs`).

use std::io::{self, Write as _};
use std::process::ExitCode;

use xnat_archive::{ImportOutcome, Limits, Runtime, TerminalProgress};

use super::args::ImportArgs;
use super::grants;
use super::output::{plural, print_keyed};

/// `xnat-archive import`.
pub fn run(runtime: &Runtime, limits: &Limits, args: ImportArgs) -> anyhow::Result<ExitCode> {
    if !args.file.is_file() {
        anyhow::bail!(
            "{} is not a file: name the zip of DICOM files (or the DICOM file) to import",
            args.file.display()
        );
    }
    let to_archive = args.dest.as_deref().is_some_and(|d| d.trim_start_matches("/data").starts_with("/archive"));
    let mut grants = vec![grants::prearchive(&args.prearchive, true)?];
    match &args.archive {
        Some(dir) => grants.push(grants::archive(dir, to_archive)?),
        None if to_archive => anyhow::bail!("--dest {} needs --archive DIR", args.dest.as_deref().unwrap_or("")),
        None => {}
    }
    let mut parameters = Vec::new();
    for (name, value) in [
        ("import-handler", &args.handler),
        ("dest", &args.dest),
        ("project", &args.project),
        ("subject", &args.subject),
        ("session", &args.session),
        ("overwrite", &args.overwrite),
    ] {
        if let Some(v) = value {
            parameters.push((name.to_string(), v.clone()));
        }
    }
    if args.ignore_unparsable {
        parameters.push(("Ignore-Unparsable".into(), "true".into()));
    }
    let file = std::path::absolute(&args.file)?;
    let outcome = runtime.import(&grants, limits, &file, &parameters, TerminalProgress::new())??;
    if args.json {
        print_keyed("import", &outcome)?;
    } else {
        print_outcome(&outcome)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The sessions' URIs, the files refused and why, and the tally.
pub fn print_outcome(o: &ImportOutcome) -> io::Result<()> {
    for uri in &o.uris {
        out!("{uri}");
    }
    for r in &o.refused {
        out!("  refused  {}: {}", r.file, r.reason);
    }
    let n = o.uris.len();
    out!(
        "{n} session{}: {} file{} imported, {} duplicate{} dropped, {} refused",
        plural(n),
        o.files,
        plural(o.files as usize),
        o.duplicates,
        plural(o.duplicates as usize),
        o.refused.len()
    );
    Ok(())
}
