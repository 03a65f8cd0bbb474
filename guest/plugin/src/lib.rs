//! The `xnat:archive` library component: WIT exports translated to `xnat-core` calls, core results and
//! errors translated back. No logic lives here, beyond one parameter check the core leaves to its callers
//! (an empty `newProject`).
//!
//! The host grants the archive at the guest path `/archive` and the prearchive at `/prearchive` (see
//! `wit/archive.wit`).

wit_bindgen::generate!({
    world: "library",
    path: "../../wit",
    // The descriptors lent to the host's `digests` are the ones xnat-core opens through the `wasi` crate.
    with: {
        "wasi:filesystem/types@0.2.12": wasi::filesystem::types,
        "wasi:io/streams@0.2.12": wasi::io::streams,
        "wasi:io/error@0.2.12": wasi::io::error,
        "wasi:io/poll@0.2.12": wasi::io::poll,
        "wasi:clocks/wall-clock@0.2.12": wasi::clocks::wall_clock,
    },
});

use exports::xnat::archive::{archive_data, archiver, catalogs, importer, prearchive, validation};
use xnat::archive::types as wit;
use xnat::archive::{digests, holders, listings, renames};
use xnat_core::fs::instances::Instances;
use xnat_core::fs::tree::Tree;
use xnat_core::fs::{HostEntry, HostListing, HostRenames};
use xnat_core::import::archive;
use xnat_core::import::prearchive::{Prearchive, Row, SessionRef};
use xnat_core::import::request::{Faults, Overwrite, Params};
use xnat_core::progress::Progress;
use xnat_core::refresh::{self, resource};
use xnat_core::site::browse;
use xnat_core::site::mounts::{ARCHIVE, PREARCHIVE, UPLOAD};

struct Plugin;

/// The tree the host granted at `path`. Its locks name this instance to the host (WIT `holders`), so that
/// the host can say when a lock's instance is gone and the lock may be taken over at once; the host lists its
/// folders and moves files where it offers that (WIT `listings`, `renames`).
fn granted(path: &str) -> Tree {
    Tree::new(path)
        .with_instances(Instances { this: holders::this, alive: holders::alive })
        .with_listing(HOST_LISTING)
        .with_renames(HOST_RENAMES)
}

/// The host's renames (WIT `renames`).
const HOST_RENAMES: HostRenames = HostRenames {
    renames: renames::renames,
    rename_files: |source, destination, pairs| {
        renames::rename_files(source, destination, pairs).map_err(|f| (f.index, f.code))
    },
    start_renames: renames::start_renames,
    renamed: |ticket| renames::renamed(ticket).map_err(|f| (f.index, f.code)),
};

/// The host's folder listings (WIT `listings`).
const HOST_LISTING: HostListing = HostListing {
    lists: listings::lists,
    list_folder: |folder, path| Ok(listings::list_folder(folder, path)?.into_iter().map(host_entry).collect()),
    walk_tree: listings::walk_tree,
    next_walked: |ticket| {
        listings::next_walked(ticket).map(|f| (f.path, f.entries.into_iter().map(host_entry).collect()))
    },
    end_walk: listings::end_walk,
    watch_tree: listings::watch_tree,
};

/// One entry of the host's listings as the tree takes it.
fn host_entry(e: listings::ListedEntry) -> HostEntry {
    HostEntry {
        name: e.name,
        utf8: e.utf8,
        kind: e.type_,
        size: e.size,
        modified: e.modified,
        changed: e.changed,
        identity: e.identity,
    }
}

/// The host's digests (WIT `digests`).
const HOST_DIGESTS: refresh::HostDigests = refresh::HostDigests {
    computes: digests::computes,
    digest_files: |folder, paths, algorithm| {
        digests::digest_files(
            folder,
            paths,
            match algorithm {
                refresh::Algorithm::Md5 => wit::DigestAlgorithm::Md5,
                refresh::Algorithm::Sha256 => wit::DigestAlgorithm::Sha256,
            },
        )
    },
};

