//! The resource-URI grammar of XNAT's refresh and resource services (`catalog-refresh.md` §2.3):
//! `/data/archive/projects/P/subjects/S/experiments/E/scans/1/resources/DICOM` and its relatives.
//!
//! Parsing only checks the shape and the segments; finding the folders is [`crate::site::layout`]'s job.
//! A leading `/data` or `/REST` and the `/archive` step are optional. Segments are percent-decoded once;
//! a segment that is empty, `.`, `..` or holds a separator (also when encoded) is refused, so no URI can
//! name anything outside the archive.

use crate::error::{Error, Result};
use crate::fs::tree::check_segment;
use percent_encoding::percent_decode_str;

/// How an experiment is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExperimentRef {
    /// `/archive/experiments/{ID}`: the accession ID, site-wide.
    Id(String),
    /// `/archive/projects/{P}[/subjects/{S}]/experiments/{E}`: label or ID within a project.
    InProject { project: String, subject: Option<String>, experiment: String },
}

/// The archive item a URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Project(String),
    /// `project` is `None` for `/archive/subjects/{ID}`.
    Subject {
        project: Option<String>,
        subject: String,
    },
    Experiment(ExperimentRef),
    Scan {
        experiment: ExperimentRef,
        scan: String,
    },
    Assessor {
        experiment: ExperimentRef,
        assessor: String,
    },
    Reconstruction {
        experiment: ExperimentRef,
        reconstruction: String,
    },
}

/// Which side of an assessor or reconstruction a resource is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    In,
    Out,
    /// No `in`/`out` step in the URI (XNAT: the assessor's own `resources`, or `out`).
    Unspecified,
}

/// A parsed URI: an item, and optionally one of its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUri {
    pub item: Item,
    pub resource: Option<Resource>,
}

/// The `resources/{LABEL}` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `None` for `…/scans/{SCAN}/files`, which XNAT parses but which matches no resource.
    pub label: Option<String>,
    pub side: Side,
}

impl ResourceUri {
    /// Parses a URI as XNAT's refresh service receives it in its `resource` parameter.
    pub fn parse(uri: &str) -> Result<ResourceUri> {
        let bad = |why: &str| Error::BadRequest(format!("malformed resource URI {uri:?}: {why}"));
        if !uri.starts_with('/') {
            return Err(bad(
                "it must start with /data/archive/, /archive/ or /data/experiments/ (an archive URI, not a file path)",
            ));
        }
        let body = &uri[1..];
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut raw: Vec<&str> = if body.is_empty() { Vec::new() } else { body.split('/').collect() };
        if matches!(raw.first(), Some(&"data") | Some(&"REST")) {
            raw.remove(0);
        }
        if raw.first() == Some(&"archive") {
            raw.remove(0);
        }
        let mut segs = Vec::with_capacity(raw.len());
        for s in raw {
            let decoded =
                percent_decode_str(s).decode_utf8().map_err(|_| bad("a percent-encoded segment is not UTF-8"))?;
            check_segment(&decoded).map_err(|_| {
                bad(&format!(
                    "segment {s:?} is empty, '.', '..' or holds a path separator; URIs cannot leave the archive"
                ))
            })?;
            segs.push(decoded.into_owned());
        }
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        parse_segments(&s).map_err(|why| bad(&why))
    }
}

type Parse<T> = std::result::Result<T, String>;

