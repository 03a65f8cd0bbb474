//! What a caller asks of the import service and what it gets back, by XNAT's names: the parameters of
//! `validate-archive` and `archive` (`src`, `project`, `subject`, `session`, `dest`, `overwrite`, ...), the
//! validation notices, the per-session outcomes, and the test builds' fault switches. Plain data: no
//! logic beyond naming.

use crate::error::Result;

/// XNAT's `overwrite` (D1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// An existing experiment is a conflict (409).
    #[default]
    None,
    /// Merge new scans and files into an existing experiment; never replace a file (a clash is a 409).
    Append,
    /// Merge, replacing clashing files. Nothing else is ever deleted from the archive.
    Delete,
}

impl Overwrite {
    /// XNAT's name: `none`, `append` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overwrite::None => "none",
            Overwrite::Append => "append",
            Overwrite::Delete => "delete",
        }
    }

    /// The value of XNAT's name, in any case; `None` for a name XNAT does not have.
    pub fn parse(name: &str) -> Option<Overwrite> {
        [Overwrite::None, Overwrite::Append, Overwrite::Delete]
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(name))
    }
}

/// The parameters of the archive and validate services, by XNAT name.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// `src` values; several make a batch.
    pub src: Vec<String>,
    pub project: Option<String>,
    /// `subject` / `SUBJECT_ID`.
    pub subject: Option<String>,
    /// `session` / `label` / `EXPT_LABEL`.
    pub label: Option<String>,
    /// `/archive/projects/P[/subjects/S[/experiments/E]]`.
    pub dest: Option<String>,
    pub overwrite: Overwrite,
    pub quarantine: bool,
    pub trigger_pipelines: bool,
    /// The site id of new accession numbers (`XNAT` by default).
    pub site_id: Option<String>,
}

/// The type of a validation notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoticeKind {
    Fail,
    Warn,
    Conflict,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Fail => "FAIL",
            NoticeKind::Warn => "WARN",
            NoticeKind::Conflict => "CONFLICT",
        }
    }
}

/// One validation notice: XNAT's (code, type, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub code: u32,
    pub kind: NoticeKind,
    pub message: String,
}

impl Notice {
    pub fn new(code: u32, kind: NoticeKind, message: impl Into<String>) -> Notice {
        Notice { code, kind, message: message.into() }
    }
}

/// The outcome for one session of an archive request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// `/prearchive/projects/P/TS/FOLDER`.
    pub src: String,
    /// `/data/archive/projects/P/subjects/S/experiments/LABEL`, or why not.
    pub result: Result<String>,
}

/// What recovery did with one interrupted archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub src: String,
    /// `rolled-back` or `completed`.
    pub action: String,
    pub detail: String,
}

/// A test switch: stop the process dead at a numbered point of the archive (see `journal.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub point: Option<u32>,
    /// Milliseconds to wait while holding the session's lock, so tests can make archives overlap.
    pub pause_ms: Option<u64>,
    /// Milliseconds to wait after the journal is written, before the first file moves, so tests can change
    /// the destination between the plan and the moves.
    pub pause_before_moves_ms: Option<u64>,
}

impl Faults {
    /// The environment variable naming the fault point; the host passes it through in test builds.
    pub const POINT_VAR: &'static str = "XNAT_ARCHIVE_FAULT_POINT";
    /// The environment variable naming the pause, in milliseconds.
    pub const PAUSE_MS_VAR: &'static str = "XNAT_ARCHIVE_PAUSE_MS";
    /// The environment variable naming the pause before the moves, in milliseconds.
    pub const PAUSE_BEFORE_MOVES_MS_VAR: &'static str = "XNAT_ARCHIVE_PAUSE_BEFORE_MOVES_MS";

    /// The switches from an environment (`var` looks a name up): absent or not a number → off.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Faults {
        Faults {
            point: var(Self::POINT_VAR).and_then(|v| v.trim().parse().ok()),
            pause_ms: var(Self::PAUSE_MS_VAR).and_then(|v| v.trim().parse().ok()),
            pause_before_moves_ms: var(Self::PAUSE_BEFORE_MOVES_MS_VAR).and_then(|v| v.trim().parse().ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_by_xnat_name() {
        for (name, value) in [("none", Overwrite::None), ("append", Overwrite::Append), ("delete", Overwrite::Delete)] {
            assert_eq!(Overwrite::parse(name), Some(value));
            assert_eq!(value.as_str(), name);
        }
        assert_eq!(Overwrite::parse("APPEND"), Some(Overwrite::Append), "any case, as XNAT");
        assert_eq!(Overwrite::parse("replace"), None);
        assert_eq!(Overwrite::parse(""), None);
    }

    #[test]
    fn faults_from_the_environment_are_numbers_or_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let f = Faults::from_env(env(&[("XNAT_ARCHIVE_FAULT_POINT", " 3 "), ("XNAT_ARCHIVE_PAUSE_MS", "250")]));
        assert_eq!((f.point, f.pause_ms), (Some(3), Some(250)));
        let f = Faults::from_env(env(&[("XNAT_ARCHIVE_FAULT_POINT", "three")]));
        assert_eq!((f.point, f.pause_ms), (None, None));
    }
}
