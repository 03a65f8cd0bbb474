//! The HTTP component on wasmtime: load it once, then for every request grant a fresh instance its
//! tenant's two directories, environment and limits, instantiate it and call its
//! `wasi:http/incoming-handler`. The whole wasmtime side of `serve` is in this file.
//!
//! Instances come from a pooling allocator sized for the tenants' slots. Time is watched by epoch
//! interruption: every [`TICK`](crate::TICK) a running instance yields to the other tasks (fairness: a spinning guest
//! cannot hold a worker thread) and is stopped once its request's time limit has passed. The same limit is
//! the deadline for the client's request body: a request whose client is still sending (or withholding) the
//! body the component is waiting for when the limit comes is a [`Failure::BodyTimedOut`], not the
//! component's fault. Memory is capped by the store's limiter. A guest cannot make outgoing HTTP requests or
//! open sockets.
//!
//! Not for the engine's common set-up (cache, epoch ticker, what a stop means: `crate::wasm::engine`) nor
//! for HTTP routing and the host's own answers (`super::server`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::tenant::Tenant;
use crate::library::bindings::{
    DigestsHost, ListingsHost, RenamesHost, WitDigestAlgorithm, digests, holders, listings, renames,
};
use crate::wasm::engine::{self, Stop};
use crate::wasm::grant::Grant;
use crate::wasm::instances::Instance;
use crate::wasm::limits::{Limiter, MemoryRefused};
use crate::wasm::renames::Renaming;
use crate::wasm::walks::Walks;
use crate::wasm::watches::Watches;

/// Why a request got no response from its component.
#[derive(Debug)]
pub enum Failure {
    /// It asked for more memory than its tenant allows (the size it asked for).
    OutOfMemory(usize),
    /// It ran past its tenant's time limit.
    TimedOut(Duration),
    /// The client had not finished sending the request body when its tenant's time limit came: the
    /// component was still waiting for it (a slow or stalled client, such as a slow-loris attack).
    BodyTimedOut(Duration),
    /// Every instance slot of the server is in use.
    Busy,
    /// It answered with a `wasi:http` error instead of a response.
    Refused(ErrorCode),
    /// It trapped or failed; the error says how.
    Crashed(anyhow::Error),
    /// It returned without answering.
    NoResponse,
}

