//! Lock files with leases (D13): who holds a session, a destination or a catalog, for how long.
//!
//! A lock file appears whole or not at all (written to a temporary file, then hard-linked into place, which
//! fails if the name exists), so a competitor never reads a lock without its owner. It names its operation,
//! a random owner token, when it was taken and when its lease runs out. A live holder keeps renewing the
//! lease (every [`Lock::renew_due`] call renews what is due, a third of the lease after the last renewal),
//! so it is never overtaken however slow it is; a holder that died stops renewing, and its lock may be taken
//! over once the lease has run out — on this machine or another one sharing the file system.
//!
//! A lock also names the instance that took it, as the host names it (WIT `holders`, which the component
//! adapter attaches to the trees it opens: [`Tree::with_instances`]). When the host knows that instance is gone — its process
//! died, its request was stopped — the lock is taken over at once, without waiting for the lease; when the
//! host cannot tell (another machine, a host without the import, native code), the lease alone decides.
//!
//! Taking over is atomic: the stale file is renamed to a unique name (only one competitor's rename can
//! succeed), checked to be the very lock judged stale (put back if it is not), and only then is a new lock
//! linked into place. Not for: deciding what to do about an interrupted operation (the journal does that).

use crate::error::{Error, Result};
use crate::fs::instances::Instances;
use crate::fs::tree::{Durable, RelPath, TEMP_PREFIX, Tree};
use std::cell::RefCell;

/// How long a lease lasts without renewal: the longest a dead holder's lock keeps others out.
pub const LEASE_SECS: i64 = 30;

/// A held lock; released (its file removed) by [`Lock::release`] or when dropped.
#[derive(Debug)]
pub struct Lock {
    tree: Tree,
    path: RelPath,
    token: String,
    released: bool,
}

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub operation: String,
    pub token: String,
    pub since: i64,
    pub expires: i64,
    /// The instance that took it, as its host names it; empty when unknown.
    pub instance: String,
}

impl Holder {
    /// "ARCHIVING since 2026-12-01 10:40:12 UTC (lease until 10:40:42 UTC)".
    pub fn describe(&self) -> String {
        format!("{} since {} (lease until {})", self.operation, date(self.since), date(self.expires))
    }

    /// Whether the lock still keeps others out at `now`: its lease runs and its instance is not known (to
    /// the host, when it says) to be gone.
    pub fn is_live(&self, now: i64, instances: Option<Instances>) -> bool {
        self.expires >= now && !instances.is_some_and(|i| i.is_gone(&self.instance))
    }

    fn body(&self) -> String {
        let instance = if self.instance.is_empty() { String::new() } else { format!("instance {}\n", self.instance) };
        format!(
            "{}\nowner {}\n{instance}since {} {}\nexpires {} {}\n",
            self.operation,
            self.token,
            self.since,
            date(self.since),
            self.expires,
            date(self.expires)
        )
    }

    fn parse(text: &str) -> Holder {
        let mut lines = text.lines();
        let operation = lines.next().unwrap_or("").trim().to_string();
        let (mut token, mut since, mut expires, mut instance) = (String::new(), 0i64, None, String::new());
        for l in lines {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                (Some("owner"), Some(t)) => token = t.to_string(),
                (Some("instance"), Some(t)) => instance = t.to_string(),
                (Some("since"), Some(t)) => since = t.parse().unwrap_or(0),
                (Some("expires"), Some(t)) => expires = t.parse().ok(),
                _ => {}
            }
        }
        // A lock of an earlier version (no lease): its lease ran from when it was taken.
        Holder { operation, token, since, expires: expires.unwrap_or(since + LEASE_SECS), instance }
    }
}

thread_local! {
    /// The leases this thread holds and renews: (tree, lock file, token, last renewal).
    static HELD: RefCell<Vec<(Tree, RelPath, String, i64)>> = const { RefCell::new(Vec::new()) };
}

