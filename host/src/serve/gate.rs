//! The door of a tenant: who is asking, checked by the server before a request may take one of the
//! tenant's slots or send its body, with the same rules and answers as the HTTP component
//! (`xnat_http::routes::admit`, run natively here).
//!
//! - A request that cannot authenticate gets its 401 at once: no slot, no instance, its body never read.
//! - A path open to anyone (the banner, the login, the logout) may carry a small body only (a login form):
//!   more is 413 before it is read.
//! - Verified Basic credentials are remembered for [`CACHE_TTL`], keyed by an HMAC of the tenant and the
//!   header under a key made at start (the cache holds no password; it dies with the process, so a changed
//!   configuration, which needs a restart, empties it). A remembered caller costs a hash lookup, not argon2.
//! - Failed Basic logins are counted per user name (known or not, so the answers tell nothing about which
//!   users exist) and per client address (form logins per address); after [`FREE_FAILURES`] for a name, or
//!   [`FREE_FAILURES_PER_ADDRESS`] for an address, the next attempts wait [`FIRST_WAIT`], doubling with
//!   each further failure up to [`MAX_BACKOFF`],
//!   and gets 429 with `Retry-After` without any password being checked. Verified callers are remembered
//!   before that check, so a user already logged in is not locked out by someone guessing their password;
//!   and an address a user logged in from is known for that user for [`KNOWN_ADDRESS_TTL`]: there, guesses
//!   of the name from elsewhere do not hold them back (only the address's own failures do). A success
//!   forgives its address, never the name: someone else's logins do not reset a guesser's wait.
//!
//! The component is told the verified user in `XNAT_VERIFIED_USER` (its own instance's environment, which
//! no client can reach) and does not hash the password again. Not for routing or serving (`server.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST, HeaderMap, TRANSFER_ENCODING};
use hyper::{Method, Uri};
use sha2::Sha256;
use xnat_http::formats::HttpError;

use super::tenant::Tenant;

