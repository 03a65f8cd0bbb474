//! Who is asking: HTTP Basic on any request, or the `JSESSIONID` cookie holding a signed session token
//! (`crate::credentials::Token`); and the login/session endpoints xnatpy and pyxnat call
//! (`http-surface.md` §2.1, §3.1).
//!
//! A valid cookie is checked first, so a Basic caller that carries the cookie (pyxnat keeps it after
//! `GET /data/JSESSION`) costs no password hash per request; an expired or foreign cookie falls back to
//! Basic credentials when they are present.

use crate::credentials::{AuthError, Token};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, CookieBuilder, SameSite};

use crate::context::Context;
use crate::formats::HttpError;
use crate::message::{Request, Response};
use crate::params::Params;
use crate::sessions;

/// The session cookie's name (XNAT's, which both clients expect).
pub const COOKIE: &str = "JSESSIONID";

/// The body pyxnat recognises as an authentication failure on its first request (`GET /data/JSESSION`).
pub const PYXNAT_401: &str = "The request requires user authentication";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A valid session token from the cookie.
    Cookie(String),
    Basic,
    /// The host checked the credentials for this request (`XNAT_VERIFIED_USER`).
    Host,
}

/// Authenticates the request, or says why not (401; 500 when the settings are broken).
pub fn authenticate(req: &Request, ctx: &Context) -> Result<Principal, HttpError> {
    if let Some(problem) = &ctx.config_error {
        return Err(HttpError::new(500, "io", problem));
    }
    if let Some(user) = ctx.verified_user.as_ref().filter(|u| ctx.users.contains(u)) {
        return Ok(Principal { user: user.clone(), via: Via::Host });
    }
    let mut cookie_problem = None;
    for token in session_cookies(req) {
        match verify(ctx, &token) {
            Ok(user) => return Ok(Principal { user, via: Via::Cookie(token) }),
            Err(e) => {
                cookie_problem.get_or_insert(e);
            }
        }
    }
    if let Some(basic) = req.header("authorization") {
        let Some((user, password)) = basic_credentials(basic) else {
            return Err(HttpError::unauthorized(
                "The Authorization header is not HTTP Basic (Basic base64(user:password)); \
                 send Basic credentials or log in with PUT /data/services/auth",
            ));
        };
        if ctx.users.verify_password(&user, &password) {
            return Ok(Principal { user, via: Via::Basic });
        }
        return Err(HttpError::unauthorized(&format!(
            "Login attempt failed. Please try again. (wrong user name or password{})",
            no_users_hint(ctx)
        )));
    }
    Err(match cookie_problem {
        Some(e) => HttpError::unauthorized(&e.to_string()),
        None => HttpError::unauthorized(&format!(
            "{PYXNAT_401}: send HTTP Basic credentials, or the {COOKIE} cookie that PUT /data/services/auth \
             returns{}",
            no_users_hint(ctx)
        )),
    })
}

fn no_users_hint(ctx: &Context) -> &'static str {
    if ctx.users.is_empty() { "; this server has no users configured (XNAT_USERS)" } else { "" }
}

/// A token's user, if the token is valid for this tenant, its user is still configured, and neither their
/// password nor a logout everywhere ended it (the key it is checked with, `sessions::session_key`).
pub fn verify(ctx: &Context, token: &str) -> Result<String, AuthError> {
    let claimed = Token::claimed_user(token)?;
    if !ctx.users.contains(&claimed) {
        // Unchecked, the name proves nothing: whether it is a user is not told (a removed user's tokens
        // end here too).
        ctx.secret.as_ref().ok_or(AuthError::NoSecret)?;
        return Err(AuthError::BadSignature);
    }
    let key = sessions::session_key(ctx, &claimed)?;
    Token::verify(&key, &ctx.tenant, token, ctx.now)
}

/// A new session token for `user` (whose credentials the caller checked).
pub fn issue(ctx: &Context, user: &str) -> Result<String, AuthError> {
    Token::issue(&sessions::session_key(ctx, user)?, &ctx.tenant, user, ctx.now, ctx.token_ttl)
}