impl Lock {
    /// Takes the lock at `path` for `operation`. A lock whose lease ran out, or whose instance the host
    /// knows is gone, is taken over; a live one is `Locked`, with `what` and its holder in the message.
    pub fn acquire(tree: &Tree, path: &RelPath, operation: &str, what: &str) -> Result<Lock> {
        let token = new_token();
        let instance = tree.instances().map_or_else(String::new, |i| i.this_name());
        for _ in 0..8 {
            let now = now();
            let mine = Holder {
                operation: operation.into(),
                token: token.clone(),
                since: now,
                expires: now + LEASE_SECS,
                instance: instance.clone(),
            };
            // Not flushed to disk: a lock guards against other processes, which read it from memory; after a
            // crash of the machine its holder is gone, and a lock file left empty or damaged reads as a holder
            // without a lease (taken over), as an intact one whose holder is gone is.
            if tree.create_new_complete(path, mine.body().as_bytes(), Durable::No)? {
                HELD.with(|h| h.borrow_mut().push((tree.clone(), path.clone(), token.clone(), now)));
                return Ok(Lock { tree: tree.clone(), path: path.clone(), token, released: false });
            }
            let Some(holder) = Lock::holder(tree, path)? else { continue };
            if holder.is_live(now, tree.instances()) {
                return Err(Error::Locked(format!(
                    "Operation already in progress on {what}: {} (lock file {path}); try again when it is done \
                     — a lock whose process died is taken over when its lease runs out",
                    holder.describe()
                )));
            }
            take_over(tree, path, &holder, &token)?;
        }
        Err(Error::Locked(format!(
            "{what} is being locked and unlocked by others right now (lock file {path}); try again"
        )))
    }

