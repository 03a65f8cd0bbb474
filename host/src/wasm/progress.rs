//! The host side of the component's `progress` import: where long work reports how far it is.
//!
//! Not for results or errors: those are the calls' return values.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives the component's progress reports. Calls arrive on the thread that runs the component.
pub trait Progress: Send {
    /// A new phase starts, with the number of units it will take (0 when unknown).
    fn begin(&mut self, phase: &str, total: u64);
    /// `units` more units are done.
    fn advance(&mut self, units: u64);
    /// The current phase is over.
    fn end(&mut self);
}

impl<P: Progress + ?Sized> Progress for Box<P> {
    fn begin(&mut self, phase: &str, total: u64) {
        (**self).begin(phase, total);
    }
    fn advance(&mut self, units: u64) {
        (**self).advance(units);
    }
    fn end(&mut self) {
        (**self).end();
    }
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _phase: &str, _total: u64) {}
    fn advance(&mut self, _units: u64) {}
    fn end(&mut self) {}
}

/// A progress bar on stderr (a spinner when the total is unknown), drawn only when stderr is a terminal.
#[derive(Debug)]
pub struct TerminalProgress {
    visible: bool,
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    /// Draws on stderr if it is a terminal; otherwise stays hidden.
    pub fn new() -> TerminalProgress {
        TerminalProgress { visible: std::io::stderr().is_terminal(), bar: None }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Default for TerminalProgress {
    fn default() -> Self {
        TerminalProgress::new()
    }
}

impl Progress for TerminalProgress {
    fn begin(&mut self, phase: &str, total: u64) {
        self.finish();
        let target = if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let (bar, template) = if total == 0 {
            (ProgressBar::no_length(), "{spinner} {human_pos} {elapsed} {wide_msg}")
        } else {
            (ProgressBar::new(total), "[{bar:20}] {human_pos}/{human_len} eta {eta} {wide_msg}")
        };
        let style =
            ProgressStyle::with_template(template).expect("the progress templates are valid").progress_chars("=> ");
        bar.set_draw_target(target);
        bar.set_style(style);
        bar.set_message(tail(phase, 40));
        self.bar = Some(bar);
    }

    fn advance(&mut self, units: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(units);
        }
    }

    fn end(&mut self) {
        self.finish();
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The end of `text`, at most `max` characters, with `…` in front when shortened (the end of a resource
/// URI says the most).
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_owned()
    } else {
        format!("…{}", text.chars().skip(count - max + 1).collect::<String>())
    }
}
