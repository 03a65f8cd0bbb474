//! `xnat-archive demo`: writes a demo site (`xnat_archive::demo`), then shows the services on it the way
//! a user would type them: list, validate, archive, list again, refresh and verify, then import a zip of
//! DICOM files into the prearchive. Each step prints the
//! command line it stands for and the same output that command prints.
//!
//! Not for writing the site (`xnat_archive::demo`) nor for the commands themselves (the service files).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use xnat_archive::demo::{self, DEMO_PROJECT, ImportSite};
use xnat_archive::{ArchiveRequest, Error, Grant, Limits, RefreshMode, RefreshRequest, Runtime, TerminalProgress};

use super::archive::{print_archived, print_notices};
use super::args::DemoArgs;
use super::exit;
use super::prearchive::print_rows;
use super::refresh::{first_failure, print_reports};

/// `xnat-archive demo`.
pub fn run(runtime: &Runtime, limits: &Limits, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir =
        args.dir.unwrap_or_else(|| std::env::temp_dir().join(format!("xnat-archive-demo-{}", std::process::id())));
    let site =
        demo::write_import_site(&dir).with_context(|| format!("cannot write the demo site to {}", dir.display()))?;
    let demo = Demo::new(runtime, limits, site);
    demo.introduce(&dir)?;
    demo.list(None)?;
    demo.validate()?;
    let uri = demo.archive()?;
    demo.list(Some(DEMO_PROJECT))?;
    let Some(uri) = uri else {
        return demo.not_archived();
    };
    for mode in [RefreshMode::Apply, RefreshMode::Verify] {
        if let Some(code) = demo.refresh(&uri, mode)? {
            return Ok(code);
        }
    }
    demo.import(&dir)?;
    out!("Try it yourself:");
    out!("  xnat-archive prearchive list --prearchive {} --csv", demo.pre);
    out!("  xnat-archive refresh --archive {} --resource {uri} --verify --json", demo.arc);
    Ok(ExitCode::SUCCESS)
}

/// The demo's runtime, site and the session it archives.
struct Demo<'a> {
    runtime: &'a Runtime,
    limits: &'a Limits,
    site: ImportSite,
    /// The session's `src`.
    src: String,
    /// The prearchive and archive folders, as the command lines show them.
    pre: String,
    arc: String,
}

