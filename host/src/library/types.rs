//! The values of the `xnat:archive` WIT contract (`wit/archive.wit`, interface `types`) as plain Rust
//! types that serialise with serde, so that callers need neither wasmtime nor bindgen types.
//!
//! The JSON shape: field names as in Rust (`file_count`), enums in kebab-case (`dry-run`), an [`Error`] as
//! `{"kind": "not-found", "message": "..."}`, an outcome as `{"status": "failed", "error": {...}}`. Where
//! XNAT's own JSON names the fields, its names are kept: a [`PrearchiveRow`] has XNAT's column names
//! (`folderName`, `SOURCE`), a [`ValidationNotice`] has `type`.
//!
//! Not for talking to wasmtime: `super::bindings` converts these to and from the generated types.
//!
//! Why a hand-written mirror and not the types `bindgen!` generates (with `additional_derives` or `with:`):
//! the public API differs from the WIT shapes in ways a derive cannot give. `refresh-options` is a WIT
//! `flags` (a bit set) where callers have four named booleans with [`RefreshOptions::union`] and XNAT's
//! list syntax; the outcome cases carry named fields (`Skipped { reason }`, `Failed { error }`) where the
//! generated ones are tuple variants; `overwrite-mode` is [`Overwrite`] here; fields and cases need their
//! own serde names, tags and defaults (XNAT's column names, `{"kind", "message"}`, `trigger_pipelines`
//! true by default), while `additional_derives` applies one attribute list to every generated type; and
//! callers of this crate should not see wasmtime's types, which change whenever the WIT does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a call failed. Each case carries a message that says what went wrong and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum Error {
    /// The request itself is wrong (malformed URI, path leaving the grant, unknown option). HTTP 400.
    BadRequest(String),
    /// The grant does not allow the operation (a write under a read-only grant). HTTP 403.
    Forbidden(String),
    /// A project, subject, experiment, scan, resource or session does not exist. HTTP 404.
    NotFound(String),
    /// The operation clashes with what is there. HTTP 409.
    Conflict(String),
    /// Another operation holds the lock on the same catalog or session. HTTP 423.
    Locked(String),
    /// The file system failed. HTTP 500.
    Io(String),
    /// A stored catalog or document cannot be parsed; it was left untouched. HTTP 500.
    Corrupt(String),
}

impl Error {
    /// The WIT case name: `bad-request`, `forbidden`, `not-found`, `conflict`, `locked`, `io`, `corrupt`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad-request",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::Conflict(_) => "conflict",
            Error::Locked(_) => "locked",
            Error::Io(_) => "io",
            Error::Corrupt(_) => "corrupt",
        }
    }

    /// The message carried by the error.
    pub fn message(&self) -> &str {
        match self {
            Error::BadRequest(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Locked(m)
            | Error::Io(m)
            | Error::Corrupt(m) => m,
        }
    }

    /// The HTTP status XNAT's REST surface uses for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::Locked(_) => 423,
            Error::Io(_) | Error::Corrupt(_) => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

/// The four refresh operations. All false (the default) means "all four", as in XNAT 1.8; the component
/// applies that default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshOptions {
    /// Add entries for files on disk that the catalog lacks.
    pub append: bool,
    /// Compute digests: add missing ones, replace (and report) ones that no longer match.
    pub checksum: bool,
    /// Remove entries whose file is gone. Files are never deleted.
    pub delete: bool,
    /// Recompute the resource's `file_count` and `file_size`.
    pub populate_stats: bool,
}

impl RefreshOptions {
    /// All four operations, spelled out.
    pub const ALL: RefreshOptions = RefreshOptions { append: true, checksum: true, delete: true, populate_stats: true };

    /// No operation selected: the component applies its default (all four).
    pub fn is_empty(&self) -> bool {
        *self == RefreshOptions::default()
    }