/// Every `JSESSIONID` value in the request's `Cookie` headers (a client may hold more than one; a
/// quoted value counts without its quotes; a malformed pair is skipped).
pub fn session_cookies(req: &Request) -> Vec<String> {
    req.headers_named("cookie")
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == COOKIE && !c.value_trimmed().is_empty())
        .map(|c| c.value_trimmed().to_string())
        .collect()
}

/// `Basic base64(user:password)` → (user, password).
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `Set-Cookie` for a token, on the tenant's base path.
pub fn set_cookie(ctx: &Context, token: &str) -> String {
    session_cookie(ctx, token).to_string()
}

/// `Set-Cookie` that makes the client drop the cookie.
pub fn expire_cookie(ctx: &Context) -> String {
    session_cookie(ctx, "").max_age(Duration::ZERO).expires(OffsetDateTime::UNIX_EPOCH).to_string()
}

/// The session cookie, as XNAT sets it: on the tenant's base path, hidden from scripts, sent on
/// same-site requests and top-level navigation only.
fn session_cookie<'c>(ctx: &'c Context, token: &'c str) -> CookieBuilder<'c> {
    Cookie::build((COOKIE, token)).path(cookie_path(ctx)).http_only(true).same_site(SameSite::Lax)
}

fn cookie_path(ctx: &Context) -> &str {
    if ctx.base_path.is_empty() { "/" } else { &ctx.base_path }
}

/// A fresh token for `user` as the response to a login or heartbeat: 200 with the token as body and the
/// cookie set; with no secret configured, 200 with an empty body (xnatpy then falls back to Basic).
fn session_response(ctx: &Context, user: &str) -> Result<Response, HttpError> {
    if ctx.secret.is_none() {
        return Ok(Response::empty());
    }
    let token =
        issue(ctx, user).map_err(|e| HttpError::new(500, "io", &format!("cannot issue a session token: {e}")))?;
    Ok(Response::text(token.clone()).with_header("set-cookie", &set_cookie(ctx, &token)))
}

/// `PUT|POST /data/services/auth`: form `username`/`password` (or `j_username`/`j_password`); without a
/// user name in the form, the request's own credentials (Basic or cookie).
pub fn login(req: &Request, params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    if let Some(problem) = &ctx.config_error {
        return Err(HttpError::new(500, "io", problem));
    }
    let user = params.get("username").or_else(|| params.get("j_username"));
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        let who = authenticate(req, ctx)?;
        return session_response(ctx, &who.user);
    };
    let password = params.get("password").or_else(|| params.get("j_password")).unwrap_or("");
    if !ctx.users.verify_password(user, password) {
        return Err(HttpError::unauthorized(&format!(
            "Login attempt failed. Please try again. (wrong user name or password{})",
            no_users_hint(ctx)
        )));
    }
    session_response(ctx, user)
}

/// `GET /data/JSESSION`: the heartbeat (cookie callers) and the session for Basic callers: a fresh token,
/// so an active client's session keeps going.
pub fn jsession(who: &Principal, ctx: &Context) -> Result<Response, HttpError> {
    session_response(ctx, &who.user)
}

/// `DELETE /data/JSESSION`: the cookie is expired (a caller whose cookie is genuine but has expired may
/// still log out). With `everywhere=true` (ours), every session token of the caller issued so far stops
/// working, wherever it was copied to (`sessions.rs`).
pub fn logout(req: &Request, params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let genuine = |t: &String| match verify(ctx, t) {
        Ok(_) | Err(AuthError::Expired { .. }) => true,
        Err(_) => false,
    };
    let cookies = session_cookies(req);
    let user = match cookies.iter().find(|t| genuine(t)) {
        Some(token) => Token::claimed_user(token).map_err(|e| HttpError::unauthorized(&e.to_string()))?,
        None => authenticate(req, ctx)?.user,
    };
    if params.value("everywhere").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        sessions::end_all(ctx, &user).map_err(|e| HttpError::new(500, "io", &e.to_string()))?;
    }
    Ok(Response::empty().with_header("set-cookie", &expire_cookie(ctx)))
}

/// `GET /data/auth`: the text xnatpy's `check_auth` matches.
pub fn whoami(who: &Principal) -> Response {
    Response::text(format!("User '{}' is logged in", who.user))
}
