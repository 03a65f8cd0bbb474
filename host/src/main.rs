//! `xnat-archive`: the command-line host. Runs XNAT's archive services (catalog refresh, resource creation,
//! the prearchive, validate and archive) in the sandboxed component, granting it only the archive and
//! prearchive directories named on the command line, read-only where the command only reads.
//!
//! Exit codes: 0 success; 1 host failure; 2 bad request; 3 forbidden; 4 not found; 5 conflict; 6 locked;
//! 7 I/O error; 8 corrupt catalog or document.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use serde::Serialize;
use serde::ser::SerializeMap as _;
use serde_json::json;
use xnat_archive::{
    ArchiveRequest, Archived, DigestAlgorithm, Error, Grant, Limits, Overwrite, PrearchiveRow, Recovered, RefreshMode,
    RefreshOptions, RefreshRequest, ResourceOutcome, ResourceReport, ResourceSpec, Runtime, TerminalProgress,
    ValidationNotice, demo, serve,
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
    /// List, move, delete prearchive sessions and reset their status (XNAT's /data/prearchive).
    #[command(subcommand)]
    Prearchive(PrearchiveCommand),
    /// Check whether a prearchive session can be archived as requested; writes nothing
    /// (XNAT's POST /data/services/validate-archive).
    Validate(ValidateArgs),
    /// Move prearchive sessions into the archive (XNAT's POST /data/services/archive).
    Archive(ArchiveArgs),
    /// Finish or roll back every archive that was interrupted (a crash, a killed process).
    Recover(RecoverArgs),
    /// Write a demo site (a prearchive and an archive), then list, validate, archive, refresh and verify.
    Demo(DemoArgs),
    /// Serve XNAT's REST API over HTTP for one or more tenants, each request in a fresh sandboxed instance
    /// of the HTTP component (--component: another build of it; --memory, --timeout: the limits of tenants
    /// that set none, default 1024 MiB and 300 s).
    Serve(ServeArgs),
    /// Read a password from standard input and print its argon2 hash, for a `password_hash` in `serve`'s
    /// configuration.
    HashPassword,
}

#[derive(Subcommand)]
enum PrearchiveCommand {
    /// List the prearchive's sessions (XNAT's GET /data/prearchive[/projects/P]).
    List(ListArgs),
    /// Delete sessions: their folders and documents (XNAT's DELETE /data/prearchive/projects/P/TS/F).
    Delete(SrcArgs),
    /// Move sessions to another project or to Unassigned (XNAT's action=move&newProject=P).
    Move(MoveArgs),
    /// Forget a persisted CONFLICT or ERROR status: the row goes back to what the disk says
    /// (XNAT's action=reset-status).
    ResetStatus(SrcArgs),
}

#[derive(Args)]
struct ListArgs {
    /// The prearchive root: the folder that holds the project folders (<prearchive>/<PROJECT>/<TIMESTAMP>/...).
    #[arg(long, value_name = "DIR")]
    prearchive: PathBuf,
    /// Only this project's sessions (Unassigned: the sessions with no project).
    #[arg(long, value_name = "P")]
    project: Option<String>,
    /// Print XNAT's JSON: {"ResultSet":{"Result":[rows],"totalRecords":"N"}} with all 19 columns.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV: a header row with XNAT's 19 column names, then one row per session.
    #[arg(long)]
    csv: bool,
}

