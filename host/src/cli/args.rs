//! The command line's shape: clap's types for every command and option, and what they mean as requests
//! ([`Selection::request`]) and limits ([`Global::limits`]).
//!
//! Not for running anything: each service's file in `cli/` takes these and calls the component.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use xnat_archive::{ArchiveRequest, Error, Limits, Overwrite, serve};

#[derive(Parser)]
#[command(name = "xnat-archive", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 success, 1 host failure, 2 bad request, 3 forbidden, 4 not found, \
                        5 conflict, 6 locked, 7 I/O error, 8 corrupt catalog or document.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args)]
pub struct Global {
    /// Run this component (.wasm) instead of the embedded one.
    #[arg(long, global = true, help_heading = "Runtime options", value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// The most memory the component may use, in MiB.
    #[arg(long, global = true, help_heading = "Runtime options", value_name = "MIB", default_value_t = Limits::DEFAULT.memory_bytes >> 20)]
    pub memory: usize,
    /// Stop the component after this many seconds (default: no limit).
    #[arg(long, global = true, help_heading = "Runtime options", value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Sort a zip of DICOM files (or one DICOM file) into prearchive sessions by their headers, and archive
    /// them with --dest /archive/... (XNAT's POST /data/services/import).
    Import(ImportArgs),
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
pub enum PrearchiveCommand {
    /// List the prearchive's sessions (XNAT's GET /data/prearchive[/projects/P]).
    List(ListArgs),
    /// Delete sessions: their folders and documents (XNAT's DELETE /data/prearchive/projects/P/TS/F).
    Delete(SrcArgs),
    /// Move sessions to another project or to Unassigned (XNAT's action=move&newProject=P).
    Move(MoveArgs),
    /// Forget a persisted CONFLICT or ERROR status: the row goes back to what the disk says
    /// (XNAT's action=reset-status).
    ResetStatus(SrcArgs),
    /// Build sessions still receiving (gradual-DICOM uploads): catalogs, then the document; READY
    /// (XNAT's action=commit).
    Commit(SrcArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// The prearchive root: the folder that holds the project folders (<prearchive>/<PROJECT>/<TIMESTAMP>/...).
    #[arg(long, value_name = "DIR")]
    pub prearchive: PathBuf,
    /// Only this project's sessions (Unassigned: the sessions with no project).
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// Print XNAT's JSON: {"ResultSet":{"Result":[rows],"totalRecords":"N"}} with all 19 columns.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV: a header row with XNAT's 19 column names, then one row per session.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Args)]
pub struct SrcArgs {
    /// The prearchive root.
    #[arg(long, value_name = "DIR")]
    pub prearchive: PathBuf,
    /// A session: /prearchive/projects/P/TIMESTAMP/FOLDER, with or without /data (repeatable).
    #[arg(long = "src", value_name = "SRC", required = true)]
    pub src: Vec<String>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MoveArgs {
    #[command(flatten)]
    pub sessions: SrcArgs,
    /// The project to move the sessions to, or Unassigned.
    #[arg(long, alias = "newProject", value_name = "P")]
    pub new_project: String,
}

/// Which session(s), in XNAT's two spellings, and where they go (shared by validate and archive).
#[derive(Args)]
pub struct Selection {
    /// The prearchive root.
    #[arg(long, value_name = "DIR")]
    pub prearchive: PathBuf,
    /// The archive root.
    #[arg(long, value_name = "DIR")]
    pub archive: PathBuf,
    /// A session: /prearchive/projects/P/TIMESTAMP/FOLDER, with or without /data (repeatable: a batch).
    #[arg(long = "src", value_name = "SRC", required_unless_present = "timestamp")]
    pub src: Vec<String>,
    /// The project. With --timestamp and --folder it names the session (XNAT's project, PREARC_TIMESTAMP,
    /// PREARC_SESSION_FOLDER); it is also passed on as XNAT's project parameter.
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// The session's timestamp folder (with --project and --folder instead of --src).
    #[arg(long, value_name = "TS", requires_all = ["project", "folder"])]
    pub timestamp: Option<String>,
    /// The session's folder (with --project and --timestamp instead of --src; repeatable).
    #[arg(long, value_name = "F", requires = "timestamp")]
    pub folder: Vec<String>,
    /// The subject label or ID to archive into (XNAT's subject / SUBJECT_ID).
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// The experiment label (XNAT's session / label / EXPT_LABEL).
    #[arg(long, visible_alias = "label", value_name = "L")]
    pub session: Option<String>,
    /// The destination, /archive/projects/P[/subjects/S[/experiments/E]].
    #[arg(long, value_name = "URI")]
    pub dest: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Selection {
    /// The `src` values: those given, then one per --folder of the project/timestamp/folder triple.
    pub fn src(&self) -> Vec<String> {
        let mut src = self.src.clone();
        if let (Some(project), Some(timestamp)) = (&self.project, &self.timestamp) {
            for folder in &self.folder {
                src.push(format!("/prearchive/projects/{}/{}/{}", escape(project), escape(timestamp), escape(folder)));
            }
        }
        src
    }

    pub fn request(&self) -> ArchiveRequest {
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
pub struct ValidateArgs {
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// How to meet an existing experiment: none (a conflict), append (merge; a clashing file is a conflict)
    /// or delete (merge, replacing clashing files). Case-insensitive.
    #[arg(long, value_name = "MODE", default_value_t = Overwrite::None, value_parser = parse_overwrite)]
    pub overwrite: Overwrite,
    /// Put the new or merged experiment into quarantine.
    #[arg(long)]
    pub quarantine: bool,
    /// Whether to launch the project's AutoRun pipeline (XNAT's triggerPipelines).
    #[arg(long, value_name = "BOOL", default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub trigger_pipelines: bool,
    /// The site id new accession numbers start with (<SITE>_E00001; default XNAT).
    #[arg(long, value_name = "ID")]
    pub site_id: Option<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The zip of DICOM files to import (or, with --handler gradual-DICOM, one DICOM file).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The prearchive root (written: the sessions go there).
    #[arg(long, value_name = "DIR")]
    pub prearchive: PathBuf,
    /// The archive root: needed with --dest /archive/...; otherwise read only, so that a project a DICOM
    /// header names is used when the site has it (without it such sessions go to Unassigned).
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    /// XNAT's import-handler: DICOM-zip, gradual-DICOM or SI (default: a zip is DICOM-zip, a file
    /// gradual-DICOM).
    #[arg(long, value_name = "HANDLER")]
    pub handler: Option<String>,
    /// Where the sessions go: /prearchive, /prearchive/projects/P or /archive/projects/P[/subjects/S[/experiments/E]].
    #[arg(long, value_name = "DEST")]
    pub dest: Option<String>,
    /// The project (else the one the DICOM headers name, if the site has it; else Unassigned).
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// The subject label (else the patient's name).
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// The session label (else the patient ID).
    #[arg(long, value_name = "LABEL")]
    pub session: Option<String>,
    /// With --dest /archive/...: how to meet an existing experiment (none, append, delete).
    #[arg(long, value_name = "MODE")]
    pub overwrite: Option<String>,
    /// Files that are not DICOM do not fail an upload that holds no DICOM at all.
    #[arg(long)]
    pub ignore_unparsable: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_overwrite(value: &str) -> Result<Overwrite, String> {
    value.parse().map_err(|e: Error| e.message().to_owned())
}

#[derive(Args)]
pub struct RecoverArgs {
    /// The prearchive root.
    #[arg(long, value_name = "DIR")]
    pub prearchive: PathBuf,
    /// The archive root.
    #[arg(long, value_name = "DIR")]
    pub archive: PathBuf,
    /// Leave sessions whose lock is live (its lease runs and its holder may be running, on this machine or
    /// another) alone and report them in-progress, instead of breaking every lock; for use while other
    /// hosts (a server, another machine) may be archiving into these trees.
    #[arg(long)]
    pub respect_leases: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RefreshArgs {
    /// The archive root: the folder that holds the project folders (<archive>/<PROJECT>/arc001/...).
    #[arg(long, value_name = "DIR")]
    pub archive: PathBuf,
    /// A resource to refresh: an experiment, scan or resource URI as XNAT accepts it
    /// (/data/archive/projects/P/subjects/S/experiments/E[/scans/2/resources/DICOM], /archive/experiments/ID, ...).
    #[arg(long = "resource", value_name = "URI", required = true)]
    pub resources: Vec<String>,
    /// XNAT's comma-joined list of operations: append, checksum, delete, populateStats (repeatable).
    /// With no operation selected, all four run (XNAT 1.8).
    #[arg(long, value_name = "LIST")]
    pub options: Vec<String>,
    /// Add entries for files on disk that the catalog lacks.
    #[arg(long)]
    pub append: bool,
    /// Add missing digests; replace and report digests that no longer match.
    #[arg(long)]
    pub checksum: bool,
    /// Remove entries whose file is gone (files are never deleted).
    #[arg(long)]
    pub delete: bool,
    /// Recompute the resource's file_count and file_size.
    #[arg(long)]
    pub populate_stats: bool,
    /// Hash every file and compare catalog and disk; write nothing (read-only grant).
    #[arg(long, conflicts_with = "dry_run")]
    pub verify: bool,
    /// Report what would change; write nothing (read-only grant).
    #[arg(long)]
    pub dry_run: bool,
    /// Write SHA-256 digests for files that have none (default MD5, as XNAT).
    #[arg(long)]
    pub sha256: bool,
    /// The user stamped into new or modified entries (createdBy/modifiedBy).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The event id stamped into entries (default: the current Unix time).
    #[arg(long, value_name = "ID")]
    pub event_id: Option<i64>,
    /// With checksum: do not hash files that the resource's unchanged-data stamp shows unchanged (same size,
    /// modification and status-change times, same file) and whose stored digest is the one it recorded;
    /// keep the stamp (.~lock-<catalog>.stamp) up to date. Not an XNAT feature; never with --verify.
    #[arg(long, conflicts_with = "verify")]
    pub trust_unchanged: bool,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ResourceCommand {
    /// Create a resource folder and its empty catalog (XNAT's PUT /data/archive/.../resources/LABEL).
    Create(CreateArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The archive root: the folder that holds the project folders.
    #[arg(long, value_name = "DIR")]
    pub archive: PathBuf,
    /// The resource URI, ending in /resources/LABEL.
    #[arg(long, value_name = "URI")]
    pub resource: String,
    /// The resource's format (e.g. DICOM).
    #[arg(long, value_name = "F")]
    pub format: Option<String>,
    /// The resource's content (e.g. RAW).
    #[arg(long, value_name = "C")]
    pub content: Option<String>,
    /// A description of the resource.
    #[arg(long, value_name = "D")]
    pub description: Option<String>,
    /// Tags, comma-joined or repeated: name=value, name:value or bare values.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where to write the demo site, as DIR/prearchive and DIR/archive (default: a new folder in the
    /// system's temporary directory). Its prearchive and archive folders must be new or empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The configuration (TOML): `listen`, and [[tenant]] tables with name, prearchive, archive, limits and
    /// [[tenant.user]] name/password_hash. Without it: one tenant `demo` over a generated demo site, user
    /// `admin` with a random password shown at start.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address to listen on, overriding the configuration's (default 127.0.0.1:8080; port 0 picks a
    /// free port, and the first line printed says which).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Without --config: where the demo site is, as DIR/prearchive and DIR/archive (used as it is when
    /// present, written when not; default: a new folder in the system's temporary directory).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub dir: Option<PathBuf>,
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    serve::config::parse_listen(value).map_err(|e| e.to_string())
}

impl Command {
    /// Whether the command was asked for JSON, so that its error is JSON too.
    pub fn json(&self) -> bool {
        match self {
            Command::Refresh(args) => args.json,
            Command::Resource(ResourceCommand::Create(args)) => args.json,
            Command::Prearchive(PrearchiveCommand::List(args)) => args.json,
            Command::Prearchive(PrearchiveCommand::Delete(args) | PrearchiveCommand::ResetStatus(args)) => args.json,
            Command::Prearchive(PrearchiveCommand::Move(args)) => args.sessions.json,
            Command::Validate(args) => args.selection.json,
            Command::Archive(args) => args.selection.json,
            Command::Import(args) => args.json,
            Command::Prearchive(PrearchiveCommand::Commit(args)) => args.json,
            Command::Recover(args) => args.json,
            Command::Demo(_) | Command::Serve(_) | Command::HashPassword => false,
        }
    }
}

impl Global {
    /// The limits of every call, from --memory and --timeout.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let memory_bytes = self
            .memory
            .checked_mul(1 << 20)
            .filter(|&b| b > 0)
            .context("--memory must be a positive number of MiB that fits this machine")?;
        let timeout = match self.timeout {
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
}
