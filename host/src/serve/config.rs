//! The server's configuration: a TOML file that names the address to listen on and the tenants — each a
//! prearchive and an archive directory, limits and users with argon2 password hashes. Parsing and checking
//! live here; nothing in this file touches wasmtime or the network.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! max_connections = 1024              # optional: connections open at once; more get 503 at once
//! max_connections_per_client = 64     # optional: the same, per client address
//! trusted_proxies = ["10.0.0.5"]      # optional: reverse proxies whose X-Forwarded-For names the client
//!
//! [[tenant]]
//! name = "demo"                       # the URL prefix: http://host:port/demo/data/...
//! prearchive = "/data/xnat/prearchive" # relative paths are relative to this file
//! archive = "/data/xnat/archive"
//! site_id = "XNAT"                    # optional: accession numbers XNAT_E00001 (default XNAT)
//! memory_mib = 512                    # optional: each request's memory cap, 8 to 4096 (default: --memory)
//! request_timeout_secs = 300          # optional: each request's time limit (default: --timeout, else 300)
//! max_concurrent = 4                  # optional: requests served at once; more wait briefly, then 503
//! secret = "..."                      # optional: signs session tokens; random per start when absent
//! token_ttl_secs = 3600               # optional: how long a session token lives (default: the component's)
//!
//! [[tenant.user]]
//! name = "admin"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `xnat-archive hash-password`
//! admin = true                        # optional: may run POST /data/services/archive/recover
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::connections::ConnectionLimits;
use super::proxies::TrustedProxies;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Argon2, PasswordHash};
use rand::RngCore as _;
use serde::Deserialize;

/// Where the server listens when neither the configuration nor `--listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// A request's time limit when neither the tenant nor `--timeout` sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Requests a tenant serves at once unless it says otherwise.
pub const DEFAULT_MAX_CONCURRENT: u32 = 4;
/// The largest memory cap a tenant may set: a 32-bit component cannot address more.
const MAX_MEMORY_MIB: u64 = 4096;
/// The smallest: the HTTP component starts with 4 MiB of memory (`guest/http/build.rs`), and a request needs
/// more than none beyond it.
const MIN_MEMORY_MIB: u64 = 8;
/// The most requests one tenant may run at once (each holds an instance slot).
const MAX_CONCURRENT: u32 = 256;

/// The checked configuration: what [`super::serve`] runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// How many connections may be open, in all and per client address.
    pub connections: ConnectionLimits,
    /// The reverse proxies in front of the server, whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// The tenants, in the file's order; their names are unique.
    pub tenants: Vec<TenantConfig>,
}

/// One tenant: a pair of directory grants, users and limits (D18).
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// The URL prefix (`/<name>/data/...`) and the name bound into its session tokens.
    pub name: String,
    /// The prearchive root, granted read-write at `/prearchive`.
    pub prearchive: PathBuf,
    /// The archive root, granted read-write at `/archive`.
    pub archive: PathBuf,
    /// The site id of new accession numbers (`<SITE>_E00001`).
    pub site_id: String,
    /// Each request's memory cap, in bytes.
    pub memory_bytes: usize,
    /// Each request's time limit.
    pub timeout: Duration,
    /// How many requests run at once.
    pub max_concurrent: u32,
    /// The key that signs session tokens; `None`: a random one per start.
    pub secret: Option<String>,
    /// How long a session token lives, in seconds; `None`: the component's default.
    pub token_ttl_secs: Option<u64>,
    /// The users and their argon2 password hashes (PHC strings), in the file's order.
    pub users: Vec<User>,
}

/// A user of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// An argon2 hash in PHC form (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// May run the administrators' services (recovery).
    pub admin: bool,
}

/// Limits for tenants that do not set their own (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Memory cap per request, in bytes.
    pub memory_bytes: usize,
    /// Time limit per request.
    pub timeout: Duration,
}

