//! End to end: `xnat-archive serve` as a child process on an ephemeral port, with a real HTTP client.
//!
//! Two kinds of tests:
//! * `host_*`: the host's own job — routing by tenant, what each instance is granted (directories,
//!   variables), memory and time limits, request slots, the access log, graceful shutdown, the
//!   configuration's checks, `hash-password` and the demo mode. They run the probe component
//!   (`tests/serve_probe`, built here for `wasm32-wasip2`), which reports what it was given and misbehaves
//!   on request, so that they test the host and nothing else.
//! * `xnat_*`: XNAT's REST surface and its authentication through the real HTTP component (`guest/http`,
//!   embedded in the binary), on two tenants over generated sites: HTTP Basic, `PUT /data/services/auth`
//!   and the JSESSIONID cookie, forged tokens, one tenant's token on another, unknown tenants, path
//!   traversal, SIGTERM; and the demo mode's own curl example.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

mod common;

use common::http::{FORM, basic, form, raw, read_raw};
use common::server::{BIN, Server, TenantSpec, hash};
use xnat_archive::generator::{self, Modality, SessionSpec};

const PASSWORD: &str = "s3cret-pw";

/// A configuration of generated sites, user `admin` with [`PASSWORD`] in each tenant.
fn configure(dir: &Path, tenants: &[TenantSpec]) -> PathBuf {
    common::server::configure(dir, tenants, PASSWORD)
}

// ---------------------------------------------------------------------------------------------------------
// The harness: sites, configurations, a running server, a client.

/// Builds the probe component once per test run and returns its path.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = workspace.join("target").join("serve-probe");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(workspace.join("tests/serve_probe/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        // As in host/build.rs: the outer build's flags and target must not reach the nested one.
        for var in
            ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "CARGO_BUILD_RUSTFLAGS"]
        {
            build.env_remove(var);
        }
        let out = build.output().expect("run cargo to build the probe component");
        assert!(out.status.success(), "building tests/serve_probe failed:\n{}", String::from_utf8_lossy(&out.stderr));
        target.join("wasm32-wasip2/release/xnat_serve_probe.wasm")
    })
}

/// An answer: status, headers we look at, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    set_cookie: Vec<String>,
    retry_after: Option<String>,
    www_authenticate: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("the request reached the server");
    let header = |name: &str| {
        response.headers().get_all(name).iter().map(|v| v.to_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
    };
    let set_cookie = header("set-cookie");
    let retry_after = header("retry-after").into_iter().next();
    let www_authenticate = header("www-authenticate").into_iter().next();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Answer { status, body, set_cookie, retry_after, www_authenticate }
}

fn get(url: &str) -> Answer {
    answer(agent().get(url).call())
}

fn get_with(url: &str, header: &str, value: &str) -> Answer {
    answer(agent().get(url).header(header, value).call())
}

/// Sends one request exactly as written (no client normalises its path) and returns the status.
fn raw_status(address: &str, request_target: &str, extra_headers: &str) -> u16 {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {request_target} HTTP/1.1\r\nHost: {address}\r\n{extra_headers}Connection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status_line = response.lines().next().unwrap_or_default().to_owned();
    status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {response:?}"))
}

/// A request to the probe component with the tenants' user's credentials: the server's gate admits only
/// authenticated callers beyond XNAT's open paths, whatever the component.
fn probe_get(url: &str) -> Answer {
    get_with(url, "Authorization", &basic("admin", PASSWORD))
}

fn probe_get_with(url: &str, header: &str, value: &str) -> Answer {
    answer(agent().get(url).header("Authorization", &basic("admin", PASSWORD)).header(header, value).call())
}

fn host_server(dir: &Path, tenants: &[TenantSpec]) -> Server {
    let config = configure(dir, tenants);
    Server::start(&["--config", config.to_str().unwrap(), "--component", probe().to_str().unwrap()])
}

// ---------------------------------------------------------------------------------------------------------
// The host, with the probe component.

#[test]
fn host_routes_by_tenant_and_strips_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = host_server(dir.path(), &[TenantSpec::new("A"), TenantSpec::new("B")]);

    let index = probe_get(&server.url("/"));
    assert_eq!((index.status, index.body.as_str()), (200, "A\nB\n"));
    let post = answer(agent().post(&server.url("/")).send(""));
    assert_eq!(post.status, 405);

    let echo = probe_get_with(&server.url("/A/data/prearchive/projects?format=json"), "Cookie", "JSESSIONID=abc");
    assert_eq!(echo.status, 200);
    assert!(echo.body.starts_with("GET /data/prearchive/projects?format=json\n"), "{}", echo.body);
    assert!(echo.body.contains("cookie: JSESSIONID=abc"), "headers reach the component: {}", echo.body);
    assert!(probe_get(&server.url("/A")).body.starts_with("GET /\n"));
    assert!(probe_get(&server.url("/B/")).body.starts_with("GET /\n"));

    for path in ["/C/data/prearchive", "/a/data/prearchive", "/%41/data/prearchive", "//A/data"] {
        let unknown = probe_get(&server.url(path));
        assert_eq!(unknown.status, 404, "{path}");
        assert!(unknown.body.contains("GET / lists the tenants"), "{}", unknown.body);
    }

    let log = server.log();
    assert!(log.contains("GET /A/data/prearchive/projects tenant=A status=200 "), "access log:\n{log}");
    assert!(log.contains("GET /C/data/prearchive tenant=- status=404 "), "access log:\n{log}");
    assert!(!log.contains("format=json"), "the query is not logged:\n{log}");
}

#[test]
fn host_grants_each_tenant_its_own_directories_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let b_extra = "secret = \"b-secret-0123456789abcdef\"\nsite_id = \"SITEB\"\ntoken_ttl_secs = 600";
    let server = host_server(dir.path(), &[TenantSpec::new("A"), TenantSpec::with("B", b_extra)]);

    let dirs = probe_get(&server.url("/A/dirs")).body;
    assert_eq!(dirs, "/archive writable\n/prearchive writable\n/ missing\n/tmp missing\n");

    assert_eq!(probe_get(&server.url("/A/touch")).body, "/archive true\n/prearchive true\n");
    for d in ["prearchive", "archive"] {
        assert!(dir.path().join("A").join(d).join("touched-by-probe").is_file(), "A's {d} got the file");
        assert!(!dir.path().join("B").join(d).join("touched-by-probe").exists(), "B's {d} did not");
    }

    let env = |tenant: &str| -> Vec<(String, String)> {
        probe_get(&server.url(&format!("/{tenant}/env")))
            .body
            .lines()
            .map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap())
            .collect()
    };
    let var = |vars: &[(String, String)], name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (a, b) = (env("A"), env("B"));
    assert_eq!(var(&a, "XNAT_TENANT").as_deref(), Some("A"));
    assert_eq!(var(&a, "XNAT_BASE_PATH").as_deref(), Some("/A"));
    assert_eq!(var(&a, "XNAT_SITE_ID").as_deref(), Some("XNAT"));
    assert_eq!(var(&a, "XNAT_USERS"), Some(format!("admin:{}", hash(PASSWORD))));
    assert_eq!(var(&a, "XNAT_TOKEN_TTL"), None, "the component's default");
    let a_secret = var(&a, "XNAT_SECRET").unwrap();
    assert!(a_secret.len() == 64 && a_secret.chars().all(|c| c.is_ascii_hexdigit()), "random: {a_secret}");
    assert_eq!(var(&b, "XNAT_TENANT").as_deref(), Some("B"));
    assert_eq!(var(&b, "XNAT_BASE_PATH").as_deref(), Some("/B"));
    assert_eq!(var(&b, "XNAT_SECRET").as_deref(), Some("b-secret-0123456789abcdef"));
    assert_eq!(var(&b, "XNAT_SITE_ID").as_deref(), Some("SITEB"));
    assert_eq!(var(&b, "XNAT_TOKEN_TTL").as_deref(), Some("600"));
    assert_eq!(var(&a, "XNAT_ADMINS").as_deref(), Some("admin"), "admin = true");
    assert_eq!(var(&a, "XNAT_VERIFIED_USER").as_deref(), Some("admin"), "the user the server's gate checked");
    assert_eq!(a.len(), 7, "nothing else of the host's environment: {a:?}");

    let log = server.log();
    assert!(log.contains("tenant A: no secret in the configuration"), "the random secret is announced:\n{log}");
    assert!(!log.contains("tenant B: no secret"), "{log}");
}

#[test]
fn host_refuses_traversal_before_routing() {
    let dir = tempfile::tempdir().unwrap();
    let server = host_server(dir.path(), &[TenantSpec::new("A"), TenantSpec::new("B")]);
    let address = server.address();
    for target in [
        "/A/../B/env",
        "/A/%2e%2e/B/env",
        "/A/%2E%2E/B/env",
        "/A/.%2e/B/env",
        "/A/..%2fB/env",
        "/A/..%5cB/env",
        "/A/./env",
        "/../B/env",
    ] {
        assert_eq!(raw_status(&address, target, ""), 400, "{target}");
    }
    let log = server.log();
    assert!(!log.contains("tenant=B"), "nothing reached B:\n{log}");
    assert!(!log.contains("tenant=A"), "nor A:\n{log}");
}

