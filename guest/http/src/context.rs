//! What one request runs with: the granted trees, the users and token settings, the site id and the test
//! switches, read from the component's environment (the contract in `lib.rs`). Not for authenticating a
//! request (`auth.rs`) or routing it (`routes.rs`).

use crate::credentials::Users;
use xnat_core::fs::tree::Tree;
use xnat_core::import::request::Faults;
use xnat_core::refresh::Hasher;

pub use xnat_core::site::mounts::{ARCHIVE, PREARCHIVE};

/// What one request runs with: the two trees, the users and token settings, and the time.
#[derive(Debug, Clone)]
pub struct Context {
    pub archive: Tree,
    pub prearchive: Tree,
    /// Makes the hasher a refresh uses: the host's digests (WIT `digests`) inside the component.
    pub hasher: fn() -> Hasher,
    pub users: Users,
    /// The token signing key; `None` when tokens are disabled.
    pub secret: Option<Vec<u8>>,
    pub tenant: String,
    /// `""` or `/demo`: the prefix the host strips, used as the cookie path.
    pub base_path: String,
    pub token_ttl: u64,
    pub site_id: String,
    /// Seconds since the Unix epoch.
    pub now: u64,
    pub faults: Faults,
    /// The user a host already verified for this one request (`XNAT_VERIFIED_USER`): its credentials are
    /// not checked again. Only the host sets it, in the instance's own environment.
    pub verified_user: Option<String>,
    /// Origins besides the request's `Host` whose pages may change things, from `XNAT_ALLOWED_ORIGINS`.
    pub allowed_origins: Vec<String>,
    /// Users who may run administrators' services (recovery), from `XNAT_ADMINS` (names separated by `,`).
    pub admins: Vec<String>,
    /// A malformed setting: every request but `GET /` answers 500 with this message.
    pub config_error: Option<String>,
}

impl Context {
    /// A context with no users, no secret and default settings, over two trees.
    pub fn new(archive: Tree, prearchive: Tree, now: u64) -> Context {
        Context {
            archive,
            prearchive,
            hasher: Hasher::default,
            users: Users::default(),
            secret: None,
            tenant: "default".into(),
            base_path: String::new(),
            token_ttl: 3600,
            site_id: "XNAT".into(),
            now,
            faults: Faults::default(),
            admins: Vec::new(),
            allowed_origins: Vec::new(),
            verified_user: None,
            config_error: None,
        }
    }

    /// The context from environment variables (`var` looks one up), as described in the crate docs.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, archive: Tree, prearchive: Tree, now: u64) -> Context {
        let mut ctx = Context::new(archive, prearchive, now);
        let mut problems = Vec::new();
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        match Users::parse(&var("XNAT_USERS").unwrap_or_default()) {
            Ok(users) => ctx.users = users,
            Err(e) => problems.push(format!("XNAT_USERS: {e}")),
        }
        ctx.secret = var("XNAT_SECRET").filter(|s| !s.is_empty()).map(String::into_bytes);
        if let Some(tenant) = set("XNAT_TENANT") {
            let tenant = tenant.trim().to_string();
            if tenant.contains(['|', ':', ';']) || tenant.contains(char::is_whitespace) {
                problems.push(format!("XNAT_TENANT {tenant:?} holds '|', ':', ';' or spaces; choose a plain name"));
            }
            ctx.tenant = tenant;
        }
        if let Some(base) = set("XNAT_BASE_PATH") {
            let base = base.trim().trim_end_matches('/');
            ctx.base_path =
                if base.is_empty() || base.starts_with('/') { base.to_string() } else { format!("/{base}") };
            if ctx.base_path.contains([';', ',', ' ', '\r', '\n']) {
                problems.push(format!("XNAT_BASE_PATH {base:?} cannot be a cookie path; use a plain path like /demo"));
            }
        }
        if let Some(ttl) = set("XNAT_TOKEN_TTL") {
            match ttl.trim().parse::<u64>() {
                Ok(n) if n > 0 => ctx.token_ttl = n,
                _ => problems.push(format!("XNAT_TOKEN_TTL {ttl:?} is not a positive number of seconds")),
            }
        }
        let list = |name: &str| -> Vec<String> {
            let value = var(name).unwrap_or_default();
            value.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect()
        };
        ctx.admins = list("XNAT_ADMINS");
        ctx.allowed_origins = list("XNAT_ALLOWED_ORIGINS");
        ctx.verified_user = set("XNAT_VERIFIED_USER").map(|u| u.trim().to_string());
        if let Some(site) = set("XNAT_SITE_ID") {
            ctx.site_id = site.trim().to_string();
        }
        ctx.faults = Faults::from_env(set);
        if !problems.is_empty() {
            ctx.config_error = Some(format!(
                "the server is misconfigured ({}); the operator must fix the tenant's settings",
                problems.join("; ")
            ));
        }
        ctx
    }
}