#[derive(Args)]
struct SrcArgs {
    /// The prearchive root.
    #[arg(long, value_name = "DIR")]
    prearchive: PathBuf,
    /// A session: /prearchive/projects/P/TIMESTAMP/FOLDER, with or without /data (repeatable).
    #[arg(long = "src", value_name = "SRC", required = true)]
    src: Vec<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MoveArgs {
    #[command(flatten)]
    sessions: SrcArgs,
    /// The project to move the sessions to, or Unassigned.
    #[arg(long, alias = "newProject", value_name = "P")]
    new_project: String,
}

/// Which session(s), in XNAT's two spellings, and where they go (shared by validate and archive).
#[derive(Args)]
struct Selection {
    /// The prearchive root.
    #[arg(long, value_name = "DIR")]
    prearchive: PathBuf,
    /// The archive root.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// A session: /prearchive/projects/P/TIMESTAMP/FOLDER, with or without /data (repeatable: a batch).
    #[arg(long = "src", value_name = "SRC", required_unless_present = "timestamp")]
    src: Vec<String>,
    /// The project. With --timestamp and --folder it names the session (XNAT's project, PREARC_TIMESTAMP,
    /// PREARC_SESSION_FOLDER); it is also passed on as XNAT's project parameter.
    #[arg(long, value_name = "P")]
    project: Option<String>,
    /// The session's timestamp folder (with --project and --folder instead of --src).
    #[arg(long, value_name = "TS", requires_all = ["project", "folder"])]
    timestamp: Option<String>,
    /// The session's folder (with --project and --timestamp instead of --src; repeatable).
    #[arg(long, value_name = "F", requires = "timestamp")]
    folder: Vec<String>,
    /// The subject label or ID to archive into (XNAT's subject / SUBJECT_ID).
    #[arg(long, value_name = "S")]
    subject: Option<String>,
    /// The experiment label (XNAT's session / label / EXPT_LABEL).
    #[arg(long, visible_alias = "label", value_name = "L")]
    session: Option<String>,
    /// The destination, /archive/projects/P[/subjects/S[/experiments/E]].
    #[arg(long, value_name = "URI")]
    dest: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl Selection {
    /// The `src` values: those given, then one per --folder of the project/timestamp/folder triple.
    fn src(&self) -> Vec<String> {
        let mut src = self.src.clone();
        if let (Some(project), Some(timestamp)) = (&self.project, &self.timestamp) {
            for folder in &self.folder {
                src.push(format!("/prearchive/projects/{}/{}/{}", escape(project), escape(timestamp), escape(folder)));
            }
        }
        src
    }

    fn request(&self) -> ArchiveRequest {
        ArchiveRequest {
            src: self.src(),
            project: self.project.clone(),
            subject: self.subject.clone(),
            label: self.session.clone(),
            dest: self.dest.clone(),
            ..ArchiveRequest::default()
        }
    }
}

/// A path segment for a `src` URI: the component percent-decodes segments, so `%` and `/` are encoded.
fn escape(segment: &str) -> String {
    segment.replace('%', "%25").replace('/', "%2F")
}

#[derive(Args)]
struct ValidateArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(Args)]
struct ArchiveArgs {
    #[command(flatten)]
    selection: Selection,
    /// How to meet an existing experiment: none (a conflict), append (merge; a clashing file is a conflict)
    /// or delete (merge, replacing clashing files). Case-insensitive.
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = parse_overwrite)]
    overwrite: Overwrite,
    /// Put the new or merged experiment into quarantine.
    #[arg(long)]
    quarantine: bool,
    /// Whether to launch the project's AutoRun pipeline (XNAT's triggerPipelines).
    #[arg(long, value_name = "BOOL", default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    trigger_pipelines: bool,
    /// The site id new accession numbers start with (<SITE>_E00001; default XNAT).
    #[arg(long, value_name = "ID")]
    site_id: Option<String>,
}

fn parse_overwrite(value: &str) -> Result<Overwrite, String> {
    value.parse().map_err(|e: Error| e.message().to_owned())
}