impl Failure {
    /// Whether the instance was stopped while it may have been working (its time limit, its memory cap, a
    /// crash), rather than refused before it started or stopped waiting for its client's body.
    pub fn stopped_midway(&self) -> bool {
        matches!(self, Failure::OutOfMemory(_) | Failure::TimedOut(_) | Failure::Crashed(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::OutOfMemory(desired) => write!(f, "ran out of memory (asked for {} MiB)", desired >> 20),
            Failure::TimedOut(limit) => write!(f, "did not finish within {limit:?}"),
            Failure::BodyTimedOut(limit) => write!(f, "did not receive the whole request body within {limit:?}"),
            Failure::Busy => write!(f, "no free instance slot"),
            Failure::Refused(code) => write!(f, "answered with an error: {code:?}"),
            Failure::Crashed(error) => write!(f, "crashed: {error:#}"),
            Failure::NoResponse => write!(f, "returned without a response"),
        }
    }
}

/// The HTTP component, compiled and linked, ready to instantiate. Cheap to share between tasks.
pub struct HttpComponent {
    pre: ProxyPre<State>,
    /// Folders watched for the instances' listings, from one request to the next.
    watches: Arc<Watches>,
}

impl HttpComponent {
    /// Compiles the component (`bytes`: a binary `.wasm`) for an engine with `slots` instance slots whose
    /// memories may grow to `max_memory` bytes, and links it to WASI and `wasi:http`.
    pub fn load(bytes: &[u8], slots: u32, max_memory: usize) -> anyhow::Result<HttpComponent> {
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!("not a WebAssembly binary (a .wasm file starts with \\0asm); check the path");
        }
        let engine = engine(slots, max_memory)?;
        let component = Component::new(&engine, bytes)
            .map_err(|e| anyhow::Error::from(e).context("not a valid WebAssembly component"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        holders::add_to_linker::<State, wasmtime::component::HasSelf<Instance>>(&mut linker, |state| {
            &mut state.instance
        })?;
        digests::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| state)?;
        listings::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| state)?;
        renames::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| state)?;
        let pre = linker.instantiate_pre(&component).and_then(ProxyPre::new).map_err(|e| {
            anyhow::Error::from(e).context(
                "the component is not an HTTP component this host can run (it must export \
                 wasi:http/incoming-handler and import only WASI 0.2, wasi:http, xnat:archive/holders, xnat:archive/digests, \
                 xnat:archive/listings and xnat:archive/renames)",
            )
        })?;
        engine::start_ticker(&engine);
        Ok(HttpComponent { pre, watches: Arc::default() })
    }

    /// Serves one request in a fresh instance of `tenant`'s: its grants, its environment, its limits.
    /// `request` already carries the path the component should see. The instance lives until the response
    /// body is written (or the limits stop it), and holds `slot` until then.
    /// `verified` is the user the server's gate checked, told to the instance (`XNAT_VERIFIED_USER`). Unless
    /// the request `writes`, the tenant's directories are granted read-only.
    pub async fn handle(
        &self,
        tenant: &Tenant,
        request: hyper::Request<RequestBody>,
        slot: OwnedSemaphorePermit,
        verified: Option<&str>,
        writes: bool,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Failure> {
        let (store, refusals) = self.store(tenant, verified, writes)?;
        let (answer, call) = self.start(store, request, tenant.timeout(), slot)?;
        respond(tenant, answer, call, &refusals).await
    }

    /// A store for one request of `tenant`: exactly the tenant's directories and variables (no sockets, no
    /// stdin or stdout), its memory cap, and an epoch callback that yields every tick and stops the
    /// instance once the request's time limit has passed.
    fn store(
        &self,
        tenant: &Tenant,
        verified: Option<&str>,
        writes: bool,
    ) -> Result<(Store<State>, MemoryRefused), Failure> {
        let mut wasi = WasiCtxBuilder::new();
        // File operations run on the instance's own thread, as its wasm does, instead of each being handed
        // to tokio's blocking pool: a listing makes thousands, and the hand-offs cost more than the
        // operations (a row of the prearchive listing: 4 ms instead of 0.3). The instance still yields
        // every tick. Must come before the preopens, which capture it.
        wasi.allow_blocking_current_thread(true);
        wasi.inherit_stderr().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        for (name, value) in &tenant.env {
            wasi.env(name, value);
        }
        if let Some(user) = verified {
            wasi.env(super::tenant::env::VERIFIED_USER, user);
        }
        for grant in &tenant.grants {
            let grant = Grant { writable: grant.writable && writes, ..grant.clone() };
            grant.preopen(&mut wasi).map_err(Failure::Crashed)?;
        }
        let state = State {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: Limiter::new(&tenant.limits),
            hooks: NoOutgoingRequests,
            instance: Instance::new(),
            walks: Walks::default(),
            watches: self.watches.clone(),
            renaming: Renaming::default(),
        };
        let refusals = state.limiter.refusals();
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        let deadline = Instant::now() + tenant.timeout();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        Ok((store, refusals))
    }

    /// Hands `request` to a new instance in `store` and calls it, in a task of its own (it goes on writing
    /// the body after the response started): the response arrives on the returned receiver, the call's
    /// outcome from the task. The task drops `slot` once the instance is gone.
    fn start(
        &self,
        mut store: Store<State>,
        request: hyper::Request<RequestBody>,
        limit: Duration,
        slot: OwnedSemaphorePermit,
    ) -> Result<(oneshot::Receiver<Answer>, Call), Failure> {
        // The body-read deadline is the request's: a client that has not sent its body by then is cut off.
        let (request, body) = watch_body(request);
        let (sender, receiver) = oneshot::channel();
        let resources = |store: &mut Store<State>| -> wasmtime::Result<_> {
            let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok((request, out))
        };
        let (request, out) = resources(&mut store).map_err(|e| Failure::Crashed(e.into()))?;
        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let call = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
            };
            // The epoch callback stops a guest that runs wasm past the limit; this stops one that waits in a
            // host call (a file operation, a clock) past it.
            let outcome = match tokio::time::timeout(limit, call).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(explain(error, &store, limit)),
                Err(_elapsed) => Err(Failure::TimedOut(limit)),
            };
            let outcome = match outcome {
                Err(Failure::TimedOut(limit)) if body.stalled() => Err(Failure::BodyTimedOut(limit)),
                other => other,
            };
            // The instance's pool slot is free before the tenant's slot is, so the pool never runs short.
            drop(store);
            drop(slot);
            outcome
        });
        Ok((receiver, task))
    }
}

