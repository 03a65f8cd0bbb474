//! End to end: `xnat-archive serve` as a child process on an ephemeral port, with a real HTTP client.
//!
//! Two kinds of tests:
//! * `host_*`: the host's own job — routing by tenant, what each instance is granted (directories,
//!   variables), memory and time limits, request slots, the access log, graceful shutdown, the
//!   configuration's checks, `hash-password` and the demo mode. They run the probe component
//!   (`tests/serve_probe`, built here for `wasm32-wasip2`), which reports what it was given and misbehaves
//!   on request, so that they test the host and nothing else.
//! * `xnat_*`: XNAT's REST surface and its authentication through the real HTTP component (`guest/http`),
//!   on two tenants over generated sites: HTTP Basic, `PUT /data/services/auth` and the JSESSIONID cookie,
//!   forged tokens, one tenant's token on another, unknown tenants, path traversal, SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use xnat_archive::generator;

const BIN: &str = env!("CARGO_BIN_EXE_xnat-archive");
const PASSWORD: &str = "s3cret-pw";

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

/// An argon2 hash of `password`, made by the CLI as an administrator would.
fn hash(password: &str) -> String {
    static CACHE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    if let Some((_, h)) = CACHE.lock().unwrap().iter().find(|(p, _)| p == password) {
        return h.clone();
    }
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run xnat-archive hash-password");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    CACHE.lock().unwrap().push((password.to_owned(), h.clone()));
    h
}

/// A tenant of a test configuration: a generated site under the test's folder.
struct TenantSpec {
    name: &'static str,
    extra: &'static str,
}

impl TenantSpec {
    fn new(name: &'static str) -> TenantSpec {
        TenantSpec { name, extra: "" }
    }

    fn with(name: &'static str, extra: &'static str) -> TenantSpec {
        TenantSpec { name, extra }
    }
}

