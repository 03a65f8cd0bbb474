//! A tenant as the server runs it: its two directory grants, the environment its component instances see
//! (users, token key, names), its limits and its share of the server (a semaphore of request slots).
//! Built once at start from its [`TenantConfig`]; requests only read it.
//!
//! Not for parsing the configuration (`super::config`) nor for running requests (`super::component`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{TenantConfig, random_secret};
use crate::wasm::grant::Grant;
use crate::wasm::limits::Limits;
use xnat_core::fs::tree::Tree;

/// The variables the HTTP component reads (its contract; `guest/http`).
pub mod env {
    /// `user:<argon2 PHC hash>` entries joined with `;`.
    pub const USERS: &str = "XNAT_USERS";
    /// The key that signs and checks session tokens.
    pub const SECRET: &str = "XNAT_SECRET";
    /// The tenant's name, bound into its tokens (a token of one tenant is refused by another).
    pub const TENANT: &str = "XNAT_TENANT";
    /// The prefix the host stripped from the path (`/<tenant>`), for cookie paths and links.
    pub const BASE_PATH: &str = "XNAT_BASE_PATH";
    /// The site id of new accession numbers.
    pub const SITE_ID: &str = "XNAT_SITE_ID";
    /// How long a session token lives, in seconds.
    pub const TOKEN_TTL: &str = "XNAT_TOKEN_TTL";
    /// The users who may run administrators' services (recovery), joined with `,`.
    pub const ADMINS: &str = "XNAT_ADMINS";
    /// The user the server's gate verified for this one request (set per instance, never from a client).
    pub const VERIFIED_USER: &str = "XNAT_VERIFIED_USER";
}

/// How long a request waits for one of its tenant's slots before it is refused with 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// One tenant, ready to serve.
#[derive(Debug)]
pub struct Tenant {
    /// The URL prefix, `/<name>/`.
    pub name: String,
    /// `/prearchive` and `/archive`, both read-write: the only directories its instances see.
    pub grants: [Grant; 2],
    /// The environment of its instances.
    pub env: Vec<(&'static str, String)>,
    /// Each request's memory cap and time limit.
    pub limits: Limits,
    /// Whether the token key was made up at start (tokens then die with the process).
    pub random_secret: bool,
    /// The component's view of its settings (users, token key, names), for the server's gate
    /// (`super::gate`), which admits requests by the component's own rules before they reach it.
    pub auth: xnat_http::Context,
    /// Whether a recovery of its interrupted archives is waiting to run (`super::recovery`).
    pub recovery: super::recovery::Pending,
    slots: Arc<Semaphore>,
    max_concurrent: u32,
}

impl Tenant {
    /// The tenant of a checked configuration.
    pub fn new(config: &TenantConfig) -> Tenant {
        let users = config.users.iter().map(|u| format!("{}:{}", u.name, u.password_hash)).collect::<Vec<_>>();
        let secret = config.secret.clone().unwrap_or_else(random_secret);
        let mut env = vec![
            (env::USERS, users.join(";")),
            (env::SECRET, secret),
            (env::TENANT, config.name.clone()),
            (env::BASE_PATH, format!("/{}", config.name)),
            (env::SITE_ID, config.site_id.clone()),
        ];
        let admins: Vec<&str> = config.users.iter().filter(|u| u.admin).map(|u| u.name.as_str()).collect();
        if !admins.is_empty() {
            env.push((env::ADMINS, admins.join(",")));
        }
        if let Some(ttl) = config.token_ttl_secs {
            env.push((env::TOKEN_TTL, ttl.to_string()));
        }
        // The archive's test switches reach tenants only in test builds (the `test-switches` feature).
        #[cfg(feature = "test-switches")]
        for var in crate::TEST_SWITCHES {
            if let Ok(value) = std::env::var(var) {
                env.push((var, value));
            }
        }
        let lookup = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        // The gate reads one kind of file, the moments users logged out everywhere (in the prearchive).
        let (archive, prearchive) = (Tree::new(&config.archive), Tree::new(&config.prearchive));
        let auth = xnat_http::Context::from_env(lookup, archive, prearchive, 0);
        Tenant {
            auth,
            name: config.name.clone(),
            grants: [Grant::prearchive(&config.prearchive, true), Grant::archive(&config.archive, true)],
            env,
            limits: Limits { memory_bytes: config.memory_bytes, timeout: Some(config.timeout) },
            random_secret: config.secret.is_none(),
            recovery: Default::default(),
            slots: Arc::new(Semaphore::new(config.max_concurrent as usize)),
            max_concurrent: config.max_concurrent,
        }
    }

    /// A request slot, waiting at most [`QUEUE_WAIT`] for one; `None` when the tenant stays saturated.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(QUEUE_WAIT, self.slots.clone().acquire_owned()).await.ok()?.ok()
    }

    /// A request slot, however long it takes to get one (the server's own work, such as recovery).
    pub async fn slot_waiting(&self) -> OwnedSemaphorePermit {
        self.slots.clone().acquire_owned().await.expect("a tenant's slots are never closed")
    }

    /// Waits until none of its requests runs any more (every slot is back), and keeps them all: nothing new
    /// starts. For the end of a graceful stop.
    pub async fn drain(&self) -> OwnedSemaphorePermit {
        let all = self.max_concurrent;
        self.slots.clone().acquire_many_owned(all).await.expect("a tenant's slots are never closed")
    }

    /// How many requests it serves at once.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// The time limit of its requests.
    pub fn timeout(&self) -> Duration {
        self.limits.timeout.unwrap_or(super::config::DEFAULT_TIMEOUT)
    }
}
