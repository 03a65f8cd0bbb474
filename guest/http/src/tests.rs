//! The handler end to end, natively: requests as xnatpy and pyxnat send them (`http-surface.md`), over a
//! temporary prearchive and archive.

use std::fs;
use std::path::Path;

use crate::credentials::{Users, hash_password_with};
use base64::Engine;
use serde_json::Value;
use xnat_core::fs::tree::Tree;

use crate::auth::PYXNAT_401;
use crate::{Context, Request, Response, handle};

const TS: &str = "20240101_120000000";
const SECRET: &[u8] = b"test-secret";
const NOW: u64 = 1_700_000_000;

struct Site {
    dir: tempfile::TempDir,
    ctx: Context,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("pre")).unwrap();
        fs::create_dir_all(dir.path().join("arch")).unwrap();
        let cheap = argon2::Params::new(64, 1, 1, None).unwrap();
        let users = format!(
            "admin:{};bob:{}",
            hash_password_with("admin-pw", b"saltsaltsaltsalt", cheap.clone()).unwrap(),
            hash_password_with("bob-pw", b"pepperpepperpepp", cheap).unwrap()
        );
        let mut ctx = Context::new(Tree::new(dir.path().join("arch")), Tree::new(dir.path().join("pre")), NOW);
        ctx.users = Users::parse(&users).unwrap();
        ctx.secret = Some(SECRET.to_vec());
        ctx.tenant = "demo".into();
        ctx.base_path = "/demo".into();
        Site { dir, ctx }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A prearchive session of project P with one scan of `files` files; returns its `url` column.
    fn session(&self, folder: &str, files: usize) -> String {
        let base = self.root().join("pre/P").join(TS);
        let res = base.join(folder).join("SCANS/2/DICOM");
        fs::create_dir_all(&res).unwrap();
        let mut entries = String::new();
        for i in 1..=files {
            fs::write(res.join(format!("{i}.dcm")), format!("DICM {folder} {i}")).unwrap();
            entries.push_str(&format!(
                r#"<cat:entry xsi:type="cat:dcmEntry" URI="{i}.dcm" ID="{i}.dcm" UID="1.2.{i}" instanceNumber="{i}" format="DICOM"/>"#
            ));
        }
        fs::write(
            res.join("scan_2_catalog.xml"),
            format!(
                r#"<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" UID="1.2"><cat:entries>{entries}</cat:entries></cat:DCMCatalog>"#
            ),
        )
        .unwrap();
        fs::write(
            base.join(format!("{folder}.xml")),
            format!(
                r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="" project="P" label="{folder}" UID="1.2.{folder}"><xnat:date>2023-12-31</xnat:date><xnat:subject_ID>SUBJ1</xnat:subject_ID><xnat:scans><xnat:scan ID="2" type="T1" UID="1.2.{folder}.2" xsi:type="xnat:mrScanData"><xnat:file xsi:type="xnat:resourceCatalog" label="DICOM" format="DICOM" content="RAW" URI="SCANS/2/DICOM/scan_2_catalog.xml"/></xnat:scan></xnat:scans></xnat:MRSession>"#
            ),
        )
        .unwrap();
        format!("/prearchive/projects/P/{TS}/{folder}")
    }

    fn send(&self, req: Request) -> Response {
        handle(&req, &self.ctx)
    }

    /// A request with admin's Basic credentials.
    fn basic(&self, method: &str, path: &str) -> Response {
        self.send(Request::new(method, path).with_header("Authorization", &basic("admin", "admin-pw")))
    }

    /// [`Site::basic`] with more headers.
    fn basic_with(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::new(method, path).with_header("Authorization", &basic("admin", "admin-pw"));
        for (name, value) in headers {
            req = req.with_header(name, value);
        }
        self.send(req)
    }

    fn token(&self, user: &str) -> String {
        crate::auth::issue(&self.ctx, user).unwrap()
    }

    fn cookie(&self, method: &str, path: &str) -> Response {
        self.send(Request::new(method, path).with_header("Cookie", &format!("JSESSIONID={}", self.token("admin"))))
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body_text()))
}

fn result(r: &Response) -> Vec<Value> {
    json(r)["ResultSet"]["Result"].as_array().unwrap().clone()
}

#[track_caller]
fn status(r: &Response, want: u16) {
    assert_eq!(r.status.as_u16(), want, "{}", r.body_text());
    let markup = [Some(crate::formats::XML), Some(crate::formats::HTML)].contains(&r.header("content-type"));
    assert!(!r.body_text().trim_start().starts_with('<') || markup, "markup only where asked for");
}

#[test]
fn the_root_is_open_and_sets_no_cookie() {
    let site = Site::new();
    let r = site.send(Request::new("GET", "/"));
    status(&r, 200);
    assert_eq!(r.header("content-type"), Some(crate::formats::TEXT));
    assert!(r.header("set-cookie").is_none());
    let mut ctx = site.ctx.clone();
    ctx.users = Users::default();
    assert_eq!(handle(&Request::new("GET", ""), &ctx).status, 200);
}

#[test]
fn everything_else_needs_credentials() {
    let site = Site::new();
    for (method, path) in [
        ("GET", "/data/auth"),
        ("GET", "/data/prearchive/projects"),
        ("POST", "/data/services/archive?src=/prearchive/projects/P/T/F"),
        ("GET", "/data/no/such/thing"),
        ("GET", "/xapi/schemas/xnat"),
    ] {
        let r = site.send(Request::new(method, path));
        status(&r, 401);
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"XNAT\""));
        assert!(r.body_text().contains("PUT /data/services/auth"), "{}", r.body_text());
    }
    // Wrong password, unknown user, a scheme that is not Basic.
    for auth in [basic("admin", "nope"), basic("mallory", "admin-pw"), "Bearer abc".to_string()] {
        let r = site.send(Request::new("GET", "/data/auth").with_header("authorization", &auth));
        status(&r, 401);
    }
    // With no users configured nobody gets in, and the message says why.
    let mut ctx = site.ctx.clone();
    ctx.users = Users::default();
    let r = handle(&Request::new("GET", "/data/auth").with_header("authorization", &basic("admin", "admin-pw")), &ctx);
    status(&r, 401);
    assert!(r.body_text().contains("XNAT_USERS"), "{}", r.body_text());
    // Errors follow format=json.
    let r = site.send(Request::new("GET", "/data/prearchive/projects?format=json"));
    assert_eq!(json(&r)["error"]["kind"], "unauthorized");
}

#[test]
fn xnatpy_connect_and_disconnect() {
    let site = Site::new();
    // 2. PUT /data/services/auth with a form body.
    let r = site.send(Request::new("PUT", "/data/services/auth").with_form("username=admin&password=admin-pw"));
    status(&r, 200);
    let token = r.body_text();
    assert_eq!(crate::auth::verify(&site.ctx, &token).unwrap(), "admin");
    assert_eq!(
        cookie_attributes(r.header("set-cookie").unwrap()),
        cookie_attributes(&format!("JSESSIONID={token}; Path=/demo; HttpOnly; SameSite=Lax"))
    );
    let with_cookie = |method: &str, path: &str| {
        site.send(Request::new(method, path).with_header("cookie", &format!("other=1; JSESSIONID={token}")))
    };
    // 3. check_auth, 4. heartbeat (a fresh token, so the session goes on while the client lives).
    let r = with_cookie("GET", "/data/auth");
    status(&r, 200);
    assert_eq!(r.body_text(), "User 'admin' is logged in");
    let r = with_cookie("GET", "/data/JSESSION");
    status(&r, 200);
    assert_eq!(crate::auth::verify(&site.ctx, &r.body_text()).unwrap(), "admin");
    assert!(r.header("set-cookie").unwrap().starts_with("JSESSIONID="));
    // 5.–10. the data model.
    let r = with_cookie("GET", "/data/version");
    assert_eq!((r.status.as_u16(), r.body_text().as_str()), (200, "1.8.10"));
    let r = with_cookie("GET", "/xapi/siteConfig/buildInfo?format=json");
    assert_eq!(json(&r)["version"], "1.8.10");
    let r = with_cookie("GET", "/xapi/schemas?format=json");
    assert_eq!(json(&r), serde_json::json!(["xnat", "xdat"]));
    for name in ["xnat", "xdat"] {
        let r = with_cookie("GET", &format!("/xapi/schemas/{name}"));
        status(&r, 200);
        assert!(r.body_text().contains(&format!("targetNamespace=\"http://nrg.wustl.edu/{name}\"")));
    }
    let xsd = with_cookie("GET", "/xapi/schemas/xnat").body_text();
    for t in ["mrSessionData", "ctSessionData", "petSessionData", "subjectData"] {
        assert!(xsd.contains(&format!("name=\"{t}\"")), "{t}");
    }
    status(&with_cookie("GET", "/xapi/schemas/nope"), 404);
    let r = with_cookie("GET", "/data/search/elements?format=json");
    assert_eq!(json(&r), serde_json::json!({"ResultSet": {"Result": []}}));
    // Disconnect.
    let r = with_cookie("DELETE", "/data/JSESSION");
    status(&r, 200);
    assert!(r.body.is_empty());
    let expired = cookie_attributes(r.header("set-cookie").unwrap());
    for attribute in ["JSESSIONID=", "Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT", "Path=/demo", "HttpOnly"] {
        assert!(expired.contains(attribute), "{attribute} missing from {expired:?}");
    }
}

