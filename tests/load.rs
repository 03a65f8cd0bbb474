//! Load: `xnat-archive serve` with two tenants and many good clients, first alone, then while an attacker
//! opens slow connections, guesses passwords and sends oversized bodies (issue 10: no tenant starved).
//!
//! The test command runs a short form (16 clients, 5 s a phase, 40 queued sessions a tenant);
//! `bench/load.sh` the full one (64 clients, 60 s a phase) through the same code, set by `XNAT_LOAD_CLIENTS`,
//! `XNAT_LOAD_SECS` and `XNAT_LOAD_SESSIONS`. The report (markdown) goes to stdout (`--nocapture`).
//! Loopback only, bounded in clients and time. The attacker connects from 127.0.0.2, so that the server's
//! per-address limits tell it apart from the good clients (127.0.0.1) as they would tell two machines.
//!
//! The good clients mix what a site's users do: prearchive and archive listings, file and document
//! downloads, validate, archive (each queued session once) and catalog refresh, half with HTTP Basic, half
//! with a session cookie. Asserted, in both forms: no good request fails (503s, the server's honest "busy",
//! are counted apart), both tenants are served during the attack, the guesses end in 429s, oversized bodies
//! are refused, every file of every queued session is exactly once in the prearchive or the archive and
//! unchanged, no lock or journal is left, and the server stops with exit 0. Latencies are measured and
//! reported, never asserted.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::http::{FORM, basic, login_cookie};
use common::server::{Server, TenantSpec};
use xnat_archive::generator::{self, Modality, SessionSpec};

const PASSWORD: &str = "load-pw-1";
const TENANTS: [&str; 2] = ["A", "B"];
/// Sessions only read (validated, downloaded), never archived: per tenant.
const KEPT: u64 = 3;
/// Where the attacker's connections come from.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Settings {
    clients: usize,
    phase: Duration,
    sessions: usize,
}

fn settings() -> Settings {
    let var = |name: &str, default: u64| -> u64 {
        std::env::var(name).ok().map_or(default, |v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v}")))
    };
    Settings {
        clients: var("XNAT_LOAD_CLIENTS", 16) as usize,
        phase: Duration::from_secs(var("XNAT_LOAD_SECS", 5)),
        sessions: var("XNAT_LOAD_SESSIONS", 40) as usize,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The sites.

/// A session waiting to be archived, and its files (path → MD5) as written.
#[derive(Debug, Clone)]
struct Queued {
    spec: SessionSpec,
    src: String,
    files: BTreeMap<String, String>,
}

/// One tenant's trees and what the clients may do with them.
struct Site {
    name: &'static str,
    pre: PathBuf,
    arc: PathBuf,
    kept: Vec<SessionSpec>,
    queue: Mutex<Vec<Queued>>,
    /// Archived sessions and the URI the archive answered.
    archived: Mutex<Vec<(Queued, String)>>,
}

fn src_of(spec: &SessionSpec) -> String {
    format!("/prearchive/projects/DEMO/{}/{}", spec.timestamp, spec.folder)
}

/// Writes the configuration (the generated sites, then `sessions` queued and [`KEPT`] kept sessions a
/// tenant) and returns it with the sites.
fn sites(dir: &Path, sessions: usize) -> (PathBuf, Vec<Arc<Site>>) {
    let tenant = "max_concurrent = 8\nmemory_mib = 256";
    let specs: Vec<TenantSpec> = TENANTS.iter().map(|t| TenantSpec::with(t, tenant)).collect();
    let config = common::server::configure(dir, &specs, PASSWORD);
    // The good clients all come from 127.0.0.1: room for them all (the default is 64 per address).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("max_connections_per_client = 256\n{text}")).unwrap();
    let sites = TENANTS
        .iter()
        .enumerate()
        .map(|(t, name)| {
            let (pre, arc) = (dir.join(name).join("prearchive"), dir.join(name).join("archive"));
            let seed = |n: u64| 100_000 * (t as u64 + 1) + n;
            let kept: Vec<SessionSpec> =
                (0..KEPT).map(|n| SessionSpec::new(Some("DEMO"), &format!("KEEP{n}"), Modality::Mr, seed(n))).collect();
            let queue: Vec<Queued> = (0..sessions as u64)
                .map(|n| {
                    let mut spec = SessionSpec::new(Some("DEMO"), &format!("LOAD{n:05}"), Modality::Mr, seed(1000 + n));
                    spec.scans.truncate(2);
                    let folder = generator::write_session(&pre, &spec).unwrap();
                    Queued { src: src_of(&spec), files: common::snapshot(&folder), spec }
                })
                .collect();
            for spec in &kept {
                generator::write_session(&pre, spec).unwrap();
            }
            Arc::new(Site { name, pre, arc, kept, queue: Mutex::new(queue), archived: Mutex::new(Vec::new()) })
        })
        .collect();
    (config, sites)
}

// ---------------------------------------------------------------------------------------------------------
// The good clients.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    ListPrearchive,
    ListExperiments,
    DownloadFile,
    DownloadDocument,
    Validate,
    Archive,
    Refresh,
}

/// One good request: when it started (since the run began), what it was, its status and how long it took.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    tenant: &'static str,
    op: Op,
    status: u16,
    took: Duration,
    /// Why an answer was wrong although its status was not (a body that does not match).
    wrong: Option<String>,
}

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a good client does next, by weight: mostly reading, some validating, archiving and refreshing.
fn pick(rng: &mut Rng) -> Op {
    match rng.below(100) {
        0..25 => Op::ListPrearchive,
        25..35 => Op::ListExperiments,
        35..50 => Op::DownloadFile,
        50..60 => Op::DownloadDocument,
        60..75 => Op::Validate,
        75..90 => Op::Archive,
        _ => Op::Refresh,
    }
}

