//! maskid's HTTP service (`maskid serve`): a JSON API under `/v1` to enrol, identify and
//! verify faces against a gallery, with API keys and roles, request limits, Prometheus
//! metrics, an OpenAPI document and graceful shutdown.
//!
//! The gallery's SQLite file is the truth; [`maskid_gallery::Gallery`] builds the search index
//! from it at start and updates it under the same lock as every write, so the two agree.
//!
//! Hostile and careless clients: keys are checked from the headers before any body is read;
//! every slot (in flight, model run, decode memory, connection) is held by a guard that is
//! dropped when its work really ends, whether the client stayed or not; headers have a
//! deadline; SQLite and model work never run on the async threads.
#![deny(missing_docs)]

pub mod auth;
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
use maskid_pipeline::Recognizer;
use metrics::Metrics;
pub use routes::{openapi, ENDPOINTS};

/// What the service accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes (larger: 413, from `Content-Length` before any is read).
    pub max_body_bytes: usize,
    /// Longest a request may take (longer: 503 `timeout`).
    pub request_timeout: Duration,
    /// Requests in flight at once (more: 503 `busy` at once); health probes do not count.
    pub max_in_flight: usize,
    /// Model runs (decode + detect + embed) at once; others wait their turn.
    pub max_concurrent: usize,
    /// Longest a client may take to send a request's headers (also an idle keep-alive).
    pub header_timeout: Duration,
    /// Open connections at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Memory all image decodes in progress may hold together, bytes; a photo that alone
    /// needs more is refused (413), others wait for their share.
    pub decode_budget_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            decode_budget_bytes: 1 << 30,
        }
    }
}

/// How the service decides and what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Cosine similarity needed for a match (identify and verify, unless a request says).
    pub threshold: f32,
    /// Keep enrolled faces' aligned crops in the gallery (for `gallery reembed`).
    pub keep_crops: bool,
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
}

/// Errors starting the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the gallery.
    #[error(transparent)]
    Gallery(#[from] maskid_gallery::Error),
    /// The gallery holds embeddings of a model of another embedding space.
    #[error("the gallery holds embeddings of {} ({}), but the service embeds with {} ({}), of another embedding space; start it with the gallery's model or one of its space", gallery.id, gallery.sha256, service.id, service.sha256)]
    ModelMismatch {
        /// The gallery's model.
        gallery: maskid_gallery::ModelRef,
        /// The service's model.
        service: maskid_gallery::ModelRef,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
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
        let (gallery, model) = tokio::task::spawn_blocking(move || {
            let model = gallery.model().and_then(|m| gallery.index_state().map(|_| m));
            (gallery, model)
        })
        .await
        .expect("BUG: opening the gallery panicked");
        if let Some(model) = model? {
            // Faces it enrols and probes it searches are the service model's: the gallery's
            // model or another of its embedding space (a teacher gallery served by G2D).
            let service = recognizer.model();
            if !model.shares_space(&service) {
                return Err(Error::ModelMismatch { gallery: model, service });
            }
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
        let budget_kib =
            usize::try_from(limits.decode_budget_bytes >> 10).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        let state = AppState {
            recognizer,
            gallery,
            options,
            model_slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            decode_budget: Arc::new(Semaphore::new(budget_kib)),
            limits: limits.clone(),
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
        };
        Ok(Self { listener, router: routes::router(Arc::new(state)), limits })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight. Each
    /// connection has `header_timeout` to send each request's headers; at most
    /// `max_connections` are open at once.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Service { listener, router, limits } = self;
        let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors or the like: wait rather than spin.
                        eprintln!("maskid: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop(permit);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }
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
