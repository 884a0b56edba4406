//! maskid's HTTP service (`maskid serve`): a JSON API under `/v1` to enrol, identify and
//! verify faces against a gallery, with API keys and roles, request limits, Prometheus
//! metrics, an OpenAPI document and graceful shutdown.
//!
//! The gallery's SQLite file is the truth; [`maskid_gallery::Gallery`] builds the search index
//! from it at start and updates it under the same lock as every write, so the two agree.
//!
//! Hostile and careless clients: keys are checked from the headers before any body is read,
//! and a request counts as in flight only once its key is good and its body is in; every
//! slot (in flight, model run, decode and body memory, connection) is held by a guard that
//! is dropped when its work really ends, whether the client stayed or not; headers, bodies
//! (a minimum rate), stalled writes and shutdown have deadlines; connections are capped per
//! address with a reserve for health probes ([`connection`]); SQLite and model work never
//! run on the async threads.
#![deny(missing_docs)]

pub mod auth;
mod connection;
mod error;
mod input;
mod metrics;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

pub use error::ApiError;
use maskid_gallery::Gallery;
use maskid_pipeline::{Decision, Recognizer};
use metrics::Metrics;
pub use routes::{openapi, ENDPOINTS};

/// What the service accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes (larger: 413, from `Content-Length` before any is read).
    pub max_body_bytes: usize,
    /// Longest a request may take (longer: 503 `timeout`).
    pub request_timeout: Duration,
    /// Requests in flight at once (more: 503 `busy` at once), counted from when the key is
    /// checked and the body is in; health probes and metrics do not count.
    pub max_in_flight: usize,
    /// Model runs (decode + detect + embed) at once; others wait their turn.
    pub max_concurrent: usize,
    /// Longest a client may take to send a request's headers (also an idle keep-alive).
    pub header_timeout: Duration,
    /// Open connections at once; more are answered 503 and closed (see `ops_reserve`).
    pub max_connections: usize,
    /// Open connections from one address at once; more are answered 503 and closed.
    pub max_connections_per_peer: usize,
    /// Connections beyond `max_connections` that serve only `/healthz`, `/readyz` and
    /// `/metrics`, one request each: probes get through a full service.
    pub ops_reserve: usize,
    /// Longest a connection's writes may make no progress (a client that does not read its
    /// answers) before it is closed.
    pub write_timeout: Duration,
    /// Slowest a body may arrive, bytes per second on average after [`BODY_GRACE`]; slower:
    /// 408 and the connection closed.
    pub min_body_rate: u64,
    /// Memory all request bodies being read or worked on may hold together, bytes; a body
    /// that finds no room is refused with 503.
    pub body_budget_bytes: u64,
    /// Memory all image decodes in progress may hold together, bytes; a photo that alone
    /// needs more is refused (413), others wait for their share.
    pub decode_budget_bytes: u64,
    /// Longest a stop waits for open connections to finish before closing them.
    pub shutdown_timeout: Duration,
}

/// How long a body may take before [`Limits::min_body_rate`] applies.
pub const BODY_GRACE: Duration = Duration::from_secs(2);

/// Bytes of a connection's requests read ahead of the one being answered (pipelined);
/// hyper reads no more until it has written the answers.
pub const PIPELINE_BUFFER_BYTES: usize = 64 << 10;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_connections_per_peer: 128,
            ops_reserve: 16,
            write_timeout: Duration::from_secs(10),
            min_body_rate: 16 << 10,
            body_budget_bytes: 512 << 20,
            decode_budget_bytes: 1 << 30,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// How the service decides and what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Cosine similarity needed for verify to call two photos one person, unless a request
    /// says.
    pub threshold: f32,
    /// How identify decides a match, unless a request says (`fpir` or `threshold`).
    pub identify: Decision,
    /// Keep enrolled faces' aligned crops in the gallery (for `gallery reembed`).
    pub keep_crops: bool,
    /// A line on stderr per request: method, route pattern, status, milliseconds and the
    /// name of its key (never the key, never a subject's name).
    pub access_log: bool,
}

