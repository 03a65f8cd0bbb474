//! Users, passwords and session tokens of the HTTP surface (D17).
//!
//! * Users come from the host's configuration as `user:<argon2 PHC string>` entries separated by `;`
//!   ([`Users::parse`]). Passwords are checked with the `argon2` crate against the PHC string, whose own
//!   parameters (algorithm, memory, passes) are used.
//! * Session tokens are stateless and signed, so any instance of the component, on any host that shares the
//!   tenant's secret, can check them: `base64url(tenant|user|expiry)` `.` `base64url(HMAC-SHA256(secret,
//!   payload))` ([`Token`]). The tenant is bound into the token, so a token of one tenant is refused by
//!   another even if their secrets were equal. Nothing is stored, so logging out cannot revoke a token: it
//!   only expires the cookie; tokens are short-lived instead.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a token or a user list was refused. The message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The user list or a setting is malformed (a configuration error of the host).
    #[error("{0}")]
    Config(String),
    /// No secret is configured, so no token can be issued or checked.
    #[error("session tokens are disabled on this server (no signing secret); authenticate with HTTP Basic")]
    NoSecret,
    /// Not a token of ours.
    #[error("the session token is malformed; log in again (PUT /data/services/auth)")]
    Malformed,
    /// The signature does not match: forged, altered, or signed with another secret.
    #[error(
        "the session token is not valid here (bad signature: altered, from another server, or ended by a new \
         password or a logout everywhere); log in again (PUT /data/services/auth)"
    )]
    BadSignature,
    /// A genuine token, but of another tenant.
    #[error("the session token belongs to another site; log in to this one (PUT /data/services/auth)")]
    OtherTenant,
    /// A genuine token whose time is up.
    #[error("the session of {user} expired; log in again (PUT /data/services/auth)")]
    Expired { user: String },
}

/// The configured users and their password hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    entries: Vec<(String, String)>,
}

impl Users {
    /// Parses `user:<PHC>;user2:<PHC>` (blank entries and surrounding spaces ignored). Every hash must be a
    /// PHC string of an Argon2 variant; user names must be unique and hold no `:`, `|`, `;` or spaces.
    pub fn parse(config: &str) -> Result<Users, AuthError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (n, entry) in config.split(';').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some((user, phc)) = entry.split_once(':') else {
                return Err(AuthError::Config(format!(
                    "user entry {} has no ':'; write each user as name:<argon2 PHC hash>, entries separated by ';'",
                    n + 1
                )));
            };
            let user = user.trim();
            let phc = phc.trim();
            check_name("user name", user)?;
            let hash = PasswordHash::new(phc).map_err(|e| {
                AuthError::Config(format!(
                    "the password hash of user {user} is not a PHC string ({e}); \
                     give an argon2 hash such as $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"
                ))
            })?;
            if argon2::Algorithm::try_from(hash.algorithm).is_err() {
                return Err(AuthError::Config(format!(
                    "the password hash of user {user} uses {}, not argon2; hash the password with argon2id",
                    hash.algorithm
                )));
            }
            if entries.iter().any(|(u, _)| u == user) {
                return Err(AuthError::Config(format!("user {user} is listed twice; keep one entry per user")));
            }
            entries.push((user.to_string(), phc.to_string()));
        }
        Ok(Users { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(u, _)| u.as_str())
    }

    /// Whether `user` is configured (a token of a user removed since it was issued is refused).
    pub fn contains(&self, user: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == user)
    }

    /// The password hash (PHC string) of `user`, which binds their session tokens to their password.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.entries.iter().find(|(u, _)| u == user).map(|(_, h)| h.as_str())
    }

    /// Whether `password` is the password of `user`. An unknown user costs a hash too, so that response
    /// times do not tell which users exist.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        match self.entries.iter().find(|(u, _)| u == user) {
            Some((_, phc)) => match PasswordHash::new(phc) {
                Ok(hash) => Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(),
                Err(_) => false,
            },
            None => {
                // Same work as a real check with the cost of the first configured hash (or the default).
                let phc = self.entries.first().map(|(_, p)| p.as_str()).unwrap_or(DUMMY_PHC);
                if let Ok(hash) = PasswordHash::new(phc) {
                    let _ = Argon2::default().verify_password(password.as_bytes(), &hash);
                }
                false
            }
        }
    }
}