    /// The holder of the lock at `path`, if there is one.
    pub fn holder(tree: &Tree, path: &RelPath) -> Result<Option<Holder>> {
        match tree.read(path) {
            Ok(bytes) => Ok(Some(Holder::parse(&String::from_utf8_lossy(&bytes)))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renews every lease this thread holds whose renewal is due. An error means a lock was lost (taken
    /// over after its lease ran out): the caller must stop changing what it guarded.
    pub fn renew_due() -> Result<()> {
        let now = now();
        let due: Vec<(Tree, RelPath, String)> = HELD.with(|h| {
            h.borrow()
                .iter()
                .filter(|(_, _, _, at)| now - at >= LEASE_SECS / 3)
                .map(|(t, p, k, _)| (t.clone(), p.clone(), k.clone()))
                .collect()
        });
        for (tree, path, token) in due {
            let Some(holder) = Lock::holder(&tree, &path)?.filter(|h| h.token == token) else {
                return Err(Error::Locked(format!(
                    "the lock {path} was taken over by another process after its lease ran out; stopped here — \
                     the journal lets the next run finish or roll back"
                )));
            };
            let renewed = Holder { expires: now + LEASE_SECS, ..holder };
            tree.write_atomic(&path, renewed.body().as_bytes())?;
            HELD.with(|h| {
                for e in h.borrow_mut().iter_mut().filter(|e| e.1 == path && e.2 == token) {
                    e.3 = now;
                }
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &RelPath {
        &self.path
    }

    /// Removes the lock file (if it is still ours).
    pub fn release(mut self) -> Result<()> {
        self.forget();
        match Lock::holder(&self.tree, &self.path)? {
            Some(h) if h.token == self.token => self.tree.remove_file(&self.path),
            _ => Ok(()),
        }
    }

    /// Leaves the lock file in place; its lease runs out, and whoever comes next finishes the work.
    pub fn keep(mut self) {
        self.forget();
    }

    fn forget(&mut self) {
        self.released = true;
        HELD.with(|h| h.borrow_mut().retain(|e| !(e.1 == self.path && e.2 == self.token)));
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.released {
            self.forget();
            if Lock::holder(&self.tree, &self.path).ok().flatten().is_some_and(|h| h.token == self.token) {
                let _ = self.tree.remove_file(&self.path);
            }
        }
    }
}

/// Removes the lock `judged` stale from `path` atomically: renamed to a unique name first, so that of
/// several competitors exactly one removes it; if what was renamed is not the lock judged stale (someone
/// took it over meanwhile), it is put back.
fn take_over(tree: &Tree, path: &RelPath, judged: &Holder, token: &str) -> Result<()> {
    let aside = path.parent().join(&format!("{TEMP_PREFIX}stale-lock-{token}"))?;
    match tree.rename_to(path, tree, &aside) {
        Ok(()) => {}
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    let moved = Lock::holder(tree, &aside)?;
    if moved.as_ref().is_some_and(|m| m.token != judged.token || m.expires != judged.expires) {
        // A live lock: back into place, unless a third process has locked meanwhile.
        let _ = tree.hard_link(&aside, path);
    }
    tree.remove_file(&aside)
}

/// A random owner token (the standard library's per-process random keys, mixed with the clock).
fn new_token() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:016x}", std::hash::RandomState::new().hash_one(nanos))
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A Unix time as people read it: `2026-12-01 10:40:12 UTC`.
pub fn date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or_else(|| secs.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_leased_released_and_taken_over_when_stale() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let p = RelPath::new(".x.lock").unwrap();
        let a = Lock::acquire(&tree, &p, "ARCHIVING", "x").unwrap();
        match Lock::acquire(&tree, &p, "DELETING", "x") {
            Err(Error::Locked(m)) => assert!(m.contains("ARCHIVING since 20") && m.contains("UTC"), "{m}"),
            other => panic!("{other:?}"),
        }
        a.release().unwrap();
        let b = Lock::acquire(&tree, &p, "DELETING", "x").unwrap();
        drop(b);
        assert!(Lock::holder(&tree, &p).unwrap().is_none());
        // A lock whose lease ran out (its process died) is taken over; so is one of an earlier version.
        let dead = Holder {
            operation: "ARCHIVING".into(),
            token: "dead".into(),
            since: 1,
            expires: now() - 1,
            instance: String::new(),
        };
        std::fs::write(d.path().join(".x.lock"), dead.body()).unwrap();
        let c = Lock::acquire(&tree, &p, "RECOVERING", "x").unwrap();
        assert_eq!(Lock::holder(&tree, &p).unwrap().unwrap().operation, "RECOVERING");
        c.keep();
        assert!(Lock::holder(&tree, &p).unwrap().is_some());
        std::fs::write(d.path().join(".x.lock"), "ARCHIVING\nsince 1\n").unwrap();
        Lock::acquire(&tree, &p, "RECOVERING", "x").unwrap().release().unwrap();
        // What a crash of the machine may leave of a lock file (it is not flushed to disk): nothing, zeros or a
        // part. Each reads as a holder without a lease, and is taken over.
        for left in [&b""[..], &[0u8; 64][..], &b"ARCHIVING\nowner 12"[..]] {
            std::fs::write(d.path().join(".x.lock"), left).unwrap();
            assert!(!Lock::holder(&tree, &p).unwrap().unwrap().is_live(now(), None), "{left:?}");
            Lock::acquire(&tree, &p, "RECOVERING", "x").unwrap().release().unwrap();
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "no lock, no leftovers");
    }

    #[test]
    fn a_live_lock_moved_aside_by_a_late_competitor_is_put_back() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let p = RelPath::new(".x.lock").unwrap();
        let live = Lock::acquire(&tree, &p, "ARCHIVING", "x").unwrap();
        // A competitor that judged an older holder stale only now gets to take it over.
        let judged = Holder {
            operation: "ARCHIVING".into(),
            token: "old".into(),
            since: 1,
            expires: 2,
            instance: String::new(),
        };
        take_over(&tree, &p, &judged, "late").unwrap();
        assert_eq!(Lock::holder(&tree, &p).unwrap().unwrap().token, live.token);
        live.release().unwrap();
    }

    /// The host of these tests: instances named `live-…` run, `gone-…` are gone, others are unknown.
    fn test_instances(this: fn() -> String) -> Instances {
        fn alive(name: &str) -> Option<bool> {
            name.strip_prefix("live-").map(|_| true).or(name.strip_prefix("gone-").map(|_| false))
        }
        Instances { this, alive }
    }

    #[test]
    fn a_lock_whose_instance_is_gone_is_taken_over_at_once_and_an_unknown_one_waits_for_its_lease() {
        let d = tempfile::tempdir().unwrap();
        let granted = |this| Tree::new(d.path()).with_instances(test_instances(this));
        let p = RelPath::new(".x.lock").unwrap();
        let tree = granted(|| "gone-1".into());
        let first = Lock::acquire(&tree, &p, "ARCHIVING", "x").unwrap();
        let written = Lock::holder(&tree, &p).unwrap().unwrap();
        assert_eq!(written.instance, "gone-1");
        assert!(written.expires >= now() + LEASE_SECS - 1, "the lease still runs");
        first.keep();
        // Its instance is gone: taken over at once, although the lease runs.
        let tree = granted(|| "live-2".into());
        let second = Lock::acquire(&tree, &p, "DELETING", "x").unwrap();
        assert_eq!(Lock::holder(&tree, &p).unwrap().unwrap().operation, "DELETING");
        second.keep();
        // A running instance, and one the host cannot tell about (another machine), keep others out.
        for instance in ["live-2", "elsewhere-3"] {
            let text = std::fs::read_to_string(d.path().join(".x.lock")).unwrap();
            let held = Holder::parse(&text);
            std::fs::write(d.path().join(".x.lock"), Holder { instance: instance.into(), ..held }.body()).unwrap();
            assert!(matches!(Lock::acquire(&tree, &p, "MOVING", "x"), Err(Error::Locked(_))), "{instance}");
        }
        // A name the host gives that cannot be written on one line is not written at all.
        let tree = granted(|| "two words".into());
        std::fs::remove_file(d.path().join(".x.lock")).unwrap();
        let third = Lock::acquire(&tree, &p, "MOVING", "x").unwrap();
        assert_eq!(Lock::holder(&tree, &p).unwrap().unwrap().instance, "");
        third.release().unwrap();
        // A tree without the host's knowledge (native code) names no instance and waits for leases.
        let native = Tree::new(d.path());
        let fourth = Lock::acquire(&native, &p, "MOVING", "x").unwrap();
        assert_eq!(Lock::holder(&native, &p).unwrap().unwrap().instance, "");
        fourth.keep();
        let gone = Holder { instance: "gone-9".into(), ..Lock::holder(&native, &p).unwrap().unwrap() };
        std::fs::write(d.path().join(".x.lock"), gone.body()).unwrap();
        assert!(matches!(Lock::acquire(&native, &p, "MOVING", "x"), Err(Error::Locked(_))), "native: lease decides");
        assert!(Lock::acquire(&granted(|| "live-4".into()), &p, "MOVING", "x").is_ok(), "the host knows it is gone");
    }

    #[test]
    fn renewal_extends_the_lease_and_notices_a_lost_lock() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let p = RelPath::new(".x.lock").unwrap();
        let lock = Lock::acquire(&tree, &p, "ARCHIVING", "x").unwrap();
        // Pretend the last renewal was long ago.
        HELD.with(|h| h.borrow_mut().iter_mut().for_each(|e| e.3 -= LEASE_SECS));
        let before = Lock::holder(&tree, &p).unwrap().unwrap();
        let stale = Holder { expires: before.expires - LEASE_SECS, ..before.clone() };
        std::fs::write(d.path().join(".x.lock"), stale.body()).unwrap();
        Lock::renew_due().unwrap();
        assert!(Lock::holder(&tree, &p).unwrap().unwrap().expires >= before.expires);
        // Another process took it over: the next renewal says so.
        HELD.with(|h| h.borrow_mut().iter_mut().for_each(|e| e.3 -= LEASE_SECS));
        let other = Holder { token: "other".into(), ..before };
        std::fs::write(d.path().join(".x.lock"), other.body()).unwrap();
        assert!(matches!(Lock::renew_due(), Err(Error::Locked(_))));
        lock.release().unwrap();
        assert_eq!(Lock::holder(&tree, &p).unwrap().unwrap().token, "other", "not ours to remove");
    }
}