/// Waits until the probe has marked the arrival of request `mark` in tenant `tenant`'s archive (at most 60 s).
fn arrived(dir: &Path, tenant: &str, mark: &str) {
    let file = dir.join(tenant).join("archive").join(format!("arrived-{mark}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        assert!(Instant::now() < deadline, "request {mark} never reached the component");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn host_limits_memory_and_time_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = "memory_mib = 48\nrequest_timeout_secs = 1.5\nmax_concurrent = 4";
    let server = Arc::new(host_server(dir.path(), &[TenantSpec::with("A", a), TenantSpec::new("B")]));

    let oom = probe_get(&server.url("/A/alloc?mib=100"));
    assert_eq!(oom.status, 507, "{oom:?}");
    assert!(oom.body.contains("more memory than tenant 'A' allows (48 MiB)"), "{}", oom.body);
    let fits = probe_get(&server.url("/A/alloc?mib=8"));
    assert_eq!((fits.status, fits.body.as_str()), (200, "allocated 8388608 bytes\n"), "a fresh instance after a trap");

    // Two spinning guests (as many as this machine may have cores) and one asleep in a host call: each is
    // stopped at its limit, and B answers promptly meanwhile.
    let started = Instant::now();
    let slow: Vec<_> = ["/A/spin?mark=1", "/A/spin?mark=2", "/A/sleep?ms=60000&mark=3"]
        .into_iter()
        .map(|path| {
            let url = server.url(path);
            std::thread::spawn(move || (probe_get(&url), Instant::now()))
        })
        .collect();
    for mark in ["1", "2", "3"] {
        arrived(dir.path(), "A", mark);
    }
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(probe_get(&server.url("/B/env")).status, 200);
        worst = worst.max(t.elapsed());
    }
    assert!(worst < Duration::from_millis(500), "B waited {worst:?} behind A's spinning requests");
    for handle in slow {
        let (answer, ended) = handle.join().unwrap();
        assert_eq!(answer.status, 504, "{answer:?}");
        assert!(answer.body.contains("time limit of 1.5s"), "{}", answer.body);
        let took = ended - started;
        assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "stopped after {took:?}");
    }
    let fits = probe_get(&server.url("/A/sleep?ms=10"));
    assert_eq!((fits.status, fits.body.as_str()), (200, "slept\n"));
}

#[test]
fn host_refuses_with_503_when_a_tenant_is_saturated() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(host_server(
        dir.path(),
        &[TenantSpec::with("A", "max_concurrent = 1\nrequest_timeout_secs = 10"), TenantSpec::new("B")],
    ));
    let url = server.url("/A/sleep?ms=3000&mark=busy");
    let busy = std::thread::spawn(move || probe_get(&url));
    arrived(dir.path(), "A", "busy");
    let t = Instant::now();
    let refused = probe_get(&server.url("/A/env"));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(refused.body.contains("limit of 1 requests at once"), "{}", refused.body);
    assert!(t.elapsed() >= Duration::from_millis(900), "it waited briefly for a slot first");
    assert_eq!(probe_get(&server.url("/B/env")).status, 200, "other tenants are not affected");
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(probe_get(&server.url("/A/env")).status, 200, "the slot is free again");
}

#[test]
fn host_finishes_requests_in_flight_on_sigterm_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = host_server(dir.path(), &[TenantSpec::new("A")]);
    let url = server.url("/A/sleep?ms=1500&mark=flight");
    let in_flight = std::thread::spawn(move || probe_get(&url));
    arrived(dir.path(), "A", "flight");
    let address = server.address();
    let stderr = server.stderr.clone();
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}; log:\n{}", stderr.lock().unwrap());
    let answer = in_flight.join().unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "slept\n"), "the request in flight was finished");
    assert!(TcpStream::connect(&address).is_err(), "no longer listening");
    let log = stderr.lock().unwrap().clone();
    assert!(log.contains("shutting down") && log.contains("stopped"), "{log}");
}

#[test]
fn host_checks_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config", path.to_str().unwrap(), "--component", probe().to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{config}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    std::fs::create_dir_all(dir.path().join("p")).unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    let h = hash(PASSWORD);
    let tenant = |name: &str, pre: &str| {
        format!(
            "[[tenant]]\nname = \"{name}\"\nprearchive = \"{pre}\"\narchive = \"a\"\n\
             [[tenant.user]]\nname = \"admin\"\npassword_hash = \"{h}\"\n"
        )
    };
    let missing = run(&tenant("A", "nowhere"));
    assert!(missing.contains("tenant 'A'") && missing.contains("create it or fix the path"), "{missing}");
    let twice = run(&(tenant("A", "p") + &tenant("A", "p")));
    assert!(twice.contains("two tenants are named 'A'"), "{twice}");
    let bad_hash = run(&tenant("A", "p").replace(&h, "plaintext"));
    assert!(bad_hash.contains("not a PHC hash string") && bad_hash.contains("hash-password"), "{bad_hash}");
    let not_toml = run("[[tenant]\n");
    assert!(not_toml.contains("bad.toml"), "{not_toml}");
}

#[test]
fn host_hash_password_reads_stdin() {
    let h = hash("correct horse battery staple");
    assert!(h.starts_with("$argon2id$v=19$"), "{h}");
    assert_ne!(h, hash("another"), "salted");
    let out = Command::new(BIN).arg("hash-password").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no password on standard input"));
}

#[test]
fn host_demo_mode_writes_a_site_and_prints_a_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let server = Server::start(&[
        "--dir",
        site.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--component",
        probe().to_str().unwrap(),
    ]);
    assert!(site.join("prearchive/DEMO").is_dir(), "the demo site was written");
    let (stdout, password) = demo_password(&server);
    assert_eq!(password.len(), 20);
    assert!(stdout.contains(&format!("curl -u admin:{password} '{}/demo/data/prearchive/projects", server.base)));
    assert_eq!(get(&server.url("/")).body, "demo\n");
    let env = get_with(&server.url("/demo/env"), "Authorization", &basic("admin", &password)).body;
    assert!(env.contains("XNAT_USERS=admin:$argon2id$"), "{env}");
    assert!(!env.contains(&password), "only the hash reaches the component");
    assert!(!server.log().contains(&password), "the password is not logged");
}

// ---------------------------------------------------------------------------------------------------------
// XNAT's REST surface and authentication, through the real HTTP component.

/// The real server: tenants A and B over generated sites, both with user `admin` and the same password,
/// each with its own (random) token secret.
fn xnat_server(dir: &Path) -> Server {
    let config = configure(dir, &[TenantSpec::new("A"), TenantSpec::new("B")]);
    Server::start(&["--config", config.to_str().unwrap()])
}

fn login(server: &Server, tenant: &str, user: &str, password: &str) -> Answer {
    answer(
        agent()
            .put(&server.url(&format!("/{tenant}/data/services/auth")))
            .send_form([("username", user), ("password", password)]),
    )
}

#[test]
fn xnat_basic_auth_and_sessions_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let listing = "/data/prearchive/projects?format=json";

    assert_eq!(get(&server.url("/")).body, "A\nB\n");

    let ok = get_with(&server.url(&format!("/A{listing}")), "Authorization", &basic("admin", PASSWORD));
    assert_eq!(ok.status, 200, "{ok:?}");
    let json: serde_json::Value = serde_json::from_str(&ok.body).expect("a JSON listing");
    assert!(json["ResultSet"]["Result"].as_array().is_some_and(|rows| !rows.is_empty()), "{json}");

    let wrong = get_with(&server.url(&format!("/A{listing}")), "Authorization", &basic("admin", "wrong"));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let unknown_user = get_with(&server.url(&format!("/A{listing}")), "Authorization", &basic("nobody", PASSWORD));
    assert_eq!(unknown_user.status, 401);
    assert_eq!(get(&server.url(&format!("/A{listing}"))).status, 401, "no credentials");

    let session = login(&server, "A", "admin", PASSWORD);
    assert_eq!(session.status, 200, "{session:?}");
    let token = session.body.trim().to_owned();
    assert!(!token.is_empty(), "the body is the token (xnatpy uses it as JSESSIONID)");
    let cookies: Vec<&String> = session.set_cookie.iter().filter(|c| c.starts_with("JSESSIONID=")).collect();
    assert_eq!(cookies.len(), 1, "one session cookie: {:?}", session.set_cookie);
    assert!(cookies[0].contains("Path=/A"), "the cookie is scoped to the tenant's prefix: {}", cookies[0]);
    assert_eq!(login(&server, "A", "admin", "wrong").status, 401);

    let cookie = format!("JSESSIONID={token}");
    let with_cookie = get_with(&server.url(&format!("/A{listing}")), "Cookie", &cookie);
    assert_eq!(with_cookie.status, 200, "{with_cookie:?}");
    let who = get_with(&server.url("/A/data/auth"), "Cookie", &cookie);
    assert!(who.body.contains("User 'admin' is logged in"), "{who:?}");

    // A forged token: the same shape, another signature; and an altered one.
    let forged = match token.rsplit_once('.') {
        Some((payload, _)) => format!("{payload}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        None => format!("{token}x"),
    };
    let refused = get_with(&server.url(&format!("/A{listing}")), "Cookie", &format!("JSESSIONID={forged}"));
    assert_eq!(refused.status, 401, "a forged token: {refused:?}");
    assert_eq!(get_with(&server.url(&format!("/A{listing}")), "Cookie", "JSESSIONID=garbage").status, 401);

    // A's genuine token on B (same user, same password): refused.
    let elsewhere = get_with(&server.url(&format!("/B{listing}")), "Cookie", &cookie);
    assert_eq!(elsewhere.status, 401, "A's token on B: {elsewhere:?}");
    // B's own login works.
    let b = login(&server, "B", "admin", PASSWORD);
    assert_eq!(b.status, 200);
    let b_cookie = format!("JSESSIONID={}", b.body.trim());
    assert_eq!(get_with(&server.url(&format!("/B{listing}")), "Cookie", &b_cookie).status, 200);
    assert_eq!(get_with(&server.url(&format!("/A{listing}")), "Cookie", &b_cookie).status, 401, "and B's on A");

    let nowhere = get_with(&server.url(&format!("/C{listing}")), "Authorization", &basic("admin", PASSWORD));
    assert_eq!(nowhere.status, 404);

    assert!(server.stop().success());
}

