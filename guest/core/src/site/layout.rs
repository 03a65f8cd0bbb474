//! Where things live in an XNAT archive tree (`catalog-refresh.md` §5, `archive-service.md` §4.5), and how
//! a parsed resource URI becomes resource folders, with XNAT's cascade rules.
//!
//! ```text
//! <archive>/<P>/resources/<LABEL>/                     project resources
//! <archive>/<P>/subjects/<S>.xml                       subject document (ours: XNAT keeps it in its database)
//! <archive>/<P>/subjects/<S>/<LABEL>/                  subject resources
//! <archive>/<P>/arc001/<E>.xml                         experiment (session) document, beside its folder
//! <archive>/<P>/arc001/<E>/RESOURCES/<LABEL>/          experiment resources
//! <archive>/<P>/arc001/<E>/SCANS/<SCAN>/<LABEL>/       scan resources
//! <archive>/<P>/arc001/<E>/ASSESSORS/<A>/[in|out/]<LABEL>/            assessor resources
//! <archive>/<P>/arc001/<E>/[ASSESSORS/]PROCESSED/<RC>/[in|out/]<LABEL>/ reconstruction resources
//! ```
//!
//! Experiments are found by label (their folder, in any `arc###` folder of the project) or by ID (the `ID`
//! of their document); subjects likewise. Project and subject URIs cover only their own resources; an
//! experiment covers its resources, every scan's resources and the *out* resources of its assessors and
//! reconstructions; a scan covers all its resources.

use crate::error::{Error, Result};
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::site::uri::{ExperimentRef, Item, ResourceUri, Side};
use crate::xml::{self, Element};

/// The archive folder new experiments go to (XNAT's default `current_arc`).
pub const CURRENT_ARC: &str = "arc001";

/// A resource folder, ready for refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDir {
    /// The resource as a canonical archive URI.
    pub uri: String,
    pub folder: RelPath,
    pub label: String,
    pub project: String,
    /// The document that records this resource's `file_count`/`file_size`, if one exists.
    pub owner: Option<Owner>,
    /// The catalog `ID` (and name stem) XNAT gives a new catalog here: the label, or the scan or
    /// reconstruction id.
    pub catalog_id: String,
}

/// A document (experiment or subject) and the folder its resource URIs are relative to (D15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub document: RelPath,
    pub base: RelPath,
}

/// An experiment found in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentDir {
    pub project: String,
    pub label: String,
    pub folder: RelPath,
    pub document: Option<RelPath>,
    /// The subject's label, when the documents tell it.
    pub subject: Option<String>,
}

/// A subject found in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDir {
    pub project: String,
    pub label: String,
    pub folder: RelPath,
    pub document: Option<RelPath>,
}

/// The archive tree, read through its grant.
pub struct Archive<'a> {
    tree: &'a Tree,
}

impl<'a> Archive<'a> {
    pub fn new(tree: &'a Tree) -> Self {
        Archive { tree }
    }

