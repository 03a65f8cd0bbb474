//! The errors every service returns, one kind per HTTP status XNAT clients understand (D2).

use std::io;

/// Why an operation failed. The message says what went wrong and, where it can, what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is wrong (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The grant does not allow it (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Something named does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// It clashes with what is there (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Another operation holds the lock (423).
    #[error("locked: {0}")]
    Locked(String),
    /// The file system failed (500).
    #[error("i/o error: {0}")]
    Io(String),
    /// A stored file cannot be parsed; it was left as it is (500).
    #[error("corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure on `what` (a path relative to the grant), classified by what the caller can do about it.
    pub fn io(what: &str, e: &io::Error) -> Error {
        match e.kind() {
            // A path through a file (`P/TIMESTAMP` is a file, so `P/TIMESTAMP/.S.journal` cannot be) names
            // nothing that exists, as 404; it was an I/O error (500).
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Error::NotFound(format!("{what} does not exist")),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Error::Forbidden(format!(
                "cannot write {what}: permission denied ({e}); grant the archive read-write, \
                 or use verify / dry-run for read-only work"
            )),
            _ => Error::Io(format!("{what}: {e}")),
        }
    }

    /// The same kind with another message (an error passed on with what it meant for the caller).
    pub fn with_message(self, message: String) -> Error {
        match self {
            Error::BadRequest(_) => Error::BadRequest(message),
            Error::Forbidden(_) => Error::Forbidden(message),
            Error::NotFound(_) => Error::NotFound(message),
            Error::Conflict(_) => Error::Conflict(message),
            Error::Locked(_) => Error::Locked(message),
            Error::Io(_) => Error::Io(message),
            Error::Corrupt(_) => Error::Corrupt(message),
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::BadRequest(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Locked(m)
            | Error::Io(m)
            | Error::Corrupt(m) => m,
        }
    }
}