#[derive(Args)]
struct RecoverArgs {
    /// The prearchive root.
    #[arg(long, value_name = "DIR")]
    prearchive: PathBuf,
    /// The archive root.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
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
    /// Where to write the demo site, as DIR/prearchive and DIR/archive (default: a new folder in the
    /// system's temporary directory). Its prearchive and archive folders must be new or empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// The configuration (TOML): `listen`, and [[tenant]] tables with name, prearchive, archive, limits and
    /// [[tenant.user]] name/password_hash. Without it: one tenant `demo` over a generated demo site, user
    /// `admin` with a random password shown at start.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on, overriding the configuration's (default 127.0.0.1:8080; port 0 picks a
    /// free port, and the first line printed says which).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// Without --config: where the demo site is, as DIR/prearchive and DIR/archive (used as it is when
    /// present, written when not; default: a new folder in the system's temporary directory).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    dir: Option<PathBuf>,
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    serve::config::parse_listen(value).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): stop quietly, as a process killed by SIGPIPE would.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => {
            ExitCode::from(141)
        }
        // Out of memory, however the component met it: one exit code.
        Err(e) if e.downcast_ref::<xnat_archive::OutOfMemory>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(9)
        }
        // The component stopped itself (a test's fault point): end as it did, "stopped dead".
        Err(e) if e.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() => {
            eprintln!("error: {e}");
            let status = e.downcast_ref::<wasmtime_wasi::I32Exit>().map_or(1, |exit| exit.0);
            ExitCode::from(u8::try_from(status).ok().filter(|&s| s != 0).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let limits = limits(&cli.global)?;
    // These two do not run the library component.
    let command = match cli.command {
        Command::Serve(args) => return serve(&cli.global, &limits, args),
        Command::HashPassword => return hash_password(),
        command => command,
    };
    let runtime = match &cli.global.component {
        Some(path) => Runtime::from_file(path)?,
        None => Runtime::new()?,
    };
    match command {
        Command::Refresh(args) => refresh(&runtime, &limits, args),
        Command::Resource(ResourceCommand::Create(args)) => create(&runtime, &limits, args),
        Command::Prearchive(PrearchiveCommand::List(args)) => prearchive_list(&runtime, &limits, args),
        Command::Prearchive(PrearchiveCommand::Delete(args)) => prearchive_delete(&runtime, &limits, args),
        Command::Prearchive(PrearchiveCommand::Move(args)) => prearchive_move(&runtime, &limits, args),
        Command::Prearchive(PrearchiveCommand::ResetStatus(args)) => prearchive_reset(&runtime, &limits, args),
        Command::Validate(args) => validate(&runtime, &limits, args),
        Command::Archive(args) => archive(&runtime, &limits, args),
        Command::Recover(args) => recover(&runtime, &limits, args),
        Command::Demo(args) => run_demo(&runtime, &limits, args),
        Command::Serve(_) | Command::HashPassword => unreachable!("handled before the runtime is loaded"),
    }
}

fn serve(global: &Global, limits: &Limits, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let component = match &global.component {
        Some(path) => std::borrow::Cow::Owned(
            std::fs::read(path)
                .with_context(|| format!("cannot read the component {}; check the path", path.display()))?,
        ),
        None => std::borrow::Cow::Borrowed(xnat_archive::HTTP_COMPONENT),
    };
    let defaults = serve::Defaults {
        memory_bytes: limits.memory_bytes,
        timeout: limits.timeout.unwrap_or(serve::config::DEFAULT_TIMEOUT),
    };
    let options = serve::Options { config: args.config, listen: args.listen, dir: args.dir, defaults };
    serve::serve(&component, options)?;
    Ok(ExitCode::SUCCESS)
}

fn hash_password() -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    if io::stdin().is_terminal() {
        eprintln!("type the password and press Enter (it is shown as you type; or pipe it in)");
    }
    let mut line = String::new();
    io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        anyhow::bail!("no password on standard input: type it, or pipe it in (`xnat-archive hash-password < file`)");
    }
    out!("{}", serve::hash_password(password)?);
    Ok(ExitCode::SUCCESS)
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

/// The prearchive grant, or a not-found error when the directory does not exist.
fn prearchive_grant(prearchive: &Path, writable: bool) -> Result<Grant, Error> {
    if prearchive.is_dir() {
        Ok(Grant::prearchive(prearchive, writable))
    } else {
        Err(Error::NotFound(format!(
            "the prearchive directory {} does not exist: pass the prearchive root (the folder holding the \
             project and timestamp folders) with --prearchive",
            prearchive.display()
        )))
    }
}

