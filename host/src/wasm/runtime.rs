//! The runtime of the library component: the compiled component and its linker, ready to instantiate, and
//! one method per WIT export. Every call gets a fresh store and instance with its own grants and limits (a
//! trapped instance cannot be entered again, and grants differ from call to call).
//!
//! Not for the engine's set-up (`super::engine`, shared with `serve`) nor for the types of the calls
//! (`crate::library`).

use std::path::Path;
use std::sync::OnceLock;

use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, Resource, ResourceTable};

use wasmtime::{Engine, Store};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::engine::{self, Shared, Stop};
use super::grant::Grant;
use super::instances::Instance;
use super::limits::{Limiter, Limits};
use super::progress::{NoProgress, Progress};
use super::renames::Renaming;
use super::walks::Walks;
use crate::library::bindings::{
    DigestsHost, HoldersHost, Library, LibraryIndices, ListingsHost, ProgressHost, RenamesHost, TypesHost,
    WitDigestAlgorithm, WitError, digests, holders, listings, progress, renames, types,
};
use crate::library::size::human_size;
use crate::library::types::{
    ArchiveRequest, Archived, CreatedResource, Error, FileRow, ImportOutcome, LockPolicy, PrearchiveRow, Recovered,
    RefreshRequest, ResourceReport, ResourceRow, ResourceSpec, ScanRow, ValidationNotice,
};
use std::convert::identity;

/// A test-only switch that stops an archive dead at a numbered point, to test recovery. Passed through
/// from the host's environment when set (see [`TEST_SWITCHES`]).
pub const FAULT_POINT_VAR: &str = xnat_core::import::request::Faults::POINT_VAR;
/// A test-only switch: milliseconds an archive waits while holding the session's lock, so that tests can
/// make archives overlap.
pub const PAUSE_MS_VAR: &str = xnat_core::import::request::Faults::PAUSE_MS_VAR;
/// A test-only switch: milliseconds an archive waits after writing its journal, before the first file moves.
pub const PAUSE_BEFORE_MOVES_MS_VAR: &str = xnat_core::import::request::Faults::PAUSE_BEFORE_MOVES_MS_VAR;
/// The only variables of the host's environment the component sees, each only when it is set.
pub const TEST_SWITCHES: [&str; 3] = [FAULT_POINT_VAR, PAUSE_MS_VAR, PAUSE_BEFORE_MOVES_MS_VAR];

/// The library component built from `guest/plugin` for `wasm32-wasip2`, embedded at build time.
pub static COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xnat_plugin.wasm"));

/// [`COMPONENT`]'s XXH3-128, computed by the build script: the key of its compiled form.
pub(crate) const COMPONENT_XXH3: u128 = include!(concat!(env!("OUT_DIR"), "/xnat_plugin.wasm.xxh3"));

/// The HTTP component built from `guest/http` for `wasm32-wasip2` (exports `wasi:http/incoming-handler`;
/// the archive preopened at `/archive`, the prearchive at `/prearchive`; settings from `XNAT_*` environment
/// variables, see the `xnat-http` crate), embedded at build time.
pub static HTTP_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xnat_http.wasm"));

/// A loaded component, ready to run calls. Cheap to clone; calls may run concurrently from several threads.
#[derive(Clone)]
pub struct Runtime {
    pre: InstancePre<State>,
    /// Where the generated bindings' exports are in the component.
    library: LibraryIndices,
}

impl Runtime {
    /// The embedded component ([`COMPONENT`]). It is compiled once per process, on first use.
    pub fn new() -> anyhow::Result<Runtime> {
        static COMPILED: OnceLock<Result<Component, Shared>> = OnceLock::new();
        let compiled = COMPILED.get_or_init(|| {
            let component =
                engine().and_then(|engine| Ok(super::compiled::component(engine, COMPONENT, COMPONENT_XXH3)?));
            component.map_err(|e| Shared(Arc::new(e)))
        });
        let component = compiled.as_ref().map_err(|e| {
            anyhow::Error::new(e.clone())
                .context("cannot compile the embedded component (a build problem; rebuild xnat-archive)")
        })?;
        Runtime::link(component)
    }

