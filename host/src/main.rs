//! `xnat-archive`: the command-line host. Runs XNAT's archive services (catalog refresh, resource creation)
//! in the sandboxed component, granting it only the archive directory named on the command line.
//!
//! Exit codes: 0 success; 1 host failure; 2 bad request; 3 forbidden; 4 not found; 5 conflict; 6 locked;
//! 7 I/O error; 8 corrupt catalog or document.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use xnat_archive::{
    DigestAlgorithm, Error, Grant, Limits, RefreshMode, RefreshOptions, RefreshRequest, ResourceOutcome,
    ResourceReport, ResourceSpec, Runtime, TerminalProgress, demo,
};

/// `println!` that returns write errors (a closed pipe) instead of panicking.
macro_rules! out {
    () => {
        writeln!(io::stdout())?
    };
    ($($arg:tt)*) => {
        writeln!(io::stdout(), $($arg)*)?
    };
}

#[derive(Parser)]
#[command(name = "xnat-archive", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 success, 1 host failure, 2 bad request, 3 forbidden, 4 not found, \
                        5 conflict, 6 locked, 7 I/O error, 8 corrupt catalog or document.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Args)]
struct Global {
    /// Run this component (.wasm) instead of the embedded one.
    #[arg(long, global = true, help_heading = "Runtime options", value_name = "FILE")]
    component: Option<PathBuf>,
    /// The most memory the component may use, in MiB.
    #[arg(long, global = true, help_heading = "Runtime options", value_name = "MIB", default_value_t = Limits::DEFAULT.memory_bytes >> 20)]
    memory: usize,
    /// Stop the component after this many seconds (default: no limit).
    #[arg(long, global = true, help_heading = "Runtime options", value_name = "SECONDS")]
    timeout: Option<f64>,
}

#[derive(Subcommand)]
enum Command {
    /// Bring resource catalogs in line with the files on disk (XNAT's POST /data/services/refresh/catalog).
    Refresh(RefreshArgs),
    /// Manage resources.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Write a small demo archive site, refresh it through the component and verify the result.
    Demo(DemoArgs),
}

