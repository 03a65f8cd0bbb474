//! The serve tests' probe: a wasi:http component that says what the host gave it and misbehaves on request.
//!
//! * `GET /env`: the `XNAT_*` environment variables, one `NAME=value` a line;
//! * `GET /dirs`: for each of `/archive`, `/prearchive`, `/`, `/tmp`: `missing`, `read-only` or `writable`;
//! * `GET /spin`: loops forever (the host's time limit must stop it);
//! * `GET /alloc?mib=N`: allocates and touches N MiB (the host's memory limit must stop it);
//! * `GET /sleep?ms=N`: sleeps, then answers `slept`;
//! * `GET /touch`: writes `touched-by-probe` into `/archive` and `/prearchive`;
//! * `mark=NAME` on any request: first writes `/archive/arrived-NAME`, so that a test can wait for the
//!   request to have reached the component instead of sleeping;
//! * anything else: `METHOD path-with-query`, then the request's headers, one `name: value` a line.

use std::io::Write as _;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Probe;

impl Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        let number = |name: &str| {
            query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok()).unwrap_or(0)
        };
        if let Some(mark) = query.split('&').find_map(|p| p.strip_prefix("mark=")) {
            let _ = std::fs::write(format!("/archive/arrived-{mark}"), b"arrived");
        }
        let body = match route {
            "/env" => {
                std::env::vars().filter(|(k, _)| k.starts_with("XNAT_")).map(|(k, v)| format!("{k}={v}\n")).collect()
            }
            "/dirs" => {
                ["/archive", "/prearchive", "/", "/tmp"].iter().map(|d| format!("{d} {}\n", access(d))).collect()
            }
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/alloc" => {
                let mut v = vec![0u8; (number("mib") as usize) << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                format!("allocated {} bytes\n", std::hint::black_box(&v).len())
            }
            "/touch" => ["/archive", "/prearchive"]
                .iter()
                .map(|d| format!("{d} {:?}\n", std::fs::write(format!("{d}/touched-by-probe"), b"probe").is_ok()))
                .collect(),
            "/sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(number("ms")));
                "slept\n".to_owned()
            }
            _ => {
                let method = match request.method() {
                    Method::Get => "GET".to_owned(),
                    Method::Put => "PUT".to_owned(),
                    Method::Post => "POST".to_owned(),
                    Method::Delete => "DELETE".to_owned(),
                    other => format!("{other:?}"),
                };
                let mut text = format!("{method} {path}\n");
                for (name, value) in request.headers().entries() {
                    text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
                }
                text
            }
        };
        let response = OutgoingResponse::new(Fields::new());
        let outgoing = response.body().expect("the body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let mut stream = outgoing.write().expect("the stream is taken once");
        let _ = stream.write_all(body.as_bytes()).and_then(|()| std::io::Write::flush(&mut stream));
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

/// What this component may do with a directory.
fn access(dir: &str) -> &'static str {
    if std::fs::read_dir(dir).is_err() {
        return "missing";
    }
    let file = format!("{}/.probe", dir.trim_end_matches('/'));
    match std::fs::write(&file, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&file);
            "writable"
        }
        Err(_) => "read-only",
    }
}

wasi::http::proxy::export!(Probe);