    /// The options selected in either `self` or `other` (XNAT's `options` and boolean parameters add up).
    pub fn union(self, other: RefreshOptions) -> RefreshOptions {
        RefreshOptions {
            append: self.append || other.append,
            checksum: self.checksum || other.checksum,
            delete: self.delete || other.delete,
            populate_stats: self.populate_stats || other.populate_stats,
        }
    }
}

/// Parses XNAT's comma-joined `options` list: `append`, `checksum`, `delete`, `populateStats`, compared
/// exactly (case-sensitive) after trimming spaces; empty items are ignored. Unlike XNAT, which ignores
/// unknown tokens, an unknown token is a [`Error::BadRequest`].
impl FromStr for RefreshOptions {
    type Err = Error;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut options = RefreshOptions::default();
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match token {
                "append" => options.append = true,
                "checksum" => options.checksum = true,
                "delete" => options.delete = true,
                "populateStats" => options.populate_stats = true,
                other => {
                    return Err(Error::BadRequest(format!(
                        "unknown refresh option `{other}`: use append, checksum, delete or populateStats \
                         (comma-joined, case as written)"
                    )));
                }
            }
        }
        Ok(options)
    }
}

/// The digest written for files that have none. A stored digest keeps its own algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestAlgorithm {
    /// MD5, what XNAT writes and checks.
    #[default]
    Md5,
    Sha256,
}

/// What a refresh may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshMode {
    /// Change catalogs and documents as the options say.
    #[default]
    Apply,
    /// Compute what the options would change and report it; write nothing.
    DryRun,
    /// Hash every file and compare catalog and disk (all four operations); write nothing.
    Verify,
}

impl RefreshMode {
    /// Whether this mode writes; read-only modes need only a read-only grant.
    pub fn writes(&self) -> bool {
        matches!(self, RefreshMode::Apply)
    }
}

/// A refresh request: one or more resource URIs of the forms XNAT accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    pub resources: Vec<String>,
    pub options: RefreshOptions,
    pub algorithm: DigestAlgorithm,
    pub mode: RefreshMode,
    /// Stamped into new or modified entries as createdBy/modifiedBy.
    pub user: Option<String>,
    /// The event id stamped into entries; the current Unix time when absent.
    pub event_id: Option<i64>,
    /// With checksum (not verify): do not hash files the unchanged-data stamp shows unchanged.
    pub trust_unchanged: bool,
}

/// A file the refresh did not catalog, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedItem {
    pub path: String,
    pub reason: String,
}

/// A stored digest that no longer matches its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestMismatch {
    pub path: String,
    pub stored: String,
    pub actual: String,
}

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ResourceOutcome {
    /// The catalog (or the owning document's stats) changed and was written.
    Written,
    /// Nothing needed changing; nothing was written.
    Unchanged,
    /// Changes were found but not written (dry-run or verify).
    NotWritten,
    /// The resource was left alone, for the given reason.
    Skipped { reason: String },
    /// The resource could not be refreshed; it was left untouched.
    Failed { error: Error },
}

/// The per-resource report of a refresh. Paths are relative to the catalog's folder; `catalog` is
/// relative to the archive grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceReport {
    /// The resource, as an archive URI (`/archive/projects/P/.../resources/LABEL`).
    pub resource: String,
    pub catalog: String,
    pub outcome: ResourceOutcome,
    /// A catalog file was created because the folder had none.
    pub catalog_created: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
    pub mismatches: Vec<DigestMismatch>,
    pub skipped: Vec<SkippedItem>,
    /// Entries whose file exists, and the sum of their sizes.
    pub file_count: u64,
    pub file_size: u64,
    /// `file_count`/`file_size` were written into the owning document.
    pub stats_written: bool,
    /// Files not hashed because the unchanged-data stamp showed them unchanged.
    #[serde(default)]
    pub trusted: u64,
}

impl ResourceReport {
    /// Whether catalog and disk agree: nothing added, removed, modified or mismatched, and the resource
    /// was neither skipped nor failed.
    pub fn is_clean(&self) -> bool {
        matches!(self.outcome, ResourceOutcome::Unchanged | ResourceOutcome::NotWritten | ResourceOutcome::Written)
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.modified.is_empty()
            && self.mismatches.is_empty()
    }
}