#[derive(Args)]
struct RefreshArgs {
    /// The archive root: the folder that holds the project folders (<archive>/<PROJECT>/arc001/...).
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// A resource to refresh: an experiment, scan or resource URI as XNAT accepts it
    /// (/data/archive/projects/P/subjects/S/experiments/E[/scans/2/resources/DICOM], /archive/experiments/ID, ...).
    #[arg(long = "resource", value_name = "URI", required = true)]
    resources: Vec<String>,
    /// XNAT's comma-joined list of operations: append, checksum, delete, populateStats (repeatable).
    /// With no operation selected, all four run (XNAT 1.8).
    #[arg(long, value_name = "LIST")]
    options: Vec<String>,
    /// Add entries for files on disk that the catalog lacks.
    #[arg(long)]
    append: bool,
    /// Add missing digests; replace and report digests that no longer match.
    #[arg(long)]
    checksum: bool,
    /// Remove entries whose file is gone (files are never deleted).
    #[arg(long)]
    delete: bool,
    /// Recompute the resource's file_count and file_size.
    #[arg(long)]
    populate_stats: bool,
    /// Hash every file and compare catalog and disk; write nothing (read-only grant).
    #[arg(long, conflicts_with = "dry_run")]
    verify: bool,
    /// Report what would change; write nothing (read-only grant).
    #[arg(long)]
    dry_run: bool,
    /// Write SHA-256 digests for files that have none (default MD5, as XNAT).
    #[arg(long)]
    sha256: bool,
    /// The user stamped into new or modified entries (createdBy/modifiedBy).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// The event id stamped into entries (default: the current Unix time).
    #[arg(long, value_name = "ID")]
    event_id: Option<i64>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ResourceCommand {
    /// Create a resource folder and its empty catalog (XNAT's PUT /data/archive/.../resources/LABEL).
    Create(CreateArgs),
}

#[derive(Args)]
struct CreateArgs {
    /// The archive root: the folder that holds the project folders.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// The resource URI, ending in /resources/LABEL.
    #[arg(long, value_name = "URI")]
    resource: String,
    /// The resource's format (e.g. DICOM).
    #[arg(long, value_name = "F")]
    format: Option<String>,
    /// The resource's content (e.g. RAW).
    #[arg(long, value_name = "C")]
    content: Option<String>,
    /// A description of the resource.
    #[arg(long, value_name = "D")]
    description: Option<String>,
    /// Tags, comma-joined or repeated: name=value, name:value or bare values.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    tags: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Where to write the demo site (default: a new folder in the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): stop quietly, as a process killed by SIGPIPE would.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let limits = limits(&cli.global)?;
    let runtime = match &cli.global.component {
        Some(path) => Runtime::from_file(path)?,
        None => Runtime::new()?,
    };
    match cli.command {
        Command::Refresh(args) => refresh(&runtime, &limits, args),
        Command::Resource(ResourceCommand::Create(args)) => create(&runtime, &limits, args),
        Command::Demo(args) => run_demo(&runtime, &limits, args),
    }
}

fn limits(global: &Global) -> anyhow::Result<Limits> {
    let memory_bytes = global
        .memory
        .checked_mul(1 << 20)
        .filter(|&b| b > 0)
        .context("--memory must be a positive number of MiB that fits this machine")?;
    let timeout = match global.timeout {
        None => None,
        Some(s) => Some(
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .context("--timeout must be a positive number of seconds")?,
        ),
    };
    Ok(Limits { memory_bytes, timeout })
}

/// The exit code for a component error.
fn exit_code(error: &Error) -> ExitCode {
    ExitCode::from(match error {
        Error::BadRequest(_) => 2,
        Error::Forbidden(_) => 3,
        Error::NotFound(_) => 4,
        Error::Conflict(_) => 5,
        Error::Locked(_) => 6,
        Error::Io(_) => 7,
        Error::Corrupt(_) => 8,
    })
}

/// Prints a component error (as JSON on stdout, or as text on stderr) and returns its exit code.
fn fail(error: &Error, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        out!("{}", serde_json::to_string_pretty(&json!({ "error": error }))?);
    } else {
        eprintln!("error: {}", error.message());
        eprintln!("({}, HTTP {})", error.kind(), error.http_status());
    }
    Ok(exit_code(error))
}

/// The archive grant, or a not-found error when the directory does not exist.
fn archive_grant(archive: &Path, writable: bool) -> Result<Grant, Error> {
    if archive.is_dir() {
        Ok(Grant::archive(archive, writable))
    } else {
        Err(Error::NotFound(format!(
            "the archive directory {} does not exist: pass the archive root (the folder holding the project \
             folders) with --archive",
            archive.display()
        )))
    }
}

fn refresh_request(args: &RefreshArgs) -> Result<RefreshRequest, Error> {
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
    })
}

fn refresh(runtime: &Runtime, limits: &Limits, args: RefreshArgs) -> anyhow::Result<ExitCode> {
    let request = match refresh_request(&args) {
        Ok(request) => request,
        Err(e) => return fail(&e, args.json),
    };
    let grant = match archive_grant(&args.archive, request.mode.writes()) {
        Ok(grant) => grant,
        Err(e) => return fail(&e, args.json),
    };
    let mode = request.mode;
    let reports = match runtime.refresh(&[grant], limits, request, TerminalProgress::new())? {
        Ok(reports) => reports,
        Err(e) => return fail(&e, args.json),
    };
    if args.json {
        out!("{}", serde_json::to_string_pretty(&json!({ "reports": reports }))?);
    } else {
        print_reports(&reports, mode)?;
    }
    Ok(first_failure(&reports).map_or(ExitCode::SUCCESS, exit_code))
}