/// A `Set-Cookie` value as its name=value pair and attributes, in any order (clients do not care).
fn cookie_attributes(set_cookie: &str) -> std::collections::BTreeSet<&str> {
    set_cookie.split(';').map(str::trim).collect()
}

#[test]
fn login_variants() {
    let site = Site::new();
    let r = site.send(Request::new("POST", "/data/services/auth").with_form("j_username=bob&j_password=bob-pw"));
    status(&r, 200);
    assert_eq!(crate::auth::verify(&site.ctx, &r.body_text()).unwrap(), "bob");
    // Parameters in the query work as well; a bad password is a 401 xnatpy reports as a failed login.
    let r = site.send(Request::new("PUT", "/data/services/auth?username=admin&password=wrong"));
    status(&r, 401);
    assert!(r.body_text().starts_with("Login attempt failed. Please try again."));
    // No form: the request's own Basic credentials.
    let r = site.basic("PUT", "/data/services/auth");
    status(&r, 200);
    assert!(!r.body.is_empty());
    status(&site.send(Request::new("PUT", "/data/services/auth")), 401);
    status(&site.send(Request::new("GET", "/data/services/auth")), 405);
    // Without a secret there are no tokens: 200 with an empty body sends xnatpy to Basic auth.
    let mut ctx = site.ctx.clone();
    ctx.secret = None;
    let r = handle(&Request::new("PUT", "/data/services/auth").with_form("username=admin&password=admin-pw"), &ctx);
    status(&r, 200);
    assert!(r.body.is_empty() && r.header("set-cookie").is_none());
    let r =
        handle(&Request::new("GET", "/data/JSESSION").with_header("authorization", &basic("admin", "admin-pw")), &ctx);
    status(&r, 200);
    let cookie = format!("JSESSIONID={}", site.token("admin"));
    status(&handle(&Request::new("GET", "/data/auth").with_header("cookie", &cookie), &ctx), 401);
}

#[test]
fn pyxnat_basic_flow() {
    let site = Site::new();
    // First request: GET /data/JSESSION with Basic; it gets a session cookie as from XNAT.
    let r = site.basic("GET", "/data/JSESSION");
    status(&r, 200);
    assert_eq!(
        cookie_attributes(r.header("set-cookie").unwrap()),
        cookie_attributes(&format!("JSESSIONID={}; Path=/demo; HttpOnly; SameSite=Lax", r.body_text()))
    );
    // A wrong password there answers the exact text pyxnat turns into "Authentication failed".
    let r = site.send(Request::new("GET", "/data/JSESSION").with_header("authorization", &basic("admin", "x")));
    assert_eq!((r.status.as_u16(), r.body_text().as_str()), (401, PYXNAT_401));
    // pyxnat's `with` exit and disconnect.
    let r = site.basic("DELETE", "/data/JSESSION");
    status(&r, 200);
    status(&site.send(Request::new("DELETE", "/data/JSESSION")), 401);
}

#[test]
fn tokens_expire_and_stay_in_their_tenant() {
    let site = Site::new();
    let token = site.token("admin");
    let get = |ctx: &Context, cookie: &str, auth: Option<&str>| {
        let mut req = Request::new("GET", "/data/auth").with_header("cookie", cookie);
        if let Some(a) = auth {
            req = req.with_header("authorization", a);
        }
        handle(&req, ctx)
    };
    let cookie = format!("JSESSIONID={token}");
    status(&get(&site.ctx, &cookie, None), 200);
    // Expired.
    let mut later = site.ctx.clone();
    later.now = NOW + 3600;
    let r = get(&later, &cookie, None);
    status(&r, 401);
    assert!(r.body_text().contains("expired"), "{}", r.body_text());
    // ... but Basic credentials beside it still work, and logging out with it is allowed.
    status(&get(&later, &cookie, Some(&basic("admin", "admin-pw"))), 200);
    status(&handle(&Request::new("DELETE", "/data/JSESSION").with_header("cookie", &cookie), &later), 200);
    // Another tenant, even with the same secret; and with its own secret.
    let mut other = site.ctx.clone();
    other.tenant = "other".into();
    let r = get(&other, &cookie, None);
    status(&r, 401);
    assert!(r.body_text().contains("another site"), "{}", r.body_text());
    other.secret = Some(b"other-secret".to_vec());
    status(&get(&other, &cookie, None), 401);
    status(&handle(&Request::new("DELETE", "/data/JSESSION").with_header("cookie", &cookie), &other), 401);
    // Forged: a longer expiry with the old signature.
    let (_, sig) = token.split_once('.').unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("demo|admin|{}", NOW + 99_999));
    status(&get(&site.ctx, &format!("JSESSIONID={payload}.{sig}"), None), 401);
    // A user removed from the configuration loses their sessions.
    let bob = format!("JSESSIONID={}", site.token("bob"));
    status(&get(&site.ctx, &bob, None), 200);
    let mut without_bob = site.ctx.clone();
    without_bob.users = Users::parse(&format!("admin:{}", site.ctx.users.hash_of("admin").unwrap())).unwrap();
    status(&get(&without_bob, &bob, None), 401);
    // Two cookies of that name (a stale one and a good one): the good one counts.
    status(&get(&site.ctx, &format!("JSESSIONID=junk; JSESSIONID={token}"), None), 200);
}

#[test]
fn prearchive_listing_in_three_formats() {
    let site = Site::new();
    let url = site.session("MR1", 2);
    site.session("MR2", 1);
    let r = site.basic("GET", "/data/prearchive/projects?format=json");
    status(&r, 200);
    let rows = result(&r);
    assert_eq!(rows.len(), 2);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 19);
    assert_eq!(rows[0]["url"], url.as_str());
    assert_eq!(rows[0]["status"], "READY");
    assert_eq!(rows[0]["subject"], "SUBJ1");
    assert!(rows[0].as_object().unwrap().values().all(Value::is_string));
    assert_eq!(json(&r)["ResultSet"]["totalRecords"], "2");
    // The project in the path, in the query, or absent from the site.
    assert_eq!(result(&site.basic("GET", "/data/prearchive/projects/P")).len(), 2);
    assert_eq!(result(&site.basic("GET", "/data/prearchive?project=P")).len(), 2);
    assert_eq!(result(&site.basic("GET", "/data/prearchive/projects/Q")).len(), 0);
    // pyxnat reads CSV: a header, then the rows.
    let r = site.basic("GET", "/data/prearchive/projects?format=csv");
    status(&r, 200);
    let text = r.body_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "project,timestamp,lastmod,uploaded,scan_date,scan_time,subject,folderName,name,tag,status,url,\
         autoarchive,prevent_anon,prevent_auto_commit,SOURCE,VISIT,PROTOCOL,TIMEZONE"
    );
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with(&format!("P,{TS},")));
    let r = site.basic("GET", "/data/prearchive/projects/Q?format=csv");
    assert_eq!(r.body_text().lines().count(), 1);
    let r = site.basic("GET", "/data/prearchive/projects?format=xml");
    assert!(r.body_text().contains("<column>folderName</column>"));
    let r = site.basic("GET", "/data/prearchive/projects?format=html");
    status(&r, 200);
    assert_eq!(r.header("content-type"), Some(crate::formats::HTML));
    assert!(r.body_text().contains("<th>folderName</th>") && r.body_text().contains("<td>P</td>"), "{}", r.body_text());
    status(&site.basic("GET", "/data/prearchive/projects?format=pdf"), 400);
    // One session: its row, or its document.
    let r = site.basic("GET", &format!("/data{url}?format=json"));
    let rows = result(&r);
    assert_eq!((rows.len(), rows[0]["folderName"].as_str()), (1, Some("MR1")));
    let r = site.basic("GET", &format!("/data{url}?format=xml"));
    assert!(r.body_text().starts_with("<xnat:MRSession"));
    let r = site.basic("GET", &format!("/data/prearchive/projects/P/{TS}/NOPE"));
    status(&r, 404);
    status(&site.basic("GET", "/data/prearchive/projects/P/x/%2e%2e"), 400);
}