fn parse_segments(s: &[&str]) -> Parse<ResourceUri> {
    let item = |item: Item, rest: &[&str]| -> Parse<ResourceUri> {
        Ok(ResourceUri { item, resource: resource_tail(rest, Side::Unspecified)? })
    };
    match s {
        [] => Err("it names the whole archive; name a project, subject, experiment, scan or resource".into()),
        ["prearchive", ..] => Err("a prearchive URI is not an archive item; archive the session first".into()),
        ["projects", p, rest @ ..] => match rest {
            [] | ["resources", ..] => item(Item::Project(p.to_string()), rest),
            ["subjects", subj, rest @ ..] => match rest {
                ["experiments", e, rest @ ..] => experiment_tail(
                    ExperimentRef::InProject {
                        project: p.to_string(),
                        subject: Some(subj.to_string()),
                        experiment: e.to_string(),
                    },
                    rest,
                ),
                _ => item(Item::Subject { project: Some(p.to_string()), subject: subj.to_string() }, rest),
            },
            ["experiments", e, rest @ ..] => experiment_tail(
                ExperimentRef::InProject { project: p.to_string(), subject: None, experiment: e.to_string() },
                rest,
            ),
            [other, ..] => {
                Err(format!("unknown step {other:?} after the project (expected resources, subjects or experiments)"))
            }
        },
        ["subjects", subj, rest @ ..] => item(Item::Subject { project: None, subject: subj.to_string() }, rest),
        ["experiments", e, rest @ ..] => experiment_tail(ExperimentRef::Id(e.to_string()), rest),
        [other, ..] => Err(format!("unknown step {other:?} (expected projects, subjects or experiments)")),
    }
}

fn experiment_tail(experiment: ExperimentRef, rest: &[&str]) -> Parse<ResourceUri> {
    let done = |item: Item, rest: &[&str], side: Side| -> Parse<ResourceUri> {
        Ok(ResourceUri { item, resource: resource_tail(rest, side)? })
    };
    match rest {
        [] | ["resources", ..] => done(Item::Experiment(experiment), rest, Side::Unspecified),
        ["scans", scan, tail @ ..] => {
            let item = Item::Scan { experiment, scan: scan.to_string() };
            if tail == ["files"] {
                return Ok(ResourceUri { item, resource: Some(Resource { label: None, side: Side::Unspecified }) });
            }
            done(item, tail, Side::Unspecified)
        }
        ["assessors", a, tail @ ..] => {
            let item = Item::Assessor { experiment, assessor: a.to_string() };
            sided(item, tail)
        }
        ["reconstructions", r, tail @ ..] => {
            let item = Item::Reconstruction { experiment, reconstruction: r.to_string() };
            sided(item, tail)
        }
        [other, ..] => Err(format!(
            "unknown step {other:?} after the experiment (expected resources, scans, assessors or reconstructions)"
        )),
    }
}

fn sided(item: Item, tail: &[&str]) -> Parse<ResourceUri> {
    let (side, rest) = match tail {
        ["in", rest @ ..] => (Side::In, rest),
        ["out", rest @ ..] => (Side::Out, rest),
        rest => (Side::Unspecified, rest),
    };
    if side != Side::Unspecified && rest.is_empty() {
        return Err("in/out must be followed by resources/{LABEL}".into());
    }
    Ok(ResourceUri { item, resource: resource_tail(rest, side)? })
}

