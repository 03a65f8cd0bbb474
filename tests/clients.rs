//! Real XNAT clients, unmodified, against `xnat-archive serve` and its embedded HTTP component:
//! xnatpy 0.8.1 and pyxnat 1.6.4 from PyPI (in `target/clients-venv`, pinned in
//! `tests/clients/requirements.txt`) running the scripts in `tests/clients/`, and curl making the calls of
//! XNAT's wiki. Each test runs its own tenant over a generated demo site and checks the trees afterwards:
//! what the clients were told must be what happened on disk.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::python::{run_with_limit, venv};
use common::server::{Server, TenantSpec, configure};
use serde_json::Value;
use xnat_core::model::catalog::Catalog;

const PASSWORD: &str = "clients-Pw-42";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

/// The clients' venv, made once per run (the first test to need it installs; the others wait).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv("clients-venv", &scripts().join("requirements.txt")))
}

/// Runs one client script against a tenant's base URL; its JSON report.
fn client(script: &str, base: &str) -> Value {
    client_with(script, base, &[])
}

/// [`client`] with more arguments after the password.
fn client_with(script: &str, base: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(scripts().join(script)).args([base, "admin", PASSWORD]).args(extra);
    // Local requests never go through a proxy (pyxnat copies http_proxy into its session).
    for var in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "*").env("HOME", tempfile::tempdir().unwrap().keep()); // no ~/.netrc, no ~/.xnatPass
    let out = run_with_limit(&mut cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed ({}):\n{stderr}\n{stdout}", out.status);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script}: no JSON report ({e}):\n{stdout}\n{stderr}"))
}

