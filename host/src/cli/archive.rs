//! The archive services: `validate` (XNAT's POST /data/services/validate-archive), `archive` (POST
//! /data/services/archive) and `recover` (finish or roll back interrupted archives), and how their results
//! read.
//!
//! Not for the prearchive's own commands (`prearchive.rs`) nor for exit codes (`exit.rs`).

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde::Serialize;
use xnat_archive::{
    ArchiveRequest, Archived, Limits, LockPolicy, Recovered, Runtime, TerminalProgress, ValidationNotice,
};

use super::args::{ArchiveArgs, RecoverArgs, ValidateArgs};
use super::output::{plural, print_keyed, print_result_set, print_table};
use super::{exit, grants};

/// A validation notice as XNAT's JSON has it: every value a string.
#[derive(Serialize)]
struct NoticeRow<'a> {
    code: String,
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// `xnat-archive validate`.
pub fn validate(runtime: &Runtime, limits: &Limits, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let s = &args.selection;
    let grants = grants::both(&s.prearchive, &s.archive, false)?;
    let notices = runtime.validate(&grants, limits, s.request())??;
    if s.json {
        let rows: Vec<NoticeRow> = notices
            .iter()
            .map(|n| NoticeRow { code: n.code.to_string(), kind: &n.kind, message: &n.message })
            .collect();
        print_result_set(&rows)?;
    } else {
        print_notices(&notices)?;
    }
    // The table is the answer, FAIL rows included.
    Ok(ExitCode::SUCCESS)
}

/// The notices as a table, their tally, and what they mean for archiving.
pub fn print_notices(notices: &[ValidationNotice]) -> io::Result<()> {
    if notices.is_empty() {
        out!("no notices: the session can be archived as requested");
        return Ok(());
    }
    let codes: Vec<String> = notices.iter().map(|n| n.code.to_string()).collect();
    let cells: Vec<[&str; 3]> = notices.iter().zip(&codes).map(|(n, c)| [c.as_str(), &n.kind, &n.message]).collect();
    print_table(&["CODE", "TYPE", "MESSAGE"], &cells)?;
    let count = |kind: &str| notices.iter().filter(|n| n.kind == kind).count();
    let (fails, warns, conflicts) = (count("FAIL"), count("WARN"), count("CONFLICT"));
    let n = notices.len();
    out!("{n} notice{}: {fails} FAIL, {warns} WARN, {conflicts} CONFLICT", plural(n));
    if fails > 0 {
        out!("the session cannot be archived as requested (FAIL)");
    } else if conflicts > 0 {
        out!("the session meets existing data: archive it with --overwrite append or delete");
    }
    Ok(())
}

/// `xnat-archive archive`.
pub fn archive(runtime: &Runtime, limits: &Limits, args: ArchiveArgs) -> anyhow::Result<ExitCode> {
    let s = &args.selection;
    let grants = grants::both(&s.prearchive, &s.archive, true)?;
    let request = ArchiveRequest {
        overwrite: args.overwrite,
        quarantine: args.quarantine,
        trigger_pipelines: args.trigger_pipelines,
        site_id: args.site_id.clone(),
        ..s.request()
    };
    let archived = runtime.archive(&grants, limits, request, TerminalProgress::new())??;
    if s.json {
        print_keyed("archived", &archived)?;
    } else {
        print_archived(&archived)?;
    }
    Ok(archived.iter().find_map(|a| a.error.as_ref()).map_or(ExitCode::SUCCESS, exit::code))
}

/// Each session's outcome, then the tally.
pub fn print_archived(archived: &[Archived]) -> io::Result<()> {
    for a in archived {
        out!("{}", a.src);
        match (&a.uri, &a.error) {
            (_, Some(e)) => out!("  failed    {} (HTTP {}): {}", e.kind(), e.http_status(), e.message()),
            (Some(uri), None) => out!("  archived  {uri}"),
            (None, None) => out!("  not archived (no reason given)"),
        }
    }
    let done = archived.iter().filter(|a| a.error.is_none() && a.uri.is_some()).count();
    let n = archived.len();
    out!("{n} session{}: {done} archived, {} not", plural(n), n - done);
    Ok(())
}

/// `xnat-archive recover`.
pub fn recover(runtime: &Runtime, limits: &Limits, args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let grants = grants::both(&args.prearchive, &args.archive, true)?;
    let locks = if args.respect_leases { LockPolicy::RespectLeases } else { LockPolicy::BreakAll };
    let recovered = runtime.recover(&grants, limits, locks)??;
    if args.json {
        print_keyed("recovered", &recovered)?;
    } else {
        print_recovered(&recovered)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_recovered(recovered: &[Recovered]) -> io::Result<()> {
    if recovered.is_empty() {
        out!("nothing to recover: no archive was interrupted");
    }
    for r in recovered {
        out!("{}", r.src);
        out!("  {}  {}", r.action, r.detail);
    }
    Ok(())
}