    /// Another build of the component, from a `.wasm` file (it must implement the same WIT world).
    pub fn from_file(path: impl AsRef<Path>) -> anyhow::Result<Runtime> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot read the component {}; check the path", path.display()))
        })?;
        Runtime::from_bytes(&bytes).map_err(|e| e.context(format!("cannot load the component {}", path.display())))
    }

    /// A component from its bytes (binary `.wasm`).
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Runtime> {
        let component = Component::new(engine()?, bytes)
            .map_err(|e| anyhow::Error::from(e).context("not a valid WebAssembly component"))?;
        Runtime::link(&component)
    }

    fn link(component: &Component) -> anyhow::Result<Runtime> {
        let mut linker = Linker::<State>::new(component.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // The world's own imports (its WASI imports are wasmtime-wasi's, linked above).
        types::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        progress::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        holders::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        digests::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        listings::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        renames::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        let not_ours = |e: wasmtime::Error| {
            anyhow::Error::from(e).context(
                "the component does not export xnat:archive's interfaces as this host expects (built for another \
                 version of wit/archive.wit?)",
            )
        };
        let pre = linker.instantiate_pre(component).map_err(|e| {
            anyhow::Error::from(e).context(
                "the component needs imports this host does not provide (it was built for another version of \
                 wit/archive.wit?)",
            )
        })?;
        let library = LibraryIndices::new(&pre).map_err(not_ours)?;
        Ok(Runtime { pre, library })
    }

    /// `POST /data/services/refresh/catalog`: brings each named resource's catalog in line with the disk.
    ///
    /// The outer error is a host failure (a grant that cannot be opened, a trap, a limit hit); the inner
    /// one is the component's answer. The archive must be granted at [`crate::ARCHIVE`]; a read-only grant
    /// is enough for [`RefreshMode::DryRun`](crate::RefreshMode::DryRun) and
    /// [`RefreshMode::Verify`](crate::RefreshMode::Verify).
    pub fn refresh(
        &self,
        grants: &[Grant],
        limits: &Limits,
        request: RefreshRequest,
        progress: impl Progress + 'static,
    ) -> anyhow::Result<Result<Vec<ResourceReport>, Error>> {
        self.call(
            grants,
            limits,
            progress,
            |exports, store| exports.library.xnat_archive_catalogs().call_refresh(store, &request.into()),
            all,
        )
    }

    /// `PUT /data/archive/.../resources/LABEL`: creates the resource folder and its empty catalog. Needs a
    /// writable grant of the archive at [`crate::ARCHIVE`].
    pub fn create_resource(
        &self,
        grants: &[Grant],
        limits: &Limits,
        spec: ResourceSpec,
    ) -> anyhow::Result<Result<CreatedResource, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_catalogs().call_create_resource(store, &spec.into()),
            CreatedResource::from,
        )
    }

    /// `GET /data/prearchive[/projects/P]`: every prearchive session's row, or those of one project
    /// (`Unassigned` for the sessions at the root). A read-only grant of the prearchive at
    /// [`crate::PREARCHIVE`] is enough.
    pub fn prearchive_list(
        &self,
        grants: &[Grant],
        limits: &Limits,
        project: Option<&str>,
    ) -> anyhow::Result<Result<Vec<PrearchiveRow>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_prearchive().call_list_sessions(store, project),
            all,
        )
    }

    /// `GET …/experiments/E/scans`: the scans of the archived experiment `experiment` names (a URI XNAT
    /// accepts). A read-only grant of the archive is enough, as for the three below.
    pub fn archived_scans(
        &self,
        grants: &[Grant],
        limits: &Limits,
        experiment: &str,
    ) -> anyhow::Result<Result<Vec<ScanRow>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_archive_data().call_scans(store, experiment),
            all,
        )
    }

    /// `GET …/resources`: the own resources of the archived item `item` names.
    pub fn archived_resources(
        &self,
        grants: &[Grant],
        limits: &Limits,
        item: &str,
    ) -> anyhow::Result<Result<Vec<ResourceRow>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_archive_data().call_resources(store, item),
            all,
        )
    }

    /// `GET …/resources/R/files`: the files the catalog of the resource `resource` names lists and the disk has.
    pub fn archived_files(
        &self,
        grants: &[Grant],
        limits: &Limits,
        resource: &str,
    ) -> anyhow::Result<Result<Vec<FileRow>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_archive_data().call_files(store, resource),
            all,
        )
    }

    /// Up to `length` bytes of the listed file `name` of `resource`, from `offset` (empty at its end): a file
    /// is read chunk by chunk, each chunk in a fresh instance.
    pub fn archived_read_file(
        &self,
        grants: &[Grant],
        limits: &Limits,
        resource: &str,
        name: &str,
        offset: u64,
        length: u32,
    ) -> anyhow::Result<Result<Vec<u8>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| {
                exports.library.xnat_archive_archive_data().call_read_file(store, resource, name, offset, length)
            },
            identity,
        )
    }

    /// `POST /data/services/import`: sorts the DICOM files of `upload` (a zip, or one DICOM file) into
    /// prearchive sessions — and archives them when `parameters` name an archive `dest`. `parameters` are
    /// XNAT's, by name (`import-handler`, `dest`, `project`, `subject`, `session`, `overwrite`, ...). Needs a
    /// writable grant of the prearchive; the archive's grant (read-only is enough unless `dest` is an archive)
    /// lets a project a DICOM header names be used. The folder holding `upload` is granted read-only at
    /// `/upload` for this call only; the component copies the file into the prearchive's staging folder.
    pub fn import(
        &self,
        grants: &[Grant],
        limits: &Limits,
        upload: &Path,
        parameters: &[(String, String)],
        progress: impl Progress + 'static,
    ) -> anyhow::Result<Result<ImportOutcome, Error>> {
        let (Some(folder), Some(name)) = (upload.parent(), upload.file_name().and_then(|n| n.to_str())) else {
            anyhow::bail!("{} is not a file to import; name a zip or a DICOM file", upload.display());
        };
        let folder = if folder.as_os_str().is_empty() { Path::new(".") } else { folder };
        let mut all = grants.to_vec();
        all.push(Grant::read_only(folder, xnat_core::site::mounts::UPLOAD));
        self.call(
            &all,
            limits,
            progress,
            |exports, store| exports.library.xnat_archive_importer().call_import(store, name, parameters),
            ImportOutcome::from,
        )
    }

    /// `POST /data/prearchive/projects/P/TS/FOLDER?action=commit`: builds a session still receiving
    /// (gradual-DICOM) — its catalogs, then its document — and returns its row (READY). Needs a writable
    /// grant of the prearchive.
    pub fn prearchive_commit(
        &self,
        grants: &[Grant],
        limits: &Limits,
        src: &str,
    ) -> anyhow::Result<Result<PrearchiveRow, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_importer().call_commit(store, src),
            PrearchiveRow::from,
        )
    }

    /// `GET /data/prearchive/projects/P/TS/FOLDER`: one session's row (`src` with or without `/data`). A
    /// read-only grant of the prearchive is enough.
    pub fn prearchive_get(
        &self,
        grants: &[Grant],
        limits: &Limits,
        src: &str,
    ) -> anyhow::Result<Result<PrearchiveRow, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_prearchive().call_get(store, src),
            PrearchiveRow::from,
        )
    }

    /// `DELETE /data/prearchive/projects/P/TS/FOLDER`: deletes a RECEIVING, READY, CONFLICT or ERROR session
    /// (its folder, its document, and its timestamp folder when that is left empty). Needs a writable grant
    /// of the prearchive.
    pub fn prearchive_delete(&self, grants: &[Grant], limits: &Limits, src: &str) -> anyhow::Result<Result<(), Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_prearchive().call_delete(store, src),
            identity,
        )
    }

    /// `POST .../P/TS/FOLDER?action=move&newProject=Q`: moves a session to another project (or
    /// `Unassigned`) and returns its row at the new place. Needs a writable grant of the prearchive.
    pub fn prearchive_move(
        &self,
        grants: &[Grant],
        limits: &Limits,
        src: &str,
        new_project: &str,
    ) -> anyhow::Result<Result<PrearchiveRow, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_prearchive().call_move_session(store, src, new_project),
            PrearchiveRow::from,
        )
    }

    /// `POST .../P/TS/FOLDER?action=reset-status`: forgets a persisted status (CONFLICT, ERROR) and returns
    /// the row as the disk has it. Needs a writable grant of the prearchive.
    pub fn prearchive_reset_status(
        &self,
        grants: &[Grant],
        limits: &Limits,
        src: &str,
    ) -> anyhow::Result<Result<PrearchiveRow, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_prearchive().call_reset_status(store, src),
            PrearchiveRow::from,
        )
    }

    /// `POST /data/services/validate-archive`: XNAT's (code, type, message) notices for one session, sorted
    /// by code; writes nothing. Read-only grants of the prearchive at [`crate::PREARCHIVE`] and the archive
    /// at [`crate::ARCHIVE`] are enough.
    pub fn validate(
        &self,
        grants: &[Grant],
        limits: &Limits,
        request: ArchiveRequest,
    ) -> anyhow::Result<Result<Vec<ValidationNotice>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            |exports, store| exports.library.xnat_archive_validation().call_validate(store, &request.into()),
            all,
        )
    }

    /// `POST /data/services/archive`: moves each named session from the prearchive into the archive. A
    /// malformed request fails whole (the inner error); a session that cannot be archived is reported in its
    /// own [`Archived`]. Needs writable grants of the prearchive and the archive.
    pub fn archive(
        &self,
        grants: &[Grant],
        limits: &Limits,
        request: ArchiveRequest,
        progress: impl Progress + 'static,
    ) -> anyhow::Result<Result<Vec<Archived>, Error>> {
        self.call(
            grants,
            limits,
            progress,
            |exports, store| exports.library.xnat_archive_archiver().call_archive(store, &request.into()),
            all,
        )
    }

    /// Finishes or rolls back every interrupted archive (its journal is still in the prearchive), and clears
    /// the locks whose holder is gone; `locks` says what happens to those that look live. Needs writable
    /// grants of the prearchive and the archive.
    pub fn recover(
        &self,
        grants: &[Grant],
        limits: &Limits,
        locks: LockPolicy,
    ) -> anyhow::Result<Result<Vec<Recovered>, Error>> {
        self.call(
            grants,
            limits,
            NoProgress,
            move |exports, store| exports.library.xnat_archive_archiver().call_recover(store, locks.into()),
            all,
        )
    }

    /// Runs `f` on a fresh instance in a fresh store with the given grants and limits, and turns its answer
    /// into the public types with `convert`. The outer error is the host's, the inner one the component's.
    fn call<T, U>(
        &self,
        grants: &[Grant],
        limits: &Limits,
        progress: impl Progress + 'static,
        f: impl FnOnce(&Exports, &mut Store<State>) -> wasmtime::Result<Result<T, WitError>>,
        convert: impl FnOnce(T) -> U,
    ) -> anyhow::Result<Result<U, Error>> {
        let mut wasi = WasiCtxBuilder::new();
        // Must come before the preopens: each preopened directory captures the setting when it is added.
        wasi.allow_blocking_current_thread(true).inherit_stdout().inherit_stderr();
        // The test switches reach the component only in test builds (the `test-switches` feature).
        #[cfg(feature = "test-switches")]
        for var in TEST_SWITCHES {
            if let Ok(value) = std::env::var(var) {
                wasi.env(var, value);
            }
        }
        for grant in grants {
            grant.preopen(&mut wasi)?;
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            progress: Box::new(progress),
            instance: Instance::new(),
            walks: Walks::default(),
            renaming: Renaming::default(),
        };

        let engine = self.pre.engine();
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(engine::epoch_deadline(engine, limits.timeout));

        let result = self.pre.instantiate(&mut store).and_then(|instance| {
            let library = self.library.load(&mut store, &instance)?;
            f(&Exports { library }, &mut store)
        });
        // Running out of memory is one outcome, however the guest met it: a trap, or an allocation
        // failure it reported as an I/O error of whatever it was doing.
        if let Some(desired) = store.data().limiter.memory_refused() {
            return Err(OutOfMemory { desired, limit: limits.memory_bytes }.into());
        }
        result.map(|answer| answer.map(convert).map_err(Error::from)).map_err(|e| explain(e, limits))
    }
}