/// How long verified credentials are remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// The largest body a request without credentials may send (a login form is well under 1 KiB).
pub const OPEN_BODY_LIMIT: u64 = 16 * 1024;
/// The longest a request without credentials may take to send its body (or the tenant's time limit).
pub const OPEN_BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Failed logins allowed per user name before its attempts are slowed down.
pub const FREE_FAILURES: u32 = 5;
/// Failed logins allowed per client address (one address may serve many people: a NAT, a proxy).
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The wait once the free failures are used up.
pub const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait imposed after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long an address a user logged in from stays known for that user (see the module's doc).
pub const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many callers the gate remembers at most (verified or failed); beyond, the oldest are forgotten.
const MAX_REMEMBERED: usize = 65_536;
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(900);

/// What the gate decided about a request.
#[derive(Debug)]
pub enum Admission {
    /// The caller is this user: the component is told so.
    Verified(String),
    /// A path open to anyone: the component answers (it authenticates a login from the body).
    Open,
    /// Refused here, with this status, message and `Retry-After` (seconds) if any.
    Refused(Refusal),
}

/// An answer of the gate's own.
#[derive(Debug)]
pub struct Refusal {
    /// The component's answer it would have given (401 with XNAT's texts), or the gate's (413, 411, 429).
    pub response: xnat_http::Response,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

/// Who failed to log in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Culprit {
    User { tenant: String, user: String },
    Client(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

/// The gate of every tenant of a server.
pub struct Gate {
    key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    failures: Mutex<HashMap<Culprit, Failures>>,
    /// (tenant, user, address) of successful logins, and until when the address is known for the user.
    known: Mutex<HashMap<(String, String, IpAddr), Instant>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        Gate { key, verified: Mutex::default(), failures: Mutex::default(), known: Mutex::default() }
    }

    /// Decides about a request to `tenant` (its target already without the tenant's prefix) from `client`.
    pub async fn admit(
        &self,
        tenant: &Tenant,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Admission {
        let req = request(method, uri, headers);
        let basic = req.header("authorization").and_then(xnat_http::auth::basic_credentials);
        let remembered = basic.as_ref().and_then(|_| self.remembered(tenant, &req));
        if let Some(user) = remembered {
            return Admission::Verified(user);
        }
        let user = basic.as_ref().map(|(user, _)| user.as_str());
        let culprits = culprits(tenant, user, client);
        let known = user.is_some_and(|user| self.is_known(tenant, user, client));
        let judged: Vec<Culprit> =
            culprits.iter().filter(|c| !(known && matches!(c, Culprit::User { .. }))).cloned().collect();
        if let Some(wait) = self.blocked(&judged) {
            return Admission::Refused(too_many(wait));
        }
        let mut ctx = tenant.auth.clone();
        ctx.now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let checked = {
            let req = req.clone();
            tokio::task::spawn_blocking(move || xnat_http::routes::admit(&req, &ctx)).await
        };
        let verdict = match checked {
            Ok(verdict) => verdict,
            Err(e) => Err(HttpError::new(500, "io", &format!("the credential check failed: {e}"))),
        };
        match verdict {
            Ok(None) => open(headers).map_or(Admission::Open, Admission::Refused),
            Ok(Some(principal)) => {
                if basic.is_some() {
                    self.remember(tenant, &req, &principal.user);
                    self.know(tenant, &principal.user, client);
                    self.forgive(&Culprit::Client(client));
                }
                Admission::Verified(principal.user)
            }
            Err(e) => {
                if basic.is_some() && e.status == 401 {
                    self.fail(&culprits);
                }
                Admission::Refused(Refusal { response: e.response(false), retry_after: None })
            }
        }
    }

    /// A login the component refused (401 to `PUT /data/services/auth` with a form): counts against the
    /// client, as a failed Basic login does.
    pub fn failed_login(&self, client: IpAddr) {
        self.fail(&[Culprit::Client(client)]);
    }

    /// Whether `client` must wait before its next login, and how long (seconds).
    pub fn login_wait(&self, client: IpAddr) -> Option<Refusal> {
        self.blocked(&[Culprit::Client(client)]).map(too_many)
    }

    fn cache_key(&self, tenant: &Tenant, authorization: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(tenant.name.as_bytes());
        mac.update(&[0]);
        mac.update(authorization.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn remembered(&self, tenant: &Tenant, req: &xnat_http::Request) -> Option<String> {
        let key = self.cache_key(tenant, req.header("authorization")?);
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.get(&key).filter(|(_, until)| *until > Instant::now()).map(|(user, _)| user.clone())
    }

    fn remember(&self, tenant: &Tenant, req: &xnat_http::Request, user: &str) {
        let Some(authorization) = req.header("authorization") else { return };
        let key = self.cache_key(tenant, authorization);
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, (_, until)| *until > now);
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(key, (user.to_owned(), now + CACHE_TTL));
    }

    /// The longest wait any of `culprits` still has to sit out.
    fn blocked(&self, culprits: &[Culprit]) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        culprits
            .iter()
            .filter_map(|c| failures.get(c))
            .map(|f| f.blocked_until.saturating_duration_since(now))
            .max()
            .filter(|wait| !wait.is_zero())
    }

    fn fail(&self, culprits: &[Culprit]) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
            if failures.len() >= MAX_REMEMBERED {
                failures.clear();
            }
        }
        for culprit in culprits {
            let f = failures.entry(culprit.clone()).or_insert(Failures { count: 0, last: now, blocked_until: now });
            if now.duration_since(f.last) >= FAILURE_MEMORY {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
            let free = match culprit {
                Culprit::User { .. } => FREE_FAILURES,
                Culprit::Client(_) => FREE_FAILURES_PER_ADDRESS,
            };
            f.blocked_until = now + backoff(f.count, free);
        }
    }

    fn forgive(&self, culprit: &Culprit) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(culprit);
    }

    fn is_known(&self, tenant: &Tenant, user: &str, client: IpAddr) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.name.clone(), user.to_owned(), client);
        known.get(&key).is_some_and(|until| *until > Instant::now())
    }

    fn know(&self, tenant: &Tenant, user: &str, client: IpAddr) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if known.len() >= MAX_REMEMBERED {
            known.retain(|_, until| *until > now);
            if known.len() >= MAX_REMEMBERED {
                known.clear();
            }
        }
        known.insert((tenant.name.clone(), user.to_owned(), client), now + KNOWN_ADDRESS_TTL);
    }
}

