//! The commands that do not run the library component: `serve` (the HTTP host, `xnat_archive::serve`)
//! and `hash-password` (a password hash for `serve`'s configuration).
//!
//! Not for the server itself: this file only turns the command line into `serve`'s options.

use std::borrow::Cow;
use std::io::{self, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use xnat_archive::{HTTP_COMPONENT, Limits, serve};

use super::args::{Global, ServeArgs};

/// `xnat-archive serve`: runs until SIGINT or SIGTERM.
pub fn serve(global: &Global, limits: &Limits, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let component = match &global.component {
        Some(path) => Cow::Owned(
            std::fs::read(path)
                .with_context(|| format!("cannot read the component {}; check the path", path.display()))?,
        ),
        None => Cow::Borrowed(HTTP_COMPONENT),
    };
    let defaults = serve::Defaults {
        memory_bytes: limits.memory_bytes,
        timeout: limits.timeout.unwrap_or(serve::config::DEFAULT_TIMEOUT),
    };
    let options = serve::Options { config: args.config, listen: args.listen, dir: args.dir, defaults };
    serve::serve(&component, options)?;
    Ok(ExitCode::SUCCESS)
}

/// `xnat-archive hash-password`: reads one line from standard input, prints its argon2 hash.
pub fn hash_password() -> anyhow::Result<ExitCode> {
    if io::stdin().is_terminal() {
        eprintln!("type the password and press Enter (it is shown as you type; or pipe it in)");
    }
    let mut line = String::new();
    io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        anyhow::bail!("no password on standard input: type it, or pipe it in (`xnat-archive hash-password < file`)");
    }
    out!("{}", serve::hash_password(password)?);
    Ok(ExitCode::SUCCESS)
}