impl Defaults {
    /// These limits, unless the memory cap (`--memory`) is less than a request of the HTTP component needs.
    pub fn checked(self) -> anyhow::Result<Defaults> {
        if (self.memory_bytes as u64) < MIN_MEMORY_MIB << 20 {
            bail!(
                "--memory {} is less than a request of the HTTP component needs (it starts with 4 MiB); give \
                 {MIN_MEMORY_MIB} MiB or more",
                self.memory_bytes >> 20
            );
        }
        Ok(self)
    }
}

/// The file as written (before checking).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    tenant: Vec<TenantFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    name: String,
    prearchive: PathBuf,
    archive: PathBuf,
    site_id: Option<String>,
    memory_mib: Option<u64>,
    request_timeout_secs: Option<f64>,
    max_concurrent: Option<u32>,
    secret: Option<String>,
    token_ttl_secs: Option<u64>,
    #[serde(default)]
    user: Vec<UserFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    name: String,
    password_hash: String,
    #[serde(default)]
    admin: bool,
}

impl Config {
    /// Reads and checks a configuration file. Relative directories are taken relative to the file.
    pub fn load(path: &Path, defaults: Defaults) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}; check the path", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base, defaults).with_context(|| format!("configuration {}", path.display()))
    }

    /// Parses and checks a configuration; `base` is the folder relative directories are taken from.
    pub fn parse(text: &str, base: &Path, defaults: Defaults) -> anyhow::Result<Config> {
        let file: File = toml::from_str(text)?;
        let listen = parse_listen(file.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        if file.tenant.is_empty() {
            bail!("no tenant: add at least one [[tenant]] with a name, a prearchive, an archive and a [[tenant.user]]");
        }
        let mut tenants = Vec::new();
        for tenant in file.tenant {
            let name = tenant.name.clone();
            tenants.push(check_tenant(tenant, base, defaults).with_context(|| format!("tenant '{name}'"))?);
        }
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            total: file.max_connections.unwrap_or(defaults.total),
            per_client: file.max_connections_per_client.unwrap_or(defaults.per_client),
        };
        if connections.total == 0 || connections.per_client == 0 {
            bail!("max_connections and max_connections_per_client must be at least 1");
        }
        let trusted_proxies = TrustedProxies::parse(&file.trusted_proxies)?;
        let config = Config { listen, connections, trusted_proxies, tenants };
        config.check_shared()?;
        Ok(config)
    }

    /// The configuration of `serve` without a file: one tenant over a demo site.
    pub fn demo(name: &str, prearchive: PathBuf, archive: PathBuf, users: Vec<User>, defaults: Defaults) -> Config {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            connections: ConnectionLimits::default(),
            trusted_proxies: TrustedProxies::default(),
            tenants: vec![TenantConfig {
                name: name.to_owned(),
                prearchive,
                archive,
                site_id: "XNAT".to_owned(),
                memory_bytes: defaults.memory_bytes,
                timeout: defaults.timeout,
                max_concurrent: DEFAULT_MAX_CONCURRENT,
                secret: None,
                token_ttl_secs: None,
                users,
            }],
        }
    }

    /// Checks across tenants: unique names, and no directory shared or nested between grants (a tenant
    /// could otherwise reach another's data, or its archive its own prearchive).
    fn check_shared(&self) -> anyhow::Result<()> {
        let mut names = HashSet::new();
        for tenant in &self.tenants {
            if !names.insert(tenant.name.to_ascii_lowercase()) {
                bail!("two tenants are named '{}' (names are compared ignoring case); rename one", tenant.name);
            }
        }
        let grants: Vec<(&str, &str, &Path)> = self
            .tenants
            .iter()
            .flat_map(|t| [(t.name.as_str(), "prearchive", t.prearchive.as_path()), (&t.name, "archive", &t.archive)])
            .collect();
        for (i, (tenant_a, what_a, a)) in grants.iter().enumerate() {
            for (tenant_b, what_b, b) in &grants[i + 1..] {
                if a.starts_with(b) || b.starts_with(a) {
                    bail!(
                        "tenant '{tenant_a}' {what_a} {} and tenant '{tenant_b}' {what_b} {} overlap (the same \
                         directory, or one inside the other); give every grant a directory of its own",
                        a.display(),
                        b.display()
                    );
                }
            }
        }
        Ok(())
    }
}

