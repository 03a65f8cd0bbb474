//! The HTTP server: accepts connections, routes each request by its first path segment to a tenant, logs
//! it, and stops gracefully. `GET /` lists the tenants; `/<tenant>/rest` goes to that tenant's component
//! as `/rest`; anything else is answered here in plain text.
//!
//! Not for anything inside a request's instance: `super::component` runs those.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{
    ALLOW, CONNECTION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS,
};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use xnat_http::browser;

use super::component::{Failure, HttpComponent, RequestBody, text_body};
use super::connections::{self, Connections};
use super::gate::{self, Admission, Gate, OPEN_BODY_DEADLINE, Refusal};
use super::proxies::TrustedProxies;
use super::recovery::Recovery;
use super::tenant::Tenant;

/// The tenants and the component that serves them.
pub struct Server {
    pub component: HttpComponent,
    pub tenants: Vec<Arc<Tenant>>,
    /// Who may come in, checked before a request takes a slot or sends its body.
    pub gate: Gate,
    /// Finishes or rolls back the archives of requests that had to be stopped.
    pub recovery: Recovery,
    /// The reverse proxies whose `X-Forwarded-For` names the client (for the per-address limits).
    pub proxies: TrustedProxies,
}

/// Serves connections from `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish — also those whose client has left, and the recoveries under way — waiting
/// at most the longest time limit, plus a little (each request is stopped at its own limit anyway).
/// A connection over the caps of `connections` is answered 503 and closed before anything is read.
pub async fn run(
    listener: TcpListener,
    server: Arc<Server>,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) {
    let local = listener.local_addr().ok();
    let header_deadline = header_read_timeout(&server.tenants);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_deadline);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    eprintln!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match connections.admit(peer.ip(), server.proxies.trusts(peer.ip())) {
            Ok(admitted) => admitted,
            Err(message) => {
                eprintln!("connection from {peer}: refused with 503: {message}");
                tokio::spawn(connections::refuse(stream, message));
                continue;
            }
        };
        // A response is written as it is made (its head, then the body in pieces): with Nagle's algorithm a
        // piece after the first waits for the client's acknowledgement, which the client delays (40 ms on
        // Linux) while it waits for the rest. Failing to set it only costs that time.
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            let client = server.proxies.client(peer.ip(), request.headers());
            async move { Ok::<_, Infallible>(server.respond(request, local, client).await) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _admitted = admitted;
            match connection.await {
                Err(e) if e.is_timeout() => eprintln!(
                    "connection from {peer}: closed after {header_deadline:?} without a whole request's headers \
                     (an idle keep-alive connection, or a client too slow to send them)"
                ),
                Err(e) => eprintln!("connection from {peer}: {e}"),
                Ok(()) => {}
            }
        });
    }
    drop(listener);
    let wait = server.tenants.iter().map(|t| t.timeout()).max().unwrap_or_default() + Duration::from_secs(2);
    eprintln!("shutting down: no new connections; finishing the requests in flight (at most {wait:?})");
    let finished = async {
        graceful.shutdown().await;
        // A request whose client left has no connection to wait for, but its instance may still be archiving.
        for tenant in &server.tenants {
            let _all = tenant.drain().await;
        }
    };
    if tokio::time::timeout(wait, finished).await.is_err() {
        eprintln!(
            "some requests did not finish in time; stopping them (what they cut off is recovered at the next start)"
        );
    }
}

/// The longest a client may take to send a request's headers (and an idle connection may stay open).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The header deadline: [`HEADER_READ_TIMEOUT`], or the shortest request time limit of a tenant if that is
/// shorter (the tenant is only known once the headers are in, and no request may take longer than that).
/// A client that has not sent its headers by then is disconnected (hyper's header read timeout).
fn header_read_timeout(tenants: &[Arc<Tenant>]) -> Duration {
    tenants.iter().map(|t| t.timeout()).fold(HEADER_READ_TIMEOUT, Duration::min)
}