/// Issue 10: a DELETE of a prearchive session sent with the session cookie and `Origin: http://evil.example`
/// answered 200 and deleted it; the server's own answers (an unknown tenant's 404) were sniffable.
#[test]
fn xnat_cross_site_changes_are_refused_and_no_answer_is_sniffed() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let pre = dir.path().join("A/prearchive");
    let ts = timestamp_of(&pre, "DEMO", "SUBJ1_MR1");
    let session = pre.join("DEMO").join(&ts).join("SUBJ1_MR1");
    let url = server.url(&format!("/A/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1"));
    let jsession = cookie(&login(&server, "A", "admin", PASSWORD));
    let delete = |origin: &str| {
        let response = agent().delete(&url).header("Cookie", &jsession).header("Origin", origin).call();
        let headers = response.as_ref().map(|r| r.headers().clone()).unwrap_or_default();
        (answer(response), headers)
    };
    let (refused, headers) = delete("http://evil.example");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(session.is_dir(), "a page elsewhere deleted the session");
    assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"));
    let own = server.url("");
    let (done, _) = delete(own.trim_end_matches('/'));
    assert_eq!(done.status, 200, "this server's own page may: {done:?}");
    assert!(!session.exists());

    let unknown = agent().get(&server.url("/nobody/data")).call().unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"));
    let csp = unknown.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned());
    assert!(csp.is_some_and(|p| p.contains("default-src 'none'")), "the server's own answers are not rendered");
    assert!(server.stop().success());
}

/// The status line of the answer on `stream`, read without sending anything more; `None` if none came
/// within the stream's read timeout.
fn status_without_body(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8_lossy(&head).split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// Issue 10: four connections that sent `POST /t1/data/services/auth` with `Content-Length: 1000000` and
/// then waited made an authenticated listing answer 503. A request without valid credentials now gets its
/// answer before it may take a slot, and its body is never read (a login's small body is read first, by
/// the server, within a deadline).
#[test]
fn xnat_requests_without_credentials_never_hold_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::with("A", "max_concurrent = 2\nrequest_timeout_secs = 4")]);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let address = server.address();
    let wrong = format!("Authorization: {}\r\n", basic("admin", "wrong"));
    let open = |method: &str, path: &str, headers: &str, body: &str| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{headers}\r\n{body}").unwrap();
        stream
    };
    let big = "Content-Length: 1000000\r\n";
    let mut waiting = vec![
        (413, open("POST", "/A/data/services/auth", &format!("{FORM}{big}"), "")),
        (413, open("PUT", "/A/data/services/auth", &format!("{FORM}{big}"), "username=adm")),
        (401, open("POST", "/A/data/services/archive", big, "")),
        (401, open("POST", "/A/data/services/archive", &format!("{wrong}{big}"), "")),
        (401, open("DELETE", "/A/data/prearchive/projects/DEMO", &format!("Cookie: JSESSIONID=forged\r\n{big}"), "")),
        // A small login body that trickles: read by the server before any slot, cut off at the deadline.
        (408, open("PUT", "/A/data/services/auth", &format!("{FORM}Content-Length: 40\r\n"), "username=")),
        (408, open("PUT", "/A/data/services/auth", &format!("{FORM}Content-Length: 40\r\n"), "username=")),
    ];
    // Meanwhile the tenant's two slots are free for its users.
    let listing = server.url("/A/data/prearchive/projects?format=json");
    for _ in 0..3 {
        let ok = get_with(&listing, "Authorization", &basic("admin", PASSWORD));
        assert_eq!(ok.status, 200, "{ok:?}");
    }
    for (want, stream) in &mut waiting {
        assert_eq!(status_without_body(stream), Some(*want), "a request without credentials");
    }
    let log = server.log();
    assert!(!log.contains("status=500"), "a client's fault is not the server's: {log}");
    assert!(server.stop().success());
}

/// Idle connections cannot use up the server: over the per-address cap a connection gets 503 at once and
/// is closed; closing one makes room again.
#[test]
fn xnat_connections_are_capped_per_client_with_a_clear_503() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::with("A", "request_timeout_secs = 20")]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("max_connections_per_client = 3\n{text}")).unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let address = server.address();
    // Three connections that send nothing.
    let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&address).unwrap()).collect();
    // Wait until the server holds all three: a fourth is refused.
    let mut fourth = TcpStream::connect(&address).unwrap();
    fourth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut refused = String::new();
    let _ = fourth.read_to_string(&mut refused);
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused:?}");
    assert!(refused.contains("retry-after: 1") && refused.contains("limit of 3 connections"), "{refused:?}");
    drop(idle.pop());
    let listing = server.url("/A/data/prearchive/projects?format=json");
    let served = (0..50).find_map(|_| {
        let answer = get_with(&listing, "Authorization", &basic("admin", PASSWORD));
        (answer.status == 200).then_some(answer).or_else(|| {
            std::thread::sleep(Duration::from_millis(100));
            None
        })
    });
    assert!(served.is_some(), "a freed connection makes room");
    assert!(server.log().contains("refused with 503"), "{}", server.log());
    drop(idle);
    assert!(server.stop().success());
}

/// Tokens can be revoked: a logout everywhere ends every session token of its user that was handed out,
/// through the server's gate as in the component; a new login works.
#[test]
fn xnat_logout_everywhere_ends_every_copied_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let who = |jsession: &str| get_with(&server.url("/A/data/auth"), "Cookie", jsession);
    let (first, copied) =
        (cookie(&login(&server, "A", "admin", PASSWORD)), cookie(&login(&server, "A", "admin", PASSWORD)));
    let on_b = cookie(&login(&server, "B", "admin", PASSWORD));
    assert_eq!(who(&copied).status, 200);
    let out = answer(agent().delete(&server.url("/A/data/JSESSION?everywhere=true")).header("Cookie", &first).call());
    assert_eq!(out.status, 200, "{out:?}");
    for jsession in [&first, &copied] {
        let refused = who(jsession);
        assert_eq!(refused.status, 401, "{refused:?}");
        assert!(refused.body.contains("logout everywhere"), "{refused:?}");
    }
    assert_eq!(get_with(&server.url("/B/data/auth"), "Cookie", &on_b).status, 200, "another tenant's session");
    assert_eq!(who(&cookie(&login(&server, "A", "admin", PASSWORD))).status, 200, "a new login");
    assert!(server.stop().success());
}

/// Failed logins slow down per user name and per address, with 429 and `Retry-After`, and tell nothing of
/// which users exist; a caller whose credentials were verified is remembered, not hashed again.
#[test]
fn xnat_password_guessing_is_throttled_without_telling_who_exists() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let listing = server.url("/A/data/prearchive/projects?format=json");
    let attempt = |user: &str, password: &str| get_with(&listing, "Authorization", &basic(user, password));
    let mut bodies = Vec::new();
    for user in ["admin", "nobody"] {
        let answers: Vec<Answer> = (0..7).map(|_| attempt(user, "guess")).collect();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429], "{user}: five failures, then 429");
        let throttled = &answers[6];
        let wait: u64 = throttled.retry_after.as_deref().and_then(|s| s.parse().ok()).expect("Retry-After");
        assert!((1..=300).contains(&wait), "{throttled:?}");
        assert!(throttled.body.contains("too many failed logins"), "{throttled:?}");
        bodies.push((answers[0].body.clone(), throttled.body.clone()));
    }
    assert_eq!(bodies[0], bodies[1], "an existing and an unknown user get the same answers");
    // The right password does not get through either while the name waits (the guesser would learn it).
    assert_eq!(attempt("admin", PASSWORD).status, 429);
    // The address: ten failures so far; ten more names, each failing once, and the address waits too.
    for n in 0..10 {
        assert_eq!(attempt(&format!("user{n}"), "guess").status, 401, "failure {} of the address", 11 + n);
    }
    assert_eq!(attempt("user10", "guess").status, 429, "the address has failed 20 times");
    assert_eq!(login(&server, "A", "admin", "guess").status, 429, "form logins from it wait too");
    assert!(server.stop().success());
}