/// What the component sends for its response: the response, or a `wasi:http` error.
type Answer = Result<hyper::Response<HyperOutgoingBody>, ErrorCode>;

/// The task that runs the component's call, and how the call ended.
type Call = JoinHandle<Result<(), Failure>>;

/// The response to send, once the component answered (or its call ended without an answer).
async fn respond(
    tenant: &Tenant,
    answer: oneshot::Receiver<Answer>,
    call: Call,
    refusals: &MemoryRefused,
) -> Result<hyper::Response<HyperOutgoingBody>, Failure> {
    match answer.await {
        // Out of memory is one answer, whatever the component made of a failed allocation (an I/O error
        // of what it was reading, a report row): the tenant's cap, not a fault of the data.
        Ok(Ok(_)) if let Some(desired) = refusals.get() => Err(Failure::OutOfMemory(desired)),
        Ok(Ok(response)) => {
            let name = tenant.name.clone();
            tokio::spawn(async move {
                if let Ok(Err(failure)) = call.await {
                    eprintln!("tenant {name}: the component {failure} after its response had started");
                }
            });
            Ok(response)
        }
        Ok(Err(code)) => Err(Failure::Refused(code)),
        Err(_no_response) => match call.await {
            Ok(Ok(())) => Err(Failure::NoResponse),
            Ok(Err(failure)) => Err(failure),
            Err(panic) => Err(Failure::Crashed(panic.into())),
        },
    }
}

/// The request with its body watched, and the watch.
fn watch_body(request: hyper::Request<RequestBody>) -> (hyper::Request<WatchedBody>, BodyWatch) {
    let watch = BodyWatch::default();
    if request.body().is_end_stream() {
        watch.0.store(BodyWatch::COMPLETE, Ordering::Relaxed);
    }
    let watched = watch.clone();
    (request.map(|inner| WatchedBody { inner, watch: watched }), watch)
}

/// How far the reading of a request body got: not started, started, or complete. Shared between the body
/// (which the instance reads) and [`HttpComponent::handle`] (which decides what a timeout means).
#[derive(Debug, Clone, Default)]
struct BodyWatch(Arc<AtomicU8>);

impl BodyWatch {
    const STARTED: u8 = 1;
    const COMPLETE: u8 = 2;

    /// Whether the component began reading the body and the client has not sent all of it: a time-out is
    /// then the client's doing (408), not the component's (504).
    fn stalled(&self) -> bool {
        self.0.load(Ordering::Relaxed) == BodyWatch::STARTED
    }
}

