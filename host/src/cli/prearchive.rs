//! The prearchive service (XNAT's /data/prearchive): `prearchive list` as a table, XNAT's JSON or CSV, and
//! the batch commands `delete`, `move` and `reset-status`, which report each session and go on.
//!
//! Not for archiving sessions (`archive.rs`) nor for exit codes (`exit.rs`).

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde::Serialize;
use xnat_archive::{Error, Grant, Limits, PrearchiveRow, Runtime};

use super::args::{ListArgs, MoveArgs, SrcArgs};
use super::output::{plural, print_csv, print_keyed, print_result_set, print_table};
use super::{exit, grants};

/// `xnat-archive prearchive list`.
pub fn list(runtime: &Runtime, limits: &Limits, args: ListArgs) -> anyhow::Result<ExitCode> {
    // Listing only reads: the grant is always read-only.
    let grant = grants::prearchive(&args.prearchive, false)?;
    let rows = runtime.prearchive_list(&[grant], limits, args.project.as_deref())??;
    if args.json {
        print_result_set(&rows)?;
    } else if args.csv {
        print_csv(&PrearchiveRow::COLUMNS, rows.iter().map(PrearchiveRow::values))?;
    } else {
        print_rows(&rows, args.project.as_deref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The readable listing: the columns that tell sessions apart; `--json` and `--csv` have all 19.
pub fn print_rows(rows: &[PrearchiveRow], project: Option<&str>) -> io::Result<()> {
    if rows.is_empty() {
        match project {
            Some(p) => out!("no sessions in project {p} of the prearchive"),
            None => out!("the prearchive holds no sessions"),
        }
        return Ok(());
    }
    let header = ["PROJECT", "TIMESTAMP", "FOLDER", "SUBJECT", "SESSION", "SCAN DATE", "STATUS"];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|r| [&r.project, &r.timestamp, &r.folder_name, &r.subject, &r.name, &r.scan_date, &r.status].map(|s| &**s))
        .collect();
    print_table(&header, &cells)?;
    out!("{} session{}", rows.len(), plural(rows.len()));
    Ok(())
}

/// `xnat-archive prearchive delete`.
pub fn delete(runtime: &Runtime, limits: &Limits, args: SrcArgs) -> anyhow::Result<ExitCode> {
    let describe = |src: &str, (): &()| format!("deleted {src}");
    batch(&args, "deleted", describe, None, |grant, src| {
        runtime.prearchive_delete(std::slice::from_ref(grant), limits, src)
    })
}

/// `xnat-archive prearchive move`.
pub fn move_sessions(runtime: &Runtime, limits: &Limits, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let project = args.new_project;
    let describe = |src: &str, row: &PrearchiveRow| format!("moved {src} -> {} ({})", row.url, row.status);
    batch(&args.sessions, "moved", describe, Some(the_row), |grant, src| {
        runtime.prearchive_move(std::slice::from_ref(grant), limits, src, &project)
    })
}

/// `xnat-archive prearchive reset-status`.
pub fn reset(runtime: &Runtime, limits: &Limits, args: SrcArgs) -> anyhow::Result<ExitCode> {
    let describe = |src: &str, row: &PrearchiveRow| format!("reset {src}: {}", row.status);
    batch(&args, "reset", describe, Some(the_row), |grant, src| {
        runtime.prearchive_reset_status(std::slice::from_ref(grant), limits, src)
    })
}

/// `xnat-archive prearchive commit`.
pub fn commit(runtime: &Runtime, limits: &Limits, args: SrcArgs) -> anyhow::Result<ExitCode> {
    let describe = |src: &str, row: &PrearchiveRow| format!("built {src}: {}", row.status);
    batch(&args, "build", describe, Some(the_row), |grant, src| {
        runtime.prearchive_commit(std::slice::from_ref(grant), limits, src)
    })
}

/// The row a command answered with, for [`batch`].
fn the_row(row: &PrearchiveRow) -> &PrearchiveRow {
    row
}

/// One session's outcome of a batch, for `--json`.
#[derive(Serialize)]
struct SessionOutcome<'a> {
    src: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<Option<&'a PrearchiveRow>>,
    error: Option<&'a Error>,
}

/// Runs `call` for each `src` under a writable prearchive grant. Without `--json` it prints each success
/// (`describe`) and failure as it comes; with it, one JSON list under `key` at the end, each entry with its
/// session's `row` when the command answers with one. Ends with the exit code of the first failure.
fn batch<T>(
    args: &SrcArgs,
    key: &str,
    describe: impl Fn(&str, &T) -> String,
    row: Option<fn(&T) -> &PrearchiveRow>,
    mut call: impl FnMut(&Grant, &str) -> anyhow::Result<Result<T, Error>>,
) -> anyhow::Result<ExitCode> {
    let grant = grants::prearchive(&args.prearchive, true)?;
    let mut results = Vec::new();
    let mut first = None;
    for src in &args.src {
        let result = call(&grant, src)?;
        match &result {
            Ok(value) if !args.json => out!("{}", describe(src, value)),
            Ok(_) => {}
            Err(e) => {
                if !args.json {
                    eprintln!("error: {src}: {}", e.message());
                    eprintln!("({}, HTTP {})", e.kind(), e.http_status());
                }
                first.get_or_insert_with(|| exit::code(e));
            }
        }
        results.push((src, result));
    }
    if args.json {
        let outcomes: Vec<SessionOutcome> = results
            .iter()
            .map(|(src, r)| SessionOutcome {
                src,
                row: row.map(|row| r.as_ref().ok().map(row)),
                error: r.as_ref().err(),
            })
            .collect();
        print_keyed(key, &outcomes)?;
    }
    Ok(first.unwrap_or(ExitCode::SUCCESS))
}