struct Client {
    site: Arc<Site>,
    base: String,
    auth: (&'static str, String),
    agent: ureq::Agent,
    rng: Rng,
    /// The URIs of the experiments this client archived (it alone refreshes them: no lock contention).
    mine: Vec<String>,
    /// The start of the last answer's body, to show why a request failed.
    last_body: Option<String>,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}/{}{path}", self.base, self.site.name)
    }

    fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let response = self.agent.get(&self.url(path)).header(self.auth.0, &self.auth.1).call();
        self.keep(path, read(response))
    }

    fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> (u16, Vec<u8>) {
        let request = self.agent.post(&self.url(path)).header(self.auth.0, &self.auth.1);
        self.keep(path, read(request.send_form(pairs.iter().copied())))
    }

    fn keep(&mut self, path: &str, (status, body): (u16, Vec<u8>)) -> (u16, Vec<u8>) {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        self.last_body = Some(format!("{path}: {text}"));
        (status, body)
    }

    /// Runs one request of kind `op`: its status, and what is wrong with a 200 answer, if anything.
    fn run(&mut self, op: Op) -> (Op, u16, Option<String>) {
        let kept = self.site.kept[self.rng.below(KEPT) as usize].clone();
        match op {
            Op::ListPrearchive => {
                let (status, body) = self.get("/data/prearchive/projects?format=json");
                (op, status, expect_json_rows(status, &body))
            }
            Op::ListExperiments => {
                let (status, body) = self.get("/data/projects/DEMO/experiments?format=json");
                (op, status, expect_json_rows(status, &body))
            }
            Op::DownloadFile => {
                let scan = &kept.scans[self.rng.below(kept.scans.len() as u64) as usize];
                let n = 1 + self.rng.below(scan.files as u64) as usize;
                let path = format!(
                    "/data{}/scans/{}/resources/DICOM/files/{}",
                    src_of(&kept),
                    scan.id,
                    generator::file_name(&kept, scan, n)
                );
                let (status, body) = self.get(&path);
                let wrong = (status == 200 && body != generator::dicom_bytes(&kept, scan, n))
                    .then(|| format!("{path}: {} bytes, not the file", body.len()));
                (op, status, wrong)
            }
            Op::DownloadDocument => {
                let path = match self.mine.last() {
                    Some(uri) => format!("{uri}?format=xml"),
                    None => format!("/data{}?format=xml", src_of(&kept)),
                };
                let (status, body) = self.get(&path);
                let wrong = (status == 200 && !String::from_utf8_lossy(&body).contains("<xnat:"))
                    .then(|| format!("{path}: not a document"));
                (op, status, wrong)
            }
            Op::Validate => {
                let (status, body) =
                    self.post("/data/services/validate-archive?format=json", &[("src", &src_of(&kept))]);
                (op, status, expect_json_rows(status, &body))
            }
            Op::Archive => {
                let Some(queued) = self.site.queue.lock().unwrap().pop() else { return self.run(Op::ListPrearchive) };
                let (status, body) = self.post("/data/services/archive", &[("src", &queued.src)]);
                let uri = String::from_utf8_lossy(&body).trim().to_owned();
                if status == 200 && uri.starts_with("/data/archive/projects/DEMO/") {
                    self.mine.push(uri.clone());
                    self.site.archived.lock().unwrap().push((queued, uri));
                    return (op, status, None);
                }
                let wrong = (status == 200).then(|| format!("archive answered {uri:?}"));
                self.site.queue.lock().unwrap().push(queued);
                (op, status, wrong)
            }
            Op::Refresh => {
                let Some(uri) = self.mine.get(self.rng.below(self.mine.len().max(1) as u64) as usize).cloned() else {
                    return self.run(Op::ListExperiments);
                };
                let resource = uri.trim_start_matches("/data");
                let (status, body) = self.post("/data/services/refresh/catalog?format=json", &[("resource", resource)]);
                (op, status, expect_json_key(status, &body, "reports"))
            }
        }
    }
}