/// A hash no password matches in practice (argon2id, the crate's default cost), checked for unknown users.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$eG5hdC1hcmNoaXZlLWR1bW15$0DAX1kxe4VKQSzTYD0w6x5nXbdZBkYHGK0ULKyfcbEQ";

/// Hashes a password as `Users` expects it: argon2id with the crate's default cost (19 MiB, 2 passes), as a
/// PHC string. `salt` must be 8 to 48 random bytes from the caller (this crate has no randomness).
pub fn hash_password(password: &str, salt: &[u8]) -> Result<String, AuthError> {
    hash_password_with(password, salt, Params::default())
}

/// [`hash_password`] with explicit argon2 parameters (memory in KiB, passes, lanes).
pub fn hash_password_with(password: &str, salt: &[u8], params: Params) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(salt)
        .map_err(|e| AuthError::Config(format!("the salt cannot be used ({e}); give 8 to 48 random bytes")))?;
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Config(format!("the password cannot be hashed: {e}")))
}

/// Stateless signed session tokens.
pub struct Token;

type HmacSha256 = Hmac<Sha256>;

impl Token {
    /// A token for `user` of `tenant`, valid until `now + ttl` (seconds since the Unix epoch).
    pub fn issue(secret: &[u8], tenant: &str, user: &str, now: u64, ttl: u64) -> Result<String, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::NoSecret);
        }
        check_name("tenant", tenant)?;
        check_name("user name", user)?;
        let payload = format!("{tenant}|{user}|{}", now.saturating_add(ttl));
        let mac = mac(secret, payload.as_bytes()).finalize().into_bytes();
        Ok(format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(mac)))
    }

    /// The user a token names, unchecked: only to choose the key to check it with ([`Token::verify`]).
    pub fn claimed_user(token: &str) -> Result<String, AuthError> {
        let (payload_b64, _) = token.trim().split_once('.').ok_or(AuthError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| AuthError::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| AuthError::Malformed)?;
        payload.split('|').nth(1).map(str::to_string).ok_or(AuthError::Malformed)
    }

    /// The user a token was issued to, if it was signed with `secret` for `tenant` and has not expired.
    /// The signature is checked first, in constant time; nothing in an unsigned token is trusted.
    pub fn verify(secret: &[u8], tenant: &str, token: &str, now: u64) -> Result<String, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::NoSecret);
        }
        let (payload_b64, mac_b64) = token.trim().split_once('.').ok_or(AuthError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| AuthError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(mac_b64).map_err(|_| AuthError::Malformed)?;
        mac(secret, &payload).verify_slice(&tag).map_err(|_| AuthError::BadSignature)?;
        let payload = String::from_utf8(payload).map_err(|_| AuthError::Malformed)?;
        let mut parts = payload.split('|');
        let (Some(t), Some(user), Some(expiry), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| AuthError::Malformed)?;
        if t != tenant {
            return Err(AuthError::OtherTenant);
        }
        if now >= expiry {
            return Err(AuthError::Expired { user: user.to_string() });
        }
        Ok(user.to_string())
    }
}

fn mac(secret: &[u8], payload: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(payload);
    mac
}

