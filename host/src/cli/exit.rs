//! How a command ends: the exit code and the message of every outcome, in one place. A command returns
//! `Ok(code)` when it printed its answer; a component's refusal ([`Error`]) or a host failure comes back
//! as the `Err` of its `anyhow::Result`, and [`finish`] prints it and picks the code.
//!
//! Exit codes: 0 success; 1 host failure; 2 bad request; 3 forbidden; 4 not found; 5 conflict; 6 locked;
//! 7 I/O error; 8 corrupt catalog or document; 9 out of memory; 141 the reader went away; the component's
//! own status when it exited.
//!
//! Not for the partial failures of a batch (one session of several): their commands print those as they
//! go and end with [`code`] of the first.

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde_json::json;
use xnat_archive::{Error, OutOfMemory};

/// The exit code for a component error.
pub fn code(error: &Error) -> ExitCode {
    ExitCode::from(match error {
        Error::BadRequest(_) => 2,
        Error::Forbidden(_) => 3,
        Error::NotFound(_) => 4,
        Error::Conflict(_) => 5,
        Error::Locked(_) => 6,
        Error::Io(_) => 7,
        Error::Corrupt(_) => 8,
    })
}

/// The exit code of a command's outcome, after printing what went wrong: a component error as JSON on
/// stdout (`json`) or as text on stderr, a host failure on stderr.
pub fn finish(outcome: anyhow::Result<ExitCode>, json: bool) -> ExitCode {
    let outcome = outcome.or_else(|failure| match failure.downcast::<Error>() {
        Ok(error) => refused(&error, json),
        Err(failure) => Err(failure),
    });
    outcome.unwrap_or_else(|failure| host_failure(&failure))
}

/// Prints a component error and returns its exit code.
fn refused(error: &Error, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        writeln!(io::stdout(), "{}", serde_json::to_string_pretty(&json!({ "error": error }))?)?;
    } else {
        eprintln!("error: {}", error.message());
        eprintln!("({}, HTTP {})", error.kind(), error.http_status());
    }
    Ok(code(error))
}

/// Prints a host failure (unless the reader went away) and returns its exit code.
fn host_failure(failure: &anyhow::Error) -> ExitCode {
    // The reader went away (`| head`): stop quietly, as a process killed by SIGPIPE would.
    if failure.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
        return ExitCode::from(141);
    }
    // Out of memory, however the component met it: one exit code.
    if failure.downcast_ref::<OutOfMemory>().is_some() {
        eprintln!("error: {failure}");
        return ExitCode::from(9);
    }
    // The component stopped itself (a test's fault point): end as it did, "stopped dead".
    if let Some(exit) = failure.downcast_ref::<wasmtime_wasi::I32Exit>() {
        eprintln!("error: {failure}");
        return ExitCode::from(u8::try_from(exit.0).ok().filter(|&s| s != 0).unwrap_or(1));
    }
    eprintln!("error: {failure:#}");
    ExitCode::from(1)
}