    pub fn tree(&self) -> &'a Tree {
        self.tree
    }

    /// The resource folders a URI covers, in a stable order.
    pub fn resources(&self, uri: &ResourceUri) -> Result<Vec<ResourceDir>> {
        let parent = self.parent(&uri.item)?;
        match &uri.resource {
            None => parent.cascade(self),
            Some(r) => match &r.label {
                None => Ok(Vec::new()),
                Some(label) => {
                    let dir = parent.resource(self, label, r.side);
                    if self.tree.is_dir(&dir.folder)? {
                        Ok(vec![dir])
                    } else {
                        Err(Error::NotFound(format!(
                            "resource {label} of {} does not exist (no folder {}); create it first \
                             (xnat-archive resource create, or PUT the resource URL)",
                            parent.uri, dir.folder
                        )))
                    }
                }
            },
        }
    }

    /// The item a URI names, as a parent of resources. `NotFound` if it does not exist.
    pub fn parent(&self, item: &Item) -> Result<Parent> {
        Ok(match item {
            Item::Project(p) => {
                let folder = self.project(p)?;
                Parent {
                    uri: format!("/archive/projects/{p}"),
                    project: p.clone(),
                    kind: ParentKind::Project,
                    folder: folder.join("resources")?,
                    owner: None,
                }
            }
            Item::Subject { project, subject } => {
                let s = self.subject(project.as_deref(), subject)?;
                Parent {
                    uri: format!("/archive/projects/{}/subjects/{}", s.project, s.label),
                    project: s.project.clone(),
                    kind: ParentKind::Subject,
                    owner: s.document.clone().map(|d| Owner { document: d, base: s.folder.clone() }),
                    folder: s.folder,
                }
            }
            Item::Experiment(e) => {
                let e = self.experiment(e)?;
                Parent {
                    uri: experiment_uri(&e),
                    kind: ParentKind::Experiment,
                    ..self.in_experiment(&e, e.folder.clone())
                }
            }
            Item::Scan { experiment, scan } => {
                let e = self.experiment(experiment)?;
                let folder = e.folder.join("SCANS")?.join(scan)?;
                self.experiment_part(&e, ("scan", "scans", scan), folder, ParentKind::Scan(scan.clone()))?
            }
            Item::Assessor { experiment, assessor } => {
                let e = self.experiment(experiment)?;
                let folder = e.folder.join("ASSESSORS")?.join(assessor)?;
                self.experiment_part(&e, ("assessor", "assessors", assessor), folder, ParentKind::Assessor)?
            }
            Item::Reconstruction { experiment, reconstruction } => {
                let e = self.experiment(experiment)?;
                let nested = e.folder.join("ASSESSORS")?.join("PROCESSED")?.join(reconstruction)?;
                let plain = e.folder.join("PROCESSED")?.join(reconstruction)?;
                let folder = if self.tree.is_dir(&plain)? && !self.tree.is_dir(&nested)? { plain } else { nested };
                let kind = ParentKind::Reconstruction(reconstruction.clone());
                self.experiment_part(&e, ("reconstructedImage", "reconstructions", reconstruction), folder, kind)?
            }
        })
    }

    /// A scan, assessor or reconstruction of experiment `e` — `(element, URI segment, id)` — at `folder`:
    /// it exists when the experiment's document lists it or its folder is there.
    fn experiment_part(
        &self,
        e: &ExperimentDir,
        (element, segment, id): (&str, &str, &str),
        folder: RelPath,
        kind: ParentKind,
    ) -> Result<Parent> {
        if !self.document_lists(e, element, id)? && !self.tree.is_dir(&folder)? {
            let what = segment.trim_end_matches('s');
            return Err(Error::NotFound(format!("{what} {id} of {} does not exist", experiment_uri(e))));
        }
        Ok(Parent { uri: format!("{}/{segment}/{id}", experiment_uri(e)), kind, ..self.in_experiment(e, folder) })
    }

    fn in_experiment(&self, e: &ExperimentDir, folder: RelPath) -> Parent {
        Parent {
            uri: String::new(),
            project: e.project.clone(),
            kind: ParentKind::Experiment,
            folder,
            owner: e.document.clone().map(|d| Owner { document: d, base: e.folder.clone() }),
        }
    }

    /// A project's folder; `NotFound` if the archive has none.
    pub fn project(&self, project: &str) -> Result<RelPath> {
        let folder = RelPath::new(project)?;
        if self.tree.is_dir(&folder)? {
            Ok(folder)
        } else {
            Err(Error::NotFound(format!("project {project} does not exist in the archive (no folder {project}/)")))
        }
    }

    pub fn projects(&self) -> Result<Vec<String>> {
        Ok(self
            .tree
            .list(&RelPath::root())?
            .into_iter()
            .filter(|(n, k)| *k == Kind::Dir && !n.starts_with('.'))
            .map(|(n, _)| n)
            .collect())
    }

    /// The items of a folder of subjects or experiments, by label: `<LABEL>.xml` documents and `<LABEL>/`
    /// folders (hidden names aside), sorted.
    fn labels(&self, dir: &RelPath) -> Result<std::collections::BTreeSet<String>> {
        let mut labels = std::collections::BTreeSet::new();
        for (name, kind) in self.tree.list(dir)? {
            match (kind, name.strip_suffix(".xml")) {
                (Kind::File { .. }, Some(label)) if !label.starts_with('.') => labels.insert(label.to_string()),
                (Kind::Dir, None) if !name.starts_with('.') => labels.insert(name),
                _ => false,
            };
        }
        Ok(labels)
    }

    /// A project's subjects: `<P>/subjects/<LABEL>.xml` documents and `<LABEL>/` folders, by label.
    pub fn subjects(&self, project: &str) -> Result<Vec<SubjectDir>> {
        let subjects = self.project(project)?.join("subjects")?;
        if !self.tree.is_dir(&subjects)? {
            return Ok(Vec::new());
        }
        self.labels(&subjects)?
            .into_iter()
            .map(|label| {
                let doc = subjects.join(&format!("{label}.xml"))?;
                let document = matches!(self.tree.kind(&doc)?, Some(Kind::File { .. })).then_some(doc);
                Ok(SubjectDir { project: project.to_string(), folder: subjects.join(&label)?, label, document })
            })
            .collect()
    }

    /// A project's experiments in every `arc###`: folders and `<LABEL>.xml` documents, by label.
    pub fn experiments(&self, project: &str) -> Result<Vec<ExperimentDir>> {
        let pdir = self.project(project)?;
        // Experiment documents name their subject by ID: one pass over the subjects' documents resolves
        // them all (looking each up would read every subject document once per experiment).
        let by_id = self.subject_labels_by_id(project)?;
        let resolve =
            |sid: &str| by_id.get(sid).cloned().or_else(|| self.subject(Some(project), sid).ok().map(|s| s.label));
        let mut out = Vec::new();
        for arc in self.arcs(&pdir)? {
            for label in self.labels(&arc)? {
                // One unreadable document does not hide the others: it is listed without its subject.
                out.push(match self.experiment_at(project, &arc, &label, &resolve) {
                    Err(Error::Corrupt(_)) => ExperimentDir {
                        project: project.to_string(),
                        folder: arc.join(&label)?,
                        document: Some(arc.join(&format!("{label}.xml"))?),
                        subject: None,
                        label,
                    },
                    other => other?,
                });
            }
        }
        Ok(out)
    }

    /// The `arc###` folders of a project, oldest first.
    pub fn arcs(&self, project: &RelPath) -> Result<Vec<RelPath>> {
        let mut out = Vec::new();
        for (name, kind) in self.tree.list(project)? {
            if kind == Kind::Dir && name.starts_with("arc") {
                out.push(project.join(&name)?);
            }
        }
        Ok(out)
    }

    /// Finds a subject by label (its folder or document) or, failing that, by ID in the documents.
    pub fn subject(&self, project: Option<&str>, subject: &str) -> Result<SubjectDir> {
        let projects = match project {
            Some(p) => {
                self.project(p)?;
                vec![p.to_string()]
            }
            None => self.projects()?,
        };
        let mut by_label = Vec::new();
        for p in &projects {
            let subjects = RelPath::new(p)?.join("subjects")?;
            if !self.tree.is_dir(&subjects)? {
                continue;
            }
            let folder = subjects.join(subject)?;
            let doc = subjects.join(&format!("{subject}.xml"))?;
            let has_doc = matches!(self.tree.kind(&doc)?, Some(Kind::File { .. }));
            if self.tree.is_dir(&folder)? || has_doc {
                by_label.push(SubjectDir {
                    project: p.clone(),
                    label: subject.to_string(),
                    folder,
                    document: has_doc.then_some(doc),
                });
                continue;
            }
            for (name, kind) in self.tree.list(&subjects)? {
                let Some(label) = name.strip_suffix(".xml") else {
                    continue;
                };
                if !matches!(kind, Kind::File { .. }) {
                    continue;
                }
                let doc = subjects.join(&name)?;
                if document_id(self.tree, &doc)?.as_deref() == Some(subject) {
                    return Ok(SubjectDir {
                        project: p.clone(),
                        label: label.to_string(),
                        folder: subjects.join(label)?,
                        document: Some(doc),
                    });
                }
            }
        }
        // `/archive/subjects/{S}` takes an ID; a label only when it is unambiguous.
        match (project, by_label.len()) {
            (_, 1) => Ok(by_label.remove(0)),
            (None, n) if n > 1 => Err(Error::BadRequest(format!(
                "subject {subject} exists in several projects; name it as /archive/projects/P/subjects/{subject}"
            ))),
            _ => Err(Error::NotFound(format!(
                "subject {subject} does not exist{}",
                project.map(|p| format!(" in project {p}")).unwrap_or_default()
            ))),
        }
    }

    /// Finds an experiment by label (its folder in any `arc###`) or by ID (its document).
    pub fn experiment(&self, r: &ExperimentRef) -> Result<ExperimentDir> {
        self.find_experiment(r, true)
    }

    /// Finds an experiment of a project by its label only (its folder in any `arc###`): no document is read
    /// to compare IDs, which costs a read of every experiment document of the project when none matches.
    pub fn experiment_by_label(&self, project: &str, label: &str) -> Result<ExperimentDir> {
        let r = ExperimentRef::InProject { project: project.to_owned(), subject: None, experiment: label.to_owned() };
        self.find_experiment(&r, false)
    }

    fn find_experiment(&self, r: &ExperimentRef, by_ids: bool) -> Result<ExperimentDir> {
        let (projects, wanted, subject) = match r {
            ExperimentRef::InProject { project, subject, experiment } => {
                self.project(project)?;
                (vec![project.clone()], experiment.as_str(), subject.as_deref())
            }
            ExperimentRef::Id(id) => (self.projects()?, id.as_str(), None),
        };
        let mut by_label = Vec::new();
        let mut by_id = Vec::new();
        let lookup = |p: &str| {
            let p = p.to_string();
            move |sid: &str| self.subject(Some(&p), sid).ok().map(|s| s.label)
        };
        for p in &projects {
            let pdir = RelPath::new(p)?;
            for arc in self.arcs(&pdir)? {
                let folder = arc.join(wanted)?;
                if self.tree.is_dir(&folder)? {
                    by_label.push(self.experiment_at(p, &arc, wanted, &lookup(p))?);
                    continue;
                }
                if !by_ids {
                    continue;
                }
                for (name, kind) in self.tree.list(&arc)? {
                    let Some(label) = name.strip_suffix(".xml") else {
                        continue;
                    };
                    if !matches!(kind, Kind::File { .. }) {
                        continue;
                    }
                    if document_id(self.tree, &arc.join(&name)?)?.as_deref() == Some(wanted) {
                        by_id.push(self.experiment_at(p, &arc, label, &lookup(p))?);
                    }
                }
            }
        }
        let found = match r {
            // XNAT: `/archive/experiments/{E}` is an accession ID. We also take a label that is unique.
            ExperimentRef::Id(_) => by_id.pop().or_else(|| if by_label.len() == 1 { by_label.pop() } else { None }),
            ExperimentRef::InProject { .. } => by_label.pop().or_else(|| by_id.pop()),
        };
        let Some(found) = found else {
            return Err(Error::NotFound(match r {
                ExperimentRef::Id(id) => {
                    format!("experiment {id} does not exist (no document with that ID)")
                }
                ExperimentRef::InProject { project, experiment, .. } => {
                    format!("experiment {experiment} does not exist in project {project}")
                }
            }));
        };
        if let Some(s) = subject {
            let sd = self.subject(Some(&found.project), s)?;
            if found.subject.as_deref().is_some_and(|fs| fs != sd.label) {
                return Err(Error::NotFound(format!(
                    "experiment {} belongs to subject {}, not {s}",
                    found.label,
                    found.subject.as_deref().unwrap_or("?")
                )));
            }
        }
        Ok(found)
    }

    /// The labels of a project's subjects by their ID (from their documents; a subject without a readable
    /// document or ID is not in it).
    fn subject_labels_by_id(&self, project: &str) -> Result<std::collections::HashMap<String, String>> {
        let mut out = std::collections::HashMap::new();
        for s in self.subjects(project)? {
            let Some(doc) = &s.document else { continue };
            if let Ok(Some(id)) = document_id(self.tree, doc)
                && !id.is_empty()
            {
                out.insert(id, s.label.clone());
            }
        }
        Ok(out)
    }

    /// The experiment `label` in `arc`, its subject's label found by `subject` (from the ID or label its
    /// document names).
    fn experiment_at(
        &self,
        project: &str,
        arc: &RelPath,
        label: &str,
        subject: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ExperimentDir> {
        let folder = arc.join(label)?;
        let doc = arc.join(&format!("{label}.xml"))?;
        let document = matches!(self.tree.kind(&doc)?, Some(Kind::File { .. })).then_some(doc);
        let subject = match &document {
            Some(d) => {
                let root = document_root(self.tree, d)?;
                let sid = root
                    .elements()
                    .find(|c| c.local_name() == "subject_ID")
                    .map(|c| c.text())
                    .or_else(|| root.attr("subject_ID").map(str::to_string));
                match sid {
                    Some(sid) if !sid.is_empty() => subject(&sid),
                    _ => None,
                }
            }
            None => None,
        };
        Ok(ExperimentDir { project: project.to_string(), label: label.to_string(), folder, document, subject })
    }

    /// Whether the experiment's document lists a scan, assessor or reconstruction (by `ID` or `label`).
    fn document_lists(&self, e: &ExperimentDir, local: &str, id: &str) -> Result<bool> {
        let Some(doc) = &e.document else {
            return Ok(false);
        };
        let root = document_root(self.tree, doc)?;
        Ok(find_all(&root, &|el| {
            el.local_name() == local && (el.attr("ID") == Some(id) || el.attr("label") == Some(id))
        })
        .is_some())
    }
}

