//! How long work (a refresh, an archive) tells its caller how far it is: phases with a number of units.
//! The component adapters forward it to the host (WIT `progress`); natively it is usually ignored.
//! Not for: logging or results — those are the services' return values.

/// Where long work reports how far it is.
pub trait Progress {
    fn begin(&mut self, phase: &str, total: u64);
    fn advance(&mut self, units: u64);
    fn end(&mut self);
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn end(&mut self) {}
}