/// The error of the first resource that failed, if any.
fn first_failure(reports: &[ResourceReport]) -> Option<&Error> {
    reports.iter().find_map(|r| match &r.outcome {
        ResourceOutcome::Failed { error } => Some(error),
        _ => None,
    })
}

fn create(runtime: &Runtime, limits: &Limits, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let grant = match archive_grant(&args.archive, true) {
        Ok(grant) => grant,
        Err(e) => return fail(&e, args.json),
    };
    let spec = ResourceSpec {
        resource: args.resource,
        format: args.format,
        content: args.content,
        description: args.description,
        tags: args.tags.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
    };
    let created = match runtime.create_resource(&[grant], limits, spec)? {
        Ok(created) => created,
        Err(e) => return fail(&e, args.json),
    };
    if args.json {
        out!("{}", serde_json::to_string_pretty(&json!({ "created": created }))?);
    } else {
        out!("created {}", created.resource);
        out!("  folder   {}", created.folder);
        out!("  catalog  {}", created.catalog);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_demo(runtime: &Runtime, limits: &Limits, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir =
        args.dir.unwrap_or_else(|| std::env::temp_dir().join(format!("xnat-archive-demo-{}", std::process::id())));
    demo::write_site(&dir).with_context(|| format!("cannot write the demo site to {}", dir.display()))?;
    out!("Demo archive site: {}", dir.display());
    out!("  DEMO/arc001/MR1/SCANS/2/DICOM: 1.dcm 2.dcm 3.dcm on disk; the catalog lists 1.dcm, 2.dcm and gone.dcm");
    out!("  DEMO/arc001/MR1/RESOURCES/NOTES: notes.txt on disk; the catalog is empty");
    out!();

    let request = RefreshRequest {
        resources: vec![demo::EXPERIMENT.to_owned()],
        user: Some("demo".into()),
        ..Default::default()
    };
    out!("Refresh {} (append, checksum, delete, populateStats):", demo::EXPERIMENT);
    let grant = Grant::archive(&dir, true);
    let reports = match runtime.refresh(std::slice::from_ref(&grant), limits, request, TerminalProgress::new())? {
        Ok(reports) => reports,
        Err(e) => return fail(&e, false),
    };
    print_reports(&reports, RefreshMode::Apply)?;
    if let Some(e) = first_failure(&reports) {
        return Ok(exit_code(e));
    }
    out!();

    out!("Verify (read-only grant):");
    let request = RefreshRequest {
        resources: vec![demo::EXPERIMENT.to_owned()],
        mode: RefreshMode::Verify,
        ..Default::default()
    };
    let grant = Grant::archive(&dir, false);
    let reports = match runtime.refresh(&[grant], limits, request, TerminalProgress::new())? {
        Ok(reports) => reports,
        Err(e) => return fail(&e, false),
    };
    print_reports(&reports, RefreshMode::Verify)?;
    if let Some(e) = first_failure(&reports) {
        return Ok(exit_code(e));
    }
    out!();
    out!("Try it yourself:");
    out!("  xnat-archive refresh --archive {} --resource {} --verify", dir.display(), demo::EXPERIMENT);
    Ok(ExitCode::SUCCESS)
}

/// How many paths of each kind the summary lists before it only counts.
const LISTED: usize = 10;

fn print_reports(reports: &[ResourceReport], mode: RefreshMode) -> io::Result<()> {
    for report in reports {
        print_report(report)?;
    }
    let count = |f: fn(&ResourceOutcome) -> bool| reports.iter().filter(|r| f(&r.outcome)).count();
    let mut tally = vec![format!("{} resource{}", reports.len(), if reports.len() == 1 { "" } else { "s" })];
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
    let stats = if r.stats_written { " (stats written)" } else { "" };
    out!("  files     {} file{}, {}{stats}", r.file_count, if r.file_count == 1 { "" } else { "s" }, size(r.file_size));
    Ok(())
}

/// A byte count for people: exact below 1 KiB, otherwise with one decimal and the exact count.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}