impl Server {
    /// Answers one request and arranges its access-log line (written once the body is sent).
    async fn respond(
        &self,
        request: Request<Incoming>,
        local: Option<std::net::SocketAddr>,
        client: IpAddr,
    ) -> Response<Logged> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let (tenant, mut response) = self.route(request, local, client).await;
        // The component's answers carry these already; the server's own (404, 503, 504, ...) get them here.
        let headers = response.headers_mut();
        headers.entry(X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
        headers.entry(CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(browser::CONTENT_SECURITY_POLICY));
        let line = LogLine { method, path, tenant, status: response.status(), started };
        response.map(|body| Logged { body, line: Some(line) })
    }

    /// The response, and the tenant it went to (for the log).
    async fn route(
        &self,
        mut request: Request<Incoming>,
        local: Option<std::net::SocketAddr>,
        client: IpAddr,
    ) -> (Option<String>, Response<HyperOutgoingBody>) {
        let path = request.uri().path();
        if has_dot_segment(path) {
            let message = "the path must not contain '.' or '..' segments (plain or percent-encoded)";
            return (None, plain(StatusCode::BAD_REQUEST, message));
        }
        if path == "/" || path.is_empty() {
            return (None, self.index(request.method()));
        }
        let rest = &path[1..];
        let (name, rest) = rest.split_once('/').map_or((rest, "/"), |(name, _)| (name, &rest[name.len()..]));
        let Some(tenant) = self.tenants.iter().find(|t| t.name == name) else {
            let message = format!("no tenant named '{name}' here; GET / lists the tenants");
            return (None, plain(StatusCode::NOT_FOUND, &message));
        };
        let tenant_name = Some(tenant.name.clone());

        // The component sees the path without the tenant's prefix (XNAT_BASE_PATH tells it the prefix).
        let forwarded = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        match PathAndQuery::try_from(forwarded).map(Uri::from) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return (tenant_name, plain(StatusCode::BAD_REQUEST, "the request's path is not valid")),
        }
        if !request.headers().contains_key(HOST) {
            // HTTP/1.0 clients may leave it out; wasi:http needs an authority.
            let host = local.map_or_else(|| "localhost".to_owned(), |addr| addr.to_string());
            request.headers_mut().insert(HOST, HeaderValue::from_str(&host).expect("an address is a valid header"));
        }

        // Who is asking, before the request may take a slot or send its body.
        let login = request.uri().path() == "/data/services/auth";
        let (verified, request) = match self.admit(tenant, request, client, login).await {
            Ok(admitted) => admitted,
            Err(refusal) => return (tenant_name, refused(refusal)),
        };

        let response = self.run(tenant, request, verified.as_deref()).await;
        if login && response.status() == StatusCode::UNAUTHORIZED {
            self.gate.failed_login(client);
        }
        (tenant_name, response)
    }

    /// Runs an admitted request in one of its tenant's slots (503 when none frees up soon). A request that
    /// could change data and was stopped midway has its tenant's interrupted archives recovered after it.
    async fn run(
        &self,
        tenant: &Arc<Tenant>,
        request: Request<RequestBody>,
        verified: Option<&str>,
    ) -> Response<HyperOutgoingBody> {
        let Some(slot) = tenant.slot().await else {
            let message = format!(
                "tenant '{}' is already serving its limit of {} requests at once; retry shortly",
                tenant.name,
                tenant.max_concurrent()
            );
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, &message);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        };
        let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        // What only reads gets the tenant's directories read-only (the component's own classification).
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let writes = xnat_http::routes::writes(request.method().as_str(), target);
        match self.component.handle(tenant, request, slot, verified, writes).await {
            Ok(response) => response,
            Err(failure) => {
                if changes && failure.stopped_midway() {
                    // It may have been archiving: finish or roll back what it left, once a slot is free.
                    self.recovery.run_later(tenant.clone());
                }
                refusal(tenant, failure)
            }
        }
    }

    /// The gate's decision: the verified user (if any) and the request to serve, its small body already read
    /// when it has no credentials; or the refusal, before any slot is taken.
    async fn admit(
        &self,
        tenant: &Tenant,
        request: Request<Incoming>,
        client: IpAddr,
        login: bool,
    ) -> Result<(Option<String>, Request<RequestBody>), Refusal> {
        match self.gate.admit(tenant, request.method(), request.uri(), request.headers(), client).await {
            Admission::Refused(refusal) => Err(refusal),
            Admission::Verified(user) => Ok((Some(user), request.map(RequestBody::Incoming))),
            Admission::Open => {
                if let Some(refusal) = self.gate.login_wait(client).filter(|_| login) {
                    return Err(refusal);
                }
                let (parts, body) = request.into_parts();
                let bytes = gate::read_open_body(body, OPEN_BODY_DEADLINE.min(tenant.timeout())).await?;
                Ok((None, Request::from_parts(parts, RequestBody::Read(Some(bytes)))))
            }
        }
    }

    /// `GET /`: the tenants' names, one a line.
    fn index(&self, method: &Method) -> Response<HyperOutgoingBody> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET / lists the tenants; nothing else is here");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let names: String = self.tenants.iter().map(|t| format!("{}\n", t.name)).collect();
        let mut response = Response::new(text_body(names));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