/// Writes a generated site per tenant (`<dir>/<name>/prearchive`, `.../archive`) and a configuration
/// naming them with user `admin` (password [`PASSWORD`]) in each; returns the configuration's path.
fn configure(dir: &Path, tenants: &[TenantSpec]) -> PathBuf {
    let mut text = String::from("listen = \"127.0.0.1:0\"\n");
    for t in tenants {
        let (pre, arc) = (dir.join(t.name).join("prearchive"), dir.join(t.name).join("archive"));
        std::fs::create_dir_all(&pre).unwrap();
        std::fs::create_dir_all(&arc).unwrap();
        generator::write_site(&pre, &arc).unwrap();
        text.push_str(&format!(
            "\n[[tenant]]\nname = \"{}\"\nprearchive = \"{}/prearchive\"\narchive = \"{}/archive\"\n{}\n\
             [[tenant.user]]\nname = \"admin\"\npassword_hash = \"{}\"\n",
            t.name,
            t.name,
            t.name,
            t.extra,
            hash(PASSWORD)
        ));
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `xnat-archive serve`. Killed when dropped, unless [`Server::stop`] ended it.
struct Server {
    child: Child,
    base: String,
    /// Everything it printed on stdout up to "listening", and after.
    stdout: Arc<Mutex<String>>,
    /// Everything it printed on stderr (the access log).
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server with these arguments (after `serve`) and waits until it listens.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xnat-archive serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        // The address is on the first line; the banner ends with "stop with Ctrl-C".
        std::thread::spawn(move || {
            let mut address = None;
            while let Some(Ok(line)) = lines.next() {
                if let Some(a) = line.strip_prefix("listening on ") {
                    address = Some(a.to_owned());
                }
                let done = line.starts_with("stop with Ctrl-C");
                sink.lock().unwrap().push_str(&(line + "\n"));
                if done && let Some(a) = address.take() {
                    let _ = tx.send(a);
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("serve did not start listening; stderr:\n{}", stderr.lock().unwrap());
            }
        };
        Server { child, base, stdout, stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end (at most 30 s).
    fn stop(mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop within 30 s of SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer: status, headers we look at, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    set_cookie: Vec<String>,
    retry_after: Option<String>,
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
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Answer { status, body, set_cookie, retry_after }
}

fn get(url: &str) -> Answer {
    answer(agent().get(url).call())
}

fn get_with(url: &str, header: &str, value: &str) -> Answer {
    answer(agent().get(url).header(header, value).call())
}

fn basic(user: &str, password: &str) -> String {
    use base64_lite::encode;
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

/// Base64 for Basic auth, without another dependency.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn matches_rfc_4648() {
        assert_eq!(encode(b"admin:admin"), "YWRtaW46YWRtaW4=");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"abc"), "YWJj");
    }
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

    let index = get(&server.url("/"));
    assert_eq!((index.status, index.body.as_str()), (200, "A\nB\n"));
    let post = answer(agent().post(&server.url("/")).send(""));
    assert_eq!(post.status, 405);

    let echo = get_with(&server.url("/A/data/prearchive/projects?format=json"), "Cookie", "JSESSIONID=abc");
    assert_eq!(echo.status, 200);
    assert!(echo.body.starts_with("GET /data/prearchive/projects?format=json\n"), "{}", echo.body);
    assert!(echo.body.contains("cookie: JSESSIONID=abc"), "headers reach the component: {}", echo.body);
    assert!(get(&server.url("/A")).body.starts_with("GET /\n"));
    assert!(get(&server.url("/B/")).body.starts_with("GET /\n"));

    for path in ["/C/data/prearchive", "/a/data/prearchive", "/%41/data/prearchive", "//A/data"] {
        let unknown = get(&server.url(path));
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

    let dirs = get(&server.url("/A/dirs")).body;
    assert_eq!(dirs, "/archive writable\n/prearchive writable\n/ missing\n/tmp missing\n");

    assert_eq!(get(&server.url("/A/touch")).body, "/archive true\n/prearchive true\n");
    for d in ["prearchive", "archive"] {
        assert!(dir.path().join("A").join(d).join("touched-by-probe").is_file(), "A's {d} got the file");
        assert!(!dir.path().join("B").join(d).join("touched-by-probe").exists(), "B's {d} did not");
    }

    let env = |tenant: &str| -> Vec<(String, String)> {
        get(&server.url(&format!("/{tenant}/env")))
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
    assert_eq!(a.len(), 5, "nothing else of the host's environment: {a:?}");

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

#[test]
fn host_limits_memory_and_time_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = "memory_mib = 48\nrequest_timeout_secs = 1.5\nmax_concurrent = 4";
    let server = Arc::new(host_server(dir.path(), &[TenantSpec::with("A", a), TenantSpec::new("B")]));

    let oom = get(&server.url("/A/alloc?mib=100"));
    assert_eq!(oom.status, 507, "{oom:?}");
    assert!(oom.body.contains("more memory than tenant 'A' allows (48 MiB)"), "{}", oom.body);
    let fits = get(&server.url("/A/alloc?mib=8"));
    assert_eq!((fits.status, fits.body.as_str()), (200, "allocated 8388608 bytes\n"), "a fresh instance after a trap");

    // Two spinning guests (as many as this machine may have cores) and one asleep in a host call: each is
    // stopped at its limit, and B answers promptly meanwhile.
    let started = Instant::now();
    let slow: Vec<_> = ["/A/spin", "/A/spin", "/A/sleep?ms=60000"]
        .into_iter()
        .map(|path| {
            let url = server.url(path);
            std::thread::spawn(move || (get(&url), Instant::now()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(get(&server.url("/B/env")).status, 200);
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
    let fits = get(&server.url("/A/sleep?ms=10"));
    assert_eq!((fits.status, fits.body.as_str()), (200, "slept\n"));
}

#[test]
fn host_refuses_with_503_when_a_tenant_is_saturated() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(host_server(
        dir.path(),
        &[TenantSpec::with("A", "max_concurrent = 1\nrequest_timeout_secs = 10"), TenantSpec::new("B")],
    ));
    let url = server.url("/A/sleep?ms=3000");
    let busy = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let refused = get(&server.url("/A/env"));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(refused.body.contains("limit of 1 requests at once"), "{}", refused.body);
    assert!(t.elapsed() >= Duration::from_millis(900), "it waited briefly for a slot first");
    assert_eq!(get(&server.url("/B/env")).status, 200, "other tenants are not affected");
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(get(&server.url("/A/env")).status, 200, "the slot is free again");
}

#[test]
fn host_finishes_requests_in_flight_on_sigterm_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = host_server(dir.path(), &[TenantSpec::new("A")]);
    let url = server.url("/A/sleep?ms=1500");
    let in_flight = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
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
    let stdout = server.stdout.lock().unwrap().clone();
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("user admin, password "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password line:\n{stdout}"))
        .to_owned();
    assert_eq!(password.len(), 20);
    assert!(stdout.contains(&format!("curl -u admin:{password} '{}/demo/data/prearchive/projects", server.base)));
    assert_eq!(get(&server.url("/")).body, "demo\n");
    let env = get(&server.url("/demo/env")).body;
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
#[ignore = "needs the HTTP component (guest/http) embedded in xnat-archive"]
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
    for cookie in session.set_cookie.iter().filter(|c| c.starts_with("JSESSIONID=")) {
        assert!(cookie.contains("Path=/A"), "the cookie is scoped to the tenant's prefix: {cookie}");
    }
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

#[test]
#[ignore = "needs the HTTP component (guest/http) embedded in xnat-archive"]
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
#[ignore = "needs the HTTP component (guest/http) embedded in xnat-archive"]
fn xnat_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = xnat_server(dir.path());
    let ok = get_with(&server.url("/A/data/prearchive/projects"), "Authorization", &basic("admin", PASSWORD));
    assert_eq!(ok.status, 200);
    let status = server.stop();
    assert!(status.success(), "{status:?}");
}