/// Every item of a list, in the public type.
fn all<T, U: From<T>>(items: Vec<T>) -> Vec<U> {
    items.into_iter().map(U::from).collect()
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// The process-wide engine: every runtime shares it (and the epoch ticker that drives timeouts).
fn engine() -> anyhow::Result<&'static Engine> {
    static ENGINE: OnceLock<Result<Engine, Shared>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| engine::build(&engine::config()).map_err(|e| Shared(Arc::new(e))));
    engine.as_ref().map_err(|e| anyhow::Error::new(e.clone()))
}

/// A call stopped because the component needed more memory than its limit: whatever it answered is
/// dropped (its writes are atomic, so what it wrote is whole), and the caller says "raise the limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the component ran out of memory: it asked for {}, its limit is {}; raise the memory limit (`--memory` on \
     the command line) or ask for less work at a time",
    human_size(*desired as u64),
    human_size(*limit as u64)
)]
pub struct OutOfMemory {
    pub desired: usize,
    pub limit: usize,
}

/// Turns a failed call into a host error that says what happened and what to do; the error stays its
/// source, so that a host can still tell the component's exit status (the CLI ends with it).
fn explain(error: wasmtime::Error, limits: &Limits) -> anyhow::Error {
    let stop = Stop::of(&error, None);
    let error = anyhow::Error::from(error);
    match (stop, limits.timeout) {
        (Stop::Exited(status), _) => error.context(format!(
            "the component exited with status {status} in the middle of the call{}",
            if std::env::var_os(FAULT_POINT_VAR).is_some() {
                format!(" ({FAULT_POINT_VAR} is set: a fault point stopped it; run recover)")
            } else {
                String::new()
            }
        )),
        (Stop::Interrupted, Some(timeout)) => anyhow::anyhow!(
            "the component did not finish within its time limit of {timeout:?} and was stopped; raise the \
             timeout (`--timeout` on the command line) or ask for less work at a time"
        ),
        (Stop::Interrupted | Stop::Trapped, _) => {
            error.context("the component crashed (a bug in the component; please report it with this message)")
        }
        (Stop::OutOfMemory(_) | Stop::Busy | Stop::Failed, _) => error.context("running the component failed"),
    }
}