#[test]
fn validate_archive_and_fetch_the_experiment() {
    let site = Site::new();
    let url = site.session("MR1", 2);
    let r = site.basic("POST", &format!("/data/services/validate-archive?src={url}&format=json"));
    status(&r, 200);
    assert_eq!(result(&r), Vec::<Value>::new());
    // xnatpy: src with /data, auto-archive ignored, label in `session`.
    let r = site.basic(
        "POST",
        &format!(
            "/data/services/archive?src=/data{url}&auto-archive=false&overwrite=none&project=P&subject=SUBJ1\
             &session=MR1"
        ),
    );
    status(&r, 200);
    assert_eq!(r.header("content-type"), Some(crate::formats::URI_LIST));
    assert_eq!(r.body_text(), "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1\r\n");
    assert!(site.root().join("arch/P/arc001/MR1/SCANS/2/DICOM/1.dcm").is_file());
    // The row has left the prearchive listing.
    assert!(result(&site.basic("GET", "/data/prearchive/projects")).is_empty());
    status(&site.basic("GET", &format!("/data{url}?format=json")), 404);
    // xnatpy's follow-up GET, and the other spellings of the experiment.
    for path in [
        "/data/projects/P/subjects/SUBJ1/experiments/MR1?format=json",
        "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1?format=json",
        "/data/projects/P/subjects/XNAT_S00001/experiments/XNAT_E00001",
        "/data/projects/P/experiments/MR1",
        "/data/experiments/XNAT_E00001?format=json",
    ] {
        let r = site.basic("GET", path);
        status(&r, 200);
        let item = &json(&r)["items"][0];
        assert_eq!(item["meta"]["xsi:type"], "xnat:mrSessionData", "{path}");
        assert_eq!(item["meta"]["isHistory"], false);
        assert_eq!(item["children"], serde_json::json!([]));
        let f = &item["data_fields"];
        assert_eq!(
            (f["ID"].as_str(), f["project"].as_str(), f["label"].as_str()),
            (Some("XNAT_E00001"), Some("P"), Some("MR1"))
        );
        assert_eq!((f["subject_ID"].as_str(), f["date"].as_str()), (Some("XNAT_S00001"), Some("2023-12-31")));
    }
    let r = site.basic("GET", "/data/experiments/XNAT_E00001?format=xml");
    assert!(r.body_text().contains("XNAT_E00001"));
    let r = site.basic("GET", "/data/archive/subjects/XNAT_S00001?format=json");
    status(&r, 200);
    assert_eq!(json(&r)["items"][0]["meta"]["xsi:type"], "xnat:subjectData");
    assert_eq!(json(&r)["items"][0]["data_fields"]["label"], "SUBJ1");
    status(&site.basic("GET", "/data/experiments/XNAT_E09999"), 404);
    browse_the_archived_experiment(&site);
    // The listings pyxnat's select(...).exists() reads (CSV; an ID or a label matches).
    let csv = site.basic("GET", "/data/projects/P/subjects/SUBJ1/experiments?format=csv&columns=ID,label").body_text();
    assert_eq!(
        csv,
        "ID,project,date,xsiType,label,insert_date,URI\n\
         XNAT_E00001,P,2023-12-31,xnat:mrSessionData,MR1,,/data/experiments/XNAT_E00001\n"
    );
    assert_eq!(result(&site.basic("GET", "/data/archive/projects/P/subjects/XNAT_S00001/experiments")).len(), 1);
    assert_eq!(result(&site.basic("GET", "/data/projects/P/experiments")).len(), 1);
    let subjects = result(&site.basic("GET", "/data/projects/P/subjects"));
    assert_eq!((subjects[0]["ID"].as_str(), subjects[0]["label"].as_str()), (Some("XNAT_S00001"), Some("SUBJ1")));
    status(&site.basic("GET", "/data/projects/P/subjects/NOBODY/experiments"), 404);
    status(&site.basic("GET", "/data/projects/NOPE/experiments"), 404);
    // Archiving it again: the session is gone.
    status(&site.basic("POST", &format!("/data/services/archive?src={url}")), 404);
}

