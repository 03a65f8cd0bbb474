//! The `xnat:archive` library component: WIT exports translated to `xnat-core` calls, core results and
//! errors translated back. No logic lives here.
//!
//! The host grants the archive at the guest path `/archive` (see `wit/archive.wit`).

wit_bindgen::generate!({
    world: "library",
    path: "../../wit",
});

use exports::xnat::archive::catalogs::Guest;
use xnat::archive::types as wit;
use xnat_core::{refresh, resource, tree::Tree};

/// Where the host grants the archive tree inside the component.
const ARCHIVE: &str = "/archive";

struct Plugin;

impl Guest for Plugin {
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
        };
        let reports = refresh::refresh(&Tree::new(ARCHIVE), &req, &mut HostProgress).map_err(error)?;
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
        let created = resource::create_resource(&Tree::new(ARCHIVE), &spec).map_err(error)?;
        Ok(wit::CreatedResource { resource: created.resource, folder: created.folder, catalog: created.catalog })
    }
}

/// Progress goes to the host's `progress` import.
struct HostProgress;

impl refresh::Progress for HostProgress {
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
    }
}

export!(Plugin);