fn read(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Vec<u8>) {
    match response {
        Ok(mut r) => {
            let status = r.status().as_u16();
            (status, r.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap_or_default())
        }
        // No answer at all (a refused or reset connection): a failure of its own kind.
        Err(_) => (0, Vec::new()),
    }
}

fn expect_json_rows(status: u16, body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    (status == 200 && !json["ResultSet"]["Result"].is_array())
        .then(|| format!("not a result set: {}", String::from_utf8_lossy(&body[..body.len().min(200)])))
}

fn expect_json_key(status: u16, body: &[u8], key: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    (status == 200 && json.get(key).is_none())
        .then(|| format!("no {key}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])))
}

/// Runs a good client until `stop`, returning its samples.
fn good_client(mut client: Client, started: Instant, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let op = pick(&mut client.rng);
        let (at, begun) = (started.elapsed(), Instant::now());
        let (op, status, mut wrong) = client.run(op);
        if !matches!(status, 200 | 503) && wrong.is_none() {
            wrong = client.last_body.take();
        }
        samples.push(Sample { at, tenant: client.site.name, op, status, took: begun.elapsed(), wrong });
        if status == 503 {
            // Told to come back shortly: as a polite client does.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    samples
}

// ---------------------------------------------------------------------------------------------------------
// The attacker.

#[derive(Debug, Default)]
struct Attack {
    /// Slow connections opened, and those refused at once (503) by the connection caps.
    slow_opened: AtomicU64,
    slow_refused: AtomicU64,
    /// The answers to each kind of attack request, by status (0: closed without an answer).
    answers: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// How long the answered oversized bodies took in all (µs).
    oversized_micros: AtomicU64,
}

impl Attack {
    fn count(&self, kind: &'static str, status: u16) {
        *self.answers.lock().unwrap().entry((kind, status)).or_insert(0) += 1;
    }

    fn answered(&self, kind: &str, statuses: &[u16]) -> u64 {
        let answers = self.answers.lock().unwrap();
        answers.iter().filter(|((k, s), _)| *k == kind && statuses.contains(s)).map(|(_, n)| n).sum()
    }

    fn all(&self, kind: &str) -> u64 {
        self.answers.lock().unwrap().iter().filter(|((k, _), _)| *k == kind).map(|(_, n)| n).sum()
    }

    /// `kind`'s answers as `status × count`.
    fn describe(&self, kind: &str) -> String {
        let answers = self.answers.lock().unwrap();
        let parts: Vec<String> = answers
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, s), n)| if *s == 0 { format!("{n} closed unanswered") } else { format!("{n} × {s}") })
            .collect();
        parts.join(", ")
    }
}