/// The archived experiment's scans, resources and files, by ID and by label, and its files' bytes.
fn browse_the_archived_experiment(site: &Site) {
    let by_id = "/data/experiments/XNAT_E00001";
    for base in [by_id, "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1", "/data/projects/P/experiments/MR1"] {
        let scans = result(&site.basic("GET", &format!("{base}/scans?format=json&columns=ID,URI,type,xsiType")));
        assert_eq!(scans.len(), 1, "{base}");
        assert_eq!((scans[0]["ID"].as_str(), scans[0]["type"].as_str()), (Some("2"), Some("T1")));
        assert_eq!(scans[0]["xsiType"], "xnat:mrScanData");
        let resources = result(&site.basic("GET", &format!("{base}/scans/2/resources?format=json")));
        assert_eq!(resources.len(), 1);
        let r = &resources[0];
        assert_eq!(r["label"].as_str(), Some("DICOM"));
        let id = r["xnat_abstractresource_id"].as_str().unwrap();
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "a number, as XNAT's: {id}");
        let by_id = result(&site.basic("GET", &format!("{base}/scans/2/resources/{id}/files?format=json")));
        assert_eq!(by_id.len(), 2, "the resource by its ID");
        assert_eq!((r["element_name"].as_str(), r["file_count"].as_str()), (Some("xnat:resourceCatalog"), Some("2")));
        assert!(r.get("URI").is_none(), "xnatpy would take a resource row with a URI for a file");
    }
    let files = result(&site.basic("GET", &format!("{by_id}/scans/2/resources/DICOM/files?format=json")));
    assert_eq!(files[0]["digest"], "", "archived as received: no digests yet");
    let refresh = "/data/services/refresh/catalog?resource=/archive/experiments/XNAT_E00001/scans/2&options=checksum";
    status(&site.basic("POST", refresh), 200);
    let files = result(&site.basic("GET", &format!("{by_id}/scans/2/resources/DICOM/files?format=json")));
    assert_eq!(files.len(), 2);
    assert_eq!(files[1]["digest"].as_str().map(str::len), Some(32), "{files:?}");
    assert_eq!(files[0]["Name"], "1.dcm");
    assert_eq!(files[0]["URI"], format!("{by_id}/scans/2/resources/DICOM/files/1.dcm"));
    assert_eq!((files[0]["collection"].as_str(), files[0]["cat_ID"].as_str()), (Some("DICOM"), Some("DICOM")));
    // An assessor's resources: its own (out) side, and its in side.
    let assessor = site.root().join("arch/P/arc001/MR1/ASSESSORS/FS1");
    fs::create_dir_all(assessor.join("out/STATS")).unwrap();
    fs::create_dir_all(assessor.join("in/INPUT")).unwrap();
    let labels = |path: String| -> Vec<String> {
        result(&site.basic("GET", &path)).iter().map(|r| r["label"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(labels(format!("{by_id}/assessors/FS1/resources")), ["STATS"]);
    assert_eq!(labels(format!("{by_id}/assessors/FS1/out/resources")), ["STATS"]);
    assert_eq!(labels(format!("{by_id}/assessors/FS1/in/resources")), ["INPUT"]);
    fs::remove_dir_all(site.root().join("arch/P/arc001/MR1/ASSESSORS")).unwrap();
    let html = site.basic("GET", &format!("{by_id}/scans/2/resources/DICOM/files?format=html"));
    assert!(html.body_text().contains("<td>1.dcm</td>"), "{}", html.body_text());
    let mut hostile = crate::formats::Table::new(&["label"]);
    hostile.push(vec!["<script>alert(1)</script> & \"x\"".into()]);
    let page = hostile.to_html();
    assert!(page.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt; &amp; ") && !page.contains("<script"), "{page}");
    let csv = site.basic("GET", "/data/archive/experiments/XNAT_E00001/scans/2/resources/DICOM/files?format=csv");
    assert!(csv.body_text().starts_with("Name,Size,URI,collection,file_tags,file_format,file_content,cat_ID,digest\n"));
    assert!(csv.body_text().contains(",/data/experiments/XNAT_E00001/scans/2/resources/DICOM/files/2.dcm,"));

    // One file: streamed, with the catalog digest as ETag; HEAD, a range, a conditional GET.
    let uri = files[1]["URI"].as_str().unwrap();
    let path = site.root().join("arch/P/arc001/MR1/SCANS/2/DICOM/2.dcm");
    let bytes = fs::read(&path).unwrap();
    let one = site.basic("GET", uri);
    status(&one, 200);
    let body = one.file.clone().expect("a streamed body");
    assert_eq!((body.offset, body.len), (0, bytes.len() as u64));
    let etag = format!("\"{}\"", files[1]["digest"].as_str().unwrap());
    assert_eq!(one.header("etag"), Some(etag.as_str()));
    let head = site.basic_with("HEAD", uri, &[]);
    assert!(head.head && head.file.is_some(), "HEAD: the length, no body");
    let part = site.basic_with("GET", uri, &[("range", "bytes=2-")]);
    status(&part, 206);
    let body = part.file.clone().unwrap();
    assert_eq!((body.offset, body.len), (2, bytes.len() as u64 - 2));
    assert_eq!(part.header("content-range"), Some(format!("bytes 2-{}/{}", bytes.len() - 1, bytes.len()).as_str()));
    let far = site.basic_with("GET", uri, &[("range", "bytes=999-")]);
    status(&far, 416);
    let same = site.basic_with("GET", uri, &[("if-none-match", &etag)]);
    status(&same, 304);

    // Zips: one resource, chosen scans, every scan, the whole experiment; XNAT's folders inside.
    let unzip = |r: &Response| -> Vec<(String, Vec<u8>)> {
        status(r, 200);
        assert_eq!(r.header("content-type"), Some(crate::message::ZIP));
        let mut out = Vec::new();
        crate::browse::write_zip(r.zip.as_deref().expect("a streamed zip"), &mut out).unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(out)).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut f = zip.by_index(i).unwrap();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
                (f.name().unwrap().to_string(), bytes)
            })
            .collect()
    };
    let folder = "MR1/scans/2-T1/resources/DICOM/files";
    let want = vec![(format!("{folder}/1.dcm"), b"DICM MR1 1".to_vec()), (format!("{folder}/2.dcm"), bytes.clone())];
    for zipped in [
        format!("{by_id}/scans/2/resources/DICOM/files?format=zip"),
        format!("{by_id}/scans/ALL/files?format=zip"),
        format!("{by_id}/scans/2,T1/files?format=zip"),
        format!("{by_id}/scans/ALL/resources/DICOM/files?format=zip"),
        format!("{by_id}/files?format=zip"),
        "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1/scans/T1/files?format=zip".to_string(),
    ] {
        let r = site.basic("GET", &zipped);
        assert_eq!(unzip(&r), want, "{zipped}");
    }
    let all = result(&site.basic("GET", &format!("{by_id}/scans/ALL/files?format=json")));
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["URI"], "/data/projects/P/subjects/SUBJ1/experiments/MR1/scans/2/resources/DICOM/files/2.dcm");
    status(&site.basic("GET", &format!("{by_id}/scans/3,2/files?format=zip")), 404);

    // Only what the catalog lists; a file whose bytes changed is not served as the archived one.
    fs::write(path.with_file_name("extra.dcm"), b"not catalogued").unwrap();
    for missing in [
        format!("{by_id}/scans/2/resources/DICOM/files/extra.dcm"),
        format!("{by_id}/scans/2/resources/DICOM/files/scan_2_catalog.xml"),
        format!("{by_id}/scans/2/resources/DICOM/files/..%2F..%2F..%2FMR1.xml"),
        format!("{by_id}/scans/2/resources/NIFTI/files"),
        format!("{by_id}/scans/9/resources"),
        "/data/experiments/XNAT_E09999/scans".to_string(),
    ] {
        let r = site.basic("GET", &missing);
        assert!(r.status == 404 || r.status == 400, "{missing}: {}", r.status);
    }
    let mut tampered = bytes.clone();
    tampered[0] ^= 0xff;
    fs::write(&path, &tampered).unwrap();
    let r = site.basic("GET", uri);
    status(&r, 409);
    assert!(r.body_text().contains("verify"), "{}", r.body_text());
    let r = site.basic("GET", &format!("{by_id}/scans/ALL/files?format=zip"));
    let mut partial = Vec::new();
    let cut = crate::browse::write_zip(r.zip.as_deref().unwrap(), &mut partial).unwrap_err();
    assert!(cut.to_string().contains("2.dcm no longer matches"), "{cut}");
    assert!(zip::ZipArchive::new(std::io::Cursor::new(partial)).is_err(), "a cut-off zip never reads as a whole one");
    fs::write(&path, &bytes).unwrap();
    status(&site.basic("GET", uri), 200);
}

#[test]
fn archive_errors_and_batches() {
    let site = Site::new();
    let first = site.session("MR1", 1);
    status(&site.basic("POST", &format!("/data/services/archive?src={first}")), 200);
    // The same label again without overwrite: 409, as JSON when asked, and the session is CONFLICT.
    let again = site.session("MR1", 1);
    let r = site.basic("POST", &format!("/data/services/validate-archive?src={again}"));
    let notices = result(&r);
    assert!(notices.iter().any(|n| n["type"] == "CONFLICT"), "{}", r.body_text());
    assert!(notices.iter().all(|n| n["code"].is_string()));
    let r = site.basic("POST", &format!("/data/services/archive?src={again}&format=json"));
    status(&r, 409);
    assert_eq!(json(&r)["error"]["kind"], "conflict");
    assert_eq!(result(&site.basic("GET", "/data/prearchive/projects"))[0]["status"], "CONFLICT");
    // Bad input.
    status(&site.basic("POST", &format!("/data/services/archive?src={again}&overwrite=sometimes")), 400);
    status(&site.basic("POST", &format!("/data/services/archive?src={again}&session=A&label=B")), 400);
    status(&site.basic("POST", "/data/services/archive"), 404);
    status(&site.basic("POST", "/data/services/archive?src=/etc/passwd"), 400);
    status(&site.basic("GET", &format!("/data/services/archive?src={again}")), 405);
    // A batch: one conflict, one new session → a table, with the conflict's status.
    let new = site.session("MR2", 1);
    let r = site.basic("POST", &format!("/data/services/archive?src={again}&src={new}"));
    status(&r, 409);
    let rows = result(&r);
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["status"].as_str(), rows[1]["status"].as_str()), (Some("409"), Some("200")));
    assert_eq!(rows[1]["uri"], "/data/archive/projects/P/subjects/SUBJ1/experiments/MR2");
    // The project/timestamp/folder triple, as a form body.
    let r = site.send(
        Request::new("POST", "/data/services/archive")
            .with_header("authorization", &basic("admin", "admin-pw"))
            .with_form(&format!(
                "project=P&PREARC_TIMESTAMP={TS}&PREARC_SESSION_FOLDER=MR1&overwrite=delete&XNAT_CSRF=x"
            )),
    );
    status(&r, 200);
    assert_eq!(r.body_text(), "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1\r\n");
    status(&site.basic("POST", &format!("/data/services/archive?PREARC_TIMESTAMP={TS}")), 400);
}

