//! The instances this host runs, named for the locks they take (WIT `holders`, D13), so that a lock whose
//! instance is gone is taken over at once instead of when its lease runs out.
//!
//! A name is `<boot id>-<pid namespace>-<pid>-<process start>-<n>`: the machine's boot, the process (its pid
//! and when it started, so that a reused pid is another process) and the `n`th instance of that process. An
//! instance of this process is alive while its [`Instance`] is (the store that holds it lives); one of
//! another process of this machine and pid namespace while that process runs; about any other this host
//! cannot tell (another machine or container sharing the file system), and the lease decides. On systems
//! without `/proc` every name is empty and every answer "cannot tell".
//!
//! Not for the locks themselves: the component takes, leases and releases them on disk.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// One running instance of a component; registered as alive until dropped.
#[derive(Debug)]
pub struct Instance {
    n: u64,
}

/// The instances of this process that are alive.
static ALIVE: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

impl Instance {
    /// A new instance, alive until dropped.
    pub fn new() -> Instance {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ALIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(n);
        Instance { n }
    }

    /// Its name, for the locks it takes; empty when this system cannot say which process it is.
    pub fn name(&self) -> String {
        process().map_or_else(String::new, |p| format!("{}-{}-{}-{}-{}", p.boot, p.namespace, p.pid, p.start, self.n))
    }

    /// Whether the instance named `name` still runs; `None` when this host cannot tell.
    pub fn running(name: &str) -> Option<bool> {
        let me = process()?;
        let parts: Vec<&str> = name.split('-').collect();
        let [boot, namespace, pid, start, n] = parts.as_slice() else { return None };
        if *boot != me.boot || *namespace != me.namespace {
            return None;
        }
        let (pid, start, n): (u32, u64, u64) = (pid.parse().ok()?, start.parse().ok()?, n.parse().ok()?);
        if pid == me.pid && start == me.start {
            return Some(ALIVE.lock().unwrap_or_else(|e| e.into_inner()).contains(&n));
        }
        match started(&format!("/proc/{pid}/stat")) {
            Ok(Some(then)) => Some(then == start),
            Ok(None) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }
}

/// WIT `holders`, answered for this instance.
impl crate::library::bindings::HoldersHost for Instance {
    fn this(&mut self) -> String {
        self.name()
    }

    fn alive(&mut self, instance: String) -> Option<bool> {
        Instance::running(&instance)
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::new()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        ALIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.n);
    }
}

/// Which process this is, on which machine.
#[derive(Debug)]
struct Process {
    /// The kernel's boot id (hex, no dashes): this machine since it booted.
    boot: String,
    /// The pid namespace's inode: pids are comparable only within one.
    namespace: String,
    pid: u32,
    /// When the process started, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    start: u64,
}

/// This process, read once; `None` where `/proc` does not say.
fn process() -> Option<&'static Process> {
    static PROCESS: OnceLock<Option<Process>> = OnceLock::new();
    PROCESS
        .get_or_init(|| {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().replace('-', "");
            let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
            let namespace: String = link.to_string_lossy().chars().filter(char::is_ascii_digit).collect();
            let start = started("/proc/self/stat").ok()??;
            let usable = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
            (usable(&boot) && usable(&namespace)).then(|| Process { boot, namespace, pid: std::process::id(), start })
        })
        .as_ref()
}

/// The start time in a `/proc/<pid>/stat` file: field 22, counted after the command name (which is in
/// parentheses and may hold spaces).
fn started(stat: &str) -> std::io::Result<Option<u64>> {
    let text = std::fs::read_to_string(stat)?;
    let after_name = text.rsplit_once(')').map(|(_, rest)| rest);
    Ok(after_name.and_then(|rest| rest.split_whitespace().nth(19)).and_then(|f| f.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_alive_until_dropped_and_a_dead_process_is_gone() {
        let Some(me) = process() else {
            // No /proc: nothing can be told, and nothing is claimed.
            assert_eq!(Instance::new().name(), "");
            return;
        };
        let instance = Instance::new();
        let name = instance.name();
        assert_eq!(Instance::running(&name), Some(true), "{name}");
        let other = Instance::new();
        drop(instance);
        assert_eq!(Instance::running(&name), Some(false), "dropped: {name}");
        assert_eq!(Instance::running(&other.name()), Some(true));

        // A process of this machine that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = started(&format!("/proc/{pid}/stat")).unwrap().unwrap();
        child.wait().unwrap();
        let dead = format!("{}-{}-{pid}-{start}-1", me.boot, me.namespace);
        assert_eq!(Instance::running(&dead), Some(false), "{dead}");
        // The same pid, started at another time: another process.
        let reused = format!("{}-{}-{}-{}-1", me.boot, me.namespace, std::process::id(), me.start + 1);
        assert_eq!(Instance::running(&reused), Some(false));

        // Another machine, another pid namespace, or no name at all: cannot tell.
        for name in [
            format!("0123abcd-{}-{pid}-{start}-1", me.namespace),
            format!("{}-1-{pid}-{start}-1", me.boot),
            String::new(),
            "garbage".into(),
        ] {
            assert_eq!(Instance::running(&name), None, "{name}");
        }
    }
}
