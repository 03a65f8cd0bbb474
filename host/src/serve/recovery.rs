//! Archives the server cut off, finished or rolled back: for every tenant when the server starts (before
//! it listens, so that no request sees a half-moved session), and in the background after a request that
//! could change data was stopped (its time limit, its memory cap, a crash).
//!
//! Recovery is the library component's (`xnat-archive recover`), run with the tenant's grants and limits
//! and [`LockPolicy::RespectLeases`]: a lock whose holder is gone (a request this server stopped, a server
//! that was killed) is cleared at once, while a session another host is still archiving is left alone and
//! reported `in-progress`.
//!
//! Not for the journal's rules (the component decides what finishing or rolling back means).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use super::tenant::Tenant;
use crate::library::types::{LockPolicy, Recovered};
use crate::wasm::runtime::Runtime;

/// The library component, loaded once, for the recoveries of every tenant.
#[derive(Clone)]
pub struct Recovery {
    runtime: Runtime,
}

impl Recovery {
    /// Loads the embedded library component (compiled once; wasmtime's cache keeps it between starts).
    pub fn load() -> anyhow::Result<Recovery> {
        let runtime = Runtime::new().context("cannot load the component that recovers interrupted archives")?;
        Ok(Recovery { runtime })
    }

    /// Recovers `tenant`'s interrupted archives now (blocking), and says what it did on standard error.
    pub fn run(&self, tenant: &Tenant) -> anyhow::Result<Vec<Recovered>> {
        let recovered = self
            .runtime
            .recover(&tenant.grants, &tenant.limits, LockPolicy::RespectLeases)?
            .map_err(anyhow::Error::from)
            .with_context(|| format!("tenant {}: cannot recover its interrupted archives", tenant.name))?;
        for r in &recovered {
            eprintln!("tenant {}: recovered {}: {} ({})", tenant.name, r.src, r.action, r.detail);
        }
        Ok(recovered)
    }

    /// Runs [`Recovery::run`] for `tenant` in the background, in one of its request slots (waiting for one),
    /// unless a recovery of it is already waiting for its slot (one then covers both).
    pub fn run_later(&self, tenant: Arc<Tenant>) {
        if !tenant.recovery.claim() {
            return;
        }
        let recovery = self.clone();
        tokio::spawn(async move {
            let slot = tenant.slot_waiting().await;
            tenant.recovery.started();
            let name = tenant.name.clone();
            let ran = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                recovery.run(&tenant)
            })
            .await;
            match ran {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("tenant {name}: {e:#}; run `xnat-archive recover` when the server is stopped"),
                Err(panic) => eprintln!("tenant {name}: recovery failed: {panic}"),
            }
        });
    }
}

/// Whether a tenant's recovery is waiting to run: a burst of stopped requests asks for one recovery, not
/// one each.
#[derive(Debug, Default)]
pub struct Pending(AtomicBool);

impl Pending {
    /// Marks a recovery as waiting; false if one already was.
    fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// The waiting recovery runs now: what goes wrong from here on needs another.
    fn started(&self) {
        self.0.store(false, Ordering::Release);
    }
}