impl catalogs::Guest for Plugin {
    fn refresh(request: wit::RefreshRequest) -> Result<Vec<wit::ResourceReport>, wit::Error> {
        let o = request.options;
        let req = refresh::Request {
            resources: request.resources,
            options: refresh::Options {
                append: o.contains(wit::RefreshOptions::APPEND),
                checksum: o.contains(wit::RefreshOptions::CHECKSUM),
                delete: o.contains(wit::RefreshOptions::DELETE),
                populate_stats: o.contains(wit::RefreshOptions::POPULATE_STATS),
            },
            algorithm: match request.algorithm {
                wit::DigestAlgorithm::Md5 => refresh::Algorithm::Md5,
                wit::DigestAlgorithm::Sha256 => refresh::Algorithm::Sha256,
            },
            mode: match request.mode {
                wit::RefreshMode::Apply => refresh::Mode::Apply,
                wit::RefreshMode::DryRun => refresh::Mode::DryRun,
                wit::RefreshMode::Verify => refresh::Mode::Verify,
            },
            user: request.user,
            event_id: request.event_id,
            trust_unchanged: request.trust_unchanged.unwrap_or(false),
        };
        let mut hasher = refresh::Hasher::with_host(HOST_DIGESTS);
        let reports = refresh::refresh(&granted(ARCHIVE), &req, &mut hasher, &mut HostProgress).map_err(error)?;
        Ok(reports.into_iter().map(report).collect())
    }

    fn create_resource(spec: wit::ResourceSpec) -> Result<wit::CreatedResource, wit::Error> {
        let spec = resource::ResourceSpec {
            resource: spec.resource,
            format: spec.format,
            content: spec.content,
            description: spec.description,
            tags: spec.tags,
        };
        let created = resource::create_resource(&granted(ARCHIVE), &spec).map_err(error)?;
        Ok(wit::CreatedResource { resource: created.resource, folder: created.folder, catalog: created.catalog })
    }
}

impl prearchive::Guest for Plugin {
    fn list_sessions(project: Option<String>) -> Result<Vec<wit::PrearchiveRow>, wit::Error> {
        let tree = granted(PREARCHIVE);
        let rows = Prearchive::new(&tree).list(project.as_deref()).map_err(error)?;
        Ok(rows.into_iter().map(row).collect())
    }

    fn get(src: String) -> Result<wit::PrearchiveRow, wit::Error> {
        let session = SessionRef::parse_src(&src).map_err(error)?;
        let tree = granted(PREARCHIVE);
        let pre = Prearchive::new(&tree);
        pre.require(&session).map_err(error)?;
        pre.row(&session).map(row).map_err(error)
    }

    fn delete(src: String) -> Result<(), wit::Error> {
        let session = SessionRef::parse_src(&src).map_err(error)?;
        let tree = granted(PREARCHIVE);
        Prearchive::new(&tree).delete(&session).map_err(error)
    }

    fn move_session(src: String, new_project: String) -> Result<wit::PrearchiveRow, wit::Error> {
        let session = SessionRef::parse_src(&src).map_err(error)?;
        // `SessionRef::new` reads an empty project as Unassigned; an empty `newProject` is a missing parameter.
        if new_project.trim().is_empty() {
            return Err(wit::Error::BadRequest(
                "newProject is empty: name the project to move the session to (or Unassigned)".into(),
            ));
        }
        let tree = granted(PREARCHIVE);
        let pre = Prearchive::new(&tree);
        let moved = pre.move_to(&session, &new_project).map_err(error)?;
        pre.row(&moved).map(row).map_err(error)
    }

    fn reset_status(src: String) -> Result<wit::PrearchiveRow, wit::Error> {
        let session = SessionRef::parse_src(&src).map_err(error)?;
        let tree = granted(PREARCHIVE);
        Prearchive::new(&tree).reset_status(&session).map(row).map_err(error)
    }
}

impl validation::Guest for Plugin {
    fn validate(request: wit::ArchiveRequest) -> Result<Vec<wit::ValidationNotice>, wit::Error> {
        let notices = archive::validate(&granted(PREARCHIVE), &granted(ARCHIVE), &params(request)).map_err(error)?;
        Ok(notices
            .into_iter()
            .map(|n| wit::ValidationNotice { code: n.code, kind: n.kind.as_str().to_string(), message: n.message })
            .collect())
    }
}

