//! Listing throughput (issue 11, P4): `GET /data/prearchive/projects?format=json` through `xnat-archive
//! serve` with 16 connections (and alone, with one), against the trivial endpoint `GET /data/version`
//! measured in the same run, for a prearchive of 10 and of 1,000 sessions; with the server's CPU time per
//! request, and (beside the 10) the listing of one session alone, which splits a listing's CPU into what any
//! listing costs and what each session adds. The server answers a listing from what its prearchive table kept
//! while its watch of the prearchive sees no change; a last measurement touches a document before every
//! listing, so that each reads the prearchive again.
//!
//! The test command runs a short form (1 s per measurement); `bench/listing.sh` the full one (10 s), set by
//! `XNAT_LISTING_SECS`. The report (markdown) goes to stdout (`--nocapture`). One answer of each request is
//! checked first (200, and for the listing a JSON result set with every session); then every answer counted
//! must be that one byte for byte (a comparison costs the client nothing next to parsing the JSON again,
//! which would take the cores the server is measured on).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::http::basic;
use common::server::{Server, TenantSpec};
use xnat_archive::generator::{self, Modality, SessionSpec};

const PASSWORD: &str = "listing-pw-1";
const CONNECTIONS: usize = 16;
/// The generated site's one Unassigned session, listed alone.
const ONE_SESSION: &str = "/A/data/prearchive/projects/Unassigned?format=json";
/// Rounds of the trivial endpoint and the listing of 10 sessions, measured in turn.
const ROUNDS: usize = 3;

/// A tenant over a generated site with `sessions` prearchive sessions in all, served with 16 slots.
fn server(dir: &Path, sessions: usize) -> Server {
    let spec = TenantSpec::with("A", "max_concurrent = 16");
    let config = common::server::configure(dir, &[spec], PASSWORD);
    let pre = dir.join("A/prearchive");
    let already = 7; // what the generated site holds
    for n in 0..sessions.saturating_sub(already) as u64 {
        let mut spec = SessionSpec::new(Some("DEMO"), &format!("L{n:05}"), Modality::Mr, 50_000 + n);
        spec.scans.truncate(2);
        generator::write_session(&pre, &spec).unwrap();
    }
    Server::start(&["--config", config.to_str().unwrap()])
}

/// The server's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// What one measurement saw.
struct Measured {
    requests: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_request: Duration,
}

/// A client of its own (one keep-alive connection), answering with any status.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// The status and body of a GET of `url` as the administrator.
fn get(agent: &ureq::Agent, url: &str) -> (u16, Vec<u8>) {
    let mut response = agent.get(url).header("Authorization", &basic("admin", PASSWORD)).call().expect("an answer");
    let body = response.body_mut().with_config().limit(256 << 20).read_to_vec().unwrap();
    (response.status().as_u16(), body)
}

/// The answer to `path`, once `check` has found it right.
fn checked_answer(server: &Server, path: &str, check: fn(&[u8]) -> bool) -> Arc<Vec<u8>> {
    let url = server.url(path);
    let (status, body) = get(&agent(), &url);
    assert!(status == 200 && check(&body), "{url}: {status} {}", String::from_utf8_lossy(&body));
    Arc::new(body)
}

/// `connections` clients request `path` for `secs`, each answer required to be `expected`.
fn measure(server: &Server, path: &str, secs: Duration, connections: usize, expected: &Arc<Vec<u8>>) -> Measured {
    measure_changing(server, path, secs, connections, expected, None)
}

/// [`measure`], and before each request the times of the file `touched` set again to what they are: a change
/// of the prearchive (an event for the server's watch, a new status-change time for its table) that leaves
/// every answer as it was.
fn measure_changing(
    server: &Server,
    path: &str,
    secs: Duration,
    connections: usize,
    expected: &Arc<Vec<u8>>,
    touched: Option<&Path>,
) -> Measured {
    let url = server.url(path);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu(server.pid());
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (url, stop, expected) = (url.clone(), stop.clone(), expected.clone());
            let touched =
                touched.map(|file| (file.to_path_buf(), std::fs::metadata(file).unwrap().modified().unwrap()));
            std::thread::spawn(move || {
                let agent = agent();
                let mut took = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some((file, modified)) = &touched {
                        std::fs::File::options().write(true).open(file).unwrap().set_modified(*modified).unwrap();
                    }
                    let begun = Instant::now();
                    let (status, body) = get(&agent, &url);
                    assert!(status == 200 && body == *expected, "{url}: {status} {}", String::from_utf8_lossy(&body));
                    took.push(begun.elapsed());
                }
                took
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    let mut took: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let cpu_used = cpu(server.pid()).saturating_sub(cpu_before);
    took.sort();
    let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize];
    Measured {
        requests: took.len(),
        per_second: took.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        cpu_per_request: cpu_used / took.len().max(1) as u32,
    }
}

