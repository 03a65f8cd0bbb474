//! What the host knows about the instances that take locks (WIT `holders`): this instance's name, written
//! into every lock it takes, and whether a named instance still runs. A granted [`Tree`](super::tree::Tree)
//! carries it (the component adapters attach it where they open the grants); a tree without it — native
//! code, a host without the import — names no instance, and the lease alone decides. Not for the lock
//! files themselves (`lock.rs`).

/// The host's answers about instances, as functions the adapter binds to its WIT imports.
#[derive(Debug, Clone, Copy)]
pub struct Instances {
    /// This instance's name (one word; anything else counts as unknown).
    pub this: fn() -> String,
    /// Whether a named instance still runs: `None` when the host cannot tell.
    pub alive: fn(&str) -> Option<bool>,
}

impl Instances {
    /// This instance's name for the lock files it writes; empty when the host gives none that fits on
    /// one line of a lock file.
    pub fn this_name(&self) -> String {
        let name = (self.this)();
        if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return String::new();
        }
        name
    }

    /// The host knows the named instance is no longer running (an empty name is never known gone).
    pub fn is_gone(&self, name: &str) -> bool {
        !name.is_empty() && (self.alive)(name) == Some(false)
    }
}
