//! The wasmtime engine as this host sets it up, written once for the library [`Runtime`](crate::Runtime)
//! and for `serve`'s HTTP component: epoch interruption, wasmtime's on-disk cache of compiled code, the
//! epoch ticker that drives time limits, and what a call that stopped early means ([`Stop`]).
//!
//! Not for stores, linkers or instances (each runtime makes its own), nor for the words a caller shows:
//! the library runtime and `serve` each turn a [`Stop`] into their own message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, PoolConcurrencyLimitError, Trap};

/// How often the epoch advances once a timeout has been used; the precision of timeouts.
pub const TICK: Duration = Duration::from_millis(10);

/// The configuration every engine of this host starts from: epoch interruption (time limits), and
/// wasmtime's on-disk cache of compiled code in the user's cache folder, so that a component is compiled
/// once per build, not once per command or server start. Without a usable cache folder it just compiles
/// every time.
pub(crate) fn config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // For profiling with `perf`: names the compiled functions in /tmp/perf-PID.map (BENCHMARKS.md).
    if std::env::var_os("XNAT_ARCHIVE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Ok(cache) = wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
        config.cache(Some(cache));
    }
    config
}

/// The engine for `config`.
pub(crate) fn build(config: &Config) -> anyhow::Result<Engine> {
    Engine::new(config).map_err(|e| anyhow::Error::from(e).context("cannot set up the WebAssembly engine"))
}

/// Starts a thread that advances `engine`'s epoch every [`TICK`] for as long as the engine exists.
pub(crate) fn start_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("xnat-archive-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("cannot start the epoch ticker thread");
}

/// The epoch deadline (in ticks beyond the current epoch) for a call with this timeout on the process-wide
/// engine `engine`, starting its ticker the first time a timeout is used. Without a timeout the deadline is
/// practically never reached.
pub(crate) fn epoch_deadline(engine: &Engine, timeout: Option<Duration>) -> u64 {
    static TICKER: OnceLock<()> = OnceLock::new();
    match timeout {
        None => u64::MAX / 2,
        Some(timeout) => {
            TICKER.get_or_init(|| start_ticker(engine));
            // One extra tick: the call may start just before a tick.
            let ticks = timeout.as_nanos().div_ceil(TICK.as_nanos()) + 1;
            u64::try_from(ticks).unwrap_or(u64::MAX / 2).min(u64::MAX / 2)
        }
    }
}

/// Why a call into a component stopped without its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The store's limiter refused a memory growth of this size: whatever else happened followed from it.
    OutOfMemory(usize),
    /// The component exited (`wasi:cli/exit`) with this status.
    Exited(i32),
    /// Every instance slot of a pooling allocator was in use.
    Busy,
    /// The epoch deadline passed: the call ran past its time limit.
    Interrupted,
    /// Any other trap: a bug in the component.
    Trapped,
    /// Anything else: instantiation or a host call failed.
    Failed,
}

impl Stop {
    /// Why the call that failed with `error` stopped; `refused` is the memory growth its limiter refused.
    pub(crate) fn of(error: &wasmtime::Error, refused: Option<usize>) -> Stop {
        if let Some(desired) = refused {
            return Stop::OutOfMemory(desired);
        }
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return Stop::Exited(exit.0);
        }
        if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return Stop::Busy;
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Stop::Interrupted,
            Some(_) => Stop::Trapped,
            None => Stop::Failed,
        }
    }
}

/// An error computed once per process (an engine or a compiled component that failed) and returned to
/// every caller: the message and source chain of the original, which stays in the cell.
#[derive(Debug, Clone)]
pub(crate) struct Shared(pub(crate) Arc<anyhow::Error>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