/// Names that go into a token or a user entry: not empty, no separators or spaces.
fn check_name(what: &str, name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.chars().any(|c| matches!(c, ':' | '|' | ';') || c.is_whitespace() || c.is_control()) {
        return Err(AuthError::Config(format!(
            "{what} {name:?} is empty or holds ':', '|', ';' or spaces; choose a plain name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters, so the tests do not spend seconds hashing.
    fn cheap(password: &str) -> String {
        hash_password_with(password, b"0123456789abcdef", Params::new(64, 1, 1, None).unwrap()).unwrap()
    }

    #[test]
    fn users_and_passwords() {
        let config = format!(" admin:{} ; ;bob:{};", cheap("secret"), cheap("hunter2"));
        let users = Users::parse(&config).unwrap();
        assert_eq!(users.names().collect::<Vec<_>>(), ["admin", "bob"]);
        assert!(users.verify_password("admin", "secret"));
        assert!(users.verify_password("bob", "hunter2"));
        assert!(!users.verify_password("admin", "hunter2"));
        assert!(!users.verify_password("admin", ""));
        assert!(!users.verify_password("carol", "secret"));
        assert!(users.contains("bob") && !users.contains("carol"));
        assert!(Users::parse("").unwrap().is_empty());
        assert!(!Users::default().verify_password("admin", "secret"));
    }

    #[test]
    fn the_default_cost_hash_verifies() {
        let phc = hash_password("pw", b"saltsaltsaltsalt").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let users = Users::parse(&format!("u:{phc}")).unwrap();
        assert!(users.verify_password("u", "pw"));
        // The dummy hash checked for unknown users parses.
        assert!(PasswordHash::new(DUMMY_PHC).is_ok());
    }

    #[test]
    fn malformed_user_lists_say_what_to_do() {
        let good = cheap("x");
        for (config, want) in [
            ("admin".to_string(), "no ':'"),
            ("admin:plain-password".to_string(), "not a PHC string"),
            (format!("a|b:{good}"), "plain name"),
            (format!(":{good}"), "plain name"),
            (format!("a:{good};a:{good}"), "twice"),
            ("a:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_string(), "not argon2"),
        ] {
            match Users::parse(&config) {
                Err(AuthError::Config(m)) => assert!(m.contains(want), "{config}: {m}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let t = Token::issue(b"k1", "demo", "admin", 1000, 60).unwrap();
        assert_eq!(Token::verify(b"k1", "demo", &t, 1000).unwrap(), "admin");
        assert_eq!(Token::verify(b"k1", "demo", &t, 1059).unwrap(), "admin");
        assert_eq!(Token::verify(b"k1", "demo", &t, 1060), Err(AuthError::Expired { user: "admin".into() }));
        assert!(!t.contains(['+', '/', '=', ';', ' ']), "cookie-safe: {t}");
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let t = Token::issue(b"k1", "demo", "admin", 1000, 60).unwrap();
        assert_eq!(Token::verify(b"k2", "demo", &t, 1000), Err(AuthError::BadSignature));
        // Another tenant with the same secret: the signature holds, the tenant does not.
        assert_eq!(Token::verify(b"k1", "other", &t, 1000), Err(AuthError::OtherTenant));
        // Rewriting the payload (a longer expiry, another user) breaks the signature.
        let (_, sig) = t.split_once('.').unwrap();
        for payload in ["demo|admin|99999999999", "demo|root|1060"] {
            let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(payload));
            assert_eq!(Token::verify(b"k1", "demo", &forged, 1000), Err(AuthError::BadSignature));
        }
        for junk in ["", ".", "abc", "abc.def", "!!!.???", &format!("{t}x")] {
            assert!(Token::verify(b"k1", "demo", junk, 1000).is_err(), "{junk}");
        }
        // A correctly signed payload of the wrong shape is still refused.
        let odd = "demo|a|b|1060";
        let sig = URL_SAFE_NO_PAD.encode(mac(b"k1", odd.as_bytes()).finalize().into_bytes());
        assert_eq!(
            Token::verify(b"k1", "demo", &format!("{}.{sig}", URL_SAFE_NO_PAD.encode(odd)), 1000),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn no_secret_no_tokens() {
        assert_eq!(Token::issue(b"", "demo", "admin", 0, 60), Err(AuthError::NoSecret));
        assert_eq!(Token::verify(b"", "demo", "a.b", 0), Err(AuthError::NoSecret));
        assert!(Token::issue(b"k", "de|mo", "admin", 0, 60).is_err());
        assert!(Token::issue(b"k", "demo", "ad|min", 0, 60).is_err());
    }
}