/// `--listen` and the file's `listen`: an IP address and a port (0 picks a free port).
pub fn parse_listen(value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().map_err(|_| {
        anyhow::anyhow!("listen address '{value}' is not an IP address and port, such as 127.0.0.1:8080 or [::]:8080")
    })
}

fn check_tenant(t: TenantFile, base: &Path, defaults: Defaults) -> anyhow::Result<TenantConfig> {
    check_name(&t.name)?;
    let prearchive = directory(base, &t.prearchive, "prearchive")?;
    let archive = directory(base, &t.archive, "archive")?;
    let site_id = t.site_id.unwrap_or_else(|| "XNAT".to_owned());
    if site_id.is_empty() || !site_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("site_id '{site_id}' must be letters, digits and _ (accession numbers are <site_id>_E00001)");
    }
    let memory_bytes = match t.memory_mib {
        None => defaults.memory_bytes,
        Some(mib @ MIN_MEMORY_MIB..=MAX_MEMORY_MIB) => {
            usize::try_from(mib << 20).context("memory_mib does not fit this machine")?
        }
        Some(mib) => bail!(
            "memory_mib = {mib}: give a number of MiB from {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} (the HTTP component \
             starts with 4 MiB)"
        ),
    };
    let timeout = match t.request_timeout_secs {
        None => defaults.timeout,
        Some(secs) => Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("request_timeout_secs = {secs}: give a positive number of seconds"))?,
    };
    let max_concurrent = t.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
    if !(1..=MAX_CONCURRENT).contains(&max_concurrent) {
        bail!("max_concurrent = {max_concurrent}: give a number from 1 to {MAX_CONCURRENT}");
    }
    if let Some(secret) = &t.secret
        && secret.len() < 16
    {
        bail!("secret is too short ({} characters): use at least 16, e.g. 32 random hex digits", secret.len());
    }
    if t.token_ttl_secs == Some(0) {
        bail!("token_ttl_secs = 0: give a positive number of seconds, or leave it out");
    }
    if t.user.is_empty() {
        bail!("no users: add a [[tenant.user]] with a name and a password_hash (`xnat-archive hash-password`)");
    }
    let mut users = Vec::new();
    let mut seen = HashSet::new();
    for user in t.user {
        check_user(&user).with_context(|| format!("user '{}'", user.name))?;
        if !seen.insert(user.name.clone()) {
            bail!("user '{}' is listed twice", user.name);
        }
        users.push(User { name: user.name, password_hash: user.password_hash, admin: user.admin });
    }
    Ok(TenantConfig {
        name: t.name,
        prearchive,
        archive,
        site_id,
        memory_bytes,
        timeout,
        max_concurrent,
        secret: t.secret,
        token_ttl_secs: t.token_ttl_secs,
        users,
    })
}

/// A tenant name is one URL path segment that needs no encoding: letters, digits, `-` and `_`.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("the tenant name '{name}' must be 1 to 64 letters, digits, - or _ (it is the URL prefix /<name>/)");
    }
    Ok(())
}

fn check_user(user: &UserFile) -> anyhow::Result<()> {
    let name = &user.name;
    if name.is_empty() || name.chars().any(|c| matches!(c, ':' | ';' | '|') || c.is_whitespace() || c.is_control()) {
        bail!("a user name must not be empty nor contain ':', ';', '|' or spaces (HTTP Basic auth splits at ':')");
    }
    let hash = PasswordHash::new(&user.password_hash).map_err(|e| {
        anyhow::anyhow!("password_hash is not a PHC hash string ({e}); make one with `xnat-archive hash-password`")
    })?;
    if !matches!(hash.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") || hash.hash.is_none() {
        bail!(
            "password_hash is a {} hash, not an argon2 one; make one with `xnat-archive hash-password`",
            hash.algorithm
        );
    }
    // The hashes travel to the component in one variable, `user:hash` pairs joined with ';'.
    if user.password_hash.contains(';') {
        bail!("password_hash must not contain ';'");
    }
    Ok(())
}