/// The exports of one instance.
struct Exports {
    library: Library,
}

/// What a store holds for one call.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    progress: Box<dyn Progress>,
    /// Alive while the store is: the locks the instance takes name it.
    instance: Instance,
    /// The walks the instance has open (WIT `listings`).
    walks: Walks,
    /// The renames the instance started on the host's thread (WIT `renames`).
    renaming: Renaming,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The `types` interface has no functions; the world still imports it.
impl TypesHost for State {}

impl HoldersHost for State {
    fn this(&mut self) -> String {
        self.instance.this()
    }

    fn alive(&mut self, instance: String) -> Option<bool> {
        self.instance.alive(instance)
    }
}

impl DigestsHost for State {
    fn computes(&mut self) -> bool {
        true
    }

    fn digest_files(
        &mut self,
        folder: Resource<Descriptor>,
        paths: Vec<String>,
        algorithm: WitDigestAlgorithm,
    ) -> Vec<Result<String, String>> {
        crate::wasm::digests::digest_files(&self.table, &folder, &paths, algorithm.into())
    }
}

impl ListingsHost for State {
    fn lists(&mut self) -> bool {
        true
    }

    fn list_folder(
        &mut self,
        folder: Resource<Descriptor>,
        path: String,
    ) -> Result<Vec<listings::ListedEntry>, listings::ErrorCode> {
        crate::wasm::listings::list_folder(&self.table, &folder, &path)
    }