fn rows(body: &[u8]) -> usize {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    json["ResultSet"]["Result"].as_array().map_or(0, Vec::len)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[test]
fn prearchive_listing_throughput_against_the_trivial_endpoint() {
    let secs = Duration::from_secs(std::env::var("XNAT_LISTING_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1));
    let listing = "/A/data/prearchive/projects?format=json";
    let mut report = format!(
        "Listing throughput: {CONNECTIONS} connections, {} s per measurement.\n\n\
         | prearchive | request | requests | req/s | p50 ms | p99 ms | server CPU ms / request |\n\
         |---|---|---|---|---|---|---|\n",
        secs.as_secs()
    );
    let mut ratios = Vec::new();
    let mut costs = String::new();
    for sessions in [10, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path(), sessions);
        let check: fn(&[u8]) -> bool = if sessions == 10 { |b| rows(b) == 10 } else { |b| rows(b) == 1000 };
        // The ratio is P4's measure: for 10 sessions the trivial endpoint and the listing are measured in turn,
        // ROUNDS times, and each pair gives one ratio (the machine's speed drifts between sittings, and within
        // one by more than the difference between two builds).
        let rounds = if sessions == 10 { ROUNDS } else { 1 };
        let version_answer = checked_answer(&server, "/A/data/version", |b| !b.is_empty());
        let listing_answer = checked_answer(&server, listing, check);
        let mut measured = Vec::new();
        for round in 1..=rounds {
            let version = measure(&server, "/A/data/version", secs, CONNECTIONS, &version_answer);
            let listed = measure(&server, listing, secs, CONNECTIONS, &listing_answer);
            if sessions == 10 {
                ratios.push(listed.per_second / version.per_second);
            }
            let name = |what: &str| if rounds > 1 { format!("{what} (round {round})") } else { what.to_string() };
            measured.push((name("GET /data/version"), version));
            measured.push((name("prearchive listing"), listed));
        }
        measured.push((
            "prearchive listing, 1 connection".to_string(),
            measure(&server, listing, secs, 1, &listing_answer),
        ));
        // What a prearchive that changes between every two listings costs (a site receiving sessions): each
        // listing reads the prearchive again instead of answering what the table kept.
        let document = std::fs::read_dir(dir.path().join("A/prearchive/DEMO"))
            .unwrap()
            .flat_map(|ts| std::fs::read_dir(ts.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "xml"))
            .unwrap();
        measured.push((
            "prearchive listing, 1 connection, a document touched before each".to_string(),
            measure_changing(&server, listing, secs, 1, &listing_answer, Some(&document)),
        ));
        if sessions == 10 {
            // What a listing costs beyond any request, and what each session adds: the one Unassigned session
            // listed alone (the root's listing, the table, one timestamp folder and one row) against the ten.
            let one = checked_answer(&server, ONE_SESSION, |b| rows(b) == 1);
            let alone = measure(&server, ONE_SESSION, secs, CONNECTIONS, &one);
            let cpu = |what: &str| {
                let mut all: Vec<Duration> = measured
                    .iter()
                    .filter(|(name, _)| name.starts_with(what))
                    .map(|(_, m)| m.cpu_per_request)
                    .collect();
                all.sort();
                all[all.len() / 2]
            };
            let (trivial, ten) = (cpu("GET /data/version"), cpu("prearchive listing (round"));
            let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
            costs = format!(
                "\nServer CPU per request (medians of the rounds): the trivial endpoint {}; a listing of 1 session {}, \
                 of 10 sessions {}: a listing's own work {}, and {} for each further session\n",
                us(trivial),
                us(alone.cpu_per_request),
                us(ten),
                us(alone.cpu_per_request.saturating_sub(trivial)),
                us(ten.saturating_sub(alone.cpu_per_request) / 9)
            );
            measured.push(("prearchive listing of 1 session (Unassigned)".to_string(), alone));
        }
        for (what, m) in &measured {
            report += &format!(
                "| {sessions} sessions | {what} | {} | {:.0} | {} | {} | {} |\n",
                m.requests,
                m.per_second,
                ms(m.p50),
                ms(m.p99),
                ms(m.cpu_per_request)
            );
        }
        assert!(server.stop().success());
    }
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    ratios.sort_by(f64::total_cmp);
    report += &format!(
        "\nListing of 10 sessions / trivial endpoint, requests/s: {:.2} (the median of the rounds: {})\n",
        ratios[ratios.len() / 2],
        shown.join(", ")
    );
    report += &costs;
    println!("{report}");
}
