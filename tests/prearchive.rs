//! End to end: the prearchive commands (list, move, reset-status, delete) and the archive services' command
//! line, through the real `xnat-archive` host and the real component, on a generated prearchive site
//! (`xnat_archive::generator::write_site`: seven sessions in DEMO, TRIAL and Unassigned, one still being
//! received).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use xnat_archive::generator::{self, Modality, SessionSpec};
use xnat_archive::{ArchiveRequest, Error, Grant, Limits, NoProgress, PrearchiveRow, Runtime};
use xnat_core::xml::{self, Element};

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pre: PathBuf,
    arc: PathBuf,
    specs: Vec<SessionSpec>,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let (pre, arc) = (root.join("prearchive"), root.join("archive"));
    fs::create_dir_all(&pre).unwrap();
    fs::create_dir_all(&arc).unwrap();
    let specs = generator::write_site(&pre, &arc).unwrap();
    Site { _dir: dir, root, pre, arc, specs }
}

impl Site {
    fn pre_arg(&self) -> &str {
        self.pre.to_str().unwrap()
    }
    fn arc_arg(&self) -> &str {
        self.arc.to_str().unwrap()
    }
    fn spec(&self, folder: &str) -> &SessionSpec {
        self.specs.iter().find(|s| s.folder == folder).unwrap_or_else(|| panic!("no session {folder}"))
    }
    /// `/prearchive/projects/P/TS/FOLDER` of a generated session.
    fn src(&self, folder: &str) -> String {
        let s = self.spec(folder);
        format!("/prearchive/projects/{}/{}/{}", s.project.as_deref().unwrap_or("Unassigned"), s.timestamp, s.folder)
    }
    /// The timestamp folder of a session, relative to the prearchive (`DEMO/TS` or `TS`).
    fn ts_dir(&self, folder: &str) -> String {
        let s = self.spec(folder);
        match &s.project {
            Some(p) => format!("{p}/{}", s.timestamp),
            None => s.timestamp.clone(),
        }
    }
    /// The listing rows (`--json`), with the exit code.
    fn list(&self, project: Option<&str>) -> (i32, Vec<Value>) {
        let mut args = vec!["prearchive", "list", "--prearchive", self.pre_arg()];
        if let Some(p) = project {
            args.extend(["--project", p]);
        }
        let (code, json) = cli_json(&args);
        let rows = json["ResultSet"]["Result"].as_array().unwrap_or_else(|| panic!("no Result: {json}")).clone();
        assert_eq!(json["ResultSet"]["totalRecords"], Value::String(rows.len().to_string()), "{json}");
        (code, rows)
    }
    fn row(&self, folder: &str) -> Value {
        let (_, rows) = self.list(None);
        rows.into_iter().find(|r| r["folderName"] == folder).unwrap_or_else(|| panic!("{folder} not listed"))
    }
    /// Runs a prearchive command on the given sources (with `--json`); (exit code, JSON).
    fn run(&self, command: &str, src: &[&str], extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["prearchive", command, "--prearchive", self.pre_arg()];
        for s in src {
            args.extend(["--src", s]);
        }
        args.extend(extra);
        cli_json(&args)
    }
}

const COLUMNS: [&str; 19] = [
    "project",
    "timestamp",
    "lastmod",
    "uploaded",
    "scan_date",
    "scan_time",
    "subject",
    "folderName",
    "name",
    "tag",
    "status",
    "url",
    "autoarchive",
    "prevent_anon",
    "prevent_auto_commit",
    "SOURCE",
    "VISIT",
    "PROTOCOL",
    "TIMEZONE",
];