impl archiver::Guest for Plugin {
    fn archive(request: wit::ArchiveRequest) -> Result<Vec<wit::Archived>, wit::Error> {
        // The test-only switches, which the host passes through from its own environment in test builds.
        let faults = Faults::from_env(|name| std::env::var(name).ok());
        let archived =
            archive::archive(&granted(PREARCHIVE), &granted(ARCHIVE), &params(request), faults, &mut HostProgress)
                .map_err(error)?;
        Ok(archived
            .into_iter()
            .map(|a| {
                let (uri, error) = match a.result {
                    Ok(uri) => (Some(uri), None),
                    Err(e) => (None, Some(error(e))),
                };
                wit::Archived { src: a.src, uri, error }
            })
            .collect())
    }

    fn recover(locks: wit::LockPolicy) -> Result<Vec<wit::Recovered>, wit::Error> {
        let locks = match locks {
            wit::LockPolicy::BreakAll => archive::Locks::Break,
            wit::LockPolicy::RespectLeases => archive::Locks::Respect,
        };
        let recovered = archive::recover(&granted(PREARCHIVE), &granted(ARCHIVE), locks).map_err(error)?;
        Ok(recovered.into_iter().map(|r| wit::Recovered { src: r.src, action: r.action, detail: r.detail }).collect())
    }
}

