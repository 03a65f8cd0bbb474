//! `xnat-archive serve`: XNAT's REST surface over HTTP for several tenants, each request served by a fresh
//! instance of the HTTP component that sees only its tenant's prearchive and archive (D17, D18).
//!
//! * [`config`]: the TOML file (tenants, users, limits) and its checks; `hash-password`.
//! * [`tenant`]: a tenant as served — grants, the component's environment, limits, request slots.
//! * [`component`]: the wasmtime side — load, grant, instantiate, call — in one place.
//! * [`server`]: connections, routing by `/<tenant>/`, access log, graceful shutdown.
//! * [`gate`], [`connections`], [`proxies`]: who may come in, and how many at once, before anything
//!   runs; the client's address behind a trusted reverse proxy.
//! * [`recovery`]: archives cut off by a stop, put right at start and after a stopped request.
//!
//! Authentication is the component's (HTTP Basic and XNAT's JSESSIONID flow, stateless signed tokens);
//! the host only hands it the tenant's users and token key.
//!
//! Not for the library component: `serve` runs only the HTTP component (the CLI's other commands run the
//! library one through [`crate::Runtime`]).

pub mod component;
pub mod config;
pub mod connections;
pub mod gate;
pub mod proxies;
pub mod recovery;
pub mod server;
pub mod tenant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

pub use config::{Config, Defaults, User, hash_password};

use crate::testsite::demo;
use component::HttpComponent;
use connections::Connections;
use gate::Gate;
use recovery::Recovery;
use server::Server;
use tenant::Tenant;

/// The demo tenant's name when `serve` runs without a configuration.
pub const DEMO_TENANT: &str = "demo";
/// The demo tenant's user.
pub const DEMO_USER: &str = "admin";

/// What `serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file; `None`: one demo tenant over a generated site.
    pub config: Option<PathBuf>,
    /// Overrides the configuration's `listen`.
    pub listen: Option<SocketAddr>,
    /// Where the demo site lives (without a configuration).
    pub dir: Option<PathBuf>,
    /// Limits for tenants that set none.
    pub defaults: Defaults,
}

/// Recovers every tenant's interrupted archives, runs the server until SIGINT or SIGTERM, then finishes
/// the requests in flight and returns. `component` is the HTTP component (a binary `.wasm`).
pub fn serve(component: &[u8], options: Options) -> anyhow::Result<()> {
    let defaults = options.defaults.checked()?;
    let (mut config, demo_password) = match &options.config {
        Some(path) => (Config::load(path, defaults)?, None),
        None => {
            let (config, password) = demo_config(options.dir.clone(), defaults)?;
            (config, Some(password))
        }
    };
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    let tenants: Vec<Arc<Tenant>> = config.tenants.iter().map(|t| Arc::new(Tenant::new(t))).collect();
    let slots = tenants.iter().map(|t| t.max_concurrent()).sum();
    let max_memory = tenants.iter().map(|t| t.limits.memory_bytes).max().unwrap_or(1 << 20);
    let component = HttpComponent::load(component, slots, max_memory).context("cannot load the HTTP component")?;
    let recovery = Recovery::load()?;
    // What a stop cut off (a killed server, a request stopped at its time limit) is put right before the
    // first request: none may see a session half in the prearchive, half in the archive.
    for tenant in &tenants {
        if let Err(e) = recovery.run(tenant) {
            // The other tenants are served; this one's archives recover each session before they touch it.
            eprintln!("{e:#}; serving it anyway (run `xnat-archive recover` on its trees when the server is stopped)");
        }
    }
    let proxies = config.trusted_proxies.clone();
    let server = Arc::new(Server { component, tenants, gate: Gate::default(), recovery, proxies });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the server's thread pool")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| {
            format!("cannot listen on {}; is another server using it? pick another with --listen", config.listen)
        })?;
        let address = listener.local_addr()?;
        let stop = stop_signal()?;
        announce(&server, &config, address, demo_password.as_deref());
        server::run(listener, server.clone(), Connections::new(config.connections), stop).await;
        anyhow::Ok(())
    })?;
    eprintln!("stopped");
    Ok(())
}

/// The configuration without a file: tenant [`DEMO_TENANT`] over a demo site in `dir` (written unless it
/// is already there; default: a new folder in the temporary directory), user [`DEMO_USER`] with a random
/// password (returned, to be shown once).
fn demo_config(dir: Option<PathBuf>, defaults: Defaults) -> anyhow::Result<(Config, String)> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("xnat-archive-serve-{}", std::process::id())));
    let (prearchive, archive) = (dir.join("prearchive"), dir.join("archive"));
    let written = |d: &PathBuf| d.is_dir() && std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some());
    if written(&prearchive) && written(&archive) {
        eprintln!("serving the existing demo site in {}", dir.display());
    } else {
        demo::write_import_site(&dir).with_context(|| format!("cannot write the demo site to {}", dir.display()))?;
    }
    let password = config::random_password();
    let user = User { name: DEMO_USER.to_owned(), password_hash: hash_password(&password)?, admin: true };
    let canonical = |d: PathBuf| std::fs::canonicalize(&d).unwrap_or(d);
    Ok((Config::demo(DEMO_TENANT, canonical(prearchive), canonical(archive), vec![user], defaults), password))
}

/// What the server says at start: where it listens (stdout, first), its tenants, and for the demo the
/// password and a request to try.
fn announce(server: &Server, config: &Config, address: SocketAddr, demo_password: Option<&str>) {
    println!("listening on http://{address}");
    for (tenant, t) in server.tenants.iter().zip(&config.tenants) {
        println!(
            "tenant {}: http://{address}/{}/data/  (prearchive {}, archive {}; {} MiB, {:?}, {} at once)",
            t.name,
            t.name,
            t.prearchive.display(),
            t.archive.display(),
            t.memory_bytes >> 20,
            t.timeout,
            t.max_concurrent
        );
        if tenant.random_secret && demo_password.is_none() {
            eprintln!(
                "tenant {}: no secret in the configuration, so a random one signs its session tokens: they stop \
                 working when the server restarts (set secret = \"...\" to keep them)",
                t.name
            );
        }
    }
    if let Some(password) = demo_password {
        println!("user {DEMO_USER}, password {password}  (shown once; a new one at every start)");
        println!("try:");
        println!(
            "  curl -u {DEMO_USER}:{password} 'http://{address}/{DEMO_TENANT}/data/prearchive/projects?format=json'"
        );
    }
    println!("stop with Ctrl-C (or SIGTERM): requests in flight are finished first");
}

/// A future that completes at the first SIGINT or SIGTERM. The handlers are installed now (inside the
/// runtime), before the server says it listens, so that a signal sent right after that line is not lost.
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

/// A future that completes at the first Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