/// The prearchive and archive grants of validate (read-only), archive and recover (read-write).
fn both_grants(prearchive: &Path, archive: &Path, writable: bool) -> Result<[Grant; 2], Error> {
    Ok([prearchive_grant(prearchive, writable)?, archive_grant(archive, writable)?])
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
    let site =
        demo::write_import_site(&dir).with_context(|| format!("cannot write the demo site to {}", dir.display()))?;
    let spec = site.demo_session();
    let src = demo::ImportSite::src(spec);
    let (pre, arc) = (site.prearchive.display(), site.archive.display());
    out!("Demo site: {}", dir.display());
    out!("  prearchive {pre}: {} sessions from the generator", site.sessions.len());
    out!("  archive    {arc}: projects DEMO and TRIAL, subjects SUBJ1 and T001");
    out!();

    out!("$ xnat-archive prearchive list --prearchive {pre}");
    let read_pre = Grant::prearchive(&site.prearchive, false);
    match runtime.prearchive_list(std::slice::from_ref(&read_pre), limits, None)? {
        Ok(rows) => print_rows(&rows, None)?,
        Err(e) => return fail(&e, false),
    }
    out!();

    let request = ArchiveRequest { src: vec![src.clone()], ..ArchiveRequest::default() };
    out!("$ xnat-archive validate --prearchive {pre} --archive {arc} --src {src}");
    let read_only = [read_pre.clone(), Grant::archive(&site.archive, false)];
    match runtime.validate(&read_only, limits, request.clone())? {
        Ok(notices) => print_notices(&notices)?,
        Err(e) => demo_error(&e)?,
    }
    out!();

    out!("$ xnat-archive archive --prearchive {pre} --archive {arc} --src {src}");
    let writable = [Grant::prearchive(&site.prearchive, true), Grant::archive(&site.archive, true)];
    let uri = match runtime.archive(&writable, limits, request, TerminalProgress::new())? {
        Ok(archived) => {
            print_archived(&archived)?;
            archived.into_iter().find(|a| a.error.is_none()).and_then(|a| a.uri)
        }
        Err(e) => {
            demo_error(&e)?;
            None
        }
    };
    out!();

    out!("$ xnat-archive prearchive list --prearchive {pre} --project {}", demo::DEMO_PROJECT);
    match runtime.prearchive_list(std::slice::from_ref(&read_pre), limits, Some(demo::DEMO_PROJECT))? {
        Ok(rows) => print_rows(&rows, Some(demo::DEMO_PROJECT))?,
        Err(e) => return fail(&e, false),
    }
    out!();

    let Some(uri) = uri else {
        out!("The session was not archived, so there is no experiment to refresh and verify.");
        out!();
        out!("Try it yourself:");
        out!("  xnat-archive prearchive list --prearchive {pre} --csv");
        out!("  xnat-archive validate --prearchive {pre} --archive {arc} --src {src} --json");
        return Ok(ExitCode::SUCCESS);
    };

    out!("$ xnat-archive refresh --archive {arc} --resource {uri}");
    let request = RefreshRequest { resources: vec![uri.clone()], user: Some("demo".into()), ..Default::default() };
    let grant = Grant::archive(&site.archive, true);
    let reports = match runtime.refresh(&[grant], limits, request, TerminalProgress::new())? {
        Ok(reports) => reports,
        Err(e) => return fail(&e, false),
    };
    print_reports(&reports, RefreshMode::Apply)?;
    if let Some(e) = first_failure(&reports) {
        return Ok(exit_code(e));
    }
    out!();

    out!("$ xnat-archive refresh --archive {arc} --resource {uri} --verify");
    let request = RefreshRequest { resources: vec![uri.clone()], mode: RefreshMode::Verify, ..Default::default() };
    let reports =
        match runtime.refresh(&[Grant::archive(&site.archive, false)], limits, request, TerminalProgress::new())? {
            Ok(reports) => reports,
            Err(e) => return fail(&e, false),
        };
    print_reports(&reports, RefreshMode::Verify)?;
    if let Some(e) = first_failure(&reports) {
        return Ok(exit_code(e));
    }
    out!();
    out!("Try it yourself:");
    out!("  xnat-archive prearchive list --prearchive {pre} --csv");
    out!("  xnat-archive refresh --archive {arc} --resource {uri} --verify --json");
    Ok(ExitCode::SUCCESS)
}

/// An error of validate or archive: the demo shows it and goes on (the listings still tell the story).
fn demo_error(error: &Error) -> io::Result<()> {
    out!("error ({}, HTTP {}): {}", error.kind(), error.http_status(), error.message());
    out!("(the demo goes on)");
    Ok(())
}

/// `{"<key>": value}`, with `value`'s fields in declaration order (a `json!` map would sort them).
struct Keyed<'a, T: ?Sized>(&'a str, &'a T);

impl<T: Serialize + ?Sized> Serialize for Keyed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