/// Creating a resource and its empty catalog (`PUT /data/archive/.../resources/LABEL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceSpec {
    /// The resource URI, ending in `/resources/LABEL`.
    pub resource: String,
    pub format: Option<String>,
    pub content: Option<String>,
    pub description: Option<String>,
    /// `name=value`, `name:value` or bare values, as XNAT accepts them.
    pub tags: Vec<String>,
}

/// Where a new resource went. Paths relative to the archive grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedResource {
    pub resource: String,
    pub folder: String,
    pub catalog: String,
}

/// One row of the prearchive listing: XNAT's 19 columns (`xdat_search.prearchive`), all strings. Serialised
/// with XNAT's column names, in XNAT's order (`folderName`, `SOURCE`, ...), as its `/data/prearchive` JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrearchiveRow {
    /// The project, or `Unassigned`.
    pub project: String,
    /// The upload timestamp folder (`yyyyMMdd_HHmmssSSS`).
    pub timestamp: String,
    /// When the session document (or folder) last changed (`2024-01-31 09:15:00.123`).
    pub lastmod: String,
    /// The upload time, from the timestamp folder.
    pub uploaded: String,
    pub scan_date: String,
    pub scan_time: String,
    pub subject: String,
    #[serde(rename = "folderName")]
    pub folder_name: String,
    /// The session label (else the patient id, else the folder name).
    pub name: String,
    /// The StudyInstanceUID.
    pub tag: String,
    /// `READY`, `RECEIVING`, `CONFLICT`, `ERROR`, ..., or an in-progress `_ARCHIVING`, `_MOVING`, ...
    pub status: String,
    /// `/prearchive/projects/P/TS/FOLDER`, the session's `src`.
    pub url: String,
    pub autoarchive: String,
    pub prevent_anon: String,
    pub prevent_auto_commit: String,
    #[serde(rename = "SOURCE")]
    pub source: String,
    #[serde(rename = "VISIT")]
    pub visit: String,
    #[serde(rename = "PROTOCOL")]
    pub protocol: String,
    #[serde(rename = "TIMEZONE")]
    pub timezone: String,
}

impl PrearchiveRow {
    /// XNAT's column names, in order.
    pub const COLUMNS: [&'static str; 19] = xnat_core::import::prearchive::Row::COLUMNS;

    /// The values, in the order of [`PrearchiveRow::COLUMNS`].
    pub fn values(&self) -> [&str; 19] {
        [
            &self.project,
            &self.timestamp,
            &self.lastmod,
            &self.uploaded,
            &self.scan_date,
            &self.scan_time,
            &self.subject,
            &self.folder_name,
            &self.name,
            &self.tag,
            &self.status,
            &self.url,
            &self.autoarchive,
            &self.prevent_anon,
            &self.prevent_auto_commit,
            &self.source,
            &self.visit,
            &self.protocol,
            &self.timezone,
        ]
    }
}

/// One validation notice: XNAT's (code, type, message); `type` is `FAIL`, `WARN` or `CONFLICT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationNotice {
    pub code: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// How an archive meets an existing experiment (XNAT's `overwrite`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// An existing experiment is a conflict (409).
    #[default]
    None,
    /// Merge into an existing experiment; a clashing file is a conflict.
    Append,
    /// Merge, replacing clashing files (nothing else is deleted).
    Delete,
}

impl Overwrite {
    /// Every value, in XNAT's order.
    pub const ALL: [Overwrite; 3] = [Overwrite::None, Overwrite::Append, Overwrite::Delete];

    /// XNAT's name of the value (as serde writes it): `none`, `append`, `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overwrite::None => "none",
            Overwrite::Append => "append",
            Overwrite::Delete => "delete",
        }
    }
}

impl fmt::Display for Overwrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// XNAT's `overwrite` values, case-insensitive: `none`, `append`, `delete`. Unlike XNAT, which reads an
/// unknown value as `none`, an unknown value is a [`Error::BadRequest`].
impl FromStr for Overwrite {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let name = value.trim();
        Overwrite::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::BadRequest(format!("unknown overwrite value `{value}`: use none, append or delete")))
    }
}

