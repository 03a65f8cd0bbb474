//! Lock files (D13): created exclusively (`O_EXCL`), so that two processes — or two hosts on a shared file
//! system — cannot both hold one. A lock records its operation and the time it was taken; one older than its
//! stale age is taken as left behind by a process that died, and may be broken.

use crate::error::{Error, Result};
use crate::tree::{RelPath, Tree};

/// A held lock; released (its file removed) by [`Lock::release`] or when dropped.
#[derive(Debug)]
pub struct Lock {
    tree: Tree,
    path: RelPath,
    released: bool,
}

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub operation: String,
    pub since: i64,
}

impl Lock {
    /// Takes the lock at `path` for `operation`. A lock older than `stale_secs` is broken and taken over;
    /// a live one is `Locked`, with `what` in the message.
    pub fn acquire(tree: &Tree, path: &RelPath, operation: &str, stale_secs: i64, what: &str) -> Result<Lock> {
        let now = now();
        let body = format!("{operation}\nsince {now}\n");
        if tree.create_new(path, body.as_bytes())? {
            return Ok(Lock { tree: tree.clone(), path: path.clone(), released: false });
        }
        let holder = Lock::holder(tree, path)?;
        if let Some(h) = &holder
            && now - h.since > stale_secs
        {
            let _ = tree.remove_file(path);
            if tree.create_new(path, body.as_bytes())? {
                return Ok(Lock { tree: tree.clone(), path: path.clone(), released: false });
            }
        }
        let by = holder.map(|h| format!(" by {} since {}", h.operation, h.since)).unwrap_or_default();
        Err(Error::Locked(format!(
            "Operation already in progress on {what} (locked{by}, lock file {path}); try again when it is done"
        )))
    }

    /// The holder of the lock at `path`, if there is one.
    pub fn holder(tree: &Tree, path: &RelPath) -> Result<Option<Holder>> {
        match tree.read(path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let mut lines = text.lines();
                let operation = lines.next().unwrap_or("").to_string();
                let since = lines.find_map(|l| l.strip_prefix("since ")?.trim().parse().ok()).unwrap_or(0);
                Ok(Some(Holder { operation, since }))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &RelPath {
        &self.path
    }

    /// Removes the lock file.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.tree.remove_file(&self.path)
    }

    /// Leaves the lock file in place (a crash between here and recovery keeps the session locked).
    pub fn keep(mut self) {
        self.released = true;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.tree.remove_file(&self.path);
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_stale_and_released() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let p = RelPath::new(".x.lock").unwrap();
        let a = Lock::acquire(&tree, &p, "ARCHIVING", 60, "x").unwrap();
        assert!(
            matches!(Lock::acquire(&tree, &p, "DELETING", 60, "x"), Err(Error::Locked(m)) if m.contains("ARCHIVING"))
        );
        a.release().unwrap();
        let b = Lock::acquire(&tree, &p, "DELETING", 60, "x").unwrap();
        drop(b);
        assert!(Lock::holder(&tree, &p).unwrap().is_none());
        std::fs::write(d.path().join(".x.lock"), "ARCHIVING\nsince 1\n").unwrap();
        let c = Lock::acquire(&tree, &p, "RECOVERING", 60, "x").unwrap();
        assert_eq!(Lock::holder(&tree, &p).unwrap().unwrap().operation, "RECOVERING");
        c.keep();
        assert!(Lock::holder(&tree, &p).unwrap().is_some());
    }
}