/// The answer when the component gave none: what happened and what to do.
fn refusal(tenant: &Tenant, failure: Failure) -> Response<HyperOutgoingBody> {
    let name = &tenant.name;
    let (status, message) = match &failure {
        Failure::OutOfMemory(_) => (
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the request needed more memory than tenant '{name}' allows ({} MiB) and was stopped; ask for less \
                 at a time, or raise memory_mib in the server's configuration",
                tenant.limits.memory_bytes >> 20
            ),
        ),
        Failure::TimedOut(limit) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request did not finish within tenant '{name}''s time limit of {limit:?} and was stopped; ask \
                 for less at a time, or raise request_timeout_secs in the server's configuration"
            ),
        ),
        Failure::BodyTimedOut(limit) => {
            eprintln!(
                "tenant {name}: the client did not send its whole request body within the time limit of {limit:?}; \
                 answered 408 and closed the connection"
            );
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within tenant '{name}''s time limit of {limit:?}; the \
                     connection is closed. Send the whole request at once"
                ),
            )
        }
        Failure::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is running as many requests as it has room for; retry shortly".to_owned(),
        ),
        Failure::Refused(_) | Failure::Crashed(_) | Failure::NoResponse => {
            eprintln!("tenant {name}: the component {failure}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request failed inside the server ({failure}); please report it with this message"),
            )
        }
    };
    let mut response = plain(status, &message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body may still be on its way: this connection cannot carry another request.
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The gate's answer (the component's own texts for 401s), with `Retry-After` for 429.
fn refused(refusal: Refusal) -> Response<HyperOutgoingBody> {
    let answer = refusal.response;
    let mut response = Response::new(text_body(answer.body_text()));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    if let Some(seconds) = refusal.retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A plain-text answer of the host's own.
fn plain(status: StatusCode, message: &str) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(text_body(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Whether a path has a `.` or `..` segment, also once percent-decoded (`%2e%2e`, `..%2f`) and with
/// backslashes read as slashes: such a path is refused rather than interpreted.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|raw| {
        let decoded = percent_decode_str(raw).decode_utf8_lossy();
        decoded.split(['/', '\\']).any(|segment| segment == "." || segment == "..")
    })
}

/// One access-log line: method, path (without the query, which may hold credentials), tenant, status and
/// the time until the body was sent.
struct LogLine {
    method: Method,
    path: String,
    tenant: Option<String>,
    status: StatusCode,
    started: Instant,
}

/// A response body that writes its request's log line once it is sent (or dropped by a closed connection).
pub struct Logged {
    body: HyperOutgoingBody,
    line: Option<LogLine>,
}

impl Body for Logged {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(l) = self.line.take() {
            let ms = l.started.elapsed().as_secs_f64() * 1000.0;
            let tenant = l.tenant.as_deref().unwrap_or("-");
            // Made whole first and written by one call: standard error is unbuffered, and `eprintln!` writes
            // each piece of the line by a system call of its own (nine of them).
            let line = format!("{} {} tenant={tenant} status={} {ms:.1}ms\n", l.method, l.path, l.status.as_u16());
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_dot_segment;

    #[test]
    fn dot_segments_in_every_spelling() {
        for path in
            ["/A/../B/data", "/A/%2e%2e/B", "/A/%2E%2E/B", "/A/.%2e/B", "/A/..%2fB", "/A/..%5cB", "/./A", "/A/."]
        {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in ["/", "/A/data/prearchive", "/A/data/files/a..b", "/A/.hidden", "/A/...", "/A/data/x.xml"] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }
}