/// What a guess may be answered: 401, 429 (throttled), 503 (the address is over its connection cap).
const GUESS_ANSWERS: [u16; 3] = [401, 429, 503];
/// What an oversized body may be answered: refused (413, 401, 429, 503) or the connection closed before
/// the answer could be read (the server answered early and closed with the body unread: a reset).
const OVERSIZED_ANSWERS: [u16; 5] = [413, 401, 429, 503, 0];

fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// The status of an answer on `stream`, once the server sends one (or closes: 0).
fn status_of(stream: &mut TcpStream) -> u16 {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&bytes).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Holds up to `target` connections that send their headers a byte every two seconds (slowloris).
fn slow_connections(to: SocketAddr, target: usize, attack: Arc<Attack>, stop: Arc<AtomicBool>) {
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while held.len() < target && !stop.load(Ordering::Relaxed) {
            let Ok(mut stream) = connect_from(ATTACKER, to) else { break };
            attack.slow_opened.fetch_add(1, Ordering::Relaxed);
            stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut first = [0u8; 12];
            match stream.read(&mut first) {
                Ok(n) if n > 0 => {
                    attack.slow_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => continue,
            }
            if stream.write_all(b"GET /A/data/prearchive/projects HTTP/1.1\r\nHost: x\r\nX-Slow: ").is_ok() {
                held.push(stream);
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        held.retain_mut(|s| s.write_all(b"a").is_ok());
    }
}

/// Guesses passwords as fast as the server answers: of the real user and of made-up ones, on both tenants.
fn guess_passwords(to: SocketAddr, attack: Arc<Attack>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let tenant = TENANTS[(n % 2) as usize];
        let user = if n.is_multiple_of(3) { format!("nobody{}", n % 7) } else { "admin".to_owned() };
        let Ok(mut stream) = connect_from(ATTACKER, to) else { continue };
        let auth = basic(&user, &format!("guess-{n}"));
        let head = format!(
            "GET /{tenant}/data/prearchive/projects HTTP/1.1\r\nHost: {to}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
        attack.count("guess", status_of(&mut stream));
    }
}

/// Announces 100 MB bodies the server must not read: on the login (no credentials), on the archive
/// without credentials and with wrong ones; sends the first 64 KiB and waits for the answer.
fn oversized_bodies(to: SocketAddr, attack: Arc<Attack>, stop: Arc<AtomicBool>) {
    let chunk = vec![b'x'; 64 << 10];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (target, auth) = match n % 3 {
            0 => ("/A/data/services/auth", String::new()),
            1 => ("/B/data/services/archive", String::new()),
            _ => ("/A/data/services/archive", format!("Authorization: {}\r\n", basic("admin", "wrong"))),
        };
        let Ok(mut stream) = connect_from(ATTACKER, to) else { continue };
        let begun = Instant::now();
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {to}\r\n{auth}{FORM}Content-Length: 100000000\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&chunk);
        let status = status_of(&mut stream);
        if status != 0 {
            attack.oversized_micros.fetch_add(begun.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        attack.count("oversized", status);
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------------------
// The run.

/// Latency percentile `p` (0–100) of `took`, sorted.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The server's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The cost of HTTP Basic: the first request (argon2 in the gate) and the next ones (remembered).
fn basic_cost(server: &Server) -> (Duration, Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = server.url("/A/data/version");
    let auth = basic("admin", PASSWORD);
    let timed = || {
        let begun = Instant::now();
        let response = agent.get(&url).header("Authorization", &auth).call().expect("an answer");
        assert_eq!(response.status().as_u16(), 200);
        begun.elapsed()
    };
    let first = timed();
    let mut next: Vec<Duration> = (0..20).map(|_| timed()).collect();
    next.sort();
    (first, percentile(&next, 50.0))
}

#[test]
fn two_tenants_under_load_and_attack_lose_nothing_and_stay_served() {
    let settings = settings();
    let dir = tempfile::tempdir().unwrap();
    let (config, sites) = sites(dir.path(), settings.sessions);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let address: SocketAddr = server.address().parse().unwrap();
    let (basic_first, basic_next) = basic_cost(&server);

    let clients: Vec<Client> = (0..settings.clients)
        .map(|i| {
            let site = sites[i % sites.len()].clone();
            let auth = if i % 4 < 2 {
                ("Authorization", basic("admin", PASSWORD))
            } else {
                let line = login_cookie(&server, site.name, "admin", PASSWORD);
                ("Cookie", line.trim_start_matches("Cookie: ").trim_end().to_owned())
            };
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .into();
            Client {
                site,
                base: server.base.clone(),
                auth,
                agent,
                rng: Rng(0x9E37_79B9_7F4A_7C15 ^ i as u64),
                mine: Vec::new(),
                last_body: None,
            }
        })
        .collect();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let good: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || good_client(c, started, stop))
        })
        .collect();
    std::thread::sleep(settings.phase);
    let attack_at = started.elapsed();
    let attack = Arc::new(Attack::default());
    let attack_stop = Arc::new(AtomicBool::new(false));
    let slow_target = 4 * settings.clients;
    let mut attackers = Vec::new();
    {
        let (a, s) = (attack.clone(), attack_stop.clone());
        attackers.push(std::thread::spawn(move || slow_connections(address, slow_target, a, s)));
    }
    for _ in 0..2 {
        let (a, s) = (attack.clone(), attack_stop.clone());
        attackers.push(std::thread::spawn(move || guess_passwords(address, a, s)));
    }
    {
        let (a, s) = (attack.clone(), attack_stop.clone());
        attackers.push(std::thread::spawn(move || oversized_bodies(address, a, s)));
    }
    std::thread::sleep(settings.phase);
    let ended = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<Sample> = good.into_iter().flat_map(|t| t.join().unwrap()).collect();
    attack_stop.store(true, Ordering::Relaxed);
    for t in attackers {
        t.join().unwrap();
    }
    let peak = peak_rss_mib(server.pid());

    // What the trees hold: every queued session's files once, where its answer says.
    let mut archived_files = 0usize;
    for site in &sites {
        for (queued, uri) in site.archived.lock().unwrap().iter() {
            let label = uri.rsplit('/').next().unwrap();
            let folder = site.arc.join("DEMO/arc001").join(label);
            assert_eq!(data(common::snapshot(&folder)), data(queued.files.clone()), "{} → {uri}", queued.src);
            assert!(!queued.spec.session_dir(&site.pre).exists(), "{} is in both trees", queued.src);
            archived_files += queued.files.keys().filter(|k| !k.ends_with('/')).count();
        }
        for queued in site.queue.lock().unwrap().iter() {
            let folder = queued.spec.session_dir(&site.pre);
            assert_eq!(common::snapshot(&folder), queued.files, "{} (not archived) changed", queued.src);
            assert!(!site.arc.join("DEMO/arc001").join(&queued.spec.folder).exists(), "{} is in both", queued.src);
        }
    }
    let leftovers: Vec<String> =
        common::snapshot(dir.path()).into_keys().filter(|p| p.ends_with(".lock") || p.ends_with(".journal")).collect();
    let log = server.log();
    let stopped = server.stop();

    let report =
        Report { settings, samples: &samples, attack_at, ended, attack: &attack, peak, basic_first, basic_next };
    println!("{}", report.markdown(&sites, archived_files));

    let failed: Vec<&Sample> = samples.iter().filter(|s| !matches!(s.status, 200 | 503) || s.wrong.is_some()).collect();
    assert!(failed.is_empty(), "good requests failed: {:#?}\n{}", &failed[..failed.len().min(20)], tail(&log));
    for site in &sites {
        let served = samples.iter().filter(|s| s.tenant == site.name && s.at >= attack_at && s.status == 200).count();
        assert!(served > 0, "tenant {} was not served during the attack", site.name);
    }
    assert!(sites.iter().all(|s| !s.archived.lock().unwrap().is_empty()), "every tenant archived something");
    assert!(attack.answered("guess", &[429]) > 0, "the guesses were throttled: {attack:?}");
    assert_eq!(attack.answered("guess", &GUESS_ANSWERS), attack.all("guess"), "{attack:?}");
    assert!(attack.answered("oversized", &[413, 401]) > 0, "{attack:?}");
    assert_eq!(attack.answered("oversized", &OVERSIZED_ANSWERS), attack.all("oversized"), "{attack:?}");
    assert_eq!(leftovers, Vec::<String>::new());
    assert!(stopped.success(), "{stopped:?}\n{}", tail(&log));
}

/// A session's files without the archive's own log folder, catalogs by name only (the archive and the
/// refreshes rewrite them: relative URIs, checksums, stats); every data file with its MD5.
fn data(files: BTreeMap<String, String>) -> BTreeMap<String, String> {
    files
        .into_iter()
        .filter(|(p, _)| !p.starts_with("logs"))
        .map(|(p, md5)| if p.ends_with("_catalog.xml") { (p, String::new()) } else { (p, md5) })
        .collect()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

struct Report<'a> {
    settings: Settings,
    samples: &'a [Sample],
    attack_at: Duration,
    ended: Duration,
    attack: &'a Attack,
    peak: f64,
    basic_first: Duration,
    basic_next: Duration,
}

impl Report<'_> {
    fn markdown(&self, sites: &[Arc<Site>], archived_files: usize) -> String {
        let s = self.settings;
        let mut out = format!(
            "Load: {} good clients on tenants {} (half HTTP Basic, half session cookie), {} s without and {} s \
             with the attack; {} queued sessions a tenant.\n\n",
            s.clients,
            TENANTS.join(", "),
            s.phase.as_secs(),
            s.phase.as_secs(),
            s.sessions
        );
        out += "| phase | good requests | req/s | p50 ms | p99 ms | max ms | failed | 503 |\n|---|---|---|---|---|---|---|---|\n";
        for (name, from, to) in
            [("without attack", Duration::ZERO, self.attack_at), ("with attack", self.attack_at, self.ended)]
        {
            let phase: Vec<&Sample> = self.samples.iter().filter(|x| x.at >= from && x.at < to).collect();
            let mut took: Vec<Duration> = phase.iter().filter(|x| x.status == 200).map(|x| x.took).collect();
            took.sort();
            let failed = phase.iter().filter(|x| !matches!(x.status, 200 | 503) || x.wrong.is_some()).count();
            let busy = phase.iter().filter(|x| x.status == 503).count();
            out += &format!(
                "| {name} | {} | {:.0} | {} | {} | {} | {failed} | {busy} |\n",
                took.len(),
                took.len() as f64 / (to - from).as_secs_f64(),
                ms(percentile(&took, 50.0)),
                ms(percentile(&took, 99.0)),
                ms(took.last().copied().unwrap_or_default()),
            );
        }
        out += "\n| request (with attack) | count | p50 ms | p99 ms |\n|---|---|---|---|\n";
        let mut by_op: BTreeMap<Op, Vec<Duration>> = BTreeMap::new();
        for x in self.samples.iter().filter(|x| x.at >= self.attack_at && x.status == 200) {
            by_op.entry(x.op).or_default().push(x.took);
        }
        for (op, mut took) in by_op {
            took.sort();
            out += &format!(
                "| {op:?} | {} | {} | {} |\n",
                took.len(),
                ms(percentile(&took, 50.0)),
                ms(percentile(&took, 99.0))
            );
        }
        let a = self.attack;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let answered = a.all("oversized") - a.answered("oversized", &[0]);
        out += &format!(
            "\nAttacker (from 127.0.0.2): {} slow connections opened ({} refused at once with 503); {} password \
             guesses: {}; {} oversized bodies (100 MB announced, 64 KiB sent): {}; answered in {} ms on average.\n",
            get(&a.slow_opened),
            get(&a.slow_refused),
            a.all("guess"),
            a.describe("guess"),
            a.all("oversized"),
            a.describe("oversized"),
            if answered == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}", get(&a.oversized_micros) as f64 / answered as f64 / 1000.0)
            },
        );
        let archived: usize = sites.iter().map(|s| s.archived.lock().unwrap().len()).sum();
        out += &format!(
            "Archived {archived} sessions ({archived_files} files), each file once and unchanged; no lock or journal \
             left. Server peak RSS (VmHWM) {:.0} MiB. HTTP Basic: first request {} ms (argon2), then {} ms (p50, \
             remembered).\n",
            self.peak,
            ms(self.basic_first),
            ms(self.basic_next)
        );
        out
    }
}