/// A directory from the file, relative to `base`, that must exist; returned absolute and canonical, so
/// that overlaps between grants are found whatever the spelling.
fn directory(base: &Path, path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let full = base.join(path);
    match std::fs::canonicalize(&full) {
        Ok(dir) if dir.is_dir() => Ok(dir),
        Ok(_) => bail!("{what} {} is not a directory", full.display()),
        Err(e) => bail!("{what} {} cannot be opened ({e}); create it or fix the path", full.display()),
    }
}

/// An argon2id hash of `password` in PHC form, with a random salt: what `password_hash` takes.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("cannot encode the salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// A random password of 20 letters and digits (the demo's `admin`).
pub fn random_password() -> String {
    use rand::Rng as _;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(20).map(char::from).collect()
}

/// A random token-signing key: 32 bytes as hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults { memory_bytes: 64 << 20, timeout: Duration::from_secs(9) };

    fn site() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a/pre", "a/arc", "b/pre", "b/arc"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        (dir, hash_password("pw").unwrap())
    }

    fn tenant(name: &str, pre: &str, arc: &str, hash: &str) -> String {
        format!(
            "[[tenant]]\nname = \"{name}\"\nprearchive = \"{pre}\"\narchive = \"{arc}\"\n\
             [[tenant.user]]\nname = \"u\"\npassword_hash = \"{hash}\"\n"
        )
    }

    #[test]
    fn a_good_file_with_defaults() {
        let (dir, hash) = site();
        let text = format!(
            "listen = \"127.0.0.1:0\"\n{}{}",
            tenant("A", "a/pre", "a/arc", &hash),
            tenant("B", "b/pre", "b/arc", &hash).replace("[[tenant.user]]", "memory_mib = 32\n[[tenant.user]]")
        );
        let config = Config::parse(&text, dir.path(), DEFAULTS).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.connections, ConnectionLimits { total: 1024, per_client: 64 });
        assert_eq!(config.tenants.len(), 2);
        let (a, b) = (&config.tenants[0], &config.tenants[1]);
        assert_eq!(a.memory_bytes, 64 << 20);
        assert_eq!(b.memory_bytes, 32 << 20);
        assert_eq!(a.timeout, Duration::from_secs(9));
        assert_eq!(a.max_concurrent, DEFAULT_MAX_CONCURRENT);
        assert_eq!(a.site_id, "XNAT");
        assert!(a.prearchive.is_absolute() && a.prearchive.ends_with("a/pre"));
        assert_eq!(a.users, vec![User { name: "u".into(), password_hash: hash.clone(), admin: false }]);
        // An administrator: the component learns the name (XNAT_ADMINS); others stay users.
        let admin = format!("{}admin = true\n", tenant("A", "a/pre", "a/arc", &hash));
        let config = Config::parse(&admin, dir.path(), DEFAULTS).unwrap();
        assert!(config.tenants[0].users[0].admin);
        let tenant = crate::serve::tenant::Tenant::new(&config.tenants[0]);
        assert!(tenant.env.contains(&("XNAT_ADMINS", "u".into())), "{:?}", tenant.env);
        assert!(!crate::serve::tenant::Tenant::new(a).env.iter().any(|(k, _)| *k == "XNAT_ADMINS"));
    }

    fn error(text: &str, dir: &Path) -> String {
        format!("{:#}", Config::parse(text, dir, DEFAULTS).unwrap_err())
    }

    #[test]
    fn mistakes_are_named() {
        let (dir, hash) = site();
        let d = dir.path();
        let a = tenant("A", "a/pre", "a/arc", &hash);
        assert!(error("", d).contains("no tenant"));
        assert!(error(&format!("listen = \"localhost\"\n{a}"), d).contains("not an IP address and port"));
        assert!(error(&format!("{a}{a}"), d).contains("two tenants are named 'A'"));
        assert!(error(&tenant("a b", "a/pre", "a/arc", &hash), d).contains("must be 1 to 64 letters"));
        assert!(error(&tenant("..", "a/pre", "a/arc", &hash), d).contains("must be 1 to 64 letters"));
        assert!(error(&tenant("A", "a/missing", "a/arc", &hash), d).contains("create it or fix the path"));
        assert!(error(&tenant("A", "a/pre", "a/pre", &hash), d).contains("overlap"));
        assert!(error(&tenant("A", "a", "a/arc", &hash), d).contains("overlap"));
        let shared = format!("{a}{}", tenant("B", "b/pre", "a/arc", &hash));
        assert!(error(&shared, d).contains("tenant 'A' archive"));
        assert!(error(&tenant("A", "a/pre", "a/arc", "secret"), d).contains("not a PHC hash string"));
        let bcrypt = "$2b$12$abcdefghijklmnopqrstuu5s1aSbO5kCQq6eT6J2x3d3F0iY2Q2eS";
        assert!(error(&tenant("A", "a/pre", "a/arc", bcrypt), d).contains("hash-password"));
        let no_user = "[[tenant]]\nname = \"A\"\nprearchive = \"a/pre\"\narchive = \"a/arc\"\n";
        assert!(error(no_user, d).contains("no users"));
        let twice = a.clone() + &format!("[[tenant.user]]\nname = \"u\"\npassword_hash = \"{hash}\"\n");
        assert!(error(&twice, d).contains("listed twice"));
        let bad_user = a.replace("name = \"u\"", "name = \"u:v\"");
        assert!(error(&bad_user, d).contains("must not be empty nor contain ':'"));
        let set = |field: &str| a.replace("[[tenant.user]]", &format!("{field}\n[[tenant.user]]"));
        assert!(error(&set("memory_mib = 0"), d).contains("from 8 to 4096"));
        assert!(error(&set("memory_mib = 7"), d).contains("from 8 to 4096"));
        let small = Defaults { memory_bytes: 4 << 20, ..DEFAULTS };
        assert!(format!("{:#}", small.checked().unwrap_err()).contains("--memory 4 is less than"));
        assert!(DEFAULTS.checked().is_ok());
        assert!(error(&set("request_timeout_secs = 0"), d).contains("positive number of seconds"));
        assert!(error(&set("max_concurrent = 0"), d).contains("from 1 to 256"));
        assert!(error(&set("secret = \"short\""), d).contains("too short"));
        assert!(error(&set("token_ttl_secs = 0"), d).contains("token_ttl_secs = 0: give a positive number"));
        assert!(error(&set("token_ttl_secs = -5"), d).contains("token_ttl_secs"));
        assert!(error(&set("site_id = \"X-1\""), d).contains("letters, digits and _"));
        assert!(error(&set("memroy_mib = 3"), d).contains("unknown field `memroy_mib`"));
        assert!(error(&format!("max_connections = 0\n{a}"), d).contains("at least 1"));
        assert!(error(&format!("max_connections_per_client = 0\n{a}"), d).contains("at least 1"));
        let capped = Config::parse(&format!("max_connections = 10\nmax_connections_per_client = 2\n{a}"), d, DEFAULTS);
        assert_eq!(capped.unwrap().connections, ConnectionLimits { total: 10, per_client: 2 });
    }

    #[test]
    fn hashes_verify() {
        use argon2::password_hash::PasswordVerifier as _;
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
        assert_eq!(random_password().len(), 20);
        assert_eq!(random_secret().len(), 64);
    }
}
