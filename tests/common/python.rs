//! Python virtual environments for the suites that drive real Python clients: created under `target/`
//! with `python3 -m venv`, their requirements installed from PyPI once (again when the file changes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The workspace's `target/` folder.
pub fn target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// `target/<name>` with `requirements` installed; returns its `python`. Call it under one lock per venv.
pub fn venv(name: &str, requirements: &Path) -> PathBuf {
    let venv = target().join(name);
    let python = venv.join("bin/python");
    if !python.exists() {
        checked(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv (install python3-venv)");
    }
    let wanted = std::fs::read_to_string(requirements).unwrap();
    let stamp = venv.join(".xnat-archive-requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        checked(
            Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "-r"])
                .arg(requirements),
            "pip install (PyPI must be reachable)",
        );
        std::fs::write(&stamp, &wanted).unwrap();
    }
    python
}

fn checked(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command to its end, killing it after `limit`; its output.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let started = Instant::now();
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            panic!("{cmd:?} did not finish within {:?}", started.elapsed());
        }
    }
}
