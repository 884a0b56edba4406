//! ONNX Runtime, loaded at run time from the pinned shared library, and pools of sessions.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::{Error, Result};
use maskid_onnx::SymbolicDims;

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Loads ONNX Runtime from `library` (once per process; later calls are no-ops).
pub fn init_runtime(library: &Path) -> Result<()> {
    if ENVIRONMENT.get().is_some() {
        return Ok(());
    }
    let builder =
        ort::init_from(library).map_err(|e| Error::Runtime(format!("cannot load {}: {e}", library.display())))?;
    // One shared intra-op pool over all cores for latency-bound sessions: the detector and
    // the embedder run one after the other, and with a pool each, the idle pool's spinning
    // threads halved the other's speed (embed 23 ms instead of 12 ms per face on 2 cores).
    let pool = ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(cores())?
        .with_inter_threads(1)?
        .with_spin_control(true)?;
    let environment = builder.with_name("maskid").with_global_thread_pool(pool).build()?;
    let _ = ENVIRONMENT.set(environment);
    Ok(())
}

/// How inference spreads over cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// One session on the process-wide pool of all cores: lowest latency for one photo at a
    /// time.
    Latency,
    /// One single-threaded session per core, for callers running in parallel (rayon): highest
    /// throughput over data sets.
    Throughput,
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Sessions of one model; each call takes whichever session is free.
pub(crate) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
}

impl SessionPool {
    /// Reads, rewrites (see [`maskid_onnx::prepare_model`]) and loads a model.
    pub fn load(model: &Path, symbolic: SymbolicDims, parallelism: Parallelism) -> Result<Self> {
        let shown = model.display().to_string();
        let bytes = std::fs::read(model).map_err(|source| Error::Read { path: shown.clone(), source })?;
        Self::from_bytes(&bytes, &shown, symbolic, parallelism)
    }

    /// [`SessionPool::load`] of a model already read (`shown`: its file, for errors).
    pub fn from_bytes(bytes: &[u8], shown: &str, symbolic: SymbolicDims, parallelism: Parallelism) -> Result<Self> {
        let shown = shown.to_string();
        let environment = ENVIRONMENT
            .get()
            .ok_or_else(|| Error::Runtime("ONNX Runtime is not loaded (call init_runtime first)".into()))?;
        let patched = maskid_onnx::prepare_model(bytes, symbolic)
            .map_err(|e| Error::Model { path: shown.clone(), reason: e.to_string() })?;
        let mut sessions = Vec::new();
        let count = match parallelism {
            Parallelism::Latency => 1,
            Parallelism::Throughput => cores(),
        };
        for _ in 0..count {
            let mut builder = Session::builder(environment)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(ort::Error::from)?
                .with_log_level(ort::logging::LogLevel::Error)
                .map_err(ort::Error::from)?
                // Lets constant folding dequantise the int8 weights once at load instead of at
                // every call: SFace at batch 1 goes from 27 to 15 ms here, same embeddings
                // to 1e-6.
                .with_config_entry("session.disable_quant_qdq", "1")
                .map_err(ort::Error::from)?;
            if parallelism == Parallelism::Throughput {
                // Throughput: each caller's thread runs its own session, no pool threads.
                builder = builder
                    .with_independent_thread_pool()
                    .map_err(ort::Error::from)?
                    .with_intra_threads(1)
                    .map_err(ort::Error::from)?;
            }
            let session = builder
                .commit_from_memory(&patched)
                .map_err(|e| Error::Model { path: shown.clone(), reason: e.to_string() })?;
            sessions.push(Mutex::new(session));
        }
        Ok(Self { sessions })
    }

    /// Runs `f` on a free session, waiting for one if all are busy.
    pub fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        for session in &self.sessions {
            if let Ok(mut s) = session.try_lock() {
                return f(&mut s);
            }
        }
        // All busy: queue on the one this thread maps to.
        let index = thread_slot() % self.sessions.len();
        let mut s = self.sessions[index].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Input names of the model.
    pub fn input_names(&self) -> Vec<String> {
        self.with(|s| s.inputs().iter().map(|i| i.name().to_string()).collect())
    }

    /// The declared shapes of the first input and the first output (-1 where a dimension is
    /// symbolic); `None` where one is not a tensor.
    pub fn io_shapes(&self) -> (Option<Vec<i64>>, Option<Vec<i64>>) {
        let shape = |outlets: &[ort::value::Outlet]| {
            outlets.first().and_then(|o| o.dtype().tensor_shape()).map(|shape| shape.to_vec())
        };
        self.with(|s| (shape(s.inputs()), shape(s.outputs())))
    }
}

fn thread_slot() -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() as usize
}