/// A status from `server` for a Basic request sent from the loopback address `source` (the server tells
/// clients apart by address), with the scheme written as given (`Basic`, `basic`: the same credentials, but
/// another header for the gate's memory of verified callers).
fn basic_from(server: &Server, source: [u8; 4], scheme: &str, user: &str, password: &str) -> u16 {
    let credentials = basic(user, password).replacen("Basic", scheme, 1);
    let mut stream = connect_from(server, source);
    let head = format!(
        "GET /A/data/prearchive/projects HTTP/1.1\r\nHost: x\r\nAuthorization: {credentials}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    read_raw(&mut stream).status
}

/// A connection to `server` from the loopback address `source`.
fn connect_from(server: &Server, source: [u8; 4]) -> TcpStream {
    let to: std::net::SocketAddr = server.address().parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

/// Issue 10 asks for throttling per user; alone, that lets anyone lock a user out by guessing their name.
/// An address the user logged in from stays theirs: guesses from elsewhere do not hold them back there
/// (even once the server has forgotten their credentials), while a new address waits like the guesser.
#[test]
fn xnat_guessing_from_elsewhere_does_not_lock_a_user_out_where_they_logged_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let (home, attacker, elsewhere) = ([127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]);
    assert_eq!(basic_from(&server, home, "Basic", "admin", PASSWORD), 200);
    let guesses: Vec<u16> = (0..7).map(|n| basic_from(&server, attacker, "Basic", "admin", &format!("g{n}"))).collect();
    assert_eq!(guesses, [401, 401, 401, 401, 401, 429, 429], "the name is throttled");
    // `basic`: not the header the server remembers, so the password is checked again — at home, allowed.
    assert_eq!(basic_from(&server, home, "basic", "admin", PASSWORD), 200, "not locked out at home");
    assert_eq!(basic_from(&server, elsewhere, "BASIC", "admin", PASSWORD), 429, "a new address waits");
    // Credentials the server verified a moment ago are remembered, wherever they come from.
    assert_eq!(basic_from(&server, elsewhere, "Basic", "admin", PASSWORD), 200, "remembered");
    // The success at home did not reset the guesser's wait.
    assert_eq!(basic_from(&server, attacker, "Basic", "admin", "g7"), 429);
    assert!(server.stop().success());
}

/// Behind a reverse proxy every connection comes from the proxy. With `trusted_proxies`, the limits per
/// address apply to the client its `X-Forwarded-For` names (one guesser does not make everyone behind the
/// proxy wait) and the proxy is held to the total connection cap only; anyone else's `X-Forwarded-For` is
/// ignored (a guesser cannot escape the throttle by claiming another address).
#[test]
fn xnat_behind_a_trusted_proxy_limits_apply_to_the_forwarded_client() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("A")]);
    let text = std::fs::read_to_string(&config).unwrap();
    let top = "trusted_proxies = [\"127.0.0.1\"]\nmax_connections_per_client = 2\n";
    std::fs::write(&config, format!("{top}{text}")).unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let guess = |source: [u8; 4], forwarded: &str, n: usize| {
        let mut stream = connect_from(&server, source);
        let credentials = basic(&format!("user{n}"), "guess");
        let head = format!(
            "GET /A/data/prearchive/projects HTTP/1.1\r\nHost: x\r\nAuthorization: {credentials}\r\n\
             X-Forwarded-For: {forwarded}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        read_raw(&mut stream).status
    };
    let (proxy, other) = ([127, 0, 0, 1], [127, 0, 0, 2]);
    // 20 failures of one client behind the proxy (each under a new name): that client waits.
    for n in 0..20 {
        assert_eq!(guess(proxy, "198.51.100.1, 203.0.113.5", n), 401, "failure {n}");
    }
    assert_eq!(guess(proxy, "203.0.113.5", 20), 429, "the client behind the proxy waits");
    assert_eq!(guess(proxy, "203.0.113.6", 21), 401, "another client behind the same proxy does not");
    // Not a trusted proxy: the header is ignored, and every claimed address is the same guesser.
    for n in 0..20 {
        assert_eq!(guess(other, &format!("192.0.2.{n}"), 100 + n), 401, "failure {n}");
    }
    assert_eq!(guess(other, "192.0.2.99", 200), 429, "a claimed address does not escape the throttle");

    // Connections: the proxy may hold more than the per-client cap of 2; anyone else may not.
    let held: Vec<TcpStream> = (0..3).map(|_| connect_from(&server, proxy)).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(basic_from(&server, proxy, "Basic", "admin", PASSWORD), 200, "a 4th connection of the proxy");
    let others: Vec<TcpStream> = (0..2).map(|_| connect_from(&server, other)).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(basic_from(&server, other, "Basic", "admin", PASSWORD), 503, "a 3rd of anyone else");
    drop((held, others));
    assert!(server.stop().success());
}

#[test]
fn xnat_traversal_never_reaches_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let address = server.address();
    let auth = format!("Authorization: {}\r\n", basic("admin", PASSWORD));
    let session = login(&server, "A", "admin", PASSWORD);
    let cookie = format!("Cookie: JSESSIONID={}\r\n", session.body.trim());
    for target in [
        "/A/../B/data/prearchive/projects?format=json",
        "/A/%2e%2e/B/data/prearchive/projects?format=json",
        "/A/%2E%2e/B/data/prearchive/projects",
        "/A/..%2fB/data/prearchive/projects",
        "/A/data/../../B/data/prearchive/projects",
        "/B/data/../../A/data/prearchive/projects",
    ] {
        for headers in [auth.as_str(), cookie.as_str(), ""] {
            let status = raw_status(&address, target, headers);
            assert!(matches!(status, 400 | 401 | 404), "{target} with {headers:?}: {status}");
        }
    }
    // Inside one tenant, the component's own checks keep it in its grants.
    for target in ["/A/data/prearchive/projects/%2e%2e%2f%2e%2e", "/A/data/archive/projects/..%2F..%2Fetc"] {
        let status = raw_status(&address, target, &auth);
        assert!(matches!(status, 400 | 404), "{target}: {status}");
    }
    let log = server.log();
    assert!(!log.lines().any(|l| l.contains("tenant=B") && l.contains("status=200")), "B served nothing:\n{log}");
    assert!(server.stop().success());
}

#[test]
fn xnat_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let ok = get_with(&server.url("/A/data/prearchive/projects"), "Authorization", &basic("admin", PASSWORD));
    assert_eq!(ok.status, 200);
    let status = server.stop();
    assert!(status.success(), "{status:?}");
}