#[test]
fn prearchive_actions() {
    let site = Site::new();
    let one = site.session("MR1", 1);
    let two = site.session("MR2", 1);
    // Batch move: the moved rows.
    let r = site
        .basic("POST", &format!("/data/services/prearchive/move?src={one}&src=/data{two}&newProject=Q&async=false"));
    status(&r, 200);
    let rows = result(&r);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["url"], format!("/prearchive/projects/Q/{TS}/MR1").as_str());
    status(&site.basic("POST", &format!("/data/services/prearchive/move?src={one}")), 400);
    // Single-session actions.
    let q1 = format!("/data/prearchive/projects/Q/{TS}/MR1");
    let r = site.basic("POST", &format!("{q1}?action=move&newProject=P&format=json"));
    status(&r, 200);
    assert_eq!(result(&r)[0]["project"], "P");
    let p1 = format!("/data/prearchive/projects/P/{TS}/MR1");
    let r = site.basic("POST", &format!("{p1}?action=reset-status"));
    assert_eq!((r.status.as_u16(), r.body_text()), (200, format!("{p1}\r\n")));
    let r = site.basic("POST", &format!("{p1}?format=single&action=build"));
    status(&r, 200);
    status(&site.basic("POST", &p1), 400);
    status(&site.basic("POST", &format!("{p1}?action=explode")), 400);
    // Deletes: the row as it was; then 404.
    let r = site.send(
        Request::new("POST", "/data/services/prearchive/delete?format=csv")
            .with_header("authorization", &basic("admin", "admin-pw"))
            .with_form(&format!("src={}&async=false", urlenc(&format!("/prearchive/projects/Q/{TS}/MR2")))),
    );
    status(&r, 200);
    assert_eq!(r.body_text().lines().count(), 2);
    status(&site.basic("DELETE", &p1), 200);
    status(&site.basic("DELETE", &p1), 404);
    assert!(result(&site.basic("GET", "/data/prearchive")).is_empty());
    // A batch where one session is missing: its status, naming it.
    let three = site.session("MR3", 1);
    let r = site
        .basic("POST", &format!("/data/services/prearchive/delete?src={three}&src=/prearchive/projects/P/{TS}/GONE"));
    status(&r, 404);
    assert!(r.body_text().contains("GONE") && r.body_text().contains("1 of 2"), "{}", r.body_text());
}

fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn refresh_and_resources() {
    let site = Site::new();
    let url = site.session("MR1", 2);
    status(&site.basic("POST", &format!("/data/services/archive?src={url}")), 200);
    let exp = "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1";
    // A new file in the scan's folder; xnatpy's repeated options.
    fs::write(site.root().join("arch/P/arc001/MR1/SCANS/2/DICOM/3.dcm"), "DICM new").unwrap();
    let r = site
        .basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&options=append&options=populateStats"));
    status(&r, 200);
    assert!(r.body.is_empty());
    // The report, with comma-joined options and a switch; nothing left to add.
    let query = "resource=/archive/experiments/XNAT_E00001&options=checksum,delete&append=true&format=json";
    let r = site.basic("POST", &format!("/data/services/refresh/catalog?{query}"));
    status(&r, 200);
    let reports = json(&r)["reports"].as_array().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["resource"], "/archive/projects/P/subjects/SUBJ1/experiments/MR1/scans/2/resources/DICOM");
    assert_eq!(reports[0]["file_count"], 3);
    assert!(reports[0]["added"].as_array().unwrap().is_empty());
    // verify and dry-run: the report, nothing written (a changed file, a new one, a checksum to add).
    let scan = site.root().join("arch/P/arc001/MR1/SCANS/2/DICOM");
    fs::write(scan.join("1.dcm"), "DICM changed").unwrap();
    fs::write(scan.join("4.dcm"), "DICM newer").unwrap();
    let catalog = fs::read(scan.join("scan_2_catalog.xml")).unwrap();
    for query in [
        format!("resource={exp}&mode=verify"),
        format!("resource={exp}&verify=true"),
        format!("resource={exp}&options=append,checksum&dryRun=true"),
        format!("resource={exp}&options=append&mode=dry-run&format=json"),
    ] {
        let r = site.basic("POST", &format!("/data/services/refresh/catalog?{query}"));
        status(&r, 200);
        let report = &json(&r)["reports"][0];
        assert_eq!(report["added"], serde_json::json!(["4.dcm"]), "{query}: {report}");
        assert_eq!(report["outcome"]["status"], "not-written", "{query}");
        assert_eq!(fs::read(scan.join("scan_2_catalog.xml")).unwrap(), catalog, "{query} wrote the catalog");
    }
    let r = site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&mode=verify"));
    assert_eq!(json(&r)["reports"][0]["mismatches"][0]["path"], "1.dcm", "{}", r.body_text());
    status(&site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&mode=sometimes")), 400);
    fs::remove_file(scan.join("4.dcm")).unwrap();
    // Only what cannot write is granted read-only by a host (the classification it asks for).
    for (method, target, writes) in [
        ("GET", "/data/experiments/XNAT_E00001/scans/2/resources/DICOM/files?format=zip", false),
        ("HEAD", "/data/archive/projects/P/subjects/S/experiments/E/scans", false),
        ("GET", "/data/projects", false),
        ("GET", "/data/prearchive/projects", true),
        ("GET", "/data/JSESSION", true),
        ("POST", "/data/services/refresh/catalog?resource=/archive/projects/P&mode=verify", false),
        ("POST", "/data/services/refresh/catalog?resource=/archive/projects/P&dryRun=true", false),
        ("POST", "/data/services/refresh/catalog?resource=/archive/projects/P&verify=false", true),
        ("POST", "/data/services/refresh/catalog?mode=verify&mode=apply", true),
        ("POST", "/data/services/refresh/catalog?mode=bogus", true),
        ("POST", "/data/services/refresh/catalog", true),
        ("PUT", "/data/projects/P/resources/R", true),
        ("GET", "/data/projects/%ff", true),
    ] {
        assert_eq!(crate::routes::writes(method, target), writes, "{method} {target}");
    }
    // Bad options, unknown and malformed resources.
    status(&site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&options=everything")), 400);
    status(&site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&options=Append")), 400);
    status(&site.basic("POST", "/data/services/refresh/catalog?resource=/archive/projects/NOPE"), 404);
    status(&site.basic("POST", "/data/services/refresh/catalog?resource=/archive/projects/P/../x"), 400);
    status(&site.basic("POST", "/data/services/refresh/catalog"), 400);
    status(&site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&format=xml")), 400);
    // A catalog that cannot be read: that resource's status (500), the report says which.
    fs::write(site.root().join("arch/P/arc001/MR1/SCANS/2/DICOM/scan_2_catalog.xml"), "<broken").unwrap();
    let r = site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}&format=json"));
    status(&r, 500);
    assert_eq!(json(&r)["reports"][0]["outcome"]["status"], "failed");
    let r = site.basic("POST", &format!("/data/services/refresh/catalog?resource={exp}"));
    status(&r, 500);
    assert!(r.body_text().contains("scans/2/resources/DICOM"), "{}", r.body_text());
    // Creating resources: PUT the resource URL (the forms with and without /archive).
    let r = site.basic("PUT", &format!("{exp}/resources/NOTES?format=TXT&content=notes&tags=a,b"));
    status(&r, 200);
    assert!(site.root().join("arch/P/arc001/MR1/RESOURCES/NOTES/NOTES_catalog.xml").is_file());
    status(&site.basic("PUT", &format!("{exp}/resources/NOTES")), 409);
    status(&site.basic("POST", "/data/experiments/XNAT_E00001/scans/2/resources/NIFTI?format=NIFTI"), 200);
    status(&site.basic("PUT", "/data/projects/P/resources/DOCS"), 200);
    assert!(site.root().join("arch/P/resources/DOCS/DOCS_catalog.xml").is_file());
    status(&site.basic("PUT", "/data/projects/NOPE/resources/DOCS"), 404);
    // A project's and a subject's resources are listed and served like an experiment's.
    fs::write(site.root().join("arch/P/resources/DOCS/protocol.txt"), "the protocol").unwrap();
    let q = "/data/services/refresh/catalog?resource=/archive/projects/P/resources/DOCS&options=append,checksum";
    status(&site.basic("POST", q), 200);
    let docs = result(&site.basic("GET", "/data/projects/P/resources?format=json"));
    assert_eq!(docs.iter().map(|r| r["label"].as_str().unwrap()).collect::<Vec<_>>(), ["DOCS"]);
    assert_eq!(docs[0]["file_count"], "1");
    let files = result(&site.basic("GET", "/data/archive/projects/P/resources/DOCS/files?format=json"));
    assert_eq!(files[0]["URI"], "/data/projects/P/resources/DOCS/files/protocol.txt");
    let one = site.basic("GET", files[0]["URI"].as_str().unwrap());
    status(&one, 200);
    assert_eq!(fs::read(&one.file.clone().unwrap().path).unwrap(), b"the protocol");
    status(&site.basic("PUT", "/data/projects/P/subjects/SUBJ1/resources/CONSENT"), 200);
    let subject = result(&site.basic("GET", "/data/projects/P/subjects/SUBJ1/resources?format=json"));
    assert_eq!(subject.iter().map(|r| r["label"].as_str().unwrap()).collect::<Vec<_>>(), ["CONSENT"]);
    assert_eq!(subject[0]["file_count"], "0");
    // Uploads and other writes to archive items are not offered.
    let r = site.basic("PUT", &format!("{exp}/resources/NOTES/files/x.txt"));
    status(&r, 404);
    assert!(r.body_text().contains("not offered"), "{}", r.body_text());
    status(&site.basic("DELETE", exp), 404);
}

#[test]
fn methods_heads_and_unknown_paths() {
    let site = Site::new();
    let r = site.basic("POST", "/data/auth");
    status(&r, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    status(&site.basic("PATCH", "/data/prearchive"), 405);
    let r = site.basic("GET", "/data/nothing/here?format=json");
    status(&r, 404);
    assert_eq!(json(&r)["error"]["kind"], "not-found");
    let r = site.basic("HEAD", "/data/version");
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
    // /REST is XNAT's old prefix.
    assert_eq!(site.basic("GET", "/REST/version").body_text(), "1.8.10");
    // Cookie auth works on every endpoint.
    status(&site.cookie("GET", "/data/prearchive/projects"), 200);
}

#[test]
fn settings_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let tree = || Tree::new(dir.path());
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    let ctx = Context::from_env(env(&[]), tree(), tree(), 5);
    assert!(ctx.users.is_empty() && ctx.secret.is_none() && ctx.config_error.is_none());
    assert_eq!(
        (ctx.tenant.as_str(), ctx.base_path.as_str(), ctx.token_ttl, ctx.site_id.as_str()),
        ("default", "", 3600, "XNAT")
    );
    let ctx = Context::from_env(
        env(&[
            ("XNAT_SECRET", "s3cret"),
            ("XNAT_TENANT", "demo"),
            ("XNAT_BASE_PATH", "demo/"),
            ("XNAT_TOKEN_TTL", "60"),
            ("XNAT_SITE_ID", "DEMO"),
            ("XNAT_ARCHIVE_PAUSE_MS", "10"),
            ("XNAT_USERS", ""),
        ]),
        tree(),
        tree(),
        5,
    );
    assert_eq!(ctx.secret.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(
        (ctx.tenant.as_str(), ctx.base_path.as_str(), ctx.token_ttl, ctx.site_id.as_str()),
        ("demo", "/demo", 60, "DEMO")
    );
    assert_eq!(ctx.faults.pause_ms, Some(10));
    assert!(ctx.config_error.is_none());
    // Broken settings: GET / still answers, everything else is a 500 naming them.
    let ctx = Context::from_env(
        env(&[("XNAT_USERS", "admin:not-a-hash"), ("XNAT_TOKEN_TTL", "soon"), ("XNAT_TENANT", "a|b")]),
        tree(),
        tree(),
        5,
    );
    let problem = ctx.config_error.clone().unwrap();
    for name in ["XNAT_USERS", "XNAT_TOKEN_TTL", "XNAT_TENANT"] {
        assert!(problem.contains(name), "{problem}");
    }
    assert_eq!(handle(&Request::new("GET", "/"), &ctx).status, 200);
    let r = handle(&Request::new("PUT", "/data/services/auth").with_form("username=admin&password=x"), &ctx);
    status(&r, 500);
    status(&handle(&Request::new("GET", "/data/auth").with_header("authorization", &basic("admin", "x")), &ctx), 500);
}

#[test]
fn prearchive_scans_resources_and_files_as_pyxnat_and_xnatpy_read_them() {
    let site = Site::new();
    let url = site.session("S1", 2);
    let base = format!("/data{url}/scans");
    let scans = site.cookie("GET", &format!("{base}?format=json"));
    status(&scans, 200);
    let rows = result(&scans);
    assert_eq!((rows[0]["ID"].as_str(), rows[0]["type"].as_str()), (Some("2"), Some("T1")));
    assert!(rows[0].get("xsiType").is_none(), "xnatpy would build an mrScanData, not a prearchive scan");
    // pyxnat asks for CSV and reads ID / label / Name from the header row.
    let csv = site.basic("GET", &format!("{base}?format=csv")).body_text();
    assert!(csv.starts_with("ID,type,series_description\n2,T1,"), "{csv}");
    let res = result(&site.cookie("GET", &format!("{base}/2/resources")));
    assert_eq!(res[0]["label"], "DICOM");
    assert_eq!((res[0]["file_count"].as_str(), res[0]["content"].as_str()), (Some("2"), Some("")));
    let files = result(&site.cookie("GET", &format!("{base}/2/resources/DICOM/files?format=json")));
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["Name"], "1.dcm");
    assert_eq!(files[0]["URI"], format!("{base}/2/resources/DICOM/files/1.dcm"));
    // The file itself: streamed from the prearchive, never read whole into the response.
    let one = site.cookie("GET", files[1]["URI"].as_str().unwrap());
    status(&one, 200);
    let crate::message::FileBody { path, len: size, .. } = one.file.clone().expect("a streamed body");
    assert_eq!(fs::read(&path).unwrap(), b"DICM S1 2");
    assert_eq!((size, one.header("content-type")), (9, Some(crate::formats::BINARY)));
    for missing in [
        format!("{base}/9/resources"),
        format!("{base}/2/resources/NIFTI/files"),
        format!("{base}/2/resources/DICOM/files/3.dcm"),
        format!("{base}/2/resources/DICOM/files/scan_2_catalog.xml"),
        format!("{base}/2/resources/DICOM/files/..%2f..%2fS1.xml"),
        format!("/data/prearchive/projects/P/{TS}/NOPE/scans"),
    ] {
        let r = site.cookie("GET", &missing);
        assert!(matches!(r.status.as_u16(), 400 | 404), "{missing}: {}", r.status);
        assert!(r.file.is_none());
    }
    status(&site.cookie("POST", &format!("{base}/2/resources")), 405);
    status(&site.send(Request::new("GET", &base)), 401);
}

#[test]
fn projects_list_and_a_wiki_style_jsession_post() {
    let site = Site::new();
    fs::create_dir_all(site.root().join("arch/P/arc001")).unwrap();
    fs::create_dir_all(site.root().join("arch/.xnat/ids")).unwrap();
    let r = site.cookie("GET", "/data/projects?format=csv");
    status(&r, 200);
    assert_eq!(
        r.body_text(),
        "ID,secondary_ID,name,description,pi_firstname,pi_lastname,URI\nP,P,P,,,,/data/projects/P\n"
    );
    assert_eq!(result(&site.cookie("GET", "/data/archive/projects")).len(), 1);
    // `curl -u user:pass -X POST …/data/JSESSION` answers a session id that works as the cookie.
    let token = site.basic("POST", "/data/JSESSION");
    status(&token, 200);
    let cookie = format!("JSESSIONID={}", token.body_text().trim());
    let r = site.send(Request::new("GET", "/data/projects").with_header("Cookie", &cookie));
    status(&r, 200);
}

#[test]
fn batches_are_bounded_before_anything_is_built() {
    let site = Site::new();
    // 1,001 folders: refused with a clear 400 before a single session is looked up.
    let folders: String = (0..1001).map(|i| format!("&PREARC_SESSION_FOLDER=F{i}")).collect();
    let body = format!("PROJECT_ID=P&PREARC_TIMESTAMP={TS}{folders}");
    for path in ["/data/services/archive", "/data/services/prearchive/delete"] {
        let r = site.send(
            Request::new("POST", path).with_header("Authorization", &basic("admin", "admin-pw")).with_form(&body),
        );
        status(&r, 400);
        assert!(r.body_text().contains("name at most 1000"), "{}", r.body_text());
    }
    // A project name no folder could have, repeated into every session URI: refused up front.
    let long = "P".repeat(300);
    let r = site.send(
        Request::new("POST", "/data/services/archive")
            .with_header("Authorization", &basic("admin", "admin-pw"))
            .with_form(&format!("PROJECT_ID={long}&PREARC_TIMESTAMP={TS}&PREARC_SESSION_FOLDER=F")),
    );
    status(&r, 400);
}

/// Every prearchive action and read takes an address only if it names exactly one session: a project's
/// timestamp folder is not an Unassigned session, a folder inside a session is not a session.
#[test]
fn prearchive_addresses_that_are_not_one_session_change_nothing() {
    let site = Site::new();
    site.session("MR1", 2);
    site.session("MR2", 1);
    let before = std::process::Command::new("find").arg(site.root()).arg("-ls").output().unwrap().stdout;
    let not_sessions = [
        format!("/data/prearchive/projects/Unassigned/P/{TS}"),
        format!("/data/prearchive/projects/P/{TS}/MR1/SCANS"),
        format!("/data/prearchive/projects/{TS}/MR1/SCANS"),
        format!("/data/prearchive/projects/P/{TS}/MR1.xml"),
        "/data/prearchive/projects/P/not_a_ts/MR1".to_string(),
    ];
    for addr in &not_sessions {
        for (method, path) in [
            ("DELETE", addr.clone()),
            ("POST", format!("{addr}?action=move&newProject=Q")),
            ("POST", format!("{addr}?action=reset-status")),
            ("POST", format!("/data/services/prearchive/delete?src={}", urlenc(addr))),
            ("POST", format!("/data/services/prearchive/move?src={}&newProject=Q", urlenc(addr))),
            ("POST", format!("/data/services/archive?src={}", urlenc(addr))),
            ("POST", format!("/data/services/validate-archive?src={}", urlenc(addr))),
            ("GET", format!("{addr}?format=json")),
            ("GET", format!("{addr}/scans?format=json")),
        ] {
            let r = site.basic(method, &path);
            assert!(matches!(r.status.as_u16(), 400 | 404), "{method} {path}: {} {}", r.status, r.body_text());
        }
    }
    let after = std::process::Command::new("find").arg(site.root()).arg("-ls").output().unwrap().stdout;
    assert_eq!(String::from_utf8_lossy(&before), String::from_utf8_lossy(&after), "nothing may change");
}

/// An archive killed after its session moved into the archive: the admin's recovery leaves it alone while
/// its holder's lease runs, rolls it back once the lease ran out; other users are refused.
#[test]
fn administrators_recover_cut_short_archives_over_http_respecting_live_leases() {
    let mut site = Site::new();
    site.ctx.admins = vec!["admin".into()];
    site.session("MR1", 2);
    let pre = site.root().join("pre/P").join(TS);
    fs::create_dir_all(site.root().join("arch/P/arc001")).unwrap();
    fs::rename(pre.join("MR1"), site.root().join("arch/P/arc001/MR1")).unwrap();
    fs::write(
        pre.join(".MR1.journal"),
        format!(
            "{}\n{}\n",
            serde_json::json!({
                "journal": "xnat-archive", "version": 2,
                "session": {"project": "P", "timestamp": TS, "folder": "MR1"},
                "project": "P", "label": "MR1", "target": "P/arc001/MR1", "experiment": "XNAT_E00001",
                "subject": {"label": "SUBJ1", "id": "XNAT_S00001"},
                "mode": "new", "overwrite": "none", "quarantine": false, "trigger": true, "scans": {}
            }),
            serde_json::json!({"move": {"from": format!("P/{TS}/MR1"), "to": "P/arc001/MR1"}})
        ),
    )
    .unwrap();
    let lease = |expires: u64| format!("ARCHIVING\nowner dead\nsince {}\nexpires {expires}\n", expires - 30);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    fs::write(pre.join(".MR1.lock"), lease(now + 60)).unwrap();

    let bob = site.send(
        Request::new("POST", "/data/services/archive/recover").with_header("authorization", &basic("bob", "bob-pw")),
    );
    status(&bob, 403);
    let before = std::process::Command::new("find").arg(site.root()).output().unwrap().stdout;
    let r = site.basic("POST", "/data/services/archive/recover?format=json");
    status(&r, 200);
    assert_eq!(result(&r)[0]["action"], "in-progress", "{}", r.body_text());
    assert_eq!(before, std::process::Command::new("find").arg(site.root()).output().unwrap().stdout);

    fs::write(pre.join(".MR1.lock"), lease(now - 1)).unwrap();
    let r = site.basic("POST", "/data/services/archive/recover?format=json");
    status(&r, 200);
    assert_eq!(result(&r)[0]["action"], "rolled-back", "{}", r.body_text());
    assert!(pre.join("MR1/SCANS/2/DICOM/1.dcm").is_file() && !site.root().join("arch/P/arc001/MR1").exists());
    assert!(!pre.join(".MR1.lock").exists() && !pre.join(".MR1.journal").exists());
    let rows = result(&site.basic("GET", "/data/prearchive/projects/P?format=json"));
    assert_eq!(rows[0]["status"], "READY", "{rows:?}");
}

/// Issue 10's report: a DELETE of a prearchive session with the session cookie and `Origin:
/// http://evil.example` answered 200 and deleted it.
#[test]
fn a_cross_site_delete_with_the_cookie_is_refused_and_changes_nothing() {
    let site = Site::new();
    let path = format!("/data{}", site.session("MR1", 2));
    let folder = site.root().join("pre/P").join(TS).join("MR1");
    let cookie = format!("JSESSIONID={}", site.token("admin"));
    let from = |origin: &str| {
        Request::new("DELETE", &path)
            .with_header("Cookie", &cookie)
            .with_header("Host", "xnat.example")
            .with_header("Origin", origin)
    };
    let r = site.send(from("http://evil.example"));
    status(&r, 403);
    assert!(r.body_text().contains("cross-site"), "{}", r.body_text());
    assert!(folder.is_dir(), "the session was deleted");
    // A page of the server itself may, and so may a client that is no browser.
    status(&site.send(from("http://xnat.example")), 200);
    assert!(!folder.exists());
}

#[test]
fn every_response_is_neither_sniffed_nor_rendered() {
    let site = Site::new();
    let doc_path = format!("/data{}", site.session("MR1", 1));
    for r in [
        site.send(Request::new("GET", "/")),
        site.send(Request::new("GET", "/data/prearchive")),
        site.send(Request::new("GET", "/data/prearchive?format=nonsense%zz")),
        site.basic("GET", "/data/prearchive?format=csv"),
        site.basic("GET", &doc_path),
        site.basic("GET", "/data/no/such/thing"),
        site.basic("HEAD", "/data/version"),
    ] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{} {}", r.status, r.body_text());
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'") && csp.contains("sandbox"), "{csp:?}");
    }
}

/// A host that checked the credentials itself names the user; the component does not check them again,
/// and names a user only if it is configured.
#[test]
fn a_user_the_host_verified_is_admitted_without_credentials() {
    let mut site = Site::new();
    let listing = "/data/prearchive/projects?format=json";
    status(&site.send(Request::new("GET", listing)), 401);
    site.ctx.verified_user = Some("bob".into());
    status(&site.send(Request::new("GET", listing)), 200);
    assert_eq!(site.send(Request::new("GET", "/data/auth")).body_text(), "User 'bob' is logged in");
    site.ctx.verified_user = Some("ghost".into());
    status(&site.send(Request::new("GET", listing)), 401);
}

/// What a host asks before it lets a request in: open paths need nobody, the others a caller.
#[test]
fn admission_needs_no_body_and_answers_as_the_router_would() {
    let site = Site::new();
    let admit = |req: Request| crate::routes::admit(&req, &site.ctx);
    for (method, path) in
        [("GET", "/"), ("PUT", "/data/services/auth"), ("POST", "/data/services/auth"), ("DELETE", "/data/JSESSION")]
    {
        assert_eq!(admit(Request::new(method, path)).unwrap(), None, "{method} {path}");
    }
    let who = admit(Request::new("GET", "/data/prearchive").with_header("Authorization", &basic("bob", "bob-pw")));
    assert_eq!(who.unwrap().unwrap().user, "bob");
    let e = admit(Request::new("GET", "/data/JSESSION")).unwrap_err();
    assert_eq!((e.status, e.message.as_str()), (401, crate::auth::PYXNAT_401));
    assert_eq!(admit(Request::new("HEAD", "/data/version")).unwrap_err().status, 401);
}

/// Tokens can be ended: a new password ends every session of its user; `DELETE /data/JSESSION?everywhere=true`
/// ends every session of the caller, wherever the token was copied; a login after it works.
#[test]
fn a_new_password_or_a_logout_everywhere_ends_every_earlier_session() {
    let mut site = Site::new();
    let who = |ctx: &Context, token: &str| {
        handle(&Request::new("GET", "/data/auth").with_header("cookie", &format!("JSESSIONID={token}")), ctx)
    };
    let (first, second, bobs) = (site.token("admin"), site.token("admin"), site.token("bob"));
    status(&who(&site.ctx, &first), 200);
    // Logout everywhere with one of admin's tokens: both of admin's end, bob's does not.
    let out =
        Request::new("DELETE", "/data/JSESSION?everywhere=true").with_header("cookie", &format!("JSESSIONID={first}"));
    status(&site.send(out), 200);
    for token in [&first, &second] {
        let r = who(&site.ctx, token);
        status(&r, 401);
        assert!(r.body_text().contains("logout everywhere"), "{}", r.body_text());
    }
    status(&who(&site.ctx, &bobs), 200);
    let again = site.send(Request::new("PUT", "/data/services/auth").with_form("username=admin&password=admin-pw"));
    status(&again, 200);
    status(&who(&site.ctx, &again.body_text()), 200);
    // A plain logout ends only the cookie in the browser, not the session elsewhere.
    let plain =
        Request::new("DELETE", "/data/JSESSION").with_header("cookie", &format!("JSESSIONID={}", again.body_text()));
    status(&site.send(plain), 200);
    status(&who(&site.ctx, &again.body_text()), 200);
    // A new password (the host's configuration) ends bob's sessions.
    let cheap = argon2::Params::new(64, 1, 1, None).unwrap();
    let admin = site.ctx.users.hash_of("admin").unwrap().to_string();
    let bob = hash_password_with("new-bob-pw", b"pepperpepperpepp", cheap).unwrap();
    site.ctx.users = Users::parse(&format!("admin:{admin};bob:{bob}")).unwrap();
    status(&who(&site.ctx, &bobs), 401);
    status(&who(&site.ctx, &again.body_text()), 200);
}

#[test]
fn dicom_uploads_through_the_import_service() {
    use xnat_core::receive::samples::{dicom, zip_of};
    let site = Site::new();
    fs::create_dir_all(site.root().join("arch/P")).unwrap();
    let auth = basic("admin", "admin-pw");
    let a: Vec<Vec<u8>> = (1..=2).map(|n| dicom("1.5", "1.5.1", "3", n, "MR", "SUBJ1")).collect();
    let zip = zip_of(&[("a/1.dcm", &a[0]), ("a/2.dcm", &a[1]), ("readme.txt", b"hello")]);
    // xnatpy: the zip as the body, parameters in the query; the answer is the session's URI and a line end.
    let mut req =
        Request::new("POST", "/data/services/import?import-handler=DICOM-zip&project=P&subject=S1&session=S1_MR")
            .with_header("Authorization", &auth)
            .with_header("Content-Type", "application/zip");
    req.body = zip.clone();
    let r = site.send(req);
    status(&r, 200);
    let uri = r.body_text();
    assert!(uri.starts_with("/data/prearchive/projects/P/") && uri.ends_with("/S1_MR\r\n"), "{uri:?}");
    let listing = site.basic("GET", "/data/prearchive/projects/P?format=json");
    let rows = result(&listing);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["status"].as_str(), rows[0]["subject"].as_str()), (Some("READY"), Some("S1")));
    // curl -F: a multipart form whose text parts are parameters; format=json tells what was refused.
    let boundary = "XNATBOUNDARY";
    let mut body = Vec::new();
    for (name, value) in [("project", "P"), ("import-handler", "DICOM-zip")] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.zip\"\r\nContent-Type: application/zip\r\n\r\n").as_bytes(),
    );
    let b = dicom("1.6", "1.6.1", "1", 1, "CT", "SUBJ2");
    body.extend_from_slice(&zip_of(&[("b.dcm", &b), ("notes.txt", b"x")]));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = Request::new("POST", "/data/services/import?format=json")
        .with_header("Authorization", &auth)
        .with_header("Content-Type", &format!("multipart/form-data; boundary={boundary}"));
    req.body = body;
    let r = site.send(req);
    status(&r, 200);
    let j = json(&r);
    assert_eq!(j["files"], 1);
    assert_eq!(j["rejected"][0]["file"], "notes.txt");
    assert!(j["uris"][0].as_str().unwrap().ends_with("/SUBJ2_CT1"), "{j}");
    // Cut off: fewer bytes than announced imports nothing.
    let before = result(&site.basic("GET", "/data/prearchive/projects?format=json")).len();
    let mut req = Request::new("POST", "/data/services/import?project=P")
        .with_header("Authorization", &auth)
        .with_header("Content-Length", &(zip.len() + 10).to_string());
    req.body = zip.clone();
    let r = site.send(req);
    status(&r, 400);
    assert!(r.body_text().contains("cut off"), "{}", r.body_text());
    assert_eq!(result(&site.basic("GET", "/data/prearchive/projects?format=json")).len(), before);
    // A form body is not a file; a bad destination reads no body.
    let r = site
        .send(Request::new("POST", "/data/services/import").with_header("Authorization", &auth).with_form("project=P"));
    status(&r, 400);
    let mut req = Request::new("POST", "/data/services/import?dest=/elsewhere").with_header("Authorization", &auth);
    req.body = zip.clone();
    status(&site.send(req), 400);
    // Straight into the archive: the experiment's URI.
    let c = dicom("1.8", "1.8.1", "7", 1, "MR", "SUBJ3");
    let mut req = Request::new(
        "POST",
        "/data/services/import?dest=/archive/projects/P/subjects/S3/experiments/S3_MR&inbody=true",
    )
    .with_header("Authorization", &auth);
    req.body = zip_of(&[("c.dcm", &c)]);
    let r = site.send(req);
    status(&r, 200);
    assert_eq!(r.body_text(), "/data/archive/projects/P/subjects/S3/experiments/S3_MR\r\n");
    let scans = site.basic("GET", "/data/archive/projects/P/subjects/S3/experiments/S3_MR/scans?format=json");
    status(&scans, 200);
    assert_eq!(result(&scans)[0]["ID"], "7");
    // gradual-DICOM: one file at a time, RECEIVING until committed.
    let g: Vec<Vec<u8>> = (1..=2).map(|n| dicom("1.9", "1.9.1", "2", n, "MR", "SUBJ4")).collect();
    let mut uris = Vec::new();
    for f in &g {
        let mut req = Request::new("POST", "/data/services/import?import-handler=gradual-DICOM&project=P")
            .with_header("Authorization", &auth)
            .with_header("Content-Type", "application/dicom");
        req.body = f.clone();
        let r = site.send(req);
        status(&r, 200);
        uris.push(r.body_text().trim().to_string());
    }
    assert_eq!(uris[0], uris[1]);
    let row = |site: &Site| {
        result(&site.basic("GET", "/data/prearchive/projects/P?format=json"))
            .into_iter()
            .find(|r| uris[0].ends_with(r["url"].as_str().unwrap()))
            .unwrap()
    };
    assert_eq!(row(&site)["status"], "RECEIVING");
    status(&site.basic("POST", &format!("{}?action=commit", uris[0])), 200);
    assert_eq!(row(&site)["status"], "READY");
    status(&site.basic("POST", &format!("{}?action=commit", uris[0])), 409);
}