/// What kind of item owns resources, for XNAT's catalog naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentKind {
    Project,
    Subject,
    Experiment,
    Scan(String),
    Assessor,
    Reconstruction(String),
}

/// An item that holds resources: where its resource folders go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub uri: String,
    pub project: String,
    pub kind: ParentKind,
    /// For experiments the experiment folder; for the others the folder that holds the resource folders.
    pub folder: RelPath,
    pub owner: Option<Owner>,
}

impl Parent {
    /// The folder of resource `label` (which may not exist yet).
    pub fn resource(&self, archive: &Archive, label: &str, side: Side) -> ResourceDir {
        let join = |base: &RelPath, parts: &[&str]| -> RelPath {
            parts.iter().fold(base.clone(), |p, s| p.join(s).expect("checked segments"))
        };
        let folder = match (&self.kind, side) {
            (ParentKind::Experiment, _) => join(&self.folder, &["RESOURCES", label]),
            (ParentKind::Assessor | ParentKind::Reconstruction(_), Side::In) => join(&self.folder, &["in", label]),
            (ParentKind::Assessor | ParentKind::Reconstruction(_), _) => {
                let plain = join(&self.folder, &[label]);
                let out = join(&self.folder, &["out", label]);
                if !archive.tree.is_dir(&plain).unwrap_or(false) && archive.tree.is_dir(&out).unwrap_or(false) {
                    out
                } else {
                    plain
                }
            }
            _ => join(&self.folder, &[label]),
        };
        let side_step = match (&self.kind, side) {
            (ParentKind::Assessor | ParentKind::Reconstruction(_), Side::In) => "/in",
            (ParentKind::Assessor | ParentKind::Reconstruction(_), _) => "/out",
            _ => "",
        };
        self.dir(folder, label, side_step)
    }

