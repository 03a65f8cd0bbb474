//! The `xnat-archive` commands: one file per service ([`refresh`]: catalogs; [`prearchive`];
//! [`archive`]: validate, archive, recover; [`demo`]; [`serve`]: serve and hash-password), the clap types
//! ([`args`]), the directory checks ([`grants`]), the printers ([`output`]) and the one place where an
//! outcome becomes an exit code and a message ([`exit`]).
//!
//! Not for anything the library does: these files only use `xnat_archive`'s public API.

/// `println!` that returns write errors (a closed pipe) instead of panicking.
macro_rules! out {
    () => {
        writeln!(std::io::stdout())?
    };
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}

pub mod archive;
pub mod args;
pub mod demo;
pub mod exit;
pub mod grants;
pub mod import;
pub mod output;
pub mod prearchive;
pub mod refresh;
pub mod serve;