/// Everything the handlers share.
pub struct AppState {
    recognizer: Recognizer,
    gallery: Gallery,
    options: Options,
    limits: Limits,
    metrics: Metrics,
    in_flight: AtomicUsize,
    model_slots: Arc<Semaphore>,
    /// Decode memory, in KiB.
    decode_budget: Arc<Semaphore>,
    /// Body memory, in KiB.
    body_budget: Arc<Semaphore>,
    /// Keys checked lately, and a bound on lookups of unknown ones.
    keys: auth::KeyCache,
}

/// Errors starting the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the gallery.
    #[error(transparent)]
    Gallery(#[from] maskid_gallery::Error),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// A bound, ready service.
pub struct Service {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    /// The router of reserve connections: probes only.
    probes: axum::Router,
    limits: Limits,
}

impl Service {
    /// Checks the gallery's model, builds its index and binds `addr`.
    pub async fn bind(
        recognizer: Recognizer,
        gallery: Gallery,
        options: Options,
        addr: &str,
        limits: Limits,
    ) -> Result<Self, Error> {
        // Gallery calls block (a PostgreSQL gallery drives its own runtime): off this one.
        // Faces it enrols and probes it searches are the service model's: refuse to start on
        // a gallery of another embedding space rather than refuse every request.
        let service = recognizer.model();
        let (gallery, checked) = tokio::task::spawn_blocking(move || {
            let checked = gallery.check_model(&service).and_then(|()| gallery.index_state());
            (gallery, checked)
        })
        .await
        .expect("BUG: opening the gallery panicked");
        checked?;
        let listener = listen(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
        let kib = |bytes: u64| usize::try_from(bytes >> 10).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        let state = AppState {
            recognizer,
            gallery,
            options,
            model_slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            decode_budget: Arc::new(Semaphore::new(kib(limits.decode_budget_bytes))),
            body_budget: Arc::new(Semaphore::new(kib(limits.body_budget_bytes))),
            keys: auth::KeyCache::default(),
            limits: limits.clone(),
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
        };
        let state = Arc::new(state);
        Ok(Self { listener, router: routes::router(state.clone(), false), probes: routes::router(state, true), limits })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight for at most
    /// `shutdown_timeout`. Connections are admitted as [`connection`] says; each has
    /// `header_timeout` to send each request's headers and `write_timeout` for each write.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Service { listener, router, probes, limits } = self;
        let admissions =
            connection::Admissions::new(limits.max_connections, limits.ops_reserve, limits.max_connections_per_peer);
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(PIPELINE_BUFFER_BYTES);
        let mut probe_http = http.clone();
        probe_http.keep_alive(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors or the like: wait rather than spin.
                        eprintln!("maskid: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let (slot, http, router) = match admissions.admit(peer.ip()) {
                connection::Admission::Full(slot) => (slot, &http, &router),
                connection::Admission::ProbesOnly(slot) => (slot, &probe_http, &probes),
                connection::Admission::Refused(reason) => {
                    connection::refuse(stream, reason);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let io = TokioIo::new(connection::TimedWrites::new(stream, limits.write_timeout));
            let connection = graceful.watch(http.serve_connection(io, TowerToHyperService::new(router.clone())));
            tokio::spawn(async move {
                let _ = connection.await;
                drop(slot);
            });
        }
        drop(listener);
        if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await.is_err() {
            eprintln!("maskid: connections still open after {:?}; closing them", limits.shutdown_timeout);
        }
    }
}

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`): tokio's
/// 1024 overflowed under bursts of connections in the soak, and a dropped SYN costs its
/// client a second (the first retransmission), health probes included.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on the first address `addr` resolves to.
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let resolved = tokio::net::lookup_host(addr).await?.next();
    let at =
        resolved.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the address resolves to nothing"))?;
    let socket = if at.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