/// A request's body as the component gets it: still arriving from the client, or already read by the
/// server's gate (the small body of a request without credentials, read before it took a slot).
#[derive(Debug)]
pub enum RequestBody {
    Incoming(Incoming),
    Read(Option<Bytes>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut *self {
            RequestBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Read(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Read(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Read(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// A request body that reports to its [`BodyWatch`].
struct WatchedBody {
    inner: RequestBody,
    watch: BodyWatch,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let state = match &polled {
            Poll::Ready(None) => BodyWatch::COMPLETE,
            _ if self.inner.is_end_stream() => BodyWatch::COMPLETE,
            _ => BodyWatch::STARTED,
        };
        self.watch.0.fetch_max(state, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much of each instance slot's memory stays mapped between requests (at most this much resident memory per
/// slot, `max_concurrent` slots per tenant).
const KEEP_RESIDENT: usize = 4 << 20;
/// The same for each table (of function references: the component's are a few thousand entries, 8 bytes each).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The engine: the host's common set-up, and a pool of `slots` instances whose memories may reach
/// `max_memory`.
fn engine(slots: u32, max_memory: usize) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // Per instance of a Rust wasip2 component: a handful of core instances (the program and WASI's
    // adapter shims), one or two memories and tables. Generous, since unused slots cost only address space.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 4)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memory_size(max_memory)
        // A request's instance touches a few hundred KiB to a few MiB of its memory. Those pages stay mapped in
        // the slot and are put back to the memory's initial image by copying, only the pages it wrote
        // (Linux's PAGEMAP_SCAN, 6.7 and later; elsewhere the kept bytes are reset whole), instead of being
        // unmapped and faulted in again by the next request: a page fault costs more than resetting a page,
        // and unmapping costs a TLB shoot-down on every core the server runs on. Tables likewise: their entries
        // are filled lazily, each first call through one writing its page.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = engine::config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    engine::build(&config)
}

/// Why a call failed, from the error and what the store saw.
fn explain(error: wasmtime::Error, store: &Store<State>, limit: Duration) -> Failure {
    match Stop::of(&error, store.data().limiter.memory_refused()) {
        Stop::OutOfMemory(desired) => Failure::OutOfMemory(desired),
        Stop::Busy => Failure::Busy,
        Stop::Interrupted => Failure::TimedOut(limit),
        Stop::Exited(_) | Stop::Trapped | Stop::Failed => Failure::Crashed(error.into()),
    }
}

/// What a store holds for one request.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: Limiter,
    hooks: NoOutgoingRequests,
    /// Alive while the store is: the locks the instance takes name it, and a lock of a request that was
    /// stopped (its time limit, a trap) is taken over by the next request at once.
    instance: Instance,
    /// The walks the instance has open (WIT `listings`).
    walks: Walks,
    /// The server's watches of folders (WIT `watch-tree`), kept between requests.
    watches: Arc<Watches>,
    /// The renames the instance started on the host's thread (WIT `renames`).
    renaming: Renaming,
}

impl DigestsHost for State {
    fn computes(&mut self) -> bool {
        true
    }

    fn digest_files(
        &mut self,
        folder: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
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
        folder: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
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

    fn watch_tree(
        &mut self,
        folder: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
        path: String,
        depth: u32,
    ) -> Option<String> {
        self.watches.watch_tree(&self.table, &folder, &path, depth)
    }
}

impl RenamesHost for State {
    fn renames(&mut self) -> bool {
        crate::wasm::renames::RENAMES
    }

    fn rename_files(
        &mut self,
        source: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
        destination: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
        pairs: Vec<(String, String)>,
    ) -> Result<(), renames::RenameFailure> {
        crate::wasm::renames::rename_files(&self.table, &source, &destination, &pairs)
    }

    fn start_renames(
        &mut self,
        source: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
        destination: wasmtime::component::Resource<wasmtime_wasi::filesystem::Descriptor>,
        pairs: Vec<(String, String)>,
    ) -> Result<u32, renames::ErrorCode> {
        self.renaming.start(&self.table, &source, &destination, pairs)
    }

    fn renamed(&mut self, ticket: u32) -> Result<(), renames::RenameFailure> {
        self.renaming.answer(ticket)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// The component serves requests; it never sends any.
struct NoOutgoingRequests;

impl WasiHttpHooks for NoOutgoingRequests {
    fn send_request(
        &mut self,
        _request: hyper::http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    hyper::http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// A plain-text body for the host's own answers, in the component's body type.
pub fn text_body(text: String) -> HyperOutgoingBody {
    http_body_util::Full::new(hyper::body::Bytes::from(text)).map_err(|never| match never {}).boxed_unsync()
}
