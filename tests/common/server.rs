//! A running `xnat-archive serve` for end-to-end suites: tenants over generated demo sites, a user with a
//! known password, started on a free port and killed when dropped.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xnat_archive::generator;

pub const BIN: &str = env!("CARGO_BIN_EXE_xnat-archive");

/// An argon2 hash of `password`, made by the CLI as an administrator would (cached per run).
pub fn hash(password: &str) -> String {
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

/// A tenant of a test configuration: a generated site under `<dir>/<name>/{prearchive,archive}`, extra
/// TOML lines for its table, and user `admin` (an administrator) with `password`.
pub struct TenantSpec {
    pub name: &'static str,
    pub extra: &'static str,
}

impl TenantSpec {
    pub fn new(name: &'static str) -> TenantSpec {
        TenantSpec { name, extra: "" }
    }

    pub fn with(name: &'static str, extra: &'static str) -> TenantSpec {
        TenantSpec { name, extra }
    }
}

/// Writes a generated site per tenant and a configuration naming them; returns the configuration's path.
pub fn configure(dir: &Path, tenants: &[TenantSpec], password: &str) -> PathBuf {
    let mut text = String::from("listen = \"127.0.0.1:0\"\n");
    for t in tenants {
        let (pre, arc) = (dir.join(t.name).join("prearchive"), dir.join(t.name).join("archive"));
        std::fs::create_dir_all(&pre).unwrap();
        std::fs::create_dir_all(&arc).unwrap();
        generator::write_site(&pre, &arc).unwrap();
        text.push_str(&format!(
            "\n[[tenant]]\nname = \"{0}\"\nprearchive = \"{0}/prearchive\"\narchive = \"{0}/archive\"\n{1}\n\
             [[tenant.user]]\nname = \"admin\"\npassword_hash = \"{2}\"\nadmin = true\n",
            t.name,
            t.extra,
            hash(password)
        ));
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `xnat-archive serve`. Killed when dropped, unless [`Server::stop`] ended it.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Everything it printed on stdout (the banner).
    pub stdout: Arc<Mutex<String>>,
    /// Everything it printed on stderr (the access log).
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `xnat-archive serve ARGS` and waits (at most 120 s) until it listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// As [`Server::start`], with extra environment variables (the test builds' archive switches).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `127.0.0.1:PORT`
    pub fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The access log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end (at most 30 s).
    pub fn stop(mut self) -> ExitStatus {
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