impl<'a> Demo<'a> {
    fn new(runtime: &'a Runtime, limits: &'a Limits, site: ImportSite) -> Demo<'a> {
        let src = ImportSite::src(site.demo_session());
        let (pre, arc) = (site.prearchive.display().to_string(), site.archive.display().to_string());
        Demo { runtime, limits, site, src, pre, arc }
    }

    fn introduce(&self, dir: &Path) -> anyhow::Result<()> {
        out!("Demo site: {}", dir.display());
        out!("  prearchive {}: {} sessions from the generator", self.pre, self.site.sessions.len());
        out!("  archive    {}: projects DEMO and TRIAL, subjects SUBJ1 and T001", self.arc);
        out!();
        Ok(())
    }

    /// The prearchive's sessions, or one project's.
    fn list(&self, project: Option<&str>) -> anyhow::Result<()> {
        let option = project.map(|p| format!(" --project {p}")).unwrap_or_default();
        out!("$ xnat-archive prearchive list --prearchive {}{option}", self.pre);
        let grant = Grant::prearchive(&self.site.prearchive, false);
        let rows = self.runtime.prearchive_list(&[grant], self.limits, project)??;
        print_rows(&rows, project)?;
        out!();
        Ok(())
    }

    fn request(&self) -> ArchiveRequest {
        ArchiveRequest { src: vec![self.src.clone()], ..ArchiveRequest::default() }
    }

    /// The site's two grants.
    fn grants(&self, writable: bool) -> [Grant; 2] {
        [Grant::prearchive(&self.site.prearchive, writable), Grant::archive(&self.site.archive, writable)]
    }

    fn validate(&self) -> anyhow::Result<()> {
        out!("$ xnat-archive validate --prearchive {} --archive {} --src {}", self.pre, self.arc, self.src);
        match self.runtime.validate(&self.grants(false), self.limits, self.request())? {
            Ok(notices) => print_notices(&notices)?,
            Err(e) => show(&e)?,
        }
        out!();
        Ok(())
    }

    /// Archives the session; its experiment's URI when that worked.
    fn archive(&self) -> anyhow::Result<Option<String>> {
        out!("$ xnat-archive archive --prearchive {} --archive {} --src {}", self.pre, self.arc, self.src);
        let archived =
            self.runtime.archive(&self.grants(true), self.limits, self.request(), TerminalProgress::new())?;
        let uri = match archived {
            Ok(archived) => {
                print_archived(&archived)?;
                archived.into_iter().find(|a| a.error.is_none()).and_then(|a| a.uri)
            }
            Err(e) => {
                show(&e)?;
                None
            }
        };
        out!();
        Ok(uri)
    }

    fn not_archived(&self) -> anyhow::Result<ExitCode> {
        out!("The session was not archived, so there is no experiment to refresh and verify.");
        out!();
        out!("Try it yourself:");
        out!("  xnat-archive prearchive list --prearchive {} --csv", self.pre);
        out!("  xnat-archive validate --prearchive {} --archive {} --src {} --json", self.pre, self.arc, self.src);
        Ok(ExitCode::SUCCESS)
    }

    /// Refreshes (as user `demo`) or verifies the archived experiment; the exit code when a resource failed.
    fn refresh(&self, uri: &str, mode: RefreshMode) -> anyhow::Result<Option<ExitCode>> {
        let verify = if mode == RefreshMode::Verify { " --verify" } else { "" };
        out!("$ xnat-archive refresh --archive {} --resource {uri}{verify}", self.arc);
        let user = mode.writes().then(|| "demo".to_owned());
        let request = RefreshRequest { resources: vec![uri.to_owned()], mode, user, ..Default::default() };
        let grant = Grant::archive(&self.site.archive, mode.writes());
        let reports = self.runtime.refresh(&[grant], self.limits, request, TerminalProgress::new())??;
        print_reports(&reports, mode)?;
        if let Some(e) = first_failure(&reports) {
            return Ok(Some(exit::code(e)));
        }
        out!();
        Ok(None)
    }
}

impl Demo<'_> {
    /// Writes a zip of sample DICOM files (two series of a new study, and a note that is not DICOM) and
    /// imports it into project DEMO; then lists the project's prearchive.
    fn import(&self, dir: &Path) -> anyhow::Result<()> {
        use xnat_core::receive::samples::{dicom, zip_of};
        let files: Vec<(String, Vec<u8>)> = (1..=3)
            .map(|n| {
                (
                    format!("T1/{n}.dcm"),
                    dicom("1.2.826.0.1.3680043.2.1125.5", "1.2.826.0.1.3680043.2.1125.5.1", "2", n, "MR", "SUBJ5"),
                )
            })
            .chain((1..=2).map(|n| {
                (
                    format!("T2/{n}.dcm"),
                    dicom("1.2.826.0.1.3680043.2.1125.5", "1.2.826.0.1.3680043.2.1125.5.2", "3", n, "MR", "SUBJ5"),
                )
            }))
            .chain(std::iter::once(("notes.txt".to_string(), b"scanned on the demo scanner".to_vec())))
            .collect();
        let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        let upload = dir.join("upload.zip");
        std::fs::write(&upload, zip_of(&named)).with_context(|| format!("cannot write {}", upload.display()))?;
        out!(
            "$ xnat-archive import {} --prearchive {} --archive {} --project {DEMO_PROJECT}",
            upload.display(),
            self.pre,
            self.arc
        );
        let grants = [Grant::prearchive(&self.site.prearchive, true), Grant::archive(&self.site.archive, false)];
        let parameters = [("project".to_string(), DEMO_PROJECT.to_string())];
        match self.runtime.import(&grants, self.limits, &upload, &parameters, TerminalProgress::new())? {
            Ok(outcome) => super::import::print_outcome(&outcome)?,
            Err(e) => show(&e)?,
        }
        out!();
        self.list(Some(DEMO_PROJECT))
    }
}

/// An error of validate or archive: the demo shows it and goes on (the listings still tell the story).
fn show(error: &Error) -> std::io::Result<()> {
    out!("error ({}, HTTP {}): {}", error.kind(), error.http_status(), error.message());
    out!("(the demo goes on)");
    Ok(())
}