    fn dir(&self, folder: RelPath, label: &str, side_step: &str) -> ResourceDir {
        let catalog_id = match &self.kind {
            ParentKind::Scan(id) | ParentKind::Reconstruction(id) => id.clone(),
            _ => label.to_string(),
        };
        ResourceDir {
            uri: format!("{}{side_step}/resources/{label}", self.uri),
            folder,
            label: label.to_string(),
            project: self.project.clone(),
            owner: self.owner.clone(),
            catalog_id,
        }
    }

    /// Every resource folder this item covers under XNAT's cascade rules.
    pub fn cascade(&self, archive: &Archive) -> Result<Vec<ResourceDir>> {
        let tree = archive.tree;
        let mut out = Vec::new();
        match &self.kind {
            ParentKind::Project | ParentKind::Subject | ParentKind::Scan(_) => {
                for label in subdirs(tree, &self.folder)? {
                    out.push(self.dir(self.folder.join(&label)?, &label, ""));
                }
            }
            ParentKind::Assessor | ParentKind::Reconstruction(_) => out.extend(self.out_resources(tree)?),
            ParentKind::Experiment => {
                let res = self.folder.join("RESOURCES")?;
                for label in subdirs(tree, &res)? {
                    out.push(self.dir(res.join(&label)?, &label, ""));
                }
                let scans = self.folder.join("SCANS")?;
                for scan in subdirs(tree, &scans)? {
                    let p = Parent {
                        uri: format!("{}/scans/{scan}", self.uri),
                        kind: ParentKind::Scan(scan.clone()),
                        folder: scans.join(&scan)?,
                        ..self.clone()
                    };
                    out.extend(p.cascade(archive)?);
                }
                let assessors = self.folder.join("ASSESSORS")?;
                for a in subdirs(tree, &assessors)? {
                    if a == "PROCESSED" {
                        continue;
                    }
                    let p = Parent {
                        uri: format!("{}/assessors/{a}", self.uri),
                        kind: ParentKind::Assessor,
                        folder: assessors.join(&a)?,
                        ..self.clone()
                    };
                    out.extend(p.out_resources(tree)?);
                }
                for processed in [assessors.join("PROCESSED")?, self.folder.join("PROCESSED")?] {
                    for rc in subdirs(tree, &processed)? {
                        let p = Parent {
                            uri: format!("{}/reconstructions/{rc}", self.uri),
                            kind: ParentKind::Reconstruction(rc.clone()),
                            folder: processed.join(&rc)?,
                            ..self.clone()
                        };
                        out.extend(p.out_resources(tree)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// An assessor's or reconstruction's resources, without its `in` side.
    fn out_resources(&self, tree: &Tree) -> Result<Vec<ResourceDir>> {
        let mut out = Vec::new();
        for label in subdirs(tree, &self.folder)? {
            match label.as_str() {
                "in" => {}
                "out" => {
                    let o = self.folder.join("out")?;
                    for l in subdirs(tree, &o)? {
                        out.push(self.dir(o.join(&l)?, &l, "/out"));
                    }
                }
                _ => out.push(self.dir(self.folder.join(&label)?, &label, "/out")),
            }
        }
        Ok(out)
    }
}

fn experiment_uri(e: &ExperimentDir) -> String {
    match &e.subject {
        Some(s) => format!("/archive/projects/{}/subjects/{s}/experiments/{}", e.project, e.label),
        None => format!("/archive/projects/{}/experiments/{}", e.project, e.label),
    }
}

/// The sub-folders of a folder (none if it does not exist), hidden ones excluded.
pub(crate) fn subdirs(tree: &Tree, folder: &RelPath) -> Result<Vec<String>> {
    if !tree.is_dir(folder)? {
        return Ok(Vec::new());
    }
    Ok(tree.list(folder)?.into_iter().filter(|(n, k)| *k == Kind::Dir && !n.starts_with('.')).map(|(n, _)| n).collect())
}

/// Reads a document's root element; an unreadable document is `Corrupt`, naming the file.
pub fn document_root(tree: &Tree, doc: &RelPath) -> Result<Element> {
    xml::parse(&tree.read(doc)?).map_err(|e| Error::Corrupt(format!("document {doc} cannot be read: {e}")))
}

/// The `ID` of a document's root element, read from the document's first 16 KiB (where XNAT's documents
/// have their root's start tag) without parsing the rest; a document whose start tag is not there is read
/// whole. For finding a document by ID among thousands (ID claims, `/experiments/ID`): a document malformed
/// after its start tag still shows its ID here, and is refused when it is read whole.
pub fn document_id(tree: &Tree, doc: &RelPath) -> Result<Option<String>> {
    use std::io::Read;
    const HEAD: u64 = 16 << 10;
    let mut head = Vec::with_capacity(HEAD as usize);
    tree.open(doc)?.take(HEAD).read_to_end(&mut head).map_err(|e| Error::io(doc.as_str(), &e))?;
    match xml::root_start(&head) {
        Some(root) => Ok(root.attr("ID").map(str::to_string)),
        None => Ok(document_root(tree, doc)?.attr("ID").map(str::to_string)),
    }
}

/// The first element (depth first) that matches.
pub fn find_all<'e>(el: &'e Element, pred: &dyn Fn(&Element) -> bool) -> Option<&'e Element> {
    if pred(el) {
        return Some(el);
    }
    el.elements().find_map(|c| find_all(c, pred))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "P/resources/PR",
            "P/subjects/S1/SR",
            "P/arc001/E1/RESOURCES/NOTES",
            "P/arc001/E1/SCANS/1/DICOM",
            "P/arc001/E1/SCANS/1/SNAPSHOTS",
            "P/arc001/E1/SCANS/2/DICOM",
            "P/arc001/E1/ASSESSORS/FS1/DATA",
            "P/arc001/E1/ASSESSORS/FS1/in/INPUT",
            "P/arc001/E1/ASSESSORS/FS1/out/STATS",
            "P/arc001/E1/ASSESSORS/PROCESSED/RC1/out/NIFTI",
            "P/arc001/E1/ASSESSORS/PROCESSED/RC1/in/RAW",
            "Q/arc001/E1/RESOURCES/X",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("P/arc001/E1.xml"),
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" ID="XNAT_E00001" project="P" label="E1"><xnat:subject_ID>XNAT_S00001</xnat:subject_ID></xnat:MRSession>"#,
        )
        .unwrap();
        std::fs::write(
            root.join("P/subjects/S1.xml"),
            r#"<xnat:Subject xmlns:xnat="http://nrg.wustl.edu/xnat" ID="XNAT_S00001" project="P" label="S1"/>"#,
        )
        .unwrap();
        let tree = Tree::new(root);
        (dir, tree)
    }

    #[test]
    fn subjects_and_experiments_of_a_project() {
        let (d, tree) = site();
        std::fs::create_dir_all(d.path().join("P/arc002/E2")).unwrap();
        std::fs::write(d.path().join("P/arc002/BROKEN.xml"), "<not xml").unwrap();
        std::fs::write(d.path().join("P/arc001/.E1.lock"), "").unwrap();
        let site = Archive::new(&tree);
        let subjects: Vec<_> =
            site.subjects("P").unwrap().into_iter().map(|s| (s.label, s.document.is_some())).collect();
        assert_eq!(subjects, [("S1".to_string(), true)]);
        let exps: Vec<_> = site.experiments("P").unwrap().into_iter().map(|e| (e.label, e.subject)).collect();
        assert_eq!(
            exps,
            [("E1".to_string(), Some("S1".to_string())), ("BROKEN".to_string(), None), ("E2".to_string(), None)]
        );
        assert!(site.subjects("Q").unwrap().is_empty());
        assert!(matches!(site.experiments("NOPE"), Err(Error::NotFound(_))));
    }

    fn folders(tree: &Tree, uri: &str) -> Result<Vec<String>> {
        let a = Archive::new(tree);
        Ok(a.resources(&ResourceUri::parse(uri)?)?.into_iter().map(|r| r.folder.as_str().to_string()).collect())
    }

    #[test]
    fn cascade_rules() {
        let (_d, tree) = site();
        assert_eq!(folders(&tree, "/archive/projects/P").unwrap(), ["P/resources/PR"]);
        assert_eq!(folders(&tree, "/archive/projects/P/subjects/S1").unwrap(), ["P/subjects/S1/SR"]);
        assert_eq!(
            folders(&tree, "/data/archive/projects/P/subjects/S1/experiments/E1").unwrap(),
            [
                "P/arc001/E1/RESOURCES/NOTES",
                "P/arc001/E1/SCANS/1/DICOM",
                "P/arc001/E1/SCANS/1/SNAPSHOTS",
                "P/arc001/E1/SCANS/2/DICOM",
                "P/arc001/E1/ASSESSORS/FS1/DATA",
                "P/arc001/E1/ASSESSORS/FS1/out/STATS",
                "P/arc001/E1/ASSESSORS/PROCESSED/RC1/out/NIFTI",
            ]
        );
        assert_eq!(
            folders(&tree, "/archive/experiments/XNAT_E00001/scans/1").unwrap(),
            ["P/arc001/E1/SCANS/1/DICOM", "P/arc001/E1/SCANS/1/SNAPSHOTS"]
        );
        assert_eq!(folders(&tree, "/archive/experiments/XNAT_E00001/scans/1/files").unwrap(), Vec::<String>::new());
        assert_eq!(
            folders(&tree, "/archive/projects/P/experiments/XNAT_E00001/assessors/FS1/in/resources/INPUT").unwrap(),
            ["P/arc001/E1/ASSESSORS/FS1/in/INPUT"]
        );
        assert_eq!(folders(&tree, "/archive/subjects/XNAT_S00001/resources/SR/files").unwrap(), ["P/subjects/S1/SR"]);
        let a = Archive::new(&tree);
        let r = a
            .resources(&ResourceUri::parse("/archive/experiments/XNAT_E00001/scans/2/resources/DICOM").unwrap())
            .unwrap();
        assert_eq!(r[0].uri, "/archive/projects/P/subjects/S1/experiments/E1/scans/2/resources/DICOM");
        assert_eq!(r[0].catalog_id, "2");
        assert_eq!(r[0].owner.as_ref().unwrap().document.as_str(), "P/arc001/E1.xml");
    }

    #[test]
    fn unknown_and_ambiguous_items() {
        let (_d, tree) = site();
        for (uri, want) in [
            ("/archive/projects/NOPE", "project NOPE"),
            ("/archive/projects/P/subjects/S9", "subject S9"),
            ("/archive/projects/P/experiments/E9", "experiment E9"),
            ("/archive/experiments/XNAT_E99999", "experiment XNAT_E99999"),
            ("/archive/experiments/XNAT_E00001/scans/7", "scan 7"),
            ("/archive/experiments/XNAT_E00001/resources/NONE", "resource NONE"),
            ("/archive/projects/P/subjects/S1/experiments/E1/assessors/X", "assessor X"),
        ] {
            match folders(&tree, uri) {
                Err(Error::NotFound(m)) => assert!(m.contains(want), "{uri}: {m}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
        // E1 is a label in two projects: only an ID or a project-scoped URI names it.
        assert!(matches!(folders(&tree, "/archive/experiments/E1"), Err(Error::NotFound(_))));
        assert_eq!(folders(&tree, "/archive/projects/Q/experiments/E1").unwrap(), ["Q/arc001/E1/RESOURCES/X"]);
    }
}