/// The folder of a prearchive session, found by name under `<prearchive>/<project>/<timestamp>/`.
fn prearchive_session(pre: &Path, project: &str, folder: &str) -> PathBuf {
    std::fs::read_dir(pre.join(project))
        .unwrap()
        .map(|e| e.unwrap().path().join(folder))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no session {project}/*/{folder} in {}", pre.display()))
}

/// The data files of a session folder (catalogs and logs aside) with their MD5s, by path.
fn data_files(session: &Path) -> BTreeMap<String, String> {
    common::snapshot(session)
        .into_iter()
        .filter(|(path, md5)| !md5.is_empty() && !path.ends_with("_catalog.xml") && !path.starts_with("logs/"))
        .collect()
}

/// A JSON object of path → MD5, as a map.
fn md5s(v: &Value) -> BTreeMap<String, String> {
    let object = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    object.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
}

/// `LABEL/scans/ID-TYPE/resources/R/files/PATH` (XNAT's zip layout) as the session folder's `SCANS/ID/R/PATH`.
fn xnat_zip_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').collect();
    assert!(parts.len() >= 7 && parts[1] == "scans" && parts[3] == "resources" && parts[5] == "files", "{p}");
    let id = parts[2].split_once('-').map_or(parts[2], |(id, _)| id);
    format!("SCANS/{id}/{}/{}", parts[4], parts[6..].join("/"))
}

/// Checks that every data file arrived intact and that every catalog of the experiment now carries a digest
/// per entry (the clients asked for `checksum`).
fn archived_intact(before: &BTreeMap<String, String>, experiment: &Path) {
    let after = data_files(experiment);
    assert!(!before.is_empty());
    for (path, md5) in before {
        assert_eq!(after.get(path), Some(md5), "{path} was not archived intact into {}", experiment.display());
    }
    let catalogs: Vec<_> = common::snapshot(experiment).into_keys().filter(|p| p.ends_with("_catalog.xml")).collect();
    assert!(!catalogs.is_empty());
    for c in catalogs {
        let cat = Catalog::parse(&std::fs::read(experiment.join(&c)).unwrap()).unwrap();
        for loc in cat.entry_locs() {
            let entry = cat.entry(&loc);
            assert!(entry.attr("digest").is_some_and(|d| d.len() == 32), "{c}: {:?} has no MD5", entry.uri());
        }
    }
}

#[test]
fn xnatpy_connects_with_the_model_lists_validates_archives_and_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("X")], PASSWORD);
    let (pre, arch) = (dir.path().join("X/prearchive"), dir.path().join("X/archive"));
    let before = data_files(&prearchive_session(&pre, "DEMO", "SUBJ1_MR1"));
    let server = Server::start(&["--config", config.to_str().unwrap()]);

    let seen = client("xnatpy_client.py", &server.url("/X"));

    assert_eq!(seen["logged_in_user"], "admin");
    let ready: Vec<&str> = seen["ready"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ready.len(), 6, "{ready:?}");
    assert!(ready.contains(&"DEMO/SUBJ1_MR1") && !ready.contains(&"DEMO/SUBJ4_MR1"), "{ready:?}");
    assert_eq!(seen["receiving"], serde_json::json!(["DEMO/SUBJ4_MR1"]));
    assert_eq!(seen["validation"], serde_json::json!([]));
    let exp = &seen["experiment"];
    assert_eq!(exp["class"], "MrSessionData", "archive() built the object from the served schema: {exp}");
    assert_eq!((exp["label"].as_str(), exp["project"].as_str()), (Some("SUBJ1_MR1"), Some("DEMO")));
    assert_eq!(exp["subject_id"], "XNAT_S00001", "the existing subject SUBJ1");
    let id = exp["id"].as_str().unwrap();
    assert_eq!(exp["fulluri"], format!("/data/archive/projects/DEMO/subjects/XNAT_S00001/experiments/{id}"));
    assert_eq!(seen["unassigned_validation"], serde_json::json!([["6", "FAIL"]]));
    assert_eq!(
        (seen["unassigned"]["label"].as_str(), seen["unassigned"]["project"].as_str()),
        (Some("ANON01_MR1"), Some("DEMO"))
    );
    assert!(seen["conflict"].as_str().unwrap().contains("status 409"), "{}", seen["conflict"]);
    assert_eq!(seen["conflict_status"], "CONFLICT");
    assert!(seen["unknown"].as_str().unwrap().contains("status 404"), "{}", seen["unknown"]);
    // The archived experiment, walked and downloaded by xnatpy: every byte as the prearchive held it.
    assert_eq!(md5s(&seen["walked"]), before, "experiment.scans[...].resources[...].files");
    let (sid, kind) = (seen["scan_fields"]["id"].as_str().unwrap(), seen["scan_fields"]["type"].as_str().unwrap());
    assert!(!kind.is_empty() && seen["scan_fields"]["series"].is_string(), "{}", seen["scan_fields"]);
    assert_eq!(seen["one_size"][0], seen["one_size"][1]);
    let unzipped: BTreeMap<String, String> =
        md5s(&seen["download_dir"]).into_iter().map(|(k, v)| (xnat_zip_path(&k), v)).collect();
    assert_eq!(unzipped, before, "experiment.download_dir: XNAT's folders, every byte");
    let scan_zip: Vec<&str> = seen["scan_zip"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(scan_zip.len(), before.keys().filter(|k| k.starts_with(&format!("SCANS/{sid}/"))).count());
    assert!(scan_zip.iter().all(|n| n.starts_with(&format!("SUBJ1_MR1/scans/{sid}-"))), "{scan_zip:?}");
    let mut want: Vec<&String> =
        before.iter().filter(|(k, _)| k.starts_with(&format!("SCANS/{sid}/DICOM/"))).map(|(_, v)| v).collect();
    want.sort();
    assert_eq!(seen["resource_dir"], serde_json::json!(want), "resource.download_dir");

    // On disk: the experiment with its ID, every file intact, checksums in every catalog; the session gone
    // from the prearchive; the Unassigned session archived under a new subject; the conflict kept.
    let document = std::fs::read_to_string(arch.join("DEMO/arc001/SUBJ1_MR1.xml")).unwrap();
    assert!(document.contains(&format!("ID=\"{id}\"")), "{document}");
    archived_intact(&before, &arch.join("DEMO/arc001/SUBJ1_MR1"));
    assert!(std::fs::read_dir(pre.join("DEMO")).unwrap().all(|e| !e.unwrap().path().join("SUBJ1_MR1").exists()));
    assert!(arch.join("DEMO/arc001/ANON01_MR1.xml").is_file());
    let anon_subject = std::fs::read_to_string(arch.join("DEMO/subjects/ANON01.xml")).unwrap();
    assert!(anon_subject.contains(&format!("ID=\"{}\"", seen["unassigned"]["subject_id"].as_str().unwrap())));
    assert!(prearchive_session(&pre, "DEMO", "SUBJ2_MR1").is_dir(), "the conflicting session stays");

    let log = server.log();
    for line in ["PUT /X/data/services/auth tenant=X status=200", "GET /X/xapi/schemas/xnat tenant=X status=200"] {
        assert!(log.contains(line), "{line} missing from the access log:\n{log}");
    }
    assert!(server.stop().success());
}

#[test]
fn pyxnat_lists_as_csv_and_posts_archive_validate_and_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("P")], PASSWORD);
    let (pre, arch) = (dir.path().join("P/prearchive"), dir.path().join("P/archive"));
    let before = data_files(&prearchive_session(&pre, "TRIAL", "T001_PET1"));
    let ct = prearchive_session(&pre, "DEMO", "SUBJ3_CT1");
    let server = Server::start(&["--config", config.to_str().unwrap()]);

    let seen = client("pyxnat_client.py", &server.url("/P"));

    let sessions = seen["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 7, "pyxnat lists receiving sessions too: {sessions:?}");
    assert_eq!(seen["status"], "READY");
    let ts = ct.parent().unwrap().file_name().unwrap().to_str().unwrap().to_owned();
    assert!(seen["uri"].as_str().unwrap().starts_with("/prearchive/projects/TRIAL/"));
    assert_eq!(seen["scans"], serde_json::json!(["1", "2", "3"]));
    assert_eq!(seen["resources"], serde_json::json!(["DICOM"]));
    let listed = seen["files"].as_array().unwrap().len();
    assert_eq!(listed, before.keys().filter(|p| p.starts_with("SCANS/1/")).count(), "scan 1's files");
    assert_eq!(seen["validation"], serde_json::json!([]));
    assert_eq!(seen["archived"], "/data/archive/projects/TRIAL/subjects/T001/experiments/T001_PET1");
    assert_eq!(seen["exists"], serde_json::json!([true, false, true]));
    let document = std::fs::read_to_string(arch.join("TRIAL/arc001/T001_PET1.xml")).unwrap();
    let id = seen["experiment_id"].as_str().unwrap();
    assert!(id.starts_with("XNAT_E") && document.contains(&format!("ID=\"{id}\"")), "{id}");
    assert_eq!(seen["refresh_body"], "");
    assert_eq!(seen["refresh_unknown"][0], 404);
    assert_eq!(seen["after_reset"], "READY");
    let after_delete: Vec<&str> =
        seen["after_delete"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!after_delete.contains(&format!("DEMO/{ts}/SUBJ3_CT1").as_str()), "{after_delete:?}");
    assert_eq!(after_delete.len(), 5, "T001_PET1 archived, SUBJ3_CT1 deleted: {after_delete:?}");
    assert_eq!(seen["version"], "1.8.10");
    // The archived experiment through pyxnat's select: every file, and a resource's zip extracted.
    assert_eq!(md5s(&seen["walked"]), before, "scans().resources().files(), file.get()");
    assert!(seen["scan_type"].is_string(), "{}", seen["scan_type"]);
    let scan = before.keys().next().unwrap().split('/').nth(1).unwrap().to_string();
    let want: BTreeMap<String, String> = before
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("SCANS/{scan}/DICOM/")))
        .map(|(k, v)| (k.rsplit('/').next().unwrap().to_string(), v.clone()))
        .collect();
    assert_eq!(md5s(&seen["resource_zip"]), want, "resource.get(extract=True)");

    archived_intact(&before, &arch.join("TRIAL/arc001/T001_PET1"));
    assert!(!ct.exists(), "pyxnat's delete removed the session folder");
    assert!(!ct.with_extension("xml").exists(), "and its document");
    let log = server.log();
    assert!(log.contains("GET /P/data/JSESSION tenant=P status=200"), "pyxnat's first request:\n{log}");
    assert!(server.stop().success());
}

/// Runs curl with the wiki's arguments (the host replaced by the test server's); status and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = run_with_limit(
        Command::new("curl").args(["-sS", "--max-time", "120", "-w", "\n%{http_code}"]).args(args),
        Duration::from_secs(150),
    );
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

#[test]
fn the_wiki_curl_calls_verbatim() {
    let have_curl = Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(have_curl, "curl is needed for this test: install it (Debian: apt-get install curl)");
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("W")], PASSWORD);
    let (pre, arch) = (dir.path().join("W/prearchive"), dir.path().join("W/archive"));
    let session = prearchive_session(&pre, "DEMO", "SUBJ1_MR1");
    let ts = session.parent().unwrap().file_name().unwrap().to_str().unwrap().to_owned();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let base = server.url("/W");
    let user = format!("admin:{PASSWORD}");

    // "Generating and Reusing a JSESSION ID for Scripted Interactions" / "User Session Management API".
    let (code, token) = curl(&["-u", &user, "-X", "POST", &format!("{base}/data/JSESSION")]);
    assert_eq!(code, 200, "{token}");
    let token = token.trim().to_owned();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace), "{token:?}");
    let cookie = format!("JSESSIONID={token}");
    let (code, csv) = curl(&["-b", &cookie, &format!("{base}/data/projects?format=csv")]);
    assert_eq!(code, 200);
    let projects: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(projects, ["DEMO", "TRIAL"], "{csv}");
    let (code, json) = curl(&["--cookie", &cookie, "-X", "GET", &format!("{base}/data/projects")]);
    assert_eq!(code, 200);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ResultSet"]["Result"][0]["URI"], "/data/projects/DEMO");
    let (code, current) = curl(&["-u", &user, &format!("{base}/data/JSESSION/")]);
    assert_eq!((code, current.trim().is_empty()), (200, false));

    // "Image Session Archive Service API": validate, then archive with body parameters.
    let src = format!("/prearchive/projects/DEMO/{ts}/SUBJ1_MR1");
    let (code, rows) =
        curl(&["-u", &user, "-X", "POST", &format!("{base}/data/services/validate-archive?src={src}&format=json")]);
    assert_eq!((code, rows.as_str()), (200, r#"{"ResultSet":{"Result":[],"totalRecords":"0"}}"#));
    let (code, uri) = curl(&[
        "-u",
        &user,
        "-X",
        "POST",
        "-d",
        &format!("src={src}"),
        "-d",
        "overwrite=append",
        &format!("{base}/data/services/archive"),
    ]);
    assert_eq!((code, uri.as_str()), (200, "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1\r\n"));
    let experiment = arch.join("DEMO/arc001/SUBJ1_MR1");
    assert!(experiment.join("SCANS").is_dir() && !session.exists());

    // "Catalog Refresh API": a file placed by hand beside a catalog, then the refresh with every option.
    let scan = std::fs::read_dir(experiment.join("SCANS")).unwrap().next().unwrap().unwrap().path();
    let resource = scan.join("DICOM");
    std::fs::write(resource.join("added-by-hand.txt"), b"notes").unwrap();
    let (code, body) = curl(&[
        "-u",
        &user,
        "-X",
        "POST",
        &format!(
            "{base}/data/services/refresh/catalog?resource=/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1\
             &options=append,checksum,delete,populateStats"
        ),
    ]);
    assert_eq!((code, body.as_str()), (200, ""));
    let catalog = std::fs::read_dir(&resource)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_catalog.xml"))
        .unwrap();
    let entries = common::entries(&catalog);
    let added = entries.get("added-by-hand.txt").expect("append catalogued the new file");
    assert_eq!(added.attr("digest"), Some(common::md5_hex(b"notes").as_str()));

    // "…you can do so by doing a PUT to the resource URL (i.e. /data/archive/experiments/ID/resources/TEST)".
    let document = std::fs::read_to_string(arch.join("DEMO/arc001/SUBJ1_MR1.xml")).unwrap();
    let id = document.split("ID=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
    let (code, body) =
        curl(&["-u", &user, "-X", "PUT", &format!("{base}/data/archive/experiments/{id}/resources/TEST")]);
    assert_eq!(code, 200, "{body}");
    assert!(experiment.join("RESOURCES/TEST").is_dir(), "the resource folder");

    // "Invalidate The Current User Session".
    let (code, _) = curl(&["--cookie", &cookie, "-X", "DELETE", &format!("{base}/data/JSESSION/")]);
    assert_eq!(code, 200);
    assert!(server.stop().success());
}

/// Getting data in (`POST /data/services/import`) with xnatpy's `services.import_` and pyxnat's generic post,
/// on the DICOM files pydicom ships in its wheel (installed in the clients' venv from PyPI): every file that
/// is imported arrives byte for byte, in the session and scan its header names; what is not DICOM, is
/// truncated or repeats a SOP instance with other bytes is refused and reported; the CT session is archived
/// by xnatpy and downloaded again, and its catalogs verify clean against the disk.
#[test]
fn xnatpy_and_pyxnat_import_pydicoms_test_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("I")], PASSWORD);
    let (pre, arch) = (dir.path().join("I/prearchive"), dir.path().join("I/archive"));
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let work = tempfile::tempdir().unwrap();
    let seen = client_with("import_client.py", &server.url("/I"), &[work.path().to_str().unwrap()]);
    let source = |name: &str| seen["source"][name].as_str().unwrap_or_else(|| panic!("no source {name}")).to_string();
    let files_of = |session: &Path| -> BTreeMap<String, String> {
        data_files(session).into_iter().filter(|(p, _)| !p.ends_with(".xml")).collect()
    };

    // xnatpy, DICOM-zip: the CT study alone was imported (the README and the truncated MR refused).
    let ct = &seen["ct"];
    assert_eq!(
        (ct["class"].as_str(), ct["status"].as_str(), ct["project"].as_str()),
        (Some("PrearchiveSession"), Some("READY"), Some("DEMO")),
        "{ct}"
    );
    assert_eq!(ct["scans"], serde_json::json!(["1"]), "CT_small's series number");
    assert_eq!(ct["validation"], serde_json::json!([]), "the imported session validates clean: {ct}");
    let downloaded: Vec<&str> = ct["downloaded"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(downloaded, [source("CT_small.dcm")], "archived, then downloaded byte for byte: {ct}");
    let experiment = std::fs::read_dir(arch.join("DEMO"))
        .unwrap()
        .map(|e| e.unwrap().path().join("CT_SESSION"))
        .find(|p| p.is_dir())
        .expect("the archived CT session");
    // Refreshed with checksums: the digests the import wrote are the ones a refresh computes, and a
    // verify afterwards is clean.
    let catalog = experiment.join("SCANS/1/DICOM/scan_1_catalog.xml");
    let digests = |c: &Path| -> Vec<String> {
        common::entries(c).values().map(|e| e.attr("digest").unwrap_or_default().to_string()).collect()
    };
    let imported = digests(&catalog);
    assert_eq!(imported, [source("CT_small.dcm")]);
    let uri = "/archive/projects/DEMO/subjects/CT_SUBJ/experiments/CT_SESSION";
    for extra in [&[][..], &["--verify"][..]] {
        let mut args = vec!["refresh", "--archive", arch.to_str().unwrap(), "--resource", uri, "--checksum"];
        args.extend_from_slice(extra);
        let out = common::cli(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        if !extra.is_empty() {
            assert!(text.contains("verify: clean"), "{text}");
        }
    }
    assert_eq!(digests(&catalog), imported, "the refresh found the import's digests right");
    assert_eq!(files_of(&experiment).len(), 1);

    // pyxnat, one zip per transfer syntax of the MR set (and a deflated and a bare data set): each its session.
    for (name, r) in seen["mr"].as_object().unwrap() {
        assert_eq!(r["status"], 200, "{name}: {r}");
        let label = r["label"].as_str().unwrap();
        let uri = r["body"].as_str().unwrap();
        assert!(
            uri.starts_with("/data/prearchive/projects/DEMO/") && uri.ends_with(&format!("/{label}")),
            "{name}: {uri}"
        );
        let files = files_of(&pre.join(uri.trim_start_matches("/data/prearchive/projects/")));
        assert_eq!(files.values().collect::<Vec<_>>(), [&source(name)], "{name}: {files:?}");
        let catalog: Vec<_> = common::snapshot(&pre.join(uri.trim_start_matches("/data/prearchive/projects/")))
            .into_keys()
            .filter(|p| p.ends_with("_catalog.xml"))
            .collect();
        assert_eq!(catalog.len(), 1, "{name}");
    }

    // gradual-DICOM: eight files, one session, RECEIVING until committed, then READY with all eight.
    let g = &seen["gradual"];
    assert_eq!(
        (g["status_before_commit"].as_str(), g["status_after_commit"].as_str()),
        (Some("RECEIVING"), Some("READY")),
        "{g}"
    );
    let uri = g["uris"][0].as_str().unwrap();
    let files = files_of(&pre.join(uri.trim_start_matches("/data/prearchive/projects/")));
    let mut got: Vec<&String> = files.values().collect();
    got.sort();
    let names = [
        "SC_rgb_dcmtk_+eb+cr.dcm",
        "SC_rgb_dcmtk_+eb+cy+n1.dcm",
        "SC_rgb_dcmtk_+eb+cy+n2.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",
        "SC_rgb_dcmtk_+eb+cy+s4.dcm",
        "SC_rgb_small_odd.dcm",
        "SC_rgb_small_odd_jpeg.dcm",
    ];
    let mut want: Vec<String> = names.iter().map(|n| source(n)).collect();
    want.sort();
    assert_eq!(got, want.iter().collect::<Vec<_>>());

    // pyxnat, upload and archive in one call: the experiment is there (pyxnat's exists()), with the file.
    let a = &seen["archived"];
    assert_eq!(
        (a["status"].as_i64(), a["body"].as_str()),
        (Some(200), Some("/data/archive/projects/DEMO/subjects/RT1/experiments/RT1_PLAN")),
        "{a}"
    );
    assert_eq!(a["exists"], true, "{a}");
    let rt = std::fs::read_dir(arch.join("DEMO"))
        .unwrap()
        .map(|e| e.unwrap().path().join("RT1_PLAN"))
        .find(|p| p.is_dir())
        .unwrap();
    assert_eq!(files_of(&rt).into_values().collect::<Vec<_>>(), [source("rtplan.dcm")]);

    // The same SOP instance twice: the first kept, the second refused and said so.
    let t = &seen["twice"];
    assert_eq!((t["status"].as_i64(), t["json"]["files"].as_i64()), (Some(200), Some(1)), "{t}");
    let refused = &t["json"]["rejected"][0];
    assert!(refused["file"].as_str().unwrap().ends_with("MR_small_bigendian.dcm"), "{t}");
    assert!(refused["reason"].as_str().unwrap().contains("already in"), "{t}");
    assert!(pre.join(".xnat-archive/uploads").read_dir().unwrap().next().is_none(), "no upload left staged");
}
