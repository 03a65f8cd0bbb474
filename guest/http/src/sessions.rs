//! Ending sessions: the key that signs a user's session tokens is derived from the tenant's secret, the
//! user's password hash and the moment the user last logged out everywhere. A new password (the host's
//! configuration) or a logout everywhere (`DELETE /data/JSESSION?everywhere=true`) changes the key, and
//! every token issued before stops verifying, on every instance and every host that serves the tenant.
//!
//! The moment is kept in the tenant's prearchive, `.xnat-archive/sessions/<user in hex>` (a dot folder, which
//! XNAT's trawler and our listings pass over), written atomically; nothing else is stored per session.
//! Not for checking credentials (`auth.rs`) nor for the token format (`credentials.rs`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use xnat_core::fs::tree::{RelPath, Tree};

use crate::context::Context;
use crate::credentials::AuthError;

/// Where the logout-everywhere moments live, inside the prearchive.
const FOLDER: &str = ".xnat-archive/sessions";

/// The key that signs and checks `user`'s session tokens.
pub fn session_key(ctx: &Context, user: &str) -> Result<Vec<u8>, AuthError> {
    let secret = ctx.secret.as_deref().ok_or(AuthError::NoSecret)?;
    let Some(hash) = ctx.users.hash_of(user) else {
        return Err(AuthError::Config(format!(
            "user {user} is no longer configured on this server; log in as another user"
        )));
    };
    let since = ended_at(&ctx.prearchive, user)?.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    let parts = [b"xnat-archive session key".as_slice(), user.as_bytes(), hash.as_bytes(), since.as_bytes()];
    for part in parts {
        mac.update(part);
        mac.update(&[0]);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Ends every session of `user` issued so far (at `now`, seconds since the epoch).
pub fn end_all(ctx: &Context, user: &str) -> Result<(), AuthError> {
    let file = file(user)?;
    let io = |e: xnat_core::error::Error| {
        AuthError::Config(format!("cannot record the logout everywhere ({}); try again", e.message()))
    };
    // Never the same moment twice: a second logout within the same second still changes the key.
    let at = ctx.now.max(ended_at(&ctx.prearchive, user)? + 1);
    ctx.prearchive.create_dir_all(&file.parent()).map_err(io)?;
    ctx.prearchive.write_atomic(&file, at.to_string().as_bytes()).map_err(io)
}

/// When `user` last logged out everywhere; 0 if never.
fn ended_at(prearchive: &Tree, user: &str) -> Result<u64, AuthError> {
    match prearchive.read(&file(user)?) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().parse().map_err(|_| {
            AuthError::Config(format!(
                "{FOLDER}/{} in the prearchive is not a number; an administrator should remove it (it ends all \
                 of its user's sessions once more)",
                hex::encode(user)
            ))
        }),
        Err(xnat_core::error::Error::NotFound(_)) => Ok(0),
        Err(e) => Err(AuthError::Config(format!("cannot read the sessions of {user}: {}", e.message()))),
    }
}

fn file(user: &str) -> Result<RelPath, AuthError> {
    RelPath::new(&format!("{FOLDER}/{}", hex::encode(user))).map_err(|e| AuthError::Config(e.message().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Users, hash_password_with};

    #[test]
    fn a_new_password_or_a_logout_everywhere_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cheap = argon2::Params::new(64, 1, 1, None).unwrap();
        let users = |pw: &str| {
            let hash = hash_password_with(pw, b"saltsaltsaltsalt", cheap.clone()).unwrap();
            Users::parse(&format!("ann:{hash};bob:{hash}")).unwrap()
        };
        let mut ctx = Context::new(Tree::new(dir.path()), Tree::new(dir.path()), 1_700_000_000);
        ctx.secret = Some(b"secret".to_vec());
        ctx.users = users("one");
        let ann = session_key(&ctx, "ann").unwrap();
        assert_eq!(session_key(&ctx, "ann").unwrap(), ann, "stable");
        assert_ne!(session_key(&ctx, "bob").unwrap(), ann, "per user");
        end_all(&ctx, "ann").unwrap();
        let after = session_key(&ctx, "ann").unwrap();
        assert_ne!(after, ann, "a logout everywhere");
        end_all(&ctx, "ann").unwrap();
        assert_ne!(session_key(&ctx, "ann").unwrap(), after, "twice in one second");
        ctx.users = users("two");
        assert_ne!(session_key(&ctx, "bob").unwrap(), session_key(&ctx, "ann").unwrap());
        assert!(matches!(session_key(&ctx, "carol"), Err(AuthError::Config(_))));
        ctx.secret = None;
        assert!(matches!(session_key(&ctx, "ann"), Err(AuthError::NoSecret)));
        // The record is a dot folder of the prearchive, named by the user's hex.
        assert!(dir.path().join(".xnat-archive/sessions").join(hex::encode("ann")).is_file());
    }
}