    fn walk_tree(
        &mut self,
        folder: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
        path: String,
    ) -> Result<u32, listings::ErrorCode> {
        self.walks.start(&self.table, &folder, &path)
    }

    fn next_walked(&mut self, ticket: u32) -> Option<listings::WalkedFolder> {
        self.walks.next(ticket)
    }

    fn end_walk(&mut self, ticket: u32) {
        self.walks.end(ticket)
    }

    /// A run lives for one call: nothing it watched would be asked about again.
    fn watch_tree(&mut self, _: Resource<Descriptor>, _: String, _: u32) -> Option<String> {
        None
    }
}

impl RenamesHost for State {
    fn renames(&mut self) -> bool {
        crate::wasm::renames::RENAMES
    }

    fn rename_files(
        &mut self,
        source: Resource<Descriptor>,
        destination: Resource<Descriptor>,
        pairs: Vec<(String, String)>,
    ) -> Result<(), renames::RenameFailure> {
        crate::wasm::renames::rename_files(&self.table, &source, &destination, &pairs)
    }

    fn start_renames(
        &mut self,
        source: Resource<Descriptor>,
        destination: Resource<Descriptor>,
        pairs: Vec<(String, String)>,
    ) -> Result<u32, renames::ErrorCode> {
        self.renaming.start(&self.table, &source, &destination, pairs)
    }

    fn renamed(&mut self, ticket: u32) -> Result<(), renames::RenameFailure> {
        self.renaming.answer(ticket)
    }
}

impl ProgressHost for State {
    fn begin(&mut self, phase: String, total: u64) {
        self.progress.begin(&phase, total);
    }

    fn advance(&mut self, units: u64) {
        self.progress.advance(units);
    }

    fn end(&mut self) {
        self.progress.end();
    }
}
