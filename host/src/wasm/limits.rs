//! Limits on one call into the component: how much linear memory it may use and how long it may run, and
//! the store limiter that enforces the memory limit (growth beyond it fails inside the guest).
//!
//! Not for enforcing time: that is epoch interruption, set up in [`super::engine`] (a ticker thread
//! advances the epoch every [`TICK`](super::engine::TICK); each call gets a deadline of enough ticks).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Limits for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory the component may grow each of its memories to, in bytes.
    pub memory_bytes: usize,
    /// How long the call may run in the component before it is stopped; `None` for no limit.
    /// Time spent blocked in a single host file operation is only counted once the guest resumes.
    pub timeout: Option<Duration>,
}

impl Limits {
    /// 1 GiB of memory, no timeout: what the command-line tool uses.
    pub const DEFAULT: Limits = Limits { memory_bytes: 1 << 30, timeout: None };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The store limiter: the memory limit, remembering whether it refused a growth (so that a later trap, or
/// an answer the component made of a failed allocation, is explained as running out of memory).
pub(crate) struct Limiter {
    limits: StoreLimits,
    refused: MemoryRefused,
}

/// The size of the last memory growth a limiter refused; shared, so that it can be read while the store is
/// busy elsewhere.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryRefused(Arc<AtomicUsize>);

impl MemoryRefused {
    /// The size asked for, if a growth was refused.
    pub(crate) fn get(&self) -> Option<usize> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&desired| desired != 0)
    }
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Limiter {
        Limiter {
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).build(),
            refused: MemoryRefused::default(),
        }
    }

    /// The size of a refused memory growth, if there was one.
    pub(crate) fn memory_refused(&self) -> Option<usize> {
        self.refused.get()
    }

    /// A handle that reads [`Limiter::memory_refused`] from elsewhere.
    pub(crate) fn refusals(&self) -> MemoryRefused {
        self.refused.clone()
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused.0.store(desired.max(1), Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