fn stdout(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Splits one CSV record (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The session document's root element.
fn document(path: &Path) -> Element {
    xml::parse(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn child_text(el: &Element, name: &str) -> Option<String> {
    el.elements().find(|c| c.name == name).map(Element::text)
}

/// `tree` with every path under `from` moved under `to` (both relative, ending without `/`).
fn renamed(tree: &BTreeMap<String, String>, from: &str, to: &str) -> BTreeMap<String, String> {
    tree.iter()
        .map(|(k, v)| match k.strip_prefix(from) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('.') => {
                (format!("{to}{rest}"), v.clone())
            }
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

#[test]
fn list_all_sessions_in_xnat_columns() {
    let site = site();
    let (code, rows) = site.list(None);
    assert_eq!(code, 0);
    assert_eq!(rows.len(), 7);

    let mut statuses: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("{k} is not a string: {r}")).to_string();
            (s("project"), s("folderName"), s("status"))
        })
        .collect();
    statuses.sort();
    let expected = [
        ("DEMO", "SUBJ1_MR1", "READY"),
        ("DEMO", "SUBJ2_MR1", "READY"),
        ("DEMO", "SUBJ3_CT1", "READY"),
        ("DEMO", "SUBJ4_MR1", "RECEIVING"),
        ("TRIAL", "T001_PET1", "READY"),
        ("TRIAL", "T002_MR1", "READY"),
        ("Unassigned", "ANON01_MR", "READY"),
    ]
    .map(|(p, f, s)| (p.to_string(), f.to_string(), s.to_string()));
    assert_eq!(statuses, expected);

    // Every row has exactly XNAT's 19 columns, all strings, in XNAT's order.
    for row in &rows {
        let obj = row.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = COLUMNS.to_vec();
        want.sort();
        assert_eq!(keys, want);
        assert!(obj.values().all(Value::is_string), "{row}");
    }
    let text = stdout(&["prearchive", "list", "--prearchive", site.pre_arg(), "--json"]);
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("        \"") && !l.starts_with("         "))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(keys.len(), 7 * 19, "{text}");
    for chunk in keys.chunks(19) {
        assert_eq!(chunk, COLUMNS);
    }
    assert_eq!(PrearchiveRow::COLUMNS, COLUMNS);

    // One row in detail.
    let spec = site.spec("SUBJ1_MR1");
    let row = rows.iter().find(|r| r["folderName"] == "SUBJ1_MR1").unwrap();
    let ts = &spec.timestamp;
    for (column, value) in [
        ("project", "DEMO"),
        ("timestamp", ts.as_str()),
        ("scan_date", spec.date.as_str()),
        ("scan_time", spec.time.as_str()),
        ("subject", "SUBJ1"),
        ("name", "SUBJ1_MR1"),
        ("tag", spec.study_uid.as_str()),
        ("status", "READY"),
        ("url", site.src("SUBJ1_MR1").as_str()),
        ("autoarchive", "Manual"),
        ("prevent_anon", "false"),
        ("prevent_auto_commit", "false"),
    ] {
        assert_eq!(row[column], value, "{column}: {row}");
    }
    let lastmod = row["lastmod"].as_str().unwrap();
    assert!(lastmod.len() >= 21 && lastmod.as_bytes()[10] == b' ', "{lastmod}");
    // The session being received has no document: folder name as its name, no date, no UID.
    let receiving = rows.iter().find(|r| r["folderName"] == "SUBJ4_MR1").unwrap();
    assert_eq!((receiving["name"].as_str(), receiving["tag"].as_str()), (Some("SUBJ4_MR1"), Some("")));
    // `uploaded` is the timestamp folder as java.sql.Timestamp prints it (trailing zeros of the
    // milliseconds dropped, ".0" for none); the legacy 15-character timestamp has no milliseconds.
    let legacy = rows.iter().find(|r| r["folderName"] == "T002_MR1").unwrap();
    assert!(legacy["uploaded"].as_str().unwrap().ends_with(".0"), "{legacy}");

    // CSV: the header, then the same rows.
    let csv = stdout(&["prearchive", "list", "--prearchive", site.pre_arg(), "--csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
    let records: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert_eq!(records.len(), 7);
    for (record, row) in records.iter().zip(&rows) {
        let values: Vec<&str> = COLUMNS.iter().map(|c| row[*c].as_str().unwrap()).collect();
        assert_eq!(record, &values);
    }

    // The readable table names every session.
    let table = stdout(&["prearchive", "list", "--prearchive", site.pre_arg()]);
    for spec in &site.specs {
        assert!(table.contains(&spec.folder), "{table}");
    }
    assert!(table.contains("RECEIVING") && table.trim_end().ends_with("7 sessions"), "{table}");
    for (timestamp, uploaded) in [
        ("20240131_101500123", "2024-01-31 10:15:00.123"),
        ("20240131_101500120", "2024-01-31 10:15:00.12"),
        ("20240131_101500000", "2024-01-31 10:15:00.0"),
        ("20231231_235959", "2023-12-31 23:59:59.0"),
    ] {
        let mut s = SessionSpec::new(Some("UP"), &format!("U{}", &timestamp[9..]), Modality::Mr, 9);
        s.timestamp = timestamp.into();
        generator::write_session(&site.pre, &s).unwrap();
        let (_, rows) = site.list(Some("UP"));
        let row = rows.iter().find(|r| r["timestamp"] == timestamp).unwrap_or_else(|| panic!("{rows:?}"));
        assert_eq!(row["uploaded"], uploaded, "{row}");
    }
}

#[test]
fn csv_quotes_what_needs_quoting() {
    let site = site();
    // A folder with a comma and a quote in its name (the prearchive allows it; CSV must quote it).
    let mut spec = SessionSpec::new(Some("DEMO"), "A,B\"C", generator::Modality::Ct, 77);
    spec.timestamp = "20240101_000000000".into();
    generator::write_session(&site.pre, &spec).unwrap();
    let csv = stdout(&["prearchive", "list", "--prearchive", site.pre_arg(), "--project", "DEMO", "--csv"]);
    let line = csv.lines().find(|l| l.contains("A,B")).unwrap();
    assert!(line.contains("\"A,B\"\"C\""), "{line}");
    let fields = csv_fields(line);
    assert_eq!(fields.len(), 19);
    assert_eq!(fields[7], "A,B\"C");
}

#[test]
fn list_one_project_and_unassigned() {
    let site = site();
    for (project, n) in [("DEMO", 4), ("TRIAL", 2), ("Unassigned", 1), ("NOSUCH", 0)] {
        let (code, rows) = site.list(Some(project));
        assert_eq!((code, rows.len()), (0, n), "{project}: {rows:?}");
        assert!(rows.iter().all(|r| r["project"] == project), "{rows:?}");
    }
    let (_, rows) = site.list(Some("Unassigned"));
    let anon = &rows[0];
    // No label and no subject in its document: XNAT falls back to the patient id and name.
    assert_eq!(anon["folderName"], "ANON01_MR");
    assert_eq!(anon["name"], "ANON01");
    assert_eq!(anon["subject"], "ANON01");
    assert_eq!(anon["url"], site.src("ANON01_MR"));
    assert!(site.src("ANON01_MR").starts_with("/prearchive/projects/Unassigned/"));
    let empty = stdout(&["prearchive", "list", "--prearchive", site.pre_arg(), "--project", "NOSUCH"]);
    assert!(empty.contains("no sessions"), "{empty}");
}

#[test]
fn move_to_another_project_to_unassigned_and_back() {
    let site = site();
    let before = snapshot(&site.pre);
    let spec = site.spec("SUBJ2_MR1").clone();
    let ts = spec.timestamp.clone();
    let doc_name = format!("{ts}/SUBJ2_MR1.xml");

    // DEMO → TRIAL.
    let (code, out) = site.run("move", &[&site.src("SUBJ2_MR1")], &["--new-project", "TRIAL"]);
    assert_eq!(code, 0, "{out}");
    let moved = &out["moved"][0];
    assert_eq!(moved["error"], Value::Null);
    assert_eq!(moved["row"]["url"], format!("/prearchive/projects/TRIAL/{ts}/SUBJ2_MR1"));
    assert_eq!((moved["row"]["project"].as_str(), moved["row"]["status"].as_str()), (Some("TRIAL"), Some("READY")));
    let (_, trial) = site.list(Some("TRIAL"));
    assert!(trial.iter().any(|r| r["folderName"] == "SUBJ2_MR1" && r["status"] == "READY"), "{trial:?}");
    let (_, demo) = site.list(Some("DEMO"));
    assert!(!demo.iter().any(|r| r["folderName"] == "SUBJ2_MR1"));

    let doc = document(&site.pre.join("TRIAL").join(&doc_name));
    assert_eq!(doc.attr("project"), Some("TRIAL"));
    let new_dir = std::path::absolute(site.pre.join("TRIAL").join(&ts).join("SUBJ2_MR1")).unwrap();
    assert_eq!(child_text(&doc, "xnat:prearchivePath").map(PathBuf::from), Some(new_dir));
    assert!(!site.pre.join("DEMO").join(&ts).exists(), "the emptied timestamp folder is removed");
    assert!(site.pre.join("DEMO").is_dir(), "DEMO still has sessions");

    // Everything else is as it was: the session's files moved byte for byte, nothing else touched.
    let after = snapshot(&site.pre);
    let mut expected = renamed(&before, &format!("DEMO/{ts}"), &format!("TRIAL/{ts}"));
    let mut got = after.clone();
    let key = format!("TRIAL/{doc_name}");
    assert_ne!(got.remove(&key), expected.remove(&key), "the document changed");
    assert_eq!(got, expected);

    // TRIAL → Unassigned: the session goes to the root and its document loses its project.
    let src = format!("/prearchive/projects/TRIAL/{ts}/SUBJ2_MR1");
    let (code, out) = site.run("move", &[&src], &["--new-project", "Unassigned"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["moved"][0]["row"]["url"], format!("/prearchive/projects/Unassigned/{ts}/SUBJ2_MR1"));
    assert_eq!(out["moved"][0]["row"]["project"], "Unassigned");
    assert!(site.pre.join(&ts).join("SUBJ2_MR1").is_dir());
    assert_eq!(document(&site.pre.join(&doc_name)).attr("project"), None);
    assert!(!site.pre.join("TRIAL").join(&ts).exists());
    let (_, unassigned) = site.list(Some("Unassigned"));
    assert_eq!(unassigned.len(), 2);

    // Unassigned → DEMO (a src with /data): the tree is back as it was, the document equal but for the
    // place of its project attribute.
    let src = format!("/data/prearchive/projects/Unassigned/{ts}/SUBJ2_MR1");
    let (code, out) = site.run("move", &[&src], &["--new-project", "DEMO"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["moved"][0]["row"]["url"], site.src("SUBJ2_MR1"));
    assert!(!site.pre.join(&ts).exists());
    let mut back = snapshot(&site.pre);
    let mut original = before.clone();
    let key = format!("DEMO/{doc_name}");
    back.remove(&key);
    original.remove(&key);
    assert_eq!(back, original);
    let doc = document(&spec.document_path(&site.pre));
    let mut attrs = doc.attrs.clone();
    attrs.sort();
    let mut generated = xml::parse(&generated_document(&spec)).unwrap().attrs;
    generated.sort();
    assert_eq!(attrs, generated);
    assert_eq!(
        child_text(&doc, "xnat:prearchivePath").map(PathBuf::from),
        Some(std::path::absolute(spec.session_dir(&site.pre)).unwrap())
    );
    let (_, rows) = site.list(None);
    assert_eq!(rows.len(), 7);

    // The text output says where the session went.
    let text = stdout(&[
        "prearchive",
        "move",
        "--prearchive",
        site.pre_arg(),
        "--src",
        &site.src("SUBJ2_MR1"),
        "--new-project",
        "TRIAL",
    ]);
    assert!(text.contains(&format!("-> /prearchive/projects/TRIAL/{ts}/SUBJ2_MR1 (READY)")), "{text}");
}

/// The bytes the generator writes for a session's document (in a scratch prearchive).
fn generated_document(spec: &SessionSpec) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    generator::write_session(dir.path(), spec).unwrap();
    fs::read(spec.document_path(dir.path())).unwrap()
}

#[test]
fn move_refusals() {
    let site = site();
    let before = snapshot(&site.pre);
    let src = site.src("SUBJ1_MR1");
    // Already there; a project name that is not a name; an empty one.
    for (project, code) in [("DEMO", 2), ("../TRIAL", 2), ("a/b", 2), ("", 2)] {
        let (got, out) = site.run("move", &[&src], &["--new-project", project]);
        assert_eq!(got, code, "{project:?}: {out}");
        assert_eq!(out["moved"][0]["error"]["kind"], "bad-request", "{out}");
    }
    // A session of that name already waits in the target project.
    let mut twin = site.spec("SUBJ1_MR1").clone();
    twin.project = Some("TRIAL".into());
    generator::write_session(&site.pre, &twin).unwrap();
    let with_twin = snapshot(&site.pre);
    let (code, out) = site.run("move", &[&src], &["--new-project", "TRIAL"]);
    assert_eq!(code, 5, "{out}");
    assert_eq!(out["moved"][0]["error"]["kind"], "conflict");
    assert_eq!(snapshot(&site.pre), with_twin);
    fs::remove_dir_all(site.pre.join("TRIAL").join(&twin.timestamp)).unwrap();
    assert_eq!(snapshot(&site.pre), before);
}

#[test]
fn reset_status_forgets_a_persisted_status() {
    let site = site();
    let before = snapshot(&site.pre);
    let src = site.src("SUBJ1_MR1");

    // Nothing persisted: the row is what the disk says, and nothing changes.
    let (code, out) = site.run("reset-status", &[&src], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["reset"][0]["row"]["status"], "READY");
    assert_eq!(snapshot(&site.pre), before);

    // A CONFLICT left by a failed archive (persisted beside the session, as the core keeps it).
    let status_file = site.pre.join(site.ts_dir("SUBJ1_MR1")).join(".SUBJ1_MR1.status");
    fs::write(&status_file, "CONFLICT\nSession already exists with matching files.").unwrap();
    assert_eq!(site.row("SUBJ1_MR1")["status"], "CONFLICT");
    let (code, out) = site.run("reset-status", &[&src], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["reset"][0]["row"]["status"], "READY");
    assert_eq!(out["reset"][0]["error"], Value::Null);
    assert!(!status_file.exists());
    assert_eq!(site.row("SUBJ1_MR1")["status"], "READY");
    assert_eq!(snapshot(&site.pre), before);

    // An ERROR on the session being received goes back to RECEIVING; text output.
    let receiving = site.src("SUBJ4_MR1");
    fs::write(site.pre.join(site.ts_dir("SUBJ4_MR1")).join(".SUBJ4_MR1.status"), "ERROR").unwrap();
    assert_eq!(site.row("SUBJ4_MR1")["status"], "ERROR");
    let text = stdout(&["prearchive", "reset-status", "--prearchive", site.pre_arg(), "--src", &receiving]);
    assert_eq!(text.trim(), format!("reset {receiving}: RECEIVING"));
    assert_eq!(snapshot(&site.pre), before);
}

#[test]
fn delete_removes_folder_document_and_empty_timestamp_folder() {
    let site = site();
    let before = snapshot(&site.pre);

    let (code, out) = site.run("delete", &[&site.src("SUBJ3_CT1")], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["deleted"][0]["src"], site.src("SUBJ3_CT1"));
    assert_eq!(out["deleted"][0]["error"], Value::Null);
    let ts_dir = site.ts_dir("SUBJ3_CT1");
    assert!(!site.pre.join(&ts_dir).exists(), "the timestamp folder held only this session");
    assert!(site.pre.join("DEMO").is_dir());
    let expected: BTreeMap<String, String> = before
        .iter()
        .filter(|(k, _)| !k.starts_with(&format!("{ts_dir}/")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(snapshot(&site.pre), expected);
    let (_, rows) = site.list(None);
    assert_eq!(rows.len(), 6);

    // A session still being received (no document), and an Unassigned one (timestamp folder at the root),
    // in one command; text output.
    let text = stdout(&[
        "prearchive",
        "delete",
        "--prearchive",
        site.pre_arg(),
        "--src",
        &site.src("SUBJ4_MR1"),
        "--src",
        &format!("/data{}", site.src("ANON01_MR")),
    ]);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with(&format!("deleted {}", site.src("SUBJ4_MR1"))), "{text}");
    for folder in ["SUBJ4_MR1", "ANON01_MR"] {
        assert!(!site.pre.join(site.ts_dir(folder)).exists(), "{folder}");
    }
    let (_, rows) = site.list(None);
    assert_eq!(rows.len(), 4);
    let (_, unassigned) = site.list(Some("Unassigned"));
    assert!(unassigned.is_empty());

    // Deleting it again: not found (4).
    let (code, out) = site.run("delete", &[&site.src("SUBJ3_CT1")], &[]);
    assert_eq!(code, 4, "{out}");
    assert_eq!(out["deleted"][0]["error"]["kind"], "not-found");
}

#[test]
fn unknown_sessions_are_not_found() {
    let site = site();
    let before = snapshot(&site.pre);
    let unknown = "/prearchive/projects/DEMO/20240101_000000000/NOPE";
    for (command, extra) in [("delete", &[][..]), ("reset-status", &[][..]), ("move", &["--new-project", "TRIAL"][..])]
    {
        let (code, out) = site.run(command, &[unknown], extra);
        assert_eq!(code, 4, "{command}: {out}");
        let key = out.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(out[&key][0]["error"]["kind"], "not-found", "{out}");
    }
    // Text mode: the error on stderr, the exit code of the error.
    let out = cli(&["prearchive", "delete", "--prearchive", site.pre_arg(), "--src", unknown]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{out:?}");
    // A known and an unknown session: the known one is deleted, the exit code is the unknown one's.
    let (code, out) = site.run("delete", &[&site.src("SUBJ1_MR1"), unknown], &[]);
    assert_eq!(code, 4, "{out}");
    assert_eq!(out["deleted"][0]["error"], Value::Null);
    assert!(!site.spec("SUBJ1_MR1").session_dir(&site.pre).exists());
    assert_ne!(snapshot(&site.pre), before);
    // A prearchive folder that does not exist.
    let missing = site.root.join("nowhere");
    let (code, out) = cli_json(&["prearchive", "list", "--prearchive", missing.to_str().unwrap()]);
    assert_eq!((code, out["error"]["kind"].as_str()), (4, Some("not-found")), "{out}");
}

#[test]
fn bad_src_values_are_bad_requests() {
    let site = site();
    let before = snapshot(&site.pre);
    let ts = site.spec("SUBJ1_MR1").timestamp.clone();
    let bad = [
        format!("/prearchive/projects/DEMO/{ts}/../../TRIAL"),
        "/data/prearchive/projects/DEMO/../../../etc".to_string(),
        format!("/data/prearchive/projects/DEMO/%2e%2e/{ts}/SUBJ1_MR1"),
        format!("/data/prearchive/projects/%2e%2e/{ts}/SUBJ1_MR1"),
        format!("/data/prearchive/projects/DEMO/{ts}%2FSUBJ1_MR1/x"),
        "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1".to_string(),
        "/archive/experiments/XNAT_E00001".to_string(),
        format!("/prearchive/DEMO/{ts}/SUBJ1_MR1"),
        format!("/data/prearchive/projects/DEMO/{ts}"),
        format!("/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1/SCANS"),
        format!("prearchive/projects/DEMO/{ts}/SUBJ1_MR1"),
        site.pre.join("DEMO").join(&ts).join("SUBJ1_MR1").to_string_lossy().into_owned(),
    ];
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    // Each prearchive command with all of them at once: every one is refused in its own row.
    for (command, extra) in [("delete", &[][..]), ("reset-status", &[][..]), ("move", &["--new-project", "TRIAL"][..])]
    {
        let (code, out) = site.run(command, &bad, extra);
        assert_eq!(code, 2, "{command}: {out}");
        let key = out.as_object().unwrap().keys().next().unwrap().clone();
        let rows = out[&key].as_array().unwrap();
        assert_eq!(rows.len(), bad.len());
        for (row, src) in rows.iter().zip(&bad) {
            assert_eq!(row["src"], *src);
            assert_eq!(row["error"]["kind"], "bad-request", "{command} {src}: {row}");
        }
    }
    // archive and validate refuse the request whole (through the CLI for two of them, the embedding API
    // for all).
    for src in [bad[1], bad[5]] {
        let dirs = ["--prearchive", site.pre_arg(), "--archive", site.arc_arg(), "--src", src];
        for command in ["archive", "validate"] {
            let mut args = vec![command];
            args.extend(dirs);
            let (code, out) = cli_json(&args);
            assert_eq!((code, out["error"]["kind"].as_str()), (2, Some("bad-request")), "{command} {src}: {out}");
        }
    }
    let runtime = Runtime::new().unwrap();
    let grants = [Grant::prearchive(&site.pre, true), Grant::archive(&site.arc, true)];
    for src in &bad {
        let request = ArchiveRequest { src: vec![src.to_string()], ..ArchiveRequest::default() };
        let validated = runtime.validate(&grants, &Limits::default(), request.clone()).unwrap();
        assert!(matches!(validated, Err(Error::BadRequest(_))), "validate {src}: {validated:?}");
        let archived = runtime.archive(&grants, &Limits::default(), request, NoProgress).unwrap();
        assert!(matches!(archived, Err(Error::BadRequest(_))), "archive {src}: {archived:?}");
    }
    assert_eq!(snapshot(&site.pre), before);
}

#[test]
fn listing_needs_only_a_read_only_grant() {
    let site = site();
    let before = snapshot(&site.pre);
    let runtime = Runtime::new().unwrap();
    let read_only = [Grant::prearchive(&site.pre, false)];
    let limits = Limits::default();

    let rows = runtime.prearchive_list(&read_only, &limits, None).unwrap().unwrap();
    assert_eq!(rows.len(), 7);
    let demo = runtime.prearchive_list(&read_only, &limits, Some("DEMO")).unwrap().unwrap();
    assert_eq!(demo.len(), 4);
    let row = runtime.prearchive_get(&read_only, &limits, &site.src("SUBJ1_MR1")).unwrap().unwrap();
    assert_eq!(row, rows.iter().find(|r| r.folder_name == "SUBJ1_MR1").unwrap().clone());
    let missing = runtime.prearchive_get(&read_only, &limits, "/prearchive/projects/DEMO/20240101_000000000/X");
    assert!(matches!(missing.unwrap(), Err(Error::NotFound(_))));

    // Writes fail under the read-only grant, and leave the tree as it was.
    let src = site.src("SUBJ2_MR1");
    assert!(runtime.prearchive_delete(&read_only, &limits, &src).unwrap().is_err());
    assert!(runtime.prearchive_move(&read_only, &limits, &src, "TRIAL").unwrap().is_err());
    assert_eq!(snapshot(&site.pre), before);

    // The CLI lists with a read-only grant: the tree stays byte-identical.
    stdout(&["prearchive", "list", "--prearchive", site.pre_arg()]);
    stdout(&["prearchive", "list", "--prearchive", site.pre_arg(), "--json"]);
    assert_eq!(snapshot(&site.pre), before);

    // Granted elsewhere than /prearchive: the component finds no prearchive.
    let elsewhere = [Grant::read_only(&site.pre, "/elsewhere")];
    assert!(runtime.prearchive_list(&elsewhere, &limits, None).unwrap().is_err());
}

/// Sets the session documents' modification times `ago` back, as if written then.
fn age_documents(site: &Site, ago: std::time::Duration) {
    for spec in &site.specs {
        let doc = site.pre.join(site.ts_dir(&spec.folder)).join(format!("{}.xml", spec.folder));
        if let Ok(f) = fs::File::options().write(true).open(&doc) {
            f.set_modified(std::time::SystemTime::now() - ago).unwrap();
        }
    }
}

#[test]
fn the_listing_remembers_documents_and_sees_every_change_through_the_component() {
    let site = site();
    let runtime = Runtime::new().unwrap();
    let (limits, writable) = (Limits::default(), [Grant::prearchive(&site.pre, true)]);
    let list = || runtime.prearchive_list(&writable, &limits, None).unwrap().unwrap();
    let table = site.pre.join(".xnat-archive/prearchive-table");
    age_documents(&site, std::time::Duration::from_secs(3600));
    let first = list();
    // The table is binary (postcard), its session paths kept as they are: which sessions it names.
    let remembered = |folder: &str| {
        let bytes = fs::read(&table).expect("a listing that may write keeps the table");
        let session = format!("{}/{folder}", site.ts_dir(folder));
        bytes.windows(session.len()).any(|w| w == session.as_bytes())
    };
    let with_document: Vec<&str> = site
        .specs
        .iter()
        .map(|s| s.folder.as_str())
        .filter(|f| site.pre.join(site.ts_dir(f)).join(format!("{f}.xml")).is_file())
        .collect();
    assert_eq!(with_document.len(), 6);
    assert!(with_document.iter().all(|f| remembered(f)), "every session with a document");
    assert_eq!(list(), first, "rows from the table are the rows the documents give");
    // The CLI's read-only listing reads the table and gives the same rows.
    assert_eq!(site.list(None).1.len(), first.len());

    // A document rewritten in place, same size, a new modification time (even an old one): read again.
    let src = site.src("SUBJ1_MR1");
    let doc = site.pre.join(site.ts_dir("SUBJ1_MR1")).join("SUBJ1_MR1.xml");
    let text = fs::read_to_string(&doc).unwrap();
    fs::write(&doc, text.replacen("label=\"SUBJ1_MR1\"", "label=\"SUBJ1_MRX\"", 1)).unwrap();
    age_documents(&site, std::time::Duration::from_secs(1800));
    let row = |rows: Vec<PrearchiveRow>| rows.into_iter().find(|r| r.folder_name == "SUBJ1_MR1").unwrap();
    assert_eq!(row(list()).name, "SUBJ1_MRX");
    // One replaced by a new file of the same size and times (an editor's save, a copy): read again.
    let copy = site.root.join("copy.xml");
    fs::write(&copy, text.replacen("label=\"SUBJ1_MR1\"", "label=\"SUBJ1_MRY\"", 1)).unwrap();
    let f = fs::File::options().write(true).open(&copy).unwrap();
    f.set_modified(fs::metadata(&doc).unwrap().modified().unwrap()).unwrap();
    fs::rename(&copy, &doc).unwrap();
    assert_eq!(row(list()).name, "SUBJ1_MRY");
    // A document larger than one read of the runtime (64 KiB in wasmtime), its label after the first 64 KiB:
    // read whole.
    let comment = format!("?>\n<!--{}-->", "x".repeat(200_000));
    let padded = text.replacen("label=\"SUBJ1_MR1\"", "label=\"SUBJ1_MRZ\"", 1).replacen("?>", &comment, 1);
    assert!(padded.len() > 200_000 && padded.find("SUBJ1_MRZ").unwrap() > 200_000);
    fs::write(&doc, &padded).unwrap();
    assert_eq!(row(list()).name, "SUBJ1_MRZ");
    // A lock is seen on every listing, table or not; a removed session leaves the table.
    let lock = site.pre.join(site.ts_dir("SUBJ1_MR1")).join(".SUBJ1_MR1.lock");
    fs::write(&lock, "MOVING\nowner someone-else\nsince 0\nexpires 0\n").unwrap();
    assert_eq!(row(list()).status, "_MOVING");
    fs::remove_file(&lock).unwrap();
    runtime.prearchive_delete(&writable, &limits, &src).unwrap().unwrap();
    assert_eq!(list().len(), first.len() - 1);
    assert!(!remembered("SUBJ1_MR1"));
}

#[test]
fn validate_and_archive_command_lines() {
    let site = site();
    let spec = site.spec("SUBJ1_MR1").clone();
    let dirs = ["--prearchive", site.pre_arg(), "--archive", site.arc_arg()];

    // validate: XNAT's table; one session per request.
    let (src1, src2) = (site.src("SUBJ1_MR1"), site.src("SUBJ2_MR1"));
    let mut args = vec!["validate"];
    args.extend(dirs);
    args.extend(["--src", &src1]);
    let (code, out) = cli_json(&args);
    assert_eq!(code, 0, "{out}");
    let notices = out["ResultSet"]["Result"].as_array().unwrap();
    assert_eq!(out["ResultSet"]["totalRecords"], notices.len().to_string());
    for n in notices {
        let keys: Vec<&String> = n.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["code", "message", "type"], "{n}");
        assert!(n["code"].as_str().unwrap().parse::<u32>().is_ok(), "{n}");
    }
    args.extend(["--src", &src2]);
    let (code, out) = cli_json(&args);
    assert_eq!((code, out["error"]["kind"].as_str()), (2, Some("bad-request")), "{out}");

    // archive through XNAT's project/timestamp/folder triple, with a label of our choosing.
    let mut args = vec!["archive"];
    args.extend(dirs);
    args.extend(["--project", "DEMO", "--timestamp", &spec.timestamp, "--folder", "SUBJ1_MR1", "--label", "MR_ONE"]);
    let (code, out) = cli_json(&args);
    assert_eq!(code, 0, "{out}");
    let archived = &out["archived"][0];
    assert_eq!(archived["src"], site.src("SUBJ1_MR1"));
    assert_eq!(archived["uri"], "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/MR_ONE");
    assert_eq!(archived["error"], Value::Null);
    assert!(!spec.session_dir(&site.pre).exists());
    assert!(site.arc.join("DEMO").join("arc001").join("MR_ONE.xml").is_file());
    // The archived experiment is clean for refresh's verify.
    let (code, out) = cli_json(&[
        "refresh",
        "--archive",
        site.arc_arg(),
        "--resource",
        "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/MR_ONE",
        "--verify",
    ]);
    assert_eq!(code, 0, "{out}");

    // An Unassigned session cannot be archived (400); its row says why, the exit code follows it.
    let unassigned = site.src("ANON01_MR");
    let mut args = vec!["archive"];
    args.extend(dirs);
    args.extend(["--src", &unassigned]);
    let (code, out) = cli_json(&args);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out["archived"][0]["error"]["kind"], "bad-request");
    assert!(site.spec("ANON01_MR").session_dir(&site.pre).is_dir());

    // Usage errors: an unknown overwrite mode, a timestamp without its folder.
    let mut args = vec!["archive"];
    args.extend(dirs);
    args.extend(["--src", &unassigned, "--overwrite", "sometimes"]);
    assert_eq!(cli(&args).status.code(), Some(2));
    let mut args = vec!["archive"];
    args.extend(dirs);
    args.extend(["--project", "DEMO", "--timestamp", &spec.timestamp]);
    assert_eq!(cli(&args).status.code(), Some(2));

    // recover: nothing was interrupted.
    let mut args = vec!["recover"];
    args.extend(dirs);
    let (code, out) = cli_json(&args);
    assert_eq!((code, out["recovered"].as_array().map(Vec::len)), (0, Some(0)), "{out}");
}

#[test]
fn demo_runs_the_whole_flow() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = cli(&["demo", "--dir", demo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "7 sessions",
        "archived  /data/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1",
        "3 sessions",
        "verify: clean, every catalog matches the disk",
        "1 session: 5 files imported, 0 duplicates dropped, 1 refused",
        "SUBJ5_MR1",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // A second run refuses to mix with the first one's site.
    let again = cli(&["demo", "--dir", demo.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
}

/// Runs the real CLI with one more environment variable.
fn cli_with_env(args: &[&str], var: &str, value: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_xnat-archive")).args(args).env(var, value).output().unwrap()
}

#[test]
fn test_switches_reach_the_component() {
    let site = site();
    let src = site.src("SUBJ2_MR1");
    let args = ["archive", "--prearchive", site.pre_arg(), "--archive", site.arc_arg(), "--src", &src];
    // Fault point 1: the archive stops dead right after taking the session's lock.
    let out = cli_with_env(&args, "XNAT_ARCHIVE_FAULT_POINT", "1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("XNAT_ARCHIVE_FAULT_POINT is set"), "{stderr}");
    assert_eq!(site.row("SUBJ2_MR1")["status"], "_ARCHIVING");
    // recover clears the dead archive's lock: the session is READY again, still in the prearchive.
    let (code, out) = cli_json(&["recover", "--prearchive", site.pre_arg(), "--archive", site.arc_arg()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(site.row("SUBJ2_MR1")["status"], "READY");
    // An unparsable switch is off.
    let out = cli_with_env(&args, "XNAT_ARCHIVE_FAULT_POINT", "soon");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