/// The wait after `count` failures: none before the `free`-th, then [`FIRST_WAIT`], doubling with each
/// further failure, up to [`MAX_BACKOFF`].
fn backoff(count: u32, free: u32) -> Duration {
    match count.checked_sub(free) {
        None => Duration::ZERO,
        Some(doublings) => (FIRST_WAIT * (1u32 << doublings.min(16))).min(MAX_BACKOFF),
    }
}

fn culprits(tenant: &Tenant, user: Option<&str>, client: IpAddr) -> Vec<Culprit> {
    let mut culprits = vec![Culprit::Client(client)];
    if let Some(user) = user {
        culprits.push(Culprit::User { tenant: tenant.name.clone(), user: user.to_owned() });
    }
    culprits
}

fn too_many(wait: Duration) -> Refusal {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!(
        "too many failed logins for this user name or from this address; nothing was checked. Try again in \
         {seconds} s (each further failure doubles the wait, up to {} s)",
        MAX_BACKOFF.as_secs()
    );
    Refusal { response: HttpError::new(429, "too-many-requests", &message).response(false), retry_after: Some(seconds) }
}

/// A request without credentials may carry a small body only: its declared length must be small (413), and
/// it must declare one (411).
fn open(headers: &HeaderMap) -> Option<Refusal> {
    let refuse = |status: u16, message: String| {
        Some(Refusal { response: HttpError::new(status, "bad-request", &message).response(false), retry_after: None })
    };
    match headers.get(CONTENT_LENGTH).map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok())) {
        Some(Some(length)) if length > OPEN_BODY_LIMIT => refuse(
            413,
            format!(
                "a request without credentials may send at most {OPEN_BODY_LIMIT} bytes (a login form); this one \
                 announced {length}. Log in first, or send HTTP Basic credentials"
            ),
        ),
        Some(None) => refuse(400, "the Content-Length header is not a number".to_owned()),
        None if headers.contains_key(TRANSFER_ENCODING) => refuse(
            411,
            format!("a request without credentials must say its length (Content-Length, at most {OPEN_BODY_LIMIT})"),
        ),
        _ => None,
    }
}

/// Reads the small body of a request without credentials before it may take a slot: at most
/// [`OPEN_BODY_LIMIT`] bytes (413 beyond), all of it within `deadline` (408: a client that trickles its
/// body holds nothing of the tenant's while it does).
pub async fn read_open_body(body: Incoming, deadline: Duration) -> Result<Bytes, Refusal> {
    let refuse = |status: u16, message: String| Refusal {
        response: HttpError::new(status, "bad-request", &message).response(false).with_header("connection", "close"),
        retry_after: None,
    };
    let limited = http_body_util::Limited::new(body, OPEN_BODY_LIMIT as usize);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(refuse(
            413,
            format!("a request without credentials may send at most {OPEN_BODY_LIMIT} bytes (a login form)"),
        )),
        Ok(Err(e)) => Err(refuse(400, format!("the request body could not be read: {e}"))),
        Err(_) => Err(refuse(
            408,
            format!("the request body did not arrive within {deadline:?}; the connection is closed. Send it at once"),
        )),
    }
}

/// The request as the component's admission sees it: method, target and the headers it reads.
fn request(method: &Method, uri: &Uri, headers: &HeaderMap) -> xnat_http::Request {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = xnat_http::Request::new(method.as_str(), target);
    for name in [AUTHORIZATION, COOKIE, HOST] {
        for value in headers.get_all(&name) {
            req.append_header(name.as_str(), value.as_bytes());
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_failures_and_is_capped() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n, 5).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 0, 5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX, 5), MAX_BACKOFF);
        assert_eq!(backoff(19, 20), Duration::ZERO);
        assert_eq!(backoff(20, 20), FIRST_WAIT);
    }

    #[test]
    fn a_body_without_credentials_must_be_small_and_say_its_length() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.append(hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
            }
            h
        };
        let status = |h: HeaderMap| open(&h).map(|r| r.response.status.as_u16());
        assert_eq!(status(headers(&[])), None);
        assert_eq!(status(headers(&[("content-length", "60")])), None);
        assert_eq!(status(headers(&[("content-length", "16384")])), None);
        assert_eq!(status(headers(&[("content-length", "1000000")])), Some(413));
        assert_eq!(status(headers(&[("content-length", "x")])), Some(400));
        assert_eq!(status(headers(&[("transfer-encoding", "chunked")])), Some(411));
    }
}
