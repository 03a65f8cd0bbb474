//! The catalogs service: `refresh` (XNAT's POST /data/services/refresh/catalog) and `resource create`
//! (PUT /data/archive/.../resources/LABEL), and how their results read.
//!
//! Not for the other services (`prearchive.rs`, `archive.rs`) nor for exit codes (`exit.rs`).

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde_json::json;
use xnat_archive::{
    DigestAlgorithm, Error, Limits, RefreshMode, RefreshOptions, RefreshRequest, ResourceOutcome, ResourceReport,
    ResourceSpec, Runtime, TerminalProgress, human_size,
};

use super::args::{CreateArgs, RefreshArgs};
use super::output::plural;
use super::{exit, grants};

/// How many paths of each kind the summary lists before it only counts.
const LISTED: usize = 10;

/// `xnat-archive refresh`.
pub fn refresh(runtime: &Runtime, limits: &Limits, args: RefreshArgs) -> anyhow::Result<ExitCode> {
    let request = request(&args)?;
    let grant = grants::archive(&args.archive, request.mode.writes())?;
    let mode = request.mode;
    let reports = runtime.refresh(&[grant], limits, request, TerminalProgress::new())??;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&json!({ "reports": reports }))?);
    } else {
        print_reports(&reports, mode)?;
    }
    Ok(first_failure(&reports).map_or(ExitCode::SUCCESS, exit::code))
}

/// The request the options ask for.
fn request(args: &RefreshArgs) -> Result<RefreshRequest, Error> {
    let mut options = RefreshOptions {
        append: args.append,
        checksum: args.checksum,
        delete: args.delete,
        populate_stats: args.populate_stats,
    };
    for list in &args.options {
        options = options.union(list.parse()?);
    }
    Ok(RefreshRequest {
        resources: args.resources.clone(),
        options,
        algorithm: if args.sha256 { DigestAlgorithm::Sha256 } else { DigestAlgorithm::Md5 },
        mode: if args.verify {
            RefreshMode::Verify
        } else if args.dry_run {
            RefreshMode::DryRun
        } else {
            RefreshMode::Apply
        },
        user: args.user.clone(),
        event_id: args.event_id,
        trust_unchanged: args.trust_unchanged,
    })
}

/// The error of the first resource that failed, if any.
pub fn first_failure(reports: &[ResourceReport]) -> Option<&Error> {
    reports.iter().find_map(|r| match &r.outcome {
        ResourceOutcome::Failed { error } => Some(error),
        _ => None,
    })
}

/// `xnat-archive resource create`.
pub fn create(runtime: &Runtime, limits: &Limits, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let grant = grants::archive(&args.archive, true)?;
    let spec = ResourceSpec {
        resource: args.resource,
        format: args.format,
        content: args.content,
        description: args.description,
        tags: args.tags.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
    };
    let created = runtime.create_resource(&[grant], limits, spec)??;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&json!({ "created": created }))?);
    } else {
        out!("created {}", created.resource);
        out!("  folder   {}", created.folder);
        out!("  catalog  {}", created.catalog);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every resource's report, then the tally and what the mode means.
pub fn print_reports(reports: &[ResourceReport], mode: RefreshMode) -> io::Result<()> {
    for report in reports {
        print_report(report)?;
    }
    let count = |f: fn(&ResourceOutcome) -> bool| reports.iter().filter(|r| f(&r.outcome)).count();
    let mut tally = vec![format!("{} resource{}", reports.len(), plural(reports.len()))];
    for (label, n) in [
        ("written", count(|o| matches!(o, ResourceOutcome::Written))),
        ("unchanged", count(|o| matches!(o, ResourceOutcome::Unchanged))),
        ("not written", count(|o| matches!(o, ResourceOutcome::NotWritten))),
        ("skipped", count(|o| matches!(o, ResourceOutcome::Skipped { .. }))),
        ("failed", count(|o| matches!(o, ResourceOutcome::Failed { .. }))),
    ] {
        if n > 0 {
            tally.push(format!("{n} {label}"));
        }
    }
    out!("{}", tally.join(", "));
    match mode {
        RefreshMode::Apply => {}
        RefreshMode::DryRun => out!("dry run: nothing was written"),
        RefreshMode::Verify => {
            let differing = reports.iter().filter(|r| !r.is_clean()).count();
            if differing == 0 {
                out!("verify: clean, every catalog matches the disk");
            } else {
                out!("verify: {differing} of {} resources differ from the disk (nothing was written)", reports.len());
            }
        }
    }
    Ok(())
}

fn print_report(r: &ResourceReport) -> io::Result<()> {
    out!("{}", r.resource);
    let created = if r.catalog_created { " (created)" } else { "" };
    out!("  catalog   {}{created}", r.catalog);
    let outcome = match &r.outcome {
        ResourceOutcome::Written => "written".to_owned(),
        ResourceOutcome::Unchanged => "unchanged".to_owned(),
        ResourceOutcome::NotWritten => "changes found, not written".to_owned(),
        ResourceOutcome::Skipped { reason } => format!("skipped: {reason}"),
        ResourceOutcome::Failed { error } => format!("failed ({}): {}", error.kind(), error.message()),
    };
    out!("  outcome   {outcome}");
    out!("  changes   {} added, {} removed, {} modified", r.added.len(), r.removed.len(), r.modified.len());
    for (sign, paths) in [('+', &r.added), ('-', &r.removed), ('~', &r.modified)] {
        for path in paths.iter().take(LISTED) {
            out!("    {sign} {path}");
        }
        if paths.len() > LISTED {
            out!("    {sign} ... and {} more (--json lists all)", paths.len() - LISTED);
        }
    }
    for m in &r.mismatches {
        out!("  mismatch  {}: stored {}, actual {}", m.path, m.stored, m.actual);
    }
    for s in &r.skipped {
        out!("  skipped   {}: {}", s.path, s.reason);
    }
    if r.trusted > 0 {
        out!("  trusted   {} unchanged file{} not hashed (unchanged-data stamp)", r.trusted, plural(r.trusted));
    }
    let stats = if r.stats_written { " (stats written)" } else { "" };
    out!("  files     {} file{}, {}{stats}", r.file_count, plural(r.file_count), human_size(r.file_size));
    Ok(())
}