impl importer::Guest for Plugin {
    fn import(upload: String, parameters: Vec<(String, String)>) -> Result<importer::ImportOutcome, wit::Error> {
        use xnat_core::receive::{self, upload::Staging};
        let request =
            receive::Request::from_params(parameters.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(error)?;
        let pre = granted(PREARCHIVE);
        // The archive is optional: without it, a project a header names is not taken (Unassigned).
        let arch = std::fs::metadata(ARCHIVE).is_ok().then(|| granted(ARCHIVE));
        let source = Tree::new(UPLOAD);
        let rel = xnat_core::fs::tree::RelPath::new(&upload).map_err(error)?;
        let mut file = source.open(&rel).map_err(error)?;
        let staging = Staging::unique(&pre).map_err(error)?;
        if let Err(e) = receive::upload::write_counted(&pre, &staging.body(), &mut file, u64::MAX) {
            staging.remove();
            return Err(error(e));
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let out = receive::import(&pre, arch.as_ref(), &request, staging, now, &mut HostProgress).map_err(error)?;
        Ok(importer::ImportOutcome {
            uris: out.uris,
            files: out.files as u64,
            duplicates: out.duplicates as u64,
            refused: out.rejected.into_iter().map(|(file, reason)| importer::RefusedFile { file, reason }).collect(),
        })
    }

    fn commit(src: String) -> Result<wit::PrearchiveRow, wit::Error> {
        let session = SessionRef::parse_src(&src).map_err(error)?;
        let tree = granted(PREARCHIVE);
        let built = xnat_core::receive::commit(&tree, &session).map_err(error)?;
        if !built.kept {
            return Err(wit::Error::BadRequest(format!("{src} held no DICOM file that could be kept; it was removed")));
        }
        Prearchive::new(&tree).row(&session).map(row).map_err(error)
    }
}

/// Progress goes to the host's `progress` import.
struct HostProgress;

impl Progress for HostProgress {
    fn begin(&mut self, phase: &str, total: u64) {
        xnat::archive::progress::begin(phase, total);
    }
    fn advance(&mut self, units: u64) {
        xnat::archive::progress::advance(units);
    }
    fn end(&mut self) {
        xnat::archive::progress::end();
    }
}

fn error(e: xnat_core::error::Error) -> wit::Error {
    use xnat_core::error::Error as E;
    match e {
        E::BadRequest(m) => wit::Error::BadRequest(m),
        E::Forbidden(m) => wit::Error::Forbidden(m),
        E::NotFound(m) => wit::Error::NotFound(m),
        E::Conflict(m) => wit::Error::Conflict(m),
        E::Locked(m) => wit::Error::Locked(m),
        E::Io(m) => wit::Error::Io(m),
        E::Corrupt(m) => wit::Error::Corrupt(m),
    }
}

fn params(r: wit::ArchiveRequest) -> Params {
    Params {
        src: r.src,
        project: r.project,
        subject: r.subject,
        label: r.label,
        dest: r.dest,
        overwrite: match r.overwrite {
            wit::OverwriteMode::None => Overwrite::None,
            wit::OverwriteMode::Append => Overwrite::Append,
            wit::OverwriteMode::Delete => Overwrite::Delete,
        },
        quarantine: r.quarantine,
        trigger_pipelines: r.trigger_pipelines,
        site_id: r.site_id,
    }
}

fn row(r: Row) -> wit::PrearchiveRow {
    wit::PrearchiveRow {
        project: r.project,
        timestamp: r.timestamp,
        lastmod: r.lastmod,
        uploaded: r.uploaded,
        scan_date: r.scan_date,
        scan_time: r.scan_time,
        subject: r.subject,
        folder_name: r.folder_name,
        name: r.name,
        tag: r.tag,
        status: r.status,
        url: r.url,
        autoarchive: r.autoarchive,
        prevent_anon: r.prevent_anon,
        prevent_auto_commit: r.prevent_auto_commit,
        source: r.source,
        visit: r.visit,
        protocol: r.protocol,
        timezone: r.timezone,
    }
}

impl archive_data::Guest for Plugin {
    fn scans(experiment: String) -> Result<Vec<archive_data::ScanRow>, wit::Error> {
        let rows = browse::scans_at(&granted(ARCHIVE), &experiment).map_err(error)?;
        Ok(rows
            .into_iter()
            .map(|s| archive_data::ScanRow {
                id: s.id,
                type_: s.kind,
                quality: s.quality,
                series_description: s.series_description,
                xsi_type: s.xsi_type,
                note: s.note,
            })
            .collect())
    }

    fn resources(item: String) -> Result<Vec<archive_data::ResourceRow>, wit::Error> {
        let rows = browse::resources_at(&granted(ARCHIVE), &item).map_err(error)?;
        Ok(rows
            .into_iter()
            .map(|r| archive_data::ResourceRow {
                id: browse::resource_id(&r.dir),
                label: r.dir.label,
                uri: r.dir.uri,
                format: r.format,
                content: r.content,
                file_count: r.file_count,
                file_size: r.file_size,
            })
            .collect())
    }

    fn files(resource: String) -> Result<Vec<archive_data::FileRow>, wit::Error> {
        let tree = granted(ARCHIVE);
        let dir = browse::resource_at(&tree, &resource).map_err(error)?;
        let rows = browse::files(&tree, &dir).map_err(error)?;
        Ok(rows
            .into_iter()
            .map(|f| archive_data::FileRow {
                name: f.name,
                size: f.size,
                digest: f.digest,
                format: f.format,
                content: f.content,
            })
            .collect())
    }

    fn read_file(resource: String, name: String, offset: u64, length: u32) -> Result<Vec<u8>, wit::Error> {
        browse::read_file(&granted(ARCHIVE), &resource, &name, offset, length).map_err(error)
    }
}

fn report(r: refresh::ResourceReport) -> wit::ResourceReport {
    wit::ResourceReport {
        resource: r.resource,
        catalog: r.catalog,
        outcome: match r.outcome {
            refresh::Outcome::Written => wit::ResourceOutcome::Written,
            refresh::Outcome::Unchanged => wit::ResourceOutcome::Unchanged,
            refresh::Outcome::NotWritten => wit::ResourceOutcome::NotWritten,
            refresh::Outcome::Skipped(why) => wit::ResourceOutcome::Skipped(why),
            refresh::Outcome::Failed(e) => wit::ResourceOutcome::Failed(error(e)),
        },
        catalog_created: r.catalog_created,
        added: r.added,
        removed: r.removed,
        modified: r.modified,
        mismatches: r
            .mismatches
            .into_iter()
            .map(|m| wit::DigestMismatch { path: m.path, stored: m.stored, actual: m.actual })
            .collect(),
        skipped: r.skipped.into_iter().map(|s| wit::SkippedItem { path: s.path, reason: s.reason }).collect(),
        file_count: r.file_count,
        file_size: r.file_size,
        stats_written: r.stats_written,
        trusted: r.trusted,
    }
}

export!(Plugin);
