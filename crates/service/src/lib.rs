//! maskid's HTTP service (`maskid serve`): a JSON API under `/v1` to enrol, identify and
//! verify faces against a gallery, with API keys and roles, request limits, Prometheus
//! metrics, an OpenAPI document and graceful shutdown.
//!
//! The gallery's SQLite file is the truth; the search index is rebuilt from it at start and
//! updated under the same lock as every write, so the two always agree.

mod api;
pub mod auth;
mod engine;
mod error;
mod input;
mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub use api::{openapi, ENDPOINTS};
pub use engine::Engine;
pub use error::ApiError;
use maskid_gallery::{Gallery, SubjectIndex};
use metrics::Metrics;

/// What the service accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Longest a request may take (longer: 503 `timeout`).
    pub request_timeout: Duration,
    /// Requests in flight at once (more: 503 `busy` at once).
    pub max_in_flight: usize,
    /// Model runs (detect + embed) at once; others wait their turn.
    pub max_concurrent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    engine: Engine,
    gallery: Mutex<Gallery>,
    index: RwLock<SubjectIndex>,
    limits: Limits,
    metrics: Metrics,
    in_flight: AtomicUsize,
    model_slots: tokio::sync::Semaphore,
}

impl AppState {
    fn gallery(&self) -> Result<MutexGuard<'_, Gallery>, ApiError> {
        self.gallery.lock().map_err(|_| ApiError::internal("the gallery lock is poisoned"))
    }

    /// The index for searching: searches run side by side.
    fn index(&self) -> Result<RwLockReadGuard<'_, SubjectIndex>, ApiError> {
        self.index.read().map_err(|_| ApiError::internal("the index lock is poisoned"))
    }

    /// The index for changing, with the gallery's lock held by the caller.
    fn index_mut(&self) -> Result<RwLockWriteGuard<'_, SubjectIndex>, ApiError> {
        self.index.write().map_err(|_| ApiError::internal("the index lock is poisoned"))
    }
}

/// Errors starting the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the gallery.
    #[error(transparent)]
    Gallery(#[from] maskid_gallery::Error),
    /// The gallery holds another model's embeddings.
    #[error("the gallery holds embeddings of {gallery}, but the service embeds with {service}; start it with the gallery's model")]
    ModelMismatch { gallery: String, service: String },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// The server failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// A bound, ready service.
pub struct Service {
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

impl Service {
    /// Opens the gallery, checks its model, rebuilds the index and binds `addr`.
    pub async fn bind(engine: Engine, gallery: Gallery, addr: &str, limits: Limits) -> Result<Self, Error> {
        if let Some(model) = gallery.model()? {
            let service = engine.model();
            if model.sha256 != service.sha256 {
                return Err(Error::ModelMismatch {
                    gallery: format!("{} ({})", model.id, model.sha256),
                    service: format!("{} ({})", service.id, service.sha256),
                });
            }
        }
        let index = SubjectIndex::load(&gallery, engine.index)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
        let state = AppState {
            engine,
            gallery: Mutex::new(gallery),
            index: RwLock::new(index),
            model_slots: tokio::sync::Semaphore::new(limits.max_concurrent.max(1)),
            limits,
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
        };
        Ok(Self { listener, router: api::router(std::sync::Arc::new(state)) })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await.map_err(Error::Serve)
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