/// XNAT's table JSON: `{"ResultSet":{"Result":[...],"totalRecords":"N"}}`.
#[derive(Serialize)]
struct ResultSet<'a, T> {
    #[serde(rename = "Result")]
    result: &'a [T],
    #[serde(rename = "totalRecords")]
    total_records: String,
}

fn print_result_set<T: Serialize>(rows: &[T]) -> anyhow::Result<()> {
    let set = ResultSet { result: rows, total_records: rows.len().to_string() };
    out!("{}", serde_json::to_string_pretty(&Keyed("ResultSet", &set))?);
    Ok(())
}

/// One session's outcome of a prearchive batch command, for `--json`.
#[derive(Serialize)]
struct SessionOutcome<'a> {
    src: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<Option<&'a PrearchiveRow>>,
    error: Option<&'a Error>,
}

/// Prints a component error for one of several sessions (stderr) and keeps the exit code of the first.
fn note_failure(src: &str, error: &Error, json: bool, first: &mut Option<ExitCode>) {
    if !json {
        eprintln!("error: {src}: {}", error.message());
        eprintln!("({}, HTTP {})", error.kind(), error.http_status());
    }
    first.get_or_insert_with(|| exit_code(error));
}

fn prearchive_list(runtime: &Runtime, limits: &Limits, args: ListArgs) -> anyhow::Result<ExitCode> {
    // Listing only reads: the grant is always read-only.
    let grant = match prearchive_grant(&args.prearchive, false) {
        Ok(grant) => grant,
        Err(e) => return fail(&e, args.json),
    };
    let rows = match runtime.prearchive_list(&[grant], limits, args.project.as_deref())? {
        Ok(rows) => rows,
        Err(e) => return fail(&e, args.json),
    };
    if args.json {
        print_result_set(&rows)?;
    } else if args.csv {
        out!("{}", csv_line(&PrearchiveRow::COLUMNS));
        for row in &rows {
            out!("{}", csv_line(&row.values()));
        }
    } else {
        print_rows(&rows, args.project.as_deref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One CSV record (RFC 4180): a field holding a comma, a quote, a line break or edge spaces is quoted,
/// its quotes doubled.
fn csv_line(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) || f.starts_with(' ') || f.ends_with(' ') {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                (*f).to_owned()
            }
        })
        .collect();
    quoted.join(",")
}

/// The readable listing: the columns that tell sessions apart; `--json` and `--csv` have all 19.
fn print_rows(rows: &[PrearchiveRow], project: Option<&str>) -> io::Result<()> {
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
    let n = rows.len();
    out!("{n} session{}", if n == 1 { "" } else { "s" });
    Ok(())
}

/// A left-aligned table, columns two spaces apart; the last column is not padded.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[&str; N]]) -> io::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out!("{}", line.trim_end());
    }
    Ok(())
}

fn prearchive_delete(runtime: &Runtime, limits: &Limits, args: SrcArgs) -> anyhow::Result<ExitCode> {
    let grant = match prearchive_grant(&args.prearchive, true) {
        Ok(grant) => grant,
        Err(e) => return fail(&e, args.json),
    };
    let mut results = Vec::new();
    let mut first = None;
    for src in &args.src {
        let result = runtime.prearchive_delete(std::slice::from_ref(&grant), limits, src)?;
        match &result {
            Ok(()) if !args.json => out!("deleted {src}"),
            Ok(()) => {}
            Err(e) => note_failure(src, e, args.json, &mut first),
        }
        results.push((src, result));
    }
    if args.json {
        let outcomes: Vec<SessionOutcome> =
            results.iter().map(|(src, r)| SessionOutcome { src, row: None, error: r.as_ref().err() }).collect();
        out!("{}", serde_json::to_string_pretty(&Keyed("deleted", &outcomes))?);
    }
    Ok(first.unwrap_or(ExitCode::SUCCESS))
}