/// The demo mode's banner, and the password it printed for user admin.
fn demo_password(server: &Server) -> (String, String) {
    let stdout = server.stdout.lock().unwrap().clone();
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("user admin, password "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password line:\n{stdout}"))
        .to_owned();
    (stdout, password)
}

#[test]
fn xnat_demo_mode_answers_its_own_curl_example() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let server = Server::start(&["--dir", site.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let (_, password) = demo_password(&server);
    let listing = get_with(
        &server.url("/demo/data/prearchive/projects?format=json"),
        "Authorization",
        &basic("admin", &password),
    );
    assert_eq!(listing.status, 200, "{listing:?}");
    let json: serde_json::Value = serde_json::from_str(&listing.body).expect("a JSON listing");
    assert!(json["ResultSet"]["Result"].as_array().is_some_and(|rows| rows.len() >= 6), "{json}");
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------------------------
// Isolation under attack, through the real HTTP component: each attack gets the answer XNAT's users expect
// while good requests on every tenant keep succeeding, and nothing outside the attacked tenant changes.

/// Good requests, on a thread of their own until [`Traffic::finish`]: an authenticated prearchive listing of
/// each tenant in turn, again and again. Every one must be a 200 with a JSON listing.
struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Traffic {
    /// Logs in to each tenant once (`PUT /data/services/auth`) and starts listing with the session cookie.
    fn start(server: &Server, tenants: &[&str]) -> Traffic {
        let targets: Vec<(String, String)> = tenants
            .iter()
            .map(|t| {
                let session = login(server, t, "admin", PASSWORD);
                assert_eq!(session.status, 200, "login to {t}: {session:?}");
                (server.url(&format!("/{t}/data/prearchive/projects?format=json")), cookie(&session))
            })
            .collect();
        let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (stopped, counter) = (stop.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                for (url, cookie) in &targets {
                    let started = Instant::now();
                    let answer = match agent().get(url).header("Cookie", cookie).call() {
                        Ok(response) => answer(Ok(response)),
                        Err(e) => {
                            failures.push(format!("{url} after {:?}: {e}", started.elapsed()));
                            continue;
                        }
                    };
                    let rows = serde_json::from_str::<serde_json::Value>(&answer.body)
                        .ok()
                        .and_then(|json| json["ResultSet"]["Result"].as_array().map(Vec::len));
                    if answer.status != 200 || rows.is_none_or(|n| n == 0) {
                        failures.push(format!("{url} after {:?}: {answer:?}", started.elapsed()));
                    }
                }
                counter.fetch_add(1, Ordering::Relaxed);
                // Pacing, not synchronisation: leave the attacks some of this machine's two cores.
                std::thread::sleep(Duration::from_millis(20));
            }
            failures
        });
        Traffic { stop, rounds, thread }
    }

    /// Rounds completed so far (every tenant listed once per round).
    fn rounds(&self) -> usize {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `n` more rounds have completed (at most 60 s): the good requests went on meanwhile.
    fn wait_rounds(&self, n: usize) {
        let (target, deadline) = (self.rounds() + n, Instant::now() + Duration::from_secs(60));
        while self.rounds() < target {
            assert!(!self.thread.is_finished(), "the good requests stopped");
            assert!(Instant::now() < deadline, "the good requests made no progress for 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the loop and fails the test if any good request failed; returns how many rounds ran.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.rounds();
        let failures = self.thread.join().expect("the good-request thread panicked");
        assert!(
            failures.is_empty(),
            "{} good requests failed during the attacks:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(rounds > 0, "no good request completed");
        rounds
    }
}

/// `JSESSIONID=<token>` from a login's answer.
fn cookie(session: &Answer) -> String {
    format!("JSESSIONID={}", session.body.trim())
}

/// The timestamp folder of `project`'s session `folder` in a generated prearchive.
fn timestamp_of(prearchive: &Path, project: &str, folder: &str) -> String {
    std::fs::read_dir(prearchive.join(project))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|ts| prearchive.join(project).join(ts).join(folder).is_dir())
        .unwrap_or_else(|| panic!("no session {project}/*/{folder} in {}", prearchive.display()))
}

#[test]
fn xnat_auth_attacks_get_401_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // A and B share a secret, so that only the tenant bound into a token tells them apart; C's tokens live
    // three seconds.
    let shared = "secret = \"one-key-for-A-and-B-0123456789\"";
    let config = configure(
        dir.path(),
        &[TenantSpec::with("A", shared), TenantSpec::with("B", shared), TenantSpec::with("C", "token_ttl_secs = 3")],
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let traffic = Traffic::start(&server, &["A", "B"]);
    let listing = |tenant: &str| server.url(&format!("/{tenant}/data/prearchive/projects?format=json"));
    let refused = |answer: Answer, what: &str, says: &str| {
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert_eq!(answer.www_authenticate.as_deref(), Some("Basic realm=\"XNAT\""), "{what}: {answer:?}");
        assert!(answer.body.contains(says), "{what}: the body should say {says:?}: {answer:?}");
    };

    // Credentials that are missing, wrong, or not HTTP Basic.
    refused(get(&listing("A")), "no credentials", "The request requires user authentication");
    refused(
        get_with(&listing("A"), "Authorization", &basic("admin", "wrong")),
        "wrong password",
        "Login attempt failed",
    );
    refused(get_with(&listing("A"), "Authorization", &basic("root", PASSWORD)), "unknown user", "Login attempt failed");
    refused(get_with(&listing("A"), "Authorization", &basic("admin", "")), "empty password", "Login attempt failed");
    refused(get_with(&listing("A"), "Authorization", "Bearer abc"), "not Basic", "not HTTP Basic");
    refused(get_with(&listing("A"), "Authorization", "Basic !!!"), "not base64", "not HTTP Basic");
    refused(login(&server, "A", "admin", "wrong"), "login with a wrong password", "Login attempt failed");
    refused(
        get_with(&server.url("/A/data/JSESSION"), "Authorization", &basic("admin", "x")),
        "pyxnat",
        "requires user",
    );

    // Forged tokens: A's genuine token with its signature or its payload (`tenant|user|expiry`) altered.
    let token = login(&server, "A", "admin", PASSWORD).body.trim().to_owned();
    assert_eq!(get_with(&listing("A"), "Cookie", &format!("JSESSIONID={token}")).status, 200, "the genuine token");
    let (payload, signature) = token.split_once('.').expect("payload.signature");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let fields = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
    let [tenant, user, expiry]: [&str; 3] = fields.split('|').collect::<Vec<_>>().try_into().unwrap();
    assert_eq!((tenant, user), ("A", "admin"), "{fields}");
    let mut flipped = signature.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let re_signed = |fields: String| format!("{}.{signature}", b64.encode(fields));
    let later = expiry.parse::<u64>().unwrap() + 10 * 365 * 86400;
    for (what, forged, says) in [
        ("altered signature", format!("{payload}.{}", String::from_utf8(flipped).unwrap()), "bad signature"),
        ("no signature", format!("{payload}."), "bad signature"),
        ("expiry pushed back", re_signed(format!("A|admin|{later}")), "bad signature"),
        ("another user", re_signed(format!("A|root|{expiry}")), "bad signature"),
        ("another tenant", re_signed(format!("B|admin|{expiry}")), "bad signature"),
        ("garbage", "garbage".to_owned(), "malformed"),
        ("two dots", format!("{token}.{signature}"), "malformed"),
    ] {
        refused(get_with(&listing("A"), "Cookie", &format!("JSESSIONID={forged}")), what, says);
        if what == "another tenant" {
            refused(get_with(&listing("B"), "Cookie", &format!("JSESSIONID={forged}")), "relabelled for B", says);
        }
    }

    // One tenant's genuine token on another, although both sign with the same key.
    let b_token = login(&server, "B", "admin", PASSWORD).body.trim().to_owned();
    refused(get_with(&listing("B"), "Cookie", &format!("JSESSIONID={token}")), "A's token on B", "another site");
    refused(get_with(&listing("A"), "Cookie", &format!("JSESSIONID={b_token}")), "B's token on A", "another site");
    refused(get_with(&listing("C"), "Cookie", &format!("JSESSIONID={token}")), "A's token on C", "bad signature");

    // An expired token: C's live 3 s (token_ttl_secs). Good until then, refused from then on.
    let issued = Instant::now();
    let c_session = login(&server, "C", "admin", PASSWORD);
    assert_eq!(c_session.status, 200, "{c_session:?}");
    let c_cookie = cookie(&c_session);
    assert_eq!(get_with(&listing("C"), "Cookie", &c_cookie).status, 200, "a fresh token");
    let expired = loop {
        let answer = get_with(&listing("C"), "Cookie", &c_cookie);
        if answer.status != 200 {
            break answer;
        }
        assert!(issued.elapsed() < Duration::from_secs(10), "C's token still worked after 10 s (token_ttl_secs = 3)");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(issued.elapsed() >= Duration::from_secs(2), "refused after only {:?}", issued.elapsed());
    refused(expired, "an expired token", "expired");
    // An expired cookie beside good Basic credentials: the credentials count (pyxnat keeps stale cookies).
    let agent = agent();
    let both = agent.get(&listing("C")).header("Cookie", &c_cookie).header("Authorization", &basic("admin", PASSWORD));
    assert_eq!(answer(both.call()).status, 200);

    traffic.wait_rounds(2);
    traffic.finish();
    let log = server.log();
    assert!(!log.contains(PASSWORD) && !log.contains(&token), "credentials are not logged:\n{log}");
    assert!(server.stop().success());
}

#[test]
fn xnat_traversal_in_every_parameter_is_refused_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    std::fs::write(dir.path().join("SENTINEL.txt"), "beside the tenants' folders\n").unwrap();
    // Everything but A's prearchive must stay as it is: B, A's archive, the sentinel, the configuration.
    // A's prearchive may gain a status or a log when a refused archive marks its session; its sessions stay.
    // B's listings (the good requests) keep B's prearchive table, a cache that is not data.
    let outside = || {
        let mut all = common::snapshot(dir.path());
        all.retain(|path, _| !path.starts_with("A/prearchive/") && !path.starts_with("B/prearchive/.xnat-archive/"));
        all
    };
    let sessions = |root: &Path| {
        let mut found = common::snapshot(root);
        found.retain(|path, _| {
            !path.split('/').any(|s| s == "logs" || (s.starts_with('.') && s.len() > 1)) && !path.ends_with("logs/")
        });
        found
    };
    let (before, a_sessions) = (outside(), sessions(&dir.path().join("A/prearchive")));
    assert!(before.keys().any(|p| p.starts_with("B/prearchive/DEMO/")), "B has sessions to protect");

    let traffic = Traffic::start(&server, &["A", "B"]);
    let address = server.address();
    let token = login(&server, "A", "admin", PASSWORD);
    let auth = format!("Cookie: {}\r\n", cookie(&token));
    let ts = timestamp_of(&dir.path().join("A/prearchive"), "DEMO", "SUBJ1_MR1");
    let src = format!("/prearchive/projects/DEMO/{ts}/SUBJ1_MR1");
    let b_session = format!("B/prearchive/DEMO/{ts}/SUBJ1_MR1");

    // Values that try to leave the tenant's grants: plain, percent-encoded (once and twice, so that a second
    // decoding would reveal them), with backslashes, absolute.
    let escapes_pre = [
        format!("/prearchive/projects/../../{b_session}"),
        format!("/prearchive/projects/DEMO/{ts}/../../../../{b_session}"),
        format!("/prearchive/projects/%2e%2e/%2e%2e/{b_session}"),
        format!("/prearchive/projects/%252e%252e/%252e%252e/{b_session}"),
        format!("/prearchive/projects/DEMO/{ts}/..%2f..%2f..%2f..%2f{}", b_session.replace('/', "%2f")),
        format!("/prearchive/projects/DEMO/{ts}/..%5c..%5c..%5c..%5cB"),
        format!("/prearchive/projects/DEMO/{ts}/..\\..\\..\\..\\B"),
        format!("/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1/../../../../../{b_session}"),
        format!("../../{b_session}"),
        "/etc/passwd".to_owned(),
        format!("{}/{b_session}", dir.path().display()),
        format!("file://{}/{b_session}", dir.path().display()),
    ];
    let names = ["..", "../B", "..%2fB", "%2e%2e", "..\\B", "../../B/archive/DEMO", "DEMO/../../B", "/B", "a/b", "."];
    let escapes_arc = [
        "/archive/projects/../../B/archive/DEMO".to_owned(),
        "/archive/projects/%2e%2e/%2e%2e/B/archive/DEMO".to_owned(),
        "/archive/projects/%252e%252e/B".to_owned(),
        "/archive/projects/..%252fB/subjects/SUBJ1".to_owned(),
        "/archive/projects/DEMO/subjects/..%2f..%2f..%2fB".to_owned(),
        "/archive/projects/DEMO/subjects/..%5c..%5c..%5cB".to_owned(),
        "/archive/projects/DEMO%2f..%2f..%2fB/subjects/SUBJ1".to_owned(),
        "/projects/DEMO/subjects/SUBJ1/../../../../B/archive/DEMO/subjects/SUBJ1".to_owned(),
        "/archive/experiments/..%2f..%2fB".to_owned(),
        format!("{}/B/archive/DEMO", dir.path().display()),
        "../B/archive/DEMO".to_owned(),
    ];

    // (what, method, target, form body)
    let mut attacks: Vec<(String, &str, String, String)> = Vec::new();
    let post = |what: String, target: &str, pairs: &[(&str, &str)]| (what, "POST", target.to_owned(), form(pairs));
    for s in &escapes_pre {
        for service in ["validate-archive", "archive"] {
            attacks.push(post(format!("{service} src={s}"), &format!("/A/data/services/{service}"), &[("src", s)]));
        }
        for action in ["move", "delete", "rebuild"] {
            let target = format!("/A/data/services/prearchive/{action}");
            attacks.push(post(format!("{action} src={s}"), &target, &[("src", s), ("newProject", "TRIAL")]));
        }
    }
    for name in names {
        for service in ["validate-archive", "archive"] {
            let target = format!("/A/data/services/{service}");
            // (subject and session labels are not paths: see the end.)
            attacks.push(post(format!("{service} project={name}"), &target, &[("src", &src), ("project", name)]));
            let triple = [("PROJECT_ID", "DEMO"), ("PREARC_TIMESTAMP", ts.as_str()), ("PREARC_SESSION_FOLDER", name)];
            attacks.push(post(format!("{service} PREARC_SESSION_FOLDER={name}"), &target, &triple));
            let triple =
                [("PROJECT_ID", name), ("PREARC_TIMESTAMP", ts.as_str()), ("PREARC_SESSION_FOLDER", "SUBJ1_MR1")];
            attacks.push(post(format!("{service} PROJECT_ID={name}"), &target, &triple));
        }
        let target = "/A/data/services/prearchive/move";
        attacks.push(post(format!("move newProject={name}"), target, &[("src", &src), ("newProject", name)]));
        let target = format!("/A/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1?action=move");
        attacks.push(post(format!("action=move newProject={name}"), &target, &[("newProject", name)]));
    }
    for dest in &escapes_arc {
        for service in ["validate-archive", "archive"] {
            let target = format!("/A/data/services/{service}");
            attacks.push(post(format!("{service} dest={dest}"), &target, &[("src", &src), ("dest", dest)]));
        }
        let target = "/A/data/services/refresh/catalog";
        for resource in [dest.clone(), format!("{dest}/resources/DICOM"), format!("{dest}/files")] {
            attacks.push(post(format!("refresh resource={resource}"), target, &[("resource", &resource)]));
        }
    }
    // Path segments of the prearchive session URL and of resource URLs; the host refuses dot segments in
    // every spelling, the component what is left (a decoded separator, an absolute name).
    let session_paths = [
        format!("/A/data/prearchive/projects/DEMO/{ts}/%2e%2e"),
        "/A/data/prearchive/projects/DEMO/%2e%2e/%2e%2e".to_owned(),
        format!("/A/data/prearchive/projects/DEMO/{ts}/..%2f..%2f..%2f{}", b_session.replace('/', "%2f")),
        format!("/A/data/prearchive/projects/DEMO/{ts}/..%5c..%5cB"),
        format!("/A/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1%2f..%2f..%2f..%2f..%2f..%2fB"),
        format!("/A/data/prearchive/projects/DEMO/{ts}/%2fetc%2fpasswd"),
        format!(
            "/A/data/prearchive/projects/%2f{}/{ts}/SUBJ1_MR1",
            dir.path().display().to_string().replace('/', "%2f")
        ),
        format!("/A/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1%5c..%5c..%5c..%5cB"),
        format!("/A/data/prearchive/projects/DEMO/{ts}/a%2fb"),
    ];
    for path in &session_paths {
        for method in ["GET", "DELETE"] {
            attacks.push((format!("{method} {path}"), method, path.clone(), String::new()));
        }
        let target = format!("{path}?action=move&newProject=TRIAL");
        attacks.push((format!("POST {target}"), "POST", target, String::new()));
    }
    // A prearchive session's scans, resources and files (downloads): every segment after the session's.
    let session_url = format!("/A/data/prearchive/projects/DEMO/{ts}/SUBJ1_MR1");
    let sentinel = dir.path().join("SENTINEL.txt").display().to_string().replace('/', "%2f");
    for tail in [
        "scans/%2e%2e/resources".to_owned(),
        "scans/..%2f..%2f..%2f..%2fB/resources".to_owned(),
        "scans/1/resources/%2e%2e/files".to_owned(),
        "scans/1/resources/DICOM/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/SENTINEL.txt".to_owned(),
        "scans/1/resources/DICOM/files/..%2f..%2f..%2f..%2f..%2f..%2f..%2fSENTINEL.txt".to_owned(),
        "scans/1/resources/DICOM/files/..%5c..%5c..%5c..%5c..%5c..%5c..%5cSENTINEL.txt".to_owned(),
        format!("scans/1/resources/DICOM/files/{sentinel}"),
        format!("scans/1/resources/DICOM/files/{}", sentinel.replace("%2f", "/")),
        format!("scans/%2f{}/resources/DICOM/files", dir.path().display().to_string().replace('/', "%2f")),
        "scans/1/resources/%2fetc/files/passwd".to_owned(),
        "scans/1/resources/DICOM/files/%2fetc%2fpasswd".to_owned(),
    ] {
        let path = format!("{session_url}/{tail}");
        attacks.push((format!("GET {path}"), "GET", path, String::new()));
    }
    for label in ["%2e%2e", "..%2f..%2f..%2fB", "..%5c..%5cB", "%2fetc", "a%2fb", ".%2e", "%2e"] {
        for base in ["/A/data/projects/DEMO", "/A/data/projects/DEMO/subjects/SUBJ1", "/A/data/archive/projects/DEMO"] {
            let path = format!("{base}/resources/{label}");
            for method in ["PUT", "POST"] {
                attacks.push((format!("{method} {path}"), method, format!("{path}?format=DICOM"), String::new()));
            }
            attacks.push((format!("GET {path}"), "GET", path.clone(), String::new()));
        }
        for path in [
            format!("/A/data/projects/{label}/resources/X"),
            format!("/A/data/projects/DEMO/subjects/{label}/resources/X"),
        ] {
            attacks.push((format!("PUT {path}"), "PUT", path.clone(), String::new()));
        }
        let path = format!("/A/data/experiments/{label}");
        attacks.push((format!("GET {path}"), "GET", path, String::new()));
    }

    // The same endpoints answer genuine requests (so a 404 above is a refusal, not a missing route).
    let scans = dir.path().join(format!("A/prearchive/DEMO/{ts}/SUBJ1_MR1/SCANS"));
    let scan = std::fs::read_dir(&scans).unwrap().next().unwrap().unwrap().file_name().into_string().unwrap();
    let dicom = scans.join(&scan).join("DICOM");
    let file = std::fs::read_dir(&dicom)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|f| !f.ends_with(".xml"))
        .unwrap();
    let download = raw(&address, "GET", &format!("{session_url}/scans/{scan}/resources/DICOM/files/{file}"), &auth, "");
    assert_eq!(download.status, 200, "a genuine download: {:?}", download.head);
    let size = std::fs::metadata(dicom.join(&file)).unwrap().len().to_string();
    assert_eq!(download.header("content-length"), Some(size.as_str()), "{:?}", download.head);
    let validated =
        raw(&address, "POST", "/A/data/services/validate-archive", &format!("{auth}{FORM}"), &form(&[("src", &src)]));
    assert_eq!(validated.status, 200, "a genuine validation: {validated:?}");

    let mut wrong = Vec::new();
    for (what, method, target, body) in &attacks {
        let headers = if body.is_empty() { auth.clone() } else { format!("{auth}{FORM}") };
        let answer = raw(&address, method, target, &headers, body);
        if !matches!(answer.status, 400 | 404) {
            wrong.push(format!("{what}: {} {}", answer.status, answer.body.trim()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} attacks were not answered 400 or 404:\n{}",
        wrong.len(),
        attacks.len(),
        wrong.join("\n")
    );

    traffic.wait_rounds(2);
    traffic.finish();
    let after = outside();
    let changed: Vec<_> = before
        .iter()
        .filter(|(p, h)| after.get(*p) != Some(*h))
        .map(|(p, _)| format!("changed or gone: {p}"))
        .chain(after.keys().filter(|p| !before.contains_key(*p)).map(|p| format!("new: {p}")))
        .collect();
    assert!(changed.is_empty(), "files outside A's prearchive changed:\n{}", changed.join("\n"));
    assert_eq!(sessions(&dir.path().join("A/prearchive")), a_sessions, "A's sessions were moved or changed");

    // Subject and session labels are identifiers, not paths: XNAT's cleanValue turns every character but
    // letters, digits, '-' and '_' into '_' (as XNAT does), so a traversal there names a subject and an
    // experiment of A's own project.
    let escape = [("src", src.as_str()), ("subject", "../../B/archive/DEMO/subjects/SUBJ1"), ("session", "..\\..\\x")];
    let archived = raw(&address, "POST", "/A/data/services/archive", &format!("{auth}{FORM}"), &form(&escape));
    assert_eq!(archived.status, 200, "{archived:?}");
    let experiment = "/data/archive/projects/DEMO/subjects/______B_archive_DEMO_subjects_SUBJ1/experiments/______x";
    assert_eq!(archived.body.trim(), experiment, "{archived:?}");
    assert!(dir.path().join("A/archive/DEMO/subjects/______B_archive_DEMO_subjects_SUBJ1.xml").is_file());
    let mut after = outside();
    after.retain(|path, _| !path.starts_with("A/archive/"));
    let mut expected = before.clone();
    expected.retain(|path, _| !path.starts_with("A/archive/"));
    assert_eq!(after, expected, "the archive changed something outside A");
    let log = server.log();
    assert!(
        !log.lines().any(|l| l.contains("tenant=B") && !l.contains("status=200")),
        "B saw only good requests:\n{log}"
    );
    assert!(server.stop().success());
}

#[test]
fn xnat_memory_exhaustion_is_507_and_the_tenant_recovers_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::with("A", "memory_mib = 64"), TenantSpec::new("B")]);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let traffic = Traffic::start(&server, &["A", "B"]);
    let address = server.address();
    let auth = format!("Cookie: {}\r\n{FORM}", cookie(&login(&server, "A", "admin", PASSWORD)));
    let ts = timestamp_of(&dir.path().join("A/prearchive"), "DEMO", "SUBJ1_MR1");
    let src = format!("/prearchive/projects/DEMO/{ts}/SUBJ1_MR1");

    // The component reads at most 1 MiB of form body (413 beyond), and bounds the sessions one request
    // may name, so no request exhausts memory by its size alone. What does: data larger than the tenant
    // allows, here a resource whose catalog lists 400,000 files (32 MB of XML, parsed whole).
    let huge = "x".repeat(2 << 20);
    let too_big = raw(&address, "POST", "/A/data/services/validate-archive", &auth, &form(&[("src", &huge)]));
    assert_eq!(too_big.status, 413, "{too_big:?}");
    let resource = "/data/archive/projects/DEMO/subjects/SUBJ1/resources/BIG";
    assert_eq!(raw(&address, "PUT", &format!("/A{resource}"), &auth, "").status, 200);
    let catalog = dir.path().join("A/archive/DEMO/subjects/SUBJ1/BIG/BIG_catalog.xml");
    let mut xml = String::from(r#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="BIG"><cat:entries>"#);
    for i in 0..400_000 {
        xml.push_str(&format!(r#"<cat:entry URI="f{i:07}.dcm" ID="f{i:07}.dcm" digest="0123456789abcdef"/>"#));
    }
    xml.push_str("</cat:entries></cat:Catalog>");
    std::fs::write(&catalog, xml).expect("the resource's catalog, created by the PUT");
    let body = form(&[("resource", resource.trim_start_matches("/data"))]);
    for _ in 0..2 {
        let started = Instant::now();
        let oom = raw(&address, "POST", "/A/data/services/refresh/catalog", &auth, &body);
        assert_eq!(oom.status, 507, "{:?} after {:?}", oom.status, started.elapsed());
        assert!(oom.body.contains("more memory than tenant 'A' allows (64 MiB)"), "{}", oom.body);
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

        // The next request on A gets a fresh instance and succeeds.
        let next = raw(&address, "POST", "/A/data/services/validate-archive", &auth, &form(&[("src", &src)]));
        assert_eq!(next.status, 200, "{next:?}");
        assert!(next.body.contains("\"ResultSet\""), "{next:?}");
    }
    // A catalog file larger than the cap: the component's read of it fails with an allocation error that it
    // could answer as an I/O failure (a 500, or a report row); it is the tenant's cap, so it is a 507 too.
    let resource = "/data/archive/projects/DEMO/subjects/SUBJ1/resources/WIDE";
    assert_eq!(raw(&address, "PUT", &format!("/A{resource}"), &auth, "").status, 200);
    let catalog = dir.path().join("A/archive/DEMO/subjects/SUBJ1/WIDE/WIDE_catalog.xml");
    let padding = " ".repeat(80 << 20);
    let wide = format!(r#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="WIDE">{padding}</cat:Catalog>"#);
    std::fs::write(&catalog, wide).unwrap();
    let body = form(&[("resource", resource.trim_start_matches("/data"))]);
    let oom = raw(&address, "POST", "/A/data/services/refresh/catalog", &auth, &body);
    assert_eq!(oom.status, 507, "{oom:?}");
    assert!(oom.body.contains("more memory than tenant 'A' allows (64 MiB)"), "{}", oom.body);

    traffic.wait_rounds(2);
    traffic.finish();
    let log = server.log();
    assert!(log.contains("POST /A/data/services/refresh/catalog tenant=A status=507 "), "{log}");
    assert!(server.stop().success());
}

#[test]
fn xnat_slow_clients_and_endless_requests_are_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = "request_timeout_secs = 3\nmax_concurrent = 8";
    let config = configure(dir.path(), &[TenantSpec::with("A", a), TenantSpec::new("B")]);
    // Archives pause for a minute while they hold their session's lock (the test builds' switch): an
    // archive request keeps the component busy past the limit, however fast this machine is.
    let server = Server::start_with_env(&["--config", config.to_str().unwrap()], &[("XNAT_ARCHIVE_PAUSE_MS", "60000")]);
    let traffic = Traffic::start(&server, &["A", "B"]);
    let address = server.address();
    let session = format!("Cookie: {}\r\n", cookie(&login(&server, "A", "admin", PASSWORD)));
    let limit = Duration::from_secs(3);
    let open = |head: &str| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream
    };
    let post_head = format!(
        "POST /A/data/services/validate-archive HTTP/1.1\r\nHost: {address}\r\n{session}{FORM}Content-Length: 100000\r\n\r\n"
    );
    let rounds = traffic.rounds();
    let started = Instant::now();

    // 1. Headers, then a body that never comes.
    let mut withheld = open(&post_head);
    // 2. Headers, then a body dribbled a byte at a time that would take minutes.
    let mut dribbled = open(&post_head);
    let mut writer = dribbled.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        for _ in 0..200 {
            if writer.write_all(b"x").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    // 3. Headers that never end.
    let mut endless_head = open(&format!("GET /A/data/prearchive/projects HTTP/1.1\r\nHost: {address}\r\n{session}"));
    // 4. A request that keeps the component busy past the limit: an archive that pauses.
    let ts = timestamp_of(&dir.path().join("A/prearchive"), "DEMO", "SUBJ2_MR1");
    let archive_form = form(&[("src", &format!("/data/prearchive/projects/DEMO/{ts}/SUBJ2_MR1"))]);
    let busy = {
        let (address, session) = (address.clone(), session.clone());
        std::thread::spawn(move || {
            let answer = raw(&address, "POST", "/A/data/services/archive", &format!("{session}{FORM}"), &archive_form);
            (answer, Instant::now())
        })
    };

    let withheld_answer = read_raw(&mut withheld);
    let withheld_after = started.elapsed();
    let dribbled_answer = read_raw(&mut dribbled);
    let dribbled_after = started.elapsed();
    let mut rest = Vec::new();
    let head_result = endless_head.read_to_end(&mut rest);
    let head_after = started.elapsed();
    let (busy_answer, busy_end) = busy.join().unwrap();
    let busy_after = busy_end - started;
    let during = traffic.rounds() - rounds;

    for (what, answer, after) in
        [("withheld body", &withheld_answer, withheld_after), ("dribbled body", &dribbled_answer, dribbled_after)]
    {
        assert_eq!(answer.status, 408, "{what}: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{what}: {answer:?}");
        assert!(answer.body.contains("request body did not arrive within tenant 'A''s time limit of 3s"), "{answer:?}");
        assert!(
            after >= limit - Duration::from_millis(100) && after < limit + Duration::from_secs(5),
            "{what}: {after:?}"
        );
    }
    assert!(dribbler.join().unwrap(), "the server closed the dribbling connection");
    assert!(
        head_result.is_ok() && rest.is_empty(),
        "headers that never end: closed without an answer: {head_result:?} {rest:?}"
    );
    assert!(head_after < limit + Duration::from_secs(5), "headers that never end: closed after {head_after:?}");
    assert_eq!(busy_answer.status, 504, "{busy_answer:?}");
    assert!(busy_answer.body.contains("time limit of 3s"), "{busy_answer:?}");
    assert!(
        busy_after >= limit - Duration::from_millis(100) && busy_after < limit + Duration::from_secs(5),
        "{busy_after:?}"
    );
    assert!(during >= 3, "only {during} rounds of good requests while the attacks ran");

    // A is still itself.
    let listing = raw(&address, "GET", "/A/data/prearchive/projects?format=json", &session, "");
    assert_eq!(listing.status, 200, "{listing:?}");
    // The stopped archive left its session's lock, naming an instance that is gone: the server recovers
    // the tenant by itself once the request is stopped (although the lock's lease still runs), and the
    // session is READY again; the administrator's recovery then finds nothing left to do.
    let status = |address: &str| {
        let listing = raw(address, "GET", "/A/data/prearchive/projects/DEMO?format=json", &session, "");
        let rows = listing.json().expect("a JSON listing")["ResultSet"]["Result"].clone();
        let row = rows.as_array().unwrap().iter().find(|r| r["folderName"] == "SUBJ2_MR1").cloned();
        row.expect("the session is listed")["status"].as_str().unwrap().to_owned()
    };
    let waited = Instant::now();
    while status(&address) != "READY" {
        assert!(waited.elapsed() < Duration::from_secs(20), "not recovered: {}\n{}", status(&address), server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered = raw(&address, "POST", "/A/data/services/archive/recover?format=json", &session, "");
    assert_eq!(recovered.status, 200, "{recovered:?}");
    let rows = recovered.json().expect("a JSON table")["ResultSet"]["Result"].clone();
    assert_eq!(rows.as_array().map(Vec::len), Some(0), "nothing left to recover: {recovered:?}");
    traffic.wait_rounds(2);
    traffic.finish();
    let log = server.log();
    assert!(
        log.contains("tenant A: the client did not send its whole request body within the time limit of 3s"),
        "{log}"
    );
    assert_eq!(log.matches("POST /A/data/services/validate-archive tenant=A status=408 ").count(), 2, "{log}");
    assert!(log.contains("without a whole request's headers"), "{log}");
    assert!(log.contains("POST /A/data/services/archive tenant=A status=504 "), "{log}");
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------------------------
// Stops: graceful ones let archives finish; what a hard one cut off is put right before anything is served.

/// The session `DEMO/*/folder` of tenant A's generated site: its `src`, its folder, and its files.
struct Cut {
    src: String,
    folder: PathBuf,
    files: std::collections::BTreeMap<String, String>,
}

fn cut(dir: &Path, folder: &str) -> Cut {
    let pre = dir.join("A/prearchive");
    let ts = timestamp_of(&pre, "DEMO", folder);
    let session = pre.join("DEMO").join(&ts).join(folder);
    Cut { src: format!("/prearchive/projects/DEMO/{ts}/{folder}"), files: common::snapshot(&session), folder: session }
}

/// Sends an archive request of `src` on a connection of its own and returns the connection unread.
fn send_archive(address: &str, src: &str) -> TcpStream {
    let body = form(&[("src", src)]);
    let mut stream = TcpStream::connect(address).unwrap();
    let auth = format!("Authorization: {}\r\n", basic("admin", PASSWORD));
    write!(
        stream,
        "POST /A/data/services/archive HTTP/1.1\r\nHost: {address}\r\n{auth}{FORM}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

/// Waits (at most 60 s) until `path` exists.
fn wait_for(path: &Path, server: &Server) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "{} never appeared:\n{}", path.display(), server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files whose name says a lock or a journal, anywhere under `root`.
fn leftovers(root: &Path) -> Vec<String> {
    common::snapshot(root).into_keys().filter(|p| p.ends_with(".lock") || p.ends_with(".journal")).collect()
}

/// The session's files without XNAT's archive logs (the archive writes its own log beside them).
fn data(files: std::collections::BTreeMap<String, String>) -> std::collections::BTreeMap<String, String> {
    files.into_iter().filter(|(p, _)| !p.starts_with("logs")).collect()
}

/// Issue 10: an archive in flight at SIGTERM whose client has already left was cut off with its session
/// locked. Now the server stops accepting, lets it finish, and exits 0 with the session archived whole.
#[test]
fn xnat_sigterm_lets_an_archive_whose_client_left_finish() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("A")]);
    let server = Server::start_with_env(&["--config", config.to_str().unwrap()], &[("XNAT_ARCHIVE_PAUSE_MS", "3000")]);
    let session = cut(dir.path(), "SUBJ1_MR1");
    let lock = session.folder.with_file_name(".SUBJ1_MR1.lock");
    let connection = send_archive(&server.address(), &session.src);
    wait_for(&lock, &server);
    // The archive runs (it holds the lock); its client leaves, then the server is told to stop.
    drop(connection);
    std::thread::sleep(Duration::from_millis(200));
    let stderr = server.stderr.clone();
    let status = server.stop();
    let log = stderr.lock().unwrap().clone();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    let archived = dir.path().join("A/archive/DEMO/arc001/SUBJ1_MR1");
    assert!(archived.is_dir() && !session.folder.exists(), "archived whole before the exit:\n{log}");
    assert_eq!(data(common::snapshot(&archived)), data(session.files), "every file once, unchanged");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// Issue 10: what a hard stop cut off — a server killed while an archive held its session's lock, a
/// command line killed with the session's folder already moved into the archive — is put right when the
/// server starts again, before the first request is answered, and the sessions archive as usual.
#[test]
fn xnat_archives_cut_off_by_a_hard_stop_are_recovered_before_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("A")]);
    let config = config.to_str().unwrap();
    let (pre, arc) = (dir.path().join("A/prearchive"), dir.path().join("A/archive"));
    let (locked, moved) = (cut(dir.path(), "SUBJ1_MR1"), cut(dir.path(), "SUBJ2_MR1"));

    let server = Server::start_with_env(&["--config", config], &[("XNAT_ARCHIVE_PAUSE_MS", "60000")]);
    let _connection = send_archive(&server.address(), &locked.src);
    wait_for(&locked.folder.with_file_name(".SUBJ1_MR1.lock"), &server);
    drop(server); // SIGKILL

    let args = ["archive", "--prearchive", pre.to_str().unwrap(), "--archive", arc.to_str().unwrap()];
    let out = common::cli_env(&[&args[..], &["--src", &moved.src]].concat(), &[("XNAT_ARCHIVE_FAULT_POINT", "3")]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!moved.folder.exists() && arc.join("DEMO/arc001/SUBJ2_MR1").is_dir(), "cut off mid-way");
    let left = leftovers(dir.path());
    assert!(left.iter().any(|p| p.ends_with(".SUBJ2_MR1.journal")) && left.len() >= 3, "locks and a journal: {left:?}");

    let server = Server::start(&["--config", config]);
    let listing = get_with(
        &server.url("/A/data/prearchive/projects/DEMO?format=json"),
        "Authorization",
        &basic("admin", PASSWORD),
    );
    assert_eq!(listing.status, 200, "{listing:?}");
    let rows: serde_json::Value = serde_json::from_str(&listing.body).unwrap();
    let status = |folder: &str| {
        let rows = rows["ResultSet"]["Result"].as_array().unwrap();
        rows.iter().find(|r| r["folderName"] == folder).map(|r| r["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("SUBJ1_MR1").as_deref(), Some("READY"), "{}", listing.body);
    assert_eq!(status("SUBJ2_MR1").as_deref(), Some("READY"), "rolled back: {}", listing.body);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    let log = server.log();
    assert!(log.contains(&format!("tenant A: recovered {}: rolled-back", moved.src)), "{log}");
    for session in [locked, moved] {
        assert_eq!(data(common::snapshot(&session.folder)), data(session.files.clone()), "{}", session.src);
        let auth = format!("Authorization: {}\r\n{FORM}", basic("admin", PASSWORD));
        let archived =
            raw(&server.address(), "POST", "/A/data/services/archive", &auth, &form(&[("src", &session.src)]));
        assert_eq!(archived.status, 200, "{archived:?}");
        let name = session.folder.file_name().unwrap();
        assert_eq!(data(common::snapshot(&arc.join("DEMO/arc001").join(name))), data(session.files));
    }
    assert!(server.stop().success());
}

/// Issue 10: an archive the server had to stop midway (here the component died with the session's folder
/// already in the archive) is put right by the server itself, without an administrator and without a
/// restart: the session is READY again and archives whole.
#[test]
fn xnat_an_archive_stopped_midway_is_recovered_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("A")]);
    let server = Server::start_with_env(&["--config", config.to_str().unwrap()], &[("XNAT_ARCHIVE_FAULT_POINT", "3")]);
    let session = cut(dir.path(), "SUBJ2_MR1");
    let answer = read_raw(&mut send_archive(&server.address(), &session.src));
    assert_eq!(answer.status, 500, "{answer:?}");
    let started = Instant::now();
    while !session.folder.exists() || !leftovers(dir.path()).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "not recovered:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(data(common::snapshot(&session.folder)), data(session.files), "rolled back whole");
    let log = server.log();
    assert!(log.contains(&format!("tenant A: recovered {}: rolled-back", session.src)), "{log}");
    assert!(server.stop().success());
}

/// The rows of `GET /A/data/prearchive/projects{query}` (JSON), as the server answers them.
fn prearchive_rows(server: &Server, query: &str) -> Vec<serde_json::Value> {
    let url = server.url(&format!("/A/data/prearchive/projects{query}"));
    let answer = get_with(&url, "Authorization", &basic("admin", PASSWORD));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["ResultSet"]["Result"].as_array().unwrap().clone()
}

#[test]
fn xnat_prearchive_listing_is_kept_while_the_watched_prearchive_is_unchanged_and_follows_every_change() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), &[TenantSpec::new("A")]);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let pre = dir.path().join("A/prearchive");
    let table = pre.join(".xnat-archive/prearchive-table");
    let list = |query: &str| prearchive_rows(&server, &format!("?format=json{query}"));
    // What a listing that keeps nothing answers: the table removed first, so it reads everything.
    let fresh = |query: &str| {
        std::fs::remove_file(&table).unwrap();
        list(query)
    };
    let kept = || std::fs::metadata(&table).map(|m| m.ino()).unwrap();
    let magic_line = b"xnat-archive prearchive table, postcard 2\n".len();
    let named = |rows: &[serde_json::Value], folder: &str| rows.iter().find(|r| r["folderName"] == folder).cloned();

    let first = list("");
    assert_eq!(first.len(), 7, "{first:?}");
    let again = list("");
    assert_eq!(again, first);
    let before = kept();
    assert_eq!(std::fs::read(&table).unwrap()[magic_line], 1, "a whole listing kept with the mark");
    assert_eq!(list(""), first);
    assert_eq!(kept(), before, "answered from the table: nothing learnt, nothing written");
    // One project's listing is the kept one's rows of that project.
    let demo: Vec<_> = first.iter().filter(|r| r["project"] == "DEMO").cloned().collect();
    assert!(!demo.is_empty());
    assert_eq!(list("&project=DEMO"), demo);

    let doc = std::fs::read_dir(pre.join("DEMO"))
        .unwrap()
        .map(|e| e.unwrap().path().join("SUBJ1_MR1.xml"))
        .find(|p| p.is_file())
        .unwrap();
    let session = doc.with_extension("");
    // A document rewritten in place, same size, its modification time set back to what it was.
    let text = std::fs::read_to_string(&doc).unwrap();
    let modified = std::fs::metadata(&doc).unwrap().modified().unwrap();
    std::fs::write(&doc, text.replacen("label=\"SUBJ1_MR1\"", "label=\"SUBJ1_MRX\"", 1)).unwrap();
    std::fs::File::options().write(true).open(&doc).unwrap().set_modified(modified).unwrap();
    let now = list("");
    assert_eq!(named(&now, "SUBJ1_MR1").unwrap()["name"], "SUBJ1_MRX");
    assert_eq!(now, fresh(""));
    // A lock beside a session, then gone again.
    let lock = session.with_file_name(".SUBJ1_MR1.lock");
    std::fs::write(&lock, "MOVING\nowner someone-else\nsince 0\nexpires 0\n").unwrap();
    assert_eq!(named(&list(""), "SUBJ1_MR1").unwrap()["status"], "_MOVING");
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(named(&list(""), "SUBJ1_MR1").unwrap()["status"], "READY");
    // A session without a document shows its folder's time, which an entry arriving in it moves.
    let receiving = std::fs::read_dir(pre.join("DEMO"))
        .unwrap()
        .map(|e| e.unwrap().path().join("SUBJ4_MR1"))
        .find(|p| p.is_dir())
        .unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::open(&receiving).unwrap().set_modified(old).unwrap();
    let receiving_at = |rows: &[serde_json::Value]| named(rows, "SUBJ4_MR1").unwrap()["lastmod"].clone();
    let was = receiving_at(&list(""));
    assert!(was.as_str().unwrap().starts_with("2020-09-13"), "{was}");
    std::fs::create_dir(receiving.join("SCANS2")).unwrap();
    assert_ne!(receiving_at(&list("")), was, "the folder's time moved with its new entry");
    assert_eq!(list(""), fresh(""));
    // A new session in a new timestamp folder, then one in the folder watched since it was made.
    let spec = SessionSpec::new(Some("DEMO"), "NEW1", Modality::Mr, 777);
    generator::write_session(&pre, &spec).unwrap();
    assert!(named(&list(""), "NEW1").is_some());
    let ts = std::fs::read_dir(pre.join("DEMO"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("NEW1").is_dir())
        .unwrap();
    std::fs::create_dir(ts.join("NEW2")).unwrap();
    let now = list("");
    assert_eq!(named(&now, "NEW2").unwrap()["status"], "RECEIVING");
    assert_eq!(now, fresh(""));
    // A session removed, and a project.
    std::fs::remove_dir_all(&session).unwrap();
    std::fs::remove_file(&doc).unwrap();
    assert!(named(&list(""), "SUBJ1_MR1").is_none());
    std::fs::remove_dir_all(pre.join("TRIAL")).unwrap();
    let now = list("");
    assert!(now.iter().all(|r| r["project"] != "TRIAL"), "{now:?}");
    assert_eq!(now, fresh(""));
    // Our own folder's changes are no change of the prearchive: written by the last listing, kept.
    let before = kept();
    assert_eq!(list(""), now);
    assert_eq!(kept(), before);
}