/// The parameters of `/data/services/archive` and `/data/services/validate-archive`, by XNAT name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchiveRequest {
    /// `src` values (`/prearchive/projects/P/TS/FOLDER`, with or without `/data`); several make a batch.
    pub src: Vec<String>,
    pub project: Option<String>,
    /// `subject` / `SUBJECT_ID`.
    pub subject: Option<String>,
    /// `session` / `label` / `EXPT_LABEL`.
    pub label: Option<String>,
    pub dest: Option<String>,
    pub overwrite: Overwrite,
    pub quarantine: bool,
    /// `triggerPipelines`; true unless explicitly false, as in XNAT.
    pub trigger_pipelines: bool,
    /// The site id new accession numbers start with (`<SITE>_E00001`); `XNAT` when absent.
    pub site_id: Option<String>,
}

impl Default for ArchiveRequest {
    fn default() -> Self {
        ArchiveRequest {
            src: Vec::new(),
            project: None,
            subject: None,
            label: None,
            dest: None,
            overwrite: Overwrite::None,
            quarantine: false,
            trigger_pipelines: true,
            site_id: None,
        }
    }
}

/// The outcome of archiving one session of a (batch) archive request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    /// The session, as `/prearchive/projects/P/TS/FOLDER`.
    pub src: String,
    /// `/data/archive/projects/P/subjects/S/experiments/LABEL` when it was archived.
    pub uri: Option<String>,
    /// Why it was not; the session stays in the prearchive (status CONFLICT or ERROR).
    pub error: Option<Error>,
}

/// How recovery treats a lock that still looks live (its lease runs, and its instance is not known to be
/// gone). A lock whose holder is gone is cleared either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockPolicy {
    /// Break every lock: nothing else works on these trees (the administrator's `recover`).
    BreakAll,
    /// Leave a live lock alone and report its session `in-progress`: other hosts may be archiving (what
    /// `serve` does at start and after a request it had to stop).
    RespectLeases,
}

/// What recovery did with one interrupted archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    pub src: String,
    /// `rolled-back` (the session is back in the prearchive), `completed` (it is archived) or `in-progress`
    /// (its lock is live and [`LockPolicy::RespectLeases`] left it alone).
    pub action: String,
    pub detail: String,
}

/// A scan of an archived experiment (`GET …/experiments/E/scans`), from its document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRow {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub quality: String,
    pub series_description: String,
    /// `xnat:mrScanData`, ...
    pub xsi_type: String,
    pub note: String,
}

/// A resource of an archived item (`GET …/resources`): what its catalog lists that exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRow {
    /// XNAT's `xnat_abstractresource_id`: a number made from the resource's URI (URIs take it or the label).
    pub id: String,
    pub label: String,
    /// The resource's canonical archive URI.
    pub uri: String,
    pub format: String,
    pub content: String,
    pub file_count: u64,
    pub file_size: u64,
}

/// A file a resource's catalog lists that lies in its folder (`GET …/resources/R/files`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    /// The path below the resource folder (XNAT's `Name`).
    pub name: String,
    pub size: u64,
    /// The digest the catalog records; empty when none.
    pub digest: String,
    pub format: String,
    pub content: String,
}

/// A file of an import that was not imported, and why (`importer.import`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedFile {
    /// Its name in the upload (the zip entry's path).
    pub file: String,
    pub reason: String,
}

/// What an import did (`POST /data/services/import`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// XNAT's answer: `/data/prearchive/projects/P/TS/FOLDER` per session left in the prearchive,
    /// `/data/archive/projects/P/subjects/S/experiments/E` per archived one.
    pub uris: Vec<String>,
    /// Files placed.
    pub files: u64,
    /// Files dropped as exact resends of files already there.
    pub duplicates: u64,
    pub refused: Vec<RefusedFile>,
}