/// `[]`, `resources/{LABEL}` or `resources/{LABEL}/files`.
fn resource_tail(rest: &[&str], side: Side) -> Parse<Option<Resource>> {
    match rest {
        [] => Ok(None),
        ["resources", label] | ["resources", label, "files"] => {
            Ok(Some(Resource { label: Some(label.to_string()), side }))
        }
        ["resources"] => Err("resources must be followed by a resource label".into()),
        ["resources", _, "files", ..] => {
            Err("it addresses a file inside a resource; refresh works on whole resources (drop the part after /files)"
                .into())
        }
        [other, ..] => Err(format!("unexpected step {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn in_project(e: &str) -> ExperimentRef {
        ExperimentRef::InProject { project: "P".into(), subject: Some("S".into()), experiment: e.into() }
    }

    #[test]
    fn every_form_of_the_table() {
        let label = |l: &str, side| Some(Resource { label: Some(l.into()), side });
        let u = Side::Unspecified;
        let cases = [
            ("/archive/projects/P", Item::Project("P".into()), None),
            ("/data/archive/projects/P/resources/R", Item::Project("P".into()), label("R", u)),
            ("/REST/projects/P/resources/R/files", Item::Project("P".into()), label("R", u)),
            ("/archive/subjects/XNAT_S00001", Item::Subject { project: None, subject: "XNAT_S00001".into() }, None),
            ("/archive/projects/P/subjects/S", Item::Subject { project: Some("P".into()), subject: "S".into() }, None),
            (
                "/archive/projects/P/subjects/S/resources/R",
                Item::Subject { project: Some("P".into()), subject: "S".into() },
                label("R", u),
            ),
            ("/archive/experiments/XNAT_E00001", Item::Experiment(ExperimentRef::Id("XNAT_E00001".into())), None),
            (
                "/archive/projects/P/experiments/E",
                Item::Experiment(ExperimentRef::InProject {
                    project: "P".into(),
                    subject: None,
                    experiment: "E".into(),
                }),
                None,
            ),
            ("/data/archive/projects/P/subjects/S/experiments/E/", Item::Experiment(in_project("E")), None),
            (
                "/archive/projects/P/subjects/S/experiments/E/resources/R",
                Item::Experiment(in_project("E")),
                label("R", u),
            ),
            (
                "/archive/projects/P/subjects/S/experiments/E/scans/4",
                Item::Scan { experiment: in_project("E"), scan: "4".into() },
                None,
            ),
            (
                "/archive/experiments/X/scans/4/resources/DICOM/files",
                Item::Scan { experiment: ExperimentRef::Id("X".into()), scan: "4".into() },
                label("DICOM", u),
            ),
            (
                "/archive/experiments/X/scans/4/files",
                Item::Scan { experiment: ExperimentRef::Id("X".into()), scan: "4".into() },
                Some(Resource { label: None, side: u }),
            ),
            (
                "/archive/projects/P/subjects/S/experiments/E/assessors/A",
                Item::Assessor { experiment: in_project("E"), assessor: "A".into() },
                None,
            ),
            (
                "/archive/projects/P/subjects/S/experiments/E/assessors/A/in/resources/R",
                Item::Assessor { experiment: in_project("E"), assessor: "A".into() },
                label("R", Side::In),
            ),
            (
                "/archive/projects/P/subjects/S/experiments/E/assessors/A/resources/R",
                Item::Assessor { experiment: in_project("E"), assessor: "A".into() },
                label("R", u),
            ),
            (
                "/archive/experiments/X/reconstructions/RC/out/resources/R/files",
                Item::Reconstruction { experiment: ExperimentRef::Id("X".into()), reconstruction: "RC".into() },
                label("R", Side::Out),
            ),
            (
                "/archive/projects/P/subjects/S/experiments/E/resources/my%20notes",
                Item::Experiment(in_project("E")),
                label("my notes", u),
            ),
        ];
        for (uri, item, resource) in cases {
            assert_eq!(parse(uri), ResourceUri { item, resource }, "{uri}");
        }
    }

    #[test]
    fn malformed_and_escaping_uris_are_bad_requests() {
        for bad in [
            "",
            "archive/projects/P",
            "/",
            "/data",
            "/data/archive",
            "/archive/projects",
            "/archive/projects/P/../Q",
            "/archive/projects/%2e%2e/resources/R",
            "/archive/projects/P/resources/a%2Fb",
            "/archive/projects/P//resources/R",
            "/archive/projects/P/resources/R/files/a.dcm",
            "/archive/projects/P/resources",
            "/archive/projects/P/things/x",
            "/data/prearchive/projects/P/20240101_120000/S",
            "/etc/passwd",
            "/data/xnat/archive/P/arc001/E",
            "/archive/experiments/X/assessors/A/in",
            "/archive/experiments/X/scans/4/snapshots",
            "/archive/projects/P/resources/%ff",
        ] {
            match ResourceUri::parse(bad) {
                Err(Error::BadRequest(m)) => assert!(m.contains("malformed resource URI"), "{m}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