/// Runs a prearchive command that answers with the session's row, for each `src`.
fn prearchive_rows(
    args: &SrcArgs,
    key: &str,
    describe: fn(&str, &PrearchiveRow) -> String,
    mut call: impl FnMut(&Grant, &str) -> anyhow::Result<Result<PrearchiveRow, Error>>,
) -> anyhow::Result<ExitCode> {
    let grant = match prearchive_grant(&args.prearchive, true) {
        Ok(grant) => grant,
        Err(e) => return fail(&e, args.json),
    };
    let mut results = Vec::new();
    let mut first = None;
    for src in &args.src {
        let result = call(&grant, src)?;
        match &result {
            Ok(row) if !args.json => out!("{}", describe(src, row)),
            Ok(_) => {}
            Err(e) => note_failure(src, e, args.json, &mut first),
        }
        results.push((src, result));
    }
    if args.json {
        let outcomes: Vec<SessionOutcome> = results
            .iter()
            .map(|(src, r)| SessionOutcome { src, row: Some(r.as_ref().ok()), error: r.as_ref().err() })
            .collect();
        out!("{}", serde_json::to_string_pretty(&Keyed(key, &outcomes))?);
    }
    Ok(first.unwrap_or(ExitCode::SUCCESS))
}

fn prearchive_move(runtime: &Runtime, limits: &Limits, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let project = args.new_project;
    let describe = |src: &str, row: &PrearchiveRow| format!("moved {src} -> {} ({})", row.url, row.status);
    prearchive_rows(&args.sessions, "moved", describe, |grant, src| {
        runtime.prearchive_move(std::slice::from_ref(grant), limits, src, &project)
    })
}

fn prearchive_reset(runtime: &Runtime, limits: &Limits, args: SrcArgs) -> anyhow::Result<ExitCode> {
    let describe = |src: &str, row: &PrearchiveRow| format!("reset {src}: {}", row.status);
    prearchive_rows(&args, "reset", describe, |grant, src| {
        runtime.prearchive_reset_status(std::slice::from_ref(grant), limits, src)
    })
}

/// A validation notice as XNAT's JSON has it: every value a string.
#[derive(Serialize)]
struct NoticeRow<'a> {
    code: String,
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

fn validate(runtime: &Runtime, limits: &Limits, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let s = &args.selection;
    let grants = match both_grants(&s.prearchive, &s.archive, false) {
        Ok(grants) => grants,
        Err(e) => return fail(&e, s.json),
    };
    let notices = match runtime.validate(&grants, limits, s.request())? {
        Ok(notices) => notices,
        Err(e) => return fail(&e, s.json),
    };
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

fn print_notices(notices: &[ValidationNotice]) -> io::Result<()> {
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
    out!("{n} notice{}: {fails} FAIL, {warns} WARN, {conflicts} CONFLICT", if n == 1 { "" } else { "s" });
    if fails > 0 {
        out!("the session cannot be archived as requested (FAIL)");
    } else if conflicts > 0 {
        out!("the session meets existing data: archive it with --overwrite append or delete");
    }
    Ok(())
}

fn archive(runtime: &Runtime, limits: &Limits, args: ArchiveArgs) -> anyhow::Result<ExitCode> {
    let s = &args.selection;
    let grants = match both_grants(&s.prearchive, &s.archive, true) {
        Ok(grants) => grants,
        Err(e) => return fail(&e, s.json),
    };
    let request = ArchiveRequest {
        overwrite: args.overwrite,
        quarantine: args.quarantine,
        trigger_pipelines: args.trigger_pipelines,
        site_id: args.site_id.clone(),
        ..s.request()
    };
    let archived = match runtime.archive(&grants, limits, request, TerminalProgress::new())? {
        Ok(archived) => archived,
        Err(e) => return fail(&e, s.json),
    };
    if s.json {
        out!("{}", serde_json::to_string_pretty(&Keyed("archived", &archived))?);
    } else {
        print_archived(&archived)?;
    }
    Ok(archived.iter().find_map(|a| a.error.as_ref()).map_or(ExitCode::SUCCESS, exit_code))
}

fn print_archived(archived: &[Archived]) -> io::Result<()> {
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
    out!("{n} session{}: {done} archived, {} not", if n == 1 { "" } else { "s" }, n - done);
    Ok(())
}

fn recover(runtime: &Runtime, limits: &Limits, args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let grants = match both_grants(&args.prearchive, &args.archive, true) {
        Ok(grants) => grants,
        Err(e) => return fail(&e, args.json),
    };
    let recovered = match runtime.recover(&grants, limits)? {
        Ok(recovered) => recovered,
        Err(e) => return fail(&e, args.json),
    };
    if args.json {
        out!("{}", serde_json::to_string_pretty(&Keyed("recovered", &recovered))?);
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
