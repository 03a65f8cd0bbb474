//! `xnat-archive`: the command-line host. Runs XNAT's archive services (catalog refresh, resource creation,
//! the prearchive, validate and archive) in the sandboxed component, granting it only the archive and
//! prearchive directories named on the command line, read-only where the command only reads.
//!
//! This file only parses the command line, hands each command to its service in `cli/` and exits with the
//! code `cli::exit` picks. Not for anything a command does.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use xnat_archive::Runtime;

use cli::args::{Cli, Command, PrearchiveCommand, ResourceCommand};
use cli::{archive, demo, exit, import, prearchive, refresh, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.json();
    exit::finish(run(cli), json)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let limits = cli.global.limits()?;
    // These two do not run the library component.
    let command = match cli.command {
        Command::Serve(args) => return serve::serve(&cli.global, &limits, args),
        Command::HashPassword => return serve::hash_password(),
        command => command,
    };
    let runtime = match &cli.global.component {
        Some(path) => Runtime::from_file(path)?,
        None => Runtime::new()?,
    };
    let (runtime, limits) = (&runtime, &limits);
    match command {
        Command::Refresh(args) => refresh::refresh(runtime, limits, args),
        Command::Resource(ResourceCommand::Create(args)) => refresh::create(runtime, limits, args),
        Command::Prearchive(PrearchiveCommand::List(args)) => prearchive::list(runtime, limits, args),
        Command::Prearchive(PrearchiveCommand::Delete(args)) => prearchive::delete(runtime, limits, args),
        Command::Prearchive(PrearchiveCommand::Move(args)) => prearchive::move_sessions(runtime, limits, args),
        Command::Prearchive(PrearchiveCommand::ResetStatus(args)) => prearchive::reset(runtime, limits, args),
        Command::Validate(args) => archive::validate(runtime, limits, args),
        Command::Archive(args) => archive::archive(runtime, limits, args),
        Command::Import(args) => import::run(runtime, limits, args),
        Command::Prearchive(PrearchiveCommand::Commit(args)) => prearchive::commit(runtime, limits, args),
        Command::Recover(args) => archive::recover(runtime, limits, args),
        Command::Demo(args) => demo::run(runtime, limits, args),
        Command::Serve(_) | Command::HashPassword => unreachable!("handled before the runtime is loaded"),
    }
}
